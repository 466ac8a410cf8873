"""The LoRA library: every LoRA under a set of folders, indexed, detected, findable by name.

Scanning
    :meth:`Library.scan` walks the roots recursively and follows symlinked folders (users link other
    drives into their LoRA folder); a folder reached twice — a link loop, or two links to one folder — is
    walked once, and real folders are walked before linked ones so a file gets its un-linked path.
    ``.safetensors`` files have their header read (never the tensor data), their sidecars read and their
    base model detected; ``.pt``/``.ckpt`` files are listed as *legacy* and never opened (they are
    pickles). Files that cannot be read are listed with an ``error``; nothing stops the scan.

Index
    An SQLite database (stdlib ``sqlite3``, WAL) in the user-data folder (:mod:`lib_lora.paths`). A
    file's row is reused while ``(realpath, size, mtime_ns)``, the signature of its sidecars (name, size
    and mtime of ``.json``/``.civitai.info``/model objects, names of previews) and the code fingerprint
    (the detector's source) are unchanged, so a rescan only reads new or changed files; rows with an
    error are retried every scan. The detection result is stored as JSON and decoded only when an entry
    is asked for. An index that is not an SQLite file, belongs to another application, or has another
    schema version is moved aside (``<name>.bad-<time>``) and rebuilt; an index folder that cannot be
    written falls back to an in-memory index. Rows are kept per root, so libraries with different roots
    can share one index file.

Names
    :meth:`Library.lookup` resolves a name the way a ``<lora:NAME>`` tag means it, in this order: exact
    file stem (A1111's own rule, case-sensitive), path relative to its root without suffix
    (``chars/alice``; backslashes accepted; a ``.safetensors`` suffix may be given), ``ss_output_name``
    alias, AutoV2 (10 hex of the file sha256) or addnet short hash (12 hex of the sha256 after the
    header, A1111's "Lora hashes"), then a case-insensitive unique match of stem, relative path or alias.
    Hash queries match only hashes already known — kohya's ``sshs_model_hash`` gives the addnet hash
    without reading the file, the background worker fills in the rest — and a miss says how many files
    are still unhashed. ``..`` components and absolute paths are refused. A name shared by several files
    is *ambiguous* and lists them; a miss offers up to three "did you mean" names. Lookups use in-memory
    dictionaries built once per scan.

Hashes
    :meth:`Library.start_hashing` computes sha256 and addnet hashes in a background thread (one pass
    per file, :mod:`lib_lora.hashing`), cached in the index by ``(realpath, size, mtime_ns)``; listing
    never waits for them; :meth:`Library.ensure_hashes` computes one entry's now. Each thread uses its
    own SQLite connection.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from lib_lora import architecture, paths
from lib_lora import sidecars as sc
from lib_lora.architecture import Detection, Evidence, Hints
from lib_lora.errors import HashError, HeaderError, LibraryError, SidecarError
from lib_lora.hashing import FileHashes, hash_file
from lib_lora.safetensors_header import Header, read_header

SAFETENSORS = ".safetensors"
LEGACY_SUFFIXES = (".pt", ".ckpt")
MODEL_SUFFIXES = (SAFETENSORS, *LEGACY_SUFFIXES)

SCHEMA_VERSION = 2
APPLICATION_ID = 0x4C537464  # "LStd"

#: Progress callback of a scan: ``(done, total, path)``.
ScanProgress = Callable[[int, int, str], None]

_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_SHA_RE = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetadataSummary:
    """Training facts from a LoRA's header metadata, for the browser (``None`` = not stated)."""

    title: str | None = None
    output_name: str | None = None
    base_model_version: str | None = None  # ss_base_model_version: sd_v1, sdxl_base_v1-0, flux1 ...
    modelspec_architecture: str | None = None  # e.g. stable-diffusion-xl-v1-base/lora
    network_module: str | None = None
    network_dim: int | None = None
    network_alpha: float | None = None
    base_checkpoint: str | None = None  # ss_sd_model_name
    base_checkpoint_hash: str | None = None  # ss_new_sd_model_hash
    images: int | None = None  # distinct training images (img_count of the dataset folders)
    reg_images: int | None = None
    steps: int | None = None
    epochs: int | None = None
    resolution: str | None = None  # "1024x1024"
    learning_rate: float | None = None
    optimizer: str | None = None
    trained_at: float | None = None  # unix time training finished (or started)
    comment: str | None = None
    trigger_phrase: str | None = None
    author: str | None = None
    license: str | None = None  # modelspec.license
    description: str | None = None
    tags: tuple[str, ...] = ()  # modelspec.tags
    top_tags: tuple[tuple[str, int], ...] = ()  # most frequent caption tags, summed over folders

    @classmethod
    def from_metadata(cls, md: Mapping[str, str]) -> MetadataSummary:
        return _summarize(md)


@dataclass(frozen=True)
class LoraInfo:
    """One model file in the library. ``relpath`` is relative to ``root``, POSIX, without suffix."""

    path: str
    realpath: str
    root: str
    relpath: str
    name: str  # file stem: what A1111's <lora:NAME> matches
    suffix: str  # ".safetensors", ".pt", ".ckpt" (as written on disk)
    size: int
    mtime_ns: int
    alias: str | None = None  # ss_output_name
    legacy: bool = False  # .pt/.ckpt: listed, never opened
    error: str | None = None  # why the file could not be read (None: fine)
    detection: Detection | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, repr=False)  # bounded subset of the header metadata
    sidecars: sc.Sidecars = field(default_factory=sc.Sidecars)
    hashes: FileHashes | None = None  # once computed
    #: trigger-word sources computed when the file was indexed (``None``: computed on demand)
    trigger_cache: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)

    def __hash__(self) -> int:
        return hash((self.path, self.size, self.mtime_ns))

    @property
    def filename(self) -> str:
        return self.name + self.suffix

    @cached_property
    def summary(self) -> MetadataSummary:
        return _summarize(self.metadata)

    @property
    def trigger_words(self) -> tuple[Any, ...]:
        """Every trigger-word source, best first (:class:`lib_lora.triggers.TriggerSource`): sidecar
        activation text, Civitai trainedWords, modelspec.trigger_phrase, kohya class tokens, then the
        most frequent training tags (``guessed=True``)."""
        if self.trigger_cache is not None:
            return self.trigger_cache
        from lib_lora import triggers

        return tuple(triggers.trigger_sources(self))

    @property
    def user_metadata(self) -> sc.UserMetadata | None:
        return self.sidecars.user

    @property
    def civitai(self) -> sc.CivitaiInfo | None:
        return self.sidecars.civitai

    @property
    def license(self) -> sc.LicenseInfo | None:
        return self.sidecars.license

    @property
    def preview(self) -> str | None:
        return self.sidecars.preview

    @property
    def category(self) -> str | None:
        return self.sidecars.category

    @property
    def architecture(self) -> str:
        return self.detection.architecture if self.detection is not None else architecture.UNKNOWN

    @property
    def family(self) -> str | None:
        return self.detection.family if self.detection is not None else None

    @property
    def sha256(self) -> str | None:
        return self.hashes.sha256 if self.hashes is not None else None

    @property
    def autov2(self) -> str | None:
        return self.hashes.autov2 if self.hashes is not None else None

    @property
    def addnet(self) -> str | None:
        """The addnet hash: computed, or kohya's ``sshs_model_hash`` from the header."""
        if self.hashes is not None and self.hashes.addnet:
            return self.hashes.addnet
        return _addnet_hint(self.metadata)

    @property
    def lora_hash(self) -> str | None:
        """12 hex as A1111 writes under "Lora hashes": ``sshs_model_hash`` if present, else the addnet
        hash (safetensors) or the file sha256 (.pt/.ckpt); ``None`` until known."""
        hint = _addnet_hint(self.metadata)
        if hint:
            return hint[:12]
        return self.hashes.lora_short if self.hashes is not None else None

    def to_dict(self, *, metadata: bool = False) -> dict[str, Any]:
        """A JSON-ready view (the CLI's ``--json``, the HTTP API). ``metadata`` adds the kept header
        metadata."""
        det = self.detection
        out: dict[str, Any] = {
            "path": self.path,
            "realpath": self.realpath,
            "root": self.root,
            "relpath": self.relpath,
            "name": self.name,
            "filename": self.filename,
            "alias": self.alias,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "legacy": self.legacy,
            "error": self.error,
            "architecture": self.architecture,
            "family": self.family,
            "adapter": det.adapter if det is not None else None,
            "rank": det.rank if det is not None else None,
            "alpha": det.alpha if det is not None else None,
            "detection": detection_to_dict(det) if det is not None else None,
            "trigger_words": [t.to_dict() for t in self.trigger_words],
            "category": self.category,
            "license": self.license.summary if self.license is not None else None,
            "summary": sc.to_jsonable(self.summary),
            "sidecars": self.sidecars.to_dict(),
            "hashes": {
                "sha256": self.sha256,
                "autov2": self.autov2,
                "addnet": self.addnet,
                "lora_hash": self.lora_hash,
            },
            "problems": list(self.problems),
        }
        if metadata:
            out["metadata"] = dict(self.metadata)
        return out

    @property
    def problems(self) -> tuple[str, ...]:
        """Everything wrong with this file on its own (duplicates are a library matter)."""
        out: list[str] = []
        if self.error:
            out.append(self.error)
        if self.legacy:
            out.append("legacy pickle file (.pt/.ckpt): not inspected; a .safetensors version is safer")
        out.extend(self.sidecars.problems)
        if self.detection is not None:
            out.extend(self.detection.conflicts)
        return tuple(out)


