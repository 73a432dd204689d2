"""Stage 3 of the flow (data): preference datasets and where their videos live.

One loader for every entry point (training, curation from a dataset, evaluation benchmarks, the quickstart):
`load_preference_dataset` reads a Hub dataset id, a folder written by `Dataset.save_to_disk` / `tpo-hf curate`, or
a json/jsonl/parquet/csv file (a `video` column of `datasets.Video` features becomes paths: `video_paths_column`);
`default_video_root` finds the folder that relative paths in its `video` column are taken from.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
from typing import Any

logger = logging.getLogger(__name__)

# data file ending -> `datasets` builder
DATA_FILE_BUILDERS = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv", "arrow": "arrow"}
JSON_CHECK_MAX_BYTES = 512 * 2**20  # JSON files up to this size are checked row by row before loading
CURATION_REPORT = "curation_report.json"  # what `tpo-hf curate` writes beside its dataset (`curation.report`)
# where `tpo-hf curate` keeps its shards by default (`CurationConfig.shard_dir`), and the manifest there recording the
# identity of each video the last finished run curated (`curation.storage.MANIFEST_NAME`, `shard_inputs`)
CURATION_WORK_DIR = "_curation"
CURATION_MANIFEST = "manifest.json"
REWRITE_FOLDER = "rerun `tpo-hf curate` into it (or save the dataset again with `save_to_disk`)"
# what each command calls its split setting (named when a local folder lacks the split asked for)
SPLIT_SETTINGS = "`dataset_train_split` / `dataset_test_split` in tpo-hf train, `dataset_split` in curate and eval"
# the builders `datasets` picks for a folder of media files: they read the media, not a data file beside them
MEDIA_FOLDER_BUILDERS = ("videofolder", "imagefolder", "audiofolder")


def load_preference_dataset(
    name: str, config: str | None = None, split: str = "train", video_column: str = "video"
) -> Any:
    """Loads a dataset (a `datasets.Dataset`) from the Hub, a `save_to_disk` folder or a data file; its
    `video_column` becomes paths when it is a `datasets.Video` feature (`video_paths_column`).

    Raises:
        ValueError: a local folder without the split, damaged (a torn or missing file, named) or holding no rows
            (a curation that ended with no pair: its report is named), a file of an unknown type, or a
            `dataset_config` for a source without configs; the message names it.
        OutputDirLockedError: a local folder another live run is writing (a `tpo-hf curate` into it), named.
        FileNotFoundError: `name` is no local file or folder (relative to the working directory) nor a Hub dataset
            that answers.
    """
    from datasets import load_dataset, load_from_disk

    from .locks import lock_left_by_killed_run, refuse_if_locked

    saved = os.path.isdir(name) and (
        os.path.exists(os.path.join(name, "dataset_info.json"))
        or os.path.exists(os.path.join(name, "dataset_dict.json"))
    )
    # a curation killed while it held the folder did not finish: the dataset there is the previous run's (or, killed
    # in its merge, a mix of both runs' files), not the one the user reran it for
    killed = lock_left_by_killed_run(name)
    if killed is not None and killed.get("what") == "curate":
        raise ValueError(unfinished_curation_message(name, killed, saved))
    # a curation writing the folder replaces its data files and videos: loading now would train on a mix of the old
    # dataset and the new one (the same refusal as `tpo-hf push` / `eval` of a folder in use)
    refuse_if_locked(name, "loading this dataset")
    if saved:
        if config is not None:  # `load_from_disk` takes no config: it would be ignored, all rows read
            raise ValueError(
                f"Dataset folder {name} is a saved dataset (save_to_disk), which has no configs: remove "
                f"`dataset_config` ({config!r}), or pass the Hub dataset id to read that config of it."
            )
        problem = saved_folder_problem(name)
        if problem is not None:
            raise ValueError(problem)
        try:
            dataset = load_from_disk(name)
        except Exception as error:  # a data file torn or missing: `datasets` and Arrow name neither folder nor fix
            raise ValueError(
                f"Dataset folder {name} is damaged ({type(error).__name__}: {error}): {REWRITE_FOLDER}."
            ) from error
        changed = changed_curated_videos(name, dataset)
        if changed is not None:
            raise ValueError(changed)
        return video_paths_column(_saved_split(dataset, name, split), name, video_column)
    if os.path.isdir(name) and os.path.exists(os.path.join(name, CURATION_REPORT)):
        raise ValueError(no_rows_message(name))  # a curation that ended with no pair: its report, no dataset
    if os.path.isdir(name) and os.path.isdir(os.path.join(name, CURATION_WORK_DIR)):
        # a curation stopped before it saved its dataset: only its work folder is there
        raise ValueError(unfinished_curation_message(name))
    if os.path.isfile(name):
        builder = DATA_FILE_BUILDERS.get(name.rsplit(".", 1)[-1].lower())
        if builder is None:
            raise ValueError(f"Cannot read dataset file {name}: use {', '.join(DATA_FILE_BUILDERS)}.")
        if config is not None:  # a data file is one table: the config would be ignored, all its rows read
            raise ValueError(
                f"Dataset file {name} is a single data file, which has no configs: remove `dataset_config` "
                f"({config!r}), or pass the Hub dataset id to read that config of it."
            )
        if os.path.getsize(name) == 0:
            raise ValueError(f"Dataset file {name} is empty: no rows.")
        # `datasets` may quietly cast a clashing value (a number among strings becomes "42"): check JSON first
        problem = (
            json_rows_problem(name) if builder == "json" and os.path.getsize(name) < JSON_CHECK_MAX_BYTES else None
        )
        if problem is not None:
            raise ValueError(f"Cannot read dataset file {name}: {problem}")
        try:  # its one split, sliced as a saved folder's: `datasets` blamed the file for a split spec it refused
            dataset = load_dataset(builder, data_files=name, split="train", **_builder_options(builder, [name]))
        except Exception as error:
            cache_problem = datasets_cache_problem(error)
            if cache_problem is not None:  # the file reads, but `datasets` converts it into its cache first
                raise ValueError(f"Cannot load dataset file {name}: {cache_problem}") from error
            # Arrow's messages name neither row nor field; for JSON, find the first row that breaks the schema
            problem = json_rows_problem(name) if builder == "json" else text_encoding_problem(name)
            raise ValueError(
                f"Cannot read dataset file {name}: {problem or f'{type(error).__name__}: {error}'}"
            ) from error
        return video_paths_column(_saved_split(dataset, name, split), name, video_column)
    if os.path.isdir(name):
        return _load_local_folder(name, config, split, video_column)
    not_hub_id = _hub_id_problem(name)
    if not_hub_id is not None:  # a path that is not there: asking the Hub for it only adds a traceback about the Hub
        raise FileNotFoundError(_no_dataset_message(name, not_hub_id))
    unconfirmed = _bare_name_problem(name)
    if unconfirmed is not None:
        raise FileNotFoundError(_no_dataset_message(name, unconfirmed))
    try:
        dataset = load_dataset(name, config, split=split)
    except Exception as error:
        from .models import other_repo_kind

        not_found = type(error).__name__ == "DatasetNotFoundError"
        other_kind = other_repo_kind(name, ("model", "space")) if not_found else None
        if other_kind is not None:
            raise ValueError(  # `datasets` says the dataset "doesn't exist", though a repo of that name does
                f"{name} is a {other_kind} repo on the Hub, not a dataset: pass the id of a dataset repo (or a local "
                "dataset folder or file) as --dataset_name."
            ) from error
        if not_found or isinstance(error, ConnectionError):  # no such dataset, or offline / the Hub not answering
            raise FileNotFoundError(_no_dataset_message(name, " ".join(str(error).split()))) from error
        raise
    return video_paths_column(dataset, name, video_column)


def _hub_id_problem(name: str) -> str | None:
    """Why `name` (no local file or folder) cannot be a Hub dataset id: a data file's name, or not a valid repo id
    (`../data`, `a/b/c`, an absolute path); None when it may be one."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if os.path.splitext(name)[1][1:].lower() in DATA_FILE_BUILDERS:
        return "a data file's name, not a Hub dataset id"
    try:
        validate_repo_id(name)
    except HFValidationError:
        return "not a valid Hub dataset id"
    return None


