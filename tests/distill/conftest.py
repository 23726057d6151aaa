"""Fixtures for distillation tests: a stub OpenAI-compatible server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai_stub import OpenAIStub


@pytest.fixture()
def openai_stub() -> Iterator[OpenAIStub]:
    """A running stub chat-completions server (``.base_url``, ``.script``, ``.requests``)."""
    stub = OpenAIStub()
    stub.thread.start()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()
