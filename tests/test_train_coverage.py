"""Dataset coverage: the word table, caption sets in booru and plain-language style, images made with
known backgrounds and brightness, near-duplicates, and the advice strings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lib_lora.train import coverage_table as table
from lib_lora.train.coverage import (
    ADVICE,
    NOTE,
    OK,
    add_range,
    build_coverage,
    check_coverage,
    classify_caption,
    coverage_html,
    outfit_of,
    pixel_stats,
    stats_of_array,
)
from lib_lora.train.dataset import check_dataset

# -- the table --------------------------------------------------------------------------------------------


def test_table_words_are_lower_case_and_unique_within_a_dimension() -> None:
    for dim in table.DIMENSIONS:
        seen: dict[str, str] = {}
        for cat in dim.categories:
            assert cat.words, cat.id
            for w in cat.words:
                assert w == w.lower(), w
                assert w not in seen, f"{w!r} in both {seen.get(w)} and {cat.id}"
                seen[w] = cat.id


@pytest.mark.parametrize("dim", table.DIMENSIONS, ids=lambda d: d.id)
def test_every_table_word_classifies_to_its_category(dim: table.Dimension) -> None:
    for cat in dim.categories:
        for w in cat.words:
            word = w.lstrip("=")
            got, words = classify_caption(f"mychar, {word}, solo", dim.id)
            # a higher-priority category may own a longer phrase containing the word: never a lower one
            order = [c.id for c in dim.categories]
            assert got is not None, w
            assert order.index(got) <= order.index(cat.id), (w, got)
            if got == cat.id:
                assert word in words


@pytest.mark.parametrize(
    ("caption", "dimension", "expected"),
    [
        ("mychar, 1girl, from side, looking at viewer", "angles", "profile"),  # profile wins over front
        ("mychar, 1girl, FROM_ABOVE, smile", "angles", "from-above"),  # underscores and case
        ("mychar, solo, looking at viewer", "angles", "front"),
        ("a close-up of mychar in profile against a brick wall", "angles", "profile"),
        ("mychar seen from below, low angle shot", "angles", "from-below"),
        ("mychar, 3/4 view", "angles", "three-quarter"),
        ("mychar, :d, open mouth", "expressions", "smile"),
        ("mychar, not smiling, serious", "expressions", "serious"),
        ("mychar without a smile", "expressions", None),  # negated
        ("mychar, tears, crying", "expressions", "sad"),
        ("mychar, dark hair, long hair", "lighting", None),  # "dark" only as a whole tag
        ("mychar, dark, night", "lighting", "low-light"),
        ("mychar, backlighting, sunset", "lighting", "backlit"),  # backlit wins over natural
        ("photo of mychar at golden hour", "lighting", "natural"),
        ("mychar, grey_background, simple background", "backgrounds", "simple"),
        ("mychar sitting in a cozy cafe", "backgrounds", "varied"),
        ("mychar, no background", "backgrounds", None),
        ("mychar, eyeshadow, day", "lighting", "natural"),  # "shadow" not inside "eyeshadow"
    ],
)
def test_classify_caption(caption: str, dimension: str, expected: str | None) -> None:
    assert classify_caption(caption, dimension)[0] == expected


def test_outfit_of_keeps_colours_and_drops_bare_duplicates() -> None:
    assert outfit_of("mychar, shirt, white shirt, skirt, pleated skirt, black skirt") == (
        "black skirt", "pleated skirt", "white shirt")
    assert outfit_of("mychar wearing a red dress and a black leather jacket") == ("black leather jacket", "red dress")
    assert outfit_of("mychar, swimsuit") == ("swimsuit",)
    assert outfit_of("mychar, bodysuit") == ("bodysuit",)  # not "suit"
    assert outfit_of("mychar, smile") == ()


# -- caption sets -----------------------------------------------------------------------------------------

BOORU = [
    "mychar, 1girl, solo, looking at viewer, smile, white background, simple background, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, outdoors, sunlight, school uniform",
    "mychar, 1girl, solo, looking at viewer, expressionless, indoors, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, city, night, school uniform",
    "mychar, 1girl, solo, looking at viewer, open mouth, smile, classroom, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, grey background, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, park, day, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, beach, sunlight, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, street, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, forest, school uniform",
    "mychar, 1girl, solo, looking away, smile, bedroom, warm lighting, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, cafe, school uniform",
    "mychar, 1girl, solo, looking at viewer, serious, outdoors, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, white background, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, outdoors, school uniform",
    "mychar, 1girl, solo, looking at viewer, smile, indoors, school uniform",
]

PLAIN = [
    "a photo of mychar in profile, smiling, standing in a city street at night, wearing a red dress",
    "mychar seen from above, looking up at the camera, surprised, on a white background, blue jeans and a hoodie",
    "close-up of mychar from below, low angle, serious expression, dramatic lighting, leather jacket",
    "mychar, three-quarter view, sad, crying, rain, in a park, winter coat",
    "mychar looking at the camera with a neutral expression against a grey background, red dress",
    "mychar smiling in a cozy cafe, warm light, hoodie and blue jeans",
    "mychar, backlit by the sunset on a beach, smile, swimsuit",
    "mychar walking in a forest in soft daylight, neutral expression, winter coat",
]


def _entries(captions: list[str]) -> list[tuple[str, str | None]]:
    return [(f"/data/img{i:03d}.png", c) for i, c in enumerate(captions)]


def test_booru_set_front_only_single_outfit() -> None:
    cov = build_coverage("/data", _entries(BOORU))
    angles = cov.dimension("angles")
    assert angles.count("front") == 15 and angles.count("three-quarter") == 1
    msgs = [f.message for f in angles.findings]
    assert "no profile shots — add 2–3" in msgs
    assert "no shots from above — add 2–3" in msgs
    assert "no low-light shots — add 2–3" not in msgs  # not an angle
    assert any(m.startswith("15 of 16 images are front views") for m in msgs)
    expr = cov.dimension("expressions")
    assert {"no sad expressions — add 2–3", "no surprised expressions — add 2–3"} <= {f.message for f in expr.findings}
    outfits = cov.dimension("outfits")
    assert [c.id for c in outfits.categories] == ["school uniform"]
    few = [f for f in outfits.findings if f.code == "few-outfits"]
    assert few and few[0].level == ADVICE and "only 1 outfit (school uniform)" in few[0].message
    bg = cov.dimension("backgrounds")
    assert bg.count("simple") == 3 and bg.count("varied") == 13
    assert not [f for f in bg.findings if f.level == ADVICE]  # 19% simple: within 15–50%
    count = cov.count_findings[0]
    assert count.level == ADVICE and "add 14 or more distinct images" in count.message
    # evidence names the words and the file
    dom = next(f for f in angles.findings if f.code == "dominant")
    assert dom.evidence and dom.evidence[0].source == "caption" and "'looking at viewer'" in dom.evidence[0].detail


def test_plain_language_set_covers_angles_and_expressions() -> None:
    cov = build_coverage("/data", _entries(PLAIN))
    angles = cov.dimension("angles")
    for cat in ("profile", "from-above", "from-below", "three-quarter", "front"):
        assert angles.count(cat) >= 1, cat
    assert not [f for f in angles.findings if f.level == ADVICE]
    assert angles.findings[0].level == OK
    expr = cov.dimension("expressions")
    assert not [f for f in expr.findings if f.code == "missing-category"]
    lighting = cov.dimension("lighting")
    assert lighting.count("backlit") == 1 and lighting.count("low-light") == 1
    outfits = cov.dimension("outfits")
    assert len(outfits.categories) >= 4
    assert outfits.findings[0].level == OK
    bg = cov.dimension("backgrounds")
    assert bg.count("simple") == 2 and bg.count("varied") == 5 and len(bg.unknown) == 1
    assert not [f for f in bg.findings if f.level == ADVICE]  # 25% simple is near the 30% aim


def test_all_simple_backgrounds_advice() -> None:
    caps = [f"mychar, white background, looking at viewer, smile, dress {i}" for i in range(20)]
    cov = build_coverage("/d", _entries(caps))
    msg = cov.dimension("backgrounds").findings[0].message
    assert msg.startswith("all backgrounds simple — 30% is enough")


def test_silent_captions_give_notes_not_advice() -> None:
    cov = build_coverage("/d", _entries(["mychar"] * 20))
    for dim in cov.dimensions:
        assert [f.level for f in dim.findings] == [NOTE], dim.id
    assert "tag the view" in cov.dimension("angles").findings[0].message
    assert len(cov.advice) == 1 and cov.advice[0].startswith("20 images")  # only the count


def test_add_range_grows_with_the_dataset() -> None:
    assert add_range(5) == "2–3"
    assert add_range(20) == "2–3"
    assert add_range(50) == "5–6"
    assert add_range(100) == "10–11"


def test_near_duplicates_count_once() -> None:
    entries = _entries(["mychar, profile"] * 3 + ["mychar, looking at viewer"] * 17)
    groups = [("/data/img000.png", "/data/img001.png", "/data/img002.png")]
    cov = build_coverage("/data", entries, None, groups)
    assert cov.image_count == 20 and cov.distinct_count == 18
    assert cov.dimension("angles").count("profile") == 1
    assert "2 near-duplicates count once" in cov.count_findings[0].message
    assert any(e.source == "duplicates" for e in cov.count_findings[0].evidence)


# -- pixels -----------------------------------------------------------------------------------------------


def _portrait(path: Path, bg: tuple[int, int, int] | None, *, fg: tuple[int, int, int] = (200, 150, 120),
              seed: int = 0, size: int = 256, gain: float = 1.0) -> Path:
    """A figure (ellipse) in the middle of a solid background, or of a busy random scene when ``bg`` is None."""
    rng = np.random.default_rng(seed)
    if bg is None:
        arr = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
        im = Image.fromarray(arr).resize((size, size), Image.Resampling.NEAREST)
    else:
        im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    d.ellipse((size * 0.3, size * 0.2, size * 0.7, size * 0.95), fill=fg)
    if gain != 1.0:
        im = Image.fromarray(np.clip(np.asarray(im, dtype=np.float32) * gain, 0, 255).astype(np.uint8))
    im.save(path)
    return path


def test_pixel_stats_simple_busy_dark_backlit(tmp_path: Path) -> None:
    simple = pixel_stats(str(_portrait(tmp_path / "white.png", (245, 245, 245))))
    assert simple is not None and simple.simple_background and not simple.low_light
    assert not simple.backlit  # a lit figure on white is not backlit
    assert simple.border_colour == (245, 245, 245)
    busy = pixel_stats(str(_portrait(tmp_path / "busy.png", None)))
    assert busy is not None and busy.busy_background and not busy.simple_background
    dark = pixel_stats(str(_portrait(tmp_path / "dark.png", None, gain=0.2)))
    assert dark is not None and dark.low_light
    back = pixel_stats(str(_portrait(tmp_path / "back.png", (250, 240, 220), fg=(40, 30, 30))))
    assert back is not None and back.backlit and not back.low_light
    assert pixel_stats(str(tmp_path / "missing.png")) is None


def test_side_light_from_array() -> None:
    a = np.zeros((64, 64, 3), dtype=np.float32)
    a[:, :32] = 230.0
    a[:, 32:] = 30.0
    st = stats_of_array(a)
    assert st.side_light and st.side_difference > 0


def _make_dataset(folder: Path) -> Path:
    folder.mkdir()
    specs = [
        ("white", (245, 245, 245), 1.0, "mychar, looking at viewer, smile, red dress"),
        ("grey", (128, 128, 128), 1.0, "mychar, from side, smile, red dress"),
        ("busy1", None, 1.0, "mychar, from above, sad, blue jeans"),
        ("busy2", None, 1.0, "mychar, from below, surprised, school uniform"),
        ("dark", None, 0.2, "mychar, looking at viewer, expressionless, kimono, outdoors"),
        ("back", (250, 240, 220), 1.0, "mychar, 3/4 view, serious, school uniform"),
    ]
    for i, (name, bg, gain, cap) in enumerate(specs):
        fg = (40, 30, 30) if name == "back" else (200, 150, 120)
        _portrait(folder / f"{name}.png", bg, fg=fg, seed=i, size=512, gain=gain)
        (folder / f"{name}.txt").write_text(cap, encoding="utf-8")
    # a near-duplicate of busy1 (same picture re-saved as JPEG)
    Image.open(folder / "busy1.png").convert("RGB").save(folder / "busy1_copy.jpg", quality=92)
    (folder / "busy1_copy.txt").write_text("mychar, from above, sad, blue jeans", encoding="utf-8")
    return folder


def test_check_coverage_on_a_real_folder(tmp_path: Path) -> None:
    folder = _make_dataset(tmp_path / "ds")
    report = check_dataset(folder, "mychar", "sd1")
    assert report.issues_with("near-duplicate")
    seen: list[int] = []
    cov = check_coverage(report, progress=lambda d, t, p: seen.append(d))
    assert seen == list(range(1, 8))
    assert cov.image_count == 7 and cov.distinct_count == 6
    by_name = {Path(i.path).stem: i for i in cov.images}
    assert by_name["white"].background == "simple" and by_name["grey"].background == "simple"
    assert by_name["busy1"].background == "varied" and by_name["busy2"].background == "varied"
    assert by_name["dark"].lighting == "low-light"
    assert by_name["back"].lighting == "backlit"
    assert any(e.source == "pixels" and "backgrounds=simple" in e.detail for e in by_name["white"].evidence)
    assert by_name["busy1_copy"].duplicate_of is not None or by_name["busy1"].duplicate_of is not None
    angles = cov.dimension("angles")
    assert not [f for f in angles.findings if f.code == "missing-category"]
    # 3 simple (white, grey, back) of 6 distinct = 50%: within range
    bg = cov.dimension("backgrounds")
    assert bg.count("simple") == 3
    text = cov.format()
    assert "Coverage: 6 distinct images of 7" in text and "Angles:" in text and "Outfits:" in text
    html = coverage_html(cov, lambda s: s.replace("<", "&lt;"))
    assert "Coverage" in html and "distinct images" in html
    d = cov.to_dict()
    assert d["distinct_count"] == 6 and isinstance(d["advice"], list)
    no_pix = check_coverage(report, pixels=False)
    assert not no_pix.pixels_checked and "pixels not checked" in no_pix.format()
    assert {Path(i.path).stem: i for i in no_pix.images}["white"].background is None
