"""The browser panel's Civitai / Hugging Face parts: a "fetch info" button and a "new version" badge on
each card, and a row with "Fetch missing info", "Check for new versions" and a download-by-URL field.

Card HTML (:func:`card_html`) needs no gradio. The card buttons reach Python through the panel's hidden
command box (``{"op": "fetch", "name": …}`` / ``{"op": "download-new", "name": …}``, see
``javascript/lora_studio.js``); :func:`handle_command` runs them. Long jobs (the whole library, a download)
run as jobs of :mod:`lib_lora.remote.jobs`; their handlers poll the job and stream its progress, and
"Cancel" stops the job this panel started last. Nothing goes online before a button is pressed.
"""

from __future__ import annotations

import html
import os
import threading
import time
from typing import Any

from lib_lora.host import remote_refusal

CARD_OPS = ("fetch", "download-new")
_WAIT_ONE = 120.0  # seconds a card's fetch may take before the panel stops waiting (the job goes on)

_newer_lock = threading.Lock()
_newer: dict[str, tuple[float, dict[str, Any]]] = {}  # data dir -> (mtime, path -> newer version facts)
_current: dict[str, dict[str, Any]] = {}  # the newer versions of the host rendered last (path -> facts)


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def on_render(host: Any) -> None:
    """Before a page of cards is rendered: start the automatic jobs when the user enabled them, and
    read the last new-version check (re-read only when its file changed)."""
    global _current
    from lib_lora.remote.auto import maybe_start
    from lib_lora.remote.versions import CHECK_FILE, load_checks

    maybe_start(host)

    try:
        data_dir = str(host.data_dir())
        mtime = os.stat(os.path.join(data_dir, CHECK_FILE)).st_mtime
    except Exception:
        _current = {}
        return
    with _newer_lock:
        cached = _newer.get(data_dir)
        if cached is None or cached[0] != mtime:
            by_path = dict(load_checks(data_dir).get("newer") or {})
            roots = [str(r) for r in host.lora_roots()]
            keyed: dict[str, Any] = dict(by_path)
            for path, facts in by_path.items():  # cards know their relative path (POSIX, no suffix)
                for r in roots:
                    rel = os.path.relpath(path, r)
                    if not rel.startswith(".."):
                        keyed["rel:" + os.path.splitext(rel)[0].replace(os.sep, "/")] = facts
                        break
            cached = (mtime, keyed)
            _newer[data_dir] = cached
        _current = cached[1]


def card_html(card: Any) -> str:
    """The card's extra buttons: fetch info (when Civitai info is missing) and a new-version badge."""
    out = ""
    if not getattr(card, "civitai_url", None):
        out += ('<button class="lss-fetch" type="button" data-action="fetch" '
                'title="Fetch info from Civitai (preview, trigger words, base model)">&#x21E3;</button>')
    facts = _current.get("rel:" + str(getattr(card, "relpath", ""))) if _current else None
    if facts:
        title = f"New version on Civitai: {facts.get('latest_name') or facts.get('latest_version_id')} — click to download it beside this one"
        out += (f'<button class="lss-newver" type="button" data-action="download-new" title="{_esc(title)}">'
                "new version</button>")
    return out


def _service(host: Any) -> Any:
    from lib_lora.remote.jobs import service_for

    return service_for(host)


def handle_command(host: Any, ctl: Any, command: dict[str, Any]) -> str:
    """Run a card command; the message for the panel."""
    op = command.get("op")
    name = str(command.get("name") or "")
    entry = ctl.cache.get().get(name)
    if entry is None:
        return f"{name}: not in the library (rescan?)"
    refused = remote_refusal(host, "Fetching from Civitai" if op == "fetch" else "Downloading")
    if refused:
        return refused
    svc = _service(host)
    if op == "fetch":
        job = svc.start_fetch([entry.path], refetch=True)
        job = svc.jobs.wait(job.id, timeout=_WAIT_ONE)
        ctl.cache.invalidate()
        if not job.done:
            return f"{name}: still fetching (job {job.id})"
        result = job.result or {}
        rows = result.get("results") or [] if isinstance(result, dict) else []
        if rows:
            r = rows[0]
            if r["status"] == "fetched":
                extra = f" ({'; '.join(r['problems'])})" if r.get("problems") else ""
                return f"{name}: Civitai info fetched — {r.get('base_model') or 'base model unknown'}{extra}"
            return f"{name}: {r.get('message') or r['status']}"
        return f"{name}: {job.message}"
    if op == "download-new":
        facts = _current.get(entry.path)
        if not facts:
            return f"{name}: no newer version known (check for new versions first)"
        folder = os.path.dirname(entry.path)
        roots = [str(r) for r in host.lora_roots()]
        sub = None
        for r in roots:
            try:
                rel = os.path.relpath(folder, r)
            except ValueError:
                continue
            if not rel.startswith(".."):
                sub = "" if rel == "." else rel
                break
        job = svc.start_download(facts["download_url"], subfolder=sub)
        return f"Downloading the new version of {name} beside it (job {job.id})"
    return ""


