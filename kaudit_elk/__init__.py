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

import sys
from importlib import import_module
from types import ModuleType
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


def _resolve(name: str) -> Any:
    module, attr = _API[name]
    mod = import_module(module)
    return mod if attr is None else getattr(mod, attr)


class _CallablePackage(ModuleType):
    """A subpackage that shares its name with an API function (``kaudit_elk.detect``, ``kaudit_elk.ingest``):
    calling it calls the function, so ``k.detect(...)`` works whichever of the two ``k.detect`` is."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _resolve(self.__name__.rpartition(".")[2])(*args, **kwargs)

    @property
    def __signature__(self) -> Any:
        import inspect

        return inspect.signature(_resolve(self.__name__.rpartition(".")[2]))


class _Package(ModuleType):
    """``kaudit_elk`` itself. Importing a subpackage binds it here under its name, over the API function of
    the same name (``k.scan`` imports ``kaudit_elk.detect.scan``, after which ``k.detect`` was the
    subpackage, "not callable"): such a subpackage is made callable as the function as it is bound."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and value.__name__ == f"{__name__}.{name}" and _API.get(name, ("", None))[1]:
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'kaudit_elk' has no attribute {name!r}")
    value = _resolve(name)
    bound = globals().get(name)  # the import just bound a subpackage of that name (callable as the function)
    if isinstance(bound, _CallablePackage):
        return bound
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


sys.modules[__name__].__class__ = _Package
