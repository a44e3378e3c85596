from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import pickle
import re
import stat
import threading
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scraper import sinks
from scraper.errors import InvalidURL, OutputError
from scraper.sinks import FileStore, JsonlWriter, url_to_path, write_json_atomic
from scraper.urls import canonicalize

FORBIDDEN = re.compile(r'[\x00-\x1f\x7f-\x9f\\/:*?"<>|]')
HASHED_NAME = re.compile(r"_[0-9a-f]{16}\.")


def path_of(url: str) -> str:
    return str(url_to_path(canonicalize(url)))


def assert_inside(path: PurePosixPath, root: Path) -> None:
    assert not path.is_absolute()
    for part in path.parts:
        assert part not in {"", ".", ".."}
        assert not FORBIDDEN.search(part), part
        assert all(char.isprintable() for char in part), part
        assert unicodedata.is_normalized("NFC", part), part
        assert len(part.encode()) <= 255
    assert len(str(path).encode()) <= 3500
    resolved = (root / path).resolve()
    assert resolved.is_relative_to(root.resolve())
    assert resolved != root.resolve()


# ---------------------------------------------------------------- url_to_path: readable names


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/docs/guide.html", "https/example.com/docs/guide.html"),
        ("https://Example.COM", "https/example.com/_index.html"),
        ("https://example.com/a/b/", "https/example.com/a/b/_index.html"),
        ("http://127.0.0.1:8080/x", "http/127.0.0.1+8080/x"),
        ("http://example.com:80/x", "http/example.com/x"),
        ("https://example.com/a/?q=1&r=2", "https/example.com/a/_index.html%3Fq=1&r=2"),
        ("https://example.com/search?q=a/../b", "https/example.com/search%3Fq=a%2F..%2Fb"),
        ("http://[::1]:8080/wiki/caf%C3%A9", "http/%3A%3A1+8080/wiki/café"),
        ("https://example.com/my_page-1.html", "https/example.com/my_page-1.html"),
        ("https://example.com/a b", "https/example.com/a%2520b"),
        ("https://example.com/_index.html", "https/example.com/%5Findex.html"),
        ("https://example.com/a//b", "https/example.com/a/_empty/b"),
        ("https://user:pw@example.com/", "https/user%3Apw@example.com/_index.html"),
        ("https://_dmarc.example.com/", "https/%5Fdmarc.example.com/_index.html"),
    ],
)
def test_readable_names(url: str, expected: str) -> None:
    assert path_of(url) == expected


def test_scheme_port_user_and_query_distinguish() -> None:
    urls = [
        "http://example.com/",
        "https://example.com/",
        "http://example.com:8080/",
        "https://example.com:8080/",
        "http://user@example.com/",
        "http://example.com/?",
        "http://example.com/?a",
        "http://example.com/index.html",
        "http://example.com/_index.html",
        "http://example.com//",
    ]
    canonical = {canonicalize(url) for url in urls}
    assert len({url_to_path(url) for url in canonical}) == len(canonical)


# ---------------------------------------------------------------- url_to_path: hostile URLs


