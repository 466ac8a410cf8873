"""In-process background jobs: one small registry that runs minutes-long work (Civitai fetches and
downloads, consistency sheets) on daemon threads and keeps a typed record of each — id, state, progress,
message, errors, result — with cooperative cancel, waiting, and a bounded memory of finished jobs.

The states are the training ``/jobs`` words: ``queued`` → ``running`` (→ ``cancelling`` once a cancel is
asked) → one of ``succeeded``, ``failed``, ``cancelled``. A job function ``fn(ctx) -> result`` gets a
:class:`JobContext` to report progress, publish partial results and poll :meth:`JobContext.should_stop`;
cancel is cooperative (it sets the flag; the function decides where to stop). How a job ends:

- ``fn`` returns: ``cancelled`` when a cancel was asked, ``failed`` when it called
  :meth:`JobContext.fail`, else ``succeeded``; its return value becomes the record's ``result``;
- ``fn`` raises :class:`~lib_lora.errors.LoraStudioError`: ``failed`` with its message (also in
  ``errors``), or ``cancelled`` when a cancel was asked or the error's ``kind`` is ``"cancelled"``;
- ``fn`` raises anything else: ``failed`` with ``internal error: <Type>: <text>`` — never silent.

Nothing here survives a restart; the trainer's persistent, subprocess-based jobs are
:mod:`lib_lora.train.service`'s own.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from lib_lora.errors import LoraStudioError

QUEUED, RUNNING, CANCELLING, CANCELLED, FAILED, SUCCEEDED = (
    "queued", "running", "cancelling", "cancelled", "failed", "succeeded")
TERMINAL = frozenset({CANCELLED, FAILED, SUCCEEDED})
#: how many finished jobs a registry remembers by default (unfinished ones are always kept)
KEEP = 100

R = TypeVar("R")
_UNSET: Any = object()


@dataclass(eq=False)
class Job(Generic[R]):
    """One job's record. Read it freely; only the registry and the job's :class:`JobContext` write it."""

    id: str
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    state: str = QUEUED
    step: int = 0
    total: int = 0
    message: str = ""
    errors: list[str] = field(default_factory=list)
    output_path: str | None = None  # the main file or folder the job wrote
    result: R | None = None  # what the function returned (or published so far)
    started_at: float | None = None
    ended_at: float | None = None
    stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def fraction(self) -> float:
        if self.total:
            return min(1.0, self.step / self.total)
        return 1.0 if self.state == SUCCEEDED else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The training ``/jobs`` answer shape (the last 20 errors); ``result`` as it is."""
        return {
            "id": self.id,
            "kind": self.kind,
            "created_at": self.created_at,
            "meta": dict(self.meta),
            "status": {
                "state": self.state,
                "step": self.step,
                "total": self.total,
                "fraction": self.fraction,
                "message": self.message,
                "errors": list(self.errors[-20:]),
                "output_path": self.output_path,
                "started_at": self.started_at,
                "ended_at": self.ended_at,
            },
            "result": self.result,
        }


class JobContext(Generic[R]):
    """What a job function gets: progress and partial results to report, the cancel flag to poll."""

    def __init__(self, job: Job[R], registry: BackgroundJobs[R]) -> None:
        self.job = job
        self._registry = registry
        self.failed = False

    def update(self, *, step: int | None = None, total: int | None = None, message: str | None = None,
               output_path: str | None = _UNSET, result: R | None = _UNSET) -> None:
        """Change the given fields at once (waiters wake up); the others stay."""
        with self._registry._changed:
            if step is not None:
                self.job.step = step
            if total is not None:
                self.job.total = total
            if message is not None:
                self.job.message = message
            if output_path is not _UNSET:
                self.job.output_path = output_path
            if result is not _UNSET:
                self.job.result = result
            self._registry._changed.notify_all()

    def progress(self, step: int, total: int, message: str = "") -> None:
        self.update(step=step, total=total, message=message or None)

    def fail(self, message: str) -> None:
        """End the job ``failed`` with ``message`` when the function returns (its result is kept)."""
        with self._registry._changed:
            self.failed = True
            self.job.message = message
            self.job.errors.append(message)

    def should_stop(self) -> bool:
        return self.job.stop.is_set()


def timestamped_id(kind: str) -> str:
    """``<kind>-<YYYYmmdd-HHMMSS>-<6 hex>``, the default job id."""
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


