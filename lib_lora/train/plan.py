"""A training plan: dataset + base checkpoint + preset -> the exact ``accelerate launch`` argv of one
kohya sd-scripts run, its dataset TOML and its sample-prompt file.

Every value the trainer reads is written out, because sd-scripts' own defaults bite (``--caption_extension``
``.caption``, ``--learning_rate`` 2e-6, ``--network_alpha`` 1, ``--max_train_steps`` 1600,
``--max_data_loader_n_workers`` 8, and ``--mixed_precision`` is only honoured when the script gets it, not
just ``accelerate launch``): caption extension, learning rates, network alpha, step count, data-loader
workers, mixed precision (to the script *and* to accelerate), seed ... The data always goes through ``--dataset_config`` with one
``[[datasets.subsets]]`` per image folder — a flat folder becomes one subset whose ``image_dir`` is the
folder itself, a kohya parent one subset per ``<repeats>_<class tokens>`` folder — so the
``--train_data_dir`` trap (pointing it at the image folder logs "No data found" and exits 0 without a
file) cannot happen; ``--train_data_dir`` is never passed.

The launcher gets its own accelerate config file (``accelerate_config.json`` in the job folder) besides
its explicit options, so a stray ``accelerate config`` default file on the user's machine (which can switch
on DeepSpeed, FSDP or several GPUs) cannot change the run.

More than one GPU: ``gpu_ids=(0, 1)`` gives ``--multi_gpu --num_processes 2 --gpu_ids 0,1
--main_process_port P``; each process trains its own batch, so the step count is divided by the number of
processes to keep the same images seen. Several machines are not planned here, but the same command runs on
each node with ``--num_machines M --machine_rank R --main_process_ip HOST --main_process_port P`` added
to the accelerate options (identical dataset paths on every node; ``--num_processes`` counts all GPUs of
all machines).

The command is an argv tuple, never a shell string; :func:`shlex.join` is for display only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lib_lora.errors import TrainingError
from lib_lora.train import sdscripts_options
from lib_lora.train.dataset import BUCKET_RESO_STEPS, DatasetReport, bucket_resolutions, select_bucket
from lib_lora.train.presets import (
    ARCH_FLUX1,
    ARCH_SDXL,
    Preset,
    auto_steps,
    base_for,
    resolve_preset,
    validate_hyperparameters,
)

DATASET_TOML = "dataset.toml"
SAMPLE_PROMPTS = "sample_prompts.txt"
ACCELERATE_CONFIG = "accelerate_config.json"
PLAN_JSON = "plan.json"

DEFAULT_SEED = 42
DEFAULT_FLAT_REPEATS = 10
DEFAULT_MAIN_PROCESS_PORT = 29500
SAMPLE_SAMPLER = "euler_a"
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


@dataclass(frozen=True)
class JobSpec:
    """Everything the runner needs to start one training subprocess."""

    command: tuple[str, ...]  # full argv: python -m accelerate.commands.launch ... script.py --options
    cwd: str  # the sd-scripts checkout
    env: dict[str, str]  # extra environment (PYTHONUNBUFFERED, COLUMNS, CUDA_VISIBLE_DEVICES, HF offline ...)
    output_dir: str
    output_name: str
    total_steps: int
    sample_dir: str  # <output_dir>/sample
    save_every_n_steps: int | None
    resume_state_dir: str | None = None
    job_dir: str | None = None  # where dataset.toml, sample_prompts.txt and accelerate_config.json live
    script: str = ""  # "train_network.py" ...


@dataclass(frozen=True)
class SubsetPlan:
    image_dir: str
    num_repeats: int
    class_tokens: str
    image_count: int


@dataclass(frozen=True)
class TrainingPlan:
    base_checkpoint: str
    base_arch: str  # "sd1" | "sdxl" | "flux1"
    preset: Preset  # the resolved preset (its base profile says script, module, sample style)
    trigger: str
    dataset_folder: str
    layout: str  # "flat" | "kohya"
    subsets: tuple[SubsetPlan, ...]
    image_count: int
    caption_extension: str
    output_dir: str
    output_name: str
    sd_scripts_dir: str
    trainer_python: str
    job_dir: str
    batch_size: int
    max_train_steps: int
    steps_auto: bool
    learning_rate: float
    text_encoder_lr: float | None
    network_dim: int
    network_alpha: float
    resolution: int
    min_bucket_reso: int
    max_bucket_reso: int
    lr_scheduler: str
    lr_warmup_steps: int
    mixed_precision: str
    gradient_checkpointing: bool
    shuffle_caption: bool
    keep_tokens: int
    clip_skip: int | None
    seed: int
    max_data_loader_n_workers: int
    save_every_n_steps: int | None
    sample_every_n_steps: int
    gpu_ids: tuple[int, ...]
    num_processes: int
    main_process_port: int
    tokenizer_cache_dir: str | None
    offline: bool
    extra_models: tuple[tuple[str, str], ...] = ()  # Flux: (("clip_l", path), ("t5xxl", path), ("ae", path))
    extra_args: tuple[str, ...] = ()
    resume_state_dir: str | None = None
    resume_from_step: int = 0  # the step the saved state reached (sd-scripts skips that many batches)
    warnings: tuple[str, ...] = ()

    # -- derived -------------------------------------------------------------------------------------

    @property
    def script(self) -> str:
        return self.preset.base.script

    @property
    def script_path(self) -> str:
        return os.path.join(self.sd_scripts_dir, self.script)

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.num_processes

    @property
    def images_seen(self) -> int:
        return self.max_train_steps * self.effective_batch

    @property
    def epoch_images(self) -> int:
        return sum(s.image_count * s.num_repeats for s in self.subsets)

    @property
    def sample_dir(self) -> str:
        return os.path.join(self.output_dir, "sample")

    def file_path(self, name: str, job_dir: str | None = None) -> str:
        return os.path.join(job_dir or self.job_dir, name)

    # -- argument lists --------------------------------------------------------------------------------

    def accelerate_args(self, job_dir: str | None = None) -> tuple[str, ...]:
        """Options of ``accelerate launch`` (everything between ``launch`` and the script path)."""
        args = [
            "--config_file",
            self.file_path(ACCELERATE_CONFIG, job_dir),
            "--num_cpu_threads_per_process",
            "1",
            "--num_processes",
            str(self.num_processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            self.mixed_precision,
            # sd-scripts passes its own --dynamo_backend to Accelerator() when --torch_compile is set
            "--dynamo_backend",
            "no",
            "--gpu_ids",
            ",".join(str(g) for g in self.gpu_ids),
        ]
        if self.num_processes > 1:
            args += ["--multi_gpu", "--main_process_port", str(self.main_process_port)]
        return tuple(args)

    def accelerate_config(self) -> dict[str, Any]:
        """The launcher's own config file (JSON; accelerate reads ``*.json`` configs)."""
        cfg: dict[str, Any] = {
            "compute_environment": "LOCAL_MACHINE",
            "distributed_type": "MULTI_GPU" if self.num_processes > 1 else "NO",
            "mixed_precision": self.mixed_precision,
            "use_cpu": False,
            "debug": False,
            "num_processes": self.num_processes,
            "num_machines": 1,
            "machine_rank": 0,
            "gpu_ids": ",".join(str(g) for g in self.gpu_ids),
            "main_training_function": "main",
            "rdzv_backend": "static",
            "same_network": True,
            "downcast_bf16": False,
            "enable_cpu_affinity": False,
            "dynamo_config": {},
        }
        if self.num_processes > 1:
            cfg["main_process_port"] = self.main_process_port
        return cfg

    def script_args(self, job_dir: str | None = None) -> tuple[str, ...]:
        """The sd-scripts options, every value explicit."""
        p = self.preset
        base = p.base
        a: list[str] = ["--pretrained_model_name_or_path", self.base_checkpoint]
        if base.arch == ARCH_FLUX1:
            models = dict(self.extra_models)
            a += ["--clip_l", models["clip_l"], "--t5xxl", models["t5xxl"], "--ae", models["ae"]]
            a += [
                "--model_type",
                "flux",
                "--guidance_scale",
                "1.0",
                "--timestep_sampling",
                "flux_shift",
                "--sigmoid_scale",
                "1.0",
                "--model_prediction_type",
                "raw",
                "--discrete_flow_shift",
                "3.1582",
            ]
        a += [
            "--dataset_config",
            self.file_path(DATASET_TOML, job_dir),
            "--resolution",
            f"{self.resolution},{self.resolution}",
            "--caption_extension",
            self.caption_extension,
            "--train_batch_size",
            str(self.batch_size),
            "--output_dir",
            self.output_dir,
            "--output_name",
            self.output_name,
            "--save_model_as",
            "safetensors",
            "--save_precision",
            p.save_precision,
            "--network_module",
            base.network_module,
            "--network_dim",
            str(self.network_dim),
            "--network_alpha",
            _num(self.network_alpha),
        ]
        if p.train_unet_only:
            a.append("--network_train_unet_only")
        a += ["--learning_rate", _num(self.learning_rate), "--unet_lr", _num(self.learning_rate)]
        if self.text_encoder_lr is not None and not p.train_unet_only:
            a += ["--text_encoder_lr", _num(self.text_encoder_lr)]
        a += ["--optimizer_type", p.optimizer_type]
        if p.optimizer_args:
            a += ["--optimizer_args", *p.optimizer_args]
        a += [
            "--max_grad_norm",
            _num(p.max_grad_norm),
            "--lr_scheduler",
            self.lr_scheduler,
            "--lr_warmup_steps",
            str(self.lr_warmup_steps),
            "--max_train_steps",
            str(self.max_train_steps),
            "--mixed_precision",
            self.mixed_precision,
            "--seed",
            str(self.seed),
            "--max_data_loader_n_workers",
            str(self.max_data_loader_n_workers),
        ]
        if self.max_data_loader_n_workers > 0:
            a.append("--persistent_data_loader_workers")
        if p.cache_latents:
            a += ["--cache_latents", "--vae_batch_size", "1"]
        if p.cache_text_encoder_outputs:
            a.append("--cache_text_encoder_outputs")
        if self.gradient_checkpointing:
            a.append("--gradient_checkpointing")
        if p.sdpa:
            a.append("--sdpa")
        if p.torch_compile:
            a += ["--torch_compile", "--dynamo_backend", p.dynamo_backend or "inductor"]
        if p.fp8_base:
            a.append("--fp8_base")
        if p.no_half_vae:
            a.append("--no_half_vae")
        if self.clip_skip is not None:
            a += ["--clip_skip", str(self.clip_skip)]
        if self.save_every_n_steps is not None:
            a += [
                "--save_every_n_steps",
                str(self.save_every_n_steps),
                "--save_state",
                "--save_last_n_steps_state",
                str(self.save_every_n_steps),
            ]
        a += [
            "--sample_prompts",
            self.file_path(SAMPLE_PROMPTS, job_dir),
            "--sample_every_n_steps",
            str(self.sample_every_n_steps),
            "--sample_sampler",
            SAMPLE_SAMPLER,
            "--metadata_title",
            self.output_name,
            "--metadata_trigger_phrase",
            self.trigger,
            "--training_comment",
            f"LoRA Studio preset {p.id}; trigger: {self.trigger}; base: {base.label}",
        ]
        if self.tokenizer_cache_dir:
            a += ["--tokenizer_cache_dir", self.tokenizer_cache_dir]
        if sdscripts_options.for_script(self.script).has("--console_log_simple"):
            a.append("--console_log_simple")
        if self.num_processes > 1:
            a.append("--ddp_gradient_as_bucket_view")
            if self.gradient_checkpointing:
                a.append("--ddp_static_graph")  # checkpointed LoRA layers are otherwise "marked ready twice"
        if self.resume_state_dir:
            a += ["--resume", self.resume_state_dir]
            if self.resume_from_step > 0:
                # without it sd-scripts restores weights and optimizer but counts the steps from 0 again
                a.append("--skip_until_initial_step")
        a += list(self.extra_args)
        return tuple(a)

    def command(self, job_dir: str | None = None) -> tuple[str, ...]:
        return (
            self.trainer_python,
            "-m",
            "accelerate.commands.launch",
            *self.accelerate_args(job_dir),
            self.script_path,
            *self.script_args(job_dir),
        )

    def env(self) -> dict[str, str]:
        env = {
            "PYTHONUNBUFFERED": "1",
            "PYTHONIOENCODING": "utf-8",
            "COLUMNS": "200",  # rich logs are not wrapped at 80 columns
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in self.gpu_ids),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        if self.offline:
            env["HF_HUB_OFFLINE"] = "1"
            env["TRANSFORMERS_OFFLINE"] = "1"
        return env

    def job_spec(self, job_dir: str | None = None) -> JobSpec:
        jd = os.path.abspath(job_dir) if job_dir else self.job_dir
        return JobSpec(
            command=self.command(jd),
            cwd=self.sd_scripts_dir,
            env=self.env(),
            output_dir=self.output_dir,
            output_name=self.output_name,
            total_steps=self.max_train_steps,
            sample_dir=self.sample_dir,
            save_every_n_steps=self.save_every_n_steps,
            resume_state_dir=self.resume_state_dir,
            job_dir=jd,
            script=self.script,
        )

    # -- files -------------------------------------------------------------------------------------------

    def dataset_toml(self) -> str:
        """The ``--dataset_config`` file (keys of sd-scripts' library/config_util.py)."""
        p = self.preset
        lines = [
            f"# sd-scripts dataset config written by LoRA Studio for {toml_string(self.output_name)}",
            "",
            "[general]",
            f"caption_extension = {toml_string(self.caption_extension)}",
            f"shuffle_caption = {_bool(self.shuffle_caption)}",
            f"keep_tokens = {self.keep_tokens}",
            f"flip_aug = {_bool(p.flip_aug)}",
            "color_aug = false",
            "random_crop = false",
            "enable_bucket = true",
            "bucket_no_upscale = false",
            f"bucket_reso_steps = {BUCKET_RESO_STEPS}",
            f"min_bucket_reso = {self.min_bucket_reso}",
            f"max_bucket_reso = {self.max_bucket_reso}",
            "",
            "[[datasets]]",
            f"resolution = {self.resolution}",
            f"batch_size = {self.batch_size}",
        ]
        for s in self.subsets:
            lines += [
                "",
                "  [[datasets.subsets]]",
                f"  image_dir = {toml_string(s.image_dir)}",
                f"  num_repeats = {s.num_repeats}",
                f"  class_tokens = {toml_string(s.class_tokens)}",
            ]
        return "\n".join(lines) + "\n"

    def sample_prompts(self) -> str:
        """Five scenes that render the trigger, in kohya's prompt-file syntax (``--n --w --h --d --l --s``)."""
        base = self.preset.base
        buckets = bucket_resolutions(self.resolution, self.min_bucket_reso, self.max_bucket_reso)
        sizes = {
            "square": (self.resolution, self.resolution),
            "portrait": select_bucket(2, 3, buckets),
            "landscape": select_bucket(3, 2, buckets),
        }
        lines = [f"# sample prompts for {self.output_name} (trigger {self.trigger}): one image per line at each sample step"]
        for i, (shape, scene) in enumerate(SCENES[self.preset.kind]):
            w, h = sizes[shape]
            prompt = base.sample_prefix + scene.replace("{trigger}", self.trigger)
            parts = [prompt]
            if base.sample_negative:
                parts.append(f"--n {base.sample_negative}")
            parts += [f"--w {w}", f"--h {h}", f"--d {1000 + i}", f"--l {_num(base.sample_cfg)}", f"--s {base.sample_steps}"]
            if base.sample_guidance is not None:
                parts.append(f"--g {_num(base.sample_guidance)}")
            lines.append(" ".join(parts))
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly record of the plan (for job records and the UI)."""
        d = dataclasses.asdict(self)
        d["preset"] = {
            "id": self.preset.id,
            "name": self.preset.name,
            "base": self.preset.base.id,
            "kind": self.preset.kind,
            "description": self.preset.description,
        }
        d["script"] = self.script
        d["images_seen"] = self.images_seen
        return d

    def write_files(self, job_dir: str | os.PathLike[str]) -> JobSpec:
        """Write dataset.toml, sample_prompts.txt, accelerate_config.json and plan.json into ``job_dir``
        (created if needed) and return the job spec that uses them."""
        jd = os.path.abspath(os.fspath(job_dir))
        plan = self if jd == self.job_dir else replace(self, job_dir=jd)
        try:
            os.makedirs(jd, exist_ok=True)
            _write_atomic(os.path.join(jd, DATASET_TOML), plan.dataset_toml())
            _write_atomic(os.path.join(jd, SAMPLE_PROMPTS), plan.sample_prompts())
            _write_atomic(os.path.join(jd, ACCELERATE_CONFIG), json.dumps(plan.accelerate_config(), indent=2) + "\n")
            _write_atomic(
                os.path.join(jd, PLAN_JSON), json.dumps(plan.to_dict(), indent=2, ensure_ascii=False) + "\n"
            )
        except OSError as exc:
            raise TrainingError(f"cannot write the training files into {jd}: {exc.strerror or exc}") from exc
        return plan.job_spec(jd)

    def with_resume(self, state_dir: str | os.PathLike[str]) -> TrainingPlan:
        """The same plan continuing from a saved ``<name>-stepNNNNNNNN-state`` folder: ``--resume`` plus
        ``--skip_until_initial_step`` when the state's ``train_state.json`` knows its step."""
        path = os.path.abspath(os.fspath(state_dir))
        if not os.path.isdir(path):
            raise TrainingError(f"saved training state not found: {path}")
        step = 0
        try:
            with open(os.path.join(path, "train_state.json"), encoding="utf-8") as f:
                raw = json.load(f).get("current_step", 0)
            step = int(raw) if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else 0
        except (OSError, ValueError, AttributeError):
            step = 0
        if step >= self.max_train_steps:
            raise TrainingError(
                f"the saved state is at step {step}, the plan ends at {self.max_train_steps}: nothing left to train"
            )
        return replace(self, resume_state_dir=path, resume_from_step=step)

    def summary(self) -> str:
        p = self.preset
        lines = [
            f"Plan: {p.id} — {p.description}",
            f"  base: {self.base_checkpoint} ({p.base.label}, {self.script})",
            f"  trigger: {self.trigger!r}   output: {os.path.join(self.output_dir, self.output_name)}.safetensors",
            f"  images: {self.image_count} in {len(self.subsets)} folder(s) ({self.layout}), "
            f"{self.epoch_images} per epoch with repeats",
            f"  steps: {self.max_train_steps}{' (auto)' if self.steps_auto else ''} × batch {self.batch_size}"
            + (f" × {self.num_processes} GPUs" if self.num_processes > 1 else "")
            + f" = {self.images_seen} images seen ({self.images_seen / max(1, self.image_count):.3g} per image)",
            f"  lr {_num(self.learning_rate)}"
            + (f" (text encoder {_num(self.text_encoder_lr)})" if self.text_encoder_lr and not p.train_unet_only else "")
            + f", {self.lr_scheduler}, dim {self.network_dim} / alpha {_num(self.network_alpha)}, "
            f"{self.resolution} px, {self.mixed_precision}",
            f"  saves every {self.save_every_n_steps} steps (with state for resume), samples every "
            f"{self.sample_every_n_steps} steps"
            if self.save_every_n_steps
            else f"  one save at the end, samples at step {self.sample_every_n_steps}",
            f"  GPU(s): {','.join(str(g) for g in self.gpu_ids)}",
        ]
        lines += [f"  note: {n}" for n in p.notes]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# -- sample scenes ------------------------------------------------------------------------------------------

