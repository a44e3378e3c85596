"""The process strategy: a few fetch processes, one per CPU, each fetching with threads.

    submit() ──► the least busy process's request pipe ──► ThreadFetcher.submit(request)
    Future ◄──── its answer pipe, read by one thread per process: a Response or a FetchError

What processes add over the threads strategy is that requests' own CPU (≈ 0.6 ms a page)
runs beside the main process and out of its GIL. One process per concurrent fetch, as this
strategy first was (a ProcessPoolExecutor of `workers` processes), made every fetch a
process wake-up and two pickled hand-offs through the pool's queues and threads, and cost
20-30 MB a process. Measured with bare crawlers on this project's 2-core machine (100 ms
latency, 32 at a time): 32 processes reached 57-61% of the latency's ceiling at 7 ms of CPU
a page; 2 processes of 16 threads, 83-84% at 3 ms; 32 threads in one process, 85%.

Requests and Responses are plain values and every FetchError pickles, so an answer or an
error reaches the caller unchanged. A process that dies (killed, out of memory) fails the
attempts it held with a `connect` FetchError, which the fetch policy retries, and the next
submit starts a new one. close() cancels what has not been answered and ends the processes
without waiting: a fetch stalled on a slow server would otherwise hold it for `timeout`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

from scraper.errors import ErrorKind, TransportError
from scraper.fetch.base import Limits, Response
from scraper.records import Request
from scraper.workers import preload_for, process_context, start_child

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

_Outcome = Response | BaseException
_Answer = tuple[int, _Outcome]


class ProcessFetcher:
    def __init__(self, limits: Limits, *, workers: int) -> None:
        processes = min(workers, os.cpu_count() or 1)  # one per CPU: they wait, mostly
        self._limits = limits
        self._threads_each = math.ceil(workers / processes)
        self._lock = threading.Lock()  # guards the processes, their pending maps and `closed`
        self._closed = False
        self._job_ids = itertools.count()
        self._processes = [self._start_process() for _ in range(processes)]

    def submit(self, request: Request) -> Future[Response]:
        future: Future[Response] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("submit() after close()")
            process = self._least_busy()
            job_id = next(self._job_ids)
            process.pending[job_id] = future
            # If the process has just died, the send fails, and its answer reader, which
            # takes this lock next, fails every attempt it held, this one included.
            process.send((job_id, request))
        return future

    def close(self) -> None:
        """Cancel every unanswered attempt and end the processes without waiting; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            processes = self._processes
            unanswered = [future for process in processes for future in process.take_pending()]
        for future in unanswered:
            future.cancel()
            # wait() counts a cancelled future as done only once it is notified
            future.set_running_or_notify_cancel()
        for process in processes:
            process.stop()

    def _least_busy(self) -> _FetchProcess:
        """The process holding the fewest attempts; one that was lost is replaced first."""
        for index, process in enumerate(self._processes):
            if process.lost:
                self._processes[index] = self._start_process()
        return min(self._processes, key=lambda process: len(process.pending))

    def _start_process(self) -> _FetchProcess:
        return _FetchProcess(
            self._limits, self._threads_each, on_answer=self._answered, on_lost=self._lost
        )

    def _answered(self, process: _FetchProcess, answer: _Answer) -> None:
        job_id, outcome = answer
        with self._lock:
            future = process.pending.pop(job_id, None)
        if future is not None:  # None: cancelled by close()
            _settle(future, outcome)

    def _lost(self, process: _FetchProcess) -> None:
        """The process is gone: fail every attempt it held; the next submit replaces it."""
        with self._lock:
            process.lost = True
            unanswered = process.take_pending()
        if unanswered:
            error = TransportError(
                f"the fetch process was lost ({process.end()})", ErrorKind.CONNECT
            )
            for future in unanswered:
                _settle(future, error)


class _FetchProcess:
    """One fetch process, the attempts it holds, and the thread that reads its answers."""

    def __init__(
        self,
        limits: Limits,
        threads: int,
        *,
        on_answer: Callable[[_FetchProcess, _Answer], None],
        on_lost: Callable[[_FetchProcess], None],
    ) -> None:
        context = process_context(preload_for("processes"))
        requests_in, self._requests = context.Pipe(duplex=False)
        self._answers, answers_out = context.Pipe(duplex=False)
        self.pending: dict[int, Future[Response]] = {}
        self.lost = False
        self._process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=_serve,
            args=(requests_in, answers_out, os.getpid(), limits, threads),
            name="fetch",
            daemon=True,
        )
        self._process.start()
        requests_in.close()  # the process's ends: closed here, its end of a pipe is the
        answers_out.close()  # last, and the reader sees the end of file when it dies
        self._reader = threading.Thread(
            target=self._read_answers, args=(on_answer, on_lost), name="fetch-answers", daemon=True
        )
        self._reader.start()

    def send(self, job: tuple[int, Request]) -> None:
        with contextlib.suppress(OSError):  # it died: its reader fails the attempt with the rest
            self._requests.send(job)

    def take_pending(self) -> list[Future[Response]]:
        pending, self.pending = self.pending, {}
        return list(pending.values())

    def stop(self) -> None:
        self._process.terminate()
        self._reader.join()  # it ends at the end of file the terminated process leaves
        self._process.join()

    def end(self) -> str:
        """How the process ended, for the error of the attempts it took with it."""
        self._process.join()
        return f"exit code {self._process.exitcode}"

    def _read_answers(
        self,
        on_answer: Callable[[_FetchProcess, _Answer], None],
        on_lost: Callable[[_FetchProcess], None],
    ) -> None:
        """Pass each answer on until the process is gone, then say so. Once `on_lost` has
        marked it lost, no submit sends to it again, so both pipes can be closed here."""
        while True:
            try:
                answer: _Answer = self._answers.recv()
            # EOFError: it is gone. A read error leaves its answers unreadable: it is ended
            # below, so that its attempts fail rather than wait for answers nobody reads.
            except (EOFError, OSError):
                break
            on_answer(self, answer)
        self._process.terminate()
        on_lost(self)
        self._answers.close()
        self._requests.close()


def _serve(
    requests_in: Connection, answers_out: Connection, crawl: int, limits: Limits, threads: int
) -> None:
    """A fetch process: fetch each request that arrives with the threads strategy and send
    its outcome back, until the crawl closes its end of the pipe.

    The fetch modules are imported here, in the process (its fork server has them loaded
    already): the main process of a `processes` crawl never sends a request itself, and
    importing requests there (≈ 70 ms) delayed the crawl's first one.
    """
    start_child(crawl)
    from scraper.fetch.threads import ThreadFetcher  # noqa: PLC0415

    fetcher = ThreadFetcher(limits, workers=threads)
    answer = functools.partial(_send_answer, answers_out, threading.Lock())
    try:
        while True:
            job_id, request = requests_in.recv()
            fetcher.submit(request).add_done_callback(functools.partial(answer, job_id))
    except EOFError:
        pass
    finally:
        fetcher.close()


def _send_answer(
    answers_out: Connection, sending: threading.Lock, job_id: int, future: Future[Response]
) -> None:
    error = future.exception()
    outcome: _Outcome = future.result() if error is None else error
    # OSError: the crawl is closing, or gone, and nobody waits for this answer
    with sending, contextlib.suppress(OSError):
        answers_out.send((job_id, outcome))


def _settle(future: Future[Response], outcome: _Outcome) -> None:
    if not future.set_running_or_notify_cancel():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
