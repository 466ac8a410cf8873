"""Fetch info by hash against a fake Civitai on the loopback address (lib_lora.remote.fetch_info)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from factory import make_lora
from fake_remote import FakeCivitai, Fault, model_object, version_object

from lib_lora.remote import sidecar_out as out
from lib_lora.remote.civitai import CivitaiClient
from lib_lora.remote.common import RemoteError
from lib_lora.remote.fetch_info import (
    FAILED,
    FETCHED,
    REMEMBERED,
    SKIPPED,
    UNKNOWN,
    FetchOptions,
    UnknownMemory,
    fetch_info,
)

REPO = Path(__file__).resolve().parents[1]
KEY = "sekrit-key-0123456789"


@pytest.fixture
def civitai() -> Iterator[FakeCivitai]:
    fake = FakeCivitai()
    yield fake
    fake.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lora(tmp_path: Path, name: str, rank: int = 4) -> Path:
    return make_lora(tmp_path / "loras", name, "kohya-sdxl", rank=rank)


def register(fake: FakeCivitai, path: Path, vid: int, mid: int, **kw: object) -> dict:
    v = version_object(vid, mid, sha(path), file_name=path.name, **kw)  # type: ignore[arg-type]
    v = fake.add(v, model_object(mid, [v]))
    return v


def client(fake: FakeCivitai, key: str | None = KEY) -> CivitaiClient:
    return CivitaiClient(fake.url, key)


def test_civitai_info_is_byte_for_byte_what_civitai_helper_writes(tmp_path: Path, civitai: FakeCivitai,
                                                                  fixtures_dir: Path) -> None:
    p = lora(tmp_path, "kotori")
    raw = (fixtures_dir / "sidecars" / "kotori.civitai.info").read_bytes()
    version = json.loads(raw)
    civitai.versions[version["id"]] = version  # served unchanged
    civitai.aliases[sha(p)] = version["id"]  # the fixture lists another hash: answer it by the single GET
    civitai.bulk = False
    civitai.models[version["modelId"]] = json.loads((fixtures_dir / "sidecars" / "kotori.model.json").read_bytes())
    report = fetch_info([str(p)], client(civitai), FetchOptions(previews=False))
    assert report.ok, report.to_dict()
    assert (tmp_path / "loras" / "kotori.civitai.info").read_bytes() == raw
    api = (tmp_path / "loras" / "kotori.api_info.json").read_bytes()
    assert api == (fixtures_dir / "sidecars" / "kotori.model.json").read_bytes()
    user = json.loads((tmp_path / "loras" / "kotori.json").read_text(encoding="utf-8"))
    assert user["activation text"] == "kanbe kotori, twin braids, hair flower, official art"
    assert user["sd version"] == "SDXL"  # A1111's vocabulary: NoobAI is SDXL there
    # the family stays Civitai's (in .civitai.info): not written as if the user had chosen it
    assert "lora studio base" not in user and "lora studio family" not in user
    assert user["description"] == "Trained on 48 images. Use weight 0.7\u20130.9."  # HTML -> plain text


def test_the_library_reads_the_family_and_trigger_words_back(tmp_path: Path, civitai: FakeCivitai,
                                                              user_data: Path) -> None:
    from lib_lora.library import Library

    p = lora(tmp_path, "pony_char")
    register(civitai, p, 11, 1, base_model="Pony", words=("zk_pony, red scarf",))
    assert fetch_info([str(p)], client(civitai)).ok
    with Library([tmp_path / "loras"]) as lib:
        lib.scan()
        e = lib.entries()[0]
        assert e.family == "pony"
        assert any(ev.source == "civitai" and ev.claim == "family=pony" for ev in e.detection.evidence)
        assert e.sidecars.user is not None and e.sidecars.user.base is None  # not posing as the user's choice
        assert e.preview is not None and e.preview.endswith(".preview.png")
        assert "zk_pony" in [w for t in e.trigger_words for w in t.words]


def test_user_edits_are_never_changed(tmp_path: Path, civitai: FakeCivitai) -> None:
    a = lora(tmp_path, "a")
    b = lora(tmp_path, "b", rank=8)
    register(civitai, a, 21, 2, base_model="Illustrious")
    register(civitai, b, 22, 3, base_model="Illustrious")
    mine = {"description": "my own words", "sd version": "SDXL", "activation text": "my trigger",
            "preferred weight": 0.7, "negative text": "", "notes": "keep", "lora studio base": "sdxl",
            "other tool": {"x": 1}}
    full = json.dumps(mine, indent=4, ensure_ascii=False)
    (tmp_path / "loras" / "a.json").write_text(full, encoding="utf-8")
    (tmp_path / "loras" / "b.json").write_text(json.dumps({"activation text": "", "notes": "n", "sd version": "Unknown"},
                                                          indent=4), encoding="utf-8")
    before = (tmp_path / "loras" / "a.json").stat().st_mtime_ns
    report = fetch_info([str(a), str(b)], client(civitai))
    assert report.ok
    # nothing empty in a.json: not rewritten at all
    assert (tmp_path / "loras" / "a.json").read_text(encoding="utf-8") == full
    assert (tmp_path / "loras" / "a.json").stat().st_mtime_ns == before
    got = json.loads((tmp_path / "loras" / "b.json").read_text(encoding="utf-8"))
    assert got["notes"] == "n"
    assert got["activation text"] == "zk_alice"  # empty -> filled
    assert got["sd version"] == "SDXL"  # "Unknown" counts as empty
    assert "lora studio base" not in got  # the family is Civitai's, read from b.civitai.info
    assert list(got)[:3] == ["activation text", "notes", "sd version"]  # the file's own order kept


def test_civitai_family_is_shown_as_civitai_and_the_users_base_wins(tmp_path: Path, civitai: FakeCivitai) -> None:
    from lib_lora import browse
    from lib_lora.architecture import Detection
    from lib_lora.library import Library
    from lib_lora.ui.browser import render_detail_html

    ill = lora(tmp_path, "ill")
    mine = lora(tmp_path, "mine", rank=8)
    register(civitai, ill, 41, 5, base_model="Illustrious")
    register(civitai, mine, 42, 6, base_model="Illustrious")
    (tmp_path / "loras" / "mine.json").write_text(json.dumps({"lora studio base": "pony"}, indent=4), encoding="utf-8")
    assert fetch_info([str(ill), str(mine)], client(civitai)).ok
    assert json.loads((tmp_path / "loras" / "mine.json").read_text())["lora studio base"] == "pony"
    pony_ckpt = Detection(kind="checkpoint", architecture="sdxl", family="pony")
    with Library([tmp_path / "loras"], tmp_path / "index.sqlite3") as lib:
        lib.scan()
        cat = browse.Catalog([browse.entry_from_info(i) for i in lib.entries()])
        a, b = cat.get("ill"), cat.get("mine")
        assert a is not None and b is not None
        assert (a.family, a.base_source) == ("illustrious", "civitai")
        assert (b.family, b.base_source) == ("pony", "user")  # the user's own base still wins
        badge = browse.base_badge(a)
        assert badge.kind == "base" and "Illustrious" in badge.text and "Civitai" in badge.title
        view = cat.compat(a, pony_ckpt)
        assert view.level == "cross-family", view  # Illustrious LoRA on a Pony checkpoint: other finetune
        html = render_detail_html(browse.detail_for(a, view))
        assert "(civitai)" in html and "your override" not in html
        assert "your override" in render_detail_html(browse.detail_for(b, cat.compat(b, pony_ckpt)))
        # a later Civitai correction replaces the family: nothing of it was frozen into ill.json
        civitai.versions[41]["baseModel"] = "NoobAI"
        assert fetch_info([str(ill)], client(civitai), FetchOptions(refetch=True)).ok
        lib.scan()
        fixed = browse.entry_from_info(next(i for i in lib.entries() if i.name == "ill"))
        assert (fixed.family, fixed.base_source) == ("noobai", "civitai")


def test_a_malformed_user_sidecar_is_left_alone(tmp_path: Path, civitai: FakeCivitai) -> None:
    p = lora(tmp_path, "bad")
    register(civitai, p, 31, 4)
    (tmp_path / "loras" / "bad.json").write_text("{not json", encoding="utf-8")
    report = fetch_info([str(p)], client(civitai))
    assert report.results[0].status == FETCHED
    assert "not valid JSON" in report.results[0].message
    assert (tmp_path / "loras" / "bad.json").read_text(encoding="utf-8") == "{not json"


def test_preview_is_a_real_png_and_videos_and_nsfw_are_filtered(tmp_path: Path, civitai: FakeCivitai) -> None:
    from PIL import Image

    a, b, c = lora(tmp_path, "a"), lora(tmp_path, "b", 8), lora(tmp_path, "c", 16)
    imgs = [{"url": "v", "type": "video", "nsfwLevel": 1}, {"url": "x", "type": "image", "nsfwLevel": 8},
            {"url": "y", "type": "image", "nsfwLevel": 1}]
    register(civitai, a, 41, 5, images=[dict(i) for i in imgs])
    register(civitai, b, 42, 6, images=[{"url": "x", "type": "image", "nsfwLevel": 16}])
    register(civitai, c, 43, 7, images=[{"url": "x", "type": "image", "nsfw": "X"}])  # an old answer
    report = fetch_info([str(a), str(b)], client(civitai), FetchOptions(nsfw_max_level=2, nsfw_mode="skip"))
    assert report.ok
    prev = tmp_path / "loras" / "a.preview.png"
    assert prev.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert civitai.requests("/images/41-2")  # the PG still image, not the video or the X one
    assert not civitai.requests("/images/41-0") and not civitai.requests("/images/41-1")
    assert not (tmp_path / "loras" / "b.preview.png").exists()  # skipped
    report = fetch_info([str(c)], client(civitai), FetchOptions(nsfw_max_level=2, nsfw_mode="blur"))
    with Image.open(tmp_path / "loras" / "c.preview.png") as im:
        assert im.format == "PNG"
    # the preview request never carried the key (another host)
    assert all("Authorization" not in r.headers for r in civitai.requests("/images/"))


def test_an_existing_preview_is_kept(tmp_path: Path, civitai: FakeCivitai) -> None:
    p = lora(tmp_path, "has")
    register(civitai, p, 51, 8)
    (tmp_path / "loras" / "has.png").write_bytes(b"mine")
    fetch_info([str(p)], client(civitai))
    assert not (tmp_path / "loras" / "has.preview.png").exists()
    assert (tmp_path / "loras" / "has.png").read_bytes() == b"mine"


def test_unknown_files_are_remembered_for_a_week(tmp_path: Path, civitai: FakeCivitai) -> None:
    p = lora(tmp_path, "nobody")
    memory = UnknownMemory(tmp_path / "mem.json")
    r1 = fetch_info([str(p)], client(civitai), memory=memory)
    assert r1.ok and r1.results[0].status == UNKNOWN
    n = len(civitai.log)
    r2 = fetch_info([str(p)], client(civitai), memory=UnknownMemory(tmp_path / "mem.json"))
    assert r2.ok and r2.results[0].status == REMEMBERED and len(civitai.log) == n
    stale = UnknownMemory(tmp_path / "mem.json", ttl=0)
    r3 = fetch_info([str(p)], client(civitai), memory=stale)
    assert r3.results[0].status == UNKNOWN and len(civitai.log) > n
    r4 = fetch_info([str(p)], client(civitai), FetchOptions(refetch=True), memory=UnknownMemory(tmp_path / "mem.json"))
    assert r4.results[0].status == UNKNOWN


def test_files_with_info_are_skipped_unless_all(tmp_path: Path, civitai: FakeCivitai) -> None:
    p = lora(tmp_path, "done")
    register(civitai, p, 61, 9)
    (tmp_path / "loras" / "done.civitai.info").write_text("{}", encoding="utf-8")
    assert fetch_info([str(p)], client(civitai)).results[0].status == SKIPPED
    assert not civitai.log
    assert fetch_info([str(p)], client(civitai), FetchOptions(refetch=True)).results[0].status == FETCHED


def test_bulk_lookup_sends_at_most_100_hashes_and_falls_back_to_get(tmp_path: Path, civitai: FakeCivitai) -> None:
    c = client(civitai)
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(230)]
    assert c.versions_by_hashes(hashes) == {}
    posts = civitai.requests("/api/v1/model-versions/by-hash")
    assert [len(json.loads(r.body)) for r in posts] == [100, 100, 30]
    civitai.bulk = False
    civitai.log.clear()
    p = lora(tmp_path, "single")
    register(civitai, p, 71, 10)
    c2 = client(civitai)
    found = c2.versions_by_hashes([sha(p), hashes[0]])
    assert set(found) == {sha(p)}
    assert [r.method for r in civitai.log] == ["POST", "GET", "GET"]


def test_429_is_retried_after_retry_after_and_500_fails_cleanly(tmp_path: Path, civitai: FakeCivitai) -> None:
    p = lora(tmp_path, "rl")
    register(civitai, p, 81, 11)
    civitai.fault("/api/v1/model-versions/by-hash", Fault(429, {"Retry-After": "0"}))
    report = fetch_info([str(p)], client(civitai))
    assert report.ok and report.results[0].status == FETCHED
    assert len(civitai.requests("/api/v1/model-versions/by-hash")) == 2
    (tmp_path / "loras" / "rl.civitai.info").unlink()
    civitai.fault("/api/v1/model-versions/by-hash", Fault(500), times=10)
    c = client(civitai)
    report = fetch_info([str(p)], c, FetchOptions())
    assert not report.ok and report.results[0].status == FAILED
    assert "server error 500" in report.results[0].message
    assert KEY not in json.dumps(report.to_dict())


def test_offline_gives_one_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    paths = [str(lora(tmp_path, f"o{i}", 4 * (i + 1))) for i in range(3)]
    report = fetch_info(paths, CivitaiClient(f"http://127.0.0.1:{port}", KEY))
    assert not report.ok
    assert report.offline is not None and "cannot reach 127.0.0.1" in report.offline
    assert report.count(FAILED) == 3
    assert report.summary().count("cannot reach") == 1
    assert KEY not in report.summary()


def test_key_goes_only_to_the_civitai_host(tmp_path: Path, civitai: FakeCivitai) -> None:
    p = lora(tmp_path, "k")
    register(civitai, p, 91, 12)
    fetch_info([str(p)], client(civitai))
    api = [r for r in civitai.log if r.path.startswith("/api/")]
    assert api and all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in api)
    assert KEY not in repr(client(civitai))


def test_cancel_stops_the_job(tmp_path: Path, civitai: FakeCivitai) -> None:
    p = lora(tmp_path, "c")
    register(civitai, p, 95, 13)
    report = fetch_info([str(p)], client(civitai), should_stop=lambda: True)
    assert report.cancelled and not report.ok
    assert not (tmp_path / "loras" / "c.civitai.info").exists()


def test_base_model_vocabulary() -> None:
    assert out.base_model_vocab("Pony") == ("SDXL", "pony")
    assert out.base_model_vocab("SD 1.5") == ("SD1", "sd15")
    assert out.base_model_vocab("Flux.1 D")[0] == "Flux"
    assert out.base_model_vocab("stabilityai/stable-diffusion-xl-base-1.0")[0] == "SDXL"
    assert out.base_model_vocab("something else") == (None, None)
    assert out.html_to_text("<p>a &amp; b</p><ul><li>one</li></ul>") == "a & b\n\n- one"


def test_client_errors_never_carry_the_key(civitai: FakeCivitai) -> None:
    civitai.fault("/api/v1/models/5", Fault(500), times=10)
    with pytest.raises(RemoteError) as err:
        client(civitai).model(5)
    assert KEY not in str(err.value)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lib_lora", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_cli_fetch_info_exit_codes(tmp_path: Path, civitai: FakeCivitai) -> None:
    known, unknown = lora(tmp_path, "known"), lora(tmp_path, "unknown", 8)
    register(civitai, known, 101, 14)
    env = {"LORA_STUDIO_CIVITAI_URL": civitai.url, "LORA_STUDIO_DATA": str(tmp_path / "data"),
           "CIVITAI_API_KEY": KEY}
    r = _cli("fetch-info", str(tmp_path / "loras"), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == ["fetch-info: 1 fetched, 1 unknown to Civitai, 0 failed"]
    assert (tmp_path / "loras" / "known.civitai.info").is_file()
    r = _cli("fetch-info", str(tmp_path / "loras"), env=env)
    assert r.returncode == 0 and "1 already had info" in r.stdout
    civitai.fault("/api/v1/model-versions/by-hash", Fault(500), times=20)
    r = _cli("fetch-info", "--all", str(tmp_path / "loras"), env=env)
    assert r.returncode == 1
    assert len(r.stdout.strip().splitlines()) == 1 and "2 failed" in r.stdout
    assert KEY not in r.stdout + r.stderr
    assert unknown.exists()


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # accepts connections (kernel backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        p = lora(tmp_path, "slow")
        c = CivitaiClient(f"http://127.0.0.1:{port}", KEY, timeout=(2.0, 0.3), retries=0)
        report = fetch_info([str(p)], c)
    assert not report.ok and report.results[0].status == FAILED
    assert "timed out" in report.results[0].message
