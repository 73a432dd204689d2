"""How `load_preference_dataset` reads local data files and folders: what `datasets` would read wrongly or answer with
a traceback is loaded as meant or refused in one line naming the file, split or setting."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import preference_rows
from datasets import Dataset, Value

from tpo_hf.data import load_preference_dataset


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_folder_whose_split_spans_subfolders_is_refused(tmp_path, caplog):
    """Probe b/h20: a folder holding `train.jsonl` and an old copy `backup/train.jsonl` was read as one split of both
    (8 rows trained on, nothing said). Refused naming both files and how to pick one; with a README config that
    declares the layout it loads what the config names, and the files each split reads are logged."""
    folder = tmp_path / "nested"
    write_jsonl(folder / "train.jsonl", preference_rows())
    write_jsonl(folder / "backup" / "train.jsonl", preference_rows(repeat=3))
    with pytest.raises(ValueError, match=r"its split 'train' from data files in 2 folders \(backup/train.jsonl, "):
        load_preference_dataset(str(folder))
    with pytest.raises(ValueError, match=rf"--dataset_name {folder}/train.jsonl\), or declare .* README.md config"):
        load_preference_dataset(str(folder))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files: train.jsonl\n---\n")
    with caplog.at_level(logging.INFO, logger="tpo_hf.data"):
        assert len(load_preference_dataset(str(folder))) == 4
    assert f"{folder}: split train reads train.jsonl" in caplog.text
    # an old copy beside it matches the same pattern: read, and named in a warning
    flat = tmp_path / "flat"
    write_jsonl(flat / "train.jsonl", preference_rows())
    write_jsonl(flat / "train-old.jsonl", preference_rows(repeat=3))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.data"):
        assert len(load_preference_dataset(str(flat))) == 10
    assert "split train reads the 2 data files train-old.jsonl, train.jsonl as one split" in caplog.text
    # the shards of one dataset (as `push_to_hub` names them) are one split: nothing to warn about
    sharded = tmp_path / "sharded"
    (sharded / "data").mkdir(parents=True)
    for index in range(2):
        write_jsonl(sharded / "data" / f"train-{index:05d}-of-00002.jsonl", preference_rows())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.data"):
        assert len(load_preference_dataset(str(sharded))) == 2 * len(preference_rows())
    assert "as one split" not in caplog.text
    # a stale set of another count beside them (a download that kept removed files) is named
    write_jsonl(sharded / "data" / "train-00000-of-00001.jsonl", preference_rows())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.data"):
        load_preference_dataset(str(sharded))
    assert "reads the 3 data files" in caplog.text and "train-00000-of-00001.jsonl" in caplog.text


def test_a_held_out_slice_that_shares_training_rows_is_refused(tiny_model_dirs, tmp_path):
    """Probe b/h45: `dataset_train_split 'train[:4]'` with `dataset_test_split 'train[2:6]'` of one file trained
    and evaluated on a "held-out" set half made of training rows, with no word. Refused before anything loads,
    naming both settings and the rows they share; slices that do not overlap pass."""
    from tpo_hf.commands.train import cli_main

    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(repeat=4))  # 8 rows
    args = ["--model_name_or_path", str(tiny_model_dirs("qwen2_vl")), "--dataset_name", str(data), "--max_steps", "1"]
    args += ["--output_dir", str(tmp_path / "run"), "--use_cpu", "true", "--bf16", "false", "--report_to", "none"]
    args += ["--use_peft", "true", "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "no"]
    shared = (
        r"^tpo-hf train: dataset_train_split 'train\[:4\]' and dataset_test_split 'train\[2:6\]' both read rows 2-3 "
        rf"of split 'train' of {data} \(8 rows\): the evaluation would score rows the model trains on as held out"
    )
    with pytest.raises(SystemExit, match=shared):
        cli_main([*args, "--dataset_train_split", "train[:4]", "--dataset_test_split", "train[2:6]"])

    from tpo_hf.data import refuse_overlapping_splits

    with pytest.raises(ValueError, match=r"both read row 6 of split 'train'"):  # percent slices, rounded as datasets
        refuse_overlapping_splits(str(data), None, "train[:90%]", "train[80%:]")
    with pytest.raises(ValueError, match=r"both read rows 0-7 of split 'train'"):
        refuse_overlapping_splits(str(data), None, "train", "train")
    refuse_overlapping_splits(str(data), None, "train[:6]", "train[6:]")
    refuse_overlapping_splits(str(data), None, "train[:75%]", "train[-2:]")


def test_a_slice_past_the_end_of_a_saved_folder_is_named(tmp_path):
    """Probe b/h22: `train[10:20]` of a `save_to_disk` folder of 8 rows was `datasets`' IndexError traceback. Refused
    naming the folder, the split and its rows; a slice that runs past the end keeps the rows there, as a data file's."""
    folder = tmp_path / "saved"
    Dataset.from_list(preference_rows(repeat=4)).save_to_disk(str(folder))
    message = rf"^Split 'train\[10:20\]' of dataset folder {folder} selects no rows: its split 'train' holds 8 rows"
    with pytest.raises(ValueError, match=message):
        load_preference_dataset(str(folder), split="train[10:20]")
    with pytest.raises(ValueError, match="selects no rows"):
        load_preference_dataset(str(folder), split="train[:2]+train[8:]")
    assert len(load_preference_dataset(str(folder), split="train[5:20]")) == 3


