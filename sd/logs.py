"""Log lines: logfmt (``--log-format text``, the default) or JSON, one line per event.

Log calls in this project write templates of the form ``"event text key=%s other=%r"``.
The formatters split such a template into the event (``msg="event text"``) and one
field per ``key=%x``, holding its argument's value: never a Python repr, so
``source=%r`` of ``pods app=x`` is ``source="pods app=x"`` in logfmt and
``"source": "pods app=x"`` in JSON. A conversion without a ``key=`` stays in the
event text. Lists are written ``a,b`` and mappings ``k:v,k:v`` in logfmt, as arrays
and objects in JSON. A traceback is the field ``exc``, so an event stays one line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from functools import lru_cache
from typing import IO, Any

ACCESS = "sd.http.access"  # one line per HTTP request, at debug

# uvicorn logs its life cycle (started, shutting down) as "uvicorn.error", which is no
# error; it is our HTTP server, so its lines carry our name for it.
_RENAMED = {"uvicorn.error": "sd.http", "uvicorn": "sd.http"}

# Libraries that would write a line per request: httpx logs every probe at INFO,
# httpcore every connection step at DEBUG, kubernetes-asyncio whole response bodies
# (list pages of megabytes) at DEBUG, and uvicorn's own access log is replaced by ACCESS.
_QUIET = ("httpx", "httpcore", "kubernetes_asyncio", "aiohttp", "uvicorn.access")

_SPEC = r"%[#0\- +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]"
_TOKEN = re.compile(rf"(?P<field>\s*\b(?P<key>[A-Za-z_][\w.]*)=(?P<spec>{_SPEC})(?P<unit>[a-z]*))|(?P<conv>{_SPEC})|%%")
_RESERVED = ("ts", "level", "logger", "msg")


@lru_cache(maxsize=1024)
def _split(template: str) -> tuple[str, tuple[tuple[str, str, str] | None, ...]]:
    """A template's event text (with only its own conversions left) and, for each
    argument in order, its field (key, spec, unit) or None when it belongs to the text."""
    text: list[str] = []
    slots: list[tuple[str, str, str] | None] = []
    pos = 0
    for m in _TOKEN.finditer(template):
        text.append(template[pos : m.start()])
        pos = m.end()
        if m.group("field"):
            slots.append((m.group("key"), m.group("spec"), m.group("unit")))
        elif m.group("conv"):
            text.append(m.group("conv"))
            slots.append(None)
        else:
            text.append("%%")
    text.append(template[pos:])
    return "".join(text).strip(), tuple(slots)


def _value(spec: str, unit: str, arg: Any) -> Any:
    if spec in ("%s", "%r", "%d", "%i") and not unit:
        return arg
    return (spec % arg) + unit


def event(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    """(msg, fields) of a record; a call that does not follow the template convention
    keeps its whole formatted message as msg."""
    args = record.args
    if isinstance(record.msg, str) and isinstance(args, tuple):
        text, slots = _split(record.msg)
        if len(slots) == len(args):
            try:
                msg = text % tuple(a for a, slot in zip(args, slots) if slot is None)
                fields = {slot[0]: _value(slot[1], slot[2], a) for a, slot in zip(args, slots) if slot is not None}
                return msg, fields
            except (TypeError, ValueError):
                pass
    return record.getMessage(), {}


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _entry(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, Any]:
    msg, fields = event(record)
    entry: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": _RENAMED.get(record.name, record.name),
        "msg": msg,
    }
    for key, value in fields.items():
        entry[f"field_{key}" if key in _RESERVED else key] = value
    if record.exc_info:
        entry["exc"] = formatter.formatException(record.exc_info)
    return entry


def _logfmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        value = ",".join(f"{k}:{v}" for k, v in value.items())
    elif isinstance(value, (list, tuple, set, frozenset)):
        value = ",".join(str(v) for v in value)
    text = str(value)
    if text and not any(c in ' ="\\' or c < " " or c == "\x7f" for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=sd.feed msg="source synced" source=nodes objects=6``."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _entry(self, record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, each field a top-level key."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_entry(self, record), ensure_ascii=False, default=str)


def setup(level: str, fmt: str, stream: IO[str] | None = None) -> None:
    """Send every log line to ``stream`` (stderr) in ``fmt`` ("text" or "json") from ``level`` up."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
