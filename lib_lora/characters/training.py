"""Training lands in a character: which character and version a training makes, where its LoRA goes
(``<root>/<name>/lora/<name>_v<N>.safetensors``, the next free ``N``, never an existing file), which
dataset images become reference images, and what is written when the LoRA is installed.

A new character needs a trigger word; an existing one uses its ``prompts.txt`` trigger unless another
is given. The job is trained with ``--output_name <name>_v<N>`` so that the alias kohya writes into the
file (``ss_output_name``) is its stem, and ``N`` is reserved from the start until the LoRA is placed
(:mod:`lib_lora.characters.reservation`: across processes, kept by a resumed job), so the file is placed
under exactly that name — never another one: when it is taken anyway the install fails and says so.
Before the training succeeds only the reservation is written (with the ``lora/`` folder it lives in);
``prompts.txt`` (trigger, anchor and drift phrases) and the reference images are created at install.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib_lora.characters.create import CharacterError, add_images, check_name, next_version, version_stem
from lib_lora.characters.layout import (
    IMAGE_SUFFIXES,
    LORA_DIR,
    REFERENCE_DIR,
    load_character,
    scan_characters,
)
from lib_lora.characters.promptsfile import PROMPTS_FILENAME, new_prompts_text
from lib_lora.characters.reservation import Reservation, hold, release, reserve

#: How many reference images are picked from the dataset by default.
DEFAULT_REFERENCE_COUNT = 3
#: Caption tags that say a picture is not front-facing (booru style).
_AWAY = ("from side", "profile", "from behind", "from above", "from below", "back", "looking away",
         "looking back", "looking to the side", "side view")
#: Caption tags that say it is.
_FRONT = ("looking at viewer", "facing viewer", "front view", "straight-on", "portrait", "upper body",
          "close-up", "face")


@dataclass(frozen=True)
class CharacterTraining:
    """The character a training makes a version of."""

    root: str
    name: str
    trigger: str
    version: int
    new: bool

    @property
    def folder(self) -> str:
        return os.path.join(self.root, self.name)

    @property
    def output_name(self) -> str:
        return version_stem(self.name, self.version)

    def intent(self, references: Sequence[str]) -> dict[str, Any]:
        """What the job record keeps for the install (``meta["install"]["character"]``)."""
        return {"root": self.root, "name": self.name, "trigger": self.trigger, "version": self.version,
                "new": self.new, "references": [os.path.abspath(r) for r in references]}


def character_training(root: str | os.PathLike[str] | None, name: str, trigger: str | None = None,
                       pending: Sequence[Mapping[str, Any]] = ()) -> CharacterTraining:
    """The character ``name`` under ``root`` (an existing one, matched case-insensitively, or a new one).
    ``pending`` are the :meth:`CharacterTraining.intent` of trainings started but not installed yet: the
    version numbers they were trained under are taken too, so two trainings started one after the other
    are not both trained as ``_v1``."""
    if root is None:
        raise CharacterError("there is no characters folder (no LoRA folder, no setting, no LORA_STUDIO_CHARACTERS)")
    base = Path(root)
    existing = scan_characters(base).find(name) if base.is_dir() else None
    given = (trigger or "").strip()
    if existing is not None:
        word = given or next(iter(existing.prompts.trigger), "")
        if not word:
            raise CharacterError(
                f"character {existing.name!r} has no trigger in its prompts.txt: give one (--trigger)"
            )
        version = max(next_version(existing.folder, existing.name), _after_pending(base, existing.name, pending))
        return CharacterTraining(str(base), existing.name, word, version, False)
    checked = check_name(name)
    if not given:
        raise CharacterError(f"{checked!r} is a new character: give its trigger word (--trigger)")
    return CharacterTraining(str(base), checked, given, _after_pending(base, checked, pending), True)


def _after_pending(root: Path, name: str, pending: Sequence[Mapping[str, Any]]) -> int:
    """One more than the highest version ``pending`` trainings of ``name`` under ``root`` hold (1: none)."""
    highest = 0
    for intent in pending:
        try:
            same = (str(intent.get("name", "")).casefold() == name.casefold()
                    and os.path.normcase(os.path.abspath(str(intent.get("root", "")))) == os.path.normcase(
                        os.path.abspath(root)))
            if same:
                highest = max(highest, int(intent.get("version") or 0))
        except (TypeError, ValueError):
            continue
    return highest + 1


def _caption(image: Path, extension: str) -> str:
    for ext in (extension, ".txt", ".caption"):
        path = image.with_suffix(ext)
        try:
            return path.read_text(encoding="utf-8", errors="replace").lower()
        except OSError:
            continue
    return ""


def _tags(caption: str) -> set[str]:
    return {t.strip() for t in re.split(r"[,\n]", caption) if t.strip()}


def dataset_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The images of a dataset: a flat folder, or the ``<repeats>_<name>`` folders of a kohya parent."""
    base = Path(folder)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if f.lower().endswith(IMAGE_SUFFIXES))
    return sorted(found, key=lambda p: p.as_posix().casefold())


