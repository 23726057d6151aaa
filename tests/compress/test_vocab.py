"""Vocabulary trimming: kept text tokenizes to the same (remapped) ids, any text still
round-trips, special tokens and the chat template survive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from tinyllm.chat import ChatTokenizer
from tinyllm.compress.vocab import BpeVocab, write_trimmed_tokenizer
from tinyllm.errors import ConfigError

SEEN = [
    "The room was spotless and the staff were friendly.",
    "Book a table for four people in Lisbon on Friday.",
    "What is 17 plus 25? Answer: 42",
]
UNSEEN = [
    "Zebras juxtapose quixotic vocabulary: naïve café, 東京, emoji 🤖!",
    "  leading spaces\tand tabs\n\nand newlines  ",
    "<|im_start|>user\nhello<|im_end|>\n",
    "",
]


@pytest.fixture()
def trimmed(tiny_llama_bundle: Path, tmp_path: Path) -> tuple[Tokenizer, Tokenizer, np.ndarray]:
    src = tiny_llama_bundle / "tokenizer"
    parent = Tokenizer.from_file(str(src / "tokenizer.json"))
    vocab = BpeVocab.read(src / "tokenizer.json")
    used = {i for text in SEEN for i in parent.encode(text).ids}
    order, required = vocab.priority(used)
    assert 256 < required < len(order)  # bytes and specials, the used tokens, not all
    kept = np.sort(order[:required])
    write_trimmed_tokenizer(src, tmp_path / "tok", kept)
    return parent, Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json")), kept


def test_kept_text_tokenizes_to_the_same_remapped_ids(trimmed) -> None:
    parent, child, kept = trimmed
    new_id = {int(old): new for new, old in enumerate(kept)}
    assert child.get_vocab_size() == len(kept) < parent.get_vocab_size()
    for text in SEEN:
        assert child.encode(text).ids == [new_id[i] for i in parent.encode(text).ids]


@pytest.mark.parametrize("text", SEEN + UNSEEN)
def test_any_text_round_trips(trimmed, text: str) -> None:
    parent, child, kept = trimmed
    ids = child.encode(text).ids
    assert all(0 <= i < len(kept) for i in ids)
    assert child.decode(ids, skip_special_tokens=False) == text
    # Same strings as the parent's tokens they stand for.
    assert "".join(child.id_to_token(i) for i in ids) == "".join(
        parent.id_to_token(int(kept[i])) for i in ids
    )


def test_special_tokens_and_chat_template_survive(
    trimmed, tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    parent, child, kept = trimmed
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        old = parent.token_to_id(special)
        assert child.token_to_id(special) == int(np.searchsorted(kept, old))
    chat = ChatTokenizer(tmp_path / "tok")
    before = ChatTokenizer(tiny_llama_bundle / "tokenizer")
    messages = [{"role": "user", "content": SEEN[0]}]
    assert chat.apply_chat_template(messages) == before.apply_chat_template(messages)
    assert chat.eos_token_id == child.token_to_id("<|im_end|>")


def test_unclosed_or_unsupported_vocabularies_are_errors(tiny_llama_bundle: Path) -> None:
    vocab = BpeVocab.read(tiny_llama_bundle / "tokenizer" / "tokenizer.json")
    merged = max(vocab.parents)  # a merged token, without its ancestors
    with pytest.raises(ConfigError, match="not closed"):
        vocab.trimmed(np.asarray([merged]))
    with pytest.raises(ConfigError, match="byte-level BPE"):
        BpeVocab({"model": {"type": "WordPiece"}, "pre_tokenizer": {"type": "BertPreTokenizer"}})
