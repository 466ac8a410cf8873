"""Runs one sd-scripts training as a subprocess: live status, cancel, output detection, resume.

The trainer runs in its own session / process group (``accelerate launch`` starts the real training
process as a child that would survive its parent), with stdin closed and ``PYTHONUNBUFFERED=1``.
Its stdout and stderr go straight to ``stdout.log`` / ``stderr.log`` in the job folder, and a monitor
thread follows both files and feeds :class:`~lib_lora.train.logparse.LogParser`. Writing to files
rather than pipes means the trainer never blocks on a full pipe, and survives a restart of the WebUI:
a new :class:`TrainingRun` can :meth:`~TrainingRun.attach` to it and follow the same files.

Success needs exit code 0 **and** a fresh ``<output_dir>/<output_name>.<ext>`` file (sd-scripts exits 0
without a file when it finds no images). Failures are classified from the text
(:func:`~lib_lora.train.logparse.classify`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# the state words every job shows (in-process jobs and training jobs alike)
from lib_lora.background import CANCELLED, CANCELLING, FAILED, QUEUED, RUNNING, SUCCEEDED
from lib_lora.background import TERMINAL as TERMINAL_STATES
from lib_lora.errors import TrainingError
from lib_lora.train.logparse import (
    STDERR,
    STDOUT,
    Epoch,
    Error,
    Event,
    Failure,
    FailureKind,
    Log,
    LogParser,
    Progress,
    RunInfo,
    Sample,
    SampleWatcher,
    Saved,
    TaskProgress,
    classify,
    failure_for,
)

if TYPE_CHECKING:
    from lib_lora.train.plan import JobSpec

log = logging.getLogger(__name__)

ACTIVE_STATES = frozenset({RUNNING, CANCELLING})

STDOUT_LOG = "stdout.log"
STDERR_LOG = "stderr.log"
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt")
MAX_LOSS_POINTS = 2000
LOG_TAIL_LINES = 200
_CLASSIFY_LINES = 3000

# --------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one training run (what the UI, the CLI bar and the job record show)."""

    state: str = QUEUED
    step: int = 0
    total: int = 0
    rate: float | None = None  # optimizer steps per second
    eta_seconds: float | None = None
    elapsed_seconds: float | None = None
    loss: float | None = None
    loss_history: tuple[tuple[int, float], ...] = ()  # (step, avr_loss), thinned to MAX_LOSS_POINTS
    epoch: int | None = None
    epochs: int | None = None
    task: str = ""  # what the trainer is doing before the first step ("caching latents... 3/30")
    saves: tuple[str, ...] = ()  # every `saving checkpoint:` path, in order
    last_save: str | None = None  # the newest LoRA file that exists (periodic or final)
    samples: tuple[str, ...] = ()
    log_tail: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # error lines seen so far (bounded)
    failure: Failure | None = None
    output_path: str | None = None  # the final LoRA file, once the run has succeeded
    resume_state: str | None = None  # a state folder a cancelled/failed run can resume from
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    pgid: int | None = None
    exit_code: int | None = None
    step_offset: int = 0  # steps done before this run (a resumed run counts on from there)
    message: str = ""  # one line for the user ("Cancelled at step 120; last save: …")

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def resumable(self) -> bool:
        """Cancelled or failed with a saved state or a periodic save to continue from."""
        return self.state in (CANCELLED, FAILED) and bool(self.resume_state or self.last_save)

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["failure"] = self.failure.to_dict() if self.failure else None
        d["loss_history"] = [list(p) for p in self.loss_history]
        for key in ("saves", "samples", "log_tail", "errors"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobStatus:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        if isinstance(kw.get("failure"), dict):
            kw["failure"] = Failure.from_dict(kw["failure"])
        kw["loss_history"] = tuple((int(s), float(v)) for s, v in kw.get("loss_history") or ())
        for key in ("saves", "samples", "log_tail", "errors"):
            kw[key] = tuple(kw.get(key) or ())
        return cls(**kw)


# ----------------------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (index 0 = state), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a running process (a zombie counts as ended)."""
    if not pid or pid <= 0:
        return False
    if sys.platform.startswith("linux"):
        fields = _proc_stat(pid)
        return fields is not None and fields[0] not in ("Z", "X", "x")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def claim_file(path: Path, *, reclaim_own: bool = False) -> bool:
    """Atomically create ``path`` holding this process's pid (a claim shared by the LoRA Studio
    processes on one data folder, e.g. the WebUI and the CLI). False when a live process holds it
    already — this one too, unless ``reclaim_own``. A claim left by a process that is gone is taken
    over; a folder that cannot be written counts as claimed (the work goes on, as without claims)."""
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(path.read_text(encoding="ascii").strip() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner and pid_alive(owner) and not (reclaim_own and owner == os.getpid()):
                return False
            path.unlink(missing_ok=True)  # left by a process that is gone
            continue
        except OSError:
            return True
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def group_members(pgid: int | None) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    if not pgid or pgid <= 0:
        return []
    if sys.platform.startswith("linux"):
        members = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            fields = _proc_stat(int(name))
            if fields and len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X", "x"):
                members.append(int(name))
        return members
    if os.name == "nt":  # pragma: no cover - untested code path
        return [pgid] if pid_alive(pgid) else []
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError, OSError):
        return []
    return [pgid]


def process_cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started, as a ``time.time()`` value (Linux), else None."""
    fields = _proc_stat(pid)
    if not fields or len(fields) < 20:
        return None
    try:
        ticks = int(fields[19])
        hz = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat", encoding="ascii") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
    except (OSError, ValueError, StopIteration):
        return None
    return btime + ticks / hz


def is_same_process(pid: int | None, command: Sequence[str], started_at: float | None) -> bool:
    """Whether ``pid`` is still the trainer started with ``command`` (not a reused pid)."""
    if not pid_alive(pid):
        return False
    assert pid is not None
    cmdline = process_cmdline(pid)
    if cmdline is not None:
        wanted = [os.path.basename(c) for c in command if c.endswith(".py")] or [os.path.basename(command[0])]
        have = " ".join(os.path.basename(c) for c in cmdline)
        if not all(w in have for w in wanted):
            return False
    begun = process_start_time(pid)
    if begun is not None and started_at is not None and abs(begun - started_at) > 30:
        return False
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------- outputs and state

_STATE_DIR_RE = r"^{name}(?:-step(?P<step>\d{{8}})|-(?P<epoch>\d{{6}}))?-state$"
_SAVE_NAME_RE = r"^{name}(?:-step(?P<step>\d{{8}})|-(?P<epoch>\d{{6}}))?(?P<ext>\.safetensors|\.ckpt|\.pt)$"


def _fresh(path: Path, since: float | None) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return since is None or st.st_mtime >= since - 2.0


def find_output(output_dir: str | os.PathLike[str], output_name: str, *, since: float | None = None,
                saves: Iterable[str] = ()) -> str | None:
    """The final LoRA file of a run: the last ``saving checkpoint:`` path named ``<output_name>.<ext>``,
    else ``<output_dir>/<output_name>.<ext>``; only if written after ``since`` (the run's start)."""
    names = {output_name + ext for ext in MODEL_EXTENSIONS}
    for saved in reversed(list(saves)):
        p = Path(saved)
        if p.name in names and _fresh(p, since):
            return str(p)
    candidates = [Path(output_dir) / n for n in names]
    fresh = [p for p in candidates if _fresh(p, since)]
    if not fresh:
        return None
    return str(max(fresh, key=lambda p: p.stat().st_mtime))


def find_last_save(output_dir: str | os.PathLike[str], output_name: str, *, since: float | None = None,
                   saves: Iterable[str] = ()) -> str | None:
    """The newest LoRA file of a run (periodic ``-stepNNNNNNNN`` / ``-NNNNNN`` saves or the final one)."""
    rx = re.compile(_SAVE_NAME_RE.format(name=re.escape(output_name)))
    found: list[Path] = [Path(s) for s in saves if _fresh(Path(s), since)]
    try:
        found += [e for e in Path(output_dir).iterdir() if rx.match(e.name) and _fresh(e, since)]
    except OSError:
        pass
    if not found:
        return None
    return str(max(found, key=lambda p: p.stat().st_mtime))


def find_resume_state(output_dir: str | os.PathLike[str], output_name: str) -> str | None:
    """The newest state folder sd-scripts wrote for ``output_name`` (``--save_state``):
    ``<name>-step00000120-state``, ``<name>-000003-state`` (per epoch) or ``<name>-state`` (at the end).

    A folder accelerate finished writing (its ``random_states_*.pkl``, saved last) wins over a newer one
    it did not — a cancel can land in the middle of a save; without any complete folder, the newest
    non-empty one is returned."""
    rx = re.compile(_STATE_DIR_RE.format(name=re.escape(output_name)))
    best: tuple[bool, float, int, str] | None = None
    try:
        entries = list(Path(output_dir).iterdir())
    except OSError:
        return None
    for entry in entries:
        m = rx.match(entry.name)
        if not m or not entry.is_dir():
            continue
        try:
            names = [p.name for p in entry.iterdir()]
            if not names:
                continue  # accelerate had not written anything yet
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        complete = any(n.startswith("random_states_") for n in names)
        step = state_step(entry)
        key = (complete, mtime, step if step is not None else -1, str(entry))
        if best is None or key > best:
            best = key
    return best[3] if best else None


def state_step(state_dir: str | os.PathLike[str]) -> int | None:
    """The optimizer step a state folder was saved at (``train_state.json``'s ``current_step``)."""
    try:
        data = json.loads((Path(state_dir) / "train_state.json").read_text(encoding="utf-8"))
        return int(data["current_step"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    m = re.search(r"-step(\d{8})-state$", str(state_dir))
    return int(m.group(1)) if m else None


def _without_option(command: Sequence[str], option: str, takes_value: bool) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in command:
        if skip:
            skip = False
            continue
        if arg == option:
            skip = takes_value
            continue
        if takes_value and arg.startswith(option + "="):
            continue
        out.append(arg)
    return out


def resume_command(command: Sequence[str], state_dir: str) -> tuple[list[str], int]:
    """``command`` continued from ``state_dir``: ``--resume <dir>`` plus ``--skip_until_initial_step``
    when the state knows its step (so sd-scripts skips the batches already trained instead of
    starting the step count again). Returns the command and the steps already done."""
    cmd = _without_option(command, "--resume", True)
    cmd = _without_option(cmd, "--skip_until_initial_step", False)
    cmd += ["--resume", str(state_dir)]
    step = state_step(state_dir) or 0
    if step > 0:
        cmd.append("--skip_until_initial_step")
    return cmd, step


def resume_spec(spec: JobSpec, state_dir: str) -> tuple[JobSpec, int]:
    """A copy of ``spec`` that continues from ``state_dir``; also returns the step it starts at."""
    command, step = resume_command(spec.command, state_dir)
    return dataclasses.replace(spec, command=tuple(command), resume_state_dir=str(state_dir)), step


# ----------------------------------------------------------------------------------------------- run

StatusCallback = Callable[[JobStatus], None]
EventCallback = Callable[[Event], None]


@dataclass
class _Follow:
    path: Path
    stream: str
    offset: int = 0
    handle: Any = None


@dataclass
class _Live:
    """Mutable state behind the frozen snapshots."""

    state: str = QUEUED
    step: int = 0
    total: int = 0
    rate: float | None = None
    eta: float | None = None
    elapsed: float | None = None
    loss: float | None = None
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    loss_stride: int = 1
    epoch: int | None = None
    epochs: int | None = None
    task: str = ""
    saves: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    text: deque[str] = field(default_factory=lambda: deque(maxlen=_CLASSIFY_LINES))
    failure: Failure | None = None
    output_path: str | None = None
    last_save: str | None = None
    resume_state: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    pgid: int | None = None
    exit_code: int | None = None
    message: str = ""


class TrainingRun:
    """One trainer subprocess and its live status.

    ``start()`` launches ``spec.command``; ``attach(pid, pgid, started_at)`` follows a trainer started
    by an earlier LoRA Studio process (same job folder). ``on_status`` is called from the monitor
    thread with a :class:`JobStatus` after every change (progress at most every ``min_interval`` s);
    ``on_event`` with every parsed event.
    """

    def __init__(
        self,
        spec: JobSpec,
        job_dir: str | os.PathLike[str],
        *,
        on_status: StatusCallback | None = None,
        on_event: EventCallback | None = None,
        step_offset: int = 0,
        grace_seconds: float = 15.0,
        poll_interval: float = 0.2,
        min_interval: float = 0.25,
    ) -> None:
        self.spec = spec
        self.job_dir = Path(job_dir)
        self.on_status = on_status
        self.on_event = on_event
        self.step_offset = max(0, int(step_offset))
        self.grace_seconds = grace_seconds
        self.poll_interval = poll_interval
        self.min_interval = min_interval
        self._lock = threading.RLock()
        self._done = threading.Event()
        self._live = _Live()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._parser = LogParser()
        self._cancel_at: float | None = None
        self._killed = False
        self._last_emit = 0.0
        self._samples: SampleWatcher | None = None
        self._attached = False
        self._follows: list[_Follow] = []
        self._dirty = False
        self._stop = threading.Event()

    # -- public API

    @property
    def command(self) -> list[str]:
        return list(self.spec.command)

    def start(self) -> JobStatus:
        """Launch the trainer and start following it. Returns the first snapshot (running or failed)."""
        with self._lock:
            if self._live.state != QUEUED:
                raise TrainingError("this training run was already started")
            self.job_dir.mkdir(parents=True, exist_ok=True)
            out_path, err_path = self.job_dir / STDOUT_LOG, self.job_dir / STDERR_LOG
            env = dict(os.environ)
            env.update({str(k): str(v) for k, v in (self.spec.env or {}).items()})
            env["PYTHONUNBUFFERED"] = "1"
            self._live.started_at = time.time()
            kwargs: dict[str, Any] = {}
            if os.name == "nt":  # pragma: no cover - untested code path
                kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200)
            else:
                kwargs["start_new_session"] = True
            try:
                with open(out_path, "wb") as out, open(err_path, "wb") as err:
                    self._proc = subprocess.Popen(
                        list(self.spec.command),
                        cwd=self.spec.cwd or None,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        **kwargs,
                    )
            except OSError as exc:
                what = self.spec.command[0] if self.spec.command else "(empty command)"
                reason = exc.strerror or str(exc)
                self._live.failure = failure_for(
                    FailureKind.ENVIRONMENT,
                    f"The trainer could not be started: {what}: {reason}.",
                    detail=str(exc),
                )
                self._finish_locked(FAILED, exit_code=None)
                self._done.set()
            else:
                self._live.pid = self._proc.pid
                self._live.pgid = self._proc.pid if os.name != "nt" else None
                self._live.state = RUNNING
                self._live.message = "Starting the trainer…"
                self._begin_follow()
            snapshot = self._snapshot_locked()
        self._emit(snapshot, force=True)
        return snapshot

    def attach(self, pid: int, pgid: int | None, started_at: float | None) -> JobStatus:
        """Follow a trainer that is already running (started before a restart) from its log files."""
        with self._lock:
            if self._live.state != QUEUED:
                raise TrainingError("this training run was already started")
            self._attached = True
            self._live.pid, self._live.pgid = pid, pgid
            self._live.started_at = started_at
            self._live.state = RUNNING
            self._live.message = "Following a training started before LoRA Studio was restarted."
            self._begin_follow()
            snapshot = self._snapshot_locked()
        self._emit(snapshot, force=True)
        return snapshot

    def status(self) -> JobStatus:
        with self._lock:
            return self._snapshot_locked()

    def cancel(self, grace_seconds: float | None = None) -> JobStatus:
        """Ask the whole process group to stop (SIGTERM), then SIGKILL it after the grace period.

        Returns at once; :meth:`wait` for the end. Periodic saves are kept and reported.
        """
        with self._lock:
            if self._live.state in TERMINAL_STATES:
                return self._snapshot_locked()
            if self._live.state == QUEUED:
                self._live.state = CANCELLED
                self._live.ended_at = time.time()
                self._live.message = "Cancelled before it started."
                self._done.set()
                snapshot = self._snapshot_locked()
            else:
                grace = self.grace_seconds if grace_seconds is None else grace_seconds
                if self._live.state != CANCELLING:
                    self._live.state = CANCELLING
                    self._live.message = "Cancelling…"
                    self._cancel_at = time.monotonic() + max(0.0, grace)
                    self._terminate()
                else:  # a second cancel: do not wait the whole grace period again
                    self._cancel_at = min(self._cancel_at or 0.0, time.monotonic() + max(0.0, grace))
                snapshot = self._snapshot_locked()
        self._emit(snapshot, force=True)
        return snapshot

    def wait(self, timeout: float | None = None) -> JobStatus:
        self._done.wait(timeout)
        return self.status()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def detach(self, timeout: float = 5.0) -> None:
        """Stop following without touching the trainer (it keeps running; another LoRA Studio
        process can :meth:`attach` to it)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- signals

    def _terminate(self) -> None:
        pgid, pid = self._live.pgid, self._live.pid
        if os.name == "nt":  # pragma: no cover - untested code path
            if self._proc is not None:
                try:
                    self._proc.send_signal(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGTERM))
                except OSError:
                    pass
            return
        if pgid:
            _signal_group(pgid, signal.SIGTERM)
        elif pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass

    def _kill(self) -> None:
        self._killed = True
        pgid, pid = self._live.pgid, self._live.pid
        if os.name == "nt":  # pragma: no cover - untested code path
            if pid:
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, check=False)
            return
        if pgid:
            _signal_group(pgid, signal.SIGKILL)
        elif pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    # -- following

    def _begin_follow(self) -> None:
        self._follows = [
            _Follow(self.job_dir / STDOUT_LOG, STDOUT),
            _Follow(self.job_dir / STDERR_LOG, STDERR),
        ]
        sample_dir = getattr(self.spec, "sample_dir", None) or os.path.join(self.spec.output_dir, "sample")
        self._samples = SampleWatcher(sample_dir, since=self._live.started_at)
        self._thread = threading.Thread(target=self._monitor, name=f"lora-train-{self._live.pid}", daemon=True)
        self._thread.start()

    def _read_new(self, limit: int = 1 << 20) -> bool:
        got = False
        for f in self._follows:
            if f.handle is None:
                try:
                    f.handle = open(f.path, "rb")  # kept open while following
                except OSError:
                    continue
                f.handle.seek(f.offset)
            data = f.handle.read(limit)
            if data:
                got = True
                f.offset += len(data)
                self._apply(self._parser.feed(data, f.stream))
        return got

    def _exited(self) -> int | None | bool:
        """The exit code when the trainer has ended (None = unknown code), False while it runs."""
        if self._proc is not None:
            rc = self._proc.poll()
            return False if rc is None else rc
        return None if not pid_alive(self._live.pid) else False

    def _monitor(self) -> None:
        last_data = time.monotonic()
        last_samples = 0.0
        try:
            while True:
                if self._stop.is_set():
                    for f in self._follows:
                        if f.handle is not None:
                            f.handle.close()
                    return
                got = self._read_new()
                now = time.monotonic()
                if got:
                    last_data = now
                elif now - last_data > 0.5:
                    self._apply(self._parser.flush())
                if now - last_samples >= 0.5 and self._samples is not None:
                    last_samples = now
                    self._apply(self._samples.poll())
                with self._lock:
                    if self._cancel_at is not None and not self._killed and now >= self._cancel_at:
                        self._kill()
                ended = self._exited()
                if ended is not False:
                    self._finalize(ended if isinstance(ended, int) else None)
                    return
                if self._dirty and now - self._last_emit >= self.min_interval:
                    self._emit(self.status())
                if not got:
                    time.sleep(self.poll_interval)
        except Exception as exc:  # pragma: no cover - a bug here must not leave the run "running" forever
            log.exception("training monitor failed")
            with self._lock:
                self._live.failure = failure_for(FailureKind.GENERIC, f"LoRA Studio lost track of the trainer: {exc}")
                self._finish_locked(FAILED, exit_code=None)
            self._done.set()
            self._emit(self.status(), force=True)

    def _finalize(self, exit_code: int | None) -> None:
        # The leader has exited; end whatever is left of its group (an orphaned training process
        # would keep the GPU busy), then read the last output.
        pgid = self._live.pgid
        if pgid and os.name != "nt":
            if group_members(pgid):
                _signal_group(pgid, signal.SIGTERM)
                deadline = time.monotonic() + min(5.0, self.grace_seconds)
                while group_members(pgid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if group_members(pgid):
                    _signal_group(pgid, signal.SIGKILL)
        while self._read_new():
            pass
        for f in self._follows:
            if f.handle is not None:
                f.handle.close()
        self._apply(self._parser.close())
        if self._samples is not None:
            self._apply(self._samples.poll(final=True))
        with self._lock:
            live = self._live
            spec = self.spec
            live.output_path = find_output(spec.output_dir, spec.output_name, since=live.started_at, saves=live.saves)
            live.last_save = find_last_save(spec.output_dir, spec.output_name, since=live.started_at, saves=live.saves)
            if exit_code is None and self._attached and live.output_path and any(
                Path(s).name == Path(live.output_path).name for s in live.saves
            ):
                exit_code = 0  # followed after a restart: the final save was logged and written
            if live.state == CANCELLING and not (exit_code == 0 and live.output_path):
                self._finish_locked(CANCELLED, exit_code)
            else:
                failure = classify("\n".join(live.text), exit_code, live.output_path is not None)
                if failure is None:
                    self._finish_locked(SUCCEEDED, exit_code)
                else:
                    live.failure = failure
                    self._finish_locked(FAILED, exit_code)
            snapshot = self._snapshot_locked()
        self._done.set()
        self._emit(snapshot, force=True)

    def _finish_locked(self, state: str, exit_code: int | None) -> None:
        live = self._live
        live.state = state
        live.exit_code = exit_code
        live.ended_at = time.time()
        if state != SUCCEEDED:
            live.output_path = None
            live.resume_state = find_resume_state(self.spec.output_dir, self.spec.output_name)
        kept = f"; last save: {live.last_save}" if live.last_save else "; no periodic save was made"
        if state == SUCCEEDED:
            live.message = f"Finished: {live.output_path}"
            live.step = max(live.step, live.total)
            live.eta = 0.0
        elif state == CANCELLED:
            live.message = f"Cancelled at step {live.step}/{live.total or '?'}{kept}"
        elif state == FAILED:
            base = live.failure.message if live.failure else "The trainer failed."
            live.message = base + (kept if live.started_at and live.step else "")

    # -- events -> status

    def _apply(self, events: Sequence[Event]) -> None:
        if not events:
            return
        changed = False
        for ev in events:
            if self.on_event is not None:
                try:
                    self.on_event(ev)
                except Exception:  # pragma: no cover - a UI callback bug must not stop the run
                    log.exception("on_event callback failed")
            with self._lock:
                changed |= self._apply_one(ev)
        if changed:
            self._emit(self.status())

    def _apply_one(self, ev: Event) -> bool:
        live = self._live
        off = self.step_offset
        if isinstance(ev, Progress):
            live.step = ev.step + off
            live.total = ev.total + off
            live.rate, live.eta, live.elapsed = ev.rate, ev.eta_seconds, ev.elapsed
            live.task = ""
            if ev.loss is not None:
                live.loss = ev.loss
                self._add_loss(live.step, ev.loss)
            if live.state == RUNNING:
                live.message = f"Training: step {live.step}/{live.total}"
            return True
        if isinstance(ev, TaskProgress):
            live.task = f"{ev.label} {ev.n}/{ev.total}" if ev.total is not None else f"{ev.label} {ev.n}"
            return True
        if isinstance(ev, RunInfo):
            if ev.total_steps and not live.total:
                live.total = ev.total_steps
            if ev.epochs:
                live.epochs = ev.epochs
            return True
        if isinstance(ev, Epoch):
            live.epoch, live.epochs = ev.n, ev.total
            return True
        if isinstance(ev, Saved):
            path = ev.path if os.path.isabs(ev.path) else os.path.join(self.spec.cwd or ".", ev.path)
            live.saves.append(path)
            live.last_save = path
            return True
        if isinstance(ev, Sample):
            live.samples.append(ev.path)
            return True
        if isinstance(ev, Log):
            for line in ev.text.split("\n"):
                live.log_tail.append(line)
                live.text.append(line)
            if ev.level == "INFO" and live.step == off and live.state == RUNNING:
                live.task = ev.text.split("\n", 1)[0][:120]
            return True
        if isinstance(ev, Error):
            live.errors.append(ev.text)
            return True
        return False

    def _add_loss(self, step: int, loss: float) -> None:
        hist = self._live.loss_history
        if hist and hist[-1][0] == step:
            hist[-1] = (step, loss)
            return
        if hist and step - hist[-1][0] < self._live.loss_stride:
            return
        hist.append((step, loss))
        if len(hist) > MAX_LOSS_POINTS:
            self._live.loss_stride *= 2
            del hist[1::2]

    def _snapshot_locked(self) -> JobStatus:
        live = self._live
        return JobStatus(
            state=live.state,
            step=live.step,
            total=live.total,
            rate=live.rate,
            eta_seconds=live.eta,
            elapsed_seconds=live.elapsed,
            loss=live.loss,
            loss_history=tuple(live.loss_history),
            epoch=live.epoch,
            epochs=live.epochs,
            task=live.task,
            saves=tuple(live.saves),
            last_save=live.last_save,
            samples=tuple(live.samples),
            log_tail=tuple(live.log_tail),
            errors=tuple(live.errors),
            failure=live.failure,
            output_path=live.output_path,
            resume_state=live.resume_state,
            started_at=live.started_at,
            ended_at=live.ended_at,
            pid=live.pid,
            pgid=live.pgid,
            exit_code=live.exit_code,
            step_offset=self.step_offset,
            message=live.message,
        )

    def _emit(self, snapshot: JobStatus, *, force: bool = False) -> None:
        if self.on_status is None:
            return
        now = time.monotonic()
        if not force and now - self._last_emit < self.min_interval:
            self._dirty = True
            return
        self._last_emit = now
        self._dirty = False
        try:
            self.on_status(snapshot)
        except Exception:  # pragma: no cover - a UI callback bug must not stop the run
            log.exception("on_status callback failed")


def read_job_log(job_dir: str | os.PathLike[str]) -> list[Event]:
    """Parse a finished job's ``stdout.log`` and ``stderr.log`` (stdout first: order across the two
    streams is not kept on disk)."""
    parser = LogParser()
    events: list[Event] = []
    for name, stream in ((STDOUT_LOG, STDOUT), (STDERR_LOG, STDERR)):
        try:
            events += parser.feed((Path(job_dir) / name).read_bytes(), stream)
        except OSError:
            continue
        events += parser.close(stream)
    return events
