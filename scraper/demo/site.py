"""The demo site's model and its aiohttp application.

The site is a pure function of a `SiteSpec`: the same spec always serves the same bytes, so a
test can compute what a crawl must find (`page_paths`, `file_paths`, `body_for`) without HTTP.

    /                   page 0, the root; `spec.pages` HTML pages in all, counting this one
    /page/{i}           page i, for 1 <= i < spec.pages
    /files/{k}.bin      binary file k, for 0 <= k < spec.files (application/octet-stream)
    /robots.txt         allows everything except /private/
    /private/secret     an HTML page that exists but robots.txt disallows; linked from / only

Page i links to its children i*fanout+1 .. i*fanout+fanout (those that exist), so every page
is reachable from the root, plus a link home and `_CROSS_LINKS` seeded links to any page. Each
link is spelled one of several equivalent ways (absolute path, relative, with `./` or `../`,
with a `#fragment`, or as an absolute URL) so that canonicalization decides what is a
duplicate. Absolute URLs are built from the request's Host, so `body_for` needs the root URL
the client used. The root also links to every file, to /private/secret, to an offsite URL and
to a mailto: address. Pages are padded with seeded text to about `page_kb` KiB.

Pages are rendered on request and a bounded cache keeps the recent ones: a 100,000-page site
starts at once and holds only what was recently served. `prerender` (`demo-site
--prerender`, which `scrape bench` uses) renders up to 256 MB of them first instead, and
serves those from memory. Every page, file, robots.txt and the
private page answer after `spec.latency_ms`. The app counts requests per path and query
(`HITS`) so a test can check from the server's side what a crawl fetched.

The routes that misbehave on purpose live in `scraper.demo.hostile`; no page links to them.
"""

from __future__ import annotations

import asyncio
import functools
import html
import math
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler

from scraper.demo import hostile
from scraper.errors import ConfigError

ROBOTS_PATH = "/robots.txt"
PRIVATE_PATH = "/private/secret"
OFFSITE_URL = "http://offsite.invalid/"
MAILTO_URL = "mailto:webmaster@offsite.invalid"
ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\n"

_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_BINARY = "application/octet-stream"
_PAGE_PATH = re.compile(r"/page/([1-9][0-9]*)")
_FILE_PATH = re.compile(r"/files/(0|[1-9][0-9]*)\.bin")
_CROSS_LINKS = 2
_WORDS_PER_PARAGRAPH = 60
_STOCK_PARAGRAPHS = 1024  # distinct blocks a site's pages are padded with
_INLINE_TAGS = ("strong", "em", "code", "span")
_INLINE_EVERY = 5  # one word in this many is wrapped in an inline element
_PAGE_CACHE_SIZE = 256  # rendered pages kept; enough for a test that reads, then fetches
PRERENDER_BUDGET = 256 * 1024 * 1024  # bytes of pages `prerender` renders up front, at most
_VOCABULARY = (
    "crawler frontier fetch parse queue thread process socket header body link anchor page "
    "title robots delay retry backoff canonical fragment query host port scheme archive "
    "record sink stats lock cache budget latency throughput café naïve über façade résumé "
    "smörgåsbord"
)  # the padding's words; some non-ASCII, to exercise decoding
_WORDS = _VOCABULARY.split()
_PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<meta name="description" content="{description}">
</head>
<body>
<a href="#content">Skip to content</a>
<nav>
{links}
</nav>
<main id="content">
<h1>{title}</h1>
{paragraphs}
</main>
</body>
</html>
"""
_PRIVATE_HTML = b"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Private</title></head>
<body><p>robots.txt disallows this page: a polite crawler never fetches it.</p></body>
</html>
"""


# A page is rendered whole for each answer, and the server does nothing else meanwhile: a
# page of gigabytes, or a latency of years, left every request unanswered and the server
# deaf to SIGTERM.
MAX_PAGE_KB = 64 * 1024
MAX_LATENCY_MS = 600_000


@dataclass(frozen=True)
class SiteSpec:
    """The shape of a demo site. Equal specs serve byte-identical sites."""

    pages: int = 100
    fanout: int = 5  # links from each page to its child pages
    page_kb: int = 4  # approximate size of a page, reached with padding text
    latency_ms: float = 0  # delay before each page or file response
    files: int = 3  # binary files, linked from the root
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("pages", self.pages, minimum=1)
        _check_int("fanout", self.fanout, minimum=1)
        _check_int("page_kb", self.page_kb, minimum=0, maximum=MAX_PAGE_KB)
        _check_int("files", self.files, minimum=0)
        _check_int("seed", self.seed, minimum=None)
        latency = self.latency_ms
        if isinstance(latency, bool) or not isinstance(latency, (int, float)):
            raise ConfigError(f"SiteSpec.latency_ms must be a number, got {latency!r}")
        if not (math.isfinite(latency) and 0 <= latency <= MAX_LATENCY_MS):
            raise ConfigError(
                f"SiteSpec.latency_ms must be from 0 to {MAX_LATENCY_MS}, got {latency!r}"
            )


