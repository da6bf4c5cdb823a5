"""Where ``detect`` announces new alerts and incidents: stdout NDJSON, a generic JSON webhook, Alertmanager.

Incidents (``send_incidents``) are announced once when they reach the notification floor and again
only when they escalate (higher severity or a new ATT&CK tactic): one notification per incident, not
per alert. In Alertmanager an incident is one alert whose labels carry the incident id, so a repeat
updates it instead of paging twice.

HTTP outputs retry with backoff; when they still fail, ``OutputError`` is raised and ``detect``
keeps the alerts queued (``notified: false``) for the next run: delivery is at-least-once, and
every payload carries the deterministic alert id so receivers can drop repeats (Alertmanager does
so by itself: the id is a label).
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from kaudit_elk.base.redact import redact, redact_url, register
from kaudit_elk.detect.scheduled import Alert, OutputError


@dataclass
class StdoutOutput:
    """One JSON object per line on stdout (the data stream of the command)."""

    write: Callable[[str], None]
    name: str = "stdout"

    def send(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.write(json.dumps(alert, sort_keys=True))

    def send_incidents(self, incidents: list[dict[str, Any]]) -> None:
        self.send(incidents)


def _post(url: str, payload: Any, headers: dict[str, str], retries: int, timeout: float,
          verify: bool = True) -> None:
    data = json.dumps(payload).encode()
    shown = redact_url(url)  # userinfo and ?token= never appear in a message
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:  # https://user:pass@host: send the credentials as Basic auth, not in the URL
        userinfo, _, host = parts.netloc.rpartition("@")
        user, _, secret = userinfo.partition(":")
        user, secret = urllib.parse.unquote(user), urllib.parse.unquote(secret)
        register(secret)
        headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode(), **headers}
        url = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    ctx = None
    if url.startswith("https://") and not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    delay = 0.5
    last = ""
    for attempt in range(retries + 1):
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
                if 200 <= resp.status < 300:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                break  # the receiver rejects the payload: retrying will not help
        except (urllib.error.URLError, OSError) as exc:
            last = redact(str(getattr(exc, "reason", exc)))
        if attempt < retries:
            time.sleep(delay)
            delay = min(delay * 2, 10)
    raise OutputError(f"POST {shown} failed: {last}")


@dataclass
class WebhookOutput:
    """POST ``{"alerts": [...]}`` as JSON to any URL (chat bridges, SOAR, functions)."""

    url: str
    headers: dict[str, str] | None = None
    retries: int = 3
    timeout: float = 10.0
    verify: bool = True
    name: str = "webhook"

    def send(self, alerts: list[Alert]) -> None:
        if alerts:
            _post(self.url, {"alerts": alerts, "source": "kaudit-elk"}, self.headers or {}, self.retries,
                  self.timeout, self.verify)

    def send_incidents(self, incidents: list[dict[str, Any]]) -> None:
        """POST ``{"incidents": [...]}``: one entry per new or escalated incident."""
        if incidents:
            _post(self.url, {"incidents": incidents, "source": "kaudit-elk"}, self.headers or {}, self.retries,
                  self.timeout, self.verify)


def alertmanager_payload(alerts: list[Alert], resolve_after: timedelta = timedelta(hours=1)) -> list[dict[str, Any]]:
    """Alertmanager v2 ``postableAlerts``: labels identify an alert, annotations describe it."""
    out = []
    for alert in alerts:
        a = alert["kaudit"]["alert"]
        labels = {
            "alertname": str(alert["rule"].get("name") or alert["rule"].get("title") or alert["rule"]["id"]),
            "severity": a["severity"],
            "rule_id": alert["rule"]["id"],
            "alert_id": a["id"],
            "source": "kaudit-elk",
        }
        namespace = (alert.get("orchestrator") or {}).get("namespace")
        if namespace:
            labels["namespace"] = namespace
        user = (alert.get("user") or {}).get("name")
        if user:
            labels["user"] = user
        starts = a.get("first_event_time") or alert.get("@timestamp")
        ends = datetime.now(timezone.utc) + resolve_after
        out.append({
            "labels": labels,
            "annotations": {
                "summary": str(alert["rule"].get("title") or labels["alertname"]),
                "description": str(alert["rule"].get("description") or ""),
                "audit_ids": ",".join(a.get("audit_ids") or []),
                "group": json.dumps(a.get("group") or {}, sort_keys=True),
                **_response_annotations(alert["rule"].get("response")),
            },
            "startsAt": starts,
            "endsAt": ends.isoformat().replace("+00:00", "Z"),
        })
    return out


def alertmanager_incident_payload(incidents: list[dict[str, Any]],
                                  resolve_after: timedelta = timedelta(hours=1)) -> list[dict[str, Any]]:
    """Alertmanager v2 ``postableAlerts`` for incidents: one alert per incident, labelled by its id."""
    out = []
    for doc in incidents:
        inc = doc["kaudit"]["incident"]
        labels = {"alertname": "KauditIncident", "severity": inc["severity"], "incident_id": inc["id"],
                  "source": "kaudit-elk"}
        actor = inc.get("actor") or {}
        if actor.get("identity"):
            labels["user"] = str(actor["identity"])
        if actor.get("source_ip"):
            labels["source_ip"] = str(actor["source_ip"])
        ends = datetime.now(timezone.utc) + resolve_after
        out.append({
            "labels": labels,
            "annotations": {
                "summary": inc["title"],
                "description": "; ".join(f"{r['name']} ({r['severity']}, {r['count']}x)" for r in inc["rules"]),
                "risk_score": str(inc["risk_score"]),
                "tactics": " -> ".join(inc["tactics"]),
                "alert_count": str(inc["alert_count"]),
                "namespaces": ",".join(inc.get("namespaces") or []),
            },
            "startsAt": inc["first_alert_time"],
            "endsAt": ends.isoformat().replace("+00:00", "Z"),
        })
    return out

def _response_annotations(note: Any) -> dict[str, str]:
    """The rule's triage/response notes as annotations (``triage``, ``saved_search``, ``contain``)."""
    if not isinstance(note, dict):
        return {}
    return {"triage": " ".join(note.get("triage") or []), "saved_search": str(note.get("search") or ""),
            "contain": " ".join(note.get("contain") or [])}


@dataclass
class AlertmanagerOutput:
    """POST to Alertmanager's ``/api/v2/alerts``."""

    url: str
    retries: int = 3
    timeout: float = 10.0
    verify: bool = True
    name: str = "alertmanager"

    def send(self, alerts: list[Alert]) -> None:
        if alerts:
            _post(self.url.rstrip("/") + "/api/v2/alerts", alertmanager_payload(alerts), {}, self.retries,
                  self.timeout, self.verify)

    def send_incidents(self, incidents: list[dict[str, Any]]) -> None:
        if incidents:
            _post(self.url.rstrip("/") + "/api/v2/alerts", alertmanager_incident_payload(incidents), {},
                  self.retries, self.timeout, self.verify)
