"""Two additions to the Train tab: "write missing captions" with the WebUI's own taggers (DeepDanbooru,
CLIP/BLIP interrogator; absent in the standalone app with a one-line reason), and "check consistency" on
a finished job's epoch files (a consistency sheet with progress, cancel and the best version and weight).

:class:`ConsistencyTools` holds the behaviour without gradio (tested directly); :func:`build_caption_tools`
and :func:`build_sheet_tools` add the components inside the Train tab's columns (gradio 3.41 and 4.40).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lib_lora.consistency import SheetRequest, manager_for
from lib_lora.consistency.versions import job_epoch_files
from lib_lora.errors import LoraStudioError
from lib_lora.train.autocaption import write_tagged_captions
from lib_lora.train.coverage import check_coverage, coverage_html
from lib_lora.train.dataset import DatasetReport
from lib_lora.ui.train_tab import TAB_ID, _notice, bind_paced, esc, poll_every, render_report_html

NO_TAGGERS = "Captions from the WebUI's taggers (DeepDanbooru, CLIP/BLIP interrogator) need the WebUI."
NO_SHEETS = "Consistency sheets need the WebUI: they render with its own generation."
SHEET_POLL_SECONDS = 2.0


def _parse_weights(text: Any) -> tuple[float, ...]:
    raw = str(text or "").replace(";", ",").split(",")
    try:
        weights = tuple(float(x) for x in raw if x.strip())
    except ValueError:
        raise LoraStudioError(f"weights must be numbers separated by commas (got {text!r})") from None
    return weights or (0.6, 0.8, 1.0)


class ConsistencyTools:
    def __init__(self, host: Any, service: Any, sheets: Any = None) -> None:
        self.host = host
        self.service = service
        self._sheets = sheets

    @property
    def sheets(self) -> Any:
        if self._sheets is None:
            self._sheets = manager_for(self.host, jobs=lambda: self.service.jobs)
        return self._sheets

    # -- captions from the WebUI's taggers
    def taggers(self) -> dict[str, str]:
        """label -> tagger id; empty where the host has none (the standalone app)."""
        getter = getattr(self.host, "caption_taggers", None)
        if not callable(getter):
            return {}
        try:
            return {label: kind for kind, label in getter().items()}
        except Exception:
            return {}

    def write_tagged(self, report: DatasetReport | None, label: Any, base: Any = None,
                     progress: Callable[[int, int, str], None] | None = None) -> tuple[str, DatasetReport | None]:
        if report is None:
            return _notice("Check the dataset first.", "warn"), None
        kind = self.taggers().get(str(label or ""))
        if kind is None:
            return _notice(NO_TAGGERS if not self.taggers() else f"Choose a tagger (got {label!r}).", "warn"), report
        try:
            self.service.require_local("writing caption files")
            with self.host.caption_tagger(kind) as tag:
                result = write_tagged_captions(report, report.trigger, tag, progress=progress)
            again = self.service.check(report.folder, report.trigger, str(base or ""),
                                       resolution=report.resolution, arch=report.base_arch)
        except LoraStudioError as exc:
            return _notice(str(exc), "error"), report
        notes = [f"Wrote {len(result.written)} caption file(s) with {label}."]
        if result.skipped:
            notes.append(f"{len(result.skipped)} appeared meanwhile and were kept.")
        kind_of = "warn" if result.failed else "ok"
        if result.failed:
            first = result.failed[0]
            notes.append(f"{len(result.failed)} image(s) failed: {os.path.basename(first[0])}: {first[1]}")
        html = _notice(" ".join(notes), kind_of) + render_report_html(again) + coverage_html(check_coverage(again), esc)
        return html, again

    # -- consistency sheet for a job
    def can_render(self) -> bool:
        return getattr(self.host, "kind", "standalone") != "standalone"

    def start_for_job(self, job_id: Any, weights: Any = "0.6, 0.8, 1.0") -> tuple[str | None, str]:
        """(sheet id or None, notice html): every .safetensors the job wrote × ``weights``."""
        if not self.can_render():
            return None, _notice(NO_SHEETS, "warn")
        if not job_id:
            return None, _notice("Choose a finished job first.", "warn")
        try:
            view = self.service.status(str(job_id))
            if view.state != "succeeded":
                return None, _notice(f"Job {job_id} is {view.state}: check consistency when it has succeeded.", "warn")
            versions = job_epoch_files(self.service.jobs, str(job_id))
            if not versions:
                return None, _notice(f"Job {job_id} has no .safetensors files in its output folder.", "warn")
            lora = view.installed.name if view.installed is not None else None
            if not lora:
                return None, _notice("The job's LoRA is not in the LoRA folder (yet): install it first.", "warn")
            sheet_id = self.sheets.submit(SheetRequest(lora=lora, versions=tuple(versions),
                                                       weights=_parse_weights(weights)))
        except LoraStudioError as exc:
            return None, _notice(str(exc), "error")
        return sheet_id, _notice(f"Consistency sheet {sheet_id} started: {len(versions)} file(s).", "ok")

    def view(self, sheet_id: Any) -> tuple[str, str | None]:
        """(status html, sheet image path or None)."""
        if not sheet_id:
            return "", None
        try:
            st = self.sheets.get(str(sheet_id))
        except KeyError:
            return _notice(f"No consistency sheet {sheet_id}.", "warn"), None
        parts = [f"<div id='{TAB_ID}_sheet_status'><b>Sheet {esc(st.id)}</b>: {esc(st.state)} "
                 f"({st.progress:.0%}) — {esc(st.message)}"]
        if st.best:
            parts.append(f"<br>Best: <code>{esc(st.best[0])}</code> at weight {st.best[1]:g}")
        if st.score_message:
            parts.append(f"<br><small>{esc(st.score_message)}</small>")
        if st.sheet:
            parts.append(f"<br><small>{esc(st.sheet)}</small>")
        parts.append("</div>")
        return "".join(parts), st.sheet

    def cancel(self, sheet_id: Any) -> str:
        if not sheet_id:
            return ""
        try:
            st = self.sheets.cancel(str(sheet_id))
        except KeyError:
            return _notice(f"No consistency sheet {sheet_id}.", "warn")
        return _notice(f"Sheet {st.id}: {st.state}.", "info")


def build_caption_tools(gr: Any, cg: Any, tools: ConsistencyTools, c: dict[str, Any], remote: bool) -> None:
    """The tagger row under "Write missing captions" (or its one-line reason)."""
    labels = list(tools.taggers())
    if not labels:
        c["tagger_reason"] = cg.make(gr.Markdown, value=NO_TAGGERS, elem_id=TAB_ID + "_tagger_reason")
        return
    with gr.Row():
        c["tagger"] = cg.make(gr.Dropdown, label="Caption missing files with the WebUI's tagger", choices=labels,
                              value=labels[0], elem_id=TAB_ID + "_tagger")
        c["write_tagged"] = cg.make(gr.Button, value="Write missing captions with the tagger",
                                    interactive=not remote, elem_id=TAB_ID + "_write_tagged")

    def write(report: Any, label: Any, base: Any, progress: Any = gr.Progress()) -> tuple[str, Any]:  # noqa: B008
        def step(done: int, total: int, _path: str) -> None:
            try:
                progress((done, total), desc="captioning")
            except Exception:
                pass

        return tools.write_tagged(report, label, base, step)

    c["write_tagged"].click(write, inputs=[c["report_state"], c["tagger"], c["base"]],
                            outputs=[c["report"], c["report_state"]])


def build_sheet_tools(gr: Any, cg: Any, tools: ConsistencyTools, c: dict[str, Any], remote: bool) -> None:
    """"Check consistency" for the job shown in the job view."""
    with gr.Accordion("Consistency check (the job's epoch files × weights)", open=False):
        if not tools.can_render():
            cg.make(gr.Markdown, value=NO_SHEETS, elem_id=TAB_ID + "_sheet_reason")
            return
        with gr.Row():
            c["sheet_weights"] = cg.make(gr.Textbox, label="Weights", value="0.6, 0.8, 1.0",
                                         elem_id=TAB_ID + "_sheet_weights")
            c["sheet_start"] = cg.make(gr.Button, value="Check consistency", interactive=not remote,
                                       elem_id=TAB_ID + "_sheet_start")
            c["sheet_refresh"] = cg.make(gr.Button, value="Refresh", elem_id=TAB_ID + "_sheet_refresh")
            c["sheet_cancel"] = cg.make(gr.Button, value="Cancel sheet", elem_id=TAB_ID + "_sheet_cancel")
        c["sheet_status"] = cg.make(gr.HTML, value="", elem_id=TAB_ID + "_sheet_html")
        c["sheet_image"] = cg.make(gr.Image, label="Consistency sheet", type="filepath", interactive=False,
                                   elem_id=TAB_ID + "_sheet_image")
        c["sheet_id"] = gr.State(None)
        c["sheet_shown"] = gr.State(None)

    def start(job_id: Any, weights: Any) -> tuple[Any, str, Any]:
        sheet_id, notice = tools.start_for_job(job_id, weights)
        html, image = tools.view(sheet_id)
        return sheet_id, notice + html, image

    def refresh(sheet_id: Any) -> tuple[str, Any]:
        return tools.view(sheet_id)

    c["sheet_refresh"].click(refresh, inputs=[c["sheet_id"]], outputs=[c["sheet_status"], c["sheet_image"]])
    c["sheet_cancel"].click(tools.cancel, inputs=[c["sheet_id"]], outputs=[c["sheet_status"]])

    def poll(sheet_id: Any, shown: Any) -> tuple[str, Any, Any]:
        """Progress while the page is open; the image only when it changed (no re-send every tick)."""
        html, image = tools.view(sheet_id)
        if not sheet_id or image == shown:
            return html, cg.update(), shown
        return html, image, image

    # the timer's pace: quick while this page shows a sheet, slow before (train_tab.poll_every)
    c["sheet_timer"] = poll_every(SHEET_POLL_SECONDS, poll, inputs=[c["sheet_id"], c["sheet_shown"]],
                                  outputs=[c["sheet_status"], c["sheet_image"], c["sheet_shown"]],
                                  busy=lambda args, _out: bool(args[0]))
    bind_paced(c["sheet_start"].click, start, SHEET_POLL_SECONDS, lambda _args, out: bool(out[0]), c["sheet_timer"],
               inputs=[c["job"], c["sheet_weights"]], outputs=[c["sheet_id"], c["sheet_status"], c["sheet_image"]])


__all__ = ["NO_SHEETS", "NO_TAGGERS", "ConsistencyTools", "build_caption_tools", "build_sheet_tools"]
