"""Smoke run of the real kohya sd-scripts trainer through LoRA Studio's plan, job queue and runner.

Given an sd-scripts checkout and the Python of its venv (and a GPU when there is one), it

1. builds a random-weight SD1.5 checkpoint from ``tests/fixtures/model-configs/sd15`` (cached,
   ``make_random_checkpoint.py``) and a tokenizer cache from ``tests/fixtures/clip-tokenizer``;
2. writes a small synthetic dataset (coloured shapes, captions ``<trigger>, ...``);
3. checks it with ``lib_lora.train.dataset.check_dataset``, plans it with ``lib_lora.train.plan.make_plan``
   and runs it through ``lib_lora.train.jobs.JobManager`` (the same path as the Train tab and the CLI),
   printing the runner's progress bar;
4. checks the resulting LoRA with ``lib_lora.architecture.detect``: SD1, adapter LoRA, the trigger word;
5. reports start-up time (submit → first optimizer step: model load, latent caching ...), steady-state
   it/s and images/s (from the runner's own step observations after the first 30 % of the steps) and the
   whole job's time (submit → file).

    python benchmarks/train_smoke.py --sd-scripts DIR --trainer-python PY [--device cpu|gpu] [--steps 40]

``--device cpu`` trains at 64 px in fp32 (sd-scripts refuses fp16 without a GPU; bf16 on a CPU is slow);
``--device gpu`` at 512 px with the preset's own precision. Figures go to stdout and to
``benchmarks/out/train_smoke.json``. Exit status 0 only when the run succeeded and the output checks passed.

This file is also the harness of ``train_bench.py`` and ``tests/test_trainer_real.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import make_random_checkpoint  # noqa: E402

from lib_lora.architecture import detect  # noqa: E402
from lib_lora.safetensors_header import read_header  # noqa: E402
from lib_lora.train.dataset import check_dataset  # noqa: E402
from lib_lora.train.jobs import JobManager, JobRecord  # noqa: E402
from lib_lora.train.plan import TrainingPlan, make_plan  # noqa: E402
from lib_lora.train.progressbar import ProgressPrinter  # noqa: E402
from lib_lora.train.runner import JobStatus  # noqa: E402

FIXTURES = make_random_checkpoint.DEFAULT_FIXTURES
OUT_DIR = HERE / "out"
TOKENIZER_DIRS = {
    "sd15": (("clip-tokenizer", "openai_clip-vit-large-patch14"),),
    "sdxl": (
        ("clip-tokenizer", "openai_clip-vit-large-patch14"),
        ("clip-tokenizer-g", "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"),
    ),
}
#: the fixture tokenizer holding the BPE files (vocab.json, merges.txt) both CLIP tokenizers share
BPE_TOKENIZER = "clip-tokenizer"
ARCH_IDS = {"sd15": "sd1", "sdxl": "sdxl"}
STEADY_FROM = 0.3  # steady state: the steps after the first 30 % (warm-up, graph capture)
CPU_RESOLUTION = 64
GPU_RESOLUTION = {"sd15": 512, "sdxl": 1024}


# ------------------------------------------------------------------------------------------- inputs


def make_dataset(folder: str | os.PathLike[str], count: int, size: tuple[int, int], trigger: str,
                 *, seed: int = 0, caption_ext: str = ".txt") -> Path:
    """``count`` PNGs of coloured shapes on a plain background, each with a caption ``<trigger>, ...``."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    scenes = ("red background", "in a garden", "at night", "smiling", "full body", "close-up", "outdoors")
    w, h = size
    for i in range(count):
        img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = rng.randrange(w // 2), rng.randrange(h // 2)
            box = (x0, y0, x0 + rng.randrange(w // 4, w // 2), y0 + rng.randrange(h // 4, h // 2))
            colour = tuple(rng.randrange(256) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        img.save(out / f"img{i:03d}.png", compress_level=1)
        (out / f"img{i:03d}{caption_ext}").write_text(f"{trigger}, {scenes[i % len(scenes)]}", encoding="utf-8")
    return out


def make_tokenizer_cache(folder: str | os.PathLike[str], arch: str = "sd15",
                         fixtures: str | os.PathLike[str] | None = None) -> Path:
    """The ``--tokenizer_cache_dir`` layout sd-scripts reads offline, from the fixtures' tokenizers.

    Both CLIP tokenizers have the same ``vocab.json`` and ``merges.txt``; the fixtures keep them once (in
    ``clip-tokenizer``) and only the configs that differ in ``clip-tokenizer-g`` (its pad token is ``!``).
    """
    root = Path(folder)
    src = Path(fixtures) if fixtures else FIXTURES
    for fixture_name, cache_name in TOKENIZER_DIRS[arch]:
        dst = root / cache_name
        if not dst.is_dir():
            tmp = root / f".{cache_name}.part{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src / BPE_TOKENIZER, tmp)  # then the tokenizer's own configs over it
            for f in (src / fixture_name).iterdir():
                shutil.copyfile(f, tmp / f.name)
            os.replace(tmp, dst)
    return root


def gpu_present() -> tuple[bool, str]:
    """(a GPU is visible, its name) from nvidia-smi (LoRA Studio's core imports no torch)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False, ""
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False, ""
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    return bool(line), line


@dataclass(frozen=True)
class Setup:
    arch: str  # "sd15" | "sdxl"
    device: str  # "cpu" | "gpu"
    sd_scripts: str
    trainer_python: str
    checkpoint: str
    checkpoint_build_s: float  # 0.0 when it came from the cache
    dataset: str
    tokenizers: str
    trigger: str
    image_count: int
    resolution: int


def prepare(workdir: str | os.PathLike[str], sd_scripts: str, trainer_python: str, *, arch: str = "sd15",
            device: str = "cpu", cache_dir: str | None = None, images: int = 8, trigger: str = "zkchar",
            resolution: int | None = None, log=None) -> Setup:
    """Checkpoint (cached), tokenizer cache and synthetic dataset for a run in ``workdir``."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    reso = resolution or (CPU_RESOLUTION if device == "cpu" else GPU_RESOLUTION[arch])
    ckpt, built = make_random_checkpoint.build(trainer_python, sd_scripts, arch, cache_dir=cache_dir,
                                               log=log)  # fmt: skip
    tok = make_tokenizer_cache(work / "tokenizers", arch)
    # images a little larger than the training size, in one aspect ratio (one bucket)
    data = make_dataset(work / "dataset", images, (reso + reso // 2, reso + reso // 2), trigger)
    return Setup(arch, device, os.path.abspath(sd_scripts), trainer_python, str(ckpt), built, str(data), str(tok),
                 trigger, images, reso)  # fmt: skip


def plan_for(setup: Setup, preset: str, out_dir: str | os.PathLike[str], *, steps: int,
             overrides: Mapping[str, Any] | None = None, extra_args: Sequence[str] = (),
             free_vram_bytes: int | None = None, output_name: str | None = None) -> TrainingPlan:
    """A plan of ``steps`` optimizer steps on the setup's data. On the CPU: fp32 (``mixed_precision=no``)
    and no data-loader workers; samples only at the end (never inside a measured window)."""
    arch = ARCH_IDS[setup.arch]
    report = check_dataset(setup.dataset, setup.trigger, arch, resolution=setup.resolution)
    ov: dict[str, Any] = {"steps": steps, "resolution": setup.resolution, "sample_every_n_steps": 100000}
    if setup.device == "cpu":
        ov.update(mixed_precision="no", max_data_loader_n_workers=0)
    ov.update(overrides or {})
    return make_plan(report, setup.checkpoint, arch, setup.trigger, preset, out_dir, setup.sd_scripts,
                     setup.trainer_python, overrides=ov, tokenizer_cache_dir=setup.tokenizers, offline=True,
                     free_vram_bytes=free_vram_bytes, extra_args=extra_args, output_name=output_name,
                     allow_dataset_errors=False)  # fmt: skip


def adapt_for_cpu(plan: TrainingPlan) -> tuple[TrainingPlan, list[str]]:
    """The CPU stand-in of a GPU-only preset: no ``--torch_compile`` (CUDA graphs need CUDA), no fused
    AdamW when the trainer's torch cannot fuse on a CPU. Returns the plan and what was changed."""
    p = plan.preset
    changes: list[str] = []
    if p.torch_compile:
        changes.append(f"--torch_compile --dynamo_backend {p.dynamo_backend} dropped (CUDA graphs need a GPU)")
        p = dataclasses.replace(p, torch_compile=False, dynamo_backend=None)
    return dataclasses.replace(plan, preset=p), changes


# ---------------------------------------------------------------------------------------------- runs


@dataclass
class RunFigures:
    label: str
    state: str = ""
    message: str = ""
    failure: str = ""
    exit_code: int | None = None
    steps: int = 0
    total: int = 0
    batch: int = 0
    startup_s: float | None = None  # submit -> first optimizer step
    steady_it_s: float | None = None
    steady_img_s: float | None = None
    tqdm_it_s: float | None = None  # the trainer's own (smoothed) rate at the end
    total_s: float | None = None  # submit -> the run ended with its file
    final_loss: float | None = None
    loss_history: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    output: str | None = None
    saves: list[str] = dataclasses.field(default_factory=list)
    job_id: str = ""
    job_dir: str = ""
    command: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def loss_at_step(self, step: int) -> float | None:
        """The running loss the trainer reported at ``step`` (or the nearest earlier report)."""
        best = None
        for s, v in self.loss_history:
            if s <= step:
                best = v
        return best


class _Observer:
    """Subscribes to a JobManager and timestamps the step of one job."""

    def __init__(self, job_id_box: list[str], printer: ProgressPrinter | None) -> None:
        self.box = job_id_box
        self.printer = printer
        self.points: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def __call__(self, record: JobRecord) -> None:
        if not self.box or record.id != self.box[0]:
            return
        st = record.status
        with self.lock:
            if st.state == "running" and st.step > st.step_offset and (not self.points or st.step > self.points[-1][1]):
                self.points.append((time.monotonic(), st.step))
        if self.printer is not None:
            self.printer(st)


def steady_rate(points: Sequence[tuple[float, int]], total: int, start_fraction: float = STEADY_FROM) -> float | None:
    """Optimizer steps per second between the first observation at or after ``start_fraction`` of the
    steps and the last observation."""
    if len(points) < 2:
        return None
    first = next((p for p in points if p[1] >= max(1, int(total * start_fraction))), points[0])
    last = points[-1]
    if last[1] <= first[1] or last[0] <= first[0]:
        return None
    return (last[1] - first[1]) / (last[0] - first[0])


def run_plan(plan: TrainingPlan, data_dir: str | os.PathLike[str], label: str, *, show_progress: bool = True,
             timeout: float = 3600.0, manager: JobManager | None = None) -> RunFigures:
    """Write the plan's files, submit it to a JobManager, follow it to the end and measure it."""
    spec = plan.write_files(plan.job_dir)
    own = manager is None
    mgr = manager or JobManager(data_dir, grace_seconds=10.0)
    printer = ProgressPrinter(sys.stdout, line_interval=15.0) if show_progress else None
    box: list[str] = []
    obs = _Observer(box, printer)
    unsubscribe = mgr.subscribe(obs)
    t0 = time.monotonic()
    try:
        job_id = mgr.submit(spec, {"plan": plan.to_dict(), "source": "benchmark"}, gpu_ids=plan.gpu_ids)
        box.append(job_id)
        record = mgr.wait(job_id, timeout)
        if not record.status.done:
            mgr.cancel(job_id, 5.0)
            record = mgr.wait(job_id, 60.0)
        t_end = time.monotonic()
    finally:
        unsubscribe()
        if own:
            mgr.close()
    if printer is not None:
        printer.close()
    st: JobStatus = record.status
    fig = RunFigures(label=label, state=st.state, message=st.message, exit_code=st.exit_code, steps=st.step,
                     total=st.total, batch=plan.effective_batch, job_id=record.id, job_dir=record.job_dir,
                     command=list(spec.command), output=st.output_path, saves=list(st.saves),
                     loss_history=[(int(s), float(v)) for s, v in st.loss_history], final_loss=st.loss,
                     tqdm_it_s=st.rate)  # fmt: skip
    if st.failure is not None:
        fig.failure = f"{st.failure.kind}: {st.failure.message}"
    with obs.lock:
        points = list(obs.points)
    if points:
        fig.startup_s = points[0][0] - t0
    rate = steady_rate(points, plan.max_train_steps)
    if rate is not None:
        fig.steady_it_s = rate
        fig.steady_img_s = rate * plan.effective_batch
    if st.state == "succeeded":
        fig.total_s = t_end - t0
    return fig


def check_output(path: str | os.PathLike[str], trigger: str, arch: str = "sd1") -> dict[str, Any]:
    """What LoRA Studio's detection makes of a trained file; ``ok`` when it is a LoRA of ``arch``
    ("sd1" | "sdxl") that carries ``trigger``."""
    header = read_header(path)
    det = detect(header)
    md = header.metadata
    result = {
        "kind": det.kind,
        "architecture": det.architecture,
        "adapter": det.adapter,
        "rank": det.rank,
        "trigger_words": list(det.trigger_words),
        "ss_base_model_version": md.get("ss_base_model_version"),
        "modelspec.architecture": md.get("modelspec.architecture"),
        "tensors": len(header.tensors),
    }
    result["ok"] = det.kind == "lora" and det.architecture == arch and trigger in det.trigger_words
    return result


def machine_line() -> str:
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}"


def _fmt(x: float | None, unit: str = "", digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}{unit}"


def trainer_versions(trainer_python: str) -> str:
    code = ("import torch, accelerate, transformers, diffusers; print('torch', torch.__version__, '| accelerate', "
            "accelerate.__version__, '| transformers', transformers.__version__, '| diffusers', diffusers.__version__, "
            "'| cuda', torch.cuda.is_available())")  # fmt: skip
    try:
        out = subprocess.run([trainer_python, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    return out.stdout.strip() or out.stderr.strip()[-300:]


def sd_scripts_commit(sd_scripts: str) -> str:
    try:
        out = subprocess.run(["git", "-C", sd_scripts, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=20)  # fmt: skip
        return out.stdout.strip() or "commit unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sd-scripts", default=os.environ.get("SD_SCRIPTS_DIR", ""), help="sd-scripts checkout")
    ap.add_argument("--trainer-python", default=os.environ.get("TRAINER_PYTHON", ""), help="Python of the trainer venv")
    ap.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default 40 on a GPU, 24 on the CPU)")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--arch", choices=("sd15", "sdxl"), default="sd15", help="base model (SDXL: GPU only in practice)")
    ap.add_argument("--resolution", type=int, help="training px (default 64 on the CPU, 512 on a GPU)")
    ap.add_argument("--trigger", default="zkchar")
    ap.add_argument("--workdir", help="working folder (default: a new temporary folder, removed unless --keep)")
    ap.add_argument("--cache-dir", default=os.environ.get("LORA_STUDIO_TEST_CACHE"), help="checkpoint cache")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    if not args.sd_scripts or not args.trainer_python:
        ap.error("--sd-scripts and --trainer-python (or SD_SCRIPTS_DIR and TRAINER_PYTHON) are required")
    has_gpu, gpu_name = gpu_present()
    device = args.device if args.device != "auto" else ("gpu" if has_gpu else "cpu")
    if device == "gpu" and not has_gpu:
        print("no GPU visible (nvidia-smi): use --device cpu", file=sys.stderr)
        return 2
    steps = args.steps or (40 if device == "gpu" else 24)
    import tempfile

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lora-studio-smoke-"))
    print(f"machine: {machine_line()}; device: {device} {gpu_name}")
    print(f"trainer: {trainer_versions(args.trainer_python)}; sd-scripts {sd_scripts_commit(args.sd_scripts)}")
    t_all = time.monotonic()
    setup = prepare(work, args.sd_scripts, args.trainer_python, arch=args.arch, device=device, cache_dir=args.cache_dir,
                    images=args.images, trigger=args.trigger, resolution=args.resolution)  # fmt: skip
    how = f"built in {setup.checkpoint_build_s:.1f} s" if setup.checkpoint_build_s else "cached"
    print(f"checkpoint: {setup.checkpoint} ({how})")
    plan = plan_for(setup, args.preset, work / "output", steps=steps)
    notes: list[str] = []
    if device == "cpu":
        plan, notes = adapt_for_cpu(plan)
    print(plan.summary())
    for n in notes:
        print(f"  cpu: {n}")
    fig = run_plan(plan, work / "data", f"{args.preset} ({device}, {setup.resolution} px)")
    fig.notes = notes
    print()
    print(f"result: {fig.state}  {fig.message}")
    if fig.failure:
        print(f"failure: {fig.failure}")
        print(f"log: {fig.job_dir}/stderr.log")
    detection: dict[str, Any] = {}
    if fig.output:
        detection = check_output(fig.output, setup.trigger, ARCH_IDS[setup.arch])
        print(f"detected: {detection}")
    print(f"start-up (submit -> step 1):  {_fmt(fig.startup_s, ' s')}")
    print(f"steady state:                 {_fmt(fig.steady_it_s, ' it/s')} = {_fmt(fig.steady_img_s, ' images/s')} "
          f"(batch {fig.batch}; trainer's own {_fmt(fig.tqdm_it_s, ' it/s')})")
    print(f"whole job (submit -> file):   {_fmt(fig.total_s, ' s')}")
    print(f"final loss:                   {_fmt(fig.final_loss, '', 4)} at step {fig.steps}")
    print(f"wall time incl. preparation:  {time.monotonic() - t_all:.1f} s")
    OUT_DIR.mkdir(exist_ok=True)
    record = {"machine": machine_line(), "device": device, "gpu": gpu_name, "setup": dataclasses.asdict(setup),
              "figures": dataclasses.asdict(fig), "detection": detection,
              "trainer": trainer_versions(args.trainer_python)}  # fmt: skip
    (OUT_DIR / "train_smoke.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    ok = fig.state == "succeeded" and bool(detection.get("ok"))
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print("SMOKE OK" if ok else "SMOKE FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