def test_csv_answers_that_are_numbers_stay_text(tmp_path):
    """Probe b/h12: a CSV whose answers are numbers (a counting question: chosen `0`, rejected `10`) was refused as
    "got int 0" (pandas typed the column), and `05` would have become 5. Text columns are read as written; an empty
    cell is still missing and a number column (segment_start) still a number."""
    data = tmp_path / "num.csv"
    data.write_text(
        "prompt,chosen,rejected,video,segment_start\n"
        '"How many squares?",0,10,red_blue.mp4,1.5\n'
        '"How many circles?",05,,green_yellow.mp4,\n'
    )
    dataset = load_preference_dataset(str(data))
    assert list(dataset["chosen"]) == ["0", "05"] and list(dataset["rejected"]) == ["10", None]
    assert list(dataset["segment_start"])[0] == 1.5 and dataset.features["segment_start"] == Value("float64")


def test_csv_answers_that_pandas_reads_as_missing_stay_text(tmp_path):
    """Probe b/j23: a CSV whose answer is the word `None` (a counting question), `NA` or `null` was refused after the
    model load as "no value for field(s) ['chosen']": pandas reads those words as missing. A text column keeps the
    text written (only an empty cell is missing), in a file and in a folder of CSV files; a number column
    (segment_start) and a column outside the schema still read `NA` as missing."""
    text = (
        "prompt,chosen,rejected,video,segment_start,score\n"
        '"How many red squares?",None,Two,red_blue.mp4,NA,NA\n'
        '"Which country?",NA,null,green_yellow.mp4,1.5,3\n'
        '"Is it there?",,N/A,red_blue.mp4,,\n'
    )
    data = tmp_path / "plain.csv"
    data.write_text(text)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "train.csv").write_text(text)
    for source in (data, tmp_path / "folder"):
        dataset = load_preference_dataset(str(source))
        assert list(dataset["chosen"]) == ["None", "NA", None] and list(dataset["rejected"]) == ["Two", "null", "N/A"]
        assert list(dataset["segment_start"]) == [None, 1.5, None] and list(dataset["score"]) == [None, 3, None]


