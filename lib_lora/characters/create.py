"""Writing characters: create one (from scratch or from an existing LoRA), change its ``prompts.txt``,
add reference images, and name the next LoRA version (``<name>_v<N>``, never an existing N).

Nothing here overwrites a user's file: a reference image whose name is taken gets ``-2``, ``-3`` …; an
existing LoRA is moved into ``lora/`` only when asked (with its sidecars, which share its stem),
otherwise ``prompts.txt`` records its name (never a copy: two files with one stem shadow each other).
Callers refuse these writes to remote users (the training gate) before calling.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lib_lora.characters.layout import (
    IMAGE_SUFFIXES,
    LORA_DIR,
    REFERENCE_DIR,
    SUBDIRS,
    Character,
    load_character,
    read_prompts,
    reserved_number,
    scan_characters,
)
from lib_lora.characters.promptsfile import PROMPTS_FILENAME, new_prompts_text
from lib_lora.errors import LoraStudioError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_COPIES = 1000


class CharacterError(LoraStudioError):
    """A character cannot be created or changed as asked (the message says why)."""


def check_name(name: str) -> str:
    """The name of a new character, or :class:`CharacterError` saying what is wrong with it."""
    text = (name or "").strip()
    if not text:
        raise CharacterError("a character needs a name")
    if not _NAME_RE.match(text) or text.endswith(".") or ".." in text:
        raise CharacterError(
            f"character name {text!r} must start with a letter or digit and hold only letters, digits, "
            "'_', '-' and '.' (at most 64): it is a folder name and goes into <char:NAME>"
        )
    return text


def _write_new(path: Path, text: str) -> None:
    with open(path, "x", encoding="utf-8", newline="") as fh:
        fh.write(text)


def create_character(
    root: str | os.PathLike[str],
    name: str,
    *,
    trigger: str = "",
    lora_path: str | None = None,
    lora_name: str | None = None,
    move_lora: bool = False,
    anchors: Sequence[str] | None = None,
    drift: Sequence[str] | None = None,
    trigger_weight: float | None = None,
) -> Character:
    """Create ``<root>/<name>/`` with ``lora/``, ``reference/``, ``expressions/`` and ``prompts.txt``.

    From an existing LoRA (``lora_path``): with ``move_lora`` the file and its sidecars are moved into
    ``lora/``; otherwise ``prompts.txt`` records ``lora_name`` (the name ``<lora:NAME>`` resolves; the
    file's stem when not given).
    """
    name = check_name(name)
    base = Path(root)
    existing = scan_characters(base).find(name) if base.is_dir() else None
    folder = base / name
    if existing is not None or folder.exists():
        raise CharacterError(f"a character named {existing.name if existing else name!r} already exists in {base}")
    if lora_path is not None and not os.path.isfile(lora_path):
        raise CharacterError(f"the LoRA {lora_path} does not exist")
    try:
        folder.mkdir(parents=True)
        for sub in SUBDIRS:
            (folder / sub).mkdir()
    except OSError as exc:
        raise CharacterError(f"cannot create {folder}: {exc.strerror or exc}") from None
    recorded = None
    if lora_path is not None:
        if move_lora:
            move_lora_into(lora_path, folder / LORA_DIR)
        else:
            recorded = lora_name or Path(lora_path).stem
    text = new_prompts_text(
        trigger=trigger.strip(),
        anchors=tuple(anchors) if anchors is not None else None,
        drift=tuple(drift) if drift is not None else None,
        trigger_weight=trigger_weight,
        lora=recorded,
    )
    _write_new(folder / PROMPTS_FILENAME, text)
    return load_character(folder)


def _companions(path: Path) -> list[Path]:
    """The LoRA file and every sidecar sharing its stem (``x.json``, ``x.preview.png``, ``x.civitai.info``)."""
    stem = path.stem
    out = [path]
    try:
        for entry in os.scandir(path.parent):
            if entry.name != path.name and entry.name.startswith(stem + ".") and entry.is_file():
                rest = entry.name[len(stem):]
                if rest.lower() not in (".safetensors", ".pt", ".ckpt"):
                    out.append(Path(entry.path))
    except OSError:
        pass
    return out


def move_lora_into(lora_path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> str:
    """Move a LoRA and its sidecars into ``folder`` (refused when any name is taken there)."""
    src = Path(lora_path)
    dest = Path(folder)
    dest.mkdir(parents=True, exist_ok=True)
    files = _companions(src)
    taken = [f.name for f in files if (dest / f.name).exists()]
    if taken:
        raise CharacterError(f"{dest} already holds {', '.join(taken)}; nothing was moved")
    for f in files:
        try:
            shutil.move(str(f), str(dest / f.name))
        except OSError as exc:
            raise CharacterError(f"cannot move {f} into {dest}: {exc.strerror or exc}") from None
    return str(dest / src.name)


def update_prompts(character: Character, values: Mapping[str, Any]) -> Character:
    """Set fields of the character's ``prompts.txt`` (every other line kept) and read it back."""
    doc, _ = read_prompts(character.folder)
    try:
        new = doc.with_values(values)
    except ValueError as exc:
        raise CharacterError(str(exc)) from None
    path = Path(character.prompts_path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(new.text())
        os.replace(tmp, path)
    except OSError as exc:
        raise CharacterError(f"cannot write {path}: {exc.strerror or exc}") from None
    return load_character(character.folder)


def _free_name(folder: Path, name: str) -> Path:
    stem, suffix = os.path.splitext(name)
    for n in range(1, _MAX_COPIES):
        candidate = folder / (name if n == 1 else f"{stem}-{n}{suffix}")
        if not candidate.exists():
            return candidate
    raise CharacterError(f"{folder} already holds {name} and {_MAX_COPIES - 2} numbered copies")


def add_images(character: Character, images: Sequence[str | os.PathLike[str]], *,
               subdir: str = REFERENCE_DIR) -> list[str]:
    """Copy images into the character's ``reference/`` (or ``expressions/``); a taken name gets ``-2``."""
    if subdir not in (REFERENCE_DIR, "expressions"):
        raise CharacterError(f"images go into reference/ or expressions/, not {subdir}/")
    target = Path(character.folder) / subdir
    bad = [str(i) for i in images if not str(i).lower().endswith(IMAGE_SUFFIXES)]
    if bad:
        raise CharacterError(f"not an image ({', '.join(IMAGE_SUFFIXES)}): {', '.join(bad)}")
    missing = [str(i) for i in images if not os.path.isfile(i)]
    if missing:
        raise CharacterError(f"no such file: {', '.join(missing)}")
    target.mkdir(parents=True, exist_ok=True)
    out: list[str] = []
    for image in images:
        dest = _free_name(target, Path(image).name)
        try:
            shutil.copyfile(image, dest)
        except OSError as exc:
            raise CharacterError(f"cannot copy {image} into {target}: {exc.strerror or exc}") from None
        out.append(str(dest))
    return out


def next_version(character_folder: str | os.PathLike[str], name: str | None = None) -> int:
    """The next free version number: one more than every ``<name>_v<N>`` in ``lora/`` (any suffix,
    sidecars included) and every version a training has reserved (``.<name>_v<N>.reserved``), so a
    deleted ``v1`` is never reused while ``v2`` exists."""
    folder = Path(character_folder)
    stem_prefix = (name or folder.name).casefold() + "_v"
    highest = 0
    try:
        entries = os.listdir(folder / LORA_DIR)
    except OSError:
        entries = []
    for entry in entries:
        reserved = reserved_number(entry, name or folder.name)
        if reserved is not None:
            highest = max(highest, reserved)
            continue
        if not entry.casefold().startswith(stem_prefix):
            continue
        m = re.match(r"(\d+)(?:\.|$)", entry[len(stem_prefix):])
        if m:
            highest = max(highest, int(m.group(1)))
    return highest + 1


def version_stem(name: str, number: int) -> str:
    return f"{name}_v{number}"
