"""A task removed and added back while requests for it are routed (issue #18): every
request gets its answer or a clear 404 naming the task, never an internal error, and a
slot still finishing a removed task's requests is waited for, not reported as taken.

Hooks on the tokenizer hold a thread at a chosen point of ``add_task`` or of routing, so
each interleaving happens every run instead of once in a long soak.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tinyllm
from tinyllm.errors import ConfigError, UnknownTaskError
from tinyllm.runtime import Engine
from tinyllm.runtime.openai_app import BackgroundServer, create_app

INTENT = tinyllm.api.load_tasks().task("intent")
TEXT = "wake me up at seven tomorrow"


@pytest.fixture()
def engine(served: Path, random_adapter: Any) -> Iterator[tuple[Engine, Any]]:
    engine = Engine.load(served, max_batch=2)
    adapter = random_adapter(engine.bundle.config, 3, ("q_proj", "gate_proj"), 7)
    yield engine, adapter
    engine.close()


def hold_in(engine: Engine, method: str, thread: Callable[[], bool]) -> tuple[Any, Any]:
    """Make the tokenizer's ``method`` stop once, on the thread ``thread()`` accepts, until
    released: (entered, release) events."""
    tok = engine._serving().router.tokenizer
    real = getattr(tok, method)
    entered, release = threading.Event(), threading.Event()

    def held(*args: Any) -> Any:
        if thread() and not entered.is_set():
            entered.set()
            assert release.wait(30), "the test never released the held thread"
        return real(*args)

    setattr(tok, method, held)
    return entered, release


def add_in_background(engine: Engine, adapter: Any) -> tuple[threading.Thread, Any, Any]:
    """``add_task(intent)`` on a thread, held while it renders the task's prompt."""
    adder = threading.Thread(target=engine.add_task, args=(INTENT, adapter))
    entered, release = hold_in(
        engine, "apply_chat_template", lambda: threading.current_thread() is adder
    )
    adder.start()
    assert entered.wait(30), "add_task never rendered the task's prompt"
    return adder, entered, release


def test_a_request_for_a_task_being_added_is_unknown_until_it_is_ready(engine) -> None:
    engine, adapter = engine
    adder, _, release = add_in_background(engine, adapter)
    # add_task is half way: before the fix the router had the spec but not its prompt
    # table, and routing raised KeyError (an HTTP 500).
    with pytest.raises(UnknownTaskError, match="unknown task 'intent'; this engine serves"):
        engine.run("intent", TEXT)
    release.set()
    adder.join(30)
    out = engine.run("intent", TEXT)
    assert out.task == "intent" and out.output_tokens > 0


def test_over_http_a_task_being_added_is_a_404_naming_it_not_a_500(engine) -> None:
    engine, adapter = engine
    with BackgroundServer(create_app(engine)) as server:
        adder, _, release = add_in_background(engine, adapter)
        status, body = post(server.url, "intent")
        assert status == 404, body
        assert body["error"]["code"] == "model_not_found" and "'intent'" in body["error"]["message"]
        release.set()
        adder.join(30)
        status, body = post(server.url, "intent")
        assert status == 200 and body["choices"][0]["message"]["content"]
        metrics = urllib.request.urlopen(f"{server.url}/metrics", timeout=30).read().decode()
        assert 'tinyllm_requests_total{task="intent",status="404"} 1' in metrics
        assert 'tinyllm_requests_total{task="intent",status="200"} 1' in metrics


def post(url: str, model: str) -> tuple[int, dict[str, Any]]:
    body = {"model": model, "messages": [{"role": "user", "content": TEXT}], "max_tokens": 4}
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("readd", [False, True])
def test_a_task_removed_while_a_request_is_routed(engine, readd: bool) -> None:
    engine, adapter = engine
    engine.add_task(INTENT, adapter)
    main = threading.current_thread()
    router = engine._serving().router
    real = router.tokenizer.encode
    done = threading.Event()

    def encode(text: str) -> list[int]:  # routing tokenizes after it looked the task up
        if threading.current_thread() is main and not done.is_set():
            done.set()
            engine.remove_task("intent")
            if readd:  # back in the same slot: the route is still right
                engine.add_task(INTENT, adapter)
        return real(text)

    router.tokenizer.encode = encode  # type: ignore[method-assign]
    if readd:
        out = engine.run("intent", TEXT)
        assert out.task == "intent" and out.output_tokens > 0
    else:
        with pytest.raises(UnknownTaskError, match="'intent' was removed while the request"):
            engine.run("intent", TEXT)
    assert done.is_set()


def retire_both_spare_slots(engine: Engine, adapter: Any) -> list[Any]:
    """Add, request and remove intent twice while the decode loop is held (call with
    ``server.cond`` held): both spare slots finish a removed task's request."""
    futures = []
    for _ in range(2):
        engine.add_task(INTENT, adapter)
        futures.append(engine.submit("intent", TEXT))
        engine.remove_task("intent")  # its slot is retired until the request ends
    assert engine.stats()["adapter_slots_free"] == 0 and not any(f.done() for f in futures)
    return futures


def test_add_task_waits_for_a_slot_still_finishing_a_removed_tasks_requests(engine) -> None:
    engine, adapter = engine
    with engine._serving().cond:  # the decode loop waits for this lock: requests stay
        futures = retire_both_spare_slots(engine, adapter)
        # Before the fix: "all 4 adapter slots are taken" at once, though two were about
        # to free. Now it waits (releasing the lock, so the loop finishes them).
        engine.add_task(INTENT, adapter)
    assert all(f.result(30).output_tokens > 0 for f in futures)
    assert engine.run("intent", TEXT).task == "intent"
    suite = tinyllm.api.load_tasks()
    engine.add_task(suite.task("dates"), adapter)  # the other freed slot
    with pytest.raises(ConfigError, match="all 4 adapter slots are taken; remove a task"):
        engine.add_task(suite.task("arithmetic"), adapter)  # none retired: no wait


def test_add_task_gives_up_on_draining_slots_after_wait_s(engine) -> None:
    engine, adapter = engine
    with engine._serving().cond:
        futures = retire_both_spare_slots(engine, adapter)
        with pytest.raises(
            ConfigError, match="all 4 adapter slots are taken and 2 of them still finish"
        ):
            engine.add_task(INTENT, adapter, wait_s=0)  # no wait: the lock stays held
    assert all(f.result(30).output_tokens > 0 for f in futures)
    assert "intent" not in engine.tasks


def test_add_task_renders_outside_the_serving_lock(engine) -> None:
    """While add_task renders a new task's prompt (held here), a request for another task
    is admitted, decoded and answered: the loop and ``submit`` never wait for the render.
    Before the fix the render ran holding ``server.cond`` and the request waited."""
    engine, adapter = engine
    suite = tinyllm.api.load_tasks()
    engine.add_task(suite.task("dates"), adapter)
    adder, _, release = add_in_background(engine, adapter)  # held inside the render
    outputs, answered = [], threading.Event()

    def request() -> None:
        outputs.append(engine.run("dates", TEXT))
        answered.set()

    runner = threading.Thread(target=request)
    runner.start()
    try:
        assert answered.wait(20), "the request waited for add_task's render"
        assert adder.is_alive()  # the render is still held
        assert outputs[0].task == "dates" and outputs[0].output_tokens > 0
    finally:
        release.set()
        adder.join(30)
        runner.join(30)
    assert engine.run("intent", TEXT).task == "intent"
