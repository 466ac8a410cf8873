"""The Train LoRA tab: a Gradio builder over :class:`~lib_lora.train.service.TrainingService` (no WebUI import).

Works in gradio 3.41 (AUTOMATIC1111) and 4.40 (Forge) through :mod:`lib_lora.ui.compat_gradio`. Live
updates come from polling the service: a ``gr.Timer`` in gradio 4, ``every=`` on a load event in gradio 3
(:func:`poll_every`). Each poll renders the shown job's status as HTML (progress bar with ETA, an inline
SVG loss plot — no plotting library), the log tail and the job history; the sample gallery is sent only
when a new sample appears.

The HTML renderers (:func:`render_progress_html`, :func:`render_loss_svg`, :func:`render_report_html`,
:func:`render_history_html`, :func:`render_env_html`) and :class:`TrainTabController` (what every button
does, returning plain values) need no gradio: the tests call them directly. Every string that reaches the
HTML is escaped here.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lib_lora import safetext
from lib_lora.errors import LoraStudioError, TrainingError
from lib_lora.train.coverage import check_coverage, coverage_html
from lib_lora.train.dataset import DatasetReport, count_guidance
from lib_lora.train.presets import KINDS, PRESET_NAMES
from lib_lora.train.progressbar import format_duration, format_rate
from lib_lora.train.runner import CANCELLED, CANCELLING, FAILED, QUEUED, RUNNING, SUCCEEDED
from lib_lora.train.service import (
    DEFAULT_PREFERRED_WEIGHT,
    JobView,
    TrainingRequest,
    TrainingService,
    list_gpus,
    parse_gpu_ids,
    service_for,
)

TAB_ID = "lora_studio_train"
ARCH_AUTO = "auto (from the checkpoint)"
ARCH_CHOICES = (ARCH_AUTO, "sd1", "sdxl", "flux1")
POLL_SECONDS = 1.0
#: The polls' interval while nothing runs (gradio 4's gr.Timer; :func:`poll_every`): every tick is a request
#: and an update of the page, and the WebUI's own scripts walk the whole page after each update (with a big
#: extra-networks pane, a quarter of a million elements: 0.1–0.3 s of script a tick on a slow machine), so
#: an idle tab ticks rarely; a job started elsewhere (the API, another browser) shows up within this time.
IDLE_POLL_SECONDS = 15.0
LOG_LINES = 30
HISTORY_ROWS = 50
#: gradio 3 outlines every output of a running event, even with show_progress="hidden": the polled
#: components would blink once a second. Scoped to this tab; gradio 4 does not do it.
TAB_STYLE = (
    "<style>"
    f"#{TAB_ID}_root .wrap.hide.generating, #{TAB_ID}_root .wrap.hidden.generating"
    "{border:none!important;animation:none!important;box-shadow:none!important}"
    f"#{TAB_ID}_root .lst-history{{overflow-x:auto}}"
    "</style>"
)
GALLERY_THUMB = 384
PRESET_HELP = {
    "default": "the community recipe: batch 2, lr 1e-4, dim 32/alpha 16, each image seen ~90 times",
    "fast": "for large GPUs: CUDA graphs, U-Net only, bf16, batch from free VRAM (same images seen)",
    "gui-defaults": "the kohya_ss GUI's defaults, for comparisons",
}
_STATE_COLOURS = {
    QUEUED: "#8a8a8a",
    RUNNING: "#2f7de1",
    CANCELLING: "#c98a00",
    CANCELLED: "#c98a00",
    FAILED: "#d23c3c",
    SUCCEEDED: "#2e9e4f",
}


#: text for HTML (dataset file names, captions, trainer messages): controls visible, HTML-escaped
esc = safetext.html_text


def _badge(state: str) -> str:
    colour = _STATE_COLOURS.get(state, "#8a8a8a")
    return (f'<span class="lst-state lst-{esc(state)}" style="display:inline-block;padding:0 .5em;border-radius:.6em;'
            f'background:{colour};color:#fff;font-size:.85em">{esc(state)}</span>')


def _notice(text: str, kind: str = "info") -> str:
    colour = {"error": "#d23c3c", "ok": "#2e9e4f", "warn": "#c98a00"}.get(kind, "#2f7de1")
    return (f'<div class="lst-notice lst-{esc(kind)}" style="border-left:4px solid {colour};padding:.3em .6em;'
            f'margin:.2em 0">{esc(text)}</div>')


# --------------------------------------------------------------------------------------------------
# renderers


def render_loss_svg(history: Sequence[tuple[int, float]], width: int = 560, height: int = 180) -> str:
    """An inline SVG line chart of ``(step, loss)`` with a smoothed line; a note when there is no data."""
    points = [(int(s), float(v)) for s, v in history if isinstance(v, (int, float)) and math.isfinite(v)]
    bad = len(history) - len(points)
    if len(points) < 2:
        text = "The loss curve appears after the first steps." if not bad else "The loss is not a number (NaN)."
        return f'<div class="lst-loss lst-empty" style="opacity:.7;padding:.5em 0">{esc(text)}</div>'
    left, right, top, bottom = 48, 10, 10, 24
    w, h = width - left - right, height - top - bottom
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    span_x = max(1, x1 - x0)

    def px(x: float) -> float:
        return left + (x - x0) / span_x * w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * h

    raw = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    alpha = min(0.5, max(0.02, 8 / len(points)))
    smooth: list[tuple[int, float]] = []
    ema = ys[0]
    for x, y in points:
        ema = alpha * y + (1 - alpha) * ema
        smooth.append((x, ema))
    sm = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in smooth)
    last = points[-1][1]
    title = f"loss {last:.4g} at step {points[-1][0]} (smoothed {smooth[-1][1]:.4g})"
    if bad:
        title += f"; {bad} NaN/inf value(s) left out"
    grid = "".join(
        f'<line x1="{left}" x2="{left + w}" y1="{py(y0 + (y1 - y0) * f):.1f}" y2="{py(y0 + (y1 - y0) * f):.1f}" '
        f'stroke="currentColor" stroke-opacity=".12"/>'
        for f in (0.25, 0.5, 0.75)
    )
    labels = (
        f'<text x="{left - 4}" y="{top + 9}" text-anchor="end">{y1:.3g}</text>'
        f'<text x="{left - 4}" y="{top + h}" text-anchor="end">{y0:.3g}</text>'
        f'<text x="{left}" y="{height - 6}">{x0}</text>'
        f'<text x="{left + w}" y="{height - 6}" text-anchor="end">step {x1}</text>'
    )
    return (
        f'<div class="lst-loss"><svg xmlns="http://www.w3.org/2000/svg" role="img" width="100%" '
        f'viewBox="0 0 {width} {height}" style="max-width:{width}px;font:11px sans-serif;fill:currentColor">'
        f"<title>{esc(title)}</title>"
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="currentColor" stroke-opacity=".3"/>'
        f"{grid}{labels}"
        f'<polyline class="lst-loss-raw" points="{raw}" fill="none" stroke="#2f7de1" stroke-opacity=".35" stroke-width="1"/>'
        f'<polyline class="lst-loss-smooth" points="{sm}" fill="none" stroke="#2f7de1" stroke-width="2"/>'
        f"</svg><div style=\"font-size:.85em;opacity:.8\">{esc(title)}</div></div>"
    )


def render_progress_html(view: JobView | None) -> str:
    """The shown job's state: a bar with step, speed, ETA and loss while running; the result or the
    failure with advice when it has ended."""
    if view is None:
        return '<div class="lst-progress lst-empty" style="opacity:.7">No training yet.</div>'
    st = view.status
    head = (f'<div class="lst-job" style="margin-bottom:.3em">{_badge(view.state)} <b>{esc(view.output_name or view.id)}</b> '
            f'<span style="opacity:.7">job {esc(view.id)}'
            + (f" · trigger <code>{esc(view.trigger)}</code>" if view.trigger else "")
            + (f" · {esc(view.base)}" if view.base else "")
            + (f" · {esc(view.preset)}" if view.preset else "")
            + "</span></div>")
    body: list[str] = []
    pct = st.fraction * 100
    if st.state in (RUNNING, CANCELLING) or (st.state == QUEUED and st.total):
        starting = not st.total or (st.step == st.step_offset and st.task)
        bar = (f'<div class="lst-bar" style="height:14px;border-radius:7px;background:rgba(127,127,127,.25);overflow:hidden">'
               f'<div class="lst-bar-fill" style="height:100%;width:{pct:.1f}%;background:#2f7de1"></div></div>')
        body.append(bar)
        if starting and st.state == RUNNING:
            body.append(f'<div class="lst-task">Starting: {esc(st.task or st.message or "loading the model…")}</div>')
        else:
            facts = [f"<b>{pct:.0f}%</b>", f"step {st.step}/{st.total or '?'}", esc(format_rate(st.rate)),
                     f"ETA {esc(format_duration(st.eta_seconds))}"]
            if st.elapsed_seconds is not None:
                facts.append(f"elapsed {esc(format_duration(st.elapsed_seconds))}")
            if st.loss is not None:
                facts.append(f"loss {st.loss:.4g}")
            if st.epoch and st.epochs:
                facts.append(f"epoch {st.epoch}/{st.epochs}")
            body.append('<div class="lst-facts">' + " · ".join(facts) + "</div>")
        if st.state == CANCELLING:
            body.append(_notice("Cancelling… the last periodic save is kept.", "warn"))
    elif st.state == QUEUED:
        body.append(_notice(st.message or "Waiting for the GPU…"))
    elif st.state == SUCCEEDED:
        took = (st.ended_at - st.started_at) if st.started_at and st.ended_at else None
        body.append(f"<div>Finished {st.total or st.step} steps in {esc(format_duration(took))}.</div>")
        if view.installed is not None:
            inst = view.installed
            tag = esc(inst.tag)
            body.append(
                _notice_html(
                    f"Saved to <code>{esc(inst.path)}</code> — use <code>{tag}</code>"
                    + (f" with <code>{esc(view.trigger)}</code>" if view.trigger else "")
                    + ("" if inst.found else " (the library has not picked it up yet: press Refresh in the LoRA panel)"),
                    "ok",
                )
            )
        elif view.install_error:
            body.append(_notice(f"Trained, but not put into the LoRA folder: {view.install_error}", "error"))
            if st.output_path:
                body.append(f"<div>The trained file is at <code>{esc(st.output_path)}</code>.</div>")
        elif view.installing:
            body.append(_notice("Copying the LoRA into the LoRA folder…"))
        elif st.output_path:
            body.append(f"<div>Saved to <code>{esc(st.output_path)}</code>.</div>")
    else:  # failed / cancelled
        body.append(_notice(st.message or st.state, "error" if st.state == FAILED else "warn"))
        if st.failure is not None:
            if st.failure.message and st.failure.message not in (st.message or ""):
                body.append(f"<div>{esc(st.failure.message)}</div>")
            if st.failure.advice:
                body.append("<ul class=\"lst-advice\">" + "".join(f"<li>{esc(a)}</li>" for a in st.failure.advice) + "</ul>")
            if st.failure.detail:
                body.append(f"<details><summary>trainer output</summary><pre style=\"white-space:pre-wrap\">"
                            f"{esc(st.failure.detail)}</pre></details>")
        if view.resumable:
            body.append("<div>Press <b>Resume</b> to continue from the last save.</div>")
    return f'<div class="lst-progress">{head}{"".join(body)}</div>'


def _notice_html(inner_html: str, kind: str) -> str:
    colour = {"error": "#d23c3c", "ok": "#2e9e4f", "warn": "#c98a00"}.get(kind, "#2f7de1")
    return (f'<div class="lst-notice lst-{esc(kind)}" style="border-left:4px solid {colour};padding:.3em .6em;'
            f'margin:.2em 0">{inner_html}</div>')


def render_history_html(views: Sequence[JobView], selected: str | None = None, limit: int = HISTORY_ROWS) -> str:
    if not views:
        return '<div class="lst-history lst-empty" style="opacity:.7">No trainings yet.</div>'
    rows = []
    for v in views[:limit]:
        st = v.status
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at)) if v.created_at else ""
        steps = f"{st.step}/{st.total or v.total_steps or '?'}"
        if v.installed is not None:
            result = f"<code>{esc(v.installed.name)}</code>"
        elif v.install_error:
            result = f'<span title="{esc(v.install_error)}">not installed</span>'
        elif st.output_path:
            result = f'<span title="{esc(st.output_path)}">{esc(os.path.basename(st.output_path))}</span>'
        elif st.state in (FAILED, CANCELLED) and st.message:
            result = f'<span title="{esc(st.message)}">{esc(st.message[:60])}</span>'
        else:
            result = ""
        mark = ' style="font-weight:bold"' if selected and v.id == selected else ""
        rows.append(
            f"<tr{mark}><td><code>{esc(v.id)}</code></td><td>{esc(when)}</td><td>{_badge(v.state)}</td>"
            f"<td>{esc(v.trigger)}</td><td>{esc(v.base)}</td><td>{esc(v.preset)}</td><td>{esc(steps)}</td>"
            f"<td>{esc(v.source)}</td><td>{result}</td></tr>"
        )
    more = f'<div style="opacity:.7">… and {len(views) - limit} older</div>' if len(views) > limit else ""
    return (
        '<div class="lst-history"><table style="width:100%;border-collapse:collapse;font-size:.9em">'
        "<thead><tr><th>Job</th><th>Started</th><th>State</th><th>Trigger</th><th>Base</th><th>Preset</th>"
        "<th>Steps</th><th>From</th><th>Result</th></tr></thead><tbody>" + "".join(rows) + f"</tbody></table>{more}</div>"
    )


_SEVERITY_ICON = {"error": "⛔", "warning": "⚠️", "info": "ℹ️"}


def render_report_html(report: DatasetReport | None, max_rows: int = 150) -> str:
    """The dataset check as a summary and a table of findings."""
    if report is None:
        return ""
    layout = {"flat": "a flat folder of images", "kohya": "kohya sub-folders (<repeats>_<name>)",
              "empty": "no images"}.get(report.layout, report.layout)
    _severity, _level, count_text = count_guidance(report.image_count)
    errors, warnings = len(report.errors), len(report.warnings)
    verdict = (
        _notice(f"{errors} error(s) would stop the trainer: fix them first.", "error")
        if errors
        else _notice(f"Ready to train ({warnings} warning(s)).", "warn" if warnings else "ok")
    )
    parts = [
        '<div class="lst-report">',
        verdict,
        "<table style=\"font-size:.9em\">",
        f"<tr><th style=\"text-align:left\">Folder</th><td><code>{esc(report.folder)}</code> — {esc(layout)}</td></tr>",
        f"<tr><th style=\"text-align:left\">Images</th><td><b>{report.image_count}</b> — "
        f"{esc(count_text)}</td></tr>",
        f"<tr><th style=\"text-align:left\">Base</th><td>{esc(report.base_arch)} at {report.resolution} px; captions "
        f"<code>*{esc(report.caption_extension)}</code>; trigger <code>{esc(report.trigger)}</code></td></tr>",
    ]
    if report.layout == "kohya":
        subs = ", ".join(f"{esc(os.path.basename(s.image_dir))}: {s.image_count} × {s.num_repeats}" for s in report.subsets)
        parts.append(f"<tr><th style=\"text-align:left\">Sub-folders</th><td>{subs}</td></tr>")
    if report.buckets:
        buckets = ", ".join(f"{b.width}×{b.height}: {b.count}" for b in report.buckets)
        parts.append(f"<tr><th style=\"text-align:left\">Buckets</th><td>{esc(buckets)}</td></tr>")
    missing = len(report.missing_captions())
    if missing:
        parts.append(f"<tr><th style=\"text-align:left\">Captions</th><td>{missing} image(s) have no caption file "
                     "(<i>Write missing captions</i> creates them)</td></tr>")
    parts.append("</table>")
    issues = sorted(report.issues, key=lambda i: {"error": 0, "warning": 1}.get(i.severity, 2))
    if issues:
        rows = []
        for issue in issues[:max_rows]:
            file = os.path.basename(issue.file) if issue.file else ""
            rows.append(
                f'<tr class="lst-{esc(issue.severity)}"><td>{_SEVERITY_ICON.get(issue.severity, "")} {esc(issue.severity)}'
                f"</td><td>{esc(issue.message)}</td><td><code>{esc(file)}</code></td></tr>"
            )
        if len(issues) > max_rows:
            rows.append(f"<tr><td></td><td>… and {len(issues) - max_rows} more</td><td></td></tr>")
        parts.append(
            '<table class="lst-issues" style="width:100%;font-size:.9em"><thead><tr><th>Severity</th><th>Finding</th>'
            "<th>File</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
    parts.append("</div>")
    return "".join(parts)


def render_gpus_html(gpus: Sequence[Any]) -> str:
    """The GPUs training can use, and how to pick several."""
    if not gpus:
        return ('<div class="lst-gpus" style="font-size:.85em;opacity:.8">No NVIDIA GPU found by nvidia-smi: '
                "the trainer uses whatever device torch finds.</div>")
    items = "; ".join(esc(g.label()) for g in gpus)
    multi = " Several GPUs (e.g. 0,1) train with one process each (accelerate --multi_gpu)." if len(gpus) > 1 else ""
    return f'<div class="lst-gpus" style="font-size:.85em;opacity:.8">GPUs: {items}.{esc(multi)}</div>'


def render_env_html(status: Any, sd_scripts: str | None = None, sd_error: str | None = None,
                    remote: bool = False) -> str:
    """The trainer environment: ready / missing / incomplete, with sd-scripts' location."""
    if remote:
        return _notice("Training is turned off: this WebUI can be reached from other computers. Start it with "
                       "--enable-insecure-extension-access to allow training (only on a network you trust).", "error")
    lines = []
    if sd_error:
        lines.append(_notice(f"sd-scripts: {sd_error}", "error"))
    elif sd_scripts:
        lines.append(f'<div style="font-size:.9em;opacity:.8">sd-scripts: <code>{esc(sd_scripts)}</code></div>')
    if status is None:
        lines.append(_notice("Checking the trainer environment…"))
    else:
        state = getattr(status, "state", "missing")
        kind = {"ready": "ok", "incomplete": "warn"}.get(state, "error")
        text = getattr(status, "message", "") or state
        if state != "ready":
            text += " Press 'Set up trainer' to install it (several GB: torch and sd-scripts' requirements)."
        lines.append(_notice(f"Trainer: {text}", kind))
    return '<div class="lst-env">' + "".join(lines) + "</div>"


