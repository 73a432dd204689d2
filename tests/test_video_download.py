"""Video URLs: the download into `TPO_HF_VIDEO_CACHE`, against a real HTTP server on loopback."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_curation_backends import completion, fake_endpoint, online, raw_endpoint  # noqa: F401  (the fixtures)

from tpo_hf import VideoLoadError, load_video
from tpo_hf.synthetic import Scene, write_synthetic_video


@contextlib.contextmanager
def _running(handler: type) -> Iterator[int]:
    """A loopback HTTP server with `handler` in a background thread; yields its port, shuts it down after."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve(body: bytes, send=None):
    """A loopback HTTP server answering every GET with `body` as video/mp4 (its full Content-Length announced);
    `send(handler, body)` writes the body in place of one write. Yields the video's URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send is None:
                self.wfile.write(body)
            else:
                send(self, body)
            self.close_connection = True

    with _running(Handler) as port:
        yield f"http://127.0.0.1:{port}/clips/clip.mp4"


@pytest.fixture
def url_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TPO_HF_VIDEO_CACHE", str(cache))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return cache


def _faststart_video(folder: Path) -> bytes:
    """A 16 s clip with its index at the front ("faststart", as web servers serve mp4): a prefix of it decodes."""
    import av

    plain, fast = folder / "plain.mp4", folder / "fast.mp4"
    colors = ("red", "blue", "green", "yellow")
    write_synthetic_video(plain, [Scene(4, color, "square", "right") for color in colors], fps=8)
    with av.open(str(plain)) as source, av.open(str(fast), "w", options={"movflags": "faststart"}) as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    return fast.read_bytes()


def _forget_url_versions(monkeypatch) -> None:
    """What one process remembers of servers' versions, forgotten: the next call is as a new run's."""
    from tpo_hf import video as video_module

    for name in ("_SERVER_VERSIONS", "_UNCHECKED", "_SERVER_LENGTHS"):
        monkeypatch.setattr(video_module, name, {}, raising=False)


def _frames_of(video) -> object:
    return load_video(str(video), num_frames=2)[0]


def test_a_download_cut_short_is_refused_and_not_cached(tmp_path, url_cache):
    """Probe F17: a connection dropped after 60% of the announced bytes left a shorter video that PyAV read (9 s of
    16) and that stayed cached after the network was fine again."""
    video = _faststart_video(tmp_path)
    cut = {"on": True}

    def send(handler, body):
        handler.wfile.write(body[: int(len(body) * 0.6)] if cut["on"] else body)

    with serve(video, send) as url:
        with pytest.raises(VideoLoadError) as refused:
            load_video(url, num_frames=8)
        message = str(refused.value)
        assert url in message and f"{int(len(video) * 0.6)} of the {len(video)} bytes" in message
        assert not url_cache.exists() or not any(url_cache.iterdir())  # neither the video nor a .part is kept
        cut["on"] = False
        frames, metadata = load_video(url, num_frames=8)
    assert metadata["duration"] == pytest.approx(16) and frames.shape[0] == 8
    assert [p.stat().st_size for p in url_cache.iterdir() if p.suffix != ".version"] == [len(video)]


def test_two_processes_downloading_one_url_at_once_both_get_the_video(video_dir, url_cache):
    """Probe F08: two ranks fetching the same URL shared one `.part` file; the second to finish failed with
    FileNotFoundError moving it. Each download now writes a file of its own (threads here: one pid for both)."""
    video = (video_dir / "red_blue.mp4").read_bytes()
    both_asked = threading.Barrier(2, timeout=30)

    def send(handler, body):
        both_asked.wait()  # both downloads are under way before either ends
        step = len(body) // 4 + 1
        for start in range(0, len(body), step):
            handler.wfile.write(body[start : start + step])
            handler.wfile.flush()
            time.sleep(0.05)

    results, errors = [], []

    def fetch():
        try:
            results.append(load_video(url, num_frames=4)[0])
        except Exception as error:  # noqa: BLE001 -- reported by the assertion below
            errors.append(error)

    with serve(video, send) as url:
        workers = [threading.Thread(target=fetch) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
    assert errors == [] and len(results) == 2 and (results[0] == results[1]).all()
    cached = sorted(url_cache.iterdir())
    assert [(p.suffix, p.read_bytes() == video) for p in cached if p.suffix != ".version"] == [(".mp4", True)]


@contextlib.contextmanager
def _read_only_folder(folder: Path):
    """`folder`, read-only: a read-only tmpfs where mounting is permitted, else chmod 0o555 (or /sys under root)."""
    folder.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(folder)], capture_output=True
    ).returncode:
        folder.chmod(0o555)
        try:
            yield Path("/sys") if os.access(folder, os.W_OK) else folder  # root writes anyway; sysfs refuses root
        finally:
            folder.chmod(0o755)
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_read_only_video_cache_is_named_with_its_setting(video_dir, tmp_path, url_cache, monkeypatch):
    """Probe F18: a read-only home (default cache) or TPO_HF_VIDEO_CACHE on a read-only folder gave a raw OSError
    traceback, and the cleanup's own unlink raised again."""
    from tpo_hf.commands import is_user_error

    video = (video_dir / "red_blue.mp4").read_bytes()
    with _read_only_folder(tmp_path / "home") as home, serve(video) as url:
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("TPO_HF_VIDEO_CACHE")
        default_cache = home / ".cache" / "tpo_hf" / "videos"
        with pytest.raises(VideoLoadError) as refused:
            load_video(url, num_frames=2)
        assert f"in {default_cache}" in str(refused.value) and "TPO_HF_VIDEO_CACHE" in str(refused.value)
        assert url in str(refused.value) and is_user_error(refused.value)

        monkeypatch.setenv("TPO_HF_VIDEO_CACHE", str(home))
        with pytest.raises(VideoLoadError) as refused:
            load_video(url, num_frames=2)
        assert f"in {home}:" in str(refused.value) and "TPO_HF_VIDEO_CACHE" in str(refused.value)
        assert "no space left" not in str(refused.value)  # read-only, not full (the tmpfs is small)
        assert "\n" not in str(refused.value)


