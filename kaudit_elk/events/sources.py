"""Read audit events from files, gzip files, stdin, and growing (rotated) log files.

``read_records(paths)`` yields one :class:`Record` per audit Event, in input order. Inputs may be
JSON lines (one Event, EventList or envelope per line) or one whole-file JSON document
(pretty-printed Event/EventList/array, optionally with a UTF-8 BOM). gzip is recognised by its
magic bytes. A line that cannot be decoded yields a Record with ``error`` set and reading goes on.

Offsets: ``Record.offset`` is the byte offset just after the record's line in the (decompressed)
stream; pass ``{path: offset}`` as ``start_offsets`` to resume after it. Records that come from one
line share its offset, so resume only at a line boundary (after the last Record of a line).
For whole-file documents the offset is the file size. Follow mode reads plain files only.
``Record.file`` is the file's identity (:mod:`kaudit_elk.events.checkpoint`); with a ``checkpoint``
each file resumes at the offset recorded for that very file, so a rotated log never skips events.
Line numbers are always the file's (newlines only; also after a resume).

``prepare`` (optional) is offered every JSON line first (stripped, as bytes); a non-None answer is
kept as ``Record.prepared`` and the line is not decoded here. ``ingest`` uses it for the native
fast path (:mod:`kaudit_elk.events.fastpath`), which returns None for every line it leaves to Python.
"""

from __future__ import annotations

import base64
import gzip
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator, Optional, Sequence

import orjson

from kaudit_elk.base.errors import InputError
from kaudit_elk.events.checkpoint import HEAD_BYTES, Checkpoint, FileId, identify
from kaudit_elk.events.envelopes import EnvelopeError, decode

#: ``prepare(text)`` -> None (decode the line here) or anything else (kept as ``Record.prepared``).
Prepare = Optional[Callable[[bytes], Any]]

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
#: A document whose first line does not parse on its own is read whole only up to this size, unless
#: it opens like a pretty-printed document (a first line of just ``{`` or ``[``).
WHOLE_DOCUMENT_MAX = 16 * 1024 * 1024


@dataclass(slots=True)
class Record:
    """One decoded audit Event (or one undecodable input line) and where it came from."""

    source: str  # file path, or "-" for stdin
    line: int  # 1-based line number where the record starts
    raw: bytes  # the raw line / document bytes (for dead letters)
    event: dict[str, Any] | None  # decoded audit Event in the raw k8s schema, None on error
    error: str | None  # why it could not be decoded
    offset: int = 0  # byte offset just after this record's line (resume point)
    prepared: Any = None  # what ``prepare`` made of the line (then ``event`` is None)
    file: FileId | None = None  # identity of the file read (None for stdin): checkpoints key on it


def read_records(
    paths: Sequence[str],
    follow: bool = False,
    start_offsets: dict[str, int] | None = None,
    *,
    poll_interval: float = 0.5,
    prepare: Prepare = None,
    checkpoint: Checkpoint | None = None,
    on_idle: Callable[[], None] | None = None,
) -> Iterator[Record]:
    """Yield Records from each path in turn ("-" = stdin); with ``follow`` tail files forever.

    Where a file starts: its offset in ``checkpoint`` (by file identity, so a rotated or replaced
    file starts at 0), else ``start_offsets[path]`` (trusted as given), else 0. ``on_idle`` (follow
    mode) is called whenever a poll found nothing new, so a consumer that batches can send what it
    holds instead of waiting for a quiet file to grow.
    """
    offsets = dict(start_offsets or {})
    for path in paths:
        if path != "-" and not os.path.isfile(path):
            reason = "is a directory" if os.path.isdir(path) else "does not exist"
            raise InputError(f"input file {path} {reason}")

    def start_of(path: str, fd: int) -> int:
        if checkpoint is not None:
            return checkpoint.start(fd)
        return offsets.pop(path, 0)  # once: a file that replaces it (rotation) starts at 0

    if follow:
        yield from _follow(list(paths), start_of, poll_interval, prepare, on_idle)
        return
    for path in paths:
        yield from _read_path(path, start_of, prepare)


