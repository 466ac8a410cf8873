"""``<char:NAME[:vN][:WEIGHT]>``: expansion on real character folders and a real LoRA library."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from factory import make_lora

from lib_lora.characters import (
    CharacterLibrary,
    ExpandSettings,
    create_character,
    expand_characters,
    scan_characters,
    update_prompts,
)
from lib_lora.library import Library
from lib_lora.rewrite import RewriteSettings, rewrite_batch, rewrite_prompt

ANCHORS = "same character, consistent appearance"
DRIFT = "different person, character change, inconsistent appearance"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Library, Path]]:
    base = tmp_path_factory.mktemp("chars")
    loras = base / "Lora"
    root = loras / "characters"
    create_character(root, "hero", trigger="herotok")
    for n in (1, 2):
        make_lora(root / "hero" / "lora", f"hero_v{n}", metadata={"ss_output_name": f"hero_v{n}", "modelspec.trigger_phrase": "herotok"})
    # a character without its own trigger: the LoRA's trigger sources give it
    create_character(root, "Villain")
    make_lora(root / "Villain" / "lora", "villain_v1",
              metadata={"ss_output_name": "villain_v1", "modelspec.trigger_phrase": "vilword"})
    (root / "Villain" / "lora" / "villain_v1.json").write_text(json.dumps({"preferred weight": 0.6}))
    # a character using a LoRA kept elsewhere (recorded in prompts.txt)
    elsewhere = make_lora(loras / "misc", "sidekick", metadata={"ss_output_name": "sidekick"})
    create_character(root, "sidekick", trigger="sk", lora_path=str(elsewhere), lora_name="misc/sidekick")
    # references only (IP-Adapter path), no LoRA
    create_character(root, "ghost", trigger="ghosttok")
    lib = Library([loras], base / "index.sqlite3")
    lib.scan()
    yield lib, root
    lib.close()


def _chars(setup: tuple[Library, Path]) -> CharacterLibrary:
    return scan_characters(setup[1])


def test_every_part_once(setup: tuple[Library, Path]) -> None:
    lib, _ = setup
    exp = expand_characters("<char:hero>, walking in the rain", "lowres", _chars(setup), library=lib)
    assert exp.prompt == (
        f"<lora:characters/hero/lora/hero_v2:1>, (herotok:1.3), {ANCHORS}, walking in the rain"
    )
    assert exp.negative == f"lowres, {DRIFT}"
    assert exp.record == "hero v2" and exp.warnings == ()
    # twice in one prompt, anchors already typed, drift already in the negative: nothing repeated
    again = expand_characters(
        "same character, <char:HERO:v1:0.7> and <char:hero>", "inconsistent appearance", _chars(setup), library=lib
    )
    assert again.prompt.count("(herotok:1.3)") == 1
    assert again.prompt == (
        "same character, <lora:characters/hero/lora/hero_v1:0.7>, (herotok:1.3), consistent appearance, and "
        "<lora:characters/hero/lora/hero_v2:1>"
    )
    assert again.negative == "inconsistent appearance, different person, character change"
    assert again.record == "hero v1, hero v2"


def test_trigger_from_lora_and_preferred_weight(setup: tuple[Library, Path]) -> None:
    lib, _ = setup
    exp = expand_characters("<char:villain>", "", _chars(setup), library=lib)
    assert exp.prompt == f"<lora:characters/Villain/lora/villain_v1:0.6>, (vilword:1.3), {ANCHORS}"
    assert exp.record == "Villain v1"


def test_recorded_lora_and_no_lora(setup: tuple[Library, Path]) -> None:
    lib, _ = setup
    exp = expand_characters("<char:sidekick:0.5>", "", _chars(setup), library=lib)
    assert exp.prompt.startswith("<lora:misc/sidekick:0.5>, (sk:1.3), ")
    assert exp.record == "sidekick sidekick"
    ghost = expand_characters("a <char:ghost> at night", "", _chars(setup), library=lib)
    assert ghost.prompt == f"a (ghosttok:1.3), {ANCHORS}, at night" and ghost.record == "ghost"


def test_settings_off_and_per_character(setup: tuple[Library, Path]) -> None:
    lib, root = setup
    off = ExpandSettings(character_trigger=False, character_anchors=False, character_drift=False)
    exp = expand_characters("<char:hero>", "neg", _chars(setup), library=lib, settings=off)
    assert exp.prompt == "<lora:characters/hero/lora/hero_v2:1>" and exp.negative == "neg"
    char = scan_characters(root).find("ghost")
    assert char is not None
    update_prompts(char, {"use_anchors": False, "use_drift": False, "trigger_weight": 1})
    exp = expand_characters("<char:ghost>", "", scan_characters(root), library=lib)
    assert exp.prompt == "ghosttok" and exp.negative == ""
    update_prompts(char, {"use_anchors": None, "use_drift": None, "trigger_weight": None})


def test_unknown_name_version_and_arguments(setup: tuple[Library, Path]) -> None:
    lib, _ = setup
    exp = expand_characters("a <char:heor>, b", "", _chars(setup), library=lib)
    assert exp.prompt == "a , b"
    assert exp.warnings == ("character 'heor' not found (did you mean hero?); removed from the prompt",)
    exp = expand_characters("<char:hero:v7>", "", _chars(setup), library=lib)
    assert exp.prompt == "" and "has no version v7 (versions: v2, v1)" in exp.warnings[0]
    exp = expand_characters("<char:hero:heavy>", "", _chars(setup), library=lib)
    assert "neither a version" in exp.warnings[0] and exp.record == "hero v2"
    exp = expand_characters("<char:x>", "", CharacterLibrary(root=None), library=lib)
    assert "no characters are set up" in exp.warnings[0]
    # inside a comment: left alone
    assert expand_characters("ok # <char:hero>", "", _chars(setup), library=lib).prompt == "ok # <char:hero>"


def test_rewrite_expands_before_resolving(setup: tuple[Library, Path]) -> None:
    lib, _ = setup
    res = rewrite_prompt("<char:hero:v1>, smiling", "blurry", lib, characters=_chars(setup))
    # the LoRA tag is resolved to the name the built-in loader finds; the trigger is not inserted twice
    assert res.prompt == f"<lora:hero_v1:1>, (herotok:1.3), {ANCHORS}, smiling"
    assert res.negative == f"blurry, {DRIFT}"
    assert res.characters == "hero v1" and res.original_prompt == "<char:hero:v1>, smiling"
    assert res.to_dict()["characters"] == "hero v1"
    missing = rewrite_prompt("<char:nobody>", "", lib, characters=_chars(setup))
    assert "character 'nobody' not found" in missing.warnings[0] and missing.prompt == ""
    plain = rewrite_prompt("<char:hero>", "", lib)  # no character library: untouched
    assert plain.prompt == "<char:hero>"
    batch = rewrite_batch(["<char:hero>", "<char:hero>"], ["", ""], lib, characters=_chars(setup),
                          settings=RewriteSettings(character_drift=False))
    assert [r.negative for r in batch.results] == ["", ""]
    assert all(r.characters == "hero v2" for r in batch.results)


def test_character_folder_outside_the_lora_folders_is_named(setup: tuple[Library, Path], tmp_path: Path) -> None:
    lib, _ = setup
    root = tmp_path / "elsewhere"
    create_character(root, "loner", trigger="ln")
    make_lora(root / "loner" / "lora", "loner_v1")
    exp = expand_characters("<char:loner>", "", scan_characters(root), library=lib)
    assert exp.prompt.startswith("<lora:loner_v1:1>, (ln:1.3)")
    assert "outside the LoRA folders" in exp.warnings[0] and str(root) in exp.warnings[0]
