"""TPOTrainer end to end on tiny models: LoRA for every family, shared encoding, QLoRA, precomputed reference,
gradient checkpointing, adapter save/reload."""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel

from tests.conftest import ALL_FAMILIES, preference_rows
from tpo_hf import TPOConfig, TPOTrainer, VideoPreferenceCollator, VideoPreferenceProcessor
from tpo_hf.tiny import tiny_tpo_config


def make_args(tmp_path, video_dir, **overrides):
    settings = dict(video_root=str(video_dir), max_steps=2, learning_rate=1e-3, warmup_ratio=0.0, disable_tqdm=True)
    return tiny_tpo_config(tmp_path / "out", **{**settings, **overrides})


def lora():
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0)


def sequence_logps(trainer, batch):
    """Summed answer log-probs of every row of a collated batch under the current policy (chosen rows first)."""
    inputs = trainer._to_model_inputs(trainer.model, batch)
    mask = inputs.pop("completion_mask")
    labels = inputs["input_ids"].masked_fill(mask == 0, -100)
    with torch.no_grad():
        out = trainer.model(**inputs, labels=labels, fused_lm_head=True, use_cache=False)
    return (out.log_probs * mask[:, 1:]).sum(dim=1)


def trainable_snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_lora_training_every_family(family, tiny_model, preference_dataset, video_dir, tmp_path):
    model, processor = tiny_model(family)
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir),
        train_dataset=preference_dataset(),
        processing_class=processor,
        peft_config=lora(),
    )
    assert trainer._share_video_encoding
    before = trainable_snapshot(trainer.model)
    vision = trainer.family.vision_modules
    assert before and all("lora_" in name for name in before)
    assert not any(f".{m}." in f".{name}." for name in before for m in vision)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    unchanged = [n for n, p in trainer.model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert not unchanged, f"LoRA parameters that did not change: {unchanged[:3]}"

    # The video is really used: the same text with another video scores differently
    rows = preference_rows()[:1]
    other = [dict(rows[0], video="green_yellow.mp4")]
    collator = trainer.data_collator
    assert not torch.allclose(sequence_logps(trainer, collator(rows)), sequence_logps(trainer, collator(other)))

    # Shared and per-row video encoding give the same log-probs
    two_pairs = preference_rows()[:2]
    shared = VideoPreferenceCollator(trainer.video_processor, share_video_encoding=True)(two_pairs)
    unshared = VideoPreferenceCollator(trainer.video_processor, share_video_encoding=False)(two_pairs)
    pixel_key = trainer.family.encoder_input_keys[0]
    assert f"pair_{pixel_key}" in shared and pixel_key in unshared
    torch.testing.assert_close(sequence_logps(trainer, shared), sequence_logps(trainer, unshared), atol=1e-5, rtol=0)


def test_trainable_vision_falls_back_to_per_row_encoding(tiny_model, preference_dataset, video_dir, tmp_path, caplog):
    model, processor = tiny_model("qwen2_vl")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "q_proj", "v_proj"])  # "qkv" is in the vision tower
    with caplog.at_level("WARNING"):
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, max_steps=1),
            train_dataset=preference_dataset(),
            processing_class=processor,
            peft_config=config,
        )
    assert trainer._share_video_encoding is False
    assert "share_video_encoding is off" in caplog.text
    assert "pixel_values_videos" in trainer.data_collator(preference_rows()[:1])
    trainer.train()


def test_conversational_dataset_with_activation_checkpointing(tiny_model, preference_dataset, video_dir, tmp_path):
    model, processor = tiny_model("qwen2_5_vl")
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, activation_checkpointing=True),
        train_dataset=preference_dataset(conversational=True),
        processing_class=processor,
        peft_config=lora(),
    )
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert all(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters() if p.requires_grad)


