"""Server-side ingest pipeline for third-party shippers, derived from :mod:`kaudit_elk.events.fieldspec`.

Input contract (what Filebeat, Fluent Bit and Vector send):

* the raw Event JSON as a string in ``message`` (it is parsed into ``kubernetes.audit`` and
  ``message`` is removed), or
* the already-parsed Event under ``kubernetes.audit`` (e.g. Filebeat ``ndjson`` with
  ``target: kubernetes.audit``); ``message`` is then left alone.

Output: the same document as :func:`kaudit_elk.events.normalize.normalize` with default options for
native Events (proven with ``_ingest/pipeline/_simulate`` in tests/engine/test_pipeline_parity.py).

Not covered server-side (client-only, see ``fieldspec.CLIENT_ONLY_FIELDS``):

* envelopes (AKS/EKS/GKE wrappers, EventList): the pipeline expects one native Event per document;
  ``cloud.provider`` and ``kaudit.envelope.*`` are therefore never set;
* ``event.original`` is never added (a shipper may set it; it is kept);
* ``orchestrator.cluster.name`` is the shipper's value when present, else the ``cluster`` argument;
* ``data_stream.*`` is always the pipeline's own stream (a shipper's values are replaced: the mapping
  holds them constant);
* body truncation measures size with an estimate (string lengths in UTF-16 units plus JSON
  punctuation, escapes ignored) where the client uses the exact serialized byte count, so the two
  agree except for bodies or leaves within a few percent of the limits;
* a document whose ``stage`` is not kept by the default stage policy is dropped.

Every failure keeps the document: ``event.kind: pipeline_error`` and ``error.message`` are set.
"""

from __future__ import annotations

from typing import Any

from kaudit_elk.events import fieldspec as fs
from kaudit_elk.events.normalize import DEFAULT

FLAVORS = ("elasticsearch", "opensearch")
_TMP = "_kaudit_tmp"

