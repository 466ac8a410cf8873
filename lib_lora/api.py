"""LoRA Studio's HTTP API: a FastAPI router mounted under ``/lora-studio/v1`` (WebUI app or standalone).

Routes (all JSON unless noted; every one documented in the OpenAPI schema under the "LoRA Studio" tag):

==========  =======================================  ===================================================
GET         /lora-studio/v1/loras                    list with the browser's filters, sorting and paging
GET         /lora-studio/v1/loras/{name}             one LoRA's full information (``name`` may hold ``/``)
GET         /lora-studio/v1/previews/{name}          its preview image (only a sidecar preview of an
                                                     indexed LoRA is ever served)
PUT         /lora-studio/v1/metadata/{name}          write the user's values to its A1111 sidecar
GET         /lora-studio/v1/facets                   filter values with counts
GET         /lora-studio/v1/checkpoints              checkpoints and their detected base model
GET         /lora-studio/v1/pane/cards               a window of the extra-networks pane's cards (HTML
                                                     in JSON) for its search box, filter and paging
POST        /lora-studio/v1/resolve                  resolve preview of a prompt (nothing is generated)
GET/POST    /lora-studio/v1/rescan                   scan status / start a rescan (202)
GET/POST    /lora-studio/v1/jobs                     training jobs: list / create (when training exists)
GET         /lora-studio/v1/jobs/{id}                one job's status and progress
POST        /lora-studio/v1/jobs/{id}/cancel         cancel a job
POST        /lora-studio/v1/jobs/{id}/resume         resume a cancelled or failed job (201, the new job)
==========  =======================================  ===================================================

Security, as the WebUIs do it for their own API: routes an extension adds get no authentication, so
every route here depends on :func:`auth_dependency`, which asks the host for ``--api-auth`` credentials
(HTTP Basic). When the host says it is reachable by others without ``--enable-insecure-extension-access``
(:meth:`Host.is_remote`), requests that name filesystem paths and training requests are refused (403), and
absolute paths are left out of answers. Inputs are validated: 422 for malformed values, 400 for names
that try to leave the LoRA folders, 404 for unknown LoRAs/jobs.

Request models are plain pydantic models that work with pydantic 1 (A1111) and 2 (Forge). Answers are
ASCII-only JSON (:class:`AsciiJSONResponse`): names and metadata come back exact once decoded, and no
control, escape or bidi character from a file stands raw in a response body.
"""

from __future__ import annotations

import json
import mimetypes
import os
from typing import Any, Dict, List, Optional  # noqa: UP035 - pydantic 1 + python 3.10 need typing names

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field, constr

from lib_lora import api_civitai, api_consistency, browse
from lib_lora.errors import LoraStudioError
from lib_lora.host import reachable_by_others, remote_refusal

# Strict text (pydantic 1 would turn 5 into "5"): constr exists with the same meaning in pydantic 1 and 2.
LongText = constr(strict=True, max_length=100_000)
ShortText = constr(strict=True, max_length=10_000)
NameText = constr(strict=True, max_length=4096)
IdText = constr(strict=True, max_length=100)

PREFIX = "/lora-studio/v1"
TAG = "LoRA Studio"

_basic = HTTPBasic(auto_error=False)


# --------------------------------------------------------------------------------------------------
# models (pydantic 1 and 2)


class ResolveRequest(BaseModel):
    prompt: LongText = Field(..., description="the prompt with <lora:...> tags")  # type: ignore[valid-type]
    negative_prompt: LongText = ""  # type: ignore[valid-type]
    checkpoint: Optional[NameText] = Field(  # type: ignore[valid-type]  # noqa: UP045
        None, description="checkpoint title/name to check against (default: the selected one)"
    )


