"""The Space: folder rendering + push to the local hub, and the demo app launched with a tiny model on loopback,
driven by `gradio_client` and by headless Chromium (Debian `chromium` + `chromium-driver`, W3C WebDriver over HTTP).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hub_server import HubServer
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
    # requirements: tpo-hf, then its runtime and `demo` dependencies with exactly the bounds of pyproject.toml
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    expected = [
        f"tpo-hf[demo]=={tpo_hf.__version__}",
        *project["dependencies"],
        *project["optional-dependencies"]["demo"],
    ]
    normalized = [str(Requirement(line)) for line in expected]
    assert (folder / "requirements.txt").read_text().splitlines() == normalized

    # the CLI pushes the same folder to a Space repo on the local hub
    with HubServer(tmp_path / "hub") as hub:
        env = dict(
            os.environ,
            HF_ENDPOINT=hub.endpoint,
            HF_HUB_OFFLINE="0",
            HF_HUB_DISABLE_XET="1",
            HF_HOME=str(tmp_path / "hf_home"),
            HF_TOKEN="hf_local_test_token",
            PYTHONPATH=str(REPO_ROOT),
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tpo_hf.cli",
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
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        files = hub.files("tester/tiny-tpo-demo", "space")
    assert sorted(files) == ["README.md", "app.py", "examples/shapes.mp4", "requirements.txt"]
    assert files["app.py"].decode() == app
    assert "sdk: gradio" in files["README.md"].decode()


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


@pytest.mark.skipif(
    not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
    reason="needs Debian's chromium and chromium-driver packages (/usr/bin/chromium, chromedriver)",
)
def test_space_in_headless_chromium(demo_url, video_dir, tmp_path):
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
            browser.session_call("POST", "/url", {"url": demo_url})
            file_input = browser.wait_for(lambda: browser.find("#video input[type=file]"), "the video upload input")
            browser.session_call("POST", f"/element/{file_input[0]}/value", {"text": str(video_dir / "red_blue.mp4")})
            browser.wait_for(lambda: browser.find("#video video"), "the uploaded video to show")
            (ask,) = browser.find("#ask")
            browser.session_call("POST", f"/element/{ask}/click", {})
            base = browser.wait_for(lambda: browser.value("#base_answer textarea"), "the base answer")
            tpo = browser.wait_for(lambda: browser.value("#tpo_answer textarea"), "the TPO answer")
            browser.wait_for(lambda: len(browser.find("#gallery img")) >= 4, "the sampled frames")
            screenshot = tmp_path / "space_demo.png"
            screenshot.write_bytes(base64.b64decode(browser.session_call("GET", "/screenshot")))
            print(f"\nSpace screenshot: {screenshot}")
            keep = os.environ.get("TPO_HF_ARTIFACTS")
            if keep:
                shutil.copy(screenshot, Path(keep) / screenshot.name)
        finally:
            browser.quit()
    finally:
        driver_process.terminate()
        driver_process.wait(timeout=10)
    assert base and tpo and base != tpo
    assert screenshot.read_bytes().startswith(b"\x89PNG")
