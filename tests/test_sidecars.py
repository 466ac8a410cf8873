from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from lib_lora import sidecars as sc
from lib_lora.errors import LoraStudioError, SidecarError
from lib_lora.safetensors_header import write_file

TENSORS = {"lora_unet_x.lora_down.weight": ("F16", (4, 8))}


@pytest.fixture
def lib(tmp_path: Path, fixtures_dir: Path) -> Path:
    """A folder with alice.safetensors + the real alice.json, kotori.safetensors + Civitai files."""
    src = fixtures_dir / "sidecars"
    for stem in ("alice", "kotori"):
        write_file(tmp_path / f"{stem}.safetensors", TENSORS)
    shutil.copyfile(src / "alice.json", tmp_path / "alice.json")
    shutil.copyfile(src / "kotori.civitai.info", tmp_path / "kotori.civitai.info")
    shutil.copyfile(src / "kotori.model.json", tmp_path / "kotori.model.json")
    return tmp_path


def a1111_write(path: Path, obj: dict) -> None:
    """How A1111's ui_extra_networks_user_metadata.write_user_metadata writes the file."""
    with open(path, "w", encoding="utf8") as file:
        json.dump(obj, file, indent=4, ensure_ascii=False)


def test_reads_the_real_a1111_sidecar(lib: Path) -> None:
    meta = sc.read_user_metadata(lib / "alice.safetensors")
    assert meta is not None
    assert meta.description == "Alice, the red-coat heroine of the comic"
    assert meta.sd_version == "SD1"
    assert meta.activation_text == "zk_alice, red coat"
    assert meta.preferred_weight == 0.8 and meta.weight == 0.8
    assert meta.negative_text == "blurry, extra fingers"
    assert meta.notes == "trained on 32 images, 1600 steps"
    assert meta.extra == {} and meta.base is None and meta.category is None
    assert sc.read_user_metadata(lib / "kotori.safetensors") is None


def test_unchanged_round_trip_is_byte_identical_to_a1111(lib: Path, fixtures_dir: Path) -> None:
    original = (fixtures_dir / "sidecars" / "alice.json").read_bytes()
    meta = sc.read_user_metadata(lib / "alice.safetensors")
    assert meta is not None
    sc.write_user_metadata(lib / "alice.safetensors", meta)
    assert (lib / "alice.json").read_bytes() == original
    # and what we write for a new file is what A1111 would write for the same values
    values = json.loads(original)
    a1111_write(lib / "expected.json", values)
    sc.write_user_metadata(lib / "bob.safetensors", sc.parse_user_metadata(values))
    assert (lib / "bob.json").read_bytes() == (lib / "expected.json").read_bytes()


def test_unknown_keys_and_order_survive_an_update(lib: Path) -> None:
    path = lib / "alice.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data = {"civitai helper key": {"nested": [1, 2]}, **data, "zz other tool": "keep me", "ünïcode": "✓"}
    a1111_write(path, data)
    meta = sc.update_user_metadata(lib / "alice.safetensors", activation_text="zk_alice", base="pony", category="character")
    assert meta.activation_text == "zk_alice" and meta.base == "pony"
    written = json.loads(path.read_text(encoding="utf-8"))
    assert list(written)[:1] == ["civitai helper key"]
    assert written["civitai helper key"] == {"nested": [1, 2]}
    assert written["zz other tool"] == "keep me" and written["ünïcode"] == "✓"
    assert written["activation text"] == "zk_alice"
    assert written[sc.KEY_BASE] == "pony" and written[sc.KEY_CATEGORY] == "character"
    assert written["notes"] == "trained on 32 images, 1600 steps"
    assert "✓" in path.read_text(encoding="utf-8")  # ensure_ascii=False, as A1111
    # None removes our key again, leaves the rest
    sc.update_user_metadata(lib / "alice.safetensors", base=None)
    again = json.loads(path.read_text(encoding="utf-8"))
    assert sc.KEY_BASE not in again and again["zz other tool"] == "keep me"