HOSTILE = [
    "http://h/..",
    "http://h/../../etc/passwd",
    "http://h/%2e%2e/%2e%2e/x",
    "http://h/a/%2E%2e",
    "http://h/..%2F..%2Fetc",
    "http://h/%2F",
    "http://h/a%2Fb",
    "http://h/%00",
    "http://h/a%00b/%0a%0d",
    "http://h/a\\b\\..\\..\\c",
    "http://h/a%5C..%5C..",
    "http://h/C:%5Cwin",
    'http://h/*?"<>|:',
    "http://h/%E2%80%AE%C2%85",
    "http://h/" + "a" * 300,
    "http://h/" + "é" * 300 + "?" + "q" * 300,
    "http://h/" + "ab/" * 2000 + "x",
    "http://[2001:db8::1]:8443/a",
    "http://[fe80::1%25eth0]/",
    "http://h/?../../x",
    "http://h/a?/../..",
    "http://h/.%2e",
    "http://h/_tmp-0123.part",
    "http://h/_clash",
    "http://bücher.example/ünïcödé/日本語?q=ü",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_urls_stay_inside(url: str, tmp_path: Path) -> None:
    path = url_to_path(canonicalize(url))
    assert_inside(path, tmp_path)
    assert path.parts[0] in {"http", "https"}


def test_dot_segments_and_encoded_slashes_are_plain_names() -> None:
    assert path_of("http://h/..%2F") == "http/h/..%252F"
    assert path_of("http://h/a%2Fb") == "http/h/a%252Fb"
    assert path_of("http://h/a\\b") == "http/h/a%255Cb"
    assert path_of("http://h/%00") == "http/h/%2500"


def test_long_names_are_hashed_and_stay_distinct() -> None:
    first = url_to_path(canonicalize("http://h/" + "a" * 300))
    second = url_to_path(canonicalize("http://h/" + "a" * 301))
    assert first != second
    assert HASHED_NAME.match(first.name)
    assert first.name.endswith("a" * 64)


def test_long_paths_hash_their_folders() -> None:
    path = url_to_path(canonicalize("http://h/" + "ab/" * 2000 + "x"))
    assert path.parts[:3] == ("http", "h", "_long")
    assert path.name == "x"


def test_unicode_not_in_nfc_is_escaped() -> None:
    # é as e + combining accent would merge with the precomposed é on macOS.
    assert path_of("http://h/caf%C3%A9") == "http/h/café"
    assert path_of("http://h/cafe%CC%81") == "http/h/cafe%25CC%2581"


@pytest.mark.parametrize("url", ["ftp://h/", "http://h", "http://a:b/", "http:///x", "nonsense"])
def test_non_canonical_input_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="canonical"):
        url_to_path(url)


# ---------------------------------------------------------------- url_to_path: properties


def decode_name(name: str) -> str:
    """The inverse of the name escaping, written independently of the implementation."""
    out: list[str] = []
    pending = bytearray()
    index = 0
    while index < len(name):
        if name[index] == "%":
            pending.append(int(name[index + 1 : index + 3], 16))
            index += 3
            continue
        out.append(pending.decode("utf-8", "surrogatepass"))
        pending.clear()
        char = name[index]
        out.append(char if char.isascii() else "".join(f"%{b:02X}" for b in char.encode()))
        index += 1
    out.append(pending.decode("utf-8", "surrogatepass"))
    return "".join(out)


def decode_path(path: PurePosixPath) -> str:
    """The URL a (non-hashed) path came from."""
    scheme, authority, *folders, last = path.parts
    userinfo, at, hostport = authority.rpartition("@")
    host, plus, port = hostport.rpartition("+") if "+" in hostport else (hostport, "", "")
    host = decode_name(host)
    host = f"[{host}]" if ":" in host else host
    name, mark, query = last.partition("%3F")
    segments = ["" if part == "_empty" else decode_name(part) for part in folders]
    segments.append("" if name == "_index.html" else decode_name(name))
    return (
        f"{decode_name(scheme)}://{decode_name(userinfo)}{at}{host}{':' if plus else ''}{port}"
        f"/{'/'.join(segments)}{'?' if mark else ''}{decode_name(query)}"
    )


labels = st.from_regex(r"[a-z0-9_]([a-z0-9_-]{0,8}[a-z0-9_])?", fullmatch=True)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["127.0.0.1", "[::1]", "[2001:db8::7]", "[fe80::1%25eth0]", "bücher.de"]),
)
ports = st.one_of(st.none(), st.sampled_from([0, 80, 443, 8080]), st.integers(1, 65535))
hostile_pieces = st.sampled_from(
    [
        "",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        "%2F",
        "%00",
        "\\",
        "%",
        "%zz",
        "%25",
        "_",
        "_index.html",
        "_empty",
        "_long",
        "_clash",
        "é",
        "%C3%A9",
        "e%CC%81",
        "%E2%80%AE",
        "%80",
        "%3F",
        "+",
        "@",
        ":",
        "a" * 210,
        "é" * 70,
    ]
)
pieces = st.one_of(hostile_pieces, st.text(max_size=12))
segments = st.lists(pieces, max_size=3).map("".join)
paths = st.lists(segments, max_size=6).map("/".join)
queries = st.one_of(st.none(), st.lists(pieces, max_size=3).map("".join))
userinfos = st.one_of(st.none(), st.sampled_from(["u", "u:p", "a@b", "a+b", "_x", "%40", "é"]))


