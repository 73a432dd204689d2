"""A local video's identity in cache keys (`video.video_file_identity`) is its size and content, not its modification
time: a corpus, benchmark or dataset folder copied with `cp -r` keeps its curation shards, eval answers and resumable
checkpoints; records an older tpo-hf wrote (size and modification time) still hold for the files untouched since. A
URL video replaced on its server since it was curated is refused at load."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasets import Dataset
from peft import LoraConfig
from test_reliability import CountingBackend, curation_config

from tests.conftest import preference_rows
from tpo_hf import TPOTrainer
from tpo_hf.curation import Backends, run_curation
from tpo_hf.data import load_preference_dataset
from tpo_hf.synthetic import Scene, write_synthetic_video
from tpo_hf.tiny import build_tiny_model, tiny_tpo_config
from tpo_hf.video import video_file_identity


def _copied(source: Path, target: Path) -> Path:
    """`source` copied as `cp -r` copies it: the same bytes, new modification times."""
    shutil.copytree(source, target, copy_function=shutil.copy)
    return target


def _curate(videos: Path, output: Path, **overrides) -> list[str]:
    """Curates `videos` into `output` (template questions, no judge); the videos it curated."""
    backend = CountingBackend()
    run_curation(curation_config(videos, output, **overrides), Backends(backend, None, None))
    return sorted(set(backend.calls))


def _as_recorded_before(identity: str, path: Path) -> str:
    """`identity` (a `shard_inputs` value: file identity, maybe `#<annotations hash>`) as a tpo-hf that keyed
    videos by size and modification time recorded it."""
    annotations = identity[len(identity.split("#", 1)[0]) :]
    return video_file_identity(path, earlier=True) + annotations


def test_a_corpus_copied_with_cp_r_reuses_every_curation_shard(video_dir, tmp_path, caplog):
    """Probe a/i5: the corpus copied to another disk with `cp -r` (same bytes, new modification times) and the
    finished curation rerun on the copy: every shard was recomputed ("its video file(s) changed since"), videos
    "named as there but other files". Videos are keyed by size and content: the shards are reused, nothing said.
    A curation recorded by size and modification time (an older tpo-hf) is reused too while the files are as
    then; a file changed since is curated again."""
    corpus, output = _copied(video_dir, tmp_path / "corpus"), tmp_path / "out"
    assert _curate(corpus, output) == ["green_yellow.mp4", "red_blue.mp4"]
    copy = _copied(corpus, tmp_path / "corpus2")
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        assert _curate(copy, output) == []
    assert "changed" not in caplog.text and "other files" not in caplog.text, caplog.text

    # the shards and the manifest as an older tpo-hf wrote them: size and modification time of each video
    work_dir = output / "_curation"
    for record in [work_dir / "manifest.json", *sorted((work_dir / "shards").glob("*.json"))]:
        content = json.loads(record.read_text())
        field = "videos" if record.name == "manifest.json" else "inputs"
        content[field] = {
            video: _as_recorded_before(identity, copy / video) for video, identity in content[field].items()
        }
        record.write_text(json.dumps(content))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        assert _curate(copy, output) == []
    assert "changed" not in caplog.text, caplog.text
    shutil.copyfile(copy / "green_yellow.mp4", copy / "red_blue.mp4")  # another clip under the same name
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        assert _curate(copy, output) == ["red_blue.mp4"]
    assert "1 video(s) changed in place since the last run (curated now): red_blue.mp4." in caplog.text


def test_eval_answers_are_reused_for_a_benchmark_video_folder_copied_with_cp_r(
    video_dir, tmp_path, caplog, monkeypatch
):
    """Probe a/i12: the benchmark's video folder copied with `cp -r` (same bytes) and the same eval run with the
    copy: every answer was generated again ("changed: video file"). Answers are keyed by the video's size and
    content; an answer cached by an older tpo-hf (size and modification time) is reused for the same file."""
    from tpo_hf import video as video_module
    from tpo_hf.eval.benchmarks import MCQSample
    from tpo_hf.eval.mcq import evaluate_mcq
    from tpo_hf.processing import VideoPreferenceProcessor

    model, processor = build_tiny_model("qwen2_vl")
    processor = VideoPreferenceProcessor(processor, num_frames=2)
    samples = [
        MCQSample(f"q{i}", name, "Which colour comes first?", ["red", "green"], "A", "Which colour comes first?")
        for i, name in enumerate(["red_blue.mp4", "green_yellow.mp4"])
    ]
    videos, cache = _copied(video_dir, tmp_path / "vids"), tmp_path / "cache.jsonl"

    def run(folder):
        return evaluate_mcq(
            model, processor, samples, video_dir=folder, max_new_tokens=2, cache_path=cache, progress=False
        )

    assert run(videos).computed == {"base": ["q0", "q1"]}
    copy = _copied(videos, tmp_path / "vids2")
    with caplog.at_level(logging.WARNING, logger="tpo_hf.eval"):
        rerun = run(copy)
    assert rerun.computed == {} and rerun.cached == {"base": ["q0", "q1"]}, caplog.text

    # answers cached by an older tpo-hf: each video by size and modification time
    lines = [json.loads(line) for line in cache.read_text().splitlines()]
    for line in lines:
        video = next(sample.video for sample in samples if sample.sample_id == line["sample_id"])
        line["inputs"]["video_file"] = video_file_identity(copy / video, earlier=True)
    cache.write_text("".join(json.dumps(line) + "\n" for line in lines))
    rerun = run(copy)
    assert rerun.computed == {} and rerun.cached == {"base": ["q0", "q1"]}
    # the same file touched since (another time, same bytes), in a new process: the older record cannot tell that
    # it holds the same bytes, so it is answered again
    (copy / "red_blue.mp4").write_bytes((copy / "red_blue.mp4").read_bytes())
    monkeypatch.setattr(video_module, "_EARLIER_IDENTITIES", {})
    assert run(copy).computed == {"base": ["q0"]}


def _resumable(videos: Path, tmp_path: Path, max_steps: int) -> TPOTrainer:
    """A trainer on the tiny rows over `videos`, saving a checkpoint every step into tmp_path/out."""
    model, processor = build_tiny_model("qwen2_vl")
    settings = dict(video_root=str(videos), learning_rate=1e-3, warmup_ratio=0.0, disable_tqdm=True)
    return TPOTrainer(
        model,
        args=tiny_tpo_config(tmp_path / "out", max_steps=max_steps, save_strategy="steps", save_steps=1, **settings),
        train_dataset=Dataset.from_list(preference_rows(repeat=1)),
        processing_class=processor,
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0),
    )


def test_a_resume_on_videos_restored_with_cp_r_goes_on(video_dir, tmp_path):
    """Probe a/i30: the training videos deleted and restored from a backup with `cp -r` (identical bytes): the
    resume was refused, "video files replaced or re-encoded under the same name ... (same size, modified ...)".
    Videos are recorded by size and content: the resume goes on. A checkpoint recorded by size and modification
    time (an older tpo-hf) resumes on the same files; a video replaced since is still refused, named truly."""
    from tpo_hf.checkpoints import CHECKPOINT_COMPLETE_FILE, CheckpointError

    videos = _copied(video_dir, tmp_path / "videos")
    _resumable(videos, tmp_path, 1).train()
    shutil.rmtree(videos)
    _copied(video_dir, videos)  # restored from the backup: new modification times
    resumed = _resumable(videos, tmp_path, 2)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 2

    completion = tmp_path / "out" / "checkpoint-2" / CHECKPOINT_COMPLETE_FILE
    record = json.loads(completion.read_text())
    assert all(":sha256:" in identity for identity in record["videos"].values())
    earlier = {video: video_file_identity(videos / video, earlier=True) for video in record["videos"]}
    completion.write_text(json.dumps({**record, "videos": earlier}))  # as an older tpo-hf recorded it
    resumed = _resumable(videos, tmp_path, 3)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 3

    clip = videos / "red_blue.mp4"
    data = bytearray(clip.read_bytes())
    data[-1] ^= 1  # the same size, other bytes
    clip.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"red_blue\.mp4 \(same size, other content \(sha256 \w+\.\.\. -> \w+"):
        _resumable(videos, tmp_path, 4).train(resume_from_checkpoint=True)
    completion = tmp_path / "out" / "checkpoint-3" / CHECKPOINT_COMPLETE_FILE
    record = json.loads(completion.read_text())
    completion.write_text(json.dumps({**record, "videos": earlier}))
    with pytest.raises(CheckpointError, match=r"red_blue\.mp4 \(same size, modified \d{4}-\d\d-\d\dT"):
        _resumable(videos, tmp_path, 4).train(resume_from_checkpoint=True)


def test_same_video_file_accepts_a_record_of_size_and_time_for_the_file_as_then(tmp_path):
    """An identity recorded by size and modification time (before content hashing) names the file that has them
    now; after a change it does not, nor does a copy with other times."""
    from tpo_hf.video import same_video_file

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"a clip")
    earlier, now = video_file_identity(clip, earlier=True), video_file_identity(clip)
    assert now.startswith("6:sha256:") and earlier.startswith("6:") and earlier != now
    assert same_video_file(now, now) and same_video_file(earlier, now)
    shutil.copy(clip, tmp_path / "copy.mp4")
    assert video_file_identity(tmp_path / "copy.mp4") == now  # the same bytes: the same video
    clip.write_bytes(b"b clip")
    assert not same_video_file(earlier, video_file_identity(clip)) and not same_video_file(
        now, video_file_identity(clip)
    )


@contextlib.contextmanager
def _serve_versions(versions: dict[str, bytes]) -> Iterator[tuple[str, dict]]:
    """A loopback server of one replaceable video: `state["etag"]` names the body served from `versions`, sent with
    its ETag to HEAD and GET. Yields (url, state)."""
    state = {"etag": next(iter(versions))}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _headers(self) -> bytes:
            body = versions[state["etag"]]
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{state["etag"]}"')
            self.end_headers()
            return body

        def do_HEAD(self):
            self._headers()

        def do_GET(self):
            self.wfile.write(self._headers())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/clips/clip2.mp4", state
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_video_replaced_on_its_server_since_curation_is_refused_at_load(tmp_path, monkeypatch):
    """Probe a/i17: curated from a URL, the video replaced on its server, then trained with another (empty)
    TPO_HF_VIDEO_CACHE: the new video was downloaded and trained on with the pairs of the old one, nothing said,
    though the curation manifest records the URL's version. Loading the folder asks the server and refuses naming
    the URL and both versions; offline with nothing cached, nothing can be asked and nothing is said."""
    from tpo_hf import video as video_module
    from tpo_hf.data import dataset_files

    red, blue = tmp_path / "red.mp4", tmp_path / "blue.mp4"
    write_synthetic_video(red, [Scene(2, "red", "square", "right")], fps=8)
    write_synthetic_video(blue, [Scene(2, "blue", "square", "right")], fps=8)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("TPO_HF_VIDEO_CACHE", str(tmp_path / "vcache"))

    def new_run():  # what one process remembers of the servers' versions
        monkeypatch.setattr(video_module, "_SERVER_VERSIONS", {})

    with _serve_versions({"v1": red.read_bytes(), "v2": blue.read_bytes()}) as (url, state):
        new_run()
        # the folder as `tpo-hf curate` leaves it for rows naming the URL: its manifest records the URL's version
        folder = tmp_path / "out"
        Dataset.from_list([{**row, "video": url} for row in preference_rows()]).save_to_disk(str(folder))
        (folder / "curation_report.json").write_text(json.dumps({"work_dir": str(folder / "_curation")}))
        (folder / "_curation").mkdir()
        manifest = {
            "source": {"output_dir": str(folder.resolve())},
            "videos": {"clip2.mp4": video_file_identity(url) + "#0123456789abcdef"},
            "dataset_files": dataset_files(folder),
        }
        assert manifest["videos"]["clip2.mp4"].startswith(f'{url}@etag "v1"')
        (folder / "_curation" / "manifest.json").write_text(json.dumps(manifest))
        new_run()
        assert len(load_preference_dataset(str(folder))) == 4  # unchanged on its server: loads

        state["etag"] = "v2"  # the video replaced on its server, and trained from another cache
        monkeypatch.setenv("TPO_HF_VIDEO_CACHE", str(tmp_path / "vcache_new"))
        new_run()
        with pytest.raises(
            ValueError,
            match=rf"^Dataset folder {folder} holds pairs curated from videos that changed since .*: {url} \(curated "
            r'at etag "v1", now etag "v2"\)\. .*rerun tpo-hf curate into it .*curates the changed videos again\.$',
        ):
            load_preference_dataset(str(folder))

    # offline, nothing cached: the version cannot be had, nothing new is said
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TPO_HF_VIDEO_CACHE", str(tmp_path / "vcache_empty"))
    new_run()
    assert len(load_preference_dataset(str(folder))) == 4


def test_reference_log_probs_cached_by_an_older_tpo_hf_are_reused_for_the_same_video_files(
    video_dir, tmp_path, caplog
):
    """Reference log-probs are keyed by each video's size and content now; those an older tpo-hf cached under its
    videos' sizes and modification times are reused while the files are as then, not computed again on upgrade."""
    import torch
    from datasets import load_from_disk
    from datasets.fingerprint import Hasher

    from tpo_hf.fingerprint import key_hash

    videos = _copied(video_dir, tmp_path / "videos")
    data = tmp_path / "data"
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(data))
    dataset = load_from_disk(str(data))  # on disk: TRL caches the log-probs beside it

    def reference():
        model, processor = build_tiny_model("qwen2_vl")
        settings = dict(video_root=str(videos), precompute_ref_log_probs=True, disable_tqdm=True)
        trainer = TPOTrainer(
            model,
            args=tiny_tpo_config(tmp_path / "out", max_steps=1, **settings),
            train_dataset=dataset,
            processing_class=processor,
            peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0),
        )
        return torch.tensor(trainer.train_dataset["ref_chosen_logps"])

    first = reference()
    (record,) = data.glob("cache-*.key.json")
    content = json.loads(record.read_text())
    key = content["key"]
    assert all(":sha256:" in identity for identity in key["videos"].values())
    # the cache file as an older tpo-hf named it: under the key with each video's size and modification time
    earlier = {**key, "videos": {video: video_file_identity(videos / video, earlier=True) for video in key["videos"]}}
    name = f"cache-{Hasher.hash((content['dataset'], key_hash(earlier)))}"
    cache_file = Path(str(record).removesuffix(".key.json") + ".arrow")
    cache_file.rename(data / f"{name}.arrow")
    record.unlink()
    (data / f"{name}.key.json").write_text(json.dumps({**content, "key": earlier}))
    with caplog.at_level(logging.WARNING):
        torch.testing.assert_close(reference(), first)
    assert not cache_file.exists() and "reference log-probs" not in caplog.text, caplog.text