def _check_int(
    field: str, value: object, *, minimum: int | None, maximum: int | None = None
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"SiteSpec.{field} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"SiteSpec.{field} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"SiteSpec.{field} must be at most {maximum}, got {value!r}")


class HitCounter:
    """Requests per path and query. The app's loop counts; tests read from their own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, path_qs: str) -> None:
        with self._lock:
            self._counts[path_qs] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


SPEC = web.AppKey("spec", SiteSpec)
HITS = web.AppKey("hits", HitCounter)
# Pages rendered before serving, by (path, root URL): see `prerender`.
PRERENDERED = web.AppKey("prerendered", dict[tuple[str, str], bytes])


# The model: which paths exist and what they serve.


def page_paths(spec: SiteSpec) -> list[str]:
    """Every HTML page of the site's link graph: "/", then "/page/1" onwards."""
    return [_page_path(index) for index in range(spec.pages)]


def file_paths(spec: SiteSpec) -> list[str]:
    """Every binary file, all linked from the root."""
    return [f"/files/{number}.bin" for number in range(spec.files)]


def body_for(spec: SiteSpec, path: str, root_url: str) -> bytes | None:
    """The exact bytes served at `path`, or None where the site answers 404.

    `root_url` is the site's root as the client addressed it ("http://127.0.0.1:41234/"):
    pages spell some links as absolute URLs built from it. Misbehaving routes are not covered.
    """
    resource = _resource(spec, path, root_url)
    return None if resource is None else resource.body


class _Resource(NamedTuple):
    body: bytes
    content_type: str


def _resource(spec: SiteSpec, path: str, root_url: str) -> _Resource | None:
    if path == ROBOTS_PATH:
        return _Resource(ROBOTS_TXT, _TEXT)
    if path == PRIVATE_PATH:
        return _Resource(_PRIVATE_HTML, _HTML)
    index = 0 if path == "/" else _number_in(_PAGE_PATH, path, spec.pages)
    if index is not None:
        return _Resource(_page_body(spec, index, root_url), _HTML)
    number = _number_in(_FILE_PATH, path, spec.files)
    if number is not None:
        return _Resource(_file_body(spec, number), _BINARY)
    return None


def _number_in(pattern: re.Pattern[str], path: str, count: int) -> int | None:
    """The number in `path` if it matches `pattern` and names one of `count` items."""
    match = pattern.fullmatch(path)
    return int(match[1]) if match and int(match[1]) < count else None


def _page_path(index: int) -> str:
    return f"/page/{index}" if index else "/"


def prerender(app: web.Application, root_url: str, budget: int = PRERENDER_BUDGET) -> int:
    """Render the site's pages for clients addressing it as `root_url` now, up to `budget`
    bytes of them, and serve those from memory; return how many.

    For `scrape bench`: rendering a page costs the server CPU (≈ 0.9 ms for 128 KB, 0.1 ms
    for 4 KB), which it would take from the crawler it is measuring on the same cores.
    """
    spec, rendered, size = app[SPEC], app[PRERENDERED], 0
    for index in range(spec.pages):
        body = _render_page(spec, index, root_url)
        size += len(body)
        if size > budget:
            break
        rendered[_page_path(index), root_url] = body
    return len(rendered)


def _render_page(spec: SiteSpec, index: int, root_url: str) -> bytes:
    # A string seed is hashed with SHA-512, so it is stable across runs and processes.
    rng = random.Random(f"{spec.seed}/page/{index}")
    links = "\n".join(
        f'<a href="{html.escape(href)}">{html.escape(label)}</a>'
        for href, label in _page_links(spec, index, root_url, rng)
    )
    render = functools.partial(
        _PAGE_TEMPLATE.format,
        title=f"Page {index}",
        description=f"Page {index} of a deterministic {spec.pages}-page demo site.",
        links=links,
    )
    padding = _paragraphs(rng, spec.seed, spec.page_kb * 1024 - len(render(paragraphs="")))
    return render(paragraphs=padding).encode()


_page_body = functools.lru_cache(maxsize=_PAGE_CACHE_SIZE)(_render_page)


def _page_links(
    spec: SiteSpec, index: int, root_url: str, rng: random.Random
) -> list[tuple[str, str]]:
    first_child = index * spec.fanout + 1
    children = range(first_child, min(first_child + spec.fanout, spec.pages))
    crosses = [rng.randrange(spec.pages) for _ in range(_CROSS_LINKS)]
    targets = [0, *children, *crosses]
    links = [(_href(index, target, root_url, rng), f"Page {target}") for target in targets]
    return links + _root_extras(spec) if index == 0 else links