@st.composite
def canonical_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    user = draw(userinfos)
    port = draw(ports)
    query = draw(queries)
    authority = (f"{user}@" if user is not None else "") + draw(hosts)
    authority += f":{port}" if port is not None else ""
    url = f"{scheme}://{authority}/{draw(paths)}" + (f"?{query}" if query is not None else "")
    try:
        return canonicalize(url)
    except InvalidURL:
        assume(False)
        raise


PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(canonical_urls())
def test_every_path_stays_inside(url: str) -> None:
    root = Path("/srv/out/files")
    assert_inside(url_to_path(url), root)


@PROPERTY_SETTINGS
@given(canonical_urls())
def test_paths_decode_back_to_their_url(url: str) -> None:
    path = url_to_path(url)
    assume(not any(HASHED_NAME.match(part) or part == "_long" for part in path.parts))
    assert decode_path(path) == url


@PROPERTY_SETTINGS
@given(st.lists(canonical_urls(), min_size=2, max_size=12))
def test_distinct_urls_get_distinct_paths(urls: list[str]) -> None:
    distinct = set(urls)
    assert len({url_to_path(url) for url in distinct}) == len(distinct)


# ---------------------------------------------------------------- FileStore


def leftovers(root: Path) -> list[Path]:
    return [path for path in root.rglob("_tmp-*")]


