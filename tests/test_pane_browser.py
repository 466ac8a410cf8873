"""The extra-networks pane's LoRA Studio cards in headless Debian Chromium (Playwright), without a real WebUI.

The cards are made by the real page class through the stand-in ``modules`` (tests/webui_standin) for the
txt2img and the img2img pane, and put in a page with the WebUI's element ids (``#tab_txt2img``,
``#txt2img_prompt textarea``, ``#setting_sd_model_checkpoint input``, the top-level ``#tabs`` row) next to
``style.css`` and ``javascript/lora_studio.js``. The real WebUI's own pane scripts are not loaded (its
search box and sort buttons are its code, not ours); tests/test_webui_real.py runs against the real UI.
Screenshots go to ``test-output/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser]

playwright_api = pytest.importorskip("playwright.sync_api")

from e2e_support import REPO, chromium  # noqa: E402
from factory import make_checkpoint  # noqa: E402
from webui_standin.harness import StandinWebUI  # noqa: E402

SD15 = "kohya-outputs/sd15-kohya-dim4-mychar.safetensors"
SDXL = "kohya-outputs/sdxl-kohya-unetonly.safetensors"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="stylesheet" href="style.css">
<style>
  body {{ font-family: sans-serif; background: #1f2937; color: #eee; }}
  .card {{ position: relative; display: inline-block; width: 200px; height: 260px; margin: 4px; overflow: hidden;
          border-radius: 8px; background: #374151; vertical-align: top; }}
  .card .preview {{ position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; }}
  .card .actions {{ position: absolute; left: 0; right: 0; bottom: 0; padding: 6px; background: #0009; }}
  .card .button-row {{ position: absolute; top: 4px; right: 4px; z-index: 2; display: flex; gap: 4px; }}
  .card-button {{ cursor: pointer; min-width: 1.2em; }}
  .hidden {{ display: none; }}
  textarea {{ width: 90%; }}
</style></head>
<body>
<div id="setting_sd_model_checkpoint"><label>checkpoint <input value="sd15.safetensors"></label></div>
<div id="tabs">
  <div class="tab-nav"><button>txt2img</button><button>img2img</button><button id="studio_button">LoRA Studio</button></div>
  <div id="tab_txt2img">
    <div id="txt2img_prompt"><label><textarea rows="2">a portrait</textarea></label></div>
    <div id="txt2img_neg_prompt"><label><textarea rows="1">lowres</textarea></label></div>
    <div id="txt2img_extra_tabs">{txt2img}</div>
  </div>
  <div id="tab_img2img">
    <div id="img2img_prompt"><label><textarea rows="2"></textarea></label></div>
    <div id="img2img_neg_prompt"><label><textarea rows="1"></textarea></label></div>
    <div id="img2img_extra_tabs">{img2img}</div>
  </div>
  <div id="tab_lora_studio" style="display:none">
    <div id="lora_studio_cmd"><textarea></textarea></div><button id="lora_studio_cmd_btn">run</button>
  </div>
</div>
<script>
  window.opened = 0; window.commands = [];
  document.getElementById("studio_button").addEventListener("click", function () {{ window.opened += 1; }});
  document.getElementById("lora_studio_cmd_btn").addEventListener("click", function () {{
    window.commands.push(JSON.parse(document.querySelector("#lora_studio_cmd textarea").value));
  }});
</script>
<script src="javascript/lora_studio.js"></script>
</body></html>
"""


_WINDOWED: dict[str, object] = {}


