"""Bad data, reported and skipped: the ``Report`` callback and its reasons.

Nothing in ``sd/kinds/`` raises on malformed input: bad fields are skipped and reported
with a short, stable reason (the ``reason`` label of kube_http_sd_skipped_total) and a
detail that says where and why ("node/n1: status.addresses[2].address: not an IP: 'x'").
"""

from __future__ import annotations

from typing import Any, Callable

Report = Callable[[str, str], None]

INVALID_IP = "invalid_ip"
UNSPECIFIED_IP = "unspecified_ip"
LINK_LOCAL_IP = "link_local_ip"
SCOPED_IP = "scoped_ip"
BAD_FIELD = "bad_field"
BAD_OBJECT = "bad_object"


def ignore(reason: str, detail: str) -> None:
    """A ``Report`` that drops everything (callers that only want the record)."""


def preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
