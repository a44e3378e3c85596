"""Routes that misbehave on purpose, so the fetcher's error handling meets real HTTP.

No page of the site links here; tests request these URLs directly. A bad query parameter
answers 400 with a message naming it. None of these routes waits for `SiteSpec.latency_ms`.

    /status/{code}          answers `code` (200-599) with a short text body (none for 204, 304)
    /redirect/{n}           302 to /redirect/{n-1}; /redirect/1 redirects to /: n hops in all
    /redirect-loop          302 to /redirect-loop?a, which redirects to ?b, which redirects to ?a
    /slow?seconds=S         sleeps S seconds (default 1), then a small HTML page
    /trickle?bytes=N&interval=S
                            headers at once (Content-Length N, default 16), then N times:
                            sleep S seconds (default 0.25), send one byte b"."
    /stall                  reads the request, then sends nothing for an hour; server
                            shutdown and the client disconnecting cancel it
    /gzip-bomb?mb=N         a small body with Content-Encoding: gzip that inflates to N MiB
                            (default 10, at most 1024) of zero bytes, Content-Type text/html
    /flaky/{key}?fail=K&status=S&retry_after=R&retry_after_date=D
                            the first K (default 1) requests for `key` answer status S
                            (default 503, 400-599), with `Retry-After: R` when R (seconds)
                            is given, or `Retry-After` as the HTTP date D seconds from now
                            when D is given; later ones answer 200 with a small HTML page.
                            The counts are kept per app.
    /reset?bytes=N          headers (Content-Length N, default 4096), the first half of the
                            body, then a TCP reset: the connection breaks off mid-body
    /brotli-bomb            14 bytes with Content-Encoding: br that inflate to 10 MiB of
                            zero bytes, Content-Type text/html
    /escape/                an HTML page whose links try to leave a download directory
                            (`..` segments, %2F, backslashes, NUL, over-long names, ...)
    /escape/{anything}      every other path under /escape/ answers 200 with a small page
    /calendar/{n}           a crawler trap: day n links to day n+1 and day n-1, forever
    /encoding/{name}        a page whose <title> is ENCODING_TITLES[name], encoded as:
                              utf-8      charset in the Content-Type header only
                              utf-8-bom  UTF-8 with a byte order mark, declared nowhere else
                              cp1252     only <meta charset="windows-1252">
                              shift_jis  charset=Shift_JIS in the Content-Type header only
                              gbk        only <meta http-equiv="Content-Type" ... charset=gbk>
                              utf-8-bare UTF-8, declared nowhere (no BOM, header or meta)
                              latin-1-label
                                         windows-1252 bytes, Content-Type charset=ISO-8859-1:
                                         browsers read that label as windows-1252
                              utf-8-invalid
                                         charset=utf-8 in the header, but the title holds
                                         bytes that are not UTF-8: ENCODING_TITLES has the
                                         title a reader sees, with U+FFFD for each bad byte

Every request is logged by the app, in arrival order: `GET /log` answers the log as JSON, a
list of {"path", "host", "start", "end", "wall", "in_flight"}: the path and query, the Host
header, the server's `time.monotonic()` when the request arrived and when its handler
returned (null while it runs), `time.time()` at arrival, and how many requests were in the
handlers at that moment, this one included. `GET /log?path=P` gives only the entries for path
and query P. The log keeps the last `LOG_SIZE` requests and leaves out its own.

`POST /robots-status?status=S` makes /robots.txt answer S (200-599, a short text body) from
then on, for a test of a host whose robots.txt fails; `status=0` restores the real one.
Crawlers only GET, so no crawl can flip it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import functools
import html
import socket
import struct
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

ENCODING_TITLES = {
    "utf-8": "Café \u2013 日本語",
    "utf-8-bom": "Café \u2013 日本語",
    "cp1252": "Café \u2013 naïve",  # an en dash: where cp1252 and latin-1 differ
    "shift_jis": "日本語のページ",
    "gbk": "中文网页",
    "utf-8-bare": "Café \u2013 日本語",
    "latin-1-label": "Café \u2013 naïve",
    "utf-8-invalid": "Caf\ufffd \ufffd ok",
}
STALL_SECONDS = 3600.0
LOG_PATH = "/log"
LOG_SIZE = 10_000  # requests the log keeps; older ones are dropped
ROBOTS_PATH = "/robots.txt"
ESCAPE_HREFS = (
    "../../../escaped-dots",
    "..%2F..%2F..%2Fescaped-slash",
    "%2e%2e/%2e%2e/%2e%2e/escaped-encoded-dots",
    "%2E%2E%2F%2E%2E%2Fescaped-encoded-both",
    "..\\..\\..\\escaped-backslash",
    "..%5C..%5C..%5Cescaped-encoded-backslash",
    "%2Fetc%2Fpasswd",
    "./C:%5CWindows%5Cwin.ini",
    "nul%00byte",
    "%252E%252E%252Fdouble-encoded",
    "~%2F.ssh%2Fauthorized_keys",
    ".hidden",
    "...",
    "CON",
    "_index.html",
    "_tmp-1.part",
    "clash",
    "clash/inside",
    "x" * 300,
    "deep/" * 80 + "end",
)  # the links of /escape/, relative to it
_BROTLI_ZEROS = bytes.fromhex("9fffff9ff82700e2b14020f7fe13")
# ^ 10 MiB of zero bytes, brotli quality 11, window 24 (made and checked with node's zlib)

_FLAKY = web.AppKey("flaky", Counter[str])
_Number = TypeVar("_Number", int, float)
_routes = web.RouteTableDef()


class _Encoding(NamedTuple):
    codec: str
    content_type: str
    meta: str
    raw_title: str | None = None  # the title to send when it is not ENCODING_TITLES[name]


@dataclass(slots=True)
class _Hit:
    """One entry of the request log; `end` is set when the handler returns."""

    path: str
    host: str
    start: float
    wall: float
    in_flight: int
    end: float | None = None


@dataclass(slots=True)
class _Server:
    """Per-app state: the request log, the requests in the handlers, the robots override."""

    log: deque[_Hit] = field(default_factory=lambda: deque(maxlen=LOG_SIZE))
    in_flight: int = 0
    robots_status: int = 0  # 0: /robots.txt answers as usual


_SERVER = web.AppKey("server", _Server)


_ENCODINGS = {
    "utf-8": _Encoding("utf-8", "text/html; charset=utf-8", ""),
    "utf-8-bom": _Encoding("utf-8-sig", "text/html", ""),
    "cp1252": _Encoding("cp1252", "text/html", '<meta charset="windows-1252">'),
    "shift_jis": _Encoding("shift_jis", "text/html; charset=Shift_JIS", ""),
    "gbk": _Encoding(
        "gbk", "text/html", '<meta http-equiv="Content-Type" content="text/html; charset=gbk">'
    ),
    "utf-8-bare": _Encoding("utf-8", "text/html", ""),
    "latin-1-label": _Encoding("cp1252", "text/html; charset=ISO-8859-1", ""),
    # Lone surrogates, sent with surrogateescape, become the raw bytes 0xE9 and 0xFF.
    "utf-8-invalid": _Encoding("utf-8", "text/html; charset=utf-8", "", "Caf\udce9 \udcff ok"),
}


def add_routes(app: web.Application) -> None:
    """Add the misbehaving routes, the request log and the per-app state to `app`."""
    app[_FLAKY] = Counter()
    app[_SERVER] = _Server()
    app.middlewares.append(_log_requests)
    app.add_routes(_routes)


@web.middleware
async def _log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log the request, count it in flight, and apply the robots.txt override."""
    server = request.app[_SERVER]
    if request.path == LOG_PATH:
        return await handler(request)
    server.in_flight += 1
    hit = _Hit(request.path_qs, request.host, time.monotonic(), time.time(), server.in_flight)
    server.log.append(hit)
    try:
        if request.path == ROBOTS_PATH and server.robots_status:
            status = server.robots_status
            return web.Response(status=status, text=f"robots.txt: status {status}\n")
        return await handler(request)
    finally:
        server.in_flight -= 1
        hit.end = time.monotonic()


