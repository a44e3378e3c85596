"""Where the crawl's output goes on disk: saved bodies, JSONL records, the stats snapshot.

The path of a saved body is a pure function of its canonical URL (`url_to_path`), so the
rules that keep files inside `files/` and apart from each other are tested without I/O:

    https://example.com/docs/guide.html      files/https/example.com/docs/guide.html
    http://127.0.0.1:8080/                   files/http/127.0.0.1+8080/_index.html
    https://example.com/a/?q=1               files/https/example.com/a/_index.html%3Fq=1
    http://[::1]:81/wiki/caf%C3%A9           files/http/%3A%3A1+81/wiki/café

Each name is the URL's own text with every character outside a small safe set written as
`%XX`, `%` itself included, so names decode back to their URL and never collide. Names that
start with `_` are reserved for the store: `_index.html` (a path ending in "/"), `_empty`
(an empty segment, as in "a//b"), hashed stand-ins for over-long names, `_long` (a hashed
directory chain for over-long paths), `_clash` (the fallback directory) and `_tmp-*.part`
(temporaries; a leftover one is a write cut short by a crash).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import io
import json
import logging
import os
import re
import secrets
import stat
import string
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from scraper.errors import OutputError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from scraper.records import Page, Skipped
    from scraper.stats import StatsSnapshot

_log = logging.getLogger(__name__)

FILES_DIR = "files"
PAGES_FILE = "pages.jsonl"
SKIPPED_FILE = "skipped.jsonl"
STATS_FILE = "stats.json"
INDEX_NAME = "_index.html"
EMPTY_NAME = "_empty"
LONG_DIR = "_long"
CLASH_DIR = "_clash"
QUERY_MARK = "%3F"
MAX_NAME_BYTES = 200
MAX_PATH_BYTES = 3000

# Characters a name keeps as they are: none is special to POSIX, Windows or macOS paths.
_SAFE = frozenset(string.ascii_letters + string.digits + "._~!$&'()+,;=@-_")
# In the host component "+" marks the port and "@" ends the user info: both escaped there.
_SAFE_IN_AUTHORITY = _SAFE - {"+", "@"}
_URL = re.compile(r"(?P<scheme>https?)://(?P<authority>[^/?]*)(?P<path>/[^?]*)")
_PORT = re.compile(r"(?P<host>.*?)(?::(?P<port>[0-9]*))?", re.DOTALL)
# A run of URL escapes of non-ASCII bytes: the percent-encoded UTF-8 of non-ASCII text.
_NON_ASCII_ESCAPES = re.compile(r"(?:%[89A-F][0-9A-F])+")
_SHORT_HASH_CHARS = 16
_KEPT_PREFIX_BYTES = 64


def url_to_path(url: str) -> PurePosixPath:
    """The relative path under `files/` for the canonical URL `url` (see `canonicalize`).

    Pure and injective: distinct URLs get distinct paths, and no path can leave `files/`
    (no absolute path, no "." or ".." or empty part, no control, backslash or
    Windows-reserved character). Raises ValueError if `url` is not an http(s) URL in
    canonical form.
    """
    head, mark, query = url.partition("?")
    match = _URL.fullmatch(head)
    if match is None:
        raise ValueError(f"not a canonical URL: {url!r}")
    *folders, last = match["path"][1:].split("/")
    parts = [
        match["scheme"],
        _reserve(_authority_text(match["authority"])),
        *(_reserve(_readable_escape(segment)) if segment else EMPTY_NAME for segment in folders),
        _file_name(last, query if mark else None),
    ]
    return PurePosixPath(*_bounded_path(parts))


def _authority_text(authority: str) -> str:
    """`user@host:port` as `user@host+port`, escaped, with IPv6 brackets dropped.

    Only these separators stay raw ("+" and "@" are escaped everywhere else in the name),
    so the text still tells exactly which authority it came from.
    """
    userinfo, at, hostport = authority.rpartition("@")
    parts = _PORT.fullmatch(hostport)
    assert parts is not None  # the pattern matches any text
    host, port = parts["host"], parts["port"]
    if host.startswith("[") and host.endswith("]") and ":" in host:
        host = host[1:-1]
    elif ":" in host or not host:
        raise ValueError(f"not a canonical host: {hostport!r}")
    text = _escape(userinfo, _SAFE_IN_AUTHORITY) + at + _escape(host, _SAFE_IN_AUTHORITY)
    return text if port is None else f"{text}+{port}"


def _file_name(segment: str, query: str | None) -> str:
    """The last path segment as a file name; "/" ends in the reserved index name."""
    name = _reserve(_readable_escape(segment)) if segment else INDEX_NAME
    return name if query is None else name + QUERY_MARK + _readable_escape(query)


def _reserve(name: str) -> str:
    """An escaped name that is never "." or ".." and never starts with the reserved "_"."""
    if name in {".", ".."}:
        return _percent(name)
    return _percent("_") + name[1:] if name.startswith("_") else name


def _readable_escape(text: str) -> str:
    """`_escape`, except that URL escapes of printable non-ASCII text become that text.

    `caf%C3%A9` reads `café`, not `caf%25C3%25A9`. This stays injective: `_escape` writes
    any raw non-ASCII character as `%XX`, so one in a name always stands for the URL's
    upper-case escapes of it.
    """
    pieces: list[str] = []
    position = 0
    for run in _NON_ASCII_ESCAPES.finditer(text):
        pieces.append(_escape(text[position : run.start()]))
        pieces.append(_decode_escapes(bytes.fromhex(run[0].replace("%", ""))))
        position = run.end()
    pieces.append(_escape(text[position:]))
    return "".join(pieces)


def _decode_escapes(data: bytes) -> str:
    """The printable characters that `data` encodes in UTF-8; other bytes stay `%25XX`."""
    pieces: list[str] = []
    index = 0
    while index < len(data):
        char = _printable_char_at(data, index)
        pieces.append(char or f"%25{data[index]:02X}")
        index += len(char.encode()) if char else 1
    return "".join(pieces)


def _printable_char_at(data: bytes, index: int) -> str:
    """The printable character whose UTF-8 starts at `data[index]`, or "" if there is none."""
    for length in (2, 3, 4):
        try:
            char = data[index : index + length].decode()
        except UnicodeDecodeError:
            continue
        return char if char.isprintable() else ""
    return ""


def _escape(text: str, safe: frozenset[str] = _SAFE) -> str:
    return "".join(char if char in safe else _percent(char) for char in text)


def _percent(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode("utf-8", "surrogatepass"))


def _bounded_path(parts: list[str]) -> list[str]:
    """Parts short enough for any filesystem: long names and long chains become hashes."""
    parts = [_portable(part) for part in parts]
    if len("/".join(parts).encode()) <= MAX_PATH_BYTES:
        return parts
    scheme, host, *directories, name = parts
    chain = hashlib.sha256("/".join(directories).encode()).hexdigest()
    return [scheme, host, LONG_DIR, chain, name]


def _portable(name: str) -> str:
    """`name` in NFC and at most MAX_NAME_BYTES long, with the same meaning.

    A filesystem that normalizes Unicode (macOS) would merge two names that differ only in
    normalization, so a name not in NFC goes back to plain escapes. An over-long name becomes
    `_<hash>.<start of name>`, unique up to a sha256 collision.
    """
    if not unicodedata.is_normalized("NFC", name):
        name = "".join(char if char.isascii() else _escape(_percent(char)) for char in name)
    encoded = name.encode()
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:_SHORT_HASH_CHARS]
    start = encoded[:_KEPT_PREFIX_BYTES].decode(errors="ignore")
    return f"_{digest}.{start}"


# A path part that is in the way: a file where a directory is needed, or the reverse, or a
# symlink. The store then saves the newcomer under CLASH_DIR instead.
_CLASH_ERRORS = (FileExistsError, NotADirectoryError, IsADirectoryError)


_TEMP_PREFIX, _TEMP_SUFFIX = "_tmp-", ".part"
_CHECKED_DIRECTORIES = 4096  # directory chains a FileStore remembers as checked


class FileStore:
    """Saves response bodies under `root` (the output directory's `files/`).

    Safe to call from several threads and processes at once: saves take turns (see
    `_turn`), each writes its own temporary file and renames it into place, and directories
    are only ever added, never removed or replaced.
    """

    def __init__(self, root: Path) -> None:
        self._root = root.absolute()  # a parse process may run in another directory
        self._checked: set[tuple[str, ...]] = set()  # directory chains known to be real
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create {root}: {error.strerror}") from error

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        """Sent to a parse process, a store arrives as that process's own store for the same
        root: its directory cache is built once per process, not shipped with every page."""
        return (_store_in_this_process, (self._root,))

    def remove_partials(self) -> int:
        """Delete temporary files a killed run left half-written; return how many.

        They never look finished (reserved `_tmp-*.part` names), but a resumed crawl
        should not carry them forever.
        """
        removed = 0
        for partial in self._root.rglob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
                removed += 1
        return removed

    def save(self, url: str, body: bytes) -> PurePosixPath:
        """Write `body` for the canonical `url` atomically; return its path from the output dir.

        A file/folder clash (`/a` saved, then `/a/b`, or the reverse) keeps both bodies: the
        newcomer goes to `_clash/<sha256 of url>`. Raises OutputError if writing fails.
        """
        relative = url_to_path(url)
        try:
            return self._save_at(relative, body)
        except _CLASH_ERRORS:
            fallback = PurePosixPath(CLASH_DIR, hashlib.sha256(url.encode()).hexdigest())
            _log.info("file/folder clash at %s: saving %s as %s", relative, url, fallback)
        try:
            return self._save_at(fallback, body)
        except _CLASH_ERRORS as error:
            raise OutputError(f"cannot save {url} as {fallback}: {error}") from error

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Hold the store's lock: one change to its directories at a time, across the crawl's
        threads and processes.

        Two processes creating files in one directory at once spend about ten times the
        kernel time of creating them one after the other (measured on ext4 with two parse
        processes saving pages: 1.9 ms instead of 0.16 ms a file, spinning on the directory's
        lock), so the changes take turns: making directories, creating a file, renaming it
        into place. Writing the body is not one of them, so a large download saved by the
        collector does not hold up the parse processes' saves. The lock is flock on the root
        directory, opened anew for each turn: every open holds the lock on its own, so
        threads take turns as well, and a process that dies lets go of it. Where the
        filesystem has no flock (some network mounts), saves go ahead without taking turns:
        slower, never wrong.
        """
        try:
            descriptor = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise OutputError(f"cannot open {self._root}: {error.strerror}") from error
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            except OSError as error:
                _saving_without_turns(self._root, error.strerror)
            yield
        finally:
            os.close(descriptor)  # and with it the lock

    def _save_at(self, relative: PurePosixPath, body: bytes) -> PurePosixPath:
        try:
            parts = relative.parts[:-1]
            if parts in self._checked:  # directories are only ever added: nothing to change
                directory = self._root.joinpath(*parts)
            else:
                with self._turn():
                    directory = self._directory(parts)
            _write_atomic(directory, relative.name, body, turn=self._turn)
        except _CLASH_ERRORS:
            raise
        except OSError as error:
            raise OutputError(f"cannot save {relative}: {error}") from error
        return PurePosixPath(FILES_DIR) / relative

    def _directory(self, parts: tuple[str, ...]) -> Path:
        """`root/parts`, made as needed; raises a clash error if a part is not a real directory.

        Checking each part with lstat means a symlink is never followed out of `root`.
        """
        directory = self._root
        for part in parts:
            directory = directory / part
            with contextlib.suppress(FileExistsError):
                directory.mkdir()
            if not stat.S_ISDIR(directory.lstat().st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(directory))
        if len(self._checked) >= _CHECKED_DIRECTORIES:
            self._checked.clear()  # bounded memory; a miss only costs the checks again
        self._checked.add(parts)
        return directory


@functools.lru_cache(maxsize=8)
def _store_in_this_process(root: Path) -> FileStore:
    return FileStore(root)


@functools.lru_cache(maxsize=8)
def _saving_without_turns(root: Path, reason: str) -> None:
    """Say once per store and reason that saves cannot take turns there."""
    _log.info("cannot lock %s (%s): saving files without taking turns", root, reason)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as JSON to `path` so a reader sees the old file or the new, never half.

    Raises OutputError if writing fails, and ValueError or TypeError, with nothing written,
    if `obj` is not JSON (NaN and infinities included).
    """
    data = json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    try:
        _write_atomic(path.parent, path.name, data.encode())
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error}") from error


def _write_atomic(
    directory: Path,
    name: str,
    data: bytes,
    *,
    turn: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> None:
    """Write `data` to a reserved temporary name in `directory`, then rename it to `name`.
    Creating and renaming happen in a `turn`; writing the data does not.

    Only a regular file at `name` is replaced: anything else there is a clash. (A directory
    made at `name` between the check and the rename is a clash too: the rename fails.)
    """
    target = directory / name
    temporary = directory / f"{_TEMP_PREFIX}{secrets.token_hex(8)}{_TEMP_SUFFIX}"
    descriptor, created = -1, False
    try:
        with turn():
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISREG(target.lstat().st_mode):
                    raise IsADirectoryError(errno.EISDIR, "not a regular file", str(target))
            # os.open and os.write rather than a file object: a save is one of the parse
            # stage's costs per page, and a file object adds an ioctl, a seek and a buffer
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            descriptor = os.open(temporary, flags, 0o666)  # as open(..., "xb")
            created = True
        _write_all(descriptor, data)
        # Closed once only: a close that fails still frees the number, which another
        # thread may reuse at once. Its error (a delayed write failing) is the save's.
        closing, descriptor = descriptor, -1
        os.close(closing)
        with turn():
            os.replace(temporary, target)
    except BaseException:  # Ctrl-C included: no descriptor and no temporary is left behind
        if descriptor >= 0:
            with contextlib.suppress(OSError):
                os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):
                temporary.unlink()
        raise


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


class JsonlWriter:
    """Appends one JSON object per line to `path`, each line on disk as soon as it is written.

    The file is unbuffered: a line that fails to write (a full disk) is cut off again at
    once, so the file holds whole lines only and nothing is left in a buffer to fail again
    at close. A crash can still cut the last line short; `append=True` (a resumed crawl)
    first drops such a torn line so that every line of the file parses. Not thread-safe:
    one collector thread writes each file.
    """

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self._path = path
        try:
            # O_NOFOLLOW: a link put in place since `refuse_links` is refused too
            flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            flags |= os.O_RDWR | os.O_APPEND if append else os.O_WRONLY | os.O_TRUNC
            descriptor = os.open(path, flags, 0o666)
            self._file = io.FileIO(descriptor, "ab" if append else "wb")
            if append:
                _drop_torn_tail(descriptor)
            self._end = self._file.seek(0, os.SEEK_END)  # where the last whole line ends
        except OSError as error:
            raise OutputError(f"cannot open {path}: {error}") from error

    def write(self, *objs: Mapping[str, Any]) -> None:
        """Write each of `objs` as one line, all of them together (one write, unless the
        system takes it in parts).

        Raises OutputError if writing fails, with the file as it was before, and ValueError
        or TypeError, with nothing written, if an object is not JSON (NaN and infinities too).
        """
        line = memoryview(b"".join(_json_line(obj) for obj in objs))
        try:
            written = 0
            while written < len(line):  # an unbuffered write may take only part of it
                written += self._file.write(line[written:]) or 0
        except OSError as error:
            with contextlib.suppress(OSError):
                self._file.truncate(self._end)
            raise OutputError(f"cannot write {self._path}: {error}") from error
        self._end += len(line)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as error:
            raise OutputError(f"cannot close {self._path}: {error}") from error

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _json_line(obj: Mapping[str, Any]) -> bytes:
    """`obj` as compact UTF-8 JSON and a newline; JSON escapes any newline inside a value.

    Text holding a lone surrogate (undecodable input) has no UTF-8 form; it is written
    with ASCII escapes instead, so the record is kept.
    """
    text = _COMPACT.encode(obj)
    try:
        return (text + "\n").encode()
    except UnicodeEncodeError:
        return (_COMPACT_ASCII.encode(obj) + "\n").encode()


# json.dumps with any non-default option builds a new encoder per call: these are built once.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_COMPACT_ASCII = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _drop_torn_tail(descriptor: int, chunk: int = 1 << 16) -> None:
    """Cut the file back to its last newline: what follows is a record a crash cut short.
    On the descriptor the writer opened, so that it is the file it appends to."""
    end = position = os.fstat(descriptor).st_size
    while position > 0:
        start = max(0, position - chunk)
        newline = os.pread(descriptor, position - start, start).rfind(b"\n")
        if newline >= 0:
            position = start + newline + 1
            break
        position = start
    if position < end:
        os.ftruncate(descriptor, position)


class OutputClaim:
    """One crawl's exclusive hold on an output directory, from before it looks at what
    the directory holds until its output is closed.

    Two crawls in one directory would share its state file and append to each other's
    records; a second one started with --resume or --overwrite took the state over and
    the first died of "database is locked". So the second is refused at once. The claim
    is flock on the directory itself: no file is added, and a crawl that dies lets go of
    it. Where the filesystem has no flock (some network mounts), crawls go unguarded.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise OutputError(f"cannot create the output directory {directory}: {error}") from error
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._descriptor)
            raise OutputError(
                f"{directory} is in use by another crawl: wait for it to end, or choose"
                " another output directory"
            ) from None
        except OSError as error:
            _log.info("cannot lock %s (%s): crawls there are not kept apart", directory, error)

    def release(self) -> None:
        os.close(self._descriptor)  # and with it the lock


