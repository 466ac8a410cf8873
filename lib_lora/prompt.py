"""The ``<network:arg:arg...>`` tag grammar of the Stable Diffusion WebUIs: parse and format.

What A1111 v1.10 and Forge do (``modules/extra_networks.py``, ``extensions-builtin/Lora``):

* a tag is ``<(\\w+):([^>]+)>``; the second group is split on ``:`` into *items*;
* an item with exactly one ``=`` is a *named* argument (``te=0.5``), every other item is *positional*;
* the built-in Lora (also registered as ``lyco``) reads ``name = positional[0]``, ``te`` from
  ``positional[1]`` or ``te=`` (default 1.0), ``unet`` from ``positional[2]`` or ``unet=`` (default: te),
  ``dyn`` from ``positional[3]`` or ``dyn=`` (an int, default none); other named items (``lbw=`` ...)
  belong to other extensions and are kept;
* every tag is cut out of the prompt before it reaches the text encoder, registered or not; with prompt
  comments enabled (the default) text from ``#`` to the end of the line is removed first, so a tag there
  is never seen.

Parsing keeps the raw items, so :func:`format_tag` gives back the original text byte for byte for an
unchanged tag and a canonical ``<network:item:item...>`` for a changed one. Nothing here touches files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

#: The WebUI's tag pattern, verbatim in meaning: a word, a colon, anything up to the first ``>``.
TAG_RE = re.compile(r"<(\w+):([^>]+)>")

#: Networks handled by the built-in Lora extension (A1111 registers ``lyco`` as an alias of ``lora``).
LORA_NETWORKS = frozenset({"lora", "lyco"})

#: A1111 prompt comments: ``#`` up to the end of the line.
_COMMENT_RE = re.compile(r"#[^\n]*")


@dataclass(frozen=True)
class Tag:
    """One ``<network:items>`` tag.

    ``items`` are the raw ``:``-separated parts exactly as typed (no stripping, as the WebUI does).
    ``text`` is the original source text for a parsed tag (``None`` for a built or changed tag) and
    ``span`` its ``(start, end)`` in the parsed prompt.
    """

    network: str
    items: tuple[str, ...]
    span: tuple[int, int] | None = None
    text: str | None = field(default=None, compare=False)

    # -- the WebUI's reading of the items -------------------------------------------------------
    @property
    def positional(self) -> tuple[str, ...]:
        return tuple(item for item in self.items if not _is_named(item))

    @property
    def named(self) -> tuple[tuple[str, str], ...]:
        """Named items in order, as ``(key, value)``; unknown keys (``lbw``, ...) included."""
        out = []
        for item in self.items:
            if _is_named(item):
                key, value = item.split("=", 1)
                out.append((key, value))
        return tuple(out)

    def named_value(self, key: str) -> str | None:
        """The value the WebUI sees for ``key=`` (the last one wins, as in a dict)."""
        found = None
        for k, v in self.named:
            if k == key:
                found = v
        return found

    @property
    def is_lora(self) -> bool:
        return self.network in LORA_NETWORKS

    @property
    def name_index(self) -> int | None:
        """Index in ``items`` of the network name (the first positional item), or ``None``."""
        for i, item in enumerate(self.items):
            if not _is_named(item):
                return i
        return None

    @property
    def name(self) -> str | None:
        i = self.name_index
        return None if i is None else self.items[i]

    @property
    def te(self) -> float:
        """Text-encoder multiplier as the built-in Lora computes it (raises ``ValueError`` like it)."""
        pos = self.positional
        value = float(pos[1]) if len(pos) > 1 else 1.0
        named = self.named_value("te")
        return float(named) if named is not None else value

    @property
    def unet(self) -> float:
        pos = self.positional
        value = float(pos[2]) if len(pos) > 2 else self.te
        named = self.named_value("unet")
        return float(named) if named is not None else value

    @property
    def dyn(self) -> int | None:
        pos = self.positional
        value = int(pos[3]) if len(pos) > 3 else None
        named = self.named_value("dyn")
        return int(named) if named is not None else value

    @property
    def weight(self) -> float:
        """The weight shown to people: the U-Net multiplier (equal to ``te`` unless set apart)."""
        return self.unet

    def problem(self) -> str | None:
        """Why the built-in Lora would fail on this tag (it then drops *every* LoRA of the batch), or ``None``."""
        if self.name is None:
            return "no LoRA name (every argument is named)"
        for label, getter in (("weight", lambda: self.te), ("unet weight", lambda: self.unet)):
            try:
                value = getter()
            except ValueError:
                return f"{label} is not a number"
            if math.isnan(value) or math.isinf(value):
                return f"{label} is not a finite number"
        try:
            _ = self.dyn
        except ValueError:
            return "dyn is not a whole number"
        return None

    # -- changes --------------------------------------------------------------------------------
    def with_name(self, name: str) -> Tag:
        """The same tag naming ``name`` (arguments untouched); unchanged when ``name`` is already the name."""
        i = self.name_index
        if i is None:
            raise ValueError("tag has no name item")
        if self.items[i] == name:
            return self
        check_name(name)
        items = self.items[:i] + (name,) + self.items[i + 1 :]
        return replace(self, items=items, text=None)

    def with_items(self, items: Iterable[str]) -> Tag:
        items = tuple(items)
        if items == self.items:
            return self
        return replace(self, items=items, text=None)

    @property
    def changed(self) -> bool:
        return self.text is None


def _is_named(item: str) -> bool:
    # ``item.split('=', 2)`` has two parts exactly when the item holds one '='.
    return item.count("=") == 1


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be written as a tag name the WebUI reads back intact, or ``None``."""
    if not name:
        return "empty name"
    if ":" in name:
        return "a name cannot contain ':'"
    if ">" in name:
        return "a name cannot contain '>'"
    if name.count("=") == 1:
        return "a name with exactly one '=' would be read as a named argument"
    return None


