"""Training lands in a character: characters/<name>/lora/<name>_v<N>, references, prompts.txt — through
the real training service with the replayed kohya trainer (tests/test_train_service.py's World)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_train_service import World

from lib_lora.characters import create_character, scan_characters
from lib_lora.characters.training import character_training, pick_references
from lib_lora.errors import TrainingError
from lib_lora.safetensors_header import read_header
from lib_lora.train.runner import SUCCEEDED

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    captions = {0: "zed, looking at viewer, smile", 1: "zed, from side", 2: "zed, profile", 3: "zed, portrait, looking at viewer"}
    for i, text in captions.items():
        images = sorted(p for p in w.images.iterdir() if p.suffix == ".png")
        images[i].with_suffix(".txt").write_text(text, encoding="utf-8")
    yield w
    w.close()


def test_new_character_v1_then_v2(world: World) -> None:
    root = world.loras / "characters"
    view = world.service.wait(world.service.start(world.request(character="Zed", trigger="zed")), timeout=60)
    assert view.state == SUCCEEDED and view.installed is not None, view.install_error
    v1 = root / "Zed" / "lora" / "Zed_v1.safetensors"
    assert view.installed.path == str(v1)
    assert read_header(v1).metadata["ss_output_name"] == "Zed_v1"  # trained with --output_name Zed_v1
    assert json.loads((root / "Zed" / "lora" / "Zed_v1.json").read_text())["activation text"] == "zed"
    char = scan_characters(root).find("zed")
    assert char is not None and char.prompts.trigger == ("zed",)
    assert char.prompts.anchors and char.prompts.drift
    refs = [Path(r).name for r in char.references]
    images = sorted(p.name for p in world.images.iterdir() if p.suffix == ".png")
    assert refs[:2] == sorted([images[0], images[3]]) or set(refs[:2]) == {images[0], images[3]}
    assert images[1] not in refs and images[2] not in refs  # side views are not references

    # the second run of an existing character: no --trigger needed, the next version, nothing overwritten
    before = v1.read_bytes()
    view2 = world.service.wait(world.service.start(world.request(character="zed", trigger="")), timeout=60)
    assert view2.installed is not None, view2.install_error
    assert view2.installed.path == str(root / "Zed" / "lora" / "Zed_v2.safetensors")
    assert v1.read_bytes() == before
    char = scan_characters(root).find("Zed")
    assert char is not None and [v.label for v in char.versions] == ["v2", "v1"]
    assert len(char.references) == len(refs)  # the same references are not copied twice
    assert world.host.library().lookup("Zed_v2").found


def test_character_requests_are_checked(world: World, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="new character: give its trigger"):
        world.service.plan(world.request(character="newbie", trigger=""))
    with pytest.raises(TrainingError, match="must start with a letter"):
        world.service.plan(world.request(character="../evil", trigger="x"))
    create_character(world.loras / "characters", "silent")
    with pytest.raises(TrainingError, match="no trigger in its prompts.txt"):
        world.service.plan(world.request(character="silent", trigger=""))
    with pytest.raises(TrainingError, match="reference image not found: /nowhere.png"):
        world.service.plan(world.request(character="silent", trigger="quiet", references=("/nowhere.png",)))
    plan = world.service.plan(world.request(character="silent", trigger="quiet"))
    assert plan.output_name == "silent_v1" and plan.trigger == "quiet"


def test_pick_references_and_character_training(tmp_path: Path) -> None:
    data = tmp_path / "ds" / "10_zed"
    data.mkdir(parents=True)
    for name, caption in (("a", "zed, from behind"), ("b", "zed"), ("c", "zed, looking at viewer"), ("d", None)):
        (data / f"{name}.png").write_bytes(b"x")
        if caption:
            (data / f"{name}.txt").write_text(caption)
    assert [Path(p).name for p in pick_references(tmp_path / "ds", count=2)] == ["c.png", "b.png"]
    ct = character_training(tmp_path / "chars", "Hero", "herotok")
    assert ct.new and ct.output_name == "Hero_v1"
