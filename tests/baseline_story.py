"""A deterministic multi-day story for the behaviour baselines: steady identities, then one stolen account.

Days 0..N-1 (starting Monday 2026-02-02, UTC): an Argo CD-style controller all day every day, a CI bot every
hour, and alice on weekdays 09-17 from two VPN egress addresses (a few secret reads, pod lists and log
reads a day). Then, on the Saturday after, 03:00-03:59: alice's identity from four new addresses makes
hundreds of requests, reads 25 secrets, lists secrets in 15 namespaces and reads the logs of 20 pods.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2026, 2, 2, tzinfo=timezone.utc)  # a Monday
ATTACK = datetime(2026, 2, 14, 3, 0, tzinfo=timezone.utc)  # the second Saturday, 03:00
ALICE = "alice@example.com"
ARGO = "system:serviceaccount:argocd:argocd-application-controller"
CI = "system:serviceaccount:ci:ci-bot"


def _ev(rng: random.Random, t: datetime, user: str, ip: str, ua: str, verb: str, resource: str,
        namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> dict:
    ts = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    obj: dict = {"resource": resource, "apiVersion": "v1"}
    path = f"/api/v1/{resource}"
    if namespace:
        obj["namespace"] = namespace
        path = f"/api/v1/namespaces/{namespace}/{resource}"
    if name:
        obj["name"] = name
        path += f"/{name}"
    if subresource:
        obj["subresource"] = subresource
        path += f"/{subresource}"
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": str(uuid.UUID(int=rng.getrandbits(128))), "stage": "ResponseComplete", "requestURI": path,
            "verb": verb, "user": {"username": user, "groups": ["system:authenticated"]}, "sourceIPs": [ip],
            "userAgent": ua, "objectRef": obj, "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": ts, "stageTimestamp": ts,
            "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}}


def history(days: int = 12, seed: int = 1) -> list[dict]:
    """The steady part: ``days`` days from START."""
    rng = random.Random(seed)
    out = []
    for hour in range(days * 24):
        base = START + timedelta(hours=hour)
        for _ in range(30):
            out.append(_ev(rng, base + timedelta(seconds=rng.randrange(3600)), ARGO, "10.244.1.5",
                           "argocd-application-controller/v2.11.0", rng.choice(["get", "list", "watch"]),
                           rng.choice(["deployments", "services", "configmaps"]), rng.choice(["shop", "web", "argocd"])))
        for _ in range(5):
            out.append(_ev(rng, base + timedelta(seconds=rng.randrange(3600)), CI, "10.244.2.7", "ci-bot/1.0",
                           "get", "pods", "ci", f"build-{rng.randrange(9)}"))
        if base.weekday() < 5 and 9 <= base.hour < 17:
            ip = rng.choice(["203.0.113.10", "203.0.113.11"])
            kubectl = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"
            for _ in range(20):
                out.append(_ev(rng, base + timedelta(seconds=rng.randrange(3600)), ALICE, ip, kubectl, "get",
                               "pods", "payments", f"api-{rng.randrange(5)}"))
            out.append(_ev(rng, base + timedelta(minutes=5), ALICE, ip, kubectl, "get", "secrets", "payments",
                           f"db-{rng.randrange(3)}"))
            out.append(_ev(rng, base + timedelta(minutes=6), ALICE, ip, kubectl, "list", "pods", "payments"))
            out.append(_ev(rng, base + timedelta(minutes=7), ALICE, ip, kubectl, "get", "pods", "payments",
                           f"api-{rng.randrange(5)}", "log"))
    return sorted(out, key=lambda e: e["requestReceivedTimestamp"])


def attack(seed: int = 2) -> list[dict]:
    """Alice's stolen account, Saturday 03:00-03:59, plus the steady identities going on as usual."""
    rng = random.Random(seed)
    out = []
    ips = [f"198.51.100.{n}" for n in range(1, 5)]
    ua = "python-requests/2.31.0"
    t = ATTACK + timedelta(minutes=1)
    for n in range(300):
        out.append(_ev(rng, t + timedelta(seconds=n * 5), ALICE, ips[n % 4], ua, "get", "pods", "payments", f"api-{n % 5}"))
    for n in range(25):
        out.append(_ev(rng, t + timedelta(seconds=3 + n * 7), ALICE, ips[n % 4], ua, "get", "secrets",
                       f"team-{n % 8}", f"credentials-{n}"))
    for n in range(15):
        out.append(_ev(rng, t + timedelta(seconds=4 + n * 11), ALICE, ips[n % 4], ua, "list", "secrets", f"team-{n}"))
    for n in range(20):
        out.append(_ev(rng, t + timedelta(seconds=6 + n * 13), ALICE, ips[n % 4], ua, "get", "pods", f"team-{n % 6}",
                       f"worker-{n}", "log"))
    for _ in range(30):
        out.append(_ev(rng, ATTACK + timedelta(seconds=rng.randrange(3600)), ARGO, "10.244.1.5",
                       "argocd-application-controller/v2.11.0", "get", "deployments", "shop"))
    return sorted(out, key=lambda e: e["requestReceivedTimestamp"])


def write(path: Path, events: list[dict]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)
