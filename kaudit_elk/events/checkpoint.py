"""Where reading stopped, per input file, by the file's identity (not its name).

A log rotation renames ``audit.log`` to ``audit.log.1`` and starts a new ``audit.log``: an offset
keyed by path would resume the new file at the old file's end and silently skip its first events.
So a file is identified by device + inode + a digest of its first bytes (:class:`FileId`; the digest
catches an inode reused for a new file), and an input resumes only at the offset recorded for that
same file; any other file starts at 0 (re-sending is harmless: document ids are deterministic).

The checkpoint file is JSON ``{"version": 2, "files": [{"dev", "ino", "head", "head_len",
"offset", "path", "updated"}, ...]}``, written atomically and created 0600 (its paths name audit
data). A version-1 file (offsets keyed by path) cannot tell a rotated file from a new one, so its
entries are not trusted: those files are read again from the start.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kaudit_elk.base.errors import InputError
from kaudit_elk.base.files import write_private

#: Bytes of a file's beginning that its fingerprint covers (fewer while the file is shorter).
HEAD_BYTES = 4096
#: Entries kept in a checkpoint file (the most recently updated): old rotations age out.
MAX_ENTRIES = 1000


@dataclass(frozen=True, slots=True)
class FileId:
    """A file's identity: device, inode, and a digest of its first ``head_len`` bytes."""

    dev: int
    ino: int
    head: str
    head_len: int


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def identify(fd: int, head_len: int | None = None) -> FileId:
    """The identity of an open file (``fd``); ``head_len`` forces the fingerprint's length."""
    st = os.fstat(fd)
    length = min(st.st_size, HEAD_BYTES) if head_len is None else head_len
    data = os.pread(fd, length, 0) if length else b""
    return FileId(st.st_dev, st.st_ino, _digest(data), len(data))


def same_file(fd: int, known: FileId) -> bool:
    """True when the open file ``fd`` is the file ``known`` was taken from (it may have grown since)."""
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (known.dev, known.ino) or st.st_size < known.head_len:
        return False
    return identify(fd, known.head_len).head == known.head


class Checkpoint:
    """Resume offsets by file identity; ``path=None`` keeps them in memory only."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._entries: dict[tuple[int, int], dict[str, Any]] = {}
        if path and os.path.exists(path):
            self._load(path)

    def _load(self, path: str) -> None:
        try:
            data = orjson.loads(Path(path).read_bytes())
        except orjson.JSONDecodeError:
            raise InputError(f"checkpoint file {path} is not valid JSON; delete it to start over") from None
        except OSError as exc:
            raise InputError(f"cannot read checkpoint file {path}: {exc.strerror or exc}") from None
        if not isinstance(data, dict) or data.get("version") != 2:
            return  # version 1 (offsets by path) or foreign: nothing trustworthy, read from the start
        for entry in data.get("files") or []:
            try:
                key = (int(entry["dev"]), int(entry["ino"]))
                entry = {"dev": key[0], "ino": key[1], "head": str(entry["head"]),
                         "head_len": int(entry["head_len"]), "offset": int(entry["offset"]),
                         "path": str(entry.get("path", "")), "updated": float(entry.get("updated", 0))}
            except (KeyError, TypeError, ValueError):
                raise InputError(f"checkpoint file {path} has a malformed entry; delete it to start over") from None
            self._entries[key] = entry

    def start(self, fd: int) -> int:
        """Where to resume reading the open file ``fd``: its recorded offset, or 0 for any other file."""
        st = os.fstat(fd)
        entry = self._entries.get((st.st_dev, st.st_ino))
        if entry is None:
            return 0
        known = FileId(entry["dev"], entry["ino"], entry["head"], entry["head_len"])
        if not same_file(fd, known) or st.st_size < entry["offset"]:
            return 0  # inode reused by another file, or the file was truncated
        return int(entry["offset"])

    def offsets(self) -> dict[tuple[int, int], int]:
        """Recorded offsets by (device, inode) (for reports and tests)."""
        return {k: v["offset"] for k, v in self._entries.items()}

    def update(self, positions: dict[FileId, tuple[str, int]]) -> None:
        """Record ``{file: (path, offset)}`` (everything before offset is settled) and save."""
        now = time.time()
        for fid, (path, offset) in positions.items():
            self._entries[(fid.dev, fid.ino)] = {"dev": fid.dev, "ino": fid.ino, "head": fid.head,
                                                 "head_len": fid.head_len, "offset": offset, "path": path,
                                                 "updated": now}
        if len(self._entries) > MAX_ENTRIES:
            newest = sorted(self._entries.items(), key=lambda kv: kv[1]["updated"], reverse=True)[:MAX_ENTRIES]
            self._entries = dict(newest)
        if self.path:
            body = {"version": 2, "files": sorted(self._entries.values(), key=lambda e: (e["path"], e["ino"]))}
            write_private(self.path, orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
