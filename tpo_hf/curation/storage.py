"""Stage 2 of the flow (curation): shards on disk, and what makes a killed run resume to the same dataset.

Each shard is written atomically (temporary file + rename), so a shard file is either absent or complete. Its file
is named by its own videos, and it records the run's key and its videos' identities: a shard is reused only when
all three match. The manifest holds the run's key (`curation_key`: the settings that change which pairs a shard
holds, the prompt and template texts, the models' prompt formats) as a plain dict, and the videos of the last
finished run: a run started with other settings or prompts refuses, naming them; a run with videos added, removed or
changed in place curates only those (`VideoChanges`). A killed run leaves at most half-written temporary files and
merge staging folders; the main process removes them before the run goes on. A file torn anyway (a disk error) is
named: a shard counts as absent (`read_shard`), a manifest is rebuilt from shards that all record this run's key,
else refused (`check_manifest`). A write that fails on a full disk or a folder that cannot be written is one
`CurationWriteError` naming the file (`named_write_errors`); the shards finished before it are kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import CURATION_MANIFEST, dataset_files
from ..fingerprint import (
    NOT_WRITABLE_ERRNOS,
    atomic_write_json,
    changed_fields,
    file_content_hash,
    key_hash,
    model_identity,
    no_space_left,
    text_hashes,
)
from ..video import same_video_file, video_file_identity
from ..video_settings import VideoSettings
from .config import CurationConfig
from .inputs import VideoItem

logger = logging.getLogger(__name__)

# 2: shards record their videos' identities (`inputs`); 3: and the run's key (`settings`), and a view shorter than
# `num_frames` gives each frame once (frames were repeated before); 4: a video's identity is its id, size and
# modification time, not its path, and `video_dir` is no longer keyed (a folder moved or spelled otherwise resumes);
# 5: judge verdicts read by the stricter parser (a qualified "No ..., but" is unread) and replies cut at the token
# budget recorded, so shards of format 4 are generated again rather than reused with verdicts read the old way;
# 6: answers without a reasoning model's thinking, and answers alike but for case, spacing or final punctuation
# make no pair, so shards of format 5 (raw `<think>` answers, near-identical pairs) are generated again;
# 7: answers alike but for typography (curly quotes, dashes, full-width forms, zero-width characters) make no pair,
# and an endpoint's reply that ended other than normally (`content_filter`, a refusal) counts as cut, so shards of
# format 6 (pairs teaching typography alone, filtered partial answers) are generated again;
# 8: answers alike but for Markdown emphasis or wrapping quotes make no pair, an end-of-turn token's text is removed
# from an answer and other special-token text drops it, and an answer that ended early drops its pair whatever
# `cut_answers` says, so shards of format 7 are generated again;
# 9: answers alike but for a strikethrough around the whole answer, list or quote markers, inline HTML tags, LaTeX
# wrappers (`\boxed{}`, `$..$`), quotes or digit-free brackets, a leading answer label, a number's spelling or a
# leading article make no pair (struck text inside an answer is deleted), so shards of format 8 are generated again
SHARD_FORMAT_VERSION = 9
MANIFEST_NAME = CURATION_MANIFEST  # one name: loading a curated folder reads it too (`data.changed_curated_videos`)
# The fields that only choose which videos are curated: changing them adds or removes videos (curated incrementally),
# it does not change any shard's content.
VIDEO_SET_FIELDS = ("max_videos", "video_extensions")
# The fields that only decide which prompts are generated together: a shard's pairs may differ with them (batched
# greedy generation pads each prompt to the longest of its batch, which can change a reply; a shard's seeds come from
# its first video), so they are keyed, but a resume may change them under TPO_HF_RESUME_CHANGED=1, keeping the shards
# finished with the old values (`check_manifest`).
BATCHING_FIELDS = ("batch_size", "videos_per_shard")
# Names of the key entries that hold prompt and template texts (by hash) rather than settings.
PROMPT_KEY_NAMES = (
    "caption_prompt_localized",
    "caption_prompt_comprehensive",
    "question_prompt",
    "question_task_focus",
    "question_templates",
    "judge_prompt",
    "video_prompt_layout",
    "question_chat_template",
    "judge_chat_template",
)


class CurationWriteError(OSError):
    """A curation file could not be written (a full disk, a read-only file system, no permission): the message names
    the file or folder, and says that the shards finished so far are kept for the rerun."""


@contextlib.contextmanager
def named_write_errors(target: Path, work_dir: Path) -> Iterator[None]:
    """Turns a write into `target` (a file, or the folder a step writes into) that fails on a full disk (the one rule,
    `fingerprint.no_space_left`), a read-only file system or a missing permission into one `CurationWriteError`
    naming the file and the way on; any other error goes through as it is."""
    try:
        yield
    except CurationWriteError:
        raise
    except OSError as error:  # pyarrow's write errors are OSErrors too
        full = no_space_left(error, target)
        refused = error.errno in NOT_WRITABLE_ERRNOS
        if full is None and not refused:
            raise
        # a failed copy names its destination second; other calls name the one file they wrote
        named = error.filename2 or error.filename or target
        fix = "free space there" if full else "make it writable (or set output_dir / work_dir to a writable folder)"
        raise CurationWriteError(
            f"Cannot write {named}: {full or error.strerror or error}. The shards finished so far are kept in "
            f"{work_dir}: {fix}, then rerun the same command to resume."
        ) from error


# the suffix `shard_inputs` gives an identity for the video's annotations (after its file's identity)
_ANNOTATIONS = re.compile(r"#[0-9a-f]{16}$")


def _file_part(identity: Any) -> Any:
    """The file part of a `shard_inputs` identity (less the annotations' hash); other values as they are."""
    return _ANNOTATIONS.sub("", identity) if isinstance(identity, str) else identity


def same_input(previous: Any, current: Any) -> bool:
    """Whether two `shard_inputs` identities of a video (one recorded, one taken now) name the same file and
    annotations: equal, or a file part recorded by a tpo-hf that keyed videos by size and modification time, of the
    file untouched since (`video.same_video_file`)."""
    if previous == current:
        return True
    if not isinstance(previous, str) or not isinstance(current, str):
        return False
    old_file, new_file = _file_part(previous), _file_part(current)
    return previous[len(old_file) :] == current[len(new_file) :] and same_video_file(old_file, new_file)


def annotations_only(previous: Any, current: Any) -> bool:
    """Whether two `shard_inputs` identities of a video differ in its annotations (caption, questions) only: the
    same file, another caption or questions in the dataset's rows."""
    return (
        not same_input(previous, current)
        and previous is not None
        and same_video_file(_file_part(previous), _file_part(current))
    )


def changed_inputs_reason(changed: list[str], previous: dict[str, Any], current: dict[str, Any], source: str) -> str:
    """Why the shard of the videos `changed` (`shard_inputs` differing) is redone, telling an edited video file from
    edited annotations (`source`: the dataset whose rows hold them)."""
    annotated = [v for v in changed if annotations_only(previous.get(v), current.get(v))]
    files = [v for v in changed if v not in annotated]
    reasons = [f"its video file(s) changed since: {', '.join(files)}"] if files else []
    if annotated:
        reasons.append(f"its annotations (caption/questions in {source}) changed since: {', '.join(annotated)}")
    return "; ".join(reasons)


def shard_inputs(items: list[VideoItem]) -> dict[str, str]:
    """video id -> identity (`video_file_identity`: size and content hash; the URL and its version of a remote video)
    of the file a shard was made from, plus a hash of the video's annotations (caption, questions) when the videos
    come from a dataset. Not the file's path nor its modification time: the id names the video, so the same files
    under a folder moved, spelled otherwise or copied (`cp -r`) are the same."""
    return {
        item.video_id: video_file_identity(item.path)
        + (f"#{key_hash([item.caption, item.questions])[:16]}" if item.caption or item.questions else "")
        for item in items
    }


def prompt_texts(config: CurationConfig) -> dict[str, str]:
    """The prompt and template texts the run's stages send, by name: the caption prompts, the question prompt and
    its task-type focus sentences (or the question templates of `question_backend: template`) and the judge prompt
    (when the judge is on). Read from `tpo_hf.curation.prompts` when called, so an edited text is the one keyed."""
    from . import prompts
    from .backends import TEMPLATE_QUESTIONS

    texts = {
        "caption_prompt_localized": prompts.CAPTION_PROMPTS["localized"],
        "caption_prompt_comprehensive": prompts.CAPTION_PROMPTS["comprehensive"],
    }
    if config.question_backend == TEMPLATE_QUESTIONS:
        texts["question_templates"] = json.dumps(prompts.TEMPLATE_QUESTIONS, sort_keys=True)
    else:
        texts["question_prompt"] = prompts.QUESTION_PROMPT
        texts["question_task_focus"] = json.dumps(prompts.TASK_TYPES, sort_keys=True)
    if config.use_judge:
        texts["judge_prompt"] = prompts.JUDGE_PROMPT
    return texts


def model_prompt_formats(config: CurationConfig, backends: Any = None) -> dict[str, str]:
    """What each role's model reads around a prompt: the video model's video prompt layout
    (`VideoPreferenceProcessor.video_prompt_layout`: chat template, timestamps, frame separators; it differs between
    transformers releases) and the chat template of the question and judge models, as rendered around a placeholder.

    Taken from `backends` when given (`GenerationBackend.prompt_format`; a backend that does not say gives nothing);
    else, for roles on the `transformers` backend, from the model's processor or tokenizer alone (no weights load).
    """
    from .backends import TEMPLATE_QUESTIONS

    roles = [("video", True)]
    if config.question_backend != TEMPLATE_QUESTIONS:
        roles.append(("question", False))
    if config.use_judge:
        roles.append(("judge", False))
    formats: dict[str, str] = {}
    for role, video in roles:
        if backends is not None:
            describe = getattr(getattr(backends, role, None), "prompt_format", None)
            text = describe(video) if callable(describe) else None
        elif config.role_settings(role)[0] == "transformers":
            from .transformers_backend import model_prompt_format

            model_id = config.role_settings(role)[1]
            try:
                text = model_prompt_format(model_id, video, VideoSettings.of(config))
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"Cannot load the processor of the {role} model {model_id!r} to key the curation shards by the "
                    f"prompts it reads ({error})."
                ) from error
        else:
            text = None
        if text is not None:
            formats["video_prompt_layout" if video else f"{role}_chat_template"] = text
    return formats


