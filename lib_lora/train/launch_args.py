"""The command of one kohya sd-scripts run: the ``accelerate launch`` argv (never a shell string), the
launcher's own config file, the script's options with every value the trainer reads written out, and the
process environment.

Every value is explicit: caption extension, learning rates, network alpha, step count, data-loader
workers, mixed precision (to the script *and* to accelerate), seed … The launcher gets its own accelerate
config file (``accelerate_config.json`` in the job folder) besides its explicit options, so a stray
``accelerate config`` default file on the user's machine (which can switch on DeepSpeed, FSDP or several
GPUs) cannot change the run.

More than one GPU: ``gpu_ids=(0, 1)`` gives ``--multi_gpu --num_processes 2 --gpu_ids 0,1
--main_process_port P``. Several machines are not planned here, but the same command runs on each node
with ``--num_machines M --machine_rank R --main_process_ip HOST --main_process_port P`` added to the
accelerate options (identical dataset paths on every node; ``--num_processes`` counts all GPUs of all
machines).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lib_lora.train import sdscripts_options
from lib_lora.train.plan_files import ACCELERATE_CONFIG, DATASET_TOML, SAMPLE_PROMPTS, number_text
from lib_lora.train.presets import ARCH_FLUX1

if TYPE_CHECKING:
    from lib_lora.train.training_plan import TrainingPlan

SAMPLE_SAMPLER = "euler_a"


def accelerate_args(plan: TrainingPlan, job_dir: str | None = None) -> tuple[str, ...]:
    """Options of ``accelerate launch`` (everything between ``launch`` and the script path)."""
    args = [
        "--config_file",
        plan.file_path(ACCELERATE_CONFIG, job_dir),
        "--num_cpu_threads_per_process",
        "1",
        "--num_processes",
        str(plan.num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        plan.mixed_precision,
        # sd-scripts passes its own --dynamo_backend to Accelerator() when --torch_compile is set
        "--dynamo_backend",
        "no",
        "--gpu_ids",
        ",".join(str(g) for g in plan.gpu_ids),
    ]
    if plan.num_processes > 1:
        args += ["--multi_gpu", "--main_process_port", str(plan.main_process_port)]
    return tuple(args)


def accelerate_config(plan: TrainingPlan) -> dict[str, Any]:
    """The launcher's own config file (JSON; accelerate reads ``*.json`` configs)."""
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU" if plan.num_processes > 1 else "NO",
        "mixed_precision": plan.mixed_precision,
        "use_cpu": False,
        "debug": False,
        "num_processes": plan.num_processes,
        "num_machines": 1,
        "machine_rank": 0,
        "gpu_ids": ",".join(str(g) for g in plan.gpu_ids),
        "main_training_function": "main",
        "rdzv_backend": "static",
        "same_network": True,
        "downcast_bf16": False,
        "enable_cpu_affinity": False,
        "dynamo_config": {},
    }
    if plan.num_processes > 1:
        cfg["main_process_port"] = plan.main_process_port
    return cfg


