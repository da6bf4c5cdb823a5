"""Nothing lost on the write path, on real engines: log rotation under a checkpoint, refused writes
(401/403) stop the run instead of dead-lettering it, dead letters replay, unbootstrapped namespaces."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kaudit_elk.cluster.engine import Engine
from kaudit_elk.cluster.templates import Names


def kaudit(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kaudit_elk", *args], capture_output=True, text=True, timeout=timeout)


def write_events(path: Path, template: dict, prefix: str, count: int) -> None:
    with path.open("w") as fh:
        for i in range(count):
            fh.write(json.dumps(dict(template, auditID=f"{prefix}-{i:06d}")) + "\n")


def count(engine: Engine, stream: str, prefix: str | None = None) -> int:
    engine.refresh(stream)
    query = {"prefix": {"kubernetes.audit.auditID": prefix}} if prefix else {"match_all": {}}
    return engine.request("POST", f"/{stream}/_count", {"query": query})["count"]


@pytest.fixture
def template(corpus_dir: Path) -> dict:
    return json.loads((corpus_dir / "audit2rbac" / "demo.log").read_text().splitlines()[0])


def bootstrap(engine: Engine, prefix: str) -> str:
    ns = f"{prefix}{uuid.uuid4().hex[:8]}"
    out = kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns, "-q")
    assert out.returncode == 0, out.stderr
    return ns


def test_checkpoint_survives_rename_rotation_no_event_skipped(engine: Engine, tmp_path: Path, template: dict) -> None:
    """The README's pattern: ingest audit.log with a checkpoint, the log rotates, ingest audit.log*."""
    ns = bootstrap(engine, "rot")
    log, ck = tmp_path / "audit.log", tmp_path / "ck.json"
    common = ("--url", engine.settings.url, "--namespace", ns, "--checkpoint", str(ck),
              "--dead-letter", str(tmp_path / "dl.ndjson"), "-o", "json")
    write_events(log, template, "before", 1000)
    first = kaudit("ingest", str(log), *common)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["indexed"] == 1000
    assert ck.stat().st_mode & 0o777 == 0o600
    os.rename(log, tmp_path / "audit.log.1")  # mv audit.log audit.log.1
    write_events(log, template, "after", 2000)  # a new, longer audit.log
    second = kaudit("ingest", *sorted(glob.glob(str(tmp_path / "audit.log*"))), *common)  # audit.log*
    assert second.returncode == 0, second.stderr
    stats = json.loads(second.stdout)
    assert (stats["read"], stats["indexed"]) == (2000, 2000), stats  # the rotated file is not re-read either
    stream = Names(ns).stream
    assert count(engine, stream, "after-") == 2000
    assert count(engine, stream) == 3000


def test_dead_letters_are_replayable_by_ingest(engine: Engine, tmp_path: Path, template: dict) -> None:
    ns = bootstrap(engine, "dlr")
    source = tmp_path / "in.log"
    good = json.dumps(dict(template, auditID="replay-000001"))
    late = json.dumps(dict(template, auditID="replay-000002"))
    source.write_bytes(good.encode() + b"\n" + late[:40].encode() + b"\xff\n" + b"{not json\n")
    dead = tmp_path / "dead.ndjson"
    common = ("--url", engine.settings.url, "--namespace", ns, "-o", "json", "--refresh")
    out = kaudit("ingest", str(source), "--dead-letter", str(dead), *common)
    assert out.returncode == 4, out.stderr
    assert json.loads(out.stdout)["dead_lettered"] == 2
    assert dead.stat().st_mode & 0o777 == 0o600
    entries = [json.loads(line) for line in dead.read_text().splitlines()]
    assert "raw_base64" in entries[0] and "raw" in entries[1]
    # the operator repairs the dead letters (here: the cut line) and hands the file back to ingest
    entries[0].pop("raw_base64")
    entries[0]["raw"] = late
    fixed = tmp_path / "fixed.ndjson"
    fixed.write_text("".join(json.dumps(e) + "\n" for e in entries))
    again = kaudit("ingest", str(fixed), "--dead-letter", str(tmp_path / "dead2.ndjson"), *common)
    assert again.returncode == 4, again.stderr
    stats = json.loads(again.stdout)
    assert (stats["indexed"], stats["dead_lettered"]) == (1, 1)
    assert count(engine, Names(ns).stream, "replay-") == 2
    redead = json.loads((tmp_path / "dead2.ndjson").read_text())
    assert redead["raw"] == "{not json\n" and redead["reason"].startswith("invalid JSON")


# ---- refused writes: an engine error, not bad records (issue 9, case 2) ---------------------
@pytest.fixture(scope="module")
def secured_es():
    """The secured Elasticsearch 8.19.7 of tests/engine/secured_elasticsearch.py (file realm users)."""
    import secured_elasticsearch as sec

    if "elasticsearch" not in sec.engine_urls():
        pytest.skip("Elasticsearch 8.19.7 is not among KAUDIT_TEST_ENGINES (its download is reused)")
    try:
        es = sec.start(sec.default_port())
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("KAUDIT_REQUIRE_ENGINES") == "1":
            pytest.fail(f"secured Elasticsearch did not start: {exc}")
        pytest.skip(f"secured Elasticsearch did not start: {exc}")
    yield es
    es.stop()


