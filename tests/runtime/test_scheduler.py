"""Scheduler: ordering, aging, task grouping, admission, chunking, cancellation, deadlines.

Driven with hand-built model outputs (the test plays the engine), no model involved.
"""

from __future__ import annotations

import pytest

from tinyllm.errors import ConfigError, QueueFullError
from tinyllm.runtime.scheduler import (
    LengthPredictor,
    Request,
    Scheduler,
    SchedulerConfig,
    StepPlan,
)


def req(i: int, task: str = "a", prompt: int = 10, out: int = 8, at: float = 0.0) -> Request:
    return Request(id=i, task=task, prompt_len=prompt, max_new_tokens=out, arrival=at)


def run_step(s: Scheduler, plan: StepPlan, outputs: dict[int, int]) -> list[int]:
    """Play the engine: prefill, decode, finish requests that reached ``outputs[id]`` tokens."""
    finished = []
    for group in plan.prefill:
        for p in group:
            s.prefilled(p.request, p.end)
            if p.end == s.requests[p.request].prompt_len:
                s.decoded(p.request)  # the prefill's logits give the first token
    for i in plan.decode:
        r = s.requests[i]
        if r.generated < outputs.get(i, r.max_new_tokens):  # the engine skips a finished row
            s.decoded(i)
    for i, r in list(s.requests.items()):
        if r.generated >= outputs.get(i, r.max_new_tokens):
            s.finish(i)
            finished.append(i)
    return finished


def test_shortest_predicted_work_runs_first() -> None:
    s = Scheduler(SchedulerConfig(max_rows=1, aging=0.0))
    s.predictor.observe("long", 10, 30)
    s.predictor.observe("short", 10, 2)
    for i, task in enumerate(["long", "short", "long", "short"]):
        s.admit(req(i, task, out=40))
    order = []
    for step in range(200):
        order += run_step(s, s.schedule(now=step * 0.01), {0: 30, 1: 2, 2: 30, 3: 2})
    assert order == [1, 3, 0, 2]


def test_aging_lets_long_work_overtake_new_short_work() -> None:
    config = SchedulerConfig(max_rows=1, aging=50.0)
    s = Scheduler(config)
    s.predictor.observe("long", 10, 30)
    s.predictor.observe("short", 10, 2)
    s.admit(req(0, "long", out=40, at=0.0))
    order, now, next_id = [], 0.0, 1
    for _ in range(300):
        # a steady stream of fresh short requests that would starve the long one forever
        if len(s.waiting) < 3:
            s.admit(req(next_id, "short", out=40, at=now))
            next_id += 1
        order += run_step(s, s.schedule(now), {i: 2 for i in range(1, 1000)} | {0: 30})
        now += 0.05
    assert 0 in order  # served although shorter work kept arriving
    without = Scheduler(SchedulerConfig(max_rows=1, aging=0.0))
    without.predictor = s.predictor
    without.admit(req(0, "long", out=40, at=0.0))
    order, now = [], 0.0
    for _ in range(300):
        if len(without.waiting) < 3:
            without.admit(req(next_id, "short", out=40, at=now))
            next_id += 1
        order += run_step(without, without.schedule(now), {0: 30} | {i: 2 for i in range(1, 5000)})
        now += 0.05
    assert 0 not in order  # the control: without aging it starves


def test_at_most_beta_tasks_per_step_and_every_task_progresses() -> None:
    s = Scheduler(SchedulerConfig(max_rows=6, max_tasks_per_step=2, aging=1.0))
    for i, task in enumerate(["a", "b", "c", "a", "b", "c"]):
        s.admit(req(i, task, out=5))
    done: list[int] = []
    for step in range(100):
        plan = s.schedule(now=step * 0.1)
        tasks = {s.requests[i].task for i in plan.decode}
        tasks |= {s.requests[p.request].task for g in plan.prefill for p in g}
        assert len(tasks) <= 2
        done += run_step(s, plan, {})
    assert sorted(done) == list(range(6))


def test_similar_lengths_prefill_together_in_contiguous_rows() -> None:
    s = Scheduler(SchedulerConfig(max_rows=4, length_ratio=1.5, aging=0.0))
    for i, length in enumerate([10, 12, 40, 11]):
        s.admit(req(i, prompt=length))
    plan = s.schedule(0.0)
    assert len(plan.prefill) == 1
    group = plan.prefill[0]
    assert [p.request for p in group] == [0, 3, 1]  # the 40-token prompt waits
    assert [p.row for p in group] == [0, 1, 2] and all(p.start == 0 for p in group)
    run_step(s, plan, {})
    plan = s.schedule(0.1)
    assert [[p.request for p in g] for g in plan.prefill] == [[2]]
    assert plan.decode == [0, 1, 3, 2]  # 2 decodes right after its prefill, in the same step


def test_long_prompt_prefills_in_chunks_while_others_decode() -> None:
    s = Scheduler(SchedulerConfig(max_rows=2, chunk_size=16, prefill_tokens=32, aging=0.0))
    s.admit(req(0, prompt=8, out=20))
    run_step(s, s.schedule(0.0), {})
    s.admit(req(1, prompt=40, out=4))
    chunks, decodes = [], []
    for step in range(1, 5):
        plan = s.schedule(step * 0.1)
        assert 0 in plan.decode  # the running request never freezes
        chunks += [(p.start, p.end) for g in plan.prefill for p in g if p.request == 1]
        decodes.append(1 in plan.decode)
        run_step(s, plan, {})
    assert chunks == [(0, 16), (16, 32), (32, 40)]
    assert decodes == [False, False, True, True]  # from the step of its last chunk on
    assert s.requests[1].decoding and s.requests[1].row == 1


