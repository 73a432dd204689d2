"""Stage 2 of the flow (curation): the input videos, from a folder or a dataset, and how they are cut into shards."""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from ..video import is_video_url, list_video_files, local_video_path, outside_own_folders, video_url_key
from .answer import same_answer
from .config import CurationConfig

logger = logging.getLogger(__name__)


@dataclass
class VideoItem:
    """One input video: `video_id` is its path relative to the corpus root (stable across machines), the name of its
    copy under `output_dir/videos/` (`_dataset_video_ids` for videos that a dataset names)."""

    video_id: str
    path: str
    caption: str | None = None
    questions: list[tuple[str, str | None]] = field(default_factory=list)
    # annotation rows of this video whose question is null or blank: no candidate, counted among the drop reasons
    rows_without_question: int = 0
    # annotation rows of this video whose caption differs from the one used (its first row's): ignored, named in a
    # warning and counted in the report (`captions_ignored`)
    rows_other_caption: list[int] = field(default_factory=list)


# the drop reason counting annotation rows (`question_column`) whose question is null or blank
ROW_WITHOUT_QUESTION = "annotation_without_question"


def list_videos(config: CurationConfig) -> list[VideoItem]:
    """The input videos, sorted by id, from `video_dir` or from `dataset_name` (rows grouped by video).

    A broken link in `video_dir` is an item like any other (`list_video_files` names it in a warning): decoding it
    fails, so it is skipped by name in the report, or raises under `on_video_error="raise"`, never silently absent.
    """
    if config.video_dir is not None:
        root = Path(config.video_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"video_dir={config.video_dir} is not a folder.")
        listed = _not_hidden(list_video_files(root, config.video_extensions), root)
        paths = outside_own_folders(listed, root, config.output_dir, "videos", (config.shard_dir,))
        paths = _one_name_per_file(_utf8_named(paths, root, config), root)
        items = [VideoItem(p.relative_to(root).as_posix(), str(p)) for p in paths]
    else:
        items = _videos_of_dataset(config)
    if config.max_videos is not None:
        items = items[: config.max_videos]
    if config.push_to_hub and config.upload_videos:
        _check_uploadable(items, config)
    return items


# folders that drives, NAS systems and file systems keep deleted, derived or salvaged files in, under names that do
# not start with a dot: Windows' recycle bin and restore points, Synology's and QNAP's recycle bins, Synology's
# thumbnails and snapshots, fsck's salvage folder, and a macOS archive's metadata (compared case-insensitively)
SYSTEM_FOLDERS = (
    "$RECYCLE.BIN",
    "System Volume Information",
    "#recycle",
    "@Recycle",
    "@eaDir",
    "#snapshot",
    "lost+found",
    "__MACOSX",
)
_SYSTEM_FOLDER_KEYS = frozenset(name.casefold() for name in SYSTEM_FOLDERS)


def _is_hidden(relative: Path) -> bool:
    """Whether a path under `video_dir` is hidden: a file or folder whose name starts with a dot, as `datasets`'
    folder loaders see it (a trash folder `.Trash-1000/` or `.Trashes/`, an AppleDouble `._clip.mp4`, an editor's
    `.cache/`), or one of the `SYSTEM_FOLDERS` (a USB drive's `$RECYCLE.BIN/`, a Synology share's `#recycle/`)."""
    return any(part.startswith(".") or part.casefold() in _SYSTEM_FOLDER_KEYS for part in relative.parts)


def _not_hidden(paths: list[Path], root: Path) -> list[Path]:
    """`paths` less the hidden ones (`_is_hidden`, below `root` only: a `video_dir` that is itself under a hidden
    folder is not): deleted takes, AppleDouble metadata, thumbnails and archive copies are no videos to curate. What
    is left out is named in one warning."""
    hidden = [path for path in paths if _is_hidden(path.relative_to(root))]
    if hidden:
        shown = ", ".join(path.relative_to(root).as_posix() for path in hidden[:5])
        logger.warning(
            "Left out %d hidden video file(s) under %s (in a folder or with a name starting with '.', as the datasets "
            "library does, or in a trash or system folder: %s): %s%s. Rename them, or move them out of those folders, "
            "to curate them.",
            len(hidden),
            root,
            ", ".join(SYSTEM_FOLDERS),
            shown,
            f" and {len(hidden) - 5} more" if len(hidden) > 5 else "",
        )
    return [path for path in paths if not _is_hidden(path.relative_to(root))]