def _secured_bootstrap(es) -> str:
    ns = f"sec{uuid.uuid4().hex[:8]}"
    out = kaudit("bootstrap", "--url", es.url, "-u", "admin", "--password", es.auth("admin")["password"],
                 "--namespace", ns, "-q")
    assert out.returncode == 0, out.stderr
    return ns


def _admin(es) -> Engine:
    from kaudit_elk.base.config import Settings
    from kaudit_elk.cluster.engine import connect

    return connect(Settings(url=es.url, **es.auth("admin")))


@pytest.mark.parametrize("user", ["reader", "stranger"])
def test_permission_denied_is_an_engine_error_and_nothing_is_dead_lettered(
        secured_es, user: str, tmp_path: Path, template: dict) -> None:
    """reader: the whole _bulk request is refused (403); stranger may write elsewhere, so each item is."""
    ns = _secured_bootstrap(secured_es)
    log, ck, dead = tmp_path / "audit.log", tmp_path / "ck.json", tmp_path / "dead.ndjson"
    write_events(log, template, "denied", 3000)
    out = kaudit("ingest", str(log), "--url", secured_es.url, "-u", user, "--password", secured_es.auth(user)["password"],
                 "--namespace", ns, "--checkpoint", str(ck), "--dead-letter", str(dead), "--batch-mb", "0.25")
    assert out.returncode == 3, out.stderr
    assert "HTTP 403" in out.stderr and "missing privilege: indices:" in out.stderr
    assert "refused writes" in out.stderr
    assert not dead.exists(), "refused writes must not be dead-lettered"
    assert not ck.exists(), "the checkpoint must not move past events that were not indexed"
    ok = kaudit("ingest", str(log), "--url", secured_es.url, "-u", "writer", "--password", secured_es.auth("writer")["password"],
                "--namespace", ns, "--checkpoint", str(ck), "--dead-letter", str(dead), "-o", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["indexed"] == 3000
    assert count(_admin(secured_es), Names(ns).stream) == 3000


def test_credentials_revoked_mid_run_stop_with_the_checkpoint_in_place(secured_es, tmp_path: Path, template: dict) -> None:
    from kaudit_elk.base.config import Settings
    from kaudit_elk.base.errors import EXIT_ENGINE, EngineError
    from kaudit_elk.cluster.engine import connect
    from kaudit_elk.ingest.bulk import IngestOptions, ingest

    ns = _secured_bootstrap(secured_es)
    log, ck, dead = tmp_path / "audit.log", tmp_path / "ck.json", tmp_path / "dead.ndjson"
    write_events(log, template, "first", 500)
    options = IngestOptions(namespace=ns, checkpoint=str(ck), dead_letter=str(dead),  # 4 MiB batches: none sent before the revocation
                            retry_for=30)
    engine = connect(Settings(url=secured_es.url, **secured_es.auth("revoked")))
    assert ingest(engine, [str(log)], options).indexed == 500
    settled = ck.read_bytes()
    with log.open("a") as fh:  # the log grows; then the user's credentials are revoked mid-run
        for i in range(5000):
            fh.write(json.dumps(dict(template, auditID=f"second-{i:06d}")) + "\n")
    line = secured_es.user_line("revoked")
    revoked = []

    def revoke(n: int) -> None:
        if not revoked:
            revoked.append(n)
            secured_es.remove_user("revoked")

    with pytest.raises(EngineError) as caught:
        ingest(engine, [str(log)], options, progress=revoke)
    assert caught.value.exit_code == EXIT_ENGINE and "401" in str(caught.value)
    assert not dead.exists(), "refused writes must not be dead-lettered"
    assert ck.read_bytes() == settled, "the checkpoint must stay where everything was indexed"
    secured_es.restore_user("revoked", line)
    stats = ingest(connect(Settings(url=secured_es.url, **secured_es.auth("revoked"))), [str(log)], options)
    assert (stats.read, stats.dead_lettered) == (5000, 0)
    assert count(_admin(secured_es), Names(ns).stream) == 5500


# ---- a namespace never bootstrapped (issue 9, case 3) ---------------------------------------
def _exists(engine: Engine, name: str) -> bool:
    return engine.request("GET", f"/{name}", ignore=(404,)) is not None


def test_ingest_refuses_a_namespace_never_bootstrapped(engine: Engine, tmp_path: Path, template: dict) -> None:
    ns = f"typo{uuid.uuid4().hex[:8]}"
    log = tmp_path / "audit.log"
    write_events(log, template, "typo", 10)
    out = kaudit("ingest", str(log), "--url", engine.settings.url, "--namespace", ns,
                 "--dead-letter", str(tmp_path / "dl.ndjson"))
    assert out.returncode == 2, out.stderr
    assert f"kaudit-elk bootstrap --namespace {ns}" in out.stderr
    assert not _exists(engine, Names(ns).stream), "nothing may be created in a namespace that was never bootstrapped"
    bootstrap_out = kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns, "-q")
    assert bootstrap_out.returncode == 0, bootstrap_out.stderr
    ok = kaudit("ingest", str(log), "--url", engine.settings.url, "--namespace", ns, "--refresh",
                "--dead-letter", str(tmp_path / "dl.ndjson"))
    assert ok.returncode == 0, ok.stderr
    assert count(engine, Names(ns).stream) == 10


