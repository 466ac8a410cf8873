"""End-to-end: the standalone app in headless Debian Chromium (Playwright's Python client, /usr/bin/chromium).

Runs in each pinned gradio environment (tests/gradio_envs.sh: gradio 3.41.2 and 4.40.0). The app is
started as a real server (uvicorn on 127.0.0.1) over a library of real ``.safetensors`` headers written by
the synth presets; screenshots go to ``test-output/`` for a person to look at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.gradio]

pytest.importorskip("gradio")
pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api")

from e2e_support import chromium, standalone_app, watched_page  # noqa: E402
from factory import make_checkpoint, make_lora  # noqa: E402

ENV_NAME = os.environ.get("LORA_STUDIO_GRADIO_ENV") or "gradio-" + __import__("gradio").__version__




@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    loras, ckpts = root / "Lora", root / "Stable-diffusion"
    alice = make_lora(loras, "alice", "kohya-sd1", subdir="characters",
                      metadata={"ss_output_name": "alice", "modelspec.trigger_phrase": None})
    alice.with_suffix(".json").write_text(
        json.dumps({"activation text": "alice_trigger, blue dress", "preferred weight": 0.8,
                    "lora studio category": "character"}, indent=4),
        encoding="utf-8",
    )
    make_lora(loras, "watercolor", "kohya-sdxl", subdir="styles", metadata={"modelspec.trigger_phrase": "wtrclr"})
    make_lora(loras, "ponygirl", "pony-sdxl", subdir="characters")
    make_lora(loras, "glow", "kohya-flux", subdir="concepts", metadata={"modelspec.trigger_phrase": "glowing aura"})
    for i in range(60):  # more than one page
        make_lora(loras, f"zz_filler_{i:02d}", "kohya-sd1", subdir="misc", metadata={"modelspec.trigger_phrase": None})
    make_checkpoint(ckpts, "sd15-base", "ckpt-sd1")
    make_checkpoint(ckpts, "sdxl-base", "ckpt-sdxl")
    return {"loras": loras, "ckpts": ckpts, "data": root / "data"}


@pytest.fixture(scope="module")
def server(library: dict[str, Path]):  # type: ignore[no-untyped-def]
    with standalone_app(library["loras"], library["ckpts"], library["data"]) as url:
        yield url


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    yield from chromium(playwright_api)


@pytest.fixture
def page(browser, server):  # type: ignore[no-untyped-def]
    with watched_page(browser, server) as pg:
        pg.wait_for_selector("#lora_studio_cards .lss-card", timeout=30_000)
        yield pg


def _cards(pg) -> list[str]:  # type: ignore[no-untyped-def]
    return pg.eval_on_selector_all("#lora_studio_cards .lss-card", "els => els.map(e => e.dataset.name)")


def _compat_of(pg, name: str) -> str:  # type: ignore[no-untyped-def]
    return pg.get_attribute(f'#lora_studio_cards .lss-card[data-name="{name}"]', "data-compat")


def _prompt(pg) -> str:  # type: ignore[no-untyped-def]
    return pg.input_value("#lora_studio_prompt textarea")


def _search(pg, text: str) -> None:  # type: ignore[no-untyped-def]
    box = pg.locator("#lora_studio_search input, #lora_studio_search textarea").first
    box.fill(text)
    box.press("Enter")


def _pick_checkpoint(pg, title: str) -> None:  # type: ignore[no-untyped-def]
    pg.click("#setting_sd_model_checkpoint input")
    pg.locator("#setting_sd_model_checkpoint li", has_text=title).first.click()
    pg.locator("body").click(position={"x": 5, "y": 5})  # leave the dropdown: the watcher waits for that


def test_panel_renders(page, test_output: Path) -> None:  # type: ignore[no-untyped-def]
    names = _cards(page)
    assert len(names) == 48  # one page of 64 LoRAs
    assert "alice" in names and "glow" in names
    head = page.inner_text("#lora_studio_cards .lss-head")
    assert "64 of 64 LoRAs" in head
    # the first checkpoint is selected: sd15-base -> alice exact, watercolor (SDXL) marked, not hidden
    assert _compat_of(page, "alice") == "exact"
    assert _compat_of(page, "watercolor") == "incompatible"
    assert page.locator('.lss-card[data-name="watercolor"] .lss-base').inner_text().startswith("SDXL")
    page.screenshot(path=str(test_output / f"browser-{ENV_NAME}-panel.png"), full_page=True)


def test_filter_narrows_and_compatible_only(page, test_output: Path) -> None:  # type: ignore[no-untyped-def]
    _search(page, "wtrclr")
    page.wait_for_function("document.querySelectorAll('#lora_studio_cards .lss-card').length === 1")
    assert _cards(page) == ["watercolor"]
    page.screenshot(path=str(test_output / f"browser-{ENV_NAME}-filtered.png"))
    _search(page, "")
    page.wait_for_function("document.querySelectorAll('#lora_studio_cards .lss-card').length === 48")
    page.locator("#lora_studio_compatible_only input").check()
    page.wait_for_function(
        "document.querySelector('#lora_studio_cards .lss-hidden-note') !== null"
    )
    assert "incompatible hidden" in page.inner_text("#lora_studio_cards .lss-head")
    assert "watercolor" not in _cards(page)


def test_checkpoint_switch_changes_badges(page, test_output: Path) -> None:  # type: ignore[no-untyped-def]
    assert _compat_of(page, "alice") == "exact"
    _pick_checkpoint(page, "sdxl-base")
    page.wait_for_function(
        "document.querySelector('#lora_studio_cards .lss-root').dataset.checkpoint.includes('sdxl-base')",
        timeout=15_000,
    )
    assert _compat_of(page, "alice") == "incompatible"
    assert _compat_of(page, "watercolor") == "exact"
    assert _compat_of(page, "ponygirl") in ("exact", "cross-family")
    page.screenshot(path=str(test_output / f"browser-{ENV_NAME}-sdxl.png"), full_page=True)


def test_click_inserts_at_cursor_and_second_click_removes(page, test_output: Path) -> None:  # type: ignore[no-untyped-def]
    box = page.locator("#lora_studio_prompt textarea")
    box.fill("masterpiece, best quality")
    box.evaluate("el => { el.focus(); el.setSelectionRange(12, 12); }")  # after "masterpiece,"
    page.click('#lora_studio_cards .lss-card[data-name="alice"] .lss-name')
    assert _prompt(page) == "masterpiece, <lora:alice:0.8>, alice_trigger, blue dress, best quality"
    page.screenshot(path=str(test_output / f"browser-{ENV_NAME}-inserted.png"))
    # gradio saw the change: the resolve preview (python) gets the same text
    page.click("#lora_studio_resolve_btn")
    page.wait_for_selector("#lora_studio_resolve_out .lss-out-prompt")
    assert "<lora:alice:0.8>" in page.inner_text("#lora_studio_resolve_out .lss-out-prompt")
    # a word already in the prompt is not added again
    page.click('#lora_studio_cards .lss-card[data-name="alice"] .lss-name')
    assert _prompt(page) == "masterpiece, best quality"
    box.fill("alice_trigger, smiling")
    page.click('#lora_studio_cards .lss-card[data-name="alice"] .lss-name')
    assert _prompt(page).count("alice_trigger") == 1
    assert "<lora:alice:0.8>" in _prompt(page)


def test_details_and_editor_write_the_sidecar(page, library) -> None:  # type: ignore[no-untyped-def]
    page.click('#lora_studio_cards .lss-card[data-name="watercolor"] .lss-info')
    page.wait_for_selector('#lora_studio_detail .lss-detail[data-name="watercolor"]')
    assert "wtrclr" in page.inner_text("#lora_studio_detail")
    act = page.locator("#lora_studio_edit_activation textarea")
    act.fill("wtrclr, soft edges")
    page.click("#lora_studio_save")
    page.wait_for_selector("#lora_studio_detail .lss-msg")
    sidecar = library["loras"] / "styles" / "watercolor.json"
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    assert data["activation text"] == "wtrclr, soft edges"
    page.wait_for_function(
        "document.querySelector('#lora_studio_cards .lss-card[data-name=\"watercolor\"]').dataset.words.includes('soft edges')"
    )
