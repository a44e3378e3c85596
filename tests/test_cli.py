"""The `scrape` command, run as a subprocess against the demo site on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from jsonl import read_jsonl
from processes import (
    GRACE,
    RUN_TIMEOUT,
    SIGNAL_TIMEOUT,
    kill_session,
    loaded_by_import,
    python,
    running,
    scrape,
    scrape_command,
    session_processes,
    urls_recorded,
    wait_for,
    write_list,
)

from scraper.cli import _open_list, main
from scraper.demo import SiteSpec, running_site
from scraper.errors import ScraperError
from scraper.pipeline import Crawler
from scraper.urls import BadLine, ListedURL, read_url_list

FAST = ["--parsers", "2", "--retries", "0", "--timeout", "10"]
OPTIONS = [
    "-o",
    "--output",
    "--depth",
    "--max-pages",
    "--allow-domain",
    "--workers",
    "--per-host",
    "--parsers",
    "--fetch",
    "--parse",
    "--timeout",
    "--max-bytes",
    "--retries",
    "--user-agent",
    "--no-files",
    "-q",
    "--quiet",
    "--version",
    "-h",
    "--help",
]


# -- the URL list and the exit status ----------------------------------------------------


def test_a_mixed_list_reports_bad_lines_and_records_every_valid_url(demo_site, tmp_path):
    site = demo_site
    good = [site.url, site.url_for("/page/3"), site.url_for("/files/0.bin")]
    missing, unreachable = site.url_for("/status/404"), "http://127.0.0.1:1/"
    listing = write_list(
        tmp_path,
        "# a comment",  # 1
        "",  # 2
        good[0],  # 3
        "ftp://example.com/file.txt",  # 4: bad scheme
        f"{site.url_for('/page/1')} {site.url_for('/page/2')}",  # 5: space inside
        "http://",  # 6: no host
        missing,  # 7
        "   # an indented comment",  # 8
        unreachable,  # 9
        f"  {good[1]}  ",  # 10
        "http:///no-host",  # 11: no host either
        good[2],  # 12
    )
    done = scrape(tmp_path, listing.name, *FAST)
    assert done.returncode == 1, done.stderr
    for number in (4, 5, 6, 11):
        assert f"list.txt:{number}:" in done.stderr
    for number in (1, 2, 3, 7, 8, 9, 10, 12):
        assert f"list.txt:{number}:" not in done.stderr
    assert "Traceback" not in done.stderr

    records = {record["url"]: record for record in read_jsonl(tmp_path / "output/pages.jsonl")}
    assert urls_recorded(tmp_path / "output") == sorted([*good, missing, unreachable])
    assert all(records[url]["ok"] for url in good)
    assert records[missing]["error"]["kind"] == "http"
    assert records[unreachable]["error"]["kind"] == "connect"
    skipped = read_jsonl(tmp_path / "output/skipped.jsonl")
    invalid = [entry["detail"].split(":")[0] for entry in skipped if entry["reason"] == "invalid"]
    assert sorted(invalid) == ["line 11", "line 4", "line 5", "line 6"]


def test_all_good_exits_0(demo_site, tmp_path):
    listing = write_list(tmp_path, demo_site.url, demo_site.url_for("/page/7"))
    done = scrape(tmp_path, listing.name, "--quiet", *FAST)
    assert done.returncode == 0, done.stderr
    assert urls_recorded(tmp_path / "output") == [demo_site.url, demo_site.url_for("/page/7")]
    stats = json.loads((tmp_path / "output/stats.json").read_text())
    assert stats["pages"] == stats["ok"] == 2


def test_an_invalid_line_alone_makes_the_run_exit_1(demo_site, tmp_path):
    listing = write_list(tmp_path, demo_site.url, "gopher://example.com/")
    done = scrape(tmp_path, listing.name, "--quiet", *FAST)
    assert done.returncode == 1, done.stderr
    assert "list.txt:2:" in done.stderr
    records = read_jsonl(tmp_path / "output/pages.jsonl")
    assert [(record["url"], record["ok"]) for record in records] == [(demo_site.url, True)]


def test_an_unwritable_output_directory_exits_2(demo_site, tmp_path):
    listing = write_list(tmp_path, demo_site.url)
    (tmp_path / "taken").write_text("a file where the output directory should go\n")
    done = scrape(tmp_path, listing.name, "-o", "taken/out", *FAST)
    assert done.returncode == 2
    assert "taken" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_list_without_a_valid_url_exits_2(tmp_path):
    listing = write_list(tmp_path, "# nothing to see", "ftp://example.com/", "http://")
    done = scrape(tmp_path, listing.name, *FAST)
    assert done.returncode == 2
    assert "no valid URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_list_exits_2_with_a_message(tmp_path):
    done = scrape(tmp_path, "no-such-list.txt", *FAST)
    assert done.returncode == 2
    assert "no-such-list.txt" in done.stderr
    assert "Traceback" not in done.stderr


def test_dash_reads_the_list_from_stdin(demo_site, tmp_path):
    stdin = f"# from a pipe\n{demo_site.url_for('/page/2')}\n"
    done = scrape(tmp_path, "-", "-o", "piped", "--quiet", *FAST, stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert urls_recorded(tmp_path / "piped") == [demo_site.url_for("/page/2")]


def test_a_line_that_is_not_utf8_is_reported_and_the_others_crawled(demo_site, tmp_path):
    listed = [demo_site.url, demo_site.url_for("/page/2")]
    (tmp_path / "list.txt").write_bytes(
        f"{listed[0]}\n\xff\xfe junk\n{listed[1]}\n".encode("latin-1")
    )
    done = scrape(tmp_path, "list.txt", "--quiet", *FAST)
    assert done.returncode == 1, done.stderr
    assert "list.txt:2: skipped '\\\\xff\\\\xfe junk': not UTF-8 text" in done.stderr
    assert urls_recorded(tmp_path / "output") == sorted(listed)
    skipped = read_jsonl(tmp_path / "output/skipped.jsonl")
    assert [
        (entry["url"], entry["detail"]) for entry in skipped if entry["reason"] == "invalid"
    ] == [("\\xff\\xfe junk", "line 2: not UTF-8 text")]


def test_standard_input_that_is_not_utf8_is_read_line_by_line(monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(b"http://a.example/\n\xff\n"), encoding="ascii")
    monkeypatch.setattr(sys, "stdin", stdin)
    with _open_list("-") as lines:
        items = list(read_url_list(lines))
    assert items == [ListedURL(1, "http://a.example/"), BadLine(2, "\\xff", "not UTF-8 text")]


def test_standard_input_that_is_a_text_stream_is_read_as_it_is(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("http://a.example/\n"))  # a caller's
    with _open_list("-") as lines:
        assert list(read_url_list(lines)) == [ListedURL(1, "http://a.example/")]


def test_messages_keep_their_brackets_and_stay_on_one_line_in_a_pipe(tmp_path):
    """No rich markup (a path's "[x]" is no style) and no wrapping at 80 columns: each
    message is one line a script can grep."""
    long_line = "ftp://" + "x" * 120
    listing = write_list(tmp_path, long_line, "http://127.0.0.1:1/")
    (tmp_path / "taken[x]").write_text("a file where the output directory should go\n")
    done = scrape(tmp_path, listing.name, "-o", "taken[x]/out", *FAST)
    assert done.returncode == 2
    assert f"list.txt:1: skipped {long_line!r}: scheme 'ftp' is not http or https\n" in done.stderr
    assert "cannot create the output directory taken[x]/out" in done.stderr


def test_an_allowed_domain_no_url_can_be_in_exits_2(tmp_path):
    """Found before anything starts; it was a traceback from inside the crawl."""
    listing = write_list(tmp_path, "http://127.0.0.1:1/")
    done = scrape(tmp_path, listing.name, "--allow-domain", "bad domain")
    assert done.returncode == 2
    assert "invalid domain 'bad domain'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "output").exists()


def test_a_stderr_that_cannot_be_written_loses_messages_not_the_crawl(demo_site, tmp_path):
    """`2>/dev/full`, or a pipe closed early: the bad line's message, the progress and the
    summary are lost; the records are not. The first message ended the run before it began."""
    listing = write_list(tmp_path, "ftp://example.com/", demo_site.url)
    assert _scrape_to_full_disk(tmp_path, listing.name, *FAST) == 1  # the invalid line
    assert urls_recorded(tmp_path / "output") == [demo_site.url]


def _scrape_to_full_disk(cwd: Path, *args: str) -> int:
    """`scrape ... 2>/dev/full`: every write to stderr fails."""
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [sys.executable, "-m", "scraper", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stderr=full,
            timeout=RUN_TIMEOUT,
            check=False,
        ).returncode


def _scrape_to_closed_stderr(cwd: Path, *args: str) -> int:
    """`scrape ... 2>&1 | head -0`: stderr is a pipe whose reader has gone."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scraper", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    process.stderr.close()  # type: ignore[union-attr]
    return process.wait(timeout=RUN_TIMEOUT)


@pytest.mark.parametrize("stderr", ["closed pipe", "full disk"])
def test_a_finished_crawl_whose_messages_were_lost_exits_120(demo_site, tmp_path, stderr):
    """Python's own exit says 120; it cannot here, since a failed flush drops what it held.
    On a closed pipe rich raised SystemExit(1) from the summary: a finished crawl exited 1."""
    listing = write_list(tmp_path, demo_site.url)
    scrape_to = _scrape_to_closed_stderr if stderr == "closed pipe" else _scrape_to_full_disk
    assert scrape_to(tmp_path, listing.name, *FAST) == 120
    assert urls_recorded(tmp_path / "output") == [demo_site.url]


def test_a_terminal_that_goes_away_during_the_crawl_loses_the_messages_not_the_crawl(
    demo_site, tmp_path
):
    """A hung-up terminal gives EIO, not a broken pipe: stopping the live line raised it,
    and a crawl that succeeded ended in a traceback and exit status 1."""
    listing = write_list(tmp_path, demo_site.url_for("/slow?seconds=2"))
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "scraper", listing.name, *FAST],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            env={**os.environ, "TERM": "xterm"},
        )
    finally:
        os.close(terminal)
    try:
        assert os.read(controller, 4096)  # the live line is drawn: the crawl is under way
    finally:
        os.close(controller)  # and the terminal goes away while the page is awaited
    assert process.wait(timeout=RUN_TIMEOUT) == 120
    assert urls_recorded(tmp_path / "output") == [demo_site.url_for("/slow?seconds=2")]


