"""The LoRA browser panel: a Gradio builder that takes a :class:`~lib_lora.host.Host` (no WebUI import).

Rendering: one page of cards is a single HTML string made server-side from :mod:`lib_lora.browse`
view-models (never one Gradio component per LoRA), so 10,000 LoRAs cost one ``gr.HTML`` update of ~50
cards. Every string that reaches the HTML is escaped here (:mod:`lib_lora.safetext`): control, escape and
bidi characters of file text are shown as ``\\uXXXX`` and file text sits in ``<bdi>``; ``data-*`` values the
script reads back stay exact.

Behaviour lives in ``javascript/lora_studio.js``: a click on a card inserts ``<lora:name:weight>`` and the
trigger words into the active prompt at the cursor (a second click removes them); the checkpoint
dropdown is watched and its value sent back through a hidden command box, so compatibility badges
follow the selected checkpoint by themselves.

The panel talks to JavaScript through two hidden components: ``#lora_studio_cmd`` (a JSON command) and
``#lora_studio_cmd_btn`` (clicked after the box is written). Commands: ``{"op": "checkpoint", "title": …}``,
``{"op": "select", "name": …}``, ``{"op": "page", "page": N}``.

The HTML renderers (:func:`render_page_html`, :func:`render_detail_html`, …) need no gradio and are
used by the benchmark and the tests.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lib_lora import browse, safetext
from lib_lora.ui import remote_panel

PANEL_ID = "lora_studio_browser"
ALL_BASES = "All base models"
AUTO = "(detected)"
NO_CATEGORY = "(none / automatic)"
SORT_LABELS = {"Name": browse.SORT_NAME, "Newest": browse.SORT_DATE, "Base model": browse.SORT_BASE}
CATEGORY_ALL = "All categories"


#: text for HTML element content or a shown attribute (``title``): controls visible, HTML-escaped
esc = safetext.html_text
#: file text as element content: :func:`esc` isolated in ``<bdi>``
fx = safetext.html_isolated


#: a ``data-*`` attribute value the script reads back: exact once parsed
data = safetext.html_data


# --------------------------------------------------------------------------------------------------
# preview URLs


def default_preview_url(card: browse.Card) -> str | None:
    """The API's preview route (used when the host has no ``preview_url``)."""
    if not card.preview:
        return None
    return f"lora-studio/v1/previews/{urllib.parse.quote(card.name, safe='/')}?v={int(card.mtime)}"


def preview_url_for(host: Any) -> Callable[[browse.Card], str | None]:
    fn = getattr(host, "preview_url", None)
    if callable(fn):

        def from_host(card: browse.Card) -> str | None:
            if not card.preview:
                return None
            try:
                url = fn(card.preview)
            except Exception:
                url = None
            return url or default_preview_url(card)

        return from_host
    return default_preview_url


# --------------------------------------------------------------------------------------------------
# HTML


def _initials(name: str) -> str:
    parts = [p for p in name.replace("_", " ").replace("-", " ").split() if p]
    return "".join(p[0] for p in parts[:2]).upper() or "?"


def _facts_text(t: browse.TrainingFacts) -> str:
    bits = []
    if t.images:
        bits.append(f"{t.images} images")
    if t.steps:
        bits.append(f"{t.steps} steps")
    if t.epochs:
        bits.append(f"{t.epochs} epochs")
    if t.resolution:
        bits.append(t.resolution)
    if t.base_checkpoint:
        bits.append(f"on {t.base_checkpoint}")
    return " · ".join(bits)


def badges_html(card: browse.Card, *, evidence: bool = True) -> str:
    """The card's badges: base (+ family), compatibility, adapter (+ rank), category. ``evidence``: the
    tooltips give the detection's evidence and the compatibility message (left out where thousands of
    cards are sent and the badge changes in the browser)."""
    base_title = card.base.title if evidence else "base model: " + card.base.text
    compat_title = f' title="{esc(card.compat.title)}"' if evidence else ""
    badges = [
        f'<span class="lss-badge lss-base lss-{esc(card.base.kind)}" title="{esc(base_title)}">{esc(card.base.text)}</span>',
        f'<span class="lss-badge lss-compat lss-{esc(card.compat_level)}"{compat_title}>{esc(card.compat.text)}</span>',
        f'<span class="lss-badge lss-adapter">{esc(card.adapter)}'
        + (f" {esc(card.rank_alpha)}" if card.rank_alpha else "")
        + "</span>",
    ]
    if card.category:
        guessed = card.category_source == "guess"
        badges.append(
            f'<span class="lss-badge lss-cat{" lss-guess" if guessed else ""}" '
            f'title="category ({esc(card.category_source)})">{fx(card.category)}{"?" if guessed else ""}</span>'
        )
    return f'<div class="lss-badges">{"".join(badges)}</div>'


