"""``/lora-studio/v1/consistency``: the contract's names (id; state, progress, sheet, cells, best,
score_message; cancel), 409 "needs the WebUI" in the standalone app, the remote gate, 404s. Runs where
fastapi is installed, with the stand-in generation of tests/consistency_support.py."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gradio]

pytest.importorskip("fastapi")
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from lib_lora import api  # noqa: E402
from lib_lora.consistency import sheet as sheet_module  # noqa: E402
from lib_lora.host import StandaloneHost  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consistency_support import ColourEmbedder, RenderHost  # noqa: E402
from factory import make_lora  # noqa: E402

P = "/lora-studio/v1/consistency"


def client_for(host):  # type: ignore[no-untyped-def]
    app = FastAPI()
    api.install(app, host)
    return TestClient(app)


def poll(client, sheet_id, timeout=60.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        data = client.get(f"{P}/{sheet_id}").json()
        if data["state"] in ("succeeded", "failed", "cancelled"):
            return data
        time.sleep(0.05)
    raise AssertionError("the sheet did not finish")


@pytest.fixture
def host(tmp_path):  # type: ignore[no-untyped-def]
    make_lora(tmp_path / "loras", "zed", "kohya-sd1")
    h = RenderHost([tmp_path / "loras"], data_dir=tmp_path / "data")
    h.rescan(wait=True)
    sheet_module.manager_for(h)._embedder_factory = ColourEmbedder  # no CLIP download in tests
    return h


def test_contract_names(host) -> None:  # type: ignore[no-untyped-def]
    client = client_for(host)
    r = client.post(P, json={"lora": "zed", "weights": [0.8, 1.0], "steps": 2, "width": 64, "height": 64})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"id"}
    data = poll(client, r.json()["id"])
    assert data["state"] == "succeeded" and data["progress"] == 1.0
    assert Path(data["sheet"]).is_file()
    assert len(data["cells"]) == 10
    assert set(data["cells"][0]) == {"scene", "version", "weight", "image", "score"}
    assert data["best"]["version"] == "zed" and data["best"]["weight"] in (0.8, 1.0)
    assert isinstance(data["score_message"], str) and data["score_message"]
    assert {r.seed for r in host.requests} == {1000, 1001, 1002, 1003, 1004}
    assert {r.steps for r in host.requests} == {2}


def test_defaults_and_cancel(host) -> None:  # type: ignore[no-untyped-def]
    client = client_for(host)
    host.gate = threading.Event()
    r = client.post(P, json={"lora": "zed"})
    assert r.status_code == 201
    sheet_id = r.json()["id"]
    host.gate.set()
    host.rendered.acquire(timeout=10)
    host.gate.clear()
    c = client.post(f"{P}/{sheet_id}/cancel")
    assert c.status_code == 200 and c.json()["state"] == "cancelling"
    host.gate.set()
    data = poll(client, sheet_id)
    assert data["state"] == "cancelled"
    req = host.requests[0]
    assert (req.width, req.height, req.steps, req.seed) == (512, 512, 20, 1000)  # SD1 LoRA: 512 px
    assert "<lora:zed:0.6>" in req.prompt  # weights default to 0.6, 0.8, 1.0


def test_errors(host, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = client_for(host)
    assert client.get(f"{P}/nope").status_code == 404
    assert client.post(f"{P}/nope/cancel").status_code == 404
    r = client.post(P, json={"lora": "zed", "versions": ["/abs/zed.safetensors"]})
    assert r.status_code == 422 and "never paths" in r.json()["detail"]
    r = client.post(P, json={"lora": "missing"})
    assert r.status_code == 422
    r = client.post(P, json={"lora": "zed", "weights": [5]})
    assert r.status_code == 422
    monkeypatch.setattr(host, "is_remote", lambda: True)
    r = client.post(P, json={"lora": "zed"})
    assert r.status_code == 403 and "refused" in r.json()["detail"]


def test_standalone_answers_409(tmp_path) -> None:  # type: ignore[no-untyped-def]
    make_lora(tmp_path / "loras", "zed", "kohya-sd1")
    client = client_for(StandaloneHost([tmp_path / "loras"], data_dir=tmp_path / "data"))
    r = client.post(P, json={"lora": "zed"})
    assert r.status_code == 409 and "needs the WebUI" in r.json()["detail"]