def model_identities(config: CurationConfig, identity: Any = model_identity) -> dict[str, str]:
    """`<role>_model_weights` -> `model_identity` of the model of each role the run uses that runs locally (the
    `transformers` backend); a model behind an API endpoint has no files or commit to key by. `identity` is the
    rule (`legacy_model_identity`: what an older tpo-hf recorded of the same folder)."""
    from .backends import TEMPLATE_QUESTIONS

    roles = ["video"]
    if config.question_backend != TEMPLATE_QUESTIONS:
        roles.append("question")
    if config.use_judge:
        roles.append("judge")
    identities = {}
    for role in roles:
        backend, model, _ = config.role_settings(role)
        if backend == "transformers" and model:
            identities[f"{role}_model_weights"] = identity(model)
    return identities


def moved_models(stored: dict[str, Any], key: dict[str, Any]) -> list[str]:
    """The model entries (`video_model`, `question_model`, `judge_model`: a local folder's real path) that differ
    between a stored key and this run's `key` while both record the role's weights (`<role>_model_weights`,
    `model_identity`: the folder's files by content) alike: the same model folder moved or copied (`cp -r`), which
    changes no shard."""
    return [
        name
        for name in changed_fields(stored, key)
        if name.endswith("_model")
        and key.get(f"{name}_weights") is not None
        and stored.get(f"{name}_weights") == key[f"{name}_weights"]
    ]