def test_save_writes_the_body_and_returns_its_path(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    saved = store.save("https://example.com/a/b.html", b"<html>")
    assert saved == PurePosixPath("files/https/example.com/a/b.html")
    assert (tmp_path / saved).read_bytes() == b"<html>"
    assert leftovers(tmp_path) == []


def test_a_save_waits_its_turn_while_another_process_saves(tmp_path: Path) -> None:
    """Saves from the parse processes take turns (flock on the root): concurrent file
    creation in one directory costs ten times the kernel time. While another holder has
    the lock, a save does not touch the directory; it finishes once the lock is let go."""
    store = FileStore(tmp_path / "files")
    target = tmp_path / "files/http/h/page"
    holder = os.open(tmp_path / "files", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    saving = threading.Thread(target=store.save, args=("http://h/page", b"body"))
    try:
        saving.start()
        saving.join(timeout=0.5)
        assert saving.is_alive() and not target.exists()
    finally:
        os.close(holder)
    saving.join(timeout=10)
    assert target.read_bytes() == b"body"


def test_an_interrupted_save_leaves_no_temporary_and_no_descriptor(tmp_path: Path) -> None:
    turns: list[str] = []

    @contextlib.contextmanager
    def interrupted_as_the_first_turn_ends() -> Iterator[None]:
        turns.append("turn")
        yield
        if len(turns) == 1:  # the temporary file has just been created
            raise KeyboardInterrupt

    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyboardInterrupt):
        sinks._write_atomic(
            tmp_path, "a.html", b"<p>a</p>", turn=interrupted_as_the_first_turn_ends
        )
    assert list(tmp_path.iterdir()) == []
    assert len(os.listdir("/proc/self/fd")) == before


def test_saved_files_get_the_mode_open_gives_new_files(tmp_path: Path) -> None:
    """Read and write for whom the umask allows, never executable."""
    umask = os.umask(0o022)
    os.umask(umask)
    saved = FileStore(tmp_path / "files").save("http://h/a.html", b"<p>a</p>")
    assert stat.S_IMODE((tmp_path / saved).stat().st_mode) == 0o666 & ~umask


def test_a_body_is_written_outside_the_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the changes to directories take turns: a large download being written by the
    collector must not hold up the parse processes' saves."""
    root = tmp_path / "files"
    lock_free_during_write: list[bool] = []
    real_write_all = sinks._write_all

    def spying_write_all(descriptor: int, data: bytes) -> None:
        lock_free_during_write.append(lock_is_free(root))
        real_write_all(descriptor, data)

    store = FileStore(root)
    monkeypatch.setattr(sinks, "_write_all", spying_write_all)
    saved = store.save("http://h/big.bin", b"x" * 1024)
    assert lock_free_during_write == [True]
    assert (tmp_path / saved).read_bytes() == b"x" * 1024


def lock_is_free(root: Path) -> bool:
    descriptor = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


def test_a_store_saves_without_turns_where_the_filesystem_cannot_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some network filesystems refuse flock: taking turns is only for speed, so the save
    goes ahead."""

    def no_locks(descriptor: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    saved = FileStore(tmp_path / "files").save("http://h/x", b"body")
    assert (tmp_path / saved).read_bytes() == b"body"


def test_a_store_sent_to_another_process_saves_under_the_same_root(tmp_path: Path) -> None:
    """The parse pool gets the store by pickle: only its root travels, and each process
    keeps one store (with its directory cache) per root."""
    store = FileStore(tmp_path / "files")
    arrived = pickle.loads(pickle.dumps(store))
    assert arrived is pickle.loads(pickle.dumps(store))
    assert arrived.save("http://h/x", b"body") == PurePosixPath("files/http/h/x")
    assert (tmp_path / "files/http/h/x").read_bytes() == b"body"


def test_saving_again_replaces_the_same_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    store.save("https://example.com/", b"old")
    saved = store.save("https://example.com/", b"new")
    assert (tmp_path / saved).read_bytes() == b"new"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("http://h/a", "http://h/a/b"),
        ("http://h/a/b", "http://h/a"),
        ("http://h/a", "http://h/a/"),
        ("http://h/a?x", "http://h/a?x/y"),
    ],
)
def test_file_folder_clash_keeps_both(tmp_path: Path, first: str, second: str) -> None:
    store = FileStore(tmp_path / "files")
    first_path = store.save(first, b"first body")
    second_path = store.save(second, b"second body")
    assert first_path == PurePosixPath("files") / url_to_path(first)
    expected = PurePosixPath("files", "_clash", hashlib.sha256(second.encode()).hexdigest())
    assert second_path in {PurePosixPath("files") / url_to_path(second), expected}
    assert (tmp_path / first_path).read_bytes() == b"first body"
    assert (tmp_path / second_path).read_bytes() == b"second body"


def test_clash_path_for_a_file_in_the_way(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    store.save("http://h/a", b"file")
    saved = store.save("http://h/a/b", b"nested")
    assert saved == PurePosixPath("files/_clash", hashlib.sha256(b"http://h/a/b").hexdigest())


def test_symlinked_folder_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "files"
    (root / "http").mkdir(parents=True)
    (root / "http" / "h").symlink_to(outside)
    saved = FileStore(root).save("http://h/x", b"body")
    assert saved.parts[1] == "_clash"
    assert list(outside.iterdir()) == []


def test_symlinked_file_is_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep")
    root = tmp_path / "files"
    (root / "http" / "h").mkdir(parents=True)
    (root / "http" / "h" / "x").symlink_to(target)
    saved = FileStore(root).save("http://h/x", b"body")
    assert saved.parts[1] == "_clash"
    assert target.read_bytes() == b"keep"


def test_write_failure_is_an_output_error_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(source: object, target: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    store = FileStore(tmp_path / "files")
    monkeypatch.setattr(sinks.os, "replace", disk_full)
    with pytest.raises(OutputError, match="No space left"):
        store.save("http://h/x", b"body")
    assert leftovers(tmp_path) == []


def test_unusable_root_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputError, match="cannot create"):
        FileStore(tmp_path / "file" / "files")


def test_concurrent_saves_all_land(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    threads, per_thread = 8, 200
    start = threading.Barrier(threads)

    def body(url: str) -> bytes:
        return url.encode() * 3

    def work(worker: int) -> list[tuple[str, PurePosixPath]]:
        # Overlapping folders across threads, and some /dN files that clash with /dN/... .
        urls = [f"http://h/d{n % 7}/e{n % 5}/w{worker}-{n}" for n in range(per_thread)]
        urls += [f"http://h/d{worker % 7}", f"http://h/d{worker % 7}/e{worker % 5}"]
        start.wait()
        return [(url, store.save(url, body(url))) for url in urls]

    with ThreadPoolExecutor(threads) as pool:
        results = [pair for done in pool.map(work, range(threads)) for pair in done]
    by_url = dict(results)
    assert len(set(by_url.values())) == len(by_url)
    for url, path in by_url.items():
        assert (tmp_path / path).read_bytes() == body(url)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- JsonlWriter


ODD_STRINGS = [
    "line\nbreak",
    "carriage\rreturn",
    "\u2028\u2029",
    "\x85next line",
    "\x00nul",
    'tab\tand "quotes" and \\',
    "😀 emoji",
    "\ud800 lone surrogate",
    "",
]


def read_lines(path: Path) -> list[object]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data[:-1].split(b"\n")]


def test_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "pages.jsonl"
    records = [{"value": text, "n": n} for n, text in enumerate(ODD_STRINGS)]
    with JsonlWriter(path) as writer:
        for record in records:
            writer.write(record)
    assert read_lines(path) == records


def test_each_record_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "pages.jsonl"
    writer = JsonlWriter(path)
    writer.write({"url": "http://h/"})
    assert path.read_bytes() == b'{"url":"http://h/"}\n'
    writer.close()


def test_non_json_values_are_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "pages.jsonl"
    with JsonlWriter(path) as writer:
        with pytest.raises(ValueError):
            writer.write({"x": math.nan})
        with pytest.raises(TypeError):
            writer.write({"x": object()})
        writer.write({"x": 1})
    assert read_lines(path) == [{"x": 1}]


def test_new_file_replaces_and_append_continues(tmp_path: Path) -> None:
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b'{"old":1}\n')
    with JsonlWriter(path, append=True) as writer:
        writer.write({"new": 2})
    assert read_lines(path) == [{"old": 1}, {"new": 2}]
    with JsonlWriter(path) as writer:
        writer.write({"fresh": 3})
    assert read_lines(path) == [{"fresh": 3}]


def test_append_drops_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":"cut sh')
    with JsonlWriter(path, append=True) as writer:
        writer.write({"c": 3})
    assert read_lines(path) == [{"a": 1}, {"c": 3}]


@pytest.mark.parametrize("chunk", [1, 3, 4, 1 << 16])
def test_torn_tail_search_spans_chunks(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":"cut short')
    descriptor = os.open(path, os.O_RDWR)
    try:
        sinks._drop_torn_tail(descriptor, chunk)
        assert path.read_bytes() == b'{"a":1}\n'
        sinks._drop_torn_tail(descriptor, chunk)
        assert path.read_bytes() == b'{"a":1}\n'
    finally:
        os.close(descriptor)


@pytest.mark.parametrize("append", [True, False])
def test_a_link_in_place_of_the_file_is_refused_untouched(tmp_path: Path, append: bool) -> None:
    """One put there after the output directory was checked: appending first cut the file
    it pointed to back to its last newline, through the link."""
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"kept\nno newline after this")
    path = tmp_path / "pages.jsonl"
    path.symlink_to(target)
    with pytest.raises(OutputError, match="cannot open"):
        JsonlWriter(path, append=append)
    assert target.read_bytes() == b"kept\nno newline after this"


def test_append_to_a_file_without_newline_at_all(tmp_path: Path) -> None:
    path = tmp_path / "pages.jsonl"
    path.write_bytes(b'{"torn":')
    with JsonlWriter(path, append=True) as writer:
        writer.write({"c": 3})
    assert read_lines(path) == [{"c": 3}]


def test_append_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "pages.jsonl"
    with JsonlWriter(path, append=True) as writer:
        writer.write({"c": 3})
    assert read_lines(path) == [{"c": 3}]


def test_unopenable_file_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot open"):
        JsonlWriter(tmp_path / "missing" / "pages.jsonl")


# ---------------------------------------------------------------- write_json_atomic


def test_write_json_atomic_writes_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    write_json_atomic(path, {"pages": 1})
    write_json_atomic(path, {"pages": 2, "title": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"pages": 2, "title": "é"}
    assert os.listdir(tmp_path) == ["stats.json"]


def test_write_json_atomic_keeps_the_old_file_on_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    write_json_atomic(path, {"pages": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"rate": math.inf})
    assert json.loads(path.read_text(encoding="utf-8")) == {"pages": 1}
    assert os.listdir(tmp_path) == ["stats.json"]


def test_write_json_atomic_missing_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write"):
        write_json_atomic(tmp_path / "missing" / "stats.json", {})


def test_a_resumed_output_removes_what_a_killed_run_left_half_written(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    saved = store.save("http://example.com/a/page", b"complete")
    folder = tmp_path / "files" / "http" / "example.com" / "a"
    (folder / "_tmp-0123456789abcdef.part").write_bytes(b"half")
    (folder / "keep.part").write_bytes(b"a real file that only looks similar")
    assert store.remove_partials() == 1
    assert sorted(path.name for path in folder.iterdir()) == ["keep.part", "page"]
    assert (tmp_path / saved).read_bytes() == b"complete"