_PAINLESS = r"""
boolean isType(def v, String t) {
  if (t == 'str') { return v instanceof String; }
  if (t == 'dict') { return v instanceof Map; }
  if (t == 'list') { return v instanceof List; }
  return true;
}
boolean truthy(def v) {
  if (v == null) { return false; }
  if (v instanceof String) { return !((String) v).isEmpty(); }
  if (v instanceof Map) { return !((Map) v).isEmpty(); }
  if (v instanceof List) { return !((List) v).isEmpty(); }
  if (v instanceof Boolean) { return (Boolean) v; }
  return true;
}
def getp(def o, List path) {
  def cur = o;
  for (def k : path) {
    if (!(cur instanceof Map)) { return null; }
    cur = ((Map) cur).get(k);
  }
  return cur;
}
Map child(Map m, String k) {
  def c = m.get(k);
  if (!(c instanceof Map)) { c = new HashMap(); m.put(k, c); }
  return (Map) c;
}
void putp(Map doc, String dotted, def v) {
  String[] parts = dotted.splitOnToken('.');
  Map cur = doc;
  for (int i = 0; i < parts.length - 1; i++) { cur = child(cur, parts[i]); }
  cur.put(parts[parts.length - 1], v);
}
void addu(List l, def v) { if (v != null && !l.contains(v)) { l.add(v); } }
Map dedot(Map m) {
  Map out = new LinkedHashMap();
  for (def e : m.entrySet()) { out.put(((String) e.getKey()).replace('.', '_'), e.getValue()); }
  return out;
}
boolean placeable(String k, Map m) {
  String[] parts = k.splitOnToken('.');
  for (String p : parts) { if (p.isEmpty()) { return false; } }
  if (k.startsWith('.') || k.endsWith('.')) { return false; }
  String prefix = parts[0];
  for (int i = 1; i < parts.length; i++) {
    if (m.containsKey(prefix)) { return false; }
    prefix = prefix + '.' + parts[i];
  }
  return true;
}
Map placeDots(Map m) {
  Map out = new LinkedHashMap();
  for (def e : m.entrySet()) {
    String k = (String) e.getKey();
    out.put(k.indexOf('.') >= 0 && !placeable(k, m) ? k.replace('.', '_') : k, e.getValue());
  }
  return out;
}
ZonedDateTime parseTs(def v, String name) {
  if (!(v instanceof String)) { throw new IllegalArgumentException("field '" + name + "' must be a timestamp string"); }
  String s = ((String) v).replace(' ', 'T');
  boolean zoned = s.endsWith('Z') || (s.length() > 19 && (s.substring(19).indexOf('+') >= 0 || s.substring(19).indexOf('-') >= 0));
  if (!zoned) { s = s + 'Z'; }
  try {
    return ZonedDateTime.parse(s).withZoneSameInstant(ZoneOffset.UTC).truncatedTo(ChronoUnit.MICROS);
  } catch (Exception e) {
    throw new IllegalArgumentException("field '" + name + "' is not a valid timestamp: " + v);
  }
}
String fmtTs(ZonedDateTime t) { return t.format(DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSSSSS'Z'")); }
boolean isIp(def t) {
  if (!(t instanceof String)) { return false; }
  String s = (String) t;
  if (s.length() == 0 || s.length() > 45) { return false; }
  if (s.indexOf(':') >= 0) {
    int colons = 0;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == (char) ':') { colons++; }
      else if (!((c >= (char) '0' && c <= (char) '9') || (c >= (char) 'a' && c <= (char) 'f') || (c >= (char) 'A' && c <= (char) 'F') || c == (char) '.')) { return false; }
    }
    return colons >= 2;
  }
  String[] p = s.splitOnToken('.');
  if (p.length != 4) { return false; }
  for (String x : p) {
    if (x.length() == 0 || x.length() > 3) { return false; }
    for (int i = 0; i < x.length(); i++) { char c = x.charAt(i); if (c < (char) '0' || c > (char) '9') { return false; } }
    if (Integer.parseInt(x) > 255) { return false; }
  }
  return true;
}
List podSpecs(Map body, List paths, List lists) {
  List out = new ArrayList();
  for (def path : paths) {
    def spec = getp(body, path);
    if (spec instanceof Map) {
      for (def ln : lists) { if (((Map) spec).get(ln) != null) { out.add(spec); return out; } }
    }
  }
  return out;
}
boolean isInt(def v) { return v instanceof Integer || v instanceof Long; }
long est(def v) {
  if (v == null) { return 4; }
  if (v instanceof String) { return ((String) v).length() + 2; }
  if (v instanceof Boolean) { if ((boolean) v) { return 4; } return 5; }
  if (v instanceof Map) {
    long n = 2; int i = 0;
    for (def e : ((Map) v).entrySet()) { n += ((String) e.getKey()).length() + 3 + est(e.getValue()); i++; }
    return n + (i > 0 ? i - 1 : 0);
  }
  if (v instanceof List) {
    long n = 2; int i = 0;
    for (def x : (List) v) { n += est(x); i++; }
    return n + (i > 0 ? i - 1 : 0);
  }
  return String.valueOf(v).length();
}
def cut(def v, int limit, List flag, String suffix) {
  if (v instanceof String) {
    String s = (String) v;
    if (s.length() > limit) { flag.add(true); return s.substring(0, limit) + suffix; }
    return s;
  }
  if (v instanceof Map) {
    Map out = new LinkedHashMap();
    for (def e : ((Map) v).entrySet()) { out.put(e.getKey(), cut(e.getValue(), limit, flag, suffix)); }
    return out;
  }
  if (v instanceof List) {
    List out = new ArrayList();
    for (def x : (List) v) { out.add(cut(x, limit, flag, suffix)); }
    return out;
  }
  return v;
}

Map a = (Map) ctx.kubernetes.audit;
for (def e : params.raw_types.entrySet()) {
  def v = a.get(e.getKey());
  if (v != null && !isType(v, e.getValue())) {
    throw new IllegalArgumentException("field '" + e.getKey() + "' must be " + e.getValue());
  }
}
for (def path : params.dedot) {
  def m = getp(a, path);
  if (m instanceof Map) {
    Map parent = a;
    for (int i = 0; i < path.size() - 1; i++) { parent = (Map) parent.get(path.get(i)); }
    parent.put(path.get(path.size() - 1), dedot((Map) m));
  }
}
for (def path : params.dotted_keys) {
  def m = getp(a, path);
  if (m instanceof Map) {
    Map parent = a;
    for (int i = 0; i < path.size() - 1; i++) { parent = (Map) parent.get(path.get(i)); }
    parent.put(path.get(path.size() - 1), placeDots((Map) m));
  }
}
Map doc = ctx;
ZonedDateTime start = null;
String startS = null;
for (def path : params.ts_sources) {
  def v = getp(a, path);
  if (v != null) { start = parseTs(v, String.join('.', path)); startS = fmtTs(start); break; }
}
if (startS != null) { doc['@timestamp'] = startS; }
Map ev = child(doc, 'event');
for (def e : params.constants.entrySet()) { putp(doc, e.getKey(), e.getValue()); }
for (def c : params.copies) {
  def v = getp(a, c.get(0));
  if (v != null) { putp(doc, c.get(1), v); }
}
if (startS != null) { ev.start = startS; }
if (a.stageTimestamp != null) {
  ZonedDateTime end = parseTs(a.stageTimestamp, 'stageTimestamp');
  ev.end = fmtTs(end);
  if (start != null && a.requestReceivedTimestamp != null) { ev.duration = ChronoUnit.MICROS.between(start, end) * 1000L; }
}
Map ref = a.objectRef instanceof Map ? (Map) a.objectRef : new HashMap();
def verb = a.verb;
Map ann = a.annotations instanceof Map ? (Map) a.annotations : new HashMap();
def decision = ann.get('authorization_k8s_io/decision');
Map status = a.responseStatus instanceof Map ? (Map) a.responseStatus : new HashMap();
def code = status.get('code');
if (code != null && !isInt(code)) { throw new IllegalArgumentException("field 'responseStatus.code' must be int"); }
List category = new ArrayList();
List types = new ArrayList();
def resource = ref.get('resource');
if (params.exec_subresources.contains(ref.get('subresource'))) { category.add('process'); types.add('start'); }
else if (params.iam_resources.contains(resource)) { category.add('iam'); types.add(params.verb_types.getOrDefault(verb, 'info')); }
else if (params.write_verbs.contains(verb)) { category.add('configuration'); types.add(params.verb_types.get(verb)); }
else { category.add('api'); types.add(params.verb_types.getOrDefault(verb, 'info')); }
if (decision == 'forbid' || code == 401 || code == 403) { types.add('denied'); }
else if (decision == 'allow') { types.add('allowed'); }
ev.category = category;
ev.type = types;
if (decision == 'forbid') { ev.outcome = 'failure'; }
else if (code != null) { ev.outcome = code >= 400 ? 'failure' : 'success'; }
else if (decision == 'allow') { ev.outcome = 'success'; }
if (truthy(a.sourceIPs)) {
  List valid = new ArrayList();
  for (def ip : a.sourceIPs) { if (isIp(ip)) { addu(valid, ip); } }
  if (!valid.isEmpty()) { child(doc, 'source').ip = valid.get(0); child(doc, 'related').ip = valid; }
}
List users = new ArrayList();
for (def who : [a.user, a.impersonatedUser]) {
  if (who instanceof Map) {
    for (def k : ['username', 'uid']) { def v = ((Map) who).get(k); if (v instanceof String && !((String) v).isEmpty()) { addu(users, v); } }
  }
}
if (!users.isEmpty()) { child(doc, 'related').user = users; }
def uri = a.requestURI;
if (truthy(uri)) {
  Map url = child(doc, 'url');
  int q = ((String) uri).indexOf('?');
  url.path = q >= 0 ? ((String) uri).substring(0, q) : uri;
  if (q >= 0 && q + 1 < ((String) uri).length()) { url.query = ((String) uri).substring(q + 1); }
}
Map orch = child(doc, 'orchestrator');
orch.type = 'kubernetes';
def cl = getp(orch, ['cluster', 'name']);
child(orch, 'cluster').name = truthy(cl) ? cl : params.cluster;
if (truthy(ref.get('apiVersion'))) {
  orch.api_version = truthy(ref.get('apiGroup')) ? ref.get('apiGroup') + '/' + ref.get('apiVersion') : ref.get('apiVersion');
}
Map kaudit = new LinkedHashMap();
if (params.exec_subresources.contains(ref.get('subresource')) && truthy(uri)) {
  int q = ((String) uri).indexOf('?');
  String query = q >= 0 ? ((String) uri).substring(q + 1) : '';
  if (!query.isEmpty()) {
    List cmd = new ArrayList();
    def container = null;
    for (String part : query.splitOnToken('&')) {
      if (part.isEmpty()) { continue; }
      int eq = part.indexOf('=');
      String k = eq >= 0 ? part.substring(0, eq) : part;
      String v = eq >= 0 ? part.substring(eq + 1) : '';
      if (k == 'command') { cmd.add(v); }
      else if (k == 'container' && container == null) { container = v; }
    }
    if (!cmd.isEmpty() || container != null) {
      Map tmp = child(doc, params.tmp);
      tmp.cmd = cmd;
      if (container != null) { tmp.container = container; }
    }
  }
}
List bodies = new ArrayList();
for (def b : [a.requestObject, a.responseObject]) { if (b instanceof Map) { bodies.add(b); } }
if (!bodies.isEmpty()) {
  List specs = new ArrayList();
  for (def b : bodies) { specs.addAll(podSpecs((Map) b, params.pod_spec_paths, params.pod_spec_markers)); }
  if (!specs.isEmpty()) {
    boolean privileged = false; boolean escalation = false;
    Map flags = new HashMap();
    List hostPath = new ArrayList(); List hostPorts = new ArrayList(); List caps = new ArrayList();
    List images = new ArrayList(); List runAs = new ArrayList();
    def account = null;
    for (def spec : specs) {
      for (def f : params.host_flags) { if (Boolean.TRUE.equals(spec.get(f.get(0)))) { flags.put(f.get(1), true); } }
      if (spec.get('volumes') instanceof List) {
        for (def vol : spec.volumes) { if (vol instanceof Map && vol.hostPath instanceof Map) { addu(hostPath, vol.hostPath.path); } }
      }
      def psc = spec.get('securityContext');
      if (psc instanceof Map && isInt(psc.runAsUser)) { addu(runAs, psc.runAsUser); }
      if (account == null) {
        for (def k : ['serviceAccountName', 'serviceAccount']) {
          def v = spec.get(k);
          if (v instanceof String && !((String) v).isEmpty()) { account = v; break; }
        }
      }
      for (def ln : params.container_lists) {
        def cs = spec.get(ln);
        if (!(cs instanceof List)) { continue; }
        for (def c : cs) {
          if (!(c instanceof Map)) { continue; }
          if (c.image instanceof String) { addu(images, c.image); }
          if (c.ports instanceof List) {
            for (def port : c.ports) { if (port instanceof Map && isInt(port.hostPort)) { addu(hostPorts, port.hostPort); } }
          }
          def sc = c.securityContext;
          if (!(sc instanceof Map)) { continue; }
          if (Boolean.TRUE.equals(sc.privileged)) { privileged = true; }
          if (Boolean.TRUE.equals(sc.allowPrivilegeEscalation)) { escalation = true; }
          if (isInt(sc.runAsUser)) { addu(runAs, sc.runAsUser); }
          if (sc.capabilities instanceof Map && sc.capabilities.add instanceof List) {
            for (def n : sc.capabilities.add) { if (n instanceof String) { addu(caps, n); } }
          }
        }
      }
    }
    Map pod = new LinkedHashMap();
    pod.privileged = privileged;
    pod.allow_privilege_escalation = escalation;
    for (def f : params.host_flags) { pod.put(f.get(2), flags.getOrDefault(f.get(1), false)); }
    if (!hostPath.isEmpty()) { pod.host_path = hostPath; }
    if (!hostPorts.isEmpty()) { pod.host_ports = hostPorts; }
    if (!caps.isEmpty()) { pod.capabilities_add = caps; }
    if (!images.isEmpty()) { pod.images = images; }
    if (!runAs.isEmpty()) { pod.run_as_user = runAs; }
    if (account != null) { pod.service_account = account; }
    kaudit.pod = pod;
  }
  Map rbac = new LinkedHashMap();
  Map lists = new LinkedHashMap();
  for (def body : bodies) {
    if (body.rules instanceof List) {
      for (def rule : body.rules) {
        if (!(rule instanceof Map)) { continue; }
        for (def m : params.rbac_rule_fields) {
          def vs = rule.get(m.get(0));
          if (vs instanceof List) {
            for (def v : vs) {
              if (v instanceof String) {
                if (!lists.containsKey(m.get(1))) { lists.put(m.get(1), new ArrayList()); }
                addu(lists.get(m.get(1)), v);
              }
            }
          }
        }
      }
    }
    if (body.roleRef instanceof Map && !rbac.containsKey('role_ref')) {
      Map rr = new LinkedHashMap();
      for (def k : ['kind', 'name']) { if (body.roleRef.get(k) instanceof String) { rr.put(k, body.roleRef.get(k)); } }
      if (!rr.isEmpty()) { rbac.role_ref = rr; }
    }
    if (body.subjects instanceof List) {
      for (def subj : body.subjects) {
        if (subj instanceof Map) {
          for (def k : ['kind', 'name']) {
            if (subj.get(k) instanceof String) {
              String key = 'subjects.' + k;
              if (!lists.containsKey(key)) { lists.put(key, new ArrayList()); }
              addu(lists.get(key), subj.get(k));
            }
          }
        }
      }
    }
  }
  for (def e : lists.entrySet()) {
    if (((List) e.getValue()).isEmpty()) { continue; }
    String k = (String) e.getKey();
    if (k.startsWith('subjects.')) { child(rbac, 'subjects').put(k.substring(9), e.getValue()); }
    else { rbac.put(k, e.getValue()); }
  }
  if (!rbac.isEmpty()) { kaudit.rbac = rbac; }
  if (params.service_resources.contains(resource)) {
    for (def body : bodies) {
      def t = getp(body, ['spec', 'type']);
      if (t instanceof String) { kaudit.service = ['type': t]; break; }
    }
  }
}
boolean truncated = false;
long original = 0;
for (def key : ['requestObject', 'responseObject']) {
  if (!a.containsKey(key) || a.get(key) == null) { continue; }
  def body = a.get(key);
  if (body instanceof Map) {
    def meta = body.metadata;
    if (meta instanceof Map && meta.containsKey('managedFields')) { meta.remove('managedFields'); }
  } else if (body instanceof List) {
    body = ['json_patch': body];
  } else {
    body = ['value': body];
  }
  long size = est(body);
  original += size;
  if (size > params.max_value) {
    List flag = new ArrayList();
    body = cut(body, (int) params.max_value, flag, params.suffix);
    if (!flag.isEmpty()) { truncated = true; size = est(body); }
  }
  if (size > params.max_body) {
    Map marker = new LinkedHashMap();
    marker.put(params.marker_key, true);
    marker.original_bytes = size;
    for (def k : ['kind', 'apiVersion']) { if (body.get(k) instanceof String) { marker.put(k, body.get(k)); } }
    body = marker;
    truncated = true;
  }
  a.put(key, body);
}
if (truncated) { kaudit.body = ['truncated': true, 'original_bytes': original]; }
if (!kaudit.isEmpty()) {
  Map k = child(doc, 'kaudit');
  k.putAll(kaudit);
}
"""

