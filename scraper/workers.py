"""How the stages start child processes: the parse pool and the `processes` fetch strategy.

forkserver, not fork: forking a process that runs threads can copy a held lock. The fork
server imports the libraries the children need once (lxml, bs4, requests…), and every
child forks from it with them loaded instead of importing them anew: a pool is ready in a
fraction of a second. Children leave Ctrl-C to the main process, which shuts them down in
order.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import signal
import sys

PRELOADED = ["scraper.parse_pool", "scraper.fetch.http"]


def process_context() -> multiprocessing.context.BaseContext:
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    return context


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
