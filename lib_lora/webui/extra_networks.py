"""The "LoRA Studio" page of the WebUI's extra-networks pane (under the txt2img and img2img prompts).

Its one job: an ``ExtraNetworksPage`` subclass (``modules/ui_extra_networks.py`` of A1111 v1.10.x and Forge)
whose cards are LoRA Studio's (:mod:`lib_lora.ui.pane`), registered from ``on_before_ui`` the way the
built-in Lora registers its own page. It is a page of its own rather than LoRA Studio's data added to the
built-in "Lora" cards: the built-in page decides which LoRAs to show by their "sd version" guess and the
*loaded* model (hiding files whose metadata lies), renders with its own templates and click handler
(``cardClicked``), and differs between A1111 and Forge; changing its cards would mean patching another
extension's class in two WebUIs. Our page uses only the documented base-class API (``list_items``,
``create_item``, ``allowed_directories_for_previews``, ``create_item_html``, ``create_html``,
``refresh``) and keeps the WebUI's card frame, so the pane's search, sort and tree view still work.
With a big library only the first window of cards is listed (the tree view and the sort buttons see
those; the search box and "show more" reach the rest through the API, see :mod:`lib_lora.ui.pane`).

The base class comes from the WebUI, so the subclass is made on first use (:func:`page_class`).
"""

from __future__ import annotations

import os
from typing import Any

from lib_lora.webui.adapter import WebUIHost, _console, _m, _opt, host

#: The page's title in the pane's tab row; its id part (``extra_networks_tabname``) is ``lora_studio``.
PAGE_TITLE = "LoRA Studio"

_CLASS: dict[int, type] = {}


def page_class() -> type:
    """``LoraStudioPage``, a subclass of the running WebUI's ``ui_extra_networks.ExtraNetworksPage``."""
    uen = _m("modules.ui_extra_networks")
    base = uen.ExtraNetworksPage
    cached = _CLASS.get(id(base))
    if cached is not None:
        return cached
    quote_js = uen.quote_js

    class LoraStudioPage(base):  # type: ignore[misc, valid-type]
        """LoRA Studio's cards in the extra-networks pane (see the module docstring)."""

        def __init__(self, studio_host: WebUIHost) -> None:
            super().__init__(PAGE_TITLE)
            self.studio_host = studio_host
            self.allow_negative_prompt = True
            from lib_lora.ui import pane

            self.pane = pane.EMPTY

        def refresh(self) -> None:
            """The pane's refresh button: rescan the LoRA folders (a warm index reads only changed files)."""
            self.studio_host.rescan(wait=True)

        def allowed_directories_for_previews(self) -> list[str]:
            return [str(p) for p in self.studio_host.lora_roots()]

        def list_items(self) -> Any:
            from lib_lora.ui import pane

            try:
                self.pane = pane.pane_for_host(self.studio_host)
            except Exception as exc:
                _console(f"the extra-networks page could not list the LoRAs: {exc}")
                self.pane = pane.EMPTY
            # The first window only: the rest comes from the API on demand (lib_lora.ui.pane's docstring).
            for index, item in enumerate(self.pane.items[: pane.WINDOW]):
                yield self._item(item, index)

        def create_item(self, name: str, index: int | None = None, enable_filter: bool = True) -> dict[str, Any] | None:
            """One card's item by name (the WebUI's ``get-single-card`` route); ``None`` if not in the library."""
            from lib_lora.ui import pane

            fresh = pane.pane_for_host(self.studio_host)
            for i, item in enumerate(fresh.items):
                if item.entry.name == name:
                    return self._item(item, i if index is None else index)
            return None

        def _item(self, item: Any, index: int) -> dict[str, Any]:
            from lib_lora.ui import pane

            entry, card = item.entry, item.card
            stem = os.path.splitext(entry.path)[0]
            text = ", ".join([card.tag, *card.insert_words])
            return {
                "name": entry.name,
                "filename": entry.path,
                "shorthash": "",
                "preview": item.preview,
                "description": "",
                "search_terms": [pane.item_search_terms(item)],
                "local_preview": f"{stem}.{_opt('samples_format', 'png')}",
                "sort_keys": {
                    "default": index,
                    "date_created": int(entry.mtime),
                    "date_modified": int(entry.mtime),
                    "name": entry.name.lower(),
                    "path": entry.path.lower(),
                },
                "user_metadata": {},  # LoRA Studio read the sidecar already; the WebUI need not
                # The tree view uses the WebUI's own click (cardClicked): the same text as a card click.
                "prompt": quote_js(text),
                "negative_prompt": quote_js(card.negative_text or ""),
                "lora_studio": item,
            }

        def create_item_html(self, tabname: str, item: dict[str, Any], template: str | None = None) -> Any:
            from lib_lora.ui import pane

            args = super().create_item_html(tabname, item)
            if not template or not isinstance(args, dict) or "lora_studio" not in item:
                return args  # the tree view asks for the arguments; a hidden item is ""
            return pane.card_html(item["lora_studio"], args)

        def create_html(self, tabname: str, *args: Any, **kwargs: Any) -> str:
            from lib_lora.ui import pane

            inner = super().create_html(tabname, *args, **kwargs)
            return pane.pane_open_html(self.pane, tabname) + inner + pane.pane_close_html(self.pane)

    _CLASS.clear()
    _CLASS[id(base)] = LoraStudioPage
    return LoraStudioPage


#: The built-in Lora extension's page in the pane (its ``extra_networks_tabname``, from the title "Lora").
BUILTIN_LORA_TABNAME = "lora"
#: The built-in page is still to be hidden once every ``on_before_ui`` has run (see :func:`before_ui_hook`).
_HIDE_PENDING: list[bool] = [False]


def before_ui_hook() -> None:
    """``on_before_ui``: register the page (the WebUI has just cleared its pages, also on Reload UI), and
    with the ``pane_hide_builtin_lora`` setting leave the built-in Lora page out of the pane.

    The built-in extension registers its page from its own ``on_before_ui``, which may run after this one
    (Forge runs LoRA Studio's first), so the page is taken out when the UI starts making its components
    (the first ``on_before_component``: every ``on_before_ui`` has run and the pane is not built yet)."""
    _HIDE_PENDING[0] = False
    try:
        uen = _m("modules.ui_extra_networks")
        studio = host()
        uen.register_page(page_class()(studio))
        if studio.settings().pane_hide_builtin_lora and not hide_builtin_page(uen):
            _HIDE_PENDING[0] = True
            _m("modules.script_callbacks").on_before_component(_hide_before_first_component)
    except Exception as exc:
        _console(f"could not add the LoRA Studio page to the extra-networks pane: {exc}")


def _hide_before_first_component(*_args: Any, **_kwargs: Any) -> None:
    if not _HIDE_PENDING[0]:
        return
    _HIDE_PENDING[0] = False
    if not hide_builtin_page(_m("modules.ui_extra_networks")):
        _console("the built-in Lora page is not in the extra-networks pane: nothing to hide")


def hide_builtin_page(uen: Any) -> bool:
    """Take the built-in Lora page out of the pane's pages (``ui_extra_networks.extra_pages``, which the
    pane is built from). Nothing else of the built-in Lora changes: ``<lora:...>`` tags still load through
    it. ``False`` if the page is not there (yet)."""
    pages = list(uen.extra_pages)
    kept = [p for p in pages if getattr(p, "extra_networks_tabname", "") != BUILTIN_LORA_TABNAME]
    if len(kept) == len(pages):
        return False
    uen.extra_pages[:] = kept
    return True
