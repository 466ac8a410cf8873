"""Files that sit beside a LoRA: A1111 user metadata, Civitai info, previews.

User metadata — ``<stem>.json``, the file A1111's and Forge's "Edit metadata" dialog writes
(``json.dump(obj, f, indent=4, ensure_ascii=False)``, UTF-8, no trailing newline). The keys A1111 reads
and writes are ``description``, ``sd version`` (``SD1``/``SD2``/``SDXL``/``SD3``/``Unknown``; Forge adds
``Flux``), ``activation text``, ``preferred weight`` (a number, 0 = "not set"), ``negative text`` and
``notes``. Other tools add their own keys; every key we do not know is kept, in its place, on write.
LoRA Studio's own values use namespaced keys that the WebUIs ignore:

- ``lora studio base`` — the user's base-model override: an architecture id (``sdxl``) or a family id
  (``pony``, ``illustrious``…). Never written by a scan, only by the user.
- ``lora studio category`` — ``character``/``style``/``concept``/``pose``/``clothing``/``object``/… .

Writes are atomic (temp file in the same folder + ``os.replace``); a sidecar that is not valid JSON is
never overwritten — :class:`~lib_lora.errors.SidecarError` says why.

Civitai — ``<stem>.civitai.info`` (Civitai Helper) holds a *model-version* object (``baseModel``,
``trainedWords``, ``model.type``, ``files[].hashes``, ``images``); a *model* object (``tags`` and the
license fields ``allowNoCredit``, ``allowCommercialUse``, ``allowDerivatives``, ``allowDifferentLicense``)
may be saved as ``<stem>.model.json`` or ``<stem>.api_info.json``. The files are told apart by their
content, not only their names.

Previews — as A1111's ``find_preview``: for each extension ``png, jpg, jpeg, webp, gif`` try
``<stem>.<ext>`` then ``<stem>.preview.<ext>``. (A1111 iterates a set of extensions, so its order between
extensions is not fixed; ours is.)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lib_lora.errors import SidecarError

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


# --- reading -------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SIDECAR_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SidecarError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise SidecarError(f"{path}: larger than {MAX_SIDECAR_BYTES // (1024 * 1024)} MB, not a sidecar")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SidecarError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SidecarError(f"{path}: not valid JSON: {str(exc).splitlines()[0][:120]}") from None
    except RecursionError:
        raise SidecarError(f"{path}: not valid JSON: nested too deeply") from None


def _read_object(path: Path) -> dict[str, Any]:
    obj = _read_json(path)
    if not isinstance(obj, dict):
        raise SidecarError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def _opt_str(value: Any, cap: int = 10_000) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value[:cap]
    if isinstance(value, (int, float, bool)):
        return str(value)
    return None


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _opt_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _opt_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


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


# --- writing -------------------------------------------------------------------------------------


def dump_user_metadata(obj: Mapping[str, Any]) -> str:
    """Serialise exactly as A1111 does: ``json.dump(obj, f, indent=4, ensure_ascii=False)``."""
    return json.dumps(obj, indent=4, ensure_ascii=False)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temp file in the same folder and ``os.replace``.

    A symlink at ``path`` is followed (its target is replaced, the link kept); an existing file's
    permission bits are kept.
    """
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    folder = target.parent
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise SidecarError(f"{target}: cannot write: {exc.strerror or exc}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SidecarError(f"{target}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SidecarError(f"{target}: cannot write: {exc.strerror or exc}") from None


def _existing_object(path: Path) -> dict[str, Any]:
    try:
        return _read_object(path)
    except FileNotFoundError:
        return {}
    except SidecarError as exc:
        raise SidecarError(f"{exc.message} — not overwritten; fix or remove the file first") from None


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
