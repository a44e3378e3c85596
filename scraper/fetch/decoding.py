"""Content-Encoding, undone by us, the same way whichever library carried the body.

requests and aiohttp can each decompress a body, but they disagree on the broken ones:
aiohttp fails on bytes after a gzip stream, which urllib3 and browsers ignore; neither
notices a gzip, deflate or br stream that stops before its end (a body cut short by the
server, sent with a Content-Length that matches); urllib3 knows "x-gzip", aiohttp does
not. So both read the body as it came and a decoder from here undoes the coding:

    gzip, x-gzip   members in a row are one body (RFC 1952); bytes after the last member
                   that do not start another are ignored, as browsers and urllib3 do
    deflate        the zlib format RFC 9110 names, or the raw deflate some servers send
    br             the brotli stream has a definite end, and bytes after it fail it
    identity       as it came

A compressed stream that the body ends before its end is `decode`: what came is not the
page, and a record must not say it is. A coding not above (zstd, a stack like "gzip, br")
is `decode` as well, at the body's first byte: compressed bytes are never taken for the
page. Decoded output comes in pieces of about `CHUNK` bytes however small the input, so
the size cap stops a bomb before it fills memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli  # type: ignore[import-untyped]  # brotli ships no type hints

from scraper.errors import ErrorKind, ResponseError

CHUNK = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate, br"  # sent with every request: what we can undo
_GZIP_MAGIC = b"\x1f\x8b"


class Decoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces `data` completes; raises `decode` for bytes that are not
        the coding."""

    def finish(self) -> None:
        """Raises `decode` when the body ended inside the compressed stream."""


def decoder_for(headers: dict[str, str]) -> Decoder:
    """The decoder for the body's Content-Encoding, from headers folded by fold_headers."""
    coding = headers.get("content-encoding", "").strip(" \t").lower()
    if coding in ("", "identity"):
        return _AsItCame()
    if coding in ("gzip", "x-gzip"):
        return _Inflate(coding, gzip=True)
    if coding == "deflate":
        return _Inflate(coding, gzip=False)
    if coding == "br":
        return _Brotli()
    return _Refused(coding)


def _cut_short(coding: str) -> ResponseError:
    return ResponseError(f"the body ends inside its {coding} stream", ErrorKind.DECODE)


def _not_the_coding(coding: str, error: Exception) -> ResponseError:
    return ResponseError(f"the body is not valid {coding}: {error}", ErrorKind.DECODE)


class _Refused:
    """A coding we cannot undo: `decode` at the first byte of body. An answer without
    one (a 204, a 304) is still its status."""

    def __init__(self, coding: str) -> None:
        self._coding = coding

    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            raise ResponseError(
                f"cannot decode Content-Encoding {self._coding[:80]!r}", ErrorKind.DECODE
            )
        yield from ()

    def finish(self) -> None:
        pass


class _AsItCame:
    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def finish(self) -> None:
        pass


class _Inflate:
    """gzip and deflate, with zlib. The format is chosen when the first two bytes are in
    (deflate's zlib header is two bytes), and a gzip member's end is only the body's end
    unless the two bytes after it are the gzip magic: so a short read never decides."""

    def __init__(self, coding: str, *, gzip: bool) -> None:
        self._coding = coding
        self._gzip = gzip
        self._stream: zlib._Decompress | None = None
        self._undecided = b""  # bytes held until two can tell what comes next
        self._over = False  # the body's stream has ended: the rest is ignored

    def feed(self, data: bytes) -> Iterator[bytes]:
        data = self._undecided + data
        self._undecided = b""
        while data and not self._over:
            stream = self._stream
            if stream is None or stream.eof:
                if len(data) < 2:
                    self._undecided = data
                    return
                following = self._next_stream(data)
                if following is None:
                    self._over = True
                    return
                stream = self._stream = following
            yield from self._inflate(stream, data)
            data = stream.unused_data if stream.eof else b""

    def finish(self) -> None:
        if self._undecided and self._stream is None:
            raise _cut_short(self._coding)  # a single byte
        if self._stream is not None and not self._stream.eof:
            raise _cut_short(self._coding)

    def _next_stream(self, data: bytes) -> zlib._Decompress | None:
        """The stream that starts at `data`; None when `data` is past the body's end."""
        if self._stream is None:
            wbits = 16 + zlib.MAX_WBITS if self._gzip else _deflate_wbits(data)
        elif self._gzip and data.startswith(_GZIP_MAGIC):
            wbits = 16 + zlib.MAX_WBITS  # another member
        else:
            return None
        return zlib.decompressobj(wbits)

    def _inflate(self, stream: zlib._Decompress, data: bytes) -> Iterator[bytes]:
        """What `data` decodes to, up to the stream's end, at most CHUNK bytes at a time:
        zlib keeps what it could not use yet in `unconsumed_tail`, and a full piece may
        leave output pending. Once the stream has ended, what follows it is in
        `unused_data`, and may be in `unconsumed_tail` as well (CPython leaves it there
        when the end comes in a call fed the tail): fed again, it would loop for ever."""
        while True:
            try:
                piece = stream.decompress(data, CHUNK)
            except zlib.error as error:
                raise _not_the_coding(self._coding, error) from None
            if piece:
                yield piece
            data = stream.unconsumed_tail
            if stream.eof or (not data and len(piece) < CHUNK):
                return


def _deflate_wbits(start: bytes) -> int:
    """zlib's format when `start` is a zlib header (RFC 1950: method 8, a multiple of 31),
    else raw deflate: what servers that misread RFC 2616 send, and browsers accept."""
    is_zlib = start[0] & 0x0F == 8 and int.from_bytes(start[:2], "big") % 31 == 0
    return zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS


class _Brotli:
    def __init__(self) -> None:
        self._stream = brotli.Decompressor()
        self._fed = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """brotli stops growing its output at the limit but may pass it by one block; what
        it holds back comes out of calls with no input, until one gives nothing."""
        if not data:
            return
        self._fed = True
        try:
            piece = self._stream.process(data, output_buffer_limit=CHUNK)
            while piece:
                yield piece
                piece = self._stream.process(b"", output_buffer_limit=CHUNK)
        except brotli.error as error:
            raise _not_the_coding("br", error) from None

    def finish(self) -> None:
        if self._fed and not self._stream.is_finished():
            raise _cut_short("br")
