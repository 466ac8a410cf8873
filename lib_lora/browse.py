"""The LoRA browser's logic without any UI toolkit: entries, filters, categories, badges, sorting, pages.

Everything here is a pure function over the library's :class:`~lib_lora.library.LoraInfo` records (or
the flattened :class:`Entry` made from one), so the Gradio panel, the HTTP API and the benchmarks share
one implementation and the rules are unit-tested without a browser.

Rules a user can rely on:

- an incompatible LoRA is **marked**, never hidden — unless "compatible only" is ticked, and then the
  page says how many were hidden;
- "compatible only" hides only LoRAs known to be for another architecture: "unknown" ones stay (a
  detection that failed must not make a LoRA disappear);
- the compatibility badge is computed against the checkpoint passed in (the one the user selected), so it
  changes whenever the selection changes;
- user values (sidecar base override, category, activation text, preferred weight) win over detected ones;
- free text matches name, alias, relative path, trigger words (every source), Civitai tags and training
  tags, case-insensitively; several words must all match.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib_lora.architecture import UNKNOWN, Detection

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


def architecture_label(arch: str | None) -> str:
    if not arch:
        return _ARCH_LABELS[UNKNOWN]
    try:  # the taxonomy module may carry labels
        from lib_lora import architecture as _a

        table = getattr(_a, "ARCHITECTURES", None)
        spec = table.get(arch) if isinstance(table, Mapping) else None
        label = getattr(spec, "label", None) or (spec.get("label") if isinstance(spec, Mapping) else None)
        if isinstance(label, str) and label:
            return label
    except Exception:
        pass
    return _ARCH_LABELS.get(arch, arch)


def family_label(family: str | None) -> str | None:
    if not family:
        return None
    try:
        from lib_lora import architecture as _a

        table = getattr(_a, "FAMILIES", None)
        spec = table.get(family) if isinstance(table, Mapping) else None
        label = getattr(spec, "label", None) or (spec.get("label") if isinstance(spec, Mapping) else None)
        if isinstance(label, str) and label:
            return label
    except Exception:
        pass
    return _FAMILY_LABELS.get(family, family.replace("-", " ").title())


def adapter_label(adapter: str | None) -> str:
    if not adapter:
        return "?"
    return _ADAPTER_LABELS.get(adapter, adapter)


# --------------------------------------------------------------------------------------------------
# flattened entries


@dataclass(frozen=True)
class TrainingFacts:
    """What the training metadata says (``ss_*`` keys), for the card's details."""

    images: int | None = None
    steps: int | None = None
    epochs: int | None = None
    resolution: str | None = None
    base_checkpoint: str | None = None
    top_tags: tuple[str, ...] = ()
    trainer: str | None = None  # e.g. "kohya sd-scripts (networks.lora)"

    def is_empty(self) -> bool:
        return not any((self.images, self.steps, self.epochs, self.resolution, self.base_checkpoint, self.top_tags))

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "steps": self.steps,
            "epochs": self.epochs,
            "resolution": self.resolution,
            "base_checkpoint": self.base_checkpoint,
            "top_tags": list(self.top_tags),
            "trainer": self.trainer,
        }


@dataclass(frozen=True)
class TriggerGroup:
    """Trigger words of one source (``activation-text``, ``civitai``, ``modelspec``…)."""

    source: str
    label: str
    words: tuple[str, ...]
    guessed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "label": self.label, "words": list(self.words), "guessed": self.guessed}


