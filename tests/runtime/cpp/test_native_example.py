"""examples/cpp/task_service.cpp (built by make cpp): lines on stdin, answered from 4
threads, equal the Python runtime's answers; a bad request fails alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from nativebuild import require_built

from tinyllm.runtime import Engine

REQUESTS = [
    ("sentiment", "The staff were lovely"),
    ("booking", "Two guests in Rome on 2024-06-01"),
    ("rewrite", "cheap flights lisbon"),
    ("sentiment", "Terrible, never again"),
    ("nope", "an unknown task"),
    ("booking", "Paris for 3 next week"),
]


def test_task_service_answers_as_python(served: Path) -> None:
    program = require_built("tinyllm-task-service")
    stdin = "".join(f"{task}\t{text}\n" for task, text in REQUESTS)
    proc = subprocess.run(
        [str(program), str(served)], input=stdin, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")[:-1]
    assert len(lines) == len(REQUESTS)
    python = Engine.load(served)
    for (task, text), line in zip(REQUESTS, lines, strict=True):
        name, kind, rest = line.split("\t", 2)
        assert name == task
        if task == "nope":
            assert kind == "error" and rest.startswith("TINYLLM_NOT_FOUND: unknown task")
            continue
        want = python.run(task, text)
        assert kind == ("valid" if want.valid else "invalid")
        if want.valid and task != "booking":
            assert rest == want.value
        elif want.valid:
            assert json.loads(rest) == want.value
    assert "5 answered" in proc.stderr


def test_tinyllm_run_task_answers_as_python(served: Path) -> None:
    program = require_built("tinyllm-run")
    texts = ["The staff were lovely", "Terrible, never again", "cheap flights lisbon"]
    proc = subprocess.run(
        [str(program), str(served), "--task", "sentiment", *texts, "--threads", "1", "--ids"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")[:-1]
    python = Engine.load(served)
    want = [python.run("sentiment", t) for t in texts]
    answers = lines[0::2]
    for line, w in zip(answers, want, strict=True):  # reasons are worded by each runtime
        ok = line == w.value if w.valid else line.startswith("INVALID: ")
        assert ok and (w.valid or line.endswith(f" | {w.text}")), (line, w)
    assert lines[1::2] == ["ids:" + "".join(f" {i}" for i in w.token_ids) for w in want]
    stdin = subprocess.run(  # no TEXT arguments: one input per stdin line
        [str(program), str(served), "--task", "sentiment"],
        input="\n".join(texts) + "\n",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert stdin.returncode == 0 and stdin.stdout.split("\n")[:-1] == answers
    unknown = subprocess.run(
        [str(program), str(served), "--task", "nope", "x"], capture_output=True, text=True
    )
    assert unknown.returncode == 1 and "TINYLLM_NOT_FOUND: unknown task" in unknown.stderr
    both = subprocess.run(
        [str(program), str(served), "--task", "sentiment", "--prompt", "x"],
        capture_output=True,
        text=True,
    )
    assert both.returncode == 2 and "one of --prompt TEXT or --task NAME" in both.stderr


def test_tinyllm_run_prints_raw_tool_calls(tool_bundle: Path) -> None:
    """tinyllm-run registers no tools: --raw-tools prints each call (checked, not run) as
    the Python runtime's ``execute_tools=False`` value; without it the refusal says so."""
    program = require_built("tinyllm-run")
    texts = ["What is 2 plus 3?", "hello"]
    proc = subprocess.run(
        [str(program), str(tool_bundle), "--task", "calc", "--raw-tools", *texts],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    python = Engine.load(tool_bundle)
    want = [python.run("calc", t, execute_tools=False) for t in texts]
    python.close()
    assert all(w.valid for w in want)
    assert [json.loads(line) for line in proc.stdout.split("\n")[:-1]] == [w.value for w in want]
    refused = subprocess.run(
        [str(program), str(tool_bundle), "--task", "calc", "x"], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "give --raw-tools" in refused.stderr
