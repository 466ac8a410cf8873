"""Consistency sheet jobs: render the same character in five scenes (or the expressions row) × each
version × each weight through the host's own generation with fixed seeds and the same settings in every
cell, save the singles and one labelled grid, score it, mark the best version and weight, with progress
and cancel. :class:`SheetManager` runs each sheet as a job of its own
:class:`~lib_lora.background.BackgroundJobs` and answers :class:`SheetStatus` views of them.

Seeds: the scene in row ``i`` renders with ``seed + i`` in every column, so versions and weights are
compared on the same noise. Singles and the sheet go into ``<out>/<YYYYmmdd-HHMMSS>-<id>/``, where
``<out>`` is the character's ``consistency/`` folder, else ``<LoRA name>.consistency/`` beside the LoRA.
The "expressions" variant also writes ``expressions/<expression>.png`` (in the character folder, else in
``<out>``) from the best column, never replacing a file that exists.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from lib_lora.background import CANCELLED, FAILED, SUCCEEDED, BackgroundJobs, Job, JobContext
from lib_lora.consistency.grid import assemble_grid
from lib_lora.consistency.scenes import (
    Scene,
    character_scenes,
    expression_scenes,
    render_prompt,
    trainer_scenes,
)
from lib_lora.consistency.score import ClipEmbedder, Embedder, score_sheet
from lib_lora.consistency.versions import (
    Staging,
    Target,
    Version,
    job_epoch_file,
    resolve_target,
    resolve_versions,
)
from lib_lora.errors import ConsistencyError, LoraStudioError, NeedsWebUIError
from lib_lora.host import GenerationRequest

DEFAULT_WEIGHTS = (0.6, 0.8, 1.0)
VARIANTS = ("scenes", "expressions")
NATIVE_1024 = ("sdxl", "sd3", "flux1", "chroma", "auraflow", "hunyuan", "pixart", "lumina2")
MAX_COLUMNS = 40
KEEP_FINISHED = 50
SHEET_FILE = "sheet.png"


@dataclass(frozen=True)
class SheetRequest:
    lora: str | None = None
    character: str | None = None
    versions: tuple[str, ...] = ()
    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    steps: int = 20
    width: int | None = None  # None: 512 for SD1-class checkpoints, 1024 for SDXL-class
    height: int | None = None
    seed: int = 1000
    variant: str = "scenes"
    negative_prompt: str = ""
    cfg_scale: float = 7.0
    max_cell: int = 256  # px of a cell's longer side on the grid (singles keep their size)

    def checked(self) -> SheetRequest:
        if self.variant not in VARIANTS:
            raise ConsistencyError(f"unknown variant {self.variant!r} (one of: {', '.join(VARIANTS)})")
        if not self.weights:
            raise ConsistencyError("at least one weight is needed")
        for w in self.weights:
            if not -2.0 <= float(w) <= 3.0 or w != w:
                raise ConsistencyError(f"weight {w} is outside -2..3")
        if len(set(self.weights)) != len(self.weights):
            raise ConsistencyError("a weight is listed twice")
        if not 1 <= self.steps <= 150:
            raise ConsistencyError(f"steps {self.steps} is outside 1..150")
        for name, v in (("width", self.width), ("height", self.height)):
            if v is not None and not (64 <= v <= 4096 and v % 8 == 0):
                raise ConsistencyError(f"{name} {v} must be a multiple of 8 within 64..4096")
        if not 0 <= self.seed <= 2**32 - 1:
            raise ConsistencyError(f"seed {self.seed} is outside 0..4294967295")
        return replace(self, weights=tuple(float(w) for w in self.weights), versions=tuple(self.versions))


@dataclass(frozen=True)
class Cell:
    scene: str
    version: str
    weight: float
    image: str | None  # the single's path; None when not rendered (cancelled, failed)
    score: float | None = None  # None when the score was skipped

    def to_dict(self) -> dict[str, Any]:
        return {"scene": self.scene, "version": self.version, "weight": self.weight, "image": self.image,
                "score": self.score}


@dataclass(frozen=True)
class SheetOutcome:
    """What a sheet job publishes as it goes (its record's ``result``); the folder is its ``output_path``."""

    cells: tuple[Cell, ...] = ()
    sheet: str | None = None
    best: tuple[str, float] | None = None
    score_message: str = ""
    expressions: tuple[str, ...] = ()


@dataclass(frozen=True)
class SheetStatus:
    id: str
    state: str
    progress: float
    sheet: str | None = None
    cells: tuple[Cell, ...] = ()
    best: tuple[str, float] | None = None  # (version, weight)
    score_message: str = ""
    message: str = ""
    folder: str | None = None
    expressions: tuple[str, ...] = ()  # expressions/<expression>.png files written
    created_at: float = field(default_factory=time.time)

    @property
    def done(self) -> bool:
        return self.state in (SUCCEEDED, FAILED, CANCELLED)

    @classmethod
    def of(cls, job: Job[SheetOutcome]) -> SheetStatus:
        """The view of a sheet job's record: 90% of the progress is rendering (``step`` of ``total``
        cells), the last 10% scoring and the grid."""
        out = job.result or SheetOutcome()
        progress = 1.0 if job.state == SUCCEEDED else (0.9 * job.step / job.total if job.total else 0.0)
        return cls(job.id, job.state, progress, out.sheet, out.cells, out.best, out.score_message, job.message,
                   job.output_path, out.expressions, job.created_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "progress": round(self.progress, 4),
            "sheet": self.sheet,
            "cells": [c.to_dict() for c in self.cells],
            "best": {"version": self.best[0], "weight": self.best[1]} if self.best else None,
            "score_message": self.score_message,
            "message": self.message,
            "folder": self.folder,
            "expressions": list(self.expressions),
        }


@dataclass(frozen=True)
class SheetPlan:
    """Everything resolved before the job is queued (so a bad request fails at once)."""

    request: SheetRequest
    target: Target
    columns: tuple[tuple[str, str | None], ...]  # (LoRA name or label, epoch file to stage)
    scenes: tuple[Scene, ...]
    width: int
    height: int


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:60] or "x"


