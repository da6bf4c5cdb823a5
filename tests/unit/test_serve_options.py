"""serve's safety checks on its own settings: TLS and authentication by default, explicit consent."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaudit_elk.base.errors import ConfigError
from kaudit_elk.ingest.serve import ServeOptions, cert_names, check_options, is_loopback, read_tokens

TLS = dict(tls_cert="c.pem", tls_key="k.pem")


def test_tls_is_the_default_and_plain_http_is_loopback_only() -> None:
    with pytest.raises(ConfigError, match="HTTPS"):
        check_options(ServeOptions(tokens=("x" * 20,)))
    assert check_options(ServeOptions(plain_http=True, tokens=("x" * 20,)))  # warns
    with pytest.raises(ConfigError, match="non-loopback"):
        check_options(ServeOptions(host="0.0.0.0", plain_http=True, tokens=("x" * 20,)))
    check_options(ServeOptions(host="0.0.0.0", plain_http=True, insecure=True, tokens=("x" * 20,)))


def test_authentication_is_required_unless_explicitly_waived() -> None:
    with pytest.raises(ConfigError, match="requires authentication"):
        check_options(ServeOptions(**TLS))
    assert check_options(ServeOptions(client_ca="ca.pem", **TLS)) == []
    assert check_options(ServeOptions(tokens=("x" * 20,), **TLS)) == []
    assert "no authentication" in check_options(ServeOptions(no_auth=True, **TLS))[0]
    with pytest.raises(ConfigError, match="unauthenticated"):
        check_options(ServeOptions(host="10.0.0.5", no_auth=True, **TLS))
    with pytest.raises(ConfigError, match="--client-ca"):
        check_options(ServeOptions(client_names=("kube-apiserver",), tokens=("x" * 20,), **TLS))


def test_tokens_from_file_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text("# rotation: old and new\n" + "a" * 32 + "\n\n" + "b" * 32 + "\n")
    assert read_tokens(str(f), {}) == ("a" * 32, "b" * 32)
    assert read_tokens(None, {"KAUDIT_SERVE_TOKEN": "c" * 20}) == ("c" * 20,)
    with pytest.raises(ConfigError, match="at least 16"):
        read_tokens(None, {"KAUDIT_SERVE_TOKEN": "short"})
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no token"):
        read_tokens(str(tmp_path / "empty"), {})
    with pytest.raises(ConfigError, match="No such file"):
        read_tokens(str(tmp_path / "missing"), {})


def test_loopback_and_certificate_names() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("10.1.2.3")
    cert = {"subject": ((("commonName", "kube-apiserver-audit"),),), "subjectAltName": (("DNS", "audit"), ("IP Address", "1.2.3.4"))}
    assert cert_names(cert) == ["kube-apiserver-audit", "audit"]
    assert cert_names(None) == []


def test_spooled_record_keeps_the_request_metadata_and_the_body_as_received() -> None:
    from kaudit_elk.ingest.shipper import split_body, spool_payload

    body = b'{"kind":"EventList","items":[]}\n\n{odd}'
    meta, got = split_body(spool_payload({"id": "r-1", "peer": "10.0.0.1"}, body))
    assert meta == {"id": "r-1", "peer": "10.0.0.1"} and got == body


def test_engine_auth_failures_are_told_apart_from_outages() -> None:
    from kaudit_elk.base.errors import EngineError
    from kaudit_elk.cluster.engine import EngineRequestError
    from kaudit_elk.ingest.bulk import EngineAuthError
    from kaudit_elk.ingest.shipper import is_auth_failure

    assert is_auth_failure(EngineAuthError("refused"))
    assert is_auth_failure(EngineRequestError("POST", "/_bulk", 403, {}))
    assert is_auth_failure(EngineError("http://es:9200: authentication failed (HTTP 401); check --username"))
    assert not is_auth_failure(EngineError("http://es:9200: cannot connect (Connection refused)"))
    assert not is_auth_failure(EngineRequestError("POST", "/_bulk", 503, {}))
