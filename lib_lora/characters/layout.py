"""The character folders on disk: find them, read one, order its LoRA versions, and pick the root.

A character is a folder ``<root>/<name>/`` holding any of ``lora/`` (its LoRA versions),
``reference/`` (clear reference images), ``expressions/`` (``neutral.png``, ``smile.png`` …) and
``prompts.txt`` (:mod:`lib_lora.characters.promptsfile`). A folder the user already keeps in this layout
is recognised as it is; nothing here writes. Versions are ordered newest first: files named
``…_v<N>`` by ``N`` (highest first), then files without such a suffix by modification time (newest
first). A character with an empty ``lora/`` uses the LoRA ``prompts.txt`` names under ``lora:``.

The root: the setting ``characters_root``, else the environment variable ``LORA_STUDIO_CHARACTERS``,
else ``characters/`` inside the first LoRA folder (so the WebUI's own Lora page lists the files too).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib_lora.characters.promptsfile import PROMPTS_FILENAME, CharacterPrompts

ENV_ROOT = "LORA_STUDIO_CHARACTERS"
DEFAULT_DIRNAME = "characters"
LORA_DIR = "lora"
REFERENCE_DIR = "reference"
EXPRESSIONS_DIR = "expressions"
SUBDIRS = (LORA_DIR, REFERENCE_DIR, EXPRESSIONS_DIR)
LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_VERSION_RE = re.compile(r"_v(\d+)$", re.IGNORECASE)
#: ``lora/.<name>_v<N>.reserved``: a version a training holds (:mod:`lib_lora.characters.reservation`);
#: a dot file, so neither the versions here nor any LoRA scanner list it
RESERVED_SUFFIX = ".reserved"


def version_number(stem: str) -> int | None:
    """``7`` for ``alice_v7``; ``None`` for a stem without a ``_v<N>`` suffix."""
    m = _VERSION_RE.search(stem)
    return int(m.group(1)) if m else None


def reserved_number(entry: str, name: str) -> int | None:
    """``3`` for the file name ``.<name>_v3.reserved`` (``name`` matched case-insensitively), else ``None``."""
    if not (entry.startswith(".") and entry.endswith(RESERVED_SUFFIX)):
        return None
    stem = entry[1:-len(RESERVED_SUFFIX)]
    prefix = name.casefold() + "_v"
    if not stem.casefold().startswith(prefix) or not stem[len(prefix):].isdigit():
        return None
    return int(stem[len(prefix):])


@dataclass(frozen=True)
class LoraVersion:
    """One LoRA of a character: a file in its ``lora/`` folder, or the LoRA ``prompts.txt`` records."""

    stem: str
    path: str | None  # None: a recorded LoRA name (resolved by the library)
    number: int | None
    mtime_ns: int = 0

    @property
    def label(self) -> str:
        return f"v{self.number}" if self.number is not None else self.stem

    @property
    def recorded(self) -> bool:
        return self.path is None

    def to_dict(self) -> dict[str, Any]:
        return {"stem": self.stem, "path": self.path, "number": self.number, "label": self.label,
                "recorded": self.recorded}


def version_base(version: LoraVersion) -> str | None:
    """The base model of a version's file, read from its header: the family id (``pony``, ``illustrious`` …)
    else the architecture id (``sd1``, ``sdxl`` …); ``None``: recorded elsewhere, unreadable, or not a
    ``.safetensors`` file (never opened)."""
    if not version.path or not version.path.lower().endswith(".safetensors"):
        return None
    from lib_lora.architecture import detect_lora
    from lib_lora.safetensors_header import read_header

    try:
        detection = detect_lora(read_header(version.path))
    except Exception:
        return None
    if detection.architecture == "unknown":
        return None
    return detection.family or detection.architecture


def order_versions(versions: Sequence[LoraVersion]) -> tuple[LoraVersion, ...]:
    """Newest first: numbered by number (highest first), then the rest by modification time."""
    numbered = sorted((v for v in versions if v.number is not None), key=lambda v: (-(v.number or 0), -v.mtime_ns))
    others = sorted((v for v in versions if v.number is None), key=lambda v: (-v.mtime_ns, v.stem))
    return (*numbered, *others)


@dataclass(frozen=True)
class Character:
    """One character folder as read from disk."""

    name: str
    folder: str
    prompts: CharacterPrompts = field(default_factory=CharacterPrompts)
    versions: tuple[LoraVersion, ...] = ()
    references: tuple[str, ...] = ()
    expressions: tuple[str, ...] = ()
    has_prompts_file: bool = False

    @property
    def prompts_path(self) -> str:
        return os.path.join(self.folder, PROMPTS_FILENAME)

    @property
    def lora_folder(self) -> str:
        return os.path.join(self.folder, LORA_DIR)

    @property
    def reference_folder(self) -> str:
        return os.path.join(self.folder, REFERENCE_DIR)

    @property
    def latest(self) -> LoraVersion | None:
        return self.versions[0] if self.versions else None

    def version(self, number: int | None = None) -> LoraVersion | None:
        """The version ``v<number>``; ``None`` picks the newest."""
        if number is None:
            return self.latest
        return next((v for v in self.versions if v.number == number), None)

    @property
    def expression_names(self) -> tuple[str, ...]:
        return tuple(Path(p).stem for p in self.expressions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folder": self.folder,
            "trigger": list(self.prompts.trigger),
            "prompts": self.prompts.to_dict(),
            "versions": [v.to_dict() for v in self.versions],
            "references": list(self.references),
            "expressions": list(self.expressions),
            "expression_names": list(self.expression_names),
            "has_prompts_file": self.has_prompts_file,
        }


def is_character_folder(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    if not p.is_dir() or p.name.startswith("."):
        return False
    return (p / PROMPTS_FILENAME).is_file() or any((p / d).is_dir() for d in SUBDIRS)


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    out = [Path(e.path) for e in entries
           if not e.name.startswith(".") and e.name.lower().endswith(suffixes) and e.is_file()]
    return out


def _images(folder: Path) -> tuple[str, ...]:
    # sidecar previews (<stem>.preview.png) belong to the LoRA, not to the character's pictures
    files = [p for p in _files(folder, IMAGE_SUFFIXES) if not p.name.lower().endswith(".preview.png")]
    return tuple(str(p) for p in sorted(files, key=lambda p: (p.stem.casefold(), p.name)))


def read_prompts(folder: str | os.PathLike[str]) -> tuple[CharacterPrompts, bool]:
    path = Path(folder) / PROMPTS_FILENAME
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            return CharacterPrompts.parse(fh.read()), True
    except FileNotFoundError:
        return CharacterPrompts(), False


def load_character(folder: str | os.PathLike[str]) -> Character:
    """Read one character folder (its name is the folder's name)."""
    p = Path(folder)
    prompts, has_file = read_prompts(p)
    versions: list[LoraVersion] = []
    for f in _files(p / LORA_DIR, LORA_SUFFIXES):
        try:
            mtime = f.stat().st_mtime_ns
        except OSError:
            mtime = 0
        versions.append(LoraVersion(stem=f.stem, path=str(f), number=version_number(f.stem), mtime_ns=mtime))
    if not versions and prompts.lora:
        stem = prompts.lora.replace("\\", "/").rsplit("/", 1)[-1]
        versions.append(LoraVersion(stem=stem, path=None, number=version_number(stem)))
    return Character(
        name=p.name,
        folder=str(p),
        prompts=prompts,
        versions=order_versions(versions),
        references=_images(p / REFERENCE_DIR),
        expressions=_images(p / EXPRESSIONS_DIR),
        has_prompts_file=has_file,
    )


@dataclass(frozen=True)
class CharacterLibrary:
    """Every character under one root, by name (matched case-insensitively)."""

    root: str | None
    characters: tuple[Character, ...] = ()

    def find(self, name: str) -> Character | None:
        key = name.strip().casefold()
        exact = [c for c in self.characters if c.name == name.strip()]
        if exact:
            return exact[0]
        return next((c for c in self.characters if c.name.casefold() == key), None)

    def suggestions(self, name: str, limit: int = 3) -> tuple[str, ...]:
        names = {c.name.casefold(): c.name for c in self.characters}
        close = difflib.get_close_matches(name.strip().casefold(), list(names), n=limit, cutoff=0.6)
        return tuple(names[c] for c in close)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.characters)

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "characters": [c.to_dict() for c in self.characters]}


