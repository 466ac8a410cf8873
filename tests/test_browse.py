"""The browser's rules (lib_lora.browse) on real .safetensors files indexed by the real library: filters,
categories, badges, user values winning, "compatible only" never hiding silently, paging, sorting, and
HTML escaping of the rendered page (lib_lora.ui.browser's renderers need no gradio)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from factory import make_lora

from lib_lora import browse
from lib_lora.architecture import Detection
from lib_lora.library import Library
from lib_lora.ui.browser import render_detail_html, render_page_html


@dataclass(frozen=True)
class _Compat:
    level: str
    message: str


def arch_check(lora: Detection, ckpt: Detection) -> _Compat:
    """Stand-in for lib_lora.compat.check in these tests: the browser's rules, not compat's, are tested."""
    if "unknown" in (lora.architecture, ckpt.architecture):
        return _Compat("unknown", "unknown")
    if lora.architecture != ckpt.architecture:
        return _Compat("incompatible", f"{lora.architecture} on {ckpt.architecture}")
    if lora.family and ckpt.family and lora.family != ckpt.family:
        return _Compat("cross-family", "other finetune")
    return _Compat("exact", "same")


SD1 = Detection(kind="checkpoint", architecture="sd1")
SDXL = Detection(kind="checkpoint", architecture="sdxl")


def _sidecar(lora: Path, **values: Any) -> None:
    lora.with_suffix(".json").write_text(json.dumps(values, indent=4), encoding="utf-8")


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    root = tmp_path / "Lora"
    alice = make_lora(root, "alice", "kohya-sd1", subdir="characters", metadata={"modelspec.trigger_phrase": None})
    _sidecar(alice, **{"activation text": "alice_trigger, blue dress", "preferred weight": 0.8})
    make_lora(root, "watercolor", "kohya-sdxl", subdir="styles", metadata={"modelspec.trigger_phrase": "wtrclr"})
    make_lora(root, "ponyboy", "pony-sdxl", subdir="misc")
    make_lora(root, "mystery", "nometa-sdxl")
    make_lora(root, "glow", "kohya-flux", metadata={"modelspec.trigger_phrase": "glowing aura"})
    library = Library([root], tmp_path / "index.sqlite3")
    library.scan()
    return library


def _catalog(library: Library) -> browse.Catalog:
    return browse.Catalog(browse._insert_names([browse.entry_from_info(i) for i in library.entries()]),
                          check=arch_check)


def _names(page: browse.Page) -> list[str]:
    return [c.name for c in page.cards]


def test_entries_carry_detection_triggers_and_training_facts(lib: Library) -> None:
    cat = _catalog(lib)
    alice = cat.get("alice")
    assert alice is not None
    assert alice.architecture == "sd1" and alice.adapter == "lora" and alice.rank == 4
    assert alice.insert_words == ("alice_trigger", "blue dress")  # the user's activation text wins
    assert alice.tag() == "<lora:alice:0.8>"  # preferred weight
    assert alice.training.steps and alice.training.images
    assert alice.category == "character" and alice.category_source == "guess"  # from the folder name
    water = cat.get("watercolor")
    assert water is not None and water.insert_words == ("wtrclr",)
    pony = cat.get("ponyboy")
    assert pony is not None and (pony.architecture, pony.family) == ("sdxl", "pony")


def test_user_base_and_category_override_win_and_survive_a_rescan(lib: Library) -> None:
    entry = next(i for i in lib.entries() if i.name == "watercolor")
    lib.set_user_metadata(entry, base="illustrious", category="Style".lower())
    lib.scan()
    water = _catalog(lib).get("watercolor")
    assert water is not None
    assert water.family == "illustrious" and water.base_source == "user"
    assert water.category == "style" and water.category_source == "user"
    assert browse.base_badge(water).kind == "base-user"


def test_fetched_family_is_labelled_by_its_source_and_the_users_base_wins(lib: Library, tmp_path: Path) -> None:
    water = tmp_path / "Lora" / "styles" / "watercolor.safetensors"
    (tmp_path / "Lora" / "styles" / "watercolor.civitai.info").write_text(
        json.dumps({"id": 7, "modelId": 8, "baseModel": "Illustrious", "files": []}, indent=4), encoding="utf-8")
    _sidecar(tmp_path / "Lora" / "mystery.safetensors", **{"lora studio family": "noobai"})
    lib.scan()
    cat = _catalog(lib)
    w, m = cat.get("watercolor"), cat.get("mystery")
    assert w is not None and m is not None
    assert (w.family, w.base_source) == ("illustrious", "civitai")
    assert (m.family, m.base_source) == ("noobai", "model card")
    pony_ckpt = Detection(kind="checkpoint", architecture="sdxl", family="pony")
    assert cat.compat(w, pony_ckpt).level == "cross-family"
    detail = browse.detail_for(w, cat.compat(w, pony_ckpt))
    assert detail["base"]["source"] == "civitai" and not detail["base"]["user_override"]
    html = render_detail_html(detail)
    assert "(civitai)" in html and "your override" not in html
    assert "(model card)" in render_detail_html(browse.detail_for(m, cat.compat(m, pony_ckpt)))
    # the user's own base wins over both and is the only thing called an override
    _sidecar(water, **{"lora studio base": "pony"})
    lib.scan()
    w2 = _catalog(lib).get("watercolor")
    assert w2 is not None and (w2.family, w2.base_source) == ("pony", "user")
    assert "your override" in render_detail_html(browse.detail_for(w2, _catalog(lib).compat(w2, pony_ckpt)))


def test_base_override_forms() -> None:
    det = Detection(kind="lora", architecture="unknown")
    assert browse.apply_base_override(det, "sdxl").architecture == "sdxl"
    both = browse.apply_base_override(det, "sdxl/pony")
    assert (both.architecture, both.family) == ("sdxl", "pony")
    known = Detection(kind="lora", architecture="sdxl", family="sdxl-base")
    assert browse.apply_base_override(known, "sd1").family is None  # another architecture drops the family


def test_category_sources_in_order() -> None:
    assert browse.category_for("Pose", None, ["style"], "x") == ("pose", "user")
    assert browse.category_for(None, "LORA", ["anime", "clothing"], "characters/x") == ("clothing", "civitai")
    assert browse.category_for(None, None, [], "styles/ink") == ("style", "guess")
    assert browse.category_for(None, None, [], "misc/thing") == (None, None)


def test_text_search_covers_name_alias_triggers_and_all_words_must_match(lib: Library) -> None:
    cat = _catalog(lib)
    assert _names(cat.search(browse.Query(text="wtrclr"))) == ["watercolor"]
    assert _names(cat.search(browse.Query(text="BLUE dress"))) == ["alice"]  # case-insensitive, every word
    assert _names(cat.search(browse.Query(text="blue wtrclr"))) == []
    assert _names(cat.search(browse.Query(text="styles/"))) == ["watercolor"]  # relative path
    assert "ponyboy" in _names(cat.search(browse.Query(text="pony")))  # family label


def test_base_and_category_filters(lib: Library) -> None:
    cat = _catalog(lib)
    assert set(_names(cat.search(browse.Query(base="sdxl")))) == {"watercolor", "ponyboy", "mystery"}
    assert _names(cat.search(browse.Query(base="sdxl/pony"))) == ["ponyboy"]
    assert _names(cat.search(browse.Query(category="character"))) == ["alice"]
    assert "glow" in _names(cat.search(browse.Query(category="none")))
    facets = cat.facets()
    assert {f.value for f in facets["base"]} >= {"sd1", "sdxl", "sdxl/pony", "flux1"}


def test_incompatible_are_marked_not_hidden_unless_asked(lib: Library) -> None:
    cat = _catalog(lib)
    page = cat.search(browse.Query(), SD1, "sd15")
    levels = {c.name: c.compat_level for c in page.cards}
    assert levels["alice"] == "exact" and levels["watercolor"] == "incompatible"
    assert page.matched == 5 and page.hidden_incompatible == 0
    only = cat.search(browse.Query(compatible_only=True), SD1, "sd15")
    assert _names(only) == ["alice"]
    assert only.hidden_incompatible == 4  # said on the page, not silent
    html = render_page_html(only)
    assert "4 incompatible hidden" in html
    # without a checkpoint nothing can be judged, so nothing is hidden
    assert cat.search(browse.Query(compatible_only=True)).matched == 5


def test_badges_follow_the_checkpoint(lib: Library) -> None:
    cat = _catalog(lib)
    water = cat.get("watercolor")
    assert water is not None
    assert cat.compat(water, SD1).level == "incompatible"
    assert cat.compat(water, SDXL).level == "exact"
    pony_ckpt = Detection(kind="checkpoint", architecture="sdxl", family="pony")
    assert cat.compat(water, pony_ckpt).level == "cross-family"
    assert browse.compat_badge(cat.compat(water, SD1)).text.startswith("✗")


def test_paging_and_sorting(tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    for i in range(7):
        p = make_lora(root, f"l{i}", "kohya-sd1")
        os.utime(p, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    library = Library([root], tmp_path / "i.sqlite3")
    library.scan()
    cat = _catalog(library)
    first = cat.search(browse.Query(page_size=3))
    assert (first.pages, _names(first)) == (3, ["l0", "l1", "l2"])
    last = cat.search(browse.Query(page=99, page_size=3))
    assert (last.page, _names(last)) == (3, ["l6"])  # clamped to the last page
    assert _names(cat.search(browse.Query(sort="date", page_size=2))) == ["l6", "l5"]
    assert _names(cat.search(browse.Query(sort="name", descending=True, page_size=2))) == ["l6", "l5"]


def test_duplicate_stems_use_relative_paths(tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    make_lora(root, "same", "kohya-sd1", subdir="a")
    make_lora(root, "same", "kohya-sdxl", subdir="b")
    library = Library([root], tmp_path / "i.sqlite3")
    library.scan()
    tags = sorted(c.tag for c in _catalog(library).search(browse.Query()).cards)
    assert tags == ["<lora:a/same:1>", "<lora:b/same:1>"]


@pytest.mark.parametrize(
    "query",
    [
        browse.Query(sort="size"),
        browse.Query(page=0),
        browse.Query(page_size=0),
        browse.Query(page_size=browse.MAX_PAGE_SIZE + 1),
        browse.Query(category="weapons"),
        browse.Query(text="x" * (browse.MAX_QUERY_CHARS + 1)),
        browse.Query(base="<script>"),
    ],
)
def test_bad_queries_raise_query_error(query: browse.Query) -> None:
    with pytest.raises(browse.QueryError):
        query.validated()


def test_rendered_html_escapes_every_string(tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    evil = 'x<img src=q onerror=alert(1)>"'
    p = make_lora(root, evil, "kohya-sd1", metadata={"modelspec.trigger_phrase": "<b>bold</b>"})
    _sidecar(p, **{"activation text": '"><script>alert(2)</script>', "notes": "<i>n</i>"})
    library = Library([root], tmp_path / "i.sqlite3")
    library.scan()
    cat = _catalog(library)
    page = cat.search(browse.Query(), SD1, 'ckpt "<x>"')
    html = render_page_html(page)
    assert "<img src=q" not in html and "<script>" not in html and 'ckpt "<x>"' not in html
    assert "&lt;img src=q onerror=alert(1)&gt;&quot;" in html
    entry = cat.entries[0]
    detail = render_detail_html(browse.detail_for(entry, cat.compat(entry, SD1)))
    assert "<script>" not in detail and "<img src=q" not in detail


def test_format_weight_and_tag() -> None:
    assert browse.format_lora_tag("a", 0.8) == "<lora:a:0.8>"
    assert browse.format_lora_tag("a", 1.0) == "<lora:a:1>"
    assert browse.format_lora_tag("a", -0.25) == "<lora:a:-0.25>"
    assert browse.rank_alpha_text(32, 16.0) == "r32 / α16"



HOSTILE = "\x1b\x07\x00\x7f\x9b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _attr(html: str, name: str) -> str:
    """An attribute's value as a browser reads it (numeric references kept exact, like the DOM)."""
    import html as html_lib
    import re

    raw = html.split(f'{name}="', 1)[1].split('"', 1)[0]
    return html_lib.unescape(re.sub(r"&#x([0-9a-f]+);", lambda m: chr(int(m.group(1), 16)), raw))


