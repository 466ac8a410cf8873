"""``python -m lib_lora train FOLDER --base CHECKPOINT --trigger WORD [--character NAME] [...]``: check a dataset, plan a kohya
sd-scripts LoRA training and run it (or, with ``--dry-run``, show the exact command without starting it).

The base model's architecture is read from the checkpoint's safetensors header (never unpickled); pass
``--arch`` for ``.ckpt`` files or when detection cannot decide. A run goes through the same job queue and
job records as the WebUI tab (``lib_lora.train.jobs``), so it shows up in the tab's history.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib_lora.errors import LoraStudioError, TrainingError
from lib_lora.train.coverage import check_coverage
from lib_lora.train.dataset import DatasetReport, check_dataset, write_missing_captions
from lib_lora.train.plan import TrainingPlan, make_plan
from lib_lora.train.presets import BASES, KINDS, PRESET_NAMES, query_free_vram_bytes

ARCH_CHOICES = ("sd1", "sdxl", "flux1")
#: architecture ids detection may report -> the ids the presets train
_TRAINABLE = {"sd1": "sd1", "sd15": "sd1", "sdxl": "sdxl", "flux1": "flux1", "flux": "flux1"}


def default_sd_scripts_dir() -> str:
    env = os.environ.get("SD_SCRIPTS_DIR", "").strip()
    if env:
        return env
    return str(Path(__file__).resolve().parents[2] / "vendor" / "sd-scripts")


def default_trainer_python(data_dir: str | None = None, sd_scripts_dir: str | None = None) -> str:
    """``$TRAINER_PYTHON``, else the Python of LoRA Studio's trainer venv (which may not exist yet)."""
    env = os.environ.get("TRAINER_PYTHON", "").strip()
    if env:
        return env
    from lib_lora.paths import user_data_dir

    try:
        from lib_lora.train.environment import TrainerEnvironment
    except ImportError:
        return str(user_data_dir(data_dir) / "trainer-venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    return str(TrainerEnvironment(user_data_dir(data_dir), sd_scripts_dir or default_sd_scripts_dir()).python)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="training images: a flat folder, or a kohya parent of <repeats>_<name> folders")
    p.add_argument("--base", required=True, metavar="CHECKPOINT", help="base model checkpoint (.safetensors)")
    p.add_argument("--trigger", metavar="WORD", help="the unique trigger word the LoRA learns (required, except "
                   "for an existing --character: its prompts.txt gives it)")
    p.add_argument("--character", metavar="NAME", help="train the next version of this character: saved as "
                   "characters/<NAME>/lora/<NAME>_v<N>.safetensors in --lora-dir (or $LORA_STUDIO_CHARACTERS), "
                   "with reference images from the dataset and a prompts.txt")
    p.add_argument("--reference", action="append", metavar="IMAGE", help="with --character: a dataset image to copy "
                   "into the character's reference/ (repeat; default: a few front-facing ones by their captions)")
    p.add_argument("--preset", default="default", choices=PRESET_NAMES, help="training preset (default: %(default)s)")
    p.add_argument("--kind", default="character", choices=KINDS, help="what the LoRA is for (default: %(default)s)")
    p.add_argument("--arch", choices=ARCH_CHOICES, help="base architecture, when it cannot be read from the checkpoint")
    p.add_argument("--family", choices=sorted(BASES), help="base family (pony, illustrious ...: changes sample prompts)")
    p.add_argument("--steps", default="auto", help="optimizer steps, or 'auto' (each image seen ~90 times)")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the learning rate")
    p.add_argument("--dim", type=int, help="override the network dim (rank)")
    p.add_argument("--alpha", type=float, help="override the network alpha")
    p.add_argument("--resolution", type=int, help="training resolution in px (multiple of 64)")
    p.add_argument("--repeats", type=int, help="repeats of a flat folder per epoch (kohya folders name their own)")
    p.add_argument("--seed", type=int, help="random seed (default 42)")
    p.add_argument("--mixed-precision", choices=("bf16", "fp16", "no"), help="override the preset's precision")
    p.add_argument("--caption-extension", default=".txt", help="caption file extension (default: %(default)s)")
    p.add_argument("--output", metavar="DIR", help="output folder (default: ./output/<name>)")
    p.add_argument("--name", help="output file name without extension (default: from the trigger)")
    p.add_argument("--sd-scripts", metavar="DIR", default=None, help="sd-scripts checkout (default: vendor/sd-scripts or $SD_SCRIPTS_DIR)")
    p.add_argument("--trainer-python", metavar="PY", default=None, help="Python of the trainer venv (default: $TRAINER_PYTHON or LoRA Studio's trainer venv)")
    p.add_argument("--gpus", metavar="IDS", help="GPU ids, e.g. 0 or 0,1 (several GPUs: one process each)")
    p.add_argument("--free-vram-gb", type=float, help="free VRAM for the fast preset's batch size (default: ask nvidia-smi)")
    p.add_argument("--tokenizer-cache", metavar="DIR", help="tokenizer cache folder (--tokenizer_cache_dir), for offline runs")
    p.add_argument("--offline", action="store_true", help="no Hugging Face hub access (HF_HUB_OFFLINE=1)")
    p.add_argument("--clip-l", metavar="FILE", help="Flux.1: CLIP-L text encoder file")
    p.add_argument("--t5xxl", metavar="FILE", help="Flux.1: T5-XXL text encoder file")
    p.add_argument("--ae", metavar="FILE", help="Flux.1: autoencoder file")
    p.add_argument("--extra-args", metavar="ARGS", default="", help="further sd-scripts options, e.g. \"--noise_offset 0.05\"")
    p.add_argument("--job-dir", metavar="DIR", help="where dataset.toml and sample_prompts.txt go (default: <output>/_training)")
    p.add_argument("--data-dir", metavar="DIR", help="LoRA Studio data folder for the job record (default: $LORA_STUDIO_DATA)")
    p.add_argument("--dry-run", action="store_true", help="print the dataset report, command and dataset TOML; start nothing")
    p.add_argument("--write-missing-captions", action="store_true", help="create the caption files that are missing")
    p.add_argument("--caption-template", default="{trigger}", help="text of written captions (default: %(default)s)")
    p.add_argument("--lora-dir", metavar="DIR",
                   help="when it succeeds, put the LoRA into this LoRA folder as the Train tab does: "
                        "<DIR>/<trigger>/<name>.safetensors (never replacing a file) with an A1111 sidecar and a preview")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress output while checking")


def parse_gpus(text: str | None) -> tuple[int, ...] | None:
    if text is None or not text.strip():
        return None
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise TrainingError(f"--gpus must be GPU numbers separated by commas, like 0,1 (got {text!r})")
        ids.append(int(part))
    return tuple(ids)


def detect_arch(base: str, arch: str | None, family: str | None) -> tuple[str, str | None, str]:
    """(architecture, family, how it was decided) for a base checkpoint."""
    if arch:
        return arch, family, "--arch"
    path = os.path.abspath(base)
    if not os.path.isfile(path):
        raise TrainingError(f"base checkpoint not found: {path}")
    if not path.lower().endswith(".safetensors"):
        raise TrainingError(
            f"{os.path.basename(path)} is not a .safetensors file, so its architecture cannot be read safely: "
            "pass --arch sd1|sdxl|flux1"
        )
    from lib_lora.architecture import Hints, detect_checkpoint
    from lib_lora.safetensors_header import read_header

    try:
        header = read_header(path)
    except LoraStudioError as exc:
        raise TrainingError(f"cannot read the checkpoint header: {exc.message}") from exc
    try:
        det = detect_checkpoint(header, Hints(filename=os.path.basename(path)))
    except NotImplementedError:
        raise TrainingError("base-model detection is not available in this version: pass --arch sd1|sdxl|flux1") from None
    found = _TRAINABLE.get(det.architecture)
    if found is None:
        raise TrainingError(
            f"the checkpoint is {det.architecture!r}; the presets train SD1.5, SDXL (Pony, Illustrious) and Flux.1 "
            "(pass --arch to override)"
        )
    return found, family or det.family, "checkpoint header"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    ov: dict[str, Any] = {}
    steps = str(args.steps).strip().lower()
    if steps != "auto":
        try:
            ov["steps"] = int(steps)
        except ValueError:
            raise TrainingError(f"--steps must be a whole number or 'auto' (got {args.steps!r})") from None
    for key, value in (
        ("batch_size", args.batch_size),
        ("learning_rate", args.lr),
        ("network_dim", args.dim),
        ("network_alpha", args.alpha),
        ("resolution", args.resolution),
        ("repeats", args.repeats),
        ("seed", args.seed),
        ("mixed_precision", args.mixed_precision),
    ):
        if value is not None:
            ov[key] = value
    return ov


def _check_progress(quiet: bool) -> Callable[[int, int, str], None] | None:
    if quiet or not sys.stderr.isatty():
        return None
    last = [0.0]

    def progress(done: int, total: int, path: str) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > 0.1:
            last[0] = now
            end = "\n" if done == total else ""
            print(f"\rchecking images {done}/{total}", end=end, file=sys.stderr, flush=True)

    return progress


def build(args: argparse.Namespace) -> tuple[DatasetReport, TrainingPlan | None, TrainingError | None]:
    """Check the dataset and plan (the plan is None with the error when it cannot be made)."""
    arch, family, _how = detect_arch(args.base, args.arch, args.family)
    report = check_dataset(
        args.folder,
        args.trigger,
        arch,
        args.caption_extension,
        resolution=args.resolution,
        progress=_check_progress(args.quiet),
    )
    if args.write_missing_captions:
        written = write_missing_captions(report, args.trigger, args.caption_template)
        print(f"wrote {len(written)} missing caption file(s)")
        if written:
            report = check_dataset(args.folder, args.trigger, arch, args.caption_extension, resolution=args.resolution)
    gpus = parse_gpus(args.gpus)
    free_vram = None
    if args.preset == "fast":
        if args.free_vram_gb is not None:
            free_vram = int(args.free_vram_gb * 1024**3)
        else:
            free_vram = query_free_vram_bytes(gpus[0] if gpus else 0)
    flux = {k: v for k, v in (("clip_l", args.clip_l), ("t5xxl", args.t5xxl), ("ae", args.ae)) if v}
    try:
        extra = shlex.split(args.extra_args) if args.extra_args else []
    except ValueError as exc:
        raise TrainingError(f"--extra-args cannot be split into arguments: {exc}") from None
    try:
        plan = make_plan(
            report,
            args.base,
            arch,
            args.trigger,
            args.preset,
            args.output,
            args.sd_scripts or default_sd_scripts_dir(),
            args.trainer_python or default_trainer_python(args.data_dir, args.sd_scripts),
            kind=args.kind,
            family=family,
            overrides=_overrides(args),
            gpu_ids=gpus,
            tokenizer_cache_dir=args.tokenizer_cache,
            offline=args.offline or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"),
            output_name=args.name,
            job_dir=args.job_dir,
            free_vram_bytes=free_vram,
            flux_models=flux or None,
            extra_args=extra,
        )
    except TrainingError as exc:
        return report, None, exc
    return report, plan, None


def _character(args: argparse.Namespace) -> Any:
    """``--character``: the character and version this training makes; fills in --trigger and --name."""
    if not args.character:
        if not args.trigger:
            raise TrainingError("--trigger is required (or --character NAME for an existing character)")
        return None
    from lib_lora.characters import CharacterError, character_root
    from lib_lora.characters.training import character_training

    root = character_root(None, [os.path.abspath(args.lora_dir)] if args.lora_dir else [])
    if root is None:
        raise TrainingError("--character needs --lora-dir (its characters/ folder) or LORA_STUDIO_CHARACTERS")
    try:
        ct = character_training(root, args.character, args.trigger)
    except CharacterError as exc:
        raise TrainingError(str(exc)) from None
    if args.name and args.name != ct.output_name:
        raise TrainingError(f"--name cannot be used with --character: the file is named {ct.output_name}")
    args.trigger, args.name = ct.trigger, ct.output_name
    return ct


def _reserve(args: argparse.Namespace) -> Any:
    """Reserve the character's version for this process (see :mod:`lib_lora.characters.reservation`):
    another ``train --character`` or the WebUI starting at the same time takes the next one."""
    from lib_lora.characters import CharacterError
    from lib_lora.characters.training import reserve_training

    try:
        ct, reservation = reserve_training(args.character_training)
    except CharacterError as exc:
        raise TrainingError(str(exc)) from None
    for note in reservation.notes:
        print(f"note: {note}", file=sys.stderr)
    args.character_training, args.name = ct, ct.output_name
    return reservation


def run(args: argparse.Namespace) -> int:
    args.character_training = _character(args)
    reservation = None
    if args.character_training is not None and not args.dry_run:
        reservation = _reserve(args)
    args.job_bound = False
    try:
        return _run(args)
    finally:
        if reservation is not None and not args.job_bound:  # no job was queued: give the version back
            from lib_lora.characters.training import release_version

            release_version(args.character_training.intent(()), [None])


def _run(args: argparse.Namespace) -> int:
    report, plan, error = build(args)
    print(report.format())
    if args.dry_run:
        print(check_coverage(report).format())
    print()
    if plan is None:
        assert error is not None
        raise error
    print(plan.summary())
    if args.dry_run:
        spec = plan.job_spec()
        print()
        print("Command (not started):")
        print(shlex.join(spec.command))
        print()
        print(f"Working directory: {spec.cwd}")
        print("Environment: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(spec.env.items())))
        print()
        print(f"Dataset TOML ({os.path.join(plan.job_dir, 'dataset.toml')}):")
        print(plan.dataset_toml())
        print(f"Sample prompts ({os.path.join(plan.job_dir, 'sample_prompts.txt')}):")
        print(plan.sample_prompts())
        return 0
    return _start(plan, args)


def _start(plan: TrainingPlan, args: argparse.Namespace) -> int:
    if not os.path.isfile(plan.script_path):
        raise TrainingError(
            f"sd-scripts not found: {plan.script_path} (run install.py, or pass --sd-scripts / set SD_SCRIPTS_DIR)"
        )
    if os.path.isabs(plan.trainer_python) and not os.path.isfile(plan.trainer_python):
        raise TrainingError(
            f"the trainer environment is missing: {plan.trainer_python} does not exist (set it up from the Train "
            "tab, or pass --trainer-python / set TRAINER_PYTHON)"
        )
    final = os.path.join(plan.output_dir, plan.output_name + ".safetensors")
    if os.path.exists(final) and not args.overwrite:
        raise TrainingError(f"{final} already exists: pass --overwrite or choose another --name")
    spec = plan.write_files(plan.job_dir)
    try:
        from lib_lora.train.jobs import JobManager
    except ImportError as exc:
        raise TrainingError(f"the training runner is not available in this version ({exc})") from None
    from lib_lora.paths import user_data_dir

    data_dir = user_data_dir(args.data_dir, ensure=True)
    manager = JobManager(data_dir)
    meta: dict[str, Any] = {"plan": plan.to_dict(), "source": "cli"}
    service = None
    character: Any = getattr(args, "character_training", None)
    if args.lora_dir or character is not None:
        from lib_lora.host import StandaloneHost
        from lib_lora.train.service import TrainingService, install_intent

        lora_dir = os.path.abspath(args.lora_dir or (character.root if character is not None else "."))
        if not os.path.isdir(lora_dir) and args.lora_dir:
            raise TrainingError(f"--lora-dir {lora_dir} is not a folder")
        meta["install"] = install_intent(plan, lora_dir, os.path.basename(plan.base_checkpoint))
        if character is not None:
            from lib_lora.characters.training import pick_references

            refs = args.reference or pick_references(args.folder, args.caption_extension)
            missing = [r for r in refs if not os.path.isfile(r)]
            if missing:
                raise TrainingError(f"--reference: no such image: {', '.join(missing)}")
            meta["install"]["character"] = character.intent(refs)
            print(f"character {character.name}: version v{character.version}"
                  + (" (new character)" if character.new else "") + f", {len(refs)} reference image(s)")
        service = TrainingService(StandaloneHost([lora_dir], data_dir=data_dir), manager, install_pending=False)
    printer = _progress_printer()
    unsubscribe = None
    try:
        job_id = manager.submit(spec, meta, gpu_ids=plan.gpu_ids)
        if character is not None:  # the version is the job's from now on (until it is placed)
            from lib_lora.characters import CharacterError
            from lib_lora.characters.training import hold_version

            args.job_bound = True
            try:
                hold_version(meta["install"]["character"], job_id, os.fspath(manager.jobs_dir), [None])
            except CharacterError as exc:
                print(f"warning: {exc}", file=sys.stderr)
        unsubscribe = manager.subscribe(lambda record: printer(record.status) if record.id == job_id else None)
        print(f"job {job_id}: {shlex.join(spec.command)}")
        record = _wait_or_interrupt(manager, job_id)
        if record is None:
            print("\ncancelling (the last periodic save is kept) ...", file=sys.stderr)
            manager.cancel(job_id)
            record = manager.wait(job_id)
            printer(record.status)
            print(record.status.message or "cancelled", file=sys.stderr)
            return 130
        view = service.wait(job_id) if service is not None else None
    finally:
        if unsubscribe is not None:
            unsubscribe()
        if service is not None:
            service.close()
        manager.close()
    status = record.status
    printer(status)
    print()
    if status.state == "succeeded":
        print(f"done: {status.output_path or final}")
        if view is not None:
            if view.installed is None:
                print(f"not put into the LoRA folder: {view.install_error or 'unknown error'}", file=sys.stderr)
                return 1
            print(f"installed: {view.installed.path}  (use it as {view.installed.tag})")
        return 0
    print(f"training {status.state}: {status.message or status.state}", file=sys.stderr)
    if status.failure is not None:
        if status.failure.message and status.failure.message != status.message:
            print(f"  {status.failure.message}", file=sys.stderr)
        for advice in status.failure.advice:
            print(f"  - {advice}", file=sys.stderr)
    return 1


def _wait_or_interrupt(manager: Any, job_id: str) -> Any:
    """Wait for the job to end; ``None`` when the user pressed Ctrl-C first.

    Ctrl-C only sets a flag here (a ``KeyboardInterrupt`` raised inside the job manager's locks could
    leave one held, and the cancel that follows would then wait forever)."""
    if threading.current_thread() is not threading.main_thread():
        return manager.wait(job_id)
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: interrupted.set())
    try:
        while not interrupted.is_set():
            record = manager.wait(job_id, timeout=0.25)
            if record.status.done:
                return record
        return None
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress_printer() -> Callable[[Any], None]:
    """The text progress bar (in place on a terminal, periodic lines when logged to a file)."""
    from lib_lora.train.progressbar import ProgressPrinter

    return ProgressPrinter(sys.stdout)
