"""Metadata and hints -> architecture choice, family and conflicts (what the trainer, sidecars and names say)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from lib_lora.architecture.structure import _Result
from lib_lora.architecture.taxonomy import (
    ARCHITECTURES,
    FAMILIES,
    KNOWN_BASE_HASHES,
    UNKNOWN,
    Evidence,
    Hints,
    architecture_label,
)

_KOHYA_VERSIONS = {
    "sd_v1": "sd1", "sd_v1_v": "sd1", "sd_v2": "sd2", "sd_v2_v": "sd2", "sdxl_base_v1-0": "sdxl", "flux1": "flux1",
    "chroma": "chroma", "medium": "sd3", "5-large": "sd3.5-large", "5-medium": "sd3.5-medium", "lumina2": "lumina2",
    "hunyuan-image-2.1": "hunyuan-image",
}


def _modelspec_arch(value: str) -> tuple[str | None, str | None]:
    v = value.lower().split("/", 1)[0].strip()
    if v.startswith("stable-diffusion-v1"):
        return "sd1", None
    if v.startswith("stable-diffusion-v2"):
        return "sd2", "sd2-768v" if "768-v" in v else "sd2-512"
    if v.startswith("stable-diffusion-xl-v1-refiner") or v.startswith("stable-diffusion-xl-refiner"):
        return "sdxl-refiner", None
    if v.startswith(("stable-diffusion-xl", "sdxl")):
        return "sdxl", None
    if v.startswith(("stable-diffusion-3", "sd3")):
        t = v.replace(".", "-")
        if "5-large" in t:
            return "sd3.5-large", None
        if "5-medium" in t:
            return "sd3.5-medium", None
        return "sd3", None
    if v.startswith("chroma") or "chroma" in v:
        return "chroma", None
    if v.startswith(("flux-1", "flux.1", "flux1")):
        return "flux1", "flux1-schnell" if "schnell" in v else ("flux1-dev" if "dev" in v else None)
    if v.startswith(("flux-2", "flux.2", "flux2")):
        return "flux2", None
    if v.startswith("lumina"):
        return "lumina2", None
    if v.startswith("hunyuan-image"):
        return "hunyuan-image", None
    if v.startswith(("auraflow", "aura-flow")):
        return "auraflow", None
    if v.startswith(("wan", "wan2")):
        return "wan", None
    if v.startswith("hunyuan-video"):
        return "hunyuan-video", None
    if v.startswith(("hidream", "hi-dream")):
        return "hidream", None
    if v.startswith("qwen-image"):
        return "qwen-image", None
    return None, None


_CIVITAI_EXACT: dict[str, tuple[tuple[str, ...], str | None]] = {
    "sd 1.4": (("sd1",), "sd15"), "sd 1.5": (("sd1",), "sd15"), "sd 1.5 lcm": (("sd1",), "sd15-lcm"),
    "sd 1.5 hyper": (("sd1",), "sd15-hyper"), "sd 2.0": (("sd2",), "sd2-512"), "sd 2.0 768": (("sd2",), "sd2-768v"),
    "sd 2.1": (("sd2",), "sd2-512"), "sd 2.1 768": (("sd2",), "sd2-768v"), "sd 2.1 unclip": (("sd2",), None),
    "sdxl 0.9": (("sdxl",), "sdxl-base"), "sdxl 1.0": (("sdxl",), "sdxl-base"), "sdxl 1.0 lcm": (("sdxl",), "sdxl-fast"),
    "sdxl lightning": (("sdxl",), "sdxl-fast"), "sdxl turbo": (("sdxl",), "sdxl-fast"),
    "sdxl hyper": (("sdxl",), "sdxl-fast"), "sdxl distilled": (("sdxl",), "sdxl-fast"),
    "pony": (("sdxl",), "pony"), "pony v7": (("auraflow",), "pony-v7"), "illustrious": (("sdxl",), "illustrious"),
    "noobai": (("sdxl",), "noobai"), "playground v2": (("sdxl",), "playground"),
    "playground v2.5": (("sdxl",), "playground"), "sd 3": (("sd3",), None),
    "sd 3.5": (("sd3.5-large", "sd3.5-medium"), None), "sd 3.5 large": (("sd3.5-large",), None),
    "sd 3.5 large turbo": (("sd3.5-large",), None), "sd 3.5 medium": (("sd3.5-medium",), None),
    "flux.1 d": (("flux1",), "flux1-dev"), "flux.1 s": (("flux1",), "flux1-schnell"),
    "flux.1 kontext": (("flux1",), "flux1-kontext"), "flux.1 krea": (("flux1",), "flux1-dev"),
    "chroma": (("chroma",), None), "auraflow": (("auraflow",), None), "stable cascade": (("stable-cascade",), None),
    "pixart a": (("pixart",), None), "pixart e": (("pixart",), None), "hunyuan 1": (("hunyuan-dit",), None),
    "hunyuan video": (("hunyuan-video",), None), "lumina": (("lumina2",), None), "hidream": (("hidream",), None),
    "qwen": (("qwen-image",), None), "ltxv": (("ltx-video",), None),
}
_CIVITAI_PREFIX = (("wan video", "wan"), ("flux.2", "flux2"), ("flux.1", "flux1"), ("sdxl", "sdxl"), ("sd 1", "sd1"),
                   ("sd 2", "sd2"), ("sd 3.5", "sd3.5-large"), ("hunyuan video", "hunyuan-video"), ("pixart", "pixart"),
                   ("ltxv", "ltx-video"), ("illustrious", "sdxl"), ("pony", "sdxl"), ("noobai", "sdxl"))


def civitai_base(base_model: str) -> tuple[tuple[str, ...], str | None]:
    """Civitai ``baseModel`` -> (possible architectures, family)."""
    b = " ".join(base_model.lower().split())
    hit = _CIVITAI_EXACT.get(b)
    if hit is not None:
        return hit
    for prefix, arch in _CIVITAI_PREFIX:
        if b.startswith(prefix):
            fam = {"illustrious": "illustrious", "pony": "pony", "noobai": "noobai"}.get(prefix)
            return (arch,), fam
    return (), None


_SIDECAR_SD_VERSION = {"sd1": ("sd1",), "sd2": ("sd2",), "sdxl": ("sdxl",), "flux": ("flux1", "chroma"),
                       "sd3": ("sd3", "sd3.5-medium", "sd3.5-large")}

_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def _tokens(name: str) -> list[str]:
    return [t.lower() for t in _CAMEL.findall(name)]


def name_family(name: str, arch: str, *, loose: bool = False) -> str | None:
    """The family a file or checkpoint name points to within ``arch`` (``loose``: a checkpoint name)."""
    low = name.lower()
    toks = _tokens(name)
    joined = "".join(toks)
    if arch == "sdxl":
        if any(t.startswith("noob") for t in toks):
            return "noobai"
        if any(t.startswith("illustrious") for t in toks) or "ilxl" in joined:
            return "illustrious"
        if "pdxl" in joined or any(t == "pony" or (t.startswith("pony") and not t.startswith("ponytail")) for t in toks):
            return "pony"
        if loose and "pony" in low and "ponytail" not in low:
            return "pony"
        if "playground" in toks:
            return "playground"
        if any(t in ("lightning", "turbo") for t in toks) or "hypersd" in joined or "lcm" in toks:
            return "sdxl-fast"
        if loose and any(s in low for s in ("sd_xl_base", "sdxl_base", "sdxl-base", "stable-diffusion-xl-base")):
            return "sdxl-base"
    elif arch == "sd1":
        if "lcm" in toks:
            return "sd15-lcm"
        if "hypersd" in joined or ("hyper" in toks and "sd" in toks):
            return "sd15-hyper"
        if loose and any(s in low for s in ("v1-5", "v1_5", "sd15", "sd-1-5", "sd_1.5", "sd1.5", "stable-diffusion-v1-5")):
            return "sd15"
    elif arch == "sd2":
        if "768-v" in low or "768v" in low or "v2-1_768" in low:
            return "sd2-768v"
        if loose and ("512-base" in low or "v2-1_512" in low):
            return "sd2-512"
    elif arch == "flux1":
        if "schnell" in toks:
            return "flux1-schnell"
        if "kontext" in toks:
            return "flux1-kontext"
        if loose and "dev" in toks and "flux" in joined:
            return "flux1-dev"
    return None


def _has_score_tags(md: dict[str, str]) -> bool:
    text = md.get("ss_tag_frequency") or ""
    return '"score_9' in text or '"score_8_up' in text


def _claims(md: dict[str, str], hints: Hints) -> list[tuple[str, str, tuple[str, ...], str | None]]:
    """``(source, text, architectures, family)`` claims, strongest first."""
    out: list[tuple[str, str, tuple[str, ...], str | None]] = []
    if hints.sidecar_base:
        v = hints.sidecar_base.strip()
        low = v.lower()
        if low in ARCHITECTURES and low != UNKNOWN:
            out.append(("sidecar", f"the sidecar's base {v!r}", (low,), None))
        elif low in FAMILIES:
            out.append(("sidecar", f"the sidecar's base {v!r}", (FAMILIES[low].architecture,), low))
        else:
            archs, fam = civitai_base(v)
            if archs:
                out.append(("sidecar", f"the sidecar's base {v!r}", archs, fam))
    version = md.get("ss_base_model_version", "").strip()
    if version in _KOHYA_VERSIONS:
        fam = "sd2-768v" if version == "sd_v2_v" else None
        out.append(("metadata", f"ss_base_model_version = {version!r}", (_KOHYA_VERSIONS[version],), fam))
    spec = md.get("modelspec.architecture", "").strip()
    if spec:
        arch, fam = _modelspec_arch(spec)
        if arch:
            out.append(("metadata", f"modelspec.architecture = {spec!r}", (arch,), fam))
    if md.get("ss_v2", "").strip().lower() == "true":
        out.append(("metadata", "ss_v2 = True", ("sd2",), None))
    if hints.civitai_base_model:
        archs, fam = civitai_base(hints.civitai_base_model)
        if archs:
            out.append(("civitai", f"Civitai baseModel {hints.civitai_base_model!r}", archs, fam))
    if hints.card_family:
        low = hints.card_family.strip().lower()
        if low in FAMILIES:
            out.append(("model card", f"the model card's base model ({low})", (FAMILIES[low].architecture,), low))
    if hints.sidecar_sd_version:
        archs2 = _SIDECAR_SD_VERSION.get(hints.sidecar_sd_version.strip().lower())
        if archs2:
            out.append(("sidecar", f"the sidecar's \"sd version\" {hints.sidecar_sd_version!r}", archs2, None))
    return out


def _labels(archs: Iterable[str]) -> str:
    return " or ".join(architecture_label(a) for a in archs)


def _decide(r: _Result, md: dict[str, str], hints: Hints, conflicts: list[str]) -> tuple[str, str]:
    """Final architecture and what chose it; records conflicts (structure always wins)."""
    claims = _claims(md, hints)
    arch = r.arch
    source = "structure" if arch != UNKNOWN else "none"
    if r.candidates:
        source = "default" if arch != UNKNOWN else "none"
        chosen = None
        for src, text, archs, _fam in claims:
            hit = [a for a in archs if a in r.candidates]
            if hit and chosen is None:
                chosen = (hit[0], src, text)
        if chosen is not None:
            arch, source = chosen[0], chosen[1]
            r.evidence.append(Evidence(chosen[1], f"architecture={arch}",
                                       f"{chosen[2]} chooses among {_labels(r.candidates)}"))
        for _src, text, archs, _fam in claims:
            if not any(a in r.candidates for a in archs):
                conflicts.append(f"{text} says {_labels(archs)}, but the tensors are {_labels(r.candidates)}; "
                                 f"the structure wins")
        return arch, source
    if arch == UNKNOWN:
        for src, text, archs, _fam in claims:
            if src in ("metadata", "sidecar"):
                r.evidence.append(Evidence(src, f"architecture={archs[0]}",
                                           f"{text} (the tensor layout itself was not recognised)"))
                return archs[0], src
        return arch, "none"
    detail = next((e.detail for e in r.evidence if e.claim.startswith("architecture=")), "")
    for src, text, archs, _fam in claims:
        if arch not in archs:
            conflicts.append(f"{text} says {_labels(archs)}, but the tensors are {architecture_label(arch)} "
                             f"({detail}); the structure wins")
        else:
            r.evidence.append(Evidence(src, f"architecture={arch}", f"{text} agrees"))
    return arch, source


def _family(arch: str, r: _Result, md: dict[str, str], hints: Hints, ev: list[Evidence],
            conflicts: list[str]) -> str | None:
    def fits(fam: str | None) -> bool:
        return fam is not None and fam in FAMILIES and FAMILIES[fam].architecture == arch

    # 1. LoRA Studio sidecar override (the user's), 2. Civitai baseModel, 3. a downloaded model card's
    for src, value in (("sidecar", hints.sidecar_base), ("civitai", hints.civitai_base_model),
                       ("model card", hints.card_family)):
        if not value:
            continue
        low = value.strip().lower()
        fam = low if low in FAMILIES else civitai_base(value)[1]
        if fits(fam):
            what = {"sidecar": "your base override", "civitai": "Civitai baseModel"}.get(src, "model card base_model")
            ev.append(Evidence(src, f"family={fam}", f"{what} {value!r}"))
            return fam
        # a family of another architecture was already reported as an architecture conflict by _decide
    # 4. the training checkpoint's (or this checkpoint's own) sha256
    for text, sha in (("ss_new_sd_model_hash", md.get("ss_new_sd_model_hash")), ("file sha256", hints.sha256)):
        known = KNOWN_BASE_HASHES.get((sha or "").strip().lower())
        if known and known[0] == arch:
            ev.append(Evidence("hash", f"family={known[1]}", f"{text} is {known[2]}"))
            return known[1]
    # 5. ss_sd_model_name patterns
    name = md.get("ss_sd_model_name")
    if name:
        fam = name_family(name, arch, loose=True)
        if fam:
            ev.append(Evidence("metadata", f"family={fam}", f"trained on {name!r} (ss_sd_model_name)"))
            return fam
    # 6. Pony score tags
    if arch == "sdxl" and _has_score_tags(md):
        ev.append(Evidence("tags", "family=pony", "score_9 / score_8_up tags in ss_tag_frequency (Pony captions)"))
        return "pony"
    # 7. file and folder names
    for label, value in (("file name", hints.filename), *(("folder", f) for f in hints.folders)):
        if value:
            fam = name_family(value, arch)
            if fam:
                ev.append(Evidence("name", f"family={fam}", f"{label} {value!r}"))
                return fam
    # variants the metadata or structure state (Flux dev/schnell, SD2 768-v)
    if r.family and fits(r.family):
        return r.family
    for src, text, archs, fam in _claims(md, Hints()):
        if fits(fam) and arch in archs:
            ev.append(Evidence(src, f"family={fam}", text))
            return fam
    return None
