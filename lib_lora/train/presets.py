"""Training presets: per base model (SD1.5, SDXL, Pony, Illustrious, Flux.1) and kind (character, style,
concept), plus a ``fast`` preset for large GPUs and the kohya_ss GUI defaults for comparisons.

The starting point is the recipe LoRA trainers share: batch 2, learning rate 1e-4, AdamW, network dim 32 /
alpha 16 for a character (64 / 32 for a style), 512 px for SD1.5 and 1024 px for SDXL and Flux, cached
latents, SDPA attention, and — when the step count is "auto" — every training image seen about 90 times
(``images × 90 / batch`` optimizer steps, i.e. images × 45 at batch 2, inside the usual 40–50). Every preset
keeps that number of images seen, so a larger batch means fewer steps, not more training.

The ``fast`` preset raises throughput on large GPUs (measured on one H100 with sd-scripts 48d368fa: SD1.5
512 px 3.1 img/s with the kohya_ss GUI defaults, 28 img/s like this after ~35 s of graph capture): CUDA graphs
through ``--torch_compile --dynamo_backend cudagraphs``, U-Net-only training, fused AdamW, bf16, cached
latents, cached text-encoder outputs where sd-scripts allows them (SDXL, SD3, Flux — it requires U-Net-only
training), no gradient checkpointing (SD1.5/SDXL), and a batch size chosen from the free VRAM
(:func:`fast_batch_size`). The learning rate is scaled with the square root of the batch ratio
(``lr × sqrt(batch / 2)``): the rule that holds for Adam-type optimizers, whose update size does not grow
linearly with the batch the way SGD's does; linear scaling at batch 16 would give 8e-4 and overshoot.

Nothing here does I/O except :func:`query_free_vram_bytes`, which asks ``nvidia-smi``.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
from dataclasses import dataclass, replace

from lib_lora.errors import TrainingError

GiB = 1024**3

#: architecture ids (the same words lib_lora.architecture uses)
ARCH_SD1 = "sd1"
ARCH_SDXL = "sdxl"
ARCH_FLUX1 = "flux1"
ARCHITECTURES = (ARCH_SD1, ARCH_SDXL, ARCH_FLUX1)

KINDS = ("character", "style", "concept")
PRESET_NAMES = ("default", "fast", "gui-defaults")

#: images seen per training image when the step count is "auto" (batch 2 → images × 45 steps)
IMAGES_SEEN_PER_IMAGE = 90
#: the batch size the recipe's learning rate was tuned for; other batches scale lr by sqrt(batch / this)
REFERENCE_BATCH = 2


@dataclass(frozen=True)
class BaseProfile:
    """What a base model family needs: its script, resolutions, and how its sample prompts look."""

    id: str  # "sd15" | "sdxl" | "pony" | "illustrious" | "flux1"
    arch: str  # "sd1" | "sdxl" | "flux1"
    label: str
    script: str  # sd-scripts entry point
    native_resolution: int  # the resolution the base was trained at (px, square)
    min_bucket_reso: int
    max_bucket_reso: int
    network_module: str
    clip_skip: int | None  # None: the script ignores it (SDXL, Flux) so it is not passed
    supports_te_cache: bool  # --cache_text_encoder_outputs exists for this script
    sample_prefix: str  # put before every sample prompt (Pony score tags, Illustrious quality tags)
    sample_negative: str  # "" for none
    sample_cfg: float
    sample_steps: int
    sample_guidance: float | None = None  # Flux embedded guidance (--g)
    tokenizer_dirs: tuple[str, ...] = ()  # sub-folders of --tokenizer_cache_dir an offline run needs


_SD_NEGATIVE = "lowres, blurry, bad anatomy, bad hands, worst quality, low quality, jpeg artifacts, watermark"

_SDXL = BaseProfile(
    id="sdxl",
    arch=ARCH_SDXL,
    label="SDXL 1.0",
    script="sdxl_train_network.py",
    native_resolution=1024,
    min_bucket_reso=256,
    max_bucket_reso=2048,
    network_module="networks.lora",
    clip_skip=None,
    supports_te_cache=True,
    sample_prefix="",
    sample_negative=_SD_NEGATIVE,
    sample_cfg=6.0,
    sample_steps=28,
    tokenizer_dirs=("openai_clip-vit-large-patch14", "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"),
)

BASES: dict[str, BaseProfile] = {
    "sd15": BaseProfile(
        id="sd15",
        arch=ARCH_SD1,
        label="Stable Diffusion 1.5",
        script="train_network.py",
        native_resolution=512,
        min_bucket_reso=256,
        max_bucket_reso=1024,
        network_module="networks.lora",
        clip_skip=1,
        supports_te_cache=False,
        sample_prefix="",
        sample_negative=_SD_NEGATIVE,
        sample_cfg=7.0,
        sample_steps=28,
        tokenizer_dirs=("openai_clip-vit-large-patch14",),
    ),
    "sdxl": _SDXL,
    # SDXL finetunes: same architecture and script, their own sample-prompt conventions
    "pony": dataclasses.replace(
        _SDXL,
        id="pony",
        label="Pony Diffusion (SDXL)",
        # Pony was trained with score tags: without them its samples say little about the LoRA
        sample_prefix="score_9, score_8_up, score_7_up, ",
        sample_negative="score_4, score_5, score_6, " + _SD_NEGATIVE,
        sample_cfg=7.0,
    ),
    "illustrious": dataclasses.replace(
        _SDXL,
        id="illustrious",
        label="Illustrious / NoobAI (SDXL)",
        sample_prefix="masterpiece, best quality, ",
        sample_negative="worst quality, low quality, lowres, bad anatomy, bad hands, watermark",
    ),
    "flux1": BaseProfile(
        id="flux1",
        arch=ARCH_FLUX1,
        label="Flux.1 dev",
        script="flux_train_network.py",
        native_resolution=1024,
        min_bucket_reso=256,
        max_bucket_reso=2048,
        network_module="networks.lora_flux",
        clip_skip=None,
        supports_te_cache=True,
        sample_prefix="",
        sample_negative="",  # Flux dev samples without CFG (--l 1.0): a negative prompt would be unused
        sample_cfg=1.0,
        sample_steps=20,
        sample_guidance=3.5,
        tokenizer_dirs=("openai_clip-vit-large-patch14", "google_t5-v1_1-xxl"),
    ),
}

#: architecture -> the base profile used when the family is unknown
DEFAULT_BASE_FOR_ARCH = {ARCH_SD1: "sd15", ARCH_SDXL: "sdxl", ARCH_FLUX1: "flux1"}

#: words other modules use for an architecture or a family -> base profile id
_BASE_ALIASES = {
    "sd1": "sd15",
    "sd15": "sd15",
    "sd1.5": "sd15",
    "sd-1.5": "sd15",
    "sd_v1": "sd15",
    "sdxl": "sdxl",
    "sdxl-base": "sdxl",
    "sdxl_base_v1-0": "sdxl",
    "pony": "pony",
    "pdxl": "pony",
    "illustrious": "illustrious",
    "ilxl": "illustrious",
    "noobai": "illustrious",
    "noob": "illustrious",
    "flux1": "flux1",
    "flux": "flux1",
    "flux.1": "flux1",
}


def base_profile(base: str) -> BaseProfile:
    """The profile for a base id, architecture id or family word (case-insensitive)."""
    key = _BASE_ALIASES.get(base.strip().lower())
    if key is None:
        known = ", ".join(sorted(BASES))
        raise TrainingError(
            f"no training presets for base model {base!r} (supported: {known}; SD2, SD3 and other "
            "architectures are not covered by the presets)"
        )
    return BASES[key]


def base_for(arch: str, family: str | None = None) -> BaseProfile:
    """Pick the profile from a detected architecture and, when known, a family (Pony, Illustrious...)."""
    profile = base_profile(arch)
    if family:
        fam = _BASE_ALIASES.get(family.strip().lower())
        if fam is not None and BASES[fam].arch == profile.arch:
            return BASES[fam]
    return profile


@dataclass(frozen=True)
class Preset:
    """Every hyperparameter of a training run except the data, paths and step count."""

    name: str  # "default" | "fast" | "gui-defaults"
    base: BaseProfile
    kind: str  # "character" | "style" | "concept"
    description: str
    resolution: int
    batch_size: int
    learning_rate: float
    text_encoder_lr: float | None  # None with U-Net-only training
    network_dim: int
    network_alpha: float
    optimizer_type: str
    optimizer_args: tuple[str, ...]
    lr_scheduler: str  # "cosine" | "constant"
    lr_warmup_ratio: float  # 0 for constant (sd-scripts refuses warm-up steps with "constant")
    mixed_precision: str  # "bf16" | "fp16"
    save_precision: str
    cache_latents: bool
    cache_text_encoder_outputs: bool
    train_unet_only: bool
    gradient_checkpointing: bool
    sdpa: bool
    torch_compile: bool
    dynamo_backend: str | None  # sd-scripts' own --dynamo_backend (only with torch_compile)
    shuffle_caption: bool
    keep_tokens: int
    flip_aug: bool
    fp8_base: bool = False
    no_half_vae: bool = False
    max_grad_norm: float = 1.0
    max_data_loader_n_workers: int = 2
    images_seen_per_image: int = IMAGES_SEEN_PER_IMAGE
    notes: tuple[str, ...] = ()  # how the values were chosen (lr scaled, batch from VRAM ...)

    @property
    def id(self) -> str:
        return f"{self.name}/{self.base.id}/{self.kind}"


@dataclass(frozen=True)
class _KindValues:
    network_dim: int
    network_alpha: float
    lr_scheduler: str
    lr_warmup_ratio: float
    flip_aug: bool


def _kind_values(kind: str) -> _KindValues:
    if kind == "character":
        return _KindValues(32, 16.0, "cosine", 0.05, False)
    if kind == "style":
        # a style is not tied to left/right, so flipped images are free extra data
        return _KindValues(64, 32.0, "cosine", 0.05, True)
    if kind == "concept":
        return _KindValues(32, 16.0, "constant", 0.0, False)
    raise TrainingError(f"unknown LoRA kind {kind!r} (choose one of: {', '.join(KINDS)})")


def _default_preset(base: BaseProfile, kind: str) -> Preset:
    kv = _kind_values(kind)
    flux = base.arch == ARCH_FLUX1
    sdxl = base.arch == ARCH_SDXL
    return Preset(
        name="default",
        base=base,
        kind=kind,
        description=(
            "community recipe: batch 2, lr 1e-4, AdamW, "
            f"dim {kv.network_dim}/alpha {kv.network_alpha:g}, {base.native_resolution} px, bf16, cached latents"
        ),
        resolution=base.native_resolution,
        batch_size=2,
        learning_rate=1e-4,
        # Flux trains the transformer only (its T5 is never trained); SD/SDXL train both at te lr = lr / 2
        text_encoder_lr=None if flux else 5e-5,
        network_dim=kv.network_dim,
        network_alpha=kv.network_alpha,
        optimizer_type="AdamW",
        optimizer_args=(),
        lr_scheduler=kv.lr_scheduler,
        lr_warmup_ratio=kv.lr_warmup_ratio,
        mixed_precision="bf16",
        save_precision="bf16" if flux else "fp16",
        cache_latents=True,
        cache_text_encoder_outputs=flux,
        train_unet_only=flux,
        # SDXL at 1024 px and Flux do not fit a 24 GB card at batch 2 without it; SD1.5 at 512 px does
        gradient_checkpointing=sdxl or flux,
        sdpa=True,
        torch_compile=False,
        dynamo_backend=None,
        # shuffled tags with the first one (the trigger) kept in place; off when text-encoder outputs are cached
        shuffle_caption=not flux,
        keep_tokens=1,
        flip_aug=kv.flip_aug,
        fp8_base=flux,  # Flux.1 in fp8 fits 24 GB cards
    )


#: estimated VRAM of the fast preset: fixed part and per-sample part at the native resolution (bytes).
#: SD1.5 from the H100 figures (batch 2 with CUDA graphs: 7.2 GB; batch 8 vs 2: +1.3 GB per sample);
#: SDXL from batch 2 + cached text encoder outputs with CUDA graphs: 29 GB; Flux is an estimate (bf16
#: weights ~24 GB, gradient checkpointing on), not measured.
_FAST_MEMORY = {
    ARCH_SD1: (4.6e9, 1.3e9, 16),
    ARCH_SDXL: (19.0e9, 5.0e9, 8),
    ARCH_FLUX1: (30.0e9, 6.0e9, 4),
}


def fast_batch_size(
    free_vram_bytes: int | None, base: str, resolution: int | None = None, image_count: int | None = None
) -> int:
    """The largest power-of-two batch (up to 16 SD1.5 / 8 SDXL / 4 Flux) the fast preset fits in free VRAM.

    Keeps 10 % and 1.5 GiB of the free memory in reserve; per-sample memory grows with the pixel count.
    With unknown free VRAM the recipe's batch 2 is kept. Never more than half the number of images.
    """
    profile = base_profile(base)
    if free_vram_bytes is None:
        return REFERENCE_BATCH
    if free_vram_bytes < 0:
        raise TrainingError(f"free VRAM cannot be negative ({free_vram_bytes} bytes)")
    fixed, per_sample, cap = _FAST_MEMORY[profile.arch]
    reso = resolution or profile.native_resolution
    per_sample *= (reso / profile.native_resolution) ** 2
    usable = free_vram_bytes * 0.9 - 1.5 * GiB
    batch = 1
    candidate = 2
    while candidate <= cap and fixed + per_sample * candidate <= usable:
        batch = candidate
        candidate *= 2
    if image_count is not None and image_count > 0:
        while batch > 1 and batch * 2 > image_count:  # keep at least two full batches per epoch of images
            batch //= 2
    return batch


def scaled_learning_rate(learning_rate: float, batch_size: int, reference_batch: int = REFERENCE_BATCH) -> float:
    """``lr × sqrt(batch / reference)`` — square-root scaling for Adam-type optimizers (module docstring)."""
    return learning_rate * math.sqrt(batch_size / reference_batch)


def _fast_preset(
    base: BaseProfile, kind: str, free_vram_bytes: int | None, image_count: int | None
) -> Preset:
    d = _default_preset(base, kind)
    batch = fast_batch_size(free_vram_bytes, base.id, d.resolution, image_count)
    lr = scaled_learning_rate(d.learning_rate, batch)
    flux = base.arch == ARCH_FLUX1
    notes = [
        f"batch {batch} "
        + (
            f"chosen from {free_vram_bytes / GiB:.1f} GiB free VRAM"
            if free_vram_bytes is not None
            else "(free VRAM unknown: the recipe's batch kept)"
        ),
        f"learning rate {lr:.3g} = 1e-4 × sqrt({batch}/2)",
    ]
    if flux:
        notes.append("Flux: no CUDA graphs (not measured with sd-scripts' Flux trainer); gradient checkpointing kept")
    return replace(
        d,
        name="fast",
        description=(
            "for large GPUs: "
            + ("" if flux else "CUDA graphs (--torch_compile --dynamo_backend cudagraphs), ")
            + "U-Net-only, fused AdamW, bf16, cached latents"
            + (", cached text-encoder outputs" if base.supports_te_cache else "")
            + f", batch {batch} from free VRAM"
        ),
        batch_size=batch,
        learning_rate=lr,
        text_encoder_lr=None,
        optimizer_type="AdamW",
        optimizer_args=("fused=True",),
        mixed_precision="bf16",
        cache_text_encoder_outputs=base.supports_te_cache,
        train_unet_only=True,
        gradient_checkpointing=flux,
        torch_compile=not flux,
        dynamo_backend=None if flux else "cudagraphs",
        # cached text-encoder outputs need fixed captions (sd-scripts asserts it)
        shuffle_caption=d.shuffle_caption and not base.supports_te_cache,
        fp8_base=False,
        max_data_loader_n_workers=2,
        notes=tuple(notes),
    )


def _gui_defaults_preset(base: BaseProfile, kind: str) -> Preset:
    """The kohya_ss GUI's LoRA defaults (batch 1, dim 8, alpha 1, fp16, AdamW, cache latents, SDPA)."""
    d = _default_preset(base, kind)
    return replace(
        d,
        name="gui-defaults",
        description="kohya_ss GUI LoRA defaults: batch 1, dim 8, alpha 1, fp16, AdamW, lr 1e-4, cached latents, SDPA",
        batch_size=1,
        learning_rate=1e-4,
        text_encoder_lr=None if base.arch == ARCH_FLUX1 else 1e-4,
        network_dim=8,
        network_alpha=1.0,
        optimizer_type="AdamW",
        optimizer_args=(),
        lr_scheduler="cosine",
        lr_warmup_ratio=0.1,
        mixed_precision="fp16",
        save_precision="fp16",
        gradient_checkpointing=base.arch == ARCH_FLUX1,
        shuffle_caption=False,
        keep_tokens=0,
        flip_aug=False,
        # the SDXL VAE overflows in fp16 (NaN latents): the GUI's users tick "no half VAE"
        no_half_vae=base.arch == ARCH_SDXL,
        max_data_loader_n_workers=0,
        notes=("for comparisons: the settings a kohya_ss GUI user starts from",),
    )


