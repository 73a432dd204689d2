"""The Space: folder rendering + push to the local hub, and the demo app launched with a tiny model on loopback,
driven by `gradio_client` and by headless Chromium (Debian `chromium` + `chromium-driver`, W3C WebDriver over HTTP).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hub_server import HubServer, point_clients_at
from packaging.requirements import Requirement

import tpo_hf

# everything here talks to 127.0.0.1 only: no analytics calls, no proxy for loopback
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


def hub_cli_env(hub: HubServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `tpo-hf` subprocess that pushes to the local Hub `hub` (its own HF_HOME, a token)."""
    return dict(
        os.environ,
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_TOKEN="hf_local_test_token",
        PYTHONPATH=str(REPO_ROOT),
        **extra,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dirs, tmp_path_factory):
    """A tiny base folder and a LoRA adapter on it (random non-zero LoRA weights, so TPO differs from base)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf import VideoPreferenceProcessor
    from tpo_hf.families import get_family

    base_dir = tiny_model_dirs("qwen2_5_vl")
    model = AutoModelForImageTextToText.from_pretrained(base_dir)
    config = LoraConfig(
        r=4, lora_alpha=64, target_modules=get_family(model.config).lora_target_modules, init_lora_weights=False
    )
    adapter_dir = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(adapter_dir)
    VideoPreferenceProcessor.from_pretrained(str(base_dir), num_frames=4).save_pretrained(adapter_dir)
    return adapter_dir


@pytest.fixture(scope="module")
def demo_url(tiny_adapter, video_dir):
    from tpo_hf.hub.app import build_demo

    demo = build_demo(
        str(tiny_adapter), num_frames=4, max_frames=8, max_new_tokens=6, examples=[str(video_dir / "red_blue.mp4")]
    )
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_frames_slider_starts_at_the_frames_the_adapter_was_trained_with(tiny_adapter):
    """The Space reads the video settings saved with the adapter (its processor's `VideoSettings`), not a default of
    its own."""
    from tpo_hf.hub.app import VideoQA, build_demo

    qa = VideoQA(str(tiny_adapter))
    assert qa.processor.settings.num_frames == 4
    demo = build_demo(str(tiny_adapter), qa=qa)
    (slider,) = [c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "frames"]
    assert slider["props"]["value"] == 4
    demo = build_demo(str(tiny_adapter), num_frames=12, qa=qa)
    (slider,) = [c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "frames"]
    assert slider["props"]["value"] == 12


def test_write_and_push_space(tmp_path):
    from huggingface_hub import SpaceCard

    from tpo_hf.hub.space import write_space

    folder = write_space(tmp_path / "space", "tester/tiny-tpo", base_model="tester/tiny-base", num_frames=8)
    card = SpaceCard.load(folder / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.models == ["tester/tiny-tpo", "tester/tiny-base"]
    app = (folder / "app.py").read_text()
    assert '"tester/tiny-tpo",' in app and 'base_model="tester/tiny-base"' in app and "num_frames=8" in app
    assert 'examples=["examples/shapes.mp4"]' in app
    compile(app, "app.py", "exec")
    assert (folder / "examples" / "shapes.mp4").stat().st_size > 0
    # requirements: tpo-hf's runtime and `demo` dependencies with exactly the bounds of pyproject.toml; tpo-hf itself
    # is the wheel shipped in the folder (the Space builder installs requirements.txt before the repo is copied)
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    expected = [*project["dependencies"], *project["optional-dependencies"]["demo"]]
    normalized = [str(Requirement(line)) for line in expected]
    wheel = f"tpo_hf-{tpo_hf.__version__}-py3-none-any.whl"
    lines = (folder / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == normalized
    assert wheel in lines[0] and f'/ "{wheel}"' in app
    with zipfile.ZipFile(folder / wheel) as archive:
        names = set(archive.namelist())
    assert {"tpo_hf/hub/app.py", "tpo_hf/_cards/space_app.py.j2", "tpo_hf/world/base_model/config.json"} <= names
    assert "tpo_hf/world/base_model_heldout_layout/model.safetensors" in names
    # a released version or a git URL instead of the wheel: that line heads requirements.txt, no wheel is shipped
    git = "tpo-hf[demo] @ git+https://example.org/tpo-hf.git@v1"
    folder = write_space(folder, "tester/tiny-tpo", base_model="tester/tiny-base", tpo_hf_requirement=git)
    assert (folder / "requirements.txt").read_text().splitlines() == [git, *normalized]
    assert not list(folder.glob("*.whl")) and "WHEEL" not in (folder / "app.py").read_text()
    compile((folder / "app.py").read_text(), "app.py", "exec")

    # the CLI pushes the same folder to a Space repo on the local hub
    with HubServer(tmp_path / "hub") as hub:
        seed_adapter_repo(hub, "tester/tiny-tpo")  # the adapter is checked to load before the Space is written
        env = hub_cli_env(hub, tmp_path)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tpo_hf.commands",
                "space",
                "--adapter",
                "tester/tiny-tpo",
                "--base_model",
                "tester/tiny-base",
                "--space_id",
                "tester/tiny-tpo-demo",
                "--num_frames",
                "8",
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        files = hub.files("tester/tiny-tpo-demo", "space")
    # with the record of what `tpo-hf space` pushed (each file's hashes): the next push finds edits made on the Hub
    assert sorted(files) == [
        ".tpo-space-push.json",
        "README.md",
        "app.py",
        "examples/shapes.mp4",
        "requirements.txt",
        wheel,
    ]
    record = json.loads(files[".tpo-space-push.json"])["files"]
    assert (
        sorted(record) == sorted(files)[1:] and record["app.py"]["sha256"] == hashlib.sha256(app.encode()).hexdigest()
    )
    assert files["app.py"].decode() == app
    assert zipfile.ZipFile(io.BytesIO(files[wheel])).namelist()  # the wheel went up whole
    assert "sdk: gradio" in files["README.md"].decode()


def test_space_wheel_when_tpo_hf_was_installed_from_a_wheel(tmp_path):
    """With no source checkout beside the package (tpo-hf installed from a wheel), the Space's wheel is packed back
    from the installed files: the same files as the wheel they were installed from, with a valid RECORD."""
    from tpo_hf.hub.space import build_tpo_hf_wheel

    built = build_tpo_hf_wheel(tmp_path / "built")  # from this checkout, by the build backend
    site_dir = tmp_path / "site"
    with zipfile.ZipFile(built) as archive:  # what an installer does with a pure-Python wheel (no pip in uv venvs)
        archive.extractall(site_dir)
    script = "import sys, tpo_hf.hub.space as s; print(s.__file__); print(s.build_tpo_hf_wheel(sys.argv[1]))"
    env = dict(os.environ, PYTHONPATH=str(site_dir))
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "again")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    module, repacked = result.stdout.split()
    assert Path(module).is_relative_to(site_dir)  # the installed copy ran, not the checkout
    assert Path(repacked).name == built.name
    with zipfile.ZipFile(built) as original, zipfile.ZipFile(repacked) as again:
        files = {n: original.read(n) for n in original.namelist() if not n.endswith("/RECORD")}
        assert {n: again.read(n) for n in again.namelist() if not n.endswith("/RECORD")} == files
        (record,) = [n for n in again.namelist() if n.endswith(".dist-info/RECORD")]
        for line in again.read(record).decode().splitlines():
            name, digest, size = line.rsplit(",", 2)
            if name != record:
                data = again.read(name)
                assert (
                    digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                )
                assert int(size) == len(data)


def test_gradio_client_answers_both_ways(demo_url, video_dir):
    from gradio_client import Client, handle_file

    client = Client(demo_url, verbose=False)
    gallery, base_answer, tpo_answer = client.predict(
        handle_file(str(video_dir / "red_blue.mp4")), "What colour is the shape?", 3, api_name="/answer"
    )
    assert len(gallery) == 3  # the frames control decides how many frames are sampled and shown
    assert base_answer and tpo_answer
    assert base_answer != tpo_answer  # adapter disabled vs. enabled on the same frames


class WebDriver:
    """The few W3C WebDriver calls the test needs, over HTTP with the standard library."""

    def __init__(self, url: str, capabilities: dict):
        self.url = url
        self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})["sessionId"]

    def _call(self, method: str, path: str, payload: dict | None = None):
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"WebDriver {method} {path}: {error.read()[:500]!r}") from error

    def session_call(self, method: str, path: str, payload: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", payload)

    def find(self, css: str) -> list[str]:
        elements = self.session_call("POST", "/elements", {"using": "css selector", "value": css})
        return [next(iter(element.values())) for element in elements]

    def wait_for(self, condition, what: str, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}")

    def value(self, css: str) -> str:
        elements = self.find(css)
        return self.session_call("GET", f"/element/{elements[0]}/property/value") if elements else ""

    def quit(self):
        self._call("DELETE", f"/session/{self.session}")


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
    reason="needs Debian's chromium and chromium-driver packages (/usr/bin/chromium, chromedriver)",
)


def ask_in_chromium(url: str, video: Path, tmp_path: Path) -> tuple[str, str, Path]:
    """Opens the Space at `url` in headless Chromium, uploads `video`, clicks Ask; returns the base and TPO answers
    and a screenshot of the page once the sampled frames show."""
    port = _free_port()
    driver_process = subprocess.Popen(
        [str(CHROMEDRIVER), f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    profile = tmp_path / "chromium-profile"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        options = {"binary": str(CHROMIUM), "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}
        browser = WebDriver(f"http://127.0.0.1:{port}", {"browserName": "chrome", "goog:chromeOptions": options})
        try:
            browser.session_call("POST", "/url", {"url": url})
            file_input = browser.wait_for(lambda: browser.find("#video input[type=file]"), "the video upload input")
            browser.session_call("POST", f"/element/{file_input[0]}/value", {"text": str(video)})
            browser.wait_for(lambda: browser.find("#video video"), "the uploaded video to show")
            (ask,) = browser.find("#ask")
            browser.session_call("POST", f"/element/{ask}/click", {})
            base = browser.wait_for(lambda: browser.value("#base_answer textarea"), "the base answer")
            tpo = browser.wait_for(lambda: browser.value("#tpo_answer textarea"), "the TPO answer")
            browser.wait_for(lambda: len(browser.find("#gallery img")) >= 4, "the sampled frames")
            screenshot = tmp_path / "space_demo.png"
            screenshot.write_bytes(base64.b64decode(browser.session_call("GET", "/screenshot")))
        finally:
            browser.quit()
    finally:
        driver_process.terminate()
        driver_process.wait(timeout=10)
    return base, tpo, screenshot


@needs_chromium
def test_space_in_headless_chromium(demo_url, video_dir, tmp_path):
    base, tpo, screenshot = ask_in_chromium(demo_url, video_dir / "red_blue.mp4", tmp_path)
    print(f"\nSpace screenshot: {screenshot}")
    keep = os.environ.get("TPO_HF_ARTIFACTS")
    if keep:
        shutil.copy(screenshot, Path(keep) / screenshot.name)
    assert base and tpo and base != tpo
    assert screenshot.read_bytes().startswith(b"\x89PNG")


@needs_chromium
def test_space_folder_installs_in_a_fresh_venv_and_answers_in_chromium(tiny_adapter, video_dir, tmp_path):
    """The Space folder as a fresh Space gets it: its `requirements.txt` alone is installed into a new venv (the Space
    builder mounts that one file before it copies the repository), then `python app.py` runs from the folder, and the
    UI answers a question in headless Chromium.

    Choice made for time: the venv is created with `--system-site-packages`, for the heavy third-party dependencies
    only (torch, transformers, gradio, ...: a full install is ~5 GB and minutes per run), so `pip install -r
    requirements.txt` finds them satisfied. What is proven is that tpo-hf itself comes from the Space's own wheel:
    the running app's `tpo_hf` is the one `app.py` unpacked from that wheel, not the repository checkout and not the
    tpo-hf installed in the system site-packages.
    """
    import site

    from tpo_hf.hub.space import write_space

    video = video_dir / "red_blue.mp4"
    folder = write_space(tmp_path / "space", str(tiny_adapter), num_frames=4, max_new_tokens=6, examples=[str(video)])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    builder = tmp_path / "builder"  # requirements.txt away from the folder, as the Space builder has it
    builder.mkdir()
    shutil.copy(folder / "requirements.txt", builder / "requirements.txt")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "requirements.txt"]
    subprocess.run(pip, cwd=builder, env=env, check=True, timeout=300)

    scratch = tmp_path / "space-tmp"  # app.py unpacks the wheel under the temp folder
    scratch.mkdir()
    port = _free_port()
    env.update(TMPDIR=str(scratch), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))
    log_path = tmp_path / "app.log"
    with open(log_path, "w") as log:
        app = subprocess.Popen([str(python), "app.py"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if app.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"app.py did not start:\n{log_path.read_text()[-4000:]}") from None
                time.sleep(0.5)
        base, tpo, _ = ask_in_chromium(url, video, tmp_path)
    finally:
        app.terminate()
        app.wait(timeout=30)
    assert base and tpo and base != tpo
    (line,) = [line for line in log_path.read_text().splitlines() if line.startswith("tpo-hf ")]
    running = Path(line.split(" from ", 1)[1]).resolve()
    assert running.is_relative_to(scratch.resolve()), line  # the wheel's copy ...
    assert not running.is_relative_to(REPO_ROOT)  # ... not the checkout ...
    assert not any(running.is_relative_to(Path(p).resolve()) for p in site.getsitepackages())  # ... nor the system's
    assert (running.parent / f"tpo_hf-{tpo_hf.__version__}.dist-info").is_dir()


def test_space_refuses_inputs_it_could_not_start_with(tmp_path):
    """A missing local adapter, `num_frames` 0 or an unparseable `tpo_hf_requirement` are refused before anything is
    written; a local adapter folder is named in the README as a folder, not linked as a Hub model."""
    from huggingface_hub import SpaceCard

    from tpo_hf.hub.space import write_space

    release = "tpo-hf[demo]==0.1.0"  # no wheel is built
    with pytest.raises(FileNotFoundError, match="--adapter .*no_such_adapter' is neither an existing local folder"):
        write_space(tmp_path / "a", str(tmp_path / "no_such_adapter"), "tester/tiny-base", tpo_hf_requirement=release)
    with pytest.raises(ValueError, match="--num_frames must be a whole number of at least 2 .*, got 0"):
        write_space(tmp_path / "b", "tester/tiny-tpo", "tester/tiny-base", num_frames=0, tpo_hf_requirement=release)
    with pytest.raises(ValueError, match="--tpo_hf_requirement 'tpo-hf===' is not a valid requirements line"):
        write_space(tmp_path / "c", "tester/tiny-tpo", "tester/tiny-base", tpo_hf_requirement="tpo-hf===")
    with pytest.raises(ValueError, match="installs 'numpy', not tpo-hf"):
        write_space(tmp_path / "d", "tester/tiny-tpo", "tester/tiny-base", tpo_hf_requirement="numpy")
    assert not any((tmp_path / name).exists() for name in "abcd")

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x", "peft_type": "LORA"}))
    folder = write_space(tmp_path / "space", str(adapter), "tester/tiny-base", tpo_hf_requirement=release)
    card = SpaceCard.load(folder / "README.md")
    assert card.data.models == ["tester/tiny-base"]
    assert f"`{adapter}` (a local folder)" in card.text and f"/{adapter})" not in card.text
    assert "[tester/tiny-base](" in card.text


def test_a_pushed_space_refuses_local_adapter_and_base_folders(tmp_path):
    """A Space on the Hub cannot read a local folder: pushing one whose app.py would load the adapter or the base from
    a local path is refused before anything is written, naming the folder and how to push the adapter first; writing
    the folder to run it here keeps local paths."""
    from tpo_hf.hub.space import write_space

    release = "tpo-hf[demo]==0.1.0"  # no wheel is built
    adapter = tmp_path / "outputs" / "my-tpo-adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "base"), "peft_type": "LORA"})
    )
    with pytest.raises(ValueError, match=r"--adapter '.*my-tpo-adapter' is a local folder.*tpo-hf push --adapter_dir"):
        write_space(tmp_path / "a", str(adapter), "tester/tiny-base", tpo_hf_requirement=release, for_hub=True)
    with pytest.raises(ValueError, match=r"--base_model '/abs/local/model' is a local folder.*Hub repo id"):
        write_space(tmp_path / "b", "tester/tiny-tpo", "/abs/local/model", tpo_hf_requirement=release, for_hub=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    folder = write_space(tmp_path / "local", str(adapter), tpo_hf_requirement=release)  # to run here: local paths
    app = (folder / "app.py").read_text()
    assert f'"{adapter}",' in app and f'base_model="{tmp_path / "base"}"' in app


def test_space_examples_of_one_name_are_all_kept(tmp_path, video_dir):
    """`--examples a/clip.mp4 b/clip.mp4`: both clips reach the Space under distinct names, none copied over the
    other."""
    from tpo_hf.hub.space import write_space

    for folder, video in (("a", "red_blue.mp4"), ("b", "green_yellow.mp4")):
        (tmp_path / folder).mkdir()
        shutil.copy(video_dir / video, tmp_path / folder / "clip.mp4")
    examples = [str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "clip.mp4")]
    space = write_space(
        tmp_path / "space", "tester/tiny-tpo", "tester/tiny-base", examples=examples, tpo_hf_requirement="tpo-hf==0.1"
    )
    assert 'examples=["examples/clip.mp4", "examples/clip-2.mp4"]' in (space / "app.py").read_text()
    assert (space / "examples" / "clip.mp4").read_bytes() == (video_dir / "red_blue.mp4").read_bytes()
    assert (space / "examples" / "clip-2.mp4").read_bytes() == (video_dir / "green_yellow.mp4").read_bytes()


def test_a_failed_space_push_keeps_the_folder_it_names(tmp_path):
    """`tpo-hf space --space_id ...` without --output_dir writes the folder in a temporary one: when the upload fails,
    that folder is kept (the error tells to rerun with `--output_dir` it); after a push, it is removed. A local
    adapter folder is refused before anything is written or pushed (the Space could not read it)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    (tmp_path / "my-tpo-adapter").mkdir()
    command = [sys.executable, "-m", "tpo_hf.commands", "space", "--adapter", "tester/tiny-tpo", "--base_model"]
    command += ["tester/tiny-base", "--space_id", "tester/tiny-tpo-demo", "--tpo_hf_requirement", "tpo-hf==0.1"]
    local = [*command[:5], "my-tpo-adapter", *command[6:]]
    with HubServer(tmp_path / "hub") as hub:
        seed_adapter_repo(hub, "tester/tiny-tpo")
        env = hub_cli_env(hub, tmp_path, TMPDIR=str(scratch))
        refused = subprocess.run(local, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert refused.returncode == 1 and "--adapter 'my-tpo-adapter' is a local folder" in refused.stderr
        assert not hub.store.exists("space", "tester/tiny-tpo-demo") and not any(scratch.iterdir())
        hub.fail_next_commits(5)  # more than huggingface_hub retries
        failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert failed.returncode == 1, failed.stderr[-3000:]
        (named,) = set(re.findall(r"--output_dir (\S+?)`", failed.stderr))
        assert Path(named).parent == scratch and (Path(named) / "app.py").is_file()
        assert "The folder is kept" in failed.stderr
        shutil.rmtree(named)
        hub.fail_next_commits(0)
        pushed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        assert "app.py" in hub.files("tester/tiny-tpo-demo", "space")
    assert not any(scratch.glob("tpo-space-*"))


# --- sixth probe: what `tpo-hf space` is given is checked before it writes; a full disk is named and cleaned up ---
def seed_adapter_repo(hub: HubServer, repo_id: str) -> None:
    """A model repo on the local Hub holding an adapter config (what `tpo-hf space` checks an --adapter id for)."""
    hub.store.create("model", repo_id)
    config = {"base_model_name_or_path": "tester/tiny-base", "peft_type": "LORA"}
    hub.store.commit("model", repo_id, "adapter", {"adapter_config.json": json.dumps(config).encode()}, [])


@pytest.fixture
def on_local_hub(tmp_path, monkeypatch):
    """This process's Hub clients pointed at a local Hub server of this test's own, with a fresh cache."""
    with HubServer(tmp_path / "hub") as hub:
        yield point_clients_at(hub, tmp_path, monkeypatch)


def test_space_refuses_an_output_dir_that_holds_the_adapter_or_a_model(tmp_path):
    """`tpo-hf space --adapter AD --output_dir AD` replaced the adapter's model card (README.md) by the Space's card
    and wrote app.py beside its weights, with exit status 0: a folder holding an adapter or a model is refused,
    naming it and the files that make it one, and nothing in it changes."""
    from tpo_hf.hub.space import write_space

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x", "peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    (adapter / "README.md").write_text("# my adapter's model card\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    release = "tpo-hf[demo]==0.1.0"  # no wheel is built
    with pytest.raises(ValueError, match=r"--output_dir .*adapter is the --adapter folder \(a trained adapter or "):
        write_space(adapter, str(adapter), "tester/tiny-base", tpo_hf_requirement=release)
    model_files = r"holds a full model \(config.json, model.safetensors\).*-space"
    with pytest.raises(ValueError, match=rf"--output_dir .*model {model_files}"):
        write_space(model, str(adapter), "tester/tiny-base", tpo_hf_requirement=release)
    # the rule curation keeps its output folder by too: a config.json alone is no model
    from tpo_hf.curation.run import refuse_model_output_dir
    from tpo_hf.data import model_or_adapter_in_folder

    with pytest.raises(ValueError, match=rf"output_dir .*model {model_files[:-8]}"):
        refuse_model_output_dir(model)
    (model / "trainer_state.json").write_text("{}")  # a Trainer's full fine-tune: still a model (curation let it by)
    with pytest.raises(ValueError, match=rf"output_dir .*model {model_files[:-8]}"):
        refuse_model_output_dir(model)
    (model / "trainer_state.json").unlink()
    (model / "model.safetensors").unlink()
    assert model_or_adapter_in_folder(model) is None
    assert (adapter / "README.md").read_text() == "# my adapter's model card\n"
    assert sorted(p.name for p in adapter.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert sorted(p.name for p in model.iterdir()) == ["config.json"]


def test_space_refuses_an_adapter_that_is_not_one(tmp_path, on_local_hub):
    """`tpo-hf space --adapter tester/pairs`, a dataset repo (or a folder without adapter_config.json), wrote a Space
    whose app.py would fail to load it, with exit status 0: what is not a LoRA adapter is refused before anything is
    written, naming it (and the kind of repo it is); an adapter model repo is written as before."""
    from tpo_hf.hub.space import write_space

    hub = on_local_hub
    hub.store.create("dataset", "tester/pairs")
    hub.store.commit("dataset", "tester/pairs", "data", {"data/train.jsonl": b'{"prompt": "p"}\n'}, [])
    seed_adapter_repo(hub, "tester/tiny-tpo")
    data_folder = tmp_path / "pairs"
    data_folder.mkdir()
    (data_folder / "train.jsonl").write_text("{}\n")
    full_model = tmp_path / "full_model"
    full_model.mkdir()
    (full_model / "config.json").write_text("{}")
    release = "tpo-hf[demo]==0.1.0"  # no wheel is built
    with pytest.raises(ValueError, match=r"--adapter tester/pairs is a dataset repo on the Hub, not a model repo"):
        write_space(tmp_path / "a", "tester/pairs", tpo_hf_requirement=release)
    with pytest.raises(ValueError, match=r"--adapter .*pairs is not a LoRA adapter folder \(no adapter_config.json\)"):
        write_space(tmp_path / "b", str(data_folder), "tester/tiny-base", tpo_hf_requirement=release)
    with pytest.raises(ValueError, match=r"but a full model \(config.json\).*as --base_model"):
        write_space(tmp_path / "c", str(full_model), tpo_hf_requirement=release)
    assert not any((tmp_path / name).exists() for name in "abc")
    folder = write_space(tmp_path / "space", "tester/tiny-tpo", "tester/tiny-base", tpo_hf_requirement=release)
    assert '"tester/tiny-tpo",' in (folder / "app.py").read_text()


def test_space_examples_take_a_folder_refuse_non_videos_and_replace_older_ones(tmp_path, video_dir):
    """`--examples clip.mp4 clip.srt` (a shell glob) offered the subtitles as an example video; `--examples clips/`
    said the folder "does not exist"; a folder written again with other examples kept (and would push) the old ones.
    A non-video is refused naming it, before anything is written; a folder gives the videos in it; examples the new
    app.py does not list are removed."""
    from tpo_hf.hub.space import write_space

    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", clips / "clip.mp4")
    (clips / "clip.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    arguments = dict(adapter="tester/tiny-tpo", base_model="tester/tiny-base", tpo_hf_requirement="tpo-hf==0.1")
    with pytest.raises(ValueError, match=r"--examples .*clip\.srt: not a video by its ending"):
        write_space(tmp_path / "a", examples=[str(clips / "clip.mp4"), str(clips / "clip.srt")], **arguments)
    assert not (tmp_path / "a").exists()
    space = write_space(tmp_path / "space", examples=[str(clips)], **arguments)
    assert sorted(p.name for p in (space / "examples").iterdir()) == ["clip.mp4"]
    assert 'examples=["examples/clip.mp4"]' in (space / "app.py").read_text()
    space = write_space(space, examples=[str(video_dir / "green_yellow.mp4")], **arguments)
    assert sorted(p.name for p in (space / "examples").iterdir()) == ["green_yellow.mp4"]
    assert 'examples=["examples/green_yellow.mp4"]' in (space / "app.py").read_text()


def test_space_push_with_a_read_only_token_is_refused_before_the_folder_is_written(
    tmp_path, on_local_hub, monkeypatch
):
    """A token that cannot write the Space was refused only at the upload, after the folder and its wheel were built
    (and kept), with a rerun hint holding `--adapter ...`: it is refused first, nothing written, and the hint is the
    whole command (--base_model kept)."""
    import tempfile

    from tpo_hf.commands.space import SpaceArguments, main
    from tpo_hf.hub.push import PushError

    hub = on_local_hub
    seed_adapter_repo(hub, "tester/tiny-tpo")
    hub.read_only.add("tester/tiny-tpo-demo")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    arguments = SpaceArguments(
        adapter="tester/tiny-tpo",
        base_model="tester/tiny-base",
        space_id="tester/tiny-tpo-demo",
        tpo_hf_requirement="tpo-hf==0.1",
    )
    with pytest.raises(PushError) as refused:
        main(arguments)
    message = str(refused.value)
    assert "HTTP 403" in message and "Nothing was written or uploaded" in message, message
    rerun = "tpo-hf space --adapter tester/tiny-tpo --space_id tester/tiny-tpo-demo --base_model tester/tiny-base"
    assert f"`{rerun} --tpo_hf_requirement tpo-hf==0.1`" in message and "..." not in message, message
    assert not any(scratch.iterdir())
    assert not [path for method, path in hub.requests if "/commit/" in path]


def test_space_refuses_max_new_tokens_below_one_before_writing_or_pushing(tmp_path, on_local_hub):
    """Probe b/g12: `tpo-hf space --max_new_tokens 0` (or -1) wrote (and with --space_id pushed) a Space whose every
    question failed in `generate`; it is refused like `--num_frames 0`, before anything is written or the Hub asked."""
    from tpo_hf.commands.space import SpaceArguments, main
    from tpo_hf.hub.space import write_space

    hub = on_local_hub
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x", "peft_type": "LORA"}))
    release = "tpo-hf[demo]==0.1.0"  # no wheel is built
    for value in (0, -1):
        with pytest.raises(ValueError, match=f"--max_new_tokens must be a whole number of at least 1, got {value}"):
            write_space(
                tmp_path / f"s{value}",
                str(adapter),
                "tester/tiny-base",
                max_new_tokens=value,
                tpo_hf_requirement=release,
            )
        assert not (tmp_path / f"s{value}").exists()
    seed_adapter_repo(hub, "tester/tiny-tpo")
    requests_before = len(hub.requests)
    arguments = SpaceArguments(
        adapter="tester/tiny-tpo",
        base_model="tester/tiny-base",
        space_id="tester/tiny-tpo-demo",
        max_new_tokens=0,
        tpo_hf_requirement=release,
    )
    with pytest.raises(ValueError, match="--max_new_tokens must be a whole number of at least 1, got 0"):
        main(arguments)
    assert hub.requests[requests_before:] == []  # refused before the Space was created or anything uploaded
    local = SpaceArguments(adapter=str(adapter), base_model="tester/tiny-base", local=True, max_new_tokens=0)
    with pytest.raises(ValueError, match="--max_new_tokens must be a whole number of at least 1, got 0"):
        main(local)  # `--local` too, before the app is built
    folder = write_space(
        tmp_path / "ok", str(adapter), "tester/tiny-base", max_new_tokens=1, tpo_hf_requirement=release
    )
    assert "max_new_tokens=1," in (folder / "app.py").read_text()


def test_space_on_a_full_disk_names_the_folder_and_removes_what_it_wrote(tmp_path, video_dir):
    """On a nearly full disk the Space folder failed with "[Errno 28] No space left on device" alone and was left
    half-written: the error names the folder and the full disk, and what this run wrote is removed (a new folder
    whole; in an existing folder, only the files it added). A small tmpfs is the full disk."""
    from tpo_hf.hub.space import write_space

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        # a video larger than the disk (noise does not compress): its copy into examples/ fills it
        from tpo_hf.synthetic import write_video

        noise = np.random.default_rng(0).integers(0, 256, (32, 128, 128, 3), dtype=np.uint8)
        big = write_video(tmp_path / "big.mp4", noise)
        assert big.stat().st_size > 400_000
        arguments = dict(adapter="tester/tiny-tpo", base_model="tester/tiny-base", tpo_hf_requirement="tpo-hf==0.1")
        with pytest.raises(ValueError, match=r"Space folder .*disk/new/space failed: no space left on device") as full:
            write_space(disk / "new" / "space", examples=[str(big)], **arguments)
        assert f"{disk / 'new'} was removed" in str(full.value) and not (disk / "new").exists()
        written = write_space(disk / "space", examples=[str(video_dir / "red_blue.mp4")], **arguments)
        before = sorted(str(path) for path in written.rglob("*"))
        with pytest.raises(ValueError, match="the files this run added to .* were removed"):
            write_space(written, examples=[str(big)], **arguments)
        assert sorted(str(path) for path in written.rglob("*")) == before
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_space_app_refuses_a_question_holding_the_video_placeholder(tiny_adapter, video_dir):
    """A question holding the model's `<|video_pad|>` (pasted from a prompt dump) showed the processor's own error
    ("The total number of <|video_pad|> tokens ... should be the same as the number of videos") to the Space user: it
    is refused, naming the token."""
    from tpo_hf.hub.app import VideoQA

    qa = VideoQA(str(tiny_adapter), device="cpu")
    with pytest.raises(ValueError, match=r"The question holds the model's placeholder token\(s\) <\|video_pad\|>"):
        qa.answer(str(video_dir / "red_blue.mp4"), "What is <|video_pad|> showing?", 4, max_new_tokens=2)


# --- eighth probe: the Space folder keeps a user's own files; `--local` checks its port before loading the model ---
def test_space_refuses_an_output_dir_holding_files_it_did_not_write_and_rewrites_its_own(tmp_path, on_local_hub):
    """Probe a/h11: `tpo-hf space --output_dir proj`, proj holding the user's own README.md, app.py and
    requirements.txt, replaced all three with exit status 0. Files the Space would replace that `tpo-hf space` did not
    write (or that changed since it wrote them, such as an edited app.py) are refused by name before anything is
    written or pushed; a folder it wrote is rewritten on a rerun."""
    from tpo_hf.commands.space import SpaceArguments, main
    from tpo_hf.hub.space import write_space

    hub = on_local_hub
    seed_adapter_repo(hub, "tester/tiny-tpo")
    arguments = dict(adapter="tester/tiny-tpo", base_model="tester/tiny-base", tpo_hf_requirement="tpo-hf==0.1")
    project = tmp_path / "proj"
    project.mkdir()
    own = {"README.md": "# My project notes\n", "app.py": "print('my own app')\n", "requirements.txt": "numpy==1.0\n"}
    for name, text in own.items():
        (project / name).write_text(text)
    (project / "notes.txt").write_text("kept\n")
    foreign = r"did not write \(README\.md, app\.py, requirements\.txt\)"
    with pytest.raises(
        ValueError, match=rf"--output_dir .*proj holds files that `tpo-hf space` {foreign}.*proj-space"
    ):
        write_space(project, **arguments)
    cli = SpaceArguments(space_id="tester/tiny-tpo-demo", output_dir=str(project), **arguments)
    with pytest.raises(ValueError, match=foreign):
        main(cli)  # refused before the Space is created or anything uploaded
    assert not hub.store.exists("space", "tester/tiny-tpo-demo")
    assert {p.name: p.read_text() for p in project.iterdir()} == {**own, "notes.txt": "kept\n"}

    # the folder of an earlier `tpo-hf space` is rewritten (a rerun); test_write_and_push_space shows that its record
    # is not pushed
    for name in own:
        (project / name).unlink()
    write_space(project, **arguments)
    assert (project / ".tpo-space.json").is_file() and (project / "notes.txt").read_text() == "kept\n"
    write_space(project, **{**arguments, "max_new_tokens": 7})
    assert "max_new_tokens=7," in (project / "app.py").read_text()

    # an app.py edited by hand and a video the user put in examples/: named, and kept as they are
    edited = (project / "app.py").read_text() + "# my tweak\n"
    (project / "app.py").write_text(edited)
    shutil.copy(project / "examples" / "shapes.mp4", project / "examples" / "mine.mp4")
    with pytest.raises(ValueError) as refused:
        write_space(project, **arguments)
    message = str(refused.value)
    assert "did not write (examples/mine.mp4)" in message, message
    assert "changed since `tpo-hf space` wrote them (app.py: those edits would be lost)" in message, message
    assert "or delete them" in message and "\n" not in message
    assert (project / "app.py").read_text() == edited and (project / "examples" / "mine.mp4").is_file()
    (project / "app.py").unlink()
    (project / "examples" / "mine.mp4").unlink()
    write_space(project, **arguments)
    assert "max_new_tokens=128," in (project / "app.py").read_text()


def test_space_local_refuses_a_port_in_use_before_loading_the_model(tmp_path):
    """Probe a/h26: `tpo-hf space --local --port 7871` with another app on that port loaded the model, then failed in
    gradio's launch with a traceback naming gradio's GRADIO_SERVER_PORT and `server_port`: the port is checked first,
    one line naming it and --port (here the base model does not even exist: nothing is loaded)."""
    from tpo_hf.commands.space import cli_main

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x", "peft_type": "LORA"}))
    with socket.socket() as other_app:
        other_app.bind(("127.0.0.1", 0))
        other_app.listen()
        port = other_app.getsockname()[1]
        command = [
            "--adapter",
            str(adapter),
            "--base_model",
            str(tmp_path / "no-base"),
            "--local",
            "--port",
            str(port),
        ]
        with pytest.raises(SystemExit) as refused:
            cli_main(command)
    message = str(refused.value)
    assert message.startswith(f"tpo-hf space: port {port} on 127.0.0.1 is in use"), message
    assert "pass another --port N" in message and "\n" not in message
    from tpo_hf.commands.space import check_port_free

    check_port_free("127.0.0.1", port)  # free again once that app is gone


def test_space_refuses_example_videos_that_do_not_open(tmp_path, video_dir):
    """Probe b/h23: `--examples ex` with a zero-length `empty.mp4` and a text file `notes.mp4` beside a real clip wrote
    all three into app.py's examples, two that neither play nor can be asked about: each example is opened (header
    and first frame, as eval's `open_videos` does) and the ones that do not open are refused, named, before anything
    is written."""
    from tpo_hf.hub.space import write_space

    examples = tmp_path / "ex"
    examples.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", examples / "clip é 1.mp4")
    (examples / "empty.mp4").write_bytes(b"")
    (examples / "notes.mp4").write_text("notes about the clips, not a video\n")
    arguments = dict(adapter="tester/tiny-tpo", base_model="tester/tiny-base", tpo_hf_requirement="tpo-hf==0.1")
    with pytest.raises(ValueError, match=r"--examples: 2 of 3 example videos do not open") as refused:
        write_space(tmp_path / "space", examples=[str(examples)], **arguments)
    message = str(refused.value)
    assert f"{examples / 'empty.mp4'} is empty (0 bytes)" in message, message
    assert f"Could not decode video {examples / 'notes.mp4'}" in message, message
    assert "clip é 1.mp4" not in message, message
    assert not (tmp_path / "space").exists()
    (examples / "empty.mp4").unlink()
    (examples / "notes.mp4").unlink()
    space = write_space(tmp_path / "space", examples=[str(examples)], **arguments)
    assert 'examples=["examples/clip \\u00e9 1.mp4"]' in (space / "app.py").read_text()


def test_space_num_frames_must_lie_in_the_frames_slider_range(tmp_path, tiny_adapter):
    """Probe b/h24: `--num_frames 1` passed (at least 1 was asked) though the app's Frames slider starts at 2, so the
    app started with its slider at 1, outside its own range: the slider's minimum is the rule, for a written Space
    and for `--local` (refused before the app is built), and it is the minimum `build_demo` gives the slider."""
    from tpo_hf.commands.space import SpaceArguments, main
    from tpo_hf.hub import space
    from tpo_hf.hub.app import VideoQA, build_demo
    from tpo_hf.hub.space import write_space

    release = "tpo-hf[demo]==0.1.0"  # no wheel is built
    with pytest.raises(
        ValueError, match=r"--num_frames must be a whole number of at least 2 \(the app's Frames slider"
    ):
        write_space(tmp_path / "one", str(tiny_adapter), num_frames=1, tpo_hf_requirement=release)
    assert not (tmp_path / "one").exists()
    local = SpaceArguments(adapter=str(tiny_adapter), base_model=str(tmp_path / "no-base"), local=True, num_frames=1)
    with pytest.raises(ValueError, match="--num_frames must be a whole number of at least 2"):
        main(local)  # the base does not exist: refused before anything is loaded
    folder = write_space(tmp_path / "two", str(tiny_adapter), num_frames=2, tpo_hf_requirement=release)
    assert "num_frames=2," in (folder / "app.py").read_text()

    demo = build_demo(str(tiny_adapter), num_frames=space.FRAMES_SLIDER_MINIMUM, qa=VideoQA(str(tiny_adapter)))
    (slider,) = [c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "frames"]
    assert slider["props"]["minimum"] == space.FRAMES_SLIDER_MINIMUM == slider["props"]["value"]


def test_space_refuses_a_tpo_hf_requirement_that_the_space_would_skip(tmp_path, caplog):
    """Probe b/h40: `--tpo_hf_requirement "tpo-hf ; python_version < '3'"` was written as is: pip skips the line on
    the Space's Python 3 and the Space cannot import tpo_hf. A marker false on the Space (this Python, Linux x86-64)
    is refused before anything is written; a version the running tpo-hf does not satisfy (`tpo-hf==99.0`, which may
    not exist: not checkable offline) is written with a warning."""
    import logging

    from tpo_hf.hub.space import write_space

    arguments = dict(adapter="tester/tiny-tpo", base_model="tester/tiny-base")
    for line, marker in (
        ("tpo-hf ; python_version < '3'", 'python_version < "3"'),
        ("tpo-hf[demo]==0.1.0 ; sys_platform == 'win32'", 'sys_platform == "win32"'),
    ):
        with pytest.raises(ValueError, match=re.escape(f"its marker ({marker}) is false on the Space (Python ")):
            write_space(tmp_path / "skipped", tpo_hf_requirement=line, **arguments)
        assert not (tmp_path / "skipped").exists()
    folder = write_space(
        tmp_path / "marked", tpo_hf_requirement="tpo-hf[demo]==0.1.0; python_version >= '3.10'", **arguments
    )
    assert (folder / "requirements.txt").read_text().startswith('tpo-hf[demo]==0.1.0; python_version >= "3.10"\n')

    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub.space"):
        folder = write_space(tmp_path / "other", tpo_hf_requirement="tpo-hf==99.0", **arguments)
    assert f"does not admit the running tpo-hf {tpo_hf.__version__}" in caplog.text, caplog.text
    assert (folder / "requirements.txt").read_text().startswith("tpo-hf==99.0\n")


def test_space_readme_declares_the_python_its_requirement_markers_are_checked_against(tmp_path):
    """Probe b/i47: `--tpo_hf_requirement 'tpo-hf ; python_version >= "3.11"'` was checked against this Python while
    the Space README set no `python_version`, so the Hub ran its default Python, where pip may skip the line. The
    README now declares this Python's `major.minor`, the one the marker is checked against."""
    import yaml
    from huggingface_hub import SpaceCard

    from tpo_hf.hub.space import space_marker_environment, write_space

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    line = f'tpo-hf ; python_version >= "{python}"'
    folder = write_space(tmp_path / "space", adapter="tester/tiny-tpo", tpo_hf_requirement=line)
    readme = (folder / "README.md").read_text()
    front_matter = yaml.safe_load(readme.split("---")[1])
    assert front_matter["python_version"] == python, readme  # a string: 3.10 as a YAML float would read 3.1
    assert SpaceCard.load(folder / "README.md").data.python_version == python
    assert space_marker_environment()["python_version"] == python
    assert Requirement(line).marker.evaluate(space_marker_environment())


# --- ninth probe: edits made on the Hub are not replaced unseen; one `tpo-hf space` per --output_dir -------------
# huggingface_hub 2.x hands raw bytes to httpx's deprecated `data=` when uploading LFS files
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_space_push_refuses_to_replace_files_edited_on_the_hub_unless_told_to(tmp_path, on_local_hub, monkeypatch):
    """Probe a/i4: a Space pushed by `tpo-hf space --space_id ...`, its app.py then fixed in the Hub's web editor,
    and the same command rerun: the fix was replaced without a word. The push records what it pushed (in the Space,
    since without --output_dir no local folder is kept); a rerun over unchanged files pushes as before, one over
    files changed on the Hub is refused naming them and --overwrite_hub_edits, which replaces them."""
    import tempfile

    from huggingface_hub import HfApi

    from tpo_hf.commands.space import SpaceArguments, main
    from tpo_hf.hub.push import PushError

    hub = on_local_hub
    seed_adapter_repo(hub, "tester/tiny-tpo")
    scratch = tmp_path / "tmp"  # where the Space folder is written without --output_dir
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    arguments = dict(
        adapter="tester/tiny-tpo",
        base_model="tester/tiny-base",
        space_id="tester/tiny-tpo-demo",
        tpo_hf_requirement="tpo-hf==0.1",
    )
    main(SpaceArguments(**arguments))
    main(SpaceArguments(**arguments, max_new_tokens=7))  # a rerun over the files it pushed itself
    pushed = hub.files("tester/tiny-tpo-demo", "space")["app.py"].decode()
    assert "max_new_tokens=7," in pushed
    fixed = "# HAND FIX made in the Space's editor\n" + pushed
    HfApi().upload_file(
        path_or_fileobj=fixed.encode(),
        path_in_repo="app.py",
        repo_id="tester/tiny-tpo-demo",
        repo_type="space",
        commit_message="hand fix",
    )
    commits = len(hub.commits("tester/tiny-tpo-demo", "space"))
    with pytest.raises(PushError) as refused:
        main(SpaceArguments(**arguments))
    message = str(refused.value)
    (kept,) = scratch.iterdir()  # named in the message, to push again with --output_dir
    assert f"the folder {kept} is kept" in message and f"--output_dir {kept} --overwrite_hub_edits true`" in message
    assert "holds files changed on the Hub since `tpo-hf space` pushed them (app.py;" in message, message
    assert "Nothing was pushed" in message and "--overwrite_hub_edits true" in message, message
    head = hub.commits("tester/tiny-tpo-demo", "space")[-1]["id"]
    assert f"{hub.endpoint}/spaces/tester/tiny-tpo-demo/blob/{head}/app.py)" in message, message
    assert hub.files("tester/tiny-tpo-demo", "space")["app.py"].decode() == fixed
    assert len(hub.commits("tester/tiny-tpo-demo", "space")) == commits
    main(SpaceArguments(**arguments, overwrite_hub_edits=True))
    files = hub.files("tester/tiny-tpo-demo", "space")
    assert "HAND FIX" not in files["app.py"].decode() and "max_new_tokens=128," in files["app.py"].decode()
    main(SpaceArguments(**arguments))  # what it just pushed is its own again


@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_two_space_runs_into_one_output_dir_do_not_write_it_at_once(tmp_path, on_local_hub):
    """Probe a/i6: two `tpo-hf space --output_dir proj` at once both wrote proj (and said so): the command holds the
    folder's lock, like curate/train/eval, so the second is refused naming the first, proj untouched; the lock file
    is neither left in the folder nor pushed to the Space."""
    from tpo_hf.commands.space import SpaceArguments, main
    from tpo_hf.locks import OutputDirLockedError

    hub = on_local_hub
    seed_adapter_repo(hub, "tester/tiny-tpo")
    project = tmp_path / "proj"
    holder = subprocess.Popen(  # another `tpo-hf space` writing proj: a process holding its lock
        [
            sys.executable,
            "-c",
            "import sys; from tpo_hf.locks import output_dir_lock\n"
            f"with output_dir_lock({str(project)!r}, 'space', '--output_dir'):\n"
            "    print('locked', flush=True); sys.stdin.readline()",
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    arguments = SpaceArguments(
        adapter="tester/tiny-tpo",
        base_model="tester/tiny-base",
        space_id="tester/tiny-tpo-demo",
        output_dir=str(project),
        tpo_hf_requirement="tpo-hf==0.1",
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirLockedError, match=rf"--output_dir {project} is in use by another run: pid"):
            main(arguments)
        assert sorted(path.name for path in project.iterdir()) == [".tpo-hf.lock"]
    finally:
        holder.communicate("\n", timeout=60)
    main(arguments)
    assert (project / "app.py").is_file() and not (project / ".tpo-hf.lock").exists()
    assert ".tpo-hf.lock" not in hub.files("tester/tiny-tpo-demo", "space")


def test_space_refuses_an_adapter_folder_being_trained_into_or_whose_retraining_was_killed(tmp_path):
    """Probes a/i17, a/i18: `tpo-hf space --adapter run` wrote (or ran) a demo of a folder whose in-place retraining
    was SIGKILLed after checkpoint-4 (its weights the earlier training's, its card the killed run's), and of one a
    training run was writing at that moment, nothing said, though push and eval refuse both: the Space refuses them
    too (`locks.refuse_if_locked`), before anything is written or loaded."""
    from safetensors.numpy import save_file

    from tpo_hf.commands.space import SpaceArguments, main
    from tpo_hf.locks import OutputDirLockedError

    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x", "peft_type": "LORA"}))
    save_file({"lora_A.weight": np.zeros((2, 2), np.float32)}, str(run / "adapter_model.safetensors"))
    saved = (run / "adapter_model.safetensors").stat().st_mtime
    # the record of a `train` run whose process is gone (its flock is free), killed after its checkpoint-4
    record = {"pid": 999999, "host": "elsewhere", "command": "tpo-hf train --config t.yaml", "what": "train"}
    (run / ".tpo-hf.lock").write_text(json.dumps(record))
    (run / "checkpoint-4").mkdir()
    os.utime(run / "checkpoint-4", (saved + 60, saved + 60))
    arguments = dict(adapter=str(run), base_model="tester/tiny-base", tpo_hf_requirement="tpo-hf==0.1")
    for local in (False, True):
        with pytest.raises(OutputDirLockedError, match="killed before its final save") as refused:
            main(SpaceArguments(output_dir=str(tmp_path / "sp"), local=local, **arguments))
        assert "checkpoint(s) checkpoint-4 " in str(refused.value) and "Demo would read those" in str(refused.value)
        assert not (tmp_path / "sp").exists()

    (run / ".tpo-hf.lock").unlink()
    shutil.rmtree(run / "checkpoint-4")
    holder = subprocess.Popen(  # a `tpo-hf train` writing run now: a process holding its lock
        [
            sys.executable,
            "-c",
            "import sys; from tpo_hf.locks import output_dir_lock\n"
            f"with output_dir_lock({str(run)!r}, 'train'):\n"
            "    print('locked', flush=True); sys.stdin.readline()",
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirLockedError, match=rf"{run} is being written by another run: .*pid"):
            main(SpaceArguments(output_dir=str(tmp_path / "sp"), **arguments))
        assert not (tmp_path / "sp").exists()
    finally:
        holder.communicate("\n", timeout=60)
    main(SpaceArguments(output_dir=str(tmp_path / "sp"), **arguments))
    assert (tmp_path / "sp" / "app.py").is_file()


def test_a_local_space_names_a_relative_adapter_folder_by_its_absolute_path(tmp_path, monkeypatch):
    """Probe a/i16: `tpo-hf space --adapter run --output_dir sp` wrote `build_demo("run", ...)` (the base, read from
    the adapter's config, absolute), so `cd sp && python app.py` could not find the adapter: local folders are
    written as absolute paths."""
    from tpo_hf.hub.space import write_space

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "base", "peft_type": "LORA"})
    )
    folder = write_space("sp", "run", tpo_hf_requirement="tpo-hf==0.1")
    app = (folder / "app.py").read_text()
    assert f'    "{tmp_path / "run"}",\n    base_model="{tmp_path / "base"}",' in app, app


def test_space_examples_leave_out_hidden_files_and_offer_a_clip_named_twice_once(tmp_path, video_dir, caplog):
    """Probes b/j22, b/j37: `--examples ex` of a folder copied from a Mac (`._clip.mp4`, `__MACOSX/._clip.mp4`,
    `.Trashes/old.mp4`) was refused because those "do not open"; `--examples ex/clip.mp4 ex` offered one clip as
    clip.mp4 and clip-2.mp4. A folder leaves out hidden files by curation's rule, and a file named twice is offered
    once; each is named in a warning."""
    import logging

    from tpo_hf.hub.space import write_space

    examples = tmp_path / "ex"
    (examples / "__MACOSX").mkdir(parents=True)
    (examples / ".Trashes").mkdir()
    shutil.copy(video_dir / "red_blue.mp4", examples / "clip.mp4")
    shutil.copy(video_dir / "green_yellow.mp4", examples / ".Trashes" / "old.mp4")
    for appledouble in (examples / "._clip.mp4", examples / "__MACOSX" / "._clip.mp4"):
        appledouble.write_bytes(b"\x00\x05\x16\x07 Mac OS X metadata")
    arguments = dict(adapter="tester/tiny-tpo", base_model="tester/tiny-base", tpo_hf_requirement="tpo-hf==0.1")
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        space = write_space(tmp_path / "sp", examples=[str(examples)], **arguments)
    assert sorted(path.name for path in (space / "examples").iterdir()) == ["clip.mp4"]
    assert 'examples=["examples/clip.mp4"]' in (space / "app.py").read_text()
    assert "left out 3 hidden video file(s)" in caplog.text, caplog.text
    assert all(name in caplog.text for name in ("._clip.mp4", "__MACOSX/._clip.mp4", ".Trashes/old.mp4"))

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        space = write_space(tmp_path / "sp2", examples=[str(examples / "clip.mp4"), str(examples)], **arguments)
    assert sorted(path.name for path in (space / "examples").iterdir()) == ["clip.mp4"]
    assert 'examples=["examples/clip.mp4"]' in (space / "app.py").read_text()
    assert f"names 1 video file(s) twice; each is offered once: {examples / 'clip.mp4'}" in caplog.text, caplog.text
    (examples / "link.mp4").symlink_to("clip.mp4")  # a link beside its target, named as files
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        write_space(tmp_path / "sp3", examples=[str(examples / "clip.mp4"), str(examples / "link.mp4")], **arguments)
    assert sorted(path.name for path in (tmp_path / "sp3" / "examples").iterdir()) == ["clip.mp4"]
    assert f"{examples / 'link.mp4'} (the same file as {examples / 'clip.mp4'})" in caplog.text, caplog.text
