"""A curated dataset pushed with `tpo-hf curate --push_to_hub` (one commit, card, videos) loads with `load_dataset`
and trains with `TPOTrainer`, the videos coming from the repository, against the local Hub-compatible server."""

from __future__ import annotations

import json
import sys

import pytest
from _hub_scripts import CURATED_REPO
from test_hub import SCRIPTS, curate_by_frames, hub, hub_env, on_hub, run  # noqa: F401  (hub, on_hub: the server fixtures)


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


def test_a_model_repo_or_a_gated_dataset_as_dataset_name_is_one_line(hub, tmp_path):  # noqa: F811
    """Probe 6: `--dataset_name` naming a model repo said the dataset "doesn't exist" (a repo of that name does); a
    gated dataset whose videos this token may not read ended in huggingface_hub's GatedRepoError traceback."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    hub.store.create("model", "tester/run")
    hub.store.commit("model", "tester/run", "model", {"config.json": b"{}"}, [])
    table = io.BytesIO()
    pq.write_table(
        pa.Table.from_pylist([{"prompt": "q", "chosen": "a", "rejected": "b", "video": "videos/a.mp4"}]), table
    )
    hub.store.create("dataset", "tester/gated-pairs")
    files = {"data/train-00000-of-00001.parquet": table.getvalue(), "videos/a.mp4": b"\0" * 16}
    hub.store.commit("dataset", "tester/gated-pairs", "data", files, [])
    script = (
        "import sys\n"
        "from tpo_hf.data import default_video_root, load_preference_dataset\n"
        "try:\n"
        "    load_preference_dataset('tester/run')\n"
        "except ValueError as error:\n"
        "    print('MODEL:', error)\n"
        "try:\n"
        "    default_video_root('tester/gated-pairs')\n"
        "except ValueError as error:\n"
        "    print('GATED:', error)\n"
    )
    hub.gated.add("tester/gated-pairs")
    out = run(["-c", script], hub_env(hub, tmp_path / "home")).stdout
    assert "MODEL: tester/run is a model repo on the Hub, not a dataset" in out, out
    assert "GATED: Dataset tester/gated-pairs is a gated Hub repo" in out and "/datasets/tester/gated-pairs" in out, (
        out
    )


def test_dataset_folder_with_disagreeing_shards_or_a_saved_arrow_file_loads_or_is_named(tmp_path):
    """Probe 6: a folder whose second parquet shard has an extra column failed with `datasets`' "An error occurred
    while generating the dataset" traceback; a `save_to_disk` Arrow file beside videos (without state.json) was
    ignored and the folder read as videos only ("lacks column(s)")."""
    import pandas as pd
    import pytest
    from datasets import Dataset

    from tpo_hf.data import load_preference_dataset

    row = {"prompt": "q", "chosen": "a", "rejected": "b", "video": "a.mp4"}
    shards = tmp_path / "shards"
    (shards / "data").mkdir(parents=True)
    pd.DataFrame([row]).to_parquet(shards / "data" / "train-00000-of-00002.parquet")
    pd.DataFrame([dict(row, notes="re-checked")]).to_parquet(shards / "data" / "train-00001-of-00002.parquet")
    with pytest.raises(ValueError, match=rf"Cannot load dataset folder {shards}: its data files do not agree .*notes"):
        load_preference_dataset(str(shards))

    saved = tmp_path / "saved"
    Dataset.from_list([row, dict(row, prompt="q2")]).save_to_disk(saved)
    arrow = next(saved.glob("*.arrow"))
    folder = tmp_path / "arrow_and_videos"
    folder.mkdir()
    arrow.rename(folder / arrow.name)
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (folder / name).write_bytes(b"")
    dataset = load_preference_dataset(str(folder))
    assert list(dataset["prompt"]) == ["q", "q2"] and dataset[0]["video"] == "a.mp4"  # relative to the folder


def _curation_config(video_dir, tiny_model_dirs, output_dir, **push):
    from tpo_hf.curation.config import CurationConfig

    return CurationConfig(
        video_dir=str(video_dir),
        video_model=str(tiny_model_dirs("qwen2_5_vl")),
        question_backend="template",
        use_judge=False,
        num_frames=4,
        sparse_num_frames=2,
        caption_max_new_tokens=4,
        answer_max_new_tokens=8,
        device="cpu",
        dtype="float32",
        progress=False,
        output_dir=str(output_dir),
        **push,
    )


def test_curate_push_without_write_access_is_refused_before_curating(on_hub, video_dir, tiny_model_dirs, tmp_path):  # noqa: F811
    """Probe a/G4: `curate --push_to_hub REPO` with a token that only reads REPO (or `--hub_private true` onto an
    existing public repo) was refused only at the push, after the whole curation: both are refused before any video
    is curated, naming the command to rerun (its folder quoted for the shell)."""
    import pytest

    from tpo_hf.commands.curate import main
    from tpo_hf.hub.push import PushError

    on_hub.store.create("dataset", "tester/read-only-pairs")
    on_hub.read_only.add("tester/read-only-pairs")
    output_dir = tmp_path / "my pairs"
    config = _curation_config(video_dir, tiny_model_dirs, output_dir, push_to_hub="tester/read-only-pairs")
    with pytest.raises(PushError) as refused:
        main(config)
    message = str(refused.value)
    assert "HTTP 403" in message and "Nothing was curated or pushed by this run" in message, message
    assert f"--output_dir '{output_dir}' --push_to_hub tester/read-only-pairs`" in message, message
    assert not (output_dir / "_curation").exists() and not (output_dir / "data").exists()

    on_hub.store.create("dataset", "tester/public-pairs")
    config = _curation_config(
        video_dir, tiny_model_dirs, output_dir, push_to_hub="tester/public-pairs", hub_private=True
    )
    with pytest.raises(PushError, match="tester/public-pairs already exists .* and is public: --hub_private true"):
        main(config)
    assert not (output_dir / "_curation").exists() and not (output_dir / "data").exists()
    assert not [path for method, path in on_hub.requests if "/commit/" in path and "-pairs/" in path]


def test_curate_push_to_an_invalid_repo_id_is_refused_before_curating(video_dir, tiny_model_dirs, tmp_path):
    """Probe b/g30: `curate --push_to_hub "my tpo data"` ran the whole curation, then failed blaming the Hub's
    reachability with an unquoted rerun line: the id is refused first, naming `--push_to_hub`, nothing curated."""
    import pytest

    from tpo_hf.commands.curate import main
    from tpo_hf.hub.push import PushError

    config = _curation_config(video_dir, tiny_model_dirs, tmp_path / "out", push_to_hub="my tpo data")
    with pytest.raises(PushError, match=r"^--push_to_hub 'my tpo data' is not a valid Hub repo id \("):
        main(config)
    assert not (tmp_path / "out").exists()


# huggingface_hub 2.x hands raw bytes to httpx's deprecated `data=` when uploading LFS files (not our call)
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_a_dataset_push_into_a_repo_holding_another_dataset_deletes_all_its_splits(
    on_hub,  # noqa: F811
    video_dir,
    tmp_path,
    caplog,
):
    """Probe a/i11: `curate --push_to_hub tester/pairs-mix` into a repo holding an older, unrelated dataset (two train
    shards and a test split, no tpo-hf card) deleted only its train shards: the repo then served the old test split
    (50 unrelated rows) beside the new train split, and the pushed card declared it. A repo whose train split no
    tpo-hf push wrote loses every split of that dataset in the same commit, named, and the card declares train only;
    a split in a repo without a train split (one prepared for this dataset) is kept and listed, as beside an earlier
    curation's push."""
    import io
    import logging

    from datasets import Dataset

    from tpo_hf.hub.push import push_dataset

    curated, config = curate_by_frames(video_dir, tmp_path / "curated")
    old = io.BytesIO()
    Dataset.from_dict(
        {"prompt": [f"OLD ROW {i}" for i in range(50)], "chosen": ["x"] * 50, "rejected": ["y"] * 50}
    ).to_parquet(old)
    older = [
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
        "data/test-00000-of-00001.parquet",
    ]
    for repo, names in (("tester/pairs-mix", older), ("tester/pairs-and-held-out", older[2:])):
        on_hub.store.create("dataset", repo)
        on_hub.store.commit("dataset", repo, "an older dataset", {name: old.getvalue() for name in names}, [])

    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        push_dataset(curated.output_dir, "tester/pairs-mix", curated.dataset, curated.report, config)
    files = on_hub.files("tester/pairs-mix", "dataset")
    assert sorted(files) == ["README.md", "data/train-00000-of-00001.parquet"], sorted(files)
    card = files["README.md"].decode()
    assert "- split: train\n    path: data/train-*" in card and "split: test" not in card, card
    assert "the split(s) test of the dataset it held before" in caplog.text, caplog.text
    assert "data/test-00000-of-00001.parquet" in caplog.text and "data/train-00001-of-00002.parquet" in caplog.text

    push_dataset(curated.output_dir, "tester/pairs-and-held-out", curated.dataset, curated.report, config)
    files = on_hub.files("tester/pairs-and-held-out", "dataset")
    assert "data/test-00000-of-00001.parquet" in files, sorted(files)
    assert "- split: test\n    path: data/test-*" in files["README.md"].decode()