def test_precomputed_reference_log_probs(tiny_model, preference_dataset, video_dir, tmp_path):
    model, processor = tiny_model("qwen2_vl")
    dataset = preference_dataset()
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, precompute_ref_log_probs=True),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora(),
    )
    columns = trainer.train_dataset.column_names
    assert "ref_chosen_logps" in columns and "ref_rejected_logps" in columns
    precomputed = torch.tensor(trainer.train_dataset["ref_chosen_logps"])
    assert torch.isfinite(precomputed).all()
    # They are the adapter-disabled model's log-probs for the chosen answers
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with trainer.model.disable_adapter():
        reference = sequence_logps(trainer, batch)[:2]
    torch.testing.assert_close(precomputed[:2], reference, atol=1e-4, rtol=0)
    trainer.train()
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)


def test_precompute_keeps_rows_aligned_when_pairs_are_dropped(tiny_model, preference_dataset, video_dir, tmp_path):
    model, processor = tiny_model("qwen2_vl")
    rows = preference_rows()
    rows[1]["chosen"] = "a long answer " * 60
    from datasets import Dataset

    probe = VideoPreferenceProcessor(processor, num_frames=4, video_root=video_dir)
    prompt_len = len(probe.encode_pair(rows[0]["prompt"], rows[0]["video"], "x", "y").prompt_ids)
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, precompute_ref_log_probs=True, max_length=prompt_len + 40),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        peft_config=lora(),
    )
    chosen = trainer.train_dataset["ref_chosen_logps"]
    assert math.isnan(chosen[1]) and math.isnan(chosen[3])  # the too-long rows
    assert all(math.isfinite(chosen[i]) for i in (0, 2))
    trainer.train()
    assert trainer.state.log_history[-2]["too_long/dropped_total"] > 0


