"""Tokenizers: the locally trained tokenizer of the random presets, and the HF wrapper.

Random presets (``tiny-llama``, ``tiny-qwen2``, ``qwen2.5-0.5b-shape``) need a real
tokenizer but no hub: a byte-level BPE is trained on a small corpus shipped with tinyllm
and cached under ``$TINYLLM_CACHE`` (default ``~/.cache/tinyllm``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from tinyllm.cache import cache_dir
from tinyllm.errors import ModelSourceError, missing_dependency

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer_file(vocab_size: int) -> Path:
    """Path of the trained tiny tokenizer.json, training and caching it on first use.

    Args:
        vocab_size: upper bound of the BPE vocabulary, special tokens included.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = resources.files("tinyllm").joinpath("tokenizer_corpus.txt").read_text("utf-8")
    import tokenizers

    key = hashlib.sha256(f"{corpus}|{vocab_size}|{tokenizers.__version__}".encode()).hexdigest()
    path = cache_dir() / "tokenizers" / f"bpe-{vocab_size}-{key[:16]}" / "tokenizer.json"
    if path.is_file():
        return path
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus.splitlines(), trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so concurrent test workers never read a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    tok.save(tmp)
    os.replace(tmp, path)
    return path


def tiny_tokenizer(vocab_size: int) -> Any:
    """The tiny tokenizer wrapped for transformers, with the ChatML template."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError as e:
        raise missing_dependency("transformers", "torch", "Building a preset model") from e
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tiny_tokenizer_file(vocab_size)),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_input_names=MODEL_INPUT_NAMES,
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def load_hf_tokenizer(folder: Path, gguf_file: str | None = None) -> Any:
    """Load a transformers tokenizer from a folder (or a GGUF file in it), offline."""
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise missing_dependency("transformers", "torch", "Loading a tokenizer") from e
    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"{folder}: cannot load a tokenizer ({e})") from e
    tok.model_input_names = list(MODEL_INPUT_NAMES)
    return tok
