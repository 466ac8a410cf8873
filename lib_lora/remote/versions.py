"""New-version check: which installed Civitai LoRAs have a newer version of their model.

For each model with an installed version (known from the ``.civitai.info`` beside the file), one
``GET /api/v1/models/{id}``; Civitai lists ``modelVersions`` newest first. A LoRA is flagged when the
newest version is not installed anywhere in the library. The result is kept in the data folder
(``civitai-versions.json``) so the browser can show badges without going online; it is refreshed on
demand, and daily only when the user turned automatic fetching on (:func:`due`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from lib_lora.remote.civitai import CivitaiClient
from lib_lora.remote.common import Cancelled, RemoteError

CHECK_FILE = "civitai-versions.json"
DAY = 24 * 3600


def newer_versions(installed: dict[str, tuple[int, int]], client: CivitaiClient,
                   progress: Callable[[int, int, str], None] | None = None) -> dict[str, dict[str, Any]]:
    """``installed``: path -> (model id, version id). Returns path -> the newer version's facts."""
    by_model: dict[int, list[tuple[str, int]]] = {}
    for path, (mid, vid) in installed.items():
        by_model.setdefault(mid, []).append((path, vid))
    have = {vid for _, vid in installed.values()}
    out: dict[str, dict[str, Any]] = {}
    for i, (mid, files) in enumerate(sorted(by_model.items())):
        if progress is not None:
            progress(i, len(by_model), f"model {mid}")
        try:
            model = client.model(mid)
        except Cancelled:
            raise
        except RemoteError as exc:
            if exc.kind == "offline":
                raise
            continue
        versions = [v for v in (model or {}).get("modelVersions") or () if isinstance(v, dict) and isinstance(v.get("id"), int)]
        if not versions or versions[0]["id"] in have:
            continue
        latest = versions[0]
        ids = [v["id"] for v in versions]
        for path, vid in files:
            if vid in ids and ids.index(vid) == 0:
                continue
            out[path] = {
                "model_id": mid,
                "model_name": (model or {}).get("name"),
                "installed_version_id": vid,
                "latest_version_id": latest["id"],
                "latest_name": latest.get("name"),
                "base_model": latest.get("baseModel"),
                "download_url": client.url(f"/api/download/models/{latest['id']}"),
                "page_url": client.url(f"/models/{mid}?modelVersionId={latest['id']}"),
            }
    if progress is not None:
        progress(len(by_model), len(by_model), "done")
    return out


def installed_versions(library: Any) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for e in library.entries():
        civ = e.civitai
        if civ is not None and civ.model_id is not None and civ.version_id is not None:
            out[e.path] = (civ.model_id, civ.version_id)
    return out


def check_library(library: Any, client: CivitaiClient,
                  progress: Callable[[int, int, str], None] | None = None) -> dict[str, dict[str, Any]]:
    return newer_versions(installed_versions(library), client, progress)


def save_checks(data_dir: str | os.PathLike[str], newer: dict[str, dict[str, Any]]) -> None:
    from lib_lora.sidecars import atomic_write_text

    path = os.path.join(os.fspath(data_dir), CHECK_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, json.dumps({"checked_at": time.time(), "newer": newer}, indent=1))


def load_checks(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(os.path.join(os.fspath(data_dir), CHECK_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {"checked_at": None, "newer": {}}
    if not isinstance(data, dict) or not isinstance(data.get("newer"), dict):
        return {"checked_at": None, "newer": {}}
    return data


def installed_now(data_dir: str | os.PathLike[str], version_id: int) -> None:
    """Drop the badges a freshly downloaded version answers (keeps the time of the last check)."""
    data = load_checks(data_dir)
    newer = {p: f for p, f in data["newer"].items() if f.get("latest_version_id") != version_id}
    if len(newer) != len(data["newer"]) and isinstance(data.get("checked_at"), (int, float)):
        from lib_lora.sidecars import atomic_write_text

        data["newer"] = newer
        atomic_write_text(os.path.join(os.fspath(data_dir), CHECK_FILE), json.dumps(data, indent=1))


def due(data_dir: str | os.PathLike[str], auto_fetch: bool, now: float | None = None) -> bool:
    """Time for the daily check: only with automatic fetching on, and a day after the last check."""
    if not auto_fetch:
        return False
    last = load_checks(data_dir).get("checked_at")
    return not isinstance(last, (int, float)) or (now or time.time()) - last >= DAY
