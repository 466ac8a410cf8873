"""End-to-end in headless Chromium: "fetch info" on a card without a preview, against the fake Civitai.

The standalone app runs as a real server with ``LORA_STUDIO_CIVITAI_URL`` pointing at the fake Civitai
(a thread of this test process); pressing the card's fetch button must make the preview, the trigger
words and the family appear on the card, the family labelled as Civitai's (not as the user's override).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.gradio]

pytest.importorskip("gradio")
pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api")

from e2e_support import chromium, standalone_app  # noqa: E402
from factory import make_checkpoint, make_lora  # noqa: E402
from fake_remote import FakeCivitai, model_object, version_object  # noqa: E402

ENV_NAME = os.environ.get("LORA_STUDIO_GRADIO_ENV") or "gradio-" + __import__("gradio").__version__


def test_fetch_info_on_a_card(tmp_path: Path, test_output: Path) -> None:
    loras, ckpts = tmp_path / "Lora", tmp_path / "Stable-diffusion"
    kira = make_lora(loras, "kira", "kohya-sdxl", metadata={"modelspec.trigger_phrase": None})
    make_lora(loras, "other", "kohya-sd1")
    make_checkpoint(ckpts, "sdxl-base", "ckpt-sdxl")
    fake = FakeCivitai()
    try:
        v = version_object(3001, 301, hashlib.sha256(kira.read_bytes()).hexdigest(), file_name=kira.name,
                           base_model="Illustrious", words=("zk_kira, pink hair",))
        fake.add(v, model_object(301, [v], tags=("character",)))
        env = {**os.environ, "LORA_STUDIO_CIVITAI_URL": fake.url, "CIVITAI_API_KEY": "e2e-key"}
        with standalone_app(loras, ckpts, tmp_path / "data", env=env) as url:
            gen = chromium(playwright_api)
            browser = next(gen)
            try:
                pg = browser.new_page(viewport={"width": 1400, "height": 1000})
                errors: list[str] = []
                pg.on("pageerror", lambda e: errors.append(str(e)))
                pg.goto(url)
                card = '#lora_studio_cards .lss-card[data-name="kira"]'
                pg.wait_for_selector(card, timeout=30_000)
                assert pg.locator(f"{card} .lss-preview.lss-noimg").count() == 1
                assert not fake.log  # nothing went online before the button
                pg.click(f"{card} .lss-fetch")
                pg.wait_for_selector(f"{card} .lss-preview:not(.lss-noimg)", timeout=60_000)
                words = pg.get_attribute(card, "data-words") or ""
                assert "zk_kira" in words and "pink hair" in words
                base = pg.locator(f"{card} .lss-base").inner_text()
                assert "Illustrious" in base, base
                # the family is Civitai's: the badge is not styled as (or titled) the user's own override
                assert pg.locator(f"{card} .lss-base.lss-base-user").count() == 0
                assert "set by you" not in (pg.get_attribute(f"{card} .lss-base", "title") or "")
                assert pg.locator(f"{card} .lss-fetch").count() == 0  # it has Civitai info now
                # the preview image is served
                src = pg.eval_on_selector(f"{card} .lss-preview", "el => getComputedStyle(el).backgroundImage")
                assert "previews" in src or "file=" in src, src
                pg.wait_for_selector('#lora_studio_detail .lss-detail[data-name="kira"]')
                assert "fetched" in pg.inner_text("#lora_studio_detail .lss-msg")
                detail = pg.inner_text("#lora_studio_detail .lss-detail")
                assert "Illustrious" in detail and "(civitai)" in detail, detail
                assert "your override" not in detail, detail
                pg.screenshot(path=str(test_output / f"browser-{ENV_NAME}-civitai-fetch.png"), full_page=True)
                assert not errors, errors
            finally:
                for _ in gen:  # close the browser
                    pass
        assert (loras / "kira.preview.png").is_file() and (loras / "kira.civitai.info").is_file()
    finally:
        fake.close()