@dataclass(frozen=True)
class Entry:
    """One LoRA as the browser sees it; built once per library generation by :func:`entry_from_info`."""

    name: str  # the name a <lora:...> tag uses for it (the library's resolvable name)
    stem: str
    relpath: str  # below its root, POSIX, without suffix (as the library gives it)
    suffix: str
    path: str
    alias: str | None
    folder: str  # relative folder ("" at the root)
    mtime: float
    size: int
    architecture: str
    family: str | None
    base_source: str  # "user" (sidecar override) | "detected"
    adapter: str | None
    rank: int | None
    alpha: float | None
    triggers: tuple[TriggerGroup, ...]  # every source, in priority order
    insert_words: tuple[str, ...]  # what one click inserts (the first non-guessed source)
    negative_text: str
    preferred_weight: float | None
    category: str | None
    category_source: str | None  # "user" | "civitai" | "guess"
    tags: tuple[str, ...]  # Civitai model tags
    license_summary: str | None
    commercial: str  # "none" | "images" | "services" | "sell" | "unknown"
    training: TrainingFacts
    preview: str | None
    civitai_url: str | None
    civitai_base: str | None
    notes: str
    description: str
    conflicts: tuple[str, ...]
    problems: tuple[str, ...]
    detection: Detection = field(compare=False, repr=False)
    search_text: str = field(default="", compare=False, repr=False)

    @property
    def base_key(self) -> str:
        """Filter key of the base: ``arch`` or ``arch/family``."""
        return f"{self.architecture}/{self.family}" if self.family else self.architecture

    @property
    def weight(self) -> float:
        return self.preferred_weight if self.preferred_weight else 1.0

    def tag(self, weight: float | None = None) -> str:
        return format_lora_tag(self.name, self.weight if weight is None else weight)


def format_weight(weight: float) -> str:
    text = f"{weight:.2f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def format_lora_tag(name: str, weight: float = 1.0) -> str:
    """``<lora:name:weight>`` as the WebUI's own card inserts it (weight trimmed: ``0.8``, ``1``)."""
    return f"<lora:{name}:{format_weight(weight)}>"


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """First non-None attribute (or mapping key) among ``names``."""
    for name in names:
        if obj is None:
            return default
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return default


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number


def training_facts(summary: Any) -> TrainingFacts:
    """Training facts from the library's metadata summary (:class:`lib_lora.library.MetadataSummary`)."""
    if summary is None:
        return TrainingFacts()
    module = _get(summary, "network_module")
    top = tuple(_get(summary, "top_tags", default=()) or ())
    tags = tuple(t[0] if isinstance(t, (tuple, list)) else str(t) for t in top)
    base = _get(summary, "base_checkpoint")
    if isinstance(base, str) and base:
        base = os.path.basename(base.replace("\\", "/"))
    return TrainingFacts(
        images=_int(_get(summary, "images")),
        steps=_int(_get(summary, "steps")),
        epochs=_int(_get(summary, "epochs")),
        resolution=_get(summary, "resolution"),
        base_checkpoint=base or _get(summary, "base_model_version"),
        top_tags=tags[:8],
        trainer=f"kohya sd-scripts ({module})" if module else None,
    )


def guess_category(relpath: str) -> str | None:
    """A category from folder / file-name words (``characters/alice.safetensors`` → character)."""
    import re

    words = re.split(r"[^a-z0-9]+", relpath.lower())
    for word in words[:-1] + [words[-1]] if words else []:
        hit = _CATEGORY_WORDS.get(word)
        if hit:
            return hit
    return None


def category_for(
    user_category: str | None, civitai_type: str | None, tags: Iterable[str], relpath: str
) -> tuple[str | None, str | None]:
    """(category, source): the user's value, else Civitai's tags/type, else a guess from the path."""
    if user_category and user_category.strip():
        return user_category.strip().lower(), "user"
    from lib_lora.sidecars import category_from_tags

    hit = category_from_tags(tags)
    if hit:
        return hit, "civitai"
    if civitai_type and civitai_type.strip().lower() in _CIVITAI_TYPE_NOTE:
        return _CIVITAI_TYPE_NOTE[civitai_type.strip().lower()], "civitai"
    guess = guess_category(relpath)
    if guess:
        return guess, "guess"
    return None, None


