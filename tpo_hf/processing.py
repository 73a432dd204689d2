"""Stage 3 of the flow: turn a (prompt, video, chosen, rejected) pair, or a prompt + video, into model inputs.

`VideoPreferenceProcessor` wraps a model's transformers processor with its family entry (`tpo_hf.families`) and the
video settings (frames, rate, pixel budget, where relative video paths live). Training (`VideoPreferenceCollator`),
curation and evaluation all go through it, so a video is turned into tokens the same way everywhere.

Prompts carry no model-specific placeholder: the processor adds the family's video part to the first user message
and the chat template renders it. A plain-string prompt becomes one user turn; a plain-string answer gets the EOS
token (as TRL does for non-conversational data).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .families import VideoFamily, get_family
from .video import VideoFile, VideoView, is_video_url, local_video_path
from .video_settings import DEFAULT_NUM_FRAMES, VideoSettings

VIDEO_CONFIG_NAME = "tpo_video_config.json"
LAYOUT_PROBE_PROMPT = "Which?"
# the saved files that shape the prompt text: their sha256 is recorded beside the layout, so a layout that no longer
# matches is told apart as edited files (named) or another transformers release
PROMPT_FILES = (
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
)


def prompt_file_hashes(folder: str | os.PathLike) -> dict[str, str]:
    """sha256 of each of `PROMPT_FILES` in `folder` (those it has)."""
    from .fingerprint import file_content_hash

    return {name: file_content_hash(Path(folder, name)) for name in PROMPT_FILES if Path(folder, name).is_file()}


def edited_prompt_files(folder: str | os.PathLike, recorded: Any) -> list[str]:
    """The `PROMPT_FILES` of a local `folder` whose content differs from the `recorded` hashes (changed, added or
    removed since the save); empty when they match, when nothing was recorded, or for a Hub repo."""
    if not isinstance(recorded, dict) or not Path(folder).is_dir():
        return []
    current = prompt_file_hashes(folder)
    return sorted(name for name in set(current) | set(recorded) if current.get(name) != recorded.get(name))


def layout_probe_video() -> tuple[Any, dict[str, Any]]:
    """The probe of `VideoPreferenceProcessor.video_prompt_layout`: four distinct 56x56 frames at 0-3 s, 1 fps."""
    import numpy as np

    frames = np.stack([np.full((56, 56, 3), 50 * index, dtype=np.uint8) for index in range(4)])
    return frames, {"fps": 1.0, "total_num_frames": 4, "frames_indices": [0, 1, 2, 3], "duration": 4.0}


logger = logging.getLogger(__name__)


def _no_video_processor_message(source: str | os.PathLike) -> str:
    """Why a model's processor cannot be used: it has no video processor (a text or image model)."""
    from transformers.utils import PROCESSOR_NAME, VIDEO_PROCESSOR_NAME

    return (
        f"{source}: its processor has no video processor (no `video_processor` entry in {PROCESSOR_NAME} and no "
        f"{VIDEO_PROCESSOR_NAME}), so it cannot turn videos into frames. tpo-hf needs a video-LMM: pass a model of "
        "a supported family (README.md, Supported model families), with its processor saved beside it."
    )


class VideoPromptLayoutError(ValueError):
    """The installed processor would write a saved model's video prompt differently from the one it was saved with."""


class VideoProcessingError(ValueError):
    """The model's processor refused a video's frames (their shape: Qwen2-VL's, for one, takes no aspect ratio over
    200); the message gives the frames' size and the processor's reason, and callers prefix the row and the file."""


# Modules of transformers that turn frames into pixel values: a ValueError raised in one of them is about the video
# given (its size or shape), not about the text or tpo-hf
_FRAME_PROCESSING_MODULES = re.compile(r"video_processing|image_processing|image_transforms|image_utils|video_utils")


