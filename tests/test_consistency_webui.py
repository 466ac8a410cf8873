"""The WebUI side of the consistency sheet and of tagger captions, through the stand-in ``modules``
(tests/webui_standin, real names and call order): txt2img through ``processing.process_images`` with the
queue held and the built-in Lora applying the LoRA at each weight; epoch files staged where the built-in
Lora finds them, then removed; DeepDanbooru (start / tag_multi / stop) and the interrogator, with their
failures as messages; captions written trigger-first."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from factory import make_checkpoint
from PIL import Image
from webui_standin.harness import StandinWebUI

from lib_lora.consistency import SheetManager, SheetRequest
from lib_lora.host import GenerationRequest
from lib_lora.train.autocaption import write_tagged_captions
from lib_lora.train.dataset import check_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consistency_support import ColourEmbedder

SD15 = "kohya-outputs/sd15-kohya-dim4-mychar.safetensors"


@pytest.fixture(params=["a1111", "forge"])
def webui(request: pytest.FixtureRequest, tmp_path: Path, fixtures_dir: Path):  # type: ignore[no-untyped-def]
    w = StandinWebUI(tmp_path / "webui", flavor=request.param)
    w.lora_dir.mkdir(parents=True)
    shutil.copyfile(fixtures_dir / SD15, w.lora_dir / "zed.safetensors")
    make_checkpoint(w.ckpt_dir, "sd15", "ckpt-sd1")
    w.start()
    w.select_checkpoint("sd15.safetensors")
    w.wait_for_index()
    yield w
    w.stop()


def test_generate_holds_the_queue_and_applies_the_lora(webui: StandinWebUI, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from modules import call_queue, processing

    held: list[bool] = []
    real = processing.process_images

    def spy(p):  # type: ignore[no-untyped-def]
        held.append(call_queue.queue_lock.locked())
        assert p.scripts is None and p.do_not_save_samples and p.do_not_save_grid
        assert (p.width, p.height, p.steps, p.seed, p.cfg_scale, p.sampler_name) == (64, 64, 2, 1003, 6.0, "Euler a")
        return real(p)

    monkeypatch.setattr(processing, "process_images", spy)
    host = webui.host()
    im = host.generate(GenerationRequest("zed, portrait, <lora:zed:0.8>", width=64, height=64, steps=2, seed=1003,
                                         cfg_scale=6.0))
    assert isinstance(im, Image.Image) and im.size == (64, 64)
    assert held == [True] and not call_queue.queue_lock.locked()
    assert [(Path(f).name, te) for _n, f, te, _u in im["loras"]] == [("zed.safetensors", 0.8)]
    assert webui.shared.state.jobs_begun[-1] == "lora_studio_consistency"


def test_sheet_through_the_webui_with_staged_epoch_files(webui: StandinWebUI, tmp_path: Path,
                                                         fixtures_dir: Path) -> None:
    out = tmp_path / "training" / "run1"
    out.mkdir(parents=True)
    shutil.copyfile(fixtures_dir / SD15, out / "zed-000001.safetensors")
    jobs = SimpleNamespace(get=lambda i: SimpleNamespace(spec={"output_dir": str(out)}))
    host = webui.host()
    manager = SheetManager(host, jobs=lambda: jobs, embedder=ColourEmbedder)
    job_id = manager.submit(SheetRequest(lora="zed", versions=("zed", "job:j1/zed-000001.safetensors"),
                                         weights=(0.5, 1.0), steps=2, width=64, height=64))
    st = manager.wait(job_id, timeout=60)
    assert st.state == "succeeded", st.message
    assert len(st.cells) == 5 * 2 * 2 and all(c.score is not None for c in st.cells)
    assert all(c.image and Path(c.image).is_file() for c in st.cells)
    assert {c.version for c in st.cells} == {"zed", "zed-000001"}
    assert not (webui.lora_dir / "LoRA Studio").exists()
    assert not any("lst" in n for n in webui.networks.available_networks)  # the list was refreshed after removal
    assert Path(st.sheet).parent.parent == webui.lora_dir / "zed.consistency"


def test_staged_file_is_what_the_builtin_lora_loads(webui: StandinWebUI, tmp_path: Path, fixtures_dir: Path,
                                                    monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "training" / "run2"
    out.mkdir(parents=True)
    shutil.copyfile(fixtures_dir / SD15, out / "zed-000002.safetensors")
    host = webui.host()
    seen: list[list[str]] = []
    real = host.generate

    def spy(req):  # type: ignore[no-untyped-def]
        im = real(req)
        seen.append([f for _n, f, _te, _u in im["loras"]])
        return im

    monkeypatch.setattr(host, "generate", spy)
    jobs = SimpleNamespace(get=lambda i: SimpleNamespace(spec={"output_dir": str(out)}))
    manager = SheetManager(host, jobs=lambda: jobs, embedder=lambda: None)
    st = manager.wait(manager.submit(SheetRequest(lora="zed", versions=("job:j2/zed-000002.safetensors",),
                                                  weights=(1.0,), steps=2, width=64, height=64)), timeout=60)
    assert st.state == "succeeded", st.message
    assert seen and all(len(files) == 1 and "LoRA Studio" in files[0] for files in seen)
    assert Path(seen[0][0]).name.endswith("_zed-000002.safetensors")


def test_taggers_deepbooru_and_interrogator(webui: StandinWebUI, tmp_path: Path) -> None:
    from modules import deepbooru, shared

    host = webui.host()
    assert set(host.caption_taggers()) == {"deepbooru", "interrogate"}
    im = Image.new("RGB", (64, 32), (250, 250, 250))
    with host.caption_tagger("deepbooru") as tag:
        assert tag(im) == "1girl, solo, white background, expressionless"
    assert deepbooru.model.calls == ["start", ("tag_multi", True), "stop"]
    with host.caption_tagger("interrogate") as tag:
        assert tag(im).startswith("a portrait of a woman")
    # failures come back as messages
    from lib_lora.webui.generation import TaggerError

    deepbooru.model.weights_present = False
    with pytest.raises(TaggerError, match="DeepDanbooru could not start.*model-resnet_custom_v3.pt"):
        with host.caption_tagger("deepbooru"):
            pass
    shared.interrogator.fail = True
    with pytest.raises(TaggerError, match="interrogator failed"):
        with host.caption_tagger("interrogate") as tag:
            tag(im)
    with pytest.raises(TaggerError, match="unknown tagger"):
        with host.caption_tagger("wd14"):
            pass


def test_write_missing_captions_with_deepbooru(webui: StandinWebUI, tmp_path: Path) -> None:
    d = tmp_path / "ds"
    d.mkdir()
    Image.new("RGB", (512, 512), (250, 250, 250)).save(d / "a.png")
    Image.new("RGB", (512, 512), (20, 200, 20)).save(d / "b.png")
    (d / "b.txt").write_text("zed, mine", encoding="utf-8")
    report = check_dataset(d, "zed", "sd1")
    with webui.host().caption_tagger("deepbooru") as tag:
        res = write_tagged_captions(report, "zed", tag)
    assert [Path(p).name for p in res.written] == ["a.txt"]
    assert (d / "a.txt").read_text(encoding="utf-8") == "zed, 1girl, solo, white background, expressionless\n"
    assert (d / "b.txt").read_text(encoding="utf-8") == "zed, mine"
