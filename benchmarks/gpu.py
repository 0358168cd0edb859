"""The prepared GPU check: one command, at most 8 minutes on one GPU, one table.

    python benchmarks/gpu.py [--device cuda] [--out DIR] [--budget-s 440] [--parts embed,gradients,train,search]
                             [--rows 10000000] [--lm DIR]
    python benchmarks/gpu.py --cpu-smoke [--out DIR]

Parts, each in a process of its own that is stopped at its time cap, so that the whole stays within the budget
(rows a part finished before its cap are kept; the table says which part was stopped):

- ``embed``: all-MiniLM-L6-v2 rows/s on the GPU (float16, length-sorted batches) over 4,096 texts and on the CPU
  over the first 512 of the same texts, and the largest difference between the two's rows;
- ``gradients``: per-example LoRA gradients of the MiniLM proxy (raw rows, one batched forward and backward pass
  per batch), rows/s on the GPU over 1,024 texts and on the CPU over the first 128 of them; the same for the
  gradient selectors' default proxy, a causal LM of SmolLM2-135M's shape on (prompt, response) pairs with the
  prompt masked, over 512 pairs on the GPU and the first 16 on the CPU; then the whole cached feature path
  (``gradient_features``: proxy on the GPU, projection to 8,192 on the CPU) on the GPU;
- ``train``: one instruction-track evaluation (``evaluate``: a LoRA finetuning, then the option scoring of the
  test items) on the GPU: steps/s and items/s;
- ``search``: ``tasksift.select`` with ``knn`` (exact) and ``tsds`` on 10,000,000 x 384 clustered unit vectors
  with 500 targets, with ``device`` set: exact neighbour searches and TSDS's range searches by torch matrix
  products on the GPU (:mod:`tasksift.index.device`).

The GPU machine reaches no network, so the texts are made up from a seeded vocabulary of syllable words (12 to
160 words, so that batches sorted by length matter), and the causal LM is randomly initialised with
SmolLM2-135M-Instruct's shape (30 layers, width 576, vocabulary 49,152) over a word-level tokenizer of those
words; ``--lm DIR`` trains a real Hugging Face causal LM instead. Features, warm-ups and trainings go to a
temporary cache, so nothing is reused from an earlier run.

Without a GPU the command exits with code 2 and one line. ``--cpu-smoke`` runs every part on the CPU at a
cut-down size (seconds), which is how the command is tested on a machine without a GPU. Results: ``gpu.json`` and
``gpu.md`` in ``--out`` (default ``benchmarks/results/``), rewritten after every part.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

RESULTS = Path(__file__).parent / "results"
PARTS = ("embed", "gradients", "train", "search")
#: the sizes of a GPU run and of the CPU smoke run
SIZES: dict[str, dict[str, Any]] = {
    "gpu": {"embed_texts": 4096, "embed_cpu_texts": 512, "grad_texts": 1024, "grad_cpu_texts": 128,
            "grad_lm_texts": 512, "grad_lm_cpu_texts": 16,
            "proj_dim": 8192, "lm": "smollm2-shape", "pool": 4000, "test": 256, "steps": 100, "batch": 8,
            "max_length": 128, "rows": 10_000_000, "targets": 500, "budget": 10_000, "clusters": 1000},
    "cpu-smoke": {"embed_texts": 32, "embed_cpu_texts": 16, "grad_texts": 16, "grad_cpu_texts": 8,
                  "grad_lm_texts": 8, "grad_lm_cpu_texts": 4, "proj_dim": 64,
                  "lm": "tiny", "pool": 24, "test": 8, "steps": 2, "batch": 4, "max_length": 32, "rows": 5000,
                  "targets": 20, "budget": 50, "clusters": 20},
}
#: seconds each part may take at most on a GPU run (the search part takes what is left of the budget)
CAPS = {"embed": 90.0, "gradients": 90.0, "train": 120.0, "search": float("inf")}
Record = Callable[[dict[str, Any]], None]


# -- made-up data ----------------------------------------------------------------------------------------------
def vocabulary(n: int = 2000, seed: int = 0) -> list[str]:
    """``n`` distinct pronounceable words of two to four syllables, seeded."""
    import numpy as np

    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    rng = np.random.default_rng(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        words["".join(rng.choice(syllables, size=int(rng.integers(2, 5))))] = None
    return list(words)


def make_texts(n: int, seed: int, words: list[str] | None = None) -> list[str]:
    """``n`` texts of 12 to 160 words, lengths spread log-uniformly."""
    import numpy as np

    words = words or vocabulary()
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.uniform(np.log(12), np.log(160), size=n)).astype(int)
    return [" ".join(rng.choice(words, size=int(k))).capitalize() + "." for k in lengths]


def clustered(rows: int, dim: int, clusters: int, targets: int, device: Any, seed: int) -> tuple[Any, Any]:
    """``rows`` unit vectors around ``clusters`` seeded centres (made on ``device`` in chunks), and ``targets``
    unit vectors around the first two centres, as numpy arrays."""
    import numpy as np
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=gen, device=device)

    def around(owner: torch.Tensor) -> np.ndarray:
        x = centres[owner] + 0.6 * torch.randn(len(owner), dim, generator=gen, device=device)
        return torch.nn.functional.normalize(x, dim=1).cpu().numpy()

    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 1 << 20):
        k = min(1 << 20, rows - start)
        out[start:start + k] = around(torch.randint(0, clusters, (k,), generator=gen, device=device))
    return out, around(torch.arange(targets, device=device) % 2)


# -- the parts (each runs in a process of its own) -------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def _speedup(rates: dict[str, float], where: str) -> str:
    """``; the first device N.Nx the CPU`` once both rates are known."""
    first = next(iter(rates))
    return f"; {first} {rates[first] / rates[where]:.1f}x the CPU" if where == "cpu" and len(rates) == 2 else ""


def part_embed(device: Any, size: dict[str, Any], record: Record) -> None:
    """MiniLM on the device over every text, then on the CPU over the first ``embed_cpu_texts`` of them."""
    import numpy as np

    from tasksift.features import Embedder

    texts = make_texts(size["embed_texts"], seed=0)
    rows: dict[str, Any] = {}
    rates: dict[str, float] = {}
    for where, n in dict.fromkeys([(str(device), len(texts)), ("cpu", size["embed_cpu_texts"])]):
        embedder = Embedder(device=where)
        embedder.encode(texts[:64])  # loads the model and warms the kernels up
        rows[where], seconds = _timed(lambda e=embedder, n=n: e.encode(texts[:n]))
        rates[where] = n / seconds
        note = "float16, length-sorted batches" if embedder.half else "float32"
        if where == "cpu" and len(rows) == 2:
            diff = float(np.abs(rows[str(device)][:n] - rows["cpu"]).max())
            note += f"; the first {n:,} texts of the same set; largest |GPU - CPU| {diff:.1e}"
        record({"part": "embeddings (MiniLM)", "where": where, "size": f"{n:,} texts", "seconds": seconds,
                "rate": rates[where], "unit": "rows/s", "note": note + _speedup(rates, where)})


def part_gradients(device: Any, size: dict[str, Any], record: Record) -> None:
    import torch

    from tasksift.features.gradients import gradient_features, load_proxy

    texts = make_texts(size["grad_texts"], seed=1)
    proxy = load_proxy(None)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # as after a warm-up: peft starts lora_B at zero, which zeroes half the gradient
        for name, p in proxy.module.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
    _time_gradients(proxy, texts, [(str(device), len(texts)), ("cpu", size["grad_cpu_texts"])], 32,
                    "per-example gradients (MiniLM LoRA, raw)", "texts", "batches of 32, rows copied to the CPU",
                    record)
    _pair_gradients(device, size, record)
    with tempfile.TemporaryDirectory() as cache:
        _, seconds = _timed(lambda: gradient_features(texts, proj_dim=size["proj_dim"], batch_size=32,
                                                      cache_dir=cache, progress=False, device=device))
    record({"part": "gradient features (cached path)", "where": str(device), "size": f"{len(texts):,} texts",
            "seconds": seconds, "rate": len(texts) / seconds, "unit": "rows/s",
            "note": f"model loading and projection to {size['proj_dim']:,} (on the CPU) included"})


def _pair_gradients(device: Any, size: dict[str, Any], record: Record) -> None:
    """Per-example LoRA gradients of a causal LM of SmolLM2's shape on (prompt, response) pairs, prompt masked."""
    from tasksift.features.gradients import load_proxy
    from tasksift.features.gradients.pairs import join_pairs

    words = vocabulary(400)
    n_gpu, n_cpu = size["grad_lm_texts"], size["grad_lm_cpu_texts"]
    prompts = make_texts(n_gpu, seed=3, words=words)
    responses = [" ".join(p.split()[:3]) for p in prompts]
    pairs = join_pairs(prompts, responses)
    with tempfile.TemporaryDirectory() as tmp:
        proxy = load_proxy(_random_lm(Path(tmp) / "lm", words, size["lm"]), max_length=size["max_length"])
        _time_gradients(proxy, pairs, [(str(device), n_gpu), ("cpu", n_cpu)], 16,
                        "per-example gradients (SmolLM2-shape LoRA, response only, raw)", "pairs",
                        f"batches of 16, {size['max_length']} tokens", record)