def curation_key(config: CurationConfig, prompt_formats: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything that decides a shard's content besides its own videos (`tpo_hf.fingerprint`'s rule): the settings
    that change pairs (`CurationConfig.fingerprint_fields`, less the fields that only choose videos), a hash of every
    prompt and template text (`prompt_texts`) and of the models' prompt formats (`model_prompt_formats`), and the
    shard format; and the weights of each role's local model (`<role>_model_weights`, `model_identity`: the files
    of a model folder, the commit of a Hub id), so a model saved again into the same folder or pushed again to the
    same repo is not served from old shards. Stored in the manifest as it is, so a mismatch names what changed."""
    key = {name: value for name, value in config.fingerprint_fields().items() if name not in VIDEO_SET_FIELDS}
    key.update(text_hashes({**prompt_texts(config), **(prompt_formats or {})}))
    key.update(model_identities(config))
    key["shard_format"] = SHARD_FORMAT_VERSION
    return key


def shard_is_current(
    shard: dict[str, Any],
    items: list[VideoItem],
    config: CurationConfig,
    settings: str | set[str] | None = None,
    inputs: dict[str, str] | None = None,
) -> str | None:
    """`None` when a stored shard may be reused as is, else why it must be recomputed.

    A shard is keyed by the run's key (`settings`: `key_hash(curation_key(...))`, or the set of hashes the run
    accepts, `accepted_settings`) plus its own videos' identities (`inputs`: `shard_inputs` of the run's videos,
    taken now when not given): a video repaired, re-encoded or replaced since is curated again, and so is a video
    skipped under `on_video_error="skip"` when the run now asks to `"raise"` on such videos.
    """
    if shard.get("version") != SHARD_FORMAT_VERSION:
        return f"written by shard format {shard.get('version')}, this code writes {SHARD_FORMAT_VERSION}"
    accepted = {settings} if isinstance(settings, str) else settings
    if accepted is not None and shard.get("settings") not in accepted:
        return "made with other settings or prompts"
    current = shard_inputs(items) if inputs is None else {i.video_id: inputs.get(i.video_id) for i in items}
    stored = shard.get("inputs")
    stored = stored if isinstance(stored, dict) else {}
    changed = [v for v in changed_fields(stored, current) if not same_input(stored.get(v), current.get(v))]
    if changed:
        return changed_inputs_reason(changed, stored, current, str(config.dataset_name))
    if config.on_video_error == "raise" and shard.get("skipped"):
        return f"it skipped {', '.join(s['video'] for s in shard['skipped'])} and on_video_error is now 'raise'"
    return None


def work_dir_of(config: CurationConfig) -> Path:
    """Where the shards and the manifest live (`CurationConfig.shard_dir`)."""
    return config.shard_dir


def shard_path(work_dir: Path, items: list[VideoItem]) -> Path:
    """A shard's file, named by its own videos: adding or removing other videos never renames it."""
    return work_dir / "shards" / f"shard-{key_hash([i.video_id for i in items])[:16]}.json"


