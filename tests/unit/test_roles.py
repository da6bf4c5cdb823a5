"""Least-privilege role definitions (pure) and the missing-privilege message."""

from __future__ import annotations

import pytest

from kaudit_elk.cluster.roles import ROLES, api_key_request, missing_privilege, role_definitions


def _by_role(flavor: str) -> dict:
    return {d.role: d for d in role_definitions(flavor, "prod")}


def test_four_roles_per_flavor_named_for_the_namespace() -> None:
    for flavor in ("elasticsearch", "opensearch"):
        defs = role_definitions(flavor, "prod")
        assert [d.name for d in defs] == [f"kaudit-{r}-prod" for r in ROLES]


def test_es_writer_appends_only() -> None:
    writer = _by_role("elasticsearch")["writer"].body
    privs = {p for block in writer["indices"] for p in block["privileges"]}
    assert "create_doc" in privs
    assert not privs & {"index", "write", "delete", "all", "manage", "delete_index"}
    by_names = {tuple(b["names"]): set(b["privileges"]) for b in writer["indices"]}
    assert set(by_names) == {("logs-kubernetes.audit_logs-prod",), ("kaudit-state-prod",), ("kaudit-integrity-prod",)}
    assert by_names[("kaudit-state-prod",)] == {"read"}
    # the chain's links: append only; maintenance = refresh at the end of `ingest --refresh`
    assert by_names[("kaudit-integrity-prod",)] == {"create_doc", "create_index", "maintenance"}


def test_os_writer_cannot_update_or_delete() -> None:
    writer = _by_role("opensearch")["writer"].body
    actions = [a for block in writer["index_permissions"] for a in block["allowed_actions"]]
    assert "indices:data/write/index" in actions
    assert not [a for a in actions if "update" in a or "delete" in a or a in ("indices_all", "write", "crud")]


def test_detector_writes_alerts_and_state_but_only_reads_audit() -> None:
    es = _by_role("elasticsearch")["detector"].body["indices"]
    audit = next(b for b in es if b["names"] == ["logs-kubernetes.audit_logs-prod"])
    assert set(audit["privileges"]) <= {"read", "view_index_metadata"}
    alerts = next(b for b in es if "kaudit-alerts-prod" in b["names"])
    assert "write" in alerts["privileges"] and "kaudit-state-prod" in alerts["names"]
    assert "kaudit-incidents-prod" in alerts["names"]  # detect stores incidents next to alerts
    os_ = _by_role("opensearch")["detector"].body["index_permissions"]
    audit_os = next(b for b in os_ if "logs-kubernetes.audit_logs-prod" in b["index_patterns"])
    assert not [a for a in audit_os["allowed_actions"] if a.startswith("indices:data/write")]


def test_reader_has_no_write_anywhere() -> None:
    es = _by_role("elasticsearch")["reader"].body
    assert {p for b in es["indices"] for p in b["privileges"]} == {"read", "view_index_metadata"}
    os_ = _by_role("opensearch")["reader"].body
    assert not [a for b in os_["index_permissions"] for a in b["allowed_actions"] if "write" in a]


def test_admin_manages_templates_but_not_security() -> None:
    es = _by_role("elasticsearch")["admin"].body
    assert "manage_index_templates" in es["cluster"] and "manage_security" not in es["cluster"]
    assert "all" not in es["cluster"]


def test_api_key_is_limited_to_the_role() -> None:
    writer = _by_role("elasticsearch")["writer"]
    req = api_key_request(writer, "30d")
    assert req["role_descriptors"] == {"kaudit-writer-prod": {k: v for k, v in writer.body.items() if k != "metadata"}}
    assert req["expiration"] == "30d"
    with pytest.raises(Exception, match="Elasticsearch feature"):
        api_key_request(_by_role("opensearch")["writer"])


def test_missing_privilege_named_from_elasticsearch_text() -> None:
    text = ("security_exception: action [indices:data/write/bulk[s]] is unauthorized for user [t-reader] with "
            "effective roles [kaudit-reader-prod] on indices [.ds-logs-kubernetes.audit_logs-prod-2026.12.01-000001], "
            "this action is granted by the index privileges [create_doc,create,index,write,all]")
    msg = missing_privilege(text)
    assert msg is not None
    assert "indices:data/write/bulk" in msg and "t-reader" in msg and "create_doc" in msg
    assert "writer role" in msg


def test_missing_privilege_named_from_opensearch_text() -> None:
    text = ("security_exception: no permissions for [cluster:admin/ingest/pipeline/get] and User [name=t-writer, "
            "backend_roles=[], requestedTenant=null]")
    msg = missing_privilege(text)
    assert msg == ("missing privilege: cluster:admin/ingest/pipeline/get for t-writer "
                   "(the kaudit admin role grants it: bootstrap --create-roles)")


def test_other_errors_are_not_privilege_errors() -> None:
    assert missing_privilege("index_not_found_exception: no such index [x]") is None

