"""The base-model taxonomy: architectures, families, adapters, the Detection value and its labels."""

from __future__ import annotations

from dataclasses import dataclass, field

# Architecture ids (what decides whether a LoRA can load at all).
UNKNOWN = "unknown"

#: WebUI ids used in :attr:`Architecture.webuis`.
A1111 = "a1111"
FORGE = "forge"


@dataclass(frozen=True)
class Architecture:
    """One base-model architecture: LoRAs for it load on its checkpoints and nowhere else."""

    id: str
    label: str  # display name, e.g. "SDXL"
    group: str  # architectures of one group accept each other's LoRAs with a warning (Flux.1 <-> Chroma)
    webuis: tuple[str, ...] = ()  # WebUIs whose built-in Lora loader can run it ("a1111", "forge")
    media: str = "image"  # "image" | "video"
    text_encoders: tuple[str, ...] = ()  # LoRA target ids of its text encoders
    denoiser: str = "transformer"  # LoRA target id of its denoiser: "unet" | "transformer"


_BOTH = (A1111, FORGE)

#: Every architecture LoRA Studio knows. A1111 1.10 runs SD1, SD2, SDXL (+ refiner) and SD3 Medium;
#: Forge adds Flux.1 and Chroma. The rest are recognised so that their LoRAs are labelled, not loaded.
ARCHITECTURES: dict[str, Architecture] = {a.id: a for a in (
    Architecture("sd1", "SD 1.5", "sd1", _BOTH, text_encoders=("te",), denoiser="unet"),
    Architecture("sd2", "SD 2.x", "sd2", _BOTH, text_encoders=("te",), denoiser="unet"),
    Architecture("sdxl", "SDXL", "sdxl", _BOTH, text_encoders=("te1", "te2"), denoiser="unet"),
    Architecture("sdxl-refiner", "SDXL Refiner", "sdxl-refiner", _BOTH, text_encoders=("te",), denoiser="unet"),
    Architecture("sd3", "SD 3 Medium", "sd3-medium", _BOTH, text_encoders=("te1", "te2", "te3")),
    Architecture("sd3.5-medium", "SD 3.5 Medium", "sd3-medium", text_encoders=("te1", "te2", "te3")),
    Architecture("sd3.5-large", "SD 3.5 Large", "sd3.5-large", text_encoders=("te1", "te2", "te3")),
    Architecture("flux1", "Flux.1", "flux1", (FORGE,), text_encoders=("te1", "te3")),
    Architecture("chroma", "Chroma", "flux1", (FORGE,), text_encoders=("te3",)),
    Architecture("flux2", "Flux.2", "flux2"),
    Architecture("auraflow", "AuraFlow", "auraflow"),
    Architecture("stable-cascade", "Stable Cascade", "stable-cascade", denoiser="unet"),
    Architecture("pixart", "PixArt", "pixart"),
    Architecture("hunyuan-dit", "Hunyuan-DiT", "hunyuan-dit"),
    Architecture("hunyuan-image", "HunyuanImage 2.1", "hunyuan-image"),
    Architecture("lumina2", "Lumina 2", "lumina2"),
    Architecture("hidream", "HiDream", "hidream"),
    Architecture("qwen-image", "Qwen-Image", "qwen-image"),
    Architecture("wan", "Wan Video", "wan", media="video"),
    Architecture("hunyuan-video", "HunyuanVideo", "hunyuan-video", media="video"),
    Architecture("ltx-video", "LTX-Video", "ltx-video", media="video"),
    Architecture(UNKNOWN, "Unknown", UNKNOWN),
)}


@dataclass(frozen=True)
class Family:
    """A finetune lineage inside one architecture (cannot be told apart by tensor shapes)."""

    id: str
    label: str
    architecture: str
    generic: bool = False  # a plain base: LoRAs trained on it are not flagged on other finetunes


FAMILIES: dict[str, Family] = {f.id: f for f in (
    Family("sd15", "SD 1.5", "sd1", generic=True),
    Family("sd15-lcm", "SD 1.5 LCM", "sd1"),
    Family("sd15-hyper", "SD 1.5 Hyper", "sd1"),
    Family("sd2-512", "SD 2 (512)", "sd2", generic=True),
    Family("sd2-768v", "SD 2 (768-v)", "sd2", generic=True),
    Family("sdxl-base", "SDXL 1.0", "sdxl", generic=True),
    Family("pony", "Pony", "sdxl"),
    Family("illustrious", "Illustrious", "sdxl"),
    Family("noobai", "NoobAI", "sdxl"),
    Family("sdxl-fast", "SDXL Lightning/Turbo/Hyper", "sdxl"),
    Family("playground", "Playground v2.5", "sdxl"),
    Family("flux1-dev", "Flux.1 Dev", "flux1"),
    Family("flux1-schnell", "Flux.1 Schnell", "flux1"),
    Family("flux1-kontext", "Flux.1 Kontext", "flux1"),
    Family("pony-v7", "Pony V7", "auraflow"),
)}

