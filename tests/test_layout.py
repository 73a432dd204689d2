"""The house rules of the layout, checked: cheap imports, no import cycles, no library code importing a CLI, every
package in the wheel, every cited path and every relative link real, one flag style, stage numbers that agree with
the tree in docs/architecture.md."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "tpo_hf"
# The scripts: `python -m` targets and the `tpo-hf` subcommands (every module of tpo_hf/commands/). Library modules
# never import them.
ENTRY_POINTS = {"tpo_hf.train", "tpo_hf.curate", "tpo_hf.eval.__main__"} | {
    "tpo_hf.commands" + ("" if path.stem == "__init__" else f".{path.stem}")
    for path in (PACKAGE / "commands").glob("*.py")
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _runtime_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """tpo_hf modules `name` imports at run time, at module level or inside functions (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    type_checking = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import submodule` imports the submodule; `from module import name` the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in modules and target != name}
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _runtime_imports(name, path, modules) for name, path in modules.items()}


def test_import_tpo_hf_and_help_do_not_load_torch():
    # the function the `tpo-hf` console script runs, as pyproject.toml declares it
    script = re.search(r'^tpo-hf = "([\w.]+):(\w+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert script, "pyproject.toml declares no `tpo-hf` console script"
    check = (
        "import sys, tpo_hf; assert 'torch' not in sys.modules, 'import tpo_hf loaded torch'; "
        "assert tpo_hf.__version__ and 'TPOTrainer' in dir(tpo_hf); "
        f"from {script[1]} import {script[2]} as main; main(['--help']); "
        "assert 'torch' not in sys.modules, 'tpo-hf --help loaded torch'"
    )
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "curate" in result.stdout and "quickstart" in result.stdout
    command = shutil.which("tpo-hf")
    if command is not None:  # the installed console script
        result = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "commands:" in result.stdout, result.stderr


def test_lazy_public_names_resolve():
    import tpo_hf

    assert set(tpo_hf.__all__) == {*tpo_hf._LAZY_IMPORTS, "__version__"}
    for name, module in tpo_hf._LAZY_IMPORTS.items():
        assert getattr(tpo_hf, name) is getattr(importlib.import_module(f"tpo_hf.{module}"), name)
    with pytest.raises(AttributeError, match="no attribute"):
        tpo_hf.NotAThing  # noqa: B018


def test_no_import_cycles():
    graph = _import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_library_modules_never_import_entry_points():
    upward = {
        f"{module} -> {target}"
        for module, targets in _import_graph().items()
        if module not in ENTRY_POINTS
        for target in targets & ENTRY_POINTS
    }
    assert not upward, f"library modules import scripts (move the shared code into a library module): {upward}"


def test_every_package_is_in_the_wheel():
    tomllib = pytest.importorskip("tomllib")
    packages = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {_module_name(path) for path in PACKAGE.rglob("__init__.py")}
    assert on_disk <= packages, f"add {sorted(on_disk - packages)} to [tool.setuptools] packages in pyproject.toml"


# --- what the docs cite exists ----------------------------------------------------------------------------------------
def _markdown_pages() -> list[Path]:
    """The user-facing pages: the README, the docs and the experiment write-ups beside their results."""
    pages = [REPO_ROOT / "README.md", *REPO_ROOT.glob("docs/*.md"), *REPO_ROOT.glob("benchmarks/results/**/README.md")]
    return sorted(pages)


def _documents() -> list[Path]:
    files = [*_markdown_pages(), *REPO_ROOT.glob("recipes/**/*.md"), *REPO_ROOT.glob("recipes/**/*.yaml")]
    files += [*PACKAGE.rglob("*.py"), *REPO_ROOT.glob("benchmarks/*.py"), *REPO_ROOT.glob("hub_cards/*")]
    return sorted(set(files))


# (`docs/` only as our own pages, `docs/NAME.md`: recipe READMEs also cite transformers' docs/source/... files)
_PATH = re.compile(
    r"(?<![\w./-])((?:tpo_hf|recipes|hub_cards|tests|benchmarks)/[\w./<>{}*-]*|docs/[\w-]+\.md|[A-Z][A-Z_]+\.md)"
)
_MODULE = re.compile(r"(?<![\w.])tpo_hf(?:\.\w+)+")


def _entry_point_groups() -> set[str]:
    """The entry-point groups pyproject.toml declares (`tpo_hf.commands`, ...): names that look like modules."""
    return set(re.findall(r'^\[project\.entry-points\."([\w.]+)"\]', (REPO_ROOT / "pyproject.toml").read_text(), re.M))


_PLACEHOLDER = re.compile(r"[<>{}*]|\.\.\.|/[A-Z]\.yaml$|^tpo_hf/_cards/")  # templates of paths, install-only paths


def test_every_cited_path_and_module_exists():
    missing = []
    for document in _documents():
        text = document.read_text()
        for match in _PATH.finditer(text):
            cited = match.group(1).rstrip(".,:;`'\")")
            if not _PLACEHOLDER.search(cited) and not (REPO_ROOT / cited).exists():
                missing.append(f"{document.relative_to(REPO_ROOT)}: {cited}")
        for match in _MODULE.finditer(text):
            if match.group(0) in _entry_point_groups():
                continue
            parts = match.group(0).split(".")
            # the longest prefix that is a module or package must be followed by at most an attribute chain
            if len(parts) > 1 and not (
                (PACKAGE / f"{parts[1]}.py").exists() or (PACKAGE / parts[1]).is_dir() or parts[1] in _public_names()
            ):
                missing.append(f"{document.relative_to(REPO_ROOT)}: {match.group(0)}")
            elif len(parts) > 2 and (PACKAGE / parts[1]).is_dir():
                sub = parts[2]
                if not ((PACKAGE / parts[1] / f"{sub}.py").exists() or (PACKAGE / parts[1] / sub).is_dir()):
                    if not _defined_in(PACKAGE / parts[1] / "__init__.py", sub):
                        missing.append(f"{document.relative_to(REPO_ROOT)}: {match.group(0)}")
    assert not missing, "cited but absent:\n" + "\n".join(missing)


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_every_relative_link_resolves():
    """A link in the README or the docs that points into the repository names a file or folder that exists, and
    an anchor (`page.md#section`) names a heading of that page."""
    broken = []
    for page in _markdown_pages():
        for match in _LINK.finditer(page.read_text()):
            target = match.group(1)
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(REPO_ROOT)}: {target}"
            if not resolved.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{where} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def _public_names() -> set[str]:
    import tpo_hf

    return set(tpo_hf.__all__)


