"""Planning one training run: :func:`make_plan` checks a dataset report, a base checkpoint, a preset and
the user's overrides against each other and resolves every value into a
:class:`~lib_lora.train.training_plan.TrainingPlan` — or raises a :class:`TrainingError` that says what
cannot train.

Every value the trainer reads is written out, because sd-scripts' own defaults bite (``--caption_extension``
``.caption``, ``--learning_rate`` 2e-6, ``--network_alpha`` 1, ``--max_train_steps`` 1600,
``--max_data_loader_n_workers`` 8, and ``--mixed_precision`` is only honoured when the script gets it, not
just ``accelerate launch``): caption extension, learning rates, network alpha, step count, data-loader
workers, mixed precision (to the script *and* to accelerate), seed ... The data always goes through ``--dataset_config`` with one
``[[datasets.subsets]]`` per image folder — a flat folder becomes one subset whose ``image_dir`` is the
folder itself, a kohya parent one subset per ``<repeats>_<class tokens>`` folder — so the
``--train_data_dir`` trap (pointing it at the image folder logs "No data found" and exits 0 without a
file) cannot happen; ``--train_data_dir`` is never passed. With several GPUs each process trains its own batch, so the step
count is divided by the number of processes to keep the same images seen.

The plan's value, command and files live in :mod:`~lib_lora.train.training_plan`,
:mod:`~lib_lora.train.launch_args` and :mod:`~lib_lora.train.plan_files`, the name checks in
:mod:`~lib_lora.train.names`; they are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace

from lib_lora.errors import TrainingError
from lib_lora.train import sdscripts_options
from lib_lora.train.dataset import DatasetReport
from lib_lora.train.names import default_output_name, validate_output_name, validate_trigger
from lib_lora.train.plan_files import ACCELERATE_CONFIG, DATASET_TOML, SAMPLE_PROMPTS, toml_string
from lib_lora.train.presets import (
    ARCH_FLUX1,
    ARCH_SDXL,
    auto_steps,
    base_for,
    resolve_preset,
    validate_hyperparameters,
)
from lib_lora.train.training_plan import JobSpec, SubsetPlan, TrainingPlan

DEFAULT_SEED = 42
DEFAULT_FLAT_REPEATS = 10
DEFAULT_MAIN_PROCESS_PORT = 29500
#: periodic saves (for cancel / resume) about every tenth of the run, in multiples of 50 steps
SAVE_FRACTION = 10
SAVE_ROUNDING = 50

#: overrides make_plan accepts, with what they change
OVERRIDE_KEYS = (
    "steps",
    "batch_size",
    "learning_rate",
    "text_encoder_lr",
    "network_dim",
    "network_alpha",
    "resolution",
    "repeats",
    "seed",
    "lr_scheduler",
    "lr_warmup_steps",
    "mixed_precision",
    "save_every_n_steps",
    "sample_every_n_steps",
    "max_data_loader_n_workers",
    "gradient_checkpointing",
    "shuffle_caption",
    "keep_tokens",
    "clip_skip",
)

#: options a user may not add through ``extra_args``: they would bypass the dataset TOML (and its
#: exit-0 trap guard), send data or credentials elsewhere, or replace the plan's own files
FORBIDDEN_EXTRA = (
    "--train_data_dir",
    "--reg_data_dir",
    "--in_json",
    "--dataset_config",
    "--config_file",
    "--output_config",
    "--debug_dataset",
    "--huggingface_repo_id",
    "--huggingface_repo_type",
    "--huggingface_path_in_repo",
    "--huggingface_token",
    "--huggingface_repo_visibility",
    "--save_state_to_huggingface",
    "--resume_from_huggingface",
    "--async_upload",
    "--wandb_api_key",
    "--dataset_class",
    "--cache_latents_to_disk",  # writes .npz files into the user's image folders
    "--cache_text_encoder_outputs_to_disk",
    "--cache_info",
)

FLUX_MODEL_KEYS = ("clip_l", "t5xxl", "ae")

def _save_every(total_steps: int) -> int | None:
    if total_steps <= 2 * SAVE_ROUNDING:
        return None
    return max(SAVE_ROUNDING, math.ceil(total_steps / SAVE_FRACTION / SAVE_ROUNDING) * SAVE_ROUNDING)


def _gpu_list(gpu_ids: Sequence[int] | None, num_processes: int | None) -> tuple[tuple[int, ...], int]:
    if gpu_ids is None or len(gpu_ids) == 0:
        n = 1 if num_processes is None else num_processes
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
            raise TrainingError(f"number of processes {num_processes!r} is outside 1..64")
        return tuple(range(n)), n
    ids: list[int] = []
    for g in gpu_ids:
        if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < 64:
            raise TrainingError(f"GPU id {g!r} is not a number from 0 to 63")
        if g in ids:
            raise TrainingError(f"GPU {g} is listed twice")
        ids.append(g)
    n = len(ids) if num_processes is None else num_processes
    if n != len(ids):
        raise TrainingError(
            f"{num_processes} processes for {len(ids)} GPUs ({','.join(map(str, ids))}): use one process per GPU"
        )
    return tuple(ids), n


def _abs(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def make_plan(
    dataset: DatasetReport,
    base_checkpoint: str | os.PathLike[str],
    base_arch: str,
    trigger: str,
    preset: str = "default",
    output_dir: str | os.PathLike[str] | None = None,
    sd_scripts_dir: str | os.PathLike[str] = "vendor/sd-scripts",
    trainer_python: str | os.PathLike[str] = sys.executable,
    *,
    kind: str = "character",
    family: str | None = None,
    overrides: Mapping[str, object] | None = None,
    gpu_ids: Sequence[int] | None = None,
    num_processes: int | None = None,
    main_process_port: int = DEFAULT_MAIN_PROCESS_PORT,
    tokenizer_cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    output_name: str | None = None,
    job_dir: str | os.PathLike[str] | None = None,
    free_vram_bytes: int | None = None,
    flux_models: Mapping[str, str | os.PathLike[str]] | None = None,
    extra_args: Sequence[str] = (),
    allow_dataset_errors: bool = False,
) -> TrainingPlan:
    """Plan one training run.

    ``base_arch`` is the checkpoint's architecture ("sd1" | "sdxl" | "flux1"), ``family`` its finetune
    family when known ("pony", "illustrious" ...: changes the sample prompts). ``preset`` is "default",
    "fast" or "gui-defaults"; ``overrides`` may set any of :data:`OVERRIDE_KEYS` ("steps" may be "auto").
    ``free_vram_bytes`` sizes the fast preset's batch. Flux needs ``flux_models`` = {"clip_l", "t5xxl",
    "ae"} file paths. ``extra_args`` are further sd-scripts options, checked against the option table.
    Raises :class:`TrainingError` with a specific message for anything that cannot train.
    """
    trig = validate_trigger(trigger)
    profile = base_for(base_arch, family)
    if dataset.base_arch != profile.arch:
        raise TrainingError(
            f"the dataset was checked for {dataset.base_arch} but the checkpoint is {profile.arch}: check it again"
        )
    if dataset.errors and not allow_dataset_errors:
        first = dataset.errors[0]
        raise TrainingError(
            f"the dataset has {len(dataset.errors)} error(s) that would stop sd-scripts, first: {first.message}"
        )
    subsets_with_images = [s for s in dataset.subsets if s.image_count > 0]
    if not subsets_with_images:
        raise TrainingError(f"no training images in {dataset.folder}")

    ov = dict(overrides or {})
    unknown = sorted(set(ov) - set(OVERRIDE_KEYS))
    if unknown:
        raise TrainingError(f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(OVERRIDE_KEYS)})")

    image_count = sum(s.image_count for s in subsets_with_images)
    pre = resolve_preset(preset, profile.id, kind, free_vram_bytes=free_vram_bytes, image_count=image_count)
    ids, nproc = _gpu_list(gpu_ids, num_processes)
    warnings: list[str] = []

    batch = ov.get("batch_size", pre.batch_size)
    steps_value = ov.get("steps", "auto")
    steps_auto = steps_value is None or steps_value == "auto"
    steps: object
    if steps_auto:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise TrainingError(f"batch size must be a whole number of at least 1 (got {batch!r})")
        steps = auto_steps(image_count, batch * nproc, pre.images_seen_per_image)
    elif isinstance(steps_value, str):
        raise TrainingError(f"steps must be a number or 'auto' (got {steps_value!r})")
    else:
        steps = steps_value
    learning_rate = ov.get("learning_rate", pre.learning_rate)
    te_lr = ov.get("text_encoder_lr", pre.text_encoder_lr)
    dim = ov.get("network_dim", pre.network_dim)
    alpha = ov.get("network_alpha", pre.network_alpha)
    resolution = ov.get("resolution", pre.resolution)
    repeats = ov.get("repeats", DEFAULT_FLAT_REPEATS)
    seed = ov.get("seed", DEFAULT_SEED)
    scheduler = ov.get("lr_scheduler", pre.lr_scheduler)
    mixed = ov.get("mixed_precision", pre.mixed_precision)
    if not isinstance(scheduler, str) or not isinstance(mixed, str):
        raise TrainingError("lr_scheduler and mixed_precision must be names")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1:
        default_warmup = int(steps * pre.lr_warmup_ratio) if scheduler != "constant" else 0
    else:
        default_warmup = 0
    warmup = ov.get("lr_warmup_steps", default_warmup)
    validate_hyperparameters(
        learning_rate=learning_rate,
        text_encoder_lr=te_lr,
        steps=steps,
        batch_size=batch,
        network_dim=dim,
        network_alpha=alpha,
        resolution=resolution,
        repeats=repeats,
        seed=seed,
        lr_scheduler=scheduler,
        lr_warmup_steps=warmup,
        mixed_precision=mixed,
        save_every_n_steps=ov.get("save_every_n_steps"),
        sample_every_n_steps=ov.get("sample_every_n_steps"),
    )
    assert isinstance(steps, int) and isinstance(batch, int) and isinstance(dim, int)
    assert isinstance(resolution, int) and isinstance(repeats, int) and isinstance(seed, int)
    assert isinstance(warmup, int) and isinstance(learning_rate, (int, float)) and isinstance(alpha, (int, float))
    if mixed == "no" and pre.fp8_base:
        raise TrainingError("fp8 base weights need mixed precision (bf16 or fp16)")
    if pre.name == "fast" and mixed != "bf16":
        warnings.append("the fast preset was measured in bf16; another precision changes its speed and memory")
    workers = ov.get("max_data_loader_n_workers", pre.max_data_loader_n_workers)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 64:
        raise TrainingError(f"data-loader workers {workers!r} is outside 0..64")
    grad_ckpt = ov.get("gradient_checkpointing", pre.gradient_checkpointing)
    shuffle = ov.get("shuffle_caption", pre.shuffle_caption)
    keep_tokens = ov.get("keep_tokens", pre.keep_tokens)
    if not isinstance(grad_ckpt, bool) or not isinstance(shuffle, bool):
        raise TrainingError("gradient_checkpointing and shuffle_caption must be true or false")
    if isinstance(keep_tokens, bool) or not isinstance(keep_tokens, int) or not 0 <= keep_tokens <= 75:
        raise TrainingError(f"keep_tokens {keep_tokens!r} is outside 0..75")
    if shuffle and pre.cache_text_encoder_outputs:
        raise TrainingError(
            "shuffled captions cannot be used with cached text-encoder outputs (sd-scripts refuses it)"
        )
    clip_skip = ov.get("clip_skip", profile.clip_skip)
    if clip_skip is not None:
        if profile.clip_skip is None:
            raise TrainingError(f"clip skip does not apply to {profile.label} training (sd-scripts ignores it)")
        if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or not 1 <= clip_skip <= 12:
            raise TrainingError(f"clip skip {clip_skip!r} is outside 1..12")
    assert clip_skip is None or isinstance(clip_skip, int)
    if profile.arch == ARCH_SDXL and resolution % 32:
        raise TrainingError("SDXL bucket sizes must be multiples of 32 px")

    # subsets
    if dataset.layout == "kohya":
        if "repeats" in ov:
            raise TrainingError("repeats come from the <repeats>_<name> folder names in a kohya folder")
        subsets = tuple(
            SubsetPlan(s.image_dir, s.num_repeats, s.class_tokens, s.image_count) for s in subsets_with_images
        )
    else:
        s0 = subsets_with_images[0]
        subsets = (SubsetPlan(s0.image_dir, repeats, trig, s0.image_count),)

    # paths
    ckpt = _abs(base_checkpoint)
    if not os.path.exists(ckpt):
        raise TrainingError(f"base checkpoint not found: {ckpt}")
    if os.path.isdir(ckpt) and not os.path.isfile(os.path.join(ckpt, "model_index.json")):
        raise TrainingError(f"{ckpt} is a folder but not a diffusers model (no model_index.json)")
    name = validate_output_name(output_name) if output_name else default_output_name(trig)
    out_dir = _abs(output_dir) if output_dir else _abs(os.path.join("output", name))
    sd_dir = _abs(sd_scripts_dir)
    py = os.fspath(trainer_python)
    py = _abs(py) if (os.sep in py or (os.altsep and os.altsep in py)) else py
    jd = _abs(job_dir) if job_dir else os.path.join(out_dir, "_training")
    if not os.path.isfile(os.path.join(sd_dir, profile.script)):
        warnings.append(f"sd-scripts not found: {os.path.join(sd_dir, profile.script)} does not exist")
    if os.path.isabs(py) and not os.path.isfile(py):
        warnings.append(f"trainer Python not found: {py} (the trainer environment is not set up)")
    if os.path.exists(os.path.join(out_dir, name + ".safetensors")):
        warnings.append(f"{os.path.join(out_dir, name + '.safetensors')} exists and will be replaced")

    extra_models: tuple[tuple[str, str], ...] = ()
    if profile.arch == ARCH_FLUX1:
        fm = dict(flux_models or {})
        missing = [k for k in FLUX_MODEL_KEYS if not fm.get(k)]
        if missing:
            raise TrainingError(
                "Flux.1 training needs the CLIP-L, T5-XXL and autoencoder files as well: missing "
                + ", ".join(missing)
            )
        resolved = []
        for k in FLUX_MODEL_KEYS:
            path = _abs(fm[k])
            if not os.path.isfile(path):
                raise TrainingError(f"Flux.1 {k} file not found: {path}")
            resolved.append((k, path))
        extra_models = tuple(resolved)
    elif flux_models:
        raise TrainingError("CLIP-L / T5-XXL / autoencoder files are only used for Flux.1 training")

    tok = _abs(tokenizer_cache_dir) if tokenizer_cache_dir else None
    if tok is not None:
        missing_tok = [d for d in profile.tokenizer_dirs if not os.path.isdir(os.path.join(tok, d))]
        if missing_tok and offline:
            warnings.append(
                f"offline and the tokenizer cache {tok} lacks {', '.join(missing_tok)}: the trainer cannot load its tokenizer"
            )
    elif offline:
        warnings.append("offline without a tokenizer cache: sd-scripts fetches its tokenizers from the Hugging Face hub")

    if not isinstance(main_process_port, int) or isinstance(main_process_port, bool) or not 1024 <= main_process_port <= 65535:
        raise TrainingError(f"main process port {main_process_port!r} is outside 1024..65535")
    if pre.torch_compile and len(dataset.buckets) > 2:
        warnings.append(
            f"{len(dataset.buckets)} aspect-ratio buckets: CUDA graphs are captured once per bucket shape "
            "(~35 s each for SD1.5, minutes for SDXL); images cropped to one aspect ratio start fastest"
        )
    if nproc > 1 and pre.torch_compile:
        warnings.append("CUDA graphs with several GPUs were not measured; use the default preset if it fails")

    save_every = ov.get("save_every_n_steps", _save_every(steps))
    assert save_every is None or isinstance(save_every, int)
    sample_every = ov.get("sample_every_n_steps", save_every or steps)
    assert isinstance(sample_every, int)

    extras = tuple(str(a) for a in extra_args)
    if extras:
        problems = sdscripts_options.check_args(profile.script, extras)
        if problems:
            raise TrainingError("; ".join(problems))
        forbidden = [a.split("=")[0] for a in extras if a.split("=")[0] in FORBIDDEN_EXTRA]
        if forbidden:
            raise TrainingError(f"option {forbidden[0]} cannot be added to a LoRA Studio plan")

    min_bucket = min(profile.min_bucket_reso, resolution)
    max_bucket = max(profile.max_bucket_reso, resolution)
    plan = TrainingPlan(
        base_checkpoint=ckpt,
        base_arch=profile.arch,
        preset=pre,
        trigger=trig,
        dataset_folder=dataset.folder,
        layout=dataset.layout,
        subsets=subsets,
        image_count=image_count,
        caption_extension=dataset.caption_extension,
        output_dir=out_dir,
        output_name=name,
        sd_scripts_dir=sd_dir,
        trainer_python=py,
        job_dir=jd,
        batch_size=batch,
        max_train_steps=steps,
        steps_auto=steps_auto,
        learning_rate=float(learning_rate),
        text_encoder_lr=None if te_lr is None else float(te_lr),  # type: ignore[arg-type]
        network_dim=dim,
        network_alpha=float(alpha),
        resolution=resolution,
        min_bucket_reso=min_bucket,
        max_bucket_reso=max_bucket,
        lr_scheduler=scheduler,
        lr_warmup_steps=warmup,
        mixed_precision=mixed,
        gradient_checkpointing=grad_ckpt,
        shuffle_caption=shuffle,
        keep_tokens=keep_tokens,
        clip_skip=clip_skip,
        seed=seed,
        max_data_loader_n_workers=workers,
        save_every_n_steps=save_every,
        sample_every_n_steps=sample_every,
        gpu_ids=ids,
        num_processes=nproc,
        main_process_port=main_process_port,
        tokenizer_cache_dir=tok,
        offline=offline,
        extra_models=extra_models,
        extra_args=extras,
        warnings=tuple(warnings),
    )
    own = {a for a in replace(plan, extra_args=()).script_args() if a.startswith("--")}
    clash = [a.split("=")[0] for a in extras if a.split("=")[0] in own]
    if clash:
        raise TrainingError(f"option {clash[0]} is already set by the plan: change it through the plan's settings")
    problems = sdscripts_options.check_args(plan.script, plan.script_args())
    if problems:  # the option table and this module disagree: a bug, not a user error — but never start it
        raise TrainingError("the planned sd-scripts arguments are not valid: " + "; ".join(problems))
    return plan


def display_command(spec: JobSpec) -> str:
    """The command as one line for people to read or copy (never executed through a shell)."""
    return shlex.join(spec.command)


__all__ = [
    "ACCELERATE_CONFIG",
    "DATASET_TOML",
    "OVERRIDE_KEYS",
    "SAMPLE_PROMPTS",
    "JobSpec",
    "SubsetPlan",
    "TrainingPlan",
    "default_output_name",
    "display_command",
    "make_plan",
    "toml_string",
    "validate_output_name",
    "validate_trigger",
]