def _copy(fixtures_dir: Path, src: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fixtures_dir / src, dest)


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    """The two panes as the real page class renders them through the stand-in WebUI (SD 1.5 selected)."""
    root = tmp_path_factory.mktemp("pane")
    w = StandinWebUI(root / "webui", flavor="a1111")
    _copy(fixtures_dir, SD15, w.lora_dir / "zk_alice.safetensors")
    shutil.copyfile(fixtures_dir / "sidecars" / "alice.json", w.lora_dir / "zk_alice.json")
    _copy(fixtures_dir, SD15, w.lora_dir / "chars" / "kotori.safetensors")
    _copy(fixtures_dir, SDXL, w.lora_dir / "xl" / "myxl_style.safetensors")
    from PIL import Image

    Image.new("RGB", (64, 96), (200, 60, 60)).save(w.lora_dir / "zk_alice.png")
    # A character whose prompts.txt records the SDXL LoRA (its version badge flips with the checkpoint).
    from lib_lora.characters import add_images, create_character

    hero = create_character(w.lora_dir / "characters", "hero", trigger="herotok",
                            lora_path=str(w.lora_dir / "xl" / "myxl_style.safetensors"))
    Image.new("RGB", (64, 64), (60, 200, 60)).save(root / "ref.png")
    add_images(hero, [root / "ref.png"])
    make_checkpoint(w.ckpt_dir, "sd15", "ckpt-sd1")
    make_checkpoint(w.ckpt_dir, "sdxl", "ckpt-sdxl")
    w.start()
    try:
        w.select_checkpoint("sd15.safetensors")
        w.wait_for_index()
        from modules import ui_extra_networks

        panes = {}
        for tab in ("txt2img", "img2img"):
            ui = ui_extra_networks.create_ui(None, [], tab)
            panes[tab] = ui.pages_contents[[p.title for p in ui.stored_extra_pages].index("LoRA Studio")]
        # The same library windowed two cards at a time (what a big library gets), and its pane model for
        # the API route the windowed page asks (test_windowed_pane_...).
        from lib_lora.ui import pane as pane_mod

        windowed = {}
        pane_mod.WINDOW, window = 2, pane_mod.WINDOW
        try:
            for tab in ("txt2img", "img2img"):
                ui = ui_extra_networks.create_ui(None, [], tab)
                windowed[tab] = ui.pages_contents[[p.title for p in ui.stored_extra_pages].index("LoRA Studio")]
        finally:
            pane_mod.WINDOW = window
        _WINDOWED["model"] = pane_mod.pane_for_host(w.host())
    finally:
        w.stop()
    site = root / "site"
    (site / "javascript").mkdir(parents=True)
    shutil.copyfile(REPO / "style.css", site / "style.css")
    shutil.copyfile(REPO / "javascript" / "lora_studio.js", site / "javascript" / "lora_studio.js")
    (site / "index.html").write_text(PAGE.format(**panes), encoding="utf-8")
    (site / "windowed.html").write_text(PAGE.format(**windowed), encoding="utf-8")
    return site / "index.html"


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    yield from chromium(playwright_api)


def _badge(page, tab: str, name: str) -> str:  # type: ignore[no-untyped-def]
    return page.locator(f'#tab_{tab} .lss-pane-card[data-name="{name}"] .lss-compat').inner_text()