def default_size(host: Any, target: Target) -> int:
    """512 for SD1-class checkpoints, 1024 for SDXL-class (the loaded checkpoint, else the LoRA)."""
    arch = None
    try:
        det = host.checkpoint_detection(host.selected_checkpoint())
        arch = getattr(det, "architecture", None)
    except Exception:
        arch = None
    if not arch or arch == "unknown":
        arch = target.arch
    return 1024 if arch in NATIVE_1024 else 512


class SheetManager:
    """The consistency sheet jobs of one host. ``jobs`` gives the training job manager (for
    ``job:<id>/<file>`` versions); ``embedder`` builds the scorer (default: the CLIP model the settings
    name; None skips the score)."""

    def __init__(self, host: Any, *, jobs: Callable[[], Any] | None = None,
                 embedder: Callable[[], Embedder | None] | None = None) -> None:
        self.host = host
        self._jobs_getter = jobs
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self._embedder_key: tuple[str, str] | None = None
        self._sheets: BackgroundJobs[SheetOutcome] = BackgroundJobs(
            keep=KEEP_FINISHED, new_id=lambda _kind: uuid.uuid4().hex[:12])

    # -- planning
    def plan(self, request: SheetRequest) -> SheetPlan:
        if getattr(self.host, "kind", "standalone") == "standalone":
            raise NeedsWebUIError("a consistency sheet needs the WebUI: it renders with the WebUI's own generation")
        req = request.checked()
        target = resolve_target(self.host, req.lora, req.character)
        job_file = None
        if self._jobs_getter is not None:
            getter = self._jobs_getter

            def job_file(job_id: str, file: str) -> str:
                return job_epoch_file(getter(), job_id, file)

        columns = resolve_versions(self.host, target, req.versions, job_file)
        if len(columns) * len(req.weights) > MAX_COLUMNS:
            raise ConsistencyError(f"{len(columns)} versions × {len(req.weights)} weights is more than "
                                   f"{MAX_COLUMNS} columns")
        if req.variant == "expressions":
            scenes = expression_scenes()
        else:
            scenes = (character_scenes(target.character_dir) if target.character_dir else None) or trainer_scenes()
        size = default_size(self.host, target)
        return SheetPlan(req, target, tuple(columns), scenes, req.width or size, req.height or size)

    # -- jobs
    def submit(self, request: SheetRequest) -> str:
        """Check and queue a sheet; its id. Raises ConsistencyError / NeedsWebUIError at once."""
        plan = self.plan(request)
        return self._sheets.submit("consistency-sheet", lambda ctx: self._run(ctx, plan)).id

    def get(self, job_id: str) -> SheetStatus:
        return SheetStatus.of(self._sheets.snapshot(job_id))

    def list(self) -> list[SheetStatus]:
        return [SheetStatus.of(job) for job in self._sheets.list()]

    def cancel(self, job_id: str) -> SheetStatus:
        self._sheets.cancel(job_id, message="cancelling after the current image")
        return self.get(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> SheetStatus:
        job = self._sheets.wait(job_id, timeout)
        if not job.done:
            raise TimeoutError(f"sheet {job_id} still {job.state}")
        return SheetStatus.of(job)

    def embedder(self) -> Embedder | None:
        if self._embedder_factory is not None:
            return self._embedder_factory()
        try:
            s = self.host.settings()
            key = (s.consistency_clip_model, s.consistency_clip_pretrained)
        except Exception:
            key = ("ViT-B-32", "openai")
        if self._embedder is None or self._embedder_key != key:
            self._embedder, self._embedder_key = ClipEmbedder(key[0], key[1]), key
        return self._embedder

    # -- the run
    def _run(self, ctx: JobContext[SheetOutcome], plan: SheetPlan) -> SheetOutcome:
        """The job: stage epoch files, render, score; its errors become the sheet's message."""
        staging: Staging | None = None
        try:
            ctx.update(message="preparing")
            versions: list[Version] = []
            if any(src for _n, src in plan.columns):
                staging = Staging(self.host, ctx.job.id)
            for name, src in plan.columns:
                if src is not None and staging is not None:
                    versions.append(staging.stage(src))
                elif name == plan.target.default_version.lora_name:
                    versions.append(plan.target.default_version)
                else:
                    versions.append(Version(name, name, ""))
            if staging is not None:
                staging.refresh()
            return self._render(ctx, plan, versions)
        except LoraStudioError:
            raise
        except Exception as exc:  # the WebUI's own failure (out of memory, ...) is what the sheet reports
            raise ConsistencyError(str(exc) or type(exc).__name__) from exc
        finally:
            if staging is not None:  # staged files go before the job reports its end
                try:
                    staging.remove()
                except OSError:
                    pass

    def _render(self, ctx: JobContext[SheetOutcome], plan: SheetPlan, versions: Sequence[Version]) -> SheetOutcome:
        req = plan.request
        columns = [(v, w) for v in versions for w in req.weights]
        folder = os.path.join(plan.target.out_dir, f"{time.strftime('%Y%m%d-%H%M%S')}-{ctx.job.id}")
        os.makedirs(folder, exist_ok=True)
        total = len(columns) * len(plan.scenes)
        ctx.update(output_path=folder, message="rendering", step=0, total=total)
        images: list[list[Image.Image | None]] = [[None] * len(columns) for _ in plan.scenes]
        paths: list[list[str | None]] = [[None] * len(columns) for _ in plan.scenes]
        done = 0
        for c, (version, weight) in enumerate(columns):
            for s, scene in enumerate(plan.scenes):
                if ctx.should_stop():
                    break
                gen = GenerationRequest(
                    prompt=render_prompt(scene, plan.target.trigger, version.lora_name, weight),
                    negative_prompt=req.negative_prompt, width=plan.width, height=plan.height, steps=req.steps,
                    seed=req.seed + s, cfg_scale=req.cfg_scale)
                image = self.host.generate(gen)
                if not isinstance(image, Image.Image):
                    raise ConsistencyError("the generation returned no image")
                path = os.path.join(folder, f"{_safe(scene.id)}__{_safe(version.label)}__w{weight:g}.png")
                image.save(path)
                images[s][c], paths[s][c] = image, path
                done += 1
                ctx.update(step=done, result=SheetOutcome(cells=self._cells(plan, columns, paths, None)))
        cancelled = ctx.should_stop()
        score = None
        if not cancelled:
            ctx.update(message="scoring")
            refs = [Image.open(p).convert("RGB") for p in plan.target.references]
            score = score_sheet(images, refs, self.embedder())
        best_col = score.best_column if score is not None else None
        labels = [f"{v.label}\nw {w:g}" for v, w in columns]
        sheet, layout = assemble_grid(images, [sc.label for sc in plan.scenes], labels, best_column=best_col,
                                      max_cell=req.max_cell)
        sheet_path = os.path.join(folder, SHEET_FILE)
        sheet.save(sheet_path)
        cells = self._cells(plan, columns, paths, score.cells if score is not None else None)
        best = (columns[best_col][0].label, columns[best_col][1]) if best_col is not None else None
        written = self._write_expressions(plan, folder, paths, best_col) if not cancelled else ()
        score_message = score.message if score else "score skipped: cancelled"
        with open(os.path.join(folder, "sheet.json"), "w", encoding="utf-8") as f:
            json.dump({"rows": list(layout.row_labels), "columns": list(layout.column_labels),
                       "boxes": [list(b) for b in layout.boxes], "best_column": layout.best_column,
                       "cells": [c.to_dict() for c in cells], "prompts": [sc.prompt for sc in plan.scenes],
                       "seed": req.seed, "steps": req.steps, "width": plan.width, "height": plan.height,
                       "score_message": score_message}, f, indent=1)
        ctx.update(message="cancelled: the sheet shows what was rendered" if cancelled else "done")
        return SheetOutcome(cells=cells, sheet=sheet_path, best=best, score_message=score_message, expressions=written)

    @staticmethod
    def _cells(plan: SheetPlan, columns: Sequence[tuple[Version, float]], paths: Sequence[Sequence[str | None]],
               sims: Any) -> tuple[Cell, ...]:
        out: list[Cell] = []
        for s, scene in enumerate(plan.scenes):
            for c, (version, weight) in enumerate(columns):
                score = None
                if sims is not None and sims[s, c] == sims[s, c]:
                    score = round(float(sims[s, c]), 6)
                out.append(Cell(scene.id, version.label, weight, paths[s][c], score))
        return tuple(out)

    @staticmethod
    def _write_expressions(plan: SheetPlan, folder: str, paths: Sequence[Sequence[str | None]],
                           best_col: int | None) -> tuple[str, ...]:
        if plan.request.variant != "expressions":
            return ()
        base = plan.target.character_dir or folder
        out_dir = os.path.join(base, "expressions")
        os.makedirs(out_dir, exist_ok=True)
        col = best_col if best_col is not None else 0
        written: list[str] = []
        for s, scene in enumerate(plan.scenes):
            src = paths[s][col]
            if src is None:
                continue
            dest = os.path.join(out_dir, f"{scene.id}.png")
            try:
                with open(src, "rb") as fi, open(dest, "xb") as fo:
                    fo.write(fi.read())
            except FileExistsError:
                continue
            written.append(dest)
        return tuple(written)


_MANAGERS: dict[int, SheetManager] = {}
_MANAGERS_LOCK = threading.Lock()


def manager_for(host: Any, jobs: Callable[[], Any] | None = None) -> SheetManager:
    """The process's one sheet manager for ``host``."""
    with _MANAGERS_LOCK:
        m = _MANAGERS.get(id(host))
        if m is None or m.host is not host:
            m = SheetManager(host, jobs=jobs)
            _MANAGERS[id(host)] = m
        elif jobs is not None and m._jobs_getter is None:
            m._jobs_getter = jobs
        return m


__all__ = ["DEFAULT_WEIGHTS", "VARIANTS", "Cell", "SheetManager", "SheetOutcome", "SheetPlan", "SheetRequest",
           "SheetStatus", "default_size", "manager_for"]
