"""HTTP routes for the Civitai / Hugging Face features, added to the ``/lora-studio/v1`` router.

POST  /civitai/fetch          ``{"names": [...]}`` or ``{"all": true}`` (``"refetch": true`` as ``--all``):
                              start a fetch-info job (201, the job)
POST  /downloads              ``{"url": ..., "subfolder": ...}``: start a download job (201, the job)
GET   /downloads              download and fetch jobs, newest first
GET   /downloads/{id}         one job (fetches too) — the same shape as ``/jobs/{id}``
POST  /downloads/{id}/cancel  cancel it
POST  /civitai/versions       start a new-version check (201, the job)
GET   /civitai/versions       the last check's result (offline)

Starting a job writes files and goes online: refused to remote users under the same gate as training.
Answers never hold the Civitai key (it is only ever sent to Civitai, as a header).
"""

from __future__ import annotations

from typing import Any, List, Optional  # noqa: UP035 - pydantic 1 + python 3.10 need typing names

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field, constr

from lib_lora.errors import LoraStudioError

UrlText = constr(strict=True, max_length=4096)
NameText = constr(strict=True, max_length=4096)
SubText = constr(strict=True, max_length=400)


class FetchRequest(BaseModel):
    names: Optional[List[NameText]] = Field(None, max_items=100_000, description="LoRA names as <lora:NAME> uses them")  # type: ignore[valid-type]  # noqa: UP006, UP045
    all: bool = Field(False, description="every LoRA in the library")
    refetch: bool = Field(False, description="also LoRAs that already have info; ignore the one-week memory")


class DownloadRequest(BaseModel):
    url: UrlText = Field(..., description="Civitai model/download URL, Hugging Face blob/resolve URL or hf://owner/repo/file")  # type: ignore[valid-type]
    subfolder: Optional[SubText] = Field(None, description="subfolder of the LoRA folder")  # type: ignore[valid-type]  # noqa: UP045


def add_routes(router: APIRouter, ctx: Any) -> None:
    """Add the routes to ``router``; ``ctx`` is the API's context (host, ``entry()``, ``refuse_remote()``)."""
    from lib_lora.remote.jobs import service_for

    def svc() -> Any:
        return service_for(ctx.host)

    def job(job_id: str) -> Any:
        if not job_id or len(job_id) > 200 or "/" in job_id:
            raise HTTPException(400, "not a job id")
        try:
            return svc().jobs.get(job_id)
        except KeyError:
            raise HTTPException(404, f"no download or fetch job {job_id!r}") from None

    @router.post("/civitai/fetch", status_code=201, summary="Fetch Civitai info (trigger words, base model, preview)")
    def civitai_fetch(body: FetchRequest) -> Any:
        ctx.refuse_remote("fetching Civitai info")
        if body.all == bool(body.names):
            raise HTTPException(400, 'give either "names" (a non-empty list) or "all": true')
        paths = None if body.all else [ctx.entry(n).path for n in body.names or ()]
        return svc().start_fetch(paths, refetch=body.refetch).to_dict()

    @router.post("/downloads", status_code=201, summary="Download a LoRA from Civitai or Hugging Face")
    def start_download(body: DownloadRequest) -> Any:
        ctx.refuse_remote("downloading")
        try:
            return svc().start_download(body.url, subfolder=body.subfolder).to_dict()
        except LoraStudioError as exc:
            raise HTTPException(400, exc.message) from None

    def answer(j: Any) -> dict[str, Any]:
        data: dict[str, Any] = j.to_dict()
        if ctx.remote():  # file paths are not shown to remote users (as for /loras)
            data["status"]["output_path"] = None
            data["result"] = None
        return data

    @router.get("/downloads", summary="Download and fetch jobs (newest first)")
    def list_downloads() -> Any:
        return {"jobs": [answer(j) for j in svc().jobs.list()]}

    @router.get("/downloads/{job_id}", summary="One download or fetch job")
    def get_download(job_id: str) -> Any:
        return answer(job(job_id))

    @router.post("/downloads/{job_id}/cancel", summary="Cancel a download or fetch job")
    def cancel_download(job_id: str) -> Any:
        job(job_id)
        ctx.refuse_remote("cancelling a download")
        return answer(svc().jobs.cancel(job_id))

    @router.post("/civitai/versions", status_code=201, summary="Check Civitai for newer versions of installed LoRAs")
    def check_versions() -> Any:
        ctx.refuse_remote("checking Civitai")
        return svc().start_version_check().to_dict()

    @router.get("/civitai/versions", summary="The last new-version check (no network)")
    def last_versions() -> Any:
        from lib_lora.remote.versions import load_checks

        return load_checks(ctx.host.data_dir())
