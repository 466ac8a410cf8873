"""Finding a model's sidecars (on disk or in a folder listing) and reading them all into one :class:`Sidecars`."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from lib_lora.errors import SidecarError
from lib_lora.sidecars.civitai import (
    _is_model_object,
    _is_version_object,
    _version_from_model,
    parse_civitai_info,
    parse_civitai_model,
)
from lib_lora.sidecars.jsonfile import (
    _read_object,
)
from lib_lora.sidecars.model import (
    CIVITAI_INFO_SUFFIX,
    CIVITAI_MODEL_SUFFIXES,
    PREVIEW_SUFFIXES,
    SIDECAR_SUFFIXES,
    USER_METADATA_SUFFIX,
    CivitaiInfo,
    CivitaiModel,
    Sidecars,
    UserMetadata,
)
from lib_lora.sidecars.user import (
    parse_user_metadata,
)


def _finder(model_path: str | os.PathLike[str], names: Collection[str] | Mapping[str, str] | None
            ) -> tuple[str, Callable[[str], Path | None]]:
    """(file name of the model, function suffix -> existing sidecar path or None)."""
    folder, base = os.path.split(os.fspath(model_path))
    stem = os.path.splitext(base)[0]
    if names is None:

        def find_on_disk(suffix: str) -> Path | None:
            p = Path(folder, stem + suffix)
            return p if p.is_file() else None

        return base, find_on_disk
    if isinstance(names, Mapping):
        folded: Mapping[str, str] = names
        listing: Collection[str] = frozenset(names.values())
    else:
        folded = {n.casefold(): n for n in names}
        listing = names

    def find_in_listing(suffix: str) -> Path | None:
        wanted = stem + suffix
        if wanted in listing:
            return Path(folder, wanted)
        hit = folded.get(wanted.casefold())  # case-insensitive file systems, odd capitalisation
        return Path(folder, hit) if hit is not None else None

    return base, find_in_listing


def sidecar_files(model_path: str | os.PathLike[str], names: Collection[str] | Mapping[str, str] | None = None
                  ) -> list[Path]:
    """The sidecar files of ``model_path`` that exist. ``names`` as for :func:`find_sidecars`."""
    _base, find = _finder(model_path, names)
    return [p for p in (find(s) for s in SIDECAR_SUFFIXES) if p is not None]


def find_sidecars(model_path: str | os.PathLike[str], names: Collection[str] | Mapping[str, str] | None = None
                  ) -> Sidecars:
    """Read every sidecar of ``model_path``. Malformed files become ``problems``; nothing is raised.

    ``names``: the file names in the model's folder (a scan passes the listing it already has; a
    mapping of casefolded names to real names also works); without it each candidate is stat'ed.
    """
    base, find = _finder(model_path, names)
    problems: list[str] = []
    files: list[str] = []
    user: UserMetadata | None = None
    civitai: CivitaiInfo | None = None
    model: CivitaiModel | None = None

    p = find(USER_METADATA_SUFFIX)
    if p is not None:
        files.append(str(p))
        try:
            user = parse_user_metadata(_read_object(p))
        except (SidecarError, FileNotFoundError) as exc:
            problems.append(str(exc) if isinstance(exc, SidecarError) else f"{p}: disappeared while reading")

    p = find(CIVITAI_INFO_SUFFIX)
    if p is not None:
        files.append(str(p))
        try:
            obj = _read_object(p)
            if _is_model_object(obj) and not _is_version_object(obj):
                model = parse_civitai_model(obj)
            else:
                civitai = parse_civitai_info(obj, base)
        except (SidecarError, FileNotFoundError) as exc:
            problems.append(str(exc) if isinstance(exc, SidecarError) else f"{p}: disappeared while reading")

    for suffix in CIVITAI_MODEL_SUFFIXES:
        p = find(suffix)
        if p is None:
            continue
        files.append(str(p))
        try:
            obj = _read_object(p)
        except (SidecarError, FileNotFoundError) as exc:
            problems.append(str(exc) if isinstance(exc, SidecarError) else f"{p}: disappeared while reading")
            continue
        if _is_model_object(obj) and model is None:
            model = parse_civitai_model(obj)
            # a model object also lists its versions: use the matching one when no .civitai.info exists
            if civitai is None and isinstance(obj.get("modelVersions"), list):
                civitai = _version_from_model(obj, base)
        elif _is_version_object(obj) and civitai is None:
            civitai = parse_civitai_info(obj, base)

    preview: str | None = None
    for suffix in PREVIEW_SUFFIXES:
        p = find(suffix)
        if p is not None:
            files.append(str(p))
            if preview is None:
                preview = str(p)
    return Sidecars(user=user, civitai=civitai, model=model, preview=preview, files=tuple(files), problems=tuple(problems))
