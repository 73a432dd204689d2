"""A curated dataset pushed with `tpo-hf curate --push_to_hub` (one commit, card, videos) loads with `load_dataset`
and trains with `TPOTrainer`, the videos coming from the repository, against the local Hub-compatible server."""

from __future__ import annotations

import json
import sys

from _hub_scripts import CURATED_REPO
from test_hub import SCRIPTS, hub, hub_env, run  # noqa: F401  (hub is the server fixture)


def test_curate_push_then_load_and_train(hub, video_dir, tiny_model_dirs, tmp_path):  # noqa: F811
    env = hub_env(hub, tmp_path / "hf_home")
    run(
        [
            "-m",
            "tpo_hf.curate",
            "--video_dir",
            str(video_dir),
            "--video_model",
            str(tiny_model_dirs("qwen2_5_vl")),
            "--question_backend",
            "template",
            "--use_judge",
            "false",
            "--num_frames",
            "4",
            "--sparse_num_frames",
            "2",
            "--caption_max_new_tokens",
            "4",
            "--answer_max_new_tokens",
            "8",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--output_dir",
            str(tmp_path / "curated"),
            "--push_to_hub",
            CURATED_REPO,
            "--upload_videos",
            "true",
        ],
        env,
    )
    # data, card and videos in one commit (the repo's creation commit aside)
    commits = hub.commits(CURATED_REPO, repo_type="dataset")
    files = hub.files(CURATED_REPO, repo_type="dataset")
    assert len([c for c in commits if c.get("title", "") != "initial commit"]) == 1, commits
    assert "README.md" in files and any(name.startswith("videos/") for name in files)
    assert any(name.endswith(".parquet") for name in files)

    run([str(SCRIPTS), "train_from_curated_repo", str(tmp_path)], hub_env(hub, tmp_path / "hf_home_train"))
    trained = json.loads((tmp_path / "curated_train.json").read_text())
    assert trained["rows"] > 0 and "granularity" in trained["columns"]
    assert trained["video_root"] and trained["video_root"] != str(tmp_path / "curated")
    print(trained, file=sys.stderr)
