"""The characters' HTTP routes and ``POST /jobs`` with ``character`` (FastAPI TestClient, real files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gradio

fastapi = pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from factory import make_lora, png_bytes  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from lib_lora import api  # noqa: E402
from lib_lora.characters import ENV_ROOT, create_character  # noqa: E402
from lib_lora.host import StandaloneHost  # noqa: E402

P = "/lora-studio/v1"
PNG = png_bytes()


def _client(tmp_path: Path, **kw: Any) -> tuple[TestClient, StandaloneHost, Path]:
    loras = tmp_path / "Lora"
    make_lora(loras, "villain", subdir="misc", metadata={"modelspec.trigger_phrase": "vil"})
    make_lora(loras, "sidekick")
    root = loras / "characters"
    create_character(root, "hero", trigger="herotok")
    make_lora(root / "hero" / "lora", "hero_v1")
    (root / "hero" / "reference" / "front.png").write_bytes(PNG)
    host = StandaloneHost([loras], data_dir=tmp_path / "data", **kw)
    host.rescan(wait=True)
    app = fastapi.FastAPI()
    api.install(app, host)
    return TestClient(app), host, root


def test_list_get_create_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ROOT, raising=False)
    client, host, root = _client(tmp_path)
    data = client.get(f"{P}/characters").json()
    assert data["root"] == str(root) and [c["name"] for c in data["characters"]] == ["hero"]
    hero = client.get(f"{P}/characters/HERO").json()
    assert hero["trigger"] == ["herotok"] and hero["version_labels"] == ["v1"] and hero["reference_count"] == 1
    r = client.get(f"{P}/characters/heor")
    assert r.status_code == 404 and "did you mean hero" in r.text
    img = client.get(f"{P}/characters/hero/image/reference/0")
    assert img.status_code == 200 and img.content == PNG
    assert client.get(f"{P}/characters/hero/image/reference/5").status_code == 404

    r = client.post(f"{P}/characters", json={"name": "villain", "lora": "misc/villain"})
    assert r.status_code == 201, r.text
    assert r.json()["prompts"]["lora"] == "misc/villain" and (tmp_path / "Lora" / "misc" / "villain.safetensors").exists()
    r = client.post(f"{P}/characters", json={"name": "sidekick", "lora": "sidekick", "move_lora": True, "trigger": "sk"})
    assert r.status_code == 201, r.text
    assert (root / "sidekick" / "lora" / "sidekick.safetensors").is_file()
    assert host.library().lookup("sidekick").entry.path == str(root / "sidekick" / "lora" / "sidekick.safetensors")
    assert client.post(f"{P}/characters", json={"name": "Hero"}).status_code == 409
    assert client.post(f"{P}/characters", json={"name": "../x"}).status_code == 422
    assert client.post(f"{P}/characters", json={"name": "x", "lora": "nope"}).status_code == 404

    (root / "hero" / "prompts.txt").write_text("her scarf is red\ntrigger: herotok\n", encoding="utf-8")
    face = tmp_path / "face.png"
    face.write_bytes(PNG)
    r = client.put(f"{P}/characters/hero", json={"anchors": ["same scarf", "same face"], "trigger_weight": 1.2,
                                                 "use_drift": False, "add_references": [str(face)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["prompts"]["anchors"] == ["same scarf", "same face"] and body["prompts"]["use_drift"] is False
    assert body["reference_count"] == 2
    text = (root / "hero" / "prompts.txt").read_text(encoding="utf-8")
    assert text.startswith("her scarf is red\ntrigger: herotok\n") and "anchors: same scarf, same face" in text
    assert client.put(f"{P}/characters/hero", json={"trigger_weight": 7}).status_code == 422
    assert client.put(f"{P}/characters/hero", json={"add_references": [str(tmp_path / "a.txt")]}).status_code == 422

    # the resolve preview expands <char:...> like the WebUI hook
    r = client.post(f"{P}/resolve", json={"prompt": "<char:hero> walking", "negative_prompt": ""})
    assert r.status_code == 200, r.text
    assert "(herotok:1.2), same scarf, same face" in r.json()["prompt"] and r.json()["characters"] == "hero v1"


def test_remote_users_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ROOT, raising=False)
    client, _host, root = _client(tmp_path, bind_host="0.0.0.0")
    assert client.get(f"{P}/characters").status_code == 200  # reading is fine
    assert client.post(f"{P}/characters", json={"name": "new"}).status_code == 403
    assert client.put(f"{P}/characters/hero", json={"trigger": "x"}).status_code == 403
    assert not (root / "new").exists()
    assert "trigger: herotok" in (root / "hero" / "prompts.txt").read_text(encoding="utf-8")


from test_train_api import body, setup  # noqa: E402,F401  (the training API fixture)


def test_post_jobs_with_character(setup: Any) -> None:  # noqa: F811
    w, client, shared = setup
    r = client.post(f"{P}/jobs", json=body(w, character="zed"))
    assert r.status_code == 201, r.text
    view = shared.wait(r.json()["id"], timeout=60)
    assert view.installed is not None, view.install_error
    assert view.installed.path == str(w.loras / "characters" / "zed" / "lora" / "zed_v1.safetensors")
    r = client.post(f"{P}/jobs", json=body(w, character="zed", trigger=""))  # existing: no trigger needed
    assert r.status_code == 201, r.text
    view = shared.wait(r.json()["id"], timeout=60)
    assert view.installed is not None and view.installed.path.endswith("zed_v2.safetensors")
    assert client.post(f"{P}/jobs", json=body(w, character="other", trigger="")).status_code == 422
    assert [c["version_labels"] for c in client.get(f"{P}/characters").json()["characters"]] == [["v2", "v1"]]
