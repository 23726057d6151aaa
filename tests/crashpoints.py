"""Kill a writer with SIGKILL at chosen points of its file-system work (POSIX only).

The writer runs in a forked child (fast: the parent's imports are inherited). In the
child, every file-system step tinyllm's writers take (open, write, fsync, link, rename,
mkdir, unlink, chmod, the folder swap, a safetensors save) is an *event*; at event ``n``
the child kills itself with SIGKILL, so the kill lands exactly between two steps. A kill
on a ``write`` first writes half the data and flushes it: a torn write. A dry run counts
a writer's events, so a test can kill it at each of them, or at a spread of them.
"""

from __future__ import annotations

import builtins
import gc
import io
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

# (module, attribute) of each function that is one event.
HOOKED: list[tuple[Any, str]] = [
    (os, name)
    for name in (
        "replace",
        "rename",
        "link",
        "fsync",
        "mkdir",
        "chmod",
        "unlink",
        "rmdir",
        "open",
        "write",
        "ftruncate",
    )
] + [(shutil, "copy2"), (shutil, "copyfile"), (io, "open"), (builtins, "open")]


# Steps that change what a reader sees: a kill just before and just after each is tried.
VISIBLE = ("replace", "rename", "exchange_dirs")


class _Counter:
    def __init__(self, kill_at: int) -> None:
        self.kill_at = kill_at
        self.names: list[str] = []

    @property
    def count(self) -> int:
        return len(self.names)

    def step(self, name: str, torn: Callable[[], None] | None = None) -> None:
        if self.count == self.kill_at:
            if torn is not None:
                torn()
            os.kill(os.getpid(), signal.SIGKILL)
        self.names.append(name)


class _Writing:
    """A file open for writing whose every ``write`` is an event."""

    def __init__(self, f: Any, counter: _Counter) -> None:
        self._f = f
        self._counter = counter

    def write(self, data: Any) -> Any:
        def torn() -> None:
            self._f.write(data[: len(data) // 2])
            self._f.flush()

        self._counter.step("write", torn if len(data) > 1 else None)
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _Writing:
        self._f.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._f.__exit__(*exc)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._f)


def _hook(counter: _Counter, extra: list[tuple[Any, str]]) -> None:
    import tinyllm.bundle

    writer_steps = [(tinyllm.bundle, "exchange_dirs"), (tinyllm.bundle, "save_tensors")]
    for module, name in HOOKED + writer_steps + extra:
        original = getattr(module, name)

        def hooked(*args: Any, __original: Any = original, __name: str = name, **kw: Any) -> Any:
            counter.step(__name)
            result = __original(*args, **kw)
            if __name == "open" and not isinstance(result, int):
                mode = args[1] if len(args) > 1 else kw.get("mode", "r")
                if any(c in str(mode) for c in "wax+"):
                    return _Writing(result, counter)
            return result

        setattr(module, name, hooked)


CHILD_LIMIT_S = 300.0  # a child that neither finishes nor reaches its kill point by then hangs


def _fork() -> int:
    """``os.fork()`` with the parent's garbage collected first and its objects frozen for
    the child's collector: an ONNX Runtime session left in a reference cycle by an earlier
    test, collected in the child, waited forever on its thread pool's condition variable
    (threads that exist only in the parent)."""
    gc.collect()
    gc.freeze()
    try:
        return os.fork()
    finally:
        gc.unfreeze()


def _poll(pid: int, seconds: float) -> int | None:
    """The child's wait status once it ends within ``seconds``; else None (still running)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.002)
    return None


def _wait(pid: int, limit_s: float = CHILD_LIMIT_S) -> int:
    """The child's wait status; one still running after ``limit_s`` is killed and the test
    fails, instead of waiting forever."""
    status = _poll(pid, limit_s)
    if status is not None:
        return status
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked writer ran past {limit_s:g} s (hung?) and was killed")


def run_child(
    work: Callable[[], None],
    kill_at: int,
    count_file: str,
    extra: list[tuple[Any, str]] | None = None,
) -> int:
    """Fork, run ``work`` with events hooked, kill it at event ``kill_at`` (-1: never).

    Returns the child's wait status. A child that finishes writes its event count to
    ``count_file`` (one line per event, its name); one that fails prints its traceback
    and exits 3.
    """
    pid = _fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        counter = _Counter(kill_at)
        try:
            _hook(counter, extra or [])
            work()
            names = list(counter.names)
            counter.kill_at = -1
            with io.FileIO(count_file, "w") as f:
                f.write("\n".join(names).encode())
        except BaseException:
            traceback.print_exc(file=sys.stderr)
            code = 3
        os._exit(code)
    return _wait(pid)


def run_and_kill_after(work: Callable[[], None], seconds: float) -> int:
    """Fork, run ``work`` unhooked and SIGKILL it after ``seconds`` (if still running)."""
    pid = _fork()
    if pid == 0:
        code = 0
        try:
            work()
        except BaseException:
            traceback.print_exc(file=sys.stderr)
            code = 3
        os._exit(code)
    status = _poll(pid, seconds)
    if status is not None:
        return status
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status


def count_events(work: Callable[[], None], count_file: str, **kw: Any) -> list[str]:
    """The events ``work`` takes when it is not killed, by name (it must succeed)."""
    status = run_child(work, -1, count_file, **kw)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"dry run failed ({status})"
    with io.FileIO(count_file) as f:
        return f.read().decode().split("\n")


def kill_points(events: list[str], spread: int, tail: int) -> list[int]:
    """Where to kill: ``spread`` events evenly over the run, each of the last ``tail``,
    and just before and just after every step that changes what a reader sees."""
    total = len(events)
    even = {round(i * (total - 1) / max(spread - 1, 1)) for i in range(spread)}
    visible = {j for i, name in enumerate(events) if name in VISIBLE for j in (i, i + 1)}
    points = even | set(range(max(total - tail, 0), total)) | visible
    return sorted(p for p in points if p < total)


def was_killed(status: int) -> bool:
    """Whether the child died by SIGKILL (not by finishing or failing)."""
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
