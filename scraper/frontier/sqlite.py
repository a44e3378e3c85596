"""The durable frontier: the crawl's state in one SQLite file, so a killed crawl resumes.

Each URL the crawl admits is one row that moves PENDING → LEASED → DONE:

    add ──► PENDING ──next_request──► LEASED ──done (its record is written)──► DONE
               ▲                         │
               └──── a new run ◄─────────┘   leases of a dead run are given back

The seen-set is the table itself (a unique index on the URL), so RAM holds only a batch
of queued URLs per host. Writes are grouped into transactions: the links of one page are
committed together before that page's record is written (`add_many`), and the state
changes of leases are committed at most every `COMMIT_EVERY` seconds. A crash can then
lose only state changes that the records on disk already prove (see `settle`).

WAL mode lets the commit be a sequential append, and `synchronous=NORMAL` skips the fsync
per commit: a killed process loses nothing committed; a power cut may lose the last
commits, which `settle` and re-fetching repair.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from scraper.errors import OutputError
from scraper.frontier.base import Admission
from scraper.frontier.scheduled import ScheduledFrontier
from scraper.records import Request
from scraper.urls import host_of

BATCH = 64  # queued URLs per host held in RAM; the rest stay on disk
RECENT = 32_768  # URLs of each table remembered in RAM (up to twice as many)
_MAX_PARAMETERS = 500  # SQLite allows at least 999 parameters per statement
COMMIT_EVERY = 0.5  # seconds between commits of lease state changes

PENDING, LEASED, DONE = 0, 1, 2
FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")  # a state file and what SQLite adds to it

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS urls (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    host INTEGER NOT NULL REFERENCES hosts (id),
    state INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    parent INTEGER REFERENCES urls (id),
    public_only INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_by_host ON urls (host, id) WHERE state = 0;
CREATE TABLE IF NOT EXISTS skipped (url TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

_LOAD = """
SELECT u.id, u.url, u.depth, u.public_only, p.url FROM urls AS u
LEFT JOIN urls AS p ON p.id = u.parent
WHERE u.host = ? AND u.state = 0 AND u.id > ? ORDER BY u.id LIMIT ?
"""


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _translating_errors(method: _Method) -> _Method:
    """`_storage` for the hot paths: a decorator costs less than a `with` per call."""

    @functools.wraps(method)
    def translated(self: SQLiteFrontier, *args: Any) -> Any:
        try:
            return method(self, *args)
        except sqlite3.Error as error:
            raise _output_error(self.path, error) from error

    return cast(_Method, translated)


class SQLiteFrontier(ScheduledFrontier):
    """A Frontier whose state survives the process: open the same file to resume.

    Opening gives back the leases a dead run left (LEASED → PENDING). Raises OutputError
    when the file cannot be opened or written, including when the disk is full.
    """

    def __init__(
        self,
        path: Path,
        *,
        per_host: int,
        delay: float = 0.0,
        max_pages: int | None = None,
    ) -> None:
        super().__init__(per_host=per_host, delay=delay)
        self.path = path
        self._max_pages = max_pages
        self._host_ids: dict[str, int] = {}
        self._cursor: dict[str, int] = {}  # per host: the last stored row loaded into RAM
        self._parent_id: tuple[str, int | None] = ("", None)  # cache: a page's links share it
        self._last_commit = time.monotonic()
        self._state_changes: list[tuple[int, str]] = []
        self._known_urls = _Recent(RECENT)  # surely in `urls`: no query needed
        self._known_skips = _Recent(RECENT)  # surely in `skipped`
        with self._storage():
            self._db = _connect_alone(path)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute("UPDATE urls SET state = ? WHERE state = ?", (PENDING, LEASED))
            self._host_ids = dict(self._db.execute("SELECT name, id FROM hosts"))
            self._load_counts()
            self._known_urls.whole = not self._admitted
            self._known_skips.whole = not self._db.execute("SELECT 1 FROM skipped").fetchone()

    # -- beyond the Frontier interface: resuming --------------------------------------------

    def settle(self, recorded: Iterable[str], skipped: Iterable[str] = ()) -> None:
        """Mark `recorded` URLs DONE and `skipped` ones as logged: the files say so.

        A run killed after writing a record but before committing its DONE left the URL
        LEASED (now PENDING); the record is the proof. Call before the crawl starts.
        """
        self._known_urls.whole = self._known_skips.whole = False  # rows it never saw
        with self._changed, self._storage():
            self._begin()
            for url in recorded:
                self._db.execute(
                    "INSERT INTO urls (url, host, state, depth, public_only) VALUES (?, ?, ?, 0, 0)"
                    " ON CONFLICT (url) DO UPDATE SET state = excluded.state",
                    (url, self._host_id(host_of(url)), DONE),
                )
            self._db.executemany(
                "INSERT OR IGNORE INTO skipped (url) VALUES (?)", ((url,) for url in skipped)
            )
            self._db.execute("COMMIT")
            self._load_counts()

    def settings(self) -> dict[str, Any]:
        """The settings saved by `save_settings` (empty for a new state)."""
        with self._changed, self._storage():
            rows = self._db.execute("SELECT name, value FROM settings")
            return {name: json.loads(value) for name, value in rows}

    def save_settings(self, settings: dict[str, Any]) -> None:
        with self._changed, self._storage():
            self._begin()
            self._db.executemany(
                "INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)",
                [(name, json.dumps(value)) for name, value in settings.items()],
            )
            self._db.execute("COMMIT")

    # -- storage hooks (called with the lock held) ------------------------------------------

    @_translating_errors
    def _store_add(self, request: Request) -> Admission:
        if request.origin in self._known_urls:
            return Admission.DUPLICATE
        if self._max_pages is not None and self._admitted >= self._max_pages:
            seen = self._store_has_seen(request.origin)
            return Admission.DUPLICATE if seen else Admission.MAX_PAGES
        host = host_of(request.origin)
        self._begin()
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO urls (url, host, state, depth, parent, public_only)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                request.origin,
                self._host_id(host),
                PENDING,
                request.depth,
                self._id_of_parent(request.parent),
                request.public_only,
            ),
        )
        self._known_urls.add(request.origin)
        if not inserted.rowcount:
            return Admission.DUPLICATE
        self._admitted += 1
        if not self._stored[host] and self._buffered(host) < BATCH:
            self._enqueue(request)
            self._cursor[host] = inserted.lastrowid or 0
        else:
            self._enqueue_stored(host)
        self._commit_if_due()
        return Admission.ADDED

    @_translating_errors
    def _store_has_seen(self, url: str) -> bool:
        if url in self._known_urls:
            return True
        if self._known_urls.whole:
            return False
        return self._db.execute("SELECT 1 FROM urls WHERE url = ?", (url,)).fetchone() is not None

    @_translating_errors
    def _store_seen_among(self, urls: set[str]) -> set[str]:
        seen = {url for url in urls if url in self._known_urls}
        found = set() if self._known_urls.whole else self._rows_among("urls", list(urls - seen))
        for url in found:
            self._known_urls.add(url)
        return seen | found

    @_translating_errors
    def _store_first_skips(self, urls: set[str]) -> set[str]:
        """Asks the table; stores nothing (see `_store_skips_logged`). The RAM cache makes
        a second report of a URL, before it is stored, not a first one."""
        unknown = [url for url in urls if url not in self._known_skips]
        stored = set() if self._known_skips.whole else self._rows_among("skipped", unknown)
        for url in unknown:
            self._known_skips.add(url)
        return set(unknown) - stored

    @_translating_errors
    def _store_skips_logged(self, urls: list[str]) -> None:
        if urls:
            self._begin()
            self._db.executemany(
                "INSERT OR IGNORE INTO skipped (url) VALUES (?)", ((url,) for url in urls)
            )
            for url in urls:
                self._known_skips.add(url)

    @_translating_errors
    def _store_load(self, host: str) -> list[Request]:
        cursor = self._cursor.get(host, 0)
        rows = self._db.execute(_LOAD, (self._host_id(host), cursor, BATCH)).fetchall()
        if rows:
            self._cursor[host] = rows[-1][0]
        return [
            Request(url, depth, parent, public_only=bool(public_only))
            for _, url, depth, public_only, parent in rows
        ]

    def _store_leased(self, request: Request) -> None:
        self._set_state(request, LEASED)

    def _store_done(self, request: Request) -> None:
        self._set_state(request, DONE)

    @_translating_errors
    def _store_commit(self) -> None:
        if self._state_changes:
            self._begin()
            self._db.executemany("UPDATE urls SET state = ? WHERE url = ?", self._state_changes)
            self._state_changes.clear()
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._last_commit = time.monotonic()

    def _store_close(self) -> None:
        try:
            self._store_commit()
        finally:
            self._db.close()

    # -- helpers ----------------------------------------------------------------------------

    def _set_state(self, request: Request, state: int) -> None:
        """Note a lease or a finished URL; written in one batch at the next commit.

        Nothing reads a row's state before then: refills read past a per-host cursor,
        and a crash that loses the batch loses only what resuming repairs anyway."""
        self._state_changes.append((state, request.origin))
        self._commit_if_due()

    def _begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN")

    def _commit_if_due(self) -> None:
        if time.monotonic() - self._last_commit >= COMMIT_EVERY:
            self._store_commit()

    def _rows_among(self, table: str, urls: list[str]) -> set[str]:
        """The URLs of `urls` that `table` holds, asked in as few queries as SQLite allows."""
        found: set[str] = set()
        for start in range(0, len(urls), _MAX_PARAMETERS):
            chunk = urls[start : start + _MAX_PARAMETERS]
            marks = ", ".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT url FROM {table} WHERE url IN ({marks})", chunk)
            found.update(url for (url,) in rows)
        return found

    def _host_id(self, host: str) -> int:
        known = self._host_ids.get(host)
        if known is None:
            self._begin()
            self._db.execute("INSERT INTO hosts (name) VALUES (?)", (host,))
            known = self._host_ids[host] = self._db.execute(
                "SELECT id FROM hosts WHERE name = ?", (host,)
            ).fetchone()[0]
        return known

    def _id_of_parent(self, parent: str | None) -> int | None:
        if parent is None:
            return None
        if self._parent_id[0] != parent:
            row = self._db.execute("SELECT id FROM urls WHERE url = ?", (parent,)).fetchone()
            self._parent_id = (parent, row[0] if row else None)
        return self._parent_id[1]

    def _load_counts(self) -> None:
        """Count the PENDING rows per host: they are queued, in storage."""
        self._admitted = self._db.execute("SELECT count(*) FROM urls").fetchone()[0]
        self._queues.clear()
        self._stored.clear()
        self._turns.clear()
        self._cursor.clear()
        self._queued = 0
        pending = self._db.execute(
            "SELECT h.name, count(*) FROM urls AS u JOIN hosts AS h ON h.id = u.host"
            " WHERE u.state = ? GROUP BY u.host ORDER BY min(u.id)",
            (PENDING,),
        )
        for host, count in pending:
            self._enqueue_stored(host, count)

    @contextlib.contextmanager
    def _storage(self) -> Iterator[None]:
        """Turn SQLite's errors (disk full, read-only, corrupt) into an OutputError."""
        try:
            yield
        except sqlite3.Error as error:
            raise _output_error(self.path, error) from error


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold the state file at `path` for as long as the `with` lasts, so that no crawl
    opens it meanwhile; OutputError when a running crawl holds it. Nothing to hold where
    there is no file, an empty one (SQLite would write its header into it, and a crawl
    then took it for an earlier crawl's state), or one that is no database (damaged).
    Nothing is written to the file (a state held by no crawl may be another program's),
    though SQLite, closing, moves into it what a WAL another program left behind holds."""
    with contextlib.ExitStack() as holding:
        with contextlib.suppress(sqlite3.DatabaseError, OSError):
            if path.stat().st_size > 0:
                holding.enter_context(contextlib.closing(_connect_alone(path)))
        yield


def remove_state(path: Path) -> None:
    """Delete the state file at `path` and what SQLite added to it. Under `held(path)`:
    deleted under a running crawl, its state would be lost, and the next crawl's state
    would be a new file beside it."""
    for suffix in FILE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()


def _connect_alone(path: Path) -> sqlite3.Connection:
    """A connection that holds the state file for this crawl alone until it is closed.

    Two crawls on one state would take each other's leases for a dead run's (opening gives
    them back) and fetch and record the same URLs; the second soon died of "database is
    locked". The output directory's claim (sinks.OutputClaim) does not cover a state file
    elsewhere, or a library crawl with no output directory. So the connection takes
    SQLite's exclusive lock as it opens and keeps it (locking_mode EXCLUSIVE, which in WAL
    mode, set after it, also keeps the WAL's index in memory, with no -shm file), and a
    second crawl is refused at once (no busy wait: `timeout=0`). Other programs cannot
    read the file meanwhile either."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute("BEGIN EXCLUSIVE")  # takes the lock now, not at the first write
        db.execute("COMMIT")
    except sqlite3.OperationalError as error:
        db.close()
        if "locked" not in str(error):  # SQLITE_BUSY's message (3.10 has no error codes)
            raise
        raise OutputError(
            f"the crawl state {path} is in use by another crawl: wait for it to end, or"
            " choose another state file"
        ) from None
    except BaseException:
        db.close()
        raise
    return db


def _output_error(path: Path, error: sqlite3.Error) -> OutputError:
    return OutputError(f"cannot use the crawl state {path}: {error}")


class _Recent:
    """A set of the most recently added strings: at most `2 * size`, and once it has held
    `size`, never fewer than the last `size` added.

    Most lookups in a crawl are for URLs it met moments ago (every page of a site links
    its menu), so remembering the recent ones spares most queries, in bounded memory.

    `whole` says that it holds every string of its table: set by the owner for a table that
    was empty when opened, it stays true until strings are first forgotten. A string it
    lacks is then not in the table either: a new crawl asks SQLite nothing about the links
    it meets (≈ 2 queries a page) until RAM first forgets, after 32,768 to 65,536 URLs.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._new: set[str] = set()
        self._old: set[str] = set()
        self.whole = False

    def __contains__(self, item: str) -> bool:
        return item in self._new or item in self._old

    def add(self, item: str) -> None:
        if len(self._new) >= self._size:
            self.whole = self.whole and not self._old
            self._old, self._new = self._new, set()
        self._new.add(item)