def triggers_html(card: browse.Card) -> str:
    """The words one click inserts, else (marked as a guess, not inserted) the top training tags."""
    words = list(card.insert_words)
    if words:
        return '<div class="lss-triggers">' + " ".join(f"<code>{fx(w)}</code>" for w in words) + "</div>"
    guessed_words = [w for g in card.triggers if g.guessed for w in g.words][:3]
    if guessed_words:
        return (
            '<div class="lss-triggers lss-guessed" title="most frequent training tags (a guess, not inserted)">'
            + " ".join(f"<code>{fx(w)}</code>" for w in guessed_words)
            + "</div>"
        )
    return ""


def insert_attrs(card: browse.Card, *, tooltip: bool = True) -> str:
    """The data attributes javascript/lora_studio.js inserts and removes a card's text with, and its tooltip."""
    words = list(card.insert_words)
    title = f"Click: insert {card.tag}" + (f" + {', '.join(words)}" if words else "") + " · click again: remove"
    return (
        f'data-name="{data(card.name)}" data-tag="{data(card.tag)}" data-words="{data(json.dumps(words))}" '
        f'data-neg="{data(card.negative_text)}" data-compat="{data(card.compat_level)}"'
        + (f' title="{esc(title)}"' if tooltip else "")
    )


def render_card(card: browse.Card, preview_url: Callable[[browse.Card], str | None]) -> str:
    url = preview_url(card)
    if url:
        preview = f'<div class="lss-preview" style="background-image:url(&quot;{esc(url)}&quot;)"></div>'
    else:
        preview = f'<div class="lss-preview lss-noimg"><span>{fx(_initials(card.name))}</span></div>'
    lic = ""
    if card.license_summary:
        lic = f'<div class="lss-license lss-com-{esc(card.commercial)}" title="{esc(card.license_summary)}">{fx(card.license_summary)}</div>'
    facts = _facts_text(card.training)
    facts_html = f'<div class="lss-facts">{fx(facts)}</div>' if facts else ""
    if card.training.top_tags:
        facts_html += '<div class="lss-tags">' + fx(", ".join(card.training.top_tags[:5])) + "</div>"
    return (
        f'<div class="lss-card lss-card-{esc(card.compat_level)}" role="button" tabindex="0" {insert_attrs(card)}>'
        f"{preview}"
        f'<div class="lss-body"><div class="lss-name" title="{esc(card.relpath)}">{fx(card.name)}</div>'
        f"{badges_html(card)}{triggers_html(card)}{lic}{facts_html}</div>"
        f"{remote_panel.card_html(card)}"
        f'<button class="lss-info" type="button" data-action="select" title="Details and edit">i</button>'
        "</div>"
    )


