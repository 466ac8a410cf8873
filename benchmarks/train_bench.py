"""Benchmark: LoRA Studio's default and fast presets against the kohya_ss GUI's LoRA defaults, with the
real sd-scripts, on the same data, the same random-weight checkpoint and the same machine, in one run.

Each preset trains for the same number of **images seen** (steps = images seen / batch), through
LoRA Studio's plan + JobManager (``train_smoke.py`` is the harness). Printed per preset: steady-state
it/s and images/s (the runner's step observations after the first 30 % of the steps), start-up time
(submit → first optimizer step), whole-job time (submit → file) and the final loss at equal images seen
(sd-scripts' ``avr_loss``, the running mean of the epoch). Then the ratios fast / gui-defaults and
default / gui-defaults, and the final-loss difference fast vs default.

    python benchmarks/train_bench.py --sd-scripts DIR --trainer-python PY [--device cpu|gpu] [--images-seen N]

Targets (issue 5, on an H100): fast >= 8x the GUI defaults' images/s for SD1.5 (6x SDXL), final loss within
5 % of the default preset's at the same images seen, start-up no slower than the GUI defaults'.

On the CPU (no GPU here): 64 px, fp32 for every preset (sd-scripts/accelerate refuse fp16 without a GPU,
and bf16 autocast on a CPU measures the CPU's bf16 emulation, not the recipe), no data-loader workers.
The fast preset's ``--torch_compile --dynamo_backend cudagraphs`` is dropped (CUDA graphs need CUDA;
``--cpu-fast as-is`` keeps it to see what happens); its other changes — U-Net only, fused AdamW (torch
fuses AdamW on a CPU too), batch from free VRAM (unknown on a CPU: the recipe's 2) — are kept. CPU figures
say which preset does less work per image; they say nothing about the GPU speed-ups, and the H100 figures
are printed as "not measured" unless a GPU ran them. Figures go to ``benchmarks/out/train_bench.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import train_smoke  # noqa: E402

from lib_lora.train.presets import query_free_vram_bytes  # noqa: E402

PRESETS = ("gui-defaults", "default", "fast")
#: measured on one H100 with sd-scripts 48d368fa, SD1.5 512 px, random weights (images/s): GUI defaults
#: 3.07 it/s at batch 1; fast = batch 2, U-Net only, fused AdamW, bf16, CUDA graphs 14.2 it/s. The targets' anchors.
H100_ANCHOR = {"gui-defaults": 3.1, "fast (CUDA graphs)": 28.0}
TARGET_RATIO = {"sd15": 8.0, "sdxl": 6.0}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _f(x: float | None, spec: str = ".3g", unit: str = "") -> str:
    return "n/a" if x is None else f"{format(x, spec)}{unit}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sd-scripts", default=os.environ.get("SD_SCRIPTS_DIR", ""))
    ap.add_argument("--trainer-python", default=os.environ.get("TRAINER_PYTHON", ""))
    ap.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    ap.add_argument("--arch", choices=("sd15", "sdxl"), default="sd15")
    ap.add_argument("--images", type=int, default=None, help="dataset size (default 8 on the CPU, 30 on a GPU)")
    ap.add_argument("--images-seen", type=int, default=None,
                    help="images seen per preset (default 48 on the CPU, 1200 on a GPU)")  # fmt: skip
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated, in run order")
    ap.add_argument("--cpu-fast", choices=("adapted", "as-is"), default="adapted",
                    help="on the CPU: drop the fast preset's CUDA-graph compile (adapted) or keep it (as-is)")  # fmt: skip
    ap.add_argument("--resolution", type=int)
    ap.add_argument("--workdir")
    ap.add_argument("--cache-dir", default=os.environ.get("LORA_STUDIO_TEST_CACHE"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    if not args.sd_scripts or not args.trainer_python:
        ap.error("--sd-scripts and --trainer-python (or SD_SCRIPTS_DIR and TRAINER_PYTHON) are required")
    has_gpu, gpu_name = train_smoke.gpu_present()
    device = args.device if args.device != "auto" else ("gpu" if has_gpu else "cpu")
    if device == "gpu" and not has_gpu:
        print("no GPU visible (nvidia-smi): use --device cpu", file=sys.stderr)
        return 2
    images = args.images or (8 if device == "cpu" else 30)
    seen = args.images_seen or (48 if device == "cpu" else 1200)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lora-studio-bench-train-"))

    print(f"machine: {train_smoke.machine_line()}; device: {device} {gpu_name}")
    print(f"trainer: {train_smoke.trainer_versions(args.trainer_python)}; "
          f"sd-scripts {train_smoke.sd_scripts_commit(args.sd_scripts)}")  # fmt: skip
    setup = train_smoke.prepare(work, args.sd_scripts, args.trainer_python, arch=args.arch, device=device,
                                cache_dir=args.cache_dir, images=images, resolution=args.resolution)  # fmt: skip
    how = f"built in {setup.checkpoint_build_s:.1f} s" if setup.checkpoint_build_s else "cached"
    print(f"checkpoint: {setup.checkpoint} ({how}); {images} images at {setup.resolution} px; "
          f"{seen} images seen per preset")  # fmt: skip
    free_vram = query_free_vram_bytes(0) if device == "gpu" else None

    results: dict[str, train_smoke.RunFigures] = {}
    plans: dict[str, dict[str, Any]] = {}
    for name in presets:
        probe = train_smoke.plan_for(setup, name, work / "out" / name, steps=1, free_vram_bytes=free_vram)
        steps = max(1, seen // probe.effective_batch)
        plan = train_smoke.plan_for(setup, name, work / "out" / name, steps=steps, free_vram_bytes=free_vram)
        notes: list[str] = []
        if device == "cpu":
            notes.append("fp32 (mixed_precision=no) and 0 data-loader workers on the CPU")
            if args.cpu_fast == "adapted":
                plan, changed = train_smoke.adapt_for_cpu(plan)
                notes += changed
        p = plan.preset
        desc = (f"batch {plan.batch_size}, dim {plan.network_dim}/alpha {plan.network_alpha:g}, "
                f"{'U-Net only' if p.train_unet_only else 'U-Net + TE'}, {p.optimizer_type} {' '.join(p.optimizer_args)}, "
                f"{plan.mixed_precision}, {'compile ' + str(p.dynamo_backend) if p.torch_compile else 'eager'}, "
                f"{steps} steps")  # fmt: skip
        print(f"\n== {name}: {desc}")
        for n in notes:
            print(f"   note: {n}")
        fig = train_smoke.run_plan(plan, work / "data", name)
        fig.notes = notes
        results[name] = fig
        plans[name] = {"description": desc, "steps": steps, "batch": plan.effective_batch,
                       "images_seen": plan.images_seen}  # fmt: skip
        print(f"   {fig.state}: start-up {_f(fig.startup_s, '.1f', ' s')}, steady {_f(fig.steady_it_s, '.3g', ' it/s')}"
              f" = {_f(fig.steady_img_s, '.3g', ' img/s')}, whole job {_f(fig.total_s, '.1f', ' s')}, "
              f"final loss {_f(fig.final_loss, '.4f')}")  # fmt: skip
        if fig.failure:
            print(f"   failure: {fig.failure} (log: {fig.job_dir})")

    gui = results.get("gui-defaults")
    print(f"\n== summary ({device}, {args.arch} at {setup.resolution} px, {seen} images seen each)")
    print(f"{'preset':<14}{'img/s':>10}{'it/s':>10}{'start-up s':>12}{'job s':>10}{'final loss':>12}{'img/s vs GUI':>14}")
    for name, fig in results.items():
        r = _ratio(fig.steady_img_s, gui.steady_img_s if gui else None)
        print(f"{name:<14}{_f(fig.steady_img_s):>10}{_f(fig.steady_it_s):>10}{_f(fig.startup_s, '.1f'):>12}"
              f"{_f(fig.total_s, '.1f'):>10}{_f(fig.final_loss, '.4f'):>12}{_f(r, '.2f', 'x'):>14}")  # fmt: skip
    ratios: dict[str, Any] = {}
    fast, default = results.get("fast"), results.get("default")
    if fast and gui:
        ratios["fast/gui img/s"] = _ratio(fast.steady_img_s, gui.steady_img_s)
        ratios["fast/gui start-up"] = _ratio(fast.startup_s, gui.startup_s)
        ratios["fast/gui whole job"] = _ratio(fast.total_s, gui.total_s)
    if default and gui:
        ratios["default/gui img/s"] = _ratio(default.steady_img_s, gui.steady_img_s)
    if fast and default and fast.final_loss and default.final_loss:
        ratios["fast vs default final loss"] = fast.final_loss / default.final_loss - 1.0
    for k, v in ratios.items():
        print(f"  {k}: {_f(v, '.3f')}")
    target = TARGET_RATIO[args.arch]
    if device == "gpu" and "H100" in gpu_name:
        r = ratios.get("fast/gui img/s")
        print(f"  H100 target fast >= {target:g}x GUI defaults: {'MET' if r and r >= target else 'NOT MET'} ({_f(r, '.2f', 'x')})")
    else:
        print(f"  H100 figures: not measured (this run: {device} {gpu_name or ''}). Reference measured on an H100, "
              f"SD1.5 512 px: GUI defaults {H100_ANCHOR['gui-defaults']} img/s, fast with CUDA graphs "
              f"{H100_ANCHOR['fast (CUDA graphs)']} img/s; target >= {target:g}x")  # fmt: skip

    train_smoke.OUT_DIR.mkdir(exist_ok=True)
    record = {
        "machine": train_smoke.machine_line(), "device": device, "gpu": gpu_name, "arch": args.arch,
        "resolution": setup.resolution, "images": images, "images_seen": seen, "cpu_fast": args.cpu_fast,
        "trainer": train_smoke.trainer_versions(args.trainer_python), "plans": plans,
        "results": {k: dataclasses.asdict(v) for k, v in results.items()}, "ratios": ratios,
        "h100": "measured" if device == "gpu" and "H100" in gpu_name else "not measured",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    (train_smoke.OUT_DIR / "train_bench.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(f.state == "succeeded" for f in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
