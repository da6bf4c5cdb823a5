"""Read audit events from files, gzip files, stdin, and growing (rotated) log files.

``read_records(paths)`` yields one :class:`Record` per audit Event, in input order. Inputs may be
JSON lines (one Event, EventList or envelope per line) or one whole-file JSON document
(pretty-printed Event/EventList/array, optionally with a UTF-8 BOM). gzip is recognised by its
magic bytes. A line that cannot be decoded yields a Record with ``error`` set and reading goes on.

Offsets: ``Record.offset`` is the byte offset just after the record's line in the (decompressed)
stream; pass ``{path: offset}`` as ``start_offsets`` to resume after it. Records that come from one
line share its offset, so resume only at a line boundary (after the last Record of a line).
For whole-file documents the offset is the file size. Follow mode reads plain files only.

``prepare`` (optional) is offered every JSON line first (stripped, as bytes); a non-None answer is
kept as ``Record.prepared`` and the line is not decoded here. ``ingest`` uses it for the native
fast path (:mod:`kaudit_elk.events.fastpath`), which returns None for every line it leaves to Python.
"""

from __future__ import annotations

import gzip
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator, Optional, Sequence

import orjson

from kaudit_elk.events.envelopes import EnvelopeError, decode
from kaudit_elk.base.errors import InputError

#: ``prepare(text)`` -> None (decode the line here) or anything else (kept as ``Record.prepared``).
Prepare = Optional[Callable[[bytes], Any]]

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class Record:
    """One decoded audit Event (or one undecodable input line) and where it came from."""

    source: str  # file path, or "-" for stdin
    line: int  # 1-based line number where the record starts
    raw: bytes  # the raw line / document bytes (for dead letters)
    event: dict | None  # decoded audit Event in the raw k8s schema, None on error
    error: str | None  # why it could not be decoded
    offset: int = 0  # byte offset just after this record's line (resume point)
    prepared: Any = None  # what ``prepare`` made of the line (then ``event`` is None)


def read_records(
    paths: Sequence[str],
    follow: bool = False,
    start_offsets: dict[str, int] | None = None,
    *,
    poll_interval: float = 0.5,
    prepare: Prepare = None,
) -> Iterator[Record]:
    """Yield Records from each path in turn ("-" = stdin); with ``follow`` tail files forever."""
    offsets = start_offsets or {}
    for path in paths:
        if path != "-" and not os.path.isfile(path):
            reason = "is a directory" if os.path.isdir(path) else "does not exist"
            raise InputError(f"input file {path} {reason}")
    if follow:
        yield from _follow(list(paths), offsets, poll_interval, prepare)
        return
    for path in paths:
        yield from _read_path(path, offsets.get(path, 0), prepare)


def decode_line(source: str, line_no: int, raw: bytes, offset: int, prepare: Prepare = None) -> Iterator[Record]:
    """Decode one JSON text (a line or a whole document) into Records (error Records on failure)."""
    text = raw.strip()
    if text.startswith(_BOM):
        text = text[3:].lstrip()
    if prepare is not None:
        prepared = prepare(text)
        if prepared is not None:
            yield Record(source, line_no, raw, None, None, offset, prepared)
            return
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        yield Record(source, line_no, raw, None, f"invalid JSON: {exc}", offset)
        return
    try:
        events = decode(obj)
    except EnvelopeError as exc:
        msg = str(exc)
        if not msg.startswith("not an audit event"):
            msg = f"not an audit event: {msg}"
        yield Record(source, line_no, raw, None, msg, offset)
        return
    for event in events:
        yield Record(source, line_no, raw, event, None, offset)


def _open(path: str) -> BinaryIO:
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from None
    if fh.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    return fh


def _skip(fh: BinaryIO, count: int) -> int:
    """Advance ``count`` bytes (seek when possible); return the bytes actually skipped."""
    if count <= 0:
        return 0
    if isinstance(fh, gzip.GzipFile) or not fh.seekable():
        done = 0
        while done < count:
            chunk = fh.read(min(1 << 20, count - done))
            if not chunk:
                break
            done += len(chunk)
        return done
    fh.seek(count)
    return count