def test_a_data_file_that_is_not_utf8_is_named_with_its_encoding(tmp_path):
    """Probes b/j24, b/j25: a JSONL written by PowerShell's `>` (UTF-16 with a byte-order mark) ended in a
    UnicodeDecodeError traceback, and a CSV saved by Excel as "CSV (Comma delimited)" (Windows-1252) in "Cannot read
    dataset file ...: DatasetGenerationError: An error occurred while generating the dataset". Both are refused in
    one line naming the file, its encoding (or the line of its first byte that is no UTF-8) and the fix."""
    rows = preference_rows()
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-16")
    with pytest.raises(
        ValueError, match=rf"^Cannot read dataset file {utf16}: it is UTF-16 text \(byte-order mark\), "
    ):
        load_preference_dataset(str(utf16))
    cp1252 = tmp_path / "cp1252.csv"
    cp1252.write_text('prompt,chosen,rejected,video\nWhat?,red,blue,a.mp4\n"Café colour?",crème,red,a.mp4\n', "cp1252")
    message = (
        rf"^Cannot read dataset file {cp1252}: line 3 is not UTF-8 text \(byte 0xe9, 'é' in Windows-1252\): save it as "
        r'UTF-8 \(in Excel: Save As "CSV UTF-8"\)$'
    )
    with pytest.raises(ValueError, match=message):
        load_preference_dataset(str(cp1252))


def write_hub_layout(folder: Path, configs: str) -> Path:
    (folder / "README.md").parent.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(f"---\nconfigs:\n{configs}---\n# pairs\n")
    return folder


def test_a_column_empty_in_one_data_file_loads(tmp_path):
    """Probe b/h32: a Hub-layout folder whose `train.jsonl` has `segment_start` null on every row (comprehensive
    pairs) and `test.jsonl` numbers was refused as "data files do not agree (Couldn't cast array of type double to
    null)", naming neither column nor file. It loads (the column typed as the other file, or the curated schema,
    types it); files that truly disagree are named with the column."""
    configs = "- config_name: b\n  data_files:\n  - split: train\n    path: b/train.jsonl\n"
    configs += "  - split: test\n    path: b/test.jsonl\n"
    folder = write_hub_layout(tmp_path / "hubl", configs)
    comprehensive = [row for row in preference_rows() if row["segment_start"] is None]
    localized = [row for row in preference_rows() if row["segment_start"] is not None]
    # an empty list on every row is typed as a list of nulls, as an all-null column is
    write_jsonl(folder / "b" / "train.jsonl", [{**row, "chosen_frame_indices": []} for row in comprehensive])
    write_jsonl(folder / "b" / "test.jsonl", [{**row, "chosen_frame_indices": [0, 2]} for row in localized])
    for split, starts in (("train", [None, None]), ("test", [0.0, 0.0])):
        dataset = load_preference_dataset(str(folder), "b", split)
        assert dataset["segment_start"] == starts and dataset.features["segment_start"] == Value("float64")
        assert dataset.features["chosen_frame_indices"].feature == Value("int64")

    folder = write_hub_layout(tmp_path / "clash", configs)
    write_jsonl(folder / "b" / "train.jsonl", localized)
    write_jsonl(folder / "b" / "test.jsonl", [{**row, "segment_end": "3 s"} for row in localized])
    clash = r"column 'segment_end' is Value\('float64'\) in b/train.jsonl; Value\('string'\) in b/test.jsonl"
    with pytest.raises(
        ValueError, match=rf"^Cannot load dataset folder {folder}: its data files do not agree \({clash}"
    ):
        load_preference_dataset(str(folder), "b")


def test_a_readme_config_matching_no_file_is_named(tmp_path):
    """Probe b/h33: a README config whose `data_files` glob matches no file stopped with a bare StopIteration
    traceback. Refused in one line naming the config, the pattern and the folder."""
    folder = write_hub_layout(
        tmp_path / "hubl", '- config_name: a\n  data_files: "a/*.jsonl"\n- config_name: c\n  data_files: "c/*.jsonl"\n'
    )
    write_jsonl(folder / "a" / "train.jsonl", preference_rows())
    (folder / "c").mkdir()
    message = (
        rf"^Config 'c' of dataset folder {folder} matches no file for its split 'train' \(c/\*.jsonl, in {folder}"
    )
    with pytest.raises(ValueError, match=message):
        load_preference_dataset(str(folder), "c")
    assert len(load_preference_dataset(str(folder), "a")) == 4


