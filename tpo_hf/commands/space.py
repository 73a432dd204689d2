"""`tpo-hf space` (stage 6 of the flow): write the Gradio Space folder of a TPO adapter, push it, or run the demo
here (`tpo_hf.hub.space`, `tpo_hf.hub.app`).

    tpo-hf space --adapter user/Qwen2.5-VL-7B-TPO --space_id user/tpo-demo      # or --output_dir DIR, or --local
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from . import run_cli


@dataclass
class SpaceArguments:
    """Arguments of `tpo-hf space`."""

    adapter: str = field(metadata={"help": "TPO adapter: Hub id or local folder."})
    space_id: str | None = field(default=None, metadata={"help": "Space to push to, e.g. `user/tpo-demo`."})
    base_model: str | None = field(default=None, metadata={"help": "Base model (default: the adapter's base)."})
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the Space folder."})
    num_frames: int | None = field(
        default=None,
        metadata={
            "help": "Start of the frames slider, at least 2 (default: the frames the adapter was trained with)."
        },
    )
    max_new_tokens: int = field(default=128, metadata={"help": "Answer length cap."})
    examples: list[str] | None = field(
        default=None,
        metadata={"help": "Example video files for the Space (a folder: the videos in it); other files are refused."},
    )
    tpo_hf_requirement: str | None = field(
        default=None,
        metadata={
            "help": "requirements.txt line installing tpo-hf in the Space, e.g. 'tpo-hf[demo] @ git+https://...' or "
            "'tpo-hf[demo]==X' (default: ship a wheel of this tpo-hf in the Space folder, unpacked by app.py)."
        },
    )
    local: bool = field(default=False, metadata={"help": "Run the app here instead of pushing it."})
    host: str = field(default="127.0.0.1", metadata={"help": "Host for --local."})
    port: int | None = field(default=None, metadata={"help": "Port for --local (default: Gradio's)."})
    private: bool | None = field(default=None, metadata={"help": "Create the Space as private."})
    overwrite_hub_edits: bool = field(
        default=False,
        metadata={
            "help": "Replace the Space's files that were changed on the Hub since `tpo-hf space` pushed them (e.g. "
            "app.py fixed in its web editor); without it such a push is refused, naming them."
        },
    )


def make_parser():
    from trl import TrlParser

    return TrlParser((SpaceArguments,))


def main(args: SpaceArguments) -> None:
    """Runs the demo here (`--local`), or writes the Space folder and pushes it when `space_id` is set."""
    if args.local:
        from ..hub.app import build_demo
        from ..hub.space import check_space_inputs

        check_space_inputs(args.adapter, args.num_frames, args.max_new_tokens, None)  # as for a written Space
        if args.port is not None:
            check_port_free(args.host, args.port)
        demo = build_demo(args.adapter, args.base_model, args.num_frames, max_new_tokens=args.max_new_tokens)
        demo.launch(server_name=args.host, server_port=args.port)
        return
    if not args.space_id and not args.output_dir:
        raise SystemExit("tpo-hf space: give --space_id USER/NAME to push, --output_dir DIR to write, or --local.")
    from ..hub.push import PushError
    from ..hub.space import prepare_space, push_space, write_space
    from ..locks import output_dir_lock

    def check_space_writable() -> None:  # a read-only token, refused before the folder and its wheel are built
        if args.space_id:
            prepare_space(args.space_id, rerun_command(args, args.output_dir), private=args.private)

    scratch = None if args.output_dir else tempfile.mkdtemp(prefix="tpo-space-")
    new_folder = args.output_dir is not None and not Path(args.output_dir).exists()
    try:
        # one writer per --output_dir, as for curate/train/eval: two runs into one folder interleaved their files,
        # and the first reported (or pushed) a folder the second rewrote
        with output_dir_lock(args.output_dir, "space", "--output_dir") if args.output_dir else nullcontext():
            folder = write_space(
                args.output_dir or scratch,
                args.adapter,
                args.base_model,
                num_frames=args.num_frames,
                max_new_tokens=args.max_new_tokens,
                examples=args.examples,
                tpo_hf_requirement=args.tpo_hf_requirement,
                for_hub=bool(args.space_id),
                before_writing=check_space_writable,
            )
            if args.space_id:
                commit = push_space(
                    folder,
                    args.space_id,
                    private=args.private,
                    rerun=rerun_command(args, str(folder)),
                    overwrite_hub_edits=args.overwrite_hub_edits,
                )
                print(f"Pushed the Space to {commit.commit_url}")
            else:
                print(f"Wrote the Space folder to {folder}")
    except PushError as error:
        if scratch is not None and scratch in str(error):
            scratch = None  # kept: the error names it, to push again with --output_dir
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        elif new_folder and Path(args.output_dir).is_dir() and not any(Path(args.output_dir).iterdir()):
            Path(args.output_dir).rmdir()  # made for the lock by a run refused before it wrote anything


def check_port_free(host: str, port: int) -> None:
    """Refuses a `--port` that another app (a `tpo-hf space --local` still serving) holds on `host`: gradio found it
    only after the model was loaded, with a traceback naming its own settings. Checked as gradio does, by a bind with
    SO_REUSEADDR (a port left in TIME_WAIT by an app just stopped is free)."""
    import errno
    import socket

    if isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"--port must be a port number from 1 to 65535, got {port!r}.")
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # an IPv6 address in brackets
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ValueError(f"--host {host} cannot be served on: {error.strerror}.") from None
    with socket.socket(family, kind, protocol) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ValueError(
                    f"port {port} on {host} is in use (another app, or a `tpo-hf space --local` still running?): "
                    "pass another --port N, or stop that app."
                ) from None
            raise ValueError(f"Cannot serve on --host {host} --port {port}: {error.strerror}.") from None


def rerun_command(args: SpaceArguments, output_dir: str | None) -> str:
    """The `tpo-hf space` command line of `args`, writing into `output_dir`: what an error tells to rerun."""
    command = ["tpo-hf", "space", "--adapter", args.adapter, "--space_id", str(args.space_id)]
    if args.base_model:
        command += ["--base_model", args.base_model]
    if args.num_frames is not None:
        command += ["--num_frames", str(args.num_frames)]
    if args.max_new_tokens != SpaceArguments.max_new_tokens:
        command += ["--max_new_tokens", str(args.max_new_tokens)]
    if args.examples:
        command += ["--examples", *args.examples]
    if args.tpo_hf_requirement:
        command += ["--tpo_hf_requirement", args.tpo_hf_requirement]
    if args.private is not None:
        command += ["--private", str(args.private).lower()]
    if args.overwrite_hub_edits:
        command += ["--overwrite_hub_edits", "true"]
    if output_dir:
        command += ["--output_dir", output_dir]
    return shlex.join(command)


def cli_main(argv: list[str] | None = None) -> None:
    run_cli("space", make_parser, main, argv)


if __name__ == "__main__":
    cli_main()
