"""A deterministic, realistic audit corpus of a busy production cluster, and labelled attacks mixed into it.

    from bench.corpus import benign_events
    for event in benign_events(days=3, seed=1): ...

CLI: ``python -m bench.corpus --help``.
"""

from .generate import benign_events

__all__ = ["benign_events"]
