"""End-to-end: the Train tab of the standalone app in headless Debian Chromium, in each pinned gradio
environment (3.41.2 and 4.40.0). A real server, a real trainer subprocess (tests/replay_trainer.py replaying
a real kohya log behind the real plan's argv): check the dataset, start, watch the live progress and loss
plot (polled by gr.Timer / every=), cancel, resume, and find the result installed in the LoRA folder.
Screenshots go to ``test-output/``."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.gradio,
              pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")]

pytest.importorskip("gradio")
pytest.importorskip("fastapi")
playwright_api = pytest.importorskip("playwright.sync_api")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_support import chromium, standalone_app, watched_page  # noqa: E402
from factory import make_checkpoint, make_images  # noqa: E402
from test_train_service import stand_in_trainer  # noqa: E402

ENV_NAME = os.environ.get("LORA_STUDIO_GRADIO_ENV") or "gradio-" + __import__("gradio").__version__
T = "#lora_studio_train"




@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("train-e2e")
    loras, ckpts, data = root / "Lora", root / "Stable-diffusion", root / "data"
    loras.mkdir()
    make_checkpoint(ckpts, "sd15-base", "ckpt-sd1")
    images = make_images(root / "pictures of zed")
    sd, py, hang = stand_in_trainer(root, "--duration", "1.5")
    env = {**os.environ, "SD_SCRIPTS_DIR": str(sd), "TRAINER_PYTHON": str(py)}
    with standalone_app(loras, ckpts, data, env=env) as url:
        yield {"url": url, "loras": loras, "images": images, "hang": hang, "root": root}


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    yield from chromium(playwright_api)


@pytest.fixture
def page(browser, world):  # type: ignore[no-untyped-def]
    with watched_page(browser, world["url"], width=1500, height=1400) as pg:
        pg.locator("button", has_text="Train").first.click()
        pg.wait_for_selector(f"{T}_start", state="visible", timeout=30_000)
        yield pg


def _fill(pg, elem: str, text: str) -> None:  # type: ignore[no-untyped-def]
    box = pg.locator(f"{T}_{elem} textarea, {T}_{elem} input").first
    box.fill(text)
    box.press("Tab")  # gradio 3 commits a textbox on blur/change


def _text_of(pg, elem: str) -> str:  # type: ignore[no-untyped-def]
    return str(pg.evaluate(f"() => (document.querySelector('{T}_{elem}') || {{innerText: ''}}).innerText"))


def _wait_text(pg, elem: str, *texts: str, timeout: float = 60_000) -> None:  # type: ignore[no-untyped-def]
    checks = " && ".join(f"t.includes({json.dumps(t)})" for t in texts)
    pg.wait_for_function(
        f"() => {{ const e = document.querySelector('{T}_{elem}'); const t = e ? e.innerText : ''; return {checks}; }}",
        timeout=timeout,
    )


def test_check_start_cancel_resume_and_the_result(page, world, test_output: Path) -> None:  # type: ignore[no-untyped-def]
    _wait_text(page, "env", "Using the trainer Python")  # $TRAINER_PYTHON is the stand-in
    _fill(page, "folder", str(world["images"]))
    _fill(page, "trigger", "zed")
    page.click(f"{T}_check")
    _wait_text(page, "report", "Ready to train", "16")
    page.screenshot(path=str(test_output / f"train-{ENV_NAME}-report.png"), full_page=True)

    world["hang"].touch()  # the replayed run stops at step 3 until the file is gone
    page.click(f"{T}_start")
    _wait_text(page, "notice", "Started job")
    _wait_text(page, "progress", "step 2/4")  # live, from the polling
    _wait_text(page, "progress", "ETA", "loss")
    assert page.locator(f"{T}_loss svg polyline").count() == 2
    # the polled components do not blink (gradio 3 outlines every output of a running event)
    outlined = page.evaluate(f"""() => new Promise(done => {{
        const found = new Set(); const t0 = performance.now();
        const look = () => {{
            for (const el of document.querySelectorAll('{T}_root .generating')) {{
                const cs = getComputedStyle(el);
                if (cs.borderTopStyle !== 'none' && parseFloat(cs.borderTopWidth) > 0) found.add(el.className);
            }}
            if (performance.now() - t0 < 2500) requestAnimationFrame(look); else done([...found]);
        }};
        look();
    }})""")
    assert outlined == [], outlined
    page.screenshot(path=str(test_output / f"train-{ENV_NAME}-running.png"), full_page=True)

    page.wait_for_function(f"() => !document.querySelector('{T}_cancel').disabled", timeout=15_000)
    page.click(f"{T}_cancel")
    _wait_text(page, "progress", "cancelled", "Resume")
    page.wait_for_function(f"() => !document.querySelector('{T}_resume').disabled", timeout=15_000)
    world["hang"].unlink()
    page.click(f"{T}_resume")
    _wait_text(page, "notice", "Resuming")
    _wait_text(page, "progress", "succeeded", "<lora:zed:0.8>", timeout=90_000)
    page.wait_for_function(f"() => document.querySelectorAll('{T}_gallery img').length >= 1", timeout=30_000)
    assert "model saved." in page.locator(f"{T}_log textarea").input_value()
    history = _text_of(page, "history")
    assert "succeeded" in history and "cancelled" in history
    page.screenshot(path=str(test_output / f"train-{ENV_NAME}-done.png"), full_page=True)

    target = world["loras"] / "zed" / "zed.safetensors"
    assert target.is_file() and (world["loras"] / "zed" / "zed.preview.png").is_file()
    assert json.loads((world["loras"] / "zed" / "zed.json").read_text(encoding="utf-8"))["activation text"] == "zed"
    with urllib.request.urlopen(world["url"] + "lora-studio/v1/loras/zed", timeout=10) as r:
        info = json.load(r)
    assert info["name"] == "zed" or info.get("relpath", "").endswith("zed")


def test_a_bad_folder_is_reported(page, world) -> None:  # type: ignore[no-untyped-def]
    _fill(page, "folder", str(world["images"] / "00.png"))
    _fill(page, "trigger", "zed")
    page.click(f"{T}_check")
    _wait_text(page, "report", "is a file")
    page.click(f"{T}_start")
    _wait_text(page, "notice", "is a file")