def _read_path(path: str, start: int, prepare: Prepare = None) -> Iterator[Record]:
    source = path
    if path == "-":
        fh: BinaryIO = sys.stdin.buffer
        close = False
    else:
        fh = _open(path)
        close = True
    try:
        offset = _skip(fh, start)
        yield from _read_stream(fh, source, offset, prepare)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        yield Record(source, 0, b"", None, f"read error: {exc}", 0)
    finally:
        if close:
            fh.close()


def _read_stream(fh: BinaryIO, source: str, offset: int, prepare: Prepare = None) -> Iterator[Record]:
    """JSON lines, or a whole-file JSON document when the first line is not JSON on its own."""
    line_no = 0
    first = True
    for raw in fh:
        line_no += 1
        offset += len(raw)
        if not raw.strip():
            continue
        if first:
            first = False
            if not _parses(raw) and raw.lstrip(_BOM + b" \t\r\n")[:1] in (b"{", b"["):
                rest = fh.read()
                whole = raw + rest
                if _parses(whole):
                    yield from decode_line(source, line_no, whole, offset + len(rest))
                    return
                yield from _lines_of(raw + rest, source, line_no, offset - len(raw), prepare)
                return
        yield from decode_line(source, line_no, raw, offset, prepare)


def _lines_of(data: bytes, source: str, line_no: int, offset: int, prepare: Prepare = None) -> Iterator[Record]:
    for raw in data.splitlines(keepends=True):
        offset += len(raw)
        if raw.strip():
            yield from decode_line(source, line_no, raw, offset, prepare)
        line_no += 1


def _parses(raw: bytes) -> bool:
    text = raw.strip()
    if text.startswith(_BOM):
        text = text[3:]
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


# ---- follow mode ----------------------------------------------------------------------------
class _Tail:
    """Tails one plain file across rename-rotation and copytruncate."""

    def __init__(self, path: str, start: int, prepare: Prepare = None) -> None:
        self.path = path
        self.prepare = prepare
        self.fh: BinaryIO | None = None
        self.inode: tuple[int, int] | None = None
        self.pos = 0
        self.line_no = 0
        self.partial = b""
        self._open(start)

    def _open(self, start: int) -> None:
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return  # rotated away and not yet recreated; try again on the next poll
        st = os.fstat(fh.fileno())
        self.fh, self.inode = fh, (st.st_dev, st.st_ino)
        self.pos = min(start, st.st_size)
        fh.seek(self.pos)
        self.line_no, self.partial = 0, b""

    def poll(self) -> list[Record]:
        """Return the Records of complete lines written since the last poll."""
        out: list[Record] = []
        if self.fh is None:
            self._open(0)
            if self.fh is None:
                return out
        out.extend(self._drain())
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out
        if (st.st_dev, st.st_ino) != self.inode:  # renamed away: finish the old file, start the new one
            out.extend(self._drain(final=True))
            self.fh.close()
            self._open(0)
            out.extend(self._drain())
        elif st.st_size < self.pos:  # copytruncate
            self.fh.seek(0)
            self.pos, self.line_no, self.partial = 0, 0, b""
            out.extend(self._drain())
        return out

    def _drain(self, final: bool = False) -> list[Record]:
        assert self.fh is not None
        out: list[Record] = []
        data = self.fh.read()
        if not data and not (final and self.partial):
            return out
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        base = self.pos
        for line in lines:
            self.line_no += 1
            base += len(line) + 1
            if line.strip():
                out.extend(decode_line(self.path, self.line_no, line + b"\n", base, self.prepare))
        self.pos = base
        if final and self.partial.strip():
            self.line_no += 1
            self.pos += len(self.partial)
            out.extend(decode_line(self.path, self.line_no, self.partial, self.pos, self.prepare))
            self.partial = b""
        return out

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _follow(paths: list[str], offsets: dict[str, int], poll_interval: float, prepare: Prepare = None) -> Iterator[Record]:
    stdin = [p for p in paths if p == "-"]
    tails = [_Tail(p, offsets.get(p, 0), prepare) for p in paths if p != "-"]
    try:
        for path in stdin:  # stdin cannot be tailed: read it to its end first
            yield from _read_path(path, 0, prepare)
        while True:
            got = False
            for tail in tails:
                for rec in tail.poll():
                    got = True
                    yield rec
            if not got:
                time.sleep(poll_interval)
    finally:
        for tail in tails:
            tail.close()
