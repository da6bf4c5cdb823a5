"""Put the actors together: one time-ordered stream of benign events for ``days`` days (seeded)."""

from __future__ import annotations

import heapq
import math
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from . import benign as B
from . import cluster as C
from . import humans, operators, platform
from .events import Emitter

DEFAULT_START = "2026-11-16T00:00:00Z"  # a Monday

ACTORS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("leases", B.act_leases),
    ("kubelets", B.act_kubelets),
    ("node-proxies", B.act_node_proxies),
    ("controllers", B.act_controllers),
    ("cronjobs", B.act_cronjobs),
    ("operator-leases", operators.act_operator_leases),
    ("watchers", operators.act_watchers),
    ("flux", operators.act_flux),
    ("argocd", operators.act_argocd),
    ("ci", operators.act_ci),
    ("secrets-operators", platform.act_secrets_operators),
    ("velero", platform.act_velero),
    ("monitoring", platform.act_monitoring),
    ("gpu-mesh-policy", platform.act_gpu_mesh_policy),
    ("nodes", platform.act_nodes),
    ("cluster-services", platform.act_cluster_services),
    ("humans", humans.act_humans),
)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def benign_events(days: float = 3.0, seed: int = 1, nodes: int = 12, gpu_nodes: int = 2,
                  start: str = DEFAULT_START) -> Iterator[dict[str, Any]]:
    """Benign audit events in stage-timestamp order, hour by hour; same arguments, same events."""
    sim = B.Sim(seed, B.make_nodes(nodes, gpu_nodes), C.workloads())
    B.initial_pods(sim)
    t_start = parse_time(start)
    end = t_start + days * 86400
    hours = math.ceil(days * 24)
    pending: list[tuple[float, int, dict[str, Any]]] = []
    n = 0
    for h in range(hours):
        t0 = t_start + h * B.HOUR
        t1 = t0 + B.HOUR
        for name, act in ACTORS:
            em = Emitter(sim.rng("ids", name, h))
            act(sim, em, t0, t1, sim.rng("act", name, h))
            for t, ev in em.out:
                n += 1
                heapq.heappush(pending, (t, n, ev))
        while pending and pending[0][0] < min(t1, end):
            yield heapq.heappop(pending)[2]
    while pending:  # watches still open at the end: their ResponseStarted only
        t, _, ev = heapq.heappop(pending)
        if t < end:
            yield ev
