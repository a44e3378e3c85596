"""Tests for scraper.parse: the pure parse function that runs in the process pool."""

from __future__ import annotations

import contextlib
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from processes import loaded_by_import

from scraper.errors import InvalidURL, ParseError
from scraper.fetch.base import is_html, media_type
from scraper.parse import _resolved, decode_html, parse_page
from scraper.records import PageMeta, ParsedPage
from scraper.urls import canonicalize

URL = "https://example.com/dir/page.html"

NORMAL_PAGE = b"""<!DOCTYPE html>
<html lang="en-GB">
<head>
  <meta charset="utf-8">
  <title>
     The   Example
     Page
  </title>
  <meta name="Description" content="  A page   about examples. ">
  <meta name="ROBOTS" content="NoIndex,   NoFollow">
  <link rel="stylesheet" href="/style.css">
  <link rel="Canonical" href="/dir/page.html?b=2#top">
  <style>body { color: red }</style>
  <script>var hidden = "script text";</script>
</head>
<body>
  <h1>Hello   world</h1>
  <p>First <b>para</b>.</p>
  <a href="/about">About</a>
  <a href="https://other.example.org/x">Other</a>
  <img src="/logo.png"><script src="/app.js"></script>
  <noscript>Enable JavaScript</noscript>
  <template><p>template text</p></template>
  <!-- a comment -->
</body>
</html>
"""


def parse(body: bytes, content_type: str | None = "text/html") -> ParsedPage:
    return parse_page(URL, content_type, body)


def links_of(html: str) -> tuple[str, ...]:
    return parse(html.encode()).links


# --- a normal page ----------------------------------------------------------------------------


def test_normal_page_title_links_text_and_meta():
    page = parse(NORMAL_PAGE)
    assert page.title == "The Example Page"
    assert page.links == ("https://example.com/about", "https://other.example.org/x")
    assert page.text_chars == len("Hello world First para . About Other")
    assert page.encoding == "utf-8"
    assert page.data is None
    assert page.meta == PageMeta(
        description="A page about examples.",
        language="en-GB",
        canonical="https://example.com/dir/page.html?b=2",
        robots="noindex, nofollow",
    )


def test_visible_text_excludes_hidden_elements():
    html = (
        "<html><head><title>T</title></head><body>"
        "<script>x</script><style>y</style><noscript>z</noscript>"
        "<template>w</template>seen</body></html>"
    )
    assert parse(html.encode()).text_chars == len("seen")


def test_visible_text_keeps_minified_blocks_apart():
    assert parse(b"<ul><li>one</li><li>two</li></ul>").text_chars == len("one two")


def test_missing_parts_are_none():
    page = parse(b"<html><body><p>just text</p></body></html>")
    assert page.title is None
    assert page.links == ()
    assert page.meta == PageMeta(None, None, None, None)


def test_empty_title_is_none():
    assert parse(b"<title>  \n </title>").title is None


def test_first_title_wins():
    assert parse(b"<title>One</title><title>Two</title>").title == "One"


# --- meta -----------------------------------------------------------------------------------


def test_language_falls_back_to_header_then_meta():
    meta_only = b'<meta http-equiv="Content-Language" content="fr"><p>x</p>'
    assert parse(meta_only).meta.language == "fr"
    from_header = parse_page(URL, "text/html", meta_only, content_language="de")
    assert from_header.meta.language == "de"
    with_lang = b'<html lang="it">' + meta_only
    assert parse_page(URL, "text/html", with_lang, content_language="de").meta.language == "it"


def test_empty_html_lang_is_skipped():
    page = parse_page(URL, "text/html", b'<html lang=" "><p>x</p>', content_language="nl")
    assert page.meta.language == "nl"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ('<link rel="canonical" href="https://Example.COM:443/a/../b">', "https://example.com/b"),
        ('<link rel="alternate canonical" href="c">', "https://example.com/dir/c"),
        ('<link rel="canonical" href="javascript:void(0)">', None),
        ('<link rel="canonical" href="http://[oops">', None),
        ('<link rel="alternate" href="/x">', None),
    ],
)
def test_canonical_link(link, expected):
    assert parse(link.encode()).meta.canonical == expected


# --- links ----------------------------------------------------------------------------------