@dataclass
class VideoChanges:
    """How the videos differ from those of the last finished run on the same shards (all empty on a first run)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # same id, other file (size, content) or other annotations
    annotated: list[str] = field(default_factory=list)  # those of `changed` whose file is the same: other annotations

    @classmethod
    def between(cls, previous: dict[str, str] | None, current: dict[str, str]) -> VideoChanges:
        if previous is None:
            return cls()
        changed = sorted(v for v in set(current) & set(previous) if not same_input(previous[v], current[v]))
        return cls(
            added=sorted(set(current) - set(previous)),
            removed=sorted(set(previous) - set(current)),
            changed=changed,
            annotated=[v for v in changed if annotations_only(previous[v], current[v])],
        )

    @property
    def files_changed(self) -> list[str]:
        """The videos of `changed` whose file changed (not their annotations alone)."""
        return [v for v in self.changed if v not in self.annotated]

    def log(self, logger: logging.Logger, source_change: str | None = None, dataset: str | None = None) -> None:
        """Warns of each kind of change; `source_change` (`check_source`): the last run curated another video
        source, so a video "changed" is another file by the same name there, not one edited in place. A video
        whose file is the same but whose caption or questions in `dataset`'s rows differ is named as such."""
        changed = "changed in place" if source_change is None else "named as there but other files"
        since = "since the last run" if source_change is None else f"from the last run's ({source_change})"
        annotated = f"whose annotations (caption/questions in {dataset}) changed"
        kinds = (("added", self.added), ("removed", self.removed), (changed, self.files_changed))
        for what, videos in (*kinds, (annotated, self.annotated)):
            if videos:
                action = "their pairs are dropped" if what == "removed" else "curated now"
                logger.warning("%d video(s) %s %s (%s): %s.", len(videos), what, since, action, _shown(videos))


def _shown(videos: list[str]) -> str:
    return ", ".join(videos[:20]) + (f" and {len(videos) - 20} more" if len(videos) > 20 else "")