SCENES: dict[str, tuple[tuple[str, str], ...]] = {
    "character": (
        ("square", "{trigger}, portrait, looking at viewer, simple background"),
        ("portrait", "{trigger}, full body, standing in a city street at night, neon lights"),
        ("landscape", "{trigger}, sitting in a cozy cafe, holding a cup of coffee, warm light"),
        ("landscape", "{trigger}, walking on a beach at sunset, wind"),
        ("portrait", "{trigger}, in a snowy forest, winter coat, falling snow"),
    ),
    "style": (
        ("square", "{trigger}, a cat sleeping on a windowsill"),
        ("landscape", "{trigger}, a lighthouse on a cliff at dusk, stormy sea"),
        ("portrait", "{trigger}, portrait of an old fisherman"),
        ("landscape", "{trigger}, a busy market street in the rain"),
        ("square", "{trigger}, a bowl of fruit on a wooden table"),
    ),
    "concept": (
        ("square", "{trigger}, close-up"),
        ("portrait", "{trigger}, a woman standing in a park, daytime"),
        ("landscape", "{trigger}, a man in a modern office"),
        ("landscape", "{trigger}, in a kitchen, soft light"),
        ("portrait", "{trigger}, outdoors at night, city lights"),
    ),
}


# -- helpers --------------------------------------------------------------------------------------------------


