"""The writer role (``bootstrap --create-roles``, used by ``ingest`` and ``serve``) appends audit documents and
can change none (issue 15): on secured OpenSearch (security plugin) and secured Elasticsearch (x-pack).

A user holding only ``kaudit-writer-<ns>`` ingests a file, then tries every way the engines offer to
rewrite or remove what it wrote: update and delete by id, an overwriting index request (on the stream
and, with ``if_seq_no``/``if_primary_term``, on the backing index), the same through ``_bulk``, update/
delete by query, deleting the backing index or the data stream. Each is refused, and the superuser
sees every document exactly as it was. The integrity chain's links get the same treatment.
On OpenSearch, whose security plugin has no create-only permission, the writer's ``indices:data/write/index``
would let an overwriting index request through a backing index; bootstrap's write-once final pipeline
refuses every write but a create there.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from kaudit_elk.base.config import Settings
from kaudit_elk.cluster.engine import Engine, EngineRequestError, connect
from kaudit_elk.cluster.templates import Names
from tests.e2e.conftest import SecuredEngine, secured_engine
from tests.e2e.test_real_stack import _SETTINGS_ENV, create_user, superuser

pytestmark = pytest.mark.timeout(900)

def kaudit(engine: SecuredEngine, creds: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _SETTINGS_ENV}
    env.update({"KAUDIT_URL": engine.url, "KAUDIT_CA_CERTS": engine.ca, **creds})
    return subprocess.run([sys.executable, "-m", "kaudit_elk", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd)


def snapshot(su: Engine, index: str) -> dict[str, tuple[str, int, int, str]]:
    """_id -> (backing index, _seq_no, _primary_term, source) for every document of ``index``."""
    su.request("POST", f"/{index}/_refresh")
    body = su.request("POST", f"/{index}/_search", {"size": 1000, "seq_no_primary_term": True,
                                                    "query": {"match_all": {}}})
    return {h["_id"]: (h["_index"], h["_seq_no"], h["_primary_term"], json.dumps(h["_source"], sort_keys=True))
            for h in body["hits"]["hits"]}


def attempts(index: str, doc_id: str, backing: str, seq_no: int, term: int) -> list[tuple[str, str, Any, dict]]:
    """Every way to change or remove one document: (method, path, body, params)."""
    forged = {"@timestamp": "2020-01-01T00:00:00Z", "kaudit": {"forged": True}}
    cas = {"if_seq_no": seq_no, "if_primary_term": term}
    bulk = "\n".join(json.dumps(line) for line in (
        {"index": {"_index": backing, "_id": doc_id, **cas}}, forged,
        {"update": {"_index": backing, "_id": doc_id}}, {"doc": forged},
        {"delete": {"_index": backing, "_id": doc_id}},
        {"index": {"_index": index, "_id": doc_id}}, forged,
        {"delete": {"_index": index, "_id": doc_id}})) + "\n"
    by_query = {"query": {"ids": {"values": [doc_id]}}}
    return [
        ("POST", f"/{index}/_update/{doc_id}", {"doc": forged}, {}),
        ("POST", f"/{backing}/_update/{doc_id}", {"doc": forged}, {}),
        ("PUT", f"/{index}/_doc/{doc_id}", forged, {}),
        ("PUT", f"/{backing}/_doc/{doc_id}", forged, cas),
        ("DELETE", f"/{index}/_doc/{doc_id}", None, {}),
        ("DELETE", f"/{backing}/_doc/{doc_id}", None, {}),
        ("POST", "/_bulk", bulk, {}),
        ("POST", f"/{index}/_update_by_query", {**by_query, "script": {"source": "ctx._source.forged = true"}}, {}),
        ("POST", f"/{index}/_delete_by_query", by_query, {}),
        ("DELETE", f"/{backing}", None, {}),
    ]


def try_all(writer: Engine, tries: list[tuple[str, str, Any, dict]]) -> list[str]:
    """The attempts the engine carried out (it should refuse every one)."""
    done: list[str] = []
    for method, path, body, params in tries:
        try:
            resp = writer.request(method, path, body, params=params or None, ndjson=path == "/_bulk")
        except EngineRequestError as exc:  # refused: by a privilege (403), the engine (400), or the guard (500)
            guard = exc.status == 500 and "append-only" in str(exc)
            assert 400 <= exc.status < 500 or guard, f"{method} {path}: {exc}"
            continue
        if path == "/_bulk":
            done += [f"_bulk {next(iter(item))} -> {item[next(iter(item))]['status']}" for item in resp["items"]
                     if item[next(iter(item))]["status"] < 300]
        elif isinstance(resp, dict) and (resp.get("deleted") or resp.get("updated")) == 0 and not resp.get("failures"):
            done.append(f"{method} {path} answered without changing anything")  # still: it was allowed
        else:
            done.append(f"{method} {path} -> {str(resp)[:200]}")
    return done


def test_writer_role_cannot_update_or_delete_audit_documents(flavor: str, corpus_dir: Path, tmp_path: Path) -> None:
    engine = secured_engine(flavor)
    su = superuser(engine)
    ns = f"wr{uuid.uuid4().hex[:8]}"
    names = Names(ns)
    admin = {"KAUDIT_USERNAME": engine.admin_user, "KAUDIT_PASSWORD": engine.admin_password}
    out = kaudit(engine, admin, "bootstrap", "--create-roles", "--namespace", ns, "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    user, password = f"wr-writer-{ns}", f"Kx-{secrets.token_urlsafe(12)}-9a"
    create_user(su, user, password, [f"kaudit-writer-{ns}"])
    creds = {"KAUDIT_USERNAME": user, "KAUDIT_PASSWORD": password}

    # the writer can do its job: append the events (and their integrity links)
    out = kaudit(engine, creds, "ingest", str(corpus_dir / "audit2rbac" / "demo.log"), "--namespace", ns,
                 "--refresh", "-o", "json", "--dead-letter", str(tmp_path / "dl.ndjson"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    indexed = json.loads(out.stdout)["indexed"]
    before = snapshot(su, names.stream)
    links_index = f"kaudit-integrity-{ns}"
    links_before = snapshot(su, links_index)
    assert len(before) == indexed > 0 and links_before

    writer = connect(Settings(url=engine.url, username=user, password=password, ca_certs=engine.ca, timeout=60))
    doc_id, (backing, seq_no, term, _) = sorted(before.items())[0]
    done = try_all(writer, attempts(names.stream, doc_id, backing, seq_no, term))
    done += try_all(writer, [("DELETE", f"/_data_stream/{names.stream}", None, {})])
    link_id, (link_index, link_seq, link_term, _) = sorted(links_before.items())[0]
    done += try_all(writer, attempts(links_index, link_id, link_index, link_seq, link_term))
    assert not done, f"the writer role {flavor} could change what it wrote: {done}"
    assert snapshot(su, names.stream) == before, "an audit document changed"
    assert snapshot(su, links_index) == links_before, "an integrity link changed"
