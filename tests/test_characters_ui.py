"""The Characters view's controller (cards, editor, create, references, remote gate) and its gradio
build in both pinned gradio versions (the standalone app's Blocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from factory import make_checkpoint, make_lora, png_bytes

from lib_lora.characters import ENV_ROOT, CharacterError, create_character, scan_characters
from lib_lora.host import StandaloneHost
from lib_lora.ui.characters_view import CharactersController

PNG = png_bytes()


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandaloneHost:
    monkeypatch.delenv(ENV_ROOT, raising=False)
    loras = tmp_path / "Lora"
    root = loras / "characters"
    create_character(root, "hero", trigger="herotok")
    make_lora(root / "hero" / "lora", "hero_v1", "kohya-sd1")
    make_lora(root / "hero" / "lora", "hero_v2", "kohya-sdxl")
    (root / "hero" / "reference" / "front.png").write_bytes(PNG)
    (root / "hero" / "expressions" / "smile.png").write_bytes(PNG)
    make_lora(loras, "villain", "kohya-sd1", subdir="misc")
    make_lora(loras, "rogue_file", "kohya-sd1")
    ckpts = tmp_path / "ckpt"
    make_checkpoint(ckpts, "sd15", "ckpt-sd1")
    h = StandaloneHost([loras], data_dir=tmp_path / "data", checkpoint_dirs=[ckpts])
    h.select_checkpoint("sd15.safetensors")
    h.rescan(wait=True)
    return h


def test_cards_show_reference_trigger_versions_badges(host: StandaloneHost) -> None:
    html = CharactersController(host).render()
    assert 'data-char="hero"' in html and "herotok" in html
    assert 'src="lora-studio/v1/characters/hero/image/reference/0?v=' in html
    assert "smile" in html and "1 reference, 1 expression<" in html
    # v2 (SDXL) against the selected SD 1.5 checkpoint: incompatible; v1: exact
    assert html.index("<b>v2</b>") < html.index("<b>v1</b>")
    assert 'lss-compat-incompatible" title="sdxl' in html and 'lss-compat-exact" title="sd1' in html
    assert "<b>v2</b> \u2717" in html and "<b>v1</b> \u2713" in html  # the level as a mark, not only a colour


def test_editor_create_and_references(host: StandaloneHost, tmp_path: Path) -> None:
    ctl = CharactersController(host)
    v = ctl.values("HERO")
    assert v.name == "hero" and v.trigger == "herotok" and v.trigger_weight == 1.3
    assert v.anchors == "same character, consistent appearance" and v.use_drift
    ctl.save("hero", "herotok, red scarf", 1.1, "same face, same scarf", "other person", True, False, True, True)
    p = scan_characters(tmp_path / "Lora" / "characters").find("hero").prompts  # type: ignore[union-attr]
    assert p.trigger == ("herotok", "red scarf") and p.trigger_weight == 1.1 and p.use_anchors is False
    assert p.anchors == ("same face", "same scarf") and p.drift == ("other person",) and p.use_reference
    assert ctl.values("hero").use_reference is True
    with pytest.raises(CharacterError, match="choose a character"):
        ctl.save(None, "", 1, "", "", True, True, True)

    img = tmp_path / "up.png"
    img.write_bytes(PNG)

    class Upload:  # gradio 3 hands tempfile wrappers with .name, gradio 4 plain paths
        name = str(img)

    assert "Added 2" in ctl.add_references("hero", [Upload(), str(img)])
    assert len(scan_characters(tmp_path / "Lora" / "characters").find("hero").references) == 3  # type: ignore[union-attr]

    assert "using the LoRA misc/villain" in ctl.create("villain", "vil", "misc/villain", False)
    assert "moved into lora/" in ctl.create("rogue", "rg", "rogue_file", True)
    assert (tmp_path / "Lora" / "characters" / "rogue" / "lora" / "rogue_file.safetensors").is_file()
    assert host.library().lookup("rogue_file").entry.path.endswith("characters/rogue/lora/rogue_file.safetensors")
    with pytest.raises(CharacterError, match="no LoRA named"):
        ctl.create("x", "", "nothing_like_it", False)
    with pytest.raises(CharacterError, match="already exists"):
        ctl.create("Hero", "", "", False)
    assert ctl.names() == ["hero", "rogue", "villain"]


def test_remote_users_cannot_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ROOT, raising=False)
    loras = tmp_path / "Lora"
    create_character(loras / "characters", "hero")
    h = StandaloneHost([loras], data_dir=tmp_path / "d", bind_host="0.0.0.0")
    ctl = CharactersController(h)
    for call in (lambda: ctl.create("x", "", "", False), lambda: ctl.save("hero", "", 1, "", "", 1, 1, 1),
                 lambda: ctl.add_references("hero", [])):
        with pytest.raises(CharacterError, match="refused"):
            call()


@pytest.mark.gradio
def test_the_view_builds_in_this_gradio(host: StandaloneHost) -> None:
    pytest.importorskip("gradio")
    from lib_lora.standalone import build_ui

    blocks = build_ui(host)
    ids = {getattr(b, "elem_id", None) for b in blocks.blocks.values()}
    assert {"lora_studio_char_cards", "lora_studio_char_pick", "lora_studio_char_save",
            "lora_studio_char_create", "lora_studio_char_files", "lora_studio_tab_characters"} <= ids


def test_train_tab_form_carries_the_character() -> None:
    pytest.importorskip("gradio")
    from lib_lora.ui.train_tab import request_from_form

    req = request_from_form("/d", "", "sd15", "default", "character", 0, 0, "", 0, 0, 0, "", "", "auto", 0.8, True,
                            " hero ")
    assert req.character == "hero" and req.trigger == "" and req.references is None
    assert request_from_form("/d", "t", "b").character is None
    req = request_from_form("/d", "", "b", character="hero", references="a.png, sub/b.png")
    assert req.references == ("/d/a.png", "/d/sub/b.png")