def shard_source(config: CurationConfig) -> dict[str, str]:
    """What the shards of a work_dir serve, recorded in its manifest: where the videos come from (`video_dir`, else
    `dataset_name`) and the `output_dir`, as real paths."""
    videos = config.video_dir if config.video_dir is not None else config.dataset_name
    return {
        "videos": os.path.realpath(videos) if os.path.exists(videos) else videos,
        "output_dir": os.path.realpath(config.output_dir),
    }


def check_source(
    manifest: dict[str, Any] | None, source: dict[str, str], changes: VideoChanges, work_dir: Path
) -> str | None:
    """Refuses a run that would overwrite the shards another output was made from: the last run in `work_dir`
    curated another video source into another output_dir, and videos named alike here are other files (corpora
    whose clips are named alike, sharing one work_dir). Else, where the video source differs (the folder moved, or
    another folder curated into the same output), returns how, for `VideoChanges.log`; `None` where it does not or
    is not recorded (a manifest of an older tpo-hf)."""
    stored = (manifest or {}).get("source")
    if not isinstance(stored, dict) or stored.get("videos") == source["videos"]:
        return None
    if stored.get("output_dir") != source["output_dir"] and changes.changed:
        raise ValueError(
            f"work_dir {work_dir} holds the shards of output_dir {stored.get('output_dir')} (videos from "
            f"{stored.get('videos')}); this run curates {source['videos']} into {source['output_dir']}, and "
            f"{len(changes.changed)} of its video(s) are other files named as there ({_shown(changes.changed)}), "
            "whose shards it would overwrite. Set another work_dir for this run (one per video source), or delete "
            f"{work_dir} to start over."
        )
    return f"which curated {stored.get('videos')}; this run curates {source['videos']}"


def read_shard(path: Path) -> dict[str, Any] | None:
    """The shard stored at `path`, or `None` when there is none or its file cannot be read as one (torn by a disk
    error, edited by hand): a warning names the file, and its videos are curated again."""
    if not path.exists():
        return None
    try:
        shard = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        logger.warning("Shard file %s is damaged (%s): its videos are curated again.", path, error)
        return None
    if not isinstance(shard, dict) or not isinstance(shard.get("records"), list):
        logger.warning("Shard file %s does not hold a shard: its videos are curated again.", path)
        return None
    return shard


def _manifest_from_shards(work_dir: Path, key: dict[str, Any], damaged: str) -> dict[str, Any]:
    """Stands in for a manifest that cannot be read (`damaged`: why): the shards record the hash of the run's key
    they were made under, so when every readable one was made under this run's key the run goes on (each shard is
    still checked against its videos), with the videos of every shard as the last run's; else it refuses, since
    what changed cannot be told."""
    settings = key_hash(key)
    shards = [read_shard(path) for path in sorted((work_dir / "shards").glob("shard-*.json"))]
    shards = [shard for shard in shards if shard is not None]
    if any(shard.get("settings") != settings for shard in shards):
        raise ValueError(
            f"The curation manifest {work_dir / MANIFEST_NAME} is damaged ({damaged}), and {work_dir} holds shards "
            "made with other settings or prompts (which cannot be told without the manifest): delete "
            f"{work_dir} (or set another `work_dir`) to start over."
        )
    videos = {video: identity for shard in shards for video, identity in (shard.get("inputs") or {}).items()}
    logger.warning(
        "The curation manifest %s is damaged (%s): rebuilt from the %d shard(s) in %s, which record this run's "
        "settings and prompts; videos are compared to theirs.",
        work_dir / MANIFEST_NAME,
        damaged,
        len(shards),
        work_dir,
    )
    return {"key": key, "fingerprint": settings, "videos": videos or None}


