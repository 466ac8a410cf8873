"""Captions written by an image tagger: only missing files, the trigger first, progress, a failing image
recorded while the others are captioned, and the coverage report recomputed on the new captions."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lib_lora.train.autocaption import caption_text, write_tagged_captions
from lib_lora.train.coverage import check_coverage
from lib_lora.train.dataset import check_dataset


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "ds"
    d.mkdir()
    for i, colour in enumerate([(250, 250, 250), (10, 120, 30), (200, 30, 30), (5, 5, 5)]):
        Image.new("RGB", (512, 512), colour).save(d / f"img{i}.png")
    (d / "img0.txt").write_text("mine, keep", encoding="utf-8")
    return d


def test_caption_text_puts_the_trigger_first_once() -> None:
    assert caption_text("zed", "1girl, smile") == "zed, 1girl, smile"
    assert caption_text("zed", "zed, 1girl") == "zed, 1girl"
    assert caption_text("zed", "a photo of\nzed smiling") == "zed, a photo of smiling"
    assert caption_text("zed", "  ") == "zed"
    assert caption_text("zed", "zedd, 1girl") == "zed, zedd, 1girl"  # whole word only


def test_only_missing_captions_are_written(tmp_path: Path) -> None:
    d = _folder(tmp_path)
    report = check_dataset(d, "zed", "sd1")
    seen: list[tuple[int, int]] = []

    def tagger(im: Image.Image) -> str:
        r, g, b = im.getpixel((0, 0))
        if r == 200:
            raise RuntimeError("DeepDanbooru weights are missing")
        return "from side, white background" if r > 240 else "outdoors, smile"

    (d / "img3.txt").write_text("appeared meanwhile", encoding="utf-8")
    res = write_tagged_captions(report, "zed", tagger, progress=lambda a, b, p: seen.append((a, b)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert [Path(p).name for p in res.written] == ["img1.txt"]
    assert [Path(p).name for p in res.skipped] == ["img3.png"]
    assert [(Path(p).name, why) for p, why in res.failed] == [("img2.png", "DeepDanbooru weights are missing")]
    assert (d / "img0.txt").read_text(encoding="utf-8") == "mine, keep"
    assert (d / "img1.txt").read_text(encoding="utf-8") == "zed, outdoors, smile\n"
    assert (d / "img3.txt").read_text(encoding="utf-8") == "appeared meanwhile"
    cov = check_coverage(check_dataset(d, "zed", "sd1"))
    assert cov.dimension("expressions").count("smile") == 1