# --------------------------------------------------------------------------------------------------
# form -> request


def _opt_number(value: Any, name: str, *, integer: bool) -> Any:
    """A form number: None/""/0 mean "the preset's value"."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text or text.lower() == "auto":
            return None
        try:
            value = float(text)
        except ValueError:
            raise TrainingError(f"{name} must be a number (got {text!r})") from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TrainingError(f"{name} must be a number (got {value!r})") from None
    if not math.isfinite(number):
        raise TrainingError(f"{name} must be a number (got {value!r})")
    if number == 0:
        return None
    if integer:
        if number != int(number):
            raise TrainingError(f"{name} must be a whole number (got {value!r})")
        return int(number)
    return number


def request_from_form(
    folder: Any, trigger: Any, base: Any, preset: Any = "default", kind: Any = "character",
    steps: Any = None, batch_size: Any = None, learning_rate: Any = None, network_dim: Any = None,
    network_alpha: Any = None, resolution: Any = None, gpus: Any = "", output_name: Any = "",
    arch: Any = ARCH_AUTO, preferred_weight: Any = DEFAULT_PREFERRED_WEIGHT, free_vram: Any = True,
    character: Any = "", references: Any = "",
) -> TrainingRequest:
    """The tab's fields as a :class:`TrainingRequest` (empty or 0 = the preset's value)."""
    weight = _opt_number(preferred_weight, "preferred weight", integer=False)
    return TrainingRequest(
        folder=str(folder or "").strip(),
        trigger=str(trigger or "").strip(),
        base=str(base or "").strip(),
        preset=str(preset or "default"),
        kind=str(kind or "character"),
        steps=_opt_number(steps, "steps", integer=True),
        batch_size=_opt_number(batch_size, "batch size", integer=True),
        learning_rate=_opt_number(learning_rate, "learning rate", integer=False),
        network_dim=_opt_number(network_dim, "network dim", integer=True),
        network_alpha=_opt_number(network_alpha, "network alpha", integer=False),
        resolution=_opt_number(resolution, "resolution", integer=True),
        gpu_ids=parse_gpu_ids(str(gpus or "")),
        output_name=str(output_name or "").strip() or None,
        arch=None if not arch or arch == ARCH_AUTO else str(arch),
        preferred_weight=DEFAULT_PREFERRED_WEIGHT if weight is None else weight,
        free_vram=bool(free_vram),
        source="tab",
        character=str(character or "").strip() or None,
        references=_references(folder, references),
    )


def _references(folder: Any, text: Any) -> tuple[str, ...] | None:
    """Reference images typed as dataset file names (comma-separated); ``None``: the default pick."""
    names = [n.strip() for n in str(text or "").split(",") if n.strip()]
    if not names:
        return None
    return tuple(os.path.join(str(folder or "").strip(), n) for n in names)


# --------------------------------------------------------------------------------------------------
# what the buttons do


@dataclass(frozen=True)
class Poll:
    """One refresh of the live part of the tab."""

    job_id: str | None
    progress_html: str
    loss_html: str
    log_text: str
    history_html: str
    samples: tuple[str, ...]
    job_ids: tuple[str, ...]
    can_cancel: bool
    can_resume: bool
    active: bool = False  # some job of the service is queued or running (not only the shown one)


class TrainTabController:
    """The tab's behaviour without gradio: each method takes the form's values and returns what the
    components show (HTML strings, ids). Errors come back as notice HTML, never as exceptions."""

    def __init__(self, service: TrainingService) -> None:
        self.service = service
        self._env_cache: tuple[float, str] | None = None
        self._env_lock = threading.Lock()

    # -- checkpoints
    def checkpoint_titles(self) -> list[str]:
        try:
            return [c.title for c in self.service.host.list_checkpoints()]
        except Exception:
            return []

    def default_checkpoint(self) -> str | None:
        try:
            ref = self.service.host.selected_checkpoint()
        except Exception:
            ref = None
        titles = self.checkpoint_titles()
        if ref is not None and ref.title in titles:
            return str(ref.title)
        return titles[0] if titles else None

    # -- dataset
    def check(self, folder: Any, trigger: Any, base: Any, resolution: Any = None, arch: Any = ARCH_AUTO,
              progress: Any = None) -> tuple[str, DatasetReport | None]:
        def report_progress(done: int, total: int, path: str) -> None:
            if progress is not None:
                try:
                    progress((done, total), desc="checking images")
                except Exception:
                    pass

        try:
            report = self.service.check(
                str(folder or "").strip(), str(trigger or ""), str(base or ""),
                resolution=_opt_number(resolution, "resolution", integer=True),
                arch=None if not arch or arch == ARCH_AUTO else str(arch),
                progress=report_progress,
            )
        except LoraStudioError as exc:
            return _notice(str(exc), "error"), None
        return render_report_html(report) + coverage_html(check_coverage(report, progress=report_progress), esc), report

    def write_captions(self, report: DatasetReport | None, template: Any, base: Any = None
                       ) -> tuple[str, DatasetReport | None]:
        """Create the caption files the last check found missing, then check again."""
        if report is None:
            return _notice("Check the dataset first.", "warn"), None
        try:
            written = self.service.write_captions(report, str(template or "{trigger}"))
            again = self.service.check(report.folder, report.trigger, str(base or self.default_checkpoint() or ""),
                                       resolution=report.resolution, arch=report.base_arch)
        except LoraStudioError as exc:
            return _notice(str(exc), "error"), report
        return (_notice(f"Wrote {len(written)} caption file(s).", "ok") + render_report_html(again)
                + coverage_html(check_coverage(again), esc)), again

    # -- jobs
    def start(self, *form: Any) -> tuple[str | None, str]:
        """``(new job id or None, notice html)``; ``form`` in :func:`request_from_form`'s order."""
        try:
            request = request_from_form(*form)
            job_id = self.service.start(request)
        except LoraStudioError as exc:
            return None, _notice(str(exc), "error")
        return job_id, _notice(f"Started job {job_id}.", "ok")

    def plan_text(self, *form: Any) -> str:
        """The plan summary and exact command for the form (nothing is started)."""
        try:
            plan = self.service.plan(request_from_form(*form))
        except LoraStudioError as exc:
            return _notice(str(exc), "error")
        from lib_lora.train.plan import display_command

        spec = plan.job_spec()
        return (f'<pre class="lst-plan" style="white-space:pre-wrap;font-size:.85em">{esc(plan.summary())}\n\n'
                f"{esc(display_command(spec))}</pre>")

    def cancel(self, job_id: str | None) -> str:
        view = self._shown(job_id)
        if view is None or view.done:
            return _notice("No running training to cancel.", "warn")
        try:
            self.service.cancel(view.id)
        except LoraStudioError as exc:
            return _notice(str(exc), "error")
        return _notice(f"Cancelling job {view.id}; its last periodic save is kept.", "warn")

    def resume(self, job_id: str | None) -> tuple[str | None, str]:
        view = self._shown(job_id)
        if view is None:
            return None, _notice("Choose a cancelled or failed job to resume.", "warn")
        try:
            new_id = self.service.resume(view.id)
        except LoraStudioError as exc:
            return None, _notice(str(exc), "error")
        return new_id, _notice(f"Resuming job {view.id} as {new_id}.", "ok")

    def _shown(self, job_id: str | None) -> JobView | None:
        if job_id:
            try:
                return self.service.status(job_id)
            except LoraStudioError:
                return None
        return self.service.latest()

    def poll(self, job_id: str | None) -> Poll:
        history = self.service.history()
        view = self._shown(job_id)
        st = view.status if view is not None else None
        log = ""
        if st is not None:
            lines = list(st.log_tail[-LOG_LINES:])
            if st.state == QUEUED and not lines:
                lines = [st.message or "waiting for the GPU"]
            log = "\n".join(lines)
        return Poll(
            job_id=view.id if view is not None else None,
            progress_html=render_progress_html(view),
            loss_html=render_loss_svg(st.loss_history) if st is not None else render_loss_svg(()),
            log_text=log,
            history_html=render_history_html(history, view.id if view else None),
            samples=tuple(st.samples) if st is not None else (),
            job_ids=tuple(v.id for v in history),
            can_cancel=bool(view is not None and not view.done and not self.service.remote()),
            can_resume=bool(view is not None and view.resumable and not self.service.remote()),
            active=any(not v.done for v in history),
        )

    # -- trainer environment
    def env_html(self, refresh: bool = False) -> str:
        if self.service.remote():
            return render_env_html(None, remote=True)
        with self._env_lock:
            if not refresh and self._env_cache is not None and time.monotonic() - self._env_cache[0] < 30:
                return self._env_cache[1]
        sd_dir = sd_error = None
        try:
            sd_dir = self.service.sd_scripts_dir()
        except LoraStudioError as exc:
            sd_error = str(exc)
        from lib_lora.train.environment import EnvStatus

        status: Any
        try:
            python = self.service.trainer_python()
            own = os.fspath(self.service.environment().python)
            if os.path.abspath(python) != os.path.abspath(own):  # $TRAINER_PYTHON or the caller's choice
                if os.path.isfile(python) or not os.path.isabs(python):
                    status = EnvStatus("ready", "", python, message=f"Using the trainer Python {python} (TRAINER_PYTHON); "
                                       "'Set up trainer' would install LoRA Studio's own environment instead.")
                else:
                    status = EnvStatus("missing", "", None, message=f"The trainer Python {python} does not exist.")
            else:
                status = self.service.environment_status()
        except Exception as exc:
            status = EnvStatus("incomplete", "", None, message=f"cannot check the trainer: {exc}.")
        text = render_env_html(status, sd_dir, sd_error)
        with self._env_lock:
            self._env_cache = (time.monotonic(), text)
        return text

    def setup_trainer(self) -> Iterator[tuple[str, str]]:
        """Create the trainer venv; yields ``(log text, environment html)`` while pip runs."""
        lines: list[str] = []
        events: queue.Queue[Any] = queue.Queue()
        outcome: dict[str, Any] = {}

        def progress(p: Any) -> None:
            events.put(f"[{p.step}/{p.steps} {p.stage}] {p.line}")

        def work() -> None:
            try:
                outcome["status"] = self.service.setup_environment(progress)
            except Exception as exc:
                outcome["error"] = exc
            finally:
                events.put(None)

        threading.Thread(target=work, name="lora-studio-setup-trainer", daemon=True).start()
        yield "Setting up the trainer…", _notice("Installing the trainer environment… (this takes a while)")
        finished = False
        while not finished:
            try:
                item = events.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [item]
            while True:
                try:
                    batch.append(events.get_nowait())
                except queue.Empty:
                    break
            for entry in batch:
                if entry is None:
                    finished = True
                else:
                    lines.append(str(entry))
            yield "\n".join(lines[-200:]), _notice("Installing the trainer environment…")
        error = outcome.get("error")
        if error is not None:
            message = str(error) if isinstance(error, LoraStudioError) else f"{type(error).__name__}: {error}"
            lines.append(f"FAILED: {message}")
            yield "\n".join(lines[-200:]), _notice(f"The trainer could not be set up: {message}", "error")
            return
        yield "\n".join(lines[-200:] + ["done"]), self.env_html(refresh=True)


