"""Dataset check on real image files made with PIL: layouts, counts, corrupt and truncated files,
resolutions, captions, trigger words, near-duplicates, buckets, and that nothing is written unasked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from lib_lora.errors import TrainingError
from lib_lora.train.dataset import (
    ERROR,
    INFO,
    WARNING,
    bucket_resolutions,
    check_dataset,
    count_guidance,
    hamming_distances,
    select_bucket,
    trigger_pattern,
    write_missing_captions,
)


def noise_image(path: Path, size: tuple[int, int] = (512, 576), seed: int = 0, fmt: str | None = None) -> Path:
    """A distinct picture: smooth random blobs, so resized/recompressed copies stay near-identical."""
    rng = np.random.default_rng(seed)
    small = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    if (fmt or path.suffix.lstrip(".").upper()) == "PNG":
        im.save(path, format="PNG", compress_level=1)
    else:
        im.save(path, format=fmt)
    return path


def make_flat(folder: Path, n: int, *, caption: str | None = "mychar, a photo", size=(512, 576)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        noise_image(folder / f"img{i:03d}.png", size, seed=i)
        if caption is not None:
            (folder / f"img{i:03d}.txt").write_text(caption, encoding="utf-8")
    return folder


def codes(report, severity: str | None = None) -> list[str]:
    return [i.code for i in report.issues if severity is None or i.severity == severity]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
    }


# -- counts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, severity, level",
    [
        (0, ERROR, "none"),
        (1, WARNING, "too-few"),
        (14, WARNING, "too-few"),
        (15, INFO, "minimum"),
        (20, INFO, "minimum"),
        (21, INFO, "fair"),
        (29, INFO, "fair"),
        (30, INFO, "recommended"),
        (50, INFO, "recommended"),
        (51, INFO, "good"),
        (79, INFO, "good"),
        (80, INFO, "ideal"),
        (100, INFO, "ideal"),
        (101, INFO, "plenty"),
    ],
)
def test_count_guidance_boundaries(n, severity, level):
    sev, lvl, message = count_guidance(n)
    assert (sev, lvl) == (severity, level)
    assert str(n) in message or n == 0


def test_clean_flat_folder(tmp_path):
    folder = make_flat(tmp_path / "data", 20)
    report = check_dataset(folder, "mychar", "sd1")
    assert report.layout == "flat"
    assert report.image_count == 20
    assert report.ok and not report.warnings
    assert report.count_level == "minimum"
    assert [(s.image_dir, s.num_repeats, s.class_tokens, s.image_count) for s in report.subsets] == [
        (str(folder), 1, "mychar", 20)
    ]
    assert sum(b.count for b in report.buckets) == 20
    assert report.buckets[0].width % 64 == 0 and report.buckets[0].height % 64 == 0
    assert all(i.caption_status == "ok" and i.caption == "mychar, a photo" for i in report.images)
    text = report.format()
    assert "flat folder" in text and "20" in text and "buckets" in text


def test_too_few_images_is_a_warning(tmp_path):
    report = check_dataset(make_flat(tmp_path / "d", 5), "mychar", "sd1")
    assert report.ok
    assert report.issues_with("image-count")[0].severity == WARNING
    assert report.count_level == "too-few"


def test_empty_folder_is_an_error_that_names_the_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    report = check_dataset(tmp_path / "empty", "mychar", "sd1")
    assert report.layout == "empty"
    assert not report.ok
    assert "<repeats>_<name>" in report.errors[0].message


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(TrainingError, match="not found"):
        check_dataset(tmp_path / "missing", "x", "sd1")
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(TrainingError, match="not a folder"):
        check_dataset(f, "x", "sd1")
    with pytest.raises(TrainingError, match="architecture"):
        check_dataset(tmp_path, "x", "sd9")
    with pytest.raises(TrainingError, match="trigger"):
        check_dataset(tmp_path, "  ", "sd1")
    with pytest.raises(TrainingError, match="caption extension"):
        check_dataset(tmp_path, "x", "sd1", "txt")


# -- corrupt / truncated -------------------------------------------------------------------------------------


def test_corrupt_and_truncated_images_are_errors(tmp_path):
    folder = make_flat(tmp_path / "d", 16)
    (folder / "random.png").write_bytes(os.urandom(3000))
    good_jpg = noise_image(folder / "whole.jpg", seed=100)
    data = good_jpg.read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    png = (folder / "img000.png").read_bytes()
    (folder / "cut.png").write_bytes(png[: len(png) - 40])
    (folder / "header-only.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    report = check_dataset(folder, "mychar", "sd1")
    bad = {Path(i.file).name for i in report.errors if i.code == "corrupt-image"}
    assert bad == {"random.png", "cut.jpg", "cut.png", "header-only.webp"}
    assert not report.ok
    unreadable = {Path(i.path).name for i in report.images if not i.readable}
    assert unreadable == bad


def test_truncated_jpeg_caught_even_when_pil_is_told_to_load_truncated_images(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    folder.mkdir()
    data = noise_image(folder / "whole.jpg", seed=3).read_bytes()
    (folder / "cut.jpg").write_bytes(data[: int(len(data) * 0.7)])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    report = check_dataset(folder, "mychar", "sd1")
    bad = [i for i in report.errors if i.code == "corrupt-image"]
    assert [Path(i.file).name for i in bad] == ["cut.jpg"]
    assert "truncated" in bad[0].message


# -- resolution, rotation, transparency, depth -----------------------------------------------------------------


@pytest.mark.parametrize(
    "arch, size, low",
    [
        ("sd1", (100, 80), True),
        ("sd1", (512, 512), False),
        ("sd1", (400, 600), True),  # 240,000 px < 512²
        ("sdxl", (768, 768), True),
        ("sdxl", (1024, 1024), False),
        ("sdxl", (896, 1216), False),  # same pixel count class as 1024²
        ("flux1", (600, 600), True),
        ("sd2", (700, 700), True),
    ],
)
def test_low_resolution_against_the_base(tmp_path, arch, size, low):
    folder = tmp_path / "d"
    folder.mkdir()
    noise_image(folder / "a.png", size)
    report = check_dataset(folder, "mychar", arch)
    found = report.issues_with("low-resolution")
    assert bool(found) == low
    if low:
        assert f"{size[0]}×{size[1]}" in found[0].message


def test_exif_rotation_transparency_and_16bit_are_flagged(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    im = Image.new("RGB", (600, 512), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(folder / "rotated.jpg", exif=exif.tobytes())
    rgba = Image.new("RGBA", (512, 512), (10, 200, 10, 255))
    rgba.putpixel((5, 5), (0, 0, 0, 0))
    rgba.save(folder / "alpha.png")
    Image.new("RGBA", (512, 512), (10, 10, 200, 255)).save(folder / "opaque-rgba.png")
    Image.fromarray(np.full((512, 512), 40000, dtype=np.uint16)).save(folder / "deep.png")
    report = check_dataset(folder, "mychar", "sd1")
    assert [Path(i.file).name for i in report.issues_with("exif-rotation")] == ["rotated.jpg"]
    assert "rotated 90°" in report.issues_with("exif-rotation")[0].message
    assert [Path(i.file).name for i in report.issues_with("transparency")] == ["alpha.png"]
    assert [Path(i.file).name for i in report.issues_with("high-bit-depth")] == ["deep.png"]
    assert report.ok  # warnings only


# -- captions ------------------------------------------------------------------------------------------------------


def test_caption_problems(tmp_path):
    folder = make_flat(tmp_path / "d", 8)
    (folder / "img000.txt").unlink()  # missing
    (folder / "img001.txt").write_bytes(b"")  # empty file: sd-scripts asserts
    (folder / "img002.txt").write_text("\n\nmychar later", encoding="utf-8")  # blank first line
    (folder / "img003.txt").write_text("mychar, one\nsecond line", encoding="utf-8")  # multi-line
    (folder / "img004.txt").write_bytes("mychar, caf\xe9".encode("latin-1"))  # not UTF-8
    (folder / "img005.txt").write_bytes("\ufeffmychar, bom".encode())  # BOM
    (folder / "img006.txt").unlink()
    (folder / "img006.caption").write_text("mychar", encoding="utf-8")  # other extension
    (folder / "img007.txt").write_text("a photo of someone", encoding="utf-8")  # no trigger
    report = check_dataset(folder, "mychar", "sd1")
    by_file = {(i.code, Path(i.file).name) for i in report.issues if i.file}
    assert ("missing-caption", "img000.png") in by_file
    assert ("empty-caption-file", "img001.txt") in by_file
    assert ("blank-caption", "img002.txt") in by_file
    assert ("multiline-caption", "img003.txt") in by_file
    assert ("caption-not-utf8", "img004.txt") in by_file
    assert ("caption-bom", "img005.txt") in by_file
    assert ("caption-other-extension", "img006.png") in by_file
    assert ("no-trigger", "img007.txt") in by_file
    assert {i.code for i in report.errors} == {"empty-caption-file", "caption-not-utf8"}
    statuses = {Path(i.path).name: i.caption_status for i in report.images}
    assert statuses["img000.png"] == "missing"
    assert statuses["img001.png"] == "empty-file"
    assert statuses["img002.png"] == "blank"
    assert statuses["img004.png"] == "unreadable"
    assert statuses["img005.png"] == "ok"
    caption = {Path(i.path).name: i.caption for i in report.images}
    assert caption["img003.png"] == "mychar, one"  # only the first line, as sd-scripts reads it
    assert caption["img005.png"] == "mychar, bom"
    # a missing caption in a flat folder trains with the trigger (class tokens), so no "no-trigger" for it
    assert ("no-trigger", "img000.png") not in by_file


def test_other_caption_extension_is_respected(tmp_path):
    folder = make_flat(tmp_path / "d", 3, caption=None)
    for i in range(3):
        (folder / f"img{i:03d}.caption").write_text("mychar, x", encoding="utf-8")
    report = check_dataset(folder, "mychar", "sd1", ".caption")
    assert all(i.caption_status == "ok" for i in report.images)
    assert not report.issues_with("missing-caption")


@pytest.mark.parametrize(
    "trigger, caption, found",
    [
        ("mychar", "mychar, smiling", True),
        ("mychar", "a photo of MyChar smiling", True),
        ("mychar", "mycharacter, smiling", False),
        ("mychar", "not_mychar", False),
        ("mychar", "(mychar:1.2), smiling", True),
        ("c++guy", "a c++guy at a desk", True),
        ("c++guy", "a c++guys at a desk", False),
        ("ohwx man", "photo of ohwx man", True),
        ("ohwx man", "photo of ohwx  man", False),
        ("ünï", "Ünï, portrait", True),
    ],
)
def test_trigger_is_matched_as_a_whole_word(trigger, caption, found):
    assert bool(trigger_pattern(trigger).search(caption)) == found


def test_write_missing_captions_only_creates_missing_files(tmp_path):
    folder = make_flat(tmp_path / "d", 6)
    (folder / "img000.txt").unlink()
    (folder / "img001.txt").unlink()
    (folder / "img002.txt").write_bytes(b"")  # empty: reported, but never overwritten
    before = snapshot(folder)
    report = check_dataset(folder, "mychar", "sd1")
    assert snapshot(folder) == before, "checking must not write anything"
    assert {Path(i.path).name for i in report.missing_captions()} == {"img000.png", "img001.png"}
    # someone writes one of them in the meantime: it is kept
    (folder / "img001.txt").write_text("hand written", encoding="utf-8")
    written = write_missing_captions(report, "mychar", "{trigger}, 1girl")
    assert [Path(p).name for p in written] == ["img000.txt"]
    assert (folder / "img000.txt").read_text(encoding="utf-8") == "mychar, 1girl\n"
    assert (folder / "img001.txt").read_text(encoding="utf-8") == "hand written"
    assert (folder / "img002.txt").read_bytes() == b""
    again = check_dataset(folder, "mychar", "sd1")
    assert not again.missing_captions()
    with pytest.raises(TrainingError):
        write_missing_captions(again, "mychar", "{trigger}\nsecond")
    with pytest.raises(TrainingError):
        write_missing_captions(again, "", "{trigger}")


# -- duplicates --------------------------------------------------------------------------------------------------


def test_near_duplicates_are_grouped(tmp_path):
    folder = make_flat(tmp_path / "d", 16, caption=None)
    src = Image.open(folder / "img003.png")
    src.convert("RGB").save(folder / "copy.jpg", quality=85)
    src.resize((320, 384)).save(folder / "small-copy.png")
    Image.new("RGB", (512, 512), (250, 250, 250)).save(folder / "white.png")
    Image.new("RGB", (512, 512), (5, 5, 5)).save(folder / "black.png")  # same hash as white, other colour
    report = check_dataset(folder, "mychar", "sd1")
    groups = report.issues_with("near-duplicate")
    assert len(groups) == 1
    names = {Path(groups[0].file).name, *(Path(p).name for p in groups[0].related)}
    assert names == {"img003.png", "copy.jpg", "small-copy.png"}
    assert "3 near-identical" in groups[0].message


def test_no_duplicates_among_distinct_images(tmp_path):
    report = check_dataset(make_flat(tmp_path / "d", 40, caption=None), "mychar", "sd1")
    assert not report.issues_with("near-duplicate")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=2, max_size=30))
def test_hamming_distances_match_bit_counts(values):
    hashes = np.array(values, dtype=np.uint64)
    for i in range(len(values) - 1):
        expected = [bin(values[i] ^ v).count("1") for v in values[i + 1 :]]
        assert hamming_distances(hashes, i).tolist() == expected


# -- layouts ------------------------------------------------------------------------------------------------------


def test_kohya_layout(tmp_path):
    parent = tmp_path / "train"
    make_flat(parent / "10_mychar woman", 12)
    make_flat(parent / "3_mychar_outfit", 4, caption=None)
    make_flat(parent / "0_skipped", 2)
    make_flat(parent / "notes", 2)  # no repeat count
    noise_image(parent / "stray.png", seed=99)
    report = check_dataset(parent, "mychar", "sdxl")
    assert report.layout == "kohya"
    subs = {(Path(s.image_dir).name, s.num_repeats, s.class_tokens, s.image_count) for s in report.subsets}
    assert subs == {("10_mychar woman", 10, "mychar woman", 12), ("3_mychar_outfit", 3, "mychar_outfit", 4)}
    assert report.image_count == 16
    assert report.issues_with("zero-repeats")
    assert report.issues_with("ignored-images")  # stray.png beside the repeat folders
    assert any("notes" in i.message for i in report.issues_with("ignored-folder"))
    # class tokens "mychar_outfit" do not contain the word "mychar" (underscore joins words)
    assert len([i for i in report.issues_with("no-trigger") if "3_mychar_outfit" in (i.file or "")]) == 4
    assert "kohya parent" in report.format()


def test_flat_folder_reports_subfolders_it_does_not_search(tmp_path):
    folder = make_flat(tmp_path / "d", 3)
    make_flat(folder / "more", 2)
    report = check_dataset(folder, "mychar", "sd1")
    assert report.layout == "flat" and report.image_count == 3
    assert "more" in report.issues_with("ignored-folder")[0].message


@pytest.mark.skipif(os.name == "nt", reason="Windows globs case-insensitively, so sd-scripts sees .Jpg there")
def test_extensions_sd_scripts_skips(tmp_path):
    folder = make_flat(tmp_path / "d", 2)
    noise_image(folder / "mixed.Jpg", seed=50, fmt="JPEG")
    noise_image(folder / "upper.PNG", seed=51, fmt="PNG")
    noise_image(folder / "anim.gif", seed=52, fmt="GIF")
    noise_image(folder / "._hidden.png", seed=53)
    report = check_dataset(folder, "mychar", "sd1")
    names = {Path(i.path).name for i in report.images}
    assert names == {"img000.png", "img001.png", "upper.PNG"}
    assert [Path(i.file).name for i in report.issues_with("extension-case")] == ["mixed.Jpg"]
    assert [Path(i.file).name for i in report.issues_with("unsupported-format")] == ["anim.gif"]


def test_paths_with_spaces_quotes_and_unicode(tmp_path):
    folder = make_flat(tmp_path / "my \"data\" ü 🎨", 3)
    report = check_dataset(folder, "mychar", "sd1")
    assert report.image_count == 3 and report.ok


def test_progress_callback(tmp_path):
    folder = make_flat(tmp_path / "d", 7)
    calls: list[tuple[int, int]] = []
    check_dataset(folder, "mychar", "sd1", progress=lambda done, total, path: calls.append((done, total)), workers=3)
    assert calls == [(i, 7) for i in range(1, 8)]


# -- buckets --------------------------------------------------------------------------------------------------------

#: sd-scripts' make_bucket_resolutions((512, 512), 256, 1024, 64) at the pinned commit
SD15_BUCKETS = [
    (256, 1024), (320, 768), (384, 640), (448, 576), (512, 512), (576, 448), (640, 384), (704, 320),
    (768, 320), (832, 256), (896, 256), (960, 256), (1024, 256), (320, 704), (256, 832), (256, 896), (256, 960),
]  # fmt: skip


def test_bucket_resolutions_match_sd_scripts():
    assert bucket_resolutions(512, 256, 1024, 64) == sorted(SD15_BUCKETS)
    sdxl = bucket_resolutions(1024, 256, 2048, 64)
    assert len(sdxl) == 41
    assert (1024, 1024) in sdxl and (832, 1216) in sdxl and (1216, 832) in sdxl and (256, 2048) in sdxl
    assert all(w * h <= 1024 * 1024 and w % 64 == 0 and h % 64 == 0 for w, h in sdxl)


def test_select_bucket():
    b = bucket_resolutions(512)
    assert select_bucket(512, 512, b) == (512, 512)
    assert select_bucket(1000, 1000, b) == (512, 512)
    assert select_bucket(512, 768, b) == (384, 640)  # ratio 0.667: 0.6 is nearer than 0.78
    assert select_bucket(3000, 1000, b)[0] > select_bucket(3000, 1000, b)[1]
    assert select_bucket(640, 384, b) == (640, 384)  # an exact bucket size wins


def test_report_buckets_count_every_readable_image(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for i, size in enumerate([(512, 512), (1024, 1024), (512, 768), (768, 512), (768, 512)]):
        noise_image(folder / f"i{i}.png", size, seed=i)
    (folder / "bad.png").write_bytes(b"not an image")
    report = check_dataset(folder, "mychar", "sd1")
    counts = {(b.width, b.height): b.count for b in report.buckets}
    assert sum(counts.values()) == 5
    assert counts[(512, 512)] == 2
    assert counts[select_bucket(768, 512, bucket_resolutions(512))] == 2