def _bare_name_problem(name: str) -> str | None:
    """Why a `name` without a namespace (no local file or folder) cannot be loaded as a Hub dataset, or None.

    `datasets` caches a local folder under its base name (`data/default/...` for any folder named `data`), the same
    place as a Hub dataset of that bare name. Offline, or when the Hub does not answer, `load_dataset(name)` answers
    from that cache: an earlier, different local folder of the same name was loaded with only a log line. So a bare
    name is loaded only when the Hub confirms it is a dataset there."""
    if "/" in name:  # a namespaced id: its cache (`user___name`) is never a local folder's
        return None
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError

    why_not_cache = (
        f"a name without a namespace is not read from `datasets`' cache, which may hold an earlier local folder named "
        f"{name!r}"
    )
    if constants.HF_HUB_OFFLINE:
        return f"offline (HF_HUB_OFFLINE=1), and {why_not_cache}"
    try:
        HfApi().dataset_info(name)
    except RepositoryNotFoundError:
        return None  # `load_dataset` names it as not found (or as a model/space repo)
    except Exception as error:  # the Hub not answering
        return f"the Hub did not answer ({type(error).__name__}), and {why_not_cache}"
    return None


def _no_dataset_message(name: str, reason: str) -> str:
    """One line for a `dataset_name` found neither on disk nor on the Hub, saying where a relative path was looked
    for (the working directory: a recipe beside its data does not make its relative paths relative to itself)."""
    where = (
        ""
        if os.path.isabs(name)
        else f" under the working directory {os.getcwd()} (relative paths are read from there, not from the recipe's "
        "folder)"
    )
    return (
        f"Dataset {name} is not a local file or folder{where}, nor a dataset reachable on the Hub ({reason}): give "
        "its path from the working directory (or an absolute path), or a Hub dataset id."
    )


def _saved_split(dataset: Any, folder: str, split: str) -> Any:
    """The rows of `split` in a `save_to_disk` folder's dataset or a data file's rows (`folder` is the file), in
    `datasets`' split syntax as `load_dataset` reads it (`train[:100]`, `train[90%:]`, `train+test`). A folder of one
    `Dataset` (what `tpo-hf curate` writes) holds one split, named `train` (as `datasets` names a data file's rows) or
    the one split name it was saved with (`test`, `test[:100]`; not `train+test`, whose rows of both are one table):
    any other name is refused, since answering it with the same rows would evaluate on the training rows as if held
    out."""
    from datasets import DatasetDict, ReadInstruction, concatenate_datasets

    kind = "file" if os.path.isfile(folder) else "folder"
    recorded = None if isinstance(dataset, DatasetDict) or dataset.split is None else str(dataset.split)
    if isinstance(dataset, DatasetDict):
        splits = dict(dataset)
    else:
        splits = {name: dataset for name in ["train", *_recorded_split_names(recorded)]}
    if any(name not in splits for name in _split_names(split)):
        if isinstance(dataset, DatasetDict):
            raise ValueError(
                f"Dataset folder {folder} has splits {list(splits)}, not {split!r}: set the split setting to one of "
                f"them ({SPLIT_SETTINGS})."
            )
        one = "" if kind == "file" else " (a single saved `Dataset`, as `tpo-hf curate` writes)"
        if recorded is not None and not _recorded_split_names(recorded):
            one = f" (a single saved `Dataset` loaded as split {recorded!r}: the rows of those splits in one table)"
        raise ValueError(
            f"Dataset {kind} {folder} holds one split{one}, read as "
            f"{' or '.join(repr(name) for name in splits)}, not {split!r}: set the split setting to it or a slice of "
            f"it, e.g. 'train[:90%]' and 'train[90%:]' for held-out rows ({SPLIT_SETTINGS})."
        )
    try:
        parts = ReadInstruction.from_spec(split).to_absolute({name: len(rows) for name, rows in splits.items()})
    except (ValueError, AssertionError) as error:  # `train[abc]`, `train[:10]]`: `datasets` names no setting
        raise ValueError(
            f"Split {split!r} of dataset {kind} {folder} is not `datasets`' split syntax ({error}): use e.g. 'train', "
            f"'train[:100]' or 'train[10%:]' ({SPLIT_SETTINGS})."
        ) from error
    selected = []
    for part in parts:
        rows = splits[part.splitname]
        if part.from_ >= part.to:  # `train[10:20]` of 8 rows: `datasets` clamps it to nothing, then `select` fails
            raise ValueError(
                f"Split {split!r} of dataset {kind} {folder} selects no rows: its split {part.splitname!r} holds "
                f"{len(rows)} rows. Use a slice within them, e.g. '{part.splitname}[:{len(rows) // 2}]' "
                f"({SPLIT_SETTINGS})."
            )
        selected.append(rows if (part.from_, part.to) == (0, len(rows)) else rows.select(range(part.from_, part.to)))
    return selected[0] if len(selected) == 1 else concatenate_datasets(selected)


def _split_names(split: str) -> list[str]:
    """The split names in a split spec: `train[:100]+test` -> ["train", "test"]."""
    return [part.split("[")[0].strip() for part in split.split("+")]


def _recorded_split_names(recorded: str | None) -> list[str]:
    """The split name a saved `Dataset` answers besides `train`, from the split spec it was loaded with (recorded in
    its `state.json`): `test` for `test` or `test[:100]` (rows of that split only); none for `train+test`, whose rows
    of both splits are mixed in one table (answering `test` with them would score training rows as held out)."""
    names = list(dict.fromkeys(_split_names(recorded))) if recorded else []
    return names if len(names) == 1 else []