def decode_line(source: str, line_no: int, raw: bytes, offset: int, prepare: Prepare = None,
                file: FileId | None = None) -> Iterator[Record]:
    """Decode one JSON text (a line or a whole document) into Records (error Records on failure)."""
    text = raw.strip()
    if text.startswith(_BOM):
        text = text[3:].lstrip()
    if text.startswith(_DEAD_LETTER_PREFIX):  # a dead letter written by ingest/serve: replay its raw bytes
        inner = _dead_letter_raw(text)
        if inner is not None:
            yield from decode_line(source, line_no, inner, offset, prepare, file)
            return
    if prepare is not None:
        prepared = prepare(text)
        if prepared is not None:
            yield Record(source, line_no, raw, None, None, offset, prepared, file)
            return
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        yield Record(source, line_no, raw, None, f"invalid JSON: {exc}", offset, None, file)
        return
    try:
        events = decode(obj)
    except EnvelopeError as exc:
        inner = _dead_letter_raw(obj)
        if inner is not None:
            yield from decode_line(source, line_no, inner, offset, prepare, file)
            return
        msg = str(exc)
        if not msg.startswith("not an audit event"):
            msg = f"not an audit event: {msg}"
        yield Record(source, line_no, raw, None, msg, offset, None, file)
        return
    for event in events:
        yield Record(source, line_no, raw, event, None, offset, None, file)


_DEAD_LETTER_PREFIX = b'{"time":'
_DEAD_LETTER_KEYS = frozenset({"time", "source", "line", "reason"})


def _dead_letter_raw(entry: Any) -> bytes | None:
    """The original bytes of a dead-letter entry (``raw`` or ``raw_base64``), None if it is not one."""
    if isinstance(entry, (bytes, bytearray)):
        try:
            entry = orjson.loads(entry)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(entry, dict) or not _DEAD_LETTER_KEYS <= entry.keys() or "kind" in entry:
        return None
    if isinstance(entry.get("raw"), str):
        return str(entry["raw"]).encode("utf-8")
    if isinstance(entry.get("raw_base64"), str):
        try:
            return base64.b64decode(entry["raw_base64"], validate=True)
        except ValueError:
            return None
    return None


def _open(path: str) -> tuple[BinaryIO, BinaryIO]:
    """(stream to read, the underlying file): they differ for gzip."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from None
    if fh.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=fh, mode="rb"), fh  # type: ignore[return-value]
    return fh, fh


def _skip(fh: BinaryIO, count: int) -> tuple[int, int]:
    """Advance ``count`` bytes; return (bytes skipped, newlines in them) so line numbers stay the file's."""
    done = lines = 0
    while done < count:
        chunk = fh.read(min(1 << 20, count - done))
        if not chunk:
            break
        done += len(chunk)
        lines += chunk.count(b"\n")
    return done, lines


def _read_path(path: str, start_of: Callable[[str, int], int], prepare: Prepare = None) -> Iterator[Record]:
    source = path
    if path == "-":
        fh: BinaryIO = sys.stdin.buffer
        raw_fh = None
    else:
        fh, raw_fh = _open(path)
    try:
        file = identify(raw_fh.fileno()) if raw_fh is not None else None
        start = start_of(path, raw_fh.fileno()) if raw_fh is not None else 0
        offset, line_no = _skip(fh, start)
        yield from _read_stream(fh, source, offset, prepare, file, line_no)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        yield Record(source, 0, b"", None, f"read error: {exc}", 0)
    finally:
        if raw_fh is not None:
            fh.close()
            raw_fh.close()


def _read_stream(fh: BinaryIO, source: str, offset: int, prepare: Prepare = None,
                 file: FileId | None = None, line_no: int = 0) -> Iterator[Record]:
    """JSON lines, or one whole JSON document when the input is a pretty-printed (or small) document.

    A first line that does not parse is either the start of a pretty-printed document (``{`` or
    ``[`` alone, as every pretty-printer writes it), or a broken line. Only then, or when the rest is
    small, is the whole input read as one document; a big file with a cut first line stays in line
    mode (bounded memory, the file's own line numbers).
    """
    lines: Iterator[bytes] = iter(fh)
    for raw in lines:  # up to the first non-blank line, which decides the mode
        line_no += 1
        offset += len(raw)
        if not raw.strip():
            continue
        if not _parses(raw) and raw.lstrip(_BOM + b" \t\r\n")[:1] in (b"{", b"["):
            opener = raw.strip().lstrip(_BOM).strip() in (b"{", b"[", b"[{")
            rest = fh.read() if opener else fh.read(WHOLE_DOCUMENT_MAX + 1)
            if (opener or len(rest) <= WHOLE_DOCUMENT_MAX) and _parses(raw + rest):
                yield from decode_line(source, line_no, raw + rest, offset + len(rest), file=file)
                return
            lines = _resume_lines(rest, fh)
        yield from decode_line(source, line_no, raw, offset, prepare, file)
        break
    for raw in lines:
        line_no += 1
        offset += len(raw)
        if raw.strip():
            yield from decode_line(source, line_no, raw, offset, prepare, file)


