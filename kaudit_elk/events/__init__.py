"""Audit events in, documents out: sources, envelopes, the field spec, the normalizer, the native bridge,
the server-side pipeline. Imports only :mod:`kaudit_elk.base`."""
