"""The webhook receiver's durable local spool: what ``serve`` has acknowledged and not yet shipped.

A spool is a directory (0700) of segment files (0600) holding checksummed records, one per
accepted request body, appended and fsync'd before the receiver answers. A cursor file says up to
where the shipper has delivered (indexed, known duplicate or dead-lettered); segments wholly before
it are deleted. After a crash everything after the cursor is shipped again; the idempotent
document ids make that harmless.

Record layout (little endian): ``b"KSP1"``, payload length (u32), CRC-32 of (length, received-at,
payload) (u32), received-at (f64, Unix seconds), payload. A record that does not check out (a torn
tail after a crash, or damage) is moved whole into ``corrupt/`` beside the segments and reported;
it never crashes the receiver and never hides the records around it.

Bounds: ``max_bytes`` of unshipped records and ``max_age`` of the oldest unshipped one. Past either
the spool refuses new records (:class:`SpoolFull`) and the receiver answers 503 with Retry-After, so
the apiserver keeps the batch and retries: nothing acknowledged is ever dropped to make room.
"""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import orjson

MAGIC = b"KSP1"
_HEADER = struct.Struct("<4sIId")  # magic, payload length, crc32, received-at
_CRC_FIELDS = struct.Struct("<Id")  # the header fields covered by the checksum
HEADER_BYTES = _HEADER.size
MAX_RECORD_BYTES = 1 << 31  # a record longer than this is damage, not data
_SEGMENT = re.compile(r"^segment-(\d{12})\.spool$")


class SpoolError(Exception):
    """The spool cannot be written (disk full, I/O error, permissions): the request was not accepted."""


class SpoolFull(SpoolError):
    """The spool is at its byte or age bound; ``reason`` is ``"bytes"`` or ``"age"``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SpoolLimits:
    max_bytes: int = 1 << 30  # unshipped bytes (1 GiB)
    max_age: float = 24 * 3600.0  # seconds the oldest unshipped record may wait
    segment_bytes: int = 64 << 20  # a segment is sealed once it is this large


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True)
class SpoolRecord:
    start: Position
    end: Position
    received_at: float
    payload: bytes


@dataclass(frozen=True)
class CorruptRegion:
    """Bytes of a segment that are not a valid record, moved to ``moved_to``."""

    segment: int
    offset: int
    length: int
    reason: str
    moved_to: str


@dataclass(frozen=True)
class SpoolStats:
    bytes: int
    records: int
    oldest_age: float | None
    segments: int
    corrupt_regions: int
    corrupt_bytes: int


def record_header(payload: bytes | bytearray, received_at: float) -> bytes:
    """The header that goes before ``payload`` in a segment."""
    crc = zlib.crc32(payload, zlib.crc32(_CRC_FIELDS.pack(len(payload), received_at)))
    return _HEADER.pack(MAGIC, len(payload), crc, received_at)


def encode_record(payload: bytes, received_at: float) -> bytes:
    """One record's bytes (header + payload)."""
    return record_header(payload, received_at) + payload


def _write_all(fd: int, buffers: Sequence[bytes | bytearray | memoryview]) -> None:
    """os.writev until everything is written (regular files rarely write short; handle it anyway)."""
    views = [memoryview(b) for b in buffers]
    while views:
        written = os.writev(fd, views[:512])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


def decode_header(data: bytes) -> tuple[int, int, float] | str:
    """(length, crc, received_at) of a header, or why it is not one."""
    if len(data) < HEADER_BYTES:
        return "truncated header"
    magic, length, crc, received_at = _HEADER.unpack_from(data)
    if magic != MAGIC:
        return "bad magic"
    if length >= MAX_RECORD_BYTES:
        return "implausible length"
    return length, crc, received_at