def script_args(plan: TrainingPlan, job_dir: str | None = None) -> tuple[str, ...]:
    """The sd-scripts options, every value explicit."""
    p = plan.preset
    base = p.base
    a: list[str] = ["--pretrained_model_name_or_path", plan.base_checkpoint]
    if base.arch == ARCH_FLUX1:
        models = dict(plan.extra_models)
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
        plan.file_path(DATASET_TOML, job_dir),
        "--resolution",
        f"{plan.resolution},{plan.resolution}",
        "--caption_extension",
        plan.caption_extension,
        "--train_batch_size",
        str(plan.batch_size),
        "--output_dir",
        plan.output_dir,
        "--output_name",
        plan.output_name,
        "--save_model_as",
        "safetensors",
        "--save_precision",
        p.save_precision,
        "--network_module",
        base.network_module,
        "--network_dim",
        str(plan.network_dim),
        "--network_alpha",
        number_text(plan.network_alpha),
    ]
    if p.train_unet_only:
        a.append("--network_train_unet_only")
    a += ["--learning_rate", number_text(plan.learning_rate), "--unet_lr", number_text(plan.learning_rate)]
    if plan.text_encoder_lr is not None and not p.train_unet_only:
        a += ["--text_encoder_lr", number_text(plan.text_encoder_lr)]
    a += ["--optimizer_type", p.optimizer_type]
    if p.optimizer_args:
        a += ["--optimizer_args", *p.optimizer_args]
    a += [
        "--max_grad_norm",
        number_text(p.max_grad_norm),
        "--lr_scheduler",
        plan.lr_scheduler,
        "--lr_warmup_steps",
        str(plan.lr_warmup_steps),
        "--max_train_steps",
        str(plan.max_train_steps),
        "--mixed_precision",
        plan.mixed_precision,
        "--seed",
        str(plan.seed),
        "--max_data_loader_n_workers",
        str(plan.max_data_loader_n_workers),
    ]
    if plan.max_data_loader_n_workers > 0:
        a.append("--persistent_data_loader_workers")
    if p.cache_latents:
        a += ["--cache_latents", "--vae_batch_size", "1"]
    if p.cache_text_encoder_outputs:
        a.append("--cache_text_encoder_outputs")
    if plan.gradient_checkpointing:
        a.append("--gradient_checkpointing")
    if p.sdpa:
        a.append("--sdpa")
    if p.torch_compile:
        a += ["--torch_compile", "--dynamo_backend", p.dynamo_backend or "inductor"]
    if p.fp8_base:
        a.append("--fp8_base")
    if p.no_half_vae:
        a.append("--no_half_vae")
    if plan.clip_skip is not None:
        a += ["--clip_skip", str(plan.clip_skip)]
    if plan.save_every_n_steps is not None:
        a += [
            "--save_every_n_steps",
            str(plan.save_every_n_steps),
            "--save_state",
            "--save_last_n_steps_state",
            str(plan.save_every_n_steps),
        ]
    a += [
        "--sample_prompts",
        plan.file_path(SAMPLE_PROMPTS, job_dir),
        "--sample_every_n_steps",
        str(plan.sample_every_n_steps),
        "--sample_sampler",
        SAMPLE_SAMPLER,
        "--metadata_title",
        plan.output_name,
        "--metadata_trigger_phrase",
        plan.trigger,
        "--training_comment",
        f"LoRA Studio preset {p.id}; trigger: {plan.trigger}; base: {base.label}",
    ]
    if plan.tokenizer_cache_dir:
        a += ["--tokenizer_cache_dir", plan.tokenizer_cache_dir]
    if sdscripts_options.for_script(plan.script).has("--console_log_simple"):
        a.append("--console_log_simple")
    if plan.num_processes > 1:
        a.append("--ddp_gradient_as_bucket_view")
        if plan.gradient_checkpointing:
            a.append("--ddp_static_graph")  # checkpointed LoRA layers are otherwise "marked ready twice"
    if plan.resume_state_dir:
        a += ["--resume", plan.resume_state_dir]
        if plan.resume_from_step > 0:
            # without it sd-scripts restores weights and optimizer but counts the steps from 0 again
            a.append("--skip_until_initial_step")
    a += list(plan.extra_args)
    return tuple(a)


def command(plan: TrainingPlan, job_dir: str | None = None) -> tuple[str, ...]:
    """The full argv: the trainer Python, ``-m accelerate.commands.launch``, its options, the script and its options."""
    return (
        plan.trainer_python,
        "-m",
        "accelerate.commands.launch",
        *accelerate_args(plan, job_dir),
        plan.script_path,
        *script_args(plan, job_dir),
    )


def env(plan: TrainingPlan) -> dict[str, str]:
    """The environment variables the trainer process gets on top of the inherited ones."""
    env = {
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
        "COLUMNS": "200",  # rich logs are not wrapped at 80 columns
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in plan.gpu_ids),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if plan.offline:
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    return env


__all__ = ["SAMPLE_SAMPLER", "accelerate_args", "accelerate_config", "command", "env", "script_args"]
