"""Label names as Prometheus' kubernetes_sd writes them, and which annotations are kept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

META = "__meta_kubernetes_"
IP_FAMILY_LABEL = "__meta_sd_ip_family"
CLUSTER_LABEL = "__meta_sd_cluster"  # with a clusters: map, the cluster's name there

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


@lru_cache(maxsize=16384)
def sanitize(name: str) -> str:
    """The suffix of a label name as Prometheus writes it: other characters become '_'."""
    return _INVALID_LABEL_CHARS.sub("_", name)


def _add_pairs(labels: dict[str, str], value_prefix: str, present_prefix: str, pairs: tuple[tuple[str, str], ...]) -> None:
    for key, value in pairs:
        name = sanitize(key)
        labels[value_prefix + name] = value
        labels[present_prefix + name] = "true"


@dataclass(frozen=True, slots=True)
class ObjectLabels:
    """One role's label and annotation label names, and the one way they are written
    (Prometheus' ``addObjectAnnotationsAndLabels``): ``<prefix>label_<n>`` = value plus
    ``<prefix>labelpresent_<n>`` = "true", likewise for the annotations."""

    label: str
    label_present: str
    annotation: str
    annotation_present: str

    @classmethod
    def of(cls, role: str) -> ObjectLabels:
        prefix = f"{META}{role}_"
        return cls(prefix + "label_", prefix + "labelpresent_", prefix + "annotation_", prefix + "annotationpresent_")

    def add(self, labels: dict[str, str], pairs: tuple[tuple[str, str], ...], annotations: tuple[tuple[str, str], ...]) -> None:
        """Add an object's labels and (listed) annotations, as sorted (key, value) pairs."""
        _add_pairs(labels, self.label, self.label_present, pairs)
        _add_pairs(labels, self.annotation, self.annotation_present, annotations)


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Which annotations to keep: exact keys, and prefixes written ``"prefix/*"`` (``"*"``: all).
    Unlisted annotations are never stored."""

    keys: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: tuple[str, ...]) -> Allowlist:
        keys = frozenset(p for p in patterns if not p.endswith("*"))
        prefixes = tuple(sorted({p[:-1] for p in patterns if p.endswith("*")}))
        return cls(keys, prefixes)

    def __bool__(self) -> bool:
        return bool(self.keys or self.prefixes)

    def __contains__(self, key: str) -> bool:
        return key in self.keys or key.startswith(self.prefixes)

    def __or__(self, other: Allowlist) -> Allowlist:
        return Allowlist(self.keys | other.keys, tuple(sorted(set(self.prefixes) | set(other.prefixes))))

    def covers(self, other: Allowlist) -> bool:
        """Whether every annotation ``other`` keeps, this keeps too."""
        return all(key in self for key in other.keys) and all(p.startswith(self.prefixes) for p in other.prefixes)


NOTHING = Allowlist()


def listed(pairs: tuple[tuple[str, str], ...], allow: Allowlist) -> tuple[tuple[str, str], ...]:
    """The (key, value) pairs whose key ``allow`` lists."""
    return tuple(p for p in pairs if p[0] in allow) if pairs and allow else ()
