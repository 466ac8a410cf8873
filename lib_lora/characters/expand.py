"""``<char:NAME[:vN][:WEIGHT]>``: expand a character tag into what keeps the character stable.

For each tag (outside ``#`` comments when prompt comments are on) the character ``NAME`` (its folder
name, matched case-insensitively) is looked up and the tag is replaced by

* the LoRA tag of the chosen version (``vN``; default the newest) at the tag's ``WEIGHT``, else the
  ``lora weight`` of ``prompts.txt``, else the LoRA's sidecar preferred weight, else 1;
* the trigger word(s) weighted by ``trigger weight`` (default 1.3): ``(mychar001:1.3)`` — from
  ``prompts.txt``, else from the LoRA's own trigger sources (:func:`lib_lora.triggers.inserted_source`);
* the anchor phrases (default "same character, consistent appearance");

and the drift phrases (default "different person, character change, inconsistent appearance") are
added to the negative prompt. Every phrase goes in only once (not when the prompt already holds it,
whatever its weight or brackets, and once for two characters sharing it). Trigger, anchors and drift can
each be switched off in the settings (:class:`ExpandSettings`) and per character (``use trigger: no`` …
in ``prompts.txt``). An unknown character or version is removed with a warning and a "did you mean".

The result is plain text: pasting the expanded prompt reproduces the image without the library.
:attr:`Expansion.record` is the ``Characters`` infotext value (``alice v2, bob``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from lib_lora.characters.layout import Character, CharacterLibrary, LoraVersion
from lib_lora.prompt import TAG_RE, comment_spans, format_number, strip_comments
from lib_lora.triggers import PresenceIndex, emphasize, inserted_source, missing_phrases

CHAR_NETWORK = "char"
INFOTEXT_KEY = "Characters"
_VERSION_ARG = re.compile(r"^v(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class ExpandSettings:
    """Which parts a ``<char:...>`` tag expands to (the LoRA tag always, when the character has one)."""

    character_trigger: bool = True
    character_anchors: bool = True
    character_drift: bool = True
    prompt_comments: bool = True

    @classmethod
    def from_settings(cls, value: Any) -> ExpandSettings:
        if isinstance(value, ExpandSettings):
            return value
        return cls(**{f.name: bool(getattr(value, f.name)) for f in fields(cls) if hasattr(value, f.name)})


@dataclass(frozen=True)
class CharacterUse:
    """One expanded tag: which character and version, and what it put into the prompts."""

    name: str
    version: str | None  # "v2", a stem for an unnumbered file, None without a LoRA
    lora_tag: str | None
    inserted: tuple[str, ...] = ()
    negative_inserted: tuple[str, ...] = ()

    @property
    def record(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "lora_tag": self.lora_tag,
                "inserted": list(self.inserted), "negative_inserted": list(self.negative_inserted)}


@dataclass(frozen=True)
class Expansion:
    """The prompt pair with every ``<char:...>`` tag expanded."""

    prompt: str
    negative: str
    uses: tuple[CharacterUse, ...] = ()
    warnings: tuple[str, ...] = ()
    negative_added: tuple[str, ...] = ()

    @property
    def record(self) -> str:
        """The ``Characters`` infotext value: each character once, in order (``""`` for none)."""
        seen: dict[str, None] = {}
        for use in self.uses:
            seen.setdefault(use.record, None)
        return ", ".join(seen)


def has_character_tags(prompt: str) -> bool:
    return "<char:" in (prompt or "").lower()


def character_names(prompt: str, *, comments: bool = True) -> list[str]:
    """The NAMEs of the prompt's ``<char:NAME...>`` tags, in order, each once."""
    names: dict[str, None] = {}
    for m in _char_tags(prompt or "", comments):
        name = _parse_args(m.group(2).split(":")).name
        if name:
            names.setdefault(name, None)
    return list(names)


