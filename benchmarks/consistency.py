"""Benchmark: what a consistency sheet costs beyond the WebUI's own generation, for 5 scenes × 4 versions ×
3 weights (60 cells).

    python benchmarks/consistency.py [--gen-python /path/to/trainer-venv/bin/python] [--steps 20]

Overhead = the whole sheet job with a stub generator (it hands back a prepared image at once, so nothing
of the WebUI's time is in it) minus the time spent inside the stub: saving the 60 singles, scoring them
with a random-weight open_clip ViT-B-32 on the CPU, assembling and saving the labelled grid, the job's
bookkeeping. The CLIP model load is reported separately (it happens once per process). Both at 512 px
(the target) and 64 px (for information).

The generation time it is compared with is the WebUI's SD1.5 txt2img at 512 px on the same CPU: one
U-Net call with classifier-free guidance (batch 2, 64×64 latent) and one VAE decode, measured with a
random-weight model built from the diffusers configs in the test fixtures (``--gen-python``: a Python
with torch and diffusers, e.g. the trainer's venv), times ``--steps``. Text encoding and the sampler's
own arithmetic are left out, so the estimate is low and the percentage conservative. Without
``--gen-python`` give ``--gen-seconds`` (per image) or the comparison is not made.

Target (issue 12): overhead under 5% of the generation time at 512 px on the CPU. Figures go to
``benchmarks/out/consistency.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from lib_lora import synth  # noqa: E402
from lib_lora.consistency import SheetManager, SheetRequest  # noqa: E402
from lib_lora.consistency import sheet as sheet_module  # noqa: E402
from lib_lora.consistency.score import ClipEmbedder  # noqa: E402
from lib_lora.host import GenerationRequest, StandaloneHost  # noqa: E402
from lib_lora.safetensors_header import write_file  # noqa: E402

VERSIONS = ("char_v1", "char_v2", "char_v3", "char_v4")
WEIGHTS = (0.6, 0.8, 1.0)

GEN_WORKER = r"""
import json, sys, time, torch
from diffusers import AutoencoderKL, UNet2DConditionModel
cfg = sys.argv[1]
torch.manual_seed(0)
torch.set_grad_enabled(False)
unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg + "/unet")).eval()
vae = AutoencoderKL.from_config(AutoencoderKL.load_config(cfg + "/vae")).eval()
latent = torch.randn(2, 4, 64, 64)
text = torch.randn(2, 77, 768)
t = torch.tensor([500, 500])
unet(latent, t, encoder_hidden_states=text)  # warm-up
runs = []
for _ in range(2):
    s = time.perf_counter(); unet(latent, t, encoder_hidden_states=text); runs.append(time.perf_counter() - s)