def _time_gradients(proxy: Any, texts: list[str], runs: list[tuple[str, int]], batch: int, part: str, what: str,
                    note: str, record: Record) -> None:
    """Rows/s of ``proxy.gradients`` over the first ``n`` texts (longest first, batches of ``batch``) on each
    ``(device, n)`` of ``runs``, recorded as ``part``; the last rows carry the speed-up against the first."""
    import numpy as np

    rates: dict[str, float] = {}
    for where, n in dict.fromkeys(runs):
        proxy.to(where)
        proxy.gradients(texts[:2])
        order = np.argsort([-len(t) for t in texts[:n]], kind="stable")

        def run(count: int = n, order: Any = order) -> None:
            for start in range(0, count, batch):
                proxy.gradients([texts[i] for i in order[start:start + batch]])

        _, seconds = _timed(run)
        rates[where] = n / seconds
        record({"part": part, "where": where, "size": f"{n:,} {what}, {proxy.dim:,} values/row", "seconds": seconds,
                "rate": rates[where], "unit": "rows/s", "note": note + _speedup(rates, where)})


def _random_lm(folder: Path, words: list[str], shape: str) -> Path:
    """A randomly initialised Llama with a word-level tokenizer over ``words``, saved to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate([*words, "?", "."])}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")
    dims = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
            "num_key_value_heads": 3, "vocab_size": 49152} if shape == "smollm2-shape" else {
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": len(vocab)}
    config = LlamaConfig(**dims, max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=0,
                         eos_token_id=2, bos_token_id=None)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder


def _instruction_task(folder: Path, words: list[str], pool: int, test: int) -> Path:
    """A made-up instruction task: which word of a list comes first, four options per test item."""
    import numpy as np

    rng = np.random.default_rng(2)
    rows = []
    for _ in range(pool + test):
        picked = [str(w) for w in rng.choice(words, size=int(rng.integers(4, 12)), replace=False)]
        rows.append({"instruction": "Which word comes first ?", "input": " ".join(picked), "output": picked[0],
                     "options": picked[:4]})
    folder.mkdir(parents=True)
    for name, part in (("pool.jsonl", rows[:pool]), ("test.jsonl", rows[pool:]), ("target.jsonl", rows[:4])):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    spec = {"name": "first-word", "kind": "instruction", "metric": "accuracy", "pool": "pool.jsonl",
            "text_template": "{instruction}\n{input}\n{output}", "prompt_template": "{instruction}\n{input}\n",
            "answer_field": "output", "options_field": "options"}
    (folder / "task.json").write_text(json.dumps(spec), encoding="utf-8")
    return folder


def part_train(device: Any, size: dict[str, Any], record: Record, lm: str | None = None) -> None:
    from tasksift.eval.harness import evaluate
    from tasksift.util.device import uses_bf16

    words = vocabulary(400)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = lm or _random_lm(root / "lm", words, size["lm"])
        task = _instruction_task(root / "task", words, size["pool"], size["test"])
        settings = {"batch_size": size["batch"], "max_length": size["max_length"], "eval_batch_size": 16}
        result = evaluate(task, "full", seeds=[0], model=model, max_steps=size["steps"], settings=settings,
                          out=root / "eval", device=device, progress=False)
    run = result["runs"]["0"]
    shape = Path(lm).name if lm else {"smollm2-shape": "SmolLM2-135M shape", "tiny": "tiny Llama"}[size["lm"]]
    record({"part": "instruction track: LoRA training", "where": str(device),
            "size": f"{run['train']['steps']} steps x {size['batch']} pairs, {shape}",
            "seconds": run["train"]["seconds"], "rate": run["train"]["steps"] / run["train"]["seconds"],
            "unit": "steps/s",
            "note": f"max_length {size['max_length']}; {'bfloat16 autocast' if uses_bf16(device) else 'float32'}"})
    record({"part": "instruction track: option scoring", "where": str(device),
            "size": f"{size['test']:,} items x 4 options", "seconds": run["eval_seconds"],
            "rate": size["test"] / run["eval_seconds"], "unit": "items/s", "note": "each prompt run once"})


def part_search(device: Any, size: dict[str, Any], record: Record) -> None:
    import tasksift

    (x, q), seconds = _timed(lambda: clustered(size["rows"], 384, size["clusters"], size["targets"], device, 0))
    label = f"{size['rows']:,} x 384"
    record({"part": "search data (clustered unit vectors)", "where": str(device), "size": label,
            "seconds": seconds, "rate": size["rows"] / seconds, "unit": "rows/s", "note": "made on the device"})
    for method, params in (("knn", {"index": "flat"}), ("tsds", {})):
        sel, seconds = _timed(lambda m=method, p=params: tasksift.select(
            pool_vectors=x, target_vectors=q, method=m, budget=size["budget"], seed=0, device=device, **p))
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in sel.manifest.get("timings", {}).items())
        on = "GPU" if getattr(device, "type", str(device)) == "cuda" else "CPU"
        record({"part": f"{method} selection (search on the {on})", "where": str(device), "size": f"{label}, "
                f"{size['targets']} targets, budget {size['budget']:,}", "seconds": seconds,
                "rate": size["rows"] / seconds, "unit": "pool rows/s", "note": stages})


def _child(name: str, device: str, size: dict[str, Any], path: str, lm: str | None) -> None:
    """Run one part, appending each finished row to the JSON file at ``path``."""
    from tasksift.train.common import setup_torch
    from tasksift.util.device import resolve_device

    setup_torch()
    rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        tmp.replace(path)

    where = resolve_device(device)
    if name == "train":
        part_train(where, size, record, lm)
    else:
        {"embed": part_embed, "gradients": part_gradients, "search": part_search}[name](where, size, record)


# -- the driver -------------------------------------------------------------------------------------------------
def run_parts(args: argparse.Namespace, size: dict[str, Any], report: dict[str, Any], write: Callable[[], None]
              ) -> None:
    deadline = time.monotonic() + args.budget_s
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TASKSIFT_CACHE"] = str(Path(tmp) / "cache")  # nothing reused from earlier runs
        for name in args.parts:
            left = deadline - time.monotonic()
            if left < 10:
                report["parts"][name] = {"status": "skipped: the time budget is spent", "seconds": 0.0}
                write()
                continue
            cap = min(CAPS[name], left)
            path = str(Path(tmp) / f"{name}.json")
            child = context.Process(target=_child, args=(name, args.device, size, path, args.lm), daemon=True)
            t0 = time.monotonic()
            child.start()
            child.join(cap)
            status = "done" if child.exitcode == 0 else f"failed (exit code {child.exitcode})"
            if child.is_alive():
                child.kill()
                child.join()
                status = f"stopped at its time cap ({cap:.0f} s)"
            rows = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else []
            report["rows"] += rows
            report["parts"][name] = {"status": status, "seconds": round(time.monotonic() - t0, 1)}
            write()


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU check: {report['device'].get('name', report['device']['device'])} ({report['mode']})", "",
             "| part | where | size | seconds | rate | note |", "|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['part']} | {row['where']} | {row['size']} | {row['seconds']:.2f} | "
                     f"{row['rate']:,.1f} {row['unit']} | {row['note']} |")
    lines += ["", "| part | status | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {p['status']} | {p['seconds']:.1f} |" for name, p in report["parts"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="the GPU: cuda (default) or cuda:N")
    parser.add_argument("--cpu-smoke", action="store_true", help="every part on the CPU at a cut-down size")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--rows", type=int, default=None, help="pool rows of the search part (default 10,000,000)")
    parser.add_argument("--budget-s", type=float, default=440.0, help="seconds for all parts together")
    parser.add_argument("--lm", default=None, help="a Hugging Face causal-LM directory for the train part")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu.json and gpu.md")
    args = parser.parse_args(argv)
    import torch

    from tasksift.util.device import device_info, resolve_device
    from tasksift.util.errors import InputError

    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"--parts takes some of {', '.join(PARTS)}")
    if args.cpu_smoke:
        args.device = "cpu"
    try:
        where = resolve_device(args.device)
        if where.type != "cuda" and not args.cpu_smoke:
            raise InputError(f"--device {args.device} is not a GPU")
    except InputError as err:
        print(f"gpu.py: error: {err.what} (run it where torch sees a GPU, or pass --cpu-smoke for the cut-down "
              "CPU run)", file=sys.stderr)
        return 2
    mode = "cpu-smoke" if args.cpu_smoke else "gpu"
    size = {**SIZES[mode], **({"rows": args.rows} if args.rows else {})}
    report: dict[str, Any] = {"benchmark": "gpu", "mode": mode, "device": device_info(where), "sizes": size,
                              "budget_s": args.budget_s, "torch": torch.__version__, "cpu_count": os.cpu_count(),
                              "python": platform.python_version(), "parts": {}, "rows": []}
    args.out.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (args.out / "gpu.md").write_text(markdown(report), encoding="utf-8")

    t0 = time.monotonic()
    run_parts(args, size, report, write)
    report["seconds"] = round(time.monotonic() - t0, 1)
    write()
    print(markdown(report), end="")
    print(f"written: {args.out / 'gpu.json'}, {args.out / 'gpu.md'} ({report['seconds']:.0f} s)")
    return 0 if all(p["status"] == "done" for p in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