@_routes.get(LOG_PATH)
async def _log(request: web.Request) -> web.Response:
    path = request.query.get("path")
    hits = request.app[_SERVER].log
    return web.json_response(
        [dataclasses.asdict(hit) for hit in hits if path is None or hit.path == path]
    )


@_routes.post("/robots-status")
async def _robots_status(request: web.Request) -> web.Response:
    status = _query(request, "status", 0, 0, 599)
    if 0 < status < 200:
        raise web.HTTPBadRequest(text="status must be 0 or between 200 and 599\n")
    request.app[_SERVER].robots_status = status
    return web.Response(text=f"robots.txt answers {status or 'as usual'}\n")


def _small_page(title: str) -> web.Response:
    text = html.escape(title)
    body = f'<!DOCTYPE html>\n<html lang="en"><head><title>{text}</title></head>'
    return web.Response(text=f"{body}<body><p>{text}</p></body></html>\n", content_type="text/html")


def _query(
    request: web.Request, name: str, default: _Number, low: _Number, high: _Number
) -> _Number:
    """The query parameter `name` as a number in [low, high]; 400 Bad Request otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = type(default)(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a number\n") from None
    if not low <= value <= high:  # also refuses nan
        raise web.HTTPBadRequest(text=f"{name} must be between {low} and {high}\n")
    return value


@_routes.get("/status/{code:[0-9]+}")
async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text="code must be between 200 and 599\n")
    text = None if code in (204, 304) else f"status {code}\n"
    return web.Response(status=code, text=text)


@_routes.get("/redirect/{hops:[1-9][0-9]*}")
async def _redirect(request: web.Request) -> web.Response:
    hops = int(request.match_info["hops"])
    raise web.HTTPFound("/" if hops == 1 else f"/redirect/{hops - 1}")


@_routes.get("/redirect-loop")
async def _redirect_loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/redirect-loop?b" if request.query_string == "a" else "/redirect-loop?a")


@_routes.get("/slow")
async def _slow(request: web.Request) -> web.Response:
    seconds = _query(request, "seconds", 1.0, 0.0, STALL_SECONDS)
    await asyncio.sleep(seconds)
    return _small_page(f"Slow: {seconds} s")


@_routes.get("/trickle")
async def _trickle(request: web.Request) -> web.StreamResponse:
    count = _query(request, "bytes", 16, 0, 1 << 20)
    interval = _query(request, "interval", 0.25, 0.0, 60.0)
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.content_length = count
    await response.prepare(request)
    for _ in range(count):
        await asyncio.sleep(interval)
        await response.write(b".")
    await response.write_eof()
    return response


@_routes.get("/stall")
async def _stall(request: web.Request) -> web.Response:
    await asyncio.sleep(STALL_SECONDS)
    return web.Response(text="stalled\n")


@_routes.get("/gzip-bomb")
async def _gzip_bomb(request: web.Request) -> web.Response:
    body = _gzipped_zeros(_query(request, "mb", 10, 1, 1024))
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/html"}
    return web.Response(body=body, headers=headers)


@functools.lru_cache(maxsize=4)
def _gzipped_zeros(mebibytes: int) -> bytes:
    """N MiB of zeros, gzip-compressed about a thousandfold; built in 1 MiB steps."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(mebibytes)]
    return b"".join([*parts, compressor.flush()])