_JOIN_EXEC = r"""
Map tmp = ctx[params.tmp];
if (tmp != null) {
  Map ex = new LinkedHashMap();
  if (tmp.cmd instanceof List && !tmp.cmd.isEmpty()) { ex.command = String.join(' ', tmp.cmd); }
  if (tmp.container != null) { ex.container = tmp.container; }
  if (!ex.isEmpty()) {
    if (!(ctx.kaudit instanceof Map)) { ctx.kaudit = new LinkedHashMap(); }
    ctx.kaudit.exec = ex;
  }
  ctx.remove(params.tmp);
}
"""


def _params(cluster: str, namespace: str) -> dict[str, Any]:
    type_names = {str: "str", dict: "dict", list: "list"}
    return {
        "tmp": _TMP,
        "cluster": cluster,
        "raw_types": {k: type_names[v[0]] for k, v in fs.RAW_TYPES.items()},
        "dedot": [list(p) for p in fs.DEDOTTED_OBJECTS],
        "dotted_keys": [list(p) for p in fs.DOTTED_KEY_OBJECTS],
        "ts_sources": [list(p) for p in fs.TIMESTAMP_SOURCES],
        "constants": {**fs.CONSTANTS, "data_stream.namespace": namespace},
        "copies": [[list(src), dst] for src, dst in fs.COPIES],
        "iam_resources": sorted(fs.IAM_RESOURCES),
        "exec_subresources": sorted(fs.EXEC_SUBRESOURCES),
        "verb_types": dict(fs.VERB_TYPES),
        "write_verbs": sorted(fs.WRITE_VERBS),
        "pod_spec_paths": [list(p) for p in fs.POD_SPEC_PATHS],
        "container_lists": list(fs.CONTAINER_LISTS),
        "pod_spec_markers": list(fs.POD_SPEC_MARKERS),
        "host_flags": [[raw, name, name.rsplit(".", 1)[1]] for raw, name in fs.HOST_NAMESPACE_FLAGS],
        "rbac_rule_fields": [
            ["verbs", "verbs"], ["resources", "resources"], ["apiGroups", "api_groups"],
            ["resourceNames", "resource_names"], ["nonResourceURLs", "non_resource_urls"],
        ],
        "service_resources": sorted(fs.SERVICE_RESOURCES),
        "max_value": DEFAULT.max_value_bytes,
        "max_body": DEFAULT.max_body_bytes,
        "suffix": fs.TRUNCATION_SUFFIX,
        "marker_key": fs.TRUNCATED_BODY_KEY,
    }