def _href(source: int, target: int, root_url: str, rng: random.Random) -> str:
    """One of the equivalent spellings of a link from page `source` to page `target`."""
    path = _page_path(target)
    spellings = [
        path,
        f"{path}#section-{rng.randrange(10)}",
        root_url + path[1:],
        ("./" if source == 0 else "../") + path[1:],
    ]
    if source and target:
        spellings += [str(target), f"./{target}"]
    return rng.choice(spellings)


def _root_extras(spec: SiteSpec) -> list[tuple[str, str]]:
    files = [(path, f"File {path}") for path in file_paths(spec)]
    return [*files, (PRIVATE_PATH, "Private"), (OFFSITE_URL, "Elsewhere"), (MAILTO_URL, "Mail")]


def _paragraphs(rng: random.Random, seed: int, size: int) -> str:
    """Seeded paragraphs of at least `size` characters (none if size <= 0), drawn from the
    site's stock of paragraphs."""
    stock = _paragraph_stock(seed)
    paragraphs: list[str] = []
    while size > 0:
        paragraphs.append(rng.choice(stock))
        size -= len(paragraphs[-1]) + 1
    return "\n".join(paragraphs)


@functools.lru_cache(maxsize=4)
def _paragraph_stock(seed: int) -> tuple[str, ...]:
    """The blocks pages are padded with, written once per site: paragraphs with inline
    markup, lists and small tables, about one element per 30 bytes as on real article
    pages, so that a heavy page is heavy to parse and not only long.

    Writing each page's text word by word cost the server 1.5 ms for a 64 KB page and 6 ms
    for 256 KB: CPU taken from the crawler it serves in `scrape bench`, on the same cores.
    """
    rng = random.Random(f"{seed}/paragraphs")
    blocks = (_paragraph, _paragraph, _bullet_list, _table)
    return tuple(rng.choice(blocks)(rng) for _ in range(_STOCK_PARAGRAPHS))


def _paragraph(rng: random.Random) -> str:
    return f"<p>{_phrase(rng, _WORDS_PER_PARAGRAPH).capitalize()}.</p>"


def _bullet_list(rng: random.Random) -> str:
    items = "".join(
        f"<li>{_phrase(rng, rng.randint(4, 12))}</li>" for _ in range(rng.randint(3, 6))
    )
    return f'<ul class="notes">{items}</ul>'


def _table(rng: random.Random) -> str:
    rows = "".join(
        "<tr>" + "".join(f"<td>{_phrase(rng, rng.randint(1, 3))}</td>" for _ in range(4)) + "</tr>"
        for _ in range(rng.randint(3, 6))
    )
    return f'<table class="data"><tbody>{rows}</tbody></table>'


def _phrase(rng: random.Random, words: int) -> str:
    """`words` words from the vocabulary, some wrapped in an inline element."""
    return " ".join(
        f"<{tag}>{word}</{tag}>" if (tag := _inline_tag(rng)) else word
        for word in rng.choices(_WORDS, k=words)
    )


def _inline_tag(rng: random.Random) -> str | None:
    return rng.choice(_INLINE_TAGS) if rng.randrange(_INLINE_EVERY) == 0 else None


@functools.lru_cache(maxsize=64)
def _file_body(spec: SiteSpec, number: int) -> bytes:
    """2 to 5 KiB of seeded bytes: incompressible, like the media a crawler downloads."""
    rng = random.Random(f"{spec.seed}/file/{number}")
    return rng.randbytes(1024 * (2 + number % 4))


# The application.


def build_app(spec: SiteSpec) -> web.Application:
    """The site for `spec`, with the misbehaving routes of `scraper.demo.hostile` added."""
    app = web.Application(middlewares=[_count_hits])
    app[SPEC] = spec
    app[HITS] = HitCounter()
    app[PRERENDERED] = {}
    for path in ("/", ROBOTS_PATH, PRIVATE_PATH, "/page/{index}", "/files/{name}"):
        app.router.add_get(path, _serve_resource)
    hostile.add_routes(app)
    return app


@web.middleware
async def _count_hits(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Counted on arrival, so a request that never gets an answer (/stall) is counted too.
    request.app[HITS].add(request.path_qs)
    return await handler(request)


async def _serve_resource(request: web.Request) -> web.Response:
    spec = request.app[SPEC]
    await asyncio.sleep(spec.latency_ms / 1000)
    root_url = f"{request.scheme}://{request.host}/"
    page = request.app[PRERENDERED].get((request.path, root_url))
    resource = (
        _Resource(page, _HTML) if page is not None else _resource(spec, request.path, root_url)
    )
    if resource is None:
        raise web.HTTPNotFound()
    return web.Response(body=resource.body, headers={"Content-Type": resource.content_type})