def _char_tags(prompt: str, comments: bool) -> list[re.Match[str]]:
    spans = comment_spans(prompt) if comments and "#" in prompt else []
    out = []
    for m in TAG_RE.finditer(prompt):
        if m.group(1).lower() != CHAR_NETWORK:
            continue
        start, end = m.span()
        if spans and any(s < end and start < e for s, e in spans):
            continue
        out.append(m)
    return out


@dataclass(frozen=True)
class _Args:
    name: str
    version: int | None
    weight: float | None
    problems: tuple[str, ...]


def _parse_args(items: Sequence[str]) -> _Args:
    name = items[0].strip() if items else ""
    version: int | None = None
    weight: float | None = None
    problems: list[str] = []
    for raw in items[1:]:
        item = raw.strip()
        if not item:
            continue
        m = _VERSION_ARG.match(item)
        if m:
            version = int(m.group(1))
            continue
        try:
            number = float(item)
        except ValueError:
            problems.append(f"argument {item!r} is neither a version (v2) nor a weight (0.8)")
            continue
        if number != number or abs(number) == float("inf"):
            problems.append(f"argument {item!r} is not a usable weight")
            continue
        weight = number
    return _Args(name=name, version=version, weight=weight, problems=tuple(problems))


def _entry_for(character: Character, version: LoraVersion, library: Any) -> tuple[str, Any]:
    """The name to put into ``<lora:NAME>`` and the library entry (``None`` when not indexed)."""
    if library is None:
        return (character.prompts.lora or version.stem) if version.recorded else version.stem, None
    if version.recorded:
        name = character.prompts.lora or version.stem
        try:
            found = library.lookup(name)
        except Exception:
            return name, None
        return name, getattr(found, "entry", None) if getattr(found, "status", "") == "found" else None
    getter = getattr(library, "get", None)
    entry = None
    if getter is not None:
        try:
            entry = getter(version.path)
        except Exception:
            entry = None
    if entry is None:
        try:
            entry = next((e for e in library.entries() if getattr(e, "path", None) == version.path), None)
        except Exception:
            entry = None
    if entry is None:
        return version.stem, None
    return str(getattr(entry, "relpath", "") or version.stem), entry


def _outside_roots(path: str | None, library: Any) -> str | None:
    """A warning when a character's LoRA file lies outside every LoRA folder (the WebUI cannot load it)."""
    roots = getattr(library, "roots", None)
    if not path or not roots:
        return None
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(str(root))
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return None
    folder = os.path.dirname(os.path.dirname(os.path.dirname(path)))
    return (f"{path} is outside the LoRA folders, so the WebUI cannot load it: add {folder} to the "
            "'Extra LoRA folders' setting (or keep the characters folder inside a LoRA folder)")


def _preferred_weight(entry: Any) -> float | None:
    user = getattr(getattr(entry, "sidecars", None), "user", None)
    weight = getattr(user, "weight", None)
    return float(weight) if isinstance(weight, (int, float)) and weight else None


def _join(before: str, text: str, after: str) -> str:
    """``text`` with the separators it needs between ``before`` and ``after``."""
    if not text:
        return ""
    if before and before[-1] not in " \t\n,([{":
        text = ", " + text
    tail = after.lstrip(" \t")
    if tail and tail[0] not in ",)\n]}":
        text = text + ("," if after[:1] in (" ", "\t") else ", ")
    return text