@pytest.mark.require_torch_accelerator
def test_lora_trains_on_accelerator_in_bf16(tmp_path, tiny_model, preference_dataset, video_dir):
    """On a GPU: bf16 LoRA training with shared encoding and prefix sharing runs, logs a finite loss, moves weights."""
    model, processor = tiny_model("qwen2_5_vl")
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, use_cpu=False, bf16=True),
        train_dataset=preference_dataset(),
        processing_class=processor,
        peft_config=lora(),
    )
    assert trainer.model.device.type != "cpu"
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    unchanged = [n for n, p in trainer.model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert not unchanged, f"LoRA parameters that did not change: {unchanged[:3]}"


# QLoRA on every family added after the first five (Qwen2.5-VL stands for the Qwen-VL and LLaVA ones)
QLORA_FAMILIES = [
    "qwen2_5_vl",
    "qwen3_vl_moe",
    "smolvlm",
    "internvl",
    "glm4v",
    "glm4v_moe",
    "video_llama_3",
    "qwen2_5_omni",
    "qwen3_omni_moe",
]


def _qlora_trainer(family, tiny_model_dirs, preference_dataset, video_dir, tmp_path, **settings):
    from transformers import BitsAndBytesConfig

    model_dir = tiny_model_dirs(family)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    return TPOTrainer(
        str(model_dir),
        args=make_args(tmp_path, video_dir, model_init_kwargs={"dtype": "float32"}, **settings),
        train_dataset=preference_dataset(),
        processing_class=VideoPreferenceProcessor.from_pretrained(model_dir, num_frames=4, video_root=video_dir),
        quantization_config=quantization,
        peft_config=lora(),
    )


@pytest.mark.require_bitsandbytes
@pytest.mark.parametrize("family", QLORA_FAMILIES)
def test_qlora_4bit_trains_on_cpu(family, tiny_model_dirs, preference_dataset, video_dir, tmp_path):
    trainer = _qlora_trainer(family, tiny_model_dirs, preference_dataset, video_dir, tmp_path)
    base = trainer.model.get_base_model()
    assert base.is_loaded_in_4bit
    entry = trainer.family
    modules = dict(base.named_modules())
    quantized = [name for name, module in modules.items() if "4bit" in type(module).__name__]
    # The language model's LoRA-targeted linears are 4-bit; the vision side (and Omni's audio tower) stays in full
    # precision, as the registry's `vision_modules` say
    targets = [name for name in modules if re.fullmatch(entry.lora_target_modules, name)]
    assert targets and all(f"{name}.base_layer" in quantized for name in targets), targets[:3]
    assert not [name for name in quantized if any(f".{m}." in f".{name}." for m in entry.vision_modules)]
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert len(changed) == len(before)


@pytest.mark.parametrize(
    "family",
    ["qwen2_vl", "qwen3_vl_moe", "smolvlm", "internvl", "glm4v", "video_llama_3", "qwen2_5_omni", "qwen3_omni_moe"],
)
def test_saved_adapter_reloads_and_reproduces_logits(family, tiny_model_dirs, preference_dataset, video_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    model_dir = tiny_model_dirs(family)
    processor = VideoPreferenceProcessor.from_pretrained(model_dir, num_frames=4, video_root=video_dir)
    trainer = TPOTrainer(
        str(model_dir),
        args=make_args(tmp_path, video_dir),
        train_dataset=preference_dataset(),
        processing_class=processor,
        peft_config=lora(),
    )
    trainer.train()
    adapter_dir = tmp_path / "adapter"
    trainer.save_model(str(adapter_dir))
    assert (adapter_dir / "adapter_config.json").exists() and (adapter_dir / "tpo_video_config.json").exists()

    inputs = processor.generation_inputs(["What happens?"], ["red_blue.mp4"])
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**inputs).logits
    base = AutoModelForImageTextToText.from_pretrained(model_dir)
    reloaded = PeftModel.from_pretrained(base, adapter_dir).eval()
    reloaded_processor = VideoPreferenceProcessor.from_pretrained(adapter_dir, video_root=video_dir)
    assert reloaded_processor.num_frames == 4
    with torch.no_grad():
        actual = reloaded(**reloaded_processor.generation_inputs(["What happens?"], ["red_blue.mp4"])).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="num_frames"):
        TPOConfig("out", num_frames=None, video_fps=None)
    with pytest.raises(ValueError, match="sft_weight"):
        TPOConfig("out", sft_weight=-1)
    with pytest.raises(ValueError, match="too_long_policy"):
        TPOConfig("out", too_long_policy="truncate")
    config = TPOConfig("out", bf16=False)
    assert config.loss_type == ["sigmoid", "sft"] and config.loss_weights == [1.0, 0.5] and config.beta == 0.3
    assert TPOConfig("out", sft_weight=0.0, bf16=False).loss_type == ["sigmoid"]