def test_rendered_html_shows_control_and_bidi_characters_and_isolates_file_text(tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    name = "evil\u202etxt.exe\x1b[31m"
    p = make_lora(root, name, "kohya-sd1", metadata={"modelspec.trigger_phrase": "trig\u2066ger\x07",
                                                     "ss_output_name": "al\u200fias"})
    _sidecar(p, **{"notes": "n\u202d"})
    library = Library([root], tmp_path / "i.sqlite3")
    library.scan()
    cat = _catalog(library)
    page = render_page_html(cat.search(browse.Query(), SD1, "ckpt\u202e"))
    entry = cat.entries[0]
    detail = render_detail_html(browse.detail_for(entry, cat.compat(entry, SD1)))
    for html in (page, detail):
        assert [c for c in html if c in HOSTILE] == []  # nothing raw, attributes included
        assert "<bdi>evil\\u202etxt.exe\\u001b[31m</bdi>" in html  # shown, and isolated
        assert "<bdi>trig\\u2066ger\\u0007</bdi>" in html
        # what the script reads back (the name and tag it inserts) stays exact
        assert _attr(html, "data-name") == name and _attr(html, "data-tag") == f"<lora:{name}:1>"
    assert "<bdi>ckpt\\u202e</bdi>" in page and _attr(page, "data-checkpoint") == "ckpt\u202e"
    assert "<bdi>al\\u200fias</bdi>" in detail
