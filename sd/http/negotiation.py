"""Content negotiation: does a request's ``Accept`` header prefer HTML (``/``), and which
content coding does its ``Accept-Encoding`` ask for (``/targets/<set>``)?"""

from __future__ import annotations


def _q(params: list[str]) -> float:
    """The ``q`` among a list item's parameters: 1 without one, 0 when it is not a number."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return min(q, 1.0) if q > 0 else 0.0  # nan and negatives: 0
    return 1.0


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
        q = _q(params)
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


GZIP = "gzip"
IDENTITY = "identity"


def content_coding(accept_encoding: str | None) -> str | None:
    """``gzip`` or ``identity`` for a request's ``Accept-Encoding`` (RFC 9110 12.5.3), None when
    it refuses both. No header means ``identity``: Prometheus sends none and reads plain bytes.
    ``x-gzip`` is ``gzip``; ``*`` stands for any coding the header does not name; identity is
    acceptable unless ``identity;q=0``, or ``*;q=0`` without ``identity``. gzip is served when
    acceptable and identity is not given a higher q (a header that names only gzip wants it)."""
    if accept_encoding is None:
        return IDENTITY
    q: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        coding = coding.lower()
        if coding:
            q[GZIP if coding == "x-gzip" else coding] = _q(params)
    gzip = q.get(GZIP, q.get("*", 0.0))
    identity = q.get(IDENTITY, q.get("*"))
    if gzip > 0 and (identity is None or gzip >= identity):
        return GZIP
    return None if identity == 0 else IDENTITY