def render_page_html(
    page: browse.Page,
    preview_url: Callable[[browse.Card], str | None] = default_preview_url,
    *,
    status: str = "",
    demo: bool = False,
) -> str:
    q = page.query
    ckpt = (
        f'badges for <b>{fx(page.checkpoint)}</b> <span class="lss-badge lss-base">{esc(page.checkpoint_base)}</span>'
        if page.checkpoint
        else "no checkpoint selected: compatibility unknown"
    )
    counts = page.counts
    summary_bits = [f"<b>{page.matched}</b> of {page.total} LoRAs"]
    if page.checkpoint:
        summary_bits.append(
            f'<span class="lss-count lss-exact">{counts.get("exact", 0)} compatible</span>'
            f' <span class="lss-count lss-cross-family">{counts.get("cross-family", 0)} other finetune</span>'
            f' <span class="lss-count lss-incompatible">{counts.get("incompatible", 0)} incompatible</span>'
            f' <span class="lss-count lss-unknown">{counts.get("unknown", 0)} unknown</span>'
        )
    if page.hidden_incompatible:
        summary_bits.append(
            f'<span class="lss-hidden-note">{page.hidden_incompatible} incompatible hidden by "compatible only"</span>'
        )
    head = (
        f'<div class="lss-head"><span class="lss-summary">{" · ".join(summary_bits)}</span>'
        f'<span class="lss-ckpt">{ckpt}</span>'
        + ('<span class="lss-demo">demo library</span>' if demo else "")
        + (f'<span class="lss-status">{esc(status)}</span>' if status else "")
        + "</div>"
    )
    if page.cards:
        body = '<div class="lss-grid">' + "".join(render_card(c, preview_url) for c in page.cards) + "</div>"
    elif page.total == 0:
        body = '<div class="lss-empty">No LoRAs found in the LoRA folders yet. Add .safetensors files and press Rescan.</div>'
    else:
        body = '<div class="lss-empty">No LoRA matches these filters.</div>'
    nav = ""
    if page.pages > 1:
        links = []
        for n in _page_numbers(page.page, page.pages):
            if n is None:
                links.append('<span class="lss-gap">…</span>')
            elif n == page.page:
                links.append(f'<span class="lss-pg lss-current">{n}</span>')
            else:
                links.append(f'<a class="lss-pg" href="#" data-page="{n}">{n}</a>')
        nav = f'<div class="lss-pages">page {page.page} of {page.pages}: {"".join(links)}</div>'
    return (
        f'<div class="lss-root" data-checkpoint="{data(page.checkpoint or "")}" data-page="{page.page}" '
        f'data-pages="{page.pages}" data-matched="{page.matched}" data-sort="{esc(q.sort)}" '
        f'data-ms="{page.elapsed_ms:.1f}" data-rendered="{time.time():.3f}">{head}{body}{nav}</div>'
    )


def _page_numbers(current: int, pages: int) -> list[int | None]:
    wanted = {1, pages, current - 2, current - 1, current, current + 1, current + 2}
    out: list[int | None] = []
    last = 0
    for n in sorted(x for x in wanted if 1 <= x <= pages):
        if n - last > 1:
            out.append(None)
        out.append(n)
        last = n
    return out


def _base_provenance(base: dict[str, Any]) -> str:
    """" (your override)" only for the user's own base; " (civitai)" / " (model card)" for a fetched family."""
    if base.get("user_override"):
        return " <i>(your override)</i>"
    source = base.get("source")
    if source in ("civitai", "model card"):
        return f' <i class="lss-base-from">({esc(source)})</i>'
    return ""


def render_detail_html(detail: dict[str, Any] | None, *, message: str = "") -> str:
    if not detail:
        return f'<div class="lss-detail lss-empty">{esc(message or "Click i on a card for details and to edit its metadata.")}</div>'
    rows: list[tuple[str, str]] = []
    rows.append(("File", fx(detail.get("relpath"))))
    if detail.get("alias") and detail.get("alias") != detail.get("name"):
        rows.append(("Alias (ss_output_name)", fx(detail["alias"])))
    base = detail.get("base") or {}
    rows.append(
        (
            "Base model",
            esc(base.get("text")) + _base_provenance(base),
        )
    )
    compat = detail.get("compatibility") or {}
    rows.append(
        (
            "Compatibility",
            f'<span class="lss-badge lss-compat lss-{esc(compat.get("level"))}">{esc(compat.get("level"))}</span> '
            + esc(compat.get("message")),
        )
    )
    rows.append(("Type", esc(f"{detail.get('adapter')} {detail.get('rank_alpha') or ''}".strip())))
    targets = detail.get("targets") or []
    if targets:
        rows.append(("Trains", esc(", ".join(targets))))
    cat = detail.get("category")
    rows.append(("Category", fx(cat or "—") + (f" <i>({esc(detail.get('category_source'))})</i>" if cat else "")))
    trig_html = []
    for g in detail.get("trigger_words") or []:
        chips = " ".join(
            f'<a href="#" class="lss-word" data-word="{data(w)}" title="insert only this word">{fx(w)}</a>' for w in g["words"]
        )
        trig_html.append(
            f'<div class="lss-trig-src{" lss-guessed" if g.get("guessed") else ""}"><span>{esc(g.get("label"))}</span> {chips}</div>'
        )
    rows.append(("Trigger words", "".join(trig_html) or "—"))
    if detail.get("negative_text"):
        rows.append(("Negative text", fx(detail["negative_text"])))
    lic = detail.get("license") or {}
    rows.append(("License", fx(lic.get("summary") or "no Civitai license information")))
    t = detail.get("training") or {}
    facts = []
    for key, label in (
        ("images", "images"),
        ("steps", "steps"),
        ("epochs", "epochs"),
        ("resolution", "resolution"),
        ("base_checkpoint", "trained on"),
        ("trainer", "trainer"),
    ):
        if t.get(key):
            facts.append(f"{label}: {fx(t[key])}")
    rows.append(("Training", "<br>".join(facts) or "no training metadata"))
    if t.get("top_tags"):
        rows.append(("Top training tags", fx(", ".join(t["top_tags"]))))
    if detail.get("tags"):
        rows.append(("Civitai tags", fx(", ".join(detail["tags"]))))
    if detail.get("civitai_url"):
        rows.append(("Civitai", f'<a href="{esc(detail["civitai_url"])}" target="_blank" rel="noopener noreferrer">model page</a>'))
    ev = detail.get("evidence") or []
    if ev:
        rows.append(("Why this base", "<br>".join(fx(f"{e['source']}: {e['detail']}") for e in ev[:8])))
    for c in detail.get("conflicts") or []:
        rows.append(("Conflict", fx(c)))
    for p in detail.get("problems") or []:
        rows.append(("Problem", fx(p)))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    note = f'<div class="lss-msg">{esc(message)}</div>' if message else ""
    return (
        f'<div class="lss-detail" data-name="{data(detail.get("name"))}" data-tag="{data(detail.get("tag"))}">'
        f'<div class="lss-detail-name">{fx(detail.get("name"))} <code>{fx(detail.get("tag"))}</code></div>'
        f"{note}<table>{table}</table></div>"
    )


