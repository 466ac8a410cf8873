"""Stand-in of modules/ui_extra_networks.py (A1111 v1.10.x / Forge): pages, registration, item -> card.

A behavioural model of the parts an extension's page relies on: ``register_page`` (collects the pages and
the preview folders the thumbnail route may serve), ``initialize``, ``quote_js``, and ``ExtraNetworksPage``
with the real method names and call order — ``create_html(tabname, *, empty=False)`` lists the items
(``list_items``), reads user metadata for items without it, then renders each card through
``create_item_html(tabname, item, card_template)``; ``create_item_html`` without a template returns the
card's arguments (what the tree view uses). The card arguments have the real names (``style``,
``card_clicked``, ``search_terms`` as hidden ``search_terms`` spans, ``sort_keys`` as ``data-sort-*``
attributes, ``copy_path_button``, ``edit_button``, …); the default click is ``cardClicked(tabname, prompt,
neg_prompt, allow_neg)``. The templates here are short stand-ins with the same placeholders.
"""

import html
import json
import os
import urllib.parse

from modules import shared

extra_pages = []
allowed_dirs = set()

CARD_TEMPLATE = (
    '<div class="card" style="{style}" onclick="{card_clicked}" data-name="{name}" {sort_keys}>{background_image}'
    '<div class="button-row">{copy_path_button}{metadata_button}{edit_button}</div>'
    '<div class="actions"><div class="additional">{search_terms}</div><span class="name">{name}</span>'
    '<span class="description">{description}</span></div></div>'
)
PANE_TEMPLATE = (
    "<div id='{tabname}_{extra_networks_tabname}_pane' class='extra-network-pane'>"
    '<div class="extra-network-control" id="{tabname}_{extra_networks_tabname}_controls" style="display:none">'
    '<input id="{tabname}_{extra_networks_tabname}_extra_search" class="extra-network-control--search-text" '
    'type="search" placeholder="Search"></div>{pane_content}</div>'
)
PANE_DIRS_TEMPLATE = (
    '<div class="extra-network-content extra-network-content--dirs-view">'
    '<div id="{tabname}_{extra_networks_tabname}_dirs" class="extra-network-dirs">{dirs_html}</div>'
    '<div id="{tabname}_{extra_networks_tabname}_cards" class="extra-network-cards">{items_html}</div></div>'
)
COPY_PATH_BUTTON = (
    '<div class="copy-path-button card-button" title="Copy path to clipboard" '
    'onclick="extraNetworksCopyCardPath(event)" data-clipboard-text="{filename}"></div>'
)
METADATA_BUTTON = (
    '<div class="metadata-button card-button" title="Show internal metadata" '
    "onclick=\"extraNetworksRequestMetadata(event, '{extra_networks_tabname}')\"></div>"
)
EDIT_BUTTON = (
    '<div class="edit-button card-button" title="Edit metadata" '
    "onclick=\"extraNetworksEditUserMetadata(event, '{tabname}', '{extra_networks_tabname}')\"></div>"
)


def register_page(page):
    """As the real one: keep the page and recompute the folders the thumbnail route may serve."""
    extra_pages.append(page)
    allowed_dirs.clear()
    allowed_dirs.update(set(sum([x.allowed_directories_for_previews() for x in extra_pages], [])))


def initialize():
    extra_pages.clear()


