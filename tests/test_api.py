"""The /lora-studio/v1 API over HTTP (FastAPI's TestClient: real requests through the ASGI app), with
auth on and off, a "remote" host, and bad input. Runs in both pinned gradio environments (fastapi 0.94 +
pydantic 1, fastapi 0.104.1 + pydantic 2.8.2) and wherever fastapi is installed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gradio

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from factory import make_checkpoint, make_lora  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from lib_lora import api  # noqa: E402
from lib_lora.host import StandaloneHost  # noqa: E402


@pytest.fixture(scope="module")
def lib_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api")
    loras, ckpts = root / "Lora", root / "Stable-diffusion"
    alice = make_lora(loras, "alice", "kohya-sd1", subdir="characters", metadata={"modelspec.trigger_phrase": None})
    alice.with_suffix(".json").write_text(json.dumps({"activation text": "alice_trigger", "preferred weight": 0.7}),
                                          encoding="utf-8")
    alice.with_suffix(".png").write_bytes(_png())
    make_lora(loras, "watercolor", "kohya-sdxl", subdir="styles", metadata={"modelspec.trigger_phrase": "wtrclr"})
    make_lora(loras, "pony_char", "pony-sdxl", subdir="characters")
    make_lora(loras, "alice", "kohya-sdxl", subdir="dupes")  # same stem in another folder
    make_checkpoint(ckpts, "sd15-base", "ckpt-sd1")
    make_checkpoint(ckpts, "sdxl-base", "ckpt-sdxl")
    return {"loras": loras, "ckpts": ckpts, "root": root}


def _png() -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def _client(lib_dirs: dict[str, Path], tmp_path: Path, **host_kwargs: Any) -> tuple[TestClient, StandaloneHost]:
    host = StandaloneHost([lib_dirs["loras"]], data_dir=tmp_path / "data", checkpoint_dirs=[lib_dirs["ckpts"]],
                          **host_kwargs)
    host.select_checkpoint("sd15-base.safetensors")
    host.rescan(wait=True)
    app = fastapi.FastAPI()
    api.install(app, host)
    return TestClient(app), host


@pytest.fixture
def client(lib_dirs: dict[str, Path], tmp_path: Path) -> TestClient:
    return _client(lib_dirs, tmp_path)[0]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- listing and filters ------------------------------------------------------------------------


def test_list_pages_and_marks_incompatible(client: TestClient) -> None:
    r = client.get("/lora-studio/v1/loras", params={"page_size": 2})
    assert r.status_code == 200
    data = r.json()
    assert data["total"] == 4 and data["matched"] == 4 and data["pages"] == 2 and len(data["items"]) == 2
    assert data["checkpoint"] == "sd15-base.safetensors"
    everything = client.get("/lora-studio/v1/loras").json()["items"]
    levels = {(i["relpath"]): i["compatibility"]["level"] for i in everything}
    assert levels["characters/alice"] == "exact"
    assert levels["styles/watercolor"] == "incompatible"  # marked, still listed


def test_duplicate_stems_get_their_relative_path_as_tag_name(client: TestClient) -> None:
    items = client.get("/lora-studio/v1/loras", params={"q": "alice"}).json()["items"]
    tags = sorted(i["tag"] for i in items)
    assert tags == ["<lora:characters/alice:0.7>", "<lora:dupes/alice:1>"]


def test_filters_and_checkpoint_parameter(client: TestClient) -> None:
    r = client.get("/lora-studio/v1/loras", params={"compatible_only": "true", "checkpoint": "sdxl-base.safetensors"})
    data = r.json()
    names = {i["relpath"] for i in data["items"]}
    assert "characters/alice" not in names and "styles/watercolor" in names
    assert data["hidden_incompatible"] == 1
    assert client.get("/lora-studio/v1/loras", params={"q": "wtrclr"}).json()["matched"] == 1
    sdxl = client.get("/lora-studio/v1/loras", params={"base": "sdxl"}).json()
    assert sdxl["matched"] == 3
    facets = client.get("/lora-studio/v1/facets").json()
    assert any(f["value"] == "sdxl" and f["count"] == 3 for f in facets["base"])
    assert facets["sorts"] == ["name", "date", "base"]


def test_pane_cards_window_search_and_compatible_only(client: TestClient) -> None:
    """The extra-networks pane's windows: its cards' HTML for the search box, "compatible only" and paging."""
    data = client.get("/lora-studio/v1/pane/cards", params={"limit": 2}).json()
    assert (data["total"], data["matched"], data["offset"], data["shown"]) == (4, 4, 0, 2)
    assert data["html"].count('class="card lss-pane-card') == 2 and "2 of 4 shown" in data["more"]
    rest = client.get("/lora-studio/v1/pane/cards", params={"limit": 2, "offset": 2}).json()
    assert rest["shown"] == 4 and " hidden" in rest["more"]  # nothing more: the bar is hidden
    names = [m.split('"')[0] for m in (data["html"] + rest["html"]).split('data-name="')[1:]]
    assert sorted(names) == names and len(set(names)) == 4  # name order, no card twice
    found = client.get("/lora-studio/v1/pane/cards", params={"q": "WTRCLR"}).json()
    assert found["matched"] == 1 and 'data-name="watercolor"' in found["html"]
    assert client.get("/lora-studio/v1/pane/cards", params={"q": "alice sdxl"}).json()["matched"] == 1  # every word
    xl = client.get("/lora-studio/v1/pane/cards",
                    params={"compatible_only": "true", "checkpoint": "sdxl-base.safetensors"}).json()
    assert xl["matched"] == 3 and 'data-name="characters/alice"' not in xl["html"]
    assert "copy-path-button" in xl["html"]
    assert client.get("/lora-studio/v1/pane/cards", params={"limit": 0}).status_code == 422


def test_one_lora_and_preview(client: TestClient) -> None:
    r = client.get("/lora-studio/v1/loras/characters/alice")
    assert r.status_code == 200
    info = r.json()
    assert info["architecture"] == "sd1"
    assert info["preferred_weight"] == 0.7
    assert info["trigger_words"][0]["words"] == ["alice_trigger"]
    assert info["path"].endswith("alice.safetensors")  # local host: paths shown
    img = client.get("/lora-studio/v1/previews/characters/alice")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert client.get("/lora-studio/v1/previews/styles/watercolor").status_code == 404


def test_resolve_preview(client: TestClient) -> None:
    r = client.post("/lora-studio/v1/resolve", json={"prompt": "a girl <lora:watercolor:0.6>", "negative_prompt": ""})
    assert r.status_code == 200
    data = r.json()
    assert data["tags"][0]["status"] == "resolved"
    assert data["tags"][0]["compat_level"] == "incompatible"
    assert "wtrclr" in data["prompt"]


def test_metadata_edit_writes_the_sidecar(client: TestClient, lib_dirs: dict[str, Path]) -> None:
    r = client.put("/lora-studio/v1/metadata/styles/watercolor",
                   json={"activation_text": "wtrclr, soft", "category": "Style", "base": "sdxl/illustrious"})
    assert r.status_code == 200, r.text
    sidecar = json.loads((lib_dirs["loras"] / "styles" / "watercolor.json").read_text(encoding="utf-8"))
    assert sidecar["activation text"] == "wtrclr, soft"
    assert sidecar["lora studio category"] == "style"
    assert sidecar["lora studio base"] == "sdxl/illustrious"
    info = client.get("/lora-studio/v1/loras/styles/watercolor").json()
    assert info["family"] == "illustrious" and info["base_source"] == "user"
    assert info["insert_words"] == ["wtrclr", "soft"]
    # a rescan keeps the user's values
    assert client.post("/lora-studio/v1/rescan", params={"wait": "true"}).status_code == 202
    again = client.get("/lora-studio/v1/loras/styles/watercolor").json()
    assert again["family"] == "illustrious" and again["category"] == "style"
    # clean up for the other tests of this module
    client.put("/lora-studio/v1/metadata/styles/watercolor", json={"activation_text": None, "category": None, "base": None})


def test_checkpoints_and_rescan_status(client: TestClient) -> None:
    data = client.get("/lora-studio/v1/checkpoints").json()["checkpoints"]
    by_name = {c["name"]: c for c in data}
    assert by_name["sdxl-base.safetensors"]["architecture"] == "sdxl"
    assert by_name["sd15-base.safetensors"]["selected"] is True
    status = client.get("/lora-studio/v1/rescan").json()
    assert status["state"] == "done" and status["total"] == 4


def test_openapi_documents_the_routes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for route in ("/lora-studio/v1/loras", "/lora-studio/v1/resolve", "/lora-studio/v1/rescan",
                  "/lora-studio/v1/jobs", "/lora-studio/v1/jobs/{job_id}/cancel", "/lora-studio/v1/metadata/{name}"):
        assert route in paths, route
    assert "ResolveRequest" in json.dumps(schema)


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status"),
    [
        ("get", "/lora-studio/v1/loras", {"params": {"page": 0}}, 422),
        ("get", "/lora-studio/v1/loras", {"params": {"page_size": 100000}}, 422),
        ("get", "/lora-studio/v1/loras", {"params": {"sort": "size"}}, 422),
        ("get", "/lora-studio/v1/loras", {"params": {"category": "weapons"}}, 422),
        ("get", "/lora-studio/v1/loras", {"params": {"compatible_only": "maybe"}}, 422),
        ("get", "/lora-studio/v1/loras", {"params": {"checkpoint": "nope.safetensors"}}, 404),
        ("get", "/lora-studio/v1/loras", {"params": {"q": "x" * 600}}, 422),
        ("get", "/lora-studio/v1/loras/nobody", {}, 404),
        ("get", "/lora-studio/v1/loras/..%2F..%2Fetc%2Fpasswd", {}, 400),
        ("get", "/lora-studio/v1/previews/..%2Fsecret", {}, 400),
        ("post", "/lora-studio/v1/resolve", {"json": {}}, 422),
        ("post", "/lora-studio/v1/resolve", {"json": {"prompt": 5}}, 422),
        ("post", "/lora-studio/v1/resolve", {"content": b"not json", "headers": {"content-type": "application/json"}}, 422),
        ("put", "/lora-studio/v1/metadata/characters/alice", {"json": {"preferred_weight": "heavy"}}, 422),
        ("put", "/lora-studio/v1/metadata/characters/alice", {"json": {"category": "weapons"}}, 422),
        ("get", "/lora-studio/v1/jobs/..", {}, 404),
    ],
)
def test_bad_input_is_a_clear_4xx(client: TestClient, method: str, url: str, kwargs: dict[str, Any], status: int) -> None:
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


# -- auth and remote ------------------------------------------------------------------------------


def test_api_auth_enforced(lib_dirs: dict[str, Path], tmp_path: Path) -> None:
    client, _host = _client(lib_dirs, tmp_path, api_auth="alice:s3cret:x,bob:pw")
    r = client.get("/lora-studio/v1/loras")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Basic"
    assert client.get("/lora-studio/v1/loras", headers=_basic("alice", "wrong")).status_code == 401
    assert client.get("/lora-studio/v1/loras", headers=_basic("mallory", "pw")).status_code == 401
    assert client.get("/lora-studio/v1/loras", headers=_basic("alice", "s3cret:x")).status_code == 200
    assert client.post("/lora-studio/v1/resolve", json={"prompt": "x"}, headers=_basic("bob", "pw")).status_code == 200
    assert client.post("/lora-studio/v1/rescan").status_code == 401


def test_remote_host_refuses_paths_and_training(lib_dirs: dict[str, Path], tmp_path: Path) -> None:
    client, _host = _client(lib_dirs, tmp_path, bind_host="0.0.0.0")
    info = client.get("/lora-studio/v1/loras/characters/alice").json()
    assert "path" not in info
    assert all("path" not in c for c in client.get("/lora-studio/v1/checkpoints").json()["checkpoints"])
    ckpt_path = str(lib_dirs["ckpts"] / "sdxl-base.safetensors")
    r = client.get("/lora-studio/v1/loras", params={"checkpoint": ckpt_path})
    assert r.status_code == 403 and "insecure-extension-access" in r.json()["detail"]
    job = {"dataset": str(tmp_path), "base": "sd15-base.safetensors", "trigger": "zkx"}
    assert client.post("/lora-studio/v1/jobs", json=job).status_code == 403


def test_local_host_accepts_a_checkpoint_path(lib_dirs: dict[str, Path], client: TestClient) -> None:
    ckpt_path = str(lib_dirs["ckpts"] / "sdxl-base.safetensors")
    r = client.get("/lora-studio/v1/loras", params={"checkpoint": ckpt_path, "q": "watercolor"})
    assert r.status_code == 200
    assert r.json()["items"][0]["compatibility"]["level"] == "exact"


def test_training_job_validation(client: TestClient, tmp_path: Path) -> None:
    assert client.post("/lora-studio/v1/jobs", json={"dataset": "", "base": "x", "trigger": "t"}).status_code == 422
    r = client.post("/lora-studio/v1/jobs", json={"dataset": str(tmp_path / "none"), "base": "sd15-base.safetensors",
                                                  "trigger": "zkx"})
    assert r.status_code == 404 and "dataset folder not found" in r.json()["detail"]
    r = client.post("/lora-studio/v1/jobs", json={"dataset": str(tmp_path), "base": "nope", "trigger": "zkx"})
    assert r.status_code == 404 and "unknown base checkpoint" in r.json()["detail"]
    assert client.get("/lora-studio/v1/jobs").json() == {"jobs": []}
    assert client.get("/lora-studio/v1/jobs/20250101-000000-abcdef").status_code == 404


def test_answers_are_ascii_json_with_the_exact_strings(tmp_path: Path) -> None:
    """Control, escape and bidi characters from a file come back exact, \\u-escaped in an ASCII-only body."""
    loras = tmp_path / "Lora"
    name = "evil\u202etxt\x1b[31m"
    trigger = "trig\u2066ger\x07 ünï"
    make_lora(loras, name, "kohya-sd1", metadata={"modelspec.trigger_phrase": trigger, "k\u202dey": "v\x00\u200f"})
    host = StandaloneHost([loras], data_dir=tmp_path / "data")
    host.rescan(wait=True)
    app = fastapi.FastAPI()
    api.install(app, host)
    client = TestClient(app)
    listing = client.get(f"{api.PREFIX}/loras")
    assert listing.status_code == 200, listing.text
    body = listing.content
    assert body.isascii() and b"\\u202e" in body and b"\\u001b" in body
    (item,) = listing.json()["items"]
    assert item["name"] == name and item["relpath"] == name and item["tag"] == f"<lora:{name}:1>"
    from urllib.parse import quote

    one = client.get(f"{api.PREFIX}/loras/{quote(name)}")
    assert one.status_code == 200, one.text
    assert one.content.isascii() and one.json()["name"] == name
    assert [trigger] in [g["words"] for g in one.json()["trigger_words"]]