def _num(x: float) -> str:
    """A number as the trainer should read it: whole numbers without ".0", others in full precision."""
    f = float(x)
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return repr(f)


def _bool(b: bool) -> str:
    return "true" if b else "false"


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(s: str) -> str:
    """A TOML basic string; everything outside printable ASCII is escaped (``\\uXXXX`` / ``\\UXXXXXXXX``),
    so the file is plain ASCII and reads the same with tomllib, tomli and the old ``toml`` package
    sd-scripts uses, whatever the platform's default encoding."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif 0xD800 <= o <= 0xDFFF:
            raise TrainingError(
                f"the path or text {s!r} contains bytes that are not valid Unicode: rename it to train from it"
            )
        elif o < 0x20 or o == 0x7F or o > 0x7E:
            out.append(f"\\u{o:04X}" if o <= 0xFFFF else f"\\U{o:08X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_trigger(trigger: str) -> str:
    """The trigger, stripped; refuses what breaks captions, sample prompts or prompt tags."""
    t = trigger.strip()
    if not t:
        raise TrainingError("the trigger word is empty")
    if len(t) > 100:
        raise TrainingError(f"the trigger word is {len(t)} characters long; keep it under 100")
    if _CONTROL.search(t):
        raise TrainingError("the trigger word contains a line break or another control character")
    if "--" in t:
        raise TrainingError("the trigger word cannot contain '--' (it starts an option in sd-scripts' sample prompts)")
    if t.startswith("#"):
        raise TrainingError("the trigger word cannot start with '#' (sd-scripts reads such prompt lines as comments)")
    if "," in t:
        raise TrainingError("the trigger word cannot contain a comma: use one word or phrase (commas separate tags)")
    if any(c in t for c in "<>"):
        raise TrainingError("the trigger word cannot contain '<' or '>' (they delimit LoRA tags in prompts)")
    return t


_RESERVED_NAME_CHARS = set('<>:"/\\|?*')
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def default_output_name(trigger: str) -> str:
    name = re.sub(r"[^\w.-]+", "_", trigger.strip(), flags=re.UNICODE).strip("._")
    return name[:80] or "lora"


def validate_output_name(name: str) -> str:
    n = name.strip()
    if not n:
        raise TrainingError("the output name is empty")
    if len(n) > 120:
        raise TrainingError("the output name is longer than 120 characters")
    if _CONTROL.search(n) or any(c in _RESERVED_NAME_CHARS for c in n):
        raise TrainingError(f"the output name {n!r} contains a character that is not allowed in file names (<>:\"/\\|?*)")
    if n in (".", "..") or n.endswith(".") or n.startswith("-"):
        raise TrainingError(f"the output name {n!r} is not a usable file name")
    if n.lower().split(".")[0] in _WINDOWS_DEVICES:
        raise TrainingError(f"the output name {n!r} is a reserved device name on Windows")
    return n


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
