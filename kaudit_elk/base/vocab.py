"""The project's vocabulary: the one definition of each closed set of names the layers share.

Severities are the Sigma rule levels (what alerts and incidents carry); audit levels are the Kubernetes
audit policy levels (how much of a request an Event holds). They were both called ``LEVELS`` once; here
each has its own name.
"""

from __future__ import annotations

from typing import Final

#: Sigma rule levels = alert/incident severities, lowest first (``severity_rank`` is the index).
SEVERITIES: Final = ("informational", "low", "medium", "high", "critical")
#: Kubernetes audit policy levels, least detail first (``None``: not recorded).
AUDIT_LEVELS: Final = ("None", "Metadata", "Request", "RequestResponse")
#: The levels an Event is recorded at (a rule's ``kaudit.audit_level``).
EVENT_AUDIT_LEVELS: Final = AUDIT_LEVELS[1:]
#: Audit Event stages, in the order the apiserver emits them.
STAGES: Final = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
#: Stages ingest and serve keep by default (``NormalizeOptions.stages``).
KEPT_STAGES: Final = ("ResponseComplete", "ResponseStarted", "Panic")
#: Stages after which a request is over (the detector judges a request on these).
FINAL_STAGES: Final = frozenset({"ResponseComplete", "Panic"})
#: The verbs of resource requests, reads first (policy generation lists them in this order).
RESOURCE_VERBS: Final = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
#: Verbs that change state, in RESOURCE_VERBS order.
WRITES: Final = RESOURCE_VERBS[3:]
#: Verbs that change state.
WRITE_VERBS: Final = frozenset(WRITES)
#: Search engine flavours (``cluster.engine``, the server-side pipeline).
ENGINE_FLAVORS: Final = ("elasticsearch", "opensearch")
#: Dashboard application flavours (Kibana saved objects / OpenSearch Dashboards).
DASHBOARD_FLAVORS: Final = ("kibana", "opensearch")
