"""The gzip bodies (sd/gzip_body.py): one gzip member that decodes to exactly the plain body after
any history of changes, made once per render, recompressing only the segments of changed blocks;
and Accept-Encoding negotiation."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sd import gzip_body
from sd.body import Body
from sd.config import default_config
from sd.gzip_body import LEVEL, GzipBody, crc32_combine, crc_shift, gzip_etag
from sd.http.negotiation import content_coding
from sd.kinds import nodes
from sd.targets import TargetSet
from sdtest.factories import make_node

KUBELET = default_config().targets["kubelet"]


def node(i: int, zone: str = "a", ready: str = "True"):
    return nodes.KIND.parse(make_node(f"n{i:04}", [f"2001:db8::{i:x}"], labels={"zone": zone, "rack": f"r{i % 7}"}, ready=ready))


def one_member(data: bytes) -> bytes:
    """Decode ``data`` as a single gzip member, as curl and Chromium do (they stop after the first)."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    plain = decoder.decompress(data) + decoder.flush()
    assert decoder.eof and decoder.unused_data == b"", "exactly one gzip member, nothing after it"
    return plain


@given(st.binary(max_size=3000), st.binary(max_size=70000))
def test_crc32_combine_is_zlibs(a, b):
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), crc_shift(len(b))) == zlib.crc32(a + b)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 399), st.sampled_from(["a", "b", "gone", "not_ready"])), min_size=1, max_size=30),
       st.integers(1, 5))
def test_gzip_body_decodes_to_exactly_the_plain_body_after_any_changes(changes, per_render):
    ts = TargetSet(KUBELET)
    ts.replace([node(i) for i in range(0, 400, 2)])
    ts.render()
    assert one_member(bytes(ts.gzipped())) == ts.body
    for start in range(0, len(changes), per_render):
        for i, what in changes[start : start + per_render]:
            if what == "gone":
                ts.delete(f"n{i:04}")
            else:
                ts.upsert(node(i, zone=what, ready="False" if what == "not_ready" else "True"))
        ts.render()
        gz = ts.gzipped()
        data = bytes(gz)
        assert one_member(data) == gzip.decompress(data) == ts.body
        assert gz.length == len(data) and gz.etag == gzip_etag(ts.etag)


def test_a_change_recompresses_only_its_block_and_the_one_after_it(monkeypatch):
    ts = TargetSet(KUBELET)
    ts.replace([node(i) for i in range(1000)])
    ts.render()
    compressed: list[int] = []
    compress = gzip_body._compress
    monkeypatch.setattr(gzip_body, "_compress", lambda chunk, before: compressed.append(len(chunk)) or compress(chunk, before))
    ts.gzipped()
    assert len(compressed) == len(ts.current.chunks) > 10, "the first: every segment"
    compressed.clear()
    ts.upsert(node(500, zone="b"))
    ts.render()
    after = ts.gzipped()
    assert 1 <= len(compressed) <= 2, "the changed block's segment, and the next one (primed with it)"
    assert one_member(bytes(after)) == ts.body


def test_made_once_per_render_and_only_when_asked():
    ts = TargetSet(KUBELET)
    ts.replace([node(i) for i in range(50)])
    ts.render()
    assert ts.gzipped() is ts.gzipped()
    first = ts.gzipped()
    ts.upsert(node(3, zone="b"))
    assert ts.gzipped() is first, "a change shows after the next render, never before"
    ts.render()
    assert ts.gzipped() is not first and one_member(bytes(ts.gzipped())) == ts.body


def test_segments_compress_nearly_as_well_as_the_whole_body():
    ts = TargetSet(KUBELET)
    ts.replace([node(i) for i in range(2000)])
    ts.render()
    whole = len(gzip.compress(ts.body, LEVEL))
    assert len(bytes(ts.gzipped())) <= 1.05 * whole


def test_shard_gzip_is_the_shard_body_compressed_once_per_render():
    ts = TargetSet(KUBELET)
    ts.replace([node(i) for i in range(100)])
    ts.render()
    for i in range(3):
        gz = ts.gzipped((3, i))
        assert one_member(bytes(gz)) == bytes(ts.shard(3, i)) and gz.etag == gzip_etag(ts.shard(3, i).etag)
        assert ts.gzipped((3, i)) is gz
    ts.delete("n0001")
    ts.render()
    assert b"2001:db8::1]" not in one_member(bytes(ts.gzipped((3, 0)))) + one_member(bytes(ts.gzipped((3, 1))))


def test_an_empty_body_and_one_chunk():
    for plain in (b"[]", b'[{"targets":["192.0.2.1:9"],"labels":{}}]'):
        body = Body.of(plain, '"0"')
        gz = GzipBody()
        gz.render(body)
        assert one_member(bytes(gz.of(body))) == plain


def test_gzip_etag_is_weak_and_differs_from_the_plain_one():
    assert gzip_etag('"00ff-4.1"') == 'W/"00ff-4.1+gzip"'


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        (None, "identity"),  # Prometheus: no header, the plain bytes
        ("", "identity"),
        ("gzip", "gzip"),
        ("gzip, deflate, br, zstd", "gzip"),  # Chromium, httpx
        ("deflate, gzip;q=1.0, *;q=0.5", "gzip"),  # curl --compressed
        ("GZIP", "gzip"),
        ("x-gzip", "gzip"),
        ("gzip;q=0", "identity"),
        ("gzip;q=0, identity;q=0", None),
        ("gzip;q=0.5, identity", "identity"),
        ("gzip;q=1, identity;q=1", "gzip"),
        ("identity", "identity"),
        ("br", "identity"),
        ("*", "gzip"),
        ("*;q=0", None),
        ("*;q=0, identity", "identity"),
        ("*;q=0.3, identity;q=0.5", "identity"),
        ("gzip;q=nope", "identity"),
        ("identity;q=0", None),
        ("gzip ; q=0.001", "gzip"),
    ],
)
def test_accept_encoding_picks_gzip_or_identity(header, coding):
    assert content_coding(header) == coding
