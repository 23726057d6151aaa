"""`tinyllm profile` end to end on a tiny multi-task bundle: every section, the op and
phase accounting, the trace, the HTML report, --apply, and bad inputs."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import tinyllm
from tinyllm.errors import BundleError, ConfigError
from tinyllm.runtime import Engine
from tinyllm.runtime.profilereport import SECTIONS, ProfileReport
from tinyllm.runtime.profilesweep import SLONotMetError
from tinyllm.runtime.profiletrace import check_trace
from tinyllm.runtime.steprecorder import PHASES

FAST = {"threads": 1, "bandwidth_mib": 16, "progress": False}


@pytest.fixture(scope="module")
def profiled(served: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ProfileReport, Path]:
    """One profile of the three-task bundle, with a two-point sweep under a loose SLO."""
    out = tmp_path_factory.mktemp("profile")
    report = tinyllm.api.profile(
        served, requests=12, sweep=["max_batch=1,2"], slo_p95_ms=1e6, out=out, **FAST
    )
    return report, out


def test_every_section_is_present(profiled: tuple[ProfileReport, Path]) -> None:
    report, out = profiled
    data = json.loads((out / "profile.json").read_text())
    for section in SECTIONS:
        assert data[section], section
    load = data["latency"]["under_load"]
    assert load["requests"] == 12 and load["failed"] == 0
    assert set(load["per_task"]) == {r["task"] for r in data["requests"]}
    for task in load["per_task"].values():
        assert {"p50", "p90", "p99"} <= set(task["e2e_ms"]) and task["ttft_ms"]["p50"] > 0
    assert data["latency"]["single_stream"]["requests"] >= 1
    assert [r["phase"] for r in data["phases"]["loop"]] == list(PHASES)
    per_request = data["phases"]["per_request_ms"]
    assert per_request["tokenize"] > 0 and per_request["decode_ort"] > 0
    assert 0 < data["phases"]["outside_ort_share"] < 1
    for mode in ("per_step", "single_stream_per_step"):
        step = data["phases"][mode]
        assert 0 < step["decode_steps"] <= step["steps"] and step["outside_ort_ms"] > 0, step
    assert data["roofline"]["bandwidth_gb_s"] > 0 and data["roofline"]["decode_step_ms"] > 0
    assert data["memory"]["kv_cache_bytes"] > 0 and data["memory"]["adapter_bytes"] > 0
    assert data["quality"]["passed"] is True
    assert data["sweep"]["recommended"]["settings"]["max_batch"] in (1, 2)
    text = report.format()
    for heading in ("latency (ms)", "decode loop phases", "operators (", "roofline", "memory"):
        assert heading in text
    assert "decode tok/s by batch" in text and "recommended (p95 <= 1e+06 ms)" in text


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama with hidden size 512 (8M parameters), exported fp32: kernels
    long enough to measure next to ONNX Runtime's cost per node and per run."""
    from dataclasses import replace

    from tinyllm.models import build_model
    from tinyllm.presets import PRESETS, TINY_VOCAB
    from tinyllm.tokenizer import tiny_tokenizer

    folder = tmp_path_factory.mktemp("wide")
    base = PRESETS["tiny-llama"].config
    assert base is not None
    config = replace(
        base,
        hidden_size=512,
        intermediate_size=1536,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
    )
    build_model(config, seed=0).save_pretrained(folder / "hf")
    tiny_tokenizer(TINY_VOCAB).save_pretrained(folder / "hf")
    bundle = tinyllm.import_model(str(folder / "hf"), folder / "wide.tllm")
    exported, _ = tinyllm.export(bundle.path, "onnx-cpu", max_seq_len=256)
    return exported.path


def test_op_times_sum_to_the_measured_run_time(wide: Path) -> None:
    # A toy model's kernels last microseconds, next to ONNX Runtime's fixed cost per node
    # (its profiler's bookkeeping included) and per run, which no op accounts for: the
    # op tables are checked on a model whose kernels do the work, as real models' do.
    report = tinyllm.api.profile(wide, requests=4, prompt_len=96, new_tokens=8, out=None, **FAST)
    ops = report.to_dict()["operators"]
    assert ops["runs"]["prefill"] >= 1 and ops["runs"]["decode"] >= 1
    assert 0.85 <= ops["kernel_coverage"] <= 1.15, (ops["kernel_ms"], ops["measured_run_ms"])
    assert {"GroupQueryAttention", "MatMul"} <= {r["key"] for r in ops["by_op_type"]}
    assert {"0", "1", "head", "embed"} <= {r["key"] for r in ops["by_layer"]}


def test_ops_are_split_by_component_and_layer(profiled: tuple[ProfileReport, Path]) -> None:
    report, _ = profiled
    ops = report.to_dict()["operators"]
    components = {r["key"] for r in ops["by_component"]}
    assert {"attention", "attention proj", "lora", "lm head", "norms", "mlp"} <= components
    assert {"0", "1", "head"} <= {r["key"] for r in ops["by_layer"]}
    for row in ops["by_op_type"]:
        assert row["total_ms"] == pytest.approx(row["prefill_ms"] + row["decode_ms"])