def refuse_overlapping_splits(name: str, config: str | None, train_split: str, test_split: str) -> None:
    """Refuses a held-out split that shares rows with the training split: both read from one split of dataset `name`
    (`train[:4]` and `train[2:6]`, or `train` twice), compared by their absolute row ranges (`datasets`' rounding of
    percent slices included). In a `save_to_disk` folder of one Dataset every name `_saved_split` answers (`train`
    and the name it was saved with) reads the same rows, so they are one split here. A split spec `datasets` cannot
    read is left to the loader, which names it.

    Raises:
        ValueError: the rows both read, naming both settings.
    """
    from datasets import ReadInstruction

    asked_train, asked_test = train_split, test_split
    aliases = _saved_split_aliases(name)
    if aliases:  # a saved single `Dataset`: `train` and its saved name (`test`) read the same rows, as one split
        train_split, test_split = (
            "+".join(
                re.sub(r"^\s*[^\[]+", "train", part) if _split_names(part)[0] in aliases else part
                for part in spec.split("+")
            )
            for spec in (train_split, test_split)
        )
    shared = [split for split in dict.fromkeys(_split_names(train_split)) if split in _split_names(test_split)]
    if not shared:
        return
    # the rows of the split both read: a slice's bounds depend on them (`train[90%:]`, `train[-10:]`)
    sizes = {split: len(load_preference_dataset(name, config, split)) for split in shared}
    try:  # the parts of each spec (`train[:10]+test`) that read a shared split
        train_parts, test_parts = (
            [
                absolute
                for part in spec.split("+")
                if _split_names(part)[0] in sizes
                for absolute in ReadInstruction.from_spec(part).to_absolute(sizes)
            ]
            for spec in (train_split, test_split)
        )
    except (ValueError, AssertionError):  # a spec `datasets` cannot read: the loader names it
        return
    for train in train_parts:
        for test in test_parts:
            start, end = max(train.from_, test.from_), min(train.to, test.to)
            if train.splitname == test.splitname and start < end:
                rows = f"row {start}" if end - start == 1 else f"rows {start}-{end - 1}"
                alias = (
                    f"; a saved single Dataset, whose {' and '.join(repr(a) for a in sorted(aliases))} are the same rows"
                    if aliases
                    else ""
                )
                raise ValueError(
                    f"dataset_train_split {asked_train!r} and dataset_test_split {asked_test!r} both read {rows} of "
                    f"split {train.splitname!r} of {name} ({sizes[train.splitname]} rows{alias}): the evaluation "
                    "would score "
                    "rows the model trains on as held out. Give them slices that do not overlap, e.g. "
                    f"'{train.splitname}[:90%]' and '{train.splitname}[90%:]'."
                )


def _saved_split_aliases(name: str) -> set[str]:
    """The split names that read the one `Dataset` saved (`save_to_disk`) in folder `name` (`train` and the name it
    was saved with, as `_saved_split` answers them); empty for anything else (a DatasetDict, a Hub id, a file)."""
    if not os.path.isdir(name) or os.path.exists(os.path.join(name, "dataset_dict.json")):
        return set()
    try:
        with open(os.path.join(name, "state.json"), encoding="utf-8") as handle:
            saved = json.load(handle).get("_split")
    except (OSError, ValueError, AttributeError):
        return set()
    return {"train", *_recorded_split_names(saved if isinstance(saved, str) else None)}


def _csv_text(value: str) -> str | None:
    """A CSV cell of a text column as written (`05` stays `05`, `None` stays `None`); an empty cell is missing."""
    return value if value != "" else None


def _text_columns() -> list[str]:
    """The text columns of a TPO dataset (the curated schema's strings: prompt, chosen, rejected, video, ...)."""
    from .curation.records import dataset_features

    return [name for name, feature in dataset_features().items() if getattr(feature, "dtype", None) == "string"]


def _builder_options(builder: str, files: list[str] | None = None) -> dict[str, Any]:
    """`load_dataset` options for a data file builder: CSV text columns are read as written, since pandas would type
    a column of numbers (answers `0` / `10` to a counting question) as int, `05` as 5, and read the answers `None`,
    `NA`, `null` as missing. Only an empty cell of a text column is missing; the other columns of the CSV `files`
    keep pandas' missing words (`NA` in a number column)."""
    if builder != "csv":
        return {}
    text = _text_columns()
    options: dict[str, Any] = {"converters": dict.fromkeys(text, _csv_text)}
    columns = _csv_columns(files or [])
    if columns is None:  # no header read (none given, or unreadable: the load names the file): pandas' defaults
        return options
    from pandas._libs.parsers import STR_NA_VALUES

    # pandas' missing words apply to every column or, per column, to those named: so name each column of the files
    missing = {column: [""] if column in text else sorted(STR_NA_VALUES) for column in columns}
    return {**options, "keep_default_na": False, "na_values": missing}


def _csv_columns(files: list[str]) -> list[str] | None:
    """The column names in the header rows of CSV `files`; None when there are none or one does not read."""
    columns: list[str] = []
    for path in files:
        try:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                columns += next(csv.reader(handle), [])
        except (OSError, UnicodeDecodeError, csv.Error):
            return None
    return list(dict.fromkeys(columns)) if files else None


