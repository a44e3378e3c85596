"""How the stages start child processes: the parse pool and the `processes` fetch strategy.

forkserver, not fork: forking a process that runs threads can copy a held lock. The fork
server can import the modules the children need once, and every child forks from it with
them loaded instead of importing them anew (see `preload_for`). Children leave Ctrl-C to the
main process, which shuts them down in order, and end if it dies without (`start_child`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import select
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import cast

from scraper.errors import ConfigError, ScraperError

FETCHER = "scraper.fetch.threads"  # what a `processes` fetch process runs

# What starting a child process can raise: fork refused in this process (OSError: EAGAIN,
# ENOMEM), the fork server ending instead of forking (EOFError: its fork was refused), or
# no thread to spare for the pool's machinery (RuntimeError).
START_FAILURES = (OSError, EOFError, RuntimeError)


def preload_for(fetch: str) -> list[str]:
    """What the fork server of a crawl with this fetch strategy should load.

    The fetch modules for the `processes` strategy, whose first request waits for its fetch
    processes to start: each forks with them loaded instead of importing them (≈ 80 ms of
    CPU each). Nothing else: the parse processes are only a few, each imports the parser as
    it starts (while the crawl's first requests are on their way), and a fork server holding
    the parser would put it in every fetch process too (≈ 17 MB each) and make the first
    fetch wait for it.
    """
    return [FETCHER] if fetch == "processes" else []


def process_context(preload: list[str]) -> multiprocessing.context.BaseContext:
    """The context child pools start from. The fork server starts with the first pool and
    loads `preload` then; a later pool's list does not change it, so every pool of a crawl
    asks for what the crawl's children need (`preload_for`): the first may be the
    `processes` fetcher's or the parse pool's."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    return context


def start_failure(children: str, error: BaseException) -> ScraperError:
    """The crawl's error when `children` (the parse processes, the fetch processes) cannot
    start: one of START_FAILURES, said in words."""
    if isinstance(error, EOFError):
        reason = "the fork server ended instead of starting one (a process or memory limit?)"
    else:
        reason = str(error) or type(error).__name__
    return ScraperError(f"cannot start the {children}: {reason}")


def refuse_a_main_children_cannot_run() -> None:
    """Raise ConfigError when the main script was read from standard input (`python - <
    script.py`: its `__file__` is "<stdin>"), or when this process is a child running the
    main script again, which then starts a crawl of its own.

    Every child that spawn or the fork server starts runs the main script again first
    (so that what it defines can be unpickled there), from its file: without one, each
    child fails as it starts, with a traceback of its own, and the crawl's pages all fail
    to parse. Said once, before anything starts, with what does work.

    A script whose crawl is not under `if __name__ == "__main__":` starts it again in
    every child: each one's crawl fetched robots.txt and the listed pages before failing.
    multiprocessing marks a child while it runs the main script again (`_inheriting`, set
    by spawn's `_main`, which the fork server's children run too); its own check of that
    mark raises only once a process is started.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise ConfigError(
            "a crawl started in a parse or fetch process as it ran the main script again:"
            ' the script\'s crawl must be under `if __name__ == "__main__":`'
        )
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:
        return  # a module run with -m, `python -c`, the interactive prompt
    # where spawn looks for a relative one (runpy.run_path leaves it so)
    started_in = getattr(multiprocessing.process, "ORIGINAL_DIR", None) or ""
    if path == "<stdin>" or not os.path.isfile(os.path.join(started_in, path)):
        raise ConfigError(
            f"the main script {path!r} is not a file that parse or fetch processes can run "
            "again as they start: save it to a file, or use parse='threads' or 'inline' "
            "and a fetch strategy other than 'processes'"
        )


def start_child(parent: int) -> None:
    """What every child process of a crawl (and the bench's demo site) does first: leave
    Ctrl-C to the main process (`parent`), which shuts the pools down in order, and end as
    soon as that process is gone without having done so (killed with SIGKILL). A worker
    waiting for work would otherwise wait forever, and keep its fork server and
    multiprocessing's resource tracker alive with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch = threading.Thread(target=_exit_when_gone, args=(parent,), name="watch", daemon=True)
    watch.start()


def _exit_when_gone(pid: int) -> None:
    wait_until_gone(pid)
    os._exit(1)


def wait_until_gone(pid: int, *, our_parent: bool = False) -> None:
    """Return once process `pid` (the crawl's main process; `our_parent`: the one that
    started this one) has ended. Without polling where Linux allows (a pidfd is readable
    once its process has ended, and never names a later process that reuses the number);
    elsewhere (spawn, off Linux, where the crawl's main process is the parent), look once
    a second whether this process has been handed to another parent. A parent that ended
    before its pidfd was opened has handed this process on already: its number may be
    another process's by then."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        original = pid if our_parent else os.getppid()
        while os.getppid() == original:
            time.sleep(1.0)
        return
    try:
        if not our_parent or os.getppid() == pid:
            select.select([descriptor], [], [])
    finally:
        os.close(descriptor)


def terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Shut `pool` down without waiting, and end its workers: one may be stuck on a slow
    server, or idle in a pool that broke (the pool's own shutdown leaves those running).

    ProcessPoolExecutor.terminate_workers() does this from Python 3.14; before, the
    worker processes are only reachable through `_processes`.

    Then it waits for the pool's manager thread, quick once the workers are gone. That
    thread holds the last references to the pool's queues, whose semaphores are unlinked
    and unregistered from multiprocessing's resource tracker when they are freed. Left to
    it, that happens as the thread ends; the thread is a daemon when a daemon thread first
    submitted, nothing waits for it at exit, and one cut short between unlinking and
    unregistering made the tracker warn of a "leaked semaphore" (1 crawl in 15-30, when the
    `processes` fetch strategy was a pool its dispatcher thread fed). Joined here, the
    queues are freed in this thread.
    """
    # typeshed calls it a _ThreadWakeup; it is the manager's Thread
    manager = cast("threading.Thread | None", pool._executor_manager_thread)
    workers = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in {*workers, *(pool._processes or {}).values()}:
        worker.kill()  # not SIGTERM: a crawl started ignoring it passes that on to them
    if manager is not None:
        manager.join()