def refuse_links(directory: Path, names: Iterable[str]) -> None:
    """Raise OutputError when one of `names` in `directory` is a symbolic link: the crawl
    would write where it points, outside the directory (pages.jsonl appended to any file
    the user may write, bodies saved in any directory). Checked as the crawl opens its
    output, before anything is fetched; stats.json was refused only at the end."""
    for name in names:
        if (directory / name).is_symlink():
            raise OutputError(
                f"{directory / name} is a symbolic link: a crawl writes only inside {directory}"
            )


class CrawlOutput:
    """The output directory of one crawl: pages.jsonl, skipped.jsonl, files/, stats.json."""

    def __init__(self, claim: OutputClaim, *, append: bool = False) -> None:
        """Open the claimed directory's files, and keep the claim until `close`;
        `append` continues a resumed crawl's JSONL files."""
        self.directory = directory = claim.directory
        self._claim = claim
        refuse_links(directory, (FILES_DIR, PAGES_FILE, SKIPPED_FILE, STATS_FILE))
        self._files = FileStore(directory / FILES_DIR)
        if append:
            self._files.remove_partials()
        self._pages = JsonlWriter(directory / PAGES_FILE, append=append)
        self._skipped = JsonlWriter(directory / SKIPPED_FILE, append=append)

    @property
    def files(self) -> FileStore:
        """Where response bodies are saved; the parse stage saves the HTML pages it parses."""
        return self._files

    def save_body(self, url: str, body: bytes) -> str:
        """Save a response body; return its path relative to the output directory."""
        return str(self._files.save(url, body))

    def record(self, page: Page) -> None:
        self._pages.write(page.to_json())

    def skipped(self, *skipped: Skipped) -> None:
        self._skipped.write(*(skip.to_json() for skip in skipped))

    def close(self, stats: StatsSnapshot | None) -> None:
        """Close the JSONL files and write the final stats.json, when there are stats;
        then give up the claim on the directory, whatever failed."""
        try:
            self._pages.close()
            self._skipped.close()
            if stats is not None:
                write_json_atomic(self.directory / STATS_FILE, stats.to_json())
        finally:
            self._claim.release()
