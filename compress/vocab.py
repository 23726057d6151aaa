"""Vocabulary trimming for byte-level BPE tokenizers (tokenizer.json), ids remapped.

The kept set is closed under BPE ancestry: with a token, every merge producing it and
that merge's inputs are kept, down to the 256 byte-level base tokens (always kept), and
every special token is kept. Merges are kept where inputs and output are kept, in their
original order. So a text whose tokens were all kept tokenizes exactly as before (ids
remapped), and any other text still tokenizes, into smaller pieces, and decodes back
identically.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.errors import ConfigError


def _merge_pair(merge: Any) -> tuple[str, str]:
    if isinstance(merge, str):  # older tokenizer.json: "a b"
        left, right = merge.split(" ", 1)
        return left, right
    return str(merge[0]), str(merge[1])


class BpeVocab:
    """A byte-level BPE tokenizer.json, readable as ids, parents and priority."""

    def __init__(self, data: dict[str, Any]) -> None:
        model = data.get("model") or {}
        if model.get("type") != "BPE" or (data.get("pre_tokenizer") or {}).get("type") not in (
            "ByteLevel",
            "Sequence",
        ):
            raise ConfigError(
                "vocabulary trimming supports byte-level BPE tokenizers only; prune with "
                "vocab trimming off (min_vocab >= the vocabulary)"
            )
        self.data = data
        self.vocab: dict[str, int] = dict(model["vocab"])
        for added in data.get("added_tokens", []):
            self.vocab.setdefault(added["content"], added["id"])
        self.token = {i: t for t, i in self.vocab.items()}
        self.parents: dict[int, set[int]] = {}
        for merge in model.get("merges", []):
            left, right = _merge_pair(merge)
            out = self.vocab.get(left + right)
            if out is not None and left in self.vocab and right in self.vocab:
                self.parents.setdefault(out, set()).update((self.vocab[left], self.vocab[right]))
        self.base = self._base_ids()

    @classmethod
    def read(cls, path: Path) -> BpeVocab:
        """Read a tokenizer.json file."""
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def _base_ids(self) -> list[int]:
        from tokenizers import pre_tokenizers

        ids = [self.vocab[c] for c in pre_tokenizers.ByteLevel.alphabet() if c in self.vocab]
        ids += [a["id"] for a in self.data.get("added_tokens", [])]
        return sorted(set(ids))

    def closure(self, ids: Iterable[int]) -> set[int]:
        """``ids`` with every BPE ancestor (inputs of merges producing them, recursively)."""
        kept: set[int] = set()
        stack = [int(i) for i in ids]
        while stack:
            token = stack.pop()
            if token in kept:
                continue
            kept.add(token)
            stack.extend(self.parents.get(token, ()))
        return kept

    def priority(self, used: Iterable[int]) -> tuple[np.ndarray, int]:
        """Token ids in the order a trimmed vocabulary keeps them, and how many are required.

        Required first (bytes, specials, ``used`` and their ancestors), then the other ids
        in ascending order (BPE ids follow merge order: frequent first), each right after
        its ancestors, so every prefix at least as long as the required part is closed.
        Returns ([V_tok] ids, n_required).
        """
        required = self.closure([*self.base, *(u for u in used if u in self.token)])
        order = sorted(required)
        seen = set(required)
        for token in sorted(self.token):
            if token in seen:
                continue
            for t in sorted(self.closure([token]) - seen):  # ancestors have lower ids first
                order.append(t)
                seen.add(t)
        return np.asarray(order, dtype=np.int64), len(required)

    def trimmed(self, kept: np.ndarray) -> dict[str, Any]:
        """A tokenizer.json keeping ``kept`` ids ([V'] ascending), renumbered 0..V'-1."""
        new_id = {int(old): new for new, old in enumerate(kept)}
        missing = self.closure(new_id) - set(new_id)
        if missing:
            raise ConfigError(
                f"kept tokens are not closed under BPE merges ({len(missing)} missing)"
            )
        data = copy.deepcopy(self.data)
        model = data["model"]
        model["vocab"] = {t: new_id[i] for t, i in model["vocab"].items() if i in new_id}
        merges = []
        for merge in model.get("merges", []):
            left, right = _merge_pair(merge)
            ids = [self.vocab.get(left), self.vocab.get(right), self.vocab.get(left + right)]
            if all(i in new_id for i in ids):
                merges.append(merge)
        model["merges"] = merges
        for added in data.get("added_tokens", []):
            added["id"] = new_id[added["id"]]
        _remap_post_processor(data.get("post_processor"), new_id)
        return data


def _remap_post_processor(node: Any, new_id: dict[int, int]) -> None:
    """Special-token ids inside a post-processor (TemplateProcessing and Sequence of them)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                node[key] = [new_id[int(v)] for v in value]
            elif key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
                node[key] = [value[0], new_id[int(value[1])]]
            else:
                _remap_post_processor(value, new_id)
    elif isinstance(node, list):
        for item in node:
            _remap_post_processor(item, new_id)


def write_trimmed_tokenizer(src: Path, dst: Path, kept: np.ndarray) -> None:
    """Write a tokenizer folder keeping ``kept`` ids; other files (template, config) copied.

    Args:
        src: the parent's tokenizer folder (tokenizer.json, tokenizer_config.json, ...).
        dst: the folder to write.
        kept: [V'] ascending token ids of the parent tokenizer to keep.
    """
    import shutil

    vocab = BpeVocab.read(src / "tokenizer.json")
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if path.is_file() and path.name != "tokenizer.json":
            shutil.copy2(path, dst / path.name)
    config_path = dst / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        decoder = config.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            new_id = {int(old): new for new, old in enumerate(kept)}
            config["added_tokens_decoder"] = {
                str(new_id[int(k)]): v for k, v in decoder.items() if int(k) in new_id
            }
            config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    text = json.dumps(vocab.trimmed(kept), ensure_ascii=False)
    (dst / "tokenizer.json").write_text(text, encoding="utf-8")