def _one_name_per_file(paths: list[Path], root: Path) -> list[Path]:
    """`paths` (sorted) less those whose real file, links resolved, an earlier one already names: a link beside its
    target (`linkA.mp4 -> a.mp4`, or a hard link `hard.mp4` to it) would be curated as a second video, its pairs
    duplicates of the first's. The first name is kept; the others are named, each with the one kept, in one warning.
    A link to a file that no other path names (outside `root`, say) is a video like any other; a broken link is
    kept, to fail by name when read."""
    kept: list[Path] = []
    first: dict[object, Path] = {}  # real file -> the path kept for it
    repeated: list[tuple[Path, Path]] = []
    for path in paths:
        try:
            status = os.stat(path)  # links followed
        except OSError:
            kept.append(path)
            continue
        # a file is its device and inode (so hard links are one file too); a file system without inode numbers
        # (st_ino 0) falls back to the resolved path
        key = (status.st_dev, status.st_ino) if status.st_ino else os.path.realpath(path)
        other = first.setdefault(key, path)
        if other is path:
            kept.append(path)
        else:
            repeated.append((path, other))
    if repeated:
        shown = ", ".join(
            f"{path.relative_to(root).as_posix()} (the same file as {other.relative_to(root).as_posix()})"
            for path, other in repeated[:5]
        )
        logger.warning(
            "Left out %d video file(s) under %s that are, links resolved, the same file as a video listed before "
            "them under another name, so that no video is curated twice: %s%s. Remove the links (or rename the "
            "files) to choose the name a video is curated under.",
            len(repeated),
            root,
            shown,
            f" and {len(repeated) - 5} more" if len(repeated) > 5 else "",
        )
    return kept


def _utf8_named(paths: list[Path], root: Path, config: CurationConfig) -> list[Path]:
    """`paths` less those whose name is not UTF-8 (e.g. Latin-1 bytes, read as surrogate escapes): a video's id is
    stored as text in the shards and the dataset, which cannot hold it. Each one is named in a warning, or refused
    under `on_video_error="raise"`."""
    kept = []
    for path in paths:
        try:
            path.relative_to(root).as_posix().encode("utf-8")
        except UnicodeEncodeError:
            shown = ascii(os.fsencode(path))
            reason = f"Video {shown} has a file name that is not UTF-8, which the dataset cannot store as its id"
            if config.on_video_error == "raise":
                raise ValueError(f"{reason}: rename it (e.g. `convmv -f latin1 -t utf8 --notest`).") from None
            logger.warning("%s: skipped. Rename it (e.g. `convmv -f latin1 -t utf8 --notest`) to curate it.", reason)
            continue
        kept.append(path)
    return kept


def _check_uploadable(items: list[VideoItem], config: CurationConfig) -> None:
    """Refuses, before any work, a video that `--upload_videos` could not push under `videos/<id>` after the run."""
    if not config.copy_videos:
        raise ValueError("upload_videos=True uploads the copies under output_dir/videos: it needs copy_videos=True.")
    for item in items:
        if "://" in item.path:
            raise ValueError(
                f"Video {item.path} is a URL: --upload_videos uploads the copies under output_dir/videos, and a URL is "
                "not copied. Use local files, or push without --upload_videos."
            )
        refused = [part for part in item.video_id.split("/") if part in ("", ".", "..", ".git", ".cache")]
        if refused:
            raise ValueError(
                f"Video {item.path} would be uploaded as videos/{item.video_id}, a path the Hub refuses (segment "
                f"{refused[0]!r}). Rename it or give it another path in the dataset, or push without --upload_videos."
            )