def _resume_lines(buffered: bytes, fh: BinaryIO) -> Iterator[bytes]:
    """The lines of ``buffered`` (split on newline only) followed by the rest of ``fh``."""
    pieces = buffered.split(b"\n")
    tail = pieces.pop()
    for piece in pieces:
        yield piece + b"\n"
    if tail:
        yield tail + fh.readline()
    yield from fh


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
    """Tails one plain file across rename-rotation and copytruncate.

    Every (re)open asks ``start_of`` where to begin, so a checkpoint resumes only the very file it
    was taken from; the identity is refreshed while the file is shorter than its fingerprint.
    """

    def __init__(self, path: str, start_of: Callable[[str, int], int], prepare: Prepare = None) -> None:
        self.path = path
        self.start_of = start_of
        self.prepare = prepare
        self.fh: BinaryIO | None = None
        self.file: FileId | None = None
        self.pos = 0
        self.line_no = 0
        self.partial = b""
        self._open()

    def _open(self) -> None:
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return  # rotated away and not yet recreated; try again on the next poll
        self.fh, self.file = fh, identify(fh.fileno())
        start = min(self.start_of(self.path, fh.fileno()), os.fstat(fh.fileno()).st_size)
        self.pos, self.line_no = _skip(fh, start)
        self.partial = b""

    def poll(self) -> list[Record]:
        """Return the Records of complete lines written since the last poll."""
        out: list[Record] = []
        if self.fh is None:
            self._open()
            if self.fh is None:
                return out
        out.extend(self._drain())
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out
        assert self.file is not None
        if (st.st_dev, st.st_ino) != (self.file.dev, self.file.ino):  # renamed away: finish it, start the new one
            out.extend(self._drain(final=True))
            self.fh.close()
            self.fh = None
            self._open()
            if self.fh is not None:
                out.extend(self._drain())
        elif st.st_size < self.pos:  # copytruncate
            self.fh.seek(0)
            self.file = identify(self.fh.fileno())
            self.pos, self.line_no, self.partial = 0, 0, b""
            out.extend(self._drain())
        return out

    def _drain(self, final: bool = False) -> list[Record]:
        assert self.fh is not None and self.file is not None
        out: list[Record] = []
        data = self.fh.read()
        if not data and not (final and self.partial):
            return out
        if self.file.head_len < HEAD_BYTES:  # the file was short when opened: fingerprint more of it
            self.file = identify(self.fh.fileno())
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        base = self.pos
        for line in lines:
            self.line_no += 1
            base += len(line) + 1
            if line.strip():
                out.extend(decode_line(self.path, self.line_no, line + b"\n", base, self.prepare, self.file))
        self.pos = base
        if final and self.partial.strip():
            self.line_no += 1
            self.pos += len(self.partial)
            out.extend(decode_line(self.path, self.line_no, self.partial, self.pos, self.prepare, self.file))
            self.partial = b""
        return out

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _follow(paths: list[str], start_of: Callable[[str, int], int], poll_interval: float,
            prepare: Prepare = None, on_idle: Callable[[], None] | None = None) -> Iterator[Record]:
    stdin = [p for p in paths if p == "-"]
    tails = [_Tail(p, start_of, prepare) for p in paths if p != "-"]
    try:
        for path in stdin:  # stdin cannot be tailed: read it to its end first
            yield from _read_path(path, start_of, prepare)
        while True:
            got = False
            for tail in tails:
                for rec in tail.poll():
                    got = True
                    yield rec
            if not got:
                if on_idle is not None:
                    on_idle()
                time.sleep(poll_interval)
    finally:
        for tail in tails:
            tail.close()