def test_bootstrap_explains_a_squatting_plain_index_and_writers_refuse(engine: Engine, tmp_path: Path,
                                                                     template: dict) -> None:
    ns = f"squat{uuid.uuid4().hex[:8]}"
    stream = Names(ns).stream
    engine.request("PUT", f"/{stream}")  # what an ingest before bootstrap used to leave behind
    engine.request("POST", f"/{stream}/_doc", {"kubernetes": {"audit": {"auditID": "x"}}}, params={"refresh": "true"})
    try:
        out = kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns)
        assert out.returncode == 2, out.stderr
        assert "is a plain index" in out.stderr and "_reindex" in out.stderr and f"DELETE /{stream}" in out.stderr
        log = tmp_path / "audit.log"
        write_events(log, template, "squat", 5)
        ingest_out = kaudit("ingest", str(log), "--url", engine.settings.url, "--namespace", ns,
                            "--dead-letter", str(tmp_path / "dl.ndjson"))
        assert ingest_out.returncode == 2 and "plain index" in ingest_out.stderr, ingest_out.stderr
        assert engine.request("POST", f"/{stream}/_count", {"query": {"match_all": {}}})["count"] == 1
    finally:
        engine.request("DELETE", f"/{stream}", ignore=(404,))


def test_bootstrap_rolls_a_stream_made_from_another_template_onto_its_own(engine: Engine, tmp_path: Path,
                                                                         template: dict) -> None:
    ns = f"other{uuid.uuid4().hex[:8]}"
    stream = Names(ns).stream
    foreign = f"foreign-{ns}"
    engine.request("PUT", f"/_index_template/{foreign}", {"index_patterns": [stream], "data_stream": {}, "priority": 10})
    try:
        engine.request("POST", f"/{stream}/_doc", {"@timestamp": "2024-01-01T00:00:00Z", "verb": 3},
                       params={"refresh": "true"})
        out = kaudit("bootstrap", "--url", engine.settings.url, "--namespace", ns)
        assert out.returncode == 0, out.stderr
        assert "created from another template" in out.stderr and "rolled over" in out.stderr
        log = tmp_path / "audit.log"
        write_events(log, template, "other", 7)
        ok = kaudit("ingest", str(log), "--url", engine.settings.url, "--namespace", ns, "--refresh", "-o", "json",
                    "--dead-letter", str(tmp_path / "dl.ndjson"))
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["indexed"] == 7
    finally:
        engine.request("DELETE", f"/_data_stream/{stream}", ignore=(400, 404, 405))  # 405: no data-streams module
        for name in (engine.request("GET", f"/{stream}/_mapping", ignore=(404,)) or {}):
            engine.request("DELETE", f"/{name}", ignore=(404, 400))
        engine.request("DELETE", f"/_index_template/{foreign}", ignore=(404,))


# ---- report from the cluster says what it covers (issue 9, case 5) --------------------------
def test_cluster_report_over_its_limit_covers_the_newest_and_says_so(engine: Engine, tmp_path: Path,
                                                                     template: dict) -> None:
    ns = bootstrap(engine, "rep")
    log = tmp_path / "audit.log"
    with log.open("w") as fh:
        for i in range(30):
            ts = f"2026-01-05T10:{i:02d}:00.000000Z"
            fh.write(json.dumps(dict(template, auditID=f"rep-{i:03d}", requestReceivedTimestamp=ts,
                                     stageTimestamp=ts)) + "\n")
    ok = kaudit("ingest", str(log), "--url", engine.settings.url, "--namespace", ns, "--refresh",
                "--dead-letter", str(tmp_path / "dl.ndjson"))
    assert ok.returncode == 0, ok.stderr
    common = ("report", "--url", engine.settings.url, "--namespace", ns, "--format", "json",
              "--from", "2026-01-05T00:00:00Z", "--to", "2026-01-06T00:00:00Z")
    out = kaudit(*common, "--max-events", "10")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["summary"]["events"] == 10
    assert any("newest 10 of the 30 events" in n and "from 2026-01-05T10:20:00" in n  # the newest, not the oldest
               for n in data["notes"]), data["notes"]
    full = json.loads(kaudit(*common).stdout)
    assert full["summary"]["events"] == 30 and not any("newest" in n for n in full["notes"])