def _videos_of_dataset(config: CurationConfig) -> list[VideoItem]:
    from ..data import default_video_root, load_preference_dataset

    dataset = load_preference_dataset(
        config.dataset_name, split=config.dataset_split, video_column=config.video_column
    )
    for column in (config.video_column, config.caption_column, config.question_column, config.answer_column):
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"Column {column!r} is not in dataset {config.dataset_name} (columns: {dataset.column_names})."
            )
    root = config.video_root or default_video_root(config.dataset_name) or ""
    grouped: dict[str, VideoItem] = {}  # by where the video is, so two spellings of one file are one video
    rows: dict[str, tuple[int, str]] = {}  # each video's first row and the path it gives
    without_question: list[int] = []  # rows whose question is null or blank
    caption_rows: dict[str, int] = {}  # the row whose caption each video uses
    # a URL spelled otherwise than by its video's first row -> (the first row giving it, the video's first row)
    respelled: dict[str, tuple[int, int]] = {}
    respelled_rows = 0
    for row_index, row in enumerate(dataset):
        video = row[config.video_column]
        if not isinstance(video, str) or not video:
            raise ValueError(f"Row {row_index} of {config.dataset_name}: {config.video_column!r} is not a path.")
        video = local_video_path(video)  # `file://` URLs and `~/` paths name local files, as in training
        remote_or_absolute = os.path.isabs(video) or "://" in video
        if not remote_or_absolute:  # "./clips/a.mp4" is "clips/a.mp4": its id, copy and Hub path have no "." segment
            video = posixpath.normpath(video)
        path = video if remote_or_absolute else os.path.join(root, video)
        location = path if "://" in path else os.path.normpath(os.path.abspath(path))
        if is_video_url(path) and path.partition("#")[2]:
            # a media fragment (`#t=0,10`) asks for a time range that is never sent to the server nor applied: the
            # whole video would be curated under a row that asked for part of it
            raise ValueError(
                f"Row {row_index} of {config.dataset_name}: video URL {path} has a fragment "
                f"(#{path.partition('#')[2]}), which is not applied: a URL's fragment is never sent to its server and "
                "tpo-hf reads no media fragment (#t=start,end), so the whole video would be curated. Remove the "
                "fragment; to curate only a time range, cut it into a video file of its own and give that."
            )
        if is_video_url(path):  # `my%20video.mp4` and a pasted `my video.mp4` are one video, downloaded once
            location = video_url_key(path)
        for column in (config.caption_column, config.question_column, config.answer_column):
            value = row.get(column) if column else None
            if value is not None and not isinstance(value, str):
                # str() of a list or a number would silently become a caption or a question
                raise ValueError(
                    f"Row {row_index} of {config.dataset_name}, field {column!r}: expected a string, got "
                    f"{type(value).__name__} {value!r:.60}."
                )
        item = grouped.setdefault(location, VideoItem("", path))
        first_row, first_video = rows.setdefault(location, (row_index, video))
        if video != first_video and is_video_url(path):  # two spellings of one local file are merged unsaid
            respelled.setdefault(video, (row_index, first_row))
            respelled_rows += 1
        caption = row.get(config.caption_column) if config.caption_column else None
        if caption and item.caption is None:
            item.caption = str(caption)
            caption_rows[location] = row_index
        elif caption and not same_answer(caption, item.caption or ""):
            # a video has one caption: a merged annotation file's second caption would be dropped unseen
            item.rows_other_caption.append(row_index)
        if config.question_column and str(row.get(config.question_column) or "").strip():
            answer = row.get(config.answer_column) if config.answer_column else None
            item.questions.append((str(row[config.question_column]), str(answer) if answer else None))
        elif config.question_column:
            item.rows_without_question += 1
            without_question.append(row_index)
    if without_question:
        logger.warning(
            "%d row(s) of %s have no question in column %r (null or blank; rows %s%s): they make no pair, counted as "
            "%s among the report's drop reasons.",
            len(without_question),
            config.dataset_name,
            config.question_column,
            ", ".join(map(str, without_question[:10])),
            ", ..." if len(without_question) > 10 else "",
            ROW_WITHOUT_QUESTION,
        )
    if respelled:
        first_spelling = {row: video for row, video in rows.values()}
        shown = "; ".join(
            f"row {row} ({video}, the same URL as row {first}'s {first_spelling[first]})"
            for video, (row, first) in list(respelled.items())[:5]
        )
        logger.warning(
            "%d row(s) of %s name a video URL that an earlier row spells otherwise (percent-escapes, the case of the "
            "scheme or host): one video each, downloaded and curated once under its first row's spelling, with the "
            "questions of all its rows: %s%s. Write each URL one way to choose the spelling.",
            respelled_rows,
            config.dataset_name,
            shown,
            f"; and {len(respelled) - 5} more spelling(s)" if len(respelled) > 5 else "",
        )
    for location, video_id in _dataset_video_ids(rows, config.dataset_name).items():
        grouped[location].video_id = video_id
    other_captions = [(item, caption_rows[location]) for location, item in grouped.items() if item.rows_other_caption]
    if other_captions:
        shown = "; ".join(
            f"{item.video_id} (row {used} used, row(s) {', '.join(map(str, item.rows_other_caption[:10]))}"
            f"{', ...' if len(item.rows_other_caption) > 10 else ''} ignored)"
            for item, used in other_captions[:5]
        )
        logger.warning(
            "%d row(s) of %s give a video another caption in column %r than its first caption row: a video has one "
            "caption, so the first is used and the others are ignored (counted as the report's `captions_ignored`): "
            "%s%s. Give each video one caption (merge them, or drop the rows) to choose which.",
            sum(len(item.rows_other_caption) for item, _ in other_captions),
            config.dataset_name,
            config.caption_column,
            shown,
            f"; and {len(other_captions) - 5} more video(s)" if len(other_captions) > 5 else "",
        )
    return sorted(grouped.values(), key=lambda item: item.video_id)


