"""End-to-end: the Characters view of the standalone app in headless Debian Chromium (both pinned gradio
versions): a click on a card inserts ``<char:NAME>``, the editor writes anchors into prompts.txt without
losing the user's lines, and a character is created from a library LoRA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.gradio]

pytest.importorskip("gradio")
pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api")

from e2e_support import chromium, standalone_app, watched_page  # noqa: E402
from factory import make_checkpoint, make_lora, png_bytes  # noqa: E402

from lib_lora.characters import create_character  # noqa: E402

ENV_NAME = os.environ.get("LORA_STUDIO_GRADIO_ENV") or "gradio-" + __import__("gradio").__version__
PNG = png_bytes()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chars-e2e")
    loras, ckpts = root / "Lora", root / "Stable-diffusion"
    chars = loras / "characters"
    create_character(chars, "hero", trigger="herotok")
    make_lora(chars / "hero" / "lora", "hero_v1", "kohya-sd1")
    (chars / "hero" / "reference" / "front.png").write_bytes(PNG)
    with open(chars / "hero" / "prompts.txt", "a", encoding="utf-8") as fh:
        fh.write("her scarf is always red\n")
    make_lora(loras, "villain", "kohya-sd1", subdir="misc", metadata={"modelspec.trigger_phrase": "vil"})
    make_checkpoint(ckpts, "sd15-base", "ckpt-sd1")
    return {"loras": loras, "ckpts": ckpts, "data": root / "data", "chars": chars}


@pytest.fixture(scope="module")
def server(library: dict[str, Path]):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "LORA_STUDIO_CHARACTERS"}
    with standalone_app(library["loras"], library["ckpts"], library["data"], env=env) as url:
        yield url


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    yield from chromium(playwright_api)


@pytest.fixture
def page(browser, server):  # type: ignore[no-untyped-def]
    with watched_page(browser, server, height=1200) as pg:
        pg.locator(".tab-nav button", has_text="Characters").first.click()
        pg.wait_for_selector('#lora_studio_char_cards .lss-char-card[data-char="hero"]', timeout=30_000)
        yield pg


def _pick(pg, elem_id: str, text: str) -> None:  # type: ignore[no-untyped-def]
    pg.click(f"#{elem_id} input")
    pg.locator(f"#{elem_id} li", has_text=text).first.click()


def test_card_click_inserts_and_removes(page, test_output: Path) -> None:  # type: ignore[no-untyped-def]
    card = '#lora_studio_char_cards .lss-char-card[data-char="hero"]'
    page.wait_for_function("sel => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth === 8; }",
                           arg=f"{card} img", timeout=15_000)
    assert "herotok" in page.inner_text(card) and "v1" in page.inner_text(card)
    box = page.locator("#lora_studio_prompt textarea")
    box.fill("at the beach")
    page.click(f"{card} .lss-char-name")
    assert page.input_value("#lora_studio_prompt textarea") == "at the beach, <char:hero>"
    page.screenshot(path=str(test_output / f"characters-{ENV_NAME}.png"))
    page.click(f"{card} .lss-char-name")
    assert page.input_value("#lora_studio_prompt textarea") == "at the beach"


def test_edit_anchors_keeps_the_users_lines(page, library) -> None:  # type: ignore[no-untyped-def]
    _pick(page, "lora_studio_char_pick", "hero")
    anchors = page.locator("#lora_studio_char_anchors textarea")
    page.wait_for_function(
        "document.querySelector('#lora_studio_char_anchors textarea').value.includes('same character')"
    )
    anchors.fill("same character, same red scarf")
    page.click("#lora_studio_char_save")
    page.wait_for_selector("#lora_studio_char_status .lss-ok")
    text = (library["chars"] / "hero" / "prompts.txt").read_text(encoding="utf-8")
    assert "anchors: same character, same red scarf" in text and "her scarf is always red" in text


def test_create_from_a_lora(page, library) -> None:  # type: ignore[no-untyped-def]
    page.locator("#lora_studio_char_new_name input, #lora_studio_char_new_name textarea").first.fill("villain")
    page.locator("#lora_studio_char_new_lora input, #lora_studio_char_new_lora textarea").first.fill("misc/villain")
    page.click("#lora_studio_char_create")
    page.wait_for_selector('#lora_studio_char_cards .lss-char-card[data-char="villain"]', timeout=20_000)
    assert "using the LoRA misc/villain" in page.inner_text("#lora_studio_char_status")
    prompts = (library["chars"] / "villain" / "prompts.txt").read_text(encoding="utf-8")
    assert "lora: misc/villain" in prompts
    assert (library["loras"] / "misc" / "villain.safetensors").is_file()  # not moved without asking
