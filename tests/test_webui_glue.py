"""LoRA Studio's WebUI glue (scripts/lora_studio.py + the lib_lora/webui/ package) run through a stand-in of the
WebUI's ``modules`` that keeps the real call order (tests/webui_standin/README.md).

Library: real files — copies of the real kohya outputs in tests/fixtures, the A1111 sidecar fixture,
and checkpoint headers with real key names and shapes (tests/factory.py).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from factory import make_checkpoint
from webui_standin.harness import StandinWebUI

from lib_lora.rewrite import INFOTEXT_KEY, parse_infotext

SD15 = "kohya-outputs/sd15-kohya-dim4-mychar.safetensors"  # ss_output_name "mylora", trigger "mychar"
SDXL = "kohya-outputs/sdxl-kohya-unetonly.safetensors"  # ss_output_name "myxl"


def _copy(fixtures_dir: Path, src: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fixtures_dir / src, dest)
    return dest


@pytest.fixture(params=["a1111", "forge"])
def flavor(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def webui(tmp_path: Path, fixtures_dir: Path, flavor: str):
    """A stand-in WebUI with a small real library:

    Lora/zk_alice.safetensors          SD1.5 (+ A1111 sidecar: activation text "zk_alice, red coat")
    Lora/chars/kotori.safetensors      SD1.5
    Lora/xl/myxl_style.safetensors     SDXL
    Lora/a/dup.safetensors             SD1.5   } the same stem in two folders: the built-in table keeps
    Lora/b/dup.safetensors             SDXL    } only one of them
    Stable-diffusion/sd15.safetensors, sdxl.safetensors   checkpoint headers
    """
    w = StandinWebUI(tmp_path / "webui", flavor=flavor)
    lora = w.lora_dir
    _copy(fixtures_dir, SD15, lora / "zk_alice.safetensors")
    shutil.copyfile(fixtures_dir / "sidecars" / "alice.json", lora / "zk_alice.json")
    _copy(fixtures_dir, SD15, lora / "chars" / "kotori.safetensors")
    _copy(fixtures_dir, SDXL, lora / "xl" / "myxl_style.safetensors")
    _copy(fixtures_dir, SD15, lora / "a" / "dup.safetensors")
    _copy(fixtures_dir, SDXL, lora / "b" / "dup.safetensors")
    make_checkpoint(w.ckpt_dir, "sd15", "ckpt-sd1")
    make_checkpoint(w.ckpt_dir, "sdxl", "ckpt-sdxl")
    w.start()
    w.select_checkpoint("sd15.safetensors")
    w.wait_for_index()
    yield w
    w.stop()


def _applied(sample: dict, key: str = "loras") -> list[tuple[str, str]]:
    """(name the loader saw, file it applied) of one image."""
    return [(name, Path(path).as_posix()) for name, path, _te, _unet in sample[key]]


def _entry(infotext: str) -> str | None:
    from modules import infotext_utils

    return infotext_utils.parse_generation_parameters(infotext).get(INFOTEXT_KEY)


# ------------------------------------------------------------------------------------------------


def test_settings_section_registered_with_defaults(webui: StandinWebUI) -> None:
    labels = webui.shared.opts.data_labels
    keys = [k for k in labels if k.startswith("lora_studio_")]
    assert "lora_studio_enabled" in keys and "lora_studio_trigger_policy" in keys
    assert "lora_studio_incompatible" in keys and "lora_studio_extra_roots" in keys
    assert all(labels[k].section == ("lora_studio", "LoRA Studio") for k in keys)
    assert webui.shared.opts.lora_studio_trigger_policy == "Insert if missing"
    settings = webui.host().settings()
    assert (
        settings.enabled
        and settings.trigger_policy == "insert-if-missing"
        and settings.incompatible == "warn"
    )


def test_builtin_modules_are_the_webuis(webui: StandinWebUI) -> None:
    """LoRA Studio uses the built-in Lora's `networks` module and never creates one of its own."""
    from lib_lora import webui as glue

    assert glue.builtin_networks() is sys.modules["networks"]
    assert Path(sys.modules["networks"].__file__).parent.name == "Lora"
    package = Path(glue.__file__).parent
    for folder in (package, package.parent):  # lib_lora/webui/ and lib_lora/
        assert not any(Path(p).name in ("networks.py", "network.py", "lora.py") for p in folder.iterdir())


def test_txt2img_resolves_inserts_trigger_words_and_records_infotext(webui: StandinWebUI) -> None:
    processed = webui.txt2img("a portrait <lora:zk_alice:0.8>", "lowres")
    p = processed.p
    assert p.all_prompts == ["a portrait zk_alice, red coat, <lora:zk_alice:0.8>"]
    assert p.all_negative_prompts == ["lowres, blurry, extra fingers"]
    sample = processed.images[0]
    assert sample["prompt"] == "a portrait zk_alice, red coat, "
    assert _applied(sample) == [("zk_alice", (webui.lora_dir / "zk_alice.safetensors").as_posix())]
    entry = _entry(processed.infotexts[0])
    record = parse_infotext(entry)
    assert record.words == ("zk_alice", "red coat")
    assert record.negative_words == ("blurry", "extra fingers")
    assert [r.relpath for r in record.loras] == ["zk_alice"]