@dataclass(frozen=True)
class ScanResult:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int
    errors: tuple[tuple[str, str], ...]  # (path, message): unreadable folders/files, missing roots
    seconds: float
    total: int = 0  # entries in the library after the scan
    reads: int = 0  # files whose header was read
    notes: tuple[str, ...] = ()  # e.g. "the index was unusable and was rebuilt"

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.removed)


@dataclass(frozen=True)
class Lookup:
    query: str
    status: str  # "found" | "ambiguous" | "missing" | "refused"
    entry: LoraInfo | None = None
    matched_by: str | None = None  # "stem" | "relpath" | "alias" | "autov2" | "addnet" | "casefold"
    candidates: tuple[LoraInfo, ...] = ()
    suggestions: tuple[str, ...] = ()
    message: str = ""

    @property
    def found(self) -> bool:
        return self.status == "found"


@dataclass(frozen=True)
class HashStatus:
    total: int  # files in the library
    done: int  # files whose hashes are known
    running: bool  # worker thread alive
    current: str | None = None  # file being hashed
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def pending(self) -> int:
        return max(self.total - self.done - len(self.failed), 0)


# --------------------------------------------------------------------------------------------------
# Header metadata: bounded subset and summary
# --------------------------------------------------------------------------------------------------

_MAX_VALUE = 2048
_MAX_OTHER_KEYS = 64
_DROP_KEYS = frozenset({"modelspec.thumbnail", "ssmd_cover_images"})
_TAGS_PER_FOLDER = 50
_MAX_FOLDERS = 16


def _json_or_none(text: str | None) -> Any:
    if not text or text[:1] not in "[{":
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _trim_tag_frequency(text: str) -> str | None:
    data = _json_or_none(text)
    if not isinstance(data, dict):
        return None
    out: dict[str, dict[str, int]] = {}
    for folder, tags in list(data.items())[:_MAX_FOLDERS]:
        if not isinstance(tags, dict):
            continue
        good = [(str(t)[:200], c) for t, c in tags.items() if isinstance(c, (int, float)) and not isinstance(c, bool)]
        good.sort(key=lambda tc: -tc[1])
        out[str(folder)[:200]] = {t: int(c) for t, c in good[:_TAGS_PER_FOLDER]}
    return json.dumps(out, ensure_ascii=False)


_DATASET_KEYS = ("is_dreambooth", "batch_size_per_device", "num_train_images", "num_reg_images", "resolution",
                 "enable_bucket", "min_bucket_reso", "max_bucket_reso")
_SUBSET_KEYS = ("img_count", "num_repeats", "class_tokens", "is_reg", "image_dir", "keep_tokens", "caption_extension")


def _trim_datasets(text: str) -> str | None:
    data = _json_or_none(text)
    if not isinstance(data, list):
        return None
    out = []
    for ds in data[:_MAX_FOLDERS]:
        if not isinstance(ds, dict):
            continue
        small = {k: ds[k] for k in _DATASET_KEYS if k in ds}
        subsets = ds.get("subsets")
        if isinstance(subsets, list):
            small["subsets"] = [
                {k: (v[:300] if isinstance(v, str) else v) for k, v in s.items() if k in _SUBSET_KEYS}
                for s in subsets[:_MAX_FOLDERS]
                if isinstance(s, dict)
            ]
        out.append(small)
    return json.dumps(out, ensure_ascii=False)


def _trim_dirs(text: str) -> str | None:
    if len(text) <= 8 * _MAX_VALUE:
        return text
    data = _json_or_none(text)
    if not isinstance(data, dict):
        return None
    return json.dumps(dict(list(data.items())[:_MAX_FOLDERS]), ensure_ascii=False)


def _trim_buckets(text: str) -> str | None:
    if len(text) <= 8 * _MAX_VALUE:
        return text
    data = _json_or_none(text)
    buckets = data.get("buckets") if isinstance(data, dict) else None
    if not isinstance(buckets, dict):
        return None
    small = {
        k: {"resolution": b.get("resolution"), "count": b.get("count")}
        for k, b in list(buckets.items())[:64]
        if isinstance(b, dict)
    }
    return json.dumps({"buckets": small}, ensure_ascii=False)


_TRIMMERS: dict[str, Callable[[str], str | None]] = {
    "ss_tag_frequency": _trim_tag_frequency,
    "ss_datasets": _trim_datasets,
    "ss_dataset_dirs": _trim_dirs,
    "ss_bucket_info": _trim_buckets,
}


def bounded_metadata(md: Mapping[str, str]) -> dict[str, str]:
    """The part of a header's metadata the library keeps: every ``ss_*``/``modelspec.*``/``sshs_*`` key,
    long values cut at 2 kB, the big JSON ones reduced (``ss_tag_frequency`` to the 50 most frequent
    tags of up to 16 folders; ``ss_datasets`` without its tag and bucket lists), thumbnails and cover
    images dropped, and at most 64 other short keys."""
    out: dict[str, str] = {}
    others = 0
    for key, value in md.items():
        if key in _DROP_KEYS or not isinstance(value, str):
            continue
        trim = _TRIMMERS.get(key)
        if trim is not None:
            small = trim(value)
            if small is not None:
                out[key] = small
            continue
        if not key.startswith(("ss_", "modelspec.", "sshs_")):
            others += 1
            if others > _MAX_OTHER_KEYS or len(key) > 200:
                continue
        out[key] = value if len(value) <= _MAX_VALUE else value[:_MAX_VALUE] + "…"
    return out


def _s(md: Mapping[str, str], key: str) -> str | None:
    v = md.get(key)
    if v is None:
        return None
    v = v.strip()
    return v if v and v != "None" else None


def _i(md: Mapping[str, str], key: str) -> int | None:
    v = _s(md, key)
    if v is None:
        return None
    try:
        return int(float(v))
    except ValueError:
        return None


def _f(md: Mapping[str, str], key: str) -> float | None:
    v = _s(md, key)
    if v is None:
        return None
    try:
        return float(v)
    except ValueError:
        return None


def _addnet_hint(md: Mapping[str, str]) -> str | None:
    v = md.get("sshs_model_hash")
    if v:
        v = v.strip().lower()
        if _SHA_RE.fullmatch(v):
            return v
    return None