def render_resolve_html(result: dict[str, Any] | None, error: str = "") -> str:
    if error:
        return f'<div class="lss-resolve lss-error">{esc(error)}</div>'
    if not result:
        return '<div class="lss-resolve lss-empty">Type a prompt with &lt;lora:…&gt; tags and press Preview.</div>'
    rows = []
    for t in result.get("tags") or []:
        status = t.get("status", "")
        detail = t.get("message") or t.get("compat_message") or ""
        extra = []
        if t.get("words_inserted"):
            extra.append("adds " + ", ".join(t["words_inserted"]))
        if t.get("suggestions"):
            extra.append("did you mean " + ", ".join(t["suggestions"]))
        if t.get("candidates"):
            extra.append("candidates: " + ", ".join(t["candidates"]))
        rows.append(
            f'<tr class="lss-r-{esc(status)}"><td><code>{fx(t.get("original"))}</code></td><td>{esc(status)}</td>'
            f'<td>{fx(t.get("relpath") or "")}</td><td>{esc(t.get("compat_level") or "")}</td>'
            f"<td>{fx('; '.join([detail, *extra]) if detail else '; '.join(extra))}</td></tr>"
        )
    warnings = "".join(f"<li>{fx(w)}</li>" for w in result.get("warnings") or [])
    return (
        '<div class="lss-resolve">'
        f'<div><b>Prompt the WebUI will see:</b><pre class="lss-out-prompt">{esc(result.get("prompt"))}</pre></div>'
        f'<div><b>Negative:</b><pre class="lss-out-neg">{esc(result.get("negative"))}</pre></div>'
        + (
            "<table><tr><th>tag</th><th>status</th><th>file</th><th>compatibility</th><th>notes</th></tr>"
            + "".join(rows)
            + "</table>"
            if rows
            else "<div>No &lt;lora:…&gt; tags.</div>"
        )
        + (f'<ul class="lss-warnings">{warnings}</ul>' if warnings else "")
        + "</div>"
    )


def render_scan_status(status: Any) -> str:
    state = getattr(status, "state", "idle")
    done = getattr(status, "done", 0)
    total = getattr(status, "total", 0)
    msg = getattr(status, "message", "")
    if state == "scanning":
        pct = f" {100 * done // total}%" if total else ""
        return f"Scanning… {done}/{total}{pct} {msg}".strip()
    if state == "failed":
        return f"Scan failed: {msg}"
    if state == "done":
        return msg or "Scan finished"
    return ""


# --------------------------------------------------------------------------------------------------
# the panel's logic, without gradio (testable)


