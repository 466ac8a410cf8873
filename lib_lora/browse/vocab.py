"""The browser's vocabulary: categories, sorts, compatibility levels, limits, and display labels."""

from __future__ import annotations

from collections.abc import Mapping

from lib_lora.architecture import UNKNOWN

# --------------------------------------------------------------------------------------------------
# vocabulary

#: Categories offered by the filter and the editor (user-set, Civitai type/tags, or guessed from folders).
CATEGORIES = ("character", "style", "concept", "pose", "clothing", "object")
#: Extra categories accepted from sidecars (Civitai uses them); shown but not offered first.
EXTRA_CATEGORIES = ("background", "vehicle", "animal", "tool")

SORT_NAME = "name"
SORT_DATE = "date"
SORT_BASE = "base"
SORTS = (SORT_NAME, SORT_DATE, SORT_BASE)

LEVEL_EXACT = "exact"
LEVEL_CROSS = "cross-family"
LEVEL_INCOMPATIBLE = "incompatible"
LEVEL_UNKNOWN = "unknown"
LEVELS = (LEVEL_EXACT, LEVEL_CROSS, LEVEL_INCOMPATIBLE, LEVEL_UNKNOWN)

DEFAULT_PAGE_SIZE = 48
MAX_PAGE_SIZE = 500
MAX_QUERY_CHARS = 500

#: Display names of architecture ids (the architecture module's own labels win when it has them).
_ARCH_LABELS = {
    "sd1": "SD 1.x",
    "sd2": "SD 2.x",
    "sdxl": "SDXL",
    "sdxl-refiner": "SDXL refiner",
    "sd3": "SD3",
    "sd35": "SD3.5",
    "flux1": "Flux.1",
    "flux2": "Flux.2",
    "chroma": "Chroma",
    "cascade": "Stable Cascade",
    "wan": "Wan (video)",
    UNKNOWN: "Unknown",
}
_FAMILY_LABELS = {
    "sd15": "SD 1.5",
    "sdxl-base": "SDXL base",
    "pony": "Pony",
    "illustrious": "Illustrious",
    "noobai": "NoobAI",
    "sdxl-fast": "Lightning/Turbo",
    "playground": "Playground",
    "lcm": "LCM",
    "hyper": "Hyper",
}
_ADAPTER_LABELS = {
    "lora": "LoRA",
    "locon": "LoCon",
    "loha": "LoHa",
    "lokr": "LoKr",
    "ia3": "IA3",
    "oft": "OFT",
    "boft": "BOFT",
    "glora": "GLoRA",
    "dora": "DoRA",
    "full": "Full diff",
    "norm": "Norm",
    "dylora": "DyLoRA",
}

_CATEGORY_WORDS = {
    # folder / file-name words that suggest a category (a guess, marked as such)
    "character": "character",
    "characters": "character",
    "chars": "character",
    "char": "character",
    "person": "character",
    "people": "character",
    "style": "style",
    "styles": "style",
    "artstyle": "style",
    "artist": "style",
    "concept": "concept",
    "concepts": "concept",
    "pose": "pose",
    "poses": "pose",
    "clothing": "clothing",
    "clothes": "clothing",
    "outfit": "clothing",
    "outfits": "clothing",
    "object": "object",
    "objects": "object",
    "item": "object",
    "items": "object",
}
_CIVITAI_TYPE_NOTE = {"poses": "pose"}


def _taxonomy(table_name: str, key: str, attr: str) -> str | None:
    """``attr`` of ``key`` in the architecture module's ``table_name`` (its own labels win over ours)."""
    try:
        from lib_lora import architecture as _a

        table = getattr(_a, table_name, None)
        spec = table.get(key) if isinstance(table, Mapping) else None
        value = getattr(spec, attr, None) or (spec.get(attr) if isinstance(spec, Mapping) else None)
    except Exception:
        return None
    return value if isinstance(value, str) and value else None


def architecture_label(arch: str | None) -> str:
    if not arch:
        return _ARCH_LABELS[UNKNOWN]
    return _taxonomy("ARCHITECTURES", arch, "label") or _ARCH_LABELS.get(arch, arch)


def family_label(family: str | None) -> str | None:
    if not family:
        return None
    return _taxonomy("FAMILIES", family, "label") or _FAMILY_LABELS.get(family, family.replace("-", " ").title())


def adapter_label(adapter: str | None) -> str:
    if not adapter:
        return "?"
    return _ADAPTER_LABELS.get(adapter, adapter)


def _family_architecture(family: str) -> str | None:
    return _taxonomy("FAMILIES", family, "architecture")


def known_architectures() -> tuple[str, ...]:
    try:
        from lib_lora import architecture as _a

        table = getattr(_a, "ARCHITECTURES", None)
        if isinstance(table, Mapping) and table:
            return tuple(str(k) for k in table)
    except Exception:
        pass
    return tuple(_ARCH_LABELS)