@_routes.get("/flaky/{key}")
async def _flaky(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    failures = _query(request, "fail", 1, 0, 1_000_000)
    status = _query(request, "status", 503, 400, 599)
    headers = {}
    if "retry_after" in request.query:
        headers["Retry-After"] = str(_query(request, "retry_after", 0, 0, 86_400))
    elif "retry_after_date" in request.query:
        ahead = _query(request, "retry_after_date", 0, 0, 86_400)
        headers["Retry-After"] = email.utils.formatdate(time.time() + ahead, usegmt=True)
    counts = request.app[_FLAKY]
    counts[key] += 1
    if counts[key] > failures:
        return _small_page(f"Flaky {key}: ok")
    return web.Response(
        status=status, text=f"flaky {key}: failure {counts[key]}\n", headers=headers
    )


@_routes.get("/encoding/{name}")
async def _encoding(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _ENCODINGS:
        raise web.HTTPNotFound()
    encoding = _ENCODINGS[name]
    title = encoding.raw_title or ENCODING_TITLES[name]
    page = (
        f"<!DOCTYPE html>\n<html><head>{encoding.meta}<title>{title}</title></head>"
        f"<body><p>{title}</p></body></html>\n"
    )
    body = page.encode(encoding.codec, errors="surrogateescape")
    return web.Response(body=body, headers={"Content-Type": encoding.content_type})


@_routes.get("/calendar/{day:[0-9]+}")
async def _calendar(request: web.Request) -> web.Response:
    day = int(request.match_info["day"])
    links = f'<a href="/calendar/{day + 1}">next</a> <a href="/calendar/{max(day - 1, 0)}">prev</a>'
    body = (
        f"<!DOCTYPE html>\n<html><head><title>Day {day}</title></head><body>{links}</body></html>"
    )
    return web.Response(text=body, content_type="text/html")


@_routes.get("/reset")
async def _reset(request: web.Request) -> web.StreamResponse:
    size = _query(request, "bytes", 4096, 2, 1 << 20)
    response = web.StreamResponse(headers={"Content-Type": "text/html"})
    response.content_length = size
    await response.prepare(request)
    await response.write(b"x" * (size // 2))
    await asyncio.sleep(0.05)  # the client has read the headers and waits for the rest
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()  # with SO_LINGER 0, the close sends a TCP reset
    return response


@_routes.get("/brotli-bomb")
async def _brotli_bomb(request: web.Request) -> web.Response:
    headers = {"Content-Encoding": "br", "Content-Type": "text/html"}
    return web.Response(body=_BROTLI_ZEROS, headers=headers)


@_routes.get("/escape/{tail:.*}")
async def _escape(request: web.Request) -> web.Response:
    if request.match_info["tail"]:
        return _small_page(f"Escape: {request.match_info['tail']}")
    links = "".join(
        f'<a href="{html.escape(href)}">{html.escape(href)}</a>\n' for href in ESCAPE_HREFS
    )
    body = f"<!DOCTYPE html>\n<html><head><title>Escape</title></head><body>{links}</body></html>"
    return web.Response(text=body, content_type="text/html")