def test_batch_of_two_different_prompts_every_prompt_rewritten_and_warned(webui: StandinWebUI) -> None:
    processed = webui.txt2img(
        ["girl <lora:zk_alice:0.5>", "boy <lora:chars/kotori:1>"], ["", ""], batch_size=2
    )
    p = processed.p
    assert p.all_prompts[0] == "girl zk_alice, red coat, <lora:zk_alice:0.5>"
    assert p.all_prompts[1] == "boy mychar, <lora:kotori:1>"  # relpath -> the loader's name; its trigger word
    # The WebUI applies the first prompt's LoRAs to the whole batch: both images got zk_alice only.
    assert [_applied(s) for s in processed.images] == [
        [("zk_alice", (webui.lora_dir / "zk_alice.safetensors").as_posix())]
    ] * 2
    warning = [c for c in p.comments if "different LoRAs" in c]
    assert len(warning) == 1 and warning[0].startswith("LoRA Studio: ")
    for info in processed.infotexts:
        assert "different LoRAs" in " ".join(parse_infotext(_entry(info)).warnings)


def test_batch_count_two_each_batch_gets_its_own_loras(webui: StandinWebUI) -> None:
    processed = webui.txt2img(
        ["<lora:zk_alice:1> a", "<lora:chars/kotori:1> b"], ["", ""], batch_size=1, n_iter=2
    )
    files = [[Path(f).name for _, f in _applied(s)] for s in processed.images]
    assert files == [["zk_alice.safetensors"], ["kotori.safetensors"]]
    assert not any("different LoRAs" in c for c in processed.p.comments)
    assert [parse_infotext(_entry(i)).loras[0].relpath for i in processed.infotexts] == [
        "zk_alice",
        "chars/kotori",
    ]


def test_styles_are_rewritten_too(webui: StandinWebUI) -> None:
    webui.add_style("alice", "{prompt}, <lora:zk_alice:0.7>", "bad hands")
    processed = webui.txt2img("on a bench", "", styles=["alice"])
    assert processed.p.all_prompts == ["on a bench, zk_alice, red coat, <lora:zk_alice:0.7>"]
    assert processed.p.all_negative_prompts == ["bad hands, blurry, extra fingers"]
    assert [Path(f).name for _, f in _applied(processed.images[0])] == ["zk_alice.safetensors"]


def test_hires_fix_prompts_get_the_same_rewrite(webui: StandinWebUI) -> None:
    processed = webui.txt2img("a cat <lora:zk_alice:0.6>", "", enable_hr=True)
    p = processed.p
    assert p.all_hr_prompts == p.all_prompts == ["a cat zk_alice, red coat, <lora:zk_alice:0.6>"]
    sample = processed.images[0]
    assert _applied(sample, "hr_loras") == _applied(sample)
    assert "Hires prompt" not in processed.infotexts[0]  # identical: the WebUI omits it


def test_hires_prompt_of_its_own_is_rewritten(webui: StandinWebUI) -> None:
    processed = webui.txt2img(
        "a cat <lora:zk_alice:0.6>", "", enable_hr=True, hr_prompt="a cat, detailed <lora:chars/kotori:0.3>"
    )
    p = processed.p
    assert p.all_hr_prompts == ["a cat, detailed mychar, <lora:kotori:0.3>"]
    sample = processed.images[0]
    assert [Path(f).name for _, f in _applied(sample, "hr_loras")] == ["kotori.safetensors"]
    record = parse_infotext(_entry(processed.infotexts[0]))
    assert {r.relpath for r in record.loras} == {"zk_alice", "chars/kotori"}


def test_img2img_is_rewritten(webui: StandinWebUI) -> None:
    processed = webui.img2img("<lora:chars/kotori:0.9> in the rain")
    assert processed.p.all_prompts == ["mychar, <lora:kotori:0.9> in the rain"]
    assert [Path(f).name for _, f in _applied(processed.images[0])] == ["kotori.safetensors"]


def test_disabled_prompts_pass_through_unchanged(webui: StandinWebUI) -> None:
    webui.set_option("lora_studio_enabled", False)
    webui.add_style("s", "{prompt}, <lora:missing_one:1>")
    processed = webui.txt2img("<lora:zk_alice:0.8> x", "neg", styles=["s"])
    assert processed.p.all_prompts == ["<lora:zk_alice:0.8> x, <lora:missing_one:1>"]
    assert processed.p.all_negative_prompts == ["neg"]
    assert INFOTEXT_KEY not in processed.infotexts[0]
    assert not any(c.startswith("LoRA Studio") for c in processed.p.comments)


def test_missing_tag_removed_so_the_other_loras_still_load(webui: StandinWebUI, flavor: str) -> None:
    processed = webui.txt2img("<lora:zk_alce:1> <lora:chars/kotori:1> x")
    assert "zk_alce" not in processed.p.all_prompts[0]
    # Forge would drop every LoRA of the batch on one miss; the removed tag keeps kotori loading on both.
    assert [Path(f).name for _, f in _applied(processed.images[0])] == ["kotori.safetensors"]
    comment = next(c for c in processed.p.comments if "zk_alce" in c)
    assert "not found" in comment and "zk_alice" in comment  # did-you-mean
    record = parse_infotext(_entry(processed.infotexts[0]))
    assert record.missing and record.missing[0][0] == "zk_alce"


