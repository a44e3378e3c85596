"""Running `scrape` in a subprocess from the tests: start it, wait, signal it, and make sure
nothing of it outlives the test (its parse processes and the forkserver included)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from jsonl import read_jsonl

RUN_TIMEOUT = 60.0  # seconds any one `scrape` run may take before the test gives up on it
SIGNAL_TIMEOUT = 20.0  # seconds to exit after SIGINT
GRACE = 10.0  # seconds for a run's helper processes to go away after it exits
Output = int | IO[Any]  # where a run's output goes: subprocess.PIPE, a descriptor, a file


def scrape_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "scraper", *args]


def scrape(cwd: Path, *args: str, **streams: Any) -> subprocess.CompletedProcess[str]:
    """`python` running `scrape`; `streams` as `python` takes them."""
    return python(cwd, "-m", "scraper", *args, **streams)


def python(
    cwd: Path,
    *args: str,
    stdin: str | None = None,
    stdout: Output = subprocess.PIPE,
    stderr: Output = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with `args` in `cwd` for RUN_TIMEOUT at most: its output
    captured, unless `stdout` or `stderr` says where it goes."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def loaded_by_import(module: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of `candidates` a fresh interpreter has loaded after `import module`."""
    probe = (
        f"import sys, {module}; "
        f"print(' '.join(name for name in {candidates!r} if name in sys.modules))"
    )
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()


def write_list(directory: Path, *lines: str) -> Path:
    path = directory / "list.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def urls_recorded(output: Path) -> list[str]:
    return sorted(record["url"] for record in read_jsonl(output / "pages.jsonl"))


def session_processes(session: int) -> list[str]:
    """Live processes whose session or process group is `session`, as "pid command"."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        state, _ppid, pgrp, sid = stat.rsplit(")", 1)[1].split()[:4]
        if state != "Z" and session in (int(pgrp), int(sid)):
            found.append(f"{entry} {cmdline.decode(errors='replace')}")
    return found


def running(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def settled(read: Callable[[], Any], *, quiet: float = 0.5, timeout: float = GRACE) -> Any:
    """`read()` once it has stopped changing for `quiet` seconds (or when `timeout` runs out):
    for tests that count what happened, rather than guess how long it takes to happen."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        if (latest := read()) != value:
            value, since = latest, time.monotonic()
    return value


def kill_session(process: subprocess.Popen[Any]) -> None:
    """Clean-up after a test that failed: nothing of the run may outlive it."""
    if process.poll() is None:
        process.kill()
    for line in session_processes(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)
    process.wait(RUN_TIMEOUT)