def _set_checkpoint(page, title: str) -> None:  # type: ignore[no-untyped-def]
    page.evaluate(
        "(t) => { const i = document.querySelector('#setting_sd_model_checkpoint input'); i.value = t;"
        " i.dispatchEvent(new Event('input', {bubbles: true})); }",
        title,
    )


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_pane_badges_follow_the_checkpoint_and_a_click_inserts(browser, page_file: Path, tab: str,  # type: ignore[no-untyped-def]
                                                                 test_output: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(page_file.as_uri())
        page.wait_for_function("() => window.loraStudio !== undefined")
        assert "compatible" in _badge(page, tab, "zk_alice") and "incompatible" not in _badge(page, tab, "zk_alice")
        assert "incompatible" in _badge(page, tab, "myxl_style")
        xl = page.locator(f'#tab_{tab} .lss-pane-card[data-name="myxl_style"]')
        assert float(xl.evaluate("e => getComputedStyle(e).opacity")) < 0.6  # dimmed
        page.screenshot(path=str(test_output / f"pane-standin-{tab}-sd15.png"), full_page=True)

        # The dropdown changes: the badges flip in the browser, no request, no reload.
        _set_checkpoint(page, "sdxl.safetensors [0123abcd]")  # A1111's title carries the hash
        page.wait_for_function(
            f"() => document.querySelector('#tab_{tab} .lss-pane-card[data-name=\"myxl_style\"] .lss-compat')"
            ".textContent.includes('✓ compatible')"
        )
        assert "incompatible" in _badge(page, tab, "zk_alice")
        assert "sdxl.safetensors" in page.locator(f"#tab_{tab} .lss-pane-ckpt").inner_text()
        page.screenshot(path=str(test_output / f"pane-standin-{tab}-sdxl.png"), full_page=True)

        # "compatible only" hides the incompatible ones (SD 1.5 LoRAs now) and says how many.
        page.locator(f"#tab_{tab} .lss-pane-compat-only").check()
        page.wait_for_function(
            f"() => document.querySelector('#tab_{tab} .lss-pane-card[data-name=\"zk_alice\"]').offsetParent === null"
        )
        assert page.locator(f'#tab_{tab} .lss-pane-card[data-name="myxl_style"]').is_visible()
        assert "2 incompatible hidden" in page.locator(f"#tab_{tab} .lss-hidden-note").inner_text()
        page.locator(f"#tab_{tab} .lss-pane-compat-only").uncheck()
        _set_checkpoint(page, "sd15.safetensors")
        page.wait_for_function(
            f"() => document.querySelector('#tab_{tab} .lss-pane-card[data-name=\"zk_alice\"]').dataset.compat"
            " === 'exact'"
        )

        # A click on the card's name: tag + trigger words into THIS tab's prompt, negative text into its
        # negative prompt; the other tab's prompt is untouched; a second click removes them.
        other = "img2img" if tab == "txt2img" else "txt2img"
        before_other = page.locator(f"#{other}_prompt textarea").input_value()
        page.locator(f'#tab_{tab} .lss-pane-card[data-name="zk_alice"] .name').click()
        prompt = page.locator(f"#{tab}_prompt textarea").input_value()
        assert "<lora:zk_alice:0.8>" in prompt and "red coat" in prompt
        assert "blurry, extra fingers" in page.locator(f"#{tab}_neg_prompt textarea").input_value()
        assert page.locator(f"#{other}_prompt textarea").input_value() == before_other
        page.wait_for_function(
            f"() => document.querySelector('#tab_{tab} .lss-pane-card[data-name=\"zk_alice\"]')"
            ".classList.contains('lss-in-prompt')"
        )
        page.screenshot(path=str(test_output / f"pane-standin-{tab}-inserted.png"), full_page=True)
        page.locator(f'#tab_{tab} .lss-pane-card[data-name="zk_alice"] .name').click()
        prompt = page.locator(f"#{tab}_prompt textarea").input_value()
        assert "<lora:" not in prompt and "red coat" not in prompt
        assert "blurry" not in page.locator(f"#{tab}_neg_prompt textarea").input_value()

        # The pencil opens LoRA Studio's editor for that LoRA (its tab, then the "select" command).
        page.locator(f'#tab_{tab} .lss-pane-card[data-name="kotori"] .lss-pane-edit').click()
        page.wait_for_function("() => window.commands.length > 0")
        assert page.evaluate("window.opened") == 1
        assert page.evaluate("window.commands")[-1]["op"] == "select"
        assert page.evaluate("window.commands")[-1]["name"] == "kotori"
        assert "<lora:" not in page.locator(f"#{tab}_prompt textarea").input_value()  # not a card click

        lazy = page.locator(f"#tab_{tab} .lss-pane-card img").evaluate_all("els => els.map(e => e.loading)")
        assert lazy == ["lazy"]  # zk_alice's preview; the others show initials
    finally:
        page.close()


def test_pane_data_is_json_the_script_reads(page_file: Path) -> None:
    """The wrapper's class map survives the HTML escaping (what the script parses)."""
    import html as html_mod
    import re

    markup = page_file.read_text(encoding="utf-8")
    raw = re.search(r'data-lss-classes="([^"]*)"', markup)
    assert raw is not None
    classes = json.loads(html_mod.unescape(raw.group(1)))
    assert {"sd15.safetensors", "sdxl.safetensors"} <= set(classes)


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_pane_characters_insert_char_tag_and_follow_the_checkpoint(browser, page_file: Path, tab: str,  # type: ignore[no-untyped-def]
                                                                    test_output: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(page_file.as_uri())
        page.wait_for_function("() => window.loraStudio !== undefined")
        hero = page.locator(f'#tab_{tab} .lss-pane .lss-char-card[data-char="hero"]')
        assert "herotok" in hero.inner_text()
        assert hero.locator("img").evaluate("e => e.loading") == "lazy"
        badge = hero.locator(".lss-pane-ver")
        assert "myxl_style" in badge.inner_text() and "incompatible" in badge.inner_text()

        _set_checkpoint(page, "sdxl.safetensors [0123abcd]")
        page.wait_for_function(
            f"() => document.querySelector('#tab_{tab} .lss-pane-ver .lss-ver-word').textContent"
            ".includes('✓ compatible')"
        )
        assert "lss-exact" in (badge.get_attribute("class") or "").split()

        other = "img2img" if tab == "txt2img" else "txt2img"
        before_other = page.locator(f"#{other}_prompt textarea").input_value()
        hero.locator(".lss-char-name").click()
        assert "<char:hero>" in page.locator(f"#{tab}_prompt textarea").input_value()
        assert page.locator(f"#{other}_prompt textarea").input_value() == before_other
        page.wait_for_function(
            f"() => document.querySelector('#tab_{tab} .lss-pane .lss-char-card').classList.contains('lss-in-prompt')"
        )
        page.screenshot(path=str(test_output / f"pane-standin-{tab}-character.png"), full_page=True)
        hero.click()
        assert "<char:" not in page.locator(f"#{tab}_prompt textarea").input_value()
        _set_checkpoint(page, "sd15.safetensors")
        page.wait_for_function(
            f"() => document.querySelector('#tab_{tab} .lss-pane-ver').dataset.compat === 'incompatible'"
        )
    finally:
        page.close()


def _search(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.evaluate(
        "(t) => { const i = document.querySelector('#txt2img_lora_studio_extra_search'); i.value = t;"
        " i.dispatchEvent(new Event('input', {bubbles: true})); }",
        text,
    )


def test_windowed_pane_pages_searches_and_filters_through_the_api(browser, page_file: Path,  # type: ignore[no-untyped-def]
                                                                   test_output: Path) -> None:
    """A big library's pane renders one window; the rest scrolls in, and the search box and "compatible
    only" show the matching window, all from the API's ``pane/cards`` (answered here by the same function
    the route calls, over a fake origin: the page is the stand-in one)."""
    from urllib.parse import parse_qs, urlparse

    from lib_lora.ui import pane as pane_mod

    site = page_file.parent
    asked: list[dict[str, str]] = []

    def serve(route) -> None:  # type: ignore[no-untyped-def]
        url = urlparse(route.request.url)
        if url.path.endswith("/lora-studio/v1/pane/cards"):
            args = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            asked.append(args)
            body = pane_mod.window_json(_WINDOWED["model"], args["q"], args["checkpoint"],  # type: ignore[arg-type]
                                        args["compatible_only"] == "true", int(args["offset"]), int(args["limit"]))
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
            return
        file = site / url.path.lstrip("/")
        if not file.is_file():  # the character's reference image: not served by this fake origin
            route.fulfill(status=404, body=b"")
            return
        kind = {".css": "text/css", ".js": "text/javascript"}.get(file.suffix, "text/html")
        route.fulfill(status=200, content_type=kind, body=file.read_bytes())

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.route("http://lss.test/**", serve)
    cards = "#tab_txt2img .lss-pane-card"
    try:
        page.goto("http://lss.test/windowed.html")
        page.wait_for_function("() => window.loraStudio !== undefined")
        # Two cards with the page; the "show more" bar is on screen, so the third scrolls in.
        page.wait_for_function(f"() => document.querySelectorAll('{cards}').length === 3", timeout=10_000)
        page.wait_for_function("() => document.querySelector('#tab_txt2img .lss-pane-more').hidden")
        names = page.locator(cards).evaluate_all("els => els.map(e => e.dataset.name)")
        assert names == ["kotori", "myxl_style", "zk_alice"]
        assert [a["offset"] for a in asked] == ["2", "2"]  # one window more for each tab's pane

        # The pane's search box: only the matching card, and a click on it still inserts.
        _search(page, "red coat")  # the WebUI shows it in its own control row (hidden in this page)
        page.wait_for_function(f"() => document.querySelectorAll('{cards}').length === 1")
        page.locator(f'{cards}[data-name="zk_alice"] .name').click()
        assert "<lora:zk_alice:0.8>" in page.locator("#txt2img_prompt textarea").input_value()
        _search(page, "")
        page.wait_for_function(f"() => document.querySelectorAll('{cards}').length >= 2")

        # "compatible only" against SDXL: the SDXL-compatible cards only, counted for the whole library.
        _set_checkpoint(page, "sdxl.safetensors [0123abcd]")
        page.wait_for_function("() => document.querySelector('#tab_txt2img .lss-pane').dataset.lssApplied"
                               " === 'sdxl.safetensors [0123abcd]'")
        page.locator("#tab_txt2img .lss-pane-compat-only").check()
        page.wait_for_function(
            f"() => Array.from(document.querySelectorAll('{cards}')).map(e => e.dataset.name).join() === 'myxl_style'"
        )
        assert asked[-1]["compatible_only"] == "true" and asked[-1]["checkpoint"].startswith("sdxl")
        assert "2 incompatible hidden" in page.locator("#tab_txt2img .lss-hidden-note").inner_text()
        assert "✓ compatible" in page.locator(f'{cards}[data-name="myxl_style"] .lss-compat').inner_text()
        page.screenshot(path=str(test_output / "pane-standin-windowed.png"), full_page=True)
        # The img2img pane (on screen too: it scrolled its third card in) is not filtered by txt2img's.
        assert page.locator("#tab_img2img .lss-pane-card").count() == 3
    finally:
        page.close()