def expand_characters(
    prompt: str,
    negative: str,
    characters: CharacterLibrary | None,
    *,
    library: Any = None,
    settings: ExpandSettings | Any = None,
) -> Expansion:
    """Expand every ``<char:...>`` tag of ``prompt`` and add drift phrases to ``negative``."""
    cfg = ExpandSettings.from_settings(settings) if settings is not None else ExpandSettings()
    prompt = prompt or ""
    negative = negative or ""
    tags = _char_tags(prompt, cfg.prompt_comments)
    if not tags:
        return Expansion(prompt=prompt, negative=negative)
    visible = TAG_RE.sub(" ", strip_comments(prompt) if cfg.prompt_comments else prompt)
    present = PresenceIndex(visible)
    neg_present = PresenceIndex(strip_comments(negative) if cfg.prompt_comments else negative)
    pieces: list[str] = []
    uses: list[CharacterUse] = []
    warnings: list[str] = []
    neg_added: list[str] = []
    pos = 0
    for m in tags:
        before = prompt[pos : m.start()]
        pieces.append(before)
        text, use, warns, negs = _expand_one(m, characters, library, cfg, present, neg_present)
        warnings.extend(w for w in warns if w not in warnings)
        neg_added.extend(negs)
        if use is not None:
            uses.append(use)
        pieces.append(_join("".join(pieces), text, prompt[m.end() :]))
        pos = m.end()
    pieces.append(prompt[pos:])
    new_negative = negative
    if neg_added:
        body = negative.rstrip()
        tail = ", ".join(neg_added)
        new_negative = f"{body.rstrip(',')}, {tail}" if body.strip(", ") else tail
    return Expansion(
        prompt="".join(pieces),
        negative=new_negative,
        uses=tuple(uses),
        warnings=tuple(warnings),
        negative_added=tuple(neg_added),
    )


def _expand_one(
    m: re.Match[str],
    characters: CharacterLibrary | None,
    library: Any,
    cfg: ExpandSettings,
    present: PresenceIndex,
    neg_present: PresenceIndex,
) -> tuple[str, CharacterUse | None, list[str], list[str]]:
    original = m.group(0)
    args = _parse_args(m.group(2).split(":"))
    warnings = [f"{original}: {p}; ignored" for p in args.problems]
    if not args.name:
        return "", None, [*warnings, f"removed {original}: no character name"], []
    character = characters.find(args.name) if characters is not None else None
    if character is None:
        sugg = characters.suggestions(args.name) if characters is not None else ()
        did = f" (did you mean {', '.join(sugg)}?)" if sugg else ""
        where = "" if characters is not None and characters.characters else " (no characters are set up)"
        return "", None, [*warnings, f"character '{args.name}' not found{did}{where}; removed from the prompt"], []
    prompts = character.prompts
    version = character.version(args.version) if prompts.use_lora else None
    if args.version is not None and version is None and prompts.use_lora:
        have = ", ".join(v.label for v in character.versions) or "none"
        msg = f"character '{character.name}' has no version v{args.version} (versions: {have}); removed from the prompt"
        return "", None, [*warnings, msg], []

    parts: list[str] = []
    entry = None
    lora_tag = None
    if version is not None:
        lora_name, entry = _entry_for(character, version, library)
        outside = _outside_roots(version.path, library) if entry is None else None
        if outside:
            warnings.append(outside)
        weight = args.weight if args.weight is not None else prompts.lora_weight
        if weight is None:
            weight = _preferred_weight(entry) if entry is not None else None
        lora_tag = f"<lora:{lora_name}:{format_number(1.0 if weight is None else weight)}>"
        parts.append(lora_tag)
    inserted: list[str] = []
    if cfg.character_trigger and prompts.use_trigger:
        words = prompts.trigger
        if not words and entry is not None:
            source = inserted_source(entry)
            words = source.words if source is not None else ()
        weight = prompts.trigger_weight
        for word in missing_phrases(words, present):
            shown = word if abs(weight - 1.0) < 1e-9 else emphasize(word, weight)
            parts.append(shown)
            inserted.append(shown)
    if cfg.character_anchors and prompts.use_anchors:
        for phrase in missing_phrases(prompts.anchors, present):
            parts.append(phrase)
            inserted.append(phrase)
    negs: list[str] = []
    if cfg.character_drift and prompts.use_drift:
        negs = missing_phrases(prompts.drift, neg_present)
    use = CharacterUse(
        name=character.name,
        version=version.label if version is not None else None,
        lora_tag=lora_tag,
        inserted=tuple(inserted),
        negative_inserted=tuple(negs),
    )
    return ", ".join(parts), use, warnings, negs