s = time.perf_counter(); vae.decode(latent[:1]); vae_s = time.perf_counter() - s
print(json.dumps({"unet_step_s": min(runs), "vae_decode_s": vae_s, "threads": torch.get_num_threads()}))
"""


class StubHost(StandaloneHost):
    """A host whose generation hands back a prepared image at once (time inside it is counted)."""

    kind = "webui"

    def __init__(self, *args: Any, size: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        rng = np.random.default_rng(0)
        self.images = [Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)) for _ in range(8)]
        self.inside = 0.0
        self.calls = 0

    def generate(self, request: GenerationRequest) -> Image.Image:
        start = time.perf_counter()
        im = self.images[(request.seed + self.calls) % len(self.images)].copy()
        self.calls += 1
        self.inside += time.perf_counter() - start
        return im


class TimedEmbedder:
    def __init__(self, inner: ClipEmbedder) -> None:
        self.inner = inner
        self.seconds = 0.0

    def describe(self) -> str:
        return self.inner.describe()

    def embed(self, images: Any) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.inner.embed(images)
        finally:
            self.seconds += time.perf_counter() - start


def make_library(root: Path) -> None:
    tensors, md = synth.build("kohya-sd1", 4)
    root.mkdir(parents=True, exist_ok=True)
    for name in VERSIONS:
        write_file(root / f"{name}.safetensors", tensors, md, sparse=True)


def run_sheet(root: Path, size: int, embedder: TimedEmbedder) -> dict[str, float]:
    host = StubHost([root / "loras"], data_dir=root / f"data{size}", size=size)
    host.rescan(wait=True)
    grid_time = [0.0]
    real_grid = sheet_module.assemble_grid

    def timed_grid(*a: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        try:
            return real_grid(*a, **kw)
        finally:
            grid_time[0] += time.perf_counter() - start

    sheet_module.assemble_grid = timed_grid  # type: ignore[assignment]
    embedder.seconds = 0.0
    try:
        manager = SheetManager(host, embedder=lambda: embedder)
        start = time.perf_counter()
        st = manager.wait(manager.submit(SheetRequest(lora=VERSIONS[0], versions=VERSIONS, weights=WEIGHTS,
                                                      width=size, height=size, steps=20)), timeout=3600)
        total = time.perf_counter() - start
    finally:
        sheet_module.assemble_grid = real_grid  # type: ignore[assignment]
    if st.state != "succeeded":
        raise SystemExit(f"the sheet failed: {st.message}")
    return {"cells": len(st.cells), "job_s": total, "inside_generation_s": host.inside,
            "overhead_s": total - host.inside, "scoring_s": embedder.seconds, "grid_s": grid_time[0],
            "best_weight": st.best[1] if st.best else None}


def generation_seconds(python: str, steps: int) -> dict[str, float]:
    from make_random_checkpoint import DEFAULT_FIXTURES

    cfg = Path(DEFAULT_FIXTURES) / "model-configs" / "sd15"
    out = subprocess.run([python, "-c", GEN_WORKER, str(cfg)], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"generation timing failed: {out.stderr[-2000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["per_image_s"] = steps * data["unet_step_s"] + data["vae_decode_s"]
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gen-python", help="a Python with torch + diffusers to time SD1.5 generation at 512 px")
    ap.add_argument("--gen-seconds", type=float, help="generation seconds per 512 px image (instead of timing)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dir", help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir or tmp)
        make_library(root / "loras")
        clip = ClipEmbedder("ViT-B-32", pretrained="", device="cpu")
        start = time.perf_counter()
        clip.load()
        load_s = time.perf_counter() - start
        embedder = TimedEmbedder(clip)
        results: dict[str, Any] = {"cells": 60, "clip_model_load_s": load_s}
        for size in (512, 64):
            results[f"{size}px"] = run_sheet(root, size, embedder)
    gen: dict[str, float] | None = None
    if args.gen_python:
        gen = generation_seconds(args.gen_python, args.steps)
    elif args.gen_seconds:
        gen = {"per_image_s": args.gen_seconds}
    results["generation"] = gen
    print(f"5 scenes x 4 versions x 3 weights = 60 cells; CLIP ViT-B-32 (random weights) load {load_s:.2f} s "
          "(once per process, not in the overhead)")
    for size in (512, 64):
        r = results[f"{size}px"]
        print(f"{size:>4} px: overhead {r['overhead_s']:.2f} s ({r['overhead_s'] / 60 * 1000:.0f} ms/cell) — "
              f"scoring {r['scoring_s']:.2f} s, grid {r['grid_s']:.2f} s, rest (saving, job) "
              f"{r['overhead_s'] - r['scoring_s'] - r['grid_s']:.2f} s")
    if gen is not None:
        total_gen = 60 * gen["per_image_s"]
        share = results["512px"]["overhead_s"] / total_gen
        results["overhead_share_512"] = share
        print(f"generation (SD1.5, 512 px, {args.steps} steps, CPU): {gen['per_image_s']:.1f} s/image"
              + (f" (U-Net step {gen['unet_step_s']:.2f} s with CFG, VAE decode {gen['vae_decode_s']:.2f} s)"
                 if "unet_step_s" in gen else " (given)")
              + f" -> {total_gen:.0f} s for the sheet")
        print(f"overhead at 512 px: {share:.2%} of the generation time (target < 5%): "
              + ("PASS" if share < 0.05 else "FAIL"))
    else:
        print("generation time not measured (pass --gen-python or --gen-seconds)")
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "consistency.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
