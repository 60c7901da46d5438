"""Forgiving readers of raw API fields, and ``Fields``: which record fields a parse
found malformed, so that a kind keeps their last good values.

Nothing here raises on malformed input: a bad value is reported and read as empty, so
that only well-formed data changes what is served. An empty or absent value is not
malformed: it is the object's "none" and replaces the old value (docs/correctness.md has
the table, field by field).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Mapping, TypeVar

from sd.kinds.reports import BAD_FIELD, INVALID_IP, Report, preview
from sd.kinds.shared import intern, shared

T = TypeVar("T")

# Reports that mean "this field is malformed" (as opposed to an IP we do not use).
_MALFORMED = frozenset({BAD_FIELD, INVALID_IP})


def _unset(reason: str, detail: str) -> None:
    raise RuntimeError("Fields.start was not called")


class Fields:
    """The reports of one parse at a time, remembering which record fields were malformed.

    ``start`` a parse; read each value with ``filling(<the record fields it fills>)`` as
    its report; pass the record built to ``finish``: a malformed field of an object we
    already know gets the previous record's value back (a new object keeps the well-formed
    part). A malformed section (``spec: "x"``; ``status`` null or absent, which the API
    server never sends) makes every field read from it malformed. A kind keeps one and
    reuses it, so each ``filling`` report is made once, not once per parse.
    """

    __slots__ = ("_report", "previous", "bad", "_fillings")

    def __init__(self) -> None:
        self._report: Report = _unset
        self.previous: Any = None
        self.bad: set[str] | None = None
        self._fillings: dict[tuple[str, ...], Report] = {}

    def start(self, report: Report, previous: Any) -> Fields:
        self._report, self.previous, self.bad = report, previous, None
        return self

    def filling(self, *attrs: str) -> Report:
        """The report for reading a value that fills the record fields ``attrs``."""
        report = self._fillings.get(attrs)
        if report is None:

            def report(reason: str, detail: str) -> None:
                if reason in _MALFORMED:
                    self._mark(attrs)
                    if self.previous is not None:
                        detail += "; keeping the last good value"
                self._report(reason, detail)

            self._fillings[attrs] = report
        return report

    def _mark(self, attrs: tuple[str, ...]) -> None:
        if self.bad is None:
            self.bad = set()
        self.bad.update(attrs)

    def section(self, raw: Mapping[str, Any], field: str, where: str, attrs: tuple[str, ...], required: bool = False) -> dict:
        """A top-level object (``spec``, ``status``) whose values fill ``attrs``; ``{}`` when it
        is absent and not ``required``, ``{}`` (reported, ``attrs`` malformed) when it is bad."""
        value = raw.get(field)
        if isinstance(value, dict):
            return value
        if value is None and not required:
            return {}
        self.filling(*attrs)(BAD_FIELD, f"{where}: {field}: expected an object, got {preview(value)}")
        return {}

    def finish(self, record: T) -> T:
        """``record`` with each malformed field's previous value."""
        if not self.bad or self.previous is None:
            return record
        return replace(record, **{a: getattr(self.previous, a) for a in self.bad})  # type: ignore[type-var]


def get_dict(obj: Mapping[str, Any], field: str, where: str = "", report: Report | None = None, path: str = "") -> dict | None:
    value = obj.get(field)
    if value is None or isinstance(value, dict):
        return value
    if report is not None:
        report(BAD_FIELD, f"{where}: {path or field}: expected an object, got {preview(value)}")
    return None


def get_list(obj: Mapping[str, Any], field: str, where: str, report: Report, path: str = "") -> list:
    value = obj.get(field)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    report(BAD_FIELD, f"{where}: {path or field}: expected a list, got {preview(value)}")
    return []


def text(obj: Mapping[str, Any], field: str, where: str, report: Report, path: str = "") -> str:
    """A string field; "" when absent; "" (reported) when it is not a string."""
    value = obj.get(field)
    if value is None or isinstance(value, str):
        return value or ""
    report(BAD_FIELD, f"{where}: {path or field}: expected a string, got {preview(value)}")
    return ""


def get_str(obj: Mapping[str, Any] | None, field: str) -> str:
    value = obj.get(field) if obj is not None else None
    return value if isinstance(value, str) else ""


def port_number(value: Any, where: str, report: Report) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    report(BAD_FIELD, f"{where}: expected a port 1-65535, got {preview(value)}")
    return None


def timestamp(meta: Mapping[str, Any], field: str, where: str, report: Report) -> float:
    """An RFC 3339 metadata time as epoch seconds; 0 when missing or malformed (reported)."""
    value = meta.get(field)
    if value is None:
        return 0.0
    seconds = _epoch(value) if isinstance(value, str) else None
    if seconds is None:
        report(BAD_FIELD, f"{where}: metadata.{field}: not an RFC 3339 time: {preview(value)}")
        return 0.0
    return seconds


@lru_cache(maxsize=16384)
def _epoch(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def conditions(
    status: Mapping[str, Any], where: str, report: Report, previous: tuple[tuple[str, str], ...] | None
) -> tuple[tuple[str, str], ...]:
    """status.conditions as (type, status) pairs in API order; ``previous`` when equal."""
    raw = get_list(status, "conditions", where, report, "status.conditions")
    if previous is not None and len(raw) == len(previous):
        try:
            if all(c["type"] == t and c["status"] == v for c, (t, v) in zip(raw, previous)):
                return previous
        except (KeyError, TypeError):
            pass  # malformed: the full path below reports it
    out: list[tuple[str, str]] = []
    for i, cond in enumerate(raw):
        if not isinstance(cond, dict) or not isinstance(cond.get("type"), str) or not isinstance(cond.get("status"), str):
            report(BAD_FIELD, f"{where}: status.conditions[{i}]: expected {{type, status}} strings, got {preview(cond)}")
            continue
        out.append((intern(cond["type"]), intern(cond["status"])))
    return shared(tuple(out))


def field_reader(*path: str) -> Callable[[Mapping[str, Any]], str]:
    """Read a field as the API server's field-selector sets render it: missing "",
    booleans lowercase ("false" when a boolean field is missing)."""
    boolean = path[-1] in ("unschedulable", "hostNetwork")

    def read(obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for part in path:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, bool) or (cur is None and boolean):
            return "true" if cur else "false"
        return "" if cur is None else str(cur)

    return read
