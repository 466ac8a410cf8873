"""Build a random-weight, shape-correct SD1.5 or SDXL checkpoint in the single-file (ldm / sgm) layout
that kohya sd-scripts loads, from the diffusers configs in ``tests/fixtures/model-configs``.

Two halves:

* :func:`build` (stdlib only, importable from tests and benchmarks without torch) runs this file as a
  subprocess with the **trainer** Python (the sd-scripts venv: torch, diffusers, transformers) and caches
  the result: the same arguments give the same file, built once.
* ``python make_random_checkpoint.py --worker ...`` (in the trainer venv) instantiates the models from the
  configs with a fixed seed and writes them with sd-scripts' own writers
  (``library.model_util.save_stable_diffusion_checkpoint`` for SD1.x,
  ``library.sdxl_model_util.save_stable_diffusion_checkpoint`` for SDXL), so the key layout is by
  construction the one sd-scripts' loader reads.

The U-Net is always full size: sd-scripts rebuilds a single-file (and a diffusers) SD1.x/SDXL U-Net with
its own fixed block widths (``library/original_unet.py``, ``library/sdxl_original_unet.py``), so a reduced
U-Net config would not load. CPU tests therefore save time with a small resolution (64 px), not a small
model.

    python3 benchmarks/make_random_checkpoint.py --trainer-python TRAINER_PY \\
        --sd-scripts SD_SCRIPTS_DIR --arch sd15 --out /tmp/sd15-random.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
DEFAULT_FIXTURES = REPO / "tests" / "fixtures"
ARCHES = ("sd15", "sdxl")
DTYPES = ("fp16", "bf16", "fp32")


class BuildError(RuntimeError):
    """The trainer Python could not build the checkpoint (its output tail is in the message)."""


def _configs_digest(configs: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(configs.rglob("*.json")):
        h.update(str(p.relative_to(configs)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def cache_name(arch: str, seed: int, dtype: str, configs: Path) -> str:
    return f"{arch}-random-seed{seed}-{dtype}-{_configs_digest(configs)}.safetensors"


def build(
    trainer_python: str | os.PathLike[str],
    sd_scripts_dir: str | os.PathLike[str],
    arch: str = "sd15",
    *,
    out: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    fixtures_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    dtype: str = "fp16",
    timeout: float = 900.0,
    log=None,
) -> tuple[Path, float]:
    """The checkpoint's path and the seconds spent building it (0.0 when it came from the cache).

    Give ``out`` (always rebuilt) or ``cache_dir`` (reused when a file for the same arch, seed, dtype
    and configs is there). Writes to a temporary name and renames, so a cut-off build leaves no file.
    """
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {ARCHES}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}")
    fixtures = Path(fixtures_dir) if fixtures_dir else DEFAULT_FIXTURES
    configs = fixtures / "model-configs" / arch
    if not configs.is_dir():
        raise BuildError(f"model configs not found: {configs}")
    if out is not None:
        target = Path(out)
    else:
        cdir = Path(cache_dir or os.environ.get("LORA_STUDIO_TEST_CACHE") or Path.home() / ".cache" / "lora-studio-test")
        target = cdir / cache_name(arch, seed, dtype, configs)
        if target.is_file():
            return target, 0.0
    target.parent.mkdir(parents=True, exist_ok=True)
    # sd-scripts picks the format from the extension: the temporary name must end in .safetensors
    tmp = target.with_name(f".{target.stem}.part{os.getpid()}.safetensors")
    cmd = [
        os.fspath(trainer_python), os.fspath(HERE), "--worker", "--arch", arch, "--configs", os.fspath(configs),
        "--sd-scripts", os.fspath(sd_scripts_dir), "--out", os.fspath(tmp), "--seed", str(seed), "--dtype", dtype,
    ]  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"building the {arch} checkpoint took more than {timeout:.0f} s") from exc
    text = proc.stdout.decode("utf-8", "replace")
    if log is not None:
        log(text)
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise BuildError(f"building the {arch} checkpoint failed (exit {proc.returncode}):\n{text[-3000:]}")
    os.replace(tmp, target)
    return target, time.perf_counter() - t0


# ------------------------------------------------------------------------------ worker (trainer venv)


def _worker(args: argparse.Namespace) -> int:
    import torch  # the trainer venv's
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    sys.path.insert(0, os.path.abspath(args.sd_scripts))
    configs = Path(args.configs)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    # Build the models in the saved dtype and hand the writers no dtype: an SDXL model in fp32 plus the
    # converted copy the writer would make is ~21 GB, built in fp16 and written as is ~7 GB.
    torch.set_default_dtype(dtype)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()

    def config(sub: str) -> dict:
        return json.loads((configs / sub / "config.json").read_text(encoding="utf-8"))

    vae = AutoencoderKL.from_config(config("vae"))
    te1 = CLIPTextModel(CLIPTextConfig.from_dict(config("text_encoder")))
    meta = {"lora_studio.random_weights": "true", "lora_studio.seed": str(args.seed)}
    if args.arch == "sd15":
        from diffusers import UNet2DConditionModel
        from library import model_util

        unet = UNet2DConditionModel.from_config(config("unet"))
        print(f"models built in {time.perf_counter() - t0:.1f} s", flush=True)
        keys = model_util.save_stable_diffusion_checkpoint(False, args.out, te1, unet, None, 0, 0, meta, None, vae)
    else:
        from library import sdxl_model_util, sdxl_original_unet

        unet = sdxl_original_unet.SdxlUNet2DConditionModel()  # sd-scripts' own fixed SDXL U-Net
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(config("text_encoder_2")))
        print(f"models built in {time.perf_counter() - t0:.1f} s", flush=True)
        logit_scale = torch.tensor(4.6052)
        keys = sdxl_model_util.save_stable_diffusion_checkpoint(
            args.out, te1, te2, unet, 0, 0, None, vae, logit_scale, meta, None
        )
    print(f"wrote {keys} tensors to {args.out} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=ARCHES, default="sd15")
    ap.add_argument("--out", help="output .safetensors (default: a cached file under --cache-dir)")
    ap.add_argument("--cache-dir", help="cache folder (default: $LORA_STUDIO_TEST_CACHE or ~/.cache/lora-studio-test)")
    ap.add_argument("--sd-scripts", default=os.environ.get("SD_SCRIPTS_DIR", ""), help="sd-scripts checkout")
    ap.add_argument("--trainer-python", default=os.environ.get("TRAINER_PYTHON", ""), help="Python of the trainer venv")
    ap.add_argument("--fixtures", default=None, help="fixtures folder (default: tests/fixtures)")
    ap.add_argument("--configs", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=DTYPES, default="fp16")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args)
    if not args.sd_scripts or not args.trainer_python:
        ap.error("--sd-scripts and --trainer-python (or SD_SCRIPTS_DIR and TRAINER_PYTHON) are required")
    path, seconds = build(args.trainer_python, args.sd_scripts, args.arch, out=args.out, cache_dir=args.cache_dir,
                          fixtures_dir=args.fixtures, seed=args.seed, dtype=args.dtype, log=sys.stdout.write)  # fmt: skip
    how = f"built in {seconds:.1f} s" if seconds else "cached"
    print(f"{path} ({path.stat().st_size / 1e9:.2f} GB, {how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
