"""JsonTokens: the trie walk allows exactly the tokens a scan of the vocabulary allows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tinyllm
from tinyllm.chat import ChatTokenizer
from tinyllm.runtime.constraints import JsonPrefix, JsonTokens, pick_json_token
from tinyllm.runtime.sampling import GenerationConfig

PREFIXES = ["", "{", ' {"na', '{"name": ', '{"a": [1, tr', '{"a": "x\\\\', '{"n": -1.5e', "[ "]


def scan(texts: list[str], state: JsonPrefix, eos: int | None) -> list[int]:
    """The reference: every token tried one by one."""
    found = [i for i, t in enumerate(texts) if t and state.copy().feed(t)]
    return sorted([*found, eos] if state.complete and eos is not None else found)


@pytest.fixture(scope="module")
def texts(tiny_llama_bundle: Path) -> list[str]:
    tok = ChatTokenizer(tinyllm.open_bundle(tiny_llama_bundle).tokenizer_dir)
    texts = [tok.decode([i]) for i in range(tok.vocab_size)]
    # Awkward tokens a real vocabulary has: quotes, escapes, brackets, controls, spaces.
    return [*texts, '"}', '\\"', '", "', "]}", "\x01", "    ", "\\u00", "true,", '"\n']


@pytest.mark.parametrize("root", ["", "{"])
def test_allowed_equals_a_scan_of_the_vocabulary(texts: list[str], root: str) -> None:
    table = JsonTokens(texts, eos=0)
    for prefix in PREFIXES:
        state = JsonPrefix(root)
        if not state.feed(prefix):
            continue
        assert table.allowed(state).tolist() == scan(texts, state, 0), prefix
        assert table.allowed(state).tolist() == scan(texts, state, 0)  # cached the same
    assert 0 < len(table.cache) <= len(PREFIXES)


def test_greedy_pick_is_the_best_valid_token_in_logit_order(texts: list[str]) -> None:
    table = JsonTokens(texts, eos=0)
    rng = np.random.default_rng(0)
    greedy = GenerationConfig()
    for prefix in PREFIXES:
        state = JsonPrefix()
        assert state.feed(prefix)
        logits = rng.standard_normal(len(texts) + 5).astype(np.float32)  # model vocab > tok
        valid = set(scan(texts, state, 0))
        expected = next(int(t) for t in np.argsort(-logits, kind="stable") if int(t) in valid)
        assert pick_json_token(state, logits, greedy, rng, table) == expected, prefix
        sampled = GenerationConfig(temperature=1.0, seed=1)
        assert pick_json_token(state, logits, sampled, rng, table) in valid