def test_shadowed_duplicate_stem_loads_exactly_the_named_file(webui: StandinWebUI) -> None:
    networks = webui.networks
    builtin_pick = Path(networks.available_network_aliases["dup"].filename)
    wanted = webui.lora_dir / ("a" if builtin_pick.parent.name == "b" else "b") / "dup.safetensors"
    scans_before = networks.scan_count
    processed = webui.txt2img(f"<lora:{wanted.parent.name}/dup:0.9> x")
    sample = processed.images[0]
    [(loader_name, applied)] = _applied(sample)
    assert applied == wanted.as_posix()  # the built-in alone would have applied builtin_pick
    assert loader_name != "dup" and loader_name in processed.p.all_prompts[0]
    assert networks.scan_count == scans_before  # the name was registered: no rescan that clears the table
    # The alias does not show up as an extra card on the built-in Lora page.
    assert loader_name not in networks.available_networks


def test_ambiguous_stem_is_removed_with_candidates(webui: StandinWebUI) -> None:
    processed = webui.txt2img("<lora:dup:1> x")
    assert "<lora:" not in processed.p.all_prompts[0]
    comment = next(c for c in processed.p.comments if "ambiguous" in c)
    assert "a/dup" in comment and "b/dup" in comment


def test_infotext_round_trip_reproduces_the_image(webui: StandinWebUI) -> None:
    networks = webui.networks
    pick = Path(networks.available_network_aliases["dup"].filename)
    other = "a" if pick.parent.name == "b" else "b"
    first = webui.txt2img(f"portrait <lora:{other}/dup:0.9> <lora:zk_alice:0.5>", "lowres", seed=42)
    info = first.infotexts[0]
    params = webui.paste(info)  # PNG Info -> Send to txt2img (the built-in's paste handler runs first)
    assert params["Prompt"] == first.p.all_prompts[0]
    second = webui.txt2img(params["Prompt"], params["Negative prompt"], seed=int(params["Seed"]))
    assert second.p.all_prompts == first.p.all_prompts  # not rewritten twice
    assert second.p.all_negative_prompts == first.p.all_negative_prompts
    assert _applied(second.images[0]) == _applied(first.images[0])
    assert second.images[0]["prompt"] == first.images[0]["prompt"]


def test_paste_restores_names_the_builtin_renamed_by_hash(webui: StandinWebUI) -> None:
    from lib_lora import webui as glue

    raw = (
        "x <lora:b/dup:0.9>\nNegative prompt: n\nSteps: 20, Seed: 1, Size: 512x512, "
        f'Lora hashes: "b/dup: abc", {INFOTEXT_KEY}: "lora b/dup @ b/dup"'
    )
    params = {"Prompt": "x <lora:dup:0.9>", INFOTEXT_KEY: "lora b/dup @ b/dup"}
    glue.infotext_pasted_hook(raw, params)
    assert params["Prompt"] == "x <lora:b/dup:0.9>"
    untouched = {"Prompt": "x <lora:dup:0.9>"}
    glue.infotext_pasted_hook(raw.replace(INFOTEXT_KEY, "Other"), untouched)
    assert untouched["Prompt"] == "x <lora:dup:0.9>"


def test_prompt_changed_after_process_is_rewritten_before_the_batch(
    webui: StandinWebUI, tmp_path: Path
) -> None:
    """A script running after LoRA Studio (wildcards, dynamic prompts) changes all_prompts in process()."""
    ext = tmp_path / "late-ext"
    (ext / "scripts").mkdir(parents=True)
    (ext / "scripts" / "late.py").write_text(
        "from modules import scripts\n"
        "class Late(scripts.Script):\n"
        "    def title(self): return 'late'\n"
        "    def show(self, is_img2img): return scripts.AlwaysVisible\n"
        "    def process(self, p, *args):\n"
        "        p.all_prompts = [x.replace('__who__', '<lora:chars/kotori:0.4>') for x in p.all_prompts]\n"
    )
    webui.stop()
    webui.start(extra_scripts=((ext, ext / "scripts" / "late.py"),))
    webui.select_checkpoint("sd15.safetensors")
    webui.wait_for_index()
    processed = webui.txt2img("a __who__")
    assert processed.p.all_prompts == ["a mychar, <lora:kotori:0.4>"]
    assert [Path(f).name for _, f in _applied(processed.images[0])] == ["kotori.safetensors"]
    assert processed.infotexts[0].startswith("a mychar, <lora:kotori:0.4>")
    assert parse_infotext(_entry(processed.infotexts[0])).loras[0].relpath == "chars/kotori"


# ------------------------------------------------------------------------------------------------
# Host


def test_selected_checkpoint_is_read_without_loading_a_model(webui: StandinWebUI, flavor: str) -> None:
    from modules import sd_models

    loads = sd_models.model_data.load_count
    ref = webui.host().selected_checkpoint()
    assert ref is not None and Path(ref.path).name == "sd15.safetensors"
    webui.host().checkpoint_detection(ref)
    assert sd_models.model_data.load_count == loads
    if flavor == "forge":
        assert type(sd_models.model_data.sd_model).__name__ == "FakeInitialModel"
    webui.select_checkpoint("sdxl.safetensors")
    assert Path(webui.host().selected_checkpoint().path).name == "sdxl.safetensors"
    assert [Path(c.path).name for c in webui.host().list_checkpoints()] == [
        "sd15.safetensors",
        "sdxl.safetensors",
    ]


