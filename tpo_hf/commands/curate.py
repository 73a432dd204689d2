"""`tpo-hf curate` (stage 2 of the flow): curate TPO preference pairs from videos.

    tpo-hf curate --config recipes/Qwen2.5-VL-7B-Instruct/curate/config.yaml
    accelerate launch --num_processes 8 -m tpo_hf.commands.curate --config FILE.yaml      # videos split across processes

`CurationConfig` is parsed with TRL's `TrlParser`: every field can be set in the YAML file or as a flag, and flags
override the file. A killed run resumes when started again with the same command; one stopped with Ctrl-C says in one
line how many shards it kept, and leaves its output folder marked unfinished until then. With `--push_to_hub REPO_ID`
the dataset, its card (and with `--upload_videos` the videos) are pushed in one commit.
"""

from __future__ import annotations

from pathlib import Path

from trl import TrlParser

from ..curation.config import CurationConfig
from ..curation.run import CurationResult, refuse_foreign_output_files, run_curation
from ..curation.storage import check_dataset_unedited, work_dir_of
from ..hub.push import check_repo_id, prepare_dataset_push, push_dataset
from ..locks import output_dir_lock
from . import run_cli


def main(config: CurationConfig) -> CurationResult | None:
    """Runs curation (resuming if shards exist), saves the dataset to `output_dir`, and pushes it if asked.

    Returns the result on the main process, `None` on the other processes of a distributed run. Holds
    `output_dir` (`tpo_hf.locks`) until the push is done. With `push_to_hub`, the repo id, the token's write access
    and the visibility are checked before curating (`prepare_dataset_push`), not after hours of it.
    """
    if config.push_to_hub:
        check_repo_id(config.push_to_hub, setting="--push_to_hub")  # on every process: nothing curates with a bad id
    with output_dir_lock(config.output_dir, "curate") as lock:
        if config.push_to_hub and lock is not None:  # the main process (the others take no lock) asks the Hub
            # a dataset edited by hand is refused before the Hub is asked (and its repo created), as in the run
            check_dataset_unedited(work_dir_of(config), Path(config.output_dir), config.push_to_hub)
            refuse_foreign_output_files(config)  # so is a folder of the user's own (its README.md)
            prepare_dataset_push(
                config.output_dir, config.push_to_hub, config.hub_private, upload_videos=config.upload_videos
            )
        result = run_curation(config)
        if result is not None and config.push_to_hub:
            commit = push_dataset(
                result.output_dir,
                config.push_to_hub,
                result.dataset,
                result.report,
                config,
                upload_videos=config.upload_videos,
                private=config.hub_private,
            )
            print(f"Pushed {len(result.dataset)} pairs to {config.push_to_hub}: {commit.commit_url}")
    return result


def make_parser(subparsers=None) -> TrlParser:
    if subparsers is not None:
        return subparsers.add_parser("curate", help="Curate TPO preference pairs", dataclass_types=(CurationConfig,))
    return TrlParser((CurationConfig,))


def cli_main(argv: list[str] | None = None) -> None:
    run_cli("curate", make_parser, main, argv)


if __name__ == "__main__":
    cli_main()
