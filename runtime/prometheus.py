"""Server counters and histograms, rendered in the Prometheus text exposition format.

A few labelled counters and histograms are all the server needs, so they are written
here in ~100 lines instead of adding a client library. Thread-safe (one lock).
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Mapping

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
Labels = tuple[tuple[str, str], ...]


class Histogram:
    """Cumulative buckets, count and sum of observed values."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Add one observation."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value


class ServerMetrics:
    """What /metrics reports: requests by task and status, tokens, latency, TTFT."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[Labels, int] = defaultdict(int)
        self.tokens: dict[Labels, int] = defaultdict(int)
        self.latency: dict[Labels, Histogram] = {}
        self.ttft: dict[Labels, Histogram] = {}
        self.in_flight = 0
        self.in_flight_peak = 0
        self.disconnects = 0

    def started(self) -> None:
        """A request entered the server."""
        with self._lock:
            self.in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def finished(self, task: str, status: int, latency_s: float) -> None:
        """A request left the server with ``status`` after ``latency_s`` seconds."""
        with self._lock:
            self.in_flight -= 1
            self.requests[(("task", task), ("status", str(status)))] += 1
            key = (("task", task),)
            self.latency.setdefault(key, Histogram()).observe(latency_s)

    def generated(self, task: str, prompt_tokens: int, output_tokens: int, ttft_s: float) -> None:
        """Token counts and time to first token of a completed generation."""
        with self._lock:
            self.tokens[(("task", task), ("kind", "prompt"))] += prompt_tokens
            self.tokens[(("task", task), ("kind", "completion"))] += output_tokens
            self.ttft.setdefault((("task", task),), Histogram()).observe(ttft_s)

    def disconnected(self) -> None:
        """A client went away before its stream ended (the request was cancelled)."""
        with self._lock:
            self.disconnects += 1

    def render(self, engine_stats: Mapping[str, object]) -> str:
        """The text exposition format; numeric engine stats become ``tinyllm_engine_*``."""
        with self._lock:
            lines = _counter(
                "tinyllm_requests_total", "HTTP requests by task and status.", self.requests
            )
            lines += _counter("tinyllm_tokens_total", "Tokens by task and kind.", self.tokens)
            lines += _histograms(
                "tinyllm_request_duration_seconds", "Request latency.", self.latency
            )
            lines += _histograms("tinyllm_time_to_first_token_seconds", "TTFT.", self.ttft)
            lines += _gauge("tinyllm_requests_in_flight", "Requests being served.", self.in_flight)
            lines += _gauge(
                "tinyllm_requests_in_flight_peak",
                "The most requests served at once since start.",
                self.in_flight_peak,
            )
            lines += [
                "# HELP tinyllm_client_disconnects_total Streams cancelled by the client.",
                "# TYPE tinyllm_client_disconnects_total counter",
                f"tinyllm_client_disconnects_total {self.disconnects}",
            ]
        for key, value in sorted(engine_stats.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                name = "tinyllm_engine_" + "".join(c if c.isalnum() else "_" for c in key)
                lines += _gauge(name, f"Engine statistic {key}.", value)
        return "\n".join(lines) + "\n"


def _label_text(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _counter(name: str, help_text: str, values: Mapping[Labels, int]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    return lines + [f"{name}{_label_text(k)} {v}" for k, v in sorted(values.items())]


def _gauge(name: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]


def _histograms(name: str, help_text: str, values: Mapping[Labels, Histogram]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for labels, h in sorted(values.items()):
        running = 0
        for bound, count in zip([*h.buckets, float("inf")], h.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            bucket = _label_text(labels, 'le="' + le + '"')
            lines.append(f"{name}_bucket{bucket} {running}")
        lines.append(f"{name}_sum{_label_text(labels)} {h.total}")
        lines.append(f"{name}_count{_label_text(labels)} {running}")
    return lines