def quote_js(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _UserMetadataEditor:
    """Stand-in of ui_extra_networks_user_metadata.UserMetadataEditor (its gradio parts are not modelled)."""

    def __init__(self, ui, tabname, page):
        self.ui, self.tabname, self.page = ui, tabname, page

    def create_ui(self):
        pass

    def setup_ui(self, gallery):
        pass


class ExtraNetworksPage:
    def __init__(self, title):
        self.title = title
        self.name = title.lower()
        self.extra_networks_tabname = self.name.replace(" ", "_")
        self.allow_prompt = True
        self.allow_negative_prompt = False
        self.metadata = {}
        self.items = {}
        self.card_tpl = CARD_TEMPLATE

    def refresh(self):
        pass

    def read_user_metadata(self, item, use_cache=True):
        filename = item.get("filename")
        metadata = {}
        if filename:
            sidecar = os.path.splitext(filename)[0] + ".json"
            if os.path.isfile(sidecar):
                with open(sidecar, encoding="utf8") as f:
                    metadata = json.load(f)
        if metadata.get("description") is not None:
            item["description"] = metadata["description"]
        item["user_metadata"] = metadata

    def link_preview(self, filename):
        quoted = urllib.parse.quote(filename.replace("\\", "/"))
        return f"./sd_extra_networks/thumb?filename={quoted}&mtime={os.path.getmtime(filename)}"

    def search_terms_from_path(self, filename, possible_directories=None):
        abspath = os.path.abspath(filename)
        for parentdir in (possible_directories if possible_directories is not None
                          else self.allowed_directories_for_previews()):
            parentdir = os.path.dirname(os.path.abspath(parentdir))
            if abspath.startswith(parentdir):
                return os.path.relpath(abspath, parentdir)
        return ""

    def create_item_html(self, tabname, item, template=None):
        preview = item.get("preview")
        opts = shared.opts
        style = ""
        if opts.extra_networks_card_height:
            style += f"height: {opts.extra_networks_card_height}px;"
        if opts.extra_networks_card_width:
            style += f"width: {opts.extra_networks_card_width}px;"
        style += f"font-size: {opts.extra_networks_card_text_scale * 100}%;"
        background_image = f'<img src="{html.escape(preview)}" class="preview" loading="lazy">' if preview else ""
        onclick = item.get("onclick")
        if onclick is None:
            onclick = html.escape(
                f"cardClicked('{tabname}', {item['prompt']}, {item.get('negative_prompt', chr(39) * 2)}, "
                f"{str(self.allow_negative_prompt).lower()});"
            )
        metadata_button = ""
        if item.get("metadata"):
            metadata_button = METADATA_BUTTON.format(extra_networks_tabname=self.extra_networks_tabname)
        local_path = ""
        filename = item.get("filename", "")
        for reldir in self.allowed_directories_for_previews():
            absdir = os.path.abspath(reldir)
            if filename.startswith(absdir):
                local_path = filename[len(absdir):]
        search_only = opts.extra_networks_hidden_models != "Always" and ("/." in local_path or "\\." in local_path)
        if search_only and opts.extra_networks_hidden_models == "Never":
            return ""
        sort_keys_dict = item.get("sort_keys", {})
        sort_keys_dict["SDversion"] = item.get("sd_version_str", "SdVersion.Unknown")
        sort_keys = " ".join(f'data-sort-{k}="{html.escape(str(v))}"' for k, v in sort_keys_dict.items())
        search_terms = "".join(
            f"<span class='hidden search_terms{' search_only' if search_only else ''}'>{term}</span>"
            for term in item.get("search_terms", [])
        )
        description = (item.get("description") or "") if opts.extra_networks_card_show_desc else ""
        if not opts.extra_networks_card_description_is_html:
            description = html.escape(description)
        args = {
            "background_image": background_image,
            "card_clicked": onclick,
            "copy_path_button": COPY_PATH_BUTTON.format(filename=item["filename"]),
            "description": description,
            "edit_button": EDIT_BUTTON.format(tabname=tabname, extra_networks_tabname=self.extra_networks_tabname),
            "local_preview": quote_js(item["local_preview"]),
            "metadata_button": metadata_button,
            "name": html.escape(item["name"]),
            "prompt": item.get("prompt"),
            "save_card_preview": html.escape(f"return saveCardPreview(event, '{tabname}', '{item['local_preview']}');"),
            "search_only": " search_only" if search_only else "",
            "search_terms": search_terms,
            "sort_keys": sort_keys,
            "style": style,
            "tabname": tabname,
            "extra_networks_tabname": self.extra_networks_tabname,
        }
        return template.format(**args) if template else args

    def create_card_view_html(self, tabname, *, none_message):
        res = [self.create_item_html(tabname, item, self.card_tpl) for item in self.items.values()]
        if not res:
            dirs = "".join(f"<li>{x}</li>" for x in self.allowed_directories_for_previews())
            res = [none_message or f"<div class='nocards'><ul>{dirs}</ul></div>"]
        return "".join(res)

    def create_html(self, tabname, *, empty=False):
        self.metadata = {}
        items_list = [] if empty else self.list_items()
        self.items = {x["name"]: x for x in items_list}
        for item in self.items.values():
            if item.get("metadata"):
                self.metadata[item["name"]] = item["metadata"]
            if "user_metadata" not in item:
                self.read_user_metadata(item)
        params = {"tabname": tabname, "extra_networks_tabname": self.extra_networks_tabname}
        items_html = self.create_card_view_html(tabname, none_message="Loading..." if empty else None)
        content = PANE_DIRS_TEMPLATE.format(**params, dirs_html="", items_html=items_html)
        return PANE_TEMPLATE.format(**params, pane_content=content)

    def create_item(self, name, index=None):
        raise NotImplementedError()

    def list_items(self):
        raise NotImplementedError()

    def allowed_directories_for_previews(self):
        return []

    def get_sort_keys(self, path):
        st = os.stat(path)
        return {"date_created": int(st.st_mtime), "date_modified": int(st.st_ctime),
                "name": os.path.basename(path).lower(), "path": str(path).lower()}

    def create_user_metadata_editor(self, ui, tabname):
        return _UserMetadataEditor(ui, tabname, self)


def pages_in_preferred_order(pages):
    order = [x.lower().strip() for x in shared.opts.ui_extra_networks_tab_reorder.split(",")]

    def score(name):
        for i, match in enumerate(order):
            if match and match in name.lower():
                return i
        return len(pages)

    return sorted(pages, key=lambda p: score(p.name))


def create_ui(interface, unrelated_tabs, tabname):
    """The pane of one tab: each page rendered empty first, then (on the interface's load) filled."""

    class _Ui:
        pass

    ui = _Ui()
    ui.tabname = tabname
    ui.stored_extra_pages = pages_in_preferred_order(extra_pages.copy())
    ui.pages = [page.create_html(tabname, empty=True) for page in ui.stored_extra_pages]
    ui.user_metadata_editors = [page.create_user_metadata_editor(ui, tabname) for page in ui.stored_extra_pages]
    ui.pages_contents = [page.create_html(tabname) for page in ui.stored_extra_pages]
    return ui
