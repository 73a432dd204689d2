"""Stage 6 of the flow (publish): write, push, or run locally the Gradio Space demo of a TPO adapter.

    tpo-hf space --adapter USER/MODEL-TPO --space_id USER/MODEL-TPO-demo    # write the folder and push it
    tpo-hf space --adapter USER/MODEL-TPO --local                           # run the app here

The folder is rendered from `hub_cards/`: `README.md` (Spaces metadata through `SpaceCardData`), `app.py` (a thin
launcher of `tpo_hf.hub.app.build_demo`), `requirements.txt` (tpo-hf plus its runtime and `demo` dependencies,
with the bounds of `pyproject.toml` read from the installed package metadata) and `examples/` (example videos offered with one click;
by default a short synthetic clip, so the Space works before anyone uploads a video).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, SpaceCard, SpaceCardData, constants

from .. import __version__
from ..paper import TPO_TAG
from .templates import render_template, template_path


def space_requirements(tpo_hf_requirement: str) -> str:
    """The Space's `requirements.txt`: `tpo_hf_requirement`, then tpo-hf's runtime and `demo` dependencies exactly
    as `pyproject.toml` bounds them (from the installed package metadata, so the pins are never copied by hand)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    lines = [tpo_hf_requirement]
    for text in requires("tpo-hf") or []:
        requirement = Requirement(text)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            if not requirement.marker.evaluate({"extra": "demo"}):
                continue
            requirement.marker = None  # a `demo` extra: unconditional in the Space
        # platform markers stay (decord installs on x86-64 Linux and Windows only)
        lines.append(str(requirement))
    return "\n".join(lines) + "\n"


def _adapter_base(adapter: str) -> str | None:
    from ..models import adapter_base_model

    try:
        return adapter_base_model(adapter)
    except Exception:  # unreachable adapter (e.g. offline): the card just does not name the base
        return None


def write_space(
    output_dir: str | Path,
    adapter: str,
    base_model: str | None = None,
    title: str | None = None,
    num_frames: int = 16,
    max_new_tokens: int = 128,
    examples: list[str] | None = None,
    tpo_hf_requirement: str | None = None,
) -> Path:
    """Writes the Space folder (README.md, app.py, requirements.txt, examples/) for `adapter` into `output_dir`.

    `examples` are video files copied to `examples/`; without them a synthetic clip is written there.
    `tpo_hf_requirement` is the requirements line that installs this library in the Space (default
    `tpo-hf[demo]==<this version>`; e.g. a `git+https://...` URL for an unreleased version).
    """
    import gradio

    output_dir = Path(output_dir)
    (output_dir / "examples").mkdir(parents=True, exist_ok=True)
    base_model = base_model or _adapter_base(adapter)
    example_paths = []
    for example in examples or []:
        if not Path(example).is_file():
            raise FileNotFoundError(f"Example video {example} does not exist; pass existing files to --examples.")
        shutil.copy(example, output_dir / "examples" / Path(example).name)
        example_paths.append(f"examples/{Path(example).name}")
    if not example_paths:
        from ..synthetic import Scene, write_synthetic_video

        scenes = [Scene(3, "red", "square", "right"), Scene(3, "blue", "circle", "left")]
        write_synthetic_video(output_dir / "examples" / "shapes.mp4", scenes, fps=8)
        example_paths.append("examples/shapes.mp4")
    title = title or f"{adapter.split('/')[-1]} vs. base"
    card_data = SpaceCardData(
        title=title[:60],
        sdk="gradio",
        sdk_version=gradio.__version__,
        app_file="app.py",
        models=[model for model in (adapter, base_model) if model],
        tags=[TPO_TAG, "tpo", "video", "video-text-to-text"],
        short_description="Base vs. TPO answers to questions about a video",
    )
    card = SpaceCard.from_template(
        card_data,
        template_path=str(template_path("space_readme.md")),
        title=title,
        adapter=adapter,
        base_model=base_model or "the base model",
        hub_url=constants.ENDPOINT,
    )
    card.save(output_dir / "README.md")
    (output_dir / "app.py").write_text(
        render_template(
            "space_app.py.j2",
            adapter=adapter,
            base_model=base_model,
            num_frames=num_frames,
            max_new_tokens=max_new_tokens,
            examples=example_paths,
        )
    )
    requirement = tpo_hf_requirement or f"tpo-hf[demo]=={__version__}"
    (output_dir / "requirements.txt").write_text(space_requirements(requirement))
    return output_dir


def push_space(folder: str | Path, space_id: str, private: bool | None = None, token: str | None = None) -> Any:
    """Creates the Space (Gradio SDK) if needed and uploads `folder` in one commit."""
    from .push import push_failed

    api = HfApi(token=token)
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
    ]
    try:
        api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        return api.create_commit(space_id, repo_type="space", operations=operations, commit_message="TPO demo")
    except Exception as error:
        raise push_failed(
            f"Uploading the Space folder {folder}",
            space_id,
            error,
            f"tpo-hf space --adapter ... --space_id {space_id} --output_dir {folder}",
            api,
            kept="The folder is intact.",
        ) from error


@dataclass
class SpaceArguments:
    """Arguments of `tpo-hf space`."""

    adapter: str = field(metadata={"help": "TPO adapter: Hub id or local folder."})
    space_id: str | None = field(default=None, metadata={"help": "Space to push to, e.g. `user/tpo-demo`."})
    base_model: str | None = field(default=None, metadata={"help": "Base model (default: the adapter's base)."})
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the Space folder."})
    num_frames: int = field(default=16, metadata={"help": "Default of the frames slider."})
    max_new_tokens: int = field(default=128, metadata={"help": "Answer length cap."})
    examples: list[str] | None = field(default=None, metadata={"help": "Example video files for the Space."})
    tpo_hf_requirement: str | None = field(
        default=None, metadata={"help": "requirements.txt line installing tpo-hf (default tpo-hf[demo]==VERSION)."}
    )
    local: bool = field(default=False, metadata={"help": "Run the app here instead of pushing it."})
    host: str = field(default="127.0.0.1", metadata={"help": "Host for --local."})
    port: int | None = field(default=None, metadata={"help": "Port for --local (default: Gradio's)."})
    private: bool | None = field(default=None, metadata={"help": "Create the Space as private."})


def cli_main(argv: list[str] | None = None) -> None:
    from trl import TrlParser

    (args,) = TrlParser((SpaceArguments,)).parse_args_and_config(args=argv)
    if args.local:
        from .app import build_demo

        demo = build_demo(args.adapter, args.base_model, args.num_frames, max_new_tokens=args.max_new_tokens)
        demo.launch(server_name=args.host, server_port=args.port)
        return
    if not args.space_id and not args.output_dir:
        raise SystemExit("tpo-hf space: give --space_id USER/NAME to push, --output_dir DIR to write, or --local.")
    with tempfile.TemporaryDirectory(prefix="tpo-space-") as scratch:
        folder = write_space(
            args.output_dir or scratch,
            args.adapter,
            args.base_model,
            num_frames=args.num_frames,
            max_new_tokens=args.max_new_tokens,
        )
        if args.space_id:
            commit = push_space(folder, args.space_id, private=args.private)
            print(f"Pushed the Space to {commit.commit_url}")
        else:
            print(f"Wrote the Space folder to {folder}")


if __name__ == "__main__":
    cli_main()
