"""Every object of ``dashboards export --flavor kibana`` passes Kibana 8.8+'s attribute checks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kaudit_elk.views import dashboards

from kibana_schemas import JSON_FIELDS, SCHEMAS, validate

OBJECTS = dashboards.render("kibana")


def _get(attrs: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        attrs = attrs.get(part) if isinstance(attrs, dict) else None  # type: ignore[assignment]
    return attrs


@pytest.mark.parametrize("obj", OBJECTS, ids=[f"{o['type']}:{o['id']}" for o in OBJECTS])
def test_kibana_accepts_the_attributes(obj: dict[str, Any]) -> None:
    attrs = obj["attributes"]
    assert isinstance(attrs.get("title"), str) and attrs["title"], "title is required"
    if obj["type"] in SCHEMAS:
        assert validate(SCHEMAS[obj["type"]], attrs) == []
    for dotted in JSON_FIELDS[obj["type"]]:
        text = _get(attrs, dotted)
        if text is not None:
            json.loads(text)  # a JSON-string field that does not parse breaks the object in Kibana
    assert obj.get("coreMigrationVersion") and obj.get("migrationVersion", {}).get(obj["type"])


def test_the_check_refuses_what_kibana_refuses() -> None:
    dash = next(o for o in OBJECTS if o["type"] == "dashboard")["attributes"]
    assert validate(SCHEMAS["dashboard"], dict(dash, panels=[])) == [
        "attributes.panels: definition for this key is missing"]
    assert validate(SCHEMAS["dashboard"], {k: v for k, v in dash.items() if k != "title"}) == [
        "attributes.title: required"]
    search = next(o for o in OBJECTS if o["type"] == "search")["attributes"]
    assert validate(SCHEMAS["search"], dict(search, sort=[["@timestamp", "desc", "x"]]))
