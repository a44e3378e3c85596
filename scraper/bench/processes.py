"""The bench's processes: the demo site, and one crawl measured with its whole tree (the
package's docstring says why it is measured so)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scraper.bench.figures import BenchError, Scenario

if TYPE_CHECKING:
    from resource import struct_rusage


SAMPLE_INTERVAL = 0.05  # seconds between samples of the crawl tree's RSS
SERVER_START_TIMEOUT = 90.0  # seconds; the site renders up to 256 MB of pages first (≈ 20 s)
ORPHAN_GRACE = 5.0  # seconds the crawl's leftover processes get to exit before SIGKILL
STOP_GRACE = 10.0  # seconds a crawl told to stop (SIGTERM) gets before SIGKILL
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37


def _child_env() -> dict[str, str]:
    """The environment for child processes: they import this very copy of scraper, and
    take no proxy from it. The site is on 127.0.0.1: through a proxy the environment
    names, the bench measured the proxy (or, with none listening, every crawl failed)."""
    root = str(Path(__file__).resolve().parents[2])  # the directory holding `scraper`
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    kept = {name: value for name, value in os.environ.items() if name.lower() not in _PROXIES}
    return {**kept, "PYTHONPATH": path}


_PROXIES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


@contextlib.contextmanager
def demo_server(scenario: Scenario) -> Iterator[str]:
    """Serve the scenario's site from its own process; yield its root URL; always stop it."""
    argv = [sys.executable, "-m", "scraper", "demo-site", "--port", "0"]
    argv += ["--serve-for", str(os.getpid())]  # it ends with the bench, however that ends
    argv += ["--pages", str(scenario.pages), "--latency-ms", str(scenario.latency_ms)]
    argv += ["--page-kb", str(scenario.page_kb), "--fanout", str(scenario.fanout), "--prerender"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=_child_env())
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], SERVER_START_TIMEOUT)
        line = server.stdout.readline() if ready else ""
        if not line.startswith("URL "):
            raise BenchError(f"the demo site did not start (it said {line.strip()!r})")
        yield line.split()[1]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """Make this process a child subreaper, so that the crawl's processes that outlive the
    crawler are reparented here and their CPU time reaches us through `wait4`."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = ctypes.c_int()
    libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise BenchError(f"cannot become a child subreaper: {os.strerror(ctypes.get_errno())}")
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, before.value, 0, 0, 0)


@dataclass(frozen=True)
class Usage:
    """What a crawl child cost, its whole process tree included."""

    exit_code: int | None  # None: killed after the timeout
    wall_s: float
    cpu_s: float
    tree_rss_mb: float
    largest_rss_mb: float


def measure_crawl(argv: Sequence[str], *, timeout: float, log: Path) -> Usage:
    """Run one crawl child in a session of its own, sample its tree, reap all of it.

    Past `timeout` the tree is killed. Whatever happens (Ctrl-C included), no process of the
    crawl is left behind.
    """
    started = time.monotonic()
    pid = os.posix_spawn(
        argv[0],
        list(argv),
        _child_env(),
        setsid=True,
        # a bench started with them ignored must still be able to stop its crawl in order
        setsigdef=(signal.SIGTERM, signal.SIGINT),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        ],
    )
    peak = _TreePeak(pid)
    finished = False
    try:
        finished = _wait_sampling(pid, peak, timeout)
        wall = time.monotonic() - started
    finally:
        if not finished:  # timed out, or Ctrl-C
            _stop_crawl(pid)
        _, status, usage = os.wait4(pid, 0)
        usages = [usage, *_reap_session(pid)]
    largest_kb = max(peak.largest_kb, *(u.ru_maxrss for u in usages))
    return Usage(
        exit_code=os.waitstatus_to_exitcode(status) if finished else None,
        wall_s=wall,
        cpu_s=sum(u.ru_utime + u.ru_stime for u in usages),
        # the kernel's peak of each process (ru_maxrss) catches one between two samples;
        # the tree held at least that process then
        tree_rss_mb=max(peak.tree_kb, largest_kb) / 1024,
        largest_rss_mb=largest_kb / 1024,
    )


def _wait_sampling(pid: int, peak: _TreePeak, timeout: float) -> bool:
    """Sample the tree until `pid` exits (True) or `timeout` passes (False).

    A pidfd wakes us the moment the child exits, so wall time is not rounded to a sample.
    """
    deadline = time.monotonic() + timeout
    exited = os.pidfd_open(pid)  # one for the whole wait, not one a sample
    try:
        while time.monotonic() < deadline:
            peak.sample()
            if select.select([exited], [], [], SAMPLE_INTERVAL)[0]:
                return True
        return False
    finally:
        os.close(exited)


def _exits_within(pid: int, seconds: float) -> bool:
    """Whether the child `pid` has exited, or does within `seconds`."""
    exited = os.pidfd_open(pid)
    try:
        return bool(select.select([exited], [], [], seconds)[0])
    finally:
        os.close(exited)


def _stop_crawl(pid: int) -> None:
    """Stop the crawl `pid` in order (SIGTERM: it ends its own processes), and kill its
    whole session if it has not ended within STOP_GRACE, or a second Ctrl-C cuts the wait
    short. Killed at once, its resource tracker left multiprocessing's semaphores in
    /dev/shm, five a crawl."""
    exited = False
    try:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        exited = _exits_within(pid, STOP_GRACE)
    finally:
        if not exited:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


class _TreePeak:
    """The largest RSS seen so far, summed over a session's processes and of any one."""

    def __init__(self, session: int) -> None:
        self.session = session
        self.tree_kb = 0
        self.largest_kb = 0

    def sample(self) -> None:
        sizes = [_rss_kb(pid) for pid in _session_processes(self.session)]
        self.tree_kb = max(self.tree_kb, sum(sizes))
        self.largest_kb = max(self.largest_kb, *sizes, 0)


def _session_processes(session: int) -> dict[int, tuple[str, int]]:
    """pid → (state, ppid) of every process in `session`, from /proc/*/stat."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as file:
                stat = file.read()
        except OSError:  # it exited meanwhile
            continue
        state, ppid, _group, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(sid) == session:
            found[int(name)] = (state, int(ppid))
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0  # exited, or a zombie: no memory any more


def _reap_session(session: int) -> list[struct_rusage]:
    """Reap the crawl's processes that outlived it (adopted by us); SIGKILL the stragglers.

    A zombie whose parent is another process is that parent's to reap, not ours to wait for.
    """
    usages: list[struct_rusage] = []
    deadline = time.monotonic() + ORPHAN_GRACE
    while True:
        waiting = {
            pid: ppid
            for pid, (state, ppid) in _session_processes(session).items()
            if ppid == os.getpid() or state != "Z"
        }
        if not waiting:
            return usages
        for pid, ppid in waiting.items():
            if ppid == os.getpid():
                reaped, _, usage = os.wait4(pid, os.WNOHANG)
                usages += [usage] if reaped else []
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session, signal.SIGKILL)
        time.sleep(0.01)