def _trigger_groups(info: Any) -> tuple[tuple[TriggerGroup, ...], tuple[str, ...]]:
    groups: list[TriggerGroup] = []
    try:
        from lib_lora import triggers as _t

        sources = list(_t.trigger_sources(info))
    except Exception:
        sources = list(_get(info, "trigger_sources", "trigger_words", default=()) or ())
    for s in sources:
        words = tuple(str(w) for w in (_get(s, "words", default=()) or ()))
        if not words:
            continue
        source = str(_get(s, "source", default="") or "")
        label = str(_get(s, "label", default=source) or source)
        groups.append(TriggerGroup(source, label, words, bool(_get(s, "guessed", default=False))))
    insert: tuple[str, ...] = ()
    for g in groups:
        if not g.guessed:
            insert = g.words
            break
    return tuple(groups), insert


def entry_from_info(info: Any) -> Entry:
    """Flatten a library record into an :class:`Entry` (user values applied, search text built)."""
    det: Detection | None = _get(info, "detection")
    if det is None:
        det = Detection(kind="lora", architecture=UNKNOWN)
    side = _get(info, "sidecars")
    user = _get(side, "user")
    civ = _get(side, "civitai")
    model = _get(side, "model")
    path = str(_get(info, "path", default=""))
    suffix = str(_get(info, "suffix", default=os.path.splitext(path)[1]))
    relpath = str(_get(info, "relpath", default=os.path.splitext(os.path.basename(path))[0])).replace("\\", "/")
    stem = os.path.basename(relpath)
    name = str(_get(info, "name", default=stem))
    override = _get(user, "base")
    base_source = "detected"
    if isinstance(override, str) and override.strip():
        det = apply_base_override(det, override.strip())
        base_source = "user"
    architecture = det.architecture or UNKNOWN
    family = det.family
    groups, insert = _trigger_groups(info)
    tags = tuple(_get(model, "tags", default=()) or ())
    category, category_source = category_for(
        _get(user, "category"), _get(model, "model_type") or _get(civ, "model_type"), tags, relpath
    )
    lic = _get(model, "license")
    license_summary = lic.summary if lic is not None and hasattr(lic, "summary") else None
    commercial = str(getattr(lic, "commercial", "unknown")) if lic is not None else "unknown"
    try:
        facts = training_facts(getattr(info, "summary", None))
    except Exception:
        facts = TrainingFacts()
    weight = _get(user, "weight")
    if weight is None:
        pw = _get(user, "preferred_weight")
        weight = float(pw) if isinstance(pw, (int, float)) and pw else None
    negative = ""
    try:
        from lib_lora import triggers as _t

        negative = str(_t.negative_text(info) or "")
    except Exception:
        negative = str(_get(user, "negative_text", default="") or "")
    stat_mtime = _get(info, "mtime", default=None)
    if stat_mtime is None:
        ns = _get(info, "mtime_ns", default=None)
        stat_mtime = ns / 1e9 if isinstance(ns, (int, float)) else 0.0
    folder = os.path.dirname(relpath)
    alias = _get(info, "alias")
    search_parts = [name, relpath, alias or "", category or "", architecture_label(architecture)]
    search_parts.append(family_label(family) or "")
    for g in groups:
        search_parts.extend(g.words)
    search_parts.extend(tags)
    search_parts.extend(facts.top_tags)
    search_parts.append(_get(civ, "model_name", default="") or "")
    return Entry(
        name=name,
        stem=stem,
        relpath=relpath,
        suffix=suffix,
        path=path,
        alias=str(alias) if alias else None,
        folder=folder,
        mtime=float(stat_mtime or 0.0),
        size=int(_get(info, "size", default=0) or 0),
        architecture=architecture,
        family=family,
        base_source=base_source,
        adapter=det.adapter,
        rank=det.rank,
        alpha=det.alpha,
        triggers=groups,
        insert_words=insert,
        negative_text=negative,
        preferred_weight=weight,
        category=category,
        category_source=category_source,
        tags=tags,
        license_summary=license_summary,
        commercial=commercial,
        training=facts,
        preview=_get(side, "preview"),
        civitai_url=getattr(civ, "page_url", None) if civ is not None else None,
        civitai_base=_get(civ, "base_model"),
        notes=str(_get(user, "notes", default="") or ""),
        description=str(_get(user, "description", default="") or ""),
        conflicts=tuple(det.conflicts),
        problems=tuple(_get(info, "problems", default=None) or _get(side, "problems", default=()) or ()),
        detection=det,
        search_text="\n".join(p for p in search_parts if p).casefold(),
    )