@dataclass
class PanelState:
    """What a render needs besides the filter controls (kept on the server per host)."""

    checkpoint_title: str | None = None


class BrowserController:
    """Turns the panel's control values into HTML; shared by every browser tab of one host."""

    def __init__(self, host: Any, *, demo: bool = False) -> None:
        self.host = host
        self.demo = demo
        self.cache = browse.catalog_cache_for(host)
        self.preview_url = preview_url_for(host)

    # -- checkpoints
    def checkpoint_titles(self) -> list[str]:
        try:
            return [c.title for c in self.host.list_checkpoints()]
        except Exception:
            return []

    def selected_title(self) -> str | None:
        try:
            ref = self.host.selected_checkpoint()
        except Exception:
            return None
        return ref.title if ref is not None else None

    def checkpoint_for(self, title: str | None) -> tuple[str | None, Any]:
        """(label, Detection) of the checkpoint named ``title`` (``None``/"": the host's selected one)."""
        ref = None
        title = (title or "").strip()
        if title:
            for c in self._refs():
                if title in (c.title, c.name) or os.path.basename(c.name) == title:
                    ref = c
                    break
            if ref is None:
                # A1111's title is "name [hash]": match on the name part too
                bare = title.rsplit(" [", 1)[0]
                for c in self._refs():
                    if bare in (c.title, c.name, c.title.rsplit(" [", 1)[0]):
                        ref = c
                        break
        if ref is None and not title:
            try:
                ref = self.host.selected_checkpoint()
            except Exception:
                ref = None
        if ref is None:
            return (title or None), None
        try:
            det = self.host.checkpoint_detection(ref)
        except Exception:
            det = None
        return ref.title, det

    def _refs(self) -> list[Any]:
        try:
            return list(self.host.list_checkpoints())
        except Exception:
            return []

    # -- facets
    def base_choices(self) -> tuple[list[str], dict[str, str]]:
        facets = self.cache.get().facets()["base"]
        labels = [ALL_BASES]
        mapping = {ALL_BASES: ""}
        for f in facets:
            label = f.label if "/" not in f.value else "  " + f.label
            labels.append(label)
            mapping[label] = f.value
        return labels, mapping

    def base_value(self, label: str | None) -> str:
        if not label or label == ALL_BASES:
            return ""
        _, mapping = self.base_choices()
        return mapping.get(label, label.strip())

    # -- render
    def query(self, text: str, base_label: str, category: str, compatible_only: bool, sort_label: str,
              page: int | float | None) -> browse.Query:
        cat = "" if not category or category == CATEGORY_ALL else ("none" if category == "no category" else category)
        return browse.Query(
            text=(text or "")[: browse.MAX_QUERY_CHARS],
            base=self.base_value(base_label),
            category=cat,
            compatible_only=bool(compatible_only),
            sort=SORT_LABELS.get(sort_label or "Name", browse.SORT_NAME),
            page=max(1, int(page or 1)),
        )

    def render(self, text: str, base_label: str, category: str, compatible_only: bool, sort_label: str,
               page: int | float | None, checkpoint_title: str | None) -> str:
        try:
            remote_panel.on_render(self.host)  # new-version badges; automatic fetching only when enabled
            label, det = self.checkpoint_for(checkpoint_title)
            result = self.cache.get().search(self.query(text, base_label, category, compatible_only, sort_label, page),
                                             det, label)
        except browse.QueryError as exc:
            return f'<div class="lss-root lss-error">{esc(exc)}</div>'
        except Exception as exc:  # the panel must say what went wrong, not go blank
            return f'<div class="lss-root lss-error">LoRA Studio could not list the LoRAs: {esc(exc)}</div>'
        return render_page_html(result, self.preview_url, status=render_scan_status(self.host.scan_status()),
                                demo=self.demo)

    def detail(self, name: str, checkpoint_title: str | None, message: str = "") -> tuple[str, Any]:
        catalog = self.cache.get()
        entry = catalog.get(name)
        if entry is None:
            return render_detail_html(None, message=f"{name}: not in the library (rescan?)"), None
        _, det = self.checkpoint_for(checkpoint_title)
        return render_detail_html(browse.detail_for(entry, catalog.compat(entry, det)), message=message), entry

    def save_user_metadata(self, name: str, activation: str, weight: float | None, base: str, category: str,
                           notes: str, negative: str) -> str:
        from lib_lora.sidecars import update_user_metadata

        entry = self.cache.get().get(name)
        if entry is None:
            raise LookupError(f"{name}: not in the library")
        changes: dict[str, Any] = {
            "activation_text": activation.strip() or None,
            "preferred_weight": float(weight) if weight else None,
            "base": None if not base or base == AUTO else base.strip(),
            "category": None if not category or category == NO_CATEGORY else category.strip().lower(),
            "notes": notes.strip() or None,
            "negative_text": negative.strip() or None,
        }
        library = self.host.library()
        setter = getattr(library, "set_user_metadata", None)
        if callable(setter):
            setter(entry.path, **changes)
        else:
            update_user_metadata(entry.path, **changes)
            self.host.rescan()
        self.cache.invalidate()
        return f"Saved {os.path.basename(entry.path).rsplit('.', 1)[0]}.json"