def resolve_preset(
    name: str = "default",
    base: str = "sd15",
    kind: str = "character",
    *,
    free_vram_bytes: int | None = None,
    image_count: int | None = None,
) -> Preset:
    """The preset ``name`` for a base (id, architecture or family word) and a kind."""
    profile = base_profile(base)
    if kind not in KINDS:
        raise TrainingError(f"unknown LoRA kind {kind!r} (choose one of: {', '.join(KINDS)})")
    if name == "default":
        return _default_preset(profile, kind)
    if name == "fast":
        return _fast_preset(profile, kind, free_vram_bytes, image_count)
    if name == "gui-defaults":
        return _gui_defaults_preset(profile, kind)
    raise TrainingError(f"unknown preset {name!r} (choose one of: {', '.join(PRESET_NAMES)})")


def all_presets() -> list[Preset]:
    """Every preset × base × kind (the fast ones with unknown free VRAM)."""
    return [resolve_preset(n, b, k) for n in PRESET_NAMES for b in BASES for k in KINDS]


def auto_steps(image_count: int, batch_size: int, images_seen_per_image: int = IMAGES_SEEN_PER_IMAGE) -> int:
    """Optimizer steps so that each image is seen ``images_seen_per_image`` times (at least 1 step)."""
    if image_count < 1:
        raise TrainingError("no training images: cannot choose a step count")
    if batch_size < 1:
        raise TrainingError(f"batch size must be at least 1 (got {batch_size})")
    return max(1, math.ceil(image_count * images_seen_per_image / batch_size))


