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