def test_missing_columns_are_named(tiny_model, video_dir, tmp_path):
    from datasets import Dataset

    model, processor = tiny_model("qwen2_vl")
    dataset = Dataset.from_list([{"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['video'\]"):
        TPOTrainer(model, args=make_args(tmp_path, video_dir), train_dataset=dataset, processing_class=processor)


def test_qwen2_5_omni_checkpoint_trains_and_serves_its_thinker(preference_dataset, video_dir, tmp_path):
    """A Qwen2.5-Omni checkpoint (thinker + talker config, weights under `thinker.`) trains and loads as the thinker
    alone (the family's `load_class`), policy and reference, with no audio input anywhere."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    from tpo_hf.models import load_video_model
    from tpo_hf.tiny import build_tiny_model

    thinker, processor = build_tiny_model("qwen2_5_omni")
    omni = Qwen2_5OmniForConditionalGeneration(
        Qwen2_5OmniConfig(thinker_config=thinker.config.to_dict(), enable_audio_output=False)
    )
    omni.thinker.load_state_dict(thinker.state_dict())
    checkpoint = tmp_path / "omni"
    omni.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)

    # full fine-tuning: TRL would load the reference from the same path, so it is the thinker too
    trainer = TPOTrainer(
        str(checkpoint), args=make_args(tmp_path, video_dir, max_steps=1), train_dataset=preference_dataset()
    )
    for model in (trainer.model, trainer.ref_model):
        assert type(model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    torch.testing.assert_close(trainer.model.lm_head.weight, thinker.lm_head.weight)
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    # the model card says audio was off
    from tpo_hf.hub.model_card import trainer_model_card

    assert "| Inputs | video frames and text; audio off" in str(trainer_model_card(trainer))

    served, served_processor = load_video_model(checkpoint, num_frames=4, video_root=video_dir, device="cpu")
    assert type(served).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    assert served_processor.family.name == "qwen2_5_omni"
    assert len(served_processor.generate(served, ["What?"], ["red_blue.mp4"], max_new_tokens=2)) == 1


def _full_finetune(model_dir, tmp_path, video_dir, preference_dataset, **overrides):
    """A full fine-tune (no LoRA) of the saved tiny model, saving a checkpoint every step into tmp_path/out."""
    settings = dict(max_steps=1, save_strategy="steps", save_steps=1, lr_scheduler_type="constant") | overrides
    return TPOTrainer(
        str(model_dir), args=make_args(tmp_path, video_dir, **settings), train_dataset=preference_dataset(repeat=1)
    )


def test_full_finetune_resume_loads_the_checkpoint_weights(tiny_model_dirs, preference_dataset, video_dir, tmp_path):
    """Probe a/G15: a full fine-tune's checkpoint is saved in the original key layout; the resume matched none of its
    keys (transformers only logged "missing keys") and trained on from the base weights. Now the weights are loaded
    with the model's key conversion, and a checkpoint whose weights do not fit the model is refused, naming them."""
    from safetensors.torch import load_file, save_file

    from tpo_hf.checkpoints import CheckpointError

    model_dir = tiny_model_dirs("qwen2_5_vl")
    first = _full_finetune(model_dir, tmp_path, video_dir, preference_dataset, learning_rate=1e-2)
    base = {name: p.detach().clone() for name, p in first.model.named_parameters()}
    first.train()
    trained = {name: p.detach().clone() for name, p in first.model.named_parameters()}
    assert any(not torch.equal(trained[name], base[name]) for name in base)

    # the run is finished at step 1: the resume only loads the checkpoint (a fresh trainer starts from the base)
    resumed = _full_finetune(model_dir, tmp_path, video_dir, preference_dataset, learning_rate=1e-2)
    resumed.train(resume_from_checkpoint=True)
    for name, param in resumed.model.named_parameters():
        torch.testing.assert_close(param.detach(), trained[name], rtol=0, atol=0, msg=name)

    weights = tmp_path / "out" / "checkpoint-1" / "model.safetensors"
    tensors = load_file(weights)
    dropped = next(name for name in sorted(tensors) if "visual" in name)
    save_file({name: t for name, t in tensors.items() if name != dropped}, weights, metadata={"format": "pt"})
    missing = rf"checkpoint-1: its weights do not match .*1 missing from the checkpoint \(\S*{re.escape(dropped)}\)"
    with pytest.raises(CheckpointError, match=missing):
        resumed._load_from_checkpoint(str(weights.parent))


def test_full_finetune_best_model_at_end_loads_the_best_checkpoint(
    tiny_model_dirs, preference_dataset, video_dir, tmp_path
):
    """`load_best_model_at_end` of a full fine-tune: `Trainer._load_best_model` reads the best checkpoint with the
    plain `load_state_dict` that matched none of its keys (as the resume of a/G15), so the last step's weights were
    kept and saved as "the best model". The best checkpoint's weights are now loaded with the key conversion."""
    model_dir = tiny_model_dirs("qwen2_5_vl")
    trainer = _full_finetune(model_dir, tmp_path, video_dir, preference_dataset, learning_rate=1e-2, max_steps=2)
    trainer.train()
    last = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    best = tmp_path / "out" / "checkpoint-1"
    expected = dict(type(trainer.model).from_pretrained(best).named_parameters())
    assert any(not torch.equal(expected[name], last[name]) for name in last)

    trainer.state.best_model_checkpoint = str(best)  # as `Trainer` records it when step 1 scored best
    trainer._load_best_model()
    for name, param in trainer.model.named_parameters():
        torch.testing.assert_close(param.detach(), expected[name], rtol=0, atol=0, msg=name)


def test_resume_with_a_longer_decaying_schedule_is_named(tiny_model, preference_dataset, video_dir, tmp_path, caplog):
    """Probe a/G3: a finished cosine run resumed with a raised max_steps trained its next step at the learning rate the
    old schedule had decayed to (0 at its end), with no word; the mixed schedule is now named, with what to do."""

    def trainer(max_steps):
        model, processor = tiny_model("qwen2_5_vl")
        settings = dict(max_steps=max_steps, save_strategy="steps", save_steps=1, lr_scheduler_type="cosine")
        args = make_args(tmp_path, video_dir, **settings)
        return TPOTrainer(
            model, args=args, train_dataset=preference_dataset(), processing_class=processor, peft_config=lora()
        )

    trainer(1).train()
    with caplog.at_level("WARNING", logger="tpo_hf.checkpoints"):
        resumed = trainer(2)
        resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 2
    assert re.search(
        r"checkpoint-1 with max_steps 1 -> max_steps 2 under the cosine learning-rate schedule", caplog.text
    )
    assert "train a fresh run with max_steps 2 into another output_dir" in caplog.text
    assert "lr_scheduler_type constant" in caplog.text


def test_a_bare_checkpoint_name_is_read_in_output_dir(tmp_path, monkeypatch, caplog):
    """Probe a/G6: `--resume_from_checkpoint checkpoint-2` (the name `ls output_dir` shows) was read from the current
    folder and called "incomplete (its save was interrupted)", "pass that path" naming none. It is now found in
    output_dir (and said so); a path found nowhere is said not to exist, naming output_dir's newest checkpoint."""
    import json

    from safetensors.torch import save_file

    from tpo_hf.checkpoints import CHECKPOINT_COMPLETE_FILE, resolve_checkpoint

    output_dir = tmp_path / "run"
    checkpoint = output_dir / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    torch.save({}, checkpoint / "optimizer.pt")
    torch.save({}, checkpoint / "scheduler.pt")
    save_file({"weight": torch.zeros(2)}, checkpoint / "model.safetensors")
    (checkpoint / CHECKPOINT_COMPLETE_FILE).write_text(json.dumps({"global_step": 2}))
    monkeypatch.chdir(tmp_path)  # beside output_dir, not in it
    with caplog.at_level("INFO", logger="tpo_hf.checkpoints"):
        assert resolve_checkpoint("checkpoint-2", "run", should_save=True) == str(Path("run") / "checkpoint-2")
    assert "checkpoint-2 read relative to output_dir" in caplog.text
    with pytest.raises(ValueError, match=r"checkpoint-3 does not exist \(read relative to the current folder") as info:
        resolve_checkpoint("checkpoint-3", "run", should_save=True)
    assert f"newest complete checkpoint of output_dir is {Path('run') / 'checkpoint-2'}: pass that path" in str(
        info.value
    )
    assert "interrupted" not in str(info.value)


@contextlib.contextmanager
def read_only_later(folder: Path):
    """`folder`, writable until the function this yields is called, read-only after: a small tmpfs remounted
    read-only where the tests run as root (as in CI: chmod stops no write of root's), its write bits taken away
    otherwise. Skips where root may not mount."""
    folder.mkdir()
    if os.geteuid() != 0:

        def set_mode(mode):
            for path in [folder, *folder.rglob("*")]:
                if path.is_dir():
                    path.chmod(mode)

        try:
            yield lambda: set_mode(0o555)
        finally:
            set_mode(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here: as root only a read-only mount stops writes")
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _ref_logps_trainer(tiny_model, dataset, video_dir, out, **settings):
    model, processor = tiny_model("qwen2_vl")
    args = make_args(out, video_dir, precompute_ref_log_probs=True, **settings)
    return TPOTrainer(model, args=args, train_dataset=dataset, processing_class=processor, peft_config=lora())


def test_precompute_on_a_read_only_dataset_folder_caches_under_tpo_hf_cache(
    tiny_model, preference_dataset, video_dir, tmp_path, monkeypatch
):
    """Probe a/h7: precompute_ref_log_probs on a dataset folder on a read-only mount (shared data) ended, after the
    model load, in a raw `OSError: [Errno 30] Read-only file system` from the cache file TRL writes beside the
    dataset. That file now goes, under the same name, to the dataset's folder under TPO_HF_CACHE, and is reused from
    there; a cache computed beside the dataset before it became read-only is still read there."""
    from datasets import load_from_disk

    monkeypatch.setenv("TPO_HF_CACHE", str(tmp_path / "tpo-cache"))
    with read_only_later(tmp_path / "shared") as make_read_only:
        preference_dataset().save_to_disk(str(tmp_path / "shared" / "data"))
        dataset = load_from_disk(str(tmp_path / "shared" / "data"))
        beside = _ref_logps_trainer(tiny_model, dataset, video_dir, tmp_path / "a").train_dataset["ref_chosen_logps"]
        cached_beside = sorted(path.name for path in (tmp_path / "shared" / "data").glob("cache-*.arrow"))
        assert cached_beside
        make_read_only()
        with pytest.raises(OSError):
            (tmp_path / "shared" / "data" / "probe").write_text("x")

        # the same key: read beside the dataset, nothing written elsewhere
        again = _ref_logps_trainer(tiny_model, dataset, video_dir, tmp_path / "b").train_dataset["ref_chosen_logps"]
        assert again == beside
        assert not (tmp_path / "tpo-cache" / "ref-logps").exists()

        # another key (max_length): computed, and written under TPO_HF_CACHE
        trainer = _ref_logps_trainer(tiny_model, dataset, video_dir, tmp_path / "c", max_length=4096)
        computed = trainer.train_dataset["ref_chosen_logps"]
        assert all(math.isfinite(value) for value in computed)
        elsewhere = list((tmp_path / "tpo-cache" / "ref-logps").glob("data-*/cache-*.arrow"))
        assert len(elsewhere) == 1
        assert sorted(path.name for path in (tmp_path / "shared" / "data").glob("cache-*.arrow")) == cached_beside
        trainer.train()

        # and reused from there (the file is not written again)
        written = elsewhere[0].stat().st_mtime_ns
        trainer = _ref_logps_trainer(tiny_model, dataset, video_dir, tmp_path / "d", max_length=4096)
        assert trainer.train_dataset["ref_chosen_logps"] == computed
        assert list((tmp_path / "tpo-cache" / "ref-logps").glob("data-*/cache-*.arrow")) == elsewhere
        assert elsewhere[0].stat().st_mtime_ns == written
        del dataset, trainer


def test_a_read_only_dataset_folder_with_nowhere_for_the_cache_is_refused_before_the_model_load(
    preference_dataset, video_dir, tmp_path, monkeypatch
):
    """Probe a/h7: where neither the dataset folder nor tpo-hf's cache can be written, precompute_ref_log_probs is
    refused in one line naming the folder and the ways out, before the model is loaded (the model named here does
    not exist: loading it would fail otherwise)."""
    from datasets import load_from_disk

    from tpo_hf.commands import is_user_error
    from tpo_hf.ref_logps_cache import RefLogpsCacheError

    with read_only_later(tmp_path / "shared") as make_read_only:
        preference_dataset().save_to_disk(str(tmp_path / "shared" / "data"))
        (tmp_path / "shared" / "cache").mkdir()
        make_read_only()
        monkeypatch.setenv("TPO_HF_CACHE", str(tmp_path / "shared" / "cache"))
        dataset = load_from_disk(str(tmp_path / "shared" / "data"))
        with pytest.raises(RefLogpsCacheError) as info:
            TPOTrainer(
                str(tmp_path / "no-such-model"),
                args=make_args(tmp_path, video_dir, precompute_ref_log_probs=True),
                train_dataset=dataset,
                peft_config=lora(),
            )
        message = str(info.value)
        assert message.startswith(
            f"Cannot write the reference log-prob cache (precompute_ref_log_probs): the dataset folder "
            f"{tmp_path / 'shared' / 'data'} cannot be written ("
        )
        assert "TPO_HF_CACHE" in message and "set precompute_ref_log_probs false" in message
        assert is_user_error(info.value)
        del dataset


def test_a_read_only_folder_on_a_small_disk_is_not_called_full(tmp_path):
    """Probe a/h8: `no_space_left` called a write refused by a read-only file system "no space left on device" as the
    folder had under 64 MiB free, and the reference log-prob cache's message said to free space on it. An OS error
    of another kind in the chain now rules the guess out, and the message names the read-only folder."""
    import errno

    from tpo_hf import ref_logps_cache
    from tpo_hf.fingerprint import no_space_left

    if os.geteuid() != 0:
        pytest.skip("needs a small read-only mount, which only root can make here")
    with read_only_later(tmp_path / "small") as make_read_only:
        make_read_only()
        folder = tmp_path / "small"
        cache_file = str(folder / "cache-0123.arrow")
        refused = OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder / "tmpabc"))
        assert no_space_left(refused, folder) is None
        # the guess still holds where no errno says otherwise (torch's "unexpected pos", pyarrow's closed file)
        assert no_space_left(RuntimeError("unexpected pos 64 vs 128"), folder).startswith("no space left on device (")
        assert no_space_left(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), folder).startswith("no space left")
        error = ValueError("I/O operation on closed file")
        error.__context__ = refused  # as pyarrow leaves a failed write: the OS error only in the context
        with pytest.raises(ref_logps_cache.RefLogpsCacheError) as info:
            ref_logps_cache.raise_if_cache_write_failed(error, cache_file)
        message = str(info.value)
        assert message.startswith(
            f"Writing the reference log-prob cache {cache_file} failed: the folder cannot be written (read-only file "
            "system) [OSError: [Errno 30] Read-only file system"
        )
        assert "no space" not in message and "free space" not in message
        assert "make it writable" in message and "set precompute_ref_log_probs false" in message


