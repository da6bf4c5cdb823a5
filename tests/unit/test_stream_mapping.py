"""The audit mapping as rendered per engine: data_stream.* and the fields typed as in Elastic's integration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from kaudit_elk.cluster.engine import Capabilities
from kaudit_elk.cluster.templates import BootstrapOptions, desired_objects
from kaudit_elk.events import fieldspec as fs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def corpus(corpus_dir: Path) -> Path:
    return corpus_dir


def _properties(flavor: str, caps: Capabilities, namespace: str = "team_a") -> dict:
    objects, _ = desired_objects(flavor, caps, BootstrapOptions(namespace=namespace, pipeline=False))
    (mappings,) = [o for o in objects if o.name == f"kaudit-audit-mappings-{namespace}"]
    return mappings.body["template"]["mappings"]["properties"]


@pytest.mark.parametrize("flavor, flat", [("elasticsearch", "flattened"), ("opensearch", "flat_object")])
def test_data_stream_fields_are_constant_keyword_with_the_streams_values_where_the_engine_has_it(flavor, flat):
    ds = _properties(flavor, Capabilities(flat_type=flat, constant_keyword=True))["data_stream"]["properties"]
    assert ds == {"type": {"type": "constant_keyword", "value": "logs"},
                  "dataset": {"type": "constant_keyword", "value": "kubernetes.audit_logs"},
                  "namespace": {"type": "constant_keyword", "value": "team_a"}}


@pytest.mark.parametrize("flavor, flat", [("elasticsearch", "flattened"), ("opensearch", "flat_object")])
def test_data_stream_fields_are_keyword_without_constant_keyword(flavor, flat):
    ds = _properties(flavor, Capabilities(flat_type=flat, constant_keyword=False))["data_stream"]["properties"]
    assert {k: v["type"] for k, v in ds.items()} == {"type": "keyword", "dataset": "keyword", "namespace": "keyword"}


def test_capabilities_know_where_constant_keyword_exists():
    from kaudit_elk.cluster.engine import EngineInfo, capabilities_from_nodes

    def caps(flavor, version, modules=()):
        nodes = {"nodes": {"n": {"modules": [{"name": m} for m in modules], "plugins": []}}}
        return capabilities_from_nodes(EngineInfo(flavor, version, "x", "c"), nodes).constant_keyword

    assert caps("opensearch", (2, 19, 6)) and caps("opensearch", (3, 0, 0)) and not caps("opensearch", (2, 13, 0))
    assert caps("elasticsearch", (8, 19, 7), ["constant-keyword"]) and not caps("elasticsearch", (8, 19, 7), ["x-pack-core"])


def test_text_fields_of_elastics_integration_are_text_analysed_as_one_term_with_a_keyword_multi_field():
    audit = _properties("elasticsearch", Capabilities())["kubernetes"]["properties"]["audit"]["properties"]
    for spec in (audit["sourceIPs"], audit["user"]["properties"]["groups"],
                 audit["impersonatedUser"]["properties"]["groups"],
                 audit["annotations"]["properties"]["authorization_k8s_io/reason"]):
        assert spec["type"] == "text" and spec["analyzer"] == "keyword"
        assert spec["fields"][fs.EXACT_SUBFIELD]["type"] == "keyword"


def _elastic_types(corpus: Path) -> dict[str, str]:
    """Dotted name -> type for the non-group fields of Elastic's integration fields.yml (corpus copy)."""
    out: dict[str, str] = {}

    def walk(fields, prefix):
        for f in fields:
            name = prefix + f["name"]
            if f.get("type") == "group":
                walk(f.get("fields") or [], name + ".")
            elif not name.endswith(".*"):
                out[name] = f["type"]
    path = corpus / "elastic-integrations-kubernetes-audit_logs" / "fields.yml"
    walk(yaml.safe_load(path.read_text()), "")
    return out


def test_every_field_both_define_has_elastics_type(corpus: Path):
    """Where Elastic's integration and kaudit both type a field, the engine sees the same type."""
    rendered = {"exact_text": "text", "constant_keyword": "constant_keyword"}
    both = {n: t for n, t in _elastic_types(corpus).items() if n in fs.TYPED_FIELDS}
    assert len(both) >= 30
    wrong = {n: (t, fs.TYPED_FIELDS[n]) for n, t in both.items() if rendered.get(fs.TYPED_FIELDS[n], fs.TYPED_FIELDS[n]) != t}
    assert not wrong, wrong


def test_readme_table_says_what_the_rule_cases_verify(corpus: Path):
    """One README row per Elastic rule, with the status its tests/elastic_rules case file gives it."""
    readme = (ROOT / "README.md").read_text()
    rules = corpus / "elastic-detection-rules-kubernetes"
    for toml in sorted(rules.glob("*.toml")):
        rule = tomllib.loads(toml.read_text())["rule"]
        case = yaml.safe_load((ROOT / "tests" / "elastic_rules" / f"{toml.stem}.yaml").read_text())
        rows = [line for line in readme.splitlines() if line.startswith(f"| {rule['name']} |")]
        assert len(rows) == 1, rule["name"]
        status = rows[0].rsplit("|", 2)[1].strip()
        if case.get("status") == "not matchable upstream":
            assert status == "not matchable upstream"
        else:
            assert status.startswith("matches"), rule["name"]
            negatives = case.get("negatives") or []
            if negatives:
                assert f"{len(negatives)} exclusions" in status, rule["name"]
            for flavor, label in (("opensearch", "OpenSearch"), ("elasticsearch", "ES")):
                gaps = sum(1 for n in negatives if flavor in (n.get("gap") or {}))
                assert (f"{gaps} not applied on {label}" in status) == bool(gaps), rule["name"]
            assert ("OpenSearch misses it" in status) == ("opensearch" in (case.get("positive_gap") or {}))
