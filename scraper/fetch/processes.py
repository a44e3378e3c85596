"""The process strategy: a few fetch processes, one per CPU, each fetching with threads.

    submit() ──► the freest process's request pipe ──► ThreadFetcher.submit(request)
    Future ◄──── its answer pipe, read by one thread per process: a Response or a FetchError

What processes add over the threads strategy is that requests' own CPU (≈ 0.6 ms a page)
runs beside the main process and out of its GIL. One process per concurrent fetch, as this
strategy first was (a ProcessPoolExecutor of `workers` processes), made every fetch a
process wake-up and two pickled hand-offs through the pool's queues and threads, and cost
20-30 MB a process. Measured with bare crawlers on this project's 2-core machine (100 ms
latency, 32 at a time): 32 processes reached 57-64% of the latency's ceiling at 7 ms of CPU
a page; 2 processes of 16 threads, 83-84% at 3 ms; 32 threads in one process, 82-87%.

Requests and Responses are plain values and every FetchError pickles, so an answer or an
error reaches the caller unchanged. A process that dies (killed, out of memory, or unable
to send an answer at all) or whose answers cannot be read fails the attempts it held
with a `connect` FetchError, which the fetch policy retries, and the next submit starts a
new one (if none can start, the attempts go to the others; with none left, each fails the
same way). close() fails every attempt not yet answered, in flight or not, and ends the
processes without waiting for their fetches: one stalled on a slow server would otherwise
hold it for `timeout`. A future its caller cancels is still fetched (the pipeline never
cancels one).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
from concurrent.futures import Future
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING

from scraper.config import usable_cpus
from scraper.errors import ErrorKind, TransportError
from scraper.fetch.base import Limits, Response
from scraper.records import Request
from scraper.workers import START_FAILURES, preload_for, process_context, start_child, start_failure

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

_Outcome = Response | BaseException
_Answer = tuple[int, _Outcome]
CANNOT_ANSWER = 70  # a fetch process's exit code when it could not send an answer back


class ProcessFetcher:
    def __init__(self, limits: Limits, *, workers: int) -> None:
        processes = min(workers, usable_cpus())  # one per CPU: they wait, mostly
        share, extra = divmod(workers, processes)
        self._limits = limits
        self._lock = threading.Lock()  # guards `_processes`, their `pending` and `lost`
        self._closed = False
        self._job_ids = itertools.count()
        self._processes: list[_FetchProcess] = []
        try:
            for index in range(processes):
                self._processes.append(self._start_process(share + (index < extra)))
        except START_FAILURES as error:
            self.close()
            raise start_failure("fetch processes", error) from error
        except BaseException:  # Ctrl-C
            self.close()
            raise

    def submit(self, request: Request) -> Future[Response]:
        future: Future[Response] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("submit() after close()")
            failure = self._replace_lost()
            alive = [process for process in self._processes if not process.lost]
            if not alive:  # a failed attempt, which the fetch policy retries
                reason = (
                    str(start_failure("fetch process", failure)) if failure else "no fetch process"
                )
                future.set_exception(TransportError(reason, ErrorKind.CONNECT))
                return future
            process = max(alive, key=lambda candidate: candidate.free())
            job_id = next(self._job_ids)
            process.pending[job_id] = future
        # Sent outside the lock, so that a full pipe holds up no answer. If the process
        # dies meanwhile, its reader fails the attempt with the others it held.
        process.send((job_id, request))
        return future

    def close(self) -> None:
        """Cancel every unanswered attempt and end the processes; idempotent."""
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
        for process in processes:  # all of them first: a Ctrl-C while waiting leaves none
            process.terminate()
        for process in processes:
            process.wait()

    def _replace_lost(self) -> BaseException | None:
        """Start a new process for each that was lost (called with the lock held: rare,
        and a few milliseconds each). One that cannot start (EAGAIN, EMFILE, no thread)
        stays lost, to be tried again at the next submit; returns why."""
        failure = None
        for index, process in enumerate(self._processes):
            if process.lost:
                try:
                    self._processes[index] = self._start_process(process.threads)
                except START_FAILURES as error:
                    failure = error
        return failure

    def _start_process(self, threads: int) -> _FetchProcess:
        return _FetchProcess(self._limits, threads, on_answer=self._answered, on_lost=self._lost)

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
        message = f"the fetch process was lost (exit code {process.exit_code})"
        for future in unanswered:
            _settle(future, TransportError(message, ErrorKind.CONNECT))


class _FetchProcess:
    """One fetch process, the attempts it holds, and the thread that reads its answers.

    `pending` and `lost` belong to the ProcessFetcher, and change only under its lock.
    """

    def __init__(
        self,
        limits: Limits,
        threads: int,
        *,
        on_answer: Callable[[_FetchProcess, _Answer], None],
        on_lost: Callable[[_FetchProcess], None],
    ) -> None:
        self.threads = threads
        self.pending: dict[int, Future[Response]] = {}
        self.lost = False
        context = process_context(preload_for("processes"))
        requests_in, self._requests = context.Pipe(duplex=False)
        self._answers, answers_out = context.Pipe(duplex=False)
        self._sending = threading.Lock()
        self._process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=_serve,
            args=(requests_in, answers_out, os.getpid(), limits, threads),
            kwargs={"environ": dict(os.environ)},
            name="fetch",
            daemon=True,
        )
        try:
            self._process.start()
        except BaseException:  # no process could start: nothing of it is left open
            self._close_pipes()
            raise
        finally:
            requests_in.close()  # the process's ends: closed here, its end of a pipe is
            answers_out.close()  # the last, and the reader sees the end of file when it dies
        self._reader = threading.Thread(
            target=self._read_answers, args=(on_answer, on_lost), name="fetch-answers", daemon=True
        )
        try:
            self._reader.start()
        except BaseException:
            self._process.kill()
            self._process.join()
            self._close_pipes()
            raise

    def free(self) -> int:
        """Threads not busy with an attempt (negative: attempts are queued in the process)."""
        return self.threads - len(self.pending)

    @property
    def exit_code(self) -> int | None:
        return self._process.exitcode

    def send(self, job: tuple[int, Request]) -> None:
        with self._sending, contextlib.suppress(OSError):  # it died, or was closed: see submit
            self._requests.send(job)

    def take_pending(self) -> list[Future[Response]]:
        pending, self.pending = self.pending, {}
        return list(pending.values())

    def terminate(self) -> None:
        self._process.kill()  # not SIGTERM: a crawl started ignoring it passes that on

    def wait(self) -> None:
        """Wait until the process has ended and its reader has failed what it held."""
        self._reader.join()  # quick once it is terminated: its pipe is at end of file

    def _read_answers(
        self,
        on_answer: Callable[[_FetchProcess, _Answer], None],
        on_lost: Callable[[_FetchProcess], None],
    ) -> None:
        """Pass each answer on until the process is gone, then say so.

        An answer that cannot be read (a read error, no memory for a large body) leaves
        the rest of the pipe unreadable too: the process is ended, and its attempts fail
        rather than wait for answers nobody reads. The process is joined here, as soon as
        it is gone, so that its exit code is known and no later terminate() can signal a
        reused pid. Once `on_lost` has marked it lost, no submit sends to it again, and
        the pipes are closed.
        """
        while True:
            try:
                answer: _Answer = self._answers.recv()
            except EOFError:  # it is gone
                break
            except Exception:  # see above
                self._process.kill()
                break
            on_answer(self, answer)
        self._process.join()
        on_lost(self)
        with self._sending:
            self._close_pipes()

    def _close_pipes(self) -> None:
        self._answers.close()
        self._requests.close()


def _serve(
    requests_in: Connection,
    answers_out: Connection,
    crawl: int,
    limits: Limits,
    threads: int,
    *,
    environ: dict[str, str],
) -> None:
    """A fetch process: fetch each request that arrives with the threads strategy and send
    its outcome back. It runs until the crawl (`crawl`, the main process) ends it, or, if
    the crawl dies first, until its pipe ends or `start_child` notices.

    It fetches in the crawl's environment (`environ`: proxies, .netrc, CA bundle), as a
    thread would: its fork server's is the one of the first crawl the program ran.

    The fetch modules are imported here, in the process (its fork server has them loaded
    already): the main process of a `processes` crawl never sends a request itself, and
    importing requests there (≈ 70 ms) delayed the crawl's first one.
    """
    start_child(crawl)
    _take_environment(environ)
    from scraper.fetch.threads import ThreadFetcher  # noqa: PLC0415

    fetcher = ThreadFetcher(limits, workers=threads)
    answer = functools.partial(_send_answer, answers_out, threading.Lock())
    try:
        while True:
            job_id, request = requests_in.recv()
            fetcher.submit(request).add_done_callback(functools.partial(answer, job_id))
    except EOFError:  # the crawl is gone
        pass
    finally:
        fetcher.close()


def _take_environment(environ: dict[str, str]) -> None:
    """Make this process's environment `environ`, name by name: the fork server's is most
    often the same already. A name the system refuses to set or unset ("", one holding
    "="), which a parent can still pass on, is left as it is: clearing the whole
    environment raised on it, and every fetch process died as it started."""
    for name in os.environ.keys() - environ.keys():
        with contextlib.suppress(OSError, ValueError):
            del os.environ[name]
    for name, value in environ.items():
        if os.environ.get(name) != value:
            with contextlib.suppress(OSError, ValueError):
                os.environ[name] = value


def _send_answer(
    answers_out: Connection, sending: threading.Lock, job_id: int, future: Future[Response]
) -> None:
    """Send a finished attempt's outcome back. Pickled before taking the pipe, so that a
    large body does not hold up the other threads' answers while it is pickled, and so
    that one that cannot be pickled (no memory for it) is answered with an error instead.
    When not even that error can be pickled, the process ends: the crawl's reader then
    fails every attempt it held (`_FetchProcess._read_answers`), where an answer never
    sent would have left its attempt waiting forever.
    """
    if future.cancelled():  # by fetcher.close(), once the crawl is gone
        return
    error = future.exception()
    try:
        data = ForkingPickler.dumps((job_id, future.result() if error is None else error))
    except Exception as failure:  # whatever it is, the attempt must end
        try:
            reason = f"the answer could not be sent back: {type(failure).__name__}: {failure}"
            data = ForkingPickler.dumps((job_id, TransportError(reason, ErrorKind.CONNECT)))
        except Exception:  # no memory even for that, or an error that cannot say what it is
            os._exit(CANNOT_ANSWER)
    # OSError: the crawl is closing, or gone, and nobody waits for this answer
    with sending, contextlib.suppress(OSError):
        answers_out.send_bytes(data)


def _settle(future: Future[Response], outcome: _Outcome) -> None:
    if not future.set_running_or_notify_cancel():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
