"""Civitai sidecars (``.civitai.info``, ``.model.json``, ``.api_info.json``): model-version and model objects, licenses."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lib_lora.errors import SidecarError
from lib_lora.sidecars.jsonfile import (
    _opt_bool,
    _opt_int,
    _opt_str,
    _read_object,
)
from lib_lora.sidecars.model import (
    CivitaiInfo,
    CivitaiModel,
    LicenseInfo,
)


def split_words(phrases: Iterable[str]) -> tuple[str, ...]:
    """Split comma-separated trigger phrases into words: strip, drop empties, tags and duplicates."""
    out: list[str] = []
    seen: set[str] = set()
    for phrase in phrases:
        if not isinstance(phrase, str):
            continue
        for part in phrase.split(","):
            word = " ".join(part.split())
            if not word or re.match(r"^<\w+:", word):
                continue
            key = word.casefold()
            if key not in seen:
                seen.add(key)
                out.append(word)
    return tuple(out)


def _pick_file(files: Any, file_name: str | None) -> dict[str, Any] | None:
    if not isinstance(files, list):
        return None
    entries = [f for f in files if isinstance(f, dict)]
    if file_name:
        for f in entries:
            if isinstance(f.get("name"), str) and f["name"].casefold() == file_name.casefold():
                return f
    for f in entries:
        if f.get("primary") is True:
            return f
    models = [f for f in entries if f.get("type") in (None, "Model")]
    pool = models or entries
    return pool[0] if pool else None


def parse_civitai_info(obj: Mapping[str, Any], file_name: str | None = None) -> CivitaiInfo:
    """Build :class:`CivitaiInfo` from a model-version object. ``file_name`` picks the matching file."""
    model = obj.get("model") if isinstance(obj.get("model"), dict) else {}
    assert isinstance(model, dict)
    chosen = _pick_file(obj.get("files"), file_name)
    hashes: dict[str, str] = {}
    if chosen is not None and isinstance(chosen.get("hashes"), dict):
        hashes = {str(k): str(v) for k, v in chosen["hashes"].items() if isinstance(v, (str, int))}
    lower = {k.lower(): v for k, v in hashes.items()}
    sha = lower.get("sha256")
    auto = lower.get("autov2") or (sha[:10] if sha else None)
    words = obj.get("trainedWords")
    images = obj.get("images") if isinstance(obj.get("images"), list) else []
    assert isinstance(images, list)
    urls = tuple(
        img["url"]
        for img in images
        if isinstance(img, dict) and isinstance(img.get("url"), str) and img.get("type", "image") == "image"
    )[:8]
    return CivitaiInfo(
        version_id=_opt_int(obj.get("id")),
        model_id=_opt_int(obj.get("modelId")),
        version_name=_opt_str(obj.get("name"), 200),
        model_name=_opt_str(model.get("name"), 300),
        model_type=_opt_str(model.get("type"), 50),
        base_model=_opt_str(obj.get("baseModel"), 100),
        trained_words=split_words(words if isinstance(words, list) else [words] if isinstance(words, str) else []),
        file_name=_opt_str(chosen.get("name"), 500) if chosen is not None else None,
        sha256=sha.lower() if sha else None,
        autov2=auto.lower() if auto else None,
        hashes=hashes,
        preview_urls=urls,
        nsfw=_opt_bool(model.get("nsfw")),
        description=_opt_str(obj.get("description"), 4000),
        published_at=_opt_str(obj.get("publishedAt"), 40),
    )


#: Old Civitai answers give one level of a hierarchy instead of a list.
_OLD_COMMERCIAL_LEVELS = {
    "none": (),
    "image": ("Image",),
    "rent": ("Image", "Rent"),
    "sell": ("Image", "Rent", "Sell"),
}


def parse_commercial_use(value: Any) -> tuple[str, ...] | None:
    """``allowCommercialUse`` as a tuple: a list (``["Image", "RentCivit"]``), an old single level
    (``"None"``, ``"Image"``, ``"Rent"``, ``"Sell"``) or a Postgres-style ``"{Image,Rent}"``."""
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str) and v and v != "None")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{") and text.endswith("}"):
            return tuple(p.strip() for p in text[1:-1].split(",") if p.strip() and p.strip() != "None")
        level = _OLD_COMMERCIAL_LEVELS.get(text.lower())
        if level is not None:
            return level
        return (text,) if text else ()
    return None


def parse_license(obj: Mapping[str, Any]) -> LicenseInfo:
    return LicenseInfo(
        allow_no_credit=_opt_bool(obj.get("allowNoCredit")),
        allow_commercial_use=parse_commercial_use(obj.get("allowCommercialUse")),
        allow_derivatives=_opt_bool(obj.get("allowDerivatives")),
        allow_different_license=_opt_bool(obj.get("allowDifferentLicense")),
    )


def parse_civitai_model(obj: Mapping[str, Any]) -> CivitaiModel:
    tags = obj.get("tags")
    creator = obj.get("creator")
    return CivitaiModel(
        model_id=_opt_int(obj.get("id")),
        name=_opt_str(obj.get("name"), 300),
        model_type=_opt_str(obj.get("type"), 50),
        tags=tuple(
            (t if isinstance(t, str) else t.get("name", "")).strip()
            for t in (tags if isinstance(tags, list) else [])
            if isinstance(t, str) or (isinstance(t, dict) and isinstance(t.get("name"), str))
        ),
        nsfw=_opt_bool(obj.get("nsfw")),
        creator=_opt_str(creator.get("username"), 200) if isinstance(creator, dict) else None,
        license=parse_license(obj),
    )


def _is_model_object(obj: Mapping[str, Any]) -> bool:
    return "modelVersions" in obj or "allowCommercialUse" in obj or "allowNoCredit" in obj


def _is_version_object(obj: Mapping[str, Any]) -> bool:
    return "modelId" in obj or ("files" in obj and "baseModel" in obj)


def read_civitai_info(path: str | os.PathLike[str], file_name: str | None = None) -> CivitaiInfo:
    obj = _read_object(Path(path))
    if _is_model_object(obj) and not _is_version_object(obj):
        raise SidecarError(f"{path}: holds a Civitai model object, not a model-version object")
    return parse_civitai_info(obj, file_name)


def read_civitai_model(path: str | os.PathLike[str]) -> CivitaiModel:
    return parse_civitai_model(_read_object(Path(path)))


def _version_from_model(obj: Mapping[str, Any], file_name: str) -> CivitaiInfo | None:
    versions = [v for v in obj.get("modelVersions", []) if isinstance(v, dict)]
    chosen = None
    for v in versions:
        files = v.get("files")
        if isinstance(files, list) and any(
            isinstance(f, dict) and isinstance(f.get("name"), str) and f["name"].casefold() == file_name.casefold()
            for f in files
        ):
            chosen = v
            break
    if chosen is None and len(versions) == 1:
        chosen = versions[0]
    if chosen is None:
        return None
    merged = dict(chosen)
    merged.setdefault("modelId", obj.get("id"))
    merged.setdefault("model", {"name": obj.get("name"), "type": obj.get("type"), "nsfw": obj.get("nsfw")})
    return parse_civitai_info(merged, file_name)
