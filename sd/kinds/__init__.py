"""The object kinds we watch, one module each, and the registry everything else consults.

A new kind is a module with a ``Kind`` subclass and one line in ``KINDS`` (plus its
RBAC rule in deploy/kubernetes: the base ClusterRole for kinds sets read, the optional
attach-metadata one for kinds watched only for attached metadata).
"""

from __future__ import annotations

from sd.kinds import namespaces, nodes, pods, workloads
from sd.kinds.kind import Kind

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        nodes.KIND,
        pods.KIND,
        namespaces.KIND,
        workloads.REPLICASETS,
        workloads.JOBS,
    )
}

# What RBAC must grant on every kind's resource: exactly the calls an informer makes.
# list: the (paginated) list; watch: the watch, and a streaming list, which is a watch.
# Nothing reads a single object, so no "get".
VERBS = ("list", "watch")
