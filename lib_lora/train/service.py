"""The one training workflow the Train tab, the HTTP API and scripts share: check a dataset, plan a run,
start it in the job queue, follow it, cancel or resume it, and hand the finished LoRA to placement.

:class:`TrainingService` wraps a :class:`~lib_lora.host.Host` and a :class:`~lib_lora.train.jobs.JobManager`:

- **check / plan / start** — the same dataset check and :func:`~lib_lora.train.plan.make_plan` as
  ``python -m lib_lora train``; the base checkpoint is picked from the host's list (its architecture read
  from its header by the host's cached detector), the run's files go to ``<data_dir>/training/<name>-<time>``.
- **the GPU** — with ``hold_queue`` the host's generation queue lock is held from just before the job
  starts until the last job the service started has ended — succeeded, failed, cancelled, or refused at
  start; with ``free_vram`` the WebUI's checkpoint is moved out of GPU memory under that lock and brought
  back before the lock is released (:mod:`lib_lora.train.holding`).
- **the result** — a succeeded job is installed into the first LoRA folder by
  :func:`lib_lora.train.placement.install_job` (one subfolder per character, never replacing a file,
  with sidecar and preview, once even across restarts); a job that finished while nothing was watching
  is installed when the service starts.
- **security** — when the host is reachable by others (:meth:`Host.is_remote`) every call that names a
  path or starts a subprocess raises :class:`~lib_lora.errors.AccessDeniedError`. Folder paths are
  resolved (symlinks followed) and must be real directories; nothing ever goes through a shell.

One service per host and data folder per process (:func:`service_for`); its job manager is shared with
the HTTP API (:func:`job_manager_for`). The request and view types, GPU listing and placement live in
their own modules and are re-exported here for the callers that import them from this one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib_lora.errors import AccessDeniedError, LoraStudioError, TrainerEnvironmentError, TrainingError
from lib_lora.host import reachable_by_others
from lib_lora.train.dataset import DatasetReport, check_dataset, write_missing_captions
from lib_lora.train.gpus import GpuInfo, list_gpus, parse_gpu_ids, webui_cuda
from lib_lora.train.holding import GpuHold
from lib_lora.train.jobs import JobManager, JobRecord
from lib_lora.train.placement import (
    DEFAULT_PREFERRED_WEIGHT,
    InstalledLora,
    install_intent,
    install_job,
    pick_preview_sample,
    read_result,
)
from lib_lora.train.plan import (
    TrainingPlan,
    default_output_name,
    make_plan,
    validate_output_name,
    validate_trigger,
)
from lib_lora.train.presets import KINDS, PRESET_NAMES, query_free_vram_bytes
from lib_lora.train.request import JobView, TrainingRequest, request_from_mapping, validate_folder
from lib_lora.train.runner import SUCCEEDED

log = logging.getLogger(__name__)

TRAINING_DIR = "training"
TOKENIZER_DIR = "tokenizers"  # <data_dir>/tokenizers/openai_clip-vit-large-patch14 … (--tokenizer_cache_dir)
#: how long :meth:`TrainingService.start` waits for the WebUI to finish generating before refusing
DEFAULT_LOCK_TIMEOUT = 30.0
#: architecture ids detection reports -> the ids the presets train
TRAINABLE_ARCH = {"sd1": "sd1", "sd15": "sd1", "sdxl": "sdxl", "flux1": "flux1", "flux": "flux1"}

ProgressCallback = Callable[[int, int, str], None]


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
        self._hold = GpuHold(host, lock_timeout)
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
        return reachable_by_others(self.host)  # cannot tell: counts as remote

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
        options.setdefault("cuda", webui_cuda())
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
        plan, _report, _name = self._plan(request, self._character(request), report=report, output_dir=output_dir)
        return plan

    def _plan(self, request: TrainingRequest, character: Any, *, report: DatasetReport | None = None,
              output_dir: str | None = None, free_vram_bytes: int | None = None
              ) -> tuple[TrainingPlan, DatasetReport, str]:
        if request.preset not in PRESET_NAMES:
            raise TrainingError(f"unknown preset {request.preset!r} (choose one of: {', '.join(PRESET_NAMES)})")
        if request.kind not in KINDS:
            raise TrainingError(f"unknown LoRA kind {request.kind!r} (choose one of: {', '.join(KINDS)})")
        folder = validate_folder(request.folder)
        if character is not None:  # trained as <name>_v<N> so the alias kohya writes is the file's stem
            request = dataclasses.replace(request, trigger=character.trigger, output_name=character.output_name)
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
        character, reservation = self._reserve(request)
        try:
            job_id, held = self._start(request, character, report)
        except BaseException:
            if reservation is not None:
                self._release_version(character.intent(()), [None])
            raise
        if reservation is not None:  # the version is the job's from now on (until it is placed)
            self._hold_version(character.intent(()), job_id, [None])
        if held:
            self._bind(job_id)
        return job_id

    def _reserve(self, request: TrainingRequest) -> tuple[Any, Any]:
        """The request's character with its version reserved for this process (``(None, None)``: an
        ordinary LoRA). The reservation is what keeps other starts — here or in another process — off
        this version; the job-record check covers jobs started before reservations existed."""
        character = self._character(request)
        if character is None:
            return None, None
        from lib_lora.characters.create import CharacterError
        from lib_lora.characters.training import reserve_training

        try:
            character, reservation = reserve_training(character, self._pending_characters())
        except CharacterError as exc:
            raise TrainingError(str(exc)) from None
        for note in reservation.notes:
            log.info("LoRA Studio: %s", note)
        return character, reservation

    def _hold_version(self, intent: dict[str, Any], job_id: str, owners: list[str | None],
                      *, create: bool = False) -> None:
        from lib_lora.characters.training import hold_version

        try:
            hold_version(intent, job_id, os.fspath(self.jobs.jobs_dir), owners, create=create)
        except LoraStudioError as exc:
            if create:
                raise TrainingError(str(exc)) from None
            log.warning("LoRA Studio: job %s: %s", job_id, exc)

    def _release_version(self, intent: dict[str, Any], owners: list[str | None]) -> None:
        from lib_lora.characters.training import release_version

        try:
            release_version(intent, owners)
        except LoraStudioError as exc:
            log.warning("LoRA Studio: %s", exc)

    def _start(self, request: TrainingRequest, character: Any, report: DatasetReport | None) -> tuple[str, bool]:
        plan, report, ckpt_name = self._plan(request, character, report=report)  # every refusal before the GPU
        self._check_trainer(plan)
        hold_queue = self._wants_queue(request)
        held = self._hold.reserve(hold_queue=hold_queue, free_vram=request.free_vram)
        try:
            if request.preset == "fast" and request.free_vram_bytes is None and held and request.free_vram:
                # the WebUI's model has just left the GPU: size the batch from what is free now
                plan, report, ckpt_name = self._plan(request, character, report=report, output_dir=plan.output_dir)
            spec = plan.write_files(plan.job_dir)
            job_id = self.jobs.submit(spec, self._meta(plan, request, ckpt_name, character), gpu_ids=plan.gpu_ids)
        except BaseException:
            if held:
                self._hold.cancel_reservation()
            raise
        return job_id, held

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

    def _meta(self, plan: TrainingPlan, request: TrainingRequest, ckpt_name: str, character: Any) -> dict[str, Any]:
        roots = [os.fspath(r) for r in self.host.lora_roots()]
        intent = install_intent(plan, roots[0] if roots else None, ckpt_name, request.preferred_weight)
        if character is not None:
            from lib_lora.characters.training import pick_references

            refs = request.references
            if refs is None:
                refs = tuple(pick_references(request.folder, request.caption_extension))
            intent["character"] = character.intent(refs)
        return {
            "plan": plan.to_dict(),
            "source": request.source,
            "trigger": plan.trigger,
            "base_name": ckpt_name,
            "install": intent,
        }

    def _character(self, request: TrainingRequest) -> Any:
        """The character the request trains a version of (``None``: an ordinary LoRA)."""
        if not request.character:
            return None
        from lib_lora.characters import character_root
        from lib_lora.characters.create import CharacterError
        from lib_lora.characters.training import character_training

        missing = [r for r in request.references or () if not os.path.isfile(r)]
        if missing:
            raise TrainingError(f"reference image not found: {', '.join(missing)}")
        settings = self.host.settings()
        root = character_root(getattr(settings, "characters_root", ""), self.host.lora_roots())
        try:
            return character_training(root, request.character, request.trigger, self._pending_characters())
        except CharacterError as exc:
            raise TrainingError(str(exc)) from None

    def _pending_characters(self) -> list[dict[str, Any]]:
        """The character intents of jobs that may still install a version: queued, running, or
        succeeded and not installed yet (failed and cancelled ones hold theirs by reservation only)."""
        pending: list[dict[str, Any]] = []
        for record in self.jobs.list():
            intent = _character_intent(record)
            if intent is None:
                continue
            if record.status.done and (record.state != SUCCEEDED or read_result(record.job_dir) is not None):
                continue
            pending.append(intent)
        return pending

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
        character = _character_intent(record)
        if character is not None:  # it keeps its version: refused when that was taken meanwhile
            from lib_lora.characters.reservation import job_chain

            self._hold_version(character, job_id, [*job_chain(record), None], create=True)
        wants_queue = hold_queue if hold_queue is not None else getattr(self.host, "kind", "standalone") != "standalone"
        held = self._hold.reserve(hold_queue=wants_queue, free_vram=free_vram)
        try:
            new_id = self.jobs.resume(job_id)
        except BaseException:
            if held:
                self._hold.cancel_reservation()
            raise
        if character is not None:
            self._hold_version(character, new_id, [job_id])
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
        character = _character_intent(record)
        if character is not None and record.state != SUCCEEDED and not record.status.resumable:
            self._release_version(character, [record.id])  # it can never place its version
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
                if record.state == SUCCEEDED and record.meta.get("install") and read_result(record.job_dir) is None:
                    self._schedule_install(record.id)
        except Exception:
            log.exception("LoRA Studio: checking for finished trainings failed")

    # ---------------------------------------------------------------------------- install

    def install(self, job_id: str) -> InstalledLora:
        """Put a succeeded job's LoRA into the LoRA folder (once; later calls return the first result)."""
        installed = install_job(self.jobs.get(job_id), self.host)
        with self._cond:
            self._cond.notify_all()
        return installed

    # ------------------------------------------------------------------------------ views

    def _result(self, record: JobRecord) -> dict[str, Any] | None:
        cached = self._results.get(record.id)
        if cached is not None:
            return cached
        result = read_result(record.job_dir)
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


# ------------------------------------------------------------------------------- helpers


def _character_intent(record: JobRecord) -> dict[str, Any] | None:
    """What a job trains into a character (``meta["install"]["character"]``), if anything."""
    install = record.meta.get("install")
    character = install.get("character") if isinstance(install, dict) else None
    return character if isinstance(character, dict) else None


def _extension_dir() -> str:
    return os.fspath(Path(__file__).resolve().parents[2])


# ---------------------------------------------------------------------- one per process


_REGISTRY_LOCK = threading.Lock()
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


__all__ = [
    "DEFAULT_PREFERRED_WEIGHT",
    "GpuInfo",
    "InstalledLora",
    "JobView",
    "TrainingRequest",
    "TrainingService",
    "install_intent",
    "job_manager_for",
    "list_gpus",
    "parse_gpu_ids",
    "pick_preview_sample",
    "request_from_mapping",
    "reset_for_tests",
    "service_for",
    "validate_folder",
]
