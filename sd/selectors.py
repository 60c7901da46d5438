"""Kubernetes label and field selectors: parsed once, matched the way the API server does.

Informers send selectors to the API server as-is; this module validates them
(config) and applies them where there is no API server (snapshot files). Which
fields a field selector may name depends on the kind: each kind lists its own
(``Kind.fields``), as the API server defines them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# A kind's selectable fields: field path → how to read it from a raw object.
Fields = Mapping[str, Callable[[Mapping[str, Any]], str]]

_KEY = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")


class SelectorError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "in" | "notin" | "exists" | "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin: absent keys match, as in Kubernetes


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])
    return [p for p in parts if p.strip()] if selector.strip() else []


def parse_label_selector(selector: str) -> tuple[Requirement, ...]:
    reqs = []
    for part in _split(selector):
        eq = _EQ_RE.match(part)
        if eq:
            key, op, value = eq.groups()
            reqs.append(Requirement(key, "notin" if op == "!=" else "in", frozenset([value])))
            continue
        st = _SET_RE.match(part)
        if not st:
            raise SelectorError(f"invalid label selector term {part.strip()!r}")
        neg, key, op, values = st.groups()
        if op:
            if neg:
                raise SelectorError(f"invalid label selector term {part.strip()!r}")
            items = frozenset(v.strip() for v in values.split(",") if v.strip())
            if not items or not all(re.fullmatch(_VALUE, v) for v in items):
                raise SelectorError(f"invalid value list in {part.strip()!r}")
            reqs.append(Requirement(key, op, items))
        else:
            reqs.append(Requirement(key, "!exists" if neg else "exists"))
    return tuple(reqs)


def parse_field_selector(selector: str, fields: Fields) -> tuple[tuple[str, bool, str], ...]:
    """(field, equal, value) terms; only ``fields`` (those the API server serves for the kind)."""
    terms = []
    for part in _split(selector):
        m = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*(\S*)\s*", part)
        if not m:
            raise SelectorError(f"invalid field selector term {part.strip()!r}")
        field, op, value = m.groups()
        if field not in fields:
            raise SelectorError(f"unsupported field {field!r} (supported: {', '.join(fields)})")
        terms.append((field, op != "!=", value))
    return tuple(terms)


def matcher(label_selector: str, field_selector: str, fields: Fields) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over raw objects equal to what the API server applies."""
    labels_req = parse_label_selector(label_selector)
    fields_req = parse_field_selector(field_selector, fields)

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if not all(r.matches(labels) for r in labels_req):
            return False
        return all((fields[f](obj) == v) == eq for f, eq, v in fields_req)

    return match