def check_record(length: int, crc: int, received_at: float, payload: bytes) -> str | None:
    """None when the payload matches its header, else the reason."""
    if len(payload) < length:
        return "truncated payload"
    if zlib.crc32(payload, zlib.crc32(_CRC_FIELDS.pack(length, received_at))) != crc:
        return "checksum mismatch"
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """One spool directory, owned by one process (an exclusive lock file enforces it)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        limits: SpoolLimits = SpoolLimits(),
        on_corrupt: Callable[[CorruptRegion], None] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.limits = limits
        self.on_corrupt = on_corrupt or (lambda region: None)
        self.corrupt: list[CorruptRegion] = []
        self._lock = threading.Lock()
        old = os.umask(0o077)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        finally:
            os.umask(old)
        os.chmod(self.dir, 0o700)
        self._lockfd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lockfd)
            raise SpoolError(f"spool {self.dir} is in use by another process (one spool per receiver)") from None
        self._cursor = self._load_cursor()
        self._sizes: dict[int, int] = {}  # segment number -> durable size
        for path in self.dir.iterdir():
            m = _SEGMENT.match(path.name)
            if m:
                self._sizes[int(m.group(1))] = path.stat().st_size
        for seg in [s for s in self._sizes if s < self._cursor.segment]:
            self._delete_segment(seg)  # shipped before a crash, not yet deleted
        if not self._sizes:
            self._sizes[max(1, self._cursor.segment)] = 0
            self._create_segment(max(1, self._cursor.segment))
        if self._cursor.segment < min(self._sizes):
            self._cursor = Position(min(self._sizes), 0)
        self._active = max(self._sizes)
        self._recover_tail(self._active)
        self._records = self._count_from(self._cursor)
        self._recount()
        self._fd = os.open(self._path(self._active), os.O_WRONLY | os.O_APPEND)
        self._oldest = self._received_at(self._cursor)

    # -- files ---------------------------------------------------------------------------------
    def _path(self, segment: int) -> Path:
        return self.dir / f"segment-{segment:012d}.spool"

    def _create_segment(self, segment: int) -> None:
        fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        _fsync_dir(self.dir)

    def _delete_segment(self, segment: int) -> None:
        try:
            os.unlink(self._path(segment))
        except FileNotFoundError:
            pass
        self._sizes.pop(segment, None)

    def _load_cursor(self) -> Position:
        path = self.dir / "cursor"
        if not path.exists():
            return Position(0, 0)
        try:
            data = orjson.loads(path.read_bytes())
            return Position(int(data["segment"]), int(data["offset"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # A damaged cursor only costs re-shipping (idempotent): start from the oldest segment.
            return Position(0, 0)

    def _save_cursor(self, pos: Position) -> None:
        tmp = self.dir / "cursor.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps({"segment": pos.segment, "offset": pos.offset}))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / "cursor")
        _fsync_dir(self.dir)

    def _quarantine(self, segment: int, offset: int, end: int, reason: str) -> CorruptRegion:
        """Copy bytes [offset, end) of a segment into corrupt/ and report them."""
        qdir = self.dir / "corrupt"
        qdir.mkdir(mode=0o700, exist_ok=True)
        target = qdir / f"segment-{segment:012d}-at-{offset}.bin"
        with open(self._path(segment), "rb") as src:
            src.seek(offset)
            data = src.read(max(0, end - offset))
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        region = CorruptRegion(segment, offset, len(data), reason, str(target))
        self.corrupt.append(region)
        self.on_corrupt(region)
        return region

    def _recover_tail(self, segment: int) -> None:
        """Validate the active segment; move a torn or damaged tail aside and truncate it."""
        path = self._path(segment)
        size = path.stat().st_size
        offset = 0
        with open(path, "rb") as fh:
            while offset < size:
                fh.seek(offset)
                head = decode_header(fh.read(HEADER_BYTES))
                if isinstance(head, str):
                    reason = head
                    break
                length, crc, received_at = head
                if offset + HEADER_BYTES + length > size:
                    reason = "truncated payload (torn write)"
                    break
                bad = check_record(length, crc, received_at, fh.read(length))
                if bad:
                    reason = bad
                    break
                offset += HEADER_BYTES + length
        if offset < size:
            self._quarantine(segment, offset, size, reason)
            os.truncate(path, offset)
            fd = os.open(path, os.O_WRONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._sizes[segment] = offset

    def _count_from(self, pos: Position) -> int:
        """Records from ``pos`` to the end, by their headers (checksums are checked when read)."""
        count = 0
        for seg in sorted(s for s in self._sizes if s >= pos.segment):
            offset = pos.offset if seg == pos.segment else 0
            size = self._sizes[seg]
            with open(self._path(seg), "rb") as fh:
                while offset + HEADER_BYTES <= size:
                    fh.seek(offset)
                    head = decode_header(fh.read(HEADER_BYTES))
                    if isinstance(head, str):
                        break
                    offset += HEADER_BYTES + head[0]
                    count += 1
        return count

    def _received_at(self, pos: Position) -> float | None:
        at = self._normalise(pos)
        if at is None:
            return None
        with open(self._path(at.segment), "rb") as fh:
            fh.seek(at.offset)
            head = decode_header(fh.read(HEADER_BYTES))
        return None if isinstance(head, str) else head[2]

    def _normalise(self, pos: Position) -> Position | None:
        """The position of the next record at or after ``pos`` (skipping ends of segments), or None."""
        for seg in sorted(s for s in self._sizes if s >= pos.segment):
            offset = pos.offset if seg == pos.segment else 0
            if offset < self._sizes[seg]:
                return Position(seg, offset)
        return None

    # -- writing -------------------------------------------------------------------------------
    def room(self, size: int = 0) -> SpoolFull | None:
        """Why a record of ``size`` bytes would be refused now, or None when it fits.

        Lock-free (the event loop calls it while the writer thread may be in an fsync); the
        authoritative check is repeated inside :meth:`append`."""
        return self._room(size, time.time())

    def _room(self, size: int, now: float) -> SpoolFull | None:
        pending = self._pending_bytes()
        if pending + size + HEADER_BYTES > self.limits.max_bytes:
            return SpoolFull("bytes", f"spool full: {pending:,} bytes unshipped, limit {self.limits.max_bytes:,}")
        if self._oldest is not None and now - self._oldest > self.limits.max_age:
            return SpoolFull("age", f"spool full: the oldest unshipped batch waits {now - self._oldest:,.0f}s, "
                                    f"limit {self.limits.max_age:,.0f}s")
        return None

    def _pending_bytes(self) -> int:
        return self._pending

    def _recount(self) -> None:
        """Recompute the unshipped byte count (under the lock, after the cursor or segments change)."""
        self._pending = sum(size for seg, size in list(self._sizes.items())
                            if seg >= self._cursor.segment) - self._cursor.offset

    def append(self, payloads: Iterable[bytes | bytearray], received_at: float | None = None) -> list[SpoolFull | None]:
        """Append records durably (one vectored write and one fsync for all): per payload None when
        stored, or the SpoolFull that refused it. Raises SpoolError when the disk write itself fails."""
        now = time.time() if received_at is None else received_at
        results: list[SpoolFull | None] = []
        with self._lock:
            buffers: list[bytes | bytearray | memoryview] = []
            added = 0
            for payload in payloads:
                full = self._room(added + len(payload), now)
                results.append(full)
                if full is None:
                    buffers += [record_header(payload, now), payload]
                    added += HEADER_BYTES + len(payload)
            if not buffers:
                return results
            start = self._sizes[self._active]
            try:
                _write_all(self._fd, buffers)
                os.fdatasync(self._fd)
            except OSError as exc:
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    pass
                what = "disk full" if exc.errno == errno.ENOSPC else exc.strerror
                raise SpoolError(f"cannot write the spool {self.dir}: {what}") from None
            self._sizes[self._active] = start + added
            self._pending += added
            self._records += len(buffers) // 2
            if self._oldest is None:
                self._oldest = now
            if self._sizes[self._active] >= self.limits.segment_bytes:
                self._roll()
        return results

    def _roll(self) -> None:
        os.close(self._fd)
        self._active += 1
        self._create_segment(self._active)
        self._sizes[self._active] = 0
        self._fd = os.open(self._path(self._active), os.O_WRONLY | os.O_APPEND)

    # -- reading and committing (the shipper) --------------------------------------------------
    @property
    def cursor(self) -> Position:
        with self._lock:
            return self._cursor

    def read(self, start: Position, max_bytes: int, max_records: int = 1 << 30) -> tuple[list[SpoolRecord], Position]:
        """Durable records from ``start`` (at least one when there is one, then up to ``max_bytes``);
        returns them and the position after them. Damaged records are moved aside and skipped."""
        out: list[SpoolRecord] = []
        total = 0
        pos = start
        while len(out) < max_records and (not out or total < max_bytes):
            with self._lock:
                nxt = self._normalise(pos)
                if nxt is None:
                    break
                size = self._sizes[nxt.segment]
            pos = nxt
            with open(self._path(pos.segment), "rb") as fh:
                fh.seek(pos.offset)
                head = decode_header(fh.read(HEADER_BYTES))
                if isinstance(head, str) or pos.offset + HEADER_BYTES + head[0] > size:
                    reason = head if isinstance(head, str) else "record runs past the end of its segment"
                    # Without a readable header the rest of the segment cannot be framed: move it aside.
                    self._quarantine(pos.segment, pos.offset, size, reason)
                    pos = Position(pos.segment, size)
                    continue
                length, crc, received_at = head
                payload = fh.read(length)
            bad = check_record(length, crc, received_at, payload)
            if bad:
                self._quarantine(pos.segment, pos.offset, pos.offset + HEADER_BYTES + length, bad)
                pos = Position(pos.segment, pos.offset + HEADER_BYTES + length)
                continue
            end = Position(pos.segment, pos.offset + HEADER_BYTES + length)
            out.append(SpoolRecord(pos, end, received_at, payload))
            total += length
            pos = end
        return out, pos

    def commit(self, pos: Position, records: int) -> None:
        """Everything before ``pos`` (``records`` records) is delivered: persist it, free segments."""
        with self._lock:
            if pos <= self._cursor:
                return
            # A fully shipped sealed segment: the cursor moves to the start of the next one.
            while pos.segment < self._active and pos.offset >= self._sizes.get(pos.segment, 0):
                pos = Position(min(s for s in self._sizes if s > pos.segment), 0)
            self._save_cursor(pos)
            self._cursor = pos
            self._records = max(0, self._records - records)
            for seg in [s for s in self._sizes if s < pos.segment]:
                self._delete_segment(seg)
            self._oldest = self._received_at(pos)
            self._recount()

    def stats(self) -> SpoolStats:
        """Current figures (lock-free, like :meth:`room`)."""
        oldest = self._oldest
        age = None if oldest is None else max(0.0, time.time() - oldest)
        corrupt = list(self.corrupt)
        return SpoolStats(self._pending, self._records, age, len(self._sizes), len(corrupt),
                          sum(r.length for r in corrupt))

    def close(self) -> None:
        with self._lock:
            try:
                os.close(self._fd)
            except OSError:
                pass
            try:
                os.close(self._lockfd)
            except OSError:
                pass


class SpoolWriter:
    """Group commit: requests hand their bodies to one thread that appends them with one fsync.

    ``submit(payload, done)`` returns at once; ``done(result)`` is called from the writer thread
    with None (stored), a :class:`SpoolFull`, or a :class:`SpoolError`. Each group is everything
    that waits when the previous fsync ends (up to ``max_group_bytes``), so a burst costs one fsync
    per group rather than one per request, and a request never waits for more than one fsync
    besides its own.
    """

    def __init__(self, spool: Spool, max_group_bytes: int = 64 << 20,
                 on_write: Callable[[int, float], None] | None = None) -> None:
        self.spool = spool
        self.max_group_bytes = max_group_bytes
        self.on_write = on_write or (lambda n, seconds: None)
        self._queue: queue.SimpleQueue[tuple[bytes, Callable[[BaseException | None], None]] | None] = \
            queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="kaudit-spool-writer", daemon=True)
        self._thread.start()

    def submit(self, payload: bytes, done: Callable[[BaseException | None], None]) -> None:
        self._queue.put((payload, done))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            size = len(item[0])
            stop = False
            while size < self.max_group_bytes:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                size += len(nxt[0])
            started = time.monotonic()
            try:
                results: list[BaseException | None] = list(self.spool.append([p for p, _ in group]))
            except SpoolError as exc:
                results = [exc] * len(group)
            self.on_write(len(group), time.monotonic() - started)
            for (_, done), result in zip(group, results):
                try:
                    done(result)
                except Exception:  # noqa: BLE001 - a caller's callback must not stop the writer
                    pass
            if stop:
                return

    def close(self) -> None:
        """Finish every submitted write, then stop."""
        self._queue.put(None)
        self._thread.join()
