"""Runs the tool call a request wrote, off the decode loop, then answers or decodes on.

When a request of a task with tools has written its call (constrained to the tools'
schemas by :class:`~tinyllm.runtime.callconstraint.CallPrefix`), the decode loop hands
it here instead of settling its future. A worker thread parses the call and runs it with
:func:`tinyllm.tools.call_tool` (schema check, time limit, errors caught), so a slow tool
never stalls the other rows. Then:

- ``tools.result: answer``: the result is the answer, parsed and verified as the task's
  output; a failed call makes the output invalid with the reason;
The request's deadline holds throughout: the call's time limit is cut to what is left of
it, and the second request below inherits it (a request past it fails with
:class:`~tinyllm.errors.DeadlineExceededError`, as in the decode loop).

- ``tools.result: context``: a second request goes through the same decode loop with the
  prompt, the call and the result in context (:meth:`Router.after_call`); it starts with
  the task's prompt, so the per-task prefix cache serves its first tokens. Its answer,
  with the call attached, settles the first request's future.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tinyllm.errors import DeadlineExceededError, RequestCancelledError, TinyLLMError
from tinyllm.runtime.live import Live, Sink
from tinyllm.runtime.router import Route, Router, TaskOutput, parse_output
from tinyllm.tools import ToolCall, ToolError, call_tool, parse_call

# How the runner queues a request on the decode loop: Server.submit(route, deadline, sink, wait)
Submit = Callable[[Route, float | None, Sink | None, bool], "Future[TaskOutput]"]


def execute(live: Live, timeout_s: float | None = None) -> ToolCall:
    """Parse and run the call a request wrote (never raises: a failure is in ``error``);
    ``timeout_s``: what is left of the request's deadline, if less than the tool's limit."""
    start = time.perf_counter()
    name, arguments = "", None
    try:
        if live.done != "stop" and live.json is not None and not live.json.complete:
            raise ToolError(
                f"the call was cut at {len(live.tokens)} tokens before it was complete; "
                "raise the task's tools.max_call_tokens"
            )
        name, arguments = parse_call(live.text)
        tools = {t.name: t for t in live.route.tools}
        if name not in tools:
            raise ToolError(f"the call names {name[:40]!r}, not one of the tools {sorted(tools)}")
        result = call_tool(tools[name], arguments, timeout_s)
        return ToolCall(name, arguments, result, None, time.perf_counter() - start)
    except ToolError as e:
        return ToolCall(name, arguments, None, str(e), time.perf_counter() - start)


class ToolRunner:
    """Worker threads that execute calls for one server; ``drain`` waits for them.

    Args:
        router: the server's router (it builds the route that decodes after a result).
        submit: queues a route on the server's decode loop.
        workers: calls run at once.
    """

    def __init__(self, router: Router, submit: Submit, workers: int = 4) -> None:
        self.router, self.submit = router, submit
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="tinyllm-tool")
        self.pending = 0
        self.cond = threading.Condition()

    def take(self, live: Live, output: TaskOutput) -> None:
        """Run the call of a request whose decoding ended with ``output``."""
        with self.cond:
            self.pending += 1
        self.pool.submit(self._run, live, output)

    def drain(self) -> None:
        """Wait until every call taken has settled its request."""
        with self.cond:
            while self.pending:
                self.cond.wait()

    def _settle(self, live: Live, result: Any, error: BaseException | None) -> None:
        live.resolve(result, error)
        with self.cond:
            self.pending -= 1
            self.cond.notify_all()

    def _run(self, live: Live, output: TaskOutput) -> None:
        try:
            call = execute(live, _left(live))
            task = live.route.task
            left = _left(live)
            if left is not None and left <= 0:
                self._settle(live, None, _late(live))
                return
            if call.result is None or task is None:
                done = dataclasses.replace(
                    output, text="", value=None, valid=False, error=call.error, tool_call=call
                )
            elif task.tools is None or task.tools.result == "answer":
                value, valid, reason = parse_output(task, call.result)
                done = dataclasses.replace(
                    output,
                    text=call.result,
                    value=value,
                    valid=valid,
                    error=reason,
                    latency_s=time.perf_counter() - live.start,
                    tool_call=call,
                )
            else:
                self._continue(live, output, call)
                return
            if done.text:
                live.emit(("delta", done.text))
            self._settle(live, done, None)
        except Exception as e:  # never leave the caller waiting
            self._settle(live, None, TinyLLMError(f"the tool call failed: {e}"))

    def _continue(self, live: Live, output: TaskOutput, call: ToolCall) -> None:
        """Decode the answer with the result in context, through the same loop."""
        route = self.router.after_call(live.route, list(live.tokens), call.result or "")
        left = _left(live)
        if left is not None and left <= 0:
            self._settle(live, None, _late(live))
            return

        def forward(item: tuple[str, Any]) -> None:
            if item[0] != "end":  # the first request ends the stream, with the call
                live.emit(item)

        second = self.submit(route, left, forward, True)  # the first request's deadline
        # a caller that cancels the request cancels the answer being decoded for it
        live.future.add_done_callback(lambda f: f.cancelled() and second.cancel())

        def finish(future: Future[TaskOutput]) -> None:
            if future.cancelled():
                self._settle(live, None, RequestCancelledError("the answer was cancelled"))
                return
            error = future.exception()
            if error is not None:
                self._settle(live, None, error)
                return
            answer = future.result()
            self._settle(
                live,
                dataclasses.replace(
                    answer,
                    prompt_tokens=output.prompt_tokens,
                    output_tokens=output.output_tokens + answer.output_tokens,
                    ttft_s=output.ttft_s,
                    latency_s=time.perf_counter() - live.start,
                    token_ids=output.token_ids + answer.token_ids,
                    tool_call=call,
                ),
                None,
            )

        second.add_done_callback(finish)


def _left(live: Live) -> float | None:
    """Seconds left before the request's deadline (None: it has none)."""
    return None if live.deadline is None else live.deadline - time.monotonic()


def _late(live: Live) -> DeadlineExceededError:
    return DeadlineExceededError(f"request {live.id} passed its deadline during its tool call")