class BackgroundJobs(Generic[R]):
    """The jobs of one kind of work in this process. ``keep``: finished jobs remembered (the ones that
    ended first are forgotten first); ``max_running``: jobs running at once (others wait ``queued``;
    None: no limit); ``new_id(kind)``: the id of a new job (retried if it is already taken)."""

    def __init__(self, *, keep: int = KEEP, max_running: int | None = None,
                 new_id: Callable[[str], str] = timestamped_id) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        self._new_id = new_id
        self._changed = threading.Condition(threading.Lock())
        self._jobs: OrderedDict[str, Job[R]] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()  # ids in the order they ended
        self._slots = threading.Semaphore(max_running) if max_running else None

    def submit(self, kind: str, fn: Callable[[JobContext[R]], R], meta: dict[str, Any] | None = None) -> Job[R]:
        """Record a job and start ``fn(ctx)`` on its own daemon thread; the record (``queued``)."""
        with self._changed:
            job_id = self._new_id(kind)
            while job_id in self._jobs:
                job_id = self._new_id(kind)
            job: Job[R] = Job(id=job_id, kind=kind, meta=dict(meta or {}))
            self._jobs[job_id] = job
        ctx = JobContext(job, self)
        threading.Thread(target=self._run, args=(job, fn, ctx), daemon=True, name=f"lora-studio-{job_id}").start()
        return job

    def get(self, job_id: str) -> Job[R]:
        """The live record (KeyError when unknown or forgotten)."""
        with self._changed:
            return self._jobs[job_id]

    def snapshot(self, job_id: str) -> Job[R]:
        """A copy of the record taken at one moment (for views built from several fields)."""
        with self._changed:
            job = self._jobs[job_id]
            return replace(job, meta=dict(job.meta), errors=list(job.errors))

    def list(self, kind: str | None = None) -> list[Job[R]]:
        """The records, newest first."""
        with self._changed:
            jobs = [j for j in self._jobs.values() if kind is None or j.kind == kind]
        return jobs[::-1]

    def cancel(self, job_id: str, message: str | None = None) -> Job[R]:
        """Ask the job to stop: a running one shows ``cancelling`` (and ``message`` when given); a queued one
        ends ``cancelled`` when its turn comes; a finished one is left as it is."""
        with self._changed:
            job = self._jobs[job_id]
            if not job.done:
                job.stop.set()
                if job.state == RUNNING:
                    job.state = CANCELLING
                if message is not None:
                    job.message = message
                self._changed.notify_all()
            return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job[R]:
        """The record once it has finished, or after ``timeout`` seconds (check ``.done``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            job = self._jobs[job_id]
            while not job.done:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            return job

    # -- the thread
    def _run(self, job: Job[R], fn: Callable[[JobContext[R]], R], ctx: JobContext[R]) -> None:
        with self._slots or contextlib.nullcontext():
            with self._changed:
                if job.stop.is_set():
                    self._end(job, CANCELLED, "cancelled before it started")
                    return
                job.state, job.started_at = RUNNING, time.time()
                self._changed.notify_all()
            try:
                result = fn(ctx)
            except LoraStudioError as exc:
                with self._changed:
                    cancelled = job.stop.is_set() or getattr(exc, "kind", "") == "cancelled"
                    if not cancelled:
                        job.errors.append(exc.message)
                    self._end(job, CANCELLED if cancelled else FAILED, exc.message)
            except Exception as exc:  # a bug must still end the job, with what it was
                message = f"internal error: {type(exc).__name__}: {exc}"
                with self._changed:
                    job.errors.append(message)
                    self._end(job, FAILED, message)
            else:
                with self._changed:
                    job.result = result
                    self._end(job, CANCELLED if job.stop.is_set() else FAILED if ctx.failed else SUCCEEDED, None)
            finally:
                with self._changed:
                    if not job.done:  # interrupted by a BaseException (SystemExit in the thread)
                        job.errors.append("interrupted")
                        self._end(job, FAILED, "interrupted")

    def _end(self, job: Job[R], state: str, message: str | None) -> None:
        """Under the lock: finish ``job`` and forget the finished jobs beyond ``keep``."""
        job.state, job.ended_at = state, time.time()
        if message is not None:
            job.message = message
        self._finished[job.id] = None
        while len(self._finished) > self.keep:
            old, _ = self._finished.popitem(last=False)
            self._jobs.pop(old, None)
        self._changed.notify_all()


__all__ = ["CANCELLED", "CANCELLING", "FAILED", "KEEP", "QUEUED", "RUNNING", "SUCCEEDED", "TERMINAL",
           "BackgroundJobs", "Job", "JobContext", "timestamped_id"]