class MetadataRequest(BaseModel):
    """The user's own values; a field left out is unchanged, ``null`` or "" removes it."""

    activation_text: Optional[ShortText] = None  # type: ignore[valid-type]  # noqa: UP045
    preferred_weight: Optional[float] = Field(None, ge=-10.0, le=10.0)  # noqa: UP045
    base: Optional[IdText] = Field(None, description="architecture or family id, e.g. sdxl, pony, sdxl/pony")  # type: ignore[valid-type]  # noqa: UP045
    category: Optional[IdText] = None  # type: ignore[valid-type]  # noqa: UP045
    notes: Optional[LongText] = None  # type: ignore[valid-type]  # noqa: UP045
    negative_text: Optional[ShortText] = None  # type: ignore[valid-type]  # noqa: UP045
    description: Optional[LongText] = None  # type: ignore[valid-type]  # noqa: UP045


class JobRequest(BaseModel):
    """A training job (fields as the Train tab's plan takes them)."""

    dataset: NameText = Field(..., description="folder of training images")  # type: ignore[valid-type]
    base: NameText = Field(..., description="base checkpoint title or name (see /checkpoints)")  # type: ignore[valid-type]
    trigger: IdText = Field("", description="the unique trigger word (may be empty for an existing character)")  # type: ignore[valid-type]
    preset: IdText = Field("default", description="default | fast | gui-defaults")  # type: ignore[valid-type]
    kind: IdText = Field("character", description="character | style | concept")  # type: ignore[valid-type]
    steps: Optional[int] = Field(None, ge=1, le=1_000_000, description="optimizer steps (default: auto)")  # noqa: UP045
    output_name: Optional[IdText] = None  # type: ignore[valid-type]  # noqa: UP045
    caption_extension: IdText = ".txt"  # type: ignore[valid-type]
    gpu_ids: Optional[List[int]] = Field(None, description="GPU ids (several: multi-GPU)")  # noqa: UP006, UP045
    options: Dict[str, Any] = Field(default_factory=dict, description="plan overrides: batch_size, lr, dim, alpha, resolution, ...")  # noqa: UP006
    character: Optional[IdText] = Field(None, description="train the next version of this character (characters/<name>/lora/<name>_v<N>)")  # type: ignore[valid-type]  # noqa: UP045
    references: Optional[List[NameText]] = Field(None, description="dataset images for the character's reference/ (default: a few front-facing)")  # type: ignore[valid-type]  # noqa: UP006, UP045


class LoraPageModel(BaseModel):
    total: int
    matched: int
    hidden_incompatible: int
    page: int
    pages: int
    page_size: int
    checkpoint: Optional[str] = None  # noqa: UP045
    checkpoint_base: Optional[str] = None  # noqa: UP045
    compatibility_counts: Dict[str, int]  # noqa: UP006
    items: List[Dict[str, Any]]  # noqa: UP006


class ScanStatusModel(BaseModel):
    state: str
    done: int
    total: int
    message: str
    started_at: Optional[float] = None  # noqa: UP045
    finished_at: Optional[float] = None  # noqa: UP045
    generation: int


