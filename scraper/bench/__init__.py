"""`scrape bench`: each fetch strategy and parse mode crawls the built-in demo site, measured.

Why it is built this way:

- The demo site runs in a process of its own, so its CPU time is not counted as the crawler's,
  and renders its pages before the crawls start (`demo-site --prerender`): rendering a heavy
  page took the server ≈ 0.9 ms, CPU it took from the crawler on the same cores.
- Each crawl runs as `python -m scraper ...` in a child process that starts a new session.
  The session is the crawl's process tree (the parse pool's forkserver and workers included,
  even after their parent exits), so sampling /proc for its members every `SAMPLE_INTERVAL`
  gives the tree's peak RSS, and killing the session's process group ends the whole tree.
- CPU seconds come from `os.wait4`, which adds the children a process reaped. The parse
  pool's forkserver outlives the crawler and would be reaped by init, its CPU lost, so the
  bench makes itself a child subreaper while it runs: orphans of the crawl come to it and it
  reaps them with `wait4` as well.
- Repeats are interleaved (every combination once, then again), so a machine that slows down
  midway slows every combination alike.
- pages/s is taken from the crawl's own clock (stats.json `elapsed_s`); wall time is the
  child's, interpreter start-up included.

Linux only: the tree is read from /proc and adopted through prctl.
"""

from scraper.bench.command import main

__all__ = ["main"]