def test_lora_roots_include_lora_dir_and_extra_roots(webui: StandinWebUI, tmp_path: Path) -> None:
    extra = tmp_path / "more-loras"
    extra.mkdir()
    webui.set_option("lora_studio_extra_roots", f"{extra}\n\n{extra}\n")
    assert webui.host().lora_roots() == [webui.lora_dir, extra]


def test_extra_root_lora_is_registered_for_the_builtin(
    webui: StandinWebUI, tmp_path: Path, fixtures_dir: Path
) -> None:
    """A LoRA only LoRA Studio scans (extra folder) is put in the built-in table so it loads."""
    extra = tmp_path / "more-loras"
    _copy(fixtures_dir, SD15, extra / "elsewhere.safetensors")
    webui.set_option("lora_studio_extra_roots", str(extra))
    webui.wait_for_index()
    processed = webui.txt2img("<lora:elsewhere:1> x")
    assert [Path(f).as_posix() for _, f in _applied(processed.images[0])] == [
        (extra / "elsewhere.safetensors").as_posix()
    ]


def test_remote_access_and_api_auth(webui: StandinWebUI) -> None:
    h = webui.host()
    assert not h.is_remote() and not h.api_auth_required() and h.check_api_credentials(None, None)
    webui.shared.cmd_opts.disable_extension_access = True
    webui.shared.cmd_opts.api_auth = "alice:s3cr:et,bob:pw"
    assert h.is_remote() and h.api_auth_required()
    assert h.check_api_credentials("alice", "s3cr:et") and h.check_api_credentials("bob", "pw")
    assert not h.check_api_credentials("alice", "pw") and not h.check_api_credentials("carol", "pw")
    assert not h.check_api_credentials(None, None)


def test_free_and_restore_vram(webui: StandinWebUI, flavor: str) -> None:
    h = webui.host()
    webui.txt2img("x")  # loads the model as a generation does
    from modules import sd_models

    model = sd_models.model_data.sd_model
    token = h.free_vram()
    assert token.freed
    if flavor == "forge":
        import backend.memory_management as mm

        assert mm.calls == ["unload_all_models", "soft_empty_cache(force=True)"]
    else:
        assert model.device == "cpu"
        h.restore_vram(token)
        assert model.device == "cuda"


def test_queue_lock_is_the_webuis(webui: StandinWebUI) -> None:
    from modules import call_queue

    with webui.host().queue_lock():
        assert call_queue.queue_lock.locked()
    assert not call_queue.queue_lock.locked()


def test_data_dir_and_index_location(webui: StandinWebUI) -> None:
    h = webui.host()
    assert h.data_dir() == webui.data_dir
    assert (webui.data_dir / "library-index.sqlite3").exists()
    assert h.scan_status().state == "done" and h.scan_status().total == 5


def test_register_ui_and_api(webui: StandinWebUI) -> None:
    import importlib.util

    from modules import script_callbacks

    from lib_lora import webui as glue

    if importlib.util.find_spec("fastapi") is not None:  # the HTTP API is mounted by default
        assert any(getattr(r, "prefix", "") == "/lora-studio/v1" for r in webui.app.routers)
    seen = []
    glue.register_api(lambda host: seen.append(host) or "router")
    script_callbacks.app_started_callback(None, webui.app)
    assert webui.app.routers[-1] == "router" and seen == [glue.host()]


def _detection_available() -> bool:
    from lib_lora import architecture
    from lib_lora.safetensors_header import Header

    try:
        architecture.detect_checkpoint(Header(tensors={}))
    except NotImplementedError:
        return False
    except Exception:
        return True
    return True


@pytest.mark.skipif(
    not _detection_available(), reason="base-model detection (lib_lora.architecture) not implemented yet"
)
def test_incompatible_lora_skipped_when_set_and_named_everywhere(webui: StandinWebUI) -> None:
    webui.set_option("lora_studio_incompatible", "Skip the LoRA")
    processed = webui.txt2img("<lora:myxl_style:1> <lora:zk_alice:0.5> x")
    assert "myxl_style" not in processed.p.all_prompts[0]
    assert [Path(f).name for _, f in _applied(processed.images[0])] == ["zk_alice.safetensors"]
    comment = next(c for c in processed.p.comments if "myxl_style" in c)
    assert comment.startswith("LoRA Studio: skipped myxl_style")
    record = parse_infotext(_entry(processed.infotexts[0]))
    assert [name for name, _ in record.skipped] == ["myxl_style"]


@pytest.mark.skipif(
    not _detection_available(), reason="base-model detection (lib_lora.architecture) not implemented yet"
)
def test_incompatible_lora_warned_by_default_and_checkpoint_switch_counts(webui: StandinWebUI) -> None:
    processed = webui.txt2img("<lora:myxl_style:1> x")
    assert "<lora:myxl_style:1>" in processed.p.all_prompts[0]  # warn: kept
    assert any("myxl_style" in c and "will not work" in c for c in processed.p.comments)
    webui.select_checkpoint("sdxl.safetensors")
    processed = webui.txt2img("<lora:myxl_style:1> x")
    assert not any("myxl_style" in c for c in processed.p.comments)