def test_phase_times_sum_to_the_wall_time(profiled: tuple[ProfileReport, Path]) -> None:
    report, _ = profiled
    phases = report.to_dict()["phases"]
    loop = phases["busy_s"] + phases["idle_s"] + phases["profiler_s"]
    wall = report.main.summary["wall_s"]  # first submission to last result, outside the loop
    assert abs(loop - wall) <= 0.10 * wall, (loop, wall)
    for r in report.main.loaded.requests:
        assert 0 <= r.queue_s <= r.e2e_s and 0 < r.ttft_s <= r.e2e_s


def test_trace_is_valid_chrome_trace_json(profiled: tuple[ProfileReport, Path]) -> None:
    _, out = profiled
    trace = json.loads((out / "trace.json").read_text())
    assert check_trace(trace) == []
    events = trace["traceEvents"]
    kernels = [e for e in events if e.get("cat") == "onnxruntime" and "#" in e["name"]]
    assert kernels and any("GroupQueryAttention" in e["name"] for e in kernels)
    assert any(e.get("cat") == "step" for e in events)
    assert any(e.get("cat") == "request" for e in events)


def test_the_trace_check_finds_broken_traces() -> None:
    good = {
        "traceEvents": [
            {"name": "a", "ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 10},
            {"name": "b", "ph": "X", "pid": 1, "tid": 1, "ts": 2, "dur": 5},
        ]
    }
    assert check_trace(good) == []
    overlap = {
        "traceEvents": [
            *good["traceEvents"],
            {"name": "c", "ph": "X", "pid": 1, "tid": 1, "ts": 8, "dur": 10},
        ]
    }
    assert "overlaps" in check_trace(overlap)[0]
    assert check_trace({"traceEvents": [{"ph": "X"}]}) == ["event 0 lacks 'name'"]
    assert check_trace([]) == ["not an object with a traceEvents list"]


class _Page(HTMLParser):
    """Tags of a page: figures and the SVG marks inside each, ids, open/close balance."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, int] = {}
        self.ids: set[str] = set()
        self.external: list[str] = []
        self.stack: list[str] = []
        self.current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.ids.update([a["id"]] if a.get("id") else [])
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(str(a[key]))
        if tag == "figure":
            self.current = str(a.get("data-plot"))
            self.figures[self.current] = 0
        elif self.current and tag in ("path", "rect", "circle") and "class" in a:
            self.figures[self.current] += 1
        if tag not in ("meta", "br", "path", "rect", "circle", "line"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("path", "rect", "circle", "line"):
            return
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()
        if tag == "figure":
            self.current = None


def test_html_report_parses_and_embeds_its_plots(profiled: tuple[ProfileReport, Path]) -> None:
    _, out = profiled
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert page.stack == []  # every tag closed
    assert page.external == []  # self-contained
    assert set(SECTIONS) <= page.ids
    expected = {"latency-cdf", "phases", "operators-op-type", "operators-component", "batch"}
    assert expected | {"sweep-frontier"} == set(page.figures)
    assert all(marks > 0 for marks in page.figures.values()), page.figures


def test_apply_changes_what_engine_load_picks(served: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(served, tmp_path / "apply.tllm"))
    assert Engine.load(bundle).max_batch == 8  # the built-in default
    report = tinyllm.api.profile(
        bundle,
        requests=4,
        ops=False,
        sweep=["max_batch=3"],
        slo_p95_ms=1e6,
        apply=True,
        out=None,
        **FAST,
    )
    assert report.applied == str(bundle)
    opened = tinyllm.open_bundle(bundle)  # full hash check: written through the writer
    assert "engines/onnx-cpu-fp32/serving.json" in opened.manifest.files
    assert opened.manifest.lineage[0].path == str(bundle)
    engine = Engine.load(bundle)
    assert engine.max_batch == 3 and engine.serving.scheduler.max_rows == 3
    assert Engine.load(bundle, max_batch=2).max_batch == 2  # an explicit argument wins
    chosen = json.loads((bundle / "engines/onnx-cpu-fp32/serving.json").read_text())
    assert chosen["chosen_by"]["slo_p95_ms"] == 1e6


def test_an_slo_no_setting_meets_writes_nothing(
    served: Path, tmp_path: Path, snapshot: Callable[[Path], dict[str, bytes]]
) -> None:
    bundle = Path(shutil.copytree(served, tmp_path / "slo.tllm"))
    before = snapshot(bundle)
    with pytest.raises(SLONotMetError, match=r"no setting .* p95 <= 0.001 ms.*wrote nothing"):
        tinyllm.api.profile(
            bundle,
            requests=4,
            ops=False,
            sweep=["max_batch=1"],
            slo_p95_ms=0.001,
            apply=True,
            out=tmp_path / "out",
            **FAST,
        )
    assert snapshot(bundle) == before
    written = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert written["sweep"]["slo_error"] and written["sweep"]["applied_to"] is None


def _jsonl(path: Path, *lines: str) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_bad_inputs_are_clear_errors(served: Path, tmp_path: Path) -> None:
    def run(**kwargs: Any) -> None:
        tinyllm.api.profile(served, out=None, ops=False, requests=2, **{**FAST, **kwargs})

    with pytest.raises(BundleError, match="has no engine 'nope'; it has: onnx-cpu-fp32"):
        run(engine="nope")
    with pytest.raises(ConfigError, match="has no requests"):
        run(workload=_jsonl(tmp_path / "empty.jsonl"))
    bad = _jsonl(tmp_path / "bad.jsonl", '{"task": "sentiment", "input": "ok"}', "{not json")
    with pytest.raises(ConfigError, match=r"bad.jsonl line 2: not valid JSON"):
        run(workload=bad)
    odd = _jsonl(tmp_path / "odd.jsonl", '{"prompt": "hi"}', '{"task": "sentiment"}')
    with pytest.raises(ConfigError, match=r"odd.jsonl line 2: a task request is"):
        run(workload=odd)
    for rate in (0.0, -1.0):
        with pytest.raises(ConfigError, match="rate must be > 0"):
            run(rate=rate)
    with pytest.raises(ConfigError, match="runtime must be 'python' or 'cpp'"):
        run(runtime="rust")
    with pytest.raises(ConfigError, match="--sweep and --slo-p95-ms tune the Python"):
        run(runtime="cpp", sweep=["max_batch=1,2"])
    with pytest.raises(ConfigError, match="'batch' is not one of"):
        run(sweep=["batch=1"])
    with pytest.raises(ConfigError, match="--apply needs --slo-p95-ms"):
        run(apply=True)
    with pytest.raises(ConfigError, match="no such file"):
        run(workload=str(tmp_path / "missing.jsonl"))
    unknown = _jsonl(tmp_path / "unknown.jsonl", '{"task": "weather", "input": "rain"}')
    with pytest.raises(ConfigError, match=r"sends task 'weather', which .* does not serve"):
        run(workload=unknown)


def test_cli_profile_writes_its_files(
    served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tinyllm.cli import main

    out = tmp_path / "cli"
    requests = _jsonl(
        tmp_path / "r.jsonl",
        '{"task": "booking", "input": "Oslo, 2 guests"}',
        '{"prompt": "Hello", "max_new_tokens": 4}',
    )
    main(
        [
            "profile",
            str(served),
            "--workload",
            requests,
            "--requests",
            "4",
            "--no-ops",
            "--threads",
            "1",
            "--bandwidth-mib",
            "16",
            "--sweep",
            "max_batch=1",
            "threads=1",
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert re.search(r"under load\s+all\s+4", printed)
    assert "booking" in printed and "<completion>" in printed and "sweep" in printed
    assert {p.name for p in out.iterdir()} == {"profile.json", "report.html", "trace.json"}


WRAPPER = """<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="page" src="report.html" width="1300" height="3000"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {
  const doc = document.getElementById("page").contentDocument;
  const plots = [...doc.querySelectorAll("figure.plot")].map((fig) => {
    const svg = fig.querySelector("svg");
    const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
    const marks = svg ? [...svg.querySelectorAll("path.series, rect.bar, circle")]
      .filter((m) => { const b = m.getBBox(); return b.width > 0 || b.height > 0; }) : [];
    return { plot: fig.dataset.plot, width: box.width, height: box.height, marks: marks.length };
  });
  document.getElementById("result").textContent = JSON.stringify(plots);
});
</script></body></html>"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _render(browser: str, folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Each plot of ``folder/report.html`` as Chromium laid it out, and console messages."""
    import html
    import subprocess

    (folder / "check.html").write_text(WRAPPER)
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            (folder / "check.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="result">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stdout[-2000:] + result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    return json.loads(html.unescape(found.group(1))), console


def test_html_report_renders_in_a_real_browser(
    profiled: tuple[ProfileReport, Path], tmp_path: Path
) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "Chromium is not installed: .ci/run installs Debian's chromium with apt-get; "
            "where it cannot, this browser check skips"
        )
    _, out = profiled
    plots, console = _render(browser, out)
    assert {p["plot"] for p in plots} >= {"latency-cdf", "phases", "batch", "sweep-frontier"}
    for p in plots:
        assert p["width"] > 100 and p["height"] > 100 and p["marks"] > 0, p
    assert console == []  # no errors: an invalid SVG attribute would show here
    page = (out / "report.html").read_text().replace('class="series" d="M', 'class="series" d="Mx')
    (tmp_path / "report.html").write_text(page)
    _, console = _render(browser, tmp_path)
    assert any("attribute d" in line for line in console)  # the check sees a broken plot
