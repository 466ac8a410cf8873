"""Showing text that came from a file (names, paths, metadata keys and values) where it can do no harm.

A LoRA's name or metadata may hold control characters, ANSI escape sequences (``ESC [``…) or Unicode bidi
controls (U+202E "right-to-left override" makes ``exe.txt`` read as ``txt.exe``). On a terminal they would
move the cursor, recolour or hide text; in HTML a bidi control still reorders what follows it. Here:

- :func:`visible` turns every such character into the six visible characters ``\\uXXXX`` (the CLI);
- :func:`html_text` does the same, then escapes for HTML (element text and attribute values), and
  :func:`html_isolated` wraps file text in ``<bdi>`` so a right-to-left name cannot reorder its neighbours
  (values a script reads back, ``data-*`` attributes, stay exact: :func:`html_data`);
- :class:`TerminalStream` wraps ``sys.stdout``/``sys.stderr`` for a CLI command so nothing printed can
  reach the terminal raw, keeping only the layout characters the commands themselves write
  (newline, tab, carriage return for progress lines); :func:`unfiltered` gives the raw stream to code that
  writes its own escape sequences (progress lines that clear to the end of the line).

Escaping ``\\u202e`` inside JSON text gives the same JSON string back, so a filtered ``--json`` document
still decodes to the exact values.
"""

from __future__ import annotations

import html
import re
from typing import Any, TextIO

#: C0 controls (minus newline, tab, carriage return: the layout set), DEL and C1 controls, and the bidi
#: marks, embeddings, overrides and isolates (U+200E/F, U+202A–E, U+2066–9), plus the Arabic letter mark
#: (U+061C) and the line/paragraph separators (U+2028/9), which also break a line or its direction.
_UNSAFE_BUT_LAYOUT = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE_RE = re.compile(f"[\t\n\r{_UNSAFE_BUT_LAYOUT}]")
_UNSAFE_KEEP_LAYOUT_RE = re.compile(f"[{_UNSAFE_BUT_LAYOUT}]")


def _code(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def visible(text: object, *, keep_layout: bool = False) -> str:
    """``text`` with every control, escape and bidi character shown as ``\\uXXXX``; ``keep_layout`` leaves
    newline, tab and carriage return as they are (whole blocks of output, not one value)."""
    s = "" if text is None else str(text)
    return (_UNSAFE_KEEP_LAYOUT_RE if keep_layout else _UNSAFE_RE).sub(_code, s)


def html_text(value: object) -> str:
    """``value`` as HTML element text or attribute value: controls made visible (newline, tab and carriage
    return are only white space in HTML and stay), then HTML-escaped."""
    return html.escape(visible(value, keep_layout=True), quote=True)


def html_data(value: object) -> str:
    """An attribute value a script reads back (``data-*``): exact once parsed, with the characters
    :func:`visible` would show written as numeric references, so none stands raw in the page."""
    return _UNSAFE_KEEP_LAYOUT_RE.sub(_reference, html.escape("" if value is None else str(value), quote=True))


def _reference(match: re.Match[str]) -> str:
    return f"&#x{ord(match.group()):x};"


def html_isolated(value: object) -> str:
    """File text for an HTML element: :func:`html_text` inside ``<bdi>`` (its direction stays its own)."""
    return f"<bdi>{html_text(value)}</bdi>"


class TerminalStream:
    """A text stream that writes everything through :func:`visible` (layout kept) to ``raw``."""

    def __init__(self, raw: TextIO) -> None:
        self.unfiltered = raw

    def write(self, text: str) -> int:
        self.unfiltered.write(visible(text, keep_layout=True))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding ...
        return getattr(self.unfiltered, name)


def unfiltered(stream: Any) -> Any:
    """The raw stream under a :class:`TerminalStream` (``stream`` itself otherwise)."""
    return stream.unfiltered if isinstance(stream, TerminalStream) else stream
