import json
import sys

import numpy as np
import pytest

import tasksift
from tasksift.api import parse_budget
from tasksift.records import load_records
from tasksift.selectors.dsir import DSIRSelector
from tasksift.selectors.knn import KNNSelector
from tasksift.util.errors import InputError


@pytest.mark.parametrize(("budget", "n", "expected"), [
    (5, 10, 5), ("5", 10, 5), ("10%", 200, 20), ("1%", 150, 2), ("0.5%", 1000, 5), ("100%", 7, 7), (10, 10, 10),
])
def test_parse_budget(budget, n: int, expected: int) -> None:
    assert parse_budget(budget, n) == expected


@pytest.mark.parametrize("budget", [0, -1, "11", "0%", "101%", "1.5", "abc", "0.1%", "nan%"])
def test_parse_budget_rejects(budget) -> None:
    with pytest.raises(InputError, match="budget"):
        parse_budget(budget, 10)


def test_convert_params_types_text_by_the_declarations() -> None:
    assert DSIRSelector.convert_params({"num_buckets": "50", "sampling": "topk"}) == {"num_buckets": 50,
                                                                                      "sampling": "topk"}
    with pytest.raises(InputError, match=r"num_buckets='many' is not allowed \(num_buckets takes a whole number"):
        DSIRSelector.convert_params({"num_buckets": "many"})
    with pytest.raises(InputError, match="no parameter 'k'"):
        KNNSelector.convert_params({"k": "3"})


def test_select_with_vectors_only_uses_row_numbers_as_ids() -> None:
    rng = np.random.default_rng(0)
    x, q = rng.normal(size=(50, 4)), rng.normal(size=(3, 4))
    sel = tasksift.select(pool_vectors=x, target_vectors=q, method="knn", budget=6, metric="l2")
    assert sel.ids == [str(i) for i in sel.indices]
    assert sel.manifest["params"]["metric"] == "l2"
    assert sel.manifest["call"]["pool_vectors"] == "<in memory>"
    df = sel.to_pandas()
    assert list(df.columns) == ["id", "row", "weight", "score", "rank", "reason"]
    assert df["reason"][0]["target"] in (0, 1, 2)


def test_select_with_lists_of_dicts_and_dsir(tmp_path) -> None:
    pool = [{"q": f"stock market report {i}", "a": "x"} for i in range(10)]
    pool += [{"q": f"my cat likes fish {i}", "a": "y"} for i in range(10)]
    target = [{"q": "a cat and fish", "a": "z"}]
    sel = tasksift.select(pool, target, method="dsir", budget=5, template="{q} {a}", sampling="topk",
                          out=tmp_path / "run")
    assert all(i >= 10 for i in sel.indices)
    assert (tmp_path / "run" / "selected.jsonl").exists()
    assert sel.manifest["inputs"]["pool"]["text_rule"].startswith("template")


def test_text_methods_need_records() -> None:
    with pytest.raises(InputError, match="reads text"):
        tasksift.select(pool_vectors=np.ones((3, 2)), target_vectors=np.ones((1, 2)), method="dsir", budget=1)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(InputError, match="unknown engine 'spark'"):
        tasksift.select(pool_vectors=np.ones((3, 2)), target_vectors=np.ones((1, 2)), method="knn", budget=1,
                        engine="spark")


def test_ray_engine_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(InputError, match=r"pip install 'tasksift\[ray\]'") as err:
        tasksift.select(pool_vectors=np.ones((3, 2)), target_vectors=np.ones((1, 2)), method="knn", budget=1,
                        engine="ray")
    assert "\n" not in str(err.value)


def test_gradient_methods_get_gradient_features_from_text() -> None:
    pool = [{"text": f"example {i} about cats" if i % 2 else f"stock report {i}"} for i in range(24)]
    sel = tasksift.select(pool, [{"text": "my cat"}], method="fishersft", budget=3)
    assert sel.manifest["features"]["kind"] == "gradients"
    assert len(sel) == 3


TOPICS = ["my cat likes fish", "the stock market fell", "bake bread with flour", "a goal in the football match"]


def _pool_rows() -> list[dict]:
    return [{"id": f"p{i}", "text": f"{TOPICS[i % 4]} ({i})", "n": i} for i in range(16)]


def _selected(run) -> list[dict]:
    return [json.loads(line) for line in (run / "selected.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["dataset", "iterable", "dataframe"])
def test_select_from_datasets_and_dataframes(tmp_path, kind: str) -> None:
    import datasets
    import pandas as pd

    rows = _pool_rows()
    pool = {"dataset": lambda: datasets.Dataset.from_list(rows),
            "iterable": lambda: datasets.IterableDataset.from_generator(lambda: iter(rows)),
            "dataframe": lambda: pd.DataFrame(rows)}[kind]()
    target = datasets.Dataset.from_list([{"id": "t0", "text": "my cat eats fish"}])
    sel = tasksift.select(pool, target, method="knn", budget=4, id_field="id", out=tmp_path / "run")
    assert sel.ids == [f"p{i}" for i in sel.indices] and all(i % 4 == 0 for i in sel.indices)
    chosen = _selected(tmp_path / "run")
    assert [{k: r[k] for k in ("id", "text", "n")} for r in chosen] == [rows[i] for i in sel.indices]
    assert sel.manifest["call"]["pool"] == "<in memory>"
    assert sel.manifest["inputs"]["pool"]["format"] == ("hf" if kind == "dataset" else "memory")


def test_an_iterable_dataset_is_streamed_not_held(tmp_path) -> None:
    import datasets

    reads = []

    def rows():
        reads.append(0)
        yield from _pool_rows()

    pool = datasets.IterableDataset.from_generator(rows)
    records = load_records(pool, id_field="id")
    assert records.ids == [f"p{i}" for i in range(16)] and records._state is pool and len(reads) == 1
    assert records.take([9, 2]) == [_pool_rows()[9], _pool_rows()[2]] and len(reads) == 2


@pytest.mark.parametrize("layout", ["messages", "sharegpt"])
def test_chat_pools_select_with_knn_without_a_template(tmp_path, layout: str) -> None:
    def chat(question: str, answer: str) -> dict:
        if layout == "messages":
            return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}

    pool = [chat(f"{TOPICS[i % 4]}? ({i})", "yes") for i in range(12)]
    target = [chat("why does my cat like fish?", "it does")]
    sel = tasksift.select(pool, target, method="knn", budget=3, out=tmp_path / "run")
    assert all(i % 4 == 0 for i in sel.indices)
    field = "messages" if layout == "messages" else "conversations"
    assert sel.manifest["inputs"]["pool"]["text_rule"] == f"chat:{field}"
    assert sel.manifest["inputs"]["target"]["text_rule"] == f"chat:{field}"
    assert "text_view" not in sel.manifest["call"]


def test_a_run_on_a_gpu_searches_there_and_a_cpu_run_keeps_faiss() -> None:
    import torch

    from tasksift.api import _search
    from tasksift.engine import get_engine
    from tasksift.index.device import DeviceSearch
    from tasksift.index.searcher import LocalSearch

    engine = get_engine("local")
    on_gpu = _search(engine, torch.device("cuda", 1))  # built without touching a GPU
    assert isinstance(on_gpu, DeviceSearch) and on_gpu.device == torch.device("cuda", 1)
    assert isinstance(_search(engine, torch.device("cpu")), LocalSearch)
    assert isinstance(_search(engine, None), LocalSearch)