def test_lyco_tags_load_in_both_webuis(webui: StandinWebUI, flavor: str) -> None:
    """A1111 registers <lyco:> as an alias of the built-in Lora; Forge does not and would drop the tag."""
    processed = webui.txt2img("<lyco:chars/kotori:0.5> x")
    expected_tag = "<lora:kotori:0.5>" if flavor == "forge" else "<lyco:kotori:0.5>"
    assert expected_tag in processed.p.all_prompts[0]
    assert [Path(f).name for _, f in _applied(processed.images[0])] == ["kotori.safetensors"]


def test_update_settings_writes_the_webui_options(webui: StandinWebUI) -> None:
    new = webui.host().update_settings(incompatible="skip", trigger_policy="Insert with emphasis")
    assert new.incompatible == "skip" and new.trigger_policy == "insert-with-emphasis"
    assert webui.shared.opts.lora_studio_incompatible == "Skip the LoRA"
    assert webui.shared.opts.lora_studio_trigger_policy == "Insert with emphasis"
    processed = webui.txt2img("<lora:zk_alice:0.8> x")
    assert processed.p.all_prompts == ["(zk_alice:1.2), (red coat:1.2), <lora:zk_alice:0.8> x"]


@pytest.mark.skipif(
    not _detection_available(), reason="base-model detection (lib_lora.architecture) not implemented yet"
)
def test_hires_checkpoint_of_its_own_is_what_hires_loras_are_checked_against(webui: StandinWebUI) -> None:
    processed = webui.txt2img("<lora:zk_alice:0.5> x", enable_hr=True, hr_prompt="<lora:myxl_style:0.5> x")
    assert any("myxl_style" in c and "will not work" in c for c in processed.p.comments)
    p_kwargs = dict(enable_hr=True, hr_prompt="<lora:myxl_style:0.5> x")
    processed = webui.txt2img("<lora:zk_alice:0.5> x", **p_kwargs, hr_checkpoint_name="sdxl.safetensors")
    assert not any("myxl_style" in c for c in processed.p.comments)


def test_previews_in_the_lora_folder_use_the_webuis_thumbnail_route(webui: StandinWebUI, tmp_path: Path) -> None:
    import urllib.parse

    from lib_lora import webui as glue
    from lib_lora.ui.browser import preview_url_for

    preview = webui.lora_dir / "zk_alice.png"
    preview.write_bytes(b"\x89PNG\r\n\x1a\n")
    url = glue.host().preview_url(str(preview))
    assert url is not None and url.startswith("./sd_extra_networks/thumb?filename=")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert Path(query["filename"][0]) == preview.absolute()
    # Outside the folders the WebUI serves previews from: the panel falls back to LoRA Studio's own route.
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"x")
    assert glue.host().preview_url(str(outside)) is None

    class Card:
        name, mtime = "extra/x", 5.0

        def __init__(self, preview: str) -> None:
            self.preview = preview

    to_url = preview_url_for(glue.host())
    assert to_url(Card(str(preview))) == url  # type: ignore[arg-type]
    assert to_url(Card(str(outside))) == "lora-studio/v1/previews/extra/x?v=5"  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# <char:NAME>


def _character(webui: StandinWebUI, fixtures_dir: Path) -> Path:
    """Lora/characters/hero: two versions (copies of the SD1.5 kohya output), trigger "herotok"."""
    from lib_lora.characters import create_character

    root = webui.lora_dir / "characters"
    create_character(root, "hero", trigger="herotok")
    for n in (1, 2):
        _copy(fixtures_dir, SD15, root / "hero" / "lora" / f"hero_v{n}.safetensors")
    webui.host().rescan(wait=True)
    return root


def test_char_tag_expanded_everywhere_and_recorded(webui: StandinWebUI, fixtures_dir: Path) -> None:
    _character(webui, fixtures_dir)
    webui.add_style("scene", "{prompt}, <char:hero:v1>", "bad hands")
    processed = webui.txt2img("<char:HERO> at the beach", "lowres", enable_hr=True, batch_size=2, n_iter=1,
                              styles=["scene"])
    p = processed.p
    drift = "different person, character change, inconsistent appearance"
    expected = (
        "mychar, <lora:hero_v2:1>, (herotok:1.3), same character, consistent appearance, at the beach, "
        "<lora:hero_v1:1>"
    )
    assert p.all_prompts == [expected, expected] and p.all_hr_prompts == [expected, expected]
    assert p.all_negative_prompts == [f"lowres, bad hands, {drift}"] * 2
    assert p.all_hr_negative_prompts == [f"lowres, bad hands, {drift}"] * 2
    assert p.negative_prompt == f"lowres, {drift}"
    files = [Path(f).name for _, f in _applied(processed.images[0])]
    assert files == ["hero_v2.safetensors", "hero_v1.safetensors"]
    from modules import infotext_utils

    params = infotext_utils.parse_generation_parameters(processed.infotexts[0])
    assert params["Characters"] == "hero v2, hero v1"
    assert params["Prompt"] == expected  # pasting reproduces the image without the library
    assert processed.infotexts[0].count("different person") == 1


