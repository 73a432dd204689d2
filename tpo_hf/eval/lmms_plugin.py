"""Stage 5 of the flow (evaluation), for lmms-eval users: `lmms-eval --model tpo_hf ...` with tpo-hf's loading code.

lmms-eval (>= 0.7) discovers third-party models through the `lmms_eval.models` entry-point group; each entry point
returns a `ModelManifest` naming the model class (`lmms_eval/models/registry_v2.py`). tpo-hf registers:

    [project.entry-points."lmms_eval.models"]
    tpo_hf = "tpo_hf.eval.lmms_plugin:manifest"

Then any lmms-eval video task runs with the base model plus the TPO adapter loaded the way `tpo-hf eval` loads them
(same processor, frame sampling and family handling):

    lmms-eval --model tpo_hf --tasks videomme,mlvu_dev,longvideobench_val_v --batch_size 1 \\
        --model_args pretrained=Qwen/Qwen2.5-VL-7B-Instruct,adapter=outputs/tpo-lora,num_frames=96,dtype=bfloat16

`use_adapter=false` scores the same weights with the adapter disabled (the base model). This module imports
lmms-eval, which is not a dependency of tpo-hf: install it to use the plugin.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from lmms_eval.api.model import lmms

from ..models import check_dtype_name, load_video_model
from ..video_settings import DEFAULT_NUM_FRAMES, VideoSettings

MODEL_ID = "tpo_hf"


def manifest() -> Any:
    """The `lmms_eval.models` entry point: tpo-hf's model, under the name `tpo_hf` (alias `tpo-hf`)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.TPOHFModel", aliases=("tpo-hf",))


TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _as_bool(value: Any, key: str = "use_adapter") -> bool:
    """A `--model_args` flag; anything but true/false/1/0/yes/no/on/off is refused (a typo is not `false`)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError(
        f"--model_args {key}={value!r} is not a boolean; use one of {'/'.join(TRUE_WORDS + FALSE_WORDS)}."
    )


def _as_int(value: Any, key: str, minimum: int | None = None, optional: bool = False) -> int | None:
    """A `--model_args` integer (lmms-eval hands values over as strings, e.g. "8", "8.0", "None")."""
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
    try:
        number = float(value) if not isinstance(value, int) else value
        if isinstance(value, bool) or number != int(number):
            raise ValueError
        number = int(number)
    except (TypeError, ValueError):
        kind = "a whole number" + (" or none" if optional else "")
        raise ValueError(f"--model_args {key}={value!r} is not {kind}.") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"--model_args {key}={value!r} must be at least {minimum}.")
    return number


def _check_dtype(dtype: Any) -> None:
    check_dtype_name(dtype, "--model_args dtype")


class TPOHFModel(lmms):
    """lmms-eval model: a video-LMM (optionally with a TPO LoRA adapter) behind `VideoPreferenceProcessor`.

    Args (lmms-eval `--model_args`):
        pretrained: base model, Hub id or folder.
        adapter: TPO LoRA adapter, folder or Hub id.
        use_adapter: with an adapter, `false` evaluates the adapter-disabled base model.
        num_frames, max_pixels, max_video_tokens: the video settings (`tpo_hf.VideoSettings`: the same fields,
            default and checks as `tpo-hf train` and `tpo-hf eval`): frames sampled uniformly per video, the per-frame
            pixel budget (Qwen families), and the video-token budget that frames and resolution are fitted to.
        batch_size: requests per `generate` call.
        dtype, device, attn_implementation: as in `tpo-hf eval`.
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        adapter: str | None = None,
        use_adapter: bool | str = True,
        num_frames: int | str = DEFAULT_NUM_FRAMES,
        max_pixels: int | str | None = None,
        max_video_tokens: int | str | None = None,
        batch_size: int | str = 1,
        dtype: str = "auto",
        device: str | None = None,
        attn_implementation: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(f"Unknown --model_args for tpo_hf: {sorted(kwargs)}; see TPOHFModel's docstring.")
        # lmms-eval hands `--model_args` values over as strings: all of them checked before the model loads
        use_adapter = _as_bool(use_adapter, "use_adapter")
        if not use_adapter and adapter is None:
            raise ValueError("use_adapter=false only makes sense together with adapter=...")
        batch_size = _as_int(batch_size, "batch_size", minimum=1)
        _check_dtype(dtype)
        asked = VideoSettings(
            num_frames=_as_int(num_frames, "num_frames"),
            max_pixels=_as_int(max_pixels, "max_pixels", optional=True),
            max_video_tokens=_as_int(max_video_tokens, "max_video_tokens", optional=True),
        )
        self.model, self.processor = load_video_model(
            pretrained,
            adapter,
            **asked.to_dict(),
            dtype=dtype,
            device=device,
            attn_implementation=attn_implementation,
        )
        self.use_adapter = use_adapter
        self.batch_size_per_gpu = batch_size
        # the processor's settings: a video-token budget (given, or saved with the adapter) may have fitted fewer
        # frames than asked for
        self.num_frames = self.processor.settings.num_frames

    def _video(self, request: Any) -> str:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        visuals = visuals if isinstance(visuals, list) else [visuals]
        videos = [visual for visual in visuals if isinstance(visual, str)]
        if len(videos) != 1 or len(visuals) != 1:
            raise NotImplementedError(
                f"tpo_hf evaluates one video per question; task {task!r} doc {doc_id} gives {len(visuals)} visual(s) "
                f"of types {sorted({type(v).__name__ for v in visuals})}."
            )
        return videos[0]

    @staticmethod
    def _generate_kwargs(gen_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        temperature = float(gen_kwargs.get("temperature", 0) or 0)
        kwargs: dict[str, Any] = {"max_new_tokens": int(gen_kwargs.get("max_new_tokens", 32))}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=float(gen_kwargs.get("top_p", 1.0) or 1.0))
        else:
            kwargs["do_sample"] = False
        if int(gen_kwargs.get("num_beams", 1) or 1) > 1:
            kwargs["num_beams"] = int(gen_kwargs["num_beams"])
        return kwargs, until

    def generate_until(self, requests: list[Any]) -> list[str]:
        """Answers lmms-eval `generate_until` requests (context + one video each), in request order."""
        import contextlib

        from tqdm.auto import tqdm

        answers: list[str | None] = [None] * len(requests)
        variant = contextlib.nullcontext
        if not self.use_adapter:
            variant = self.model.disable_adapter
        # batch requests that share generation settings; lmms-eval hands them over in task order
        keyed = sorted(range(len(requests)), key=lambda i: repr(sorted(requests[i].args[1].items())))
        bar = tqdm(total=len(requests), desc="tpo_hf", disable=self.rank != 0)
        for _, group in groupby(keyed, key=lambda i: repr(sorted(requests[i].args[1].items()))):
            indices = list(group)
            for start in range(0, len(indices), self.batch_size_per_gpu):
                batch = indices[start : start + self.batch_size_per_gpu]
                generate_kwargs, until = self._generate_kwargs(requests[batch[0]].args[1])
                videos = [
                    self.processor.load_video(self._video(requests[i]), self.processor.default_view()) for i in batch
                ]
                with variant():
                    replies = self.processor.generate(
                        self.model, [requests[i].args[0] for i in batch], videos, **generate_kwargs
                    )
                for i, reply in zip(batch, replies):
                    for stop in until:
                        if stop and stop in reply:
                            reply = reply.split(stop, 1)[0]
                    answers[i] = reply
                    self.cache_hook.add_partial("generate_until", (requests[i].args[0], requests[i].args[1]), reply)
                bar.update(len(batch))
        bar.close()
        return [answer if answer is not None else "" for answer in answers]

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        raise NotImplementedError("tpo_hf answers by generation; use the tasks' generate_until output type.")

    def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
        raise NotImplementedError("tpo_hf does not run multi-round tasks.")