def test_relative_protocol_relative_fragment_and_dot_segment_links():
    html = """
        <a href="sibling.html">1</a>
        <a href="//cdn.example.net/lib">2</a>
        <a href="#section">3</a>
        <a href="../up/./x/../y?q=1#frag">4</a>
        <a href="?page=2">5</a>
        <a href="/">6</a>
    """
    assert links_of(html) == (
        "https://example.com/dir/sibling.html",
        "https://cdn.example.net/lib",
        "https://example.com/dir/page.html",
        "https://example.com/up/y?q=1",
        "https://example.com/dir/page.html?page=2",
        "https://example.com/",
    )


def test_base_href_is_resolved_against_the_page_and_used_for_links():
    html = '<head><base href="/other/"></head><a href="x">x</a><a href="/abs">y</a>'
    assert links_of(html) == ("https://example.com/other/x", "https://example.com/abs")


def test_first_base_href_wins_and_unusable_base_is_ignored():
    html = '<base target="_blank"><base href="mailto:a@b.c"><base href="/late/"><a href="x">x</a>'
    assert links_of(html) == ("https://example.com/dir/x",)


def test_only_anchor_and_area_hrefs_count():
    html = """
        <img src="/img.png"><script src="/s.js"></script><link rel=stylesheet href="/c.css">
        <iframe src="/frame"></iframe><a name="no-href">x</a>
        <map><area href="/from-area"></map><a href="/from-a">a</a>
    """
    assert links_of(html) == ("https://example.com/from-area", "https://example.com/from-a")


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "mailto:someone@example.com",
        "data:text/html,<p>x</p>",
        "ftp://example.com/file",
        "file:///etc/passwd",
        "tel:+1555",
        "http://",
        "http://[::1",
        "http://exa mple.com/",
        "http://[]-@",
    ],
)
def test_non_http_and_malformed_links_are_dropped(href):
    assert links_of(f'<a href="{href}">x</a><a href="/kept">k</a>') == ("https://example.com/kept",)


def test_duplicates_are_removed_after_canonicalization_in_first_occurrence_order():
    html = """
        <a href="/b">1</a><a href="/a">2</a>
        <a href="HTTPS://EXAMPLE.com:443/b#x">3</a><a href="/./a">4</a><a href="/b">5</a>
    """
    assert links_of(html) == ("https://example.com/b", "https://example.com/a")


def test_whitespace_around_and_newlines_inside_hrefs_are_removed():
    html = '<a href="  /spaced  ">1</a><a href="\n/wr\napped\t">2</a>'
    assert links_of(html) == ("https://example.com/spaced", "https://example.com/wrapped")


# --- malformed input ------------------------------------------------------------------------


def test_unclosed_tags_still_give_title_and_links():
    html = b"<html><head><title>Unclosed</title><body><div><p><a href=/a>one<a href='/b'>two<table>"
    page = parse(html)
    assert page.title == "Unclosed"
    assert page.links == ("https://example.com/a", "https://example.com/b")


def test_garbage_around_markup_still_gives_title_and_links():
    body = b"\x89PNG\r\n\x1a\n<<<>>>\xff\xfe<title>Junk</title>\x00<a href=/ok>ok</a></</>"
    page = parse(body)
    assert page.title == "Junk"
    assert page.links == ("https://example.com/ok",)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00" * 4096,
        bytes(range(256)) * 8,
        b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00\xff" * 500,
        b"https://example.com/looks-like-a-url",
        b"index.html",
        b"<?xml version='1.0'?><rss><channel><title>Feed</title></channel></rss>",
        b"<!--",
        b"<![CDATA[",
        b"<" * 1000,
        b"<div>" * 5000,
    ],
)
def test_junk_never_raises(body):
    page = parse(body)
    assert isinstance(page, ParsedPage)
    assert page.links == ()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"  \n\t",
        b"<!-- only a comment -->",
        b"<!DOCTYPE html>",
        b"<?php x ?>",
        b"\xef\xbb\xbf",
    ],
)
def test_documents_without_an_element_give_an_empty_page(body):
    page = parse_page(URL, "text/html", body, content_language="fr")
    assert (page.title, page.links, page.unfetchable, page.text_chars) == (None, (), (), 0)
    assert page.meta == PageMeta(None, "fr", None, None)


