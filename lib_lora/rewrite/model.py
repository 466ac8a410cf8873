"""The rewrite's values: tag statuses, :class:`RewriteSettings`, :class:`TagResolution`, :class:`RewriteResult`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from lib_lora import settings as settings_mod

# Statuses of a tag.
RESOLVED = "resolved"
AMBIGUOUS = "ambiguous"
MISSING = "missing"
REFUSED = "refused"
SKIPPED = "skipped"
STATUSES = (RESOLVED, AMBIGUOUS, MISSING, REFUSED, SKIPPED)

#: Key of LoRA Studio's entry in the WebUI's infotext (generation parameters).
INFOTEXT_KEY = "LoRA Studio"

#: ``<base>~<8 hex>``: the alias form LoRA Studio registers for a shadowed file.
_ALIAS_RE = re.compile(r"^(?P<base>.+)~(?P<h>[0-9a-f]{8})$")


class LibraryLike(Protocol):
    """What the rewrite needs of :class:`lib_lora.library.Library`."""

    def lookup(self, name: str) -> Any: ...

    def entries(self) -> Sequence[Any]: ...


@dataclass(frozen=True)
class RewriteSettings:
    """The settings the rewrite obeys (a subset of :class:`lib_lora.settings.Settings`)."""

    enabled: bool = True
    trigger_policy: str = settings_mod.TRIGGER_INSERT
    trigger_position: str = settings_mod.POSITION_BESIDE_TAG
    emphasis_weight: float = 1.2
    incompatible: str = settings_mod.INCOMPATIBLE_WARN
    #: add the sidecar's "negative text" to the negative prompt (with trigger words on)
    insert_negative: bool = True
    #: the WebUI's "Enable comments" (on by default): a tag after ``#`` on its line is never loaded
    prompt_comments: bool = True
    #: write ``<lyco:...>`` as ``<lora:...>``: Forge registers no ``lyco`` network and drops such tags
    #: silently (A1111 registers ``lyco`` as an alias of ``lora``, so both work there)
    lyco_as_lora: bool = False

    @classmethod
    def from_settings(cls, value: Any) -> RewriteSettings:
        """From :class:`lib_lora.settings.Settings` (or anything with the same attribute names)."""
        if isinstance(value, RewriteSettings):
            return value
        kwargs = {f.name: getattr(value, f.name) for f in fields(cls) if hasattr(value, f.name)}
        return cls(**kwargs)


DEFAULT_SETTINGS = RewriteSettings()


@dataclass(frozen=True)
class TagResolution:
    """What happened to one tag."""

    original: str  # the tag as typed
    network: str  # "lora" | "lyco"
    name: str | None  # the name as typed
    status: str  # one of STATUSES
    output: str  # the tag in the rewritten prompt ("" when removed)
    path: str | None = None  # the chosen file
    relpath: str | None = None  # its path below its library root, without suffix
    matched_by: str | None = None  # "stem" | "relpath" | "alias" | "autov2" | "addnet" | "casefold" | "loader-alias"
    loader_name: str | None = None  # the name the built-in loader will look up
    compat_level: str | None = None  # "exact" | "cross-family" | "incompatible" | "unknown"; None: not checked
    compat_message: str = ""
    words_inserted: tuple[str, ...] = ()
    negative_inserted: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()  # relpaths of the files an ambiguous name matches
    reason: str = ""  # why it was refused or skipped (short)
    message: str = ""  # user-facing line ("" when nothing to say)

    @property
    def kept(self) -> bool:
        return self.status == RESOLVED

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


@dataclass(frozen=True)
class RewriteResult:
    """The rewritten prompt pair and everything the user should know about it."""

    prompt: str
    negative: str
    original_prompt: str
    original_negative: str
    tags: tuple[TagResolution, ...] = ()
    warnings: tuple[str, ...] = ()
    infotext: str = ""  # value of the "LoRA Studio" infotext entry ("" when there is nothing to record)
    inserted_words: tuple[str, ...] = ()
    negative_words: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # names of the tags removed from the prompt, whatever the reason
    #: names the WebUI glue must register in the built-in network table -> file to load
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.prompt != self.original_prompt or self.negative != self.original_negative

    @property
    def loras(self) -> tuple[tuple[str, str], ...]:
        """``(loader name, path)`` of every LoRA left in the prompt, in order."""
        return tuple((t.loader_name or "", t.path or "") for t in self.tags if t.kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "negative": self.negative,
            "original_prompt": self.original_prompt,
            "original_negative": self.original_negative,
            "changed": self.changed,
            "tags": [t.to_dict() for t in self.tags],
            "warnings": list(self.warnings),
            "infotext": self.infotext,
            "inserted_words": list(self.inserted_words),
            "negative_words": list(self.negative_words),
            "skipped": list(self.skipped),
            "aliases": dict(self.aliases),
        }
