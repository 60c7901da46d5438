"""Shard bodies: a share of a set's rendered body, the groups whose target ``t`` has
``hashmod(t, N) == I`` (Prometheus' relabel ``hashmod`` on ``__address__``), labels and
order unchanged, each with its own ETag, and its gzip when asked (once per render)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

from sd.body import Blocks, Body, etag
from sd.gzip_body import compress

# Shard counts whose shard bodies are kept per render, least recently asked evicted: a
# client walking through many values of N costs CPU, never memory beyond this many
# partitions of the body (each the size of one body in all).
SHARD_COUNTS_KEPT = 2


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' relabel action ``hashmod``: md5 of the value, its last 8 bytes as a
    big-endian unsigned integer, modulo ``modulus`` (model/relabel/relabel.go)."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


T = TypeVar("T")


class PerShardCount(Generic[T]):
    """What a render's shards of one count N need (``make(N)``), made when first asked, for
    at most SHARD_COUNTS_KEPT counts, the least recently asked evicted; ``clear`` after a
    render."""

    def __init__(self, make: Callable[[int], T]) -> None:
        self._make = make
        self._kept: OrderedDict[int, T] = OrderedDict()

    def clear(self) -> None:
        self._kept.clear()

    def get(self, shards: int) -> T:
        value = self._kept.get(shards)
        if value is None:
            value = self._kept[shards] = self._make(shards)
            while len(self._kept) > SHARD_COUNTS_KEPT:
                self._kept.popitem(last=False)
        else:
            self._kept.move_to_end(shards)
        return value

    def __len__(self) -> int:
        """How many shard counts are kept."""
        return len(self._kept)


class Shards:
    """The shard bodies of the last render of ``blocks``: all N are cut from the body's
    spans together, at most once per render and shard count (``clear`` after a render); a
    shard's gzip at most once per render, when first asked."""

    def __init__(self, blocks: Blocks) -> None:
        self._blocks = blocks
        # N → its shards' bodies, and their gzip bodies once asked for
        self._cut: PerShardCount[tuple[list[Body], list[Body | None]]] = PerShardCount(
            lambda shards: (self._split(shards), [None] * shards))

    def clear(self) -> None:
        self._cut.clear()

    def body(self, shards: int, shard: int) -> Body:
        return self._cut.get(shards)[0][shard]

    def gzip(self, shards: int, shard: int) -> Body:
        parts, gzipped = self._cut.get(shards)
        gz = gzipped[shard]
        if gz is None:
            gz = gzipped[shard] = compress(parts[shard])
        return gz

    def __len__(self) -> int:
        """How many shard counts are kept."""
        return len(self._cut)

    def _split(self, shards: int) -> list[Body]:
        spans: list[list[memoryview]] = [[] for _ in range(shards)]
        sums = [0] * shards
        for target, digest, group in self._blocks.spans():
            i = hashmod(target, shards)
            spans[i].append(group)
            sums[i] += digest
        return [Body.of(b"[" + b",".join(spans[i]) + b"]", etag(sums[i], f"-{shards}.{i}")) for i in range(shards)]