def _frames_size(frames: Any) -> str:
    """How errors give the size of frames [T, H, W, 3]: "4 frame(s), 2000 pixels wide and 8 high"."""
    shape = getattr(frames, "shape", None)
    if shape is None or len(shape) != 4:
        return f"{len(frames)} frame(s)"
    return f"{shape[0]} frame(s), {shape[2]} pixels wide and {shape[1]} high"


def _raised_on_frames(error: BaseException) -> bool:
    """Whether `error` was raised inside transformers' frame processing (see `_FRAME_PROCESSING_MODULES`)."""
    traceback = error.__traceback__
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if module.startswith("transformers.") and _FRAME_PROCESSING_MODULES.search(module):
            return True
        traceback = traceback.tb_next
    return False


@dataclass
class EncodedPair:
    """Token ids and video tensors of one preference pair; the prompt (and its video) is encoded once."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    video_inputs: dict[str, torch.Tensor]  # per-video processor outputs for this pair's video
    sequence_inputs: dict[str, list[int]] = field(default_factory=dict)  # aligned with prompt_ids
    num_video_tokens: int = 0
    frames_indices: list[int] = field(default_factory=list)


class VideoPreferenceProcessor:
    """A video-LMM processor plus its family entry and video settings.

    Args:
        processor: the model's transformers processor (e.g. from `AutoProcessor.from_pretrained`).
        family: registry entry or name; inferred from the processor class when omitted.
        num_frames, video_fps, max_frames, max_pixels, max_video_tokens: the video settings (`VideoSettings`, the
            one owner of their defaults and checks). `settings` holds them fitted to the token budget for this family
            and processor (`VideoSettings.fitted`): that is what every video is sampled with. Curation, training and
            evaluation all build their processor here, so one budget gives the same frames and resolution in each.
        video_root: folder that relative video paths are resolved against.

    Example:
        >>> processor = VideoPreferenceProcessor.from_pretrained("Qwen/Qwen2.5-VL-7B-Instruct", num_frames=32)
        >>> pair = processor.encode_pair("What happens?", "clip.mp4", "A dog runs.", "A cat sleeps.")
        >>> inputs = processor.generation_inputs(["What happens?"], ["clip.mp4"])
    """

    def __init__(
        self,
        processor: Any,
        family: VideoFamily | str | None = None,
        num_frames: int | None = DEFAULT_NUM_FRAMES,
        video_fps: float | None = None,
        max_frames: int | None = None,
        max_pixels: int | None = None,
        video_root: str | os.PathLike | None = None,
        max_video_tokens: int | None = None,
    ):
        self.processor = processor
        self.family = get_family(family if family is not None else processor)
        if missing := self.family.missing_requirements():
            raise ImportError(f"The {self.family.name} family needs {', '.join(missing)}.")
        requested = VideoSettings(num_frames, video_fps, max_frames, max_pixels, max_video_tokens)
        # what every video is sampled with: the settings fitted to the budget (the requested ones are left as given)
        self.settings = requested.fitted(processor, self.family)
        self.video_root = str(video_root) if video_root is not None else None
        # which of the family's video placeholder texts the processor gets (0: its documented layout; see
        # `use_video_prompt_layout`)
        self.video_placeholder_index = 0
        self._video_prompt_layouts: dict[int, str] = {}
        tokenizer = self.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        video_token = getattr(processor, self.family.feature_token_attribute, None)
        self.video_token_id = tokenizer.convert_tokens_to_ids(video_token) if video_token else None

    # --- loading / saving -------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> VideoPreferenceProcessor:
        """Loads the transformers processor (and saved video settings, if any); `kwargs` override the settings.

        Keyword arguments that are not video settings (`revision`, `token`, `trust_remote_code`, ...) go to
        `AutoProcessor.from_pretrained`.
        """
        from transformers import AutoConfig, AutoProcessor

        setting_names = ("family", "video_root", *(f.name for f in dataclasses.fields(VideoSettings)))
        settings = {name: kwargs.pop(name) for name in setting_names if name in kwargs}
        check_layout = kwargs.pop("check_video_prompt_layout", True)
        try:
            processor = AutoProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        except OSError as error:
            # transformers' own message suggests a wrong path or a local folder shadowing a Hub id
            if "video processor" not in str(error).lower():
                raise
            raise ValueError(_no_video_processor_message(pretrained_model_name_or_path)) from None
        saved = {}
        local_config = Path(pretrained_model_name_or_path) / VIDEO_CONFIG_NAME
        if local_config.is_file():
            saved = json.loads(local_config.read_text())
        else:
            try:
                from huggingface_hub import hf_hub_download

                saved = json.loads(
                    Path(hf_hub_download(str(pretrained_model_name_or_path), VIDEO_CONFIG_NAME)).read_text()
                )
            except Exception:  # no saved settings: a plain model repository
                saved = {}
        if "family" not in settings and "family" not in saved:
            try:
                saved["family"] = get_family(processor).name
            except ValueError:
                saved["family"] = get_family(AutoConfig.from_pretrained(pretrained_model_name_or_path, **kwargs)).name
        recorded_layout = saved.pop("video_prompt_layout", None)
        recorded_with = saved.pop("transformers_version", None)
        edited = edited_prompt_files(pretrained_model_name_or_path, saved.pop("prompt_files", None))
        merged = {**saved, **settings}
        if merged.get("num_frames") is not None and "video_fps" not in settings:
            # a frame count takes the place of a saved rate; a saved rate beside a saved count (tpo-hf before it
            # refused the pair) was never sampled with
            merged.pop("video_fps", None)
        loaded = cls(processor, **merged)
        if recorded_layout is not None and check_layout:
            loaded.use_video_prompt_layout(
                recorded_layout, recorded_with, source=str(pretrained_model_name_or_path), edited_files=edited
            )
        elif recorded_layout is None and loaded.family.video_placeholders is not None and saved:
            logger.warning(
                "%s holds %s video settings saved without a video prompt layout (tpo-hf before it recorded one), so "
                "it gets the documented layout. If it was trained with transformers 5.18-5.24, its prompts had one "
                "more <|vision_start|>...<|vision_end|> pair around all frames: record that layout in its "
                "tpo_video_config.json to get it back (docs/supported_versions.md).",
                pretrained_model_name_or_path,
                loaded.family.name,
            )
        return loaded

    # the fitted settings, read-only: a processor with other settings is a new processor
    num_frames = property(lambda self: self.settings.num_frames)
    video_fps = property(lambda self: self.settings.video_fps)
    max_frames = property(lambda self: self.settings.max_frames)
    max_pixels = property(lambda self: self.settings.max_pixels)
    max_video_tokens = property(lambda self: self.settings.max_video_tokens)

    def video_settings(self) -> dict[str, Any]:
        """The family and the fitted video settings, as saved beside the processor."""
        return {"family": self.family.name, **self.settings.to_dict()}

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Saves the transformers processor and `tpo_video_config.json`: the video settings, and the video prompt
        layout with the transformers release that wrote it (checked by `from_pretrained`)."""
        import transformers

        self.processor.save_pretrained(save_directory, **kwargs)
        record = {
            **self.video_settings(),
            "video_prompt_layout": self.video_prompt_layout(),
            "transformers_version": transformers.__version__,
            "prompt_files": prompt_file_hashes(save_directory),
        }
        Path(save_directory, VIDEO_CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")

    def video_prompt_layout(self) -> str:
        """The prompt this processor builds for a fixed probe (four distinct frames at 0-3 s, 1 fps; a one-word
        question), decoded, with each run of the feature token written once as `<token>*`.

        It is the text a model reads around its frames (chat template, timestamps, frame separators) whatever the
        pixel budget, so a transformers release that writes a family's video prompt differently changes it.
        """
        # computed once per placeholder choice: caches key their entries by it (eval answers, reference log-probs)
        cached = self._video_prompt_layouts.get(self.video_placeholder_index)
        if cached is None:
            ids = self.encode_prompt(LAYOUT_PROBE_PROMPT, *layout_probe_video())["input_ids"][0].tolist()
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            token = self.tokenizer.convert_ids_to_tokens(self.video_token_id)
            cached = re.sub(f"(?:{re.escape(token)})+", lambda _: token + "*", text)
            self._video_prompt_layouts[self.video_placeholder_index] = cached
        return cached

    def use_video_prompt_layout(
        self,
        recorded: str,
        recorded_with: str | None = None,
        source: str = "",
        edited_files: Sequence[str] = (),
    ) -> None:
        """Makes this processor write the `recorded` layout (a saved model's) with the installed transformers: the
        family's placeholder texts are tried in turn (`VideoFamily.video_placeholders`), and the first that gives it
        is kept. Raises `VideoPromptLayoutError` when none does, naming the cause: `edited_files` (the saved
        processor files changed since, `edited_prompt_files`), else another transformers release."""
        import transformers

        _, placeholders = (
            self.family.video_placeholders(self.processor) if self.family.video_placeholders else ("", [""])
        )
        for index in range(len(placeholders)):
            self.video_placeholder_index = index
            if self.video_prompt_layout() == recorded:
                if index:
                    logger.info(
                        "%s: writing the video prompt layout it was saved with (transformers %s), which transformers "
                        "%s writes only from another placeholder.",
                        source or "The model",
                        recorded_with,
                        transformers.__version__,
                    )
                return
        self.video_placeholder_index = 0
        installed = self.video_prompt_layout()
        start = len(os.path.commonprefix([recorded, installed]))
        context = slice(max(0, start - 40), start + 80)
        if edited_files or recorded_with == transformers.__version__:
            # the processor files themselves changed (an edited chat template, say): named when their hashes were
            # recorded, inferred when the release is the same
            files = ", ".join(edited_files) or "chat_template.jinja, tokenizer or processor configs"
            release = (
                f"with the same transformers release ({recorded_with})"
                if recorded_with == transformers.__version__
                else f"(transformers {recorded_with or 'unknown'} then, {transformers.__version__} now)"
            )
            raise VideoPromptLayoutError(
                f"{source or 'This model'}: the {self.family.name} video prompt its processor files write now differs "
                f"from the one recorded when it was saved {release}: the saved processor files"
                f"{f' in {source}' if source else ''} ({files}) were changed since. Saved: ...{recorded[context]!r}; now: "
                f"...{installed[context]!r}. The model learned to read its frames in the recorded layout, so its "
                "answers would change. Restore the original files, or, to use the edited ones on purpose, load it "
                "with check_video_prompt_layout=False (Python: VideoPreferenceProcessor.from_pretrained(..., "
                "check_video_prompt_layout=False))."
            )
        raise VideoPromptLayoutError(
            f"{source or 'This model'} was saved with another {self.family.name} video prompt than the installed "
            f"processor writes (transformers {recorded_with or 'unknown'} then, {transformers.__version__} now). "
            f"Saved: ...{recorded[context]!r}; now: ...{installed[context]!r}. The model learned to read its frames "
            "in the saved layout, so its answers would change, and tpo-hf cannot write that layout with this release. "
            "Install the transformers release it was saved with, or, from Python, load it anyway with "
            "VideoPreferenceProcessor.from_pretrained(..., check_video_prompt_layout=False) "
            "(docs/supported_versions.md)."
        )

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    # --- videos -----------------------------------------------------------------------------------------------------
    def default_view(self, **overrides: Any) -> VideoView:
        """How this processor samples a video: its settings (`overrides`: other `VideoView` fields, e.g. another
        `num_frames` or a window), with frames repeated up to `num_frames` for a family that cannot batch different
        frame counts (a shorter video otherwise gives each of its frames once)."""
        view = dataclasses.replace(self.settings.view(), repeat_frames=self.family.needs_fixed_frame_count)
        return dataclasses.replace(view, **overrides)

    def resolve_video(self, video: str | os.PathLike) -> str:
        """Absolute path or URL of `video`: a `file://` URL is its local path and `~` the home folder (so caches key
        the file by that one path); other relative paths are taken against `video_root`."""
        video = local_video_path(video)
        if is_video_url(video) or os.path.isabs(video) or self.video_root is None:
            return video
        return os.path.join(self.video_root, video)

    def load_video(self, video: str | os.PathLike, view: VideoView | None = None) -> tuple[Any, dict[str, Any]]:
        """Decodes `video` with `view` (default: this processor's frame settings)."""
        return VideoFile(self.resolve_video(video), cache_frames=False).load(view or self.default_view())

    def _video_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.family.processor_kwargs)
        if self.max_pixels is not None and self.family.pixel_budget_kwargs is not None:
            kwargs.update(self.family.pixel_budget_kwargs(self.max_pixels))
        return kwargs

    # --- text -------------------------------------------------------------------------------------------------------
    def prompt_messages(self, prompt: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chat messages for `prompt` with the video part placed in the first user message."""
        if isinstance(prompt, str):
            return [{"role": "user", "content": [self.family.video_message_part(), {"type": "text", "text": prompt}]}]
        messages = [dict(message) for message in prompt]
        for message in messages:
            content = message["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            message["content"] = parts
        if any(part.get("type") == "video" for message in messages for part in message["content"]):
            return messages
        for message in messages:
            if message["role"] == "user":
                message["content"] = [self.family.video_message_part(), *message["content"]]
                return messages
        raise ValueError(f"The prompt has no user message to attach the video to: {prompt!r}")

    def prompt_text(self, prompt: str | list[dict[str, Any]]) -> str:
        """The rendered prompt, ending with the generation prompt of the chat template."""
        return self.processor.apply_chat_template(
            self.prompt_messages(prompt), add_generation_prompt=True, tokenize=False
        )

    def completion_text(self, prompt: str | list[dict[str, Any]], answer: str | list[dict[str, Any]]) -> str:
        """The text the model must produce after the prompt for `answer` (TRL preference formats)."""
        if isinstance(answer, str):
            eos = self.tokenizer.eos_token
            return answer if answer.endswith(eos) else answer + eos
        prompt_text = self.prompt_text(prompt)
        full_text = self.processor.apply_chat_template(
            self.prompt_messages(prompt) + list(answer), add_generation_prompt=False, tokenize=False
        )
        if not full_text.startswith(prompt_text):
            common = os.path.commonprefix([prompt_text, full_text])
            raise ValueError(
                "The chat template renders the prompt differently alone and followed by the answer, so the answer "
                f"cannot be cut out of the conversation (they diverge after {common[-40:]!r})."
            )
        return full_text[len(prompt_text) :]

    def processor_text(self, text: str) -> str:
        """`text` as the processor gets it: the chat template's video part written as the chosen placeholder (the
        family's documented layout on every transformers release, or a saved model's recorded one)."""
        if self.family.video_placeholders is None:
            return text
        rendered, placeholders = self.family.video_placeholders(self.processor)
        return text.replace(rendered, placeholders[self.video_placeholder_index])

    def _tokenize_answer(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # --- model inputs -----------------------------------------------------------------------------------------------
    def _process(self, texts: list[str], videos: list[tuple[Any, dict[str, Any]]], **kwargs: Any) -> Any:
        frames = [video[0] for video in videos]
        metadatas = [video[1] for video in videos]
        try:
            processed = self.processor(
                text=[self.processor_text(text) for text in texts],
                videos=frames,
                video_metadata=metadatas,
                do_sample_frames=False,
                return_tensors="pt",
                **self._video_kwargs(),
                **kwargs,
            )
        except ValueError as error:
            if not _raised_on_frames(error):
                raise
            sizes = ", ".join(sorted({_frames_size(video) for video in frames}))
            raise VideoProcessingError(
                f"the {self.family.name} processor refused the video's frames ({sizes}): {error}. Crop, pad or "
                "re-encode the video to a shape it takes, or drop it."
            ) from error
        self.family.timing_fix(processed, metadatas, self.processor)
        return processed

    def encode_prompt(
        self, prompt: str | list[dict[str, Any]], frames: Any, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        """Processes one prompt with its video: token ids (with the video tokens) and the video tensors."""
        return self._process([self.prompt_text(prompt)], [(frames, metadata)])

    def encode_pair(
        self,
        prompt: str | list[dict[str, Any]],
        video: str | os.PathLike | tuple[Any, dict[str, Any]],
        chosen: str | list[dict[str, Any]],
        rejected: str | list[dict[str, Any]],
    ) -> EncodedPair:
        """Encodes one preference pair; `video` is a path/URL or already decoded `(frames, metadata)`."""
        frames, metadata = self.load_video(video) if isinstance(video, (str, os.PathLike)) else video
        try:
            processed = self.encode_prompt(prompt, frames, metadata)
        except VideoProcessingError as error:
            if not isinstance(video, (str, os.PathLike)):
                raise
            raise VideoProcessingError(f"video {self.resolve_video(video)}: {error}") from error
        prompt_ids = processed["input_ids"][0].tolist()
        return EncodedPair(
            prompt_ids=prompt_ids,
            chosen_ids=self._tokenize_answer(self.completion_text(prompt, chosen)),
            rejected_ids=self._tokenize_answer(self.completion_text(prompt, rejected)),
            video_inputs={key: processed[key] for key in self.family.video_keys if key in processed},
            sequence_inputs={key: processed[key][0].tolist() for key in self.family.sequence_keys if key in processed},
            num_video_tokens=sum(1 for token in prompt_ids if token == self.video_token_id),
            frames_indices=list(metadata["frames_indices"]),
        )

    def generation_inputs(
        self,
        prompts: list[str | list[dict[str, Any]]],
        videos: list[str | os.PathLike | tuple[Any, dict[str, Any]]],
    ) -> Any:
        """Left-padded inputs for `model.generate` from prompts and their videos (paths or decoded views)."""
        if len(prompts) != len(videos):
            raise ValueError(f"Got {len(prompts)} prompts but {len(videos)} videos; pass one video per prompt.")
        decoded = [self.load_video(v) if isinstance(v, (str, os.PathLike)) else v for v in videos]
        if self.family.needs_fixed_frame_count and len({len(frames) for frames, _ in decoded}) > 1:
            raise ValueError(
                f"{self.family.name} cannot batch videos with different frame counts "
                f"({sorted({len(frames) for frames, _ in decoded})}); use a fixed num_frames or batch size 1."
            )
        return self._process([self.prompt_text(p) for p in prompts], decoded, padding=True, padding_side="left")

    def batch_decode_generated(self, generated_ids: torch.Tensor, inputs: Any) -> list[str]:
        """Decodes only the newly generated tokens of `model.generate(**inputs)`."""
        new_tokens = generated_ids[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    @torch.no_grad()
    def generate(
        self,
        model: Any,
        prompts: list[str | list[dict[str, Any]]],
        videos: list[str | os.PathLike | tuple[Any, dict[str, Any]]],
        **generate_kwargs: Any,
    ) -> list[str]:
        """Answers each prompt about its video with `model.generate`; returns the decoded answers."""
        inputs = self.generation_inputs(prompts, videos).to(model.device)
        generate_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        output = model.generate(**inputs, **generate_kwargs)
        return self.batch_decode_generated(output, inputs)
