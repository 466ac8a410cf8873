"""The one-line "LoRA Studio" infotext entry: written after a rewrite, read back from pasted parameters."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from lib_lora.rewrite.model import (
    AMBIGUOUS,
    REFUSED,
    RESOLVED,
    SKIPPED,
    TagResolution,
)

# --------------------------------------------------------------------------------------------------
# Infotext: one line, "; "-separated entries
# --------------------------------------------------------------------------------------------------
#
#   lora NAME @ RELPATH                 resolved, the loader reads NAME
#   lora NAME = LOADER @ RELPATH        resolved, written as LOADER
#   words: W, W                         trigger words inserted in the prompt
#   negative: W, W                      negative text added to the negative prompt
#   skipped NAME: REASON                removed (incompatible with the checkpoint)
#   missing NAME[: S, S, S]             removed (not found), did-you-mean suggestions
#   ambiguous NAME: C, C                removed (several files)
#   refused NAME: REASON                removed (bad name or arguments)
#   warning: TEXT
#
# Backslash escapes: names escape \ ; , : = @ ; list items \ ; , ; free text \ ; ; newlines as \n.
# The WebUI quotes the value (JSON) because it holds ':' and ','; parse_infotext accepts both forms.

_NAME_SPECIAL = "\\;,:=@"
_LIST_SPECIAL = "\\;,"
_TEXT_SPECIAL = "\\;"
_FIXED_KINDS = ("words", "negative", "skipped", "missing", "ambiguous", "refused", "warning")


@dataclass(frozen=True)
class LoraRecord:
    network: str
    name: str
    loader_name: str
    relpath: str


@dataclass(frozen=True)
class InfotextRecord:
    """What :func:`parse_infotext` reads back from a "LoRA Studio" infotext value."""

    loras: tuple[LoraRecord, ...] = ()
    words: tuple[str, ...] = ()
    negative_words: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    missing: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ambiguous: tuple[tuple[str, tuple[str, ...]], ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    def loader_paths(self) -> dict[str, str]:
        """loader name -> relative path of every LoRA recorded (to re-register aliases after a paste)."""
        return {r.loader_name: r.relpath for r in self.loras}

    def removed(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.skipped + self.refused) + tuple(n for n, _ in self.missing + self.ambiguous)


def _esc(text: str, special: str) -> str:
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch in special:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _unesc(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"n": "\n", "r": "\r"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on unescaped ``sep`` (one character); pieces keep their escapes."""
    out: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or len(out) < maxsplit):
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def _tokens(text: str) -> list[str]:
    """``text`` as escape pairs (``\\x``) and single characters."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return out


def _strip(text: str) -> str:
    """Remove unescaped spaces at both ends (an escaped ``\\ `` stays)."""
    toks = _tokens(text)
    while toks and toks[0] == " ":
        toks.pop(0)
    while toks and toks[-1] == " ":
        toks.pop()
    return "".join(toks)


def _field(text: str, special: str) -> str:
    """Escape ``text`` for one field; a space at either end is escaped so that it survives."""
    if not text:
        return ""
    head = "\\ " if text[0] == " " else _esc(text[0], special)
    if len(text) == 1:
        return head
    tail = "\\ " if text[-1] == " " else _esc(text[-1], special)
    return head + _esc(text[1:-1], special) + tail


def format_infotext(
    tags: Iterable[TagResolution],
    words: Iterable[str] = (),
    negative_words: Iterable[str] = (),
    warnings: Iterable[str] = (),
) -> str:
    """The one-line "LoRA Studio" infotext value ("" when there is nothing to record)."""
    entries: list[str] = []
    for t in tags:
        name = _field(t.name if t.name is not None else t.original, _NAME_SPECIAL)
        if t.status == RESOLVED:
            loader = "" if t.loader_name == t.name else f" = {_field(t.loader_name or '', _NAME_SPECIAL)}"
            entries.append(f"{t.network} {name}{loader} @ {_field(t.relpath or '', _NAME_SPECIAL)}")
        elif t.status == SKIPPED:
            entries.append(f"skipped {name}: {_field(t.reason, _TEXT_SPECIAL)}")
        elif t.status == REFUSED:
            entries.append(f"refused {name}: {_field(t.reason, _TEXT_SPECIAL)}")
        elif t.status == AMBIGUOUS:
            entries.append(f"ambiguous {name}: {', '.join(_field(c, _LIST_SPECIAL) for c in t.candidates)}")
        else:
            sugg = ", ".join(_field(s, _LIST_SPECIAL) for s in t.suggestions)
            entries.append(f"missing {name}" + (f": {sugg}" if sugg else ""))
    words = list(words)
    if words:
        entries.append("words: " + ", ".join(_field(w, _LIST_SPECIAL) for w in words))
    negative_words = list(negative_words)
    if negative_words:
        entries.append("negative: " + ", ".join(_field(w, _LIST_SPECIAL) for w in negative_words))
    for w in warnings:
        entries.append("warning: " + _field(w, _TEXT_SPECIAL))
    return "; ".join(entries)


def _append_warning(infotext: str, warning: str) -> str:
    entry = "warning: " + _field(warning, _TEXT_SPECIAL)
    return f"{infotext}; {entry}" if infotext else entry


def _list(text: str) -> tuple[str, ...]:
    return tuple(_unesc(_strip(p)) for p in _split(text, ",") if _strip(p))


def parse_infotext(value: str) -> InfotextRecord:
    """Read a "LoRA Studio" infotext value back (the raw value or the WebUI's JSON-quoted form).

    Unknown entries are ignored, so a newer writer never breaks an older reader.
    """
    text = value or ""
    quoted = text.strip()
    if len(quoted) >= 2 and quoted[0] == '"' and quoted[-1] == '"':
        import json

        try:
            text = json.loads(quoted)
        except ValueError:
            text = quoted[1:-1]
    loras: list[LoraRecord] = []
    words: list[str] = []
    negs: list[str] = []
    skipped: list[tuple[str, str]] = []
    missing: list[tuple[str, tuple[str, ...]]] = []
    ambiguous: list[tuple[str, tuple[str, ...]]] = []
    refused: list[tuple[str, str]] = []
    warns: list[str] = []
    for raw in _split(text, ";"):
        entry = raw.lstrip(" ")
        m = re.match(r"(\w+)([: ])", entry)
        if not m:
            continue
        kind, rest = m.group(1), entry[m.end() :]
        if m.group(2) == ":":
            body = _strip(rest)
            if kind == "words":
                words.extend(_list(body))
            elif kind == "negative":
                negs.extend(_list(body))
            elif kind == "warning":
                warns.append(_unesc(body))
            continue
        if kind in _FIXED_KINDS:
            name_part, *detail = _split(rest, ":", 1)
            name = _unesc(_strip(name_part))
            tail = _strip(detail[0]) if detail else ""
            if kind == "skipped":
                skipped.append((name, _unesc(tail)))
            elif kind == "refused":
                refused.append((name, _unesc(tail)))
            elif kind == "missing":
                missing.append((name, _list(tail)))
            elif kind == "ambiguous":
                ambiguous.append((name, _list(tail)))
            continue
        left, *at = _split(rest, "@", 1)
        if not at:
            continue
        rel = _unesc(_strip(at[0]))
        name_part, *loader_part = _split(left, "=", 1)
        name = _unesc(_strip(name_part))
        loader = _unesc(_strip(loader_part[0])) if loader_part else name
        loras.append(LoraRecord(kind, name, loader, rel))
    return InfotextRecord(
        loras=tuple(loras),
        words=tuple(words),
        negative_words=tuple(negs),
        skipped=tuple(skipped),
        missing=tuple(missing),
        ambiguous=tuple(ambiguous),
        refused=tuple(refused),
        warnings=tuple(warns),
    )
