"""``python -m lib_lora characters`` and ``python -m lib_lora train --character NAME``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from factory import make_lora
from test_cli_train import stand_in_trainer

from lib_lora.characters import ENV_ROOT, create_character
from lib_lora.cli import main
from lib_lora.safetensors_header import read_header


def test_characters_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv(ENV_ROOT, raising=False)
    loras = tmp_path / "Lora"
    root = loras / "characters"
    create_character(root, "hero", trigger="herotok")
    make_lora(root / "hero" / "lora", "hero_v1")
    make_lora(root / "hero" / "lora", "hero_v2")
    (root / "hero" / "reference" / "front.png").write_bytes(b"x")
    (root / "plain" / "expressions").mkdir(parents=True)
    (root / "plain" / "expressions" / "smile.png").write_bytes(b"x")

    assert main(["characters", "--lora-dir", str(loras)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "TRIGGER", "BASE", "VERSIONS", "REFS", "EXPR"]
    assert out[1].split() == ["hero", "herotok", "sd15", "v2,", "v1", "1", "0"]
    assert out[2].split() == ["plain", "-", "-", "-", "0", "1"]

    assert main(["characters", "--root", str(root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    hero = data["characters"][0]
    assert data["root"] == str(root) and hero["name"] == "hero" and hero["trigger"] == ["herotok"]
    assert hero["version_labels"] == ["v2", "v1"] and hero["reference_count"] == 1 and hero["expression_count"] == 0
    assert hero["base_model"] == "sd15"
    assert main(["characters", str(root), "--json"]) == 0  # DIR works like --root
    assert json.loads(capsys.readouterr().out)["root"] == str(root)

    monkeypatch.setenv(ENV_ROOT, str(root))
    assert main(["characters", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["characters"]) == 2
    monkeypatch.delenv(ENV_ROOT)
    assert main(["characters"]) == 1
    assert "no characters folder" in capsys.readouterr().err
    assert main(["characters", "--root", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err


def train_setup(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """A captioned dataset, a checkpoint, the stand-in trainer and an empty LoRA folder: ``(the train
    arguments but --data-dir, --output and --character, the LoRA folder, the dataset)``."""
    from factory import make_images

    data = make_images(tmp_path / "pics", n=6, caption="zed, looking at viewer")
    ckpt = tmp_path / "base.safetensors"
    ckpt.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    sd, py = stand_in_trainer(tmp_path, "--duration", "0.3")
    loras = tmp_path / "Lora"
    loras.mkdir()
    return (["train", str(data), "--base", str(ckpt), "--arch", "sd1", "--steps", "4", "--sd-scripts", str(sd),
             "--trainer-python", str(py), "--lora-dir", str(loras), "--quiet"], loras, data)


@pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")
def test_train_character_makes_v1_then_v2(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv(ENV_ROOT, raising=False)
    common, loras, data = train_setup(tmp_path)
    common += ["--data-dir", str(tmp_path / "studio")]
    ckpt = tmp_path / "base.safetensors"
    assert main([*common, "--character", "zed", "--output", str(tmp_path / "o1")]) == 1
    assert "new character: give its trigger word" in capsys.readouterr().err
    assert main([*common, "--character", "zed", "--trigger", "zed", "--output", str(tmp_path / "o1")]) == 0, \
        capsys.readouterr()
    out = capsys.readouterr().out
    v1 = loras / "characters" / "zed" / "lora" / "zed_v1.safetensors"
    assert f"installed: {v1}" in out and "version v1 (new character), 3 reference image(s)" in out
    assert read_header(v1).metadata["ss_output_name"] == "zed_v1"
    first = sorted(p for p in data.iterdir() if p.suffix == ".png")[-1]
    assert main([*common, "--character", "ZED", "--output", str(tmp_path / "o2"),  # no --trigger needed
                 "--reference", str(first)]) == 0
    v2 = loras / "characters" / "zed" / "lora" / "zed_v2.safetensors"
    assert f"installed: {v2}" in capsys.readouterr().out
    assert main(["characters", "--lora-dir", str(loras), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["characters"][0]
    assert row["version_labels"] == ["v2", "v1"] and row["reference_count"] == 4 and row["trigger"] == ["zed"]
    assert main(["train", str(data), "--base", str(ckpt), "--arch", "sd1"]) == 1
    assert "--trigger is required" in capsys.readouterr().err


def test_resolve_expands_char_tags(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv(ENV_ROOT, raising=False)
    loras = tmp_path / "Lora"
    create_character(loras / "characters", "hero", trigger="herotok")
    make_lora(loras / "characters" / "hero" / "lora", "hero_v1", metadata={"modelspec.trigger_phrase": "herotok"})
    rc = main(["resolve", "<char:hero> in the rain", "--lora-dir", str(loras), "--negative", "lowres",
               "--index", str(tmp_path / "i.sqlite3")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "prompt:   <lora:hero_v1:1>, (herotok:1.3), same character, consistent appearance, in the rain" in out
    assert "negative: lowres, different person, character change, inconsistent appearance" in out
    assert "infotext: Characters: hero v1" in out
