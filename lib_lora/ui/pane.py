"""LoRA Studio's cards for the WebUI's extra-networks pane, as HTML (no WebUI module, no gradio).

Its one job: turn the library's catalog and the WebUI's checkpoint list into the pane's cards, each
carrying what javascript/lora_studio.js needs to work **in the browser alone**: the text one click
inserts (the same ``data-*`` attributes as the LoRA Studio tab's cards) and its compatibility against
*every* checkpoint of the dropdown, so the badges follow the selected checkpoint without a request.

Compatibility depends only on the checkpoint's detected (architecture, family, candidates, kind), so the
checkpoints are grouped into a few classes and each card carries one letter per class
(``data-lss-levels="eiu"``: exact / incompatible / unknown); the pane's wrapper maps every checkpoint title
to its class (``data-lss-classes``). A checkpoint that is not in the map (added since the pane was built)
shows ``unknown`` until the pane is refreshed.

Big libraries are windowed: the WebUI renders every page's cards into both tabs' panes, so 10,000 LoRAs
would be tens of thousands of DOM nodes. Only the first :data:`WINDOW` cards (name order) are rendered with
the page; the rest come on demand (:func:`filtered_items` / :func:`window_json` behind the API's
``GET /lora-studio/v1/pane/cards``): "show more" at the end, the pane's search box and "compatible only"
ask for the matching cards, so a filter touches only what is shown. The wrapper carries the per-class
level counts of the whole library (``data-lss-counts``) for the summary line.

The card keeps the WebUI's own card structure (``div.card`` with ``.search_terms``, ``data-sort-*``, the
copy-path button), so the WebUI's search box, sort buttons and tree view work on it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lib_lora import browse
from lib_lora.architecture import Detection
from lib_lora.ui.browser import _initials, badges_html, esc, fx, insert_attrs, triggers_html
from lib_lora.ui.pane_characters import PaneCharacter, build_characters, characters_html, characters_of

#: The page's title in the pane's tab row (its id part is ``lora_studio``).
PAGE_TITLE = "LoRA Studio"
#: One letter per compatibility level in ``data-lss-levels``.
LEVEL_CODES = {
    browse.LEVEL_EXACT: "e",
    browse.LEVEL_CROSS: "c",
    browse.LEVEL_INCOMPATIBLE: "i",
    browse.LEVEL_UNKNOWN: "u",
}
#: The badge text of each level (the words a user sees: compatible, other finetune, incompatible, unknown).
LEVEL_TEXTS = {level: browse.compat_badge(browse.CompatView(level, "")).text for level in browse.LEVELS}
#: How many cards the page renders at once (the first ones with the page, then per "show more").
WINDOW = 200


@dataclass(frozen=True)
class PaneCheckpoint:
    """One entry of the WebUI's checkpoint dropdown and its detection (``None``: unreadable)."""

    title: str
    name: str
    detection: Detection | None


@dataclass(frozen=True)
class PaneItem:
    """One LoRA of the pane: its card against the selected checkpoint and its level per checkpoint class."""

    entry: browse.Entry
    card: browse.Card
    levels: str
    preview: str | None  # URL, or None (initials are shown)
    terms: str = ""  # search_terms() unescaped: what the WebUI's search box matches


