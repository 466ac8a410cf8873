"""The Civitai / download routes of /lora-studio/v1 over HTTP, against the fake Civitai."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gradio

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from factory import make_checkpoint, make_lora  # noqa: E402
from fake_remote import FakeCivitai, model_object, safetensors_bytes, version_object  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from lib_lora import api  # noqa: E402
from lib_lora.host import StandaloneHost  # noqa: E402

KEY = "sekrit-key-0123456789"
P = "/lora-studio/v1"


@pytest.fixture
def civitai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCivitai]:
    fake = FakeCivitai()
    monkeypatch.setenv("LORA_STUDIO_CIVITAI_URL", fake.url)
    monkeypatch.setenv("CIVITAI_API_KEY", KEY)
    yield fake
    fake.close()


def _client(tmp_path: Path, **kw: Any) -> tuple[TestClient, StandaloneHost, Path]:
    loras = tmp_path / "Lora"
    make_lora(loras, "alice", "kohya-sdxl")
    make_lora(loras, "bob", "kohya-sdxl", rank=8)
    ckpts = tmp_path / "ckpt"
    make_checkpoint(ckpts, "sdxl-base", "ckpt-sdxl")
    host = StandaloneHost([loras], data_dir=tmp_path / "data", checkpoint_dirs=[ckpts], **kw)
    host.rescan(wait=True)
    app = fastapi.FastAPI()
    api.install(app, host)
    return TestClient(app), host, loras


def _wait(client: TestClient, job_id: str) -> dict[str, Any]:
    for _ in range(500):
        data = client.get(f"{P}/downloads/{job_id}").json()
        if data["status"]["state"] in ("succeeded", "failed", "cancelled"):
            return data  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError("job did not end")


def _register(fake: FakeCivitai, path: Path, vid: int, mid: int, **kw: Any) -> None:
    import hashlib

    v = version_object(vid, mid, hashlib.sha256(path.read_bytes()).hexdigest(), file_name=path.name, **kw)
    fake.add(v, model_object(mid, [v]))


def test_fetch_by_name_and_all(civitai: FakeCivitai, tmp_path: Path) -> None:
    client, _host, loras = _client(tmp_path)
    _register(civitai, loras / "alice.safetensors", 1, 10, base_model="Illustrious", words=("zk_alice",))
    r = client.post(f"{P}/civitai/fetch", json={"names": ["alice"]})
    assert r.status_code == 201, r.text
    job = _wait(client, r.json()["id"])
    assert job["status"]["state"] == "succeeded", job
    assert job["kind"] == "civitai-fetch" and "1 fetched" in job["status"]["message"]
    assert (loras / "alice.civitai.info").is_file() and (loras / "alice.preview.png").is_file()
    info = client.get(f"{P}/loras/alice").json()
    assert info["family"] == "illustrious"
    r = client.post(f"{P}/civitai/fetch", json={"all": True})
    job = _wait(client, r.json()["id"])
    assert job["status"]["state"] == "succeeded" and "1 unknown" in job["status"]["message"]
    assert KEY not in json.dumps(job)
    assert client.post(f"{P}/civitai/fetch", json={}).status_code == 400
    assert client.post(f"{P}/civitai/fetch", json={"names": ["nobody"]}).status_code == 404


def test_download_job_and_cancel(civitai: FakeCivitai, tmp_path: Path) -> None:
    client, _host, loras = _client(tmp_path)
    data = safetensors_bytes(100_000, 3)
    v = version_object(7, 70, "", file_name="dl.safetensors")
    v["files"][0]["hashes"] = {}
    civitai.add(v, model_object(70, [v]), data)
    r = client.post(f"{P}/downloads", json={"url": f"{civitai.url}/models/70", "subfolder": "new"})
    assert r.status_code == 201, r.text
    job = _wait(client, r.json()["id"])
    assert job["status"]["state"] == "succeeded", job
    assert job["status"]["output_path"] == str(loras / "new" / "dl.safetensors")
    assert (loras / "new" / "dl.safetensors").read_bytes() == data
    assert client.get(f"{P}/loras/new/dl").status_code == 200  # rescanned: usable at once
    assert any(j["id"] == job["id"] for j in client.get(f"{P}/downloads").json()["jobs"])
    r = client.post(f"{P}/downloads/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"]["state"] == "succeeded"
    assert client.get(f"{P}/downloads/nope").status_code == 404
    bad = client.post(f"{P}/downloads", json={"url": "https://evil.example/x.safetensors"})
    assert bad.status_code == 400 and "neither Civitai" in bad.json()["detail"]


def test_failed_download_is_a_failed_job(civitai: FakeCivitai, tmp_path: Path) -> None:
    client, _host, loras = _client(tmp_path)
    r = client.post(f"{P}/downloads", json={"url": f"{civitai.url}/api/download/models/404"})
    job = _wait(client, r.json()["id"])
    assert job["status"]["state"] == "failed" and "no model version 404" in job["status"]["errors"][0]


def test_remote_users_cannot_fetch_or_download(civitai: FakeCivitai, tmp_path: Path) -> None:
    client, _host, _loras = _client(tmp_path, bind_host="0.0.0.0")
    assert client.post(f"{P}/civitai/fetch", json={"all": True}).status_code == 403
    assert client.post(f"{P}/downloads", json={"url": f"{civitai.url}/models/1"}).status_code == 403
    assert client.post(f"{P}/civitai/versions").status_code == 403
    assert not civitai.log


def test_new_version_check(civitai: FakeCivitai, tmp_path: Path) -> None:
    client, _host, loras = _client(tmp_path)
    old = loras / "alice.safetensors"
    import hashlib

    v1 = version_object(100, 9, hashlib.sha256(old.read_bytes()).hexdigest(), file_name=old.name, name="v1")
    v2 = version_object(101, 9, "ab" * 32, name="v2")
    v1 = civitai.add(v1)
    v2 = civitai.add(v2, model_object(9, [v2, v1]))
    shutil.copy(Path(__file__).parent / "fake_remote.py", tmp_path / "unused.txt")  # keep tmp non-empty
    job = _wait(client, client.post(f"{P}/civitai/fetch", json={"names": ["alice"]}).json()["id"])
    assert job["status"]["state"] == "succeeded"
    job = _wait(client, client.post(f"{P}/civitai/versions").json()["id"])
    assert job["status"]["state"] == "succeeded", job
    newer = client.get(f"{P}/civitai/versions").json()["newer"]
    assert newer[str(old)]["latest_version_id"] == 101
    assert newer[str(old)]["download_url"].endswith("/api/download/models/101")
