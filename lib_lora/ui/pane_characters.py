"""The characters on the extra-networks pane's LoRA Studio page, as HTML (no WebUI module, no gradio).

Its one job: a card per character of the library (first reference image, loaded lazily; trigger; each LoRA
version with its compatibility against the selected checkpoint), above the LoRA cards. A click inserts
``<char:NAME>`` into the prompt of the tab the pane belongs to, a second click removes it (the same
``.lss-char-card`` / ``data-char`` as the LoRA Studio tab's Characters view, so javascript/lora_studio.js
handles both). Like the LoRA cards, each version badge carries its level for every checkpoint class
(``data-lss-levels``) so it follows the checkpoint dropdown in the browser.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lib_lora import browse
from lib_lora import characters as chars
from lib_lora.architecture import Detection
from lib_lora.safetext import html_data, html_isolated
from lib_lora.ui.browser import _initials, esc


@dataclass(frozen=True)
class PaneVersion:
    """One LoRA version of a character: its label, its level now and per checkpoint class."""

    label: str
    level: str  # a browse.LEVEL_* ("unknown" when the LoRA is not in the library)
    levels: str  # one letter per checkpoint class (pane.LEVEL_CODES)


@dataclass(frozen=True)
class PaneCharacter:
    """One character card of the pane."""

    name: str
    trigger: str
    image: str | None  # URL of the first reference image, or None (initials are shown)
    versions: tuple[PaneVersion, ...]


def _entry_for(catalog: browse.Catalog, by_path: dict[str, browse.Entry], character: chars.Character,
               version: chars.LoraVersion) -> browse.Entry | None:
    if version.path:
        return by_path.get(os.path.normcase(os.path.abspath(version.path)))
    return catalog.get(character.prompts.lora or version.stem) or catalog.get(version.stem)


def build_characters(
    characters: Sequence[chars.Character],
    catalog: browse.Catalog,
    dets: Sequence[Detection],
    selected: Detection | None,
    codes: dict[str, str],
) -> tuple[PaneCharacter, ...]:
    """The cards of ``characters``; ``dets`` are the checkpoint classes' detections in class order."""
    from lib_lora.ui.characters_view import image_url

    by_path = {os.path.normcase(os.path.abspath(e.path)): e for e in catalog.ordered(browse.SORT_NAME)}
    out = []
    for c in characters:
        versions = []
        for v in c.versions:
            entry = _entry_for(catalog, by_path, c, v)
            if entry is None:
                versions.append(PaneVersion(v.label, browse.LEVEL_UNKNOWN, "u" * len(dets)))
                continue
            levels = "".join(codes[catalog.compat(entry, det).level] for det in dets)
            versions.append(PaneVersion(v.label, catalog.compat(entry, selected).level, levels))
        out.append(PaneCharacter(
            name=c.name,
            trigger=", ".join(c.prompts.trigger),
            image=image_url(c) if c.references else None,
            versions=tuple(versions),
        ))
    return tuple(out)


def characters_of(host: Any) -> tuple[chars.Character, ...]:
    """The host's characters (none when the library cannot be read: the pane still shows the LoRAs)."""
    try:
        return tuple(chars.characters_for_host(host).characters)
    except Exception:
        return ()


def version_html(v: PaneVersion, texts: dict[str, str]) -> str:
    word = texts.get(v.level, v.level)
    return (
        f'<span class="lss-badge lss-compat lss-pane-ver lss-{esc(v.level)}" data-compat="{esc(v.level)}" '
        f'data-lss-levels="{esc(v.levels)}"><b>{esc(v.label)}</b> <span class="lss-ver-word">{esc(word)}</span></span>'
    )


def characters_html(characters: Sequence[PaneCharacter], texts: dict[str, str]) -> str:
    """The row of character cards (empty when there are none)."""
    if not characters:
        return ""
    cards = []
    for c in characters:
        if c.image:
            picture = f'<img class="lss-char-img" loading="lazy" alt="" src="{esc(c.image)}">'
        else:
            picture = f'<div class="lss-char-img lss-initials">{esc(_initials(c.name))}</div>'
        versions = "".join(version_html(v, texts) for v in c.versions) or (
            '<span class="lss-badge lss-compat-none">no LoRA yet</span>')
        cards.append(
            f'<div class="lss-char-card lss-pane-char" data-char="{html_data(c.name)}" tabindex="0" role="button" '
            f'title="click: insert &lt;char:{esc(c.name)}&gt; into the prompt, again: remove it">'
            f"{picture}"
            f'<div class="lss-char-name">{html_isolated(c.name)}</div>'
            f'<div class="lss-char-trigger">{html_isolated(c.trigger or "(trigger from the LoRA)")}</div>'
            f'<div class="lss-char-versions">{versions}</div>'
            "</div>"
        )
    return (f'<div class="lss-pane-chars" title="Characters: a click inserts &lt;char:NAME&gt;">'
            f'<span class="lss-pane-chars-title">Characters</span>{"".join(cards)}</div>')