def test_update_creates_a_new_sidecar_with_only_given_keys(lib: Path) -> None:
    meta = sc.update_user_metadata(lib / "kotori.safetensors", preferred_weight="0.7", sd_version="SDXL")
    assert meta.preferred_weight == 0.7
    assert json.loads((lib / "kotori.json").read_text()) == {"sd version": "SDXL", "preferred weight": 0.7}
    with pytest.raises(SidecarError, match="number"):
        sc.update_user_metadata(lib / "kotori.safetensors", preferred_weight="heavy")
    with pytest.raises(SidecarError, match="unknown"):
        sc.update_user_metadata(lib / "kotori.safetensors", colour="red")


@pytest.mark.parametrize("content", [b'{"description": "half', b"[1, 2]", b"\xff\xfe garbage", b""])
def test_malformed_sidecar_is_reported_and_never_overwritten(lib: Path, content: bytes) -> None:
    path = lib / "alice.json"
    path.write_bytes(content)
    with pytest.raises(SidecarError) as info:
        sc.read_user_metadata(lib / "alice.safetensors")
    assert "alice.json" in str(info.value) and isinstance(info.value, LoraStudioError)
    with pytest.raises(SidecarError, match="not overwritten"):
        sc.update_user_metadata(lib / "alice.safetensors", notes="new")
    assert path.read_bytes() == content
    found = sc.find_sidecars(lib / "alice.safetensors")
    assert found.user is None and len(found.problems) == 1 and "alice.json" in found.problems[0]


