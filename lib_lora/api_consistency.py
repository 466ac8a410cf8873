"""HTTP routes of the dataset coverage check and the consistency sheet, added to the ``/lora-studio/v1``
router by :func:`add_routes` (one call line in :mod:`lib_lora.api`).

- ``POST /dataset/check``: the dataset report with its coverage (angles, expressions, lighting,
  backgrounds, outfits, advice and evidence), as the Train tab's "Check dataset" shows it;
- ``POST /consistency`` → ``{"id": ID}``; ``GET /consistency/{ID}``; ``POST /consistency/{ID}/cancel``.

Reading a dataset folder and rendering are refused to remote users under the training gate; the
standalone app answers 409 "needs the WebUI" to a consistency sheet.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, List, Optional  # noqa: UP035 - pydantic 1 + python 3.10 need typing names

from fastapi import HTTPException
from pydantic import BaseModel, Field, constr

from lib_lora.errors import LoraStudioError

NameText = constr(strict=True, max_length=4096)
IdText = constr(strict=True, max_length=100)


class DatasetCheckRequest(BaseModel):
    dataset: NameText = Field(..., description="folder of training images")  # type: ignore[valid-type]
    trigger: IdText = Field(..., description="the trigger word")  # type: ignore[valid-type]
    base: Optional[NameText] = Field(None, description="base checkpoint title or name (default: the selected one)")  # type: ignore[valid-type]  # noqa: UP045
    arch: Optional[IdText] = Field(None, description="sd1 | sd2 | sdxl | sd3 | flux1 (default: detected)")  # type: ignore[valid-type]  # noqa: UP045
    caption_extension: IdText = ".txt"  # type: ignore[valid-type]
    pixels: bool = Field(True, description="also measure backgrounds and brightness in the pixels")


class ConsistencyRequestModel(BaseModel):
    lora: Optional[NameText] = Field(None, description="a LoRA name as in a <lora:...> tag")  # type: ignore[valid-type]  # noqa: UP045
    character: Optional[IdText] = Field(None, description="a character of the character library")  # type: ignore[valid-type]  # noqa: UP045
    versions: Optional[List[NameText]] = Field(  # type: ignore[valid-type]  # noqa: UP006, UP045
        None, description="LoRA names, vN of the character, or job:<id>/<file> epoch files (never paths)")
    weights: List[float] = Field(default_factory=lambda: [0.6, 0.8, 1.0])  # noqa: UP006
    steps: int = Field(20, ge=1, le=150)
    width: Optional[int] = Field(None, ge=64, le=4096)  # noqa: UP045
    height: Optional[int] = Field(None, ge=64, le=4096)  # noqa: UP045
    seed: int = Field(1000, ge=0, le=2**32 - 1)
    variant: IdText = Field("scenes", description="scenes | expressions")  # type: ignore[valid-type]


def _problem(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def dataset_check(ctx: Any, body: DatasetCheckRequest) -> dict[str, Any]:
    """The dataset report and its coverage as JSON (400/404/422 with a message on bad input)."""
    from lib_lora.train.coverage import check_coverage

    ctx.refuse_remote("checking a dataset folder")
    folder = os.path.abspath(os.path.expanduser(body.dataset))
    if not os.path.isdir(folder):
        raise _problem(404, f"dataset folder not found: {body.dataset}")
    base = body.base
    if not base:
        ref = ctx.host.selected_checkpoint()
        if ref is None:
            raise _problem(422, "no checkpoint is selected: name the base checkpoint")
        base = ref.title
    try:
        report = ctx.service().check(folder, body.trigger, base, caption_extension=body.caption_extension,
                                     arch=body.arch)
        coverage = check_coverage(report, pixels=body.pixels)
    except LoraStudioError as exc:
        raise _problem(422, str(exc)) from None
    return {
        "folder": report.folder,
        "layout": report.layout,
        "base_arch": report.base_arch,
        "image_count": report.image_count,
        "count_level": report.count_level,
        "ok": report.ok,
        "issues": [dataclasses.asdict(i) for i in report.issues],
        "coverage": coverage.to_dict(),
    }


def _sheets(ctx: Any) -> Any:
    from lib_lora.consistency import manager_for

    return manager_for(ctx.host, jobs=ctx.jobs)


def start_sheet(ctx: Any, body: ConsistencyRequestModel) -> dict[str, Any]:
    """Queue a consistency sheet; ``{"id": ID}`` (403 remote, 409 without the WebUI, 422 bad request)."""
    from lib_lora.consistency import SheetRequest
    from lib_lora.errors import NeedsWebUIError

    ctx.refuse_remote("rendering a consistency sheet")
    request = SheetRequest(
        lora=body.lora or None, character=body.character or None, versions=tuple(body.versions or ()),
        weights=tuple(body.weights), steps=body.steps, width=body.width, height=body.height, seed=body.seed,
        variant=body.variant)
    try:
        job_id = _sheets(ctx).submit(request)
    except NeedsWebUIError as exc:
        raise _problem(409, f"needs the WebUI: {exc}") from None
    except LoraStudioError as exc:
        raise _problem(422, str(exc)) from None
    return {"id": job_id}


def add_routes(router: Any, ctx: Any) -> None:
    """Add the dataset-check and consistency routes to ``router`` (``ctx``: the API's route context)."""

    @router.post("/dataset/check", summary="Check a dataset folder: the report and its coverage with advice")
    def check_dataset_route(body: DatasetCheckRequest) -> Any:
        return dataset_check(ctx, body)

    @router.post("/consistency", status_code=201,
                 summary="Render a consistency sheet (scenes × versions × weights) with the WebUI's generation")
    def create_sheet(body: ConsistencyRequestModel) -> Any:
        return start_sheet(ctx, body)

    @router.get("/consistency/{sheet_id}", summary="A consistency sheet's state, progress, cells, best pick")
    def get_sheet(sheet_id: str) -> Any:
        try:
            return _sheets(ctx).get(sheet_id).to_dict()
        except KeyError:
            raise _problem(404, f"no consistency sheet {sheet_id!r}") from None

    @router.post("/consistency/{sheet_id}/cancel", summary="Cancel a consistency sheet after the current image")
    def cancel_sheet(sheet_id: str) -> Any:
        ctx.refuse_remote("cancelling a consistency sheet")
        try:
            return _sheets(ctx).cancel(sheet_id).to_dict()
        except KeyError:
            raise _problem(404, f"no consistency sheet {sheet_id!r}") from None


__all__ = ["ConsistencyRequestModel", "DatasetCheckRequest", "add_routes", "dataset_check", "start_sheet"]
