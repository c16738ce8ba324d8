"""A content-addressed store of salience maps, so no map is ever computed twice.

One entry per (model, image, perturbation): the key is the sha256 of the model's
identity (every byte it loads, and its preprocessing), the image's pixel hash, the
perturbation, the salience settings that shape the map and the code's version
(:data:`harness.salience.methods.CODE_VERSION`, or for a faithfulness curve's scores
:data:`harness.salience.curves.CURVE_VERSION`); the value is the raw map with the
explained class's score, probability, the predicted class, the forward passes the map
cost and the provider that computed it.

The store is one SQLite file (``salience.sqlite`` in the cache folder): commits are
atomic, so a killed run never leaves half an entry, and a checksum over each value
catches an entry damaged afterwards, which is then dropped and recomputed. Only the
process that drives a run writes to it; workers of a cluster send their maps back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import sqlite3
import struct
import time
from pathlib import Path

import numpy as np

from harness.errors import HarnessError, first_line

CACHE_FILE = "salience.sqlite"
_SCALARS = struct.Struct("<ddqq")  # score, probability, predicted, passes
log = logging.getLogger("harness")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cached map: ``raw`` ``(g, g) float32`` and what came with it."""

    raw: np.ndarray
    score: float
    prob: float
    predicted: int
    passes: int
    provider: str


def entry_key(model_sha256: str, image_hash: str, perturbation: str, salience_json: str,
              code_version: str) -> str:
    """The cache key: a sha256 over everything that decides the map's bytes."""
    text = json.dumps([code_version, model_sha256, image_hash, perturbation, salience_json])
    return hashlib.sha256(text.encode()).hexdigest()


def _pack(entry: Entry) -> bytes:
    raw = np.ascontiguousarray(entry.raw, np.float32)
    head = struct.pack("<II", *raw.shape)
    return head + _SCALARS.pack(entry.score, entry.prob, entry.predicted,
                                entry.passes) + raw.tobytes()


def _unpack(blob: bytes, provider: str) -> Entry:
    h, w = struct.unpack_from("<II", blob)
    score, prob, predicted, passes = _SCALARS.unpack_from(blob, 8)
    raw = np.frombuffer(blob, np.float32, offset=8 + _SCALARS.size).reshape(h, w)
    return Entry(raw, score, prob, predicted, passes, provider)


def _checksum(blob: bytes, provider: str) -> str:
    return hashlib.sha256(blob + provider.encode()).hexdigest()


class SalienceCache:
    """The cache in folder ``root`` (created when missing).

    A file there that is not a SQLite database (e.g. overwritten by accident) is moved
    aside with a warning and a new cache started: losing a cache costs time, not
    correctness.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.path = self.root / CACHE_FILE
        self.discarded = 0  # entries found damaged and dropped (so recomputed)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"{self.root}: cannot create the cache folder "
                               f"({first_line(exc)})") from None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            self._db = None
            self._set_aside(exc)

    def _set_aside(self, exc: Exception) -> None:
        """Move a damaged database aside with a warning and start a new one: losing a
        cache costs time, never correctness, and no later run trips over it. A database
        that cannot be written (a full disk, a read-only place) is not damaged: that is
        one line for the user, and the cache stays as it is."""
        _refuse_unwritable(self.path, exc)
        if self._db is not None:
            self._db.close()
        aside = self.path.with_name(f"{CACHE_FILE}.damaged-{time.time_ns()}")
        try:
            self.path.rename(aside)
        except OSError as err:
            raise HarnessError(f"{self.path}: damaged ({first_line(exc)}) and cannot be moved "
                               f"aside ({first_line(err)}); delete it") from None
        log.warning("%s: not a usable cache (%s); moved to %s and starting a new one",
                    self.path, first_line(exc), aside.name)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as err:
            raise HarnessError(f"{self.path}: cannot start a new cache ({first_line(err)})"
                               ) from None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            # WAL: readers of another run sharing the folder never block this writer
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS maps (key TEXT PRIMARY KEY, value BLOB "
                       "NOT NULL, provider TEXT NOT NULL, checksum TEXT NOT NULL)")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def get_many(self, keys: list[str]) -> dict[str, Entry]:
        """The valid entries among ``keys``; damaged ones are deleted and left out, and
        a database damaged beyond that is set aside (every key then misses)."""
        try:
            return self._get_many(keys)
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)
            return {}

    def present(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` have an entry (unchecked: :meth:`get_many` checks it), read
        without their maps."""
        try:
            out = set()
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                out.update(k for (k,) in self._db.execute(
                    f"SELECT key FROM maps WHERE key IN ({marks})", chunk).fetchall())
            return out
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)
            return set()

    def _get_many(self, keys: list[str]) -> dict[str, Entry]:
        found, damaged = {}, []
        for start in range(0, len(keys), 500):  # SQLite caps bound parameters per query
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, value, provider, checksum FROM maps "
                                    f"WHERE key IN ({marks})", chunk).fetchall()
            for key, blob, provider, checksum in rows:
                entry = None
                if isinstance(blob, bytes) and _checksum(blob, provider) == checksum:
                    with contextlib.suppress(struct.error, ValueError):
                        entry = _unpack(blob, provider)
                if entry is None:
                    damaged.append(key)
                else:
                    found[key] = entry
        if damaged:
            self._db.executemany("DELETE FROM maps WHERE key = ?", [(k,) for k in damaged])
            self.discarded += len(damaged)
        return found

    def put_many(self, items: dict[str, Entry]) -> None:
        """Store entries in one transaction: all of them or, after a crash, none."""
        rows = []
        for key, entry in items.items():
            blob = _pack(entry)
            rows.append((key, blob, entry.provider, _checksum(blob, entry.provider)))
        try:
            self._insert(rows)
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)
            try:
                self._insert(rows)
            except sqlite3.DatabaseError as err:
                _refuse_unwritable(self.path, err)
                raise HarnessError(f"{self.path}: cannot store maps ({first_line(err)})"
                                   ) from None

    def _insert(self, rows) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO maps VALUES (?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM maps").fetchone()[0]

    def close(self) -> None:
        self._db.close()


# SQLite's words for a database it cannot write, as opposed to one that is damaged
_UNWRITABLE = ("full", "disk i/o", "readonly", "read-only", "unable to open")


def _refuse_unwritable(path: Path, exc: Exception) -> None:
    """One line for a cache that cannot be written; nothing for any other failure."""
    if any(word in str(exc).lower() for word in _UNWRITABLE):
        raise HarnessError(f"{path}: cannot write the salience cache ({first_line(exc)}); "
                           "free some space or pass --cache another folder") from None
