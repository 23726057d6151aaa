"""Serving: per-row adapters equal one-by-one, concurrent mixed tasks, dynamic tasks under
load, admission, deadlines, cancellation, shutdown, streaming and async."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinyllm
from tinyllm.errors import (
    ConfigError,
    DeadlineExceededError,
    EngineClosedError,
    PromptTooLongError,
    QueueFullError,
    UnknownTaskError,
)
from tinyllm.runtime import Engine, GenerationConfig, TaskOutput

INPUTS = [
    "The room was spotless",
    "Book a table for two in Oslo on Friday at 8pm",
    "hey can u send me the report",
    "Terrible service, cold food and a rude waiter who ignored us all evening.",
    "ok",
]
TASKS = ["sentiment", "booking", "rewrite"]
LONG = GenerationConfig(max_new_tokens=200, ignore_eos=True)


def test_engine_json_has_default_lora_slots(served: Path) -> None:
    info = json.loads((served / "engines" / "onnx-cpu-fp32" / "engine.json").read_text())
    assert (info["lora_slots"], info["lora_rank"]) == (5, 4)  # 2 adapters + base + 2 spare


def test_rows_with_different_adapters_equal_one_by_one(served: Path) -> None:
    engine = Engine.load(served, max_batch=4)
    server = engine._serving()
    session, slots = server.session, server.router.slots
    prompts = [server.router.route(t, INPUTS[i], None, None).prompt for i, t in enumerate(TASKS)]
    lora = np.array([slots[t] for t in TASKS])
    assert sorted(lora.tolist()) == [0, 1, 2]  # rewrite has no adapter: the base model
    alone = [
        session.prefill_rows(0, [p], [0], lora[i : i + 1])[0].copy() for i, p in enumerate(prompts)
    ]
    together = session.prefill_rows(1, prompts, [0, 0, 0], lora).copy()  # rows 1..3
    for i in range(3):
        np.testing.assert_allclose(together[i], alone[i], atol=1e-4)
    base = session.prefill_rows(0, [prompts[0]], [0], np.array([0]))[0]
    assert np.abs(base - alone[0]).max() > 1e-2  # the adapter changes the model
    # One decode step over all rows (row 0 idle) equals each row's step alone.
    step = session.decode([0, 5, 6, 7], [0, *map(len, prompts)], np.array([0, *lora]))[1:].copy()
    for i, p in enumerate(prompts):
        session.prefill_rows(0, [p], [0], lora[i : i + 1])
        one = session.decode([5 + i], [len(p)], lora[i : i + 1])[0]
        np.testing.assert_allclose(step[i], one, atol=1e-4)


def reference(served: Path) -> dict[tuple[str, str], TaskOutput]:
    """Every (task, input) served alone, one at a time."""
    engine = Engine.load(served, max_batch=1)
    out = {(t, x): engine.run(t, x) for t in TASKS for x in INPUTS}
    assert engine.stats()["peak_batch_rows"] == 1
    engine.close()
    return out


@pytest.fixture(scope="module")
def alone(served: Path) -> dict[tuple[str, str], TaskOutput]:
    return reference(served)


def test_concurrent_mixed_tasks_equal_one_by_one(served: Path, alone: dict) -> None:
    engine = Engine.load(
        served, max_batch=4, max_tasks_per_step=2, chunk_size=32, prefill_tokens=64
    )
    results: dict[tuple[str, str], TaskOutput] = {}

    def client(task: str) -> None:
        futures = {x: engine.submit(task, x) for x in INPUTS}
        results.update({(task, x): f.result() for x, f in futures.items()})

    threads = [threading.Thread(target=client, args=(t,)) for t in TASKS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key, expected in alone.items():
        got = results[key]
        assert (got.text, got.output_tokens, got.finish_reason) == (
            expected.text,
            expected.output_tokens,
            expected.finish_reason,
        ), key
    stats = engine.stats()
    assert stats["completed"] == len(alone) and stats["failed"] == 0
    assert stats["tasks"]["booking"] == {"submitted": len(INPUTS), "completed": len(INPUTS)}
    assert stats["output_tokens"] == sum(o.output_tokens for o in alone.values())
    assert stats["peak_batch_rows"] >= 2  # the concurrent requests shared model runs
    engine.close()


def test_outputs_are_parsed_by_kind(alone: dict) -> None:
    sentiment = alone["sentiment", INPUTS[0]]
    assert sentiment.valid and sentiment.value in ("positive", "negative", "neutral")
    assert sentiment.ttft_s > 0 and sentiment.latency_s >= sentiment.ttft_s
    for out in alone.values():  # a random model: invalid outputs say why, never pass on
        assert out.valid == (out.error is None)
        assert out.valid or out.value is None


def test_fifo_policy_gives_the_same_results(served: Path, alone: dict) -> None:
    engine = Engine.load(served, max_batch=3, scheduler="fifo")
    futures = {(t, x): engine.submit(t, x) for x in INPUTS for t in TASKS}
    assert {k: f.result().text for k, f in futures.items()} == {k: v.text for k, v in alone.items()}
    engine.close()


def test_long_prompt_chunks_while_others_decode(served: Path) -> None:
    text = " ".join(INPUTS[:3])
    whole = Engine.load(served, max_batch=2).run("rewrite", text)
    engine = Engine.load(served, max_batch=2, chunk_size=16, prefill_tokens=16)
    other = engine.submit_complete("hello", LONG)
    chunked = engine.run("rewrite", text)
    assert chunked.prompt_tokens > 48 and chunked.text == whole.text
    assert len(other.result().text) > 0
    engine.close()


class _Counted(threading.Condition):
    """A condition with a counter: requests the load clients got answered."""

    n = 0


def test_add_and_remove_tasks_under_concurrent_load(
    served: Path, alone: dict, random_adapter: Any
) -> None:
    engine = Engine.load(served, max_batch=4)
    spec = tinyllm.api.load_tasks().task("intent")
    adapter = random_adapter(engine.bundle.config, 3, ("q_proj", "gate_proj"), 7)
    stop = threading.Event()
    failures: list[BaseException] = []
    mismatches: list[tuple[str, str]] = []
    served_count = _Counted()

    def load() -> None:
        i = 0
        while not stop.is_set():
            task, x = TASKS[i % 3], INPUTS[i % 5]
            i += 1
            try:
                out = engine.run(task, x)
            except UnknownTaskError:  # the removed task: rejected at once, keep going
                continue
            except BaseException as e:  # any other failure fails the test
                failures.append(e)
                return
            if out.text != alone[task, x].text:
                mismatches.append((task, x))
            with served_count:
                served_count.n += 1
                served_count.notify_all()

    clients = [threading.Thread(target=load) for _ in range(3)]
    for c in clients:
        c.start()
    engine.add_task(spec, adapter)
    added = [engine.run("intent", x) for x in INPUTS]
    in_flight = [engine.submit("sentiment", x) for x in INPUTS]
    engine.remove_task("sentiment")
    with pytest.raises(
        UnknownTaskError,
        match="unknown task 'sentiment'; this engine serves: booking, intent, rewrite",
    ):
        engine.submit("sentiment", INPUTS[0])
    removed = [f.result() for f in in_flight]  # requests in flight still finish, unchanged
    assert [r.text for r in removed] == [alone["sentiment", x].text for x in INPUTS]
    engine.remove_task("intent")
    with pytest.raises(UnknownTaskError, match="unknown task 'intent'"):
        engine.remove_task("intent")
    engine.add_task(spec, adapter)  # the freed slot is filled again
    again = [engine.run("intent", x) for x in INPUTS]
    with served_count:  # the clients keep being served after the re-add
        base = served_count.n
        assert served_count.wait_for(lambda: served_count.n >= base + 2 * len(clients), 60)
    stop.set()
    for c in clients:
        c.join()
    assert not failures and not mismatches
    assert [a.text for a in again] == [a.text for a in added]
    fresh = Engine.load(served, max_batch=1)
    fresh.add_task(spec, adapter)
    assert [fresh.run("intent", x).text for x in INPUTS] == [a.text for a in added]
    base = Engine.load(served, max_batch=1)
    base.add_task(spec)  # no adapter: the base model, which answers differently
    assert [base.run("intent", x).text for x in INPUTS] != [a.text for a in added]
    for e in (engine, fresh, base):
        e.close()


def test_full_queue_is_an_immediate_error(served: Path) -> None:
    engine = Engine.load(served, max_batch=1, queue_size=2)
    session = engine._serving().session
    entered, release = threading.Event(), threading.Event()
    decode = session.decode

    def held(*args: Any, **kwargs: Any) -> Any:  # the loop stops in its first decode step
        entered.set()
        release.wait(timeout=120)
        return decode(*args, **kwargs)

    session.decode = held  # type: ignore[method-assign]
    accepted: list[Future[TaskOutput]] = [engine.submit_complete("hello", LONG)]
    rejected: list[str] = []

    def submit_more() -> None:
        for _ in range(7):
            try:
                accepted.append(engine.submit_complete("hello", LONG))
            except QueueFullError as e:
                rejected.append(str(e))

    try:
        assert entered.wait(timeout=60)  # the first request runs; no room is freed from here
        more = threading.Thread(target=submit_more)
        more.start()
        more.join(timeout=60)  # a submit that waited for room would wait for ever
        assert not more.is_alive(), "a submit waited for room"
    finally:
        release.set()
    assert len(accepted) == 3 and len(rejected) == 5  # 1 running, 2 waiting, the rest refused
    assert all("queue is full (2 waiting, 1 running)" in r for r in rejected)
    assert all(len(f.result().text) > 0 for f in accepted)  # nothing accepted is lost
    assert engine.stats()["rejected"] == 5
    engine.close()


def test_deadline_and_cancel(served: Path) -> None:
    engine = Engine.load(served, max_batch=1)
    with pytest.raises(DeadlineExceededError, match="passed its deadline"):
        engine.complete("hello", LONG, deadline_s=0.0)
    with pytest.raises(DeadlineExceededError):
        engine.complete("hello", LONG, deadline_s=0.02)  # expires while decoding
    running = engine.submit_complete("hello", LONG)
    queued = engine.submit_complete("hello again", LONG)
    assert queued.cancel() and queued.cancelled()
    stream = engine.stream_complete("a third one", LONG)
    first = next(stream)
    stream.close()  # the consumer went away: the request is cancelled
    assert first and len(running.result().text) > 0
    server = engine._serving()  # the loop notifies its condition after every step
    with server.cond:
        assert server.cond.wait_for(lambda: server.stats()["cancelled"] == 2, timeout=60)
    stats = engine.stats()
    assert (stats["cancelled"], stats["failed"], stats["running"]) == (2, 2, 0)
    engine.close()


def test_close_drains_then_every_call_fails(served: Path) -> None:
    engine = Engine.load(served, max_batch=2)
    futures = [engine.submit(t, x) for t in TASKS for x in INPUTS[:2]]
    engine.close()
    assert all(isinstance(f.result(timeout=0), TaskOutput) for f in futures)
    for call in (
        lambda: engine.run("sentiment", "x"),
        lambda: engine.submit_complete("x"),
        lambda: engine.add_task(tinyllm.api.load_tasks().task("intent")),
        lambda: engine.generate("x"),
    ):
        with pytest.raises(EngineClosedError, match="the engine is closed"):
            call()
    engine.close()  # twice is fine
    abrupt = Engine.load(served, max_batch=1)
    pending = [abrupt.submit_complete("hello", LONG) for _ in range(3)]
    abrupt.close(drain=False)
    with pytest.raises(EngineClosedError, match="closed before this request finished"):
        pending[-1].result()


def test_bad_requests_are_clear_errors(served: Path, exported: Path, random_adapter: Any) -> None:
    engine = Engine.load(served, max_seq_len=64)
    with pytest.raises(
        UnknownTaskError,
        match="unknown task 'summary'; this engine serves: booking, rewrite, sentiment",
    ):
        engine.run("summary", "x")
    with pytest.raises(
        PromptTooLongError, match=r"the prompt has \d+ tokens; the engine's context is 64"
    ):
        engine.run("rewrite", "word " * 80)
    with pytest.raises(ConfigError, match="task 'rewrite' is already served"):
        engine.add_task(engine.tasks["rewrite"])
    big = random_adapter(engine.bundle.config, 8, ("q_proj",), 0)
    with pytest.raises(ConfigError, match="adapter rank 8 exceeds the engine's LoRA rank 4"):
        engine.add_task(tinyllm.api.load_tasks().task("intent"), big)
    small = random_adapter(engine.bundle.config, 2, ("q_proj",), 0)
    for name in ("intent", "dates"):  # the two spare slots
        engine.add_task(tinyllm.api.load_tasks().task(name), small)
    assert engine.stats()["adapter_slots_free"] == 0
    with pytest.raises(ConfigError, match="all 4 adapter slots are taken; remove a task first"):
        engine.add_task(tinyllm.api.load_tasks().task("arithmetic"), small)
    assert "arithmetic" not in engine.tasks
    engine.close()
    plain = Engine.load(exported)  # no tasks, no LoRA slots: completions still serve
    assert (
        plain.tasks == {}
        and plain.complete("hello", GenerationConfig(max_new_tokens=3)).output_tokens <= 3
    )
    with pytest.raises(ConfigError, match="this engine has no LoRA slots"):
        plain.add_task(tinyllm.api.load_tasks().task("intent"), big)
    plain.close()
    # The standard flavour rides the same decode loop (its KV rows are emulated).
    three = GenerationConfig(max_new_tokens=3, ignore_eos=True)
    standard = Engine.load(exported, engine="onnx-standard-fp32").complete("hello", three)
    assert standard.token_ids == Engine.load(exported).complete("hello", three).token_ids


def test_streaming_and_async_equal_run(served: Path, alone: dict) -> None:
    engine = Engine.load(served, max_batch=4)
    for task in TASKS:
        stream = engine.stream_task(task, INPUTS[1])
        assert stream.output is None
        assert "".join(stream) == alone[task, INPUTS[1]].text
        assert stream.output is not None and stream.output.text == alone[task, INPUTS[1]].text
        assert stream.output.output_tokens == alone[task, INPUTS[1]].output_tokens

    async def main() -> tuple[list[TaskOutput], str]:
        outs = await asyncio.gather(*(engine.arun(t, INPUTS[3]) for t in TASKS))
        stream = engine.astream_task("rewrite", INPUTS[3])
        pieces = [p async for p in stream]
        assert stream.output is not None and stream.output.text == "".join(pieces)
        return list(outs), "".join(pieces)

    outs, streamed = asyncio.run(main())
    assert [o.text for o in outs] == [alone[t, INPUTS[3]].text for t in TASKS]
    assert streamed == alone["rewrite", INPUTS[3]].text
    engine.close()


def test_a_failed_step_fails_its_requests_and_serving_goes_on(
    served: Path, alone: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine.load(served, max_batch=2)
    session = engine._serving().session
    real = session.decode
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated ONNX Runtime failure")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "decode", flaky)
    with pytest.raises(tinyllm.TinyLLMError, match="the engine step failed: simulated"):
        engine.complete("hello", LONG)
    assert engine.run("rewrite", INPUTS[0]).text == alone["rewrite", INPUTS[0]].text
    assert engine.stats()["failed"] == 1
    engine.close()


def test_export_lora_defaults_follow_the_adapters(
    tiny_qwen2_bundle: Path, tmp_path: Path, random_adapter: Any
) -> None:
    from tinyllm.facade.export import lora_defaults as _lora_defaults

    suite = tinyllm.api.load_tasks()
    config = tinyllm.open_bundle(tiny_qwen2_bundle).config
    adapters = {"sentiment": random_adapter(config, 3, ("q_proj",), 0)}
    tasks = suite.select(["sentiment", "intent"])
    separate = tinyllm.api.add_tasks(tiny_qwen2_bundle, tmp_path / "s.tllm", tasks, adapters)
    merged = tinyllm.api.add_tasks(
        tiny_qwen2_bundle, tmp_path / "m.tllm", tasks, adapters, lora_mode="merged"
    )
    assert _lora_defaults(separate, None, None, 2) == (4, 3)  # adapter + base + 2 spare
    assert _lora_defaults(separate, 6, None, 0) == (6, 3)
    assert _lora_defaults(merged, None, None, 2) == (0, 0)  # merged: every task is slot 0
    assert _lora_defaults(tinyllm.open_bundle(tiny_qwen2_bundle), None, None, 2) == (0, 0)
    with pytest.raises(ConfigError, match="lora_spare must be >= 0"):
        _lora_defaults(separate, None, None, -1)


def test_generate_keeps_working_beside_serving(served: Path, alone: dict) -> None:
    engine = Engine.load(served, max_batch=2)
    greedy = GenerationConfig(max_new_tokens=16, ignore_eos=True)
    expected = engine.generate(INPUTS[:2], greedy)
    futures = [engine.submit(t, x) for t in TASKS for x in INPUTS[:3]]
    side = engine.generate(INPUTS[:2], greedy)  # its own KV cache: serving is undisturbed
    assert [g.token_ids for g in side] == [g.token_ids for g in expected]
    assert [f.result().text for f in futures] == [
        alone[t, x].text for t in TASKS for x in INPUTS[:3]
    ]
    engine.close()


def test_exit_with_requests_in_flight_and_no_close_exits_cleanly(exported: Path) -> None:
    """A script that fills the queue and exits without closing its engine: the decode loop
    was stopped inside ONNX Runtime at finalization and the process aborted ("terminate
    called without an active exception", exit 134). Exit now closes the loop first."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        from tinyllm.errors import QueueFullError
        from tinyllm.runtime import Engine, GenerationConfig
        engine = Engine.load({str(exported)!r}, engine="onnx-cpu-fp32", max_batch=2,
                             queue_size=4)
        config = GenerationConfig(max_new_tokens=64)
        futures = []
        try:
            for i in range(50):
                futures.append(engine.submit_complete(f"hello {{i}}", config))
        except QueueFullError:
            pass
        print("submitted", len(futures), flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    submitted = int(done.stdout.split("submitted ")[1])
    assert submitted >= 4 and "terminate called" not in done.stderr  # the queue was full


@pytest.mark.parametrize("name", ["onnx-cpu-fp32", "onnx-standard-fp32"])
def test_staggered_prefills_decode_no_placeholder_rows(exported: Path, name: str) -> None:
    """Eight prompts whose prefills end in two steps (the prefill budget fits four): each
    decode run computes only rows that take a token (rows 4-7 decode in the step of their
    prefill, and the last run covers rows 4-7 alone), with the tokens of one-by-one runs.
    The loop used to run all eight rows from the first decode on: 48 rows for 40 tokens."""
    engine = Engine.load(
        exported, engine=name, max_batch=8, chunk_size=32, prefill_tokens=32, prefix_cache_mb=0
    )
    session = engine.session
    runs: list[tuple[int, int]] = []
    decode = session.decode

    def spy(tokens: Any, *args: Any, **kwargs: Any) -> Any:
        runs.append((kwargs.get("start", 0), len(tokens)))
        return decode(tokens, *args, **kwargs)

    session.decode = spy  # type: ignore[method-assign]
    rng = np.random.default_rng(3)
    prompts = [[int(i) for i in rng.integers(5, 500, 8)] for _ in range(8)]
    config = GenerationConfig(max_new_tokens=6, ignore_eos=True)
    server = engine._serving()
    with server.cond:  # all eight arrive before the loop plans its first step
        futures = [engine.submit_ids(p, config) for p in prompts]
    outputs = [list(f.result().token_ids) for f in futures]
    stats = engine.stats()
    engine.close()
    assert runs == [(0, 4), (0, 8), (0, 8), (0, 8), (0, 8), (4, 4)]
    assert sum(n for _, n in runs) == 8 * 5  # 5 decoded tokens a row (1 from its prefill)
    assert stats["decode_runs"] == 6 and stats["decode_rows"] == 40
    assert stats["decode_placeholder_rows"] == 0
    alone = Engine.load(exported, engine=name, max_batch=1, prefix_cache_mb=0)
    assert outputs == [alone.generate_ids([p], config)[0].token_ids for p in prompts]
    alone.close()


def test_the_step_recorder_counts_only_rows_that_decoded(exported: Path) -> None:
    """A request whose one token comes from its prefill is planned to decode in that step
    but skipped: the profiler's steps count it in no decode run (it used to count it)."""
    from tinyllm.runtime.steprecorder import PhaseRecorder, TimedSession

    engine = Engine.load(exported, engine="onnx-cpu-fp32", max_batch=4, prefix_cache_mb=0)
    timed = TimedSession(engine.session.sess)
    engine.session.use_session(timed)
    recorder = PhaseRecorder(timed)
    engine.record(recorder)
    server = engine._serving()
    prompts = [[11, 12, 13, 14], [21, 22, 23], [31, 32, 33, 34, 35]]
    budgets = [1, 1, 3]  # 0, 0 and 2 decoded tokens
    with server.cond:  # all three arrive before the loop plans its first step
        futures = [
            engine.submit_ids(p, GenerationConfig(max_new_tokens=n, ignore_eos=True))
            for p, n in zip(prompts, budgets, strict=True)
        ]
    lengths = [len(f.result().token_ids) for f in futures]
    engine.record(None)
    recorder.settle()
    engine.close()
    assert lengths == budgets
    assert sum(step.decode_rows for step in recorder.steps) == 2
    assert sum(step.prefill_rows for step in recorder.steps) == 3