def _load_local_folder(folder: str, config: str | None, split: str, video_column: str) -> Any:
    """A local folder read as `load_dataset(folder)` reads it (the Hub's layout: `data/train-*.parquet`,
    `train.jsonl`, ...), except where that would quietly read something else than the user's data: a data file beside
    the videos (e.g. `pairs.jsonl`), which `datasets` ignores once videos outnumber it (it reads the folder as a
    `videofolder` of videos only), is loaded as that file; a split the folder lacks is named with its splits."""
    from datasets import get_dataset_config_names, load_dataset, load_dataset_builder

    _readme_configs(folder)  # a README.md whose YAML header is broken: `datasets` stops with yaml's bare traceback
    try:
        builder = load_dataset_builder(folder, config)
    except ValueError as error:  # `datasets` answers with a Python call (`load_dataset('data', 'x')`), no setting
        configs = get_dataset_config_names(folder)
        if config is None and len(configs) > 1:
            raise ValueError(
                f"Dataset folder {folder} declares several configs in its README.md: set `dataset_config` to one of "
                f"{configs}."
            ) from error
        if config is not None and config not in configs:
            raise ValueError(
                f"Dataset folder {folder} has no config {config!r}: "
                + (
                    f"set `dataset_config` to one of {configs}."
                    if configs != ["default"]
                    else "it declares no configs, remove `dataset_config`."
                )
            ) from error
        raise
    if builder.name in MEDIA_FOLDER_BUILDERS:
        data_files = sorted(
            entry
            for entry in os.listdir(folder)
            if entry.rsplit(".", 1)[-1].lower() in DATA_FILE_BUILDERS
            and not entry.lower().startswith("metadata.")  # `datasets`' own metadata file of a media folder
            and os.path.isfile(os.path.join(folder, entry))
        )
        if len(data_files) == 1:
            logger.info("%s: loading its data file %s (video paths relative to the folder).", folder, data_files[0])
            return load_preference_dataset(os.path.join(folder, data_files[0]), split=split, video_column=video_column)
        if data_files:
            raise ValueError(
                f"Dataset folder {folder} holds the data files {', '.join(data_files)} beside its videos, which "
                f"`datasets` reads as a {builder.name} (the videos alone): pass the one to load, e.g. "
                f"--dataset_name {os.path.join(folder, data_files[0])} (video paths stay relative to the folder)."
            )
    splits = [str(name) for name in builder.config.data_files or {}]
    asked = [part.split("[")[0].strip() for part in split.split("+")]  # `train[:100]`, `train+test` name splits too
    if splits and any(name not in splits for name in asked):  # `datasets` says "Unknown split", naming no folder
        raise ValueError(
            f"Dataset folder {folder} has splits {splits}, not {split!r}: set the split setting to one of them "
            f"({SPLIT_SETTINGS})."
        )
    if builder.name not in MEDIA_FOLDER_BUILDERS:
        _check_folder_data_files(folder, builder, asked)
    options = _builder_options(
        builder.name, [path for paths in (builder.config.data_files or {}).values() for path in paths]
    )
    try:
        dataset = load_dataset(folder, config, split=split, **options)
    except Exception as error:
        if type(error).__name__ not in ("DatasetGenerationError", "DatasetGenerationCastError"):
            raise
        # data files that disagree (a shard with another column or type): `datasets`' top error says only "An error
        # occurred while generating the dataset"; its cause may name the columns and the file, or neither
        cause = error.__cause__ if type(error).__name__ == "DatasetGenerationError" and error.__cause__ else error
        features, problem = _data_file_features(folder, builder, options)
        if features is None:
            detail = problem or f"{type(cause).__name__}: {' '.join(str(cause).split())[:600]}"
            raise ValueError(
                f"Cannot load dataset folder {folder}: its data files do not agree ({detail}). Give every data file "
                "the same columns and types."
            ) from error
        # they agree once a column that is empty (all null) in some files takes its type from the others (`datasets`
        # types every file as the first one it reads)
        dataset = load_dataset(folder, config, split=split, features=features, **options)
    return video_paths_column(dataset, folder, video_column)


def _readme_configs(folder: str) -> list[dict[str, Any]]:
    """The configs a local folder's README.md declares (the Hub's `configs:` metadata), [] when it has none.

    Raises:
        ValueError: its YAML header does not parse, or is not a mapping: naming the README and the line.
    """
    import yaml
    from huggingface_hub import DatasetCard

    readme = os.path.join(folder, "README.md")
    if not os.path.isfile(readme):
        return []
    try:
        card = DatasetCard.load(readme)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = ""
        if mark is not None:  # yaml counts lines from the header's first line, under its opening `---`
            with open(readme, encoding="utf-8", errors="replace") as handle:
                opening = re.match(r"\s*---[^\n]*\n", handle.read())
            skipped = opening.group(0).count("\n") if opening else 0
            where = f"line {mark.line + 1 + skipped}: "
        parts = (getattr(error, "context", None), getattr(error, "problem", None))
        detail = ", ".join(str(part) for part in parts if part) or str(error)
        raise ValueError(
            f"{readme}: its YAML header does not parse ({where}{detail}): fix it (`datasets` reads the folder's "
            "configs and data files from it), or remove the header."
        ) from error
    except ValueError as error:  # huggingface_hub: a header that is not a mapping ("... should be a dict")
        raise ValueError(
            f"{readme}: its YAML header is not valid card metadata ({error}): fix it, or remove the header."
        ) from error
    configs = card.data.to_dict().get("configs") or []
    return [entry for entry in configs if isinstance(entry, dict)]


def _declared_pattern(entry: dict[str, Any] | None, split: str) -> str | None:
    """The `data_files` pattern(s) a README config `entry` gives `split`, as written; None when it gives none."""
    declared = (entry or {}).get("data_files")
    if isinstance(declared, dict):
        declared = declared.get(split)
    elif isinstance(declared, list) and any(isinstance(item, dict) for item in declared):
        declared = [item.get("path") for item in declared if isinstance(item, dict) and item.get("split") == split]
    if isinstance(declared, list):
        declared = ", ".join(str(path) for path in declared if path)
    return str(declared) if declared else None


def _check_folder_data_files(folder: str, builder: Any, asked: list[str]) -> None:
    """Logs the data files `datasets` resolved for each split `asked` of a local `folder`, and refuses what it would
    read wrongly: a split whose README config matches no file (`datasets` stops with a bare StopIteration), and one
    whose files come from several folders when no README config declares the layout (`datasets`' default patterns
    read `train.jsonl` and an old copy `backup/train.jsonl` as one split)."""
    configs = _readme_configs(folder)
    entry = next((item for item in configs if item.get("config_name", "default") == builder.config.name), None)
    data_files = {str(name): files for name, files in (builder.config.data_files or {}).items()}
    for name, files in data_files.items():
        if not files:  # every split is generated, so an empty one stops the load whichever is asked
            raise ValueError(
                f"Config {builder.config.name!r} of dataset folder {folder} matches no file for its split {name!r} "
                f"({_declared_pattern(entry, name) or 'its data_files'}, in {os.path.join(folder, 'README.md')}): fix "
                "the pattern (relative to the folder) or pick another `dataset_config`."
            )
    # a pattern that also matches another split's file (`data/*.jsonl` for train, beside test's `data/test.jsonl`)
    # trains on the held-out rows and then scores them as held out
    owners: dict[str, list[str]] = {}
    for name, files in data_files.items():
        for path in dict.fromkeys(files):
            owners.setdefault(path, []).append(name)
    for path, splits in owners.items():
        if len(splits) > 1:
            patterns = "; ".join(
                f"{split}: {_declared_pattern(entry, split) or 'its default pattern'}" for split in splits
            )
            raise ValueError(
                f"Config {builder.config.name!r} of dataset folder {folder} reads the data file "
                f"{os.path.relpath(path, folder)} in {len(splits)} splits ({', '.join(map(repr, splits))}; patterns "
                f"{patterns}, in {os.path.join(folder, 'README.md')}): their rows would be trained on and scored as "
                "held out. Narrow the patterns so that each file belongs to one split."
            )
    for name in asked:
        relative = [os.path.relpath(path, folder) for path in data_files.get(name, [])]
        if not relative:
            continue
        listed = ", ".join(relative[:10]) + (f" and {len(relative) - 10} more" if len(relative) > 10 else "")
        declared = any("data_files" in item for item in configs)
        folders = sorted({os.path.dirname(path) for path in relative})
        # the shards of one dataset (`train-00000-of-00002.parquet`, ..., as `push_to_hub` writes them) are one split;
        # a stale set of another count beside them (`train-00000-of-00001`, left by a download) is not
        shard_sets = {re.sub(r"-\d{5}(-of-\d{5}\.[^.]+)$", r"\1", path) for path in relative}
        if declared or len(relative) == 1 or len(shard_sets) == 1:
            logger.info("%s: split %s reads %s", folder, name, listed)
        elif len(folders) == 1:  # `train-old.jsonl` beside `train.jsonl` matches the same pattern: maybe not meant
            logger.warning(
                "%s: split %s reads the %d data files %s as one split; to read fewer, pass the one to load as "
                "--dataset_name, or declare the files of each split in a README.md config (`configs:` with "
                "`data_files`).",
                folder,
                name,
                len(relative),
                listed,
            )
        if len(folders) > 1 and not declared:
            first = min(relative, key=lambda path: (path.count(os.sep), path))
            raise ValueError(
                f"Dataset folder {folder}: `datasets` would read its split {name!r} from data files in "
                f"{len(folders)} folders ({listed}), all of them as one split (an old copy kept in a subfolder "
                "would be trained on too). Pass the file to load (--dataset_name "
                f"{os.path.join(folder, first)}), or declare the files of each split in a README.md config "
                "(`configs:` with `data_files`, the Hub's layout)."
            )


