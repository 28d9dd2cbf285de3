"""Group commit: concurrent commits of one process share one transaction and one fsync.

Leader/follower, no timers. A commit joins the queue; if nobody is writing, its caller
becomes the *leader* at once and writes whatever has queued up (at first, just its own
commit: a run alone pays nothing extra). Commits that arrive while a leader writes wait;
when the leader's fsync returns it releases the commits it wrote and hands the lead to
the first waiting thread, which writes everything queued meanwhile as the next batch.
The batch size adapts to the load by itself: one commit when the store is idle, as many
as arrived during the previous fsync when it is busy.

An awaiting task (:meth:`GroupCommit.acommit`) never writes on its event loop: when
nobody leads, a writer thread of the store's own leads for it, and the task resumes (on
its loop) once the fsync that covers its commit has returned.

What a batch is, and each commit's isolation inside it, is the store's business
(``write_batch``): it sets each item's ``result`` or ``error``. The guarantee this module
keeps: nobody is told anything about a commit before ``write_batch`` has returned for
its whole batch, i.e. before the one fsync that covers it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from purpose_agent.errors import StoreError
from purpose_agent.runtime.journal import CommitResult

log = logging.getLogger("purpose_agent")


class Pending:
    """One commit waiting in the queue, and then its outcome."""

    __slots__ = ("done", "error", "future", "loop", "prepared", "result", "run_id", "thread",
                 "wake")

    def __init__(self, run_id: str, prepared: Any) -> None:
        self.run_id, self.prepared = run_id, prepared
        self.result: CommitResult | None = None
        self.error: BaseException | None = None
        self.done = False
        self.wake: threading.Event | None = None  # a waiting thread's: set to wake it
        self.thread = threading.get_ident()
        self.loop: asyncio.AbstractEventLoop | None = None  # an awaiting task's
        self.future: asyncio.Future[None] | None = None

    def outcome(self) -> CommitResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class GroupCommit:
    """The queue of one store's commits and who writes them (see the module docstring).

    ``write_batch(items)`` writes the items in order, each atomic and isolated, all made
    durable together, and sets each one's ``result`` or ``error``; it must not raise for
    one item's failure. ``batches``, ``commits`` and ``largest`` count what was written.
    """

    def __init__(self, write_batch: Callable[[list[Pending]], None], name: str) -> None:
        self._write_batch = write_batch
        self._name = name
        self._mutex = threading.Lock()
        self._queue: list[Pending] = []
        self._leading = False
        self._leader: int | None = None  # the leading thread (None: the writer thread)
        self._writer: threading.Thread | None = None
        self._writer_wake = threading.Semaphore(0)
        self.batches = self.commits = self.largest = 0

    def commit(self, run_id: str, prepared: Any) -> CommitResult:
        """Write ``prepared`` (with whatever else is queued); its result once durable."""
        item = Pending(run_id, prepared)
        me = threading.get_ident()
        with self._mutex:
            self._queue.append(item)
            # A lead that this very thread holds was cut short by an exception a signal
            # handler raised at a point no cleanup covers: nobody else will write the
            # queue, so this thread takes it up again.
            lead = not self._leading or self._leader == me
            if lead:
                self._leading, self._leader = True, me
            else:
                item.wake = wake = threading.Event()
        if lead:
            self._lead()
            return item.outcome()
        # Set by a leader: once the commit is written, or to make this thread lead. An
        # exception raised meanwhile by a signal handler (Ctrl-C) waits for that: a
        # successor that left would leave the commits after it hanging, and its caller
        # would go on while its commit may still land.
        interrupted: BaseException | None = None
        while not wake.is_set():
            try:
                wake.wait()
            except BaseException as exc:
                interrupted = exc
        if not item.done:
            self._lead()
        if interrupted is not None:
            raise interrupted
        return item.outcome()

    async def acommit(self, run_id: str, prepared: Any) -> CommitResult:
        """:meth:`commit` for a task: written by another thread, never on the event loop.

        A task cancelled while its commit is queued or being written still waits for it
        to be written (or refused) before it sees the cancellation: whoever handles it
        then finds the store as the commit left it, never a commit landing later."""
        loop = asyncio.get_running_loop()
        item = Pending(run_id, prepared)
        item.loop, item.future = loop, loop.create_future()
        with self._mutex:
            self._queue.append(item)
            start = not self._leading
            if start:
                self._leading, self._leader = True, None
        if start:
            self._wake_writer()
        # The future is awaited as it is (asyncio.shield costs a second future and two
        # callbacks per commit, on the loop's thread). A cancellation cancels it: the
        # task then waits on a fresh one, which _resolve (run on this loop's thread, so
        # never between the two lines that swap it) resolves in its place.
        cancelled = False
        while True:
            future = item.future
            assert future is not None
            try:
                await future
                break
            except asyncio.CancelledError:
                cancelled = True
                if not future.cancelled() or item.done:
                    break  # written (or refused): its outcome is final
                item.future = loop.create_future()
        if cancelled:
            raise asyncio.CancelledError
        return item.outcome()

    # ── leading ─────────────────────────────────────────────────────────────────
    def _lead(self) -> None:
        """Write everything queued now as one batch, then hand the lead on."""
        batch: list[Pending] = []
        try:
            with self._mutex:
                batch, self._queue = self._queue, []
            self._write_batch(batch)
        except BaseException as exc:
            # A KeyboardInterrupt (or a bug) in the leader: no waiter may hang, and none
            # is told its commit landed (write_batch rolled back what it had not committed).
            for item in batch:
                if item.error is None and item.result is None:
                    item.error = StoreError(
                        f"{self._name}: the write of this commit was interrupted "
                        f"({type(exc).__name__}); it may or may not have landed: read "
                        "the run back before going on")
            raise
        finally:
            self._finish(batch)

    def _finish(self, batch: list[Pending]) -> None:
        """Hand the lead on first (a waiter left without a leader would hang), then tell
        the batch's callers."""
        successor = None
        with self._mutex:
            for item in batch:
                item.done = True
            if self._queue:
                successor = next((i for i in self._queue if i.wake is not None), None)
                self._leader = None if successor is None else successor.thread
                if successor is None:  # only tasks wait: the writer thread leads for them
                    self._wake_writer()
            else:
                self._leading, self._leader = False, None
            self.batches += 1
            self.commits += len(batch)
            self.largest = max(self.largest, len(batch))
        if successor is not None and successor.wake is not None:
            successor.wake.set()  # not done: it wakes up as the leader
        by_loop: dict[asyncio.AbstractEventLoop, list[Pending]] = {}
        for item in batch:
            if item.wake is not None:
                item.wake.set()
            elif item.loop is not None:
                by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:
                pass  # the loop is closed: nobody awaits these any more

    def _wake_writer(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_for_tasks, daemon=True,
                                            name=f"purpose-agent group commit ({self._name})")
            self._writer.start()
        self._writer_wake.release()

    def _write_for_tasks(self) -> None:
        while True:
            self._writer_wake.acquire()  # released once per lead handed to this thread
            try:
                self._lead()
            except BaseException:  # every item of the batch got its error; keep writing
                log.exception("%s: writing a batch of commits failed", self._name)


def _resolve(items: list[Pending]) -> None:
    for item in items:
        if item.future is not None and not item.future.done():
            item.future.set_result(None)


__all__ = ["GroupCommit", "Pending"]
