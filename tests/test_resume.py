"""Never lose a crawl: `scrape` interrupted (Ctrl-C, kill -9, a full disk) and resumed, end to
end in a subprocess against the demo site on 127.0.0.1.

The site answers slowly enough that a crawl is still running when a test interrupts it; no
assertion bounds wall-clock time, and every wait has a generous limit that only a hang reaches.
A page whose extraction kills its parse process is covered by test_pipeline.py
(`test_a_page_that_kills_its_parse_process_is_recorded_and_the_crawl_goes_on`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonl import read_jsonl
from processes import (
    GRACE,
    RUN_TIMEOUT,
    SIGNAL_TIMEOUT,
    kill_session,
    scrape,
    scrape_command,
    session_processes,
    urls_recorded,
    wait_for,
    write_list,
)

from scraper import crawl
from scraper.demo import RunningSite, SiteSpec, file_paths, page_paths, running_site
from scraper.errors import OutputError
from scraper.sinks import PAGES_FILE as PAGES
from scraper.sinks import SKIPPED_FILE as SKIPPED

DEPTH = ["--depth", "10"]  # deeper than any page of the sites used here
QUIET = ["--workers", "8", "--parsers", "2", "--timeout", "10", "--quiet"]
FILE_LIMITS = {  # RLIMIT_FSIZE: any one file may grow to this many bytes, then EFBIG
    "as the crawl starts": 40_000,  # not even the state's schema fits
    "during the crawl": 150_000,  # a full pages.jsonl would not fit either
}
RECORDS_LIMIT = 50_000  # pages.jsonl fills up after about 60 records
OUTPUT_FILES = ("state.sqlite", "pages.jsonl", "skipped.jsonl", "stats.json", "files/")

# Sets RLIMIT_FSIZE, then becomes `scrape` (argv: limit, then the command).
_LIMIT_THEN_EXEC = """
import os, resource, signal, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.fixture(scope="module")
def slow_site() -> Iterator[RunningSite]:
    """About 300 URLs, each answered after 30 ms: a crawl of a few seconds to interrupt."""
    with running_site(SiteSpec(pages=300, fanout=5, latency_ms=30)) as site:
        yield site


def every_url(site: RunningSite) -> list[str]:
    """What a complete crawl of the demo site records: every page and every file."""
    return sorted(site.url_for(path) for path in [*page_paths(site.spec), *file_paths(site.spec)])


# Runs the interpreter's arguments that follow it, with SIGTERM ignored across the exec.
IGNORING_SIGTERM = (
    "import os, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def start(
    cwd: Path, *args: str, file_limit: int | None = None, sigterm_ignored: bool = False
) -> subprocess.Popen[bytes]:
    """`scrape ARGS` in a session of its own (so the test can signal or kill all of it),
    with its stderr in cwd/stderr.txt."""
    command = scrape_command(*args)
    if file_limit is not None:
        command = limited(file_limit, *args)
    elif sigterm_ignored:
        command = [sys.executable, "-c", IGNORING_SIGTERM, *command[1:]]
    with (cwd / "stderr.txt").open("w") as stderr:
        return subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def limited(file_limit: int, *args: str) -> list[str]:
    """`scrape ARGS` where writing a file past `file_limit` bytes fails with EFBIG, as on a
    full disk. The limit is set by a small program that then execs `scrape` (a preexec_fn
    is unsafe here: the test process serves the demo site from a thread); the SIGXFSZ that
    would kill the process is ignored, and stays ignored across exec."""
    return [sys.executable, "-c", _LIMIT_THEN_EXEC, str(file_limit), *scrape_command(*args)]


def stderr_in(cwd: Path) -> str:
    return (cwd / "stderr.txt").read_text()