def _data_file_features(folder: str, builder: Any, options: dict[str, Any]) -> tuple[Any, str | None]:
    """The features that read every data file of a local `folder`'s config, each file loaded alone, or None and why
    not (the column and the files that disagree on it). A column empty in a file (all null, e.g. `segment_start` of a
    file of comprehensive pairs) takes the type the other files give it, or the curated schema's."""
    from datasets import Features, load_dataset

    from .curation.records import dataset_features

    per_file: dict[str, Any] = {}
    for path in dict.fromkeys(path for files in (builder.config.data_files or {}).values() for path in files):
        relative = os.path.relpath(path, folder)
        try:
            per_file[relative] = load_dataset(builder.name, data_files=path, split="train", **options).features
        except Exception as error:  # the file that does not load on its own, named
            detail = " ".join(str(error).split())[:300]
            return None, f"{relative} does not load on its own: {type(error).__name__}: {detail}"
    columns = list(dict.fromkeys(column for features in per_file.values() for column in features))
    known = dataset_features()
    unified, filled = {}, False
    for column in columns:
        lacking = [path for path, features in per_file.items() if column not in features]
        if lacking:
            holding = [path for path in per_file if path not in lacking]
            return None, f"column {column!r} is in {', '.join(holding)} but not in {', '.join(lacking)}"
        types = {path: features[column] for path, features in per_file.items()}
        typed = {path: feature for path, feature in types.items() if not _is_null_feature(feature)}
        if len({repr(feature) for feature in typed.values()}) > 1:
            disagree = "; ".join(f"{feature} in {path}" for path, feature in typed.items())
            return None, f"column {column!r} is {disagree}"
        unified[column] = next(iter(typed.values()), known.get(column, next(iter(types.values()))))
        filled |= len(typed) < len(types) and not _is_null_feature(unified[column])
    return (Features(unified), None) if filled else (None, None)


def _is_null_feature(feature: Any) -> bool:
    """`Value("null")` or a list of it: what `datasets` infers for a column empty (or `[]`) on every row of a file."""
    from datasets import Value

    while hasattr(feature, "feature"):  # List / LargeList / Sequence
        feature = feature.feature
    return feature == Value("null")


def embedded_video_folder() -> str:
    """Where videos a dataset holds as bytes (a `datasets.Video` column) are written to be decoded from a path."""
    cache = os.environ.get("TPO_HF_VIDEO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tpo_hf", "videos"))
    return os.path.join(cache, "embedded")


def _embedded_video_path(value: dict[str, Any] | None, folder: str) -> str | None:
    """The path a `Video(decode=False)` value's video is read from: its bytes written once under `folder` (named by
    their hash, so a second load reuses the file and keeps its identity), else its own path."""
    import hashlib

    if not value:
        return None
    data, path = value.get("bytes"), value.get("path")
    if not data:
        return path
    # `save_to_disk` / `push_to_hub` embed the file and keep only its base name: the bytes are the video
    digest = hashlib.sha256(data).hexdigest()[:32]
    target = os.path.join(folder, digest, os.path.basename(path or "") or "video.mp4")
    if not os.path.isfile(target):
        partial = f"{target}.{os.getpid()}.part"
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(partial, "wb") as handle:
                handle.write(data)
            os.replace(partial, target)
        except OSError as error:
            with contextlib.suppress(OSError):  # a torn .part would only take up room in a cache that is full
                os.remove(partial)
            raise ValueError(_embedded_cache_problem(folder, error)) from error
    return target


def _embedded_cache_problem(folder: str, error: OSError) -> str:
    """One line for a failed write of an embedded video into `folder`, naming `TPO_HF_VIDEO_CACHE` (which sets it)."""
    from .fingerprint import no_space_left

    full = no_space_left(error, folder)
    cause = full or f"{error.strerror or error} ({type(error).__name__})"
    fix = "free space there or set" if full else "set"
    return (
        f"Cannot write a video the dataset embeds (datasets.Video bytes) to {folder}: {cause}. tpo-hf decodes such "
        f"videos from files there; {fix} TPO_HF_VIDEO_CACHE to a writable folder with room for the videos."
    )


def video_paths_column(dataset: Any, dataset_name: str, column: str = "video") -> Any:
    """`dataset` with its video `column` (training reads `video`; curation its `video_column`) as paths when it is a
    `datasets.Video` feature, which `datasets` would decode itself (through torchcodec) where tpo-hf decodes the
    files: embedded videos are written to `embedded_video_folder()`, others keep their path. Any other dataset is
    returned as is."""
    from datasets import Dataset, Value, Video

    features = getattr(dataset, "features", None) or {}
    if not isinstance(features.get(column), Video):
        return dataset
    folder = embedded_video_folder()
    logger.info(
        "%s: its video column %r is a datasets.Video feature; videos it embeds are read from %s.",
        dataset_name,
        column,
        folder,
    )
    dataset = dataset.cast_column(column, Video(decode=False))
    paths = dataset.features.copy()
    paths[column] = Value("string")
    # recomputed on every load: a cached result could name files since deleted from the video cache (an iterable
    # dataset maps lazily, and takes neither option)
    options = {"load_from_cache_file": False, "desc": "Video paths"} if isinstance(dataset, Dataset) else {}
    return dataset.map(
        lambda batch: {column: [_embedded_video_path(value, folder) for value in batch[column]]},
        batched=True,
        features=paths,
        **options,
    )