#: Adapter ids and labels.
ADAPTERS: dict[str, str] = {
    "lora": "LoRA", "locon": "LoCon", "loha": "LoHa", "lokr": "LoKr", "ia3": "IA3", "oft": "OFT", "boft": "BOFT",
    "glora": "GLoRA", "dora": "DoRA", "full": "Full (diff)", "norm": "Norm", "dylora": "DyLoRA",
}

#: LoRA target ids and labels.
TARGETS: dict[str, str] = {"unet": "U-Net", "transformer": "Transformer", "te": "TE", "te1": "TE1", "te2": "TE2",
                           "te3": "T5"}

#: sha256 of well-known base checkpoints (kohya writes the training checkpoint's into
#: ``ss_new_sd_model_hash``). Each entry was checked against several public sources (Hugging Face
#: LFS object ids quoted in download scripts and model catalogues).
KNOWN_BASE_HASHES: dict[str, tuple[str, str, str]] = {
    # sha256: (architecture, family, file)
    "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b": ("sdxl", "sdxl-base", "sd_xl_base_1.0.safetensors"),
    "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa": ("sd1", "sd15", "v1-5-pruned-emaonly.safetensors"),
    "1a189f0be69d6106a48548e7626207dddd7042a418dbf372cefd05e0cdba61b6": ("sd1", "sd15", "v1-5-pruned.safetensors"),
}


@dataclass(frozen=True)
class Evidence:
    """One observation behind a conclusion, shown to the user as "why"."""

    source: str  # "structure" | "metadata" | "sidecar" | "civitai" | "model card" | "hash" | "name" | "tags"
    claim: str  # what it supports, e.g. "architecture=sdxl", "family=pony", "adapter=loha"
    detail: str  # human text, e.g. "attn2 to_k input width 2048 (lora_unet_input_blocks_4_1_...)"


@dataclass(frozen=True)
class Hints:
    """Information from outside the header that can decide the family (never the architecture)."""

    sidecar_sd_version: str | None = None  # A1111 "sd version": SD1|SD2|SDXL|Flux|Unknown
    sidecar_base: str | None = None  # LoRA Studio's own override (architecture or family id) from the sidecar
    civitai_base_model: str | None = None  # Civitai "baseModel", e.g. "Pony", "Illustrious", "SDXL 1.0"
    card_family: str | None = None  # family id a downloaded model card named (sidecar "lora studio family")
    filename: str | None = None  # file name (stem + suffix)
    folders: tuple[str, ...] = ()  # folder names between the library root and the file
    sha256: str | None = None  # the file's own sha256 when known (checkpoints: matched against KNOWN_BASE_HASHES)


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
    #: most frequent training tags (``ss_tag_frequency``): a guess, never inserted automatically
    guessed_tags: tuple[str, ...] = ()
    #: what chose ``architecture``: "structure" | "metadata" | "sidecar" | "civitai" | "default" | "none"
    architecture_source: str = "structure"

    @property
    def possible_architectures(self) -> tuple[str, ...]:
        """The architectures this file may be for: the candidates while undecided, else the one."""
        if self.candidates and self.architecture_source in ("default", "none"):
            return self.candidates
        return (self.architecture,)

    @property
    def label(self) -> str:
        return architecture_label(self.architecture)


# --------------------------------------------------------------------------------------------------
# Labels


def architecture_label(arch: str | None) -> str:
    a = ARCHITECTURES.get(arch or UNKNOWN)
    return a.label if a else str(arch)


def family_label(family: str | None) -> str:
    if not family:
        return ""
    f = FAMILIES.get(family)
    return f.label if f else family


def runs_in(arch: str, webui: str) -> bool:
    """Whether ``webui`` ("a1111" / "forge") can load ``arch`` with its built-in loader."""
    a = ARCHITECTURES.get(arch)
    return bool(a and webui in a.webuis)


def _targets_text(det: Detection) -> str:
    arch = ARCHITECTURES.get(det.architecture)
    tes = [t for t in det.targets if t.startswith("te")]
    parts = [TARGETS[t] for t in det.targets if not t.startswith("te") and t in TARGETS]
    if tes:
        if arch is not None and arch.text_encoders and set(tes) == set(arch.text_encoders):
            parts.append("TE")
        else:
            parts.extend(TARGETS.get(t, t) for t in tes)
    return "+".join(parts)


def describe(det: Detection) -> str:
    """One line for lists and logs, e.g. ``SDXL · Pony · LoRA r32/α16 · U-Net+TE``."""
    if det.candidates and det.architecture_source == "default":
        base = " or ".join(architecture_label(c) for c in det.candidates)
    else:
        base = architecture_label(det.architecture)
    parts = [base]
    if det.family and family_label(det.family) != base:
        parts.append(family_label(det.family))
    if det.kind == "lora":
        a = ADAPTERS.get(det.adapter or "", det.adapter or "LoRA")
        if det.rank is not None:
            a += f" r{det.rank}"
            if det.alpha is not None:
                a += f"/α{det.alpha:g}"
        parts.append(a)
        t = _targets_text(det)
        if t:
            parts.append(t)
    elif det.kind == "checkpoint":
        parts.append("checkpoint")
    else:
        parts.append("not a LoRA or checkpoint" if det.extra.get("content") is None else det.extra["content"])
    return " · ".join(parts)
