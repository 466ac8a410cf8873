"""Sidecar names and values: suffixes, keys, the :class:`Sidecars` record and its index (de)serialisation."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# --- names ---------------------------------------------------------------------------------------

USER_METADATA_SUFFIX = ".json"
CIVITAI_INFO_SUFFIX = ".civitai.info"
CIVITAI_MODEL_SUFFIXES = (".model.json", ".api_info.json")
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")
PREVIEW_SUFFIXES = tuple(s for ext in PREVIEW_EXTENSIONS for s in (f".{ext}", f".preview.{ext}"))
#: Every suffix (after the stem) that makes a file a sidecar of ``<stem>.<model suffix>``.
SIDECAR_SUFFIXES = (USER_METADATA_SUFFIX, CIVITAI_INFO_SUFFIX, *CIVITAI_MODEL_SUFFIXES, *PREVIEW_SUFFIXES)

#: Largest sidecar we read (a Civitai answer with a long HTML description is ~100 kB).
MAX_SIDECAR_BYTES = 16 * 1024 * 1024

#: A1111's user-metadata keys, in the order its editor writes them.
A1111_KEYS = ("description", "sd version", "activation text", "preferred weight", "negative text", "notes")
#: LoRA Studio's own keys in the same file.
KEY_BASE = "lora studio base"
KEY_CATEGORY = "lora studio category"
#: The family a Hugging Face model card's ``base_model`` names, written by LoRA Studio's download (never
#: the user's own choice, which is ``lora studio base``); replaced by the next download.
KEY_FAMILY = "lora studio family"

#: ``sd version`` values the WebUIs understand (A1111 1.10: SD1, SD2, SDXL, SD3, Unknown; Forge: + Flux).
SD_VERSIONS = ("SD1", "SD2", "SDXL", "SD3", "Flux", "Unknown")

#: Categories LoRA Studio offers (the browser's filter).
CATEGORIES = ("character", "style", "concept", "pose", "clothing", "object", "background", "vehicle", "animal", "tool")

_FIELD_KEYS = {
    "description": "description",
    "sd_version": "sd version",
    "activation_text": "activation text",
    "preferred_weight": "preferred weight",
    "negative_text": "negative text",
    "notes": "notes",
    "base": KEY_BASE,
    "category": KEY_CATEGORY,
    "family": KEY_FAMILY,
}
_KEY_FIELDS = {v: k for k, v in _FIELD_KEYS.items()}


def sd_version_for(architecture: str | None) -> str:
    """The A1111 ``sd version`` value for a LoRA Studio architecture id."""
    if not architecture:
        return "Unknown"
    a = architecture.lower()
    if a == "sd1":
        return "SD1"
    if a == "sd2":
        return "SD2"
    if a.startswith("sdxl"):
        return "SDXL"
    if a.startswith("sd3"):
        return "SD3"
    if a in ("flux1", "chroma") or a.startswith("flux"):
        return "Flux"
    return "Unknown"


def stem_path(model_path: str | os.PathLike[str]) -> str:
    """``/x/alice.safetensors`` -> ``/x/alice`` (as A1111's ``os.path.splitext``)."""
    return os.path.splitext(os.fspath(model_path))[0]


def user_metadata_path(model_path: str | os.PathLike[str]) -> Path:
    return Path(stem_path(model_path) + USER_METADATA_SUFFIX)


# --- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserMetadata:
    """The user's own values from ``<stem>.json``. ``None`` = key absent from the file."""

    description: str | None = None
    sd_version: str | None = None
    activation_text: str | None = None
    preferred_weight: float | None = None
    negative_text: str | None = None
    notes: str | None = None
    base: str | None = None  # "lora studio base"
    category: str | None = None  # "lora studio category"
    family: str | None = None  # "lora studio family" (from a model card, not the user)
    extra: dict[str, Any] = field(default_factory=dict)  # every other key, in file order

    @property
    def weight(self) -> float | None:
        """Preferred weight as A1111 uses it: 0 (its slider's default) means "not set"."""
        return self.preferred_weight if self.preferred_weight else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object A1111 would read (known keys first in A1111's order, then the rest)."""
        out: dict[str, Any] = {}
        for name, key in _FIELD_KEYS.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


@dataclass(frozen=True)
class LicenseInfo:
    """Civitai's license fields of a model. ``None`` = not stated."""

    allow_no_credit: bool | None = None
    allow_commercial_use: tuple[str, ...] | None = None  # () = no commercial use
    allow_derivatives: bool | None = None
    allow_different_license: bool | None = None

    @property
    def commercial(self) -> str:
        """``"none"``, ``"images"`` (sell generated images only), ``"services"`` (paid generation
        allowed), ``"sell"`` (the model itself may be sold) or ``"unknown"``."""
        uses = self.allow_commercial_use
        if uses is None:
            return "unknown"
        if "Sell" in uses:
            return "sell"
        if "Rent" in uses or "RentCivit" in uses:
            return "services"
        if "Image" in uses:
            return "images"
        return "none"

    @property
    def summary(self) -> str:
        """One line for the browser, e.g. "Commercial: images, generation on Civitai · no credit needed"."""
        parts: list[str] = []
        uses = self.allow_commercial_use
        if uses is not None:
            if not uses:
                parts.append("No commercial use")
            else:
                labels = {
                    "Image": "sell images",
                    "RentCivit": "paid generation on Civitai",
                    "Rent": "paid generation services",
                    "Sell": "sell the model",
                }
                parts.append("Commercial: " + ", ".join(labels.get(u, u) for u in uses))
        if self.allow_no_credit is True:
            parts.append("no credit needed")
        elif self.allow_no_credit is False:
            parts.append("credit the creator")
        if self.allow_derivatives is True:
            if self.allow_different_license is False:
                parts.append("merges allowed (same license)")
            else:
                parts.append("merges allowed")
        elif self.allow_derivatives is False:
            parts.append("no merges/derivatives")
        return " · ".join(parts) if parts else "License not stated"


@dataclass(frozen=True)
class CivitaiInfo:
    """A Civitai model-version object (``<stem>.civitai.info``)."""

    version_id: int | None = None
    model_id: int | None = None
    version_name: str | None = None
    model_name: str | None = None
    model_type: str | None = None  # "LORA", "LoCon", "LYCORIS", "DoRA", "Checkpoint", ...
    base_model: str | None = None  # "SD 1.5", "SDXL 1.0", "Pony", "Illustrious", "NoobAI", "Flux.1 D", ...
    trained_words: tuple[str, ...] = ()  # phrases split at commas, stripped, de-duplicated
    file_name: str | None = None
    sha256: str | None = None  # lower case
    autov2: str | None = None  # lower case
    hashes: dict[str, str] = field(default_factory=dict)  # as Civitai lists them (AutoV1, AutoV2, SHA256, CRC32, BLAKE3, AutoV3)
    preview_urls: tuple[str, ...] = ()
    nsfw: bool | None = None
    description: str | None = None  # HTML, capped
    published_at: str | None = None

    @property
    def page_url(self) -> str | None:
        if self.model_id is None:
            return None
        url = f"https://civitai.com/models/{self.model_id}"
        return f"{url}?modelVersionId={self.version_id}" if self.version_id is not None else url


@dataclass(frozen=True)
class CivitaiModel:
    """A Civitai model object (``<stem>.model.json`` / ``<stem>.api_info.json``)."""

    model_id: int | None = None
    name: str | None = None
    model_type: str | None = None
    tags: tuple[str, ...] = ()
    nsfw: bool | None = None
    creator: str | None = None
    license: LicenseInfo = field(default_factory=LicenseInfo)


@dataclass(frozen=True)
class Sidecars:
    """Everything found beside one model file. Problems (malformed sidecars) are listed, not raised."""

    user: UserMetadata | None = None
    civitai: CivitaiInfo | None = None
    model: CivitaiModel | None = None
    preview: str | None = None  # path of the preview image
    files: tuple[str, ...] = ()  # paths of the sidecar files found (previews included)
    problems: tuple[str, ...] = ()

    @property
    def license(self) -> LicenseInfo | None:
        return self.model.license if self.model is not None else None

    @property
    def tags(self) -> tuple[str, ...]:
        return self.model.tags if self.model is not None else ()

    @property
    def category(self) -> str | None:
        """The user's category, else one derived from Civitai's tags."""
        if self.user is not None and self.user.category:
            return self.user.category
        return category_from_tags(self.tags)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_jsonable(self)
        return out


def category_from_tags(tags: Iterable[str]) -> str | None:
    """Map Civitai's category tags (``character``, ``style``, ``poses``, ``clothing``, ``objects``…)."""
    mapping = {
        "character": "character",
        "characters": "character",
        "celebrity": "character",
        "style": "style",
        "art style": "style",
        "concept": "concept",
        "poses": "pose",
        "pose": "pose",
        "action": "pose",
        "clothing": "clothing",
        "outfit": "clothing",
        "objects": "object",
        "object": "object",
        "assets": "object",
        "background": "background",
        "buildings": "background",
        "vehicle": "vehicle",
        "animal": "animal",
        "tool": "tool",
    }
    for tag in tags:
        hit = mapping.get(tag.strip().casefold())
        if hit:
            return hit
    return None


# --- (de)serialisation for the index -------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    return obj


def sidecars_from_dict(data: Mapping[str, Any]) -> Sidecars:
    """Inverse of :meth:`Sidecars.to_dict` (used by the library index)."""

    def tup(v: Any) -> tuple[Any, ...]:
        return tuple(v) if isinstance(v, (list, tuple)) else ()

    user = data.get("user")
    civ = data.get("civitai")
    model = data.get("model")
    return Sidecars(
        user=UserMetadata(**user) if isinstance(user, dict) else None,
        civitai=CivitaiInfo(**{**civ, "trained_words": tup(civ.get("trained_words")), "preview_urls": tup(civ.get("preview_urls"))})
        if isinstance(civ, dict)
        else None,
        model=CivitaiModel(
            **{
                **model,
                "tags": tup(model.get("tags")),
                "license": LicenseInfo(
                    **{
                        **model.get("license", {}),
                        "allow_commercial_use": None
                        if model.get("license", {}).get("allow_commercial_use") is None
                        else tup(model["license"]["allow_commercial_use"]),
                    }
                ),
            }
        )
        if isinstance(model, dict)
        else None,
        preview=data.get("preview"),
        files=tup(data.get("files")),
        problems=tup(data.get("problems")),
    )
