"""Characters on disk: the layout, prompts.txt (round trip, property tests), versions, creating."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from factory import make_lora, png_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_lora.characters import (
    ENV_ROOT,
    CharacterError,
    CharacterPrompts,
    add_images,
    character_root,
    create_character,
    load_character,
    next_version,
    scan_characters,
    update_prompts,
)
from lib_lora.characters.promptsfile import DEFAULT_ANCHORS, DEFAULT_DRIFT, FIELDS

PNG = png_bytes()


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)
    return path


# -- prompts.txt -------------------------------------------------------------------------------------

USER_FILE = """My hero. Keep her scarf red!
trigger: mychar001
Trigger_Weight = 1.2
anchors: same character, identical face, same hairstyle
negative: different person
mood: gloomy
# a comment: trigger: not this
scene: mychar001 walking in the rain
scene: mychar001 in a cafe
trigger: second one is ignored
"""


def test_user_file_is_read_and_kept() -> None:
    doc = CharacterPrompts.parse(USER_FILE)
    assert doc.text() == USER_FILE
    assert doc.trigger == ("mychar001",)
    assert doc.trigger_weight == 1.2
    assert doc.anchors == ("same character", "identical face", "same hairstyle")
    assert doc.drift == ("different person",)
    assert doc.scenes == ("mychar001 walking in the rain", "mychar001 in a cafe")
    assert "mood: gloomy" in doc.notes and "# a comment: trigger: not this" in doc.notes
    assert doc.use_trigger and doc.use_anchors and doc.use_drift


def test_defaults_and_empty_values() -> None:
    empty = CharacterPrompts.parse("")
    assert empty.trigger == () and empty.trigger_weight == 1.3
    assert empty.anchors == DEFAULT_ANCHORS and empty.drift == DEFAULT_DRIFT
    cleared = CharacterPrompts.parse("anchors:\ndrift: \ntrigger weight: heavy\nuse drift: no\n")
    assert cleared.anchors == () and cleared.drift == () and cleared.trigger_weight == 1.3
    assert cleared.use_drift is False
    assert CharacterPrompts.parse("trigger weight: 9\n").trigger_weight == 1.3  # out of range: default


def test_with_values_changes_only_its_lines() -> None:
    doc = CharacterPrompts.parse(USER_FILE).with_values(
        trigger="newtok", anchors=["a", "b"], trigger_weight=1.4, use_drift=False
    )
    lines = doc.text().splitlines()
    assert lines[0] == "My hero. Keep her scarf red!"
    assert lines[1] == "trigger: newtok"
    assert lines[2] == "Trigger_Weight = 1.4"
    assert "trigger: second one is ignored" in lines and "mood: gloomy" in lines
    assert lines[-1] == "use drift: no"
    assert doc.trigger == ("newtok",) and doc.anchors == ("a", "b") and doc.use_drift is False
    back = doc.with_values(anchors=None)
    assert back.anchors == DEFAULT_ANCHORS and not any(line.startswith("anchors") for line in back.text().splitlines())
    with pytest.raises(ValueError, match="trigger weight"):
        doc.with_values(trigger_weight="heavy")
    with pytest.raises(ValueError, match="no field"):
        doc.with_values(colour="red")


def test_scenes_replace_in_place_and_crlf_kept() -> None:
    doc = CharacterPrompts.parse("note\r\nscene: a\r\nscene: b\r\nend\r\n").with_values(scene=["x", "y", "z"])
    assert doc.text() == "note\r\nscene: x\r\nscene: y\r\nscene: z\r\nend\r\n"
    no_newline = CharacterPrompts.parse("free text").with_values(trigger="t")
    assert no_newline.text() == "free text\ntrigger: t\n"


_line = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=40)
_known = st.sampled_from([f"{f.replace('_', ' ')}: " for f in FIELDS] + ["Trigger=", "NEGATIVE :", "use lora:"])
_lines = st.lists(st.one_of(_line, st.builds(lambda k, v: k + v, _known, _line)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(_lines, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_property_round_trip_keeps_every_line(lines: list[str], nl: str, final_newline: bool) -> None:
    text = nl.join(lines) + (nl if final_newline and lines else "")
    doc = CharacterPrompts.parse(text)
    assert doc.text() == text  # parse -> write is the identity
    again = CharacterPrompts.parse(doc.text())
    assert again == doc and again.to_dict() == doc.to_dict()  # parse -> write -> parse is stable


@settings(max_examples=150, deadline=None)
@given(_lines, st.text(alphabet="abc xyz_-,", min_size=1, max_size=20), st.floats(0.1, 2.0))
def test_property_setting_fields_keeps_unknown_lines(lines: list[str], trigger: str, weight: float) -> None:
    doc = CharacterPrompts.parse("\n".join(lines) + "\n")
    changed = doc.with_values(trigger=trigger, trigger_weight=weight, scene=["s1"])
    reparsed = CharacterPrompts.parse(changed.text())
    assert reparsed == changed
    for note in doc.notes:  # every line that is not a field survives, in order
        assert note in reparsed.notes
    assert [n for n in reparsed.notes if n in doc.notes] == [n for n in doc.notes]
    assert reparsed.scenes == ("s1",)
    assert abs(reparsed.trigger_weight - round(weight, 2)) < 1e-9 or reparsed.trigger_weight == 1.3


# -- the layout -----------------------------------------------------------------------------------


def test_existing_folder_is_recognised_and_versions_ordered(tmp_path: Path) -> None:
    root = tmp_path / "characters"
    lead = root / "male_lead"
    for name in ("male_lead_v1", "male_lead_v10", "male_lead_v2"):
        make_lora(lead / "lora", name)
    old = make_lora(lead / "lora", "first_try")
    newer = make_lora(lead / "lora", "second_try")
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(newer, (2_000_000, 2_000_000))
    _png(lead / "lora" / "male_lead_v2.preview.png")
    _png(lead / "reference" / "front.png")
    _png(lead / "expressions" / "smile.png")
    _png(lead / "expressions" / "angry.jpg")
    (lead / "prompts.txt").write_text("trigger: mlead\n", encoding="utf-8")
    (root / "female_lead" / "reference").mkdir(parents=True)
    (root / "not_a_character").mkdir()
    (root / "loose.txt").write_text("x")

    lib = scan_characters(root)
    assert lib.names == ("female_lead", "male_lead")
    char = lib.find("MALE_LEAD")
    assert char is not None
    assert [v.label for v in char.versions] == ["v10", "v2", "v1", "second_try", "first_try"]
    assert char.version(2) is not None and char.version(2).stem == "male_lead_v2"
    assert char.version(3) is None and char.version().stem == "male_lead_v10"
    assert [Path(p).name for p in char.references] == ["front.png"]
    assert char.expression_names == ("angry", "smile")
    assert char.prompts.trigger == ("mlead",)
    assert lib.suggestions("male_led")[0] == "male_lead"
    data = lib.to_dict()
    assert data["characters"][1]["versions"][0]["label"] == "v10"


def test_character_root_setting_env_default(tmp_path: Path) -> None:
    assert character_root("/x/chars", [tmp_path], {ENV_ROOT: "/env"}) == Path("/x/chars")
    assert character_root("", [tmp_path], {ENV_ROOT: "/env"}) == Path("/env")
    assert character_root("", [tmp_path / "a", tmp_path / "b"], {}) == tmp_path / "a" / "characters"
    assert character_root(None, [], {}) is None
    assert scan_characters(tmp_path / "missing").characters == ()


# -- creating ---------------------------------------------------------------------------------------


def test_create_from_scratch_and_refusals(tmp_path: Path) -> None:
    root = tmp_path / "characters"
    char = create_character(root, "hero", trigger="herotok")
    assert sorted(p.name for p in (root / "hero").iterdir()) == ["expressions", "lora", "prompts.txt", "reference"]
    assert char.prompts.trigger == ("herotok",) and char.prompts.trigger_weight == 1.3
    assert char.prompts.anchors == DEFAULT_ANCHORS and char.prompts.drift == DEFAULT_DRIFT
    assert char.versions == ()
    with pytest.raises(CharacterError, match="already exists"):
        create_character(root, "HERO")
    for bad in ("", "../up", "a/b", ".hidden", "x" * 80):
        with pytest.raises(CharacterError):
            create_character(root, bad)


def test_create_from_lora_records_or_moves(tmp_path: Path) -> None:
    loras = tmp_path / "Lora"
    kept = make_lora(loras / "misc", "villain")
    moved = make_lora(loras, "sidekick")
    (loras / "sidekick.json").write_text('{"activation text": "sk"}', encoding="utf-8")
    _png(loras / "sidekick.preview.png")
    root = loras / "characters"

    rec = create_character(root, "villain", lora_path=str(kept), lora_name="misc/villain")
    assert kept.exists() and not any((root / "villain" / "lora").iterdir())
    assert rec.prompts.lora == "misc/villain"
    assert [v.label for v in rec.versions] == ["villain"] and rec.versions[0].recorded

    mv = create_character(root, "sidekick", lora_path=str(moved), move_lora=True)
    assert not moved.exists() and not (loras / "sidekick.json").exists()
    names = sorted(p.name for p in (root / "sidekick" / "lora").iterdir())
    assert names == ["sidekick.json", "sidekick.preview.png", "sidekick.safetensors"]
    assert [v.stem for v in mv.versions] == ["sidekick"] and mv.prompts.lora is None
    with pytest.raises(CharacterError, match="does not exist"):
        create_character(root, "ghost", lora_path=str(loras / "nope.safetensors"))


def test_update_prompts_and_add_images(tmp_path: Path) -> None:
    root = tmp_path / "characters"
    char = create_character(root, "hero", trigger="herotok")
    with open(char.prompts_path, "a", encoding="utf-8") as fh:
        fh.write("my own note\n")
    char = update_prompts(char, {"anchors": ["same scarf"], "trigger_weight": 1.1})
    assert char.prompts.anchors == ("same scarf",) and char.prompts.trigger_weight == 1.1
    assert "my own note" in char.prompts.notes
    with pytest.raises(CharacterError, match="no field"):
        update_prompts(char, {"bogus": 1})

    img = _png(tmp_path / "in" / "face.png")
    first = add_images(char, [img])
    second = add_images(char, [img])
    assert [Path(p).name for p in first + second] == ["face.png", "face-2.png"]
    assert load_character(char.folder).references[0].endswith("face.png")
    with pytest.raises(CharacterError, match="not an image"):
        add_images(char, [tmp_path / "x.txt"])
    with pytest.raises(CharacterError, match="no such file"):
        add_images(char, [tmp_path / "gone.png"])


def test_next_version_never_reuses(tmp_path: Path) -> None:
    folder = tmp_path / "hero"
    (folder / "lora").mkdir(parents=True)
    assert next_version(folder) == 1
    make_lora(folder / "lora", "hero_v2")
    (folder / "lora" / "hero_v5.json").write_text("{}")  # a sidecar left from a deleted v5
    make_lora(folder / "lora", "other_v9")
    assert next_version(folder) == 6


def test_consistency_sheets_read_the_character_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lib_lora.consistency finds the root and the saved scenes through this package."""
    from types import SimpleNamespace

    from lib_lora.consistency.scenes import character_scenes
    from lib_lora.consistency.versions import character_root as sheet_root

    monkeypatch.delenv(ENV_ROOT, raising=False)
    char = create_character(tmp_path / "Lora" / "characters", "hero", trigger="herotok")
    update_prompts(char, {"scene": ["walking in the rain", "{trigger} in a cafe"]})
    scenes = character_scenes(char.folder)
    assert scenes is not None and [s.prompt for s in scenes] == ["{trigger}, walking in the rain", "{trigger} in a cafe"]
    host = SimpleNamespace(settings=lambda: SimpleNamespace(characters_root=""), lora_roots=lambda: [tmp_path / "Lora"])
    assert sheet_root(host) == str(tmp_path / "Lora" / "characters")
    host = SimpleNamespace(settings=lambda: SimpleNamespace(characters_root="/x/c"), lora_roots=lambda: [tmp_path])
    assert sheet_root(host) == "/x/c"
