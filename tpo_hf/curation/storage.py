"""Stage 2 of the flow (curation): shards on disk, and what makes a killed run resume to the same dataset.

Each shard is written atomically (temporary file + rename), so a shard file is either absent or complete. The
manifest records a fingerprint of the settings that change which pairs a shard holds, plus the video list; a run
started with other settings refuses to mix its shards with the old ones. A killed run leaves at most half-written
temporary files and merge staging folders; the main process removes them before the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..fingerprint import atomic_write_json, changed_fields, file_identity, key_hash
from .config import CurationConfig
from .inputs import VideoItem

SHARD_FORMAT_VERSION = 2  # 2: shards record their videos' identities (`inputs`)
MANIFEST_NAME = "manifest.json"


def shard_inputs(items: list[VideoItem]) -> dict[str, str]:
    """video id -> identity (path, size, modification time) of the file a shard was made from, plus a hash of the
    video's annotations (caption, questions) when the videos come from a dataset."""
    return {
        item.video_id: file_identity(item.path)
        + (f"#{key_hash([item.caption, item.questions])[:16]}" if item.caption or item.questions else "")
        for item in items
    }


def shard_is_current(shard: dict[str, Any], items: list[VideoItem], config: CurationConfig) -> str | None:
    """`None` when a stored shard may be reused as is, else why it must be recomputed.

    A shard is keyed by the run's fingerprint (manifest) plus its own videos' identities: a video repaired,
    re-encoded or replaced since is curated again, and so is a video skipped under `on_video_error="skip"` when the
    run now asks to `"raise"` on such videos.
    """
    if shard.get("version") != SHARD_FORMAT_VERSION:
        return f"written by shard format {shard.get('version')}, this code writes {SHARD_FORMAT_VERSION}"
    current = shard_inputs(items)
    stored = shard.get("inputs")
    if stored != current:
        changed = changed_fields(stored, current)
        return f"its video file(s) changed since: {', '.join(changed)}"
    if config.on_video_error == "raise" and shard.get("skipped"):
        return f"it skipped {', '.join(s['video'] for s in shard['skipped'])} and on_video_error is now 'raise'"
    return None


def config_fingerprint(config: CurationConfig, items: list[VideoItem]) -> str:
    """A hash of the settings that decide a shard's content, the video list and the shard format."""
    payload = json.dumps(
        {
            "config": config.fingerprint_fields(),
            "videos": [i.video_id for i in items],
            "version": SHARD_FORMAT_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def work_dir_of(config: CurationConfig) -> Path:
    """Where the shards and the manifest live (`work_dir`, default `output_dir/_curation`)."""
    return Path(config.work_dir or Path(config.output_dir) / "_curation")


def shard_path(work_dir: Path, index: int) -> Path:
    return work_dir / "shards" / f"shard-{index:05d}.json"


def check_manifest(work_dir: Path, fingerprint: str, config: CurationConfig, items: list[VideoItem]) -> None:
    """Refuses shards of a run with other settings or videos, naming what changed."""
    manifest_path = work_dir / MANIFEST_NAME
    if not manifest_path.exists():
        return
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("fingerprint") == fingerprint:
        return
    old = {**manifest.get("config", {}), "videos": [v for shard in manifest.get("shards", []) for v in shard]}
    new = {**config.fingerprint_fields(), "videos": [i.video_id for i in items]}
    changed = changed_fields(old, new) or ["shard format"]
    raise ValueError(
        f"{work_dir} holds shards of a run with other settings or videos (changed: {', '.join(changed)}); delete "
        "it, or set another `work_dir`, to start over (settings that only affect mixing and output may change "
        "freely)."
    )


def write_manifest(work_dir: Path, fingerprint: str, config: CurationConfig, shards: list[list[VideoItem]]) -> None:
    atomic_write_json(
        work_dir / MANIFEST_NAME,
        {
            "fingerprint": fingerprint,
            "num_shards": len(shards),
            "shards": [[i.video_id for i in s] for s in shards],
            "config": config.fingerprint_fields(),
        },
    )


def remove_leftovers(work_dir: Path, output_dir: Path) -> None:
    """Half-written shard files and merge staging folders of a killed run."""
    shards = work_dir / "shards"
    for leftover in shards.glob(".shard-*.tmp") if shards.is_dir() else []:
        leftover.unlink(missing_ok=True)
    for staging in output_dir.glob(".staging-*") if output_dir.is_dir() else []:
        shutil.rmtree(staging, ignore_errors=True)


def save_dataset(dataset: Any, output_dir: Path) -> None:
    """`save_to_disk` into a fresh folder, then moves the files in: a killed merge is simply redone."""
    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".staging-"))
    dataset.save_to_disk(str(staging))
    for name in os.listdir(staging):
        os.replace(staging / name, output_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
