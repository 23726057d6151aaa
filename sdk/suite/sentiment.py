"""Sentiment (3-way) on the human-rated sentences shipped in the vaderSentiment 3.3.2 sdist.

Four sets (movie reviews, tweets, Amazon reviews, NYT editorials; ~23.7k sentences), each
with the mean of ~20 human ratings on [-4, 4]. Labels: negative (mean <= -1), positive
(mean >= 1), neutral otherwise, which gives three classes of similar size.
"""

from __future__ import annotations

import hashlib
import io
import random
import subprocess
import sys
import tarfile
from pathlib import Path

from tinyllm.errors import TaskError
from tinyllm.tasks import Example

SDIST = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
SETS = ("amazonReviewSnippets", "movieReviewSnippets", "nytEditorialSnippets", "tweets")
THRESHOLD = 1.0
DEFAULT_SIZES = {"validation": 500, "test": 500}  # train: everything else


def fetch_sdist(downloads: Path) -> Path:
    """Download the sdist with pip (PyPI only) into ``downloads`` and check its sha256."""
    path = downloads / SDIST
    if not path.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "vaderSentiment==3.3.2",
            "-d",
            str(downloads),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not path.is_file():
            raise TaskError(f"could not download {SDIST} from PyPI: {result.stderr.strip()[-300:]}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        path.unlink()
        raise TaskError(f"{SDIST}: sha256 {digest} is not the expected {SDIST_SHA256}; deleted")
    return path


def read_ratings(sdist: Path) -> list[tuple[str, float, str]]:
    """(sentence, mean rating, set name) for every rated sentence of the four sets."""
    rows = []
    with tarfile.open(sdist) as outer:
        member = outer.extractfile(INNER)
        if member is None:
            raise TaskError(f"{sdist}: {INNER} is missing")
        with tarfile.open(fileobj=io.BytesIO(member.read())) as inner:
            for name in SETS:
                f = inner.extractfile(f"hutto_ICWSM_2014/{name}_GroundTruth.txt")
                if f is None:
                    raise TaskError(f"{sdist}: {name}_GroundTruth.txt is missing")
                for line in f.read().decode("utf-8", errors="replace").splitlines():
                    parts = line.split("\t")
                    if len(parts) == 3 and parts[2].strip():
                        rows.append((parts[2].strip(), float(parts[1]), name))
    return rows


def label(score: float) -> str:
    """The 3-way label of a mean human rating."""
    if score <= -THRESHOLD:
        return "negative"
    return "positive" if score >= THRESHOLD else "neutral"


def build(sizes: dict[str, int], seed: int, downloads: Path) -> dict[str, list[Example]]:
    """Fixed splits: shuffle with ``seed``; test and validation first, train the rest."""
    rows = read_ratings(fetch_sdist(downloads))
    random.Random(seed).shuffle(rows)
    examples = [
        Example(text, label(score), {"score": score, "set": source}) for text, score, source in rows
    ]
    n_test = sizes.get("test", DEFAULT_SIZES["test"])
    n_val = sizes.get("validation", DEFAULT_SIZES["validation"])
    rest = examples[n_test + n_val :]
    return {
        "test": examples[:n_test],
        "validation": examples[n_test : n_test + n_val],
        "train": rest[: sizes["train"]] if "train" in sizes else rest,
    }
