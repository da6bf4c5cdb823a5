"""The serve spool: durable records, torn tails and damage reported (not fatal), bounds, replay."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kaudit_elk.ingest.spool import (HEADER_BYTES, Position, Spool, SpoolError, SpoolFull, SpoolLimits,
                                     SpoolWriter, encode_record)


def _drain(spool: Spool) -> list[bytes]:
    out, pos = [], spool.cursor
    while True:
        records, pos = spool.read(pos, 1 << 20)
        if not records:
            return out
        out += [r.payload for r in records]


def test_records_survive_reopen_and_commit_moves_the_cursor(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    assert spool.append([b"one", b"two"]) == [None, None]
    assert spool.append([b"three"]) == [None]
    records, end = spool.read(spool.cursor, 1 << 20)
    assert [r.payload for r in records] == [b"one", b"two", b"three"]
    spool.commit(records[1].end, 2)  # the first two are delivered
    spool.close()
    again = Spool(tmp_path / "s")  # a restart (or a crash) replays from the cursor
    assert _drain(again) == [b"three"]
    assert again.stats().records == 1


def test_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.append([b"secret audit data"])
    spool.commit(spool.read(spool.cursor, 100)[1], 1)
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o700
    for path in (tmp_path / "s").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_one_process_per_spool(tmp_path: Path) -> None:
    Spool(tmp_path / "s")
    with pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path / "s")


def test_torn_tail_is_moved_aside_and_reported_not_fatal(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.append([b"kept-1", b"kept-2"])
    spool.close()
    seg = next((tmp_path / "s").glob("segment-*.spool"))
    torn = encode_record(b"never acknowledged", 1.0)[:-5]  # a crash in the middle of a write
    with seg.open("ab") as fh:
        fh.write(torn)
    again = Spool(tmp_path / "s")
    assert [r.reason for r in again.corrupt] == ["truncated payload (torn write)"]
    assert Path(again.corrupt[0].moved_to).read_bytes() == torn
    assert _drain(again) == [b"kept-1", b"kept-2"]
    again.append([b"after"])  # appends continue after the last good record
    assert _drain(again) == [b"kept-1", b"kept-2", b"after"]


def test_damaged_record_in_a_sealed_segment_is_skipped_and_the_rest_ships(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", SpoolLimits(segment_bytes=100))
    payloads = [bytes([65 + i]) * 90 for i in range(4)]  # each record seals its segment
    for p in payloads:
        spool.append([p])
    spool.close()
    segs = sorted((tmp_path / "s").glob("segment-*.spool"))
    assert len(segs) >= 3
    data = bytearray(segs[0].read_bytes())
    data[HEADER_BYTES + 10] ^= 0xFF  # flip a payload byte of the first record
    segs[0].write_bytes(bytes(data))
    again = Spool(tmp_path / "s", SpoolLimits(segment_bytes=100))
    got = _drain(again)
    assert got == payloads[1:]
    assert [r.reason for r in again.corrupt] == ["checksum mismatch"]


def test_segments_roll_and_shipped_ones_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", SpoolLimits(segment_bytes=200))
    for _i in range(10):
        spool.append([b"x" * 100])
    assert len(list((tmp_path / "s").glob("segment-*"))) >= 5
    records, end = spool.read(spool.cursor, 1 << 20)
    spool.commit(end, len(records))
    assert spool.stats().bytes == 0 and spool.stats().records == 0
    assert len(list((tmp_path / "s").glob("segment-*"))) == 1


def test_byte_bound_refuses_new_records_and_keeps_old_ones(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", SpoolLimits(max_bytes=1000))
    assert spool.append([b"a" * 400, b"b" * 400, b"c" * 400])[:2] == [None, None]
    full = spool.append([b"d" * 200])[0]
    assert isinstance(full, SpoolFull) and full.reason == "bytes"
    assert isinstance(spool.room(200), SpoolFull)
    records, end = spool.read(spool.cursor, 1 << 20)
    assert [len(r.payload) for r in records] == [400, 400]
    spool.commit(end, 2)
    assert spool.room(200) is None  # shipping frees room


def test_age_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", SpoolLimits(max_age=60))
    spool.append([b"old"], received_at=1000.0)
    full = spool.room(1)
    assert isinstance(full, SpoolFull) and full.reason == "age"


def test_group_writer_answers_each_submitter(tmp_path: Path) -> None:
    import threading

    spool = Spool(tmp_path / "s", SpoolLimits(max_bytes=350))
    writer = SpoolWriter(spool)
    results: list = []
    done = threading.Event()

    def cb(result: object) -> None:
        results.append(result)
        if len(results) == 3:
            done.set()

    for _ in range(3):
        writer.submit(b"z" * 100, cb)
    assert done.wait(10)
    writer.close()
    assert results.count(None) == 2 and isinstance([r for r in results if r][0], SpoolFull)
    assert _drain(spool) == [b"z" * 100] * 2


def test_read_position_is_durable_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.append([b"1"])
    records, end = spool.read(Position(0, 0), 10)
    assert records[0].start == Position(1, 0) and end > records[0].start
