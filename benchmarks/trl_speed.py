"""Training speed: the trl backend against our own loop, same recipe, same model, same data.

Trains one task's LoRA (SFT) with `tinyllm.distill.sft.train_lora` (own) and
`tinyllm.distill.trlbackend.train_lora_trl` (trl), in interleaved rounds, on a fresh copy of
the model each time, and prints steps/s of each and the ratio trl / own (the issue's
target: >= 0.8). ``--method grpo`` times GRPO instead (`distill.grpo.train_grpo_lora`
against `distill.trlgrpo.train_grpo_lora_trl`: groups of 4 answers of up to 4 tokens
per prompt, the task's verifier-plus-metric reward). The time includes each backend's
set-up per task (the trainer, the dataset), as a distillation run pays it. ``--clock cpu``
times the process's CPU seconds instead of the wall clock: on a loaded machine, with
``OMP_NUM_THREADS=1``, it counts the work each backend does rather than its share of the
cores.

    python benchmarks/trl_speed.py --bundle out/smollm2.tllm --steps 20 --rounds 2
    python benchmarks/trl_speed.py --method grpo --steps 10 --batch-size 2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


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


def steps_per_second(
    bundle: Path, backend: str, steps: int, batch: int, method: str = "sft"
) -> float:
    """Steps/s of one LoRA training run of ``steps`` steps on a fresh model."""
    import tinyllm
    from tinyllm.distill.grpo import GRPOConfig, train_grpo_lora
    from tinyllm.distill.sft import TrainConfig, train_lora
    from tinyllm.distill.trlbackend import train_lora_trl
    from tinyllm.distill.trlgrpo import train_grpo_lora_trl
    from tinyllm.distill.trlrun import TrlOptions

    loaded = tinyllm.load_torch_model(bundle)
    config = TrainConfig(steps=steps, batch_size=batch, lr=1e-3, warmup=2, max_len=96)
    data = examples(4 * batch)
    grpo = GRPOConfig(group_size=4, max_new_tokens=4)
    start = clock()
    if method == "grpo" and backend == "own":
        train_grpo_lora(loaded.model, loaded.tokenizer, task(), data, config, grpo)
    elif method == "grpo":
        options = TrlOptions(tensorboard=False)
        train_grpo_lora_trl(loaded.model, loaded.tokenizer, task(), data, config, grpo, options)
    elif backend == "own":
        train_lora(loaded.model, loaded.tokenizer, task(), data, config)
    else:
        train_lora_trl(
            loaded.model, loaded.tokenizer, task(), data, config, TrlOptions(tensorboard=False)
        )
    return steps / (clock() - start)


def measure(
    bundle: Path, steps: int, batch: int, rounds: int, method: str = "sft"
) -> dict[str, float]:
    """Best steps/s of each backend over ``rounds`` interleaved rounds, after a warm-up."""
    steps_per_second(bundle, "trl", 2, batch, method)  # warm-up: imports, first calls
    best = {"own": 0.0, "trl": 0.0}
    for _ in range(rounds):
        for backend in best:
            rate = steps_per_second(bundle, backend, steps, batch, method)
            best[backend] = max(best[backend], rate)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="Default: tiny-llama.")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--method", choices=["sft", "grpo"], default="sft")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--json", type=Path, default=None, help="also write the rates here")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    import tinyllm

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or tinyllm.import_model("tiny-llama", Path(tmp) / "t.tllm").path
        best = measure(bundle, args.steps, args.batch_size, args.rounds, args.method)
    for backend, rate in best.items():
        print(f"{backend:>4}: {rate:.2f} steps/s")
    print(f"trl / own ({args.method}): {best['trl'] / best['own']:.2f}x")
    if args.json:
        settings = {"method": args.method, "steps": args.steps, "batch_size": args.batch_size}
        settings |= {"rounds": args.rounds, "bundle": str(args.bundle or "tiny-llama")}
        settings["clock"] = args.clock
        ratio = best["trl"] / best["own"]
        record = {"settings": settings, "steps_per_s": best, "trl_over_own": ratio}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
