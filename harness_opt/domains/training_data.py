"""A training experiment's data: the corpus (fetched once, checked), cut into train bytes and val bytes.

The cut is made here, by the runner, so that the two halves can live in different sandboxes: train.py
gets the train bytes only and the scorer the val bytes only. A model that never saw val cannot have
memorised it, and a train.py that cannot read val cannot print a val_bpb it computed itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from harness_opt.errors import UserError
from harness_opt.home import home_dir

DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class CorpusError(UserError):
    """The corpus is missing, could not be fetched, or is not what suite.toml's checksum says."""


def corpus_path(data: str, url: str, sha256: str) -> Path:
    """The corpus file: the suite's own when it exists, else a checked download cached under
    `<home>/data/` (by its checksum, so every run and every Ray worker fetches it once)."""
    if data and Path(data).is_file():
        return Path(data)
    if not url:
        raise CorpusError(
            f"no corpus at {data or '(none given)'} and no data_url to fetch it from",
            fix="set [training] data to the corpus file, or data_url (and data_sha256) in suite.toml",
        )
    cache = home_dir() / "data"
    cache.mkdir(parents=True, exist_ok=True)
    name = sha256 or hashlib.sha256(url.encode()).hexdigest()
    path = cache / f"{name}.txt"
    if path.is_file():
        return path
    try:
        body = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S).read()
    except OSError as exc:
        raise CorpusError(
            f"could not fetch {url}: {exc}", fix="check the network, or put the corpus at [training] data"
        ) from exc
    digest = hashlib.sha256(body).hexdigest()
    if sha256 and digest != sha256:
        raise CorpusError(
            f"{url}: checksum {digest} != {sha256}",
            where="suite.toml [training] data_sha256",
            fix="point data_url at the corpus the checksum names, or update data_sha256 if it changed",
        )
    tmp = path.with_suffix(f".{os.getpid()}.part")
    tmp.write_bytes(body)
    tmp.replace(path)
    return path


def split_corpus(corpus: Path, val_fraction: float, train_out: Path, val_out: Path) -> None:
    """The last `val_fraction` of the bytes is val, the rest train (byte-exact, streamed)."""
    size = corpus.stat().st_size
    n_val = int(size * val_fraction)
    if n_val < 1 or n_val >= size:
        raise CorpusError(
            f"{corpus}: {size} bytes cannot be cut into train and val at {val_fraction}",
            fix="use a larger corpus, or a val_fraction between 0 and 1",
        )
    with open(corpus, "rb") as src:
        with open(train_out, "wb") as dst:
            left = size - n_val
            while left:
                chunk = src.read(min(_CHUNK, left))
                if not chunk:
                    raise CorpusError(f"{corpus} changed while it was read", fix="run again")
                dst.write(chunk)
                left -= len(chunk)
        with open(val_out, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    for path in (train_out, val_out):
        path.chmod(0o444)