def datasets_cache_problem(error: BaseException) -> str | None:
    """What is wrong with the `datasets` cache (HF_DATASETS_CACHE, by default under HF_HOME) when `error` came from
    writing into it -- not writable (a read-only HF_HOME) or full -- else None."""
    import errno

    from datasets import config as datasets_config

    cache = os.path.realpath(datasets_config.HF_DATASETS_CACHE)
    seen: BaseException | None = error
    for _ in range(16):
        if seen is None:
            break
        filename = getattr(seen, "filename", None)
        if isinstance(seen, OSError) and isinstance(filename, str):
            path = os.path.realpath(filename)
            if path == cache or path.startswith(cache + os.sep):
                full = seen.errno in (errno.ENOSPC, errno.EDQUOT)
                return (
                    f"the datasets cache {cache} {'is full' if full else 'is not writable'} ({seen.strerror}: "
                    f"{filename}); point HF_DATASETS_CACHE at a writable folder{' with free space' if full else ''} "
                    "(the file itself reads)."
                )
        seen = seen.__cause__ or seen.__context__
    return None


def unfinished_curation_message(folder: str, killed: dict[str, Any] | None = None, saved: bool = False) -> str:
    """That `folder` is a curation that did not finish (`killed`: the lock record the killed `tpo-hf curate` left in
    it), and what to do: rerun it (its finished shards are reused). `saved`: a dataset is there, an earlier run's."""
    if not saved:
        return f"{folder} is an unfinished curation (no dataset saved yet): rerun tpo-hf curate to finish it."
    from .locks import LOCK_NAME, describe_holder

    return (
        f"{folder} is an unfinished curation: the last tpo-hf curate into it ({describe_holder(killed)}) did not "
        "finish (it was killed, or the folder was copied while it ran), so the dataset saved there is the previous "
        "run's (or, stopped while saving, a mix of both runs' files), not the one it was rerun for. Rerun tpo-hf "
        "curate to finish it (its finished shards are reused); to use the previous dataset as it is, delete "
        f"{os.path.join(folder, LOCK_NAME)}."
    )


def _curation_manifest(folder: str) -> tuple[str, dict[str, Any]] | None:
    """The manifest of the curation that wrote `folder` and the videos it recorded (id -> identity): in
    `<folder>/_curation` (the default `work_dir`, the folder's own whatever path it records: it moved or was copied
    with the folder), or in the `work_dir` its report names where that manifest serves `folder`
    (`_manifest_serves`; a `work_dir` shared by several outputs holds the last one's). None where neither is found
    or readable."""
    places = [(os.path.join(folder, CURATION_WORK_DIR, CURATION_MANIFEST), False)]
    with contextlib.suppress(OSError, ValueError, AttributeError):
        with open(os.path.join(folder, CURATION_REPORT), encoding="utf-8") as handle:
            work_dir = json.load(handle).get("work_dir")
        if isinstance(work_dir, str):
            places.append((os.path.join(work_dir, CURATION_MANIFEST), True))
    for path, elsewhere in places:
        try:
            with open(path, encoding="utf-8") as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            continue
        videos = manifest.get("videos") if isinstance(manifest, dict) else None
        if elsewhere and not _manifest_serves(manifest, folder):
            continue
        if isinstance(videos, dict):
            return path, videos
    return None


def dataset_files(folder: str | os.PathLike) -> dict[str, str]:
    """name -> sha256 of the data files (`save_to_disk`'s `data-*.arrow`) of the dataset in `folder`: what a curation
    records of the dataset it wrote (`curation.storage.check_dataset_unedited`)."""
    from pathlib import Path

    from .fingerprint import file_content_hash

    return {path.name: file_content_hash(path) for path in sorted(Path(folder).glob("data-*.arrow"))}


def _manifest_serves(manifest: Any, folder: str) -> bool:
    """Whether a curation manifest kept in a `work_dir` outside `folder` records `folder`'s dataset: it names
    `folder` as its output_dir, or the data files it recorded (`dataset_files`) are `folder`'s (the folder moved or
    copied since the curation wrote it, the manifest still naming the old path)."""
    from pathlib import Path

    if not isinstance(manifest, dict):
        return False
    source = manifest.get("source")
    if isinstance(source, dict) and source.get("output_dir") == os.path.realpath(folder):
        return True
    recorded = manifest.get("dataset_files")
    return isinstance(recorded, dict) and bool(recorded) and recorded == dataset_files(Path(folder))


def _recorded_video_id(path: str, recorded: dict[str, Any]) -> str | None:
    """The id a curation recorded for the video at the absolute `path` (what its rows hold with `copy_videos`
    false): the id is the path's last segments (its path under `video_dir`, or as many trailing folders as tell
    the dataset's videos apart), the longest that the curation recorded."""
    parts = [part for part in os.path.normpath(path).replace(os.sep, "/").split("/") if part]
    for depth in range(len(parts), 0, -1):
        video_id = "/".join(parts[-depth:])
        if video_id in recorded:
            return video_id
    return None