@contextlib.contextmanager
def serve_versions(versions: dict[str, bytes]):
    """A loopback server of one video that can be replaced: `state["etag"]` names the body served (from `versions`),
    sent with its ETag to HEAD and GET. Yields (url, state); `state["requests"]` lists the methods asked."""
    state = {"etag": next(iter(versions)), "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _headers(self):
            body = versions[state["etag"]]
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{state["etag"]}"')
            self.end_headers()
            return body

        def do_HEAD(self):
            state["requests"].append("HEAD")
            self._headers()

        def do_GET(self):
            state["requests"].append("GET")
            self.wfile.write(self._headers())

    with _running(Handler) as port:
        yield f"http://127.0.0.1:{port}/clips/clip.mp4", state


def test_a_video_replaced_on_its_server_is_downloaded_again_and_keyed_anew(tmp_path, url_cache, monkeypatch, caplog):
    """Probe a/F24: a video URL whose file was replaced on its server kept serving the first cached download, with no
    note, and curation shards and eval answers keyed by the URL alone were reused for the new video. The server's
    version (ETag) is now asked once per run: a new one downloads the video again, with a warning, and is part of
    the video's identity in cache keys. Offline, the cached copy and the version recorded with it are used."""
    import logging

    from tpo_hf.video import video_file_identity

    red, blue = tmp_path / "red.mp4", tmp_path / "blue.mp4"
    write_synthetic_video(red, [Scene(2, "red", "square", "right")], fps=8)
    write_synthetic_video(blue, [Scene(2, "blue", "square", "right")], fps=8)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def new_run():  # what one process remembers of the server's versions
        _forget_url_versions(monkeypatch)

    with serve_versions({"v1": red.read_bytes(), "v2": blue.read_bytes()}) as (url, state):
        new_run()
        assert (_frames_of(url) == _frames_of(red)).all()
        assert video_file_identity(url) == f'{url}@etag "v1"'
        new_run()
        state["requests"].clear()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            _frames_of(url)
        assert state["requests"] == ["HEAD"] and "changed on its server" not in caplog.text  # unchanged: no download

        state["etag"] = "v2"  # the file replaced on the server
        new_run()
        assert video_file_identity(url) == f'{url}@etag "v2"'  # another video to every cache keyed by it
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert (_frames_of(url) == _frames_of(blue)).all()  # the new file, not the cached one
        assert f"Video {url} changed on its server" in caplog.text and '(etag "v1", now etag "v2")' in caplog.text

        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the cached copy, keyed by the version recorded with it
        new_run()
        state["requests"].clear()
        assert video_file_identity(url) == f'{url}@etag "v2"'
        assert (_frames_of(url) == _frames_of(blue)).all() and state["requests"] == []


@contextlib.contextmanager
def serve_without_head(versions: dict[str, bytes], honour_range: bool = True, validators: str = "etag"):
    """A loopback server of one replaceable video (`state["name"]` picks the body from `versions`) that refuses HEAD
    (405). `validators`: "etag" sends an ETag and the length, "length" the length only, "none" neither (the body
    ends with the connection; Content-Range `bytes 0-0/*`). A `Range: bytes=0-0` is answered 206 with Content-Range
    where `honour_range`, else ignored (200, whole body). Yields (url, state); `state["requests"]` lists "HEAD",
    "GET" and "GET 0-0"."""
    state = {"name": next(iter(versions)), "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def handle_one_request(self):
            with contextlib.suppress(ConnectionError):  # a ranged GET closed without reading the whole body
                super().handle_one_request()

        def do_HEAD(self):
            state["requests"].append("HEAD")
            self.send_response(405)
            self.send_header("Allow", "GET")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            asked = self.headers.get("Range")
            state["requests"].append(f"GET {asked.split('=')[1]}" if asked else "GET")
            body = versions[state["name"]]
            ranged = asked == "bytes=0-0" and honour_range
            self.send_response(206 if ranged else 200)
            self.send_header("Content-Type", "video/mp4")
            if validators == "etag":
                self.send_header("ETag", f'"{state["name"]}"')
            if validators != "none":
                self.send_header("Content-Length", "1" if ranged else str(len(body)))
            if ranged:
                self.send_header("Content-Range", f"bytes 0-0/{'*' if validators == 'none' else len(body)}")
            self.end_headers()
            self.wfile.write(body[:1] if ranged else body)
            self.close_connection = True

    with _running(Handler) as port:
        yield f"http://127.0.0.1:{port}/clips/clip.mp4", state


def _two_clips(folder: Path) -> tuple[Path, Path]:
    """Two videos of different content and length (the second a second longer)."""
    red, blue = folder / "red.mp4", folder / "blue.mp4"
    write_synthetic_video(red, [Scene(2, "red", "square", "right")], fps=8)
    write_synthetic_video(blue, [Scene(3, "blue", "circle", "left")], fps=8)
    assert red.stat().st_size != blue.stat().st_size
    return red, blue


@pytest.mark.parametrize(("honour_range", "validators"), [(True, "etag"), (False, "etag")], ids=["206", "200"])
def test_a_video_replaced_on_a_server_refusing_head_is_asked_with_a_ranged_get(
    tmp_path, url_cache, monkeypatch, caplog, honour_range, validators
):
    """Probe a/h1: a server that refuses HEAD (405) but sends an ETag on GET: the video replaced there was served
    from the first cached download, and the curation shards made from it were reused, with only an info note. The
    version is now asked with a GET of one byte (`Range: bytes=0-0`; ETag or Last-Modified), closed without reading
    a body the server sends whole. (A server naming only a length names no version, b/j18: see
    `test_a_video_replaced_by_another_of_the_same_size_on_a_length_only_server_is_noticed`.)"""
    import logging

    from tpo_hf.video import video_file_identity

    red, blue = _two_clips(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def new_run():  # what one process remembers of the server's versions
        _forget_url_versions(monkeypatch)

    def version(clip):
        return f'etag "{clip.stem}"'

    with serve_without_head({"red": red.read_bytes(), "blue": blue.read_bytes()}, honour_range, validators) as (
        url,
        state,
    ):
        new_run()
        assert video_file_identity(url) == f"{url}@{version(red)}"
        assert (_frames_of(url) == _frames_of(red)).all()
        new_run()
        state["requests"].clear()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == f"{url}@{version(red)}"
            _frames_of(url)
        assert state["requests"] == ["HEAD", "GET 0-0"] and caplog.text == ""  # unchanged: asked, not downloaded

        state["name"] = "blue"  # the file replaced on the server
        new_run()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == f"{url}@{version(blue)}"  # another video to every cache keyed by it
            assert (_frames_of(url) == _frames_of(blue)).all()  # the new file, not the cached one
        assert f"Video {url} changed on its server" in caplog.text and f"now {version(blue)})" in caplog.text

        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the cached copy, unasked and without a warning
        new_run()
        state["requests"].clear()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == f"{url}@{version(blue)}"
            assert (_frames_of(url) == _frames_of(blue)).all()
        assert state["requests"] == [] and caplog.text == ""


def test_a_cached_video_whose_version_cannot_be_asked_online_is_used_with_one_warning(
    tmp_path, url_cache, monkeypatch, caplog
):
    """Probe a/h1: online, a server that names no version (no ETag, Last-Modified or length, to HEAD or a ranged
    GET), or that cannot be reached, left the cached copy in use with an info note only. It is now one warning per
    URL and run naming the URL, the cached file and how to download it afresh; none for a copy downloaded in the
    run, none offline. (A copy this small is downloaded again each run, b/h38: here every copy counts as large.)"""
    import logging

    from tpo_hf import video as video_module
    from tpo_hf.video import video_file_identity

    red, blue = _two_clips(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(video_module, "UNVERSIONED_REFETCH_BYTES", 1)

    def new_run():
        _forget_url_versions(monkeypatch)
        caplog.clear()

    def unchecked_warnings():
        return [r.getMessage() for r in caplog.records if "used without knowing" in r.getMessage()]

    def run_twice(url):
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            for _ in range(2):
                video_file_identity(url)
                load_video(url, num_frames=2)

    with serve_without_head({"red": red.read_bytes(), "blue": blue.read_bytes()}, validators="none") as (url, state):
        new_run()
        run_twice(url)  # downloaded in this run: nothing to doubt
        assert unchecked_warnings() == []
        cached = next(p for p in url_cache.iterdir() if p.suffix == ".mp4")

        state["name"] = "blue"
        new_run()
        run_twice(url)
        [warning] = unchecked_warnings()
        assert f"Video {url}: no version of it could be had from its server (HEAD refused: HTTP Error 405" in warning
        assert f"the copy cached at {cached} is used" in warning and f"delete {cached}" in warning
        assert "TPO_HF_VIDEO_CACHE" in warning and "MiB the cached copy is not downloaded again each run" in warning

        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        new_run()
        run_twice(url)
        assert unchecked_warnings() == []
        monkeypatch.delenv("HF_HUB_OFFLINE")

    new_run()  # online, the server gone
    run_twice(url)
    [warning] = unchecked_warnings()
    assert f"Video {url}: no version of it could be had from its server (unreachable:" in warning
    assert f"delete {cached}" in warning


def test_a_video_url_with_an_upper_case_scheme_is_downloaded(video_dir, url_cache):
    """Probe b/g34: a row's `HTTP://host/clip.mp4` (the same scheme, RFC 3986; some exporters write it so) was taken
    for a relative local path: "Video file not found: <video_root>/HTTP://..."."""
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.tiny import build_tiny_model

    video = (video_dir / "red_blue.mp4").read_bytes()
    _, processor = build_tiny_model("qwen2_vl")
    processor = VideoPreferenceProcessor(processor, num_frames=2, video_root=str(video_dir))
    with serve(video) as url:
        shouted = "HTTP" + url[len("http") :]
        assert processor.resolve_video(shouted) == shouted
        frames, _ = processor.load_video(shouted)
    assert frames.shape[0] == 2 and (frames == load_video(str(video_dir / "red_blue.mp4"), num_frames=2)[0]).all()


@contextlib.contextmanager
def serve_at(videos: dict[str, bytes], validators: bool | str = True):
    """A loopback server of videos by their request path as sent (`videos`: path -> body; `state["videos"]` may be
    changed), answering HEAD and GET; other paths get 404. `validators` false: no ETag, Last-Modified or length to
    either, the body sent chunked (a dynamic server); "length": the length only (Content-Length, no ETag or
    Last-Modified). Yields (base URL, state); `state["requests"]` lists (method, path as sent)."""
    state = {"videos": videos, "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_one_request(self):
            with contextlib.suppress(ConnectionError):  # a ranged GET closed without reading the whole body
                super().handle_one_request()

        def _headers(self, method):
            state["requests"].append((method, self.path))
            body = state["videos"].get(self.path)
            self.send_response(200 if body is not None else 404)
            if body is None:
                self.send_header("Content-Length", "0")
            elif validators:
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(body)))
                if validators is True:
                    self.send_header("ETag", f'"{hash(body)}"')
            else:
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            return body

        def do_HEAD(self):
            self._headers("HEAD")

        def do_GET(self):
            body = self._headers("GET")
            if body is not None:
                self.wfile.write(body if validators else b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            self.close_connection = True

    with _running(Handler) as port:
        yield f"http://127.0.0.1:{port}", state


def test_a_video_url_with_spaces_and_accents_is_requested_percent_encoded(video_dir, url_cache, monkeypatch):
    """Probe b/h13: a dataset's `http://host/my video é.mp4` (as pasted from a browser's address bar) was skipped with
    "URL can't contain control characters". Its path and query are now percent-encoded for the requests (HEAD and
    download), escapes already there kept; the cache file and the video's identity stay those of the URL as written,
    so a copy cached before is still found."""
    import hashlib

    from tpo_hf import video as video_module
    from tpo_hf.video import video_file_identity

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(video_module, "_SERVER_VERSIONS", {})
    video = (video_dir / "red_blue.mp4").read_bytes()
    sent = "/clips/my%20video%20%C3%A9.mp4?sig=a%20b%2F&k=1"
    with serve_at({sent: video}) as (base, state):
        for url in (f"{base}/clips/my video é.mp4?sig=a b%2F&k=1", f"{base}{sent}"):  # pasted, and already escaped
            frames, _ = load_video(url, num_frames=2)
            assert frames.shape[0] == 2 and video_file_identity(url).startswith(f"{url}@etag ")
            assert (url_cache / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".mp4")).stat().st_size == len(video)
        assert {path for _, path in state["requests"]} == {sent}  # encoded once, never twice
        assert {method for method, _ in state["requests"]} == {"HEAD", "GET"}


def test_a_video_replaced_on_a_server_naming_no_version_is_downloaded_again_and_keyed_by_content(
    tmp_path, url_cache, monkeypatch, caplog
):
    """Probe b/h38: a server that names no version (chunked, no ETag, Last-Modified or length): the video replaced
    there was served from the cached old copy, and its identity (the bare URL) kept the curation shards and eval
    answers of the old video. Its identity is now the content hash of the cached copy, and a copy under
    `UNVERSIONED_REFETCH_BYTES` is downloaded again once per run (a replaced video warned about); a larger one is used
    as cached with a warning, and downloaded afresh once deleted, which changes its identity."""
    import hashlib
    import logging

    from tpo_hf import video as video_module
    from tpo_hf.video import video_file_identity

    red, blue = _two_clips(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def new_run():
        _forget_url_versions(monkeypatch)
        caplog.clear()

    def keyed_by(clip):
        return f"{url}@sha256 {hashlib.sha256(clip.read_bytes()).hexdigest()}"

    def warnings(text):
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    with serve_at({"/v.mp4": red.read_bytes()}, validators=False) as (base, state):
        url = f"{base}/v.mp4"
        new_run()
        assert video_file_identity(url) == keyed_by(red)
        assert (_frames_of(url) == _frames_of(red)).all()

        state["videos"] = {"/v.mp4": blue.read_bytes()}  # replaced on the server, which still names no version
        new_run()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == keyed_by(blue)  # curation shards and eval answers are redone
            assert (_frames_of(url) == _frames_of(blue)).all()
            video_file_identity(url)
        [changed] = warnings("changed on its server")  # once: downloaded again once per run
        assert f"Video {url} changed on its server" in changed and "its server names no version" in changed

        new_run()  # unchanged: downloaded again, nothing to say
        state["requests"].clear()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == keyed_by(blue)
            _frames_of(url)
        assert [m for m, _ in state["requests"]].count("GET") == 2 and caplog.text == ""  # the ranged GET, the copy

        monkeypatch.setattr(video_module, "UNVERSIONED_REFETCH_BYTES", 1)  # a copy too large to fetch each run
        state["videos"] = {"/v.mp4": red.read_bytes()}
        new_run()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == keyed_by(blue)
            assert (_frames_of(url) == _frames_of(blue)).all()
        cached = next(p for p in url_cache.iterdir() if p.suffix == ".mp4")
        [unchecked] = warnings("used without knowing")
        assert "not downloaded again each run" in unchecked and f"delete {cached}" in unchecked
        cached.unlink()  # as the warning says
        new_run()
        assert video_file_identity(url) == keyed_by(red)


def test_a_video_replaced_on_its_server_warns_that_pairs_made_from_it_no_longer_describe_it(
    tmp_path, url_cache, monkeypatch, caplog
):
    """Probe a/h34: a dataset curated from URL videos (its rows keep the URL), one replaced on its server, then
    trained on: the only word was "changed on its server ... downloading it again", and the pairs curated from the
    old clip were trained on the new one. The warning now says that pairs and answers made from the old video no
    longer describe it, naming the URL, and to curate it again with tpo-hf curate."""
    import logging

    from tpo_hf import video as video_module

    red, blue = _two_clips(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with serve_versions({"v1": red.read_bytes(), "v2": blue.read_bytes()}) as (url, state):
        monkeypatch.setattr(video_module, "_SERVER_VERSIONS", {})
        load_video(url, num_frames=2)
        state["etag"] = "v2"
        monkeypatch.setattr(video_module, "_SERVER_VERSIONS", {})
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            load_video(url, num_frames=2)
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"Video {url} changed on its server" in warning
    assert "Pairs, captions and answers made from the old video no longer describe it" in warning
    assert f"a dataset curated from {url} must be curated again before training on it (rerun tpo-hf curate" in warning


@contextlib.contextmanager
def serve_fresh_etags(body: bytes):
    """A loopback server of one video (`state["body"]`, may be replaced) that sends a new ETag with every answer to
    HEAD and GET, for the same bytes, as some dynamic and edge origins do. Yields (url, state); `state["requests"]`
    lists the methods asked."""
    import uuid

    state = {"body": body, "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _headers(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(state["body"])))
            self.send_header("ETag", f'"{uuid.uuid4().hex}"')
            self.end_headers()
            return state["body"]

        def do_HEAD(self):
            state["requests"].append("HEAD")
            self._headers()

        def do_GET(self):
            state["requests"].append("GET")
            self.wfile.write(self._headers())

    with _running(Handler) as port:
        yield f"http://127.0.0.1:{port}/v.mp4", state


def test_a_video_whose_server_sends_a_new_etag_for_the_same_bytes_keeps_its_identity(
    tmp_path, url_cache, monkeypatch, caplog
):
    """Probe b/i32: a server sending a new ETag on every answer for the same bytes made each identical curate rerun
    warn that the video "changed on its server" (pairs "no longer describe it"), and its identity (`url@etag ...`)
    changed with every run, so its curation shards were redone. The video is downloaded again and compared by its
    bytes: the same bytes are the same video, keeping the version recorded before (no warning, the same identity);
    other bytes are still a replaced video."""
    import logging

    from tpo_hf.video import video_file_identity

    red, blue = _two_clips(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def new_run():
        _forget_url_versions(monkeypatch)
        caplog.clear()

    with serve_fresh_etags(red.read_bytes()) as (url, state):
        new_run()
        first = video_file_identity(url)
        assert first.startswith(f'{url}@etag "') and (_frames_of(url) == _frames_of(red)).all()
        assert video_file_identity(url) == first

        for _ in range(2):  # identical reruns: the same video, the same identity, nothing to say
            new_run()
            state["requests"].clear()
            with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
                assert video_file_identity(url) == first
                assert (_frames_of(url) == _frames_of(red)).all()
                assert video_file_identity(url) == first
            assert caplog.text == "" and state["requests"] == ["HEAD", "GET"]  # asked, downloaded once to compare

        state["body"] = blue.read_bytes()  # replaced on the server
        new_run()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            replaced = video_file_identity(url)
            assert (_frames_of(url) == _frames_of(blue)).all()
            assert video_file_identity(url) == replaced != first
        [changed] = [r.getMessage() for r in caplog.records]
        assert f"Video {url} changed on its server" in changed and "no longer describe it" in changed
    assert len([p for p in url_cache.iterdir() if p.suffix == ".mp4"]) == 1  # no .part left


def test_a_dataset_naming_one_video_url_percent_encoded_and_raw_curates_it_once(tmp_path, caplog):
    """Probe b/i43: a dataset naming one URL video as `.../my%20video.mp4` and as `.../my video.mp4` (pasted from a
    browser) had it downloaded into two cache files and curated as two videos, unsaid. URL videos are now keyed by
    their normalised form (percent-encoded as requested, the scheme and host in lower case, escapes of letters and
    digits decoded): one video under its first row's spelling, with the rows of both, the other spelling named."""
    import json
    import logging

    from tpo_hf.curation import CurationConfig
    from tpo_hf.curation.inputs import list_videos

    rows = [
        {"video": "http://127.0.0.1:9/clips/my%20video.mp4", "question": "What comes first?"},
        {"video": "http://127.0.0.1:9/clips/b.mp4", "question": "What moves?"},
        {"video": "http://127.0.0.1:9/clips/my video.mp4", "question": "What comes last?"},
        {"video": "HTTP://127.0.0.1:9/clips/my%20vid%65o.mp4", "question": "Which colour?"},
        {"video": "http://127.0.0.1:9/clips/my%2520video.mp4", "question": "Another file."},
    ]
    data_file = tmp_path / "qa.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = CurationConfig(
        dataset_name=str(data_file), question_column="question", video_model="frames", output_dir=str(tmp_path / "o")
    )
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation.inputs"):
        items = {item.path: item for item in list_videos(config)}
    assert sorted(items) == [rows[1]["video"], rows[0]["video"], rows[4]["video"]]
    assert [q for q, _ in items[rows[0]["video"]].questions] == [
        "What comes first?",
        "What comes last?",
        "Which colour?",
    ]
    [warning] = [r.getMessage() for r in caplog.records]
    assert (
        "2 row(s)" in warning and f"row 2 ({rows[2]['video']}, the same URL as row 0's {rows[0]['video']})" in warning
    )
    assert f"row 3 ({rows[3]['video']}," in warning and "my%2520video" not in warning


def _padded_to(clip: Path, size: int) -> bytes:
    """The bytes of mp4 `clip` padded to `size` with a trailing `free` box (which readers skip): two different videos
    of one byte size."""
    body = clip.read_bytes()
    pad = size - len(body)
    assert pad >= 8
    return body + pad.to_bytes(4, "big") + b"free" + bytes(pad - 8)


def test_a_video_replaced_by_another_of_the_same_size_on_a_length_only_server_is_noticed(
    tmp_path, url_cache, monkeypatch, caplog
):
    """Probe b/j18: a server naming only a length (Content-Length, no ETag or Last-Modified), the video replaced there
    by another of the same byte size: the rerun kept the old copy and its identity (`length 1919`), so the new video
    was never curated, nothing said. A length alone is no version: the video is known by its content, downloaded
    again once per run while under `UNVERSIONED_REFETCH_BYTES` (a replaced one warned about); a larger copy is
    downloaded again only when the server names another length than its size, else used with a warning."""
    import hashlib
    import logging

    from tpo_hf import video as video_module
    from tpo_hf.video import video_file_identity

    red, blue = _two_clips(tmp_path)
    size = max(red.stat().st_size, blue.stat().st_size) + 64
    red_bytes, blue_bytes = _padded_to(red, size), _padded_to(blue, size)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def new_run():
        _forget_url_versions(monkeypatch)
        caplog.clear()

    def keyed_by(body):
        return f"{url}@sha256 {hashlib.sha256(body).hexdigest()}"

    def warnings(text):
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    with serve_at({"/a.mp4": red_bytes}, validators="length") as (base, state):
        url = f"{base}/a.mp4"
        new_run()
        assert video_file_identity(url) == keyed_by(red_bytes)
        assert (_frames_of(url) == _frames_of(red)).all()

        new_run()  # unchanged: downloaded again to compare, nothing to say
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == keyed_by(red_bytes)
        assert caplog.text == ""

        state["videos"] = {"/a.mp4": blue_bytes}  # another video of the very same length
        new_run()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == keyed_by(blue_bytes)  # curated and answered again
            assert (_frames_of(url) == _frames_of(blue)).all()
        [changed] = warnings("changed on its server")
        assert f"Video {url} changed on its server" in changed

        monkeypatch.setattr(video_module, "UNVERSIONED_REFETCH_BYTES", 1)  # every copy too large to fetch each run
        state["videos"] = {"/a.mp4": red_bytes}  # the same length: only a warning can be given
        new_run()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == keyed_by(blue_bytes)
        [unchecked] = warnings("used without knowing")
        assert f"only a length, {size} bytes, which another video of that size has too" in unchecked

        state["videos"] = {"/a.mp4": red.read_bytes()}  # another length: another video, however large
        new_run()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            assert video_file_identity(url) == keyed_by(red.read_bytes())
        [changed] = warnings("changed on its server")
        assert "a length other than the cached copy's" in changed and warnings("used without knowing") == []


def test_a_video_url_with_a_media_fragment_is_refused_in_curation_and_named_when_loaded(
    tmp_path, video_dir, url_cache, caplog
):
    """Probe b/j19: a row's `http://.../clip.mp4#t=0,1` (a media fragment asking for its first second) was curated
    as the whole clip, nothing said, and cached as `...mp4#t=0,1`. A fragment is never sent to the server and is not
    applied: curation refuses the row by number and URL; loading such a URL elsewhere (training, eval) warns once,
    naming it, and caches it under the video's own suffix."""
    import json
    import logging

    from tpo_hf.curation import CurationConfig
    from tpo_hf.curation.inputs import list_videos

    rows = [{"video": "http://127.0.0.1:9/clips/a.mp4"}, {"video": "http://127.0.0.1:9/clips/clip.mp4#t=0,1"}]
    data_file = tmp_path / "qa.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = CurationConfig(dataset_name=str(data_file), video_model="frames", output_dir=str(tmp_path / "o"))
    with pytest.raises(ValueError) as refused:
        list_videos(config)
    message = str(refused.value)
    assert message.startswith(f"Row 1 of {data_file}: video URL {rows[1]['video']} has a fragment (#t=0,1)")
    assert "not applied" in message and "whole video" in message and "\n" not in message

    with serve((video_dir / "red_blue.mp4").read_bytes()) as url:
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            for _ in range(2):
                frames, _ = load_video(url + "#t=0,1", num_frames=2)
    assert frames.shape[0] == 2
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"Video {url}#t=0,1: its fragment #t=0,1 is not applied" in warning and "whole video" in warning
    assert [p.suffix for p in url_cache.iterdir() if p.suffix != ".version"] == [".mp4"]


def test_two_captions_of_one_video_that_differ_by_an_article_of_meaning_are_a_caption_conflict(tmp_path, caplog):
    """Probe b/j38: `A few red squares appear.` and `Few red squares appear.` for one video were taken for one
    caption (the conflict check uses the pair filter's `same_answer`, which set leading articles aside), so the
    second row's caption was dropped unannounced. `same_answer` keeps an article that makes the meaning (b/j1): the
    rows are a caption conflict, named and counted; captions differing only in case or final punctuation are not."""
    import json
    import logging

    from tpo_hf.curation import CurationConfig
    from tpo_hf.curation.inputs import list_videos

    rows = [
        {"video": "vids/a.mp4", "cap": "A few red squares appear."},
        {"video": "vids/a.mp4", "cap": "Few red squares appear."},
        {"video": "vids/b.mp4", "cap": "A blue square."},
        {"video": "vids/b.mp4", "cap": "A green square."},
        {"video": "vids/c.mp4", "cap": "A red square."},
        {"video": "vids/c.mp4", "cap": "a red square"},
    ]
    data_file = tmp_path / "caps.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = CurationConfig(
        dataset_name=str(data_file), caption_column="cap", video_model="frames", output_dir=str(tmp_path / "o")
    )
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation.inputs"):
        items = {item.video_id: item for item in list_videos(config)}
    assert {video_id: item.rows_other_caption for video_id, item in items.items()} == {
        "vids/a.mp4": [1],
        "vids/b.mp4": [3],
        "vids/c.mp4": [],
    }
    assert items["vids/a.mp4"].caption == "A few red squares appear."
    [warning] = [r.getMessage() for r in caplog.records]
    assert "vids/a.mp4 (row 0 used, row(s) 1 ignored)" in warning and "vids/c.mp4" not in warning


def test_an_endpoint_replying_with_another_model_than_the_one_asked_is_named_once(
    tmp_path,
    online,  # noqa: F811
    fake_endpoint,  # noqa: F811
    caplog,
):
    """Probe b/j41: a gateway answering every request with another model (`"model": "m"` while `fakevlm` was asked)
    went unsaid, and the card credited fakevlm as the model that wrote both answers. One warning per role and
    endpoint names both models and the setting (the readiness check's reply included), and the backend records the
    model served (`served_model`); not refused, as gateways rename models: the names servers echo for the model
    asked (its org, a path, a date or revision added) are the same model."""
    import logging

    from tpo_hf.curation import CurationConfig
    from tpo_hf.curation.backends import GenerationRequest
    from tpo_hf.curation.openai_backend import OpenAIBackend

    def served(name):
        return lambda request: {**completion("A red square."), "model": name}

    config = CurationConfig(
        video_dir=str(tmp_path),
        video_model="fakevlm",
        video_backend="openai",
        video_base_url=fake_endpoint(served("m")),
        max_retries=0,
        output_dir=str(tmp_path / "out"),
    )
    backend = OpenAIBackend.from_config(config, "video")
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        backend.check_ready()
        assert backend.generate([GenerationRequest("Describe.")] * 3, 8) == ["A red square."] * 3
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"Endpoint {backend.base_url} was asked for model fakevlm, but its reply names model 'm'" in warning
    assert "`video_model`" in warning and "`video_base_url`" in warning
    assert backend.served_model == "m"

    for asked, name in [
        ("fakevlm", "fakevlm"),
        ("fakevlm", "Org/FakeVLM"),
        ("fakevlm", "fakevlm-2024-08-06"),
        ("org/fakevlm", "fakevlm"),
        ("/models/fakevlm/", "fakevlm"),
        ("fakevlm", "/models/fakevlm"),
        ("Org/FakeVLM", "org/fakevlm@main"),
    ]:
        caplog.clear()
        backend = OpenAIBackend(asked, base_url=fake_endpoint(served(name)), max_retries=0)
        with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
            backend.generate([GenerationRequest("Describe.")], 8)
        assert caplog.text == "" and backend.served_model is None, (asked, name)