def test_xml_declaration_naming_an_encoding_is_read_as_html():
    body = "<?xml version='1.0' encoding='iso-8859-1'?><title>Café</title><a href=/x>x</a>"
    page = parse(body.encode("iso-8859-1"))
    assert page.title == "Café"
    assert page.links == ("https://example.com/x",)


def test_content_after_the_closing_html_tag_still_counts():
    page = parse(b"<html><body><p>in</p></body></html><p>out</p><a href=/late>late</a>")
    assert page.links == ("https://example.com/late",)
    assert page.text_chars == len("in out late")


def test_deep_nesting_and_a_huge_text_node_do_not_end_the_parse():
    deep = b"<div>" * 2000 + b"<a href=/deep>x</a>"
    assert parse(deep).links == ("https://example.com/deep",)
    huge = b"<pre>" + b"x" * (10 * 2**20 + 1) + b"</pre><a href=/after>x</a>"
    assert parse(huge).links == ("https://example.com/after",)


def test_past_libxml2s_nesting_limit_what_came_before_is_kept():
    """The limit README ("Decoding") states: the parse ends at 2048 levels, and the record
    keeps the title and the links before that point (2,100 unclosed <font> tags in an old
    page are enough to reach it)."""
    page = parse(
        b"<title>t</title><a href=/before>b</a>"
        + b"<font size=2>x" * 2100
        + b"<a href=/after>a</a>"
    )
    assert page.title == "t"
    assert page.links == ("https://example.com/before",)


def test_ruby_annotations_and_titles_in_templates_are_not_text():
    # Kept from the BeautifulSoup extraction, which typed these strings apart from the text.
    assert parse("<p>漢<rp>(</rp><rt>kan</rt><rp>)</rp>字</p>".encode()).text_chars == len("漢 字")
    assert parse(b"<template><title>T</title></template><title>U</title>").title is None


def test_no_soup_is_built_without_an_extractor(monkeypatch):
    def no_soup(*args, **kwargs):
        raise AssertionError("the built-in extraction built a BeautifulSoup tree")

    monkeypatch.setattr("bs4.BeautifulSoup", no_soup)
    assert parse(NORMAL_PAGE).title == "The Example Page"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html; charset=base64",
        "text/html; charset=idna",
        "text/html; charset=undefined",
        "text/html; charset=unicode-escape",
        "text/html; charset=utf-32",  # known to Python, to no browser: the page came out empty
        "text/html; charset=cp037",
        "text/html; charset=no-such-codec",
        'text/html; charset="\x00\xff"',
        "text/html; charset=",
        ";;;",
    ],
)
def test_unusable_header_charsets_are_ignored(content_type):
    page = parse(b"<title>Fine \\u0041</title>", content_type)
    assert page.title == "Fine \\u0041"


@pytest.mark.parametrize("label", ["base64", "undefined", "unicode-escape"])
def test_unusable_header_charset_falls_through_to_meta(label):
    body = '<meta charset="koi8-r"><title>Привет</title>'.encode("koi8-r")
    page = parse(body, f"text/html; charset={label}")
    assert page.title == "Привет"
    assert page.encoding == "koi8-r"


@pytest.mark.parametrize(
    "label", ["base64", "idna", "undefined", "unicode-escape", "bogus", "utf-32", "ebcdic-cp-us"]
)
def test_unusable_meta_charsets_are_ignored(label):
    page = parse(f'<meta charset="{label}"><title>Fine \\u0041</title>'.encode())
    assert page.title == "Fine \\u0041"


# --- encodings ------------------------------------------------------------------------------


def test_cp1252_declared_in_header():
    body = "<title>Café € œuvre™ “quoted”</title>".encode("cp1252")
    page = parse(body, "text/html; charset=windows-1252")
    assert page.title == "Café € œuvre™ “quoted”"
    assert page.encoding == "cp1252"


def test_latin1_header_is_read_as_cp1252_like_browsers():
    body = "<title>“smart” quotes</title>".encode("cp1252")
    assert parse(body, "text/html; charset=ISO-8859-1").title == "“smart” quotes"


def test_shift_jis_declared_only_in_meta():
    body = '<meta charset="Shift_JIS"><title>日本語のページ</title>'.encode("shift_jis")
    page = parse(body, "text/html")
    assert page.title == "日本語のページ"
    assert page.encoding == "cp932"


