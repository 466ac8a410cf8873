"""What the library says about one file: the :class:`LoraInfo` value, the scan/lookup/hash result values,
and the bounded subset and training summary of a file's header metadata."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lib_lora import architecture
from lib_lora import sidecars as sc
from lib_lora.architecture import Detection
from lib_lora.hashing import FileHashes
from lib_lora.library.codec import detection_to_dict

SAFETENSORS = ".safetensors"
LEGACY_SUFFIXES = (".pt", ".ckpt")
MODEL_SUFFIXES = (SAFETENSORS, *LEGACY_SUFFIXES)

#: Progress callback of a scan: ``(done, total, path)``.
ScanProgress = Callable[[int, int, str], None]

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
    link_outside: str | None = None  # the file is a link to this real path, outside every LoRA folder
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
            "link_outside": self.link_outside,
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
        if self.link_outside:
            out.append(f"{self.path} links outside the LoRA folders → {self.link_outside}")
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
    links: tuple[tuple[str, str], ...] = ()  # (link, real folder) of every linked folder followed

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

