"""Training over the HTTP API goes through the same TrainingService as the Train tab: the job is queued in
the process's one job manager, and when it succeeds the LoRA is installed into the LoRA folder; cancel and
resume work over HTTP. Runs where fastapi is installed (the gradio venvs), with the replayed trainer."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gradio, pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")]

pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from lib_lora import api  # noqa: E402
from lib_lora.train import service as service_module  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_service import World, wait_for  # noqa: E402


@pytest.fixture
def setup(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    w = World(tmp_path)
    w.service.close()  # the API uses the process's own service and job manager (service_for)
    w.jobs.close()
    monkeypatch.setenv("SD_SCRIPTS_DIR", str(w.sd))
    monkeypatch.setenv("TRAINER_PYTHON", str(w.py))
    app = FastAPI()
    shared = service_module.service_for(w.host)
    w.jobs = shared.jobs
    api.install(app, w.host, jobs=shared.jobs)
    try:
        yield w, TestClient(app), shared
    finally:
        w.close()
        service_module.reset_for_tests()


def body(w: World, **kw):  # type: ignore[no-untyped-def]
    data = {"dataset": str(w.images), "base": "sd15-base.safetensors", "trigger": "zed", "steps": 4,
            "options": {"save_every_n_steps": 2, "sample_every_n_steps": 4}}
    data.update(kw)
    return data


def test_a_job_started_over_http_is_installed(setup):
    w, client, shared = setup
    r = client.post("/lora-studio/v1/jobs", json=body(w))
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    view = shared.wait(job_id, timeout=60)
    assert view.state == "succeeded" and view.source == "api"
    data = client.get(f"/lora-studio/v1/jobs/{job_id}").json()
    assert data["status"]["state"] == "succeeded"
    assert data["installed"]["path"] == str(w.loras / "zed" / "zed.safetensors")
    assert w.host.library().lookup("zed").found
    assert [j["id"] for j in client.get("/lora-studio/v1/jobs").json()["jobs"]] == [job_id]
    assert w.host.calls == ["free", ("restore", "the-model", True)]  # a1111-like host: VRAM handled too


def test_cancel_and_resume_over_http(setup):
    w, client, shared = setup
    w.hang.touch()
    job_id = client.post("/lora-studio/v1/jobs", json=body(w)).json()["id"]
    wait_for(lambda: shared.status(job_id).status.last_save, what="the periodic save")
    assert client.post(f"/lora-studio/v1/jobs/{job_id}/cancel").status_code == 200
    assert shared.wait(job_id, 30).state == "cancelled"
    assert client.get(f"/lora-studio/v1/jobs/{job_id}").json()["resumable"] is True
    w.hang.unlink()
    r = client.post(f"/lora-studio/v1/jobs/{job_id}/resume")
    assert r.status_code == 201, r.text
    new_id = r.json()["id"]
    assert shared.wait(new_id, 60).installed is not None
    assert client.post(f"/lora-studio/v1/jobs/{new_id}/resume").status_code == 409
    assert client.post("/lora-studio/v1/jobs/20250101-000000-abcdef/resume").status_code == 404


def test_refusals_over_http(setup):
    w, client, _shared = setup
    r = client.post("/lora-studio/v1/jobs", json=body(w, trigger="a, b"))
    assert r.status_code == 422 and "comma" in r.json()["detail"]
    r = client.post("/lora-studio/v1/jobs", json=body(w, dataset=str(w.images / "00.png")))
    assert r.status_code == 404
    w.host.remote = True
    r = client.post("/lora-studio/v1/jobs", json=body(w))
    assert r.status_code == 403 and "insecure-extension-access" in r.json()["detail"]
    assert client.post("/lora-studio/v1/jobs/20250101-000000-abcdef/resume").status_code == 403
    assert w.jobs.list() == [] and w.host.calls == []
