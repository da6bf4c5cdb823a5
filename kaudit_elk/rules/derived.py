"""Derived fields: facts computed from a raw audit Event the way the apiserver itself interprets it.

Rules read them like event fields, under the reserved ``kaudit.`` prefix (other Sigma tools see a field
that is never present). The engine holds no such field: the query compiler treats them as not indexed
(a broader prefilter) and ``detect`` re-checks the fetched events with the local evaluator, so ``scan``
and ``detect`` agree.

``kaudit.actor.namespace``
    The namespace of the acting service account, when the request was authenticated as one: the username
    is ``system:serviceaccount:<namespace>:<name>`` exactly as ``serviceaccount.SplitUsername`` accepts it
    (case-sensitive prefix, exactly two parts, a DNS-1123 label and subdomain) and the groups carry the
    ``system:serviceaccounts:<namespace>`` group the token authenticator adds. Otherwise absent.
``kaudit.exec.command``
    The ``command`` parameters of an exec request's URI, decoded as Go's ``url.ParseQuery`` decodes them
    (percent escapes in any case, ``+`` as space, ``;`` segments dropped): what the container really runs,
    whatever spelling the client used.
``kaudit.request.rbac_grants`` / ``kaudit.response.rbac_grants``
    Every (API group, resource, verb) a Role or ClusterRole in the request / response body grants, one
    ``group|resource|verb`` string per combination of one rule's lists (``|pods|get`` for the core group),
    the way the RBAC authorizer evaluates a PolicyRule: the lists of one rule combine with each other, never
    with another rule's. ``resourceNames`` and non-resource URLs are left out.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping
from urllib.parse import unquote_plus

PREFIX = "kaudit."
_SA_PREFIX = "system:serviceaccount:"
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_HEX = re.compile(r"%(?![0-9A-Fa-f]{2})")


def actor_namespace(event: Mapping[str, Any]) -> list[str]:
    """[namespace] of the service account that sent the request, or []."""
    user = event.get("user")
    if not isinstance(user, dict):
        return []
    name = user.get("username")
    if not isinstance(name, str) or not name.startswith(_SA_PREFIX):
        return []
    parts = name[len(_SA_PREFIX):].split(":")
    if len(parts) != 2 or not _LABEL.match(parts[0]) or not _SUBDOMAIN.match(parts[1]) or len(parts[1]) > 253:
        return []
    groups = user.get("groups")
    if not isinstance(groups, list) or f"system:serviceaccounts:{parts[0]}" not in groups:
        return []
    return [parts[0]]


def query_values(uri: str, key: str) -> list[str]:
    """Values of ``key`` in the query of a request URI, as Go's url.ParseQuery yields them.

    Segments holding a ';' or an invalid percent escape are skipped (Go returns an error for them and
    the apiserver's ``req.URL.Query()`` drops them)."""
    _, sep, query = uri.partition("?")
    if not sep:
        return []
    out = []
    for seg in query.split("&"):
        if not seg or ";" in seg:
            continue
        k, _, v = seg.partition("=")
        if _HEX.search(k) or _HEX.search(v):
            continue
        if unquote_plus(k) == key:
            out.append(unquote_plus(v))
    return out


def exec_command(event: Mapping[str, Any]) -> list[str]:
    """Decoded ``command`` arguments of an exec request (pods/exec or the kubelet's /exec via node proxy)."""
    uri = event.get("requestURI")
    return query_values(uri, "command") if isinstance(uri, str) else []


def _grants(body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("rules"), list):
        return []
    out: list[str] = []
    for rule in body["rules"]:
        if not isinstance(rule, dict):
            continue
        lists = [rule.get(k) for k in ("apiGroups", "resources", "verbs")]
        if not all(isinstance(x, list) for x in lists):
            continue
        groups, resources, verbs = ([str(v) for v in x if isinstance(v, str)] for x in lists if isinstance(x, list))
        out += [f"{g}|{r}|{v}" for g in groups for r in resources for v in verbs]
        if len(out) > 10_000:
            break
    return out


def request_grants(event: Mapping[str, Any]) -> list[str]:
    """RBAC grants of the Role/ClusterRole sent in the request."""
    return _grants(event.get("requestObject"))


def response_grants(event: Mapping[str, Any]) -> list[str]:
    """RBAC grants of the Role/ClusterRole the apiserver stored (RequestResponse level)."""
    return _grants(event.get("responseObject"))


DERIVED: dict[str, Callable[[Mapping[str, Any]], list[Any]]] = {
    "kaudit.actor.namespace": actor_namespace,
    "kaudit.exec.command": exec_command,
    "kaudit.request.rbac_grants": request_grants,
    "kaudit.response.rbac_grants": response_grants,
}


def resolver(path: str) -> Callable[[Any], list[Any]] | None:
    """The derived field's function for ``path`` (called with a raw event), or None for an event path."""
    fn = DERIVED.get(path)
    if fn is None:
        return None

    def get(obj: Any) -> list[Any]:
        return fn(obj) if isinstance(obj, dict) else []

    return get
