"""Trigger-word sources, their order, and the "already present" rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib_lora.safetensors_header import read_header
from lib_lora.sidecars import read_civitai_info, read_user_metadata
from lib_lora.triggers import (
    SOURCE_ACTIVATION,
    SOURCE_CIVITAI,
    SOURCE_CLASS_TOKENS,
    SOURCE_MODELSPEC,
    SOURCE_TAG_FREQUENCY,
    PresenceIndex,
    chosen,
    class_tokens,
    emphasize,
    frequent_tags,
    is_present,
    missing_phrases,
    phrase_key,
    sources_from,
    split_phrases,
)


@pytest.fixture(scope="module")
def kohya_metadata(fixtures_dir: Path) -> dict[str, str]:
    return read_header(fixtures_dir / "kohya-outputs" / "sd15-kohya-dim4-mychar.safetensors").metadata


def test_real_kohya_header_gives_modelspec_class_tokens_and_tags(kohya_metadata: dict[str, str]) -> None:
    sources = sources_from(metadata=kohya_metadata)
    assert [(s.source, s.words, s.guessed) for s in sources] == [
        (SOURCE_MODELSPEC, ("mychar",), False),
        (SOURCE_CLASS_TOKENS, ("mychar",), False),
        (SOURCE_TAG_FREQUENCY, ("mychar", "red hat"), True),
    ]
    assert chosen(sources) == sources[0]


def test_order_user_sidecar_then_civitai_then_header(fixtures_dir: Path, kohya_metadata: dict[str, str]) -> None:
    user = read_user_metadata(fixtures_dir / "sidecars" / "alice.safetensors")
    civitai = read_civitai_info(fixtures_dir / "sidecars" / "kotori.civitai.info")
    assert user is not None
    sources = sources_from(
        activation_text=user.activation_text, civitai_words=civitai.trained_words, metadata=kohya_metadata
    )
    assert [s.source for s in sources] == [
        SOURCE_ACTIVATION,
        SOURCE_CIVITAI,
        SOURCE_MODELSPEC,
        SOURCE_CLASS_TOKENS,
        SOURCE_TAG_FREQUENCY,
    ]
    assert sources[0].words == ("zk_alice", "red coat")
    assert sources[1].words == ("kanbe kotori", "twin braids", "hair flower", "official art")
    assert chosen(sources) is sources[0]
    # The first source decides; stop_at_first computes nothing after it.
    assert [s.source for s in sources_from(activation_text="zk_alice", metadata=kohya_metadata, stop_at_first=True)] == [
        SOURCE_ACTIVATION
    ]


def test_empty_sources_are_skipped() -> None:
    sources = sources_from(activation_text="  , ", civitai_words=["", " "], metadata={"modelspec.trigger_phrase": ""})
    assert sources == []
    assert chosen(sources) is None


def test_guessed_tags_are_never_chosen() -> None:
    meta = {"ss_tag_frequency": json.dumps({"5_x": {"1girl": 9, "smile": 4}, "3_y": {"smile": 6, "hat": 1}})}
    sources = sources_from(metadata=meta)
    assert [(s.source, s.guessed) for s in sources] == [(SOURCE_TAG_FREQUENCY, True)]
    assert frequent_tags(meta) == ("smile", "1girl", "hat")  # counts summed over folders
    assert frequent_tags(meta, top=1) == ("smile",)
    only_guess = sources_from(metadata={"ss_tag_frequency": meta["ss_tag_frequency"]})
    assert chosen(only_guess) is None


def test_class_tokens_from_folders_when_no_subsets() -> None:
    meta = {"ss_dataset_dirs": json.dumps({"10_sks woman": {"n_repeats": 10}, "img": {}, "2_sks woman": {}})}
    assert class_tokens(meta) == ("sks woman",)
    reg = {
        "ss_datasets": json.dumps(
            [{"subsets": [{"class_tokens": "zkx dog", "is_reg": False}, {"class_tokens": "dog", "is_reg": True}]}]
        )
    }
    assert class_tokens(reg) == ("zkx dog",)
    assert class_tokens({"ss_datasets": "not json"}) == ()


def test_split_phrases() -> None:
    assert split_phrases("zk_alice, red coat") == ("zk_alice", "red coat")
    assert split_phrases(" a ,, b ,a, A ") == ("a", "b")
    assert split_phrases("(a, b:1.2), c") == ("(a, b:1.2)", "c")
    assert split_phrases(r"mejiro mcqueen \(umamusume\), x") == (r"mejiro mcqueen \(umamusume\)", "x")
    assert split_phrases("") == ()
    # A tag among the words would be loaded unresolved: never inserted.
    assert split_phrases("zk_alice, <lora:other:0.5>, x <hypernet:y>") == ("zk_alice",)


@pytest.mark.parametrize(
    "prompt",
    [
        "mychar, 1girl",
        "1girl, MyChar",
        "1girl,   mychar  ",
        "(mychar:1.1), smile",
        "(MyChar:1.1)",
        "[mychar]",
        "((mychar))",
        "{mychar}",
        r"\(mychar\)",
        "(mychar: 0.9)",
        "[mychar:other:0.5]",
        "1girl\nmychar",
    ],
)
def test_present_in_any_spelling(prompt: str) -> None:
    assert is_present("mychar", prompt)
    assert is_present("MYCHAR", prompt)


@pytest.mark.parametrize("prompt", ["mychar2, 1girl", "my char", "mycharacter", "", "zmychar"])
def test_not_present(prompt: str) -> None:
    assert not is_present("mychar", prompt)


def test_multiword_phrases() -> None:
    assert is_present("red coat", "1girl, (red   Coat:1.2)")
    assert not is_present("red coat", "red, coat")  # a comma between is another phrase
    assert is_present(r"mejiro mcqueen \(umamusume\)", "mejiro mcqueen (umamusume)")


def test_missing_phrases_adds_each_once() -> None:
    index = PresenceIndex("1girl, zk_alice")
    assert missing_phrases(["zk_alice", "red coat", "Red Coat"], index) == ["red coat"]
    assert missing_phrases(["red coat"], index) == []


def test_emphasize() -> None:
    assert emphasize("zk_alice", 1.2) == "(zk_alice:1.2)"
    assert emphasize("red coat", 1.25) == "(red coat:1.25)"
    assert emphasize("(x:1.1)", 1.2) == "(x:1.1)"
    assert emphasize("x", 1.0) == "(x:1)"
    assert is_present("zk_alice", emphasize("ZK_Alice", 1.3))


words = st.text(st.sampled_from("abcxyz_ "), min_size=1, max_size=10).filter(lambda s: phrase_key(s) != "")


@given(words, st.sampled_from(["{}", "({})", "[{}]", "({}:1.3)", "  {}  ", "(({}))", "{{{}}}"]), st.booleans())
def test_presence_is_stable_under_wrapping(word: str, wrap: str, upper: bool) -> None:
    text = wrap.format(word.upper() if upper else word)
    assert is_present(word, f"1girl, {text}, smile")