def _curated_by_hand(folder: Path, work_dir: Path, clip: Path) -> None:
    """A folder as `tpo-hf curate --copy_videos false --work_dir work_dir` leaves it: rows naming `clip` by its
    absolute path, the report naming the work_dir, whose manifest records the clip, the folder and its data files."""
    from tpo_hf.curation.storage import dataset_files
    from tpo_hf.video import video_file_identity

    rows = [{**row, "video": str(clip)} for row in preference_rows()]
    Dataset.from_list(rows).save_to_disk(str(folder))
    (folder / "curation_report.json").write_text(json.dumps({"work_dir": str(work_dir)}))
    work_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "source": {"output_dir": str(folder.resolve())},
        "videos": {clip.name: video_file_identity(str(clip))},
        "dataset_files": dataset_files(folder),
    }
    (work_dir / "manifest.json").write_text(json.dumps(manifest))


def test_a_moved_curated_folder_still_refuses_videos_changed_since(tmp_path):
    """Probe a/i1: curated with `--copy_videos false --work_dir W`, the folder moved (`mv out moved`), then a corpus
    clip replaced under the same name: loading `moved` trained on captions of the old clip with no word, since W's
    manifest names the old path. A manifest elsewhere serves the folder when it names it or records its data files;
    one recording another folder's data files does not."""
    clip = tmp_path / "corpus" / "red_blue.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"old clip")
    _curated_by_hand(tmp_path / "out", tmp_path / "W", clip)
    (tmp_path / "out").rename(tmp_path / "moved")
    assert len(load_preference_dataset(str(tmp_path / "moved"))) == 4  # the clip unchanged: loads
    clip.write_bytes(b"another clip, longer")
    with pytest.raises(ValueError, match=rf"^Dataset folder {tmp_path / 'moved'} holds pairs curated from videos"):
        load_preference_dataset(str(tmp_path / "moved"))

    # another folder's record in a shared work_dir (other rows, so other data files) does not answer for this one
    other = tmp_path / "other"
    Dataset.from_list(preference_rows(repeat=3)).save_to_disk(str(other))
    (other / "curation_report.json").write_text(json.dumps({"work_dir": str(tmp_path / "W")}))
    assert len(load_preference_dataset(str(other))) == 6


def test_a_rerun_into_a_copied_curated_folder_refuses_its_edit(tmp_path):
    """Probe a/i9: `cp -r cur out` (its `_curation` copied with it), the copy filtered by hand, then the curate
    command rerun into the copy with `--push_to_hub`: the edit was rebuilt over and pushed, since the copied manifest
    names `cur`. A manifest in `<output_dir>/_curation` is that folder's record, whatever path it names."""
    import shutil

    from tpo_hf.curation.storage import check_dataset_unedited

    cur = tmp_path / "cur"
    _curated_by_hand(cur, cur / "_curation", tmp_path / "clip.mp4")
    shutil.copytree(cur, tmp_path / "out")
    out = tmp_path / "out"
    assert check_dataset_unedited(out / "_curation", out) is not None  # the copy as curated: the record, kept
    Dataset.from_list(preference_rows()[:1]).save_to_disk(str(tmp_path / "edited"))
    shutil.copy(tmp_path / "edited" / "data-00000-of-00001.arrow", out / "data-00000-of-00001.arrow")
    with pytest.raises(ValueError, match=rf"^output_dir {out} holds a dataset that is not the one the last curation"):
        check_dataset_unedited(out / "_curation", out, "tester/pairs-edit")
    # a work_dir outside the folder whose manifest names another output_dir still serves that one only
    assert check_dataset_unedited(cur / "_curation", out) is None


