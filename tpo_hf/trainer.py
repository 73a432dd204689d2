"""Stage 4 of the flow (training): `TPOTrainer`, TRL's `DPOTrainer` taught to train on video preference pairs.

What it adds to `DPOTrainer`:
- the dataset is used as is (`prompt`, `chosen`, `rejected`, `video`, ...): no eager tokenization, videos are
  decoded in the collator (`VideoPreferenceCollator`, used by default);
- LoRA targets default to the language model only, and 4-bit quantization skips the vision side (family registry);
- shared video encoding: the vision encoder runs once per pair and its output (`mm_encoder_outputs`) serves the
  chosen row, the rejected row and the reference pass, when the vision side has no trainable weights;
- Mixture-of-Experts families: TRL's router load-balancing loss, with each pair's prompt counted once in every
  path (`tpo_hf.moe`); `lora_include_experts` adds adapters on the experts;
- prefix sharing: each pair's prompt (video tokens included) runs through the language model once, with both
  answers packed after it, in the policy and the reference pass (`tpo_hf.prefix_sharing`);
- `precompute_ref_log_probs=True` for video datasets, with pairs dropped for length kept aligned;
- pairs over `max_length` are dropped and counted (`too_long/dropped_total`) or rejected, never truncated.

The methods TRL and transformers call stay here; what they do beyond training is in its own module:
`dataset_checks` (rows checked before training), `model_setup` (LoRA/quantization targets, frozen vision side,
prefix sharing switched on), `distributed` (FSDP2 / ZeRO-3 workarounds), `checkpoints` (complete checkpoints and
resume) and `hub.training_publish` (model card and push). A little over 500 lines on purpose: what is left are the
overrides TRL and transformers call on the class itself.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from typing import Any

import torch
from transformers import AutoConfig, PreTrainedModel
from trl import DPOTrainer

from .checkpoints import (
    check_resume_settings,
    checkpoint_step,
    dataset_identity,
    holds_full_weights,
    load_full_weights,
    resolve_checkpoint,
    save_complete_checkpoint,
    save_final_model,
    unshare_hard_links,
)
from .collator import (
    BATCH_SIZE_KEY,
    BOOKKEEPING_KEYS,
    KEPT_POSITIONS_KEY,
    NUM_DROPPED_KEY,
    PAIR_PREFIX,
    REQUIRED_COLUMNS,
    ROW_INDEX_COLUMN,
    VideoPreferenceCollator,
)
from .config import TPOConfig
from .data import refuse_training_output_dir, video_paths_column
from .dataset_checks import NoTrainingDataError, check_columns, check_lengths, check_rows, drop_ref_logps_columns
from .distributed import (
    check_fsdp2_versions,
    configure_fsdp_wrap,
    encode_videos,
    fsdp_plugin,
    import_modeling_modules,
    install_output_head_unshard,
)
from .families import VideoFamily, get_family
from .fingerprint import key_hash
from .locks import check_lock_held, output_dir_lock
from .model_setup import (
    check_lora_targets,
    configure_prefix_sharing,
    configure_vision,
    fit_peft_config,
    fit_quantization_config,
)
from .moe import install_router_aux_loss
from .paper import TPO_CITATION, TPO_PAPER_ID, TPO_PAPER_TITLE, TPO_TAG
from .prefix_sharing import (
    DENSE_MAX_PACKED_LENGTH,
    PREFIX_SHARING_KWARG,
    attention_mask_dtype,
    pack_pairs,
    row_position_ids,
)
from .processing import VideoPreferenceProcessor
from .ref_logps_cache import (
    cache_files_in,
    check_ref_logps_cache_writable,
    drop_damaged_ref_logps_cache,
    fallback_cache_folder,
    name_ref_logps_changes,
    processor_configs,
    raise_if_cache_write_failed,
    record_ref_logps_key,
    ref_logps_cache_file,
    ref_logps_cache_folder,
)
from .validation import placeholder_tokens
from .video import video_file_identity
from .video_settings import VideoSettings

logger = logging.getLogger(__name__)


# Bumped when the reference log-probs a precompute writes change meaning (part of their cache key). 2: a video with
# fewer frames than num_frames gives each frame once (no repeats) outside fixed-frame-count families.
REF_LOGPS_FORMAT_VERSION = 2


def _unwrap_peft(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# the names PEFT gives the original weights of a layer it adapts: left out of the reference's tensor names, so that the
# same base weights hash alike whatever layers the adapter targets
_PEFT_WRAPPER_NAMES = ("base_layer", "original_module")


def reference_weights_hash(model: Any, ref_model: Any, trl_hash: str | None) -> str | None:
    """The hash of the reference weights that keys the precomputed reference log-probs. With PEFT and no reference
    model the reference is the model with its adapters off (or on TRL's `ref` adapter): its tensors are hashed
    without those of the trained adapter, whose random initialisation (`seed`, `lora_r`, targets) changes nothing the
    reference computes. Otherwise, and for sharded (DTensor) weights, TRL's own hash of the reference model."""
    import hashlib

    from accelerate.utils import is_peft_model

    if ref_model is not None or not is_peft_model(model):
        return trl_hash
    trained = set(model.peft_config) - {"ref"}  # TRL's reference runs the `ref` adapter where the model has one
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        parts = name.split(".")
        if trained.intersection(parts):
            continue
        if type(tensor).__name__ == "DTensor":  # sharded: cannot be read whole here
            return trl_hash
        tensor = tensor.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):  # no numpy dtype
            tensor = tensor.to(torch.float32)
        digest.update(".".join(part for part in parts if part not in _PEFT_WRAPPER_NAMES).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


class TPOTrainer(DPOTrainer):
    """Trains a video-LMM with Temporal Preference Optimization (DPO + SFT on video preference pairs).

    Temporal Preference Optimization (arXiv 2501.13919), not TRL's `trl.experimental.tpo.TPOTrainer` (Triple
    Preference Optimization, a text-only method that happens to share the acronym); both import side by side.

    Args:
        model: model id/path or an instantiated video-LMM (PEFT-wrapped or not).
        ref_model: optional reference model; with PEFT the adapter-disabled model is the reference.
        args: a `TPOConfig`.
        data_collator: defaults to a `VideoPreferenceCollator` built from the processor and `args`.
        train_dataset, eval_dataset: preference datasets with a `video` column (paths, or relative to `video_root`).
        processing_class: a `VideoPreferenceProcessor` or the model's transformers processor (loaded when `None`).
        quantization_config: e.g. `BitsAndBytesConfig(load_in_4bit=True)` for QLoRA (model given as a string);
            the vision side is added to its `llm_int8_skip_modules`.
        peft_config: e.g. `LoraConfig`; `target_modules=None` or `"all-linear"` means the language model's linears.

    Example:
        >>> trainer = TPOTrainer("Qwen/Qwen2.5-VL-7B-Instruct", args=TPOConfig("out"), train_dataset=dataset,
        ...                      peft_config=LoraConfig(r=16))
        >>> trainer.train()
    """

    _tag_names = ["trl", "dpo", "tpo", TPO_TAG, "video"]
    _name = "TPO"
    _paper = {
        "title": TPO_PAPER_TITLE,
        "id": TPO_PAPER_ID,
        "citation": TPO_CITATION,
    }

    def __init__(
        self,
        model: str | PreTrainedModel,
        ref_model: PreTrainedModel | None = None,
        args: TPOConfig | None = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        compute_metrics: Any = None,
        callbacks: Any = None,
        optimizers: Any = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
    ):
        if isinstance(model, str) and os.path.isdir(model):
            # PEFT records the base in adapter_config.json as given: a relative folder would point elsewhere once the
            # adapter is loaded or pushed from another folder
            model = os.path.abspath(model)
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = TPOConfig(f"{str(model_name).rstrip('/').split('/')[-1]}-TPO")
        elif not isinstance(args, TPOConfig):
            raise TypeError(f"`args` must be a TPOConfig, got {type(args).__name__}.")
        # `args` may have been changed after it was built: the one source of truth for the loss is checked again, so
        # what trains is what the card reports (e.g. `sft_weight` against the "sft" entry of `loss_weights`)
        args._check_ranges()
        args._resolve_loss()
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        check_columns(train_dataset, "train_dataset")
        # before TRL reads a first row, which a datasets.Video column would decode through torchcodec
        train_dataset = video_paths_column(train_dataset, "train_dataset")
        refuse_training_output_dir(args.output_dir)  # not a dataset's or a full model's folder
        self.dataset_identity = dataset_identity(train_dataset)  # recorded in checkpoints, compared on resume
        if args.precompute_ref_log_probs:  # before the model is loaded: the cache must have somewhere to go
            evals = eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]
            for dataset in (train_dataset, *evals):
                if dataset is not None:
                    check_ref_logps_cache_writable(dataset, args, processing_class)

        config = (
            AutoConfig.from_pretrained(model, trust_remote_code=args.trust_remote_code)
            if isinstance(model, str)
            else model.config
        )
        if isinstance(model, str):
            import_modeling_modules(config)  # before a ZeRO-3 zero.Init builds the model (see the function)
        self.family: VideoFamily = get_family(config)

        if isinstance(processing_class, VideoPreferenceProcessor):
            self.video_processor = processing_class
            asked = VideoSettings.of(args).fitted(processing_class.processor, processing_class.family)
            if asked != processing_class.settings:
                logger.warning(
                    "TPOTrainer: the processing_class samples videos with %s, the training arguments ask for %s; "
                    "training (and the model card) use the processor's settings.",
                    processing_class.settings,
                    asked,
                )
        elif processing_class is None:
            # from the model's folder, so a video prompt layout recorded there is written again
            model_id = model if isinstance(model, str) else config._name_or_path
            self.video_processor = VideoPreferenceProcessor.from_pretrained(
                model_id, family=self.family, trust_remote_code=args.trust_remote_code, **args.video_settings()
            )
        else:
            self.video_processor = VideoPreferenceProcessor(
                processing_class, family=self.family, **args.video_settings()
            )
        if (
            self.family.needs_fixed_frame_count
            and self.video_processor.num_frames is None
            and args.per_device_train_batch_size > 1
        ):
            raise ValueError(
                f"{self.family.name} cannot batch videos with different frame counts: set `num_frames` "
                "(not only `video_fps`) or use per_device_train_batch_size=1."
            )

        check_lora_targets(peft_config, config if isinstance(model, str) else model, self.family)
        fit_peft_config(peft_config, self.family, args.lora_include_experts)
        fit_quantization_config(quantization_config, self.family)
        if isinstance(model, str) and self.family.load_class:
            # The checkpoint holds more than the trainable model (an Omni thinker + talker): load the family's class
            # for the policy and, in full fine-tuning, for the reference TRL would otherwise load from the same path
            from .models import load_family_model

            if ref_model is None and peft_config is None:
                ref_model = load_family_model(model, self.family, args)
            model = load_family_model(model, self.family, args, quantization_config)
            quantization_config = None  # applied at load

        self._share_video_encoding: bool | None = None  # decided once the model is wrapped (see _configure_video)
        self._prefix_sharing = False
        self._prefix_attention = "dense"  # how packed branches are kept apart: see configure_prefix_attention
        self._logged_dense_batch = False
        self._total_dropped = 0  # pairs dropped for length, over the whole run (logged, in trainer_state.json)
        self._pairs_trained = 0  # pairs that reached a training forward in the current `train()` call
        self.degenerate_dropped: Counter = Counter()  # reason -> rows dropped before training
        if data_collator is None:
            data_collator = VideoPreferenceCollator(
                self.video_processor,
                max_length=args.max_length,
                too_long_policy=args.too_long_policy,
                share_video_encoding=args.share_video_encoding,
            )
        # the collator whose max_length the rows are counted against before training (`_prepare_dataset`)
        self._length_collator = data_collator if isinstance(data_collator, VideoPreferenceCollator) else None
        if eval_dataset is not None:
            for name, dataset in eval_dataset.items() if isinstance(eval_dataset, dict) else [("eval", eval_dataset)]:
                check_columns(dataset, name)

        super().__init__(
            model=model,
            ref_model=ref_model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=self.video_processor.processor,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        self._configure_video()
        plugin = fsdp_plugin(self)
        check_fsdp2_versions(plugin)
        configure_fsdp_wrap(self.model, plugin)
        if self.is_fsdp_enabled:
            install_output_head_unshard(_unwrap_peft(self.model))

    # --- data (checks in tpo_hf.dataset_checks) ---------------------------------------------------------------------
    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        # Videos are decoded and tokenized on the fly in the collator: the rows are only checked and indexed here, and
        # those too long for max_length counted (or refused) from token counts
        placeholders = placeholder_tokens(self.video_processor.processor)
        dataset = video_paths_column(dataset, dataset_name)  # an eval dataset's (the train one's is done)
        dataset = drop_ref_logps_columns(dataset, dataset_name, args.precompute_ref_log_probs)
        dataset, dropped = check_rows(dataset, dataset_name, args.loss_type, placeholders)
        if self._length_collator is not None:
            check_lengths(dataset, dataset_name, self._length_collator)
        if dataset_name == "train":
            self.degenerate_dropped.update(dropped)
        return dataset

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = [
                *REQUIRED_COLUMNS,
                ROW_INDEX_COLUMN,
                "ref_chosen_logps",
                "ref_rejected_logps",
            ]

    # --- shared video encoding and prefix sharing (decided in tpo_hf.model_setup) -----------------------------------
    def _configure_video(self) -> None:
        """Freezes the vision side (full fine-tuning), decides whether the video encoding can be shared, and turns
        prefix sharing on where it can run."""
        if self._share_video_encoding is not None:
            return
        model = self.accelerator.unwrap_model(self.model) if hasattr(self, "accelerator") else self.model
        share = configure_vision(model, self.family, self.args)
        self._share_video_encoding = share
        if isinstance(self.data_collator, VideoPreferenceCollator):
            self.data_collator.share_video_encoding = share
        if self.args.prefix_sharing:
            # The forwards TRL patched with its fused LM head: the base model under PEFT, and a separate reference
            models = [_unwrap_peft(model)]
            if self.ref_model is not None:
                models.append(self.accelerator.unwrap_model(self.ref_model))
            attention = configure_prefix_sharing(models, self.family, self.args.prefix_sharing_attention)
            if attention is not None:
                self._prefix_attention, self._prefix_sharing = attention, True
        if self.family.is_moe:
            # After prefix sharing, so the aux loss sees the packed call; on the reference too, which must never
            # compute an aux loss over the packed 4D mask
            install_router_aux_loss(_unwrap_peft(model), self.family)
            if self.ref_model is not None:
                install_router_aux_loss(self.accelerator.unwrap_model(self.ref_model), self.family)

    def _to_model_inputs(self, model: Any, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """Strips bookkeeping keys and turns `pair_*` video tensors into shared `mm_encoder_outputs`.

        Returns `None` for a batch whose pairs were all dropped for length.
        """
        inputs = dict(inputs)
        num_dropped = inputs.get(NUM_DROPPED_KEY)
        if num_dropped is not None:
            self._total_dropped += int(num_dropped)
        for key in BOOKKEEPING_KEYS:
            inputs.pop(key, None)
        if "input_ids" not in inputs:
            return None
        pair_inputs = {key[len(PAIR_PREFIX) :]: inputs.pop(key) for key in list(inputs) if key.startswith(PAIR_PREFIX)}
        base_model = _unwrap_peft(self.accelerator.unwrap_model(model))
        encoded = None
        if pair_inputs:
            # The vision side is frozen (checked in _configure_video): no graph needed through it
            with torch.no_grad():
                encoded = encode_videos(
                    model,
                    base_model,
                    self.family,
                    pair_inputs,
                    is_fsdp=getattr(self, "is_fsdp_enabled", False),
                    is_deepspeed=getattr(self, "is_deepspeed_enabled", False),
                )
        if self._prefix_sharing:
            return self._packed_inputs(base_model, inputs, encoded)
        if encoded is not None:
            inputs["mm_encoder_outputs"] = self.family.repeat_encoder_output(encoded, times=2)
        return inputs

    def _packed_inputs(self, base_model: Any, inputs: dict[str, Any], encoded: Any) -> dict[str, Any]:
        """Row-layout batch -> what TRL reads (row ids and masks) plus the packed forward under `prefix_sharing`.

        The rope positions are computed on the rows (the model's own function), the video inputs kept once per pair.
        """
        family = self.family
        positions = row_position_ids(base_model, inputs, family)
        sequence_inputs = {key: inputs[key] for key in family.sequence_keys if key in inputs}
        packed = pack_pairs(
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["completion_mask"],
            positions,
            sequence_inputs,
            mask_dtype=attention_mask_dtype(base_model) or torch.bool,
            attention=self._prefix_attention,
        )
        if self._prefix_attention == "auto" and not packed.stats["segment_attention"] and not self._logged_dense_batch:
            self._logged_dense_batch = True
            logger.info(
                "prefix sharing: packed length %d <= %d, this and other short batches use the dense block mask "
                "(faster than per-pair segment calls there)",
                packed.stats["packed_length"],
                DENSE_MAX_PACKED_LENGTH,
            )
        num_pairs = inputs["input_ids"].size(0) // 2
        for key in family.video_keys:
            if key in inputs:
                # The collator repeats per-video inputs for the chosen then the rejected rows: keep the first copy
                packed.model_kwargs[key] = inputs[key][: inputs[key].size(0) // 2]
        if encoded is not None:
            packed.model_kwargs["mm_encoder_outputs"] = family.repeat_encoder_output(encoded, times=1)
        row_keys = ("input_ids", "attention_mask", "completion_mask", "ref_chosen_logps", "ref_rejected_logps")
        packed.stats["pairs"] = num_pairs
        self._last_packing_stats = packed.stats
        return {**{key: inputs[key] for key in row_keys if key in inputs}, PREFIX_SHARING_KWARG: packed}

    def _empty_batch_loss(self, model: Any) -> torch.Tensor:
        # Every pair of this batch was dropped for length: a zero loss that still touches every trainable weight,
        # so the optimizer step and distributed gradient sync proceed as usual.
        return sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)

    def _compute_loss(self, model, inputs, return_outputs):
        model_inputs = self._to_model_inputs(model, inputs)
        mode = "train" if self.model.training else "eval"
        # logged for every batch, empty ones included, so a run that drops everything shows it in its logs
        self._metrics[mode]["too_long/dropped_total"] = [self._total_dropped]
        if model_inputs is None:
            loss = self._empty_batch_loss(model)
            return (loss, None) if return_outputs else loss
        if mode == "train":
            self._pairs_trained += model_inputs["input_ids"].size(0) // 2
        return super()._compute_loss(model, model_inputs, return_outputs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "train_loss" in logs:
            # the run's summary entry (last of trainer_state.json's log_history) carries the drop counts too
            logs["too_long/dropped_total"] = self._total_dropped
            logs["degenerate/dropped_total"] = sum(self.degenerate_dropped.values())
        super().log(logs, start_time)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """`Trainer.train`, resuming from the latest *complete* checkpoint with `resume_from_checkpoint=True`, and
        refusing to end "successfully" when no pair was trained on (e.g. every pair longer than `max_length`).

        Raises:
            NoTrainingDataError: optimizer steps ran but every pair of them was dropped; nothing is saved.
            OutputDirLockedError: another run is writing `output_dir` (`tpo_hf.locks`).
        """
        with output_dir_lock(self.args.output_dir, "train"):
            return self._train_locked(resume_from_checkpoint, **kwargs)

    def _train_locked(self, resume_from_checkpoint: str | bool | None, **kwargs: Any):
        resume_from_checkpoint = resolve_checkpoint(
            resume_from_checkpoint, self.args.output_dir, self.args.should_save
        )
        check_resume_settings(self, resume_from_checkpoint)
        if self.args.should_save:  # a card edited by hand since the last run is kept, not written over
            from .hub.model_card import keep_edited_readme

            keep_edited_readme(self.args.output_dir)
        self._pairs_trained = 0
        start_step = self.state.global_step
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        ran_steps = self.state.global_step > start_step and (
            resume_from_checkpoint is None or self.state.global_step > checkpoint_step(resume_from_checkpoint)
        )
        trained = self._pairs_trained
        if ran_steps and self.accelerator.num_processes > 1:  # every rank takes the same decision
            count = torch.tensor(trained, device=self.accelerator.device)
            trained = int(self.accelerator.reduce(count, reduction="sum").item())
        if ran_steps and trained == 0:
            raise NoTrainingDataError(
                f"No pair was trained on in {self.state.global_step - start_step} step(s): all "
                f"{self._total_dropped} pairs seen were dropped as longer than max_length={self.args.max_length} "
                "(prompt with its video tokens + answer). Raise max_length, or lower num_frames / max_pixels; the "
                "dropped rows are named in the warnings above. Nothing was saved as a trained model."
            )
        return output

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        # a full fine-tune's checkpoint is saved in the original key layout, which `Trainer`'s plain
        # `load_state_dict` does not convert (it matched no key and trained on from the base weights)
        if (model is None or model is self.model) and not self.is_fsdp_enabled:
            if holds_full_weights(resume_from_checkpoint):
                return load_full_weights(self.model, resume_from_checkpoint)
        return super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        # `load_best_model_at_end` of a full fine-tune: `Trainer` loads the best checkpoint with the same plain
        # `load_state_dict`, which matched none of its keys and kept the last step's weights as "the best model"
        best = self.state.best_model_checkpoint
        if best and not (self.is_deepspeed_enabled or self.is_fsdp_enabled) and holds_full_weights(best):
            logger.info("Loading best model from %s (score: %s).", best, self.state.best_metric)
            return load_full_weights(self.model, best)
        return super()._load_best_model()

    def _save_checkpoint(self, model, trial) -> None:
        check_lock_held(self.args.output_dir)  # not into a folder removed under this run (perhaps another run's now)
        save_complete_checkpoint(self, functools.partial(super()._save_checkpoint, model, trial), trial)

    def compute_ref_log_probs(self, model, inputs):
        """Reference log-probs of one batch, scattered back to the positions of the batch's examples.

        Pairs dropped for length get NaN, so precomputed values stay aligned with the dataset rows.
        """
        self._configure_video()
        batch_size = int(inputs[BATCH_SIZE_KEY])
        kept = inputs[KEPT_POSITIONS_KEY].to(self.accelerator.device)
        model_inputs = self._to_model_inputs(model, inputs)
        chosen = torch.full((batch_size,), float("nan"), device=self.accelerator.device)
        rejected = chosen.clone()
        if model_inputs is not None:
            kept_chosen, kept_rejected = super().compute_ref_log_probs(model, model_inputs)
            chosen[kept] = kept_chosen.float()
            rejected[kept] = kept_rejected.float()
        return chosen, rejected

    def ref_logps_key(self, dataset: Any) -> dict[str, Any]:
        """What the precomputed reference log-probs of `dataset` depend on beyond its rows: the reference weights
        (`reference_weights_hash`: with LoRA the base's, not the adapter's initialisation), the video files (by name,
        size and content: not their path nor time, `video_file_identity`), the frame and pixel settings, the
        processor's own image and video processing (its `processor_config.json`: resize budget, patch size), length
        handling, the chat template, the video prompt layout and the format. Any change recomputes them instead of
        reusing another run's values, with a warning naming it."""
        videos = sorted(set(dataset["video"])) if "video" in (dataset.column_names or []) else []
        processor = self.video_processor
        return {
            "reference": self._tpo_reference_hash,
            "video_settings": processor.video_settings(),
            # what the frames become before the model sees them: a pixel budget edited in processor_config.json
            **processor_configs(processor.processor),
            # each video by its name and its file's size and content, not its path nor time: the dataset given by a
            # relative or an absolute path, moved or copied, reuses its reference log-probs
            "videos": {str(video): video_file_identity(processor.resolve_video(video)) for video in videos},
            "max_length": self.args.max_length,
            "too_long_policy": self.args.too_long_policy,
            # how the reference pass runs and sums: mixed precision, and TRL's weight on the tokens past the shorter answer
            "mixed_precision": "bf16" if self.args.bf16 else "fp16" if self.args.fp16 else "no",
            "ld_alpha": getattr(self.args, "ld_alpha", None),
            "chat_template": getattr(processor.processor, "chat_template", None),
            # what the model reads around the frames (timestamps, separators): differs between transformers releases
            "video_prompt_layout": processor.video_prompt_layout(),
            "family": self.family.name,
            "format": REF_LOGPS_FORMAT_VERSION,
        }

    def _earlier_ref_logps_key(self, dataset: Any, key: dict[str, Any]) -> dict[str, Any]:
        """`key` with its videos as tpo-hf keyed them before content hashing (size and modification time), where
        reference log-probs were cached under that key and none under `key`: after an upgrade they are reused while
        the video files are untouched since; else `key`."""
        resolve = self.video_processor.resolve_video
        earlier = {**key, "videos": {v: video_file_identity(resolve(v), earlier=True) for v in key["videos"]}}

        def cached(candidate: dict[str, Any]) -> bool:
            file = ref_logps_cache_file(dataset, key_hash(candidate))
            if file is None:
                return False
            # beside the dataset, or under tpo-hf's cache where its folder could not be written
            elsewhere = fallback_cache_folder(os.path.dirname(file)) / os.path.basename(file)
            return os.path.exists(file) or elsewhere.exists()

        return earlier if earlier != key and cached(earlier) and not cached(key) else key

    def _precompute_ref_logps(self, dataset, name, batch_size):
        self._configure_video()
        # TRL keys its cache file by (dataset fingerprint, this hash): widen the hash to everything the values
        # depend on, so other frames, pixels or re-encoded videos never reuse stale reference log-probs
        if not hasattr(self, "_tpo_reference_hash"):
            self._tpo_reference_hash = reference_weights_hash(self.model, self.ref_model, self._precompute_model_hash)
        key = self._earlier_ref_logps_key(dataset, self.ref_logps_key(dataset))
        self._precompute_model_hash = key_hash(key)
        # a dataset folder that cannot be written (a read-only mount) gets its cache under tpo-hf's cache instead
        elsewhere = ref_logps_cache_folder(self, dataset, ref_logps_cache_file(dataset, self._precompute_model_hash))
        with cache_files_in(dataset, elsewhere):
            drop_damaged_ref_logps_cache(self, dataset)  # a cache file cut short is named and recomputed
            cache_file = ref_logps_cache_file(dataset, self._precompute_model_hash)
            if self.accelerator.is_main_process:
                name_ref_logps_changes(dataset, cache_file, key)
            try:
                with_ref_logps = super()._precompute_ref_logps(dataset, name, batch_size)
            except Exception as error:
                raise_if_cache_write_failed(error, cache_file)
                raise
        if self.accelerator.is_main_process:
            record_ref_logps_key(dataset, cache_file, key)
        return with_ref_logps

    # --- saving -----------------------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict=None):
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:  # a hard-linked backup of the folder keeps its files (some are written in place)
            unshare_hard_links(output_dir)
        super()._save(output_dir, state_dict)
        # The video settings travel with the processor, so `VideoPreferenceProcessor.from_pretrained` restores them
        if self.args.should_save:
            self.video_processor.save_pretrained(output_dir)

    # --- Hub: model card and push (tpo_hf.hub.training_publish) ----------------------------------------------------
    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | list[str] | None = None,
        tags: str | list[str] | None = None,
        eval_results: list[Any] | None = None,
        license: str | None = None,
        output_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Writes the TPO model card (`hub_cards/model_card.md`), the training-curve PNG and the run info.

        Replaces TRL's generic card: the card holds the hyperparameters actually used, the final loss, reward
        accuracy and margin, and `eval_results` (`EvalResult`s or dicts) as `model-index`. `dataset_name`,
        `eval_results` and `license` given once are kept for the cards written by later saves.
        """
        from .hub.training_publish import write_training_card

        write_training_card(self, output_dir, model_name, dataset_name, tags, eval_results, license)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if _internal_call:  # a checkpoint's save: `save_complete_checkpoint` names a full disk there
            return super().save_model(output_dir, _internal_call)

        def save() -> None:
            super(TPOTrainer, self).save_model(output_dir, _internal_call)
            # A user-facing save writes the card too, so every saved folder is ready for `tpo-hf push`
            if not self.args.push_to_hub:
                self.create_model_card(output_dir=output_dir)

        from .hub.push import PushError  # push_to_hub: the upload after the save fails on its own terms

        check_lock_held(self.args.output_dir)  # the run's folder removed under it: stop rather than write there

        # a full disk is named, with what can be resumed, and leaves no half-written model
        save_final_model(self, save, output_dir if output_dir is not None else self.args.output_dir, (PushError,))

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        from .hub.training_publish import create_training_repo

        create_training_repo(self, super().init_hf_repo, token=token, private=private)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Saves, then uploads adapter + processor + model card + training-curve PNG in one commit.

        `kwargs` go to `create_model_card` (`dataset_name`, `eval_results`, `tags`, `license`). The upload is
        always blocking. On failure a `tpo_hf.hub.push.PushError` names the folder and the command to rerun.
        """
        from .hub.training_publish import push_training_run

        return push_training_run(self, commit_message, token=token, revision=revision, private=private, **kwargs)