def test_shift_jis_declared_in_http_equiv():
    body = (
        '<meta http-equiv="Content-Type" content="text/html; charset=shift_jis">'
        "<title>日本語のページ</title>"
    ).encode("shift_jis")
    assert parse(body, None).title == "日本語のページ"


def test_gbk_declared_in_header():
    body = "<title>中文网页标题</title>".encode("gbk")
    page = parse(body, "text/html; charset=GBK")
    assert page.title == "中文网页标题"
    assert page.encoding == "gb18030"


def test_utf8_bom_beats_a_wrong_header():
    body = b"\xef\xbb\xbf" + "<title>Ünïcödé ✓</title>".encode()
    page = parse(body, "text/html; charset=iso-8859-1")
    assert page.title == "Ünïcödé ✓"
    assert page.encoding == "utf-8"


def test_utf16_bom():
    body = "\ufeff<title>sixteen</title>".encode("utf-16-le")
    assert parse(body, None).title == "sixteen"


def test_invalid_utf8_bytes_become_replacement_characters():
    body = b"<title>Bad \xff\xfe bytes \xc3</title><a href='/x'>x</a>"
    page = parse(body, "text/html; charset=utf-8")
    assert page.title == "Bad \ufffd\ufffd bytes \ufffd"
    assert page.links == ("https://example.com/x",)


def test_header_charset_beats_meta():
    body = '<meta charset="utf-8"><title>Café</title>'.encode("cp1252")
    assert parse(body, "text/html; charset=cp1252").title == "Café"


def test_undeclared_encoding_is_detected():
    text = "<html><title>Привет, мир</title><body>" + "<p>Это простой текст.</p>" * 30
    page = parse(text.encode("cp1251"), "text/html")
    assert page.title == "Привет, мир"


def test_undeclared_utf8_is_detected():
    page = parse("<title>Déjà vu, ünïcode ✓</title>".encode(), None)
    assert page.title == "Déjà vu, ünïcode ✓"
    assert page.encoding == "utf-8"


def test_decode_html_returns_text_and_codec_name():
    assert decode_html(b"<p>hi</p>", "text/html; charset=utf-8") == ("<p>hi</p>", "utf-8")


# --- the extractor hook ---------------------------------------------------------------------


def test_extractor_return_value_becomes_data():
    def extract(soup, url):
        return {"url": url, "h1": soup.h1.get_text()}

    page = parse_page(URL, "text/html", NORMAL_PAGE, extract)
    assert page.data == {"url": URL, "h1": "Hello   world"}
    assert page.title == "The Example Page"


class Unpicklable(Exception):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle

    def __reduce__(self):
        raise TypeError("cannot pickle this exception")


def test_raising_extractor_gives_a_picklable_parse_error():
    def extract(soup, url):
        raise Unpicklable("no price on this page", handle=object())

    with pytest.raises(ParseError) as caught:
        parse_page(URL, "text/html", NORMAL_PAGE, extract)
    assert str(caught.value) == "Unpicklable: no price on this page"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    copy = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(copy, ParseError)
    assert str(copy) == str(caught.value)


# --- values cross the process pool ----------------------------------------------------------


def test_parsed_page_pickles():
    page = parse_page(URL, "text/html", NORMAL_PAGE, lambda soup, url: [1, "two"])
    assert pickle.loads(pickle.dumps(page)) == page


# --- content types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("text/html", "text/html"),
        ("Text/HTML; charset=x", "text/html"),
        ("  application/XHTML+xml ;charset=utf-8", "application/xhtml+xml"),
        ("image/png", "image/png"),
        ("", None),
        ("; charset=utf-8", None),
        (None, None),
    ],
)
def test_media_type(header, expected):
    assert media_type(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("text/html", True),
        ("TEXT/HTML; charset=utf-8", True),
        ("application/xhtml+xml", True),
        ("text/plain", False),
        ("application/json", False),
        ("text/htmlx", False),
        ("", False),
        (None, False),
    ],
)
def test_is_html(header, expected):
    assert is_html(header) is expected


# --- never raises, whatever the bytes -------------------------------------------------------

_FRAGMENTS = [
    b"<a href='", b"'>", b"<area href=", b"<base href='", b"<title>", b"</title>",
    b"<meta charset=", b"<link rel=canonical href=", b"<script>", b"<noscript>", b"<!--",
    b"<?xml version='1.0'?>", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b"http://", b"//",
    b"[", b"]", b"@", b":", b"#", b"%", b"../", b"\xe9", b"javascript:", b"shift_jis",
]  # fmt: skip