def scan_characters(root: str | os.PathLike[str] | None) -> CharacterLibrary:
    """Read every character folder directly below ``root`` (a missing root holds none)."""
    if root is None:
        return CharacterLibrary(root=None)
    base = Path(root)
    try:
        children = sorted(os.scandir(base), key=lambda e: e.name.casefold())
    except OSError:
        return CharacterLibrary(root=str(base))
    chars = tuple(load_character(e.path) for e in children if e.is_dir() and is_character_folder(e.path))
    return CharacterLibrary(root=str(base), characters=chars)


def character_root(
    setting: str | None,
    lora_roots: Sequence[str | os.PathLike[str]],
    environ: Mapping[str, str] | None = None,
) -> Path | None:
    """The folder characters live in: the setting, else ``$LORA_STUDIO_CHARACTERS``, else
    ``<first LoRA folder>/characters``; ``None`` when there is no LoRA folder either."""
    env = os.environ if environ is None else environ
    for value in (setting, env.get(ENV_ROOT)):
        if value and str(value).strip():
            return Path(os.path.expanduser(str(value).strip()))
    if lora_roots:
        return Path(lora_roots[0]) / DEFAULT_DIRNAME
    return None


def characters_for_host(host: Any) -> CharacterLibrary:
    """The characters of a :class:`lib_lora.host.Host` (its settings and LoRA folders)."""
    settings = host.settings()
    root = character_root(getattr(settings, "characters_root", ""), host.lora_roots())
    return scan_characters(root)
