"""lib_lora.host: StandaloneHost, checkpoint detection cache, library keeper, credentials."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from factory import make_checkpoint

from lib_lora.errors import LibraryError, LoraStudioError
from lib_lora.host import (
    CheckpointDetector,
    Host,
    LibraryKeeper,
    StandaloneHost,
    credentials_match,
    parse_credentials,
)

SD15 = "kohya-outputs/sd15-kohya-dim4-mychar.safetensors"


@pytest.fixture
def host(tmp_path: Path, fixtures_dir: Path) -> StandaloneHost:
    loras = tmp_path / "loras"
    loras.mkdir()
    shutil.copyfile(fixtures_dir / SD15, loras / "zk_alice.safetensors")
    ckpts = tmp_path / "ckpts"
    make_checkpoint(ckpts, "sd15", "ckpt-sd1")
    make_checkpoint(ckpts, "sdxl", "ckpt-sdxl", subdir="xl")
    return StandaloneHost([loras], data_dir=tmp_path / "data", checkpoint_dirs=[ckpts])


def test_standalone_host_is_a_host(host: StandaloneHost) -> None:
    assert isinstance(host, Host) and host.kind == "standalone"


def test_settings_persist_in_the_data_folder(host: StandaloneHost, tmp_path: Path) -> None:
    assert host.settings().enabled
    new = host.update_settings(incompatible="skip", extra_roots=[str(tmp_path / "more")])
    assert new.incompatible == "skip"
    stored = json.loads((tmp_path / "data" / "settings.json").read_text())
    assert stored["incompatible"] == "skip"
    assert host.settings().incompatible == "skip"
    assert host.lora_roots() == [tmp_path / "loras", tmp_path / "more"]
    with pytest.raises(LoraStudioError, match="unknown value"):
        host.update_settings(trigger_policy="sometimes")
    assert host.settings().incompatible == "skip"  # nothing written on error


def test_broken_settings_file_gives_defaults_with_a_problem(host: StandaloneHost, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "settings.json").write_text("{not json")
    got = host.settings()
    assert got.enabled and got.problems and "using the defaults" in got.problems[0]


def test_checkpoints_listed_selected_and_detected(host: StandaloneHost) -> None:
    names = [c.name for c in host.list_checkpoints()]
    assert names == ["sd15.safetensors", "xl/sdxl.safetensors"]
    assert host.selected_checkpoint() is None and host.checkpoint_detection(None) is None
    ref = host.select_checkpoint("xl/sdxl.safetensors")
    assert ref is not None and host.selected_checkpoint() == ref
    assert host.checkpoint_detection(ref).architecture == "sdxl"
    with pytest.raises(LibraryError, match="not found"):
        host.select_checkpoint("nope.safetensors")


def test_pickle_checkpoints_are_never_opened(tmp_path: Path) -> None:
    ckpt = tmp_path / "old.ckpt"
    ckpt.write_bytes(b"\x80\x02 not to be unpickled")
    os.chmod(ckpt, 0)  # reading it would fail loudly
    try:
        det = CheckpointDetector().detect(ckpt)
    finally:
        os.chmod(ckpt, 0o644)
    assert det.architecture == "unknown" and "not a safetensors file" in det.evidence[0].detail


def test_detection_cache_follows_the_file(tmp_path: Path) -> None:
    detector = CheckpointDetector()
    path = make_checkpoint(tmp_path, "model", "ckpt-sd1")
    first = detector.detect(path)
    assert detector.detect(path) is first  # cached
    make_checkpoint(tmp_path, "model", "ckpt-sdxl")
    os.utime(path, ns=(1, 1))
    assert detector.detect(path).architecture == "sdxl"
    path.write_bytes(b"\x00" * 4)
    assert detector.detect(path).architecture == "unknown"
    assert detector.detect(tmp_path / "gone.safetensors").architecture == "unknown"


def test_library_keeper_scans_in_the_background_with_progress(host: StandaloneHost) -> None:
    assert host.scan_status().state == "idle"
    status = host.rescan(wait=True)
    assert status.state == "done" and status.total == 1 and status.generation == 1
    assert host.library().lookup("zk_alice").status == "found"
    assert host.rescan(wait=True).generation == 2


def test_library_keeper_reports_a_failed_scan(tmp_path: Path) -> None:
    def roots() -> list[Path]:
        raise LibraryError("the LoRA folder /nowhere cannot be read")

    keeper = LibraryKeeper(roots, lambda: tmp_path / "index.sqlite3")
    status = keeper.scan(wait=True)
    assert status.state == "failed" and status.message == "the LoRA folder /nowhere cannot be read"


def test_remote_and_credentials(tmp_path: Path) -> None:
    local = StandaloneHost([tmp_path], data_dir=tmp_path / "d")
    assert not local.is_remote() and not local.api_auth_required() and local.check_api_credentials(None, None)
    exposed = StandaloneHost([tmp_path], data_dir=tmp_path / "d", bind_host="0.0.0.0", api_auth="u:p:w")
    assert exposed.is_remote() and exposed.api_auth_required()
    assert exposed.check_api_credentials("u", "p:w") and not exposed.check_api_credentials("u", "p")
    allowed = StandaloneHost(
        [tmp_path], data_dir=tmp_path / "d", bind_host="0.0.0.0", allow_remote_access=True
    )
    assert not allowed.is_remote()
    assert not StandaloneHost([tmp_path], data_dir=tmp_path / "d", bind_host="::1").is_remote()


def test_parse_credentials() -> None:
    assert parse_credentials("a:1, b:2:3") == {"a": "1", "b": "2:3"}
    assert parse_credentials(None) == {} and parse_credentials("") == {}
    with pytest.raises(LoraStudioError):
        parse_credentials("nopassword")
    assert not credentials_match({"a": "1"}, "b", "1") and not credentials_match({"a": "1"}, "a", None)


def test_queue_lock_and_vram_are_noops(host: StandaloneHost) -> None:
    with host.queue_lock():
        pass
    token = host.free_vram()
    assert not token.freed
    host.restore_vram(token)