def test_full_queue_is_an_immediate_error_and_nothing_is_lost() -> None:
    s = Scheduler(SchedulerConfig(max_rows=2, queue_size=3))
    for i in range(2):
        s.admit(req(i))
    s.schedule(0.0)  # both take a row: the queue is empty again
    for i in range(2, 5):
        s.admit(req(i))
    with pytest.raises(QueueFullError, match=r"queue is full \(3 waiting, 2 running\)"):
        s.admit(req(5))
    assert sorted(s.requests) == [0, 1, 2, 3, 4]
    done: list[int] = []
    for step in range(100):
        done += run_step(s, s.schedule(step * 0.1), {})
    assert sorted(done) == [0, 1, 2, 3, 4]


def test_cancel_and_deadline_free_rows() -> None:
    s = Scheduler(SchedulerConfig(max_rows=1))
    s.admit(req(0, out=50))
    s.admit(Request(1, "a", 10, 5, arrival=0.0, deadline=0.5))
    s.admit(req(2, out=3))
    run_step(s, s.schedule(0.0), {})
    running = s.running[0].id
    s.cancel(running)
    plan = s.schedule(0.1)
    assert [r.id for r in plan.cancelled] == [running]
    run_step(s, plan, {})
    plan = s.schedule(1.0)  # request 1's deadline passed, wherever it is
    assert [r.id for r in plan.expired] == [1] and 1 not in s.requests
    done: list[int] = []
    while s.requests:
        done += run_step(s, s.schedule(1.0), {})
    assert set(done) | {running, 1} == {0, 1, 2}
    assert s.free_rows == [True]


def test_fifo_runs_static_batches_in_arrival_order() -> None:
    s = Scheduler(SchedulerConfig(max_rows=2, policy="fifo"))
    for i, length in enumerate([5, 50, 7]):
        s.admit(req(i, prompt=length, out=3 + i))
    plan = s.schedule(0.0)
    assert [p.request for p in plan.prefill[0]] == [0, 1] and plan.prefill[0][1].end == 50
    run_step(s, plan, {})
    steps = 0
    while 1 in s.requests:
        plan = s.schedule(0.1)
        assert not plan.prefill  # nobody joins a running static batch
        run_step(s, plan, {})
        steps += 1
    plan = s.schedule(0.2)
    # Request 1's 4 tokens: its prefill's and one decode in the first step, then 2 steps.
    assert [p.request for p in plan.prefill[0]] == [2] and steps == 2


def test_length_predictor_learns_task_mean_and_input_slope() -> None:
    p = LengthPredictor(decay=0.2)
    assert p.predict("t", 10, 64) == 32.0  # no data: half the limit
    for x in [10, 20, 30, 40] * 10:
        p.observe("t", x, x // 2 + 3)
    assert p.predict("t", 20, 64) == pytest.approx(13.0, abs=0.5)
    assert p.predict("t", 60, 64) == pytest.approx(33.0, abs=1.5)
    assert p.predict("t", 500, 64) == 64.0  # capped by the request's limit
    p.observe("u", 10, 4)
    assert p.predict("u", 99, 64) == 4.0  # one observation: no slope yet


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="max_tasks_per_step must be >= 1"):
        SchedulerConfig(max_tasks_per_step=0)
    with pytest.raises(ConfigError, match=r"prefill_tokens .* must be >= chunk_size"):
        SchedulerConfig(chunk_size=64, prefill_tokens=32)
    with pytest.raises(ConfigError, match="scheduler must be 'continuous' or 'fifo'"):
        SchedulerConfig(policy="lifo")  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["continuous", "fifo"])
def test_random_workloads_keep_the_invariants(policy: str) -> None:
    import random

    rng = random.Random(policy)
    config = SchedulerConfig(
        max_rows=4, queue_size=6, max_tasks_per_step=2, chunk_size=8, prefill_tokens=16
    )
    s = Scheduler(SchedulerConfig(**{**config.__dict__, "policy": policy}))
    outputs, admitted, ended, next_id = {}, set(), set(), 0
    for step in range(400):
        now = step * 0.01
        for _ in range(rng.randint(0, 2)):
            if step > 300:
                break
            r = req(next_id, rng.choice("abc"), prompt=rng.randint(1, 30), out=20, at=now)
            if rng.random() < 0.1:
                r.deadline = now + rng.random() * 0.2
            try:
                s.admit(r)
                admitted.add(next_id)
                outputs[next_id] = rng.randint(1, 20)
            except QueueFullError:
                pass
            next_id += 1
        if rng.random() < 0.05 and s.requests:
            s.cancel(rng.choice(sorted(s.requests)))
        plan = s.schedule(now)
        ended |= {r.id for r in plan.expired + plan.cancelled}
        rows = [p.row for g in plan.prefill for p in g]
        assert len(rows) == len(set(rows))  # no row twice in one step
        for group in plan.prefill:
            assert [p.row for p in group] == list(range(group[0].row, group[0].row + len(group)))
            assert len(group) == 1 or all(p.start == 0 for p in group)
        held = [r.row for r in s.running]
        assert len(held) == len(set(held)) and sum(not f for f in s.free_rows) == len(held)
        if policy == "continuous":
            tasks = {s.requests[i].task for i in plan.decode}
            tasks |= {s.requests[p.request].task for g in plan.prefill for p in g}
            assert len(tasks) <= 2
        ended |= set(run_step(s, plan, outputs))
    assert not s.requests and ended == admitted  # every admitted request ended exactly once
    assert s.free_rows == [True] * 4