def test_a_saved_single_dataset_read_as_train_and_as_its_saved_split_is_refused(tmp_path):
    """Probe b/i11: a `save_to_disk` folder of one Dataset saved as split `test`, trained with `train` and
    evaluated with `test`: both names read the same rows, but the overlap check compared names, so the training rows
    were scored as held out. Every name of a saved single Dataset is one split to the check."""
    from tpo_hf.data import refuse_overlapping_splits

    folder = tmp_path / "saved"
    Dataset.from_list(preference_rows(repeat=4), split="test").save_to_disk(str(folder))  # 8 rows
    with pytest.raises(ValueError, match=r"^dataset_train_split 'train' and dataset_test_split 'test' both read rows"):
        refuse_overlapping_splits(str(folder), None, "train", "test")
    with pytest.raises(ValueError, match=r"both read rows 4-5 of split 'train'"):
        refuse_overlapping_splits(str(folder), None, "test[:6]", "train[4:]")
    refuse_overlapping_splits(str(folder), None, "train[:6]", "test[6:]")


def test_a_saved_dataset_of_several_splits_answers_none_of_them_alone(tmp_path):
    """Probe b/j30: a `save_to_disk` folder of one Dataset loaded as split `train+test` (6 train + 2 test rows),
    read with split `test` for held-out rows, answered all 8 rows, training rows included, with no word. Its rows of
    both splits are one table: only `train` reads it, `test` is refused naming the split it was saved from; a folder
    saved from a slice of one split (`test[:1]`) still answers that split's name."""
    from tpo_hf.data import refuse_overlapping_splits

    folder = tmp_path / "both"
    Dataset.from_list(preference_rows(repeat=4), split="train+test").save_to_disk(str(folder))  # 8 rows
    assert len(load_preference_dataset(str(folder))) == 8
    message = (
        rf"^Dataset folder {folder} holds one split \(a single saved `Dataset` loaded as split 'train\+test': the rows "
        r"of those splits in one table\), read as 'train', not 'test': set the split setting to it"
    )
    with pytest.raises(ValueError, match=message):
        load_preference_dataset(str(folder), split="test")
    with pytest.raises(ValueError, match="not 'train\\+test'"):  # it read the 8 rows twice, as 16
        load_preference_dataset(str(folder), split="train+test")
    refuse_overlapping_splits(str(folder), None, "train[:6]", "train[6:]")
    sliced = tmp_path / "sliced"
    Dataset.from_list(preference_rows(), split="test[:4]").save_to_disk(str(sliced))
    assert len(load_preference_dataset(str(sliced), split="test")) == 4
    with pytest.raises(ValueError, match="both read rows 0-3 of split 'train'"):
        refuse_overlapping_splits(str(sliced), None, "train", "test")


def test_a_data_file_in_two_splits_of_a_readme_config_is_refused(tmp_path):
    """Probe b/i36: a README config whose train pattern `data/*.jsonl` also matches the test split's
    `data/test.jsonl`: trained on the test rows, then scored on them as held out. Refused naming the file, both
    splits and the pattern."""
    configs = '- config_name: default\n  data_files:\n  - split: train\n    path: "data/*.jsonl"\n'
    configs += "  - split: test\n    path: data/test.jsonl\n"
    folder = write_hub_layout(tmp_path / "hubl", configs)
    write_jsonl(folder / "data" / "train.jsonl", preference_rows(repeat=3))
    write_jsonl(folder / "data" / "test.jsonl", preference_rows())
    message = (
        rf"^Config 'default' of dataset folder {folder} reads the data file data/test.jsonl in 2 splits "
        r"\('train', 'test'; patterns train: data/\*.jsonl; test: data/test.jsonl"
    )
    for split in ("train", "test"):
        with pytest.raises(ValueError, match=message):
            load_preference_dataset(str(folder), split=split)
    (folder / "README.md").write_text((folder / "README.md").read_text().replace('"data/*.jsonl"', "data/train.jsonl"))
    assert len(load_preference_dataset(str(folder), split="train")) == 6


