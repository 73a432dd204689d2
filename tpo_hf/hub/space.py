"""Stage 6 of the flow (publish): write, push, or run locally the Gradio Space demo of a TPO adapter.

    tpo-hf space --adapter USER/MODEL-TPO --space_id USER/MODEL-TPO-demo    # write the folder and push it
    tpo-hf space --adapter USER/MODEL-TPO --local                           # run the app here

The folder is rendered from `hub_cards/`: `README.md` (Spaces metadata through `SpaceCardData`), `app.py` (a thin
launcher of `tpo_hf.hub.app.build_demo`), `requirements.txt` (tpo-hf's runtime and `demo` dependencies, with the
bounds of `pyproject.toml` read from the installed package metadata) and `examples/` (example videos offered with one
click; by default a short synthetic clip, so the Space works before anyone uploads a video).

tpo-hf itself ships with the Space as a wheel of the running package (`build_tpo_hf_wheel`), which `app.py` unpacks
on its first start: the Space builder runs `pip install -r requirements.txt` with that one file mounted in /tmp,
before it copies the repository, so a wheel in the folder cannot be named in `requirements.txt`. With
`tpo_hf_requirement` (a `git+https://...` URL or a released `tpo-hf[demo]==X`) no wheel is shipped and that line
heads `requirements.txt` instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, SpaceCard, SpaceCardData, constants

from ..fingerprint import file_content_hash
from ..paper import TPO_TAG
from ..templates import render_template, template_path

logger = logging.getLogger(__name__)


def space_requirements(tpo_hf_requirement: str | None = None, wheel: str | None = None) -> str:
    """The Space's `requirements.txt`: `tpo_hf_requirement` (or a comment naming the bundled `wheel`), then tpo-hf's
    runtime and `demo` dependencies exactly as `pyproject.toml` bounds them (from the installed package metadata, so
    the pins are never copied by hand)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    if tpo_hf_requirement:
        lines = [str(check_tpo_hf_requirement(tpo_hf_requirement))]
    else:
        lines = [f"# tpo-hf itself is {wheel}, unpacked by app.py (the Space builder installs this file before it"]
        lines.append("# copies the repository, so the wheel cannot be named here)")
    for text in requires("tpo-hf") or []:
        requirement = Requirement(text)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            if not requirement.marker.evaluate({"extra": "demo"}):
                continue
            requirement.marker = None  # a `demo` extra: unconditional in the Space
        # platform markers stay (decord installs on x86-64 Linux and Windows only)
        lines.append(str(requirement))
    return "\n".join(lines) + "\n"


def check_tpo_hf_requirement(line: str) -> Any:
    """`--tpo_hf_requirement` parsed as pip would read it (a `packaging` `Requirement` of tpo-hf): refused here, not
    when the Space builder fails to install it."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        requirement = Requirement(line)
    except InvalidRequirement as error:
        reason = str(error).splitlines()[0]  # packaging adds the line and a caret below it
        raise ValueError(f"--tpo_hf_requirement {line!r} is not a valid requirements line: {reason}") from None
    if canonicalize_name(requirement.name) != "tpo-hf":
        raise ValueError(
            f"--tpo_hf_requirement {line!r} installs {requirement.name!r}, not tpo-hf; e.g. "
            "'tpo-hf[demo] @ git+https://...' or 'tpo-hf[demo]==X'."
        )
    if requirement.marker is not None and not requirement.marker.evaluate(space_marker_environment()):
        # pip skips the line: the Space builds, then cannot import tpo_hf
        python = space_python_version()
        raise ValueError(
            f"--tpo_hf_requirement {line!r}: its marker ({requirement.marker}) is false on the Space (Python "
            f"{python}, Linux x86-64), so pip would skip the line and the Space could not import tpo_hf. Leave the "
            "marker out, e.g. 'tpo-hf[demo]==X'."
        )
    return requirement


def space_python_version() -> str:
    """The Python the Space runs: this one's `major.minor`, written as `python_version` in the Space README (without
    it the Hub runs its default Python, where a marker checked here may be false) and used for its markers."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def space_marker_environment() -> dict[str, str]:
    """The environment a requirement marker is evaluated in on the Space: the Python its README declares
    (`space_python_version`), on Linux x86-64, where Spaces run (as `space_requirements` assumes for decord's
    markers)."""
    from packaging.markers import default_environment

    return {
        **default_environment(),
        "python_version": space_python_version(),
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
    }


