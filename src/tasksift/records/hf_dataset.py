"""A directory written by ``datasets.Dataset.save_to_disk``: read in Arrow batches, rows fetched by position."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tasksift.records.files import hf_dir_sha256
from tasksift.records.readers import Loaded, add_batches, needed_columns, text_columns
from tasksift.records.sources import choose_split
from tasksift.records.view import ViewBuilder, Where
from tasksift.util.errors import InputError


def read(path: Path, builder: ViewBuilder, batch_size: int) -> Loaded:
    """The records and, as the state, the loaded dataset (kept to fetch rows from)."""
    dataset = _load(path)
    columns = needed_columns(builder, dataset.column_names)
    view = dataset.select_columns(columns) if columns is not None else dataset
    add_batches(view.with_format("arrow").iter(batch_size=batch_size), builder, Where(index=0))
    texts = dataset.select_columns(text_columns(builder, dataset.column_names)).with_format("arrow")
    return Loaded(builder, hf_dir_sha256(path), dataset,
                  lambda start, stop: texts[start:stop].to_pylist() if stop > start else [])


def take(path: Path, dataset: Any, idx: np.ndarray) -> pa.Table:
    if dataset is None:
        dataset = _load(path)
    return dataset.with_format("arrow")[idx.tolist()]


def _load(path: Path) -> Any:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises many kinds; all of them mean "cannot read this directory"
        raise InputError(f"cannot load the dataset directory: {e}", path=path,
                         fix="give a directory written by datasets.Dataset.save_to_disk") from e
    if isinstance(dataset, datasets.DatasetDict):
        raise InputError(f"this is a DatasetDict with splits {sorted(dataset)}, not one dataset", path=path,
                         fix="point to one split's directory")
    return dataset


#: how a source names a dataset on the Hugging Face hub
HUB_PREFIX = "hf://"


def load_hub(spec: str, split: str | None, subset: str | None) -> Any:
    """The dataset ``hf://org/name`` names (one split, one subset), through the local Hugging Face cache.

    Offline (``HF_HUB_OFFLINE=1``, or no network), a dataset that is not in the cache is an InputError saying so.
    """
    import datasets

    name = spec[len(HUB_PREFIX):].strip("/")
    name = name[len("datasets/"):] if name.startswith("datasets/") else name
    try:
        dataset = datasets.load_dataset(name, subset, split=split)
    except ConnectionError as e:
        raise InputError("not in the local Hugging Face cache and there is no network", path=spec,
                         fix=f"load it once where there is network (datasets.load_dataset({name!r})) or copy the "
                             "cache, then point HF_HOME at that cache") from e
    except Exception as e:  # datasets raises many kinds: a missing dataset, split or subset, a damaged cache
        raise InputError(f"cannot load the dataset: {' '.join(str(e).split())[:300]}", path=spec,
                         fix="check the name, --split and --subset") from e
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset[choose_split(spec, None, sorted(dataset))]
    return dataset
