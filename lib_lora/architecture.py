"""Base-model taxonomy and detection of a LoRA's / a checkpoint's base model from its header.

INTERFACE STUB — the dataclasses and signatures below are the contract other modules code against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lib_lora.safetensors_header import Header

# Architecture ids (what decides whether a LoRA can load at all).
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Evidence:
    """One observation behind a conclusion, shown to the user as "why"."""

    source: str  # "structure" | "metadata" | "sidecar" | "civitai" | "hash" | "name" | "tags"
    claim: str  # what it supports, e.g. "architecture=sdxl", "family=pony", "adapter=loha"
    detail: str  # human text, e.g. "attn2 to_k input width 2048 (lora_unet_input_blocks_4_1_...)"


@dataclass(frozen=True)
class Hints:
    """Information from outside the header that can decide the family (never the architecture)."""

    sidecar_sd_version: str | None = None  # A1111 "sd version": SD1|SD2|SDXL|Flux|Unknown
    sidecar_base: str | None = None  # LoRA Studio's own override (architecture or family id) from the sidecar
    civitai_base_model: str | None = None  # Civitai "baseModel", e.g. "Pony", "Illustrious", "SDXL 1.0"
    filename: str | None = None  # file name (stem + suffix)
    folders: tuple[str, ...] = ()  # folder names between the library root and the file


@dataclass(frozen=True)
class Detection:
    kind: str  # "lora" | "checkpoint" | "unknown"
    architecture: str  # an id from ARCHITECTURES, or "unknown"
    candidates: tuple[str, ...] = ()  # when structure cannot separate architectures, e.g. ("flux1", "chroma")
    family: str | None = None  # "sdxl-base", "pony", "illustrious", "noobai", "sdxl-fast", "playground", "sd15", ...
    adapter: str | None = None  # "lora", "locon", "loha", "lokr", "ia3", "oft", "boft", "glora", "dora", "full", "norm", "dylora"
    rank: int | None = None
    alpha: float | None = None
    targets: tuple[str, ...] = ()  # subset of ("unet", "te", "te1", "te2", "te3", "transformer")
    trigger_words: tuple[str, ...] = ()  # from metadata (modelspec.trigger_phrase, ...)
    evidence: tuple[Evidence, ...] = ()
    conflicts: tuple[str, ...] = ()  # human text: metadata vs structure disagreements
    extra: dict[str, str] = field(default_factory=dict)


def detect(header: Header, hints: Hints | None = None) -> Detection:
    raise NotImplementedError


def detect_lora(header: Header, hints: Hints | None = None) -> Detection:
    raise NotImplementedError


def detect_checkpoint(header: Header, hints: Hints | None = None) -> Detection:
    raise NotImplementedError
