"""The C API under AddressSanitizer + UndefinedBehaviorSanitizer (build/cpp-asan): tokenizing,
generating (fp32/int8/int4, LoRA slots, sampling, stops) and bad inputs, with the same
results as the Python side and no sanitizer report."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from nativebuild import require_built
from test_native_tokenizer import ADVERSARIAL, long_string
from tokenizers import Tokenizer

from tinyllm.runtime import Engine, GenerationConfig

SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


def run_check(*args: str, lines: list[object] | None, tmp_path: Path) -> list[dict]:  # type: ignore[type-arg]
    """Run the sanitized api_check driver; its JSON output lines."""
    program = require_built("tinyllm_api_check", "cpp-asan")
    argv = [str(program), *args]
    if lines is not None:
        request = tmp_path / "input.jsonl"
        request.write_text("".join(json.dumps(x) + "\n" for x in lines))
        argv.append(str(request))
    proc = subprocess.run(argv, env={**os.environ, **SANITIZER_ENV}, capture_output=True, text=True)
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # Not splitlines(): the text may hold U+2028 and other line breaks of its own.
    return [json.loads(line) for line in proc.stdout.split("\n") if line]


def test_tokenize_under_sanitizers(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    texts = [*ADVERSARIAL, long_string()]
    folder = tiny_llama_bundle / "tokenizer"
    out = run_check("tokenize", str(folder), lines=texts, tmp_path=tmp_path)
    reference = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for text, got in zip(texts, out, strict=True):
        want = reference.encode(text, add_special_tokens=False).ids
        assert got["ids"] == want
        assert got["text"] == reference.decode(want, skip_special_tokens=False)


def test_generate_under_sanitizers(llama_engines: Path, served: Path, tmp_path: Path) -> None:
    python = Engine.load(llama_engines, max_batch=2)
    prompts = [python.encode(p) for p in ("hello there", "Book a table", "a")]
    sampled = GenerationConfig(max_new_tokens=8, temperature=0.9, top_k=20, top_p=0.9, seed=11)
    configs = [GenerationConfig(max_new_tokens=8, ignore_eos=True), sampled]
    requests = [
        {"engine": name, "max_batch": 2, "prompts": prompts, "config": c.__dict__}
        for name in ("onnx-cpu-fp32", "onnx-cpu-int8", "onnx-cpu-int4")
        for c in configs
    ]
    out = run_check("generate", str(llama_engines), lines=requests, tmp_path=tmp_path)
    for request, got in zip(requests, out, strict=True):
        engine = Engine.load(llama_engines, engine=request["engine"], max_batch=2)
        config = GenerationConfig(**{**request["config"], "stop": tuple(request["config"]["stop"])})
        want = engine.generate_ids(prompts, config)
        assert [r["ids"] for r in got["results"]] == [g.token_ids for g in want]
        assert [r["text"] for r in got["results"]] == [g.text for g in want]
    # LoRA slots, a different adapter per row.
    lora = Engine.load(served, max_batch=4)
    ids = [lora.encode(p) for p in ("hello there", "Book a table", "a")]
    greedy = GenerationConfig(max_new_tokens=6, ignore_eos=True)
    request = {
        "prompts": ids,
        "adapters": ["booking", None, "sentiment"],
        "config": greedy.__dict__,
    }
    (got,) = run_check("generate", str(served), lines=[request], tmp_path=tmp_path)
    want = [
        lora.generate_ids(ids[:1], greedy, adapter="booking")[0],
        lora.generate_ids(ids[1:2], greedy)[0],
        lora.generate_ids(ids[2:], greedy, adapter="sentiment")[0],
    ]
    assert [r["ids"] for r in got["results"]] == [g.token_ids for g in want]


def test_bad_inputs_under_sanitizers(llama_engines: Path, tmp_path: Path) -> None:
    cases = run_check("errors", str(llama_engines), lines=None, tmp_path=tmp_path)
    assert len(cases) > 15
    assert all(c["ok"] for c in cases), [c for c in cases if not c["ok"]]


def test_serve_under_sanitizers(served: Path, tmp_path: Path) -> None:
    """8 threads on the server (chunked prefill), a streamed answer, a deadline, then a
    cancel and a close with requests in flight."""
    requests = [
        [task, f"{text} {i}"]
        for i, (task, text) in enumerate(
            [
                ("sentiment", "lovely staff"),
                ("booking", "Rome, 2 guests"),
                ("rewrite", "cheap hotels"),
            ]
            * 4
        )
    ]
    out = run_check("serve", str(served), lines=requests, tmp_path=tmp_path)
    python = Engine.load(served, max_batch=1)
    for (task, text), got in zip(requests, out, strict=False):
        want = python.run(task, text)
        assert got["ids"] == list(want.token_ids) and got["text"] == want.text
        assert got["valid"] == want.valid
    outcomes = out[-1]["outcomes"]
    assert outcomes[-1] == "TINYLLM_CANCELLED" and "TINYLLM_CLOSED" in outcomes
    assert set(outcomes) <= {"TINYLLM_OK", "TINYLLM_CANCELLED", "TINYLLM_CLOSED"}
    assert out[-1]["prefix_hits"] > 0
    assert out[-1]["streamed"] is True and out[-1]["deadline"] == "TINYLLM_DEADLINE_EXCEEDED"


def test_tools_under_sanitizers(tool_bundle: Path, tmp_path: Path) -> None:
    """Tasks with tools through C callbacks: a batch, then 4 threads on a server (calls on
    its tool threads, answers after results in context), then a close without draining
    with calls in flight. The calls are Python's; the echo tool's result is the answer.
    The raw calls (raw_tool_calls), batched and served, are Python's execute_tools=False."""
    requests = [
        [task, text]
        for task in ("calc", "calc_ctx", "broken", "picky")
        for text in ("What is 2 plus 3?", "hello")
    ]
    out = run_check(
        "tools", str(tool_bundle), "n_fixed,n_broken,n_picky", lines=requests, tmp_path=tmp_path
    )
    n = len(requests)
    batch, raw, raw_served = out[:n], out[n : 2 * n], out[2 * n : 3 * n]
    served, outcomes = out[3 * n : -1], out[-1]["outcomes"]
    assert served == batch and raw_served == raw  # the server answers as the batch does
    python = Engine.load(tool_bundle, max_batch=1)
    for (task, text), got in zip(requests, batch, strict=True):
        want = python.run(task, text)
        call = got["call"]
        assert want.tool_call is not None and call["name"] == want.tool_call.name
        assert json.loads(call["arguments"]) == want.tool_call.arguments
        if task == "calc":  # the echo tool's result is the answer
            assert got["ids"] == list(want.token_ids) and call["ok"]
            assert got["text"] == call["result"] == want.tool_call.arguments["expression"]
        elif task == "calc_ctx":  # the call, then the model's answer after the echoed result
            written = python.tokenizer.decode(got["ids"])
            assert written.startswith('{"name": "n_fixed", "arguments": ' + call["arguments"] + "}")
            assert call["ok"] and call["result"] == want.tool_call.arguments["expression"]
        else:  # the call fails: the same reason as Python's
            assert got["ids"] == list(want.token_ids) and not got["valid"]
            assert call["error"] == want.tool_call.error and not call["ok"]
    for (task, text), got in zip(requests, raw, strict=True):
        want = python.run(task, text, execute_tools=False)
        assert got["ids"] == list(want.token_ids) and got["valid"] == want.valid
        assert (json.loads(got["value"]) if got["valid"] else None) == want.value
        assert not got["call"]["ok"] and got["call"]["result"] == ""
    python.close()
    assert set(outcomes) <= {"TINYLLM_OK", "TINYLLM_CLOSED"} and len(outcomes) == len(requests)
