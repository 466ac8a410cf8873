"""User metadata (``<stem>.json``, the WebUIs' "Edit metadata" file): read, and written keeping every other key."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from lib_lora.errors import SidecarError
from lib_lora.sidecars.jsonfile import (
    _existing_object,
    _opt_float,
    _opt_str,
    _read_object,
    atomic_write_text,
)
from lib_lora.sidecars.model import (
    _FIELD_KEYS,
    _KEY_FIELDS,
    UserMetadata,
    user_metadata_path,
)


def parse_user_metadata(obj: Mapping[str, Any]) -> UserMetadata:
    """Build :class:`UserMetadata` from the JSON object of a ``<stem>.json`` sidecar."""
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in obj.items():
        name = _KEY_FIELDS.get(key)
        if name is None:
            extra[key] = value
        elif name == "preferred_weight":
            known[name] = _opt_float(value)
            if known[name] is None and value is not None:
                extra[key] = value  # unreadable weight: keep it as it was
        else:
            text = _opt_str(value, cap=1_000_000)
            if text is None and value is not None:
                extra[key] = value
            else:
                known[name] = text
    return UserMetadata(**known, extra=extra)


def read_user_metadata(model_path: str | os.PathLike[str]) -> UserMetadata | None:
    """The user metadata beside ``model_path``, or ``None`` when there is no ``<stem>.json``."""
    path = user_metadata_path(model_path)
    try:
        obj = _read_object(path)
    except FileNotFoundError:
        return None
    return parse_user_metadata(obj)


def dump_user_metadata(obj: Mapping[str, Any]) -> str:
    """Serialise exactly as A1111 does: ``json.dump(obj, f, indent=4, ensure_ascii=False)``."""
    return json.dumps(obj, indent=4, ensure_ascii=False)


def write_user_metadata(model_path: str | os.PathLike[str], meta: UserMetadata) -> Path:
    """Write ``meta`` as the complete set of known keys of ``<stem>.json``.

    Known keys whose value is ``None`` are removed; every other key already in the file (and every key
    in ``meta.extra``) is kept in place. A malformed existing file raises :class:`SidecarError` and is
    left untouched.
    """
    path = user_metadata_path(model_path)
    current = _existing_object(path)
    out: dict[str, Any] = {}
    desired: dict[str, Any] = {key: getattr(meta, name) for name, key in _FIELD_KEYS.items()}
    if desired["preferred weight"] is not None:
        desired["preferred weight"] = float(desired["preferred weight"])
    for key, value in meta.extra.items():  # a known key whose value we could not read stays as it was
        if key in desired and desired[key] is None:
            desired[key] = value
    for key, value in current.items():  # keep the file's order
        if key in desired:
            if desired[key] is not None:
                out[key] = desired[key]
        else:
            out[key] = meta.extra.get(key, value)
    for key, value in meta.extra.items():
        if key not in desired:
            out.setdefault(key, value)
    for key in _FIELD_KEYS.values():
        if key not in out and desired[key] is not None:
            out[key] = desired[key]
    atomic_write_text(path, dump_user_metadata(out))
    return path


def update_user_metadata(model_path: str | os.PathLike[str], **changes: Any) -> UserMetadata:
    """Change only the given fields of ``<stem>.json`` (field names of :class:`UserMetadata`;
    ``None`` removes a key) and return the result. Creates the file when missing."""
    unknown = set(changes) - set(_FIELD_KEYS)
    if unknown:
        raise SidecarError(f"unknown user-metadata field(s): {', '.join(sorted(unknown))}")
    if "preferred_weight" in changes and changes["preferred_weight"] is not None:
        weight = _opt_float(changes["preferred_weight"])
        if weight is None:
            raise SidecarError(f"preferred weight must be a number, not {changes['preferred_weight']!r}")
        changes["preferred_weight"] = weight
    for name, value in changes.items():
        if name != "preferred_weight" and value is not None and not isinstance(value, str):
            raise SidecarError(f"{_FIELD_KEYS[name]} must be text, not {type(value).__name__}")
    path = user_metadata_path(model_path)
    current = parse_user_metadata(_existing_object(path))
    updated = replace(current, **changes)
    write_user_metadata(model_path, updated)
    return updated