def test_char_tag_img2img_settings_off_and_unknown(webui: StandinWebUI, fixtures_dir: Path) -> None:
    _character(webui, fixtures_dir)
    webui.set_option("lora_studio_character_anchors", False)
    webui.set_option("lora_studio_character_drift", False)
    processed = webui.img2img("<char:hero> in the rain", "neg")
    assert processed.p.all_prompts == ["mychar, <lora:hero_v2:1>, (herotok:1.3), in the rain"]
    assert processed.p.all_negative_prompts == ["neg"]
    processed = webui.txt2img("<char:heor> x <lora:chars/kotori:1>")
    assert "<char" not in processed.p.all_prompts[0]
    comment = next(c for c in processed.p.comments if "heor" in c)
    assert "not found (did you mean hero?)" in comment
    assert "Characters:" not in processed.infotexts[0]


# the "LoRA Studio" page of the extra-networks pane


class _Cards(__import__("html.parser").parser.HTMLParser):
    """The pane's wrapper attributes and every LoRA Studio card: its attributes, visible text, images."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.pane: dict[str, str] = {}
        self.cards: dict[str, dict] = {}
        self._card: dict | None = None
        self._depth = 0
        self._hidden = 0
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "div" and "lss-pane" in classes:
            self.pane = a
        if self._card is None and tag == "div" and "lss-pane-card" in classes:
            self._card = {"attrs": a, "text": "", "imgs": [], "search": "", "buttons": []}
            self._depth = 0
        if self._card is None:
            return
        if tag == "img":
            self._card["imgs"].append(a)
        if "card-button" in classes:
            self._card["buttons"].append(a.get("class", ""))
        if tag in ("div", "span"):
            self._depth += 1
            if self._hidden or "hidden" in classes:
                self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if self._card is None or tag not in ("div", "span"):
            return
        self._depth -= 1
        if self._hidden:
            self._hidden -= 1
        if self._depth == 0:
            self.cards[self._card["attrs"]["data-name"]] = self._card
            self._card = None

    def handle_data(self, data: str) -> None:
        if self._card is not None:
            self._card["search" if self._hidden else "text"] += data + " "


def _pane_page():
    from modules import ui_extra_networks

    pages = [p for p in ui_extra_networks.extra_pages if p.title == "LoRA Studio"]
    assert len(pages) == 1
    return pages[0]


def _pane(tabname: str) -> _Cards:
    from modules import ui_extra_networks

    ui = ui_extra_networks.create_ui(None, [], tabname)
    index = [p.title for p in ui.stored_extra_pages].index("LoRA Studio")
    return _Cards(ui.pages_contents[index])


@pytest.mark.skipif(
    not _detection_available(), reason="base-model detection (lib_lora.architecture) not implemented yet"
)
@pytest.mark.parametrize("tabname", ["txt2img", "img2img"])
def test_extra_networks_page_shows_lora_studio_cards(webui: StandinWebUI, tabname: str) -> None:
    """Registered from on_before_ui; every LoRA has a card with its compatibility against the selected
    checkpoint (visible words), base, adapter and rank, triggers; incompatible ones marked for dimming."""
    from modules import ui_extra_networks

    (webui.lora_dir / "zk_alice.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    webui.wait_for_index()
    assert str(webui.lora_dir) in ui_extra_networks.allowed_dirs  # previews served by the WebUI's route
    pane = _pane(tabname)
    assert pane.pane["data-tabname"] == tabname and pane.pane["data-checkpoint"] == "sd15.safetensors"
    assert set(pane.cards) == {"zk_alice", "kotori", "myxl_style", "a/dup", "b/dup"}
    alice, xl = pane.cards["zk_alice"], pane.cards["myxl_style"]
    assert "compatible" in alice["text"] and "incompatible" not in alice["text"]
    assert "incompatible" in xl["text"]
    assert "lss-exact" in alice["attrs"]["class"].split() and "lss-incompatible" in xl["attrs"]["class"].split()
    assert "SD 1.5" in alice["text"] or "SD1.5" in alice["text"].replace(" ", "")
    assert "SDXL" in xl["text"]
    assert "LoRA" in alice["text"] and "r4" in alice["text"]  # adapter and rank (dim 4)
    assert "red coat" in alice["text"]  # trigger words from the A1111 sidecar
    # What a click inserts (javascript/lora_studio.js reads these, as on the tab's cards).
    assert alice["attrs"]["data-tag"].startswith("<lora:zk_alice:")
    assert json.loads(alice["attrs"]["data-words"]) == ["zk_alice", "red coat"]
    assert alice["attrs"]["data-neg"] == "blurry, extra fingers"  # goes into that tab's negative prompt
    assert alice["imgs"] and alice["imgs"][0]["loading"] == "lazy"
    assert alice["imgs"][0]["src"].startswith("./sd_extra_networks/thumb?filename=")
    assert not xl["imgs"]  # no preview: initials, no broken image
    assert any("lss-pane-edit" in b for b in alice["buttons"])
    assert any("copy-path-button" in b for b in alice["buttons"])  # the WebUI's own buttons are kept
    # The WebUI's search box matches the hidden search terms: the same words as the tab's search.
    assert "red coat" in alice["search"] and "chars/kotori" in pane.cards["kotori"]["search"]
    assert alice["attrs"]["data-sort-name"] == "zk_alice"  # the WebUI's sort buttons work


@pytest.mark.skipif(
    not _detection_available(), reason="base-model detection (lib_lora.architecture) not implemented yet"
)
def test_extra_networks_cards_carry_every_checkpoints_verdict(webui: StandinWebUI) -> None:
    """The badges follow the checkpoint dropdown in the browser: each card has its level for every
    checkpoint class, and the classes map every dropdown title; the server-side render agrees."""
    pane = _pane("txt2img")
    classes = json.loads(pane.pane["data-lss-classes"])
    sd15, sdxl = classes["sd15.safetensors"], classes["sdxl.safetensors"]
    assert sd15 != sdxl
    levels = {name: card["attrs"]["data-lss-levels"] for name, card in pane.cards.items()}
    assert levels["zk_alice"][sd15] == "e" and levels["zk_alice"][sdxl] == "i"
    assert levels["myxl_style"][sd15] == "i" and levels["myxl_style"][sdxl] == "e"
    assert levels["b/dup"][sdxl] == "e" and levels["a/dup"][sdxl] == "i"
    texts = json.loads(pane.pane["data-lss-texts"])
    assert [texts[k].split(" ", 1)[1] for k in ("exact", "cross-family", "incompatible", "unknown")] == [
        "compatible", "other finetune", "incompatible", "unknown"]
    webui.select_checkpoint("sdxl.safetensors")
    flipped = _pane("txt2img")
    assert "lss-incompatible" in flipped.cards["zk_alice"]["attrs"]["class"].split()
    assert "lss-exact" in flipped.cards["myxl_style"]["attrs"]["class"].split()


def test_extra_networks_page_tree_view_and_reload(webui: StandinWebUI) -> None:
    """The tree view gets the card's arguments (its click is the WebUI's cardClicked with the same text);
    "Reload UI" (pages cleared, before_ui run again) leaves one page; names are escaped in the HTML."""
    from modules import script_callbacks, ui_extra_networks

    page = _pane_page()
    page.create_html("txt2img")
    args = page.create_item_html("txt2img", page.items["zk_alice"])
    assert isinstance(args, dict)
    assert "cardClicked(" in args["card_clicked"] and "&lt;lora:zk_alice:" in args["card_clicked"]
    assert "red coat" in args["card_clicked"]
    assert page.create_item("zk_alice")["filename"] == str(webui.lora_dir / "zk_alice.safetensors")
    assert page.create_item("no_such_lora") is None

    ui_extra_networks.initialize()
    script_callbacks.before_ui_callback()
    assert [p.title for p in ui_extra_networks.extra_pages] == ["LoRA Studio"]

    odd = webui.lora_dir / "o'neil & <co>.safetensors"
    shutil.copyfile(webui.lora_dir / "zk_alice.safetensors", odd)
    webui.wait_for_index()
    markup = _pane_page().create_html("txt2img")
    assert "o'neil & <co>" not in markup and "o&#x27;neil &amp; &lt;co&gt;" in markup
    assert "o'neil & <co>" in _Cards(markup).cards


def test_extra_networks_setting_hides_the_builtin_lora_page(webui: StandinWebUI) -> None:
    """``lora_studio_pane_hide_builtin_lora`` (off by default): on the next before_ui (start-up, Reload UI)
    the built-in Lora page is left out of the pane and LoRA Studio's page stays; the other pages stay."""
    from modules import script_callbacks, ui_extra_networks

    class BuiltinPage(ui_extra_networks.ExtraNetworksPage):  # type: ignore[misc]
        def list_items(self):  # type: ignore[no-untyped-def]
            return iter(())

        def allowed_directories_for_previews(self) -> list[str]:
            return []

    def reload_ui(builtin_first: bool = True) -> list[str]:
        ui_extra_networks.initialize()
        if builtin_first:  # the built-in extensions' before_ui ran first (A1111's order)
            ui_extra_networks.register_page(BuiltinPage("Lora"))
        script_callbacks.before_ui_callback()
        if not builtin_first:  # ... or after LoRA Studio's (Forge's order)
            ui_extra_networks.register_page(BuiltinPage("Lora"))
        ui_extra_networks.register_page(BuiltinPage("Checkpoints"))
        script_callbacks.before_component_callback(None, elem_id="txt2img_prompt")  # the UI starts being made
        return [p.title for p in ui_extra_networks.create_ui(None, [], "txt2img").stored_extra_pages]

    assert webui.shared.opts.lora_studio_pane_hide_builtin_lora is False
    assert sorted(reload_ui()) == ["Checkpoints", "LoRA Studio", "Lora"]
    webui.set_option("lora_studio_pane_hide_builtin_lora", True)
    assert sorted(reload_ui()) == ["Checkpoints", "LoRA Studio"]
    assert sorted(reload_ui(builtin_first=False)) == ["Checkpoints", "LoRA Studio"]
    ui_extra_networks.register_page(BuiltinPage("Lora"))  # the UI is made: later components change nothing
    script_callbacks.before_component_callback(None, elem_id="txt2img_neg_prompt")
    assert [p.title for p in ui_extra_networks.extra_pages][-1] == "Lora"
    webui.set_option("lora_studio_pane_hide_builtin_lora", False)
    assert sorted(reload_ui(builtin_first=False)) == ["Checkpoints", "LoRA Studio", "Lora"]