def check_name(name: str) -> None:
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"cannot write {name!r} as a tag name: {problem}")


def make_tag(network: str, name: str, *args: str | float, **named: str | float) -> Tag:
    """Build a tag: ``make_tag("lora", "alice", 0.8)`` -> ``<lora:alice:0.8>``."""
    if not re.fullmatch(r"\w+", network):
        raise ValueError(f"bad network {network!r}")
    check_name(name)
    items = [name, *(_fmt_arg(a) for a in args), *(f"{k}={_fmt_arg(v)}" for k, v in named.items())]
    for item in items[1:]:
        if ":" in item or ">" in item or not item:
            raise ValueError(f"bad tag argument {item!r}")
    return Tag(network=network, items=tuple(items))


def _fmt_arg(value: str | float) -> str:
    if isinstance(value, str):
        return value
    return format_number(value)


def format_number(value: float) -> str:
    """Shortest text for a weight: 1.0 -> ``1``, 0.80 -> ``0.8``."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def format_tag(tag: Tag) -> str:
    """The tag's source text: the original for an unchanged parsed tag, canonical otherwise."""
    if tag.text is not None:
        return tag.text
    return f"<{tag.network}:{':'.join(tag.items)}>"


# --------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------

#: One piece of a parsed prompt: plain text or a tag.
Part = str | Tag


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt cut into text and tags; ``format_prompt(parsed.parts) == parsed.source``."""

    source: str
    parts: tuple[Part, ...]

    @property
    def tags(self) -> tuple[Tag, ...]:
        """Every tag the WebUI will parse (tags inside comments are text here)."""
        return tuple(p for p in self.parts if isinstance(p, Tag))

    @property
    def lora_tags(self) -> tuple[Tag, ...]:
        return tuple(t for t in self.tags if t.is_lora)

    def text(self) -> str:
        """The prompt with every tag removed, as the text encoder sees it."""
        return "".join(p for p in self.parts if isinstance(p, str))


def comment_spans(prompt: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each ``#`` comment (to the end of its line)."""
    return [m.span() for m in _COMMENT_RE.finditer(prompt)]


def parse_prompt(prompt: str, *, comments: bool = False) -> ParsedPrompt:
    """Cut ``prompt`` into text and tags the way the WebUI finds them.

    With ``comments`` (A1111's "Enable comments", on by default there) a tag that overlaps a ``#``
    comment is left as text: the WebUI removes it before it looks for tags.
    """
    spans = comment_spans(prompt) if comments and "#" in prompt else []
    parts: list[Part] = []
    pos = 0
    for m in TAG_RE.finditer(prompt):
        start, end = m.span()
        if spans and any(s < end and start < e for s, e in spans):
            continue
        if start > pos:
            parts.append(prompt[pos:start])
        parts.append(Tag(network=m.group(1), items=tuple(m.group(2).split(":")), span=(start, end), text=m.group(0)))
        pos = end
    if pos < len(prompt):
        parts.append(prompt[pos:])
    return ParsedPrompt(source=prompt, parts=_merge_text(parts))


def _merge_text(parts: Iterable[Part]) -> tuple[Part, ...]:
    out: list[Part] = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + p
                continue
        out.append(p)
    return tuple(out)


def format_prompt(parts: Iterable[Part]) -> str:
    return "".join(p if isinstance(p, str) else format_tag(p) for p in parts)


def iter_tags(prompt: str, *, comments: bool = False) -> Iterator[Tag]:
    yield from parse_prompt(prompt, comments=comments).tags


def strip_tags(prompt: str) -> str:
    """What the WebUI's extra-network parser leaves of ``prompt`` (every tag removed)."""
    return TAG_RE.sub("", prompt)


def strip_comments(prompt: str) -> str:
    """Remove ``#`` comments to the end of each line (newlines kept)."""
    return _COMMENT_RE.sub("", prompt)


def is_rooted_or_parent(name: str) -> bool:
    """True for a name that points outside the LoRA folders: absolute (``/x``, ``\\\\server``) or with ``..``.

    (A drive letter cannot appear: ``:`` ends a tag's name.)
    """
    n = name.strip().replace("\\", "/")
    if n.startswith("/"):
        return True
    return any(part == ".." for part in n.split("/"))
