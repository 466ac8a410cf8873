"""What a consistency sheet compares: the LoRA or character it is for, and its columns' versions —
LoRA names as in a tag, ``vN`` of a character, or ``job:<id>/<file>`` epoch files of a training job
(never a path). Epoch files outside the LoRA folders are staged (copied) into a LoRA Studio subfolder of
the first LoRA folder so the WebUI's LoRA loader finds them, and removed afterwards.

Characters follow the documented layout ``<character root>/<name>/{lora,reference,expressions}/`` and
``prompts.txt``; the root comes from the Characters library (``lib_lora.characters.character_root``)
when it is installed, else ``characters/`` inside the first LoRA folder.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lib_lora.errors import ConsistencyError, LoraStudioError

STAGING_DIR = "LoRA Studio"  # subfolder of the first LoRA folder for staged epoch files
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_JOB_REF = re.compile(r"^job:([A-Za-z0-9_.-]{1,200})/([^/\\]{1,255})$")
_VERSION = re.compile(r"^v(\d{1,6})$", re.IGNORECASE)
_VERSION_SUFFIX = re.compile(r"_v(\d{1,6})$", re.IGNORECASE)


@dataclass(frozen=True)
class Version:
    label: str  # the column label ("zed", "v2", "zed-000004")
    lora_name: str  # what goes in the <lora:NAME:W> tag
    path: str  # the file rendered
    staged_from: str | None = None  # the epoch file this is a staged copy of


@dataclass(frozen=True)
class Target:
    name: str  # the LoRA name or the character's name
    trigger: str
    out_dir: str  # where the sheet and singles go
    default_version: Version
    character_dir: str | None = None
    references: tuple[str, ...] = ()  # reference images (the character's reference/ folder)
    arch: str | None = None  # architecture of the LoRA ("sd1", "sdxl" …) when known


def looks_like_path(text: str) -> bool:
    """A file path rather than a name as in a tag: absolute, a drive, ``~``, a ``..`` part, a backslash."""
    t = text.strip()
    return (t.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", t) is not None or "\\" in t
            or ".." in t.split("/"))


def _lookup(host: Any, name: str) -> Any:
    lookup = host.library().lookup(name)
    if lookup.status != "found":
        raise ConsistencyError(lookup.message or f"no LoRA named {name!r} in the library")
    return lookup.entry


def _trigger_of(info: Any) -> str:
    try:
        for src in info.trigger_words:
            if not getattr(src, "guessed", False) and src.words:
                return str(src.words[0])
    except Exception:
        pass
    return str(info.alias or info.name)


def _arch_of(info: Any) -> str | None:
    det = getattr(info, "detection", None)
    arch = getattr(det, "architecture", None)
    return str(arch) if arch and arch != "unknown" else None


def character_root(host: Any) -> str:
    """The character root: the Characters library's when installed, else ``characters/`` in the first
    LoRA folder."""
    try:
        characters = importlib.import_module("lib_lora.characters")
        root = getattr(characters, "character_root", None)
        if callable(root):  # character_root(setting, lora_roots): the setting, $LORA_STUDIO_CHARACTERS, default
            found = root(getattr(host.settings(), "characters_root", ""), host.lora_roots())
            if found is not None:
                return os.fspath(found)
    except ImportError:
        pass
    roots = [os.fspath(r) for r in host.lora_roots()]
    if not roots:
        raise ConsistencyError("no LoRA folder is configured")
    return os.path.join(roots[0], "characters")


def character_versions(character_dir: str) -> list[str]:
    """The character's LoRA files, newest version first (``_v<N>`` suffix, then modification time)."""
    lora_dir = os.path.join(character_dir, "lora")
    try:
        files = [os.path.join(lora_dir, f) for f in os.listdir(lora_dir) if f.lower().endswith(".safetensors")]
    except OSError:
        return []

    def key(p: str) -> tuple[int, float]:
        m = _VERSION_SUFFIX.search(os.path.splitext(os.path.basename(p))[0])
        return (int(m.group(1)) if m else -1, os.path.getmtime(p))

    return sorted(files, key=key, reverse=True)


def _images_in(folder: str) -> tuple[str, ...]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return ()
    return tuple(os.path.join(folder, n) for n in names if n.lower().endswith(IMAGE_SUFFIXES))


def resolve_target(host: Any, lora: str | None, character: str | None) -> Target:
    """The LoRA or character a sheet is for (exactly one of the two)."""
    if bool(lora) == bool(character):
        raise ConsistencyError("name either a LoRA ('lora') or a character ('character'), not both or neither")
    if lora:
        info = _lookup(host, lora)
        folder = os.path.dirname(info.path)
        version = Version(info.name, info.name, info.path)
        return Target(info.name, _trigger_of(info), os.path.join(folder, f"{info.name}.consistency"), version,
                      arch=_arch_of(info))
    assert character is not None
    if looks_like_path(character) or "/" in character:
        raise ConsistencyError(f"a character is named by its folder name, not a path: {character!r}")
    root = character_root(host)
    try:
        names = sorted(os.listdir(root))
    except OSError:
        raise ConsistencyError(f"no character folder at {root}") from None
    match = next((n for n in names if n.lower() == character.lower() and os.path.isdir(os.path.join(root, n))), None)
    if match is None:
        raise ConsistencyError(f"no character named {character!r} in {root}")
    cdir = os.path.join(root, match)
    files = character_versions(cdir)
    if not files:
        raise ConsistencyError(f"the character {match!r} has no LoRA in {os.path.join(cdir, 'lora')}")
    newest = os.path.splitext(os.path.basename(files[0]))[0]
    info = None
    try:
        info = _lookup(host, newest)
    except LoraStudioError:
        info = None
    trigger = _trigger_of(info) if info is not None else match
    return Target(match, trigger, os.path.join(cdir, "consistency"), Version(newest, newest, files[0]),
                  character_dir=cdir, references=_images_in(os.path.join(cdir, "reference")),
                  arch=_arch_of(info) if info is not None else None)


