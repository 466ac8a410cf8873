"""Badges and cards: what one LoRA looks like in the grid and in the detail pane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib_lora.architecture import Detection
from lib_lora.browse.entries import (
    Entry,
    TrainingFacts,
    TriggerGroup,
    format_weight,
)
from lib_lora.browse.query import (
    CompatView,
)
from lib_lora.browse.vocab import (
    LEVEL_CROSS,
    LEVEL_EXACT,
    LEVEL_INCOMPATIBLE,
    LEVEL_UNKNOWN,
    adapter_label,
    architecture_label,
    family_label,
)

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
        why.append("set by you in the sidecar (never overwritten by a scan or a fetch)")
    elif entry.base_source == "civitai":
        why.append("family from Civitai's baseModel (fetched info; your own base setting would win)")
    elif entry.base_source == "model card":
        why.append("family from the downloaded model card (your own base setting would win)")
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
    base_source: str  # Entry.base_source: "user" | "civitai" | "model card" | "detected"
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
            "base": {"text": self.base.text, "detail": self.base.title, "user_override": self.base.kind == "base-user",
                     "source": self.base_source},
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
        base_source=entry.base_source,
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


def checkpoint_badge_text(det: Detection | None) -> str | None:
    if det is None:
        return None
    arch = architecture_label(det.architecture)
    fam = family_label(det.family)
    return f"{arch} · {fam}" if fam and fam != arch else arch


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