def _dataset_video_ids(rows: dict[str, tuple[int, str]], dataset_name: str) -> dict[str, str]:
    """The id of each video a dataset names (`rows`: location -> first row and the path as given), unique.

    A relative path is its own id, with leading `../` segments dropped (`../media/a.mp4` -> `media/a.mp4`) so that
    its copy stays under `output_dir/videos/` and its Hub path is valid; an absolute path or URL is known by its file
    name, as before, unless another video has that name too (`cam_a/clip.mp4`, `cam_b/clip.mp4`): those are known
    by as many trailing folders as tell them apart. So an id changes only where it would not be unique (or would
    leave `videos/`), and finished shards of other videos are reused. Ids that still clash are refused, naming the
    two rows.
    """
    ids: dict[str, str] = {}
    by_name: dict[str, list[str]] = {}
    for location, (_, video) in rows.items():
        if os.path.isabs(video) or "://" in video:
            by_name.setdefault(_trailing(video, 1), []).append(location)
        elif ".." in video.split("/"):
            ids[location] = "/".join(part for part in posixpath.normpath(video).split("/") if part != "..")
        else:
            ids[location] = video
    for locations in by_name.values():
        videos = [rows[location][1] for location in locations]
        depth, longest = 1, max(len(_trailing(video, None).split("/")) for video in videos)
        while depth < longest and len({_trailing(video, depth) for video in videos}) < len(videos):
            depth += 1
        for location, video in zip(locations, videos):
            ids[location] = _trailing(video, depth)
    seen: dict[str, str] = {}
    for location, video_id in ids.items():
        other = seen.setdefault(video_id, location)
        if other != location:
            (row, video), (other_row, other_video) = rows[location], rows[other]
            raise ValueError(
                f"Rows {other_row} ({other_video}) and {row} ({video}) of {dataset_name} name different videos that "
                f"would share the id {video_id!r} (their name under output_dir/videos and in the video column): "
                "give them paths that differ in their folders or file names."
            )
    return ids


def _trailing(video: str, depth: int | None) -> str:
    """The last `depth` segments of an absolute path, or of a URL after its host (all of them for `None`)."""
    if depth == 1:
        return video.rstrip("/").split("/")[-1]  # the id of earlier releases, so their finished shards are reused
    parts = [part for part in (video if "://" in video else posixpath.normpath(video)).split("/") if part]
    if "://" in video:
        parts = parts[2:]  # scheme and host
    return "/".join(parts if depth is None else parts[-depth:])


def make_shards(items: list[VideoItem], videos_per_shard: int) -> list[list[VideoItem]]:
    """Groups of at most `videos_per_shard` consecutive videos (in id order): the unit of batching and of resume.

    A group ends before a video whose id hashes to a boundary (one id in `videos_per_shard`) or when it is full, so
    where groups end depends on the ids nearby only: adding or removing a video regroups the videos of its own
    group (and rarely of the next), and every other group, hence every other finished shard, stays as it was. With
    one video per shard (the default) every video is its own shard.
    """
    shards: list[list[VideoItem]] = []
    for item in items:
        boundary = int(hashlib.sha256(item.video_id.encode()).hexdigest()[:8], 16) % videos_per_shard == 0
        if not shards or boundary or len(shards[-1]) >= videos_per_shard:
            shards.append([item])
        else:
            shards[-1].append(item)
    return shards
