"""Content-Encoding decoders: any split of the input gives the same body, bombs come out in
bounded pieces, and a stream cut short or not the coding it claims is `decode`.

Over HTTP, every strategy's use of them is in test_fetch_strategies.py.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Iterable

import brotli  # type: ignore[import-untyped]
import pytest

from scraper.errors import ErrorKind, FetchError
from scraper.fetch.decoding import CHUNK, decoder_for

PAGE = b"<html><title>Coded</title><p>" + b"the same words again and again " * 400 + b"</html>"


def deflate_raw(data: bytes) -> bytes:
    squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return squeeze.compress(data) + squeeze.flush()


CODED = {
    "gzip": gzip.compress(PAGE),
    "x-gzip": gzip.compress(PAGE),
    "deflate": zlib.compress(PAGE),  # the zlib format, as RFC 9110 says
    "deflate-raw": deflate_raw(PAGE),  # what some servers send
    "br": brotli.compress(PAGE),
    "identity": PAGE,
}


def header(name: str) -> dict[str, str]:
    return {"content-encoding": name.removesuffix("-raw")}


def decode(coding: str, chunks: Iterable[bytes]) -> bytes:
    decoder = decoder_for(header(coding))
    pieces = [piece for chunk in chunks for piece in decoder.feed(chunk)]
    decoder.finish()
    return b"".join(pieces)


def decode_error(coding: str, chunks: Iterable[bytes]) -> FetchError:
    with pytest.raises(FetchError) as caught:
        decode(coding, chunks)
    assert caught.value.kind is ErrorKind.DECODE
    return caught.value


@pytest.mark.parametrize("coding", CODED)
def test_a_body_decodes_the_same_whole_or_a_byte_at_a_time(coding: str) -> None:
    coded = CODED[coding]
    assert decode(coding, [coded]) == PAGE
    assert decode(coding, [coded[i : i + 1] for i in range(len(coded))]) == PAGE


@pytest.mark.parametrize("coding", CODED)
def test_no_bytes_at_all_is_an_empty_body(coding: str) -> None:
    assert decode(coding, [b""]) == b""


@pytest.mark.parametrize("coding", [name for name in CODED if name != "identity"])
def test_a_stream_cut_short_is_decode(coding: str) -> None:
    coded = CODED[coding]
    for cut in (1, len(coded) // 2, len(coded) - 1):
        error = decode_error(coding, [coded[:cut]])
        assert "ends inside" in error.message or "not valid" in error.message


@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate-raw"])
def test_bytes_after_a_zlib_stream_are_ignored(coding: str) -> None:
    # as browsers and urllib3 do: a newline after the stream is the common case
    for tail in (b"\n", b"\x1f", b"garbage after the end"):
        assert decode(coding, [CODED[coding] + tail]) == PAGE
        assert decode(coding, [CODED[coding], tail]) == PAGE


@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate-raw"])
@pytest.mark.timeout(10)
def test_bytes_after_a_long_stream_in_the_same_chunk_are_ignored(coding: str) -> None:
    """The stream ends in a call fed zlib's unconsumed tail (it decodes to several
    CHUNKs): what follows is then in the tail as well as after the stream."""
    long_page = PAGE * 20  # ≈ 250 KB
    squeeze = {"gzip": gzip.compress, "deflate": zlib.compress, "deflate-raw": deflate_raw}
    assert decode(coding, [squeeze[coding](long_page) + b"\n"]) == long_page


@pytest.mark.timeout(10)
def test_long_gzip_members_in_one_chunk_are_one_body() -> None:
    long_page = PAGE * 20
    assert decode("gzip", [gzip.compress(long_page) * 2]) == long_page * 2


def test_gzip_members_in_a_row_are_one_body() -> None:
    members = gzip.compress(b"first, ") + gzip.compress(b"second")
    assert decode("gzip", [members]) == b"first, second"
    assert decode("gzip", [members[i : i + 1] for i in range(len(members))]) == b"first, second"


def test_a_second_gzip_member_cut_short_is_decode() -> None:
    decode_error("gzip", [CODED["gzip"] + gzip.compress(b"second")[:-4]])


def test_bytes_after_a_brotli_stream_are_decode() -> None:
    # brotli's stream has a definite end, and its decoder fails what follows it
    decode_error("br", [CODED["br"] + b"\n"])


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_bytes_that_are_not_the_coding_are_decode(coding: str) -> None:
    assert "not valid" in decode_error(coding, [b"this is not compressed at all" * 4]).message


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_a_bomb_comes_out_in_bounded_pieces(coding: str) -> None:
    """Each piece is produced only when asked for, and none is much above CHUNK: the size
    cap can stop a bomb before it is inflated whole."""
    zeros = b"\0" * (64 * CHUNK)
    coded = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[coding](zeros)
    pieces = decoder_for(header(coding)).feed(coded)
    sizes = [len(piece) for piece in itertools.islice(pieces, 8)]
    assert len(sizes) == 8
    assert max(sizes) <= 2 * CHUNK  # brotli may pass its output limit by one block
    assert decode(coding, [coded]) == zeros


@pytest.mark.parametrize(
    ("value", "coding"), [("GZIP", "gzip"), (" gzip\t", "gzip"), ("Br", "br"), ("X-Gzip", "x-gzip")]
)
def test_coding_names_are_case_and_space_insensitive(value: str, coding: str) -> None:
    assert b"".join(decoder_for({"content-encoding": value}).feed(CODED[coding])) == PAGE


@pytest.mark.parametrize("value", ["zstd", "compress", "gzip, br", "gzip, gzip", "x-unknown"])
def test_a_coding_we_cannot_undo_is_decode_at_the_first_byte(value: str) -> None:
    assert decode(value, [b""]) == b""  # no body (a 204, a 304): nothing to undo
    error = decode_error(value, [b"", b"x"])
    assert value in error.message
