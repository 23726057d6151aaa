"""Training speed: the trl backend against our own loop, same recipe, same model, same data.

Trains one task's LoRA (SFT) with `tinyllm.distill.sft.train_lora` (own) and
`tinyllm.distill.trlbackend.train_lora_trl` (trl), in interleaved rounds, on a fresh copy of
the model each time, and prints steps/s of each and the ratio trl / own (the issue's
target: >= 0.8). The time includes each backend's set-up per task (the trainer, the
dataset), as a distillation run pays it.

    python benchmarks/trl_speed.py --bundle out/smollm2.tllm --steps 20 --rounds 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def examples(n: int) -> list:
    from tinyllm.tasks import Example

    words = ["red", "green", "blue"]
    return [Example(f"item {i} is {words[i % 3]}", words[i % 3]) for i in range(n)]


def task() -> object:
    from tinyllm.tasks import task_from_dict

    return task_from_dict(
        {
            "name": "color",
            "description": "name the colour",
            "instruction": "Answer with the colour.",
            "template": "Colour: {input}",
            "output": {"kind": "label", "labels": ["red", "green", "blue"], "max_new_tokens": 4},
            "verifiers": ["label_in_set"],
            "metric": "accuracy",
            "data": {"train": "t.jsonl", "validation": "v.jsonl", "test": "x.jsonl"},
        },
        "benchmark task",
    )


def steps_per_second(bundle: Path, backend: str, steps: int, batch: int) -> float:
    """Steps/s of one LoRA training run of ``steps`` steps on a fresh model."""
    import tinyllm
    from tinyllm.distill.sft import TrainConfig, train_lora
    from tinyllm.distill.trlbackend import TrlOptions, train_lora_trl

    loaded = tinyllm.load_torch_model(bundle)
    config = TrainConfig(steps=steps, batch_size=batch, lr=1e-3, warmup=2, max_len=96)
    data = examples(4 * batch)
    start = time.perf_counter()
    if backend == "own":
        train_lora(loaded.model, loaded.tokenizer, task(), data, config)
    else:
        train_lora_trl(
            loaded.model, loaded.tokenizer, task(), data, config, TrlOptions(tensorboard=False)
        )
    return steps / (time.perf_counter() - start)


def measure(bundle: Path, steps: int, batch: int, rounds: int) -> dict[str, float]:
    """Best steps/s of each backend over ``rounds`` interleaved rounds, after a warm-up."""
    steps_per_second(bundle, "trl", 2, batch)  # warm-up: imports, first calls
    best = {"own": 0.0, "trl": 0.0}
    for _ in range(rounds):
        for backend in best:
            best[backend] = max(best[backend], steps_per_second(bundle, backend, steps, batch))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="Default: tiny-llama.")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import tinyllm

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or tinyllm.import_model("tiny-llama", Path(tmp) / "t.tllm").path
        best = measure(bundle, args.steps, args.batch_size, args.rounds)
    for backend, rate in best.items():
        print(f"{backend:>4}: {rate:.2f} steps/s")
    print(f"trl / own: {best['trl'] / best['own']:.2f}x")


if __name__ == "__main__":
    main()
