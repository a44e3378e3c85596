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
    /flaky/{key}?fail=K&status=S&retry_after=R
                            the first K (default 1) requests for `key` answer status S
                            (default 503, 400-599), with `Retry-After: R` when R (seconds)
                            is given; later ones answer 200 with a small HTML page. The
                            counts are kept per app.
    /calendar/{n}           a crawler trap: day n links to day n+1 and day n-1, forever
    /encoding/{name}        a page whose <title> is ENCODING_TITLES[name], encoded as:
                              utf-8      charset in the Content-Type header only
                              utf-8-bom  UTF-8 with a byte order mark, declared nowhere else
                              cp1252     only <meta charset="windows-1252">
                              shift_jis  charset=Shift_JIS in the Content-Type header only
                              gbk        only <meta http-equiv="Content-Type" ... charset=gbk>
"""

from __future__ import annotations

import asyncio
import functools
import html
import zlib
from collections import Counter
from typing import NamedTuple, TypeVar

from aiohttp import web

ENCODING_TITLES = {
    "utf-8": "Café \u2013 日本語",
    "utf-8-bom": "Café \u2013 日本語",
    "cp1252": "Café \u2013 naïve",  # an en dash: where cp1252 and latin-1 differ
    "shift_jis": "日本語のページ",
    "gbk": "中文网页",
}
STALL_SECONDS = 3600.0

_FLAKY = web.AppKey("flaky", Counter[str])
_Number = TypeVar("_Number", int, float)
_routes = web.RouteTableDef()


class _Encoding(NamedTuple):
    codec: str
    content_type: str
    meta: str


_ENCODINGS = {
    "utf-8": _Encoding("utf-8", "text/html; charset=utf-8", ""),
    "utf-8-bom": _Encoding("utf-8-sig", "text/html", ""),
    "cp1252": _Encoding("cp1252", "text/html", '<meta charset="windows-1252">'),
    "shift_jis": _Encoding("shift_jis", "text/html; charset=Shift_JIS", ""),
    "gbk": _Encoding(
        "gbk", "text/html", '<meta http-equiv="Content-Type" content="text/html; charset=gbk">'
    ),
}


def add_routes(app: web.Application) -> None:
    """Add the misbehaving routes, and the per-app state that /flaky keeps, to `app`."""
    app[_FLAKY] = Counter()
    app.add_routes(_routes)


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
    title = ENCODING_TITLES[name]
    page = (
        f"<!DOCTYPE html>\n<html><head>{encoding.meta}<title>{title}</title></head>"
        f"<body><p>{title}</p></body></html>\n"
    )
    return web.Response(
        body=page.encode(encoding.codec), headers={"Content-Type": encoding.content_type}
    )


@_routes.get("/calendar/{day:[0-9]+}")
async def _calendar(request: web.Request) -> web.Response:
    day = int(request.match_info["day"])
    links = f'<a href="/calendar/{day + 1}">next</a> <a href="/calendar/{max(day - 1, 0)}">prev</a>'
    body = (
        f"<!DOCTYPE html>\n<html><head><title>Day {day}</title></head><body>{links}</body></html>"
    )
    return web.Response(text=body, content_type="text/html")
