"""``POST /lora-studio/v1/dataset/check``: the dataset report with its coverage over HTTP (the same check
as the Train tab's "Check dataset"), and the remote-user gate. Runs where fastapi is installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gradio]

pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from lib_lora import api  # noqa: E402
from lib_lora.train import service as service_module  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_service import World  # noqa: E402


@pytest.fixture
def setup(tmp_path):  # type: ignore[no-untyped-def]
    w = World(tmp_path)
    app = FastAPI()
    api.install(app, w.host, jobs=w.jobs)
    try:
        yield w, TestClient(app)
    finally:
        w.close()
        service_module.reset_for_tests()


def test_dataset_check_returns_coverage_with_advice(setup):  # type: ignore[no-untyped-def]
    w, client = setup
    for i, p in enumerate(sorted(Path(w.images).glob("*.txt"))):
        p.write_text("zed, looking at viewer, smile, white background" if i % 2 else "zed, from side, outdoors",
                     encoding="utf-8")
    r = client.post("/lora-studio/v1/dataset/check",
                    json={"dataset": str(w.images), "trigger": "zed", "base": "sd15-base.safetensors"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["image_count"] > 0 and data["base_arch"] == "sd1"
    cov = data["coverage"]
    dims = {d["id"]: d for d in cov["dimensions"]}
    assert set(dims) == {"angles", "expressions", "lighting", "backgrounds", "outfits"}
    counts = {c["id"]: c["count"] for c in dims["angles"]["categories"]}
    assert counts["profile"] > 0 and counts["front"] > 0
    assert "no shots from above — add 2–3" in cov["advice"]
    assert any(e["source"] == "caption" for img in cov["images"] for e in img["evidence"])


def test_dataset_check_errors_and_remote_gate(setup, monkeypatch):  # type: ignore[no-untyped-def]
    w, client = setup
    r = client.post("/lora-studio/v1/dataset/check", json={"dataset": str(w.images) + "-nope", "trigger": "zed",
                                                           "base": "sd15-base.safetensors"})
    assert r.status_code == 404 and "dataset folder not found" in r.json()["detail"]
    r = client.post("/lora-studio/v1/dataset/check", json={"dataset": str(w.images), "trigger": "zed",
                                                           "base": "nope.safetensors"})
    assert r.status_code == 422
    monkeypatch.setattr(w.host, "is_remote", lambda: True)
    r = client.post("/lora-studio/v1/dataset/check", json={"dataset": str(w.images), "trigger": "zed"})
    assert r.status_code == 403 and "refused" in r.json()["detail"]