def test_a_readme_whose_yaml_header_does_not_parse_is_named(tmp_path):
    """Probe b/i13: a Hub-layout folder whose README.md front matter is broken (`data_files: [data/train.parquet`,
    unclosed) stopped with yaml's ParserError traceback, naming neither the README nor the folder. Refused in one
    line naming the README and the line of the file."""
    folder = write_hub_layout(tmp_path / "hubl", "- config_name: default\n  data_files: [train.jsonl\n")
    write_jsonl(folder / "train.jsonl", preference_rows())
    message = (
        rf"^{folder / 'README.md'}: its YAML header does not parse \(line 4: while parsing a flow sequence, "
        r"expected ',' or '\]'"
    )
    with pytest.raises(ValueError, match=message):
        load_preference_dataset(str(folder))
    (folder / "README.md").write_text((folder / "README.md").read_text().replace("[train.jsonl", "[train.jsonl]"))
    assert len(load_preference_dataset(str(folder))) == 4


@pytest.mark.parametrize(
    "split, message",
    [
        (
            "train[ :2]",
            r"^Split 'train\[ :2\]' of dataset file .*pairs.jsonl is not `datasets`' split syntax .*"
            r"`dataset_train_split` / `dataset_test_split`",
        ),
        (
            "train[:2] + test",
            r"^Dataset file .*pairs.jsonl holds one split, read as 'train', not 'train\[:2\] \+ test': .*"
            r"`dataset_train_split` / `dataset_test_split`",
        ),
        (
            "train[8:]",
            r"^Split 'train\[8:\]' of dataset file .*pairs.jsonl selects no rows: its split 'train' holds 8",
        ),
    ],
)
def test_a_split_spec_a_data_file_cannot_read_names_the_setting(tmp_path, split, message):
    """Probe b/i16: `train[ :2]` (a space) or `train[:2] + test` on a JSONL file was "Cannot read dataset file
    pairs.jsonl: ValueError: Unrecognized instruction format", blaming the file and naming no setting. A data file's
    rows are sliced as a saved folder's: refused naming the split setting, with examples; slices still read."""
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(repeat=4))  # 8 rows
    with pytest.raises(ValueError, match=message):
        load_preference_dataset(str(data), split=split)
    assert len(load_preference_dataset(str(data), split="train[:50%]+train[-1:]")) == 5


def test_a_json_row_setting_a_key_twice_is_named(tmp_path):
    """Probe b/i29: a hand-edited JSONL row setting `chosen` twice was "DatasetGenerationError: An error occurred
    while generating the dataset", naming neither row nor key. Refused naming the row and the key."""
    rows = preference_rows()
    lines = [json.dumps(row) for row in rows]
    lines[1] = lines[1][:-1] + ', "chosen": "purple"}'
    data = tmp_path / "dupkey.jsonl"
    data.write_text("\n".join(lines) + "\n")
    message = rf"^Cannot read dataset file {data}: row 1 sets 'chosen' twice \(JSON keeps only the last value\)"
    with pytest.raises(ValueError, match=message):
        load_preference_dataset(str(data))
    array = tmp_path / "dupkey.json"
    array.write_text("[" + ",\n".join(lines) + "]")
    with pytest.raises(ValueError, match="row 1 sets 'chosen' twice"):
        load_preference_dataset(str(array))


def test_a_json_array_with_a_trailing_comma_is_named_at_its_line(tmp_path):
    """Probe b/i30: a `.json` array with a trailing comma before its closing `]` (the fault on its last lines) was
    reported at "line 1 is not valid JSON (Expecting value)", where nothing is wrong. The line and column are
    json's own, with the likely slip."""
    data = tmp_path / "trailcomma.json"
    data.write_text(json.dumps(preference_rows(), indent=1)[:-2] + ",\n]")
    last = len(data.read_text().splitlines())
    message = (
        rf"^Cannot read dataset file {data}: line {last}, column 1 is not valid JSON \(Expecting value: a trailing "
        r"comma before this `\]`\?\)"
    )
    with pytest.raises(ValueError, match=message):
        load_preference_dataset(str(data))
    data.write_text(json.dumps(preference_rows(), indent=1))
    assert len(load_preference_dataset(str(data))) == 4