def changed_curated_videos(folder: str, dataset: Any) -> str | None:
    """Why the rows of the dataset `tpo-hf curate` saved in `folder` no longer describe their videos, or None: a
    video its rows use whose file now differs from the one the curation recorded in its manifest
    (`video.same_video_file`: other content -- a corpus clip replaced under the same name, with `copy_videos` false,
    or a copy under `<folder>/videos/` edited since --, or, recorded by an older tpo-hf by size and modification time,
    another size or time; a copy's time alone changes when the folder is copied, so it is compared by size then), or
    a video URL whose server now reports another version than the one curated (the video replaced there). Each local
    video's content is hashed once per version (`fingerprint.file_content_hash`); a URL's server is asked, and where
    it cannot be and no copy is cached, nothing is said. Missing files (named where they are decoded) are not
    checked here, nor a folder whose manifest is not found."""
    from datasets import Dataset

    if not isinstance(dataset, Dataset) or "video" not in dataset.column_names:
        return None
    if not os.path.isfile(os.path.join(folder, CURATION_REPORT)):
        return None  # a dataset saved otherwise: no curation recorded its videos
    found = _curation_manifest(folder)
    if found is None:
        return None
    from .video import same_video_file, video_file_identity

    manifest, recorded = found
    # a recorded identity less the hash of a dataset's annotations for the video (`storage.shard_inputs`)
    files = {
        video_id: re.sub(r"#[0-9a-f]{16}$", "", then) for video_id, then in recorded.items() if isinstance(then, str)
    }
    urls = {then.split("@", 1)[0]: then for then in files.values() if "://" in then and "@" in then}
    remote = [then for then in files.values() if "://" in then]
    changed: list[str] = []
    copies: list[str] = []
    for value in sorted(v for v in dataset.unique("video") if isinstance(v, str)):
        if "://" in value:
            then = urls.get(value) or next((t for t in remote if t.startswith(f"{value}@")), None)
            now = video_file_identity(value) if then is not None else value
            if now != value and not same_video_file(then, now):  # `value` alone: its version cannot be had
                changed.append(f"{value} (curated at {then[len(value) + 1 :]}, now {now[len(value) + 1 :]})")
            continue
        copy = not os.path.isabs(value)
        if copy:  # `copy_videos`: the curation's copy, `videos/<id>` under the folder
            video_id = value[len("videos/") :] if value.startswith("videos/") else None
            path = os.path.join(folder, value)
        else:
            video_id, path = _recorded_video_id(value, recorded), value
        then = files.get(video_id) if video_id is not None else None
        earlier = then is not None and then.count(":") == 1  # `size:mtime_ns`, recorded by an older tpo-hf
        if then is None or "://" in then or not (earlier or ":sha256:" in then) or not os.path.isfile(path):
            continue
        if copy and earlier:
            # a copy's time is not kept by `cp -r` / rsync of the whole folder, which leave its videos as curated: a
            # copy edited since (re-encoded, replaced by another clip) shows in its size
            same = then.split(":")[0] == video_file_identity(path).split(":")[0]
        else:  # the file itself: as the curation compares it (a rerun curates it again)
            same = same_video_file(then, video_file_identity(path))
        if not same:
            (copies if copy else changed).append(f"{path} (the copy of {video_id})" if copy else path)
    if not changed and not copies:
        return None
    named = changed + copies
    shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
    rerun = ["curates the changed videos again"] if changed else []
    if copies:
        rerun.append("copies each edited copy's source video back over it")
    return (
        f"Dataset folder {folder} holds pairs curated from videos that changed since (their files, or the versions "
        f"their servers report, differ from those recorded in {manifest}): {shown}. Its captions and answers "
        f"describe the videos as they were: rerun tpo-hf curate into it with the same settings, which "
        f"{' and '.join(rerun)}."
    )


def no_rows_message(folder: str) -> str:
    """That `folder` holds no rows, and why when a curation report in it says so."""
    message = f"Dataset folder {folder} holds no data (0 rows)"
    report = os.path.join(folder, CURATION_REPORT)
    if os.path.isfile(report):
        try:
            reason = json.loads(open(report, encoding="utf-8").read()).get("no_pairs_reason")
        except (OSError, ValueError, AttributeError):
            reason = None
        message += f": its curation ended with no pair{f' ({reason})' if reason else ''}; see {report}"
    return message + "."


def saved_folder_problem(folder: str) -> str | None:
    """What makes a `save_to_disk` folder unloadable, named by file: a JSON file that is not valid JSON (torn by a
    disk error or a killed copy), a data file it lists that is missing, or no data file at all (0 rows)."""

    def read(relative: str) -> Any:
        path = os.path.join(folder, relative)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"Dataset folder {folder} is damaged ({relative}: {error}): {REWRITE_FOLDER}.") from None

    try:
        splits = read("dataset_dict.json")
        splits = splits.get("splits", []) if isinstance(splits, dict) else []
        for sub in ["", *(s for s in splits if isinstance(s, str))]:
            read(os.path.join(sub, "dataset_info.json"))
            state = read(os.path.join(sub, "state.json"))
            if not isinstance(state, dict):
                continue
            files = [e.get("filename") for e in state.get("_data_files") or [] if isinstance(e, dict)]
            missing = [f for f in files if not isinstance(f, str) or not os.path.isfile(os.path.join(folder, sub, f))]
            if missing:
                lost = os.path.join(sub, str(missing[0]))
                return f"Dataset folder {folder} is damaged ({lost} is missing): {REWRITE_FOLDER}."
            if not files and not sub:
                return no_rows_message(folder)
    except ValueError as error:
        return str(error)
    return None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):  # `_JsonObject` too
        return "object"
    return {str: "string", list: "list"}.get(type(value), type(value).__name__)


class _JsonObject(dict):
    """A JSON object as `json.loads` reads it, with the first key it sets twice (`json` keeps the last value)."""

    twice: str | None = None


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    row = _JsonObject()
    for key, value in pairs:
        if key in row and row.twice is None:
            row.twice = key
        row[key] = value
    return row


def _json_error(error: json.JSONDecodeError) -> str:
    """`json`'s message, with the likely slip where it says only "Expecting value" before a closing bracket."""
    closing = error.doc[error.pos : error.pos + 1]
    if error.msg == "Expecting value" and closing in ("]", "}"):
        return f"{error.msg}: a trailing comma before this `{closing}`?"
    return error.msg


