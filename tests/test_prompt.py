"""The <network:...> tag grammar, checked against how A1111 v1.10 / Forge read tags."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_lora.prompt import (
    TAG_RE,
    Tag,
    format_prompt,
    format_tag,
    is_rooted_or_parent,
    make_tag,
    name_problem,
    parse_prompt,
    strip_comments,
    strip_tags,
)

# ---------------------------------------------------------------------------------------------
# An independent model of the WebUI's reading, written from its documented behaviour: tags found
# with <(\w+):([^>]+)>, items split on ':', an item with exactly one '=' is named, the Lora network
# takes name = positional[0], te = positional[1] | te= | 1.0, unet = positional[2] | unet= | te,
# dyn = positional[3] | dyn= | None.
# ---------------------------------------------------------------------------------------------


def webui_reading(prompt: str) -> tuple[str, dict[str, list[tuple[list[str], dict[str, str]]]]]:
    found: dict[str, list[tuple[list[str], dict[str, str]]]] = defaultdict(list)

    def one(m: re.Match[str]) -> str:
        positional: list[str] = []
        named: dict[str, str] = {}
        for item in m.group(2).split(":"):
            parts = item.split("=", 2)
            if len(parts) == 2:
                named[parts[0]] = parts[1]
            else:
                positional.append(item)
        found[m.group(1)].append((positional, named))
        return ""

    return re.sub(r"<(\w+):([^>]+)>", one, prompt), dict(found)


def webui_lora_args(positional: list[str], named: dict[str, str]) -> tuple[str, float, float, int | None]:
    te = float(positional[1]) if len(positional) > 1 else 1.0
    te = float(named.get("te", te))
    unet = float(positional[2]) if len(positional) > 2 else te
    unet = float(named.get("unet", unet))
    dyn = int(positional[3]) if len(positional) > 3 else None
    dyn = int(named["dyn"]) if "dyn" in named else dyn
    return positional[0], te, unet, dyn


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "te", "unet", "dyn"),
    [
        ("<lora:alice>", "alice", 1.0, 1.0, None),
        ("<lora:alice:0.8>", "alice", 0.8, 0.8, None),
        ("<lora:alice:-0.5>", "alice", -0.5, -0.5, None),
        ("<lora:alice:.75>", "alice", 0.75, 0.75, None),
        ("<lora:alice:1>", "alice", 1.0, 1.0, None),
        ("<lora:alice:0.8:0.3>", "alice", 0.8, 0.3, None),
        ("<lora:alice:0.8:0.3:16>", "alice", 0.8, 0.3, 16),
        ("<lora:alice:te=0.4>", "alice", 0.4, 0.4, None),
        ("<lora:alice:0.9:unet=0.2>", "alice", 0.9, 0.2, None),
        ("<lora:alice:unet=0.2:te=0.5:dyn=8>", "alice", 0.5, 0.2, 8),
        ("<lora:alice:0.9:te=0.1>", "alice", 0.1, 0.1, None),
        ("<lyco:alice:0.6>", "alice", 0.6, 0.6, None),
    ],
)
def test_weights_read_like_the_builtin_lora(text: str, name: str, te: float, unet: float, dyn: int | None) -> None:
    (tag,) = parse_prompt(f"1girl, {text}, smile").tags
    assert tag.is_lora
    assert (tag.name, tag.te, tag.unet, tag.dyn) == (name, te, unet, dyn)
    _, found = webui_reading(text)
    (positional, named), = found[tag.network]
    assert webui_lora_args(positional, named) == (name, te, unet, dyn)


@pytest.mark.parametrize(
    "name",
    ["my lora", "chars/alice", "chars\\alice", "ализа", "アリス_v2", "alice.v1.2", "a-b (c) [d]", "x==y", " spaced "],
)
def test_names_with_spaces_unicode_dots_and_folders(name: str) -> None:
    prompt = f"a <lora:{name}:0.7> b"
    (tag,) = parse_prompt(prompt).tags
    assert tag.name == name
    assert tag.te == 0.7


def test_unknown_named_arguments_are_kept_in_order() -> None:
    prompt = "<lora:alice:0.8:lbw=0,1,1,0:start=4:te=0.5>"
    (tag,) = parse_prompt(prompt).tags
    assert tag.named == (("lbw", "0,1,1,0"), ("start", "4"), ("te", "0.5"))
    assert tag.positional == ("alice", "0.8")
    renamed = tag.with_name("chars/alice")
    assert format_tag(renamed) == "<lora:chars/alice:0.8:lbw=0,1,1,0:start=4:te=0.5>"
    assert renamed.named == tag.named


def test_name_is_the_first_positional_item() -> None:
    # The WebUI takes positional[0]; an item with one '=' before it is a named argument.
    (tag,) = parse_prompt("<lora:te=0.5:alice:0.3>").tags
    assert tag.name == "alice"
    assert tag.te == 0.5
    assert format_tag(tag.with_name("bob")) == "<lora:te=0.5:bob:0.3>"


def test_other_networks_and_non_tags() -> None:
    prompt = "<hypernet:anime:0.5> <embedding:x> < lora:a> <lora:> <lora-x:y> <:a> (<lora:ok>)"
    parsed = parse_prompt(prompt)
    assert [(t.network, t.items) for t in parsed.tags] == [
        ("hypernet", ("anime", "0.5")),
        ("embedding", ("x",)),
        ("lora", ("ok",)),
    ]
    assert [t.name for t in parsed.lora_tags] == ["ok"]
    assert format_prompt(parsed.parts) == prompt


def test_tag_text_stops_at_first_gt_and_may_span_lines() -> None:
    (tag,) = parse_prompt("<lora:a\nb:1>").tags
    assert tag.name == "a\nb"
    parsed = parse_prompt("<lora:a<lora:b:1>")
    assert [t.name for t in parsed.tags] == ["a<lora"]  # exactly what the regex does


def test_problems_the_builtin_lora_would_raise_on() -> None:
    def problem(text: str) -> str | None:
        return parse_prompt(text).tags[0].problem()

    assert problem("<lora:alice:0.8>") is None
    assert problem("<lora:alice:0.8:0.5:4>") is None
    assert "not a number" in (problem("<lora:alice:heavy>") or "")
    assert "not a number" in (problem("<lora:alice:te=x>") or "")
    assert "unet" in (problem("<lora:alice:1:abc>") or "")
    assert "whole number" in (problem("<lora:alice:1:1:1.5>") or "")
    assert "finite" in (problem("<lora:alice:nan>") or "")
    assert "no LoRA name" in (problem("<lora:te=1>") or "")


def test_parse_keeps_spans_and_text() -> None:
    prompt = "x <lora:a:1> y <lyco:b> z"
    parsed = parse_prompt(prompt)
    for tag in parsed.tags:
        assert tag.span is not None
        assert prompt[tag.span[0] : tag.span[1]] == tag.text
    assert parsed.text() == "x  y  z"
    assert parsed.text() == strip_tags(prompt)


def test_comments_hide_tags_like_the_webui() -> None:
    prompt = "1girl <lora:a:1>\n# old: <lora:b:1>\nsmile # <lora:c> tried\n<lora:d>"
    assert [t.name for t in parse_prompt(prompt, comments=True).tags] == ["a", "d"]
    assert [t.name for t in parse_prompt(prompt).tags] == ["a", "b", "c", "d"]
    # The same result as stripping comments first, which is what the WebUI does.
    assert [t.name for t in parse_prompt(strip_comments(prompt)).tags] == ["a", "d"]
    assert format_prompt(parse_prompt(prompt, comments=True).parts) == prompt


def test_make_and_format() -> None:
    assert format_tag(make_tag("lora", "alice")) == "<lora:alice>"
    assert format_tag(make_tag("lora", "alice", 0.8)) == "<lora:alice:0.8>"
    assert format_tag(make_tag("lora", "alice", 1.0, 0.5)) == "<lora:alice:1:0.5>"
    assert format_tag(make_tag("lyco", "x", te=0.25)) == "<lyco:x:te=0.25>"
    with pytest.raises(ValueError):
        make_tag("lora", "a:b")
    with pytest.raises(ValueError):
        make_tag("lora", "a=b")


def test_with_name_unchanged_keeps_original_text() -> None:
    (tag,) = parse_prompt("<lora:alice:0.80>").tags
    assert tag.with_name("alice") is tag
    assert format_tag(tag.with_name("alice")) == "<lora:alice:0.80>"
    assert format_tag(tag.with_name("bob")) == "<lora:bob:0.80>"
    assert tag.with_name("bob").changed and not tag.changed


@pytest.mark.parametrize(
    ("name", "ok"),
    [("alice", True), ("a b", True), ("x==y", True), ("a=b", False), ("a:b", False), ("a>b", False), ("", False)],
)
def test_name_problem(name: str, ok: bool) -> None:
    assert (name_problem(name) is None) is ok


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("../secret", True),
        ("chars/../../x", True),
        ("/etc/passwd", True),
        ("\\\\server\\share\\x", True),
        ("..\\x", True),
        ("chars/alice", False),
        ("alice..v2", False),
        ("...", False),
    ],
)
def test_rooted_or_parent(name: str, refused: bool) -> None:
    assert is_rooted_or_parent(name) is refused


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

_name_chars = st.characters(blacklist_characters=":>", blacklist_categories=("Cs",))
names = st.text(_name_chars, min_size=1, max_size=12).filter(lambda s: name_problem(s) is None)
items = st.text(st.characters(blacklist_characters=":>", blacklist_categories=("Cs",)), min_size=0, max_size=8)
networks = st.sampled_from(["lora", "lyco", "hypernet", "x1", "LoRA", "émbed"])
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@st.composite
def prompts(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(0, 5))):
        out.append(draw(texts))
        net = draw(networks)
        first = draw(names)
        rest = draw(st.lists(items, max_size=4))
        out.append(f"<{net}:{':'.join([first, *rest])}>")
    out.append(draw(texts))
    return "".join(out)


@settings(max_examples=300)
@given(prompts())
def test_parse_format_round_trip(prompt: str) -> None:
    parsed = parse_prompt(prompt)
    assert format_prompt(parsed.parts) == prompt
    assert parse_prompt(prompt, comments=True).source == prompt
    assert format_prompt(parse_prompt(prompt, comments=True).parts) == prompt
    # Every regex match is a tag, with the WebUI's items.
    assert [(t.network, t.items) for t in parsed.tags] == [
        (m.group(1), tuple(m.group(2).split(":"))) for m in TAG_RE.finditer(prompt)
    ]
    assert parsed.text() == webui_reading(prompt)[0]


@settings(max_examples=300)
@given(prompts(), st.data())
def test_renamed_prompt_parses_to_the_same_tags(prompt: str, data: st.DataObject) -> None:
    parsed = parse_prompt(prompt)
    new_parts: list[str | Tag] = []
    expected = []
    for part in parsed.parts:
        if isinstance(part, Tag) and part.is_lora and part.name is not None and data.draw(st.booleans()):
            part = part.with_name(data.draw(names))
        new_parts.append(part)
        if isinstance(part, Tag):
            expected.append((part.network, part.items, part.name, part.named))
    # The rename touches only the inside of a tag (no ':' or '>'), so the WebUI finds exactly the
    # same tags again, with the new names.
    again = parse_prompt(format_prompt(new_parts))
    assert [(t.network, t.items, t.name, t.named) for t in again.tags] == expected