@dataclass(frozen=True)
class Pane:
    """What the pane shows: the items, and which class each checkpoint title belongs to."""

    items: tuple[PaneItem, ...]
    classes: dict[str, int]
    selected: str | None
    characters: tuple[PaneCharacter, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(browse.LEVELS, 0)
        for item in self.items:
            out[item.card.compat_level] += 1
        return out

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Per checkpoint class (its index as text; ``"-1"``: a checkpoint not in the map), the level counts."""
        n = max(self.classes.values(), default=-1) + 1
        letters = {code: level for level, code in LEVEL_CODES.items()}
        out = {str(i): dict.fromkeys(browse.LEVELS, 0) for i in range(n)}
        for item in self.items:
            for i, code in enumerate(item.levels[:n]):
                out[str(i)][letters[code]] += 1
        out["-1"] = {**dict.fromkeys(browse.LEVELS, 0), browse.LEVEL_UNKNOWN: len(self.items)}
        return out


EMPTY = Pane(items=(), classes={}, selected=None)


def _bare(title: str) -> str:
    """A1111's checkpoint title is ``name [hash]``: the part before the hash."""
    return title.rsplit(" [", 1)[0]


def build_pane(
    catalog: browse.Catalog,
    checkpoints: Sequence[PaneCheckpoint],
    selected_title: str | None,
    preview_url: Callable[[browse.Card], str | None],
    characters: Sequence[Any] = (),
) -> Pane:
    """Every entry of ``catalog`` (in name order) with its levels against every checkpoint class, and the
    cards of ``characters`` (:class:`lib_lora.characters.Character`)."""
    keys: list[Any] = []
    dets: list[Detection] = []
    classes: dict[str, int] = {}
    for ckpt in checkpoints:
        if ckpt.detection is None:
            continue
        key = browse.Catalog._ckpt_key(ckpt.detection)
        if key not in keys:
            keys.append(key)
            dets.append(ckpt.detection)
        index = keys.index(key)
        for label in (ckpt.title, ckpt.name, _bare(ckpt.title)):
            if label:
                classes.setdefault(label, index)
    selected_det = None
    if selected_title:
        index = classes.get(selected_title, classes.get(_bare(selected_title), -1))
        selected_det = dets[index] if index >= 0 else None
    items = []
    for entry in catalog.ordered(browse.SORT_NAME):
        levels = "".join(LEVEL_CODES[catalog.compat(entry, det).level] for det in dets)
        card = browse.card_for(entry, catalog.compat(entry, selected_det))
        items.append(PaneItem(entry=entry, card=card, levels=levels, preview=preview_url(card),
                              terms=raw_search_terms(entry)))
    people = build_characters(characters, catalog, dets, selected_det, LEVEL_CODES)
    return Pane(items=tuple(items), classes=classes, selected=selected_title, characters=people)


def raw_search_terms(entry: browse.Entry) -> str:
    """The text the WebUI's search box matches: the same text the LoRA Studio tab's search matches — name,
    alias, path, every trigger source, Civitai and training tags — plus base and category."""
    extra = [browse.base_badge(entry).text, entry.category or ""]
    words = " ".join([entry.search_text, *extra]).casefold().split()
    return " ".join(dict.fromkeys(words))  # each word once: the WebUI matches word by word


def search_terms(entry: browse.Entry) -> str:
    """:func:`raw_search_terms`, escaped for the card's hidden ``.search_terms``."""
    return esc(raw_search_terms(entry))


def item_search_terms(item: PaneItem) -> str:
    """The card's ``.search_terms`` text, escaped."""
    return esc(item.terms or raw_search_terms(item.entry))


def class_index(pane: Pane, checkpoint: str | None) -> int:
    """The checkpoint class of a dropdown title (``-1``: none, or not in the map)."""
    if not checkpoint:
        return -1
    return pane.classes.get(checkpoint, pane.classes.get(_bare(checkpoint), -1))


def filtered_items(pane: Pane, query: str = "", checkpoint: str | None = None,
                   compatible_only: bool = False) -> list[PaneItem]:
    """The items the pane shows for the search box's ``query`` (every space-separated part must be in the
    card's search terms, as the WebUI's own search box matches) and "compatible only" (incompatible with
    ``checkpoint`` hidden), in name order."""
    parts = query.casefold().split()
    index = class_index(pane, checkpoint) if compatible_only else -1
    out = []
    for item in pane.items:
        if index >= 0 and item.levels[index:index + 1] == "i":
            continue
        if all(part in item.terms for part in parts):
            out.append(item)
    return out


def more_html(shown: int, matched: int) -> str:
    """The "show more" bar after the cards (empty when every match is shown)."""
    if shown >= matched:
        return '<div class="lss-pane-more" hidden></div>'
    return (f'<div class="lss-pane-more" role="button" tabindex="0" data-shown="{shown}" data-matched="{matched}">'
            f"{shown:,} of {matched:,} shown · show {min(WINDOW, matched - shown):,} more</div>")


def window_json(pane: Pane, query: str = "", checkpoint: str | None = None, compatible_only: bool = False,
                offset: int = 0, limit: int = WINDOW, paths: bool = True) -> dict[str, Any]:
    """One window of matching cards as HTML (the API's ``pane/cards``) and how many match in all;
    without ``paths`` the cards have no copy-path button (the API leaves absolute paths out for remote users)."""
    matched = filtered_items(pane, query, checkpoint, compatible_only)
    part = matched[offset:offset + limit]
    html = "".join(card_html(item, {**default_args(item), "copy_path_button": "yes" if paths else ""})
                   for item in part)
    return {"html": html, "offset": offset, "shown": offset + len(part), "matched": len(matched),
            "total": len(pane.items), "more": more_html(offset + len(part), len(matched))}


def pane_open_html(pane: Pane, tabname: str) -> str:
    """The wrapper (with the checkpoint classes) and the toolbar, before the WebUI's pane."""
    counts = pane.counts
    summary = " · ".join(
        f'<span class="lss-count lss-{level}">{counts[level]} {esc(LEVEL_TEXTS[level].split(" ", 1)[-1])}</span>'
        for level in browse.LEVELS
    )
    ckpt = f"badges for <b>{esc(pane.selected)}</b>" if pane.selected else "no checkpoint selected"
    return (
        f'<div class="lss-pane" data-tabname="{esc(tabname)}" data-lss-classes="{esc(json.dumps(pane.classes))}" '
        f'data-lss-texts="{esc(json.dumps(LEVEL_TEXTS))}" data-checkpoint="{esc(pane.selected or "")}" '
        f'data-lss-counts="{esc(json.dumps(pane.class_counts()))}" data-lss-total="{len(pane.items)}" '
        f'data-lss-window="{WINDOW}" data-lss-incompatible="{counts[browse.LEVEL_INCOMPATIBLE]}">'
        '<div class="lss-pane-bar">'
        '<label class="lss-pane-only"><input type="checkbox" class="lss-pane-compat-only"> compatible only</label>'
        f'<span class="lss-pane-ckpt">{ckpt}</span> <span class="lss-pane-counts">{summary}</span>'
        '<span class="lss-hidden-note"></span>'
        "</div>"
        + characters_html(pane.characters, LEVEL_TEXTS)
    )


PANE_CLOSE = "</div>"


def pane_close_html(pane: Pane) -> str:
    """The "show more" bar (for the first window) and the wrapper's end."""
    return more_html(min(WINDOW, len(pane.items)), len(pane.items)) + PANE_CLOSE


def card_html(item: PaneItem, args: Mapping[str, Any]) -> str:
    """One card. ``args`` are the WebUI's own card arguments (``ExtraNetworksPage.create_item_html`` without
    a template): its ``style``, ``sort_keys`` and ``search_terms`` are kept, and its copy-path button (made
    again here with the path escaped: the WebUI inserts it raw)."""
    card = item.card
    if item.preview:
        preview = f'<img class="preview lss-pane-preview" src="{esc(item.preview)}" loading="lazy" alt="">'
    else:
        preview = f'<div class="lss-pane-noimg"><span>{fx(_initials(card.name))}</span></div>'
    level = card.compat_level
    return (
        f'<div class="card lss-pane-card lss-{esc(level)}" style="{esc(args.get("style", ""))}" role="button" '
        f'tabindex="0" data-lss-levels="{esc(item.levels)}" {insert_attrs(card, tooltip=False)} '
        f'{args.get("sort_keys", "")}>'
        f"{preview}"
        f'<div class="button-row">{_copy_path_button(item.entry.path) if args.get("copy_path_button") else ""}'
        '<div class="card-button lss-pane-edit" title="Edit in LoRA Studio">&#9998;</div></div>'
        '<div class="actions">'
        f'<div class="additional">{args.get("search_terms", "")}</div>'
        f'<span class="name" title="{esc(card.relpath)}: click to insert, click again to remove">{fx(card.name)}</span>'
        f"{badges_html(card, evidence=False)}{triggers_html(card)}"
        "</div></div>"
    )


def _copy_path_button(path: str) -> str:
    """The WebUI's copy-path card button (its own ``extraNetworksCopyCardPath`` does the copying)."""
    return (
        '<div class="copy-path-button card-button" title="Copy path to clipboard" '
        f'onclick="extraNetworksCopyCardPath(event)" data-clipboard-text="{esc(path)}"></div>'
    )


def pane_html(pane: Pane, tabname: str, args_for: Callable[[PaneItem], Mapping[str, Any]] | None = None) -> str:
    """The whole page without the WebUI (tests and the benchmark): wrapper, toolbar and cards."""
    shown = pane.items[:WINDOW]
    cards = "".join(card_html(item, args_for(item) if args_for else default_args(item)) for item in shown)
    return pane_open_html(pane, tabname) + f'<div class="extra-network-cards">{cards}</div>' + pane_close_html(pane)


def default_args(item: PaneItem) -> dict[str, str]:
    """Card arguments shaped like the WebUI's, for rendering without it."""
    e = item.entry
    sort_keys = {"default": "0", "name": e.name.lower(), "path": e.path.lower(), "date_modified": str(int(e.mtime))}
    return {
        "style": "",
        "sort_keys": " ".join(f'data-sort-{k}="{esc(v)}"' for k, v in sort_keys.items()),
        "search_terms": f"<span class='hidden search_terms'>{item_search_terms(item)}</span>",
        "copy_path_button": "yes",
    }


def checkpoints_of(host: Any) -> list[PaneCheckpoint]:
    """The host's checkpoints with their detections (cached by the host's detector)."""
    out = []
    try:
        refs = list(host.list_checkpoints())
    except Exception:
        refs = []
    for ref in refs:
        try:
            det = host.checkpoint_detection(ref)
        except Exception:
            det = None
        out.append(PaneCheckpoint(title=ref.title, name=ref.name, detection=det))
    return out


_LAST: list[tuple[Any, Pane]] = []  # the last pane built: the txt2img and img2img panes are built in a row


def pane_for_host(host: Any, preview_url: Callable[[browse.Card], str | None] | None = None,
                  any_selection: bool = False) -> Pane:
    """The pane of ``host``'s library against its checkpoints and its selected checkpoint (the last one is
    reused while the library, the checkpoints, their detections and the selection are unchanged; with
    ``any_selection`` also after another checkpoint was selected: the API's windows are filtered by the
    per-class levels and the script badges their cards for the dropdown's checkpoint)."""
    from lib_lora.ui.browser import preview_url_for

    catalog = browse.catalog_cache_for(host).get()
    try:
        ref = host.selected_checkpoint()
    except Exception:
        ref = None
    checkpoints = checkpoints_of(host)
    people = characters_of(host)
    key = (id(host), id(catalog), catalog.generation, ref.title if ref else None, preview_url,
           tuple((c.name, c.versions, c.references, tuple(c.prompts.trigger), c.prompts.lora) for c in people),
           tuple((c.title, c.name, c.detection and browse.Catalog._ckpt_key(c.detection)) for c in checkpoints))
    if _LAST and (_LAST[0][0] == key or any_selection and _LAST[0][0][:3] + _LAST[0][0][4:] == key[:3] + key[4:]):
        return _LAST[0][1]
    built = build_pane(catalog, checkpoints, ref.title if ref else None, preview_url or preview_url_for(host),
                       people)
    _LAST[:] = [(key, built)]
    return built
