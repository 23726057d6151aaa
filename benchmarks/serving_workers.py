"""One process per peer of benchmarks/multitask_serving.py (so peak memory is its own).

python serving_workers.py MODE CONFIG_JSON   # prints one JSON line
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from serving_setup import build, random_adapter, task_specs
from serving_trace import TraceRequest, drive, make_trace, to_json, windows

SEED = 0


def peak_rss_mib() -> float:
    """VmHWM: this process's peak resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def traces(config: dict[str, Any], names: list[str]) -> dict[str, list[TraceRequest]]:
    """The same trace per rate in every worker (same seed)."""
    return {
        f"{rate:.3f}": make_trace(names, config["n"], rate, SEED, **lengths(config))
        for rate in config["rates"]
    }


def lengths(config: dict[str, Any]) -> dict[str, Any]:
    """Length parameters of make_trace from the config."""
    keys = ("mean_out", "max_out", "max_words")
    return {k: config[k] for k in keys}


def load_shared(
    paths: dict[str, Path], config: dict[str, Any], policy: str, cache: bool = True
) -> Any:
    from tinyllm.runtime import Engine

    return Engine.load(
        paths["shared"],
        max_batch=config["max_batch"],
        max_seq_len=config["serve_seq_len"],
        queue_size=4 * config["n"],
        scheduler=policy,
        prefix_cache_mb=64.0 if cache else 0.0,
        threads=config.get("threads"),
    )


def engine_submit(engines: dict[str, Any]) -> Any:
    def submit(r: TraceRequest) -> Future[Any]:
        return engines[r.task].submit(r.task, r.text, max_new_tokens=r.max_new_tokens)

    return submit


def run_rates(submit: Any, config: dict[str, Any], names: list[str]) -> dict[str, Any]:
    drive(make_trace(names, 4, 1000.0, SEED + 1, max_out=8), submit)  # warm-up
    return {rate: to_json(drive(trace, submit)) for rate, trace in traces(config, names).items()}


def calibrate(paths: dict[str, Path], config: dict[str, Any]) -> dict[str, Any]:
    """Unloaded single-stream TTFT and time per output token on the shared engine."""
    from tinyllm.runtime import GenerationConfig

    engine = load_shared(paths, config, "continuous")
    engine.run("task0", "warm up", max_new_tokens=4)
    # A task-like prompt, with a fixed output length (end-of-sequence ignored).
    prompt = [{"role": "user", "content": " ".join(["the room was clean"] * 6)}]
    ttfts, tpots = [], []
    for _ in range(3):
        out = engine.complete(prompt, GenerationConfig(max_new_tokens=32, ignore_eos=True))
        ttfts.append(out.ttft_s)
        tpots.append((out.latency_s - out.ttft_s) / max(out.output_tokens - 1, 1))
    engine.close()
    return {"ttft_s": min(ttfts), "tpot_s": min(tpots), "peak_rss_mib": peak_rss_mib()}


