"""Sigma detection rules for Kubernetes audit events: loading (pySigma), local evaluation, correlation.

Public API:
    load_rules(dirs, ...) -> RulePack      validate(dirs, strict=False) -> list[Issue]
    Runner(pack).feed(event) / .flush()  -> alerts (dicts)
    run_pack_tests(pack)                 -> PackTestReport (each rule's own test events)
Modules are imported lazily by callers; importing this package has no side effects.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_rules", "validate", "Runner", "run_pack_tests"]


def __getattr__(name: str) -> Any:  # lazy re-exports keep `import kaudit_elk.rules` cheap
    if name in ("load_rules", "validate"):
        from kaudit_elk.rules import loader

        return getattr(loader, name)
    if name == "Runner":
        from kaudit_elk.rules.runner import Runner

        return Runner
    if name == "run_pack_tests":
        from kaudit_elk.rules.selftest import run_pack_tests

        return run_pack_tests
    raise AttributeError(name)
