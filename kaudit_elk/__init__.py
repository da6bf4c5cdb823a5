"""kaudit-elk: Kubernetes audit logs made useful in Elasticsearch and OpenSearch.

The Python API mirrors the CLI: each command is one call into a function or module named here
(README "Python API"). Names resolve lazily, so ``import kaudit_elk`` stays cheap and has no side effects::

    import kaudit_elk as k

    engine = k.connect(k.Settings(url="https://es:9200", api_key="..."))
    k.bootstrap(engine, k.BootstrapOptions(namespace="prod"))
    stats = k.ingest(engine, ["/var/log/kubernetes/audit.log"], k.IngestOptions(namespace="prod"))
    pack = k.load_pack()
    for alert in k.scan(["audit.log"], pack, min_severity="medium"):
        print(alert["rule"]["name"])
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute); attribute None = the module itself
_API: dict[str, tuple[str, str | None]] = {
    # connecting
    "Settings": ("kaudit_elk.base.config", "Settings"),
    "load_settings": ("kaudit_elk.base.config", "load_settings"),
    "connect": ("kaudit_elk.cluster.engine", "connect"),
    "Engine": ("kaudit_elk.cluster.engine", "Engine"),
    # events
    "normalize": ("kaudit_elk.events.normalize", "normalize"),
    "NormalizeOptions": ("kaudit_elk.events.normalize", "NormalizeOptions"),
    "read_records": ("kaudit_elk.events.sources", "read_records"),
    # the cluster
    "bootstrap": ("kaudit_elk.cluster.bootstrap", "bootstrap"),
    "BootstrapOptions": ("kaudit_elk.cluster.templates", "BootstrapOptions"),
    "roles": ("kaudit_elk.cluster.roles", None),
    "retention": ("kaudit_elk.cluster.retention", "apply_retention"),
    # the write path
    "ingest": ("kaudit_elk.ingest.bulk", "ingest"),
    "IngestOptions": ("kaudit_elk.ingest.bulk", "IngestOptions"),
    "serve": ("kaudit_elk.ingest.serve", "serve_forever"),
    "ServeOptions": ("kaudit_elk.ingest.serve", "ServeOptions"),
    # rules
    "load_pack": ("kaudit_elk.rules.loader", "load_pack"),
    "validate_rules": ("kaudit_elk.rules.loader", "validate"),
    "run_pack_tests": ("kaudit_elk.rules.selftest", "run_pack_tests"),
    "incidents": ("kaudit_elk.rules.incidents", None),
    "propose_exceptions": ("kaudit_elk.rules.exceptions", "propose"),
    # running rules
    "scan": ("kaudit_elk.detect.scan", "scan"),
    "detect": ("kaudit_elk.detect.scheduled", "run_detect"),
    "DetectOptions": ("kaudit_elk.detect.scheduled", "DetectOptions"),
    "tune": ("kaudit_elk.detect.tune", None),
    # views
    "dashboards": ("kaudit_elk.views.dashboards", None),
    "report": ("kaudit_elk.views.report", None),
    # the trail
    "load_policy": ("kaudit_elk.trail.policy", "load_policy"),
    "pack_needs": ("kaudit_elk.trail.needs", "pack_needs"),
    "policy_generate": ("kaudit_elk.trail.generate", "generate"),
    "policy_check": ("kaudit_elk.trail.coverage", "check"),
    "verify": ("kaudit_elk.trail.verify", "verify"),
    "archive": ("kaudit_elk.trail.archive", "archive"),
    "list_snapshots": ("kaudit_elk.trail.archive", "list_snapshots"),
    "archive_verify": ("kaudit_elk.trail.archive", "archive_verify"),
    "doctor": ("kaudit_elk.trail.doctor", "doctor"),
    "DoctorOptions": ("kaudit_elk.trail.doctor", "DoctorOptions"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'kaudit_elk' has no attribute {name!r}") from None
    mod = import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