def _family_architecture(family: str) -> str | None:
    try:
        from lib_lora import architecture as _a

        table = getattr(_a, "FAMILIES", None)
        spec = table.get(family) if isinstance(table, Mapping) else None
        arch = getattr(spec, "architecture", None) or (spec.get("architecture") if isinstance(spec, Mapping) else None)
        return arch if isinstance(arch, str) else None
    except Exception:
        return None


def known_architectures() -> tuple[str, ...]:
    try:
        from lib_lora import architecture as _a

        table = getattr(_a, "ARCHITECTURES", None)
        if isinstance(table, Mapping) and table:
            return tuple(str(k) for k in table)
    except Exception:
        pass
    return tuple(_ARCH_LABELS)


def apply_base_override(det: Detection, override: str) -> Detection:
    """The user's base override (sidecar ``lora studio base``) applied to a detection.

    ``"sdxl"`` sets the architecture (keeping the detected family only when the architecture is unchanged);
    ``"sdxl/pony"`` sets both; a family id alone (``"pony"``) sets the family and, when the taxonomy knows
    it, its architecture.
    """
    from dataclasses import replace

    arch, fam = split_base_key(override.strip().lower())
    if not arch:
        return det
    if arch in known_architectures():
        family = fam if fam else (det.family if arch == det.architecture else None)
        return replace(det, architecture=arch, family=family)
    fam_arch = _family_architecture(arch)
    return replace(det, architecture=fam_arch or det.architecture, family=arch)


def split_base_key(key: str) -> tuple[str, str | None]:
    """``"sdxl/pony"`` → ``("sdxl", "pony")``; ``"sdxl"`` → ``("sdxl", None)``."""
    arch, _, fam = key.partition("/")
    return arch.strip(), (fam.strip() or None)


# --------------------------------------------------------------------------------------------------
# compatibility


@dataclass(frozen=True)
class CompatView:
    level: str  # one of LEVELS
    message: str


CheckFn = Callable[[Detection, Detection], Any]


def _default_check() -> CheckFn:
    try:
        from lib_lora.compat import check  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # an older core without the compatibility module: say so, hide nothing
        return _no_check
    return check  # type: ignore[no-any-return, unused-ignore]


def _no_check(lora: Detection, checkpoint: Detection) -> CompatView:
    return CompatView(LEVEL_UNKNOWN, "compatibility check not available")


def compat_of(entry_det: Detection, checkpoint: Detection | None, check: CheckFn | None = None) -> CompatView:
    if checkpoint is None:
        return CompatView(LEVEL_UNKNOWN, "no checkpoint selected")
    fn = check or _default_check()
    result = fn(entry_det, checkpoint)
    level = str(getattr(result, "level", LEVEL_UNKNOWN))
    level = {"cross_family": LEVEL_CROSS, "cross": LEVEL_CROSS}.get(level, level)
    if level not in LEVELS:
        level = LEVEL_UNKNOWN
    return CompatView(level, str(getattr(result, "message", "") or ""))


# --------------------------------------------------------------------------------------------------
# query


class QueryError(ValueError):
    """A filter value that cannot be used (the API turns it into a 422 with this message)."""


@dataclass(frozen=True)
class Query:
    text: str = ""
    base: str = ""  # "" | "sdxl" | "sdxl/pony" | "unknown"
    category: str = ""  # "" | a category | "none" (no category)
    compatible_only: bool = False
    sort: str = SORT_NAME
    descending: bool = False
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    def validated(self) -> Query:
        if len(self.text) > MAX_QUERY_CHARS:
            raise QueryError(f"search text is longer than {MAX_QUERY_CHARS} characters")
        if self.sort not in SORTS:
            raise QueryError(f"sort must be one of {', '.join(SORTS)}, not {self.sort!r}")
        if not isinstance(self.page, int) or self.page < 1:
            raise QueryError("page must be 1 or more")
        if not isinstance(self.page_size, int) or not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise QueryError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        cat = self.category.strip().lower()
        if cat and cat != "none" and cat not in CATEGORIES + EXTRA_CATEGORIES:
            raise QueryError(f"unknown category {self.category!r} (one of: {', '.join(CATEGORIES + EXTRA_CATEGORIES)}, none)")
        if any(ch in self.base for ch in "\\<>\"'") or len(self.base) > 100:
            raise QueryError(f"not a base-model id: {self.base!r}")
        return Query(self.text.strip(), self.base.strip(), cat, bool(self.compatible_only), self.sort,
                     bool(self.descending), self.page, self.page_size)