def test_fetch_processes_take_an_environment_holding_a_name_the_system_refuses(demo_site, tmp_path):
    """A parent can pass on an entry named "", which cannot be unset: clearing the
    environment raised on it in every fetch process, and every URL failed."""
    listing = write_list(tmp_path, demo_site.url)
    done = subprocess.run(
        [sys.executable, "-m", "scraper", listing.name, "--fetch", "processes", *FAST],
        cwd=tmp_path,
        env={**os.environ, "": "x"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert urls_recorded(tmp_path / "output") == [demo_site.url]


def test_an_empty_output_path_exits_2(tmp_path):
    """Path("") is the current directory: `-o ""` crawled into it."""
    listing = write_list(tmp_path, "http://127.0.0.1:1/")
    done = scrape(tmp_path, listing.name, "-o", "")
    assert done.returncode == 2
    assert "empty path" in done.stderr
    assert not (tmp_path / "pages.jsonl").exists()


def test_resume_with_a_memory_frontier_is_a_usage_error(tmp_path):
    listing = write_list(tmp_path, "http://127.0.0.1:1/")
    done = scrape(tmp_path, listing.name, "--resume", "--frontier", "memory")
    assert done.returncode == 2
    assert "--resume needs the sqlite frontier" in done.stderr


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (("--allow-domain", "bad_domain!"), "--allow-domain: invalid domain 'bad_domain!'"),
        (("--parsers", "300"), "--parsers must be at most 256"),
        (("--user-agent", "caf\u00e9"), "--user-agent must be printable ASCII"),
    ],
)
def test_a_refused_option_is_named_as_typed(tmp_path, capsys, option, said):
    """It was named as the library's field: allow_domains, user_agent, parsers."""
    listing = write_list(tmp_path, "http://127.0.0.1:1/")
    assert main([str(listing), "-o", str(tmp_path / "out"), *option]) == 2
    assert capsys.readouterr().err.startswith(f"scrape: error: {said}")