def gallery_items(samples: Sequence[str], limit: int = 40) -> list[tuple[Any, str]]:
    """Thumbnails (PIL images, so no file path has to be served) with captions, newest first."""
    from PIL import Image

    items: list[tuple[Any, str]] = []
    for path in list(samples)[::-1][:limit]:
        try:
            with Image.open(path) as img:
                img.thumbnail((GALLERY_THUMB, GALLERY_THUMB))
                thumb = img.convert("RGB")
        except (OSError, ValueError):
            continue
        items.append((thumb, _sample_caption(path)))
    return items


def _sample_caption(path: str) -> str:
    import re

    m = re.search(r"_(\d{6})_(\d{2})_", os.path.basename(path))
    return f"step {int(m.group(1))} · prompt {int(m.group(2)) + 1}" if m else os.path.basename(path)


# --------------------------------------------------------------------------------------------------
# gradio


def poll_every(seconds: float, fn: Any, inputs: list[Any], outputs: list[Any],
               busy: Callable[[tuple[Any, ...], tuple[Any, ...]], bool] | None = None) -> Any:
    """Call ``fn`` every ``seconds`` while the page is open: a ``gr.Timer`` in gradio 4.40+, a repeating
    load event (``every=``) in gradio 3. With ``busy`` (``fn``'s inputs and outputs -> whether something is going on) and
    a ``gr.Timer``, the timer is one more output of the tick and slows to :data:`IDLE_POLL_SECONDS` while
    nothing is (gradio 3's ``every=`` cannot change its interval)."""
    import gradio as gr

    from lib_lora.ui import compat_gradio as cg

    timer_cls = getattr(gr, "Timer", None)
    if cg.IS_GRADIO_4 and timer_cls is not None:
        timer = timer_cls(seconds)
        if busy is None:
            timer.tick(fn, inputs=inputs, outputs=outputs, show_progress="hidden")
        else:
            timer.tick(paced(fn, seconds, busy), inputs=inputs, outputs=[*outputs, timer], show_progress="hidden")
        return timer
    from gradio.context import Context

    root = Context.root_block
    if root is None:
        raise RuntimeError("poll_every must be called inside gr.Blocks()")
    if cg.IS_GRADIO_4:  # 4.0–4.39: every= on load still works
        return root.load(fn, inputs=inputs, outputs=outputs, every=seconds, show_progress="hidden")
    return root.load(fn, inputs=inputs, outputs=outputs, every=seconds, show_progress="hidden")