def _pane_markup(tabname: str) -> str:
    from modules import ui_extra_networks

    ui = ui_extra_networks.create_ui(None, [], tabname)
    return str(ui.pages_contents[[p.title for p in ui.stored_extra_pages].index("LoRA Studio")])


@pytest.mark.skipif(
    not _detection_available(), reason="base-model detection (lib_lora.architecture) not implemented yet"
)
def test_extra_networks_page_shows_characters(webui: StandinWebUI, fixtures_dir: Path) -> None:
    """The library's characters are cards on the pane page too: first reference image (lazy), trigger,
    each version with its compatibility now and for every checkpoint class; a click inserts <char:NAME>."""
    import html as html_mod
    import re

    from lib_lora.characters import add_images, scan_characters

    root = _character(webui, fixtures_dir)
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 10)).save(webui.lora_dir / "ref.png")
    add_images(scan_characters(root).characters[0], [webui.lora_dir / "ref.png"])
    markup = _pane_markup("img2img")
    cards = re.findall(r'<div class="lss-char-card lss-pane-char"(.*?)</div></div>', markup, re.S)
    assert len(cards) == 1
    hero = cards[0]
    assert 'data-char="hero"' in hero and "herotok" in hero
    assert re.search(r'<img class="lss-char-img" loading="lazy" alt="" '
                     r'src="lora-studio/v1/characters/hero/image/reference/0\?v=\d+">', hero)
    classes = json.loads(html_mod.unescape(re.search(r'data-lss-classes="([^"]*)"', markup).group(1)))
    sd15, sdxl = classes["sd15.safetensors"], classes["sdxl.safetensors"]
    versions = re.findall(r'class="lss-badge lss-compat lss-pane-ver lss-(\S+)" data-compat="\S+" '
                          r'data-lss-levels="(\w*)"><b>(v\d)</b> <span class="lss-ver-word">([^<]*)<', hero)
    assert sorted((v[2], v[0], v[3]) for v in versions) == [("v1", "exact", "✓ compatible"),
                                                           ("v2", "exact", "✓ compatible")]
    assert all(v[1][sd15] == "e" and v[1][sdxl] == "i" for v in versions)
    webui.select_checkpoint("sdxl.safetensors")
    flipped = _pane_markup("txt2img")
    assert flipped.count("lss-pane-ver lss-incompatible") == 2
    # The LoRA cards are still there, the character's own versions among them.
    assert 'data-name="characters/hero/lora/hero_v1"' in flipped or "hero_v1" in flipped


