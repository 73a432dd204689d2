"""Plugin points (`tpo_hf.plugins`): an out-of-tree package with its own pyproject.toml, installed with pip, adds a
curation backend, an eval benchmark and a `tpo-hf` subcommand through entry points, the mechanism tpo-hf's own
synthetic world uses; and no library module imports or names the world."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

PLUGIN_MODULE = '''
"""A third-party tpo-hf plugin: a backend that answers every role, a benchmark, a command."""
from tpo_hf.curation import GenerationBackend
from tpo_hf.eval.benchmarks import Benchmark, MCQSample, answer_letter, require_field, require_list

HELP = "Say hello from a plugin"


class EchoBackend(GenerationBackend):
    """Captions and answers name the frames seen (so the two views of a question differ); the judge accepts."""

    def __init__(self, role):
        self.role, self.model_id = role, f"echo-{role}"

    @classmethod
    def from_config(cls, config, role, device=None):
        return cls(role)

    def generate(self, requests, max_new_tokens, seed=0):
        if self.role == "judge":
            return ["1. Yes\\n2. No\\n3. Yes\\nReason: echo."] * len(requests)
        if self.role == "question":
            # one question per candidate (the same question twice about a video is de-duplicated)
            return [f"Question: What is in {r.candidate.video_id} at {r.candidate.segment}?\\nAnswer: Shapes." for r in requests]
        return [f"frames {r.video[1]['frames_indices'][:3]}" if r.video else "text" for r in requests]


def echo_sample(row, index, variant="default", **_):
    options = require_list(row, ("options",), "echo_bench", index)
    return MCQSample(
        sample_id=str(require_field(row, ("id",), "echo_bench", index)),
        video=str(require_field(row, ("video",), "echo_bench", index)),
        question=str(require_field(row, ("question",), "echo_bench", index)),
        options=options,
        answer=answer_letter(require_field(row, ("answer",), "echo_bench", index), options, "echo_bench", index),
        prompt=str(row["question"]) + "\\n" + "\\n".join(f"{l}. {o}" for l, o in zip("ABCD", options)),
    )


BENCHMARK = Benchmark("echo_bench", "Echo bench", "nobody/echo", "test", (), echo_sample, None, max_new_tokens=3)


def cli_main(argv):
    print("hello from a plugin", *argv)
'''

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "tpo-echo-plugin"
version = "0.1.0"

[tool.setuptools]
py-modules = ["tpo_echo_plugin"]

[project.entry-points."tpo_hf.curation_backends"]
echo = "tpo_echo_plugin:EchoBackend.from_config"

[project.entry-points."tpo_hf.eval_benchmarks"]
echo_bench = "tpo_echo_plugin:BENCHMARK"

[project.entry-points."tpo_hf.commands"]
echo = "tpo_echo_plugin"
"""


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """The plugin package built into a wheel by its own build backend (setuptools, as pip would build it) and
    installed as pip installs a pure-Python wheel: unpacked into a folder on sys.path, where its metadata makes the
    entry points visible. pip itself is not used: the CI's uv-made venvs have none."""
    root = tmp_path_factory.mktemp("plugin")
    source, wheels, site = root / "tpo-echo-plugin", root / "wheels", root / "site"
    source.mkdir()
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (source / "tpo_echo_plugin.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    build = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"
    built = subprocess.run(
        [sys.executable, "-c", build, str(wheels)], cwd=source, check=True, capture_output=True, text=True
    )
    with zipfile.ZipFile(wheels / built.stdout.strip().splitlines()[-1]) as wheel:
        wheel.extractall(site)
    assert (site / "tpo_echo_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("tpo_echo_plugin", None)


def test_plugin_backend_curates_every_role(installed_plugin, video_dir, tmp_path):
    from tpo_hf.curation import CurationConfig, run_curation

    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="echo-video",
        video_backend="echo",
        question_backend="echo",
        question_model="echo-question",
        judge_backend="echo",
        judge_model="echo-judge",
        output_dir=str(tmp_path / "out"),
        num_frames=4,
        sparse_num_frames=2,
        progress=False,
    )
    result = run_curation(config)
    assert len(result.dataset) > 0
    assert set(result.dataset["granularity"]) == {"localized", "comprehensive"}
    assert all(chosen.startswith("frames") for chosen in result.dataset["chosen"])
    with pytest.raises(ValueError, match=r"judge_backend='nope'.*'echo'"):
        CurationConfig(video_dir=str(video_dir), video_model="m", judge_backend="nope")


def test_plugin_benchmark_evaluates(installed_plugin, video_dir, tiny_model_dirs, tmp_path):
    from tpo_hf.commands.eval import cli_main

    rows = [
        {"id": f"q{i}", "video": "red_blue.mp4", "question": "Which colour?", "options": ["red", "blue"], "answer": i}
        for i in range(2)
    ]
    data = tmp_path / "echo.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    results = cli_main(
        ["--model_name_or_path", str(tiny_model_dirs("qwen2_vl")), "--benchmark", "echo_bench"]
        + ["--dataset_name", str(data), "--video_dir", str(video_dir), "--num_frames", "4", "--device", "cpu"]
        + ["--dtype", "float32", "--output_dir", str(tmp_path / "out"), "--progress", "false"]
    )
    assert results["benchmarks"]["echo_bench"]["models"]["base"]["total"] == 2


def test_plugin_command_runs_and_is_listed(installed_plugin, capsys):
    from tpo_hf.commands import main

    main(["echo", "a", "b"])
    main(["--help"])
    out = capsys.readouterr().out
    assert "hello from a plugin a b" in out
    assert re.search(r"echo\s+Say hello from a plugin \(plugin\)", out)


def test_unknown_benchmark_names_installed_ones():
    from tpo_hf.eval.benchmarks import get_benchmark

    with pytest.raises(ValueError, match=r"Unknown benchmark 'nope'.*tpo_world.*videomme"):
        get_benchmark("nope")


# The world is a plugin like any other: only the quickstart command may use it (benchmarks/ lies outside tpo_hf/)
WORLD_USERS = {"tpo_hf/commands/quickstart.py"}
WORLD_REFERENCE = re.compile(
    r"(?:from|import)\s+(?:tpo_hf)?\.*world\b|tpo_hf\.world|\b(?:world_questions|world_judge|tpo_world)\b"
)


def test_library_never_imports_or_names_the_world():
    offenders = []
    for path in sorted((REPO_ROOT / "tpo_hf").rglob("*.py")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if relative.startswith("tpo_hf/world/") or relative in WORLD_USERS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if WORLD_REFERENCE.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "library modules naming the world (register it as a plugin instead):\n" + "\n".join(
        offenders
    )