def shared_mode(
    paths: dict[str, Path], config: dict[str, Any], policy: str, cache: bool = True
) -> dict[str, Any]:
    """(a) continuous or (b) fifo on one engine with a LoRA slot per task; ``cache``:
    the per-task prefix cache (off for the ``nocache`` peer)."""
    names = [s.name for s in task_specs(config["tasks"], shots=config.get("shots", 0))]
    engine = load_shared(paths, config, policy, cache)
    result: dict[str, Any] = {
        "runs": run_rates(engine_submit({n: engine for n in names}), config, names)
    }
    if policy == "continuous" and cache and config.get("add_task"):
        result["add_under_load"] = add_under_load(engine, config, names)
    result["prefix_cache"] = engine.stats()["prefix_cache"]
    engine.close()
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def add_under_load(engine: Any, config: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Add a task halfway through a trace at the highest rate; throughput around the add."""
    import dataclasses

    new = dataclasses.replace(task_specs(1, shots=config.get("shots", 0))[0], name="added")
    rate = max(config["rates"])
    # The added task is the most popular once it exists (before that its requests go to
    # task0), so the add is exercised by many requests.
    trace = make_trace(["added", *names], 2 * config["n"], rate, SEED + 2, **lengths(config))
    at = trace[len(trace) // 2].arrival_s
    trace = [
        dataclasses.replace(r, task="task0") if r.task == "added" and r.arrival_s < at else r
        for r in trace
    ]
    added: dict[str, float] = {}
    adapter = random_adapter(engine.bundle, seed=100)

    def tick(t: float) -> None:
        if t >= at and not added:
            start = time.perf_counter()
            engine.add_task(new, adapter)
            added["t"], added["seconds"] = t, time.perf_counter() - start

    done = drive(trace, engine_submit({n: engine for n in [*names, "added"]}), tick)
    width = max(at / 2, 1.0)
    before, during = windows(done, [added["t"] - width, added["t"], added["t"] + width])
    return {
        "rate": rate,
        "add_seconds": added["seconds"],
        "tok_s_before": before,
        "tok_s_after": during,
        "dip": 1.0 - during / before if before else 0.0,
        "failed": sum(1 for c in done if c.error),
        "errors": sorted({c.error for c in done if c.error})[:3],
        "added_task_requests": sum(1 for c in done if c.task == "added" and not c.error),
        "requests": len(done),
    }


def merged_mode(paths: dict[str, Path], config: dict[str, Any], count: int) -> dict[str, Any]:
    """(c) one engine per task, adapter merged; ``count=1`` is the one-model baseline."""
    from tinyllm.runtime import Engine

    names = [s.name for s in task_specs(config["tasks"], shots=config.get("shots", 0))][:count]
    engines = {
        n: Engine.load(
            paths[n],
            max_batch=config["max_batch"],
            max_seq_len=config["serve_seq_len"],
            queue_size=4 * config["n"],
        )
        for n in names
    }
    runs = run_rates(engine_submit(engines), config, names) if count > 1 else {}
    if count == 1:
        engines[names[0]].run(names[0], "warm up the one model", max_new_tokens=16)
    for e in engines.values():
        e.close()
    return {"runs": runs, "peak_rss_mib": peak_rss_mib()}


class HFPeftServer:
    """(d) transformers + peft: FIFO static batches, each row with its own adapter."""

    def __init__(self, paths: dict[str, Path], config: dict[str, Any]) -> None:
        import torch
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        import tinyllm
        from tinyllm.adapters import PROJECTIONS, to_peft_state_dict

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        loaded = tinyllm.load_torch_model(paths["shared"])
        specs = task_specs(config["tasks"], shots=config.get("shots", 0))
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=list(PROJECTIONS), lora_dropout=0.0)
        model = get_peft_model(loaded.model, lora, adapter_name=specs[0].name)
        bundle = tinyllm.open_bundle(paths["shared"])
        for spec in specs:
            if spec.name != specs[0].name:
                model.add_adapter(spec.name, lora)
            state = {
                k: torch.from_numpy(v)
                for k, v in to_peft_state_dict(bundle.adapter(spec.name)).items()
            }
            set_peft_model_state_dict(model, state, adapter_name=spec.name)
        self.model, self.tok = model.eval(), loaded.tokenizer
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.specs = {s.name: s for s in specs}
        self.max_batch = config["max_batch"]
        self.inbox: queue.Queue[tuple[TraceRequest, Future[Any], float]] = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

    def submit(self, r: TraceRequest) -> Future[Any]:
        future: Future[Any] = Future()
        self.inbox.put((r, future, time.perf_counter()))
        return future

    def _loop(self) -> None:
        while True:
            batch = [self.inbox.get()]
            while len(batch) < self.max_batch and not self.inbox.empty():
                batch.append(self.inbox.get())
            try:
                self._generate(batch)
            except Exception as e:  # report, never lose a request
                for _, future, _ in batch:
                    future.set_exception(e)

    def _generate(self, batch: list[tuple[TraceRequest, Future[Any], float]]) -> None:
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList

        from tinyllm.tasks import conversation

        first: list[float] = []

        class FirstToken(LogitsProcessor):
            def __call__(self, ids: Any, scores: Any) -> Any:
                if not first:
                    first.append(time.perf_counter())
                return scores

        texts = [
            self.tok.apply_chat_template(
                conversation(self.specs[r.task], r.text, []),
                tokenize=False,
                add_generation_prompt=True,
            )
            for r, _, _ in batch
        ]
        enc = self.tok(texts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=max(r.max_new_tokens for r, _, _ in batch),
                do_sample=False,
                adapter_names=[r.task for r, _, _ in batch],
                logits_processor=LogitsProcessorList([FirstToken()]),
                pad_token_id=self.tok.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        for (r, future, sent), ids in zip(batch, new, strict=True):
            ids = ids[: r.max_new_tokens]
            if self.tok.eos_token_id in ids:
                ids = ids[: ids.index(self.tok.eos_token_id)]
            future.set_result(_Out(len(ids), first[0] - sent))


class _Out:
    def __init__(self, output_tokens: int, ttft_s: float) -> None:
        self.output_tokens, self.ttft_s = output_tokens, ttft_s


def hf_mode(paths: dict[str, Path], config: dict[str, Any]) -> dict[str, Any]:
    names = [s.name for s in task_specs(config["tasks"], shots=config.get("shots", 0))]
    server = HFPeftServer(paths, config)
    return {"runs": run_rates(server.submit, config, names), "peak_rss_mib": peak_rss_mib()}


def cpp_mode(paths: dict[str, Path], config: dict[str, Any]) -> dict[str, Any]:
    """``cpp``: the C++ runtime's server (libtinyllm, ``make cpp``) on the shared bundle,
    as ``continuous`` runs it: one engine with a LoRA slot per task, the same rows,
    context, queue and prefix cache. TTFT is submit to the first streamed piece of text
    (libtinyllm streams text, not tokens). A waiter thread per request in flight turns
    the C request into a future."""
    from concurrent.futures import ThreadPoolExecutor

    from tinyllm.runtime.native import NativeEngine, load_library
    from tinyllm.runtime.nativeserver import NativeServer

    names = [s.name for s in task_specs(config["tasks"], shots=config.get("shots", 0))]
    engine = NativeEngine(
        load_library(),
        paths["shared"],
        max_batch=config["max_batch"],
        max_seq_len=config["serve_seq_len"],
        threads=config.get("threads") or 0,
    )
    server = NativeServer(engine, queue_size=4 * config["n"], prefix_cache_mb=64.0)
    waiters = ThreadPoolExecutor(max_workers=4 * config["n"] + config["max_batch"])

    def submit(r: TraceRequest) -> Future[Any]:
        sent, first = time.perf_counter(), []

        def on_text(piece: str) -> bool:
            if piece and not first:
                first.append(time.perf_counter())
            return True

        request = server.submit(r.task, r.text, r.max_new_tokens, on_text=on_text)

        def wait() -> _Out:
            tokens = len(request.wait().token_ids)
            return _Out(tokens, (first[0] if first else time.perf_counter()) - sent)

        return waiters.submit(wait)

    result: dict[str, Any] = {"runs": run_rates(submit, config, names)}
    waiters.shutdown()
    server.close()
    engine.close()
    result["peak_rss_mib"] = peak_rss_mib()
    return result


WORKERS = {
    "calibrate": lambda p, c: calibrate(p, c),
    "continuous": lambda p, c: shared_mode(p, c, "continuous"),
    "nocache": lambda p, c: shared_mode(p, c, "continuous", cache=False),
    "fifo": lambda p, c: shared_mode(p, c, "fifo"),
    "merged": lambda p, c: merged_mode(p, c, c["tasks"]),
    "one": lambda p, c: merged_mode(p, c, 1),
    "hf": hf_mode,
    "cpp": cpp_mode,
}


if __name__ == "__main__":
    mode, raw = sys.argv[1], json.loads(sys.argv[2])
    paths = build(
        raw["model"],
        raw["tasks"],
        raw["max_seq_len"],
        shots=raw.get("shots", 0),
        quant=raw.get("quant"),
    )
    print(json.dumps(WORKERS[mode](paths, raw)), flush=True)
    os._exit(0)  # skip interpreter teardown: torch's threads may abort it