def _defined_in(init: Path, name: str) -> bool:
    return init.exists() and re.search(rf"\b{re.escape(name)}\b", init.read_text()) is not None


def test_one_flag_style():
    """Flags are TrlParser's field names (`--adapter_dir`), never the dashed aliases argparse also accepts."""
    dashed = re.compile(r"(?<![\w-])--[a-z]+(?:-[a-z]+)+")
    found = [
        f"{document.relative_to(REPO_ROOT)}: {match.group(0)}"
        for document in _documents()
        for match in dashed.finditer(document.read_text())
    ]
    assert not found, "dashed flags (use snake_case):\n" + "\n".join(found)


def test_stage_numbers_agree_with_the_architecture_tree():
    architecture = (REPO_ROOT / "docs" / "architecture.md").read_text()
    tree = architecture.split("## How to navigate", 1)[1].split("```", 2)[1]
    stages = dict(re.findall(r"^  (\w+(?:\.py|/))\s+(\d)\. ", tree, re.MULTILINE))
    assert stages, "the tree in docs/architecture.md lists no numbered stages"
    wrong = []
    for entry, number in stages.items():
        target = PACKAGE / entry.rstrip("/")
        files = sorted(target.rglob("*.py")) if entry.endswith("/") else [target]
        for path in files:
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            for stated in re.findall(r"\bStage (\d)", docstring):
                if stated != number:
                    wrong.append(f"{path.relative_to(REPO_ROOT)} says stage {stated}, docs/architecture.md {number}")
    assert not wrong, "\n".join(wrong)


def test_the_architecture_tree_lists_every_module():
    """The tree in docs/architecture.md names every module of tpo_hf/ (package `__init__` / `__main__` files aside)
    in its folder, and nothing that is not there: a module added, moved or removed fails until the tree says so."""
    architecture = (REPO_ROOT / "docs" / "architecture.md").read_text()
    tree = architecture.split("## How to navigate", 1)[1].split("```", 2)[1]
    entry = re.compile(r"^( +)((?:\w+\.py|\w+/)(?:, (?:\w+\.py|\w+/))*)(?:\s|$)")
    listed, folder = set(), ""
    for line in tree.splitlines():
        if not line.startswith(" "):
            folder = ""  # a top-level entry (tpo_hf/, recipes/, ...) ends the folder above
            continue
        match = entry.match(line)
        if match is None:  # a continuation line
            continue
        depth = len(match.group(1)) // 2
        for name in match.group(2).split(", "):
            path = name if depth == 1 else f"{folder}{name}"
            listed.add(path.rstrip("/"))
            if depth == 1 and name.endswith("/"):
                folder = name
    on_disk = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")}
    on_disk |= {str(path.relative_to(PACKAGE)) for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    stale = sorted(listed - on_disk)
    unlisted = sorted(path for path in on_disk - listed if not re.search(r"/__(init|main)__\.py$", path))
    assert not stale, f"docs/architecture.md lists modules that do not exist: {stale}"
    assert not unlisted, f"docs/architecture.md does not list: {unlisted}"


def test_skip_markers_skip_without_the_hardware(monkeypatch):
    """Every registered `require_*` marker has a check in conftest, and the hook skips a test when it fails."""
    from tests import conftest

    tomllib = pytest.importorskip("tomllib")
    registered = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    required = {line.split(":")[0] for line in registered if line.startswith("require_")}
    assert required == set(conftest.SKIP_MARKERS)

    class Item:  # what the hook reads of a pytest item
        def __init__(self, marker: str):
            self.marker = marker

        def get_closest_marker(self, name: str):
            return object() if name == self.marker else None

    for name, (_, reason) in list(conftest.SKIP_MARKERS.items()):
        monkeypatch.setitem(conftest.SKIP_MARKERS, name, (lambda: False, reason))
        with pytest.raises(pytest.skip.Exception, match=name):
            conftest.pytest_runtest_setup(Item(name))
        monkeypatch.setitem(conftest.SKIP_MARKERS, name, (lambda: True, reason))
        conftest.pytest_runtest_setup(Item(name))  # available: runs