def check_manifest(
    work_dir: Path, key: dict[str, Any], legacy_models: dict[str, str | None] | None = None
) -> dict[str, Any] | None:
    """The manifest of the shards in `work_dir` (`None` when there is none); refuses shards made with other
    settings or prompts, naming what changed. Videos added or removed are not a change of settings: the run goes on
    incrementally (`VideoChanges`). A manifest that cannot be read is rebuilt from the shards when they all record
    this run's key, else refused (`_manifest_from_shards`). `legacy_models` (`model_identities(config,
    legacy_model_identity)`): a manifest whose only change is a local model recorded by the identity an older
    tpo-hf gave the same folder is not refused; its videos are curated again, as after a shard format change.
    A change of `BATCHING_FIELDS` alone resumes under `TPO_HF_RESUME_CHANGED=1`: the old key joins the manifest's
    `earlier_keys`, whose shards the run keeps (`accepted_settings`). A local model folder moved or copied with the
    same weights (`moved_models`) is no change either: `key` takes the recorded path back, so that its hash stays the
    one the shards record."""
    from ..checkpoints import RESUME_CHANGED_ENV

    manifest_path = work_dir / MANIFEST_NAME
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _manifest_from_shards(work_dir, key, str(error))
    if not isinstance(manifest, dict):
        return _manifest_from_shards(work_dir, key, f"a JSON {type(manifest).__name__}, not an object")
    start_over = "delete it, or set another `work_dir`, to start over"
    if "key" not in manifest:  # shard format 2 and before: a hash of settings and video list, no prompt texts
        raise ValueError(
            f"{work_dir} holds shards written before prompt texts were recorded (an older tpo-hf): whether they "
            f"were made with today's prompts cannot be told; {start_over}."
        )
    stored_format = manifest["key"].get("shard_format") if isinstance(manifest["key"], dict) else None
    if isinstance(stored_format, int) and 3 <= stored_format < SHARD_FORMAT_VERSION:
        # no shard of an older format is reused (each records its format), so nothing is lost by going on
        logger.warning(
            "%s holds shards of an older tpo-hf (shard format %d; this one writes %d): every video is curated again.",
            work_dir,
            stored_format,
            SHARD_FORMAT_VERSION,
        )
        return None
    for name in moved_models(manifest["key"], key):
        # the folder's path back into this run's key: its hash, which the shards record, stays the one they were made
        # under (the shards are the same whatever path the weights are read from)
        logger.info("%s moved: same weights, shards reused (%s -> %s).", name, manifest["key"][name], key[name])
        key[name] = manifest["key"][name]
    changed = changed_fields(manifest["key"], key)
    legacy = legacy_models or {}
    if changed and all(legacy.get(name) is not None and manifest["key"].get(name) == legacy[name] for name in changed):
        logger.warning(
            "%s holds shards keyed by an older tpo-hf's identity of the same model folder(s) (%s): every video is "
            "curated again.",
            work_dir,
            ", ".join(changed),
        )
        return None
    batching_only = bool(changed) and all(name in BATCHING_FIELDS for name in changed)
    if batching_only and os.environ.get(RESUME_CHANGED_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        logger.warning(
            "Resuming the curation in %s with other batching settings (%s=1; changed: %s): the shards finished with "
            "the old values are kept, the other videos are curated with the new ones.",
            work_dir,
            RESUME_CHANGED_ENV,
            ", ".join(f"{name} {manifest['key'].get(name)!r} -> {key.get(name)!r}" for name in changed),
        )
        return {**manifest, "earlier_keys": [*earlier_keys(manifest), manifest["key"]]}
    if batching_only:
        raise ValueError(
            f"{work_dir} holds shards made with other batching settings (changed: {', '.join(changed)}): they "
            "decide which prompts are generated together, and batched greedy generation pads each prompt to the "
            "longest of its batch, which can change replies (videos_per_shard also seeds each shard from its first "
            f"video). Set {RESUME_CHANGED_ENV}=1 to resume keeping the finished shards (the other videos are curated "
            f"with the new values), or rerun with the old values; or delete {work_dir} (or set another `work_dir`) to "
            "start over. max_concurrency may change freely."
        )
    if changed:
        prompts = [name for name in changed if name in PROMPT_KEY_NAMES]
        what = "prompts" if prompts and len(prompts) == len(changed) else "settings"
        raise ValueError(
            f"{work_dir} holds shards made with other {what} (changed: {', '.join(changed)}); {start_over} "
            "(settings that only affect mixing and output may change freely, and videos may be added or removed)."
        )
    return manifest


def earlier_keys(manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The keys, differing from the manifest's in `BATCHING_FIELDS` only, of the shards kept when a resume changed
    those under `TPO_HF_RESUME_CHANGED=1` (`check_manifest`)."""
    keys = (manifest or {}).get("earlier_keys")
    return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []


def accepted_settings(key: dict[str, Any], manifest: dict[str, Any] | None) -> set[str]:
    """The `settings` hashes of the shards this run may reuse: its own key's, and those of `earlier_keys`."""
    return {key_hash(key), *(key_hash(k) for k in earlier_keys(manifest))}


def write_manifest(
    work_dir: Path,
    key: dict[str, Any],
    videos: dict[str, str] | None,
    source: dict[str, str] | None = None,
    earlier: list[dict[str, Any]] | None = None,
    dataset: dict[str, str] | None = None,
    card: str | None = None,
    unreported: dict[str, Any] | None = None,
) -> None:
    """The run's key, and the videos (id -> identity) and `source` (`shard_source`) of the last finished run, that
    the next one is compared to; `earlier`: the keys of shards kept across a batching change (`earlier_keys`);
    `dataset`: the data files that run wrote into its output_dir (`dataset_files`; `check_dataset_unedited`), and
    `card` the hash of the dataset card it wrote there (`card_hash`); `unreported`: the `videos` and `source` its
    report compared with, kept until the run has printed its summary (a run killed before that is compared again
    with them, `unreported_since`)."""
    # one entry per key, and none for the run's own (a batching change undone)
    earlier = list({key_hash(k): k for k in earlier or [] if key_hash(k) != key_hash(key)}.values())
    manifest = {"key": key, "fingerprint": key_hash(key), "videos": videos, "source": source}
    if earlier:
        manifest["earlier_keys"] = earlier
    if dataset is not None:
        manifest["dataset_files"] = dataset
    if card is not None:
        manifest["card"] = card
    if unreported is not None:
        manifest["unreported"] = unreported
    atomic_write_json(work_dir / MANIFEST_NAME, manifest)


def unreported_since(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `videos` and `source` that the last run's report compared with, when that run wrote its dataset but was
    killed before it printed its summary (`write_manifest`'s `unreported`): what the next run compares with, so
    that its report names the videos the dataset gained or lost since the last run that finished."""
    unreported = (manifest or {}).get("unreported")
    return unreported if isinstance(unreported, dict) else None


def card_hash(output_dir: Path) -> str | None:
    """The content hash of the dataset card (`README.md`) in `output_dir`, None where there is none: what a curation
    records of the card it wrote, so that a rerun does not write over a card edited by hand since
    (`check_dataset_unedited`)."""
    readme = output_dir / "README.md"
    return file_content_hash(readme) if readme.is_file() else None


def check_dataset_unedited(work_dir: Path, output_dir: Path, push_to_hub: str | None = None) -> dict[str, str] | None:
    """Refuses a rerun into an `output_dir` whose dataset is not the one the last curation wrote there (its data
    files edited, filtered or replaced by hand since, e.g. to push the edit with the same command): the merge would
    rebuild the dataset from the shards over the edit, and push that. Returns the data files the manifest records
    (`dataset_files`), to keep recording; `None` where nothing is recorded for this output_dir (a folder curated by
    an older tpo-hf, a run killed in its merge), which is never refused, nor is a folder whose dataset is gone.
    Likewise a dataset card (`README.md`) edited by hand since the last curation wrote it (`card_hash`) is refused,
    the new card would be written over it (a card deleted is not: the run writes a new one).

    Raises:
        ValueError: naming the files that differ and the two ways on (push the folder as it is, or move the edited
            dataset away to curate again); or naming README.md and how to keep the edit (copy it elsewhere) or go
            on (delete it).
    """
    try:
        manifest = json.loads((work_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # no manifest, or a damaged one (`check_manifest` names it)
    recorded = manifest.get("dataset_files") if isinstance(manifest, dict) else None
    source = manifest.get("source") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict) or not isinstance(source, dict):
        return None
    # a manifest in `<output_dir>/_curation` (the default work_dir) is this folder's record whatever path it names: it
    # moved or was copied (`cp -r`) with the folder, and its data files with it
    own = os.path.realpath(work_dir) == os.path.realpath(output_dir / "_curation")
    if not own and source.get("output_dir") != os.path.realpath(output_dir):
        return None  # the record is of another output_dir sharing this work_dir
    # the card is the user's prose: a rerun writing a new one over a hand edit would lose it for good
    edited = _card_edited(manifest, work_dir, output_dir)
    if edited is not None:
        readme = output_dir / "README.md"
        upload = (
            "; publish it with huggingface_hub: upload_file(path_or_fileobj="
            f"{str(readme)!r}, path_in_repo='README.md', repo_id={push_to_hub!r}, repo_type='dataset')"
        )
        raise ValueError(
            f"output_dir {output_dir} holds a dataset card, README.md, edited since the last curation wrote it "
            f"({edited}): this run would write a new card over it"
            f"{f' (and push the new card to {push_to_hub})' if push_to_hub else ''}. To keep your edit, copy "
            f"it elsewhere first (e.g. cp {readme} {output_dir.parent / (output_dir.name + '-README.md')}). Then "
            f"delete {readme} and rerun this command: the shards in {work_dir} are reused and a new card is written, "
            f"into which you can carry your edit over{upload if push_to_hub else ''}."
        )
    current = dataset_files(output_dir)
    if current == recorded or not (current or (output_dir / "state.json").exists()):
        return recorded
    differ = sorted(name for name in set(recorded) | set(current) if recorded.get(name) != current.get(name))
    named = ", ".join(
        f"{name} ({'gone' if name not in current else 'new' if name not in recorded else 'changed'})"
        for name in differ
    )
    push = f"load_from_disk({str(output_dir)!r}).push_to_hub({(push_to_hub or 'USER/NAME')!r})"
    raise ValueError(
        f"output_dir {output_dir} holds a dataset that is not the one the last curation wrote there: {named} "
        f"{'differs' if len(differ) == 1 else 'differ'} from what it recorded in {work_dir / MANIFEST_NAME} (edited by hand?). This run would rebuild the "
        f"dataset from the shards over it{f' and push that to {push_to_hub}' if push_to_hub else ''}. To publish the "
        f'folder as it is, push it with the datasets library: python -c "from datasets import load_from_disk; {push}". '
        "To curate again over it, move its dataset files (data-*.arrow, dataset_info.json, state.json) out of "
        f"{output_dir} and rerun this command: the shards in {work_dir} are reused."
    )


def _card_edited(manifest: dict[str, Any], work_dir: Path, output_dir: Path) -> str | None:
    """How the dataset card in `output_dir` is known to be edited since the curation whose `manifest` (in `work_dir`)
    recorded the folder's dataset wrote it, or None: its hash differs from the one recorded (`card_hash`); a manifest
    of a tpo-hf that recorded none was written after the card, so a card newer than it was edited since."""
    readme = output_dir / "README.md"
    if not readme.is_file():
        return None
    if isinstance(manifest.get("card"), str):
        unedited = card_hash(output_dir) == manifest["card"]
        return None if unedited else f"it differs from what that run recorded in {work_dir / MANIFEST_NAME}"
    try:  # a few seconds' slack: a folder copied with `cp -r` gets its files' times in any order
        newer = readme.stat().st_mtime > (work_dir / MANIFEST_NAME).stat().st_mtime + 2
    except OSError:
        return None
    return f"it is newer than {work_dir / MANIFEST_NAME}, which that run wrote after it" if newer else None


def remove_leftovers(work_dir: Path, output_dir: Path) -> None:
    """Half-written shard files and merge staging folders of a killed run."""
    shards = work_dir / "shards"
    for leftover in shards.glob(".shard-*.tmp") if shards.is_dir() else []:
        leftover.unlink(missing_ok=True)
    for staging in output_dir.glob(".staging-*") if output_dir.is_dir() else []:
        shutil.rmtree(staging, ignore_errors=True)


def remove_dataset_files(output_dir: Path) -> None:
    """The dataset a previous run saved in `output_dir` (`save_to_disk`'s files, and its card): a run that ends
    with no pair must not leave the old pairs, or an empty skeleton, to be trained on."""
    if not (output_dir / "state.json").exists():
        return
    for name in ("state.json", "dataset_info.json", "README.md"):
        (output_dir / name).unlink(missing_ok=True)
    for data_file in output_dir.glob("data-*.arrow"):
        data_file.unlink(missing_ok=True)


def save_dataset(dataset: Any, output_dir: Path) -> None:
    """`save_to_disk` into a fresh folder, then moves the files in: a killed merge is simply redone."""
    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".staging-"))
    dataset.save_to_disk(str(staging))
    for name in os.listdir(staging):
        os.replace(staging / name, output_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