def _warn_other_tpo_hf_version(requirement: Any) -> None:
    """A version specifier that the running tpo-hf does not satisfy (`tpo-hf==99.0`): the Space installs another
    tpo-hf than the one that wrote its app.py. Whether a release satisfies it cannot be checked offline: a warning."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        running = version("tpo-hf")
    except PackageNotFoundError:  # a source tree on sys.path, not installed: nothing to compare with
        return
    if requirement.specifier and not requirement.specifier.contains(running, prereleases=True):
        logger.warning(
            "--tpo_hf_requirement %s does not admit the running tpo-hf %s, which writes the Space's app.py: the Space "
            "installs another version, if a release satisfies %s (pip finds out only when the Space builds).",
            requirement,
            running,
            requirement.specifier,
        )


def _is_hub_model_id(name: str) -> bool:
    """A Hub repo id that is not a local path (a local folder of that name wins, as in `from_pretrained`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _model_link(name: str | None, hub_url: str) -> str:
    """A Hub model as a link to its page; a local folder as plain text (it has no page on the Hub)."""
    if name is None:
        return "the base model"
    return f"[{name}]({hub_url}/{name})" if _is_hub_model_id(name) else f"`{name}` (a local folder)"


# the minimum of the app's Frames slider (`gr.Slider(2, max_frames, ...)` in `app.build_demo`): a `num_frames` below
# it starts the slider outside its own range
FRAMES_SLIDER_MINIMUM = 2


def check_space_inputs(
    adapter: str, num_frames: int | None, max_new_tokens: int, tpo_hf_requirement: str | None
) -> None:
    """What `write_space` would otherwise write into a Space that cannot start, or whose every question fails (a
    `max_new_tokens` below 1, which `generate` refuses per click), refused before anything is written (or, for
    `tpo-hf space --local`, before the app is built). `num_frames` starts the app's Frames slider, so it must lie
    in the slider's range (`FRAMES_SLIDER_MINIMUM` up; the slider reaches up to it, however high). A local adapter
    folder that a run is training into, or whose retraining was killed, is refused (`locks.refuse_if_locked`)."""
    if not Path(adapter).is_dir() and not (_is_hub_model_id(adapter) and "/" in adapter):
        raise FileNotFoundError(
            f"--adapter {adapter!r} is neither an existing local folder nor a Hub repo id (namespace/name)."
        )
    if Path(adapter).is_dir():
        from ..locks import refuse_if_locked

        # a folder a training run is writing (half old, half new files), or whose retraining was killed before its
        # final save (the weights an earlier run's, the card the killed run's): push and eval refuse it too
        refuse_if_locked(adapter, "demo")
    for setting, value, least in (
        ("num_frames", num_frames, FRAMES_SLIDER_MINIMUM),
        ("max_new_tokens", max_new_tokens, 1),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            why = " (the app's Frames slider starts there)" if setting == "num_frames" else ""
            raise ValueError(f"--{setting} must be a whole number of at least {least}{why}, got {value!r}.")
    if tpo_hf_requirement:
        _warn_other_tpo_hf_version(check_tpo_hf_requirement(tpo_hf_requirement))


def _check_output_dir(output_dir: Path, adapter: str) -> None:
    """Refuses an `output_dir` that is the adapter's folder or holds a model or adapter: the Space's README.md would
    replace its model card and app.py, requirements.txt and examples/ would land beside its weights."""
    from ..data import model_or_adapter_in_folder

    same_as_adapter = Path(adapter).is_dir() and output_dir.resolve() == Path(adapter).resolve()
    found = model_or_adapter_in_folder(output_dir)
    if same_as_adapter or found:
        what = f"is the --adapter folder ({found or 'its files'})" if same_as_adapter else f"holds {found}"
        space_folder = output_dir.resolve().with_name(output_dir.resolve().name + "-space")
        raise ValueError(
            f"--output_dir {output_dir} {what}: the Space's README.md would replace its model card and app.py, "
            f"requirements.txt and examples/ would be written beside it. Give the Space a folder of its own, e.g. "
            f"--output_dir {space_folder}."
        )


# what `tpo-hf space` wrote into its folder (each file's sha256): a rerun replaces those files, and only those
SPACE_RECORD = ".tpo-space.json"
# what `tpo-hf space` pushed to the Space (each file's sha256 and git blob id), pushed with it: the next push finds
# the files changed on the Hub since (an app.py fixed in the Space's web editor) instead of replacing them unseen
SPACE_PUSH_RECORD = ".tpo-space-push.json"


def _read_space_record(output_dir: Path) -> dict[str, Any] | None:
    """The record an earlier `write_space` left in `output_dir`, or None (none, or not one of ours)."""
    try:
        record = json.loads((output_dir / SPACE_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else None


def _write_space_record(output_dir: Path, files: dict[str, str], complete: bool) -> None:
    partial = output_dir / (SPACE_RECORD + ".tmp")
    record = {"written_by": "tpo-hf space", "complete": complete, "files": files}
    partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(partial, output_dir / SPACE_RECORD)  # a kill leaves the old record or the new one, never half of one


def _example_targets(example_videos: list[Path]) -> list[tuple[Path, str]]:
    """Each example video with its path in the Space folder: a second file of one name (a/clip.mp4, b/clip.mp4) is
    numbered, not copied over the first."""
    targets: list[tuple[Path, str]] = []
    for source in example_videos:
        target, number = f"examples/{source.name}", 2
        while target in [name for _, name in targets]:
            target, number = f"examples/{source.stem}-{number}{source.suffix}", number + 1
        targets.append((source, target))
    return targets


def _check_own_files(output_dir: Path, example_targets: list[tuple[Path, str]]) -> None:
    """Refuses an `output_dir` holding files the Space would replace or remove (README.md, app.py, requirements.txt,
    tpo_hf-*.whl, examples/) that `tpo-hf space` did not write there, or that changed since (an app.py edited by
    hand): without this a project's own README.md and app.py were silently replaced. Files that still match the
    record of an earlier write (`SPACE_RECORD`) are rewritten; after a write cut short (no complete record), the files
    at those paths are its own."""
    if not output_dir.is_dir():
        return
    kept = {  # example videos already at their place in the folder (`--examples DIR/examples`) are not copied
        target
        for source, target in example_targets
        if (output_dir / target).exists() and (output_dir / target).samefile(source)
    }
    replaced = [name for name in ("README.md", "app.py", "requirements.txt") if os.path.lexists(output_dir / name)]
    replaced += sorted(path.name for path in output_dir.glob("tpo_hf-*.whl"))
    examples = output_dir / "examples"
    if examples.is_dir() and not examples.is_symlink():
        for path in sorted(examples.rglob("*")):
            name = path.relative_to(output_dir).as_posix()
            if (path.is_symlink() or not path.is_dir()) and name not in kept:
                replaced.append(name)
    elif os.path.lexists(examples):
        replaced.append("examples")
    record = _read_space_record(output_dir)
    if record is not None and record.get("complete") is False:
        return
    recorded = record["files"] if record else {}
    foreign = [name for name in replaced if name not in recorded]
    edited = [
        name
        for name in replaced
        if name in recorded
        and not (os.path.isfile(output_dir / name) and file_content_hash(output_dir / name) == recorded[name])
    ]
    if not foreign and not edited:
        return

    def listed(names: list[str]) -> str:
        return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")

    held = []
    if foreign:
        held.append(f"files that `tpo-hf space` did not write ({listed(foreign)})")
    if edited:
        held.append(f"files changed since `tpo-hf space` wrote them ({listed(edited)}: those edits would be lost)")
    resolved = output_dir.resolve()
    other, number = resolved.with_name(resolved.name + "-space"), 2
    while other.exists():
        other, number = resolved.with_name(f"{resolved.name}-space-{number}"), number + 1
    raise ValueError(
        f"--output_dir {output_dir} holds {' and '.join(held)}: writing the Space there would replace or remove "
        f"them. Give the Space a folder of its own (e.g. --output_dir {other}), or move those files out of "
        f"{output_dir} (or delete them) and rerun."
    )


def _check_adapter_loads(adapter: str) -> None:
    """Refuses an `adapter` that is not a LoRA adapter before anything is written: a local folder without
    adapter_config.json (a full model, a dataset folder) or a Hub id that is no model repo with one (a dataset repo,
    a typo); else the Space is written and fails only when its app.py loads the adapter. The base is not checked
    here (a pushed Space's base is, by `_check_space_loads_from_hub`; a gated one may load there with a token
    secret). Offline, an adapter not in the Hub cache cannot be checked: a warning says so."""
    from huggingface_hub import try_to_load_from_cache

    from ..models import check_adapter_folder, check_adapter_loadable

    folder = Path(adapter)
    if folder.is_dir():
        if not (folder / "adapter_config.json").is_file():
            full_model = " but a full model (config.json)" if (folder / "config.json").is_file() else ""
            raise ValueError(
                f"--adapter {adapter} is not a LoRA adapter folder (no adapter_config.json){full_model}: the Space "
                "loads a TPO adapter on its base. Pass the adapter's folder (the output_dir of `tpo-hf train`)"
                + (", and this folder as --base_model." if full_model else ".")
            )
        check_adapter_folder(adapter)  # weights cut short by a kill or a full disk
        return
    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(adapter, "adapter_config.json"), str):
        logger.warning(
            "--adapter %s is not in the Hub cache and HF_HUB_OFFLINE is set: not checked to be an adapter repo.",
            adapter,
        )
        return
    try:
        # the adapter's config only: naming a base (the adapter itself, unused) skips the check of its base; a dataset
        # or Space repo of that id is named there
        check_adapter_loadable(adapter, model_name_or_path=adapter)
    except ValueError as error:
        raise ValueError(str(error).replace(f"adapter_path {adapter}", f"--adapter {adapter}", 1)) from None


def _example_videos(examples: list[str] | None) -> list[Path]:
    """The video files `--examples` names, checked before anything is written: a folder gives the videos in it
    (`list_video_files`, the extensions every folder search takes); a file that is not a video by its ending (a
    subtitle picked up by a shell glob such as `clip.*`) is refused, naming it, as is a missing one or one that does
    not open (`VideoFile`: its header and first frame)."""
    from ..curation.inputs import SYSTEM_FOLDERS, _is_hidden
    from ..video import VIDEO_EXTENSIONS, VideoFile, VideoLoadError, is_video_file, list_video_files

    videos: list[Path] = []
    for example in examples or []:
        path = Path(example)
        if path.is_dir():
            listed = list_video_files(path)
            # curation's rule: a folder copied from a Mac or a USB drive holds AppleDouble `._clip.mp4` files,
            # `__MACOSX/` and trash folders, which are no examples (they do not even open)
            hidden = [found for found in listed if _is_hidden(found.relative_to(path))]
            if hidden:
                logger.warning(
                    "--examples %s: left out %d hidden video file(s) (a name starting with '.', or in a trash or "
                    "system folder: %s): %s. Name them as files to --examples to offer them.",
                    example,
                    len(hidden),
                    ", ".join(SYSTEM_FOLDERS),
                    ", ".join(found.relative_to(path).as_posix() for found in hidden),
                )
            found = [video for video in listed if video not in hidden]
            if not found:
                raise FileNotFoundError(
                    f"--examples {example} is a folder with no video in it (endings {', '.join(VIDEO_EXTENSIONS)})"
                    + (f"; {len(hidden)} hidden file(s) were left out." if hidden else ".")
                )
            videos.extend(found)
        elif path.is_file():
            videos.append(path)
        else:
            raise FileNotFoundError(f"Example video {example} does not exist; pass existing files to --examples.")
    videos = _one_example_per_file(videos)
    not_videos = [str(path) for path in videos if not is_video_file(path)]
    if not_videos:
        raise ValueError(
            f"--examples {', '.join(not_videos)}: not a video by its ending ({', '.join(VIDEO_EXTENSIONS)}), yet the "
            "Space would offer it as an example video. Pass video files only (a shell glob such as clip.* also "
            "picks the subtitles beside the clip)."
        )
    # opened as eval's `open_videos` does (header and first frame): an empty or truncated file, or a text file named
    # .mp4, would be offered as an example that neither plays nor can be asked about
    unreadable = []
    for path in videos:
        try:
            VideoFile(path, cache_frames=False)
        except VideoLoadError as error:
            unreadable.append(str(error))
    if unreadable:
        raise ValueError(
            f"--examples: {len(unreadable)} of {len(videos)} example videos do not open: {'; '.join(unreadable)}. "
            "The Space would offer them as examples that neither play nor can be asked about: replace them or leave "
            "them out (a folder given to --examples offers every video in it)."
        )
    return videos


def _one_example_per_file(videos: list[Path]) -> list[Path]:
    """`videos` less those that are, links resolved, a file named before (`--examples ex/clip.mp4 ex`: the file and
    its folder): the app would offer one clip twice, as clip.mp4 and clip-2.mp4. The first name is kept; the others
    are named in one warning."""
    kept: list[Path] = []
    first: dict[object, Path] = {}  # real file -> the path kept for it
    repeated: list[str] = []
    for video in videos:
        try:
            status = os.stat(video)  # links followed
        except OSError:  # a broken link in a folder: refused by name when opened
            kept.append(video)
            continue
        # a file is its device and inode (so a hard link is the same file), the resolved path where there is none
        key = (status.st_dev, status.st_ino) if status.st_ino else os.path.realpath(video)
        other = first.setdefault(key, video)
        if other is video:
            kept.append(video)
        else:
            repeated.append(str(video) if video == other else f"{video} (the same file as {other})")
    if repeated:
        logger.warning(
            "--examples names %d video file(s) twice; each is offered once: %s", len(repeated), ", ".join(repeated)
        )
    return kept


def _check_space_loads_from_hub(adapter: str, base_model: str | None, base_from_adapter: bool) -> None:
    """Refuses a local adapter or base folder for a Space that is pushed: its `app.py` runs on the Hub, where neither
    exists, so it would not start (a Space loads its models from Hub repos, the usual pattern)."""
    local_test = "To try the Space with local folders, write it with --output_dir DIR (no --space_id) or run --local."
    if not _is_hub_model_id(adapter):
        raise ValueError(
            f"--adapter {adapter!r} is a local folder, which a Space on the Hub cannot read (its app would not "
            f"start): push the adapter first (`tpo-hf push --adapter_dir {adapter} --repo_id USER/NAME`) and pass "
            f"that repo id to --adapter. {local_test}"
        )
    if base_model is not None and not _is_hub_model_id(base_model):
        named = (
            f"The adapter {adapter}'s base model (base_model_name_or_path in its adapter_config.json)"
            if base_from_adapter
            else "--base_model"
        )
        raise ValueError(
            f"{named} {base_model!r} is a local folder, which a Space on the Hub cannot read (its app would not "
            f"start): pass --base_model with the base model's Hub repo id. {local_test}"
        )


def _is_tpo_hf_checkout(root: Path) -> bool:
    pyproject = root / "pyproject.toml"
    return pyproject.is_file() and re.search(r'^name\s*=\s*"tpo-hf"', pyproject.read_text(), re.M) is not None


def build_tpo_hf_wheel(output_dir: str | Path) -> Path:
    """Writes a wheel of the running tpo-hf into `output_dir` (replacing older `tpo_hf-*.whl` there); returns it.

    From a source checkout (`pyproject.toml` beside the package, an editable install included) the project's build
    backend (setuptools' PEP 517 `build_wheel`) builds it from a copy of the files it packages, so the checkout gets
    no `build/` and no package index is needed (setuptools is in the `dev` extra; uv venvs lack it otherwise).
    Otherwise (tpo-hf installed from a wheel) the installed files are packed back into one (`repack_installed_wheel`).
    """
    import importlib.util

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.glob("tpo_hf-*.whl"):
        old.unlink()
    package_dir = Path(__file__).resolve().parents[1]
    if not _is_tpo_hf_checkout(package_dir.parent):
        return repack_installed_wheel(package_dir.parent, output_dir)
    if importlib.util.find_spec("setuptools") is None:
        raise RuntimeError(
            f"Building a wheel of tpo-hf from {package_dir.parent} needs setuptools in this environment "
            "(`pip install setuptools`), or give the Space a requirement instead of a wheel: "
            "--tpo_hf_requirement 'tpo-hf[demo] @ git+https://...'."
        )
    code = "import sys, setuptools.build_meta as backend; backend.build_wheel(sys.argv[1])"
    command = [sys.executable, "-c", code, str(output_dir)]
    with tempfile.TemporaryDirectory(prefix="tpo-hf-source-") as scratch:
        source = Path(scratch)
        # what pyproject.toml packages: the library, the card templates (hub_cards/, installed as `_cards`), readme
        # and license
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (package_dir.parent / name).is_file():
                shutil.copy2(package_dir.parent / name, source / name)
        for name in ("tpo_hf", "hub_cards"):
            shutil.copytree(package_dir.parent / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        result = subprocess.run(command, cwd=source, capture_output=True, text=True)
    wheels = sorted(output_dir.glob("tpo_hf-*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise RuntimeError(
            f"Building a wheel of tpo-hf from {package_dir.parent} with setuptools failed: "
            f"{(result.stderr or result.stdout)[-2000:]}\nGive the Space a requirement instead of a wheel: "
            "--tpo_hf_requirement 'tpo-hf[demo] @ git+https://...'."
        )
    return wheels[0]


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack_installed_wheel(site_dir: str | Path, output_dir: str | Path) -> Path:
    """Packs the tpo-hf installed in `site_dir` (a site-packages or `pip install --target` folder) back into a wheel
    in `output_dir`: the package files and the `.dist-info` metadata as installed, with a fresh `RECORD`, leaving
    out what installers add (`INSTALLER`, `REQUESTED`, `direct_url.json`), bytecode and console-script launchers."""
    from importlib.metadata import distributions

    site_dir = Path(site_dir)
    found = [d for d in distributions(path=[str(site_dir)]) if (d.metadata["Name"] or "").lower() == "tpo-hf"]
    files = [f for dist in found[:1] for f in dist.files or []]
    if not any(f.as_posix() == "tpo_hf/__init__.py" for f in files):
        raise RuntimeError(
            f"No installed tpo-hf with its files listed in {site_dir} (found {len(found)} tpo-hf distribution(s)); "
            "give the Space a requirement instead: --tpo_hf_requirement 'tpo-hf[demo] @ git+https://...'."
        )
    dist = found[0]
    dist_info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    installer_files = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    members = [
        f.as_posix()
        for f in files
        if f.parts[0] in ("tpo_hf", dist_info)  # not `../../bin/tpo-hf`: installers write launchers themselves
        and "__pycache__" not in f.parts
        and not (f.parts[0] == dist_info and f.name in installer_files)
    ]
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    wheel = Path(output_dir) / f"tpo_hf-{dist.version}-{tags[0] if tags else 'py3-none-any'}.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    record = []
    # the .dist-info goes last, as the wheel spec asks
    members.sort(key=lambda name: (name.startswith(dist_info + "/"), name))
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in members:
            data = (site_dir / name).read_bytes()
            archive.writestr(name, data)
            record.append(f"{name},{_record_hash(data)},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


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
    num_frames: int | None = None,
    max_new_tokens: int = 128,
    examples: list[str] | None = None,
    tpo_hf_requirement: str | None = None,
    for_hub: bool = False,
    before_writing: Callable[[], None] | None = None,
) -> Path:
    """Writes the Space folder (README.md, app.py, requirements.txt, examples/) for `adapter` into `output_dir`.

    `examples` are video files (or folders of them) copied to `examples/` (two of one name get distinct names; what
    was there before and is not listed now is removed); without them a synthetic clip is written there. `num_frames` starts the frames slider (default: the frames the adapter was trained with).
    `for_hub`: the folder is pushed to a Space, so the adapter and the base must be Hub repo ids (a local folder is
    refused, naming it); without it local folders are kept, for running the folder's `app.py` here.
    `tpo_hf_requirement` is a requirements line that installs this library in the Space (e.g.
    `tpo-hf[demo] @ git+https://...` or, once released, `tpo-hf[demo]==X`); by default a wheel of the running tpo-hf
    is written into the folder instead and `app.py` unpacks it on its first start. `before_writing` is called once
    every input is checked, before anything is written (`tpo-hf space --space_id` checks there that it can push).
    An `output_dir` that holds a model or adapter is refused, as is one holding files this would replace that an
    earlier `write_space` did not write (or that changed since: `SPACE_RECORD` keeps their hashes); on a full disk,
    what this call wrote is removed.
    """
    check_space_inputs(adapter, num_frames, max_new_tokens, tpo_hf_requirement)
    output_dir = Path(output_dir)
    _check_output_dir(output_dir, adapter)
    base_from_adapter = base_model is None
    base_model = base_model or _adapter_base(adapter)
    if for_hub:
        _check_space_loads_from_hub(adapter, base_model, base_from_adapter)
    _check_adapter_loads(adapter)
    if not for_hub:
        # app.py names local folders: absolute, so it starts from any folder (its own, to run it), as the base read
        # from the adapter's config is
        adapter, base_model = (
            os.path.abspath(name) if name and Path(name).is_dir() else name for name in (adapter, base_model)
        )
    example_targets = _example_targets(_example_videos(examples))
    _check_own_files(output_dir, example_targets)
    if before_writing is not None:
        before_writing()

    # what this run adds, removed again when the disk fills up: the new folder (from its first missing parent), or
    # the files and folders new in an existing one
    created = output_dir
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    existing = set(output_dir.rglob("*")) if output_dir.exists() else None
    try:
        _write_space_files(
            output_dir, adapter, base_model, title, num_frames, max_new_tokens, example_targets, tpo_hf_requirement
        )
    except Exception as error:
        from ..fingerprint import no_space_left

        full = no_space_left(error, output_dir)
        if full is None:
            raise
        if existing is None:
            shutil.rmtree(created, ignore_errors=True)
            removed = f"{created} was removed"
        else:
            for path in sorted(set(output_dir.rglob("*")) - existing, reverse=True):  # files before their folders
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            removed = f"the files this run added to {output_dir} were removed"
        raise ValueError(
            f"Writing the Space folder {output_dir} failed: {full} (the Space needs a few MB, most of it the wheel of "
            f"tpo-hf); {removed}. Free space there or pass another --output_dir, or ship no wheel with "
            "--tpo_hf_requirement 'tpo-hf[demo] @ git+https://...'."
        ) from error
    return output_dir


def _write_space_files(
    output_dir: Path,
    adapter: str,
    base_model: str | None,
    title: str | None,
    num_frames: int | None,
    max_new_tokens: int,
    example_targets: list[tuple[Path, str]],
    tpo_hf_requirement: str | None,
) -> None:
    """What `write_space` writes, once its inputs are checked, and the record of it (`SPACE_RECORD`)."""
    import gradio

    (output_dir / "examples").mkdir(parents=True, exist_ok=True)
    # marked as being written first: a run killed half-way leaves files that a rerun may replace
    earlier = _read_space_record(output_dir)
    _write_space_record(output_dir, earlier["files"] if earlier else {}, complete=False)
    example_paths: list[str] = []
    for source, target in example_targets:
        if not (output_dir / target).exists() or not (output_dir / target).samefile(source):
            shutil.copy(source, output_dir / target)
        example_paths.append(target)
    if not example_paths:
        from ..synthetic import Scene, write_synthetic_video

        scenes = [Scene(3, "red", "square", "right"), Scene(3, "blue", "circle", "left")]
        write_synthetic_video(output_dir / "examples" / "shapes.mp4", scenes, fps=8)
        example_paths.append("examples/shapes.mp4")
    # a folder written before with other examples: what app.py no longer lists would still be pushed
    for stale in (output_dir / "examples").iterdir():
        if f"examples/{stale.name}" in example_paths:
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    title = title or f"{adapter.split('/')[-1]} vs. base"
    card_data = SpaceCardData(
        title=title[:60],
        sdk="gradio",
        sdk_version=gradio.__version__,
        python_version=space_python_version(),  # the Python `check_tpo_hf_requirement` checks markers against
        app_file="app.py",
        models=[model for model in (adapter, base_model) if model and _is_hub_model_id(model)],
        tags=[TPO_TAG, "tpo", "video", "video-text-to-text"],
        short_description="Base vs. TPO answers to questions about a video",
    )
    card = SpaceCard.from_template(
        card_data,
        template_path=str(template_path("space_readme.md")),
        title=title,
        adapter_link=_model_link(adapter, constants.ENDPOINT),
        base_model_link=_model_link(base_model, constants.ENDPOINT),
    )
    card.save(output_dir / "README.md")
    for old in output_dir.glob("tpo_hf-*.whl"):
        old.unlink()  # a folder written before: only the wheel of this run may remain
    wheel = None if tpo_hf_requirement else build_tpo_hf_wheel(output_dir).name
    (output_dir / "app.py").write_text(
        render_template(
            "space_app.py.j2",
            adapter=adapter,
            base_model=base_model,
            num_frames=num_frames,
            max_new_tokens=max_new_tokens,
            examples=example_paths,
            wheel=wheel,
        )
    )
    (output_dir / "requirements.txt").write_text(space_requirements(tpo_hf_requirement, wheel))
    written = ["README.md", "app.py", "requirements.txt", *example_paths, *([wheel] if wheel else [])]
    _write_space_record(output_dir, {name: file_content_hash(output_dir / name) for name in written}, complete=True)


def prepare_space(space_id: str, rerun: str, private: bool | None = None, token: str | None = None) -> None:
    """Creates the Space (Gradio SDK) if missing and checks that this token can write it, and its visibility
    (`push.prepare_repo`): called before the folder and its wheel are written, so a read-only token is refused first.

    Raises:
        PushError: the Hub refused or is unreachable, or the Space is public when asked private; names `rerun`.
    """
    from .push import PushError, prepare_repo, push_failed

    api = HfApi(token=token)
    try:
        prepare_repo(api, space_id, private=private, setting="--private", repo_type="space", space_sdk="gradio")
    except PushError:
        raise
    except Exception as error:
        raise push_failed(
            "Preparing the push", space_id, error, rerun, api, kept="Nothing was written or uploaded."
        ) from error


def push_space(
    folder: str | Path,
    space_id: str,
    private: bool | None = None,
    token: str | None = None,
    rerun: str | None = None,
    overwrite_hub_edits: bool = False,
) -> Any:
    """Creates the Space (Gradio SDK) if needed and uploads `folder` in one commit (the bundled wheel included), with
    the record of what it pushed (`SPACE_PUSH_RECORD`).
    `rerun`: the command the error of a failed upload names (default: this call again, for callers of the Python API;
    `tpo-hf space` passes its own command line).

    Raises:
        PushError: the upload failed, or (unless `overwrite_hub_edits`) files this push would replace were changed on
            the Hub since the last `tpo-hf space` push (`_edited_on_hub`), named; nothing is pushed then.
    """
    from ..locks import LOCK_NAME, READERS_NAME
    from .push import PushError, hub_endpoint, prepare_repo, push_failed

    rerun = rerun or f"tpo_hf.hub.space.push_space({str(folder)!r}, {space_id!r})"
    api = HfApi(token=token)
    # the record of what was written and the folder's lock are this machine's, not the Space's
    local_only = {SPACE_RECORD, SPACE_RECORD + ".tmp", SPACE_PUSH_RECORD, LOCK_NAME}
    files = {
        path.relative_to(folder).as_posix(): path
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
        and path.relative_to(folder).as_posix() not in local_only
        and path.relative_to(folder).parts[0] != READERS_NAME
    }
    pushed = {name: {"sha256": file_content_hash(path), "oid": _git_blob_id(path)} for name, path in files.items()}
    record = {"pushed_by": "tpo-hf space", "files": pushed}
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
    operations.append(
        CommitOperationAdd(SPACE_PUSH_RECORD, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    )
    try:
        prepare_repo(api, space_id, private=private, setting="--private", repo_type="space", space_sdk="gradio")
        head = api.repo_info(space_id, repo_type="space").sha
        if not overwrite_hub_edits:
            edited = _edited_on_hub(api, space_id, head, list(files))
            if edited:
                space_url = f"{hub_endpoint(api)}/spaces/{space_id}"
                raise PushError(
                    f"The Space {space_id} on {hub_endpoint(api)} holds files changed on the Hub since `tpo-hf space` "
                    f"pushed them ({', '.join(edited)}; edited in the Space's web editor, or uploaded): this push "
                    "would replace them, and the edits would be left only in the Space's history. Nothing was pushed; "
                    f"the folder {folder} is kept. To replace them, rerun with --overwrite_hub_edits true "
                    f"(`{rerun} --overwrite_hub_edits true`); to keep them, push to another --space_id, or save "
                    f"them first (their text is at {', '.join(f'{space_url}/blob/{head}/{name}' for name in edited)})"
                    " and upload them again after that push."
                )
        # on the head just checked: an edit made on the Hub in between fails the commit instead of being replaced
        return api.create_commit(
            space_id, repo_type="space", operations=operations, commit_message="TPO demo", parent_commit=head
        )
    except PushError:  # asked private, the Space is public, or files changed on the Hub: nothing was uploaded
        raise
    except Exception as error:
        raise push_failed(
            f"Uploading the Space folder {folder}",
            space_id,
            error,
            rerun,
            api,
            kept="The folder is kept, written in full.",
        ) from error


def _git_blob_id(path: Path) -> str:
    """The git object id of a file's content: what the Hub lists as a file's blob id when it is not stored in LFS."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _edited_on_hub(api: HfApi, space_id: str, revision: str, paths: list[str]) -> list[str]:
    """The files of `paths` (what a push would upload) that the Space holds at `revision` with another content than
    the last `tpo-hf space` push gave them (`SPACE_PUSH_RECORD`), or that it did not push. Nothing is found for a
    Space without that record: a new Space, or one pushed by a tpo-hf before it kept the record."""
    from huggingface_hub.utils import build_hf_headers, get_session

    from .push import hub_endpoint

    response = get_session().get(
        f"{hub_endpoint(api)}/spaces/{space_id}/resolve/{revision}/{SPACE_PUSH_RECORD}",
        headers=build_hf_headers(token=api.token),
        follow_redirects=True,
    )
    if response.status_code == 404:
        return []
    response.raise_for_status()
    try:
        recorded = json.loads(response.content)["files"]
    except (ValueError, KeyError, TypeError):  # not a record this wrote: nothing to compare with
        return []
    if not isinstance(recorded, dict):
        return []
    on_hub = {
        entry.path: entry
        for entry in api.list_repo_tree(space_id, repo_type="space", revision=revision, recursive=True)
        if hasattr(entry, "blob_id")  # files, not folders
    }
    edited = []
    for path in paths:
        entry, pushed = on_hub.get(path), recorded.get(path)
        if entry is None:  # not on the Space (deleted there, or new): nothing is replaced
            continue
        if not isinstance(pushed, dict):
            edited.append(path)
        elif entry.lfs is not None and entry.lfs.sha256 != pushed.get("sha256"):
            edited.append(path)
        elif entry.lfs is None and entry.blob_id != pushed.get("oid"):
            edited.append(path)
    return edited