def _summarize(md: Mapping[str, str]) -> MetadataSummary:
    images = reg = None
    dirs = _json_or_none(md.get("ss_dataset_dirs"))
    if isinstance(dirs, dict):
        counts = [d.get("img_count") for d in dirs.values() if isinstance(d, dict)]
        if counts and all(isinstance(c, int) for c in counts):
            images = sum(c for c in counts if isinstance(c, int))
    datasets = _json_or_none(md.get("ss_datasets"))
    resolution = None
    if isinstance(datasets, list):
        for ds in datasets:
            if not isinstance(ds, dict):
                continue
            res = ds.get("resolution")
            if resolution is None and isinstance(res, list) and len(res) == 2:
                resolution = f"{res[0]}x{res[1]}"
            if images is None:
                subs = [s for s in ds.get("subsets") or () if isinstance(s, dict) and not s.get("is_reg")]
                if subs and all(isinstance(s.get("img_count"), int) for s in subs):
                    images = sum(s["img_count"] for s in subs)
            if isinstance(ds.get("num_reg_images"), int):
                reg = (reg or 0) + ds["num_reg_images"]
    if images is None:
        images = _i(md, "ss_num_train_images")
    if reg is None:
        reg = _i(md, "ss_num_reg_images")
    if resolution is None:
        raw = _s(md, "ss_resolution")
        m = re.match(r"^\(?\s*(\d+)\s*,\s*(\d+)\s*\)?$", raw) if raw else None
        resolution = f"{m.group(1)}x{m.group(2)}" if m else _s(md, "modelspec.resolution")
    top: dict[str, int] = {}
    freq = _json_or_none(md.get("ss_tag_frequency"))
    if isinstance(freq, dict):
        for tags in freq.values():
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    t = str(tag).strip()
                    if t and isinstance(count, (int, float)):
                        top[t] = top.get(t, 0) + int(count)
    tags = _s(md, "modelspec.tags")
    return MetadataSummary(
        title=_s(md, "modelspec.title"),
        output_name=_s(md, "ss_output_name"),
        base_model_version=_s(md, "ss_base_model_version"),
        modelspec_architecture=_s(md, "modelspec.architecture"),
        network_module=_s(md, "ss_network_module"),
        network_dim=_i(md, "ss_network_dim"),
        network_alpha=_f(md, "ss_network_alpha"),
        base_checkpoint=_s(md, "ss_sd_model_name"),
        base_checkpoint_hash=_s(md, "ss_new_sd_model_hash"),
        images=images,
        reg_images=reg,
        steps=_i(md, "ss_steps") or _i(md, "ss_max_train_steps"),
        epochs=_i(md, "ss_epoch") or _i(md, "ss_num_epochs"),
        resolution=resolution,
        learning_rate=_f(md, "ss_learning_rate"),
        optimizer=_s(md, "ss_optimizer"),
        trained_at=_f(md, "ss_training_finished_at") or _f(md, "ss_training_started_at"),
        comment=_s(md, "ss_training_comment"),
        trigger_phrase=_s(md, "modelspec.trigger_phrase"),
        author=_s(md, "modelspec.author"),
        license=_s(md, "modelspec.license"),
        description=_s(md, "modelspec.description"),
        tags=tuple(t.strip() for t in tags.split(",") if t.strip()) if tags else (),
        top_tags=tuple(sorted(top.items(), key=lambda kv: (-kv[1], kv[0]))[:24]),
    )


# --------------------------------------------------------------------------------------------------
# Detection (de)serialisation
# --------------------------------------------------------------------------------------------------


def detection_to_dict(det: Detection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(det):
        v = getattr(det, f.name)
        if f.name == "evidence":
            v = [{g.name: getattr(e, g.name) for g in fields(e)} for e in v]
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, dict):
            v = dict(v)
        out[f.name] = v
    return out


def _plain_dataclass(cls: type) -> bool:
    """True when instances can be filled through ``__dict__`` (no slots, no ``__post_init__``)."""
    return "__slots__" not in cls.__dict__ and not hasattr(cls, "__post_init__")


_DET_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Detection))
_DET_REQUIRED = frozenset(
    f.name for f in fields(Detection)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
_DET_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Detection) if f.default is not dataclasses.MISSING}
_DET_FACTORIES = {f.name: f.default_factory for f in fields(Detection) if f.default_factory is not dataclasses.MISSING}
_EV_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Evidence))
_EV_KEYS = frozenset(_EV_FIELDS)
_FAST_DET = _plain_dataclass(Detection) and _plain_dataclass(Evidence)
_new = object.__new__
_set = object.__setattr__


def detection_from_dict(data: Mapping[str, Any]) -> Detection | None:
    """Inverse of :func:`detection_to_dict`; ``None`` when the stored form no longer fits the class.

    Decoding thousands of stored detections is on the path of every warm listing, so plain frozen
    dataclasses are filled through ``__dict__`` (what their ``__init__`` would store) instead of
    calling ``__init__``."""
    try:
        if not _DET_REQUIRED <= data.keys():
            return None
        values: dict[str, Any] = {}
        for name in _DET_FIELDS:
            if name in data:
                v = data[name]
                if name == "evidence":
                    # rows are rewritten whenever lib_lora/architecture/ changes (the code fingerprint), so
                    # stored evidence always has the current fields: checking the first one suffices
                    if _FAST_DET and (not v or v[0].keys() == _EV_KEYS):
                        v = tuple(_fast_evidence(e) for e in v)
                    else:
                        v = tuple(_evidence(e) for e in v)
                elif type(v) is list:
                    v = tuple(tuple(x) if type(x) is list else x for x in v)
                values[name] = v
            elif name in _DET_DEFAULTS:
                values[name] = _DET_DEFAULTS[name]
            else:
                values[name] = _DET_FACTORIES[name]()
        if _FAST_DET:
            det = _new(Detection)
            _set(det, "__dict__", values)
            return det
        return Detection(**values)
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


def _fast_evidence(e: dict[str, Any]) -> Evidence:
    ev = _new(Evidence)
    _set(ev, "__dict__", e)  # e is a fresh dict from json.loads: it becomes the instance's
    return ev


def _evidence(e: dict[str, Any]) -> Evidence:
    if _FAST_DET and e.keys() == _EV_KEYS:
        ev = _new(Evidence)
        _set(ev, "__dict__", e)  # e is a fresh dict from json.loads: it becomes the instance's
        return ev
    return Evidence(**{k: x for k, x in e.items() if k in _EV_FIELDS})