# --------------------------------------------------------------------------------------------------
# helpers


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character written as ``\\uXXXX`` (FastAPI's default writes UTF-8 raw)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, indent=None, separators=(",", ":")).encode("ascii")


def _problem(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def auth_dependency(host: Any) -> Any:
    """A FastAPI dependency enforcing the host's API credentials (HTTP Basic) when it has any."""

    def check(credentials: Optional[HTTPBasicCredentials] = Depends(_basic)) -> None:  # noqa: UP045, B008
        if not host.api_auth_required():
            return
        if credentials is None or not host.check_api_credentials(credentials.username, credentials.password):
            raise HTTPException(
                status_code=401,
                detail="LoRA Studio API: valid --api-auth credentials are required",
                headers={"WWW-Authenticate": "Basic"},
            )

    return check


def looks_like_path(text: str) -> bool:
    return os.path.isabs(text) or text.startswith(("~", "./", "../")) or "\\" in text or "/../" in f"/{text}/"


def check_name(name: str) -> str:
    """A LoRA name from a URL: 400 for one that tries to leave the LoRA folders."""
    if not name or len(name) > 1024 or "\x00" in name:
        raise _problem(400, "a LoRA name must be 1 to 1024 characters")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/"):
        raise _problem(400, f"{name!r} is not a LoRA name: absolute paths and '..' are refused")
    return name


def _json_ready(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return value


class _Context:
    """What every route needs: host, catalog cache, jobs."""

    def __init__(self, host: Any, jobs: Any = None) -> None:
        self.host = host
        self.cache = browse.catalog_cache_for(host)
        self._jobs = jobs
        self._jobs_error: str | None = None
        self._service: Any = None

    def remote(self) -> bool:
        return reachable_by_others(self.host)

    def refuse_remote(self, what: str) -> None:
        refused = remote_refusal(self.host, what)
        if refused:
            raise _problem(403, f"{refused} (start the WebUI with --enable-insecure-extension-access to allow it)")

    def checkpoint(self, title: str | None) -> tuple[str | None, Any]:
        """(label, Detection) for ``title`` (default: the selected checkpoint). 404 when unknown."""
        refs = []
        try:
            refs = list(self.host.list_checkpoints())
        except Exception:
            refs = []
        if title:
            for ref in refs:
                if title in (ref.title, ref.name) or title == ref.title.rsplit(" [", 1)[0]:
                    return ref.title, self.host.checkpoint_detection(ref)
            if looks_like_path(title):
                self.refuse_remote("naming a checkpoint by its file path")
                if not os.path.isfile(os.path.expanduser(title)):
                    raise _problem(404, f"checkpoint file not found: {title}")
                return os.path.basename(title), self.host.checkpoint_detection(os.path.expanduser(title))
            raise _problem(404, f"unknown checkpoint {title!r} (GET {PREFIX}/checkpoints lists them)")
        ref = self.host.selected_checkpoint()
        if ref is None:
            return None, None
        return ref.title, self.host.checkpoint_detection(ref)

    def entry(self, name: str) -> browse.Entry:
        check_name(name)
        catalog = self.cache.get()
        entry = catalog.get(name)
        if entry is None:
            stripped = name[: -len(".safetensors")] if name.lower().endswith(".safetensors") else name
            entry = catalog.get(stripped)
            if entry is None:
                for e in catalog.entries:
                    if stripped in (e.relpath, os.path.splitext(e.relpath)[0]) or (e.alias and e.alias == stripped):
                        entry = e
                        break
        if entry is None:
            raise _problem(404, f"no LoRA named {name!r} in the library")
        return entry

    def jobs(self) -> Any:
        """The host's job manager (``host.jobs()`` when it has one, else one per data folder)."""
        if self._jobs is not None:
            return self._jobs
        getter = getattr(self.host, "jobs", None)
        if callable(getter):
            self._jobs = getter()
            return self._jobs
        try:
            from lib_lora.train.service import job_manager_for
        except ImportError:
            raise _problem(501, "training is not available in this version of LoRA Studio") from None
        try:  # the process's one manager for this data folder, shared with the Train tab
            manager = job_manager_for(self.host.data_dir())
        except Exception as exc:
            raise _problem(503, f"the training job manager cannot start: {exc}") from None
        self._jobs = manager
        return manager

    def service(self) -> Any:
        """The training service over :meth:`jobs` (installs finished LoRAs, holds the queue, frees VRAM)."""
        if self._service is None:
            from lib_lora.train.service import TrainingService, service_for

            manager = self.jobs()
            shared = service_for(self.host)
            self._service = shared if shared.jobs is manager else TrainingService(self.host, manager)
        return self._service

    def job(self, job_id: str) -> Any:
        """The job record of ``job_id``: 400 for a malformed id, 404 for an unknown one."""
        if not job_id or len(job_id) > 200 or "/" in job_id or ".." in job_id:
            raise _problem(400, "not a job id")
        try:
            return self.jobs().get(job_id)
        except (KeyError, LookupError, LoraStudioError):
            raise _problem(404, f"no job {job_id!r}") from None

    def job_json(self, record: Any) -> dict[str, Any]:
        data = _json_ready(record)
        try:
            view = self.service().status(record.id)
        except Exception:
            return data
        if isinstance(data, dict):
            data["installed"] = view.installed.to_dict() if view.installed else None
            data["install_error"] = view.install_error
            data["resumable"] = view.resumable
        return data

    def start_job(self, body: JobRequest) -> str:
        """Queue a training through the same check, plan and service as the Train tab; the job id."""
        from lib_lora.train.service import TrainingRequest

        known = False
        for ref in self.host.list_checkpoints():
            if body.base in (ref.title, ref.name) or body.base == ref.title.rsplit(" [", 1)[0]:
                known = True
                break
        if not known:
            raise _problem(404, f"unknown base checkpoint {body.base!r} (GET {PREFIX}/checkpoints lists them)")
        dataset = os.path.abspath(os.path.expanduser(body.dataset))
        if not os.path.isdir(dataset):
            raise _problem(404, f"dataset folder not found: {body.dataset}")
        request = TrainingRequest(
            folder=dataset,
            trigger=body.trigger,
            base=body.base,
            preset=body.preset,
            kind=body.kind,
            steps=body.steps,
            gpu_ids=tuple(body.gpu_ids) if body.gpu_ids else None,
            output_name=body.output_name,
            caption_extension=body.caption_extension,
            overrides=dict(body.options),
            source="api",
            character=body.character or None,
            references=tuple(body.references) if body.references is not None else None,
        )
        return str(self.service().start(request))


# --------------------------------------------------------------------------------------------------
# router


def make_router(host: Any, *, jobs: Any = None) -> APIRouter:
    """The ``/lora-studio/v1`` router for ``host`` (mount it with ``app.include_router``)."""
    ctx = _Context(host, jobs)
    router = APIRouter(prefix=PREFIX, tags=[TAG], dependencies=[Depends(auth_dependency(host))],
                       default_response_class=AsciiJSONResponse)

    @router.get("/loras", response_model=LoraPageModel, summary="List LoRAs with filters and paging")
    def list_loras(
        q: str = Query("", max_length=browse.MAX_QUERY_CHARS, description="free text: name, alias, trigger words, tags"),
        base: str = Query("", max_length=100, description="architecture id (sdxl) or architecture/family (sdxl/pony)"),
        category: str = Query("", max_length=40, description="a category, or 'none'"),
        compatible_only: bool = Query(False, description="hide LoRAs made for another architecture"),
        checkpoint: Optional[str] = Query(None, max_length=4096, description="judge against this checkpoint"),  # noqa: UP045
        sort: str = Query(browse.SORT_NAME, description="name | date | base"),
        descending: bool = Query(False),
        page: int = Query(1, ge=1, le=1_000_000),
        page_size: int = Query(browse.DEFAULT_PAGE_SIZE, ge=1, le=browse.MAX_PAGE_SIZE),
    ) -> Any:
        label, det = ctx.checkpoint(checkpoint)
        query = browse.Query(q, base, category, compatible_only, sort, descending, page, page_size)
        try:
            result = ctx.cache.get().search(query, det, label)
        except browse.QueryError as exc:
            raise _problem(422, str(exc)) from None
        return result.to_dict()

    @router.get("/loras/{name:path}", summary="One LoRA's full information")
    def get_lora(
        name: str,
        checkpoint: Optional[str] = Query(None, max_length=4096),  # noqa: UP045
    ) -> Any:
        entry = ctx.entry(name)
        _label, det = ctx.checkpoint(checkpoint)
        detail = browse.detail_for(entry, ctx.cache.get().compat(entry, det))
        if not ctx.remote():
            detail["path"] = entry.path
        return detail

    @router.get(
        "/previews/{name:path}",
        summary="A LoRA's preview image",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
    )
    def get_preview(name: str) -> Any:
        entry = ctx.entry(name)
        if not entry.preview or not os.path.isfile(entry.preview):
            raise _problem(404, f"{name}: no preview image")
        media = mimetypes.guess_type(entry.preview)[0] or "application/octet-stream"
        if not media.startswith("image/"):
            raise _problem(404, f"{name}: no preview image")
        return FileResponse(entry.preview, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @router.put("/metadata/{name:path}", summary="Write the user's values to the LoRA's A1111 sidecar")
    def put_metadata(name: str, body: MetadataRequest) -> Any:
        entry = ctx.entry(name)
        fields_set = getattr(body, "model_fields_set", None)
        if fields_set is None:
            fields_set = body.__fields_set__
        raw = body.model_dump() if hasattr(body, "model_dump") else body.dict()
        changes: dict[str, Any] = {}
        for key in fields_set:
            value = raw[key]
            if isinstance(value, str):
                value = value.strip() or None
            changes[key] = value
        if "category" in changes and changes["category"]:
            cat = str(changes["category"]).lower()
            if cat not in browse.CATEGORIES + browse.EXTRA_CATEGORIES:
                raise _problem(422, f"unknown category {changes['category']!r}")
            changes["category"] = cat
        if "preferred_weight" in changes and not changes["preferred_weight"]:
            changes["preferred_weight"] = None
        if changes.get("base") and any(ch in str(changes["base"]) for ch in "\\<>\"'"):
            raise _problem(422, f"not a base-model id: {changes['base']!r}")
        try:
            library = host.library()
            setter = getattr(library, "set_user_metadata", None)
            if callable(setter):
                setter(entry.path, **changes)
            else:
                from lib_lora.sidecars import update_user_metadata

                update_user_metadata(entry.path, **changes)
                host.rescan()
        except LoraStudioError as exc:
            raise _problem(409, str(exc)) from None
        ctx.cache.invalidate()
        fresh = ctx.cache.get().get(entry.name) or entry
        return browse.detail_for(fresh, ctx.cache.get().compat(fresh, ctx.checkpoint(None)[1]))

    @router.get("/facets", summary="Filter values with counts")
    def facets() -> Any:
        out = ctx.cache.get().facets()
        return {
            key: [{"value": f.value, "label": f.label, "count": f.count} for f in values] for key, values in out.items()
        } | {"sorts": list(browse.SORTS)}

    @router.get("/checkpoints", summary="Checkpoints and their detected base model")
    def checkpoints() -> Any:
        selected = host.selected_checkpoint()
        out = []
        for ref in host.list_checkpoints():
            det = host.checkpoint_detection(ref)
            item = {
                "title": ref.title,
                "name": ref.name,
                "selected": selected is not None and ref.path == selected.path,
                "architecture": det.architecture if det else None,
                "family": det.family if det else None,
                "base": browse.checkpoint_badge_text(det),
            }
            if not ctx.remote():
                item["path"] = ref.path
            out.append(item)
        return {"checkpoints": out}

    @router.post("/resolve", summary="Resolve a prompt's <lora:...> tags (preview; nothing is generated)")
    def resolve(body: ResolveRequest) -> Any:
        _label, det = ctx.checkpoint(body.checkpoint)
        try:
            return browse.resolve_preview(host, body.prompt, body.negative_prompt, det)
        except LoraStudioError as exc:
            raise _problem(422, str(exc)) from None

    def _status() -> dict[str, Any]:
        s = host.scan_status()
        return {
            "state": s.state,
            "done": s.done,
            "total": s.total,
            "message": s.message,
            "started_at": s.started_at,
            "finished_at": s.finished_at,
            "generation": s.generation,
        }

    @router.get("/rescan", response_model=ScanStatusModel, summary="Status of the library scan")
    def rescan_status() -> Any:
        return _status()

    @router.post("/rescan", response_model=ScanStatusModel, status_code=202,
                 summary="Rescan the LoRA folders (unchanged files are not re-read)")
    def rescan(wait: bool = Query(False, description="answer only when the scan has finished")) -> Any:
        host.rescan(wait=wait)
        ctx.cache.invalidate()
        return _status()

    # -- training jobs
    @router.get("/jobs", summary="Training jobs (newest first)")
    def list_jobs() -> Any:
        manager = ctx.jobs()
        return {"jobs": [ctx.job_json(j) for j in manager.list()]}

    @router.post("/jobs", status_code=201, summary="Check the dataset, plan and queue a training job")
    def create_job(body: JobRequest) -> Any:
        ctx.refuse_remote("training")
        for key in ("dataset", "base", "trigger"):
            if key == "trigger" and body.character:
                continue  # an existing character's prompts.txt gives it
            if not str(getattr(body, key)).strip():
                raise _problem(422, f"{key} must not be empty")
        manager = ctx.jobs()
        try:
            job_id = ctx.start_job(body)
        except LoraStudioError as exc:
            raise _problem(422, str(exc)) from None
        return ctx.job_json(manager.get(job_id))

    @router.get("/jobs/{job_id}", summary="One job's status and progress")
    def get_job(job_id: str) -> Any:
        return ctx.job_json(ctx.job(job_id))

    @router.post("/jobs/{job_id}/cancel", summary="Cancel a job (keeps its last periodic save)")
    def cancel_job(job_id: str) -> Any:
        ctx.refuse_remote("cancelling training")
        ctx.job(job_id)
        try:
            result = ctx.jobs().cancel(job_id)
        except LoraStudioError as exc:
            raise _problem(409, str(exc)) from None
        return _json_ready(result) if result is not None else {"id": job_id, "cancelled": True}

    @router.post("/jobs/{job_id}/resume", status_code=201, summary="Resume a cancelled or failed job")
    def resume_job(job_id: str) -> Any:
        ctx.refuse_remote("training")
        ctx.job(job_id)
        try:
            new_id = ctx.service().resume(job_id)
        except LoraStudioError as exc:
            raise _problem(409, str(exc)) from None
        return ctx.job_json(ctx.jobs().get(new_id))

    @router.get("/pane/cards", summary="A window of the extra-networks pane's LoRA Studio cards")
    def pane_cards(
        q: str = Query("", max_length=browse.MAX_QUERY_CHARS, description="the pane's search box"),
        checkpoint: Optional[str] = Query(None, max_length=4096, description="the dropdown's title"),  # noqa: UP045
        compatible_only: bool = Query(False, description="hide LoRAs incompatible with the checkpoint"),
        offset: int = Query(0, ge=0, le=10_000_000),
        limit: int = Query(200, ge=1, le=1000),
    ) -> Any:
        import time

        from lib_lora.ui import pane

        t0 = time.perf_counter()
        built = pane.pane_for_host(host, any_selection=True)
        t1 = time.perf_counter()
        body = pane.window_json(built, q, checkpoint, compatible_only, offset, limit, paths=not ctx.remote())
        t2 = time.perf_counter()
        # Server-Timing: where the route's own time went (benchmarks/pane_webui.py --profile reads it).
        timing = f"pane;dur={(t1 - t0) * 1000:.1f}, window;dur={(t2 - t1) * 1000:.1f}"
        return AsciiJSONResponse(body, headers={"Server-Timing": timing})

    from lib_lora.api_characters import add_routes as add_character_routes

    add_character_routes(router, host, problem=_problem, refuse_remote=ctx.refuse_remote)
    api_consistency.add_routes(router, ctx)
    api_civitai.add_routes(router, ctx)  # Civitai / Hugging Face: fetch info, downloads, new versions
    return router


def install(app: Any, host: Any, *, jobs: Any = None) -> None:
    """Add the router to ``app`` (the WebUI's FastAPI app in ``on_app_started``, or the standalone app)."""
    app.include_router(make_router(host, jobs=jobs))


__all__ = ["PREFIX", "auth_dependency", "install", "make_router"]
