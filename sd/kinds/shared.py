"""One copy of equal values that recur across thousands of objects.

Equal label pairs and condition lists recur across thousands of objects (a zone, an
instance type, "Ready": "True"): records share one tuple of each instead of holding
their own (5 MB of 110 at 5,000 nodes + 5,000 pods). The table is emptied when it
grows past SHARED_MAX, so unique pairs (hostnames) cost at most that much; a pair
seen after that gets a new shared copy.
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

T = TypeVar("T")

intern = sys.intern
_SHARED: dict[tuple[Any, ...], tuple[Any, ...]] = {}
SHARED_MAX = 20_000


def shared(value: T) -> T:
    """The table's copy of ``value`` (a tuple), kept from now on if it had none."""
    kept = _SHARED.setdefault(value, value)  # type: ignore[arg-type]
    if len(_SHARED) > SHARED_MAX:
        _SHARED.clear()
    return kept  # type: ignore[return-value]


def held() -> int:
    """How many values the table holds."""
    return len(_SHARED)
