"""Flattened entries: one :class:`Entry` per LoRA (user values over detected ones), categories, base override."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lib_lora.architecture import UNKNOWN, Detection
from lib_lora.browse.vocab import (
    _CATEGORY_WORDS,
    _CIVITAI_TYPE_NOTE,
    _family_architecture,
    architecture_label,
    family_label,
    known_architectures,
)

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
    base_source: str  # "user" (their sidecar override) | "civitai" / "model card" (family from there) | "detected"
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
    if isinstance(override, str) and override.strip():
        det = apply_base_override(det, override.strip())
        base_source = "user"
    else:
        base_source = remote_family_source(det)
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


#: Evidence sources whose family is shown with its provenance (not the user's, not a guess).
REMOTE_FAMILY_SOURCES = ("civitai", "model card")


def remote_family_source(det: Detection) -> str:
    """``"civitai"`` / ``"model card"`` when that source decided the family, else ``"detected"``."""
    for ev in det.evidence:
        if ev.claim.startswith("family="):
            return ev.source if ev.source in REMOTE_FAMILY_SOURCES else "detected"
    return "detected"


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