def pick_references(folder: str | os.PathLike[str], caption_extension: str = ".txt",
                    count: int = DEFAULT_REFERENCE_COUNT) -> list[str]:
    """A few front-facing dataset images (as their captions say: ``looking at viewer`` and no
    ``from side`` / ``profile`` / ``from behind`` …); without such captions the first images."""
    scored: list[tuple[int, int, Path]] = []
    for order, image in enumerate(dataset_images(folder)):
        tags = _tags(_caption(image, caption_extension))
        if any(t in tags for t in _AWAY):
            continue
        score = sum(1 for t in _FRONT if t in tags)
        scored.append((-score, order, image))
    scored.sort()
    return [str(p) for _, _, p in scored[:count]]


def reserve_training(training: CharacterTraining, pending: Sequence[Mapping[str, Any]] = ()
                     ) -> tuple[CharacterTraining, Reservation]:
    """Reserve the version ``training`` makes (the next free one: another process may have taken its
    number meanwhile), for this process until :func:`hold_version` gives it to the job."""
    res = reserve(training.folder, training.name, at_least=_after_pending(Path(training.root), training.name, pending))
    return dataclasses.replace(training, version=res.version), res


def _version_of(intent: Mapping[str, Any]) -> tuple[str, str, int]:
    try:
        version = int(intent.get("version") or 0)
    except (TypeError, ValueError):
        version = 0
    return os.path.join(str(intent["root"]), str(intent["name"])), str(intent["name"]), version


def hold_version(intent: Mapping[str, Any], job: str, jobs_dir: str, owners: Collection[str | None],
                 *, create: bool = False) -> Reservation | None:
    """Give the version of a job's character intent to ``job`` (taken over from ``owners``; with
    ``create`` reserved anew when nobody holds it). Raises :class:`CharacterError` when it is taken."""
    folder, name, version = _version_of(intent)
    if version <= 0:
        return None
    return hold(folder, name, version, job=job, jobs_dir=jobs_dir, owners=owners, create=create)


def release_version(intent: Mapping[str, Any], owners: Collection[str | None]) -> bool:
    """Give a job's version back (its LoRA was placed, or it can no longer place one)."""
    folder, name, version = _version_of(intent)
    return version > 0 and release(folder, name, version, owners)


def destination_args(intent: Mapping[str, Any]) -> tuple[str, str, Any, bool]:
    """``(folder, stem, numbering, exact)`` of a character's version, for :class:`lib_lora.train.placement.
    Destination`: exactly ``<name>_v<N>``, the version it was trained as (``--output_name``, so the alias
    in the file is its stem) — never another name; only an intent without a version (an older job record)
    takes the next free one, counted now."""
    folder, name, trained = _version_of(intent)
    first = trained if trained > 0 else next_version(folder, name)

    def numbering(stem: str, n: int) -> str:
        return version_stem(stem, first + n - 1)

    return os.path.join(folder, LORA_DIR), name, numbering, trained > 0


def finish_install(intent: Mapping[str, Any]) -> list[str]:
    """After the LoRA is in ``lora/``: ``prompts.txt`` for a new character, the picked reference images
    copied into ``reference/`` (one already there under its name and size is not copied again).
    Returns notes for the install message."""
    folder = Path(str(intent["root"])) / str(intent["name"])
    notes: list[str] = []
    try:
        for sub in (LORA_DIR, REFERENCE_DIR, "expressions"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        with open(folder / PROMPTS_FILENAME, "x", encoding="utf-8", newline="") as fh:
            fh.write(new_prompts_text(trigger=str(intent.get("trigger") or "")))
    except FileExistsError:
        pass  # an existing character keeps its own prompts.txt
    except OSError as exc:
        notes.append(f"no prompts.txt: {exc.strerror or exc}")
    refs = [r for r in intent.get("references") or [] if os.path.isfile(r)]
    target = folder / REFERENCE_DIR
    todo = [r for r in refs if not _same_file_there(r, target)]
    if todo:
        try:
            add_images(load_character(folder), todo)
        except CharacterError as exc:
            notes.append(f"reference images not copied: {exc}")
    return notes


def _same_file_there(image: str, folder: Path) -> bool:
    there = folder / Path(image).name
    try:
        return there.is_file() and there.stat().st_size == os.path.getsize(image)
    except OSError:
        return False