def matches_text(entry: Entry, words: Sequence[str]) -> bool:
    return all(w in entry.search_text for w in words)


def matches_base(entry: Entry, base: str) -> bool:
    if not base:
        return True
    arch, fam = split_base_key(base)
    if arch != entry.architecture:
        return False
    return fam is None or fam == entry.family


def matches_category(entry: Entry, category: str) -> bool:
    if not category:
        return True
    if category == "none":
        return entry.category is None
    return entry.category == category


def sort_entries(entries: list[Entry], sort: str, descending: bool = False) -> list[Entry]:
    """Sort in place-free fashion. Date sorts newest first unless ``descending`` flips it."""
    if sort == SORT_DATE:
        out = sorted(entries, key=lambda e: (-e.mtime, e.name.casefold()))
    elif sort == SORT_BASE:
        out = sorted(
            entries,
            key=lambda e: (e.architecture == UNKNOWN, architecture_label(e.architecture), family_label(e.family) or "",
                           e.name.casefold()),
        )
    else:
        out = sorted(entries, key=lambda e: (e.name.casefold(), e.relpath))
    if descending:
        out.reverse()
    return out


# --------------------------------------------------------------------------------------------------
# badges and cards


@dataclass(frozen=True)
class Badge:
    text: str
    kind: str  # CSS modifier: "base", "exact", "cross-family", "incompatible", "unknown", "user", "adapter"…
    title: str = ""  # tooltip


def base_badge(entry: Entry) -> Badge:
    arch = architecture_label(entry.architecture)
    fam = family_label(entry.family)
    text = f"{arch} · {fam}" if fam and fam != arch else arch
    why = []
    if entry.base_source == "user":
        why.append("set by you in the sidecar (never overwritten by a scan)")
    for ev in entry.detection.evidence[:4]:
        why.append(f"{ev.source}: {ev.detail}")
    for c in entry.conflicts:
        why.append(f"conflict: {c}")
    return Badge(text, "base-user" if entry.base_source == "user" else "base", "\n".join(why))


_COMPAT_TEXT = {
    LEVEL_EXACT: "✓ compatible",
    LEVEL_CROSS: "≈ other finetune",
    LEVEL_INCOMPATIBLE: "✗ incompatible",
    LEVEL_UNKNOWN: "? unknown",
}


def compat_badge(view: CompatView) -> Badge:
    return Badge(_COMPAT_TEXT[view.level], view.level, view.message)


@dataclass(frozen=True)
class Card:
    """Everything one card shows, as plain strings (HTML-escaping happens in the renderer)."""

    name: str
    relpath: str
    alias: str | None
    tag: str  # <lora:name:weight>
    insert_words: tuple[str, ...]
    negative_text: str
    base: Badge
    compat: Badge
    compat_level: str
    adapter: str
    rank_alpha: str  # "r32 / α16"
    category: str | None
    category_source: str | None
    triggers: tuple[TriggerGroup, ...]
    license_summary: str | None
    commercial: str
    training: TrainingFacts
    preview: str | None  # file path (the host turns it into a URL)
    mtime: float
    civitai_url: str | None
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "relpath": self.relpath,
            "alias": self.alias,
            "tag": self.tag,
            "insert_words": list(self.insert_words),
            "negative_text": self.negative_text,
            "base": {"text": self.base.text, "detail": self.base.title, "user_override": self.base.kind == "base-user"},
            "compatibility": {"level": self.compat_level, "message": self.compat.title},
            "adapter": self.adapter,
            "rank_alpha": self.rank_alpha,
            "category": self.category,
            "category_source": self.category_source,
            "trigger_words": [g.to_dict() for g in self.triggers],
            "license": {"summary": self.license_summary, "commercial": self.commercial},
            "training": self.training.to_dict(),
            "has_preview": bool(self.preview),
            "modified": self.mtime,
            "civitai_url": self.civitai_url,
            "problems": list(self.problems),
        }