def _status_html(job: Any) -> str:
    s = job.to_dict()["status"]
    pct = f" {100 * s['fraction']:.0f}%" if s["total"] else ""
    cls = {"failed": "lss-error", "cancelled": "lss-warn"}.get(s["state"], "")
    msg = s["message"] or s["state"]
    return f'<div class="lss-remote-status {cls}" data-state="{_esc(s["state"])}">{_esc(msg)}{_esc(pct)}</div>'


def build_remote_row(host: Any, ctl: Any, filters: list[Any], cards: Any) -> None:
    """The Civitai / Hugging Face row (inside the panel's ``gr.Blocks``)."""
    import gradio as gr

    from lib_lora.ui import compat_gradio as cg

    with gr.Accordion("Civitai & Hugging Face", open=False, elem_id="lora_studio_remote"):
        with gr.Row():
            fetch_all = cg.make(gr.Button, value="Fetch missing info", elem_id="lora_studio_fetch_missing", size="sm",
                                scale=0)
            versions = cg.make(gr.Button, value="Check for new versions", elem_id="lora_studio_check_versions",
                               size="sm", scale=0)
            cancel = cg.make(gr.Button, value="Cancel", elem_id="lora_studio_remote_cancel", size="sm", scale=0)
        with gr.Row():
            url = cg.make(gr.Textbox, label="Download by URL",
                          placeholder="https://civitai.com/models/… · …/api/download/models/… · huggingface.co/…/blob/… · hf://owner/repo/file",
                          lines=1, max_lines=1, elem_id="lora_studio_download_url", scale=4)
            sub = cg.make(gr.Textbox, label="Subfolder (optional)", lines=1, max_lines=1,
                          elem_id="lora_studio_download_subfolder", scale=1)
            go = cg.make(gr.Button, value="Download", elem_id="lora_studio_download_btn", scale=0)
        status = cg.make(gr.HTML, value="", elem_id="lora_studio_remote_status")
        job_id = cg.make(gr.Textbox, value="", show_label=False, elem_id="lora_studio_remote_job",
                         elem_classes=[cg.HIDDEN])

    def follow(job: Any, values: tuple[Any, ...]) -> Any:
        deadline = time.monotonic() + 6 * 3600
        while not job.done and time.monotonic() < deadline:
            yield _status_html(job), job.id, cg.update()
            time.sleep(0.3)
        ctl.cache.invalidate()
        yield _status_html(job), job.id, ctl.render(*values)

    def start(kind: str, *values: Any) -> Any:
        refused = remote_refusal(host, "Going online")
        if refused:
            yield f'<div class="lss-remote-status lss-error">{_esc(refused)}</div>', "", cg.update()
            return
        svc = _service(host)
        try:
            job = svc.start_fetch(None) if kind == "fetch" else svc.start_version_check()
        except Exception as exc:
            yield f'<div class="lss-remote-status lss-error">{_esc(exc)}</div>', "", cg.update()
            return
        yield from follow(job, values)

    def fetch_missing(*values: Any) -> Any:
        yield from start("fetch", *values)

    def check_versions(*values: Any) -> Any:
        yield from start("versions", *values)

    def download(u: str, s: str, *values: Any) -> Any:
        refused = remote_refusal(host, "Downloading")
        if refused:
            yield f'<div class="lss-remote-status lss-error">{_esc(refused)}</div>', "", cg.update()
            return
        if not (u or "").strip():
            yield '<div class="lss-remote-status lss-error">Paste a Civitai or Hugging Face URL first.</div>', "", cg.update()
            return
        try:
            job = _service(host).start_download(u.strip(), subfolder=(s or "").strip() or None)
        except Exception as exc:
            yield f'<div class="lss-remote-status lss-error">{_esc(exc)}</div>', "", cg.update()
            return
        yield from follow(job, values)

    def do_cancel(jid: str) -> str:
        if not jid:
            return '<div class="lss-remote-status">Nothing to cancel.</div>'
        try:
            job = _service(host).jobs.cancel(jid)
        except KeyError:
            return '<div class="lss-remote-status">Nothing to cancel.</div>'
        return _status_html(job)

    outputs = [status, job_id, cards]
    fetch_all.click(fetch_missing, inputs=filters, outputs=outputs, show_progress="hidden")
    versions.click(check_versions, inputs=filters, outputs=outputs, show_progress="hidden")
    go.click(download, inputs=[url, sub, *filters], outputs=outputs, show_progress="hidden")
    cancel.click(do_cancel, inputs=[job_id], outputs=[status], show_progress="hidden")
