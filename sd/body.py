"""A target set's body as ordered blocks of groups, rebuilt block by block.

The body is ``[`` + every group's JSON in sort order, comma-separated, + ``]``. It is
kept as blocks of about ``BLOCK`` groups each; a change marks only the block that
holds the group, and a render rebuilds only the marked blocks, so its cost follows
the change, not the size of the set. The blocks are served as they are, one after
another (``Body.chunks``): nothing joins them into one bytes object.

Where the blocks split does not show in the bytes, and the ETag is the order-free sum
of the groups' digests, so the same state always gives the same bytes and ETag.
"""

from __future__ import annotations

import hashlib
import io
from bisect import bisect_right, insort
from dataclasses import dataclass
from typing import Any, Callable, Iterator

# Groups per block: a block is split in two when it grows past twice this. Small
# enough that rebuilding one is cheap (~64 groups, ~100 KB at kubelet label sizes),
# large enough that a body has few chunks (~80 at 5,000 nodes).
BLOCK = 64


@dataclass(eq=False, slots=True)
class Entry:
    """One group of the body. Its JSON is ``data[start:end]`` of its block, ``start`` -1
    until it has been built."""

    order: tuple[str, ...]  # (object key, target, ...): where it sorts
    claim: str  # what the index resolved for it (an IP, or an address)
    start: int = -1
    end: int = -1
    digest: int = 0  # blake2b-128 of the group's JSON, as an int
    source: Any = None  # what its JSON was last built from (the owner's business)

    @property
    def target(self) -> str:
        return self.order[1]


# What a rendered block served: its data, and (target, digest, start, end) of each group.
_Rendered = tuple[bytes, tuple[tuple[str, int, int, int], ...]]


@dataclass(eq=False, slots=True)
class _Block:
    entries: list[Entry]
    data: bytes = b""  # "," + the JSON of each entry, in order
    dirty: bool = True
    rendered: _Rendered = (b"", ())


@dataclass(frozen=True, slots=True)
class Body:
    """What a request serves: the chunks, in order, their total length and the ETag."""

    chunks: tuple[bytes | memoryview, ...]
    length: int
    etag: str

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks)

    @classmethod
    def of(cls, data: bytes, etag: str) -> Body:
        return cls((data,), len(data), etag)


def etag(digest_sum: int, suffix: str = "") -> str:
    return '"%032x%s"' % (digest_sum % (1 << 128), suffix)


EMPTY = Body.of(b"[]", etag(0))


def _order(entry: Entry) -> tuple[str, ...]:
    return entry.order


class Blocks:
    """The entries of a body in blocks; ``render`` builds what changed since the last one."""

    def __init__(self) -> None:
        self._blocks: list[_Block] = []
        self._firsts: list[tuple[str, ...]] = []  # each block's first entry's order, to find blocks
        self.digest_sum = 0  # of the entries that have been built
        self._served: list[_Rendered] = []  # the blocks of the last render

    def _find(self, order: tuple[str, ...]) -> int:
        return max(bisect_right(self._firsts, order) - 1, 0)

    def add(self, entry: Entry) -> None:
        if not self._blocks:
            self._blocks.append(_Block([entry]))
            self._firsts.append(entry.order)
            return
        i = self._find(entry.order)
        block = self._blocks[i]
        insort(block.entries, entry, key=_order)
        block.dirty = True
        if block.entries[0] is entry:
            self._firsts[i] = entry.order
        if len(block.entries) > 2 * BLOCK:
            # Both halves keep the old data until rebuilt: their built entries' spans point into it.
            rest = _Block(block.entries[BLOCK:], block.data)
            del block.entries[BLOCK:]
            self._blocks.insert(i + 1, rest)
            self._firsts.insert(i + 1, rest.entries[0].order)

    def remove(self, entry: Entry) -> bytes | None:
        """Take the entry out; its JSON as last built, if it was."""
        i = self._find(entry.order)
        block = self._blocks[i]
        block.entries.remove(entry)
        self.digest_sum -= entry.digest
        built = block.data[entry.start : entry.end] if entry.start >= 0 else None
        if not block.entries:
            del self._blocks[i], self._firsts[i]
        else:
            block.dirty = True
            self._firsts[i] = block.entries[0].order
        return built

    def rebuild(self, entry: Entry) -> None:
        """Build this entry's JSON again at the next render (its labels changed)."""
        self.digest_sum -= entry.digest
        entry.start, entry.end, entry.digest = -1, -1, 0
        self._blocks[self._find(entry.order)].dirty = True

    def rebuild_all(self) -> None:
        self.digest_sum = 0
        for block in self._blocks:
            for entry in block.entries:
                entry.start, entry.end, entry.digest = -1, -1, 0
            block.dirty = True

    def render(self, build: Callable[[Entry], bytes]) -> Body:
        """Rebuild the changed blocks (``build`` makes an entry's JSON) and return the body."""
        for block in self._blocks:
            if block.dirty:
                self._render(block, build)
        self._served = [block.rendered for block in self._blocks]
        if not self._blocks:
            return EMPTY
        chunks: list[bytes | memoryview] = [b"[", memoryview(self._blocks[0].data)[1:]]
        chunks.extend(block.data for block in self._blocks[1:])
        chunks.append(b"]")
        return Body(tuple(chunks), sum(len(block.data) for block in self._blocks) + 1, etag(self.digest_sum))

    def _render(self, block: _Block, build: Callable[[Entry], bytes]) -> None:
        old = memoryview(block.data)
        buf = io.BytesIO()
        for entry in block.entries:
            if entry.start < 0:
                group: bytes | memoryview = build(entry)
                entry.digest = int.from_bytes(hashlib.blake2b(group, digest_size=16).digest(), "big")
                self.digest_sum += entry.digest
            else:
                group = old[entry.start : entry.end]
            buf.write(b",")
            entry.start = buf.tell()
            buf.write(group)
            entry.end = buf.tell()
        del old
        block.data = buf.getvalue()
        block.dirty = False
        block.rendered = (block.data, tuple((e.target, e.digest, e.start, e.end) for e in block.entries))

    def spans(self) -> Iterator[tuple[str, int, memoryview]]:
        """(target, digest, JSON) of every group of the last rendered body, in body order:
        changes since that render do not show."""
        for data, groups in self._served:
            view = memoryview(data)
            for target, digest, start, end in groups:
                yield target, digest, view[start:end]
