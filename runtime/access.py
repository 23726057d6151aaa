"""Who may call the HTTP server, and how much: the API key, the bind rule and the limits.

- An API key (``tinyllm serve --api-key KEY`` or ``$TINYLLM_API_KEY``) is required as
  ``Authorization: Bearer KEY`` on ``/v1/*`` and ``/metrics``; ``/health`` stays open for
  load balancers (it says only whether the engine accepts work). Keys are compared in
  constant time.
- A server bound to an address other than loopback refuses to start without a key,
  unless ``insecure`` is asked for.
- :class:`ServerLimits` bounds connections, open streams, ``max_tokens`` per task and the
  time a request may take.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from tinyllm.errors import ConfigError

API_KEY_ENV = "TINYLLM_API_KEY"


@dataclass(frozen=True)
class ServerLimits:
    """Limits of one server; each has a default suited to one CPU box.

    Args:
        max_connections: open connections (and requests) at once; more get 503 from the
            HTTP server before reaching tinyllm.
        max_streams: streamed responses open at once; more get 429.
        max_tokens: the largest ``max_tokens`` a request may ask for, any model; more is
            a 400 naming the cap.
        task_max_tokens: per-model caps (task name, or the base model's name) that replace
            ``max_tokens`` for that model.
        request_timeout_s: seconds a request may take before it fails with 504 (None: no
            limit).
    """

    max_connections: int = 256
    max_streams: int = 64
    max_tokens: int = 2048
    task_max_tokens: Mapping[str, int] = field(default_factory=dict)
    request_timeout_s: float | None = 600.0

    def __post_init__(self) -> None:
        counts = {"max_connections": self.max_connections, "max_streams": self.max_streams}
        counts["max_tokens"] = self.max_tokens
        counts.update({f"task_max_tokens[{k!r}]": v for k, v in self.task_max_tokens.items()})
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"server limit {name} must be an integer >= 1, got {value!r}")
        timeout = self.request_timeout_s
        if timeout is not None and not 0 < timeout < float("inf"):
            raise ConfigError(f"request_timeout_s must be > 0 seconds (or None), got {timeout}")

    def token_cap(self, model: str) -> int:
        """The largest ``max_tokens`` a request to ``model`` may ask for."""
        return self.task_max_tokens.get(model, self.max_tokens)


def parse_task_caps(items: tuple[str, ...] | list[str]) -> dict[str, int]:
    """``TASK=N`` strings (``--task-max-tokens``) as a mapping; a bad one is a ConfigError."""
    caps = {}
    for item in items:
        task, _, number = item.partition("=")
        if not task or not number.strip().isdigit():
            raise ConfigError(f"--task-max-tokens {item!r}: expected TASK=N, e.g. sentiment=16")
        caps[task] = int(number)
    return caps


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_api_key(api_key: str | None) -> None:
    """A key must be printable ASCII without spaces (it travels in an HTTP header)."""
    if api_key is None:
        return
    if not api_key or not api_key.isascii() or not api_key.isprintable() or " " in api_key:
        raise ConfigError(
            "the API key must be a non-empty string of printable ASCII without spaces"
        )


def check_bind(host: str, api_key: str | None, insecure: bool) -> None:
    """Refuse to serve other machines without an API key (unless ``insecure``)."""
    check_api_key(api_key)
    if api_key is None and not insecure and not is_loopback(host):
        raise ConfigError(
            f"binding {host} makes the server reachable from other machines: give an API "
            f"key (--api-key KEY or ${API_KEY_ENV}), or pass --insecure to serve without one"
        )


def key_matches(header: str | None, api_key: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <api_key>`` (constant time)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    return hmac.compare_digest(given.strip().encode(), api_key.encode())