def rank_alpha_text(rank: int | None, alpha: float | None) -> str:
    if rank is None and alpha is None:
        return ""
    r = f"r{rank}" if rank is not None else "r?"
    if alpha is None:
        return r
    a = format_weight(alpha) if not float(alpha).is_integer() else str(int(alpha))
    return f"{r} / α{a}"


def card_for(entry: Entry, view: CompatView) -> Card:
    return Card(
        name=entry.name,
        relpath=entry.relpath,
        alias=entry.alias,
        tag=entry.tag(),
        insert_words=entry.insert_words,
        negative_text=entry.negative_text,
        base=base_badge(entry),
        compat=compat_badge(view),
        compat_level=view.level,
        adapter=adapter_label(entry.adapter),
        rank_alpha=rank_alpha_text(entry.rank, entry.alpha),
        category=entry.category,
        category_source=entry.category_source,
        triggers=entry.triggers,
        license_summary=entry.license_summary,
        commercial=entry.commercial,
        training=entry.training,
        preview=entry.preview,
        mtime=entry.mtime,
        civitai_url=entry.civitai_url,
        problems=entry.problems,
    )


# --------------------------------------------------------------------------------------------------
# facets and pages


@dataclass(frozen=True)
class Facet:
    value: str
    label: str
    count: int


@dataclass(frozen=True)
class Page:
    cards: tuple[Card, ...]
    query: Query
    total: int  # LoRAs in the library
    matched: int  # after every filter
    hidden_incompatible: int  # hidden by "compatible only" (0 when the box is not ticked)
    page: int
    pages: int
    checkpoint: str | None  # label of the checkpoint the badges refer to
    checkpoint_base: str | None  # its base as a badge text
    counts: dict[str, int] = field(default_factory=dict)  # compat level -> count among matched
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "matched": self.matched,
            "hidden_incompatible": self.hidden_incompatible,
            "page": self.page,
            "pages": self.pages,
            "page_size": self.query.page_size,
            "checkpoint": self.checkpoint,
            "checkpoint_base": self.checkpoint_base,
            "compatibility_counts": dict(self.counts),
            "items": [c.to_dict() for c in self.cards],
        }


def checkpoint_badge_text(det: Detection | None) -> str | None:
    if det is None:
        return None
    arch = architecture_label(det.architecture)
    fam = family_label(det.family)
    return f"{arch} · {fam}" if fam and fam != arch else arch