def test_an_unknown_flag_exits_2(tmp_path):
    listing = write_list(tmp_path, "http://127.0.0.1:1/")
    done = scrape(tmp_path, listing.name, "--no-such-flag")
    assert done.returncode == 2
    assert "--no-such-flag" in done.stderr
    assert not (tmp_path / "output").exists()


# -- what a person sees ------------------------------------------------------------------


def test_quiet_prints_nothing_on_stderr(demo_site, tmp_path):
    listing = write_list(tmp_path, demo_site.url)
    done = scrape(tmp_path, listing.name, "--quiet", "--depth", "1", *FAST)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(read_jsonl(tmp_path / "output/pages.jsonl")) > 1


def test_without_quiet_a_summary_table_appears(demo_site, tmp_path):
    listing = write_list(tmp_path, demo_site.url)
    done = scrape(tmp_path, listing.name, "--depth", "1", *FAST)
    assert done.returncode == 0, done.stderr
    assert "scrape summary" in done.stderr
    pages = len(read_jsonl(tmp_path / "output/pages.jsonl"))
    summary = done.stderr[done.stderr.index("scrape summary") :]
    assert re.search(rf"\bpages\W+{pages}\b", summary), summary


def test_importing_the_cli_loads_no_engine():
    """Every parse or fetch process imports the main module again as it starts (the
    forkserver's children do): the `scrape` command's module must stay that cheap."""
    engine = ("scraper.pipeline", "requests", "rich", "lxml", "sqlite3", "aiohttp")
    assert loaded_by_import("scraper.cli", engine) == []


