"""The test suite's own guards: a per-test timeout, the gpu marker's condition, and no
test source that leans on the clock, a reused port, an unbounded read or another folder's
conftest."""

from __future__ import annotations

import re
from pathlib import Path

import onnxruntime
import pytest

TESTS = Path(__file__).parent


def test_every_test_runs_under_a_timeout(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.hasplugin("timeout")  # pytest-timeout, dev extra
    assert 0 < float(pytestconfig.getini("timeout")) <= 900


def test_gpu_tests_skip_exactly_without_the_onnxruntime_cuda_provider(
    request: pytest.FixtureRequest,
) -> None:
    here = Path(__file__).with_name("conftest.py")
    root = next(
        plugin
        for plugin in request.config.pluginmanager.get_plugins()
        if getattr(plugin, "__file__", None) and Path(plugin.__file__) == here
    )

    @pytest.mark.gpu
    def probe() -> None: ...

    item = pytest.Function.from_parent(request.node.parent, name="probe", callobj=probe)
    root.pytest_collection_modifyitems(request.config, [item])
    skips = [m for m in item.iter_markers("skip")]
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert bool(skips) != has_cuda
    assert all("CUDAExecutionProvider" in m.kwargs["reason"] for m in skips)


# Patterns that made tests flaky or able to hang: an elapsed-time threshold, a port found by
# binding a socket (closed, then reused: another process may take it), a connection or read
# with no timeout, and skipping NNCF (CI installs it: a skip would hide a broken install).
HAZARDS = {
    "a wall-clock threshold (use an event)": re.compile(
        r"time\.(perf_counter|monotonic|time)\(\)\s*-\s*\w+\)?\s*<"
    ),
    "a port found by binding a socket (pass port 0 to the server, read it back)": re.compile(
        r"\.bind\(\("
    ),
    "a connection without a timeout": re.compile(
        r"(create_connection|urlopen|HTTPConnection)\((?![^\n]*timeout)"
    ),
    "pytest.importorskip of a package CI installs (nncf, trl, peft: import it)": re.compile(
        r"importorskip\(\s*[\"'](nncf|trl|peft)\b"
    ),
    # ``conftest`` is whichever folder's conftest.py pytest imported last: collected with
    # tests/benchmarks, tests/runtime/cpp's ``from conftest import`` found benchmarks' one.
    "an import from conftest (use fixtures, or a module with its own name)": re.compile(
        r"^\s*(from conftest import|import conftest\b)"
    ),
}


def hazards(text: str) -> list[str]:
    """``line: what`` for each hazardous line of a test file's source."""
    return [
        f"{number}: {what}"
        for number, line in enumerate(text.splitlines(), 1)
        for what, pattern in HAZARDS.items()
        if pattern.search(line)
    ]


def test_no_test_relies_on_the_clock_a_reused_port_or_an_unbounded_read() -> None:
    found = {
        path.relative_to(TESTS).as_posix(): hits
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "test_hygiene.py" and (hits := hazards(path.read_text()))
    }
    assert found == {}


def test_the_hazard_scan_finds_each_pattern() -> None:
    bad = """
    start = time.perf_counter()
    assert time.perf_counter() - start < 0.5
    sock.bind(("127.0.0.1", 0))
    conn = socket.create_connection((host, port))
    urllib.request.urlopen(url).read()
    nncf = pytest.importorskip("nncf")
    trl = pytest.importorskip("trl", reason="x")
    ok = socket.create_connection((host, port), timeout=10)
    from conftest import require_built
    import conftest
    from tooltasks import bundle_tools
    """
    assert [hit.split(": ", 1)[1].split(" (")[0] for hit in hazards(bad)] == [
        "a wall-clock threshold",
        "a port found by binding a socket",
        "a connection without a timeout",
        "a connection without a timeout",
        "pytest.importorskip of a package CI installs",
        "pytest.importorskip of a package CI installs",
        "an import from conftest",
        "an import from conftest",
    ]