class Catalog:
    """The entries of one library generation plus per-checkpoint compatibility, cached.

    ``check`` is :func:`lib_lora.compat.check` unless given. Compatibility depends only on the
    (architecture, family, candidates, adapter) of a LoRA, so it is computed once per distinct group and
    checkpoint, not once per LoRA.
    """

    def __init__(self, entries: Iterable[Entry], *, check: CheckFn | None = None, generation: Any = None) -> None:
        self.entries: tuple[Entry, ...] = tuple(entries)
        self.generation = generation
        self._check = check
        self._by_name: dict[str, Entry] = {}
        for e in self.entries:
            self._by_name.setdefault(e.name, e)
        self._compat_cache: dict[Any, dict[tuple[Any, ...], CompatView]] = {}
        self._gkeys: dict[int, tuple[Any, ...]] = {id(e): self._group_key(e) for e in self.entries}
        self._orders: dict[str, tuple[Entry, ...]] = {}

    def ordered(self, sort: str) -> tuple[Entry, ...]:
        """Every entry in ``sort`` order (computed once per catalog and sort key)."""
        hit = self._orders.get(sort)
        if hit is None:
            hit = self._orders[sort] = tuple(sort_entries(list(self.entries), sort))
        return hit

    @classmethod
    def from_infos(cls, infos: Iterable[Any], *, check: CheckFn | None = None, generation: Any = None) -> Catalog:
        return cls((entry_from_info(i) for i in infos), check=check, generation=generation)

    def get(self, name: str) -> Entry | None:
        return self._by_name.get(name)

    @staticmethod
    def _group_key(e: Entry) -> tuple[Any, ...]:
        d = e.detection
        return (d.architecture, d.family, d.candidates, d.adapter, d.targets)

    @staticmethod
    def _ckpt_key(det: Detection | None) -> Any:
        if det is None:
            return None
        return (det.architecture, det.family, det.candidates, det.kind)

    def compat(self, entry: Entry, checkpoint: Detection | None) -> CompatView:
        key = self._ckpt_key(checkpoint)
        table = self._compat_cache.get(key)
        if table is None:
            if len(self._compat_cache) > 32:
                self._compat_cache.clear()
            table = self._compat_cache[key] = {}
        gk = self._gkeys.get(id(entry)) or self._group_key(entry)
        view = table.get(gk)
        if view is None:
            view = table[gk] = compat_of(entry.detection, checkpoint, self._check)
        return view

    def facets(self) -> dict[str, list[Facet]]:
        """Values the filters can take, with counts over the whole library."""
        bases: dict[str, int] = {}
        archs: dict[str, int] = {}
        cats: dict[str, int] = {}
        for e in self.entries:
            archs[e.architecture] = archs.get(e.architecture, 0) + 1
            if e.family:
                bases[e.base_key] = bases.get(e.base_key, 0) + 1
            cats[e.category or "none"] = cats.get(e.category or "none", 0) + 1
        base_facets: list[Facet] = []
        for arch in sorted(archs, key=lambda a: (a == UNKNOWN, architecture_label(a))):
            base_facets.append(Facet(arch, architecture_label(arch), archs[arch]))
            for key in sorted(k for k in bases if k.startswith(arch + "/")):
                fam = split_base_key(key)[1]
                base_facets.append(Facet(key, f"{architecture_label(arch)} · {family_label(fam)}", bases[key]))
        cat_facets = [Facet(c, c, cats.get(c, 0)) for c in CATEGORIES]
        cat_facets += [Facet(c, c, cats[c]) for c in EXTRA_CATEGORIES if c in cats]
        cat_facets.append(Facet("none", "no category", cats.get("none", 0)))
        return {"base": base_facets, "category": cat_facets}

    def search(self, query: Query, checkpoint: Detection | None = None, checkpoint_label: str | None = None) -> Page:
        """Filter, sort and cut one page. Raises :class:`QueryError` for unusable filter values."""
        started = time.perf_counter()
        q = query.validated()
        words = [w for w in q.text.casefold().split() if w]
        selected: list[Entry] = []
        hidden = 0
        counts = dict.fromkeys(LEVELS, 0)
        arch, fam = split_base_key(q.base) if q.base else ("", None)
        hide = q.compatible_only and checkpoint is not None
        for e in self.ordered(q.sort):
            if arch and (e.architecture != arch or (fam is not None and e.family != fam)):
                continue
            if q.category and not matches_category(e, q.category):
                continue
            if words and not all(w in e.search_text for w in words):
                continue
            level = self.compat(e, checkpoint).level
            if hide and level == LEVEL_INCOMPATIBLE:
                hidden += 1
                continue
            counts[level] += 1
            selected.append(e)
        ordered = selected[::-1] if q.descending else selected
        pages = max(1, math.ceil(len(ordered) / q.page_size))
        page = min(q.page, pages)
        chunk = ordered[(page - 1) * q.page_size : page * q.page_size]
        cards = tuple(card_for(e, self.compat(e, checkpoint)) for e in chunk)
        return Page(
            cards=cards,
            query=q,
            total=len(self.entries),
            matched=len(ordered),
            hidden_incompatible=hidden,
            page=page,
            pages=pages,
            checkpoint=checkpoint_label,
            checkpoint_base=checkpoint_badge_text(checkpoint),
            counts=counts,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
        )


