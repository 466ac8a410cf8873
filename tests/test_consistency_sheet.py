"""Consistency sheets through a stand-in WebUI generation (tests/consistency_support.py): the plan's
refusals, the rendered cells with fixed seeds, the labelled grid, best pick, cancel, staging of training
epoch files, the expressions variant (never replacing a file) and character folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from lib_lora.consistency import SheetManager, SheetRequest
from lib_lora.consistency.grid import assemble_grid
from lib_lora.consistency.scenes import EXPRESSIONS, trainer_scenes
from lib_lora.consistency.versions import STAGING_DIR, looks_like_path
from lib_lora.errors import ConsistencyError, NeedsWebUIError
from lib_lora.host import GenerationRequest, StandaloneHost

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consistency_support import ColourEmbedder, RenderHost
from factory import make_lora


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    loras = tmp_path / "loras"
    make_lora(loras, "zed", "kohya-sd1")
    make_lora(loras, "zed_old", "kohya-sd1")
    host = RenderHost([loras], data_dir=tmp_path / "data")
    host.rescan(wait=True)
    manager = SheetManager(host, embedder=ColourEmbedder)
    return SimpleNamespace(host=host, manager=manager, loras=loras, tmp=tmp_path)


def small(**kw):  # type: ignore[no-untyped-def]
    base = {"lora": "zed", "width": 64, "height": 64, "steps": 2}
    base.update(kw)
    return SheetRequest(**base)


def test_standalone_answers_needs_the_webui(tmp_path: Path) -> None:
    host = StandaloneHost([tmp_path], data_dir=tmp_path / "d")
    with pytest.raises(NeedsWebUIError, match="needs the WebUI"):
        SheetManager(host).submit(SheetRequest(lora="zed"))
    with pytest.raises(NeedsWebUIError):
        host.generate(GenerationRequest("x"))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"lora": None}, "either a LoRA"),
        ({"character": "hero"}, "either a LoRA"),
        ({"lora": "nobody"}, "nobody"),
        ({"versions": ("/etc/passwd",)}, "never paths"),
        ({"versions": ("..\\x",)}, "never paths"),
        ({"versions": ("job:abc",)}, "job:<id>/<file>"),
        ({"versions": ("job:abc/x.safetensors",)}, "training jobs are not available"),
        ({"weights": ()}, "at least one weight"),
        ({"weights": (0.5, 0.5)}, "twice"),
        ({"weights": (9.0,)}, "outside"),
        ({"steps": 0}, "steps"),
        ({"width": 100}, "multiple of 8"),
        ({"variant": "poses"}, "unknown variant"),
    ],
)
def test_plan_refuses_bad_requests(world, kw, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConsistencyError, match=message):
        world.manager.submit(small(**kw))


def test_looks_like_path() -> None:
    assert looks_like_path("/a") and looks_like_path("C:x") and looks_like_path("~/x") and looks_like_path("a/../b")
    assert not looks_like_path("chars/zed") and not looks_like_path("zed")


def test_sheet_renders_every_cell_with_fixed_seeds_and_picks_the_best(world) -> None:  # type: ignore[no-untyped-def]
    job_id = world.manager.submit(small(versions=("zed", "zed_old")))
    st = world.manager.wait(job_id, timeout=60)
    assert st.state == "succeeded", st.message
    assert st.progress == 1.0
    scenes = trainer_scenes()
    assert len(st.cells) == 5 * 2 * 3
    # every cell rendered at the same settings; the scene's seed is the same in every column
    reqs = world.host.requests
    assert len(reqs) == 30 and {(r.width, r.height, r.steps) for r in reqs} == {(64, 64, 2)}
    seeds_by_scene: dict[str, set[int]] = {}
    for r in reqs:
        scene = next(s for s in scenes if s.prompt.replace("{trigger}, ", "") + ", <lora:" in r.prompt)
        seeds_by_scene.setdefault(scene.id, set()).add(r.seed)
    assert {k: len(v) for k, v in seeds_by_scene.items()} == {s.id: 1 for s in scenes}
    assert sorted(min(v) for v in seeds_by_scene.values()) == [1000, 1001, 1002, 1003, 1004]
    assert any("<lora:zed_old:0.6>" in r.prompt for r in reqs) and any("<lora:zed:1>" in r.prompt for r in reqs)
    for cell in st.cells:
        assert cell.image and Path(cell.image).is_file() and cell.score is not None
    assert st.best is not None and st.best[0] in ("zed", "zed_old") and st.best[1] in (0.6, 0.8, 1.0)
    assert "mean colour" in st.score_message
    # the sheet: beside the LoRA, labelled rows and columns, each box holds its single
    assert Path(st.sheet).is_file() and Path(st.sheet).parent.parent == world.loras / "zed.consistency"
    meta = json.loads((Path(st.sheet).parent / "sheet.json").read_text())
    assert meta["rows"] == [s.label for s in scenes]
    assert meta["columns"] == [f"{v}\nw {w:g}" for v in ("zed", "zed_old") for w in (0.6, 0.8, 1.0)]
    assert meta["best_column"] == meta["columns"].index(f"{st.best[0]}\nw {st.best[1]:g}")
    sheet = Image.open(st.sheet).convert("RGB")
    box = meta["boxes"][1 * 6 + 4]  # row 1 (scene2), column 4 (zed_old, w 0.8)
    cell = next(c for c in st.cells if c.scene == "scene2" and c.version == "zed_old" and c.weight == 0.8)
    single = Image.open(cell.image).convert("RGB")
    assert np.array_equal(np.asarray(sheet.crop(tuple(box))), np.asarray(single))
    d = st.to_dict()
    assert set(d) >= {"state", "progress", "sheet", "cells", "best", "score_message"}
    assert set(d["cells"][0]) == {"scene", "version", "weight", "image", "score"}
    assert d["best"] == {"version": st.best[0], "weight": st.best[1]}


def test_cancel_keeps_a_partial_sheet(world) -> None:  # type: ignore[no-untyped-def]
    import threading

    world.host.gate = threading.Event()
    job_id = world.manager.submit(small())
    world.host.gate.set()
    world.host.rendered.acquire(timeout=10)
    world.host.gate.clear()
    st = world.manager.cancel(job_id)
    assert st.state == "cancelling"
    world.host.gate.set()
    st = world.manager.wait(job_id, timeout=30)
    assert st.state == "cancelled"
    rendered = [c for c in st.cells if c.image]
    assert 1 <= len(rendered) < 15 and all(c.score is None for c in st.cells)
    assert st.best is None and "cancelled" in st.score_message
    assert Path(st.sheet).is_file()


def test_wait_raises_after_its_timeout_and_list_is_newest_first(world) -> None:  # type: ignore[no-untyped-def]
    import threading

    world.host.gate = threading.Event()
    first = world.manager.submit(small(weights=(1.0,)))
    with pytest.raises(TimeoutError, match=f"sheet {first} still"):
        world.manager.wait(first, timeout=0.05)
    world.host.gate.set()
    assert world.manager.wait(first, timeout=60).state == "succeeded"
    second = world.manager.wait(world.manager.submit(small(weights=(1.0,))), timeout=60)
    assert [st.id for st in world.manager.list()] == [second.id, first]
    with pytest.raises(KeyError):
        world.manager.get("nope")
    with pytest.raises(KeyError):
        world.manager.cancel("nope")


def test_epoch_files_are_staged_then_removed(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "training" / "zed-run"
    make_lora(out, "zed-000001", "kohya-sd1")
    make_lora(out, "zed", "kohya-sd1")
    jobs = SimpleNamespace(get=lambda i: SimpleNamespace(spec={"output_dir": str(out)}) if i == "j1" else
                           (_ for _ in ()).throw(KeyError(i)))
    manager = SheetManager(world.host, jobs=lambda: jobs, embedder=lambda: None)
    with pytest.raises(ConsistencyError, match="no training job"):
        manager.submit(small(versions=("job:nope/zed.safetensors",)))
    with pytest.raises(ConsistencyError, match="no file"):
        manager.submit(small(versions=("job:j1/missing.safetensors",)))
    with pytest.raises(ConsistencyError, match="not an epoch file"):
        manager.submit(small(versions=("job:j1/notes.txt",)))
    job_id = manager.submit(small(versions=("job:j1/zed-000001.safetensors", "job:j1/zed.safetensors"),
                                  weights=(1.0,)))
    st = manager.wait(job_id, timeout=60)
    assert st.state == "succeeded", st.message
    staged = world.host.staged_seen[0]
    assert len(staged) == 2 and all(n.startswith("lst") for n in staged)
    assert any(f"<lora:{Path(staged[0]).stem}:1>" in r.prompt for r in world.host.requests)
    assert {c.version for c in st.cells} == {"zed-000001", "zed"}
    assert not (world.loras / STAGING_DIR).exists()  # removed afterwards
    assert world.host.refreshes == 2 and world.host.staged_seen[-1] == []
    assert st.score_message.startswith("score skipped") and all(c.score is None for c in st.cells)
    assert (out / "zed-000001.safetensors").is_file()  # the job's own file is kept


def test_expressions_variant_never_replaces_a_file(world) -> None:  # type: ignore[no-untyped-def]
    job_id = world.manager.submit(small(variant="expressions", weights=(0.8, 1.0)))
    st = world.manager.wait(job_id, timeout=60)
    assert st.state == "succeeded", st.message
    folder = Path(st.folder)
    assert sorted(Path(p).name for p in st.expressions) == sorted(f"{e}.png" for e in EXPRESSIONS)
    assert all(Path(p).parent == folder / "expressions" for p in st.expressions)
    (folder / "expressions" / "smile.png").write_bytes(b"mine")
    meta = json.loads((folder / "sheet.json").read_text())
    assert meta["rows"] == list(EXPRESSIONS)
    assert "smile" in meta["prompts"][1]


def test_character_folder_versions_references_and_output(world) -> None:  # type: ignore[no-untyped-def]
    cdir = world.loras / "characters" / "Hero"
    make_lora(cdir / "lora", "hero_v1", "kohya-sd1")
    make_lora(cdir / "lora", "hero_v2", "kohya-sd1")
    (cdir / "reference").mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 30, 30)).save(cdir / "reference" / "front.png")
    (cdir / "expressions").mkdir()
    (cdir / "expressions" / "neutral.png").write_bytes(b"keep me")
    world.host.rescan(wait=True)
    with pytest.raises(ConsistencyError, match="no version v7"):
        world.manager.submit(SheetRequest(character="hero", versions=("v7",), width=64, height=64))
    with pytest.raises(ConsistencyError, match="no character named"):
        world.manager.submit(SheetRequest(character="villain", width=64, height=64))
    job_id = world.manager.submit(SheetRequest(character="hero", versions=("v1", "v2"), weights=(1.0,),
                                               width=64, height=64, steps=2, variant="expressions"))
    st = world.manager.wait(job_id, timeout=60)
    assert st.state == "succeeded", st.message
    assert Path(st.folder).parent == cdir / "consistency"
    assert {c.version for c in st.cells} == {"hero_v1", "hero_v2"}
    assert "1 reference image" in st.score_message
    assert (cdir / "expressions" / "neutral.png").read_bytes() == b"keep me"
    assert sorted(Path(p).name for p in st.expressions) == sorted(f"{e}.png" for e in EXPRESSIONS if e != "neutral")
    # without versions: the newest version
    job_id = world.manager.submit(SheetRequest(character="HERO", weights=(1.0,), width=64, height=64, steps=2))
    st = world.manager.wait(job_id, timeout=60)
    assert {c.version for c in st.cells} == {"hero_v2"}


def test_generation_failure_fails_the_job(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def boom(_req):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(world.host, "generate", boom)
    st = world.manager.wait(world.manager.submit(small()), timeout=30)
    assert st.state == "failed" and "out of memory" in st.message


def test_grid_with_missing_cells_and_best_frame() -> None:
    a = Image.new("RGB", (40, 30), (255, 0, 0))
    sheet, layout = assemble_grid([[a, None], [None, a]], ["one", "two"], ["v1\nw 1", "v2\nw 1"], best_column=1)
    assert sheet.size == (layout.width, layout.height)
    assert layout.box(1, 1)[2] - layout.box(1, 1)[0] == 40 and layout.best_column == 1
    x0, y0, x1, y1 = layout.box(0, 1)
    assert sheet.getpixel((x0 + 5, y0 + 5)) == (215, 215, 215)  # not rendered
    x0, y0, x1, y1 = layout.box(1, 1)
    assert sheet.getpixel((x0 + 5, y0 + 5)) == (255, 0, 0)
    assert sheet.getpixel((x0 - 3, y0 + 5)) == (20, 150, 60)  # the best column's frame
    with pytest.raises(ValueError):
        assemble_grid([[a]], ["one", "two"], ["v1"])
