"""Download by URL against a fake Civitai (signed URLs on another port) and a fake Hugging Face."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_remote import FakeCivitai, FakeHF, Fault, model_object, safetensors_bytes, version_object

from lib_lora.remote.civitai import CivitaiClient
from lib_lora.remote.common import RemoteError
from lib_lora.remote.download import (
    CivitaiRef,
    HFRef,
    content_disposition_name,
    download,
    parse_source,
    sanitize_filename,
    sanitize_subfolder,
)

REPO = Path(__file__).resolve().parents[1]
KEY = "sekrit-key-0123456789"
LOADABLE = (".safetensors", ".ckpt", ".pt")


@pytest.fixture
def civitai() -> Iterator[FakeCivitai]:
    fake = FakeCivitai()
    yield fake
    fake.close()


@pytest.fixture
def loras(tmp_path: Path) -> Path:
    d = tmp_path / "loras"
    d.mkdir()
    return d


def body(n: int = 300_000, seed: int = 1) -> bytes:
    return safetensors_bytes(n, seed)


def add(fake: FakeCivitai, vid: int = 500, mid: int = 50, data: bytes | None = None, **kw: object) -> bytes:
    data = body() if data is None else data
    v = version_object(vid, mid, "", **kw)  # type: ignore[arg-type]
    v["files"][0]["hashes"] = {}
    v = fake.add(v, model_object(mid, [v]), data)
    return data


def client(fake: FakeCivitai) -> CivitaiClient:
    return CivitaiClient(fake.url, KEY)


def loadable(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.lower().endswith(LOADABLE))


def hidden_parts(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.part")]


def test_parse_source(civitai: FakeCivitai, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://hf.example")
    b = civitai.url
    assert parse_source(f"{b}/models/12", b) == CivitaiRef(12, None)
    assert parse_source(f"{b}/models/12/some-slug?modelVersionId=34", b) == CivitaiRef(12, 34)
    assert parse_source(f"{b}/api/download/models/34?type=Model&format=SafeTensor", b) == CivitaiRef(None, 34)
    assert parse_source("https://hf.example/o/r/blob/main/sub/x.safetensors", b) == HFRef("o/r", "sub/x.safetensors", "main")
    assert parse_source("https://hf.example/o/r/resolve/v1/x.safetensors", b) == HFRef("o/r", "x.safetensors", "v1")
    assert parse_source("hf://o/r/x.safetensors", b) == HFRef("o/r", "x.safetensors", None)
    assert parse_source("hf://o/r@dev/x.safetensors", b) == HFRef("o/r", "x.safetensors", "dev")
    for bad in ("https://evil.example/models/1", f"{b}/user/x", "file:///etc/passwd", "hf://o/x"):
        with pytest.raises(RemoteError):
            parse_source(bad, b)


def test_hostile_names_are_sanitised() -> None:
    assert sanitize_filename("../../evil.safetensors") == "evil.safetensors"
    assert sanitize_filename("/etc/passwd") == "passwd"
    assert sanitize_filename("..\\..\\x.safetensors") == "x.safetensors"
    assert sanitize_filename(".hidden.safetensors") == "hidden.safetensors"
    assert sanitize_filename("a\x00b:c?.safetensors") == "a_b_c_.safetensors"
    assert sanitize_filename("..") == "download.safetensors"
    assert sanitize_filename("CON") == "download.safetensors"
    assert content_disposition_name("attachment; filename=\"../x.safetensors\"") == "../x.safetensors"
    assert content_disposition_name("attachment; filename*=UTF-8''%E6%97%A5.safetensors") == "日.safetensors"
    for bad in ("../up", "/abs", "C:/win", "a/../../b"):
        with pytest.raises(RemoteError):
            sanitize_subfolder(bad)
    assert sanitize_subfolder("Pony/chars") == "Pony/chars"


def test_download_from_a_model_page(civitai: FakeCivitai, loras: Path) -> None:
    data = add(civitai, file_name="alice_v1.safetensors", base_model="Pony")
    r = download(f"{civitai.url}/models/50", str(loras), client=client(civitai))
    assert Path(r.path) == loras / "alice_v1.safetensors"
    assert Path(r.path).read_bytes() == data
    assert r.sha256 == hashlib.sha256(data).hexdigest()
    assert (loras / "alice_v1.civitai.info").is_file() and (loras / "alice_v1.api_info.json").is_file()
    assert (loras / "alice_v1.preview.png").read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((loras / "alice_v1.json").read_text())
    assert meta["sd version"] == "SDXL" and "lora studio base" not in meta  # Pony stays Civitai's, in .civitai.info
    assert json.loads((loras / "alice_v1.civitai.info").read_text())["baseModel"] == "Pony"
    assert not hidden_parts(loras)
    # the key went to the API host only, never to the signed URL on the other host
    api = civitai.requests("/api/")
    cdn = civitai.requests("/files/")
    assert api and all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in api)
    assert cdn and all("Authorization" not in r.headers for r in cdn)


def test_subfolder_by_setting_and_by_name(civitai: FakeCivitai, loras: Path) -> None:
    add(civitai, base_model="Illustrious")
    r = download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai), subfolder_mode="base-model")
    assert Path(r.path).parent == loras / "Illustrious"
    r = download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai), subfolder="x/y")
    assert Path(r.path).parent == loras / "x" / "y"
    with pytest.raises(RemoteError):
        download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai), subfolder="../out")


def test_hostile_base_model_and_ids_stay_in_the_folder(civitai: FakeCivitai, loras: Path, tmp_path: Path) -> None:
    data = body()
    v = version_object(500, 50, "", base_model="../../../evil")
    v["files"][0]["hashes"] = {}
    v = civitai.add(v, model_object(50, [v]), data)
    v["files"][0]["id"] = "../../../x"  # the API's ids end up in the .part name
    r = download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai), subfolder_mode="base-model")
    assert Path(r.path).parent.parent == loras and Path(r.path).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loras"]


def test_hostile_content_disposition_stays_in_the_folder(civitai: FakeCivitai, loras: Path, tmp_path: Path) -> None:
    add(civitai, file_name="../../../escaped.safetensors")
    r = download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert Path(r.path) == loras / "escaped.safetensors"
    assert not (tmp_path / "escaped.safetensors").exists()


def test_no_overwrite_of_an_existing_file(civitai: FakeCivitai, loras: Path) -> None:
    data = add(civitai, file_name="same.safetensors")
    (loras / "same.safetensors").write_bytes(b"someone else's file")
    r = download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert Path(r.path) == loras / "same_2.safetensors" and Path(r.path).read_bytes() == data
    assert (loras / "same.safetensors").read_bytes() == b"someone else's file"
    again = download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert again.already_present and again.path == r.path
    assert loadable(loras) == ["same.safetensors", "same_2.safetensors"]


def test_truncated_body_resumes_from_the_exact_byte(civitai: FakeCivitai, loras: Path) -> None:
    data = add(civitai)
    civitai.fault("/files/", Fault(truncate_at=123_457))
    r = download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert Path(r.path).read_bytes() == data
    files = civitai.requests("/files/")
    assert "Range" not in files[0].headers
    start = int(files[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 123_457  # what reached the .part (the last partial read is lost with the connection)
    # (a resume from any other byte than the part's end would fail the SHA-256 check above)
    # the resume asked the API URL again for a fresh signed URL, and sent Range only to the signed URL
    api = civitai.requests("/api/download/models/500")
    assert len(api) == 2 and all("Range" not in r.headers for r in api)
    assert files[0].path != files[1].path


def test_resume_when_the_site_serves_the_file_itself(civitai: FakeCivitai, loras: Path) -> None:
    data = add(civitai)
    civitai.direct = True
    civitai.fault("/api/download/models/500", Fault(truncate_at=100_000))
    r = download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert Path(r.path).read_bytes() == data
    reqs = civitai.requests("/api/download/models/500")
    assert [("Range" in x.headers) for x in reqs] == [False, False, True]  # first try; resume: plain, then ranged
    assert not civitai.requests("/files/")


def test_interrupted_download_leaves_only_a_hidden_part_and_resumes_next_run(civitai: FakeCivitai, loras: Path) -> None:
    data = add(civitai)
    civitai.fault("/files/", Fault(truncate_at=100_000), times=3)
    with pytest.raises(RemoteError, match="run it again to resume"):
        download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert loadable(loras) == []
    parts = hidden_parts(loras)
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < len(data)
    size = parts[0].stat().st_size
    civitai.log.clear()
    r = download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert Path(r.path).read_bytes() == data
    assert civitai.requests("/files/")[0].headers["Range"] == f"bytes={size}-"
    assert not hidden_parts(loras)


def test_wrong_hash_leaves_nothing(civitai: FakeCivitai, loras: Path) -> None:
    data = body()
    v = version_object(500, 50, hashlib.sha256(b"other").hexdigest())
    civitai.add(v, model_object(50, [v]), data)
    with pytest.raises(RemoteError, match="SHA-256 mismatch"):
        download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert loadable(loras) == [] and not hidden_parts(loras)
    assert not list(loras.glob("*.civitai.info"))


def test_a_body_that_is_not_safetensors_is_deleted(civitai: FakeCivitai, loras: Path) -> None:
    add(civitai, data=b"<html>login required</html>" * 100)
    with pytest.raises(RemoteError, match="not a readable safetensors"):
        download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert list(loras.iterdir()) == []


def test_pickle_is_refused(civitai: FakeCivitai, loras: Path) -> None:
    add(civitai, file_name="old.pt", fmt="PickleTensor")
    with pytest.raises(RemoteError, match="pickle"):
        download(f"{civitai.url}/models/50", str(loras), client=client(civitai))
    assert list(loras.iterdir()) == []
    assert not civitai.requests("/files/")


def test_http_errors_leave_nothing(civitai: FakeCivitai, loras: Path) -> None:
    add(civitai)
    civitai.fault("/files/", Fault(403))
    with pytest.raises(RemoteError, match="API key"):
        download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    with pytest.raises(RemoteError, match="no model version 999"):
        download(f"{civitai.url}/api/download/models/999", str(loras), client=client(civitai))
    civitai.fault("/api/v1/model-versions/500", Fault(500), times=10)
    with pytest.raises(RemoteError) as err:
        download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    assert KEY not in str(err.value) and "secret" not in str(err.value)
    assert loadable(loras) == []


def test_cancel_leaves_no_loadable_file(civitai: FakeCivitai, loras: Path) -> None:
    add(civitai, data=body(3_000_000))
    calls = []

    def progress(done: int, total: int, msg: str) -> None:
        calls.append(done)

    with pytest.raises(RemoteError, match="cancel"):
        download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai), progress=progress,
                 should_stop=lambda: len(calls) >= 2)
    assert loadable(loras) == []


def test_full_disk_leaves_nothing(civitai: FakeCivitai, loras: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    add(civitai)
    real = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RemoteError, match="disk is full"):
        download(f"{civitai.url}/api/download/models/500", str(loras), client=client(civitai))
    monkeypatch.setattr(os, "fsync", real)
    assert loadable(loras) == [] and not hidden_parts(loras)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lib_lora", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_cli_download(civitai: FakeCivitai, loras: Path, tmp_path: Path) -> None:
    add(civitai, file_name="cli.safetensors")
    env = {"LORA_STUDIO_CIVITAI_URL": civitai.url, "LORA_STUDIO_DATA": str(tmp_path / "data"), "CIVITAI_API_KEY": KEY}
    r = _cli("download", f"{civitai.url}/models/50?modelVersionId=500", "--lora-dir", str(loras), "--subfolder", "new",
             env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(loras / "new" / "cli.safetensors")
    civitai.fault("/files/", Fault(500), times=20)
    r = _cli("download", f"{civitai.url}/api/download/models/500", "--lora-dir", str(loras / "other"), env=env)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.startswith("error: ")
    assert KEY not in r.stderr


# --- Hugging Face ----------------------------------------------------------------------------------


@pytest.fixture
def hf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHF]:
    fake = FakeHF()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield fake
    fake.close()


CARD = b"""---
base_model: stabilityai/stable-diffusion-xl-base-1.0
instance_prompt: zk_bob, blue hat
tags: [lora]
---
# Bob
"""


def test_hf_download_with_model_card(hf: FakeHF, loras: Path, tmp_path: Path) -> None:
    data = body(200_000, 7)
    hf.repos["someone/bob-lora"] = {"bob.safetensors": data, "README.md": CARD}
    r = download(f"{hf.url}/someone/bob-lora/blob/main/bob.safetensors", str(loras),
                 client=CivitaiClient("https://civitai.invalid"), staging_dir=str(tmp_path / "staging"))
    assert Path(r.path) == loras / "bob.safetensors" and Path(r.path).read_bytes() == data
    meta = json.loads((loras / "bob.json").read_text())
    assert meta["activation text"] == "zk_bob, blue hat" and meta["sd version"] == "SDXL"
    # the card's family goes in LoRA Studio's fetched-family key, never in the user's own base override
    assert meta["lora studio family"] == "sdxl-base" and "lora studio base" not in meta
    assert not (loras / ".cache").exists() and sorted(os.listdir(loras)) == ["bob.json", "bob.safetensors"]
    assert not list((tmp_path / "staging").iterdir())
    assert any(r.method == "HEAD" for r in hf.log)


def test_hf_wrong_sha_leaves_nothing(hf: FakeHF, loras: Path, tmp_path: Path) -> None:
    hf.repos["someone/bad"] = {"bad.safetensors": body(1000, 3)}
    hf.wrong_sha.add("bad.safetensors")
    with pytest.raises(RemoteError):
        download("hf://someone/bad/bad.safetensors", str(loras), client=CivitaiClient("https://civitai.invalid"),
                 staging_dir=str(tmp_path / "staging"))
    assert loadable(loras) == [] and not hidden_parts(loras)
    assert not list((tmp_path / "staging").iterdir())  # a wrong file is not kept for a resume


def test_hf_missing_and_pickle(hf: FakeHF, loras: Path, tmp_path: Path) -> None:
    hf.repos["someone/x"] = {"a.safetensors": b"x", "junk.safetensors": b"not a safetensors file"}
    with pytest.raises(RemoteError, match="not found"):
        download("hf://someone/x/missing.safetensors", str(loras), client=CivitaiClient("https://civitai.invalid"),
                 staging_dir=str(tmp_path / "s"))
    with pytest.raises(RemoteError, match="not a readable safetensors"):
        download("hf://someone/x/junk.safetensors", str(loras), client=CivitaiClient("https://civitai.invalid"),
                 staging_dir=str(tmp_path / "s"))
    with pytest.raises(RemoteError, match="pickle"):
        download("hf://someone/x/model.ckpt", str(loras), client=CivitaiClient("https://civitai.invalid"),
                 staging_dir=str(tmp_path / "s"))
    assert list(loras.iterdir()) == []
    assert not list((tmp_path / "s").iterdir())


# --- Hugging Face: byte progress and cancel, both ways (see lib_lora/remote/hf_progress.py) ------------


def _hub_session_is_per_thread_requests() -> bool:
    """Whether this huggingface_hub fetches through a per-thread requests.Session (0.2x/0.3x): then the
    polled way can interrupt the transfer itself and the partial blob stays for a resume."""
    import huggingface_hub
    import requests

    get_session = getattr(huggingface_hub, "get_session", None)
    return get_session is not None and isinstance(get_session(), requests.Session)


@pytest.fixture(params=["tqdm_class", "polled"])
def hf_way(request: pytest.FixtureRequest, hf: FakeHF, monkeypatch: pytest.MonkeyPatch) -> str:
    import huggingface_hub
    import huggingface_hub.constants

    from lib_lora.remote import hf_progress

    if request.param == "tqdm_class" and not hf_progress.accepts_tqdm_class(huggingface_hub):
        pytest.skip(f"huggingface_hub {huggingface_hub.__version__}: hf_hub_download has no tqdm_class")
    if request.param == "polled":  # what the old huggingface_hub of the WebUIs gets
        monkeypatch.setattr(hf_progress, "accepts_tqdm_class", lambda hub: False)
    # small network reads (the library reads 10 MB at a time) and no report throttling: every byte counts
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1 << 16)
    monkeypatch.setattr(hf_progress, "MAX_REPORTS_PER_S", 1_000_000)
    hf.paced = True
    hf.piece = 1 << 17
    return str(request.param)


def _workers_done() -> None:
    import threading

    from lib_lora.remote.hf_progress import WORKER_NAME

    for t in threading.enumerate():
        if t.name == WORKER_NAME:
            t.join()


def test_hf_download_reports_bytes(hf_way: str, hf: FakeHF, loras: Path, tmp_path: Path) -> None:
    data = body(1_000_000, 11)
    hf.repos["someone/big"] = {"big.safetensors": data}
    reports: list[tuple[int, int]] = []

    def progress(done: int, total: int, message: str) -> None:
        if message == "downloading":
            reports.append((done, total))
            hf.go()  # each report lets the next piece out: the transfer advances only as it is seen

    r = download("hf://someone/big/big.safetensors", str(loras), client=CivitaiClient("https://civitai.invalid"),
                 progress=progress, staging_dir=str(tmp_path / "staging"))
    assert Path(r.path).read_bytes() == data
    dones = [d for d, _ in reports]
    assert all(t == len(data) for _, t in reports)
    assert dones == sorted(set(dones)) and dones[-1] == len(data)
    assert len([d for d in dones if 0 < d < len(data)]) >= 3  # bytes arrived in several reports, not just at the end


def test_hf_cancel_mid_transfer_then_resume(hf_way: str, hf: FakeHF, loras: Path, tmp_path: Path) -> None:
    from lib_lora.remote.hf_progress import incomplete_size
    from lib_lora.remote.jobs import JobRegistry

    data = body(1_000_000, 12)
    hf.repos["someone/big"] = {"big.safetensors": data}
    staging = tmp_path / "staging"
    reg = JobRegistry()
    seen: list[int] = []

    def run(ctx: Any) -> tuple[str, Any, str | None]:
        def progress(done: int, total: int, message: str) -> None:
            ctx.progress(done, total, message)
            if message == "downloading" and done > 0 and not seen:
                seen.append(done)
                reg.cancel(ctx.job.id)  # cancel first, then let the rest of the body out: it must not land
                hf.go_all()

        r = download("hf://someone/big/big.safetensors", str(loras), client=CivitaiClient("https://civitai.invalid"),
                     progress=progress, should_stop=ctx.should_stop, staging_dir=str(staging))
        return "done", r.to_dict(), r.path

    job = reg.wait(reg.start("download", run, {}).id)
    assert job.state == "cancelled", job.message
    assert "cancelled" in job.message and seen and 0 < seen[0] < len(data)
    assert loadable(loras) == [] and not hidden_parts(loras) and os.listdir(loras) == []
    _workers_done()
    kept = incomplete_size(str(staging))
    if hf_way == "polled" and _hub_session_is_per_thread_requests():
        assert 0 < kept < len(data)  # interrupted mid-stream, the partial blob kept
    hf.log.clear()
    hf.body_bytes = 0
    r = download("hf://someone/big/big.safetensors", str(loras), client=CivitaiClient("https://civitai.invalid"),
                 staging_dir=str(staging))
    assert Path(r.path).read_bytes() == data and loadable(loras) == ["big.safetensors"]
    assert not list(staging.iterdir())
    ranges = hf.ranges("big.safetensors")
    if kept:  # huggingface_hub kept its partial blob: the second run asks only for the rest
        assert ranges == [f"bytes={kept}-"] and hf.body_bytes == len(data) - kept
    elif hf_way == "polled":  # not interruptible here: the transfer finished in the background, and is reused
        assert ranges == [] and hf.body_bytes == 0
    else:  # a huggingface_hub that deletes its per-process partial file on any error starts over
        assert ranges == [None]