def detail_for(entry: Entry, view: CompatView) -> dict[str, Any]:
    """One LoRA's full information (the API's "info" and the panel's detail pane)."""
    card = card_for(entry, view).to_dict()
    det = entry.detection
    card.update(
        {
            "stem": entry.stem,
            "folder": entry.folder,
            "size": entry.size,
            "architecture": entry.architecture,
            "family": entry.family,
            "base_source": entry.base_source,
            "adapter_id": entry.adapter,
            "rank": entry.rank,
            "alpha": entry.alpha,
            "targets": list(det.targets),
            "candidates": list(det.candidates),
            "evidence": [{"source": ev.source, "claim": ev.claim, "detail": ev.detail} for ev in det.evidence],
            "conflicts": list(entry.conflicts),
            "preferred_weight": entry.preferred_weight,
            "tags": list(entry.tags),
            "civitai_base_model": entry.civitai_base,
            "notes": entry.notes,
            "description": entry.description,
        }
    )
    return card


# --------------------------------------------------------------------------------------------------
# one catalog per host, rebuilt when the library changes


def _insert_names(entries: Sequence[Entry]) -> list[Entry]:
    """Give every entry the name a tag should use: the stem when unique, else its relative path."""
    from dataclasses import replace

    counts: dict[str, int] = {}
    for e in entries:
        counts[e.name] = counts.get(e.name, 0) + 1
    return [replace(e, name=e.relpath) if counts[e.name] > 1 else e for e in entries]


class CatalogCache:
    """The :class:`Catalog` of a host's library, rebuilt only when the library's contents change
    (a finished scan, a sidecar edit) — a page render on a warm index touches no file."""

    def __init__(self, host: Any, *, check: CheckFn | None = None) -> None:
        import threading

        self._host = host
        self._check = check
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._key: Any = None
        self._edits = 0

    def invalidate(self) -> None:
        with self._lock:
            self._edits += 1

    def _library_key(self) -> Any:
        library = self._host.library()
        status = self._host.scan_status()
        return (id(library), getattr(status, "generation", None), getattr(status, "state", None),
                getattr(library, "generation", None), self._edits)

    def get(self) -> Catalog:
        key = self._library_key()
        with self._lock:
            if self._catalog is not None and key == self._key:
                return self._catalog
        with self._build_lock:  # one build at a time; a second caller gets the first one's result
            with self._lock:
                if self._catalog is not None and key == self._key:
                    return self._catalog
            return self._build(key)

    def _build(self, key: Any) -> Catalog:
        library = self._host.library()
        infos = list(library.entries())
        entries = _insert_names([entry_from_info(i) for i in infos])
        catalog = Catalog(entries, check=self._check, generation=key)
        with self._lock:
            self._catalog, self._key = catalog, key
        return catalog


_CACHES: dict[int, tuple[Any, CatalogCache]] = {}


def catalog_cache_for(host: Any) -> CatalogCache:
    """The one :class:`CatalogCache` of ``host`` (shared by the panel and the API)."""
    hit = _CACHES.get(id(host))
    if hit is None or hit[0] is not host:
        hit = (host, CatalogCache(host))
        _CACHES[id(host)] = hit
    return hit[1]


# --------------------------------------------------------------------------------------------------
# resolve preview (panel and API share it)


def resolve_preview(host: Any, prompt: str, negative: str, checkpoint: Detection | None) -> dict[str, Any]:
    """Rewrite ``prompt`` as the WebUI hook would (nothing is changed anywhere) and return the result."""
    from lib_lora import rewrite

    library = host.library()
    settings = host.settings()
    fn = getattr(rewrite, "preview", None)
    if callable(fn):
        result = fn(prompt, negative, library, checkpoint, settings)
        return dict(result) if isinstance(result, Mapping) else result.to_dict()
    return rewrite.rewrite_prompt(prompt, negative, library, checkpoint=checkpoint, settings=settings).to_dict()