def paced(fn: Any, seconds: float, busy: Callable[[tuple[Any, ...], tuple[Any, ...]], bool]) -> Any:
    """``fn`` with its timer's next interval as one more output: ``seconds`` while ``busy(inputs, outputs)``,
    :data:`IDLE_POLL_SECONDS` otherwise."""

    def run(*args: Any) -> tuple[Any, ...]:
        out = tuple(fn(*args))
        return (*out, seconds if busy(args, out) else max(seconds, IDLE_POLL_SECONDS))

    return run


def bind_paced(listener: Any, fn: Any, seconds: float, busy: Callable[[tuple[Any, ...], tuple[Any, ...]], bool],
               timer: Any, inputs: list[Any], outputs: list[Any], **kwargs: Any) -> Any:
    """``listener(fn, …)`` (a component's ``click``/``change``); when ``timer`` is a ``gr.Timer`` the event
    also sets its pace at once (:func:`paced`), as its own ticks do."""
    if type(timer).__name__ == "Timer":
        return listener(paced(fn, seconds, busy), inputs=inputs, outputs=[*outputs, timer], **kwargs)
    return listener(fn, inputs=inputs, outputs=outputs, **kwargs)


def on_load(fn: Any, inputs: list[Any], outputs: list[Any]) -> Any:
    from gradio.context import Context

    root = Context.root_block
    if root is None:
        raise RuntimeError("on_load must be called inside gr.Blocks()")
    return root.load(fn, inputs=inputs, outputs=outputs, show_progress="hidden")


