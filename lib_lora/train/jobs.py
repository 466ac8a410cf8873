"""Training jobs: a queue (one job at a time per GPU set) and a record of every job on disk.

Each job lives in ``<data_dir>/jobs/<id>/``: ``job.json`` (the plan summary, the exact command and
environment, the status with pid/pgid and timestamps; replaced atomically), ``stdout.log`` and
``stderr.log`` (the trainer's own output). A new :class:`JobManager` on the same folder — after a
WebUI restart — shows the history, follows a trainer that is still alive (same pid, same command
line, same start time) and marks one that died meanwhile as failed, keeping its last save.

Jobs whose GPU sets are disjoint run side by side; a job with no GPU set (all GPUs) runs alone.
All methods are thread-safe; callbacks run outside the manager's lock.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib_lora.errors import TrainingError
from lib_lora.safetensors_header import read_header
from lib_lora.train.logparse import FailureKind, Saved, failure_for
from lib_lora.train.runner import (
    ACTIVE_STATES,
    CANCELLED,
    CANCELLING,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
    JobStatus,
    TrainingRun,
    claim_file,
    find_last_save,
    find_output,
    find_resume_state,
    is_same_process,
    read_job_log,
    resume_spec,
)

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


@dataclass(frozen=True)
class JobRecord:
    """What is kept about one job (``job.json``)."""

    id: str
    job_dir: str
    created_at: float
    spec: dict[str, Any]  # the JobSpec as plain data (command as a list)
    meta: dict[str, Any] = field(default_factory=dict)  # plan summary, trigger word, base model…
    status: JobStatus = field(default_factory=JobStatus)
    gpu_ids: tuple[int, ...] | None = None  # None: all GPUs
    step_offset: int = 0  # steps already done when this job resumes another
    resumed_from: str | None = None

    @property
    def state(self) -> str:
        return self.status.state

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "id": self.id,
            "job_dir": self.job_dir,
            "created_at": self.created_at,
            "spec": self.spec,
            "meta": self.meta,
            "status": self.status.to_dict(),
            "gpu_ids": list(self.gpu_ids) if self.gpu_ids is not None else None,
            "step_offset": self.step_offset,
            "resumed_from": self.resumed_from,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        gpu = data.get("gpu_ids")
        return cls(
            id=str(data["id"]),
            job_dir=str(data["job_dir"]),
            created_at=float(data.get("created_at") or 0.0),
            spec=dict(data.get("spec") or {}),
            meta=dict(data.get("meta") or {}),
            status=JobStatus.from_dict(dict(data.get("status") or {})),
            gpu_ids=tuple(int(g) for g in gpu) if isinstance(gpu, list) else None,
            step_offset=int(data.get("step_offset") or 0),
            resumed_from=data.get("resumed_from"),
        )


def spec_to_dict(spec: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(spec) or isinstance(spec, type):
        raise TrainingError("a training job needs a JobSpec")
    data = dataclasses.asdict(spec)
    data["command"] = [str(c) for c in data.get("command") or ()]
    data["env"] = {str(k): str(v) for k, v in (data.get("env") or {}).items()}
    return data


def _default_spec_type() -> type:
    from lib_lora.train.plan import JobSpec

    return JobSpec


def gpu_ids_of(spec: Any) -> tuple[int, ...] | None:
    """The GPUs a job uses: ``CUDA_VISIBLE_DEVICES`` in its environment, else accelerate's
    ``--gpu_ids``; ``None`` (all GPUs) when neither is given."""
    raw = (getattr(spec, "env", None) or {}).get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        command = list(getattr(spec, "command", ()) or ())
        for i, arg in enumerate(command):
            if arg == "--gpu_ids" and i + 1 < len(command):
                raw = command[i + 1]
            elif arg.startswith("--gpu_ids="):
                raw = arg.split("=", 1)[1]
    if raw is None or not str(raw).strip() or str(raw).strip() == "all":
        return None
    ids = []
    for part in str(raw).split(","):
        part = part.strip()
        if part.isdigit():
            ids.append(int(part))
    return tuple(sorted(set(ids))) if ids else None


def _conflicts(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    return a is None or b is None or bool(set(a) & set(b))


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


JobCallback = Callable[[JobRecord], None]


class JobManager:
    """The training queue and job history in ``<data_dir>/jobs``.

    ``spec_type`` rebuilds a JobSpec from a record (for resume and for queued jobs after a
    restart); it defaults to :class:`lib_lora.train.plan.JobSpec`.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        spec_type: type | None = None,
        grace_seconds: float = 15.0,
        start_queued: bool = True,
        poll_interval: float = 0.2,
        persist_interval: float = 2.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.jobs_dir = self.data_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._spec_type = spec_type
        self.grace_seconds = grace_seconds
        self.poll_interval = poll_interval
        self.persist_interval = persist_interval
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._records: dict[str, JobRecord] = {}
        self._specs: dict[str, Any] = {}
        self._queue: list[str] = []
        self._runs: dict[str, TrainingRun] = {}
        self._persisted_at: dict[str, float] = {}
        self._persisted_state: dict[str, str] = {}
        self._subscribers: list[JobCallback] = []
        self._closed = False
        self._scheduling = False
        self._reschedule = False
        self._foreign: set[str] = set()  # queued jobs another process claimed: re-read from disk
        # jobs that ended but whose subscribers have not been told yet: wait() returns after they are
        self._undelivered: dict[str, float] = {}
        self._load(start_queued)
        self._schedule()

    # ------------------------------------------------------------------------------------ public

    def submit(self, spec: Any, meta: dict[str, Any] | None = None, *, gpu_ids: Iterable[int] | None = None,
               step_offset: int = 0, resumed_from: str | None = None) -> str:
        """Queue a job; it starts as soon as its GPUs are free. Returns the job id."""
        data = spec_to_dict(spec)
        if not data["command"]:
            raise TrainingError("the training command is empty")
        gpus = tuple(sorted(set(int(g) for g in gpu_ids))) if gpu_ids is not None else gpu_ids_of(spec)
        with self._lock:
            if self._closed:
                raise TrainingError("the job manager is closed")
            job_id = self._new_id()
            job_dir = self.jobs_dir / job_id
            job_dir.mkdir(parents=True)
            record = JobRecord(
                id=job_id,
                job_dir=str(job_dir),
                created_at=time.time(),
                spec=data,
                meta=_jsonable(dict(meta or {})),
                status=JobStatus(state=QUEUED, step=step_offset, total=int(data.get("total_steps") or 0),
                                 step_offset=step_offset, message="Waiting for the GPU"),
                gpu_ids=gpus,
                step_offset=step_offset,
                resumed_from=resumed_from,
            )
            self._records[job_id] = record
            self._specs[job_id] = spec
            self._queue.append(job_id)
            self._persist(record, force=True)
        self._notify(record)
        self._schedule()
        return job_id

    def list(self) -> builtins.list[JobRecord]:
        """Every job, newest first."""
        with self._lock:
            for job_id in builtins.list(self._foreign):
                self._refresh_foreign(job_id)
            return sorted(self._records.values(), key=lambda r: (r.created_at, r.id), reverse=True)

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            if job_id in self._foreign:
                self._refresh_foreign(job_id)
            record = self._records.get(job_id)
            if record is None:
                raise TrainingError(f"no training job with id {job_id!r}")
            run = self._runs.get(job_id)
            if run is not None:
                record = dataclasses.replace(record, status=run.status())
            return record

    def cancel(self, job_id: str, grace_seconds: float | None = None) -> JobRecord:
        """Cancel a queued job, or stop a running one (its process group; periodic saves are kept)."""
        with self._lock:
            record = self.get(job_id)
            run = self._runs.get(job_id)
            if job_id in self._queue:
                self._queue.remove(job_id)
                status = dataclasses.replace(record.status, state=CANCELLED, ended_at=time.time(),
                                             message="Cancelled before it started.")
                record = self._update(job_id, status, force=True)
            elif run is None:
                return record
        if run is None:
            self._notify(record)
            self._schedule()
            return record
        run.cancel(self.grace_seconds if grace_seconds is None else grace_seconds)
        return self.get(job_id)

    def resume(self, job_id: str) -> str:
        """Queue a new job that continues a cancelled or failed one from its newest saved state
        (``--resume``), or else from its last periodic LoRA save (``--network_weights``)."""
        record = self.get(job_id)
        if not record.status.done or record.state == SUCCEEDED:
            raise TrainingError(f"job {job_id} is {record.state}: only a cancelled or failed job can be resumed")
        spec = self._spec_from_record(record)
        state_dir = find_resume_state(spec.output_dir, spec.output_name) or record.status.resume_state
        if state_dir and os.path.isdir(state_dir):
            new_spec, step = resume_spec(spec, state_dir)
            source = state_dir
        else:
            lora = _last_periodic_save(spec.output_dir, spec.output_name, record.status)
            if lora is None:
                raise TrainingError(
                    "this job left no saved state or periodic save to resume from (enable "
                    "'save state' / 'save every N steps' to make runs resumable)"
                )
            step = _save_step(lora) or 0
            command = _with_weights(list(spec.command), lora, step)
            new_spec = dataclasses.replace(spec, command=tuple(command))
            source = lora
        meta = dict(record.meta)
        meta["resume_from"] = source
        return self.submit(new_spec, meta, gpu_ids=record.gpu_ids, step_offset=step, resumed_from=job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job has ended (or ``timeout`` seconds); returns its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                record = self.get(job_id)
                told = self._undelivered.get(job_id)
                if record.status.done and (told is None or time.monotonic() - told > 5.0):
                    return record
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return record
                self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))

    def subscribe(self, callback: JobCallback) -> Callable[[], None]:
        """Call ``callback(record)`` on every change of any job; returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def delete(self, job_id: str) -> None:
        """Forget a finished job: remove its folder (record and logs; never the LoRA files)."""
        with self._lock:
            record = self.get(job_id)
            if not record.status.done:
                raise TrainingError(f"job {job_id} is {record.state}: cancel it first")
            del self._records[job_id]
            self._specs.pop(job_id, None)
            shutil.rmtree(record.job_dir, ignore_errors=True)

    def log_paths(self, job_id: str) -> tuple[Path, Path]:
        """``(stdout.log, stderr.log)`` of a job."""
        record = self.get(job_id)
        return Path(record.job_dir) / "stdout.log", Path(record.job_dir) / "stderr.log"

    def close(self) -> None:
        """Stop following jobs (the trainers keep running, and a new manager can pick them up)."""
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
        for run in runs:
            run.detach()
        with self._lock:
            for job_id, run in list(self._runs.items()):
                self._persist(dataclasses.replace(self._records[job_id], status=run.status()), force=True)

    # ----------------------------------------------------------------------------------- internals

    def _new_id(self) -> str:
        while True:
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            if job_id not in self._records and not (self.jobs_dir / job_id).exists():
                return job_id

    def _spec_type_or_default(self) -> type:
        if self._spec_type is None:
            self._spec_type = _default_spec_type()
        return self._spec_type

    def _spec_from_record(self, record: JobRecord) -> Any:
        spec = self._specs.get(record.id)
        if spec is not None:
            return spec
        spec_type = self._spec_type_or_default()
        names = {f.name for f in dataclasses.fields(spec_type)}
        data = {k: v for k, v in record.spec.items() if k in names}
        data["command"] = tuple(data.get("command") or ())
        data["env"] = dict(data.get("env") or {})
        spec = spec_type(**data)
        self._specs[record.id] = spec
        return spec

    def _cancelled_elsewhere(self, job_id: str, status: JobStatus) -> JobStatus:
        """A run that another LoRA Studio process cancelled ends "killed" here: call it cancelled."""
        try:
            data = json.loads((self.jobs_dir / job_id / JOB_FILE).read_text(encoding="utf-8"))
            on_disk = str(data["status"]["state"])
        except (OSError, ValueError, KeyError, TypeError):
            return status
        if on_disk not in (CANCELLING, CANCELLED):
            return status
        kept = f"; last save: {status.last_save}" if status.last_save else "; no periodic save was made"
        return dataclasses.replace(status, state=CANCELLED, failure=None,
                                   message=f"Cancelled at step {status.step}/{status.total or '?'}{kept}")

    def _refresh_foreign(self, job_id: str) -> None:
        """Re-read a job another process runs; follow it here once it is running."""
        try:
            data = json.loads((self.jobs_dir / job_id / JOB_FILE).read_text(encoding="utf-8"))
            record = JobRecord.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            return
        self._records[job_id] = record
        if record.status.state != QUEUED:
            self._foreign.discard(job_id)
            if record.status.state in ACTIVE_STATES and job_id not in self._runs:
                self._recover(record)

    def _persist(self, record: JobRecord, *, force: bool = False) -> None:
        now = time.monotonic()
        state_changed = self._persisted_state.get(record.id) != record.status.state
        if not force and not state_changed and now - self._persisted_at.get(record.id, 0.0) < self.persist_interval:
            return
        try:
            _write_json_atomic(Path(record.job_dir) / JOB_FILE, record.to_dict())
        except OSError as exc:  # a full disk must not kill the monitor; the run itself reports it
            log.warning("cannot write job record %s: %s", record.id, exc)
            return
        self._persisted_at[record.id] = now
        self._persisted_state[record.id] = record.status.state

    def _update(self, job_id: str, status: JobStatus, *, force: bool = False) -> JobRecord:
        record = dataclasses.replace(self._records[job_id], status=status)
        self._records[job_id] = record
        self._persist(record, force=force)
        if status.done and self._subscribers:
            self._undelivered[job_id] = time.monotonic()
        self._cond.notify_all()
        return record

    def _notify(self, record: JobRecord) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(record)
            except Exception:  # pragma: no cover - a UI callback bug must not stop training
                log.exception("job subscriber failed")
        if record.status.done:
            with self._cond:
                self._undelivered.pop(record.id, None)
                self._cond.notify_all()

    def _on_status(self, job_id: str, status: JobStatus) -> None:
        with self._lock:
            if job_id not in self._records:
                return
            if self._records[job_id].status.done and not status.done:
                return  # a late update from another thread (a cancel's "cancelling") never reopens an ended job
            if status.state == FAILED:
                status = self._cancelled_elsewhere(job_id, status)
            record = self._update(job_id, status, force=status.done)
            if status.done:
                self._runs.pop(job_id, None)
        self._notify(record)
        if status.done:
            self._schedule()

    def _schedule(self) -> None:
        """Start every queued job whose GPUs are free, in queue order (a job never overtakes an
        earlier one that wants the same GPUs)."""
        started: list[str] = []
        with self._lock:
            if self._closed:
                return
            if self._scheduling:  # called back from a run that ended while starting: loop again
                self._reschedule = True
                return
            self._scheduling = True
            try:
                while True:
                    self._reschedule = False
                    started += self._start_ready()
                    if not self._reschedule:
                        break
            finally:
                self._scheduling = False
        for job_id in started:
            self._notify(self.get(job_id))

    def _start_ready(self) -> builtins.list[str]:
        started: list[str] = []
        busy = [self._records[j].gpu_ids for j in self._runs]
        waiting: list[tuple[int, ...] | None] = []
        for job_id in list(self._queue):
            if job_id not in self._queue:
                continue
            record = self._records[job_id]
            gpus = record.gpu_ids
            if any(_conflicts(gpus, b) for b in busy) or any(_conflicts(gpus, w) for w in waiting):
                waiting.append(gpus)
                continue
            self._queue.remove(job_id)
            if not claim_file(Path(record.job_dir) / CLAIM_FILE):
                # another LoRA Studio process (the CLI beside the WebUI) has started it: follow theirs
                self._foreign.add(job_id)
                continue
            try:
                spec = self._spec_from_record(record)
            except Exception as exc:
                message = f"The job cannot be started: {exc}"
                status = dataclasses.replace(
                    record.status, state=FAILED, ended_at=time.time(), message=message,
                    failure=failure_for(FailureKind.GENERIC, message),
                )
                self._update(job_id, status, force=True)
                started.append(job_id)
                continue
            run = TrainingRun(
                spec,
                record.job_dir,
                on_status=functools.partial(self._on_status, job_id),
                step_offset=record.step_offset,
                grace_seconds=self.grace_seconds,
                poll_interval=self.poll_interval,
            )
            self._runs[job_id] = run
            started.append(job_id)
            if not run.start().done:  # start() already reported its status through _on_status
                busy.append(gpus)
        return started

    def _load(self, start_queued: bool) -> None:
        records: list[JobRecord] = []
        for job_file in sorted(self.jobs_dir.glob(f"*/{JOB_FILE}")):
            try:
                data = json.loads(job_file.read_text(encoding="utf-8"))
                record = JobRecord.from_dict(data)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable job record %s: %s", job_file, exc)
                continue
            if record.id != job_file.parent.name:
                record = dataclasses.replace(record, id=job_file.parent.name, job_dir=str(job_file.parent))
            records.append(record)
        records.sort(key=lambda r: (r.created_at, r.id))
        with self._lock:
            for record in records:
                self._records[record.id] = record
                state = record.status.state
                if state == QUEUED:
                    if start_queued:
                        self._queue.append(record.id)
                elif state in ACTIVE_STATES:
                    self._recover(record)

    def _recover(self, record: JobRecord) -> None:
        """A job that was running when the previous LoRA Studio process ended."""
        st = record.status
        command = record.spec.get("command") or []
        if st.pid and is_same_process(st.pid, command, st.started_at):
            try:
                spec = self._spec_from_record(record)
            except Exception as exc:  # cannot rebuild the spec: still show it as running, unfollowed
                log.warning("cannot follow job %s: %s", record.id, exc)
                return
            run = TrainingRun(
                spec,
                record.job_dir,
                on_status=functools.partial(self._on_status, record.id),
                step_offset=record.step_offset,
                grace_seconds=self.grace_seconds,
                poll_interval=self.poll_interval,
            )
            self._runs[record.id] = run
            run.attach(st.pid, st.pgid, st.started_at)
            if st.state == CANCELLING:  # the cancel was asked for before the restart: finish it
                run.cancel(self.grace_seconds)
            return
        self._update(record.id, _dead_status(record), force=True)


CLAIM_FILE = "claim"


def _dead_status(record: JobRecord) -> JobStatus:
    """The final status of a job whose trainer is gone and was not watched when it ended."""
    st = record.status
    spec = record.spec
    output_dir, output_name = str(spec.get("output_dir", "")), str(spec.get("output_name", ""))
    saves = list(st.saves)
    step, total = st.step, st.total
    for ev in read_job_log(record.job_dir):
        if isinstance(ev, Saved) and ev.path not in saves:
            saves.append(ev.path)
    output = find_output(output_dir, output_name, since=st.started_at, saves=saves)
    last_save = find_last_save(output_dir, output_name, since=st.started_at, saves=saves)
    ended = time.time()
    if output and any(Path(s).name == Path(output).name for s in saves):
        return dataclasses.replace(
            st, state=SUCCEEDED, output_path=output, last_save=output, saves=tuple(saves), ended_at=ended,
            step=max(step, total), message=f"Finished while LoRA Studio was not running: {output}",
        )
    resume_state = find_resume_state(output_dir, output_name)
    kept = f"last save: {last_save}" if last_save else "no periodic save was made"
    if st.state == "cancelling":
        return dataclasses.replace(st, state=CANCELLED, ended_at=ended, last_save=last_save, saves=tuple(saves),
                                   resume_state=resume_state, message=f"Cancelled; {kept}")
    message = f"LoRA Studio was restarted while training; {kept}"
    return dataclasses.replace(
        st, state=FAILED, ended_at=ended, last_save=last_save, saves=tuple(saves), resume_state=resume_state,
        failure=failure_for(FailureKind.INTERRUPTED, message), message=message,
    )


_STEP_IN_NAME = re.compile(r"-step(\d{8})\.\w+$")


def _save_step(path: str) -> int | None:
    m = _STEP_IN_NAME.search(path)
    if m:
        return int(m.group(1))
    try:
        steps = read_header(path).metadata.get("ss_steps")
        return int(steps) if steps else None
    except Exception:
        return None


def _last_periodic_save(output_dir: str, output_name: str, status: JobStatus) -> str | None:
    candidates = [s for s in status.saves if os.path.isfile(s)]
    newest = find_last_save(output_dir, output_name, since=status.started_at, saves=candidates)
    return newest


def _with_weights(command: list[str], lora: str, step: int) -> list[str]:
    """Continue training from a LoRA file: ``--network_weights`` (the optimizer starts afresh) and,
    when its step is known, skip the batches already seen."""
    out: list[str] = []
    skip_next = False
    for arg in command:
        if skip_next:
            skip_next = False
            continue
        if arg in ("--network_weights", "--initial_step", "--resume"):
            skip_next = True
            continue
        if arg == "--skip_until_initial_step" or arg.startswith(("--network_weights=", "--initial_step=")):
            continue
        out.append(arg)
    out += ["--network_weights", lora]
    if step > 0:
        out += ["--initial_step", str(step), "--skip_until_initial_step"]
    return out


def _jsonable(value: Any) -> Any:
    """``value`` made JSON-safe (tuples -> lists, paths and unknown objects -> str)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return str(value)


__all__ = [
    "JobManager",
    "JobRecord",
    "gpu_ids_of",
    "spec_to_dict",
    "CANCELLED",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "TERMINAL_STATES",
]
