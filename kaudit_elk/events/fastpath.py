"""The optional native fast path: one JSON line holding one audit Event -> its index document.

``kaudit_elk_native`` (the Rust crate in ``native/``, installed with ``pip install ./native``)
reads the line and writes the document bytes without building Python objects, which is where
the pure-Python path spends its time. It reproduces :func:`kaudit_elk.events.normalize.normalize`
byte for byte (tests/unit/test_native.py holds the two together over the corpus and edge cases)
and declines, returning None, for every line it does not reproduce exactly: envelopes, wrong
types, floats, oversized bodies, unusual timestamps. Those lines take the Python path, which
stays the reference and the one place where errors are worded. AKS records and EKS exports whose
event is a JSON string are split here (:func:`envelopes.split_envelope`) and their event text goes
to the native path with the envelope's facts.

``KAUDIT_NATIVE=0`` turns the fast path off; without the module everything works the same, slower.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Union

import orjson

from kaudit_elk.events import envelopes
from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.normalize import NormalizeOptions

#: ``line(text, ingested, envelope)`` -> None (use Python) | () (stage filtered out) |
#: (doc_id or None, @timestamp, document bytes)
LineResult = Union[None, tuple[Any, ...]]
LineNormalizer = Callable[..., LineResult]

try:  # pragma: no cover - depends on the installation
    import kaudit_elk_native as _native
except ImportError:  # pragma: no cover
    _native = None


#: The oldest native module that executes every table of :func:`native_spec` (0.4.0: the body shapes; an
#: older one would ignore them and write bodies the engine refuses).
MIN_NATIVE_VERSION = (0, 4, 0)


def _recent(version: str) -> bool:
    try:
        return tuple(int(part) for part in version.split(".")[:3]) >= MIN_NATIVE_VERSION
    except ValueError:
        return False


def available() -> bool:
    """True when the native module is installed, recent enough and not turned off by ``KAUDIT_NATIVE=0``."""
    return (_native is not None and os.environ.get("KAUDIT_NATIVE", "1") != "0"
            and _recent(getattr(_native, "__version__", "")))


def version() -> str | None:
    """The native module's version when it is in use, else None (``kaudit-elk version`` shows it)."""
    return _native.__version__ if available() else None


def native_spec() -> str:
    """The field-spec tables the native module executes, as the one JSON object it is built from."""
    return orjson.dumps({
        "ecs_version": fs.ECS_VERSION,
        "module": fs.EVENT_MODULE,
        "dataset": fs.EVENT_DATASET,
        "stream_type": fs.DATA_STREAM_TYPE,
        "envelope_key": fs.ENVELOPE_KEY,
        "event_markers": list(envelopes.EVENT_MARKERS),
        "exec_subresources": sorted(fs.EXEC_SUBRESOURCES),
        "iam_resources": sorted(fs.IAM_RESOURCES),
        "write_verbs": sorted(fs.WRITE_VERBS),
        "verb_types": dict(fs.VERB_TYPES),
        "service_resources": sorted(fs.SERVICE_RESOURCES),
        "pod_markers": list(fs.POD_SPEC_MARKERS),
        "body_copies": [field.rsplit(".", 1)[1] for _, field in fs.BODY_COPIES],
        "body_shapes": [fs.BODY_SHAPES[raw][1] for raw, _ in fs.BODY_COPIES],
        "body_integer_low": fs.BODY_INTEGER_RANGE[0],
        "body_integer_high": fs.BODY_INTEGER_RANGE[1],
        "blank_key_chars": fs.BLANK_KEY_CHARS,
    }).decode()


def line_normalizer(options: NormalizeOptions) -> LineNormalizer | None:
    """A native ``line(text, ingested=None)`` for these options, or None when unavailable."""
    if not available():
        return None
    try:
        normalizer = _native.Normalizer(
            native_spec(),
            cluster=options.cluster,
            namespace=options.namespace,
            stages=sorted(options.stages),
            keep_original=options.keep_original,
            max_body_bytes=options.max_body_bytes,
            max_value_bytes=options.max_value_bytes,
        )
    except (TypeError, ValueError):  # a module built for another release of this package: never use it
        return None
    line: LineNormalizer = normalizer.line
    return line


def enveloped(line: LineNormalizer, text: bytes, ingested: str | None = None) -> LineResult:
    """The fast path for an AKS/EKS envelope line that ``line`` declined: split it here, normalize the
    event text natively with the envelope's facts. None when it is not such a line (or is declined)."""
    if b'"properties"' not in text and b'essage"' not in text:  # cheap: neither AKS nor EKS
        return None
    try:
        split = envelopes.split_envelope(orjson.loads(text))
    except orjson.JSONDecodeError:
        return None
    if split is None:
        return None
    inner, facts = split
    return line(inner.encode(), ingested, list(facts.items()))