def test_pairs_whose_answers_differ_only_in_form_are_dropped_as_degenerate(tiny_model, video_dir, tmp_path, caplog):
    """Probe b/i49: a user-made dataset whose pairs differ only in form ('red' / 'Red.', '**red**', '“red”', 'RED',
    a zero-width space) was trained on in full (`degenerate/dropped_total: 0`): the row check compared the stripped
    texts only. Curation's rule (`curation.answer.same_answer`) now decides, so they are dropped and counted."""
    import logging

    from datasets import Dataset

    good = preference_rows(repeat=1)
    forms = [("red", "Red."), ("red", "**red**"), ("red", "\u201cred\u201d"), ("red", "RED"), ("blue", "*blue*")]
    forms += [("green", "green\u200b")]
    same = [dict(good[0], chosen=chosen, rejected=rejected) for chosen, rejected in forms]
    model, processor = tiny_model("qwen2_vl")
    with caplog.at_level(logging.WARNING, logger="tpo_hf"):
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir),
            train_dataset=Dataset.from_list(good + same + [dict(good[1], rejected=good[1]["chosen"])]),
            processing_class=processor,
            peft_config=lora(),
        )
    assert len(trainer.train_dataset) == len(good)
    assert dict(trainer.degenerate_dropped) == {"chosen and rejected differ only in form": 6, "chosen == rejected": 1}
    assert "dropped 7 degenerate pair(s)" in caplog.text, caplog.text