def end_of(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for a run to exit and for every process of its session to go; its exit status."""
    status = process.wait(timeout)
    lingering = wait_for(lambda: not session_processes(process.pid), GRACE)
    assert lingering, session_processes(process.pid)
    return status


def run(cwd: Path, *args: str, file_limit: int | None = None) -> tuple[int, str]:
    """`scrape ARGS` to its end: its exit status and stderr."""
    process = start(cwd, *args, file_limit=file_limit)
    try:
        status = end_of(process, RUN_TIMEOUT)
    finally:
        kill_session(process)
    return status, stderr_in(cwd)


def lines_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run_until(cwd: Path, args: list[str], pages: Path, records: int) -> subprocess.Popen[bytes]:
    """Start `scrape ARGS` and return it, still running, once `pages` holds `records` lines."""
    process = start(cwd, *args)
    reached = wait_for(
        lambda: process.poll() is not None or lines_in(pages) >= records, RUN_TIMEOUT
    )
    assert reached, f"no {records} records within {RUN_TIMEOUT} s"
    assert process.poll() is None, (
        f"the crawl ended before the test could stop it: {stderr_in(cwd)}"
    )
    return process


def assert_complete_crawl(output: Path, site: RunningSite) -> list[dict[str, Any]]:
    """The output of a crawl finished over several runs is the output of one crawl."""
    data = (output / "pages.jsonl").read_bytes()
    assert data.endswith(b"\n")
    records = read_jsonl(output / "pages.jsonl")  # each line must parse
    counts = Counter(record["url"] for record in records)
    assert [url for url, count in counts.items() if count > 1] == [], "recorded twice"
    assert sorted(counts) == every_url(site)
    assert all(record["ok"] for record in records), [r for r in records if not r["ok"]][:3]
    stats = json.loads((output / "stats.json").read_text())
    assert stats["pages"] == stats["ok"] == len(records), "stats.json describes the whole crawl"
    skipped = Counter(entry["url"] for entry in read_jsonl(output / "skipped.jsonl"))
    assert [url for url, count in skipped.items() if count > 1] == [], "logged twice"
    return records


def assert_saved_files_complete(output: Path, records: list[dict[str, Any]]) -> None:
    saved = [record for record in records if record["path"] is not None]
    assert len(saved) == len(records)
    for record in saved:
        body = (output / record["path"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == record["sha256"], record["url"]
    assert sorted(p.name for p in (output / "files").rglob("_tmp-*.part")) == []


# -- interrupted, then resumed -------------------------------------------------------------


def test_resume_after_ctrl_c_completes_the_crawl(slow_site: RunningSite, tmp_path: Path) -> None:
    listing = write_list(tmp_path, slow_site.url)
    command = [listing.name, *DEPTH, *QUIET]
    output = tmp_path / "output"
    process = run_until(tmp_path, command, output / "pages.jsonl", 30)
    try:
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        status = end_of(process, SIGNAL_TIMEOUT)
    finally:
        kill_session(process)
    assert status == 130, stderr_in(tmp_path)
    assert "Traceback" not in stderr_in(tmp_path)
    assert "interrupted" in stderr_in(tmp_path)
    interrupted = read_jsonl(output / "pages.jsonl")
    assert 30 <= len(interrupted) < len(every_url(slow_site))

    status, stderr = run(tmp_path, *command, "--resume")
    assert status == 0, stderr
    records = assert_complete_crawl(output, slow_site)
    assert records[: len(interrupted)] == interrupted, "the earlier records are kept as they were"


@pytest.mark.parametrize(
    ("signum", "expected"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_a_crawl_started_ignoring_sigterm(
    slow_site: RunningSite, tmp_path: Path, signum: int, expected: int
) -> None:
    """SIGTERM stays ignored, as Python leaves an ignored SIGINT (`nohup`, a supervisor
    that chose so); Ctrl-C still stops the crawl, and its processes, which are ended with
    the SIGTERM they inherited ignored."""
    listing = write_list(tmp_path, slow_site.url)
    output = tmp_path / "output"
    process = start(tmp_path, listing.name, *DEPTH, *QUIET, sigterm_ignored=True)
    try:
        assert wait_for(lambda: lines_in(output / "pages.jsonl") >= 30, RUN_TIMEOUT)
        os.kill(process.pid, signum)
        status = end_of(process, RUN_TIMEOUT)  # and every process of its session gone
    finally:
        kill_session(process)
    assert status == expected, stderr_in(tmp_path)
    if signum == signal.SIGTERM:
        assert_complete_crawl(output, slow_site)


def test_a_crawl_told_to_stop_with_a_process_that_is_gone_stops_at_once(tmp_path: Path) -> None:
    """`--stop-with` (scrape bench's): the process it names is not this one's parent, so it
    is gone, whatever now bears its number (here init)."""
    listing = write_list(tmp_path, "http://127.0.0.1:9/")
    status, stderr = run(tmp_path, listing.name, *QUIET, "--stop-with", "1")
    assert status == 130, stderr
    assert "interrupted" in stderr


def test_resume_after_kill_9_at_random_points_completes_the_crawl(
    slow_site: RunningSite, tmp_path: Path
) -> None:
    listing = write_list(tmp_path, slow_site.url)
    command = [listing.name, *DEPTH, *QUIET]
    output = tmp_path / "output"
    rng = random.Random(20240604)
    total = len(every_url(slow_site))
    kill_points = sorted(rng.sample(range(5, total * 3 // 4), 3))
    for number, kill_at in enumerate(kill_points):
        again = ["--resume"] if number else []
        process = run_until(tmp_path, [*command, *again], output / "pages.jsonl", kill_at)
        try:
            # Somewhere inside the write cycle, not always just after a record.
            time.sleep(rng.uniform(0, 0.05))
            os.killpg(process.pid, signal.SIGKILL)  # the whole session, as a power cut would
            end_of(process, SIGNAL_TIMEOUT)
        finally:
            kill_session(process)

    status, stderr = run(tmp_path, *command, "--resume")
    assert status == 0, stderr
    records = assert_complete_crawl(output, slow_site)
    assert_saved_files_complete(output, records)


# -- an output directory that holds a crawl ------------------------------------------------


def test_a_finished_crawl_is_neither_replaced_nor_mixed_without_asking(
    fresh_site: RunningSite, tmp_path: Path
) -> None:
    listing = write_list(tmp_path, fresh_site.url)
    command = [listing.name, *DEPTH, *QUIET]
    output = tmp_path / "output"
    done = scrape(tmp_path, *command)
    assert done.returncode == 0, done.stderr
    first = (output / "pages.jsonl").read_bytes()
    hits = fresh_site.hits

    again = scrape(tmp_path, *command)
    assert again.returncode == 2
    assert "--resume" in again.stderr
    assert "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert (output / "pages.jsonl").read_bytes() == first

    other_depth = scrape(tmp_path, listing.name, "--depth", "2", *QUIET, "--resume")
    assert other_depth.returncode == 2
    assert "depth" in other_depth.stderr
    assert "Traceback" not in other_depth.stderr
    assert (output / "pages.jsonl").read_bytes() == first

    nothing_there = scrape(tmp_path, *command, "--resume", "-o", "empty")
    assert nothing_there.returncode == 2
    assert "empty" in nothing_there.stderr
    assert "Traceback" not in nothing_there.stderr
    assert fresh_site.hits == hits, "none of the refused runs fetched anything"

    resumed = scrape(tmp_path, *command, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (output / "pages.jsonl").read_bytes() == first, "a finished crawl has nothing to add"
    assert fresh_site.hits == hits, "and nothing to fetch"
    stats = json.loads((output / "stats.json").read_text())
    assert stats["pages"] == first.count(b"\n"), "its earlier records still count"
    assert stats["resumed_pages"] == stats["pages"], "all of them from the earlier run"
    assert stats["pages_per_second"] == 0, "this run's rate: it recorded nothing"

    overwritten = scrape(tmp_path, *command, "--overwrite")
    assert overwritten.returncode == 0, overwritten.stderr
    expected = sorted(
        fresh_site.url_for(path)
        for path in [*page_paths(fresh_site.spec), *file_paths(fresh_site.spec)]
    )
    assert urls_recorded(output) == expected  # once each: started afresh, not appended
    stats = json.loads((output / "stats.json").read_text())
    assert stats["pages"] == len(expected)


def test_a_memory_frontier_crawl_replaces_or_refuses_the_state_an_earlier_crawl_left(
    fresh_site: RunningSite, tmp_path: Path
) -> None:
    """Its frontier is in RAM, but the directory's state.sqlite is an earlier crawl's: left
    behind by --overwrite, a later --resume took every URL for done and recorded none."""
    listing = write_list(tmp_path, fresh_site.url)
    output = tmp_path / "output"
    assert scrape(tmp_path, listing.name, *QUIET).returncode == 0
    in_memory = [listing.name, *QUIET, "--frontier", "memory"]

    refused = scrape(tmp_path, *in_memory)
    assert refused.returncode == 2
    assert "state.sqlite" in refused.stderr

    assert scrape(tmp_path, *in_memory, "--overwrite").returncode == 0
    assert not (output / "state.sqlite").exists()
    resumed = scrape(tmp_path, listing.name, *QUIET, "--resume")
    assert resumed.returncode == 2
    assert "nothing to resume" in resumed.stderr
    assert urls_recorded(output) == [fresh_site.url]


_DAMAGED = {
    "not JSON": (PAGES, b"garbage{"),
    "not an object": (PAGES, b"[1, 2]"),
    "no url": (PAGES, b'{"nourl": 5}'),
    "an error that is no object": (PAGES, b'{"url": "http://a.example/", "error": "boom"}'),
    "bytes that are no number": (PAGES, b'{"url": "http://a.example/", "bytes": "abc"}'),
    "a skip without url": (SKIPPED, b'{"reason": "offsite"}'),
    "nested past the parser's depth": (PAGES, b"[" * 100_000 + b"]" * 100_000),
}


@pytest.mark.parametrize("damage", sorted(_DAMAGED))
def test_a_damaged_line_stops_the_resume_with_its_place(
    demo_site: RunningSite, tmp_path: Path, damage: str
) -> None:
    """A crash tears only the last line, which the resume drops: any other bad line is the
    file edited or damaged. It left its URL done and unrecorded, or raised a traceback."""
    out = tmp_path / "out"
    options: dict[str, Any] = {"output": out, "state": out / "state.sqlite", "depth": 1}
    assert list(crawl([demo_site.url], **options))
    name, line = _DAMAGED[damage]
    lines = (out / name).read_bytes().splitlines(keepends=True)
    lines.insert(1, line + b"\n")
    (out / name).write_bytes(b"".join(lines))
    with pytest.raises(OutputError, match=f"line 2 of .*{name}"):
        list(crawl([demo_site.url], resume=True, **options))


# -- an output directory that cannot be written --------------------------------------------


def _output_is_a_file(tmp_path: Path) -> str:
    (tmp_path / "taken").write_text("a file where the output directory should go\n")
    return "taken"


def _parent_is_a_file(tmp_path: Path) -> str:
    (tmp_path / "taken").write_text("a file where a directory should be\n")
    return "taken/output"


def _read_only_directory(tmp_path: Path) -> str:
    (tmp_path / "locked").mkdir(mode=0o555)  # stops writes for every user but root
    return "locked/output"


UNWRITABLE = {"output is a file": _output_is_a_file, "parent is a file": _parent_is_a_file}
if os.geteuid() != 0:
    UNWRITABLE["read-only directory"] = _read_only_directory


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_an_unwritable_output_exits_2_before_anything_is_fetched(
    fresh_site: RunningSite, tmp_path: Path, case: str
) -> None:
    listing = write_list(tmp_path, fresh_site.url)
    output = UNWRITABLE[case](tmp_path)
    try:
        done = scrape(tmp_path, listing.name, *DEPTH, *QUIET, "-o", output)
    finally:
        for directory in tmp_path.iterdir():
            if directory.is_dir():
                directory.chmod(0o755)
    assert done.returncode == 2
    assert output.split("/")[0] in done.stderr
    assert "Traceback" not in done.stderr
    assert fresh_site.hits == {}, "nothing may be fetched for a crawl that cannot be kept"


# -- a full disk ---------------------------------------------------------------------------


@pytest.mark.parametrize("when", sorted(FILE_LIMITS))
def test_a_full_disk_stops_the_crawl_cleanly_and_resume_completes_it(
    slow_site: RunningSite, tmp_path: Path, when: str
) -> None:
    listing = write_list(tmp_path, slow_site.url)
    command = [listing.name, *DEPTH, *QUIET]
    output = tmp_path / "output"
    status, stderr = run(tmp_path, *command, file_limit=FILE_LIMITS[when])
    assert "Traceback" not in stderr, stderr
    assert status == 2, stderr
    assert "scrape: error:" in stderr
    named = [name for name in OUTPUT_FILES if name in stderr]
    assert named, f"the message says what could not be written: {stderr}"
    data = (output / "pages.jsonl").read_bytes()
    assert data == b"" or data.endswith(b"\n")
    stopped = read_jsonl(output / "pages.jsonl")  # each line must parse
    if when == "during the crawl":
        assert stopped, "the limit was meant to be reached after the crawl began"
    assert len(stopped) < len(every_url(slow_site))

    status, stderr = run(tmp_path, *command, "--resume")
    assert status == 0, stderr
    records = assert_complete_crawl(output, slow_site)
    assert_saved_files_complete(output, records)


def test_a_full_disk_while_writing_records_stops_the_crawl_cleanly(
    slow_site: RunningSite, tmp_path: Path
) -> None:
    """The records file is the one that fills up. With the default frontier the state's
    write-ahead log always reaches the per-file limit first, so this run keeps its state in
    memory: what is checked is the clean stop, not the resume."""
    listing = write_list(tmp_path, slow_site.url)
    output = tmp_path / "output"
    command = [listing.name, *DEPTH, *QUIET, "--frontier", "memory"]
    status, stderr = run(tmp_path, *command, file_limit=RECORDS_LIMIT)
    assert "Traceback" not in stderr, stderr
    assert status == 2, stderr
    assert "pages.jsonl" in stderr
    data = (output / "pages.jsonl").read_bytes()
    assert data.endswith(b"\n"), f"a torn last line: {data[-80:]!r}"
    assert 0 < len(read_jsonl(output / "pages.jsonl")) < len(every_url(slow_site))
