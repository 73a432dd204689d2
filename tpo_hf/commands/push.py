"""`tpo-hf push` (stage 6 of the flow): push a trained adapter, or the base model with it merged in, to the Hub in
one commit, with the model card re-rendered for the target repo (`tpo_hf.hub.push.push_adapter`).

    tpo-hf push --adapter_dir outputs/tpo-lora --repo_id user/Qwen2.5-VL-7B-TPO [--merge [--base_model BASE]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import run_cli


@dataclass
class PushArguments:
    """Arguments of `tpo-hf push`."""

    adapter_dir: str = field(metadata={"help": "Folder written by `tpo-hf train` (adapter, processor, card, plot)."})
    repo_id: str = field(metadata={"help": "Target model repo on the Hub, e.g. `user/Qwen2.5-VL-7B-TPO`."})
    merge: bool = field(default=False, metadata={"help": "Upload the base model with the adapter merged in."})
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "With --merge: the base model to merge into (Hub id or folder; default: the adapter config's "
            "base_model_name_or_path), e.g. a local copy of a gated base."
        },
    )
    private: bool | None = field(default=None, metadata={"help": "Create the repo as private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to commit to (default main)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit message."})


def make_parser():
    from trl import TrlParser

    return TrlParser((PushArguments,))


def main(args: PushArguments) -> None:
    """Pushes as `args` say and prints the commit."""
    from ..hub.push import push_adapter

    commit = push_adapter(
        args.adapter_dir,
        args.repo_id,
        merge=args.merge,
        base_model=args.base_model,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    print(f"Pushed {args.adapter_dir} to {commit.commit_url}")


def cli_main(argv: list[str] | None = None) -> None:
    run_cli("push", make_parser, main, argv)


if __name__ == "__main__":
    cli_main()