def text_encoding_problem(path: str) -> str | None:
    """Why data file `path` is not UTF-8 text, the only encoding `datasets` reads json and csv files in: a UTF-16/32
    byte-order mark (PowerShell's `>`), or the line of its first byte that is no UTF-8 (Excel's "CSV (Comma
    delimited)" writes Windows-1252: `é` is byte 0xe9); None when it reads as UTF-8."""
    import codecs

    fix = "save it as UTF-8" + (' (in Excel: Save As "CSV UTF-8")' if path.lower().endswith(".csv") else "")
    marks = {codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32", codecs.BOM_UTF16_LE: "UTF-16"}
    with open(path, "rb") as handle:
        start = handle.read(4)
        for mark, encoding in {**marks, codecs.BOM_UTF16_BE: "UTF-16"}.items():  # UTF-32 LE's starts as UTF-16 LE's
            if start.startswith(mark):
                return f"it is {encoding} text (byte-order mark), not UTF-8: {fix}"
        handle.seek(0)
        head = handle.read(1024)
        if head.count(0) > len(head) // 4:  # UTF-16 without a mark: every other byte of ASCII text is NUL
            return f"it looks like UTF-16 text (NUL bytes), not UTF-8: {fix}"
        handle.seek(0)
        decoder, line, final = codecs.getincrementaldecoder("utf-8")(), 1, False
        while not final:
            chunk = handle.read(2**20)
            final = not chunk
            try:
                decoder.decode(chunk, final=final)
            except UnicodeDecodeError as error:  # its `object`: this chunk after the last one's unfinished character
                byte = error.object[error.start]
                line += error.object[: error.start].count(b"\n")
                read = bytes([byte]).decode("cp1252", errors="replace")
                return f"line {line} is not UTF-8 text (byte 0x{byte:02x}, {read!r} in Windows-1252): {fix}"
            line += chunk.count(b"\n")
    return None


def json_rows_problem(path: str) -> str | None:
    """The first row of a json/jsonl file that is not valid JSON, not an object, sets a key twice, or holds a field
    whose type differs from the same field in an earlier row (what makes Arrow refuse the file), named by row and
    field."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError:  # `json` and Arrow read UTF-8 only (a file written by PowerShell's `>` is UTF-16)
        return text_encoding_problem(path)
    try:
        document = json.loads(text, object_pairs_hook=_json_object)
        rows = document if isinstance(document, list) else [document]
    except json.JSONDecodeError as error:
        if error.msg != "Extra data" and text.lstrip().startswith("["):
            # one JSON array over many lines: json's own line and column (a JSONL file's rows each hold one line)
            return f"line {error.lineno}, column {error.colno} is not valid JSON ({_json_error(error)})"
        rows = []
        for number, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line, object_pairs_hook=_json_object))
            except json.JSONDecodeError as error:
                return f"line {number + 1} is not valid JSON ({_json_error(error)})"
    first: dict[str, tuple[str, int]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"row {index} is a {_kind(row)}, not an object with the dataset's fields"
        if isinstance(row, _JsonObject) and row.twice is not None:  # Arrow refuses it naming neither row nor key
            return f"row {index} sets {row.twice!r} twice (JSON keeps only the last value): remove one of them"
        for field, value in row.items():
            if value is None:
                continue
            kind = _kind(value)
            seen = first.setdefault(field, (kind, index))
            if seen[0] != kind:
                return f"row {index}, field {field!r} is a {kind} ({value!r:.40}) where row {seen[1]} has a {seen[0]}"
    return None


def default_video_root(dataset_name: str) -> str | None:
    """Where relative paths in the `video` column live when `video_root` is not set.

    Local datasets keep them next to their data. A Hub dataset published by `tpo-hf curate --upload_videos true`
    keeps them under `videos/` in its repository: those files are downloaded (once, into the Hub cache) and the
    snapshot folder is the root, so `load_dataset(REPO_ID)` plus the repo's videos train without manual steps.
    """
    if os.path.isdir(dataset_name):
        return dataset_name
    if os.path.isfile(dataset_name):
        return os.path.dirname(os.path.abspath(dataset_name))
    from huggingface_hub import HfApi, snapshot_download

    try:
        has_videos = any(
            path.startswith("videos/") for path in HfApi().list_repo_files(dataset_name, repo_type="dataset")
        )
    except Exception as error:  # offline, private or not a Hub dataset: the user must set video_root
        logger.info(
            "No video folder found for dataset %s (%s); set video_root if its paths are relative.", dataset_name, error
        )
        return None
    if not has_videos:
        return None
    from huggingface_hub.errors import GatedRepoError

    try:
        return snapshot_download(dataset_name, repo_type="dataset", allow_patterns=["videos/*", "videos/**"])
    except GatedRepoError as error:  # the Hub's error is a traceback from inside the download
        from huggingface_hub import constants

        raise ValueError(
            f"Dataset {dataset_name} is a gated Hub repo and this token has no access to its videos: request access "
            f"on {constants.ENDPOINT}/datasets/{dataset_name} while logged in, then use a token of that account "
            "(`hf auth login`, or HF_TOKEN)."
        ) from error


def dataset_in_folder(folder: str | os.PathLike) -> str | None:
    """What dataset `folder` holds -- a `save_to_disk` dataset (`state.json` + `dataset_info.json`, or
    `dataset_dict.json`) or a curated one (`curation_report.json`) -- in words, or None."""

    def has(name: str) -> bool:
        return os.path.exists(os.path.join(folder, name))

    if has("curation_report.json"):
        return "a curated dataset (curation_report.json)"
    if has("dataset_dict.json") or (has("state.json") and has("dataset_info.json")):
        return "a saved dataset (save_to_disk: state.json, dataset_info.json)"
    return None


def _full_model_files(folder: str | os.PathLike) -> str | None:
    """`config.json` and the weights files beside it in `folder`, in words (`a full model (config.json, ...)`), or
    None where there is no config.json or no weights."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        return None
    weights = sorted(
        name
        for name in os.listdir(folder)
        if (name.endswith((".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")))
        and not name.startswith(("adapter_model", "training_args", "optimizer", "scheduler", "rng_state"))
    )
    if not weights:
        return None
    return f"a full model (config.json, {', '.join(weights[:3])}{', ...' if len(weights) > 3 else ''})"


def model_in_folder(folder: str | os.PathLike) -> str | None:
    """The weights files of a full model saved in `folder` (`config.json` beside `*.safetensors` / `*.bin` /
    an index, not an adapter's `adapter_config.json`), in words, or None."""
    if any(
        # an adapter, or a model a tpo-hf / Trainer run wrote (a full fine-tune trained into it again or resumed)
        os.path.exists(os.path.join(folder, marker))
        for marker in ("adapter_config.json", "tpo_card.json", "training_args.bin", "trainer_state.json")
    ):
        return None
    return _full_model_files(folder)


# files only an adapter, or a model a tpo-hf run wrote, holds
TRAINED_MODEL_MARKERS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "tpo_card.json")


def model_or_adapter_in_folder(folder: str | os.PathLike) -> str | None:
    """In words, the adapter or model saved in `folder`, or None: an adapter's or a tpo-hf run's files
    (`TRAINED_MODEL_MARKERS`), else `config.json` beside weights (a full model, trained there or not). The one rule
    for the output folders that must not hold one (a curated dataset's, a Space's): their README.md would replace the
    model card, and their files would land beside the weights. `config.json` alone is no model."""
    if not os.path.isdir(folder):
        return None
    markers = [name for name in TRAINED_MODEL_MARKERS if os.path.isfile(os.path.join(folder, name))]
    if markers:
        return f"a trained adapter or model ({', '.join(markers)})"
    return _full_model_files(folder)


def refuse_training_output_dir(output_dir: str | os.PathLike | None) -> None:
    """Refuses an `output_dir` that holds a dataset (training would write its model card, `README.md`, weights and
    checkpoints over the dataset's card and beside its files) or a full model, e.g. the base model's own folder (the
    adapter would land beside the model's weights, and the folder would afterwards load as that model with the
    adapter).

    Raises:
        ValueError: naming the folder and the dataset or model files found in it.
    """
    if output_dir is None or not os.path.isdir(output_dir):
        return
    if (found := dataset_in_folder(output_dir)) is not None:
        consequence = "training would write its model card (README.md), adapter and checkpoints over and beside the dataset's files"
    elif (found := model_in_folder(output_dir)) is not None:
        consequence = (
            "training would write its adapter (adapter_config.json, adapter_model.safetensors), model card and "
            "checkpoints into it, and the folder would then load as that model with the adapter applied"
        )
    else:
        return
    raise ValueError(f"output_dir {output_dir} holds {found}: {consequence}. Set output_dir to another folder.")
