"""The Train tab's additions: captions from the WebUI's taggers (absent with a reason in the standalone
app) and "check consistency" on a finished training job's files (a real job run by the stand-in trainer,
rendered by the stand-in generation); the gradio builders under both pinned gradio versions."""

from __future__ import annotations

import contextlib
import os
import sys
from html import escape as html_escape
from pathlib import Path

import pytest
from PIL import Image

from lib_lora.ui.consistency_panel import NO_SHEETS, NO_TAGGERS, ConsistencyTools

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consistency_support import ColourEmbedder, render
from test_train_service import World

posix = pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")


@pytest.fixture
def world(tmp_path):  # type: ignore[no-untyped-def]
    w = World(tmp_path)
    yield w
    w.close()


def as_webui(w: World) -> None:
    """Give the world's host a WebUI's generation and taggers (stand-ins)."""
    w.host.kind = "webui"  # type: ignore[misc]
    w.host.generate = lambda req: render(req.prompt, req.width, req.height, req.seed)  # type: ignore[method-assign]
    w.host.caption_taggers = lambda: {"deepbooru": "DeepDanbooru (booru tags)"}  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def tagger(kind):  # type: ignore[no-untyped-def]
        yield lambda im: "1girl, from side, smile, white background"

    w.host.caption_tagger = tagger  # type: ignore[attr-defined]


def test_standalone_has_no_taggers_and_no_sheets(world) -> None:  # type: ignore[no-untyped-def]
    world.host.kind = "standalone"  # type: ignore[misc]
    tools = ConsistencyTools(world.host, world.service)
    assert tools.taggers() == {} and not tools.can_render()
    report = world.service.check(str(world.images), "zed", "sd15-base.safetensors")
    html, _ = tools.write_tagged(report, "DeepDanbooru (booru tags)")
    assert html_escape(NO_TAGGERS) in html
    assert html_escape(NO_SHEETS) in tools.start_for_job("x")[1]


def test_tagger_captions_then_coverage(world) -> None:  # type: ignore[no-untyped-def]
    as_webui(world)
    tools = ConsistencyTools(world.host, world.service)
    for p in Path(world.images).glob("*.txt"):
        p.unlink()
    Image.new("RGB", (8, 8)).save(Path(world.images) / "broken.png")  # small but readable
    report = world.service.check(str(world.images), "zed", "sd15-base.safetensors")
    steps: list[int] = []
    html, again = tools.write_tagged(report, "DeepDanbooru (booru tags)", "sd15-base.safetensors",
                                     lambda d, t, p: steps.append(d))
    assert "Wrote 17 caption file(s) with DeepDanbooru" in html and steps[-1] == 17
    assert again is not None and not again.missing_captions()
    assert (Path(world.images) / "broken.txt").read_text(encoding="utf-8").startswith("zed, 1girl, from side")
    assert "Coverage — " in html and "profile 17" in html  # recomputed on the new captions
    html, _ = tools.write_tagged(report, "WD14")
    assert "Choose a tagger" in html


@posix
def test_check_consistency_on_a_finished_job(world) -> None:  # type: ignore[no-untyped-def]
    as_webui(world)
    from lib_lora.consistency import SheetManager

    tools = ConsistencyTools(world.host, world.service,
                             SheetManager(world.host, jobs=lambda: world.service.jobs, embedder=ColourEmbedder))
    assert tools.start_for_job(None)[0] is None
    job_id = world.service.start(world.request())
    sheet_id, notice = tools.start_for_job(job_id)  # still running
    assert sheet_id is None and "check consistency when it has succeeded" in notice
    view = world.service.wait(job_id, timeout=60)
    assert view.state == "succeeded" and view.installed is not None
    world.host.rescan(wait=True)
    sheet_id, notice = tools.start_for_job(job_id, "0.7, 1")
    assert sheet_id is not None, notice
    st = tools.sheets.wait(sheet_id, timeout=60)
    assert st.state == "succeeded", st.message
    files = {c.version for c in st.cells}
    assert len(files) >= 2 and {c.weight for c in st.cells} == {0.7, 1.0}  # epoch files and the final file
    html, image = tools.view(sheet_id)
    assert "succeeded" in html and "Best:" in html and image == st.sheet
    assert "No consistency sheet" in tools.view("nope")[0]
    assert "Sheet" in tools.cancel(sheet_id)
    assert "weights must be numbers" in tools.start_for_job(job_id, "a, b")[1]


@pytest.mark.gradio
@pytest.mark.parametrize("webui_like", [False, True])
def test_builders_in_this_gradio(world, webui_like) -> None:  # type: ignore[no-untyped-def]
    gr = pytest.importorskip("gradio")
    from lib_lora.ui.train_tab import build_train_tab

    if webui_like:
        as_webui(world)
    else:
        world.host.kind = "standalone"  # type: ignore[misc]
    with gr.Blocks() as demo:
        tab = build_train_tab(world.host, world.service)
    c = tab.components
    config = demo.get_config_file()
    elem_ids = {comp.get("props", {}).get("elem_id") for comp in config["components"]}
    if webui_like:
        assert {"tagger", "write_tagged", "sheet_start", "sheet_image", "sheet_cancel", "sheet_timer"} <= set(c)
        assert {"lora_studio_train_tagger", "lora_studio_train_sheet_start"} <= elem_ids
    else:
        assert "tagger" not in c and "sheet_start" not in c
        values = [comp.get("props", {}).get("value") for comp in config["components"]]
        assert NO_TAGGERS in values and NO_SHEETS in values