_FAKE_MAIN = """
import atexit, sys, threading, time
from scraper import cli

class Witness:
    def __del__(self):
        print("torn down")  # runs only if the interpreter frees its modules at exit

witness = Witness()
atexit.register(print, "a handler registered before run ran")

def late():
    time.sleep(0.2)
    print("a thread main left running finished")

def main():
    atexit.register(print, "a handler registered by main ran")
    threading.Thread(target=late).start()  # not a daemon: a normal exit waits for it
    print("buffered on a pipe")  # stdout to a pipe is block-buffered: lost unless flushed
    return 3

cli.main = main
cli.run()
"""


def test_the_command_exits_quickly_yet_with_its_status_output_and_exit_handlers():
    """`run` ends the process with os._exit after main: the status main returned, what
    was printed, and the atexit handlers (multiprocessing's among them) must survive it."""
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [sys.executable, "-c", _FAKE_MAIN],
        capture_output=True,
        text=True,
        timeout=60,
        env=buffered,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == [
        "buffered on a pipe",
        "a thread main left running finished",
        "a handler registered by main ran",
        "a handler registered before run ran",
    ]  # and not "torn down": the interpreter was not taken apart


def test_the_quick_exit_keeps_status_0_when_main_closed_stdout():
    script = (
        "import sys\nfrom scraper import cli\ncli.main = lambda: sys.stdout.close() or 0\ncli.run()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_help_lists_every_option(tmp_path):
    done = scrape(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    words = done.stdout.replace(",", " ").split()
    assert [option for option in OPTIONS if option not in words] == []
    assert "url_list" in words


# -- Ctrl-C ------------------------------------------------------------------------------


@pytest.fixture
def slow_site() -> Any:
    """Big and slow enough that a deep crawl is still running when the test interrupts it."""
    with running_site(SiteSpec(pages=2000, fanout=5, latency_ms=50)) as site:
        yield site


@pytest.mark.parametrize("fetch", ["threads", "processes"])
def test_no_child_process_outlives_a_killed_crawl(slow_site, tmp_path, fetch):
    """SIGKILL gives the crawl no chance to shut its pools down: the parse processes (and
    the `processes` strategy's fetch workers) must notice and end, with the fork server and
    resource tracker they keep alive, instead of waiting for work forever."""
    listing = write_list(tmp_path, slow_site.url)
    pages = tmp_path / "output" / "pages.jsonl"
    process = subprocess.Popen(
        scrape_command(listing.name, "--depth", "10", "--fetch", fetch, *FAST),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        started = wait_for(
            lambda: pages.exists() and pages.read_bytes().count(b"\n") >= 5, RUN_TIMEOUT
        )
        assert started and process.poll() is None, "the crawl ended before it could be killed"
        children = [
            line for line in session_processes(process.pid) if int(line.split()[0]) != process.pid
        ]
        assert len(children) >= 3  # fork server, resource tracker, parse processes at least
        process.kill()
        process.wait(SIGNAL_TIMEOUT)
        assert wait_for(lambda: not session_processes(process.pid), GRACE), session_processes(
            process.pid
        )
    finally:
        kill_session(process)


@pytest.mark.parametrize("target", ["process group", "main process"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_stops_the_crawl_in_order(slow_site, tmp_path, target, signum):
    """SIGTERM (kill, docker stop, systemd) killed the crawl as it came: no stats.json.
    Sent to the whole group, it ends the parse processes at once too: the crawl still
    stops in order."""
    listing = write_list(tmp_path, slow_site.url)
    output = tmp_path / "output"
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(
            scrape_command(listing.name, "--depth", "10", "--workers", "8", *FAST),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        pages = output / "pages.jsonl"
        started = wait_for(
            lambda: (
                process.poll() is not None
                or (pages.exists() and pages.read_bytes().count(b"\n") >= 5)
            ),
            RUN_TIMEOUT,
        )
        assert started
        assert process.poll() is None, "the crawl ended before it could be interrupted"
        if target == "process group":  # what a terminal's Ctrl-C does
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
        status = process.wait(SIGNAL_TIMEOUT)
        assert status == 130
        assert wait_for(lambda: not session_processes(process.pid), GRACE), session_processes(
            process.pid
        )
    finally:
        kill_session(process)

    message = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in message
    assert "interrupted" in message
    data = pages.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.decode().splitlines()]
    assert len(records) >= 5
    assert len(records) < slow_site.spec.pages
    assert len({record["url"] for record in records}) == len(records)
    stats = json.loads((output / "stats.json").read_text())
    assert stats["pages"] == len(records)


# -- the demo site -----------------------------------------------------------------------


def test_demo_site_options_shape_the_site(monkeypatch):
    served: list[Any] = []
    monkeypatch.setattr(
        "scraper.demo.serve_forever", lambda spec, **options: served.append((spec, options))
    )
    argv = ["--pages", "7", "--fanout", "3", "--page-kb", "2", "--latency-ms", "5", "--port", "9"]
    assert main(["demo-site", *argv]) == 0
    [(spec, options)] = served
    assert (spec.pages, spec.fanout, spec.page_kb, spec.latency_ms) == (7, 3, 2, 5.0)
    assert options == {"port": 9, "prerendered": False}


def test_demo_site_on_a_port_it_cannot_have_exits_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for argv, message in (
            (["--port", port], f"cannot serve on port {port}: Address already in use"),
            (["--port", "70000"], "a port is from 0 to 65535, not 70000"),
            (["--port", "abc"], "invalid port value: 'abc'"),
            (["--page-kb", "99999999"], "page_kb"),
        ):
            done = python(tmp_path, "-m", "scraper", "demo-site", *argv)
            assert done.returncode == 2, argv
            assert message in done.stderr, argv
            assert "Traceback" not in done.stderr, argv


def test_demo_site_whose_url_cannot_be_printed_exits_2(tmp_path):
    """`> /dev/full` had been blamed on the port."""
    with open("/dev/full", "w") as full:
        done = scrape(tmp_path, "demo-site", stdout=full)
    assert done.returncode == 2
    assert done.stderr == "scrape demo-site: error: cannot print the URL: No space left on device\n"


def test_a_demo_site_serving_for_the_bench_leaves_ctrl_c_to_it_and_ends_with_it(tmp_path):
    """`scrape bench` stops its site itself (SIGTERM), and Ctrl-C reaches the site too when
    typed at the terminal, or is ignored by a bench started so: the site stopped on it,
    and the crawl under way waited out its timeout against a site gone."""
    parent = subprocess.Popen(  # stands for the bench: the site's parent, ended by the test
        [sys.executable, "-c", SERVING_FOR_ME],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert parent.stdout is not None
        site, url = parent.stdout.readline().split()
        os.kill(int(site), signal.SIGINT)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as answer:
            assert answer.status == 200  # it serves on
        parent.kill()
        parent.communicate()
        assert wait_for(lambda: not running(int(site)), RUN_TIMEOUT), "it outlived its parent"
    finally:
        kill_session(parent)


SERVING_FOR_ME = f"""
import os, subprocess, sys, time
site = subprocess.Popen(
    {scrape_command("demo-site", "--pages", "5")!r} + ["--serve-for", str(os.getpid())],
    stdout=subprocess.PIPE, text=True)
print(site.pid, site.stdout.readline().split()[1], flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("options", [(), ("--prerender",)])
def test_demo_site_serves_until_interrupted(tmp_path, options):
    process = subprocess.Popen(
        scrape_command("demo-site", "--pages", "5", *options),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        first_line: list[str] = []
        reader = threading.Thread(
            target=lambda: first_line.append(process.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(RUN_TIMEOUT)
        assert first_line, "scrape demo-site printed nothing"
        word, url = first_line[0].split()
        assert word == "URL"
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url + "page/4", timeout=10) as answer:
            assert answer.status == 200
            assert b"<title>Page 4</title>" in answer.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            opener.open(url + "page/5", timeout=10)
        missing.value.close()
        assert missing.value.code == 404
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=SIGNAL_TIMEOUT)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        kill_session(process)
        process.stdout.close()
        process.stderr.close()


@pytest.mark.usefixtures("second_parse_process_refused")
def test_parse_processes_the_system_refuses_end_the_run_with_status_2(fresh_site, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text(fresh_site.url + "\n")
    assert main([str(listing), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("scrape: error: cannot start the parse processes")


def test_fetch_processes_the_system_refuses_end_the_run_with_status_2(
    fresh_site, tmp_path, capsys, monkeypatch
):
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("scraper.fetch.processes._FetchProcess", refused)
    listing = tmp_path / "list.txt"
    listing.write_text(fresh_site.url + "\n")
    argv = [str(listing), "-o", str(tmp_path / "out"), "--quiet", "--fetch", "processes"]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("scrape: error: cannot start the fetch processes")


def test_a_failure_that_follows_an_interruption_is_the_interruption(tmp_path, capsys, monkeypatch):
    """A SIGTERM to the whole process group ends a fork server that is starting the crawl's
    processes: "cannot start the fetch processes (a process or memory limit?)", exit 2."""

    def fork_server_ended(crawler: Any, urls: Any, rejected: Any = ()) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # to the crawl, whose handler stops it
        raise ScraperError("cannot start the fetch processes: the fork server ended")
        yield

    monkeypatch.setattr(Crawler, "run", fork_server_ended)
    listing = tmp_path / "list.txt"
    listing.write_text("http://127.0.0.1:9/\n")
    assert main([str(listing), "-o", str(tmp_path / "out"), "--quiet"]) == 130
    assert capsys.readouterr().err == "scrape: interrupted; finished records are on disk\n"


def test_an_in_process_run_gives_back_the_signal_handlers(fresh_site, tmp_path):
    """A program that calls main() keeps its own Ctrl-C and SIGTERM handling afterwards."""
    listing = tmp_path / "list.txt"
    listing.write_text(fresh_site.url + "\n")
    before = [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)]
    status = main([str(listing), "-o", str(tmp_path / "out"), "--quiet", "--parse", "inline"])
    assert status == 0
    assert [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)] == before
    assert len(read_jsonl(tmp_path / "out" / "pages.jsonl")) == 1