# -- sanity limits ------------------------------------------------------------------------------------

MAX_STEPS = 200_000
MAX_LR = 1e-2
MAX_DIM = 1024
MAX_RESOLUTION = 4096
MIN_RESOLUTION = 64
MAX_BATCH = 256
MAX_REPEATS = 10_000
MIN_RESOLUTION_STEP = 64
MIXED_PRECISIONS = ("no", "fp16", "bf16")
SCHEDULERS = ("cosine", "constant", "linear", "constant_with_warmup", "cosine_with_restarts", "polynomial")


def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TrainingError(f"{name} must be a whole number (got {value!r})")
    return value


def _float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TrainingError(f"{name} must be a number (got {value!r})")
    f = float(value)
    if not math.isfinite(f):
        raise TrainingError(f"{name} must be a finite number (got {value!r})")
    return f


def validate_hyperparameters(
    *,
    learning_rate: object,
    text_encoder_lr: object = None,
    steps: object,
    batch_size: object,
    network_dim: object,
    network_alpha: object,
    resolution: object,
    repeats: object = 1,
    seed: object = 0,
    lr_scheduler: str = "cosine",
    lr_warmup_steps: object = 0,
    mixed_precision: str = "bf16",
    save_every_n_steps: object = None,
    sample_every_n_steps: object = None,
) -> None:
    """Refuse absurd values with a message that names the value and the accepted range."""
    lr = _float("learning rate", learning_rate)
    if not 0 < lr <= MAX_LR:
        raise TrainingError(
            f"learning rate {learning_rate!r} is outside 0 < lr ≤ {MAX_LR:g} (LoRA recipes use 1e-4 to 5e-4)"
        )
    if text_encoder_lr is not None:
        te = _float("text encoder learning rate", text_encoder_lr)
        if not 0 <= te <= MAX_LR:
            raise TrainingError(f"text encoder learning rate {text_encoder_lr!r} is outside 0 ≤ lr ≤ {MAX_LR:g}")
    n = _int("steps", steps)
    if not 1 <= n <= MAX_STEPS:
        raise TrainingError(f"steps {n} is outside 1..{MAX_STEPS} (a LoRA usually needs 500 to 5,000)")
    b = _int("batch size", batch_size)
    if not 1 <= b <= MAX_BATCH:
        raise TrainingError(f"batch size {b} is outside 1..{MAX_BATCH}")
    dim = _int("network dim", network_dim)
    if not 1 <= dim <= MAX_DIM:
        raise TrainingError(f"network dim {dim} is outside 1..{MAX_DIM} (LoRAs use 4 to 128)")
    alpha = _float("network alpha", network_alpha)
    if not 0 < alpha <= MAX_DIM:
        raise TrainingError(f"network alpha {network_alpha!r} is outside 0 < alpha ≤ {MAX_DIM} (usually dim / 2)")
    r = _int("resolution", resolution)
    if r % MIN_RESOLUTION_STEP != 0:
        raise TrainingError(f"resolution {r} is not a multiple of {MIN_RESOLUTION_STEP} px")
    if not MIN_RESOLUTION <= r <= MAX_RESOLUTION:
        raise TrainingError(f"resolution {r} is outside {MIN_RESOLUTION}..{MAX_RESOLUTION} px")
    rep = _int("repeats", repeats)
    if not 1 <= rep <= MAX_REPEATS:
        raise TrainingError(f"repeats {rep} is outside 1..{MAX_REPEATS}")
    s = _int("seed", seed)
    if not 0 <= s < 2**32:
        raise TrainingError(f"seed {s} is outside 0..{2**32 - 1}")
    if lr_scheduler not in SCHEDULERS:
        raise TrainingError(f"unknown learning-rate scheduler {lr_scheduler!r} (choose one of: {', '.join(SCHEDULERS)})")
    w = _int("warm-up steps", lr_warmup_steps)
    if w < 0 or w >= n:
        raise TrainingError(f"warm-up steps {w} must be at least 0 and fewer than the {n} training steps")
    if lr_scheduler == "constant" and w != 0:
        raise TrainingError("the 'constant' scheduler takes no warm-up steps (use 'constant_with_warmup')")
    if mixed_precision not in MIXED_PRECISIONS:
        raise TrainingError(f"mixed precision {mixed_precision!r} is not one of {', '.join(MIXED_PRECISIONS)}")
    for label, every in (("save every N steps", save_every_n_steps), ("sample every N steps", sample_every_n_steps)):
        if every is not None:
            e = _int(label, every)
            if e < 1:
                raise TrainingError(f"{label} must be at least 1 (got {e})")


# -- free VRAM ------------------------------------------------------------------------------------------


def query_free_vram_bytes(gpu_id: int = 0, nvidia_smi: str = "nvidia-smi", timeout: float = 15.0) -> int | None:
    """Free memory of one NVIDIA GPU from ``nvidia-smi`` (None when there is no such tool or GPU)."""
    exe = shutil.which(nvidia_smi)
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, f"--id={int(gpu_id)}", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    first = out.stdout.strip().splitlines()[:1]
    try:
        mib = float(first[0].strip()) if first else None
    except ValueError:
        return None
    return None if mib is None or mib < 0 else int(mib * 1024 * 1024)