_BODIES = st.one_of(
    st.binary(max_size=2000),
    st.lists(
        st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=8), st.text(max_size=10)),
        max_size=60,
    ).map(lambda parts: b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)),
)
_CONTENT_TYPES = st.sampled_from(
    [None, "text/html", "text/html; charset=utf-8", "text/html; charset=utf-16",
     "text/html; charset=base64", "text/html; charset=nonsense"]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(body=_BODIES, content_type=_CONTENT_TYPES)
def test_parse_page_never_raises_and_returns_canonical_http_links(body, content_type):
    page = parse_page(URL, content_type, body)
    for link in page.links:
        assert link.startswith(("http://", "https://"))
        assert canonicalize(link) == link
    assert len(set(page.links)) == len(page.links)


def test_a_parse_process_loads_neither_the_engine_nor_bs4() -> None:
    """Every parse process carries what it imports in its RSS (`scraper.parse_pool`, and
    `scraper.parse` as it starts): the HTTP clients, SQLite and bs4 (only for an extractor)
    stay out."""
    heavy = ("aiohttp", "requests", "sqlite3", "bs4", "rich", "protego")
    assert loaded_by_import("scraper.parse_pool, scraper.parse", heavy) == []


_HREF_PIECES = st.sampled_from(
    ["http:", "https:", "//", "/", "\\", "..", ".", "%2e", "a", "b.html", "?q=1", "#f", "@", ":81",
     "host.example", "mailto:", " "]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    hrefs=st.lists(st.lists(_HREF_PIECES, max_size=6).map("".join), max_size=5),
    base=st.sampled_from(
        [
            "http://h.example/dir/page.html",
            "http://h.example/dir/other.html?q=1#f",
            "http://h.example/dir/",
            "http://h.example/dir",
            "https://u@h.example:8443/a/b?c",
            "https://h.example",
            "https://h.example?x/y",
            "http://h.example/d%20ir/p",
            "http://h.example/a%3Fb/c?d",
        ]
    ),
)
def test_links_resolve_as_canonicalize_resolves_them(hrefs: list[str], base: str) -> None:
    """Links are resolved with a per-process cache keyed on what the answer depends on
    (nothing for absolute URLs, the origin for root-relative ones, the directory for
    relative paths): it must never differ from resolving each link against the page's
    full URL. Several bases share a directory, so a wrong key shows up."""
    html = "".join(f'<a href="{href}">x</a>' for href in hrefs).encode()
    expected: dict[str, None] = {}
    for href in hrefs:
        with contextlib.suppress(InvalidURL):
            expected.setdefault(canonicalize(href.strip(), base))
    assert parse_page(base, "text/html", html).links == tuple(expected)


def test_links_to_sections_of_one_page_are_resolved_once() -> None:
    """The fragment is cut before the per-process cache is asked: "/p.html#a" and
    "/p.html#b" resolve alike, and as distinct keys they crowded the cache out (on the
    benchmark site, half of its lookups missed)."""
    html = '<a href="/sections.html#a">a</a><a href="/sections.html#b">b</a><a href="#c">c</a>'
    _resolved.cache_clear()
    page = parse_page("http://h.example/dir/p.html", "text/html", html.encode())
    assert page.links == ("http://h.example/sections.html", "http://h.example/dir/p.html")
    assert _resolved.cache_info().misses == 1


@pytest.mark.parametrize("label", ["utf-16", "UTF-16LE", "utf-16be"])
def test_a_page_declaring_utf16_in_its_markup_is_read_as_utf8(label):
    """As browsers do: a declaration readable as ASCII cannot be right about UTF-16."""
    body = f'<meta charset="{label}"><title>Caf\u00e9</title><a href="/x">x</a>'.encode()
    page = parse_page("http://h.example/", "text/html", body)
    assert (page.title, page.links, page.encoding) == ("Café", ("http://h.example/x",), "utf-8")


def test_a_utf16_page_with_its_byte_order_mark_stays_utf16():
    body = "\ufeff<meta charset=utf-16><title>Caf\u00e9</title>".encode("utf-16-le")
    assert parse_page("http://h.example/", "text/html", body).title == "Café"