@dataclass
class TrainTab:
    """The built tab's controller and components (tests and other builders reach them here)."""

    controller: TrainTabController
    components: dict[str, Any]
    timer: Any = None
    #: the polling callback: ``refresh(job_id, seen) -> outputs of the live components``
    refresh: Any = None


def _character_names(host: Any) -> list[str]:
    try:
        from lib_lora.characters import characters_for_host

        return ["", *characters_for_host(host).names]
    except Exception:
        return [""]


def build_train_tab(host: Any, service: TrainingService | None = None, *,
                    poll_seconds: float = POLL_SECONDS) -> TrainTab:
    """Build the Train LoRA tab inside an open ``gr.Blocks()`` (or tab) for ``host``."""
    import gradio as gr

    from lib_lora.ui import compat_gradio as cg
    from lib_lora.ui import consistency_panel

    svc = service if service is not None else service_for(host)
    ctl = TrainTabController(svc)
    tools = consistency_panel.ConsistencyTools(host, svc)
    remote = svc.remote()
    titles = ctl.checkpoint_titles()
    c: dict[str, Any] = {}

    with gr.Column(elem_id=TAB_ID + "_root"):
        cg.make(gr.HTML, value=TAB_STYLE, elem_id=TAB_ID + "_style")
        if remote:
            cg.make(gr.HTML, value=render_env_html(None, remote=True))
        with gr.Row():
            c["env"] = cg.make(gr.HTML, value=render_env_html(None), elem_id=TAB_ID + "_env")
        with gr.Row():
            c["setup"] = cg.make(gr.Button, value="Set up trainer", variant="secondary", interactive=not remote,
                                 elem_id=TAB_ID + "_setup")
            c["env_refresh"] = cg.make(gr.Button, value="Check trainer again", elem_id=TAB_ID + "_env_refresh")
        c["setup_log"] = cg.make(gr.Textbox, label="Trainer installation", lines=6, max_lines=12,
                                 interactive=False, visible=False, elem_id=TAB_ID + "_setup_log")
        with gr.Row():
            with gr.Column(scale=1):
                c["folder"] = cg.make(gr.Textbox, label="Training images folder", elem_id=TAB_ID + "_folder",
                                      placeholder="/path/to/pictures of my character", interactive=not remote)
                c["trigger"] = cg.make(gr.Textbox, label="Trigger word", elem_id=TAB_ID + "_trigger",
                                       placeholder="a unique word, e.g. zkalice", interactive=not remote)
                with gr.Row():
                    c["base"] = cg.make(gr.Dropdown, label="Base checkpoint", choices=titles,
                                        value=ctl.default_checkpoint(), elem_id=TAB_ID + "_base",
                                        interactive=not remote, allow_custom_value=False, scale=8)
                    c["base_refresh"] = cg.make(gr.Button, value="Refresh list", elem_id=TAB_ID + "_base_refresh",
                                                scale=1, min_width=90, size="sm")
                with gr.Row():
                    c["preset"] = cg.make(gr.Radio, label="Preset", choices=list(PRESET_NAMES), value="default",
                                          elem_id=TAB_ID + "_preset", info="; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()))
                    c["kind"] = cg.make(gr.Radio, label="What it learns", choices=list(KINDS), value="character",
                                        elem_id=TAB_ID + "_kind")
                    c["character"] = cg.make(
                        gr.Dropdown, label="Character (an existing one, or type a new name; empty: a plain LoRA)",
                        choices=_character_names(host), value="", allow_custom_value=True, interactive=not remote,
                        elem_id=TAB_ID + "_character",
                        info="saved as characters/<name>/lora/<name>_v<N> with reference images and prompts.txt",
                    )
                    c["references"] = cg.make(
                        gr.Textbox, label="Character reference images (dataset file names, comma-separated)",
                        value="", placeholder="empty: a few front-facing ones, as their captions say",
                        elem_id=TAB_ID + "_references", interactive=not remote,
                    )
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        c["steps"] = cg.make(gr.Number, label="Steps (0 = auto)", value=0, precision=0,
                                             elem_id=TAB_ID + "_steps")
                        c["batch"] = cg.make(gr.Number, label="Batch size (0 = preset)", value=0, precision=0,
                                             elem_id=TAB_ID + "_batch")
                        c["lr"] = cg.make(gr.Textbox, label="Learning rate (empty = preset)", value="",
                                          elem_id=TAB_ID + "_lr")
                    with gr.Row():
                        c["dim"] = cg.make(gr.Number, label="Network dim (0 = preset)", value=0, precision=0,
                                           elem_id=TAB_ID + "_dim")
                        c["alpha"] = cg.make(gr.Number, label="Network alpha (0 = preset)", value=0,
                                             elem_id=TAB_ID + "_alpha")
                        c["resolution"] = cg.make(gr.Number, label="Resolution px (0 = preset)", value=0, precision=0,
                                                  elem_id=TAB_ID + "_resolution")
                    with gr.Row():
                        c["gpus"] = cg.make(gr.Textbox, label="GPUs (e.g. 0 or 0,1; empty = GPU 0)", value="",
                                            elem_id=TAB_ID + "_gpus")
                        c["output_name"] = cg.make(gr.Textbox, label="File name (empty = from the trigger)", value="",
                                                   elem_id=TAB_ID + "_output_name")
                        c["arch"] = cg.make(gr.Dropdown, label="Base architecture", choices=list(ARCH_CHOICES),
                                            value=ARCH_AUTO, elem_id=TAB_ID + "_arch")
                    c["gpu_info"] = cg.make(gr.HTML, value=render_gpus_html(list_gpus()), elem_id=TAB_ID + "_gpu_info")
                    c["weight"] = cg.make(gr.Slider, label="Preferred weight written to the sidecar", minimum=0.1,
                                          maximum=1.5, step=0.05, value=DEFAULT_PREFERRED_WEIGHT,
                                          elem_id=TAB_ID + "_weight")
                c["free_vram"] = cg.make(gr.Checkbox, label="Free the WebUI's GPU memory while training (image "
                                         "generation waits until the training ends)", value=True,
                                         elem_id=TAB_ID + "_free_vram")
                with gr.Row():
                    c["check"] = cg.make(gr.Button, value="Check dataset", interactive=not remote,
                                         elem_id=TAB_ID + "_check")
                    c["plan"] = cg.make(gr.Button, value="Show plan", interactive=not remote, elem_id=TAB_ID + "_plan")
                with gr.Row():
                    c["caption_template"] = cg.make(gr.Textbox, label="Caption for images without one", value="{trigger}",
                                                    elem_id=TAB_ID + "_caption_template")
                    c["write_captions"] = cg.make(gr.Button, value="Write missing captions", interactive=not remote,
                                                  elem_id=TAB_ID + "_write_captions")
                c["report"] = cg.make(gr.HTML, value="", elem_id=TAB_ID + "_report")
                c["report_state"] = gr.State(None)
                consistency_panel.build_caption_tools(gr, cg, tools, c, remote)
            with gr.Column(scale=1):
                with gr.Row():
                    c["start"] = cg.make(gr.Button, value="Start training", variant="primary", interactive=not remote,
                                         elem_id=TAB_ID + "_start")
                    c["cancel"] = cg.make(gr.Button, value="Cancel", variant="stop", interactive=False,
                                          elem_id=TAB_ID + "_cancel")
                    c["resume"] = cg.make(gr.Button, value="Resume", interactive=False, elem_id=TAB_ID + "_resume")
                c["notice"] = cg.make(gr.HTML, value="", elem_id=TAB_ID + "_notice")
                c["progress"] = cg.make(gr.HTML, value=render_progress_html(None), elem_id=TAB_ID + "_progress")
                c["loss"] = cg.make(gr.HTML, value=render_loss_svg(()), elem_id=TAB_ID + "_loss")
                c["gallery"] = cg.make(gr.Gallery, label="Sample images", columns=5, height=260, object_fit="contain",
                                       elem_id=TAB_ID + "_gallery", show_label=True)
                c["log"] = cg.make(gr.Textbox, label="Log (last lines)", lines=10, max_lines=LOG_LINES, interactive=False,
                                   elem_id=TAB_ID + "_log", autoscroll=True)
                ids = [v.id for v in svc.history()]
                c["job"] = cg.make(gr.Dropdown, label="Show job", choices=ids, value=None, allow_custom_value=True,
                                   elem_id=TAB_ID + "_job")
                c["history"] = cg.make(gr.HTML, value="", elem_id=TAB_ID + "_history")
                consistency_panel.build_sheet_tools(gr, cg, tools, c, remote)
                c["seen"] = gr.State({"samples": None, "ids": tuple(ids)})

    form = [c["folder"], c["trigger"], c["base"], c["preset"], c["kind"], c["steps"], c["batch"], c["lr"], c["dim"],
            c["alpha"], c["resolution"], c["gpus"], c["output_name"], c["arch"], c["weight"], c["free_vram"],
            c["character"], c["references"]]

    def refresh(job_id: str | None, seen: dict[str, Any] | None) -> tuple[Any, ...]:
        p = ctl.poll(job_id or None)
        seen = dict(seen or {})
        gallery: Any = cg.update()
        if seen.get("samples") != p.samples:
            gallery = gallery_items(p.samples)
            seen["samples"] = p.samples
        job_update: Any = cg.update()
        if tuple(seen.get("ids") or ()) != p.job_ids:
            job_update = cg.update(choices=list(p.job_ids))
            seen["ids"] = p.job_ids
        seen["active"] = p.active  # the timer's pace (poll_every's busy)
        return (p.progress_html, p.loss_html, gallery, p.log_text, p.history_html, job_update,
                cg.update(interactive=p.can_cancel), cg.update(interactive=p.can_resume), seen)

    live = [c["progress"], c["loss"], c["gallery"], c["log"], c["history"], c["job"], c["cancel"], c["resume"], c["seen"]]

    def check(folder: Any, trigger: Any, base: Any, resolution: Any, arch: Any,
              progress: Any = gr.Progress()) -> tuple[str, Any]:  # noqa: B008 - gradio injects it by default
        return ctl.check(folder, trigger, base, resolution, arch, progress)

    c["check"].click(check, inputs=[c["folder"], c["trigger"], c["base"], c["resolution"], c["arch"]],
                     outputs=[c["report"], c["report_state"]])
    c["write_captions"].click(ctl.write_captions, inputs=[c["report_state"], c["caption_template"], c["base"]],
                              outputs=[c["report"], c["report_state"]])
    c["plan"].click(ctl.plan_text, inputs=form, outputs=[c["report"]])

    def start(*values: Any) -> tuple[Any, str]:
        job_id, notice = ctl.start(*values)
        if job_id is None:
            return cg.update(), notice
        return cg.update(choices=[v.id for v in svc.history()], value=job_id), notice

    c["start"].click(start, inputs=form, outputs=[c["job"], c["notice"]])
    c["cancel"].click(ctl.cancel, inputs=[c["job"]], outputs=[c["notice"]])

    def resume(job_id: str | None) -> tuple[Any, str]:
        new_id, notice = ctl.resume(job_id)
        if new_id is None:
            return cg.update(), notice
        return cg.update(choices=[v.id for v in svc.history()], value=new_id), notice

    c["resume"].click(resume, inputs=[c["job"]], outputs=[c["job"], c["notice"]])
    # (the timer is made last, below: a started or picked job sets its pace at once through this event)

    def refresh_checkpoints() -> Any:
        return cg.update(choices=ctl.checkpoint_titles())

    c["base_refresh"].click(refresh_checkpoints, inputs=[], outputs=[c["base"]])
    def setup() -> Iterator[tuple[Any, str]]:
        for log_text, env_html in ctl.setup_trainer():
            yield cg.update(value=log_text, visible=True), env_html

    c["setup"].click(setup, inputs=[], outputs=[c["setup_log"], c["env"]])
    c["env_refresh"].click(lambda: ctl.env_html(refresh=True), inputs=[], outputs=[c["env"]])
    on_load(lambda: ctl.env_html(), inputs=[], outputs=[c["env"]])
    on_load(refresh, inputs=[c["job"], c["seen"]], outputs=live)

    def busy(_args: tuple[Any, ...], out: tuple[Any, ...]) -> bool:
        return bool(out[-1].get("active"))

    timer = poll_every(poll_seconds, refresh, inputs=[c["job"], c["seen"]], outputs=live, busy=busy)
    bind_paced(c["job"].change, refresh, poll_seconds, busy, timer, inputs=[c["job"], c["seen"]], outputs=live,
               show_progress="hidden")
    return TrainTab(controller=ctl, components=c, timer=timer, refresh=refresh)


__all__ = [
    "ARCH_AUTO",
    "Poll",
    "TAB_ID",
    "TrainTab",
    "TrainTabController",
    "bind_paced",
    "build_train_tab",
    "gallery_items",
    "on_load",
    "paced",
    "poll_every",
    "render_env_html",
    "render_gpus_html",
    "render_history_html",
    "render_loss_svg",
    "render_progress_html",
    "render_report_html",
    "request_from_form",
]