def base_override_choices() -> list[str]:
    archs = [a for a in browse.known_architectures() if a != browse.UNKNOWN]
    families = list(browse._FAMILY_LABELS)
    try:
        from lib_lora import architecture as _a

        table = getattr(_a, "FAMILIES", None)
        if isinstance(table, dict) and table:
            families = list(table)
    except Exception:
        pass
    return [AUTO, *archs, *[f for f in families if f not in archs]]


# --------------------------------------------------------------------------------------------------
# gradio


@dataclass
class BrowserPanel:
    """Handles of the built panel (for the standalone app and tests)."""

    controller: BrowserController
    html: Any
    search: Any
    base: Any
    category: Any
    compatible_only: Any
    sort: Any
    page: Any
    checkpoint: Any  # hidden textbox holding the checkpoint title the badges follow
    refresh: Any
    rescan: Any


def build_browser(host: Any, *, demo: bool = False, prompt: Any = None, negative: Any = None) -> BrowserPanel:
    """Build the panel inside the current ``gr.Blocks`` context and return its handles.

    ``prompt``/``negative``: existing prompt components for the resolve preview (the standalone app's
    own boxes); without them the panel makes its own, filled from the WebUI's active prompt.
    """
    import gradio as gr

    from lib_lora.ui import compat_gradio as cg

    ctl = BrowserController(host, demo=demo)
    first_labels, _ = ctl.base_choices()

    with gr.Column(elem_id=PANEL_ID, elem_classes=["lora-studio"]):
        with gr.Row(elem_classes=["lss-controls"]):
            search = cg.make(gr.Textbox, label="Search", placeholder="name, trigger word, tag…", lines=1, max_lines=1,
                             elem_id="lora_studio_search", scale=3)
            base = cg.make(gr.Dropdown, label="Base model", choices=first_labels, value=ALL_BASES,
                           elem_id="lora_studio_base", scale=2)
            category = cg.make(gr.Dropdown, label="Category",
                               choices=[CATEGORY_ALL, *browse.CATEGORIES, *browse.EXTRA_CATEGORIES, "no category"],
                               value=CATEGORY_ALL, elem_id="lora_studio_category", scale=1)
            sort = cg.make(gr.Radio, label="Sort", choices=list(SORT_LABELS), value="Name",
                           elem_id="lora_studio_sort", scale=2)
            compatible_only = cg.make(gr.Checkbox, label="Compatible only", value=False,
                                      elem_id="lora_studio_compatible_only", scale=1)
        with gr.Row(elem_classes=["lss-actions"]):
            page = cg.make(gr.Number, label="Page", value=1, precision=0, elem_id="lora_studio_page", scale=0,
                           min_width=90)
            refresh = cg.make(gr.Button, value="Refresh", elem_id="lora_studio_refresh", size="sm", scale=0)
            rescan = cg.make(gr.Button, value="Rescan folders", elem_id="lora_studio_rescan", size="sm", scale=0)
            scan_status = cg.make(gr.HTML, value="", elem_id="lora_studio_scan_status")
        # JS <-> python: hidden (CSS) so that gradio 4 still renders them
        checkpoint = cg.make(gr.Textbox, value=lambda: ctl.selected_title() or "", lines=1, max_lines=1,
                             show_label=False, elem_id="lora_studio_checkpoint", elem_classes=[cg.HIDDEN])
        cmd = cg.make(gr.Textbox, value="", lines=2, show_label=False, elem_id="lora_studio_cmd",
                      elem_classes=[cg.HIDDEN])
        cmd_btn = cg.make(gr.Button, value="cmd", elem_id="lora_studio_cmd_btn", elem_classes=[cg.HIDDEN])

        filters = [search, base, category, compatible_only, sort, page, checkpoint]
        cards = cg.make(gr.HTML, value=lambda: ctl.render("", ALL_BASES, CATEGORY_ALL, False, "Name", 1,
                                                          ctl.selected_title()),
                        elem_id="lora_studio_cards")
        remote_panel.build_remote_row(host, ctl, filters, cards)

        with gr.Row(elem_classes=["lss-lower"]):
            with gr.Column(scale=3):
                detail = cg.make(gr.HTML, value=render_detail_html(None), elem_id="lora_studio_detail")
            with gr.Column(scale=2, elem_id="lora_studio_editor"):
                selected = cg.make(gr.Textbox, label="Selected LoRA", interactive=False, lines=1, max_lines=1,
                                   elem_id="lora_studio_selected")
                activation = cg.make(gr.Textbox, label="Activation text (trigger words to insert)", lines=2,
                                     elem_id="lora_studio_edit_activation")
                weight = cg.make(gr.Slider, label="Preferred weight (0 = not set)", minimum=0.0, maximum=2.0,
                                 step=0.05, value=0.0, elem_id="lora_studio_edit_weight")
                with gr.Row():
                    base_edit = cg.make(gr.Dropdown, label="Base model override", choices=base_override_choices(),
                                        value=AUTO, elem_id="lora_studio_edit_base")
                    cat_edit = cg.make(gr.Dropdown, label="Category",
                                       choices=[NO_CATEGORY, *browse.CATEGORIES, *browse.EXTRA_CATEGORIES],
                                       value=NO_CATEGORY, elem_id="lora_studio_edit_category")
                negative_edit = cg.make(gr.Textbox, label="Negative text", lines=1, elem_id="lora_studio_edit_negative")
                notes = cg.make(gr.Textbox, label="Notes", lines=3, elem_id="lora_studio_edit_notes")
                save = cg.make(gr.Button, value="Save to sidecar", variant="primary", elem_id="lora_studio_save")

        with gr.Accordion("Resolve preview", open=prompt is not None, elem_id="lora_studio_resolve"):
            if prompt is None:
                r_prompt = cg.make(gr.Textbox, label="Prompt", lines=2, elem_id="lora_studio_resolve_prompt")
                r_negative = cg.make(gr.Textbox, label="Negative prompt", lines=1, elem_id="lora_studio_resolve_negative")
                fill_js = "(p, n) => (window.loraStudio ? loraStudio.currentPrompts(p, n) : [p, n])"
            else:
                r_prompt, r_negative = prompt, negative if negative is not None else gr.Textbox(visible=False)
                fill_js = None
            r_button = cg.make(gr.Button, value="Preview", elem_id="lora_studio_resolve_btn")
            r_out = cg.make(gr.HTML, value=render_resolve_html(None), elem_id="lora_studio_resolve_out")

    # -- events
    def do_render(text: str, base_label: str, cat: str, compat_only: bool, sort_label: str, pg: Any, ckpt: str) -> str:
        return ctl.render(text, base_label, cat, compat_only, sort_label, pg, ckpt)

    def first_page(text: str, base_label: str, cat: str, compat_only: bool, sort_label: str, pg: Any, ckpt: str
                   ) -> tuple[Any, str]:
        return 1, ctl.render(text, base_label, cat, compat_only, sort_label, 1, ckpt)

    for comp in (search, base, category, compatible_only, sort):
        comp.change(first_page, inputs=filters, outputs=[page, cards], show_progress="hidden")
    search.submit(first_page, inputs=filters, outputs=[page, cards], show_progress="hidden")
    page.submit(do_render, inputs=filters, outputs=[cards], show_progress="hidden")

    def refreshed(*values: Any) -> tuple[Any, str]:
        labels, _ = ctl.base_choices()
        return cg.update(choices=labels), do_render(*values)

    refresh.click(refreshed, inputs=filters, outputs=[base, cards], show_progress="hidden")

    def do_rescan(*values: Any) -> Any:
        host.rescan()
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            status = host.scan_status()
            yield render_scan_status(status), cg.update(), cg.update()
            if not getattr(status, "running", False):
                break
            time.sleep(0.3)
        labels, _ = ctl.base_choices()
        yield render_scan_status(host.scan_status()), cg.update(choices=labels), do_render(*values)

    rescan.click(do_rescan, inputs=filters, outputs=[scan_status, base, cards], show_progress="hidden")

    empty_editor = ("", "", 0.0, AUTO, NO_CATEGORY, "", "")

    def editor_values(entry: Any) -> tuple[Any, ...]:
        if entry is None:
            return empty_editor
        from lib_lora.sidecars import read_user_metadata

        try:
            meta = read_user_metadata(entry.path)
        except Exception:
            meta = None
        return (
            entry.name,
            (meta.activation_text if meta else None) or "",
            float((meta.preferred_weight if meta else None) or 0.0),
            (meta.base if meta and meta.base else AUTO),
            (meta.category if meta and meta.category else NO_CATEGORY),
            (meta.negative_text if meta else None) or "",
            (meta.notes if meta else None) or "",
        )

    def on_cmd(raw: str, *values: Any) -> tuple[Any, ...]:
        text, base_label, cat, compat_only, sort_label, pg, ckpt = values
        keep = (cg.update(),) * 7
        try:
            command = json.loads(raw or "{}")
        except ValueError:
            command = {}
        op = command.get("op") if isinstance(command, dict) else None
        if op == "checkpoint":
            title = str(command.get("title") or "")
            html_out = ctl.render(text, base_label, cat, compat_only, sort_label, pg, title)
            return (title, pg, html_out, cg.update(), *keep)
        if op == "page":
            try:
                n = max(1, int(command.get("page") or 1))
            except (TypeError, ValueError):
                n = 1
            return (ckpt, n, ctl.render(text, base_label, cat, compat_only, sort_label, n, ckpt), cg.update(), *keep)
        if op in remote_panel.CARD_OPS:  # fetch info / download the new version (Civitai)
            name = str(command.get("name") or "")
            message = remote_panel.handle_command(host, ctl, command)
            detail_html, entry = ctl.detail(name, ckpt, message=message)
            html_out = ctl.render(text, base_label, cat, compat_only, sort_label, pg, ckpt)
            return (ckpt, pg, html_out, detail_html, *editor_values(entry))
        if op == "select":
            name = str(command.get("name") or "")
            detail_html, entry = ctl.detail(name, ckpt)
            return (ckpt, pg, cg.update(), detail_html, *editor_values(entry))
        return (ckpt, pg, cg.update(), cg.update(), *keep)

    editor_outputs = [selected, activation, weight, base_edit, cat_edit, negative_edit, notes]
    cmd_btn.click(on_cmd, inputs=[cmd, *filters], outputs=[checkpoint, page, cards, detail, *editor_outputs],
                  show_progress="hidden")

    def on_save(name: str, act: str, w: float, b: str, c: str, neg: str, nts: str, *values: Any) -> tuple[str, str]:
        ckpt = values[-1]
        if not name:
            return render_detail_html(None, message="Select a LoRA first (the i button on a card)."), cg.update()
        try:
            message = ctl.save_user_metadata(name, act or "", w, b, c, nts or "", neg or "")
        except Exception as exc:
            detail_html, _ = ctl.detail(name, ckpt, message=f"Not saved: {exc}")
            return detail_html, cg.update()
        detail_html, _ = ctl.detail(name, ckpt, message=message)
        return detail_html, do_render(*values)

    save.click(on_save, inputs=[*editor_outputs, *filters], outputs=[detail, cards], show_progress="hidden")

    def on_resolve(p: str, n: str, ckpt: str) -> str:
        try:
            _label, det = ctl.checkpoint_for(ckpt)
            return render_resolve_html(browse.resolve_preview(host, p or "", n or "", det))
        except Exception as exc:
            return render_resolve_html(None, error=f"Could not resolve: {exc}")

    r_button.click(on_resolve, inputs=[r_prompt, r_negative, checkpoint], outputs=[r_out],
                   show_progress="hidden", **cg.js_kwargs(fill_js and f"(p, n, c) => [...({fill_js})(p, n), c]"))

    return BrowserPanel(
        controller=ctl,
        html=cards,
        search=search,
        base=base,
        category=category,
        compatible_only=compatible_only,
        sort=sort,
        page=page,
        checkpoint=checkpoint,
        refresh=refresh,
        rescan=rescan,
    )
