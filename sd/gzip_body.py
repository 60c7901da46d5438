"""gzip bodies: a set's rendered body compressed for clients that send ``Accept-Encoding: gzip``.

The full body is one gzip member made of deflate segments, one per chunk of the body (a
block of ~64 groups, ``sd/body.py``). Each segment is compressed on its own, primed with the
last 32 KiB of the chunk before it (as pigz does), and ends on a sync flush, so segments put
one after another are one valid deflate stream. A segment is kept while its chunk and the
chunk before it are the same objects, so the gzip body of a render recompresses only the
segments of the blocks that changed (and of the block after each). The CRC-32 in the trailer
is combined from the segments' own (zlib's ``crc32_combine``, which Python does not expose).

One member rather than one member per chunk: curl 7.88 and Chromium stop reading after the
first member of a multi-member gzip stream (docs/design.md).

A gzip body is made at most once per render, on the first request that asks for it, and kept
until the next render: a server whose clients never ask (Prometheus) never compresses.
Its ETag is the plain body's, marked ``+gzip`` and weak: the bytes depend on where the
blocks split, which the state does not fix, the decoded content does not.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass

from sd.body import Body

# zlib's default: at 20,000 nodes 51x smaller in 0.24 s; level 9 is 20% smaller for 2.7x
# the CPU, level 1 twice the bytes for half of it (docs/design.md).
LEVEL = 6
WINDOW = 32 * 1024  # deflate's window: what a segment may refer back to
# A gzip header with no name and no time (equal content, equal header), OS unknown.
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
FINAL = b"\x03\x00"  # an empty final deflate block: the end of the stream

_POLY = 0xEDB88320  # CRC-32, bit-reflected


def _multmodp(a: int, b: int) -> int:
    """a times b modulo the CRC-32 polynomial (zlib's multmodp, reflected bit order)."""
    product, bit = 0, 1 << 31
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _x2n_table() -> list[int]:
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()  # x^(2^k) modulo the polynomial


def crc_shift(length: int) -> int:
    """x^(8 * length) modulo the polynomial: what moves a CRC past ``length`` bytes."""
    p, k = 1 << 31, 3
    while length:
        if length & 1:
            p = _multmodp(_X2N[k & 31], p)
        length >>= 1
        k += 1
    return p


def crc32_combine(crc1: int, crc2: int, shift2: int) -> int:
    """The CRC-32 of A + B from that of A, that of B and ``crc_shift(len(B))``."""
    return _multmodp(shift2, crc1) ^ crc2


@dataclass(eq=False, slots=True)
class _Segment:
    chunk: object  # the bytes it was compressed from, and those of the chunk before it (None
    before: object  # for the first): it is valid while both are still there, as these objects
    data: bytes
    crc: int
    shift: int  # crc_shift of the chunk's length


_Key = tuple[int, int, int, int]  # ids and lengths of a chunk and the chunk before it


def _source(chunk: bytes | memoryview | None) -> object:
    return chunk.obj if isinstance(chunk, memoryview) else chunk


def _key(chunk: bytes | memoryview, before: bytes | memoryview | None) -> _Key:
    return id(_source(chunk)), len(chunk), id(_source(before)), 0 if before is None else len(before)


def gzip_etag(plain_etag: str) -> str:
    """The gzip body's ETag: the plain one's, ``+gzip``, weak (equal content, not equal bytes)."""
    return f'W/{plain_etag[:-1]}+gzip"'


def compress(body: Body) -> Body:
    """``body`` gzipped in one piece (a shard body, rebuilt whole on every render anyway)."""
    return Body.of(gzip.compress(bytes(body), LEVEL, mtime=0), gzip_etag(body.etag))


class GzipBody:
    """The gzip of a set's full body, made from the segments of its chunks: ``render`` after each
    render of the set, ``of`` when a request asks."""

    def __init__(self) -> None:
        self._segments: dict[_Key, _Segment] = {}
        self._made: tuple[Body, Body] | None = None  # (plain, gzip) of this render

    def render(self, body: Body) -> None:
        """A new body was rendered: forget the gzip body, and the segments of chunks it no longer has."""
        self._made = None
        live = {id(_source(chunk)) for chunk in body.chunks}
        self._segments = {k: s for k, s in self._segments.items() if k[0] in live and (s.before is None or k[2] in live)}

    def of(self, plain: Body) -> Body:
        """The gzip of ``plain`` (the body last passed to ``render``), made once."""
        if self._made is not None and self._made[0] is plain:
            return self._made[1]
        kept: dict[_Key, _Segment] = {}
        data: list[bytes] = [HEADER]
        before: bytes | memoryview | None = None
        crc = 0
        for chunk in plain.chunks:
            key = _key(chunk, before)
            segment = self._segments.get(key)
            if segment is None or segment.chunk is not _source(chunk) or segment.before is not _source(before):
                segment = _compress(chunk, before)
            kept[key] = segment
            data.append(segment.data)
            crc = crc32_combine(crc, segment.crc, segment.shift)
            before = chunk
        self._segments = kept
        data += [FINAL, struct.pack("<II", crc, plain.length & 0xFFFFFFFF)]
        # Joined once here (~1/50 of the plain body): sent as a few large writes, not one per
        # segment (a few KB each, hundreds of them at 20,000 nodes).
        gz = Body.of(b"".join(data), gzip_etag(plain.etag))
        self._made = (plain, gz)
        return gz


def _compress(chunk: bytes | memoryview, before: bytes | memoryview | None) -> _Segment:
    if before is not None and len(before):
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=before[-WINDOW:])
    else:
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return _Segment(_source(chunk), _source(before), data, zlib.crc32(chunk), crc_shift(len(chunk)))
