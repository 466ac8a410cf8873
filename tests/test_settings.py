"""lib_lora.settings: defaults, parsing of WebUI values (labels) and of bad values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib_lora import settings as s
from lib_lora.settings import SCHEMA, Settings


def test_defaults() -> None:
    d = Settings()
    assert d.enabled and d.trigger_policy == s.TRIGGER_INSERT and d.incompatible == s.INCOMPATIBLE_WARN
    assert d.trigger_position == s.POSITION_BESIDE_TAG and d.extra_roots == () and d.sd_scripts_path == ""
    assert {spec.name for spec in SCHEMA} == {
        "enabled",
        "trigger_policy",
        "trigger_position",
        "emphasis_weight",
        "incompatible",
        "extra_roots",
        "sd_scripts_path",
        "show_toast",
        "characters_root",
        "character_trigger",
        "character_anchors",
        "character_drift",
        "consistency_clip_model",
        "consistency_clip_pretrained",
        "civitai_api_key",
        "civitai_url",
        "civitai_auto_fetch",
        "civitai_preview_nsfw",
        "civitai_preview_mode",
        "download_subfolder",
        "pane_hide_builtin_lora",
    }
    assert not d.pane_hide_builtin_lora  # the WebUI's own Lora page stays unless the user hides it
    assert d.consistency_clip_model == "ViT-B-32" and d.consistency_clip_pretrained == "openai"


def test_webui_labels_and_ids_are_both_accepted() -> None:
    values = {
        "lora_studio_trigger_policy": "Insert with emphasis",
        "lora_studio_incompatible": "skip",
        "lora_studio_trigger_position": "Prompt start",
        "lora_studio_enabled": "false",
        "lora_studio_extra_roots": "/a\n\n /b \n/a\n",
        "lora_studio_emphasis_weight": "1.3",
    }
    got = Settings.from_mapping(values, prefix=s.WEBUI_KEY_PREFIX)
    assert got.trigger_policy == s.TRIGGER_EMPHASIS and got.incompatible == s.INCOMPATIBLE_SKIP
    assert got.trigger_position == s.POSITION_START and got.enabled is False
    assert got.extra_roots == ("/a", "/b") and got.emphasis_weight == 1.3 and got.problems == ()


def test_bad_values_fall_back_to_defaults_and_are_reported() -> None:
    got = Settings.from_mapping({"incompatible": "explode", "emphasis_weight": 9, "enabled": "perhaps"})
    assert got.incompatible == s.INCOMPATIBLE_WARN and got.emphasis_weight == 1.2 and got.enabled is True
    assert len(got.problems) == 3 and all("using the default" in p for p in got.problems)


def test_round_trip_through_the_webui_representation() -> None:
    original = Settings(
        trigger_policy=s.TRIGGER_OFF, extra_roots=("/x", "/y z"), incompatible=s.INCOMPATIBLE_ALLOW
    )
    stored = original.to_mapping(prefix=s.WEBUI_KEY_PREFIX, labels=True)
    assert stored["lora_studio_trigger_policy"] == "Off" and stored["lora_studio_extra_roots"] == "/x\n/y z"
    assert Settings.from_mapping(stored, prefix=s.WEBUI_KEY_PREFIX) == original


def test_webui_key() -> None:
    assert s.webui_key("enabled") == "lora_studio_enabled"
    with pytest.raises(KeyError):
        s.webui_key("nope")


@given(
    st.lists(
        st.text(
            alphabet=st.characters(
                blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
            ),
            min_size=1,
        ),
        max_size=5,
    )
)
def test_roots_text_round_trip(roots: list[str]) -> None:
    cleaned = tuple(dict.fromkeys(r.strip() for r in roots if r.strip() and not r.strip().startswith("~")))
    text = "\n".join(cleaned)
    assert s.parse_roots(text) == cleaned