def _copy_failure(source: str, target: str, flavor: str) -> list[dict[str, Any]]:
    """Copy ingest failure metadata without mustache (OpenSearch: ``copy``; ES: ``set.copy_from``)."""
    if flavor == "opensearch":
        return [{"copy": {"source_field": source, "target_field": target, "ignore_missing": True, "override_target": True}}]
    return [{"set": {"field": target, "copy_from": source, "ignore_empty_value": True}}]


def build_pipeline(flavor: str, *, cluster: str = "default", namespace: str = fs.DEFAULT_NAMESPACE) -> dict:
    """Return the ingest pipeline body (for ``PUT _ingest/pipeline/<id>``) for ``flavor``: documents of the
    stream of ``namespace`` (``data_stream.*`` is set, overriding what a shipper sent)."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
    keep = " || ".join(f"ctx.kubernetes.audit.stage == '{s}'" for s in sorted(DEFAULT.stages))
    processors: list[dict[str, Any]] = [
        {
            "json": {
                "tag": "kaudit-parse-message",
                "field": "message",
                "target_field": "kubernetes.audit",
                "if": "ctx.message instanceof String && (ctx.kubernetes == null || ctx.kubernetes.audit == null)",
            }
        },
        {
            "remove": {
                "tag": "kaudit-remove-message",
                "field": "message",
                "ignore_missing": True,
                "if": "ctx.kubernetes?.audit instanceof Map && ctx.message instanceof String",
            }
        },
        {
            "fail": {
                "tag": "kaudit-require-event",
                "message": "no audit event: expected a JSON string in 'message' or an object in 'kubernetes.audit'",
                "if": "!(ctx.kubernetes?.audit instanceof Map)",
            }
        },
        {
            "drop": {
                "tag": "kaudit-stage-filter",
                "if": f"ctx.kubernetes.audit.stage != null && !({keep})",
            }
        },
        {
            "script": {
                "tag": "kaudit-normalize",
                "lang": "painless",
                "source": _PAINLESS.strip(),
                "params": _params(cluster, namespace),
            }
        },
        {
            "foreach": {
                "tag": "kaudit-exec-command-decode",
                "field": f"{_TMP}.cmd",
                "ignore_missing": True,
                "processor": {"urldecode": {"field": "_ingest._value"}},
            }
        },
        {
            "urldecode": {
                "tag": "kaudit-exec-container-decode",
                "field": f"{_TMP}.container",
                "ignore_missing": True,
            }
        },
        {
            "script": {
                "tag": "kaudit-exec-join",
                "lang": "painless",
                "source": _JOIN_EXEC.strip(),
                "params": {"tmp": _TMP},
            }
        },
    ]
    return {
        "description": f"kaudit-elk: Kubernetes audit Event -> document ({flavor}); generated from kaudit_elk.events.fieldspec",
        "processors": processors,
        "on_failure": [
            {"set": {"field": "event.kind", "value": "pipeline_error"}},
            *_copy_failure("_ingest.on_failure_message", "error.message", flavor),
            *_copy_failure("_ingest.on_failure_processor_tag", "error.type", flavor),
            {"remove": {"field": _TMP, "ignore_missing": True}},
        ],
    }
