"""New versions end to end without a browser: check -> badge on the card -> one click downloads the new
version beside the old one (lib_lora.remote.versions + lib_lora.ui.remote_panel on a StandaloneHost)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from factory import make_lora
from fake_remote import FakeCivitai, model_object, safetensors_bytes, version_object

from lib_lora.host import StandaloneHost
from lib_lora.remote.jobs import service_for
from lib_lora.ui import browser, remote_panel


@pytest.fixture
def civitai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCivitai]:
    fake = FakeCivitai()
    monkeypatch.setenv("LORA_STUDIO_CIVITAI_URL", fake.url)
    monkeypatch.delenv("CIVITAI_API_KEY", raising=False)
    yield fake
    fake.close()


def test_new_version_badge_and_download_beside_the_old(civitai: FakeCivitai, tmp_path: Path) -> None:
    loras = tmp_path / "Lora"
    old = make_lora(loras, "hero_v1", "kohya-sdxl", subdir="chars")
    v1 = version_object(1, 77, hashlib.sha256(old.read_bytes()).hexdigest(), name="v1", file_name=old.name)
    v2 = version_object(2, 77, "", name="v2", file_name="hero_v2.safetensors")
    v2["files"][0]["hashes"] = {}
    v1 = civitai.add(v1)
    v2 = civitai.add(v2, model_object(77, [v2, v1]), safetensors_bytes(50_000, 9))
    host = StandaloneHost([loras], data_dir=tmp_path / "data")
    host.rescan(wait=True)
    svc = service_for(host)
    job = svc.jobs.wait(svc.start_fetch(None).id, timeout=60)
    assert job.state == "succeeded", job.to_dict()
    job = svc.jobs.wait(svc.start_version_check().id, timeout=60)
    assert job.state == "succeeded" and job.result["newer"][str(old)]["latest_version_id"] == 2
    ctl = browser.BrowserController(host)
    page = ctl.render("", browser.ALL_BASES, browser.CATEGORY_ALL, False, "Name", 1, None)
    assert 'class="lss-newver"' in page
    message = remote_panel.handle_command(host, ctl, {"op": "download-new", "name": "hero_v1"})
    assert "Downloading the new version" in message
    new_job = svc.jobs.list("download")[0]
    assert svc.jobs.wait(new_job.id, timeout=60).state == "succeeded", new_job.to_dict()
    assert (loras / "chars" / "hero_v2.safetensors").is_file()  # beside the old one
    assert old.is_file()
    page = ctl.render("", browser.ALL_BASES, browser.CATEGORY_ALL, False, "Name", 1, None)
    assert 'class="lss-newver"' not in page  # the badge went with the download
