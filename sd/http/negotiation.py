"""Content negotiation for ``/``: does a request's ``Accept`` header prefer HTML?"""

from __future__ import annotations


def _quality(accept: str, media_type: str) -> float:
    """The q an ``Accept`` header gives ``media_type``: that of its most specific matching
    range (``text/html`` over ``text/*`` over ``*/*``, RFC 9110 12.5.1), 0 when none matches."""
    kind = media_type.split("/")[0]
    best, specificity = 0.0, -1
    for item in accept.split(","):
        media_range, *params = (part.strip() for part in item.split(";"))
        rank = {media_type: 2, f"{kind}/*": 1, "*/*": 0}.get(media_range.lower())
        if rank is None or rank < specificity:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if rank > specificity or q > best:
            best, specificity = q, rank
    return best


def prefers_html(accept: str | None) -> bool:
    """True when ``text/html`` is acceptable and strictly preferred to ``text/plain``: a
    browser's navigation (``text/html,...,*/*;q=0.8``). A tie (curl's ``*/*``, no header)
    keeps the plain text."""
    if not accept:
        return False
    html = _quality(accept, "text/html")
    return html > 0 and html > _quality(accept, "text/plain")
