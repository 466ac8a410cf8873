"""The one training workflow the Train tab, the HTTP API and scripts share: check a dataset, plan a run,
start it in the job queue, follow it, cancel or resume it, and put the finished LoRA where the WebUI
finds it.

:class:`TrainingService` wraps a :class:`~lib_lora.host.Host` and a :class:`~lib_lora.train.jobs.JobManager`:

- **check / plan / start** — the same dataset check and :func:`~lib_lora.train.plan.make_plan` as
  ``python -m lib_lora train``; the base checkpoint is picked from the host's list (its architecture read
  from its header by the host's cached detector), the run's files go to ``<data_dir>/training/<name>-<time>``.
- **the GPU** — with ``hold_queue`` the host's generation queue lock is held (in a thread of its own, so
  any lock type works) from just before the job starts until the last job the service started has
  ended — succeeded, failed, cancelled, or refused at start; with ``free_vram`` the WebUI's checkpoint
  is moved out of GPU memory under that lock and brought back before the lock is released. Neither
  survives the process: after a restart a trainer that is still running is followed, but the lock is
  not taken again.
- **the result** — a succeeded job is installed into the first LoRA folder, one subfolder per character
  (``<root>/<trigger>/<name>.safetensors``; an existing file is never replaced: ``-2``, ``-3`` …), with
  an A1111 user-metadata sidecar (activation text = trigger word, sd version, preferred weight,
  description) and ``<stem>.preview.png`` from the last sample step; then the library is rescanned so
  ``<lora:name>`` resolves at once. What happened is kept in ``result.json`` in the job folder, so a
  restart neither installs twice nor forgets; a job that finished while nothing was watching is
  installed when the service starts.
- **security** — when the host is reachable by others (:meth:`Host.is_remote`) every call that names a
  path or starts a subprocess raises :class:`~lib_lora.errors.AccessDeniedError`. Folder paths are
  resolved (symlinks followed) and must be real directories; nothing ever goes through a shell.

One service per host and data folder per process (:func:`service_for`); its job manager is shared with
the HTTP API (:func:`job_manager_for`).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib_lora.errors import AccessDeniedError, LoraStudioError, TrainerEnvironmentError, TrainingError
from lib_lora.train.dataset import DatasetReport, check_dataset, write_missing_captions
from lib_lora.train.jobs import JobManager, JobRecord
from lib_lora.train.plan import (
    TrainingPlan,
    default_output_name,
    make_plan,
    validate_output_name,
    validate_trigger,
)
from lib_lora.train.presets import KINDS, PRESET_NAMES, query_free_vram_bytes
from lib_lora.train.runner import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    JobStatus,
    claim_file,
)

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
RESULT_CLAIM = "result.claim"
TRAINING_DIR = "training"
TOKENIZER_DIR = "tokenizers"  # <data_dir>/tokenizers/openai_clip-vit-large-patch14 … (--tokenizer_cache_dir)
DEFAULT_PREFERRED_WEIGHT = 0.8
#: how long :meth:`TrainingService.start` waits for the WebUI to finish generating before refusing
DEFAULT_LOCK_TIMEOUT = 30.0
#: architecture ids detection reports -> the ids the presets train
TRAINABLE_ARCH = {"sd1": "sd1", "sd15": "sd1", "sdxl": "sdxl", "flux1": "flux1", "flux": "flux1"}
_FORBIDDEN_ROOTS = ("/dev", "/proc", "/sys")
_MAX_PATH = 4096
_SAMPLE_NAME = re.compile(r"_(\d{6})_(\d{2})_[^/\\]*\.(?:png|jpe?g|webp)$", re.IGNORECASE)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

ProgressCallback = Callable[[int, int, str], None]


# ------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class TrainingRequest:
    """What the user asks for (the Train tab's fields; ``None`` = the preset's value)."""

    folder: str
    trigger: str
    base: str  # a checkpoint title / name from the host's list (or a file path, locally)
    preset: str = "default"
    kind: str = "character"
    steps: int | None = None  # None: auto (each image seen ~90 times)
    batch_size: int | None = None
    learning_rate: float | None = None
    network_dim: int | None = None
    network_alpha: float | None = None
    resolution: int | None = None
    gpu_ids: tuple[int, ...] | None = None  # None: GPU 0 / all; several: one process each
    output_name: str | None = None  # default: from the trigger
    caption_extension: str = ".txt"
    arch: str | None = None  # "sd1" | "sdxl" | "flux1" when the header cannot tell
    family: str | None = None  # "pony", "illustrious" …
    free_vram: bool = True  # move the WebUI's checkpoint out of GPU memory while training
    hold_queue: bool | None = None  # hold the generation queue (None: in a WebUI, unless on other GPUs only)
    preferred_weight: float = DEFAULT_PREFERRED_WEIGHT
    free_vram_bytes: int | None = None  # for the fast preset's batch (None: ask nvidia-smi)
    tokenizer_cache_dir: str | None = None  # None: <data_dir>/tokenizers when it exists (offline runs)
    offline: bool | None = None  # no Hugging Face hub access (None: $HF_HUB_OFFLINE)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # further make_plan overrides
    extra_args: tuple[str, ...] = ()  # further sd-scripts options (checked against the option table)
    source: str = "tab"  # who asked: "tab" | "api" | …

    def plan_overrides(self) -> dict[str, Any]:
        ov: dict[str, Any] = dict(self.overrides)
        for key, value in (
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("learning_rate", self.learning_rate),
            ("network_dim", self.network_dim),
            ("network_alpha", self.network_alpha),
            ("resolution", self.resolution),
        ):
            if value is not None:
                ov[key] = value
        return ov


@dataclass(frozen=True)
class InstalledLora:
    """Where a finished LoRA was put, and whether the library resolves it."""

    path: str
    name: str  # what goes into <lora:NAME:weight>
    sidecar: str | None = None
    preview: str | None = None
    found: bool = False  # library.lookup(name) gives this file
    message: str = ""
    trigger: str = ""
    weight: float = DEFAULT_PREFERRED_WEIGHT

    @property
    def tag(self) -> str:
        """The prompt tag that uses it."""
        return f"<lora:{self.name}:{self.weight:g}>"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstalledLora:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class JobView:
    """One job as the tab, the API and scripts show it."""

    id: str
    status: JobStatus
    created_at: float
    source: str  # "tab" | "api" | "cli" | …
    trigger: str
    output_name: str
    base: str  # checkpoint file name
    preset: str  # "default/sd15/character"
    total_steps: int
    job_dir: str
    resumed_from: str | None = None
    installs: bool = False  # the result goes into the LoRA folder when it succeeds
    installed: InstalledLora | None = None
    install_error: str | None = None

    @property
    def state(self) -> str:
        return self.status.state

    @property
    def done(self) -> bool:
        return self.status.done

    @property
    def installing(self) -> bool:
        """Succeeded, but not yet copied into the LoRA folder."""
        return self.state == SUCCEEDED and self.installs and self.installed is None and self.install_error is None

    @property
    def finished(self) -> bool:
        """Nothing more will happen to this job (ended, and installed when it installs)."""
        return self.done and not self.installing

    @property
    def resumable(self) -> bool:
        st = self.status
        return st.state in (CANCELLED, FAILED) and bool(st.resume_state or st.last_save)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "status": self.status.to_dict(),
            "created_at": self.created_at,
            "source": self.source,
            "trigger": self.trigger,
            "output_name": self.output_name,
            "base": self.base,
            "preset": self.preset,
            "total_steps": self.total_steps,
            "job_dir": self.job_dir,
            "resumed_from": self.resumed_from,
            "installs": self.installs,
            "installing": self.installing,
            "installed": self.installed.to_dict() if self.installed else None,
            "install_error": self.install_error,
            "resumable": self.resumable,
        }


# ------------------------------------------------------------------------------------ validation


def validate_folder(path: str | os.PathLike[str], what: str = "dataset folder") -> str:
    """The real path of an existing directory named by the user; refuses devices, files, ``/proc``…

    Symlinks are resolved, so the check applies to what will actually be read."""
    if not isinstance(path, (str, os.PathLike)):
        raise TrainingError(f"the {what} must be a path")
    text = os.fspath(path).strip()
    if not text:
        raise TrainingError(f"the {what} is empty")
    if "\0" in text or len(text) > _MAX_PATH or any(ord(c) < 32 for c in text):
        raise TrainingError(f"the {what} contains characters no folder name has")
    expanded = os.path.expanduser(text)
    if not os.path.isabs(expanded):
        raise TrainingError(f"the {what} must be a full path (like /home/me/pictures/alice), not {text!r}")
    real = os.path.realpath(expanded)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise TrainingError(f"{what} not found: {text}") from None
    except OSError as exc:
        raise TrainingError(f"cannot open the {what} {text}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a file" if stat.S_ISREG(st.st_mode) else "not a folder (a device, socket or pipe)"
        raise TrainingError(f"the {what} {text} is {kind}: choose the folder that holds the images")
    if any(real == root or real.startswith(root + os.sep) for root in _FORBIDDEN_ROOTS):
        raise TrainingError(f"the {what} {text} is a system folder ({real})")
    if not os.access(real, os.R_OK | os.X_OK):
        raise TrainingError(f"the {what} {text} cannot be read (permission denied)")
    return real


def _safe_component(text: str) -> str:
    """A file or folder name made from user text (no separators, no dots at the ends, not empty)."""
    name = default_output_name(text) if text else ""
    return name or "lora"


def _webui_cuda() -> str | None:
    """The CUDA version of the torch the running process has already imported (never imports it)."""
    torch = sys.modules.get("torch")
    version = getattr(getattr(torch, "version", None), "cuda", None)
    return str(version) if version else None


# ---------------------------------------------------------------------------------- queue lock


class _LockHolder:
    """Holds a context manager (the WebUI's queue lock) in a thread of its own, so it is entered and
    exited on the same thread whatever thread asks — an ``RLock`` would refuse a release from another
    thread, and the release comes from the thread that saw the job end."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._acquired = threading.Event()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def acquire(self, timeout: float) -> bool:
        self._thread = threading.Thread(target=self._hold, name="lora-studio-queue-lock", daemon=True)
        self._thread.start()
        if self._acquired.wait(timeout) and self.error is None:
            return True
        self._release.set()  # if it is acquired later, it is let go at once
        return False

    def _hold(self) -> None:
        try:
            with self._factory():
                self._acquired.set()
                self._release.wait()
        except BaseException as exc:  # the lock could not be taken: acquire() reports it
            self.error = exc
            self._acquired.set()

    def release(self, timeout: float = 10.0) -> None:
        self._release.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def held(self) -> bool:
        return self._acquired.is_set() and not self._release.is_set() and self.error is None


class _GpuHold:
    """The queue lock and the freed VRAM, shared by every job the service started until the last ends."""

    def __init__(self, host: Any, lock_timeout: float) -> None:
        self.host = host
        self.lock_timeout = lock_timeout
        self._lock = threading.Lock()
        self._jobs: set[str] = set()
        self._pending = 0
        self._holder: _LockHolder | None = None
        self._vram: Any = None

    @property
    def locked(self) -> bool:
        with self._lock:
            return self._holder is not None and self._holder.held

    @property
    def vram_freed(self) -> bool:
        with self._lock:
            return bool(getattr(self._vram, "freed", False))

    def reserve(self, *, hold_queue: bool, free_vram: bool) -> bool:
        """Take the queue lock (and free VRAM) for a job about to start; False when nothing is held."""
        if not hold_queue and not free_vram:
            return False
        with self._lock:
            if self._holder is None:
                holder = _LockHolder(self.host.queue_lock)
                if not holder.acquire(self.lock_timeout):
                    if holder.error is not None:
                        raise TrainingError(f"cannot take the WebUI's generation queue: {holder.error}")
                    raise TrainingError(
                        f"the WebUI is still generating after {self.lock_timeout:.0f} s: start the training "
                        "when it has finished (training holds the generation queue)"
                    )
                self._holder = holder
            self._pending += 1
            if free_vram and self._vram is None:
                try:
                    self._vram = self.host.free_vram()
                except Exception as exc:  # training can still run; the report says why memory is short
                    log.warning("LoRA Studio: could not free the WebUI's GPU memory: %s", exc)
                    self._vram = None
            return True

    def holds(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._jobs

    def bind(self, job_id: str) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)
            self._jobs.add(job_id)

    def cancel_reservation(self) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)
            self._release_if_idle_locked()

    def release(self, job_id: str) -> bool:
        with self._lock:
            if job_id not in self._jobs:
                return False
            self._jobs.discard(job_id)
            self._release_if_idle_locked()
            return True

    def release_all(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._pending = 0
            self._release_if_idle_locked()

    def _release_if_idle_locked(self) -> None:
        if self._jobs or self._pending:
            return
        token, self._vram = self._vram, None
        holder, self._holder = self._holder, None
        try:
            if token is not None:
                try:
                    self.host.restore_vram(token)
                except Exception as exc:  # never keep the queue locked because the model did not come back
                    log.warning("LoRA Studio: could not restore the WebUI's model to the GPU: %s", exc)
        finally:
            if holder is not None:
                holder.release()


# ------------------------------------------------------------------------------------- service


class TrainingService:
    """Check, plan, start, follow and install LoRA trainings for one host (see the module docstring).

    ``sd_scripts_dir`` / ``trainer_python`` override where the trainer is (default: the host's setting
    or the bundled submodule, and ``$TRAINER_PYTHON`` or the trainer venv in the data folder).
    """

    def __init__(
        self,
        host: Any,
        jobs: JobManager | None = None,
        *,
        sd_scripts_dir: str | os.PathLike[str] | None = None,
        trainer_python: str | os.PathLike[str] | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        install_pending: bool = True,
    ) -> None:
        self.host = host
        self.jobs = jobs if jobs is not None else job_manager_for(host.data_dir())
        self._sd_scripts_dir = os.fspath(sd_scripts_dir) if sd_scripts_dir else None
        self._trainer_python = os.fspath(trainer_python) if trainer_python else None
        self._hold = _GpuHold(host, lock_timeout)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._installing: set[str] = set()
        self._results: dict[str, dict[str, Any]] = {}  # result.json of installed jobs (never changes)
        self._closed = False
        self._unsubscribe = self.jobs.subscribe(self._on_job)
        if install_pending:
            threading.Thread(target=self._install_pending, name="lora-studio-install", daemon=True).start()

    # ------------------------------------------------------------------------------- access

    def remote(self) -> bool:
        try:
            return bool(self.host.is_remote())
        except Exception:
            return True  # cannot tell: be safe

    def require_local(self, what: str = "training") -> None:
        """Raise :class:`AccessDeniedError` when others can reach this UI."""
        if self.remote():
            raise AccessDeniedError(
                f"{what} is turned off because this WebUI can be reached from other computers "
                "(--listen, --share …): start it with --enable-insecure-extension-access to allow it "
                "(only on a network you trust)"
            )

    # ------------------------------------------------------------------------------ trainer

    def sd_scripts_dir(self) -> str:
        """The sd-scripts checkout to train with (raises when there is none)."""
        if self._sd_scripts_dir:
            return self._sd_scripts_dir
        from lib_lora.train.install_support import resolve_sd_scripts

        env = os.environ.get("SD_SCRIPTS_DIR", "").strip()
        setting = env or (getattr(self._settings(), "sd_scripts_path", "") or None)
        return os.fspath(resolve_sd_scripts(_extension_dir(), setting))

    def _sd_scripts_or_default(self) -> str:
        try:
            return self.sd_scripts_dir()
        except TrainerEnvironmentError:
            return os.path.join(_extension_dir(), "vendor", "sd-scripts")

    def environment(self) -> Any:
        """The trainer venv (:class:`~lib_lora.train.environment.TrainerEnvironment`) in the data folder."""
        from lib_lora.train.environment import TrainerEnvironment

        return TrainerEnvironment(self.host.data_dir(), self._sd_scripts_or_default())

    def trainer_python(self) -> str:
        if self._trainer_python:
            return self._trainer_python
        env = os.environ.get("TRAINER_PYTHON", "").strip()
        if env:
            return env
        return os.fspath(self.environment().python)

    def environment_status(self) -> Any:
        """The trainer venv's :class:`~lib_lora.train.environment.EnvStatus` (runs its Python: seconds)."""
        return self.environment().status()

    def setup_environment(self, progress: Callable[[Any], None] | None = None, **options: Any) -> Any:
        """Create the trainer venv (torch for the WebUI's CUDA, sd-scripts' requirements), streaming
        :class:`~lib_lora.train.environment.InstallProgress` to ``progress``."""
        self.require_local("installing the trainer")
        self.sd_scripts_dir()  # a clear message when sd-scripts itself is missing
        options.setdefault("cuda", _webui_cuda())
        return self.environment().create(progress, **options)

    # -------------------------------------------------------------------------- check, plan

    def _settings(self) -> Any:
        try:
            return self.host.settings()
        except Exception:
            return None

    def resolve_checkpoint(self, base: str) -> tuple[str, str]:
        """``(file path, display name)`` of the base checkpoint a user picked."""
        if not isinstance(base, str) or not base.strip():
            raise TrainingError("choose a base checkpoint")
        text = base.strip()
        for ref in self.host.list_checkpoints():
            plain = ref.title.rsplit(" [", 1)[0] if ref.title.endswith("]") else ref.title
            if text in (ref.title, ref.name, ref.path, plain):
                return ref.path, ref.name or os.path.basename(ref.path)
        if "\0" in text or not os.path.isabs(os.path.expanduser(text)):
            raise TrainingError(f"unknown base checkpoint {text!r}: choose one from the list")
        real = os.path.realpath(os.path.expanduser(text))
        try:
            st = os.stat(real)
        except OSError:
            raise TrainingError(f"base checkpoint not found: {text}") from None
        if not stat.S_ISREG(st.st_mode) and not os.path.isfile(os.path.join(real, "model_index.json")):
            raise TrainingError(f"the base checkpoint {text} is not a model file")
        return real, os.path.basename(real)

    def detect_base(self, checkpoint_path: str, arch: str | None = None,
                    family: str | None = None) -> tuple[str, str | None]:
        """``(architecture, family)`` to train for: the request's, else the checkpoint header's."""
        if arch:
            found = TRAINABLE_ARCH.get(arch.strip().lower())
            if found is None:
                raise TrainingError(f"cannot train for {arch!r}: choose sd1, sdxl or flux1")
            return found, family
        det = self.host.checkpoint_detection(checkpoint_path)
        detected = getattr(det, "architecture", None) or "unknown"
        found = TRAINABLE_ARCH.get(detected)
        if found is None:
            name = os.path.basename(checkpoint_path)
            if detected == "unknown":
                raise TrainingError(
                    f"the base model of {name} cannot be read from its header: choose its architecture "
                    "(SD1.5, SDXL or Flux.1) under Advanced"
                )
            raise TrainingError(
                f"{name} is a {detected} checkpoint; the presets train SD1.5, SDXL (Pony, Illustrious) "
                "and Flux.1"
            )
        return found, family or getattr(det, "family", None)

    def check(
        self,
        folder: str,
        trigger: str,
        base: str,
        *,
        caption_extension: str = ".txt",
        resolution: int | None = None,
        arch: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> DatasetReport:
        """The dataset report for ``folder`` trained on ``base`` (a checkpoint from the host's list)."""
        self.require_local("checking a dataset folder")
        real = validate_folder(folder)
        trig = validate_trigger(trigger)
        path, _name = self.resolve_checkpoint(base)
        base_arch, _family = self.detect_base(path, arch)
        return check_dataset(real, trig, base_arch, caption_extension, resolution=resolution, progress=progress)

    def write_captions(self, report: DatasetReport, template: str = "{trigger}") -> tuple[str, ...]:
        """Create the caption files the report found missing (only on the user's request); existing
        files are never touched."""
        self.require_local("writing caption files")
        validate_folder(report.folder)
        return write_missing_captions(report, report.trigger, template)

    def plan(self, request: TrainingRequest, *, report: DatasetReport | None = None,
             output_dir: str | None = None) -> TrainingPlan:
        """The training plan for ``request`` (nothing is written or started)."""
        self.require_local("training")
        plan, _report, _name = self._plan(request, report=report, output_dir=output_dir)
        return plan

    def _plan(self, request: TrainingRequest, *, report: DatasetReport | None = None,
              output_dir: str | None = None, free_vram_bytes: int | None = None
              ) -> tuple[TrainingPlan, DatasetReport, str]:
        if request.preset not in PRESET_NAMES:
            raise TrainingError(f"unknown preset {request.preset!r} (choose one of: {', '.join(PRESET_NAMES)})")
        if request.kind not in KINDS:
            raise TrainingError(f"unknown LoRA kind {request.kind!r} (choose one of: {', '.join(KINDS)})")
        folder = validate_folder(request.folder)
        trigger = validate_trigger(request.trigger)
        name = validate_output_name(request.output_name) if request.output_name else default_output_name(trigger)
        ckpt_path, ckpt_name = self.resolve_checkpoint(request.base)
        arch, family = self.detect_base(ckpt_path, request.arch, request.family)
        if report is None or report.folder != folder or report.base_arch != arch or report.trigger != trigger:
            report = check_dataset(folder, trigger, arch, request.caption_extension, resolution=request.resolution)
        if free_vram_bytes is None:
            free_vram_bytes = request.free_vram_bytes
        if free_vram_bytes is None and request.preset == "fast":
            free_vram_bytes = query_free_vram_bytes(request.gpu_ids[0] if request.gpu_ids else 0)
        out = output_dir or os.path.join(
            os.fspath(self.host.data_dir()), TRAINING_DIR, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        plan = make_plan(
            report,
            ckpt_path,
            arch,
            trigger,
            request.preset,
            out,
            self._sd_scripts_or_default(),
            self.trainer_python(),
            kind=request.kind,
            family=family,
            overrides=request.plan_overrides(),
            gpu_ids=request.gpu_ids,
            output_name=name,
            free_vram_bytes=free_vram_bytes,
            extra_args=request.extra_args,
            tokenizer_cache_dir=self._tokenizer_cache(request),
            offline=request.offline if request.offline is not None
            else os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"),
        )
        return plan, report, ckpt_name

    def _tokenizer_cache(self, request: TrainingRequest) -> str | None:
        """The request's tokenizer cache (a real folder), else ``<data_dir>/tokenizers`` when present:
        sd-scripts otherwise fetches its CLIP tokenizers from the hub even for a local checkpoint."""
        if request.tokenizer_cache_dir:
            return validate_folder(request.tokenizer_cache_dir, "tokenizer cache folder")
        default = os.path.join(os.fspath(self.host.data_dir()), TOKENIZER_DIR)
        return default if os.path.isdir(default) else None

    # ----------------------------------------------------------------------------- start

    def start(self, request: TrainingRequest, *, report: DatasetReport | None = None) -> str:
        """Check, plan and queue a training; returns the job id. The job is installed into the LoRA
        folder when it succeeds. Raises :class:`TrainingError` (or :class:`AccessDeniedError`)."""
        self.require_local("training")
        if self._closed:
            raise TrainingError("the training service is closed")
        if not 0 <= float(request.preferred_weight) <= 2:
            raise TrainingError(f"preferred weight {request.preferred_weight} is outside 0..2")
        plan, report, ckpt_name = self._plan(request, report=report)  # every refusal before the GPU is touched
        self._check_trainer(plan)
        hold_queue = self._wants_queue(request)
        held = self._hold.reserve(hold_queue=hold_queue, free_vram=request.free_vram)
        try:
            if request.preset == "fast" and request.free_vram_bytes is None and held and request.free_vram:
                # the WebUI's model has just left the GPU: size the batch from what is free now
                plan, report, ckpt_name = self._plan(request, report=report, output_dir=plan.output_dir)
            spec = plan.write_files(plan.job_dir)
            job_id = self.jobs.submit(spec, self._meta(plan, request, ckpt_name), gpu_ids=plan.gpu_ids)
        except BaseException:
            if held:
                self._hold.cancel_reservation()
            raise
        if held:
            self._bind(job_id)
        return job_id

    def _wants_queue(self, request: TrainingRequest) -> bool:
        """Hold the generation queue? The request's choice; else in a WebUI yes — unless the model stays
        on the GPU and the training runs only on other GPUs than the first (the WebUI's usual one)."""
        if request.hold_queue is not None:
            return request.hold_queue
        if getattr(self.host, "kind", "standalone") == "standalone":
            return False
        return request.free_vram or not request.gpu_ids or 0 in request.gpu_ids

    def _check_trainer(self, plan: TrainingPlan) -> None:
        if not os.path.isfile(plan.script_path):
            try:
                self.sd_scripts_dir()
            except TrainerEnvironmentError as exc:
                raise TrainerEnvironmentError(str(exc)) from None
            raise TrainerEnvironmentError(f"sd-scripts not found: {plan.script_path} does not exist")
        py = plan.trainer_python
        if os.path.isabs(py) and not os.path.isfile(py):
            raise TrainerEnvironmentError(
                f"the trainer environment is missing ({py} does not exist): press 'Set up trainer' first"
            )

    def _meta(self, plan: TrainingPlan, request: TrainingRequest, ckpt_name: str) -> dict[str, Any]:
        roots = [os.fspath(r) for r in self.host.lora_roots()]
        return {
            "plan": plan.to_dict(),
            "source": request.source,
            "trigger": plan.trigger,
            "base_name": ckpt_name,
            "install": install_intent(plan, roots[0] if roots else None, ckpt_name, request.preferred_weight),
        }

    def _bind(self, job_id: str) -> None:
        self._hold.bind(job_id)
        try:
            done = self.jobs.get(job_id).status.done
        except LoraStudioError:
            done = True
        if done:  # it ended (failed to start) before it was bound: nothing to hold for
            self._hold.release(job_id)

    # ------------------------------------------------------------------- cancel, resume, view

    def cancel(self, job_id: str) -> JobView:
        """Stop a job (its process group; the last periodic save is kept)."""
        self.require_local("cancelling training")
        self.jobs.cancel(job_id)
        return self.status(job_id)

    def resume(self, job_id: str, *, free_vram: bool = True, hold_queue: bool | None = None) -> str:
        """Queue a new job that continues a cancelled or failed one from its saved state."""
        self.require_local("training")
        record = self.jobs.get(job_id)
        if not record.status.done or record.state == SUCCEEDED:
            raise TrainingError(f"job {job_id} is {record.state}: only a cancelled or failed job can be resumed")
        wants_queue = hold_queue if hold_queue is not None else getattr(self.host, "kind", "standalone") != "standalone"
        held = self._hold.reserve(hold_queue=wants_queue, free_vram=free_vram)
        try:
            new_id = self.jobs.resume(job_id)
        except BaseException:
            if held:
                self._hold.cancel_reservation()
            raise
        if held:
            self._bind(new_id)
        return new_id

    def status(self, job_id: str) -> JobView:
        return self._view(self.jobs.get(job_id))

    def history(self, limit: int | None = None) -> list[JobView]:
        """Every job, newest first (the CLI's and the API's too)."""
        records = self.jobs.list()
        if limit is not None:
            records = records[:limit]
        return [self._view(r) for r in records]

    def latest(self) -> JobView | None:
        """The job to show when none is chosen: the running one, else the newest."""
        records = self.jobs.list()
        for r in records:
            if not r.status.done:
                return self._view(self.jobs.get(r.id))
        return self._view(records[0]) if records else None

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Block until the job has ended, the GPU and queue are handed back and, when it succeeded, the
        LoRA is installed (or ``timeout`` seconds have passed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.jobs.wait(job_id, timeout)
        with self._cond:
            while True:
                view = self.status(job_id)
                if view.finished and not self._hold.holds(job_id):
                    return view
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return view
                self._cond.wait(0.2 if remaining is None else min(remaining, 0.2))

    @property
    def queue_held(self) -> bool:
        """Whether the service holds the host's generation queue now."""
        return self._hold.locked

    @property
    def vram_freed(self) -> bool:
        return self._hold.vram_freed

    def close(self) -> None:
        """Stop listening to the job manager and let go of the queue lock (trainers keep running)."""
        self._closed = True
        self._unsubscribe()
        self._hold.release_all()

    # ------------------------------------------------------------------------- job events

    def _on_job(self, record: JobRecord) -> None:
        if not record.status.done:
            return
        self._hold.release(record.id)
        if record.state == SUCCEEDED and record.meta.get("install"):
            self._schedule_install(record.id)
        with self._cond:
            self._cond.notify_all()

    def _schedule_install(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._installing:
                return
            self._installing.add(job_id)
        threading.Thread(target=self._install_thread, args=(job_id,), name=f"lora-studio-install-{job_id}",
                         daemon=True).start()

    def _install_thread(self, job_id: str) -> None:
        try:
            self.install(job_id)
        except Exception:
            log.exception("LoRA Studio: installing the result of job %s failed", job_id)
        finally:
            with self._cond:
                self._installing.discard(job_id)
                self._cond.notify_all()

    def _install_pending(self) -> None:
        """Install succeeded jobs that finished while no service was watching (after a restart)."""
        try:
            for record in self.jobs.list():
                if record.state == SUCCEEDED and record.meta.get("install") and _read_result(record.job_dir) is None:
                    self._schedule_install(record.id)
        except Exception:
            log.exception("LoRA Studio: checking for finished trainings failed")

    # ---------------------------------------------------------------------------- install

    def install(self, job_id: str) -> InstalledLora:
        """Put a succeeded job's LoRA into the LoRA folder (once; later calls return the first result)."""
        record = self.jobs.get(job_id)
        if record.state != SUCCEEDED:
            raise TrainingError(f"job {job_id} is {record.state}: only a finished training can be installed")
        intent = record.meta.get("install")
        if not isinstance(intent, dict):
            raise TrainingError(f"job {job_id} was not started to be installed into the LoRA folder")
        with _INSTALL_LOCK:  # one install at a time in this process: no two pick the same name
            existing = _read_result(record.job_dir)
            if existing is not None:
                if existing.get("installed"):
                    return InstalledLora.from_dict(existing["installed"])
                raise TrainingError(str(existing.get("error") or "the earlier install failed"))
            if not claim_file(Path(record.job_dir) / RESULT_CLAIM, reclaim_own=True):
                raise TrainingError(f"job {job_id} is being installed by another LoRA Studio process")
            try:
                installed = self._install(record, intent)
            except Exception as exc:
                message = str(exc) if isinstance(exc, LoraStudioError) else f"{type(exc).__name__}: {exc}"
                _write_result(record.job_dir, {"error": message, "at": time.time()})
                raise TrainingError(f"the LoRA was trained but could not be put into the LoRA folder: {message}") from exc
            finally:
                try:
                    (Path(record.job_dir) / RESULT_CLAIM).unlink()
                except OSError:
                    pass
            _write_result(record.job_dir, {"installed": installed.to_dict(), "at": time.time()})
        with self._cond:
            self._cond.notify_all()
        return installed

    def _install(self, record: JobRecord, intent: Mapping[str, Any]) -> InstalledLora:
        from lib_lora import sidecars

        source = record.status.output_path or _expected_output(record)
        if not source or not os.path.isfile(source):
            raise TrainingError(f"the trained file is missing: {source or '(no output recorded)'}")
        root = intent.get("lora_root")
        roots = [os.fspath(r) for r in self.host.lora_roots()]
        if not root or not os.path.isdir(root):
            root = roots[0] if roots else None
        if not root:
            raise TrainingError("there is no LoRA folder to put the LoRA into")
        folder = os.path.join(root, _safe_component(str(intent.get("subfolder") or intent.get("name") or "")))
        os.makedirs(folder, exist_ok=True)
        stem = _safe_component(str(intent.get("name") or Path(source).stem))
        suffix = Path(source).suffix or ".safetensors"
        target = _place_file(source, folder, stem, suffix, taken=self._taken_name)
        new_stem = Path(target).stem
        notes: list[str] = []
        sidecar_path: str | None = None
        try:
            sidecars.update_user_metadata(
                target,
                description=str(intent.get("description") or ""),
                sd_version=sidecars.sd_version_for(str(intent.get("arch") or "")),
                activation_text=str(intent.get("trigger") or ""),
                preferred_weight=float(intent.get("preferred_weight") or DEFAULT_PREFERRED_WEIGHT),
                category=str(intent.get("category") or "") or None,
            )
            sidecar_path = os.fspath(sidecars.user_metadata_path(target))
        except LoraStudioError as exc:
            notes.append(f"no sidecar: {exc}")
        preview: str | None = None
        sample = pick_preview_sample(record.status.samples, record.spec.get("sample_dir"))
        if sample:
            try:
                preview = _write_preview(sample, os.path.join(folder, new_stem + ".preview.png"))
            except (OSError, ValueError) as exc:
                notes.append(f"no preview: {exc}")
        found = False
        try:
            self.host.rescan(wait=True)
            lookup = self.host.library().lookup(new_stem)
            found = bool(lookup.found and lookup.entry is not None
                         and os.path.realpath(lookup.entry.path) == os.path.realpath(target))
            if not found:
                notes.append(f"<lora:{new_stem}> does not resolve to the new file yet: {lookup.message}")
        except Exception as exc:
            notes.append(f"the library could not be rescanned: {exc}")
        weight = float(intent.get("preferred_weight") or DEFAULT_PREFERRED_WEIGHT)
        message = f"Saved as {target} — use <lora:{new_stem}:{weight:g}> with {intent.get('trigger')}"
        if notes:
            message += " (" + "; ".join(notes) + ")"
        return InstalledLora(path=target, name=new_stem, sidecar=sidecar_path, preview=preview, found=found,
                             message=message, trigger=str(intent.get("trigger") or ""), weight=weight)

    def _taken_name(self, stem: str) -> bool:
        """Whether another LoRA in the library already answers to ``stem`` (a new one would shadow it)."""
        try:
            return self.host.library().lookup(stem).status in ("found", "ambiguous")
        except Exception:
            return False

    # ------------------------------------------------------------------------------ views

    def _result(self, record: JobRecord) -> dict[str, Any] | None:
        cached = self._results.get(record.id)
        if cached is not None:
            return cached
        result = _read_result(record.job_dir)
        if result is not None:
            self._results[record.id] = result
        return result

    def _view(self, record: JobRecord) -> JobView:
        meta = record.meta
        raw_plan = meta.get("plan")
        plan: dict[str, Any] = raw_plan if isinstance(raw_plan, dict) else {}
        raw_preset = plan.get("preset")
        preset: dict[str, Any] = raw_preset if isinstance(raw_preset, dict) else {}
        result = self._result(record) if record.state == SUCCEEDED and meta.get("install") else None
        installed = None
        error = None
        if result is not None:
            if isinstance(result.get("installed"), dict):
                installed = InstalledLora.from_dict(result["installed"])
            else:
                error = str(result.get("error") or "install failed")
        base_path = str(plan.get("base_checkpoint") or "")
        return JobView(
            id=record.id,
            status=record.status,
            created_at=record.created_at,
            source=str(meta.get("source") or ""),
            trigger=str(meta.get("trigger") or plan.get("trigger") or ""),
            output_name=str(plan.get("output_name") or record.spec.get("output_name") or ""),
            base=str(meta.get("base_name") or os.path.basename(base_path)),
            preset=str(preset.get("id") or ""),
            total_steps=int(record.spec.get("total_steps") or record.status.total or 0),
            job_dir=record.job_dir,
            resumed_from=record.resumed_from,
            installs=bool(meta.get("install")),
            installed=installed,
            install_error=error,
        )


# ----------------------------------------------------------------------------- file helpers


def _extension_dir() -> str:
    return os.fspath(Path(__file__).resolve().parents[2])


def _expected_output(record: JobRecord) -> str | None:
    out, name = record.spec.get("output_dir"), record.spec.get("output_name")
    if not out or not name:
        return None
    return os.path.join(str(out), f"{name}.safetensors")


def _place_file(source: str, folder: str, stem: str, suffix: str,
                taken: Callable[[str], bool] = lambda s: False) -> str:
    """Put ``source`` into ``folder`` as ``<stem><suffix>`` or ``<stem>-2<suffix>`` … without ever
    replacing a file: a hard link when possible (instant, no extra space), else a copy made under a
    temporary name and linked into place (``link`` fails when the name exists, so two writers can never
    overwrite each other). The training folder keeps its own file."""
    for n in range(1, 1000):
        name = stem if n == 1 else f"{stem}-{n}"
        target = os.path.join(folder, name + suffix)
        if os.path.lexists(target) or _sidecar_exists(folder, name) or taken(name):
            continue
        try:
            os.link(source, target)
            return target
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES,
                                 getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)):
                raise TrainingError(f"cannot write into {folder}: {exc.strerror or exc}") from None
        tmp = os.path.join(folder, f".{name}{suffix}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(source, tmp)
            try:
                os.link(tmp, target)
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: exclusive create, then copy into it
                try:
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                os.close(fd)
                os.replace(tmp, target)
            return target
        except OSError as exc:
            raise TrainingError(f"cannot copy the LoRA into {folder}: {exc.strerror or exc}") from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    raise TrainingError(f"{folder} already holds {stem}{suffix} and 998 numbered copies")


def _sidecar_exists(folder: str, stem: str) -> bool:
    """A sidecar of that name without its model (left from a deleted LoRA) would be adopted: skip it."""
    return any(os.path.lexists(os.path.join(folder, stem + s)) for s in (".json", ".preview.png"))


def pick_preview_sample(samples: Iterable[str], sample_dir: str | None = None) -> str | None:
    """The sample image for a preview: the first prompt (a portrait) of the last sample step; with no
    step in the names, the newest file. Looks into ``sample_dir`` when the status lists none."""
    files = [s for s in samples if os.path.isfile(s)]
    if not files and sample_dir and os.path.isdir(sample_dir):
        files = [os.path.join(sample_dir, n) for n in sorted(os.listdir(sample_dir))
                 if n.lower().endswith(_IMAGE_SUFFIXES) and not n.startswith(".")]
    if not files:
        return None
    keyed = []
    for path in files:
        m = _SAMPLE_NAME.search(os.path.basename(path))
        if m:
            keyed.append(((int(m.group(1)), -int(m.group(2))), path))
    if keyed:
        return max(keyed)[1]
    return max(files, key=lambda p: os.stat(p).st_mtime)


def _write_preview(sample: str, target: str) -> str:
    """Write ``sample`` as a PNG preview at ``target`` (converted when it is another format)."""
    with open(sample, "rb") as fh:
        head = fh.read(8)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        if head == b"\x89PNG\r\n\x1a\n":
            shutil.copyfile(sample, tmp)
        else:
            from PIL import Image

            with Image.open(sample) as img:
                img.convert("RGB").save(tmp, format="PNG")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _read_result(job_dir: str) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(job_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_result(job_dir: str, data: dict[str, Any]) -> None:
    path = Path(job_dir) / RESULT_FILE
    tmp = path.with_name(f".{RESULT_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("LoRA Studio: cannot write %s: %s", path, exc)


def install_intent(plan: TrainingPlan, lora_root: str | None, ckpt_name: str,
                   preferred_weight: float = DEFAULT_PREFERRED_WEIGHT) -> dict[str, Any]:
    """What a job's record says about putting its LoRA into the LoRA folder when it succeeds
    (``meta["install"]``: :meth:`TrainingService.install` reads it)."""
    description = (
        f"Trained with LoRA Studio on {ckpt_name}: preset {plan.preset.id}, {plan.max_train_steps} steps × batch "
        f"{plan.batch_size}, {plan.image_count} images at {plan.resolution} px, dim {plan.network_dim} / alpha "
        f"{plan.network_alpha:g}, lr {plan.learning_rate:g}. Trigger word: {plan.trigger}."
    )
    return {
        "lora_root": lora_root,
        "subfolder": _safe_component(plan.trigger),
        "name": plan.output_name,
        "trigger": plan.trigger,
        "arch": plan.base_arch,
        "preferred_weight": float(preferred_weight),
        "description": description,
        "category": plan.preset.kind,
    }


# ---------------------------------------------------------------------- one per process


_REGISTRY_LOCK = threading.Lock()
_INSTALL_LOCK = threading.RLock()
_MANAGERS: dict[str, JobManager] = {}
_SERVICES: dict[str, TrainingService] = {}


def job_manager_for(data_dir: str | os.PathLike[str]) -> JobManager:
    """The process's one :class:`JobManager` for a data folder (jobs live in ``<data_dir>/jobs``)."""
    key = os.path.realpath(os.fspath(data_dir))
    with _REGISTRY_LOCK:
        manager = _MANAGERS.get(key)
        if manager is None:
            os.makedirs(key, exist_ok=True)
            manager = _MANAGERS[key] = JobManager(key)
        return manager


def service_for(host: Any) -> TrainingService:
    """The process's one :class:`TrainingService` for ``host``'s data folder (kept in this module, so a
    WebUI "Reload UI" — which re-executes ``scripts/`` — keeps following the running jobs). A new host
    object on the same data folder replaces the service of the old one."""
    data = os.path.realpath(os.fspath(host.data_dir()))
    with _REGISTRY_LOCK:
        service = _SERVICES.get(data)
        if service is not None and service.host is host and not service._closed:
            return service
    jobs = job_manager_for(data)
    old = None
    with _REGISTRY_LOCK:
        service = _SERVICES.get(data)
        if service is None or service.host is not host or service._closed:
            old = service
            service = _SERVICES[data] = TrainingService(host, jobs)
    if old is not None and old is not service:
        old.close()
    return service


def reset_for_tests() -> None:
    """Close every service and manager this module made (tests only)."""
    with _REGISTRY_LOCK:
        services = list(_SERVICES.values())
        managers = list(_MANAGERS.values())
        _SERVICES.clear()
        _MANAGERS.clear()
    for s in services:
        s.close()
    for m in managers:
        m.close()


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None

    def label(self) -> str:
        free = f", {self.memory_free_mib / 1024:.1f} of {self.memory_total_mib / 1024:.0f} GiB free" if (
            self.memory_free_mib is not None and self.memory_total_mib) else ""
        return f"{self.index}: {self.name}{free}"


def list_gpus(nvidia_smi: str = "nvidia-smi", timeout: float = 10.0) -> list[GpuInfo]:
    """The NVIDIA GPUs ``nvidia-smi`` sees (empty without the tool or a GPU). Never imports torch."""
    import subprocess

    exe = shutil.which(nvidia_smi)
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    gpus: list[GpuInfo] = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0].isdigit():
            continue

        def mib(text: str) -> int | None:
            try:
                return int(float(text))
            except ValueError:
                return None

        gpus.append(GpuInfo(int(parts[0]), parts[1], mib(parts[2]) if len(parts) > 2 else None,
                            mib(parts[3]) if len(parts) > 3 else None))
    return gpus


def request_from_mapping(data: Mapping[str, Any]) -> TrainingRequest:
    """A :class:`TrainingRequest` from plain data (API bodies, saved forms); unknown keys are refused."""
    names = {f.name for f in dataclasses.fields(TrainingRequest)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TrainingError(f"unknown training field(s): {', '.join(unknown)}")
    kw = dict(data)
    if kw.get("gpu_ids") is not None:
        kw["gpu_ids"] = tuple(int(g) for g in kw["gpu_ids"])
    if kw.get("extra_args") is not None:
        kw["extra_args"] = tuple(str(a) for a in kw["extra_args"])
    return TrainingRequest(**kw)


def parse_gpu_ids(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"0,1"`` -> ``(0, 1)``; empty -> ``None`` (the default GPU)."""
    if text is None:
        return None
    if not isinstance(text, str):
        return tuple(int(g) for g in text) or None
    if not text.strip():
        return None
    ids: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part.isdigit():
            raise TrainingError(f"GPUs must be numbers separated by commas, like 0,1 (got {text!r})")
        ids.append(int(part))
    return tuple(ids)


__all__ = [
    "DEFAULT_PREFERRED_WEIGHT",
    "GpuInfo",
    "InstalledLora",
    "JobView",
    "TrainingRequest",
    "TrainingService",
    "job_manager_for",
    "list_gpus",
    "parse_gpu_ids",
    "pick_preview_sample",
    "request_from_mapping",
    "reset_for_tests",
    "service_for",
    "validate_folder",
]