def test_extra_networks_page_renders_one_window_of_a_big_library(webui: StandinWebUI,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the window only the first cards are rendered (the WebUI puts every page's cards in both tabs);
    the wrapper knows the total and the whole library's counts per checkpoint class, and "show more" is there."""
    import html as html_mod
    import re

    from lib_lora.ui import pane as pane_mod

    monkeypatch.setattr(pane_mod, "WINDOW", 2)
    pane_mod._LAST.clear()
    markup = _pane_markup("txt2img")
    cards = _Cards(markup)
    assert list(cards.cards) == ["a/dup", "b/dup"]  # name order, the first window
    assert cards.pane["data-lss-total"] == "5" and cards.pane["data-lss-window"] == "2"
    assert re.search(r'class="lss-pane-more"[^>]*data-shown="2" data-matched="5">2 of 5 shown', markup)
    counts = json.loads(html_mod.unescape(re.search(r'data-lss-counts="([^"]*)"', markup).group(1)))
    classes = json.loads(cards.pane["data-lss-classes"])
    sd15, sdxl = str(classes["sd15.safetensors"]), str(classes["sdxl.safetensors"])
    assert counts[sd15]["incompatible"] == 2 and counts[sdxl]["incompatible"] == 3  # myxl+b/dup vs 3 SD1.5
    assert counts["-1"]["unknown"] == 5
    assert cards.pane["data-lss-incompatible"] == str(counts[sd15]["incompatible"])
    # The rest, through what the API's pane/cards route answers.
    model = pane_mod.pane_for_host(webui.host())
    found = pane_mod.window_json(model, "red coat")
    assert found["matched"] == 1 and 'data-name="zk_alice"' in found["html"]
    assert "<lora:zk_alice:" in html_mod.unescape(found["html"])
    only = pane_mod.window_json(model, "", "sdxl.safetensors [0123abcd]", True)
    assert only["matched"] == 2 and 'data-name="myxl_style"' in only["html"]
    # Another checkpoint selected: the API's windows reuse the pane (no rebuild of every card).
    webui.select_checkpoint("sdxl.safetensors")
    assert pane_mod.pane_for_host(webui.host(), any_selection=True) is model
    assert pane_mod.pane_for_host(webui.host()) is not model