def test_write_is_atomic_and_keeps_permissions(lib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = lib / "alice.json"
    path.chmod(0o640)
    before = path.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(SidecarError, match="No space left"):
        sc.update_user_metadata(lib / "alice.safetensors", notes="x")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not [p for p in lib.iterdir() if p.name.endswith(".tmp")]  # temp file cleaned up
    sc.update_user_metadata(lib / "alice.safetensors", notes="x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_symlinked_sidecar_keeps_its_link(lib: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("other") / "real.json"
    shutil.move(str(lib / "alice.json"), elsewhere)
    (lib / "alice.json").symlink_to(elsewhere)
    sc.update_user_metadata(lib / "alice.safetensors", notes="via link")
    assert (lib / "alice.json").is_symlink()
    assert json.loads(elsewhere.read_text())["notes"] == "via link"


def test_civitai_version_object(lib: Path) -> None:
    info = sc.read_civitai_info(lib / "kotori.civitai.info", "Kanbe_Kotori_1_nai-000034.safetensors")
    assert info.base_model == "NoobAI"
    assert info.trained_words == ("kanbe kotori", "twin braids", "hair flower", "official art")
    assert info.model_type == "LORA" and info.model_name == "Kanbe Kotori (character)"
    assert info.model_id == 1599346 and info.version_id == 1809851 and info.version_name == "v1.0"
    assert info.autov2 == "9c4a1e6668"
    assert info.sha256 == "9c4a1e66681674a38e4e0b1f9b3fd0b2c4d6e8f0a1b2c3d4e5f60718293a4b5c"
    assert info.hashes["AutoV2"] == "9C4A1E6668"
    assert info.preview_urls == ("https://image.civitai.com/example/preview.jpeg",)
    assert info.nsfw is False
    assert info.page_url == "https://civitai.com/models/1599346?modelVersionId=1809851"


def test_civitai_model_object_and_license(lib: Path) -> None:
    model = sc.read_civitai_model(lib / "kotori.model.json")
    assert model.tags == ("character", "anime", "girl")
    assert model.creator == "example_creator" and model.model_type == "LORA"
    lic = model.license
    assert lic.allow_no_credit is True
    assert lic.allow_commercial_use == ("Image", "RentCivit")
    assert lic.allow_derivatives is True and lic.allow_different_license is False
    assert lic.commercial == "services"
    assert lic.summary == "Commercial: sell images, paid generation on Civitai · no credit needed · merges allowed (same license)"
    with pytest.raises(SidecarError, match="model object"):
        sc.read_civitai_info(lib / "kotori.model.json")


@pytest.mark.parametrize(
    ("value", "expected", "level"),
    [
        ("None", (), "none"),
        (["Image"], ("Image",), "images"),
        ("Image", ("Image",), "images"),
        ("Rent", ("Image", "Rent"), "services"),
        ("Sell", ("Image", "Rent", "Sell"), "sell"),
        ("{Image,RentCivit}", ("Image", "RentCivit"), "services"),
        ([], (), "none"),
        (None, None, "unknown"),
    ],
)
def test_commercial_use_forms(value: object, expected: object, level: str) -> None:
    assert sc.parse_commercial_use(value) == expected
    lic = sc.parse_license({"allowCommercialUse": value})
    assert lic.commercial == level
    if level == "none":
        assert lic.summary.startswith("No commercial use")
    if level == "unknown":
        assert lic.summary == "License not stated"


def test_find_sidecars_bundle(lib: Path) -> None:
    (lib / "kotori.preview.png").write_bytes(b"\x89PNG")
    (lib / "kotori.webp").write_bytes(b"RIFF")
    found = sc.find_sidecars(lib / "kotori.safetensors")
    assert found.civitai is not None and found.civitai.base_model == "NoobAI"
    assert found.model is not None and found.license is not None and found.license.allow_no_credit is True
    assert found.tags == ("character", "anime", "girl") and found.category == "character"
    assert found.preview == str(lib / "kotori.preview.png")  # png before webp; .png before .preview.png
    assert found.user is None and found.problems == ()
    # the same from a folder listing (what a scan passes): no stat per candidate
    listing = os.listdir(lib)
    assert sc.find_sidecars(lib / "kotori.safetensors", listing) == found
    assert {p.name for p in sc.sidecar_files(lib / "kotori.safetensors", listing)} == {
        "kotori.civitai.info", "kotori.model.json", "kotori.preview.png", "kotori.webp"}
    # round trip through the index's JSON form
    assert sc.sidecars_from_dict(json.loads(json.dumps(found.to_dict()))) == found


def test_preview_order_follows_a1111(tmp_path: Path) -> None:
    write_file(tmp_path / "a.safetensors", TENSORS)
    for name in ("a.preview.jpg", "a.jpg", "a.preview.png"):
        (tmp_path / name).write_bytes(b"x")
    assert sc.find_sidecars(tmp_path / "a.safetensors").preview == str(tmp_path / "a.preview.png")
    (tmp_path / "a.png").write_bytes(b"x")
    assert sc.find_sidecars(tmp_path / "a.safetensors").preview == str(tmp_path / "a.png")


def test_model_object_saved_as_api_info_gives_version_too(tmp_path: Path, fixtures_dir: Path) -> None:
    write_file(tmp_path / "k.safetensors", TENSORS)
    shutil.copyfile(fixtures_dir / "sidecars" / "kotori.model.json", tmp_path / "k.api_info.json")
    found = sc.find_sidecars(tmp_path / "k.safetensors")
    assert found.model is not None and found.model.license.allow_commercial_use == ("Image", "RentCivit")
    # the single model version inside the model object stands in for a missing .civitai.info
    assert found.civitai is not None and found.civitai.base_model == "NoobAI"
    assert found.civitai.trained_words[0] == "kanbe kotori"


def test_sd_version_mapping() -> None:
    assert [sc.sd_version_for(a) for a in ("sd1", "sd2", "sdxl", "sdxl-refiner", "sd3-medium", "flux1", "chroma", "wan", None)] == [
        "SD1", "SD2", "SDXL", "SDXL", "SD3", "Flux", "Flux", "Unknown", "Unknown"]


def test_split_words() -> None:
    assert sc.split_words(["a, b ,,  c  d", "B", "<lora:x:1>, e"]) == ("a", "b", "c d", "e")


def test_odd_values_are_kept_not_crashed_on(tmp_path: Path) -> None:
    (tmp_path / "o.json").write_text(json.dumps({"preferred weight": "abc", "notes": ["a", "list"], "description": 3}))
    meta = sc.read_user_metadata(tmp_path / "o.safetensors")
    assert meta is not None
    assert meta.preferred_weight is None and meta.description == "3"
    assert meta.extra == {"preferred weight": "abc", "notes": ["a", "list"]}
    sc.write_user_metadata(tmp_path / "o.safetensors", meta)
    assert json.loads((tmp_path / "o.json").read_text()) == {"preferred weight": "abc", "notes": ["a", "list"], "description": "3"}
