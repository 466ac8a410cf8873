"""The plan of one training run as a value: :class:`TrainingPlan` holds every resolved setting (made by
:func:`lib_lora.train.plan.make_plan`), gives its command (:mod:`~lib_lora.train.launch_args`) and files
(:mod:`~lib_lora.train.plan_files`), writes them into its job folder as a :class:`JobSpec` for the
runner, continues from a saved state, and says what it will do in a few lines."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, replace
from typing import Any

from lib_lora.errors import TrainingError
from lib_lora.train import launch_args, plan_files
from lib_lora.train.plan_files import (
    ACCELERATE_CONFIG,
    DATASET_TOML,
    PLAN_JSON,
    SAMPLE_PROMPTS,
    number_text,
    write_atomic,
)
from lib_lora.train.presets import Preset


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
    """One ``[[datasets.subsets]]`` entry: an image folder, how often it is repeated, its class tokens."""

    image_dir: str
    num_repeats: int
    class_tokens: str
    image_count: int


@dataclass(frozen=True)
class TrainingPlan:
    """Every resolved setting of one run (see the module docstring); made by ``make_plan``."""

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

    # -- the command (lib_lora.train.launch_args) -------------------------------------------------------

    def accelerate_args(self, job_dir: str | None = None) -> tuple[str, ...]:
        """Options of ``accelerate launch`` (everything between ``launch`` and the script path)."""
        return launch_args.accelerate_args(self, job_dir)

    def accelerate_config(self) -> dict[str, Any]:
        """The launcher's own config file (JSON; accelerate reads ``*.json`` configs)."""
        return launch_args.accelerate_config(self)

    def script_args(self, job_dir: str | None = None) -> tuple[str, ...]:
        """The sd-scripts options, every value explicit."""
        return launch_args.script_args(self, job_dir)

    def command(self, job_dir: str | None = None) -> tuple[str, ...]:
        return launch_args.command(self, job_dir)

    def env(self) -> dict[str, str]:
        return launch_args.env(self)

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
        return plan_files.dataset_toml(self)

    def sample_prompts(self) -> str:
        """Five scenes that render the trigger, in kohya's prompt-file syntax (``--n --w --h --d --l --s``)."""
        return plan_files.sample_prompts(self)

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
            write_atomic(os.path.join(jd, DATASET_TOML), plan.dataset_toml())
            write_atomic(os.path.join(jd, SAMPLE_PROMPTS), plan.sample_prompts())
            write_atomic(os.path.join(jd, ACCELERATE_CONFIG), json.dumps(plan.accelerate_config(), indent=2) + "\n")
            write_atomic(
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
            f"  lr {number_text(self.learning_rate)}"
            + (f" (text encoder {number_text(self.text_encoder_lr)})" if self.text_encoder_lr and not p.train_unet_only else "")
            + f", {self.lr_scheduler}, dim {self.network_dim} / alpha {number_text(self.network_alpha)}, "
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


__all__ = ["JobSpec", "SubsetPlan", "TrainingPlan"]
