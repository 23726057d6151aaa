"""Greedy tokens of tinyllm's fp32 engine against transformers on real sentences.

    .venv/bin/python benchmarks/decode_parity.py --models smollm2-135m --prompts 20

Both stop at end-of-sequence (transformers' min_new_tokens would forbid it while the
engine's ignore_eos only keeps going, so neither is used here). JSON goes to
``out/bench/parity-NAME.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from peers import prepare

import tinyllm
from tinyllm.runtime import Engine, GenerationConfig

OUT = Path("out/bench")


def greedy_parity(bundle: Path, engine_path: Path, count: int, new_tokens: int) -> dict[str, Any]:
    """fp32 engine vs transformers greedy generation on ``count`` real sentences."""
    from importlib import resources

    import torch

    corpus = resources.files("tinyllm").joinpath("tokenizer_corpus.txt").read_text("utf-8")
    texts = [line for line in corpus.splitlines() if len(line) > 30][:count]
    engine = Engine.load(engine_path, max_batch=1)
    loaded = tinyllm.load_torch_model(bundle)
    stops = engine.stop_ids
    same = 0
    for text in texts:
        ids = engine.encode(text)
        ours = engine.generate_ids([ids], GenerationConfig(max_new_tokens=new_tokens))[0].token_ids
        with torch.inference_mode():
            out = loaded.model.generate(
                torch.tensor([ids]),
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=sorted(stops),
                pad_token_id=0,
            )
        theirs = out[0, len(ids) :].tolist()
        while theirs and theirs[-1] in stops:
            theirs.pop()
        same += ours == theirs
    return {"prompts": len(texts), "identical": same, "new_tokens": new_tokens}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-0.5b-shape")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name in args.models.split(","):
        engine = prepare(name, "fp32", ["tinyllm"], OUT)["tinyllm"]
        assert isinstance(engine, Path), engine
        result = greedy_parity(OUT / f"{name}.tllm", engine, args.prompts, args.new_tokens)
        print(
            f"{name} fp32 engine vs transformers: {result['identical']}/{result['prompts']} "
            "prompts give identical greedy tokens"
        )
        (OUT / f"parity-{name}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