class LazyJSONMapping(Mapping[str, str]):
    """A read-only mapping kept as JSON text until first used (the header metadata of an entry)."""

    __slots__ = ("_data", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._data: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        data = self._data
        if data is None:
            try:
                loaded = json.loads(self._text) if self._text else {}
            except ValueError:
                loaded = {}
            data = loaded if isinstance(loaded, dict) else {}
            self._data = data
        return data

    def __getitem__(self, key: str) -> str:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def get(self, key: str, default: Any = None) -> Any:
        return self._load().get(key, default)

    def __repr__(self) -> str:
        return f"LazyJSONMapping({self._load()!r})"


# --------------------------------------------------------------------------------------------------
# Index database
# --------------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    realpath TEXT NOT NULL,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    side_sig TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    alias TEXT,
    legacy INTEGER NOT NULL,
    error TEXT,
    addnet_hint TEXT,
    detection TEXT,
    sidecars TEXT NOT NULL,
    metadata TEXT NOT NULL,
    triggers TEXT
);
CREATE INDEX IF NOT EXISTS files_root ON files(root);
CREATE TABLE IF NOT EXISTS hashes (
    realpath TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    addnet TEXT
);
"""

_FILE_COLUMNS = ("path, root, realpath, relpath, size, mtime_ns, side_sig, fingerprint, alias, legacy, error, "
                 "addnet_hint, detection, sidecars, metadata, triggers")
_FILE_INSERT = f"INSERT OR REPLACE INTO files ({_FILE_COLUMNS}) VALUES ({','.join('?' * 16)})"
#: what a warm start loads for every row; the JSON columns follow when an entry is asked for
_KEY_COLUMNS = "path, root, realpath, relpath, size, mtime_ns, side_sig, fingerprint, alias, legacy, error, addnet_hint"
_JSON_COLUMNS = "path, size, mtime_ns, side_sig, fingerprint, detection, sidecars, metadata, triggers"


class _Index:
    """The SQLite file: checked on first use, moved aside and rebuilt when unusable; one connection
    per thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._ready = False
        self._memory_uri: str | None = None
        self._memory_keeper: sqlite3.Connection | None = None
        self.notes: list[str] = []

    # -- connections
    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is not None and getattr(self._local, "generation", -1) == self._generation:
            return c
        if c is not None:
            try:
                c.close()
            except sqlite3.Error:
                pass
        with self._lock:
            if not self._ready:
                self._prepare()
            c = self._connect()
        self._local.conn = c
        self._local.generation = self._generation
        return c

    def close_thread_connection(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            try:
                c.close()
            except sqlite3.Error:
                pass
            self._local.conn = None

    def _connect(self) -> sqlite3.Connection:
        if self._memory_uri is not None:
            c = sqlite3.connect(self._memory_uri, uri=True, isolation_level=None, check_same_thread=True)
        else:
            assert self.path is not None
            c = sqlite3.connect(str(self.path), timeout=15, isolation_level=None)
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA busy_timeout=15000")
        return c

    # -- checking and recovery
    def _prepare(self) -> None:
        if self.path is None:
            self._use_memory(None)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._use_memory(f"cannot create the index folder {self.path.parent}: {exc.strerror or exc}")
            return
        for _attempt in range(3):
            try:
                state = self._inspect()
            except sqlite3.DatabaseError as exc:
                state = f"not an SQLite database ({exc})"
            if state == "ok":
                self._ready = True
                return
            if state == "new":
                try:
                    self._create(self.path)
                except sqlite3.DatabaseError as exc:
                    if "readonly" in str(exc) or "unable to open" in str(exc):
                        self._use_memory(f"cannot write the index {self.path}: {exc}")
                        return
                    continue
                self._ready = True
                return
            if state.startswith("upgrade:") and self._upgrade(int(state.split(":", 1)[1])):
                self._ready = True
                return
            if not self._move_aside(state):
                return
        self._use_memory(f"the index {self.path} could not be rebuilt")

    def _upgrade(self, old_version: int) -> bool:
        """Our own index from another version: rebuild it, keeping the cached hashes (costly to redo)."""
        assert self.path is not None
        hashes: list[tuple[Any, ...]] = []
        try:
            c = sqlite3.connect(str(self.path), timeout=15, isolation_level=None)
            try:
                hashes = c.execute("SELECT realpath, size, mtime_ns, sha256, addnet FROM hashes").fetchall()
            finally:
                c.close()
        except sqlite3.DatabaseError:
            hashes = []
        try:
            for extra in ("", "-wal", "-shm", "-journal"):
                Path(str(self.path) + extra).unlink(missing_ok=True)
            self._create(self.path)
            if hashes:
                c = sqlite3.connect(str(self.path), timeout=15, isolation_level=None)
                try:
                    c.execute("BEGIN IMMEDIATE")
                    c.executemany("INSERT OR REPLACE INTO hashes (realpath, size, mtime_ns, sha256, addnet) VALUES (?,?,?,?,?)",
                                  hashes)
                    c.execute("COMMIT")
                finally:
                    c.close()
        except (OSError, sqlite3.DatabaseError):
            return False
        self.notes.append(f"the library index {self.path} was upgraded from format {old_version} to "
                          f"{SCHEMA_VERSION} ({len(hashes)} cached hashes kept); every file is read once")
        return True

    def _inspect(self) -> str:
        assert self.path is not None
        if not self.path.exists():
            return "new"
        c = sqlite3.connect(str(self.path), timeout=15, isolation_level=None)
        try:
            app = c.execute("PRAGMA application_id").fetchone()[0]
            version = c.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            c.close()
        if not tables and app == 0:
            return "new"
        if app != APPLICATION_ID:
            return "a database of another application"
        if version != SCHEMA_VERSION:
            return f"upgrade:{version}"
        if not {"files", "hashes"} <= tables:
            return "index tables missing"
        return "ok"

    @staticmethod
    def _create_schema(c: sqlite3.Connection) -> None:
        c.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                c.execute(statement)
        c.execute(f"PRAGMA application_id={APPLICATION_ID}")
        c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        c.execute("COMMIT")

    def _create(self, path: Path) -> None:
        c = sqlite3.connect(str(path), timeout=15, isolation_level=None)
        try:
            c.execute("PRAGMA journal_mode=WAL")
            self._create_schema(c)
        finally:
            c.close()

    def _move_aside(self, reason: str) -> bool:
        assert self.path is not None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.bad-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.bad-{stamp}-{n}")
        try:
            os.replace(self.path, target)
            for extra in ("-wal", "-shm", "-journal"):
                side = Path(str(self.path) + extra)
                if side.exists():
                    os.replace(side, Path(str(target) + extra))
        except OSError as exc:
            self._use_memory(f"the index {self.path} is unusable ({reason}) and cannot be moved aside: "
                             f"{exc.strerror or exc}")
            return False
        self.notes.append(f"the library index {self.path} was unusable ({reason}); "
                          f"moved it to {target.name} and rebuilt it")
        return True

    def _use_memory(self, reason: str | None) -> None:
        self._memory_uri = f"file:lora-studio-index-{id(self)}?mode=memory&cache=shared"
        # keep one connection open for the life of the index, or the shared memory database vanishes
        self._memory_keeper = sqlite3.connect(self._memory_uri, uri=True, isolation_level=None, check_same_thread=False)
        self._create_schema(self._memory_keeper)
        if reason:
            self.notes.append(f"{reason}; using an in-memory index (nothing is cached between runs)")
        self._ready = True

    def recover(self, reason: str) -> None:
        """The database failed while in use: move it aside and start afresh (all threads reconnect)."""
        with self._lock:
            self._generation += 1
            self.close_thread_connection()
            self._ready = False
            if self._memory_uri is None and self.path is not None and self.path.exists():
                self._move_aside(reason)

    def take_notes(self) -> tuple[str, ...]:
        notes, self.notes = tuple(self.notes), []
        return notes


# --------------------------------------------------------------------------------------------------
# Walking the roots
# --------------------------------------------------------------------------------------------------

# Sidecar suffixes, longest first, lower case; ".json" etc. are stat'ed, previews only named.
_SIDECAR_MATCH = tuple(sorted({s.lower() for s in sc.SIDECAR_SUFFIXES}, key=len, reverse=True))
_STAT_SIDECARS = frozenset(s.lower() for s in (sc.USER_METADATA_SUFFIX, sc.CIVITAI_INFO_SUFFIX, *sc.CIVITAI_MODEL_SUFFIXES))


class _Found:
    """A model file seen by the walk."""

    __slots__ = ("legacy", "listing", "mtime_ns", "name", "path", "realpath", "relpath", "root", "side_sig",
                 "size", "suffix", "via_link")

    def __init__(self, path: str, root: str, relpath: str, name: str, suffix: str, realpath: str, size: int,
                 mtime_ns: int, side_sig: str, listing: dict[str, str], via_link: bool) -> None:
        self.path = path
        self.root = root
        self.relpath = relpath
        self.name = name
        self.suffix = suffix
        self.realpath = realpath
        self.size = size
        self.mtime_ns = mtime_ns
        self.side_sig = side_sig
        self.listing = listing
        self.via_link = via_link
        self.legacy = suffix.lower() != SAFETENSORS


def _entry_name(e: os.DirEntry[str]) -> str:
    return e.name


def _dir_listing(entries: list[os.DirEntry[str]]) -> dict[str, str]:
    return {e.name.casefold(): e.name for e in entries}


def _sidecar_index(entries: Iterable[os.DirEntry[str]]) -> dict[str, list[tuple[str, os.DirEntry[str]]]]:
    """casefolded stem -> [(sidecar suffix, entry)] for the sidecar-looking files of one folder."""
    out: dict[str, list[tuple[str, os.DirEntry[str]]]] = {}
    for e in entries:
        low = e.name.lower()
        if not low.endswith(_SIDECAR_MATCH):
            continue
        for suffix in _SIDECAR_MATCH:
            if low.endswith(suffix) and len(low) > len(suffix):
                out.setdefault(e.name[: -len(suffix)].casefold(), []).append((suffix, e))
    return out


def _side_signature(items: list[tuple[str, os.DirEntry[str]]] | None) -> str:
    if not items:
        return ""
    parts = []
    for suffix, e in items:
        if suffix in _STAT_SIDECARS:
            try:
                st = e.stat()
                parts.append(f"{e.name}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(f"{e.name}:?")
        else:
            parts.append(e.name)
    parts.sort()
    return "|".join(parts)


def _walk(roots: Sequence[str]) -> tuple[list[_Found], list[tuple[str, str]]]:
    """Every model file under ``roots`` (see the module docstring for links and loops)."""
    found: list[_Found] = []
    errors: list[tuple[str, str]] = []
    visited: set[tuple[int, int]] = set()
    model_suffixes = MODEL_SUFFIXES
    for root in roots:
        try:
            os.stat(root)
        except OSError as exc:
            errors.append((root, f"LoRA folder not found: {root} ({exc.strerror or exc})"))
            continue
        if not os.path.isdir(root):
            errors.append((root, f"not a folder: {root}"))
            continue
        # (path, posix dir relative to root, real path of the dir, reached through a link)
        queue: deque[tuple[str, str, str, bool]] = deque([(root, "", os.path.realpath(root), False)])
        linked: deque[tuple[str, str, str, bool]] = deque()
        while queue or linked:
            dirpath, reldir, realdir, via_link = queue.popleft() if queue else linked.popleft()
            try:
                dst = os.stat(dirpath)
            except OSError as exc:
                errors.append((dirpath, f"cannot open folder {dirpath}: {exc.strerror or exc}"))
                continue
            key = (dst.st_dev, dst.st_ino)
            if key in visited:
                continue  # a loop, or a second link to a folder already walked
            visited.add(key)
            try:
                with os.scandir(dirpath) as it:
                    entries = sorted(it, key=_entry_name)  # deterministic: which of two links wins
            except OSError as exc:
                errors.append((dirpath, f"cannot list folder {dirpath}: {exc.strerror or exc}"))
                continue
            models: list[tuple[os.DirEntry[str], str]] = []
            for e in entries:
                low = e.name.lower()
                if low.endswith(model_suffixes):
                    suffix = next(s for s in model_suffixes if low.endswith(s))
                    if len(low) > len(suffix) and not e.name.startswith("._"):
                        models.append((e, e.name[-len(suffix):]))
                        continue
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    link = e.is_symlink()
                    sub = (e.path, f"{reldir}{e.name}/", os.path.realpath(e.path) if link else
                           os.path.join(realdir, e.name), via_link or link)
                    (linked if link or via_link else queue).append(sub)
            if not models:
                continue
            sidecars = _sidecar_index(entries)
            listing = _dir_listing(entries)
            for e, suffix in models:
                try:
                    if not e.is_file():
                        if e.is_symlink() and not os.path.exists(e.path):
                            errors.append((e.path, f"{e.path}: broken symbolic link"))
                        continue
                    fst = e.stat()
                except OSError as exc:
                    errors.append((e.path, f"{e.path}: cannot read: {exc.strerror or exc}"))
                    continue
                name = e.name[: -len(suffix)]
                link = e.is_symlink()
                realpath = os.path.realpath(e.path) if link else os.path.join(realdir, e.name)
                found.append(_Found(
                    e.path, root, reldir + name, name, suffix, realpath, fst.st_size, fst.st_mtime_ns,
                    _side_signature(sidecars.get(name.casefold())), listing, via_link or link,
                ))
    # one entry per real file, preferring a path without links
    best: dict[str, _Found] = {}
    for f in found:
        old = best.get(f.realpath)
        if old is None or (old.via_link and not f.via_link):
            best[f.realpath] = f
    if len(best) != len(found):
        keep = {id(f) for f in best.values()}
        found = [f for f in found if id(f) in keep]
    return found, errors


# --------------------------------------------------------------------------------------------------
# Rows: what the index stores, what the library holds in memory
# --------------------------------------------------------------------------------------------------


class _Row:
    """One file as the index stores it; JSON columns are decoded only when the entry is asked for."""

    __slots__ = ("addnet", "addnet_hint", "alias", "detection", "error", "fingerprint", "info", "legacy",
                 "loaded", "metadata", "mtime_ns", "name", "path", "realpath", "relpath", "root", "sha256",
                 "side_sig", "sidecars", "size", "suffix", "triggers")

    def __init__(self, path: str, root: str, realpath: str, relpath: str, size: int, mtime_ns: int,
                 side_sig: str, fingerprint: str, alias: str | None, legacy: bool, error: str | None,
                 addnet_hint: str | None, detection: str | None = None, sidecars: str = "{}", metadata: str = "{}",
                 triggers: str | None = None, *, loaded: bool = True) -> None:
        self.path = path
        self.root = root
        self.realpath = realpath
        self.relpath = relpath
        self.size = size
        self.mtime_ns = mtime_ns
        self.side_sig = side_sig
        self.fingerprint = fingerprint
        self.alias = alias
        self.legacy = bool(legacy)
        self.error = error
        self.addnet_hint = addnet_hint
        self.detection = detection
        self.sidecars = sidecars
        self.metadata = metadata
        self.triggers = triggers
        self.loaded = loaded  # False: the JSON columns are still in the index (see Library._fill)
        stem, suffix = os.path.splitext(os.path.basename(path))
        self.name = stem
        self.suffix = suffix
        self.sha256: str | None = None
        self.addnet: str | None = None
        self.info: LoraInfo | None = None

    def db_tuple(self) -> tuple[Any, ...]:
        return (self.path, self.root, self.realpath, self.relpath, self.size, self.mtime_ns, self.side_sig,
                self.fingerprint, self.alias, int(self.legacy), self.error, self.addnet_hint, self.detection,
                self.sidecars, self.metadata, self.triggers)

    def key(self) -> tuple[Any, ...]:
        return (self.size, self.mtime_ns, self.side_sig, self.fingerprint)

    def to_info(self) -> LoraInfo:
        info = self.info
        if info is not None:
            return info
        assert self.loaded, "row JSON not loaded (use Library._info)"
        det = None
        if self.detection:
            try:
                det = detection_from_dict(json.loads(self.detection))
            except ValueError:
                det = None
        try:
            sidecars = sc.sidecars_from_dict(json.loads(self.sidecars))
        except (TypeError, ValueError, AttributeError):
            sidecars = sc.Sidecars()
        info = LoraInfo(
            path=self.path,
            realpath=self.realpath,
            root=self.root,
            relpath=self.relpath,
            name=self.name,
            suffix=self.suffix,
            size=self.size,
            mtime_ns=self.mtime_ns,
            alias=self.alias,
            legacy=self.legacy,
            error=self.error,
            detection=det,
            metadata=LazyJSONMapping(self.metadata),
            sidecars=sidecars,
            hashes=FileHashes(self.sha256, self.addnet) if self.sha256 else None,
            trigger_cache=_decode_triggers(self.triggers),
        )
        self.info = info
        return info


def _encode_triggers(sources: Iterable[Any]) -> str:
    return json.dumps([[s.source, list(s.words), bool(s.guessed)] for s in sources], ensure_ascii=False,
                      separators=(",", ":"))


def _decode_triggers(text: str | None) -> tuple[Any, ...] | None:
    if text is None:
        return None
    try:
        from lib_lora.triggers import TriggerSource

        return tuple(TriggerSource(src, tuple(words), bool(guessed)) for src, words, guessed in json.loads(text))
    except (ImportError, ValueError, TypeError):
        return None


def _code_fingerprint() -> str:
    """Changes when the code that produced a row changes (detector, header reader, sidecars, here)."""
    base = Path(__file__).resolve().parent
    parts = [str(SCHEMA_VERSION)]
    files: list[Path] = []
    for stem in ("architecture", "safetensors_header", "sidecars", "triggers", "library"):
        # a package counts with every module in it (a detector split into files stays covered)
        files.extend(sorted((base / stem).glob("*.py")) if (base / stem).is_dir() else [base / f"{stem}.py"])
    for path in files:
        try:
            st = os.stat(path)
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append("-")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _read_file(f: _Found, fingerprint: str, header: Header | None = None) -> _Row:
    """Read one file's header and sidecars and detect its base model."""
    side = sc.find_sidecars(f.path, f.listing)
    det: Detection | None = None
    metadata: dict[str, str] = {}
    error: str | None = None
    if not f.legacy:
        try:
            if header is None:
                header = read_header(f.path)
        except HeaderError as exc:
            error = exc.message
        else:
            metadata = bounded_metadata(header.metadata)
            user = side.user
            hints = Hints(
                sidecar_sd_version=user.sd_version if user is not None else None,
                sidecar_base=user.base if user is not None else None,
                civitai_base_model=side.civitai.base_model if side.civitai is not None else None,
                filename=f.name + f.suffix,
                folders=tuple(p for p in f.relpath.split("/")[:-1] if p),
            )
            try:
                det = architecture.detect(header, hints)
            except NotImplementedError:
                det = None
            except Exception as exc:  # a detector bug must not lose the file
                error = f"{f.path}: base-model detection failed: {type(exc).__name__}: {exc}"
    alias = metadata.get("ss_output_name", "").strip() or None
    if alias == "None":
        alias = None
    row = _Row(
        f.path, f.root, f.realpath, f.relpath, f.size, f.mtime_ns, f.side_sig, fingerprint, alias, f.legacy, error,
        _addnet_hint(metadata),
        json.dumps(detection_to_dict(det), ensure_ascii=False, separators=(",", ":")) if det is not None else None,
        json.dumps(side.to_dict(), ensure_ascii=False, separators=(",", ":")),
        json.dumps(metadata, ensure_ascii=False, separators=(",", ":")),
        None,
    )
    # The trigger-word sources depend only on what was just read: compute them once, here.
    info = row.to_info()
    try:
        row.triggers = _encode_triggers(info.trigger_words)
    except Exception:  # a bug in the trigger module must not lose the file; computed on demand instead
        row.triggers = None
    row.info = None
    return row


def describe_file(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None,
                  header: Header | None = None) -> LoraInfo:
    """One file as the library would list it, without an index (``inspect``, checkpoints). Errors end
    up in ``error``; ``.pt``/``.ckpt`` files are not opened. ``header``: one already read."""
    p = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(p)
    root_dir = os.path.abspath(os.fspath(root)) if root is not None else folder
    stem, suffix = os.path.splitext(base)
    rel = os.path.relpath(os.path.join(folder, stem), root_dir).replace(os.sep, "/")
    try:
        st = os.stat(p)
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as exc:
        raise LibraryError(f"{p}: cannot read: {exc.strerror or exc}") from None
    sidecars = _sidecar_index(entries)
    real = os.path.realpath(p)
    f = _Found(p, root_dir, rel, stem, suffix, real, st.st_size, st.st_mtime_ns,
               _side_signature(sidecars.get(stem.casefold())), _dir_listing(entries), real != p)
    if suffix.lower() not in MODEL_SUFFIXES:
        f.legacy = suffix.lower() in (".pth", ".bin", ".pkl", ".pickle")
    return _read_file(f, "", header).to_info()


# --------------------------------------------------------------------------------------------------
# Reading many files: worker processes
# --------------------------------------------------------------------------------------------------

#: Below this many files to read, worker processes cost more than they save.
PARALLEL_MIN_FILES = 48
_WORKER_ENV = "LORA_STUDIO_SCAN_WORKERS"


def _default_workers() -> int:
    env = os.environ.get(_WORKER_ENV, "").strip()
    if env.isdigit():
        return int(env)
    return min(os.cpu_count() or 1, 4)


def _found_to_json(f: _Found) -> list[Any]:
    return [f.path, f.root, f.relpath, f.name, f.suffix, f.realpath, f.size, f.mtime_ns, f.side_sig, f.via_link]


def _worker_command() -> list[str]:
    return [sys.executable, "-c", "from lib_lora.library import _read_worker; _read_worker()"]


def _read_many(found: Sequence[_Found], fingerprint: str, workers: int) -> Iterator[_Row]:
    """Read ``found`` (headers, sidecars, detection). Header parsing and detection are CPU-bound pure
    Python, so a big batch is split over ``workers`` processes (plain ``python -c`` subprocesses: safe
    inside a WebUI, no fork of a threaded process, no re-import of its ``__main__``). Anything a worker
    did not deliver is read here; rows come back in no particular order."""
    n = len(found)
    workers = min(workers, n // (PARALLEL_MIN_FILES // 2) if n >= PARALLEL_MIN_FILES else 0)
    if workers < 2:
        for f in found:
            yield _read_file(f, fingerprint)
        return
    import queue
    import subprocess

    by_path = {f.path: f for f in found}
    done: set[str] = set()
    results: queue.Queue[tuple[int, Any]] = queue.Queue()
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[_WORKER_ENV] = "0"
    procs: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []

    def pump(k: int, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                try:
                    results.put((k, json.loads(line)))
                except ValueError:
                    break
        finally:
            proc.wait()
            results.put((k, None))

    try:
        for k in range(workers):
            chunk = found[k::workers]  # interleaved: folders of big and small files spread evenly
            job = json.dumps({"fingerprint": fingerprint, "files": [_found_to_json(f) for f in chunk]}).encode()
            try:
                proc = subprocess.Popen(_worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env)
            except OSError:
                break
            procs.append(proc)
            t = threading.Thread(target=pump, args=(k, proc), daemon=True, name="lora-studio-scan-reader")
            t.start()
            threads.append(t)
            assert proc.stdin is not None
            try:
                proc.stdin.write(job)
                proc.stdin.close()
            except OSError:
                pass
        running = len(procs)
        while running:
            _k, item = results.get()
            if item is None:
                running -= 1
                continue
            if isinstance(item, list) and len(item) == 16 and item[0] in by_path and item[0] not in done:
                done.add(item[0])
                yield _Row(*item)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for t in threads:
            t.join(timeout=5)
    for f in found:  # whatever the workers did not deliver (a crash, a kill): read it here
        if f.path not in done:
            yield _read_file(f, fingerprint)


def _read_worker() -> None:
    """Entry point of a reader process: a JSON job on stdin, one JSON row per line on stdout."""
    import gc

    # Parsed headers are acyclic trees freed by reference counting; the cycle collector would only
    # re-walk thousands of live tensor entries per file. This process lives for one job.
    gc.disable()
    job = json.loads(sys.stdin.buffer.read())
    fingerprint = job["fingerprint"]
    listings: dict[str, dict[str, str]] = {}
    out = sys.stdout.buffer  # ASCII-only JSON lines: no console encoding can break them
    for path, root, relpath, name, suffix, realpath, size, mtime_ns, side_sig, via_link in job["files"]:
        folder = os.path.dirname(path)
        listing = listings.get(folder)
        if listing is None:
            try:
                with os.scandir(folder) as it:
                    listing = _dir_listing(list(it))
            except OSError:
                listing = {}
            listings[folder] = listing
        f = _Found(path, root, relpath, name, suffix, realpath, size, mtime_ns, side_sig, listing, via_link)
        row = _read_file(f, fingerprint)
        out.write(json.dumps(row.db_tuple()).encode("ascii") + b"\n")
    out.flush()


# --------------------------------------------------------------------------------------------------
# In-memory state: rows and the name dictionaries
# --------------------------------------------------------------------------------------------------


class _State:
    def __init__(self, rows: dict[str, _Row], roots: Sequence[str]) -> None:
        self.rows = rows
        rank = {r: i for i, r in enumerate(roots)}
        self.order: list[_Row] = sorted(rows.values(), key=lambda r: (rank.get(r.root, len(rank)), r.relpath.casefold(), r.relpath))
        self.by_stem: dict[str, list[_Row]] = {}
        self.by_rel: dict[str, list[_Row]] = {}
        self.by_alias: dict[str, list[_Row]] = {}
        self.by_fold: dict[str, list[_Row]] = {}
        self.by_real: dict[str, _Row] = {}
        self.by_autov2: dict[str, list[_Row]] = {}
        self.by_addnet: dict[str, list[_Row]] = {}
        self._suggest: tuple[list[str], list[str]] | None = None
        self._hash_marks: set[tuple[str, str, int]] = set()
        for row in self.order:
            self.by_stem.setdefault(row.name, []).append(row)
            self.by_rel.setdefault(row.relpath, []).append(row)
            self.by_real.setdefault(row.realpath, row)
            keys = {row.name.casefold(), row.relpath.casefold()}
            if row.alias:
                self.by_alias.setdefault(row.alias, []).append(row)
                keys.add(row.alias.casefold())
            for k in keys:
                self.by_fold.setdefault(k, []).append(row)
            self.add_hashes(row)

    def add_hashes(self, row: _Row) -> None:
        """Index ``row`` by the hashes known for it (again when more arrive; never twice per key)."""
        if row.sha256:
            self._add(self.by_autov2, "a", row.sha256[:10], row)
            if row.legacy or not row.addnet:
                self._add(self.by_addnet, "n", row.sha256[:12], row)
        addnet = row.addnet or row.addnet_hint
        if addnet:
            self._add(self.by_addnet, "n", addnet[:12], row)

    def _add(self, table: dict[str, list[_Row]], tag: str, key: str, row: _Row) -> None:
        mark = (tag, key, id(row))
        if mark in self._hash_marks:
            return
        self._hash_marks.add(mark)
        table.setdefault(key, []).append(row)

    def suggestion_names(self) -> tuple[list[str], list[str]]:
        if self._suggest is None:
            names: dict[str, str] = {}
            for row in self.order:
                for n in (row.name, row.relpath, row.alias):
                    if n:
                        names.setdefault(n.casefold(), n)
            self._suggest = (list(names), list(names.values()))
        return self._suggest


# --------------------------------------------------------------------------------------------------
# The library
# --------------------------------------------------------------------------------------------------


def _norm_root(root: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


class Library:
    """LoRA files under ``roots``, indexed in ``index_path`` (default: the user-data folder's index)."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]], index_path: str | os.PathLike[str] | None = None,
                 *, data_dir: str | os.PathLike[str] | None = None, workers: int | None = None) -> None:
        """``workers``: reader processes for big (cold) scans; default from ``LORA_STUDIO_SCAN_WORKERS``,
        else ``min(CPU count, 4)``; 0 or 1 reads everything in this process."""
        self._workers = _default_workers() if workers is None else max(int(workers), 0)
        seen: dict[str, None] = {}
        for r in roots:
            seen.setdefault(_norm_root(r), None)
        self.roots: tuple[str, ...] = tuple(seen)
        self.index_path = Path(index_path) if index_path is not None else paths.default_index_path(data_dir)
        self._index = _Index(self.index_path)
        self._state: _State | None = None
        self._generation = 0
        self._hash_cache: dict[str, tuple[int, int, str, str | None]] | None = None
        self._scan_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._fingerprint = _code_fingerprint()
        # hashing worker
        self._hash_thread: threading.Thread | None = None
        self._hash_stop = threading.Event()
        self._hash_current: str | None = None
        self._hash_failed: dict[str, str] = {}
        self._hash_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Library(roots={list(self.roots)!r}, index_path={str(self.index_path)!r})"

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop_hashing(wait=True)
        self._index.close_thread_connection()

    # -- loading and scanning ------------------------------------------------------------------

    def _load_rows(self) -> dict[str, _Row]:
        conn = self._index.conn()
        rows: dict[str, _Row] = {}
        if not self.roots:
            return rows
        marks = ",".join("?" * len(self.roots))
        for t in conn.execute(f"SELECT {_KEY_COLUMNS} FROM files WHERE root IN ({marks})", self.roots):
            row = _Row(*t, loaded=False)
            rows[row.path] = row
        self._load_rows_hashes()
        for row in rows.values():
            self._attach_hashes(row)
        return rows

    def _attach_hashes(self, row: _Row) -> None:
        cached = self._hash_cache.get(row.realpath) if self._hash_cache is not None else None
        if cached is not None and cached[0] == row.size and cached[1] == row.mtime_ns:
            row.sha256, row.addnet = cached[2], cached[3]

    def _fill(self, rows: Sequence[_Row]) -> None:
        """Load the JSON columns of ``rows`` from the index (one query for many). A row the index no longer
        holds in the same version (another process rescanned meanwhile) is read from its file again."""
        todo = [r for r in rows if not r.loaded]
        if not todo:
            return
        by_path = {r.path: r for r in todo}
        try:
            conn = self._index.conn()
            if len(todo) > 64:
                marks = ",".join("?" * len(self.roots))
                cursor = conn.execute(f"SELECT {_JSON_COLUMNS} FROM files WHERE root IN ({marks})", self.roots)
                results: Iterable[tuple[Any, ...]] = cursor
            else:
                results = [t for r in todo for t in conn.execute(f"SELECT {_JSON_COLUMNS} FROM files WHERE path = ?", (r.path,))]
            for path, size, mtime_ns, side_sig, fingerprint, det, side, meta, trig in results:
                row = by_path.get(path)
                if row is not None and row.key() == (size, mtime_ns, side_sig, fingerprint):
                    row.detection, row.sidecars, row.metadata, row.triggers = det, side, meta, trig
                    row.loaded = True
        except sqlite3.DatabaseError:
            pass
        for row in todo:
            if not row.loaded:
                fresh = self._reread(row)
                row.detection, row.sidecars, row.metadata, row.triggers = (
                    fresh.detection, fresh.sidecars, fresh.metadata, fresh.triggers)
                row.error, row.alias, row.addnet_hint = fresh.error, fresh.alias, fresh.addnet_hint
                row.loaded = True

    def _reread(self, row: _Row) -> _Row:
        folder = os.path.dirname(row.path)
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            entries = []
        sidecars = _sidecar_index(entries)
        f = _Found(row.path, row.root, row.relpath, row.name, row.suffix, row.realpath, row.size, row.mtime_ns,
                   _side_signature(sidecars.get(row.name.casefold())), _dir_listing(entries), False)
        return _read_file(f, self._fingerprint)

    def _info(self, row: _Row) -> LoraInfo:
        if row.info is not None:
            return row.info
        if not row.loaded:
            self._fill([row])
        return row.to_info()

    def _infos(self, rows: Sequence[_Row]) -> tuple[LoraInfo, ...]:
        self._fill(rows)
        return tuple(r.to_info() for r in rows)

    def load(self) -> int:
        """Fill the library from the index alone (no file-system walk): an instant, possibly stale
        listing to show while :meth:`scan` runs. Does not wait for a running scan. Returns the number
        of entries."""
        try:
            rows = self._load_rows()
        except sqlite3.DatabaseError as exc:
            with self._scan_lock:
                self._index.recover(f"read failed: {exc}")
            rows = {}
        state = _State(rows, self.roots)
        with self._state_lock:
            if self._state is None:  # a scan that finished meanwhile knows better
                self._state = state
                self._generation += 1
        return len(self._state.rows) if self._state is not None else 0

    def scan(self, progress: ScanProgress | None = None) -> ScanResult:
        """Walk the roots; read new and changed files; forget removed ones. Thread-safe (one at a time)."""
        with self._scan_lock:
            try:
                return self._scan(progress)
            except sqlite3.DatabaseError as exc:
                self._index.recover(f"{type(exc).__name__}: {exc}")
                self._state = None
                self._hash_cache = None
                return self._scan(progress)

    def _scan(self, progress: ScanProgress | None) -> ScanResult:
        t0 = time.perf_counter()
        state = self._state
        old_rows = dict(state.rows) if state is not None else self._load_rows()
        if self._hash_cache is None:
            self._load_rows_hashes()
        found, errors = _walk(self.roots)
        fingerprint = self._fingerprint
        to_read: list[_Found] = []
        rows: dict[str, _Row] = {}
        unchanged = 0
        for f in found:
            old = old_rows.pop(f.path, None)
            if (
                old is not None
                and old.error is None
                and old.size == f.size
                and old.mtime_ns == f.mtime_ns
                and old.realpath == f.realpath
                and old.side_sig == f.side_sig
                and old.fingerprint == fingerprint
                and old.root == f.root
            ):
                rows[f.path] = old
                unchanged += 1
            else:
                if old is not None:
                    rows[f.path] = old  # placeholder, replaced below; marks "changed"
                to_read.append(f)
        removed = tuple(sorted(old_rows))
        added: list[str] = []
        changed: list[str] = []
        new_rows: list[_Row] = []
        total = len(to_read)
        for i, row in enumerate(_read_many(to_read, fingerprint, self._workers)):
            self._attach_hashes(row)
            (changed if row.path in rows else added).append(row.path)
            rows[row.path] = row
            new_rows.append(row)
            if progress is not None:
                progress(i + 1, total, row.path)
        if new_rows or removed:
            conn = self._index.conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_FILE_INSERT, [r.db_tuple() for r in new_rows])
                conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in removed])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if state is None or new_rows or removed:
            self._set_state(_State(rows, self.roots))
        for r in new_rows:
            if r.error:
                errors.append((r.path, r.error))
        return ScanResult(
            added=tuple(sorted(added)),
            changed=tuple(sorted(changed)),
            removed=removed,
            unchanged=unchanged,
            errors=tuple(errors),
            seconds=time.perf_counter() - t0,
            total=len(rows),
            reads=sum(1 for f in to_read if not f.legacy),
            notes=self._index.take_notes(),
        )

    def _load_rows_hashes(self) -> None:
        conn = self._index.conn()
        self._hash_cache = {
            real: (size, mtime, sha, addnet)
            for real, size, mtime, sha, addnet in conn.execute("SELECT realpath, size, mtime_ns, sha256, addnet FROM hashes")
        }

    def _set_state(self, state: _State) -> None:
        with self._state_lock:
            self._state = state
            self._generation += 1

    @property
    def generation(self) -> int:
        """Changes whenever the set of entries or any entry's content changes (not when a hash arrives)."""
        return self._generation

    def _current(self) -> _State:
        state = self._state
        if state is None:
            self.load()
            state = self._state
            assert state is not None
        return state

    def refresh(self, path: str | os.PathLike[str]) -> LoraInfo | None:
        """Re-read one file (after its sidecar changed, say). ``None`` if it is gone or outside the roots."""
        with self._scan_lock:
            state = self._current()
            key = os.path.abspath(os.fspath(path))
            old = state.rows.get(key)
            if old is None:
                return None
            folder = os.path.dirname(key)
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
                st = os.stat(key)
            except OSError:
                return None
            sidecars = _sidecar_index(entries)
            f = _Found(key, old.root, old.relpath, old.name, old.suffix, os.path.realpath(key), st.st_size,
                       st.st_mtime_ns, _side_signature(sidecars.get(old.name.casefold())), _dir_listing(entries),
                       old.realpath != os.path.join(os.path.realpath(folder), os.path.basename(key)))
            row = _read_file(f, self._fingerprint)
            self._attach_hashes(row)
            conn = self._index.conn()
            conn.execute(_FILE_INSERT, row.db_tuple())
            rows = dict(state.rows)
            rows[key] = row
            self._set_state(_State(rows, self.roots))
            return row.to_info()

    # -- reading ---------------------------------------------------------------------------------

    def entries(self) -> tuple[LoraInfo, ...]:
        """Every file, ordered by root then relative path (case-insensitive)."""
        return self._infos(self._current().order)

    def __len__(self) -> int:
        return len(self._current().rows)

    def get(self, path: str | os.PathLike[str]) -> LoraInfo | None:
        """The entry for ``path`` (as listed, or its real path)."""
        state = self._current()
        p = os.path.abspath(os.fspath(path))
        row = state.rows.get(p) or state.by_real.get(p) or state.by_real.get(os.path.realpath(p))
        return self._info(row) if row is not None else None

    def duplicates(self) -> dict[str, tuple[LoraInfo, ...]]:
        """File stems shared by several files: A1111 loads only one of them for ``<lora:stem>``."""
        return {
            stem: self._infos(rows)
            for stem, rows in self._current().by_stem.items()
            if len(rows) > 1
        }

    # -- names -------------------------------------------------------------------------------------

    def lookup(self, name: str) -> Lookup:
        """Resolve ``name`` as a ``<lora:NAME>`` tag means it (order in the module docstring)."""
        state = self._current()
        query = name
        q = name.strip()
        if not q:
            return Lookup(query, "missing", message="empty LoRA name")
        posix = q.replace("\\", "/")
        if (posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) or ".." in posix.split("/")
                or os.path.isabs(q)):
            return Lookup(query, "refused", message=f"refused LoRA name {q!r}: absolute paths and '..' are not "
                                                    "allowed; use a file name or a path inside a LoRA folder")
        while posix.startswith("./"):
            posix = posix[2:]
        bare = posix
        low = posix.lower()
        for suffix in MODEL_SUFFIXES:
            if low.endswith(suffix) and len(low) > len(suffix):
                bare = posix[: -len(suffix)]
                break

        def result(rows: list[_Row], how: str) -> Lookup:
            if len(rows) == 1:
                info = self._info(rows[0])
                return Lookup(query, "found", info, how, (info,),
                              message=f"{q} → {info.relpath}{info.suffix}")
            cands = self._infos(rows)
            listing = ", ".join(f"{c.relpath}{c.suffix}" for c in cands)
            return Lookup(query, "ambiguous", None, how, cands, tuple(c.relpath for c in cands[:3]),
                          message=f"{q!r} matches {len(cands)} LoRAs ({how}): {listing} — "
                                  f"name one by its folder, e.g. <lora:{cands[0].relpath}:1>")

        if "/" not in bare:
            hit = state.by_stem.get(q) or state.by_stem.get(bare)
            if hit:
                return result(hit, "stem")
        hit = state.by_rel.get(bare)
        if hit:
            return result(hit, "relpath")
        hit = state.by_alias.get(q)
        if hit:
            return result(hit, "alias")
        is_hex = _HEX_RE.fullmatch(q) is not None
        if is_hex:
            h = q.lower()
            if len(h) == 10 and h in state.by_autov2:
                return result(state.by_autov2[h], "autov2")
            if len(h) == 12 and h in state.by_addnet:
                return result(state.by_addnet[h], "addnet")
            if len(h) == 64:
                rows = [r for r in state.by_autov2.get(h[:10], []) if r.sha256 == h]
                if rows:
                    return result(rows, "autov2")
                rows = [r for r in state.by_addnet.get(h[:12], []) if (r.addnet or r.addnet_hint) == h]
                if rows:
                    return result(rows, "addnet")
        hit = state.by_fold.get(q.casefold()) or state.by_fold.get(bare.casefold())
        if hit:
            return result(hit, "casefold")
        keys, shown = state.suggestion_names()
        close = difflib.get_close_matches(bare.casefold(), keys, n=3, cutoff=0.6)
        by_key = dict(zip(keys, shown, strict=True))
        suggestions = tuple(by_key[k] for k in close)
        msg = f"no LoRA named {q!r}"
        if suggestions:
            msg += " — did you mean " + ", ".join(suggestions) + "?"
        if is_hex and len(q) in (10, 12, 64):
            pending = sum(1 for r in state.order if not r.sha256)
            if pending:
                msg += f" (hashes of {pending} files are not computed yet)"
        return Lookup(query, "missing", suggestions=suggestions, message=msg)

    # -- user metadata -----------------------------------------------------------------------------

    def set_user_metadata(self, entry: LoraInfo | str | os.PathLike[str], **changes: Any) -> LoraInfo:
        """Write the user's values to the A1111 sidecar (fields of :class:`~lib_lora.sidecars.UserMetadata`;
        ``None`` removes one) and return the refreshed entry. When the sidecar is new, ``sd version`` is
        filled from the detected architecture, as A1111's editor would."""
        info = entry if isinstance(entry, LoraInfo) else self.get(entry)
        if info is None:
            raise LibraryError(f"not a LoRA in this library: {entry}")
        if (
            "sd_version" not in changes
            and info.sidecars.user is None
            and info.detection is not None
            and sc.sd_version_for(info.detection.architecture) != "Unknown"
        ):
            changes["sd_version"] = sc.sd_version_for(info.detection.architecture)
        try:
            sc.update_user_metadata(info.path, **changes)
        except SidecarError:
            raise
        fresh = self.refresh(info.path)
        if fresh is None:
            raise LibraryError(f"{info.path} disappeared while its metadata was saved")
        return fresh

    # -- hashes ------------------------------------------------------------------------------------

    def _store_hashes(self, row: _Row, hashes: FileHashes) -> None:
        conn = self._index.conn()
        conn.execute("INSERT OR REPLACE INTO hashes (realpath, size, mtime_ns, sha256, addnet) VALUES (?,?,?,?,?)",
                     (row.realpath, row.size, row.mtime_ns, hashes.sha256, hashes.addnet))
        if self._hash_cache is not None:
            self._hash_cache[row.realpath] = (row.size, row.mtime_ns, hashes.sha256, hashes.addnet)
        with self._state_lock:
            row.sha256, row.addnet = hashes.sha256, hashes.addnet
            row.info = None
            state = self._state
            if state is not None and state.rows.get(row.path) is row:
                state.add_hashes(row)

    def _hash_row(self, row: _Row, should_stop: Callable[[], bool] | None = None) -> FileHashes:
        try:
            st = os.stat(row.path)
        except OSError as exc:
            raise HashError(f"{row.path}: cannot read for hashing: {exc.strerror or exc}") from None
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            raise HashError(f"{row.path}: changed since the last scan; rescan first")
        hashes = hash_file(row.path, addnet=row.suffix.lower() == SAFETENSORS, should_stop=should_stop)
        st = os.stat(row.path)
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            raise HashError(f"{row.path}: changed while it was hashed")
        self._store_hashes(row, hashes)
        return hashes

    def ensure_hashes(self, entry: LoraInfo | str | os.PathLike[str]) -> LoraInfo:
        """The entry with its hashes, computing them now if needed (reads the whole file)."""
        info = entry if isinstance(entry, LoraInfo) else self.get(entry)
        if info is None:
            raise LibraryError(f"not a LoRA in this library: {entry}")
        row = self._current().rows.get(info.path)
        if row is None:
            raise LibraryError(f"not a LoRA in this library: {info.path}")
        if not row.sha256:
            self._hash_row(row)
        return self._info(row)

    def start_hashing(self, progress: Callable[[HashStatus], None] | None = None) -> bool:
        """Hash every entry without known hashes in a background thread. False if one is running."""
        with self._hash_lock:
            if self._hash_thread is not None and self._hash_thread.is_alive():
                return False
            self._current()
            self._hash_stop.clear()
            self._hash_thread = threading.Thread(target=self._hash_loop, args=(progress,), daemon=True,
                                                 name="lora-studio-hashing")
            self._hash_thread.start()
            return True

    def stop_hashing(self, wait: bool = True) -> None:
        self._hash_stop.set()
        thread = self._hash_thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def wait_for_hashes(self, timeout: float | None = None) -> bool:
        """Block until the worker is done (tests, CLI). True when it finished."""
        thread = self._hash_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _hash_loop(self, progress: Callable[[HashStatus], None] | None) -> None:
        try:
            while not self._hash_stop.is_set():
                state = self._state
                if state is None:
                    return
                todo = [r for r in state.order if not r.sha256 and r.path not in self._hash_failed]
                if not todo:
                    return
                for row in todo:
                    if self._hash_stop.is_set() or self._state is not state:
                        break
                    if row.sha256:
                        continue
                    self._hash_current = row.path
                    try:
                        self._hash_row(row, should_stop=self._hash_stop.is_set)
                    except HashError as exc:
                        if self._hash_stop.is_set():
                            return
                        self._hash_failed[row.path] = exc.message
                    except sqlite3.DatabaseError as exc:
                        self._hash_failed[row.path] = f"{row.path}: index error: {exc}"
                    finally:
                        self._hash_current = None
                    if progress is not None:
                        try:
                            progress(self.hash_status())
                        except Exception:
                            pass
        finally:
            self._index.close_thread_connection()

    def hash_status(self) -> HashStatus:
        state = self._state
        rows = state.order if state is not None else []
        thread = self._hash_thread
        return HashStatus(
            total=len(rows),
            done=sum(1 for r in rows if r.sha256),
            running=thread is not None and thread.is_alive(),
            current=self._hash_current,
            failed=tuple(sorted(self._hash_failed.items())),
        )
