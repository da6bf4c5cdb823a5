"""Reading files, gzip, stdin, whole-file JSON and growing/rotated logs; bad lines never stop a run."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from kaudit_elk.base.errors import InputError
from kaudit_elk.events.sources import read_records

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "inputs"
EXEC_LINE = (GOLDEN / "k8s-audit-pod-exec-file.log").read_bytes().strip()


def ev(audit_id: str) -> bytes:
    return json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": audit_id,
                       "stage": "ResponseComplete", "verb": "get"}).encode()


def test_jsonl_file_with_line_numbers_and_offsets(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(ev("a") + b"\n\n" + ev("b") + b"\n")
    recs = list(read_records([str(path)]))
    assert [(r.line, r.event["auditID"], r.error) for r in recs] == [(1, "a", None), (3, "b", None)]
    assert recs[-1].offset == path.stat().st_size
    assert recs[0].raw.strip() == ev("a")


def test_garbage_binary_and_truncated_lines_become_error_records(tmp_path):
    path = tmp_path / "mixed.log"
    path.write_bytes(b"\n".join([ev("a"), b"garbage here", b"\xff\xfe\x00\x01binary", b'{"kind":0}',
                                 ev("b"), ev("c")[:25]]))
    recs = list(read_records([str(path)]))
    good = [r.event["auditID"] for r in recs if r.event]
    assert good == ["a", "b"]
    errors = {r.line: r.error for r in recs if r.error}
    assert set(errors) == {2, 3, 4, 6}
    assert errors[2].startswith("invalid JSON") and errors[3].startswith("invalid JSON")
    assert errors[4].startswith("not an audit event") and errors[6].startswith("invalid JSON")
    assert all(r.source == str(path) for r in recs)


def test_gzip_is_detected_by_magic_bytes_not_extension(tmp_path):
    path = tmp_path / "audit.log.1"  # no .gz suffix
    path.write_bytes(gzip.compress(ev("a") + b"\n" + ev("b") + b"\n"))
    assert [r.event["auditID"] for r in read_records([str(path)])] == ["a", "b"]


def test_truncated_gzip_keeps_what_was_read_and_reports_the_error(tmp_path):
    blob = gzip.compress(b"".join(ev(str(i)) + b"\n" for i in range(2000)))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    recs = list(read_records([str(path)]))
    assert any(r.event for r in recs)
    assert recs[-1].error is not None
    assert "read error" in recs[-1].error or recs[-1].error.startswith("invalid JSON")


def test_whole_file_pretty_printed_event_with_bom():
    [rec] = list(read_records([str(GOLDEN / "sample_KubeAuditLog_event.json")]))
    assert rec.error is None and rec.event["verb"] == "update" and rec.line == 1


def test_event_hubs_batch_file_yields_every_record_with_the_same_line():
    recs = list(read_records([str(GOLDEN / "event.json")]))
    assert len(recs) == 22 and {r.line for r in recs} == {1}


def test_eventlist_line_yields_several_records_on_one_line(tmp_path):
    batch = {"kind": "EventList", "items": [json.loads(ev("a")), json.loads(ev("b"))]}
    path = tmp_path / "batch.log"
    path.write_text(json.dumps(batch) + "\n" + ev("c").decode() + "\n")
    assert [(r.line, r.event["auditID"]) for r in read_records([str(path)])] == [(1, "a"), (1, "b"), (2, "c")]


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(ev("a") + b"\n" + b"nope\n")))
    recs = list(read_records(["-"]))
    assert recs[0].source == "-" and recs[0].event["auditID"] == "a" and recs[1].error


def test_missing_file_raises_input_error_naming_it(tmp_path):
    missing = tmp_path / "nope.log"
    with pytest.raises(InputError, match="nope.log"):
        list(read_records([str(missing)]))


def test_resume_from_offset(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(ev(x) + b"\n" for x in "abc"))
    first = list(read_records([str(path)]))
    rest = list(read_records([str(path)], start_offsets={str(path): first[0].offset}))
    assert [r.event["auditID"] for r in rest] == ["b", "c"]
    gz = tmp_path / "audit.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    rest = list(read_records([str(gz)], start_offsets={str(gz): first[1].offset}))
    assert [r.event["auditID"] for r in rest] == ["c"]


def _collect(gen, n, timeout=10.0):
    out = []
    deadline = time.monotonic() + timeout
    for rec in gen:
        out.append(rec)
        if len(out) >= n or time.monotonic() > deadline:
            break
    gen.close()
    return out


def _writer(actions):
    def run():
        for delay, action in actions:
            time.sleep(delay)
            action()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _append(path: Path, data: bytes):
    return lambda: path.open("ab").write(data)


def test_follow_survives_rename_rotation(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(ev("a") + b"\n")

    def rotate():
        with path.open("ab") as fh:
            fh.write(ev("b") + b"\n")
        os.rename(path, tmp_path / "audit.log.1")
        path.write_bytes(ev("c") + b"\n")

    _writer([(0.2, _append(path, b"")), (0.2, rotate), (0.2, _append(path, ev("d") + b"\n"))])
    recs = _collect(read_records([str(path)], follow=True, poll_interval=0.02), 4)
    assert [r.event["auditID"] for r in recs] == ["a", "b", "c", "d"]


def test_follow_survives_copytruncate_and_waits_for_complete_lines(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(ev("a") + b"\n")
    half = ev("b")

    def truncate():
        shutil.copy(path, tmp_path / "audit.log.1")
        path.open("wb").close()

    _writer([(0.2, _append(path, half[:10])), (0.2, _append(path, half[10:] + b"\n")),
             (0.2, truncate), (0.2, _append(path, ev("c") + b"\n"))])
    recs = _collect(read_records([str(path)], follow=True, poll_interval=0.02), 3)
    assert [r.event["auditID"] for r in recs] == ["a", "b", "c"]
    assert all(r.error is None for r in recs)


# ---- checkpoints by file identity (issue 9, case 1) -----------------------------------------
from kaudit_elk.events import sources as sources_mod  # noqa: E402
from kaudit_elk.events.checkpoint import Checkpoint  # noqa: E402


def _settle(ck: Checkpoint, recs) -> None:
    """What ingest does once every record is indexed: remember the last offset of each file."""
    ck.update({r.file: (r.source, r.offset) for r in recs if r.file is not None})


def test_checkpoint_after_rename_rotation_reads_the_new_file_from_its_start(tmp_path):
    log, ck_path = tmp_path / "audit.log", tmp_path / "ck.json"
    log.write_bytes(b"".join(ev(f"old{i}") + b"\n" for i in range(3)))
    ck = Checkpoint(str(ck_path))
    _settle(ck, list(read_records([str(log)], checkpoint=ck)))
    assert ck_path.stat().st_mode & 0o777 == 0o600
    os.rename(log, tmp_path / "audit.log.1")
    log.write_bytes(b"".join(ev(f"new{i}") + b"\n" for i in range(6)))  # longer than the old file
    ck = Checkpoint(str(ck_path))
    recs = list(read_records([str(log), str(tmp_path / "audit.log.1")], checkpoint=ck))
    assert [r.event["auditID"] for r in recs] == [f"new{i}" for i in range(6)]
    assert [r.line for r in recs] == [1, 2, 3, 4, 5, 6]


def test_checkpoint_starts_over_when_the_inode_holds_another_file(tmp_path):
    log = tmp_path / "audit.log"
    log.write_bytes(ev("a") + b"\n" + ev("b") + b"\n")
    ck = Checkpoint(None)
    _settle(ck, list(read_records([str(log)], checkpoint=ck)))
    with log.open("r+b") as fh:  # same inode, other content (what an inode reuse looks like)
        fh.write(ev("x") + b"\n" + ev("y") + b"\n" + ev("z") + b"\n")
    assert [r.event["auditID"] for r in read_records([str(log)], checkpoint=ck)] == ["x", "y", "z"]
    log.write_bytes(ev("x") + b"\n")  # truncated below the recorded offset
    assert [r.event["auditID"] for r in read_records([str(log)], checkpoint=ck)] == ["x"]


def test_checkpoint_resumes_a_grown_file_with_the_files_line_numbers(tmp_path):
    log = tmp_path / "audit.log"
    log.write_bytes(ev("a") + b"\n\n" + ev("b") + b"\n")
    ck = Checkpoint(str(tmp_path / "ck.json"))
    _settle(ck, list(read_records([str(log)], checkpoint=ck)))
    with log.open("ab") as fh:
        fh.write(ev("c") + b"\n" + ev("d") + b"\n")
    recs = list(read_records([str(log)], checkpoint=Checkpoint(str(tmp_path / "ck.json"))))
    assert [(r.line, r.event["auditID"]) for r in recs] == [(4, "c"), (5, "d")]


def test_old_path_keyed_checkpoint_is_not_trusted(tmp_path):
    log, ck_path = tmp_path / "audit.log", tmp_path / "ck.json"
    log.write_bytes(ev("a") + b"\n" + ev("b") + b"\n")
    ck_path.write_text(json.dumps({"offsets": {str(log): len(ev("a")) + 1}}))
    recs = list(read_records([str(log)], checkpoint=Checkpoint(str(ck_path))))
    assert [r.event["auditID"] for r in recs] == ["a", "b"]


def test_follow_resume_after_rotation_while_stopped_reads_the_new_file(tmp_path):
    """--follow shares the logic: the log rotated while ingest was down."""
    log = tmp_path / "audit.log"
    log.write_bytes(ev("a") + b"\n" + ev("b") + b"\n")
    ck = Checkpoint(str(tmp_path / "ck.json"))
    _settle(ck, _collect(read_records([str(log)], follow=True, poll_interval=0.02, checkpoint=ck), 2))
    os.rename(log, tmp_path / "audit.log.1")
    log.write_bytes(b"".join(ev(x) + b"\n" for x in "cdefgh"))
    recs = _collect(read_records([str(log)], follow=True, poll_interval=0.02,
                                 checkpoint=Checkpoint(str(tmp_path / "ck.json"))), 6)
    assert [r.event["auditID"] for r in recs] == list("cdefgh")
    ck2 = Checkpoint(str(tmp_path / "ck.json"))
    _settle(ck2, recs[:3])
    with log.open("ab") as fh:
        fh.write(ev("i") + b"\n")
    recs = _collect(read_records([str(log)], follow=True, poll_interval=0.02, checkpoint=ck2), 4)
    assert [(r.line, r.event["auditID"]) for r in recs] == [(4, "f"), (5, "g"), (6, "h"), (7, "i")]


# ---- a broken first line (issue 9, case 4) --------------------------------------------------
def test_broken_first_line_of_a_big_file_stays_in_line_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(sources_mod, "WHOLE_DOCUMENT_MAX", 4096)
    seen: list[int] = []
    real = sources_mod._parses
    monkeypatch.setattr(sources_mod, "_parses", lambda raw: seen.append(len(raw)) or real(raw))
    path = tmp_path / "cut.log"
    lines = [ev("first")[:30]] + [ev(f"e{i:04d}") for i in range(400)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    recs = list(read_records([str(path)]))
    assert recs[0].line == 1 and recs[0].error.startswith("invalid JSON")
    assert [(r.line, r.event["auditID"]) for r in recs[1:]] == [(i + 2, f"e{i:04d}") for i in range(400)]
    assert max(seen) <= 4096 + len(lines[0]) + 1, "the whole file was read as one document"


def test_line_numbers_count_newlines_only_not_carriage_returns(tmp_path):
    """JSON allows \\r as whitespace; splitlines() would cut such a line in two and shift the rest."""
    path = tmp_path / "cr.log"
    cr_event = ev("cr").replace(b'"verb"', b'\r"verb"')
    path.write_bytes(ev("first")[:30] + b"\n" + cr_event + b"\n" + ev("after") + b"\n")
    recs = list(read_records([str(path)]))
    assert [(r.line, r.event and r.event["auditID"]) for r in recs] == [(1, None), (2, "cr"), (3, "after")]


def test_pretty_printed_document_is_still_read_whole(tmp_path):
    path = tmp_path / "list.json"
    events = [json.loads(ev(x)) for x in "abc"]
    path.write_text(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}, indent=2))
    assert [r.event["auditID"] for r in read_records([str(path)])] == ["a", "b", "c"]


# ---- dead letters are input again (issue 9, case 2) -----------------------------------------
def test_dead_letter_file_replays_raw_and_raw_base64(tmp_path):
    from kaudit_elk.events.sources import Record
    from kaudit_elk.ingest.bulk import DeadLetters

    dead = tmp_path / "dead.ndjson"
    letters = DeadLetters(str(dead))
    letters.write(Record("in.log", 1, ev("a") + b"\n", None, "rejected", 10), "rejected by the engine: x")
    letters.write(Record("in.log", 2, b"\xff" + ev("b"), None, "invalid", 20), "invalid JSON: y")
    letters.close()
    assert dead.stat().st_mode & 0o777 == 0o600
    recs = list(read_records([str(dead)]))
    assert recs[0].event["auditID"] == "a" and recs[0].raw == ev("a") + b"\n"
    assert recs[1].error.startswith("invalid JSON") and recs[1].raw == b"\xff" + ev("b")


def test_follow_calls_on_idle_when_the_file_is_quiet(tmp_path):
    """A batching consumer is told when nothing new came, so a quiet file's last events are sent."""
    path = tmp_path / "audit.log"
    path.write_text(json.dumps({"kind": "Event", "auditID": "a", "stage": "ResponseComplete"}) + "\n")
    idle: list[int] = []

    def quiet() -> None:  # the first idle poll: the consumer hears of it, then the writer writes again
        idle.append(1)
        if len(idle) == 1:
            with path.open("a") as fh:
                fh.write(json.dumps({"kind": "Event", "auditID": "b", "stage": "ResponseComplete"}) + "\n")

    gen = read_records([str(path)], follow=True, poll_interval=0.01, on_idle=quiet)
    assert next(gen).line == 1 and not idle  # not idle while there is data
    assert next(gen).line == 2 and idle == [1]
    gen.close()