def resolve_versions(host: Any, target: Target, versions: Sequence[str] | None,
                     job_file: Callable[[str, str], str] | None) -> list[tuple[str, str | None]]:
    """(label or LoRA name, epoch file to stage or None) per requested version, checked; the target's own
    LoRA when none are given. ``job_file(job_id, file)`` returns an epoch file's path (or raises)."""
    if not versions:
        return [(target.default_version.lora_name, None)]
    out: list[tuple[str, str | None]] = []
    for v in versions:
        text = str(v).strip()
        if not text:
            raise ConsistencyError("an empty version name")
        m = _JOB_REF.match(text)
        if m:
            if job_file is None:
                raise ConsistencyError("training jobs are not available here")
            out.append((os.path.splitext(m.group(2))[0], job_file(m.group(1), m.group(2))))
            continue
        if text.startswith("job:"):
            raise ConsistencyError(f"an epoch file is named job:<id>/<file> (got {text!r})")
        if looks_like_path(text):
            raise ConsistencyError(f"versions are LoRA names, vN or job:<id>/<file>, never paths: {text!r}")
        vm = _VERSION.match(text)
        if vm and target.character_dir is not None:
            wanted = int(vm.group(1))
            for f in character_versions(target.character_dir):
                sm = _VERSION_SUFFIX.search(os.path.splitext(os.path.basename(f))[0])
                if sm and int(sm.group(1)) == wanted:
                    out.append((os.path.splitext(os.path.basename(f))[0], None))
                    break
            else:
                raise ConsistencyError(f"the character {target.name!r} has no version {text}")
            continue
        out.append((_lookup(host, text).name, None))
    return out


def job_epoch_file(jobs: Any, job_id: str, file: str) -> str:
    """The path of ``file`` in the output folder of training job ``job_id`` (a .safetensors it wrote)."""
    if not file.lower().endswith(".safetensors") or os.path.basename(file) != file or file.startswith("."):
        raise ConsistencyError(f"{file!r} is not an epoch file name (a .safetensors in the job's output folder)")
    try:
        record = jobs.get(job_id)
    except (KeyError, LookupError, LoraStudioError):
        raise ConsistencyError(f"no training job {job_id!r}") from None
    out_dir = (record.spec or {}).get("output_dir")
    if not out_dir:
        raise ConsistencyError(f"job {job_id} has no output folder")
    path = os.path.join(str(out_dir), file)
    if not os.path.isfile(path):
        raise ConsistencyError(f"job {job_id} has no file {file!r} in {out_dir}")
    return path


def job_epoch_files(jobs: Any, job_id: str) -> list[str]:
    """The ``job:<id>/<file>`` names of every .safetensors a job wrote (epochs and the final file)."""
    record = jobs.get(job_id)
    out_dir = (record.spec or {}).get("output_dir")
    try:
        names = sorted(n for n in os.listdir(str(out_dir)) if n.lower().endswith(".safetensors"))
    except (OSError, TypeError):
        return []
    return [f"job:{job_id}/{n}" for n in names]


class Staging:
    """Copies epoch files into ``<first LoRA folder>/LoRA Studio/sheet-<id>/`` (prefixed so no stem
    shadows a LoRA of the library), and removes exactly those files (and the folder when empty)."""

    def __init__(self, host: Any, sheet_id: str) -> None:
        roots = [os.fspath(r) for r in host.lora_roots()]
        if not roots:
            raise ConsistencyError("no LoRA folder to stage epoch files into")
        self.host = host
        self.folder = os.path.join(roots[0], STAGING_DIR, f"sheet-{sheet_id}")
        self.prefix = f"lst{sheet_id[:8]}_"
        self.files: list[str] = []

    def stage(self, source: str) -> Version:
        os.makedirs(self.folder, exist_ok=True)
        stem = os.path.splitext(os.path.basename(source))[0]
        dest = os.path.join(self.folder, f"{self.prefix}{stem}.safetensors")
        if not os.path.exists(dest):
            try:
                os.link(source, dest)
            except OSError:
                shutil.copyfile(source, dest)
            self.files.append(dest)
        return Version(stem, f"{self.prefix}{stem}", dest, staged_from=source)

    def refresh(self) -> None:
        """Let the WebUI's LoRA list see the change (hosts without a list have nothing to do)."""
        refresh = getattr(self.host, "refresh_lora_list", None)
        if callable(refresh):
            try:
                refresh()
            except Exception:
                pass

    def remove(self) -> None:
        for f in self.files:
            try:
                os.remove(f)
            except FileNotFoundError:
                pass
        self.files.clear()
        for d in (self.folder, os.path.dirname(self.folder)):
            try:
                os.rmdir(d)
            except OSError:
                break
        self.refresh()


__all__ = ["STAGING_DIR", "Staging", "Target", "Version", "character_root", "character_versions",
           "job_epoch_file", "job_epoch_files", "looks_like_path", "resolve_target", "resolve_versions"]
