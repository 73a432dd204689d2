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

from .config import CurationConfig
from .inputs import VideoItem

SHARD_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def atomic_write_json(path: Path, data: Any) -> None:
    """Writes `data` so that `path` either holds the old content or the complete new one, even after SIGKILL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


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


def check_manifest(work_dir: Path, fingerprint: str) -> None:
    """Refuses shards of a run with other settings or videos."""
    manifest_path = work_dir / MANIFEST_NAME
    if manifest_path.exists() and json.loads(manifest_path.read_text())["fingerprint"] != fingerprint:
        raise ValueError(
            f"{work_dir} holds shards of a run with other settings or videos; delete it, or set another "
            "`work_dir`, to start over (settings that only affect mixing and output may change freely)."
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
