"""LoRA Studio inside a real WebUI (A1111 v1.10.x or Forge): skipped unless ``WEBUI_DIR`` is set.

``WEBUI_DIR`` is a WebUI checkout (with its ``repositories/`` in place); ``WEBUI_PYTHON`` the python of its
venv (default ``$WEBUI_DIR/venv/bin/python``). For A1111, the sd-webui-controlnet extension (a checkout at
``WEBUI_CONTROLNET_DIR``, else ``$WEBUI_DIR/extensions/sd-webui-controlnet``, its requirements installed in
that venv) is linked in when present, for the IP-Adapter tests; Forge has ControlNet built in. tests/webui_real_runner.py runs in a subprocess with that
python: the real ``initialize``, ``scripts``, ``processing``, ``extra_networks``, built-in Lora and HTTP API
handlers; the model and the sampler are stubbed (no weights), the text encoder's input is tokenised with
the real CLIP tokenizer from tests/fixtures. See tests/run_webui_suite.sh.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
WEBUI_DIR = os.environ.get("WEBUI_DIR", "")

pytestmark = [
    pytest.mark.webui,
    pytest.mark.skipif(not WEBUI_DIR, reason="set WEBUI_DIR (and WEBUI_PYTHON) to run against a real WebUI"),
]

FORGE = (Path(WEBUI_DIR) / "modules_forge").is_dir() if WEBUI_DIR else False


def _a1111_controlnet() -> Path | None:
    """The sd-webui-controlnet checkout an A1111 run links in, or ``None`` (Forge: built in)."""
    if not WEBUI_DIR or FORGE:
        return None
    given = os.environ.get("WEBUI_CONTROLNET_DIR")
    folder = Path(given) if given else Path(WEBUI_DIR) / "extensions" / "sd-webui-controlnet"
    return folder if (folder / "scripts" / "external_code.py").is_file() else None


SD15 = "kohya-outputs/sd15-kohya-dim4-mychar.safetensors"
SDXL = "kohya-outputs/sdxl-kohya-unetonly.safetensors"

SCENARIOS: dict[str, Any] = {
    "basic": {"request": {"prompt": "a portrait <lora:zk_alice:0.8>", "negative_prompt": "lowres"}},
    "batch2": {
        "kind": "direct",
        "request": {
            "prompt": ["girl <lora:zk_alice:0.5>", "boy <lora:chars/kotori:1>"],
            "negative_prompt": ["", ""],
            "batch_size": 2,
        },
    },
    "styles": {"request": {"prompt": "on a bench", "styles": ["alice"]}},
    "hires": {
        "request": {
            "prompt": "a cat <lora:chars/kotori:0.6>",
            "hr_prompt": "a cat, detailed <lora:zk_alice:0.3>",
            "enable_hr": True,
            "hr_upscaler": "Latent",
            "hr_scale": 2,
            "denoising_strength": 0.5,
        }
    },
    "img2img": {"kind": "img2img", "request": {"prompt": "<lora:chars/kotori:0.9> rain", "denoising_strength": 0.5}},
    "missing": {"request": {"prompt": "<lora:zk_alce:1> <lora:chars/kotori:1> x"}},
    "dup": {"request": {"prompt": "<lora:b/dup:0.9> x"}, "options": {"lora_studio_incompatible": "Allow silently"}},
    "skip_incompatible": {
        "request": {"prompt": "<lora:xl/myxl_style:1> <lora:zk_alice:0.5> x"},
        "options": {"lora_studio_incompatible": "Skip the LoRA"},
    },
    "lyco": {"request": {"prompt": "<lyco:chars/kotori:0.5> x"}},
    "disabled": {"request": {"prompt": "<lora:zk_alice:0.8> x"}, "options": {"lora_studio_enabled": False}},
    "char": {
        "request": {
            "prompt": "<char:HERO> at the beach",
            "negative_prompt": "lowres",
            "styles": ["hero_v1"],
            "batch_size": 2,
            "enable_hr": True,
            "hr_upscaler": "Latent",
            "hr_scale": 2,
            "denoising_strength": 0.5,
        }
    },
    "char_img2img": {"kind": "img2img", "request": {"prompt": "<char:hero:v1:0.5> rain", "denoising_strength": 0.5}},
    "char_unknown": {"request": {"prompt": "<char:heor> x"}},
    "char_reference": {"request": {"prompt": "<char:refchar> x"}},
    "paste_dup": {"kind": "paste", "from": "dup"},
    "regen_dup": {"from_paste": "paste_dup", "options": {"lora_studio_incompatible": "Allow silently"}},
    "paste_dup_fresh": {"kind": "paste", "from": "dup", "fresh": True},
    "regen_dup_fresh": {"from_paste": "paste_dup_fresh", "options": {"lora_studio_incompatible": "Allow silently"}},
}


def _webui_python() -> str:
    return os.environ.get("WEBUI_PYTHON") or str(Path(WEBUI_DIR) / "venv" / "bin" / "python")


def _runner(root: Path, config: dict[str, Any], extension: Path = REPO) -> tuple[list[str], dict[str, str]]:
    """The runner's command line (its config written next to it) and environment (offline); with another
    ``extension`` checkout, its ``lib_lora`` is the one imported (benchmarks/pane_webui.py --against)."""
    cfg = root / "config.json"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("LORA_STUDIO_DATA", None)
    if extension.resolve() != REPO.resolve():
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO.resolve()]
        env["PYTHONPATH"] = os.pathsep.join([str(extension), *paths])
    return [_webui_python(), str(REPO / "tests" / "webui_real_runner.py"), str(cfg)], env


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("webui-real")
    lora, ckpt, data = root / "Lora", root / "Stable-diffusion", root / "data"
    for d in (lora / "chars", lora / "xl", lora / "a", lora / "b", ckpt, data / "extensions"):
        d.mkdir(parents=True)
    shutil.copyfile(fixtures_dir / SD15, lora / "zk_alice.safetensors")
    shutil.copyfile(fixtures_dir / "sidecars" / "alice.json", lora / "zk_alice.json")
    shutil.copyfile(fixtures_dir / SD15, lora / "chars" / "kotori.safetensors")
    shutil.copyfile(fixtures_dir / SDXL, lora / "xl" / "myxl_style.safetensors")
    shutil.copyfile(fixtures_dir / SD15, lora / "a" / "dup.safetensors")
    shutil.copyfile(fixtures_dir / SDXL, lora / "b" / "dup.safetensors")
    hero = lora / "characters" / "hero"  # a character: two versions, its trigger in prompts.txt
    (hero / "lora").mkdir(parents=True)
    for n in (1, 2):
        shutil.copyfile(fixtures_dir / SD15, hero / "lora" / f"hero_v{n}.safetensors")
    (hero / "prompts.txt").write_text("my notes stay\ntrigger: herotok\n", encoding="utf-8")
    refchar = lora / "characters" / "refchar"  # IP-Adapter only: a reference image, no LoRA, no model file
    (refchar / "reference").mkdir(parents=True)
    sys.path.insert(0, str(REPO / "tests"))
    from factory import png_bytes

    (refchar / "reference" / "front.png").write_bytes(png_bytes())
    (refchar / "prompts.txt").write_text("trigger: reftok\nuse reference: yes\n", encoding="utf-8")
    controlnet = root / "ControlNet"  # the ControlNet setting's extra model folder, for one scenario only:
    controlnet.mkdir()  # a stand-in IP-Adapter file, found by name (nothing loads it: rendering is not tested)
    (controlnet / "ip-adapter_sd15.safetensors").write_bytes(b"not weights")
    scenarios = dict(SCENARIOS, char_reference_unit={
        "request": {"prompt": "<char:refchar> x"}, "controlnet_probe": True,
        "options": {"control_net_models_path": str(controlnet)},
    })
    sys.path.insert(0, str(REPO / "tests"))
    from factory import make_checkpoint

    make_checkpoint(ckpt, "sd15", "ckpt-sd1")
    epochs = root / "train-out"  # a training job's output folder, outside the LoRA folders
    epochs.mkdir()
    shutil.copyfile(fixtures_dir / SD15, epochs / "hero-000001.safetensors")
    (data / "extensions" / "lora-studio").symlink_to(REPO, target_is_directory=True)
    controlnet_ext = _a1111_controlnet()
    if controlnet_ext is not None:
        (data / "extensions" / "sd-webui-controlnet").symlink_to(controlnet_ext, target_is_directory=True)
    out = root / "out.json"
    config = {
        "data_dir": str(data),
        "lora_dir": str(lora),
        "ckpt_dir": str(ckpt),
        "checkpoint": "sd15.safetensors",
        "clip_tokenizer": str(fixtures_dir / "clip-tokenizer"),
        "out": str(out),
        "epoch_dir": str(epochs),
        "styles": [
            {"name": "alice", "prompt": "{prompt}, <lora:zk_alice:0.7>", "negative": "bad hands"},
            {"name": "hero_v1", "prompt": "{prompt}, <char:hero:v1>", "negative": "bad hands"},
        ],
        "scenarios": scenarios,
    }
    command, env = _runner(root, config)
    log = root / "webui.log"
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.run(
            command, cwd=WEBUI_DIR, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=900, check=False
        )
    if not out.exists():
        pytest.fail(f"the runner wrote no result (exit {proc.returncode}); log: {log}\n{log.read_text()[-3000:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    result["_root"] = str(root)
    result["_log"] = str(log)
    assert not result["errors"], result["errors"][0] + "\n" + log.read_text()[-3000:]
    return result


def _scenario(run: dict[str, Any], name: str) -> dict[str, Any]:
    s = run["scenarios"][name]
    assert "error" not in s, s.get("error")
    return s


def _names(loaded: list[list[Any]]) -> list[str]:
    return [Path(entry[1]).relative_to(Path(entry[1]).parents[0]).name for entry in loaded]


def _files(run: dict[str, Any], passes: list[dict[str, Any]], hr: bool = False) -> list[str]:
    root = Path(run["_root"]) / "Lora"
    loaded = [x for x in passes if x["hr"] == hr][0]["loaded"]
    return [Path(f).relative_to(root).as_posix() for _, f in loaded]


def _entry(infotext: str) -> str:
    last = infotext.strip().splitlines()[-1]
    assert "LoRA Studio: " in last, last
    return last


def test_extension_loaded_into_the_real_webui(run: dict[str, Any]) -> None:
    assert run["lora_studio_script"], "LoraStudioScript is not among the always-on txt2img scripts"
    assert "lora_studio_enabled" in run["settings_keys"] and "lora_studio_incompatible" in run["settings_keys"]
    builtin = Path(run["builtin_networks"])
    assert builtin.name == "networks.py" and builtin.parent.name in ("Lora", "sd_forge_lora")
    assert run["scan"]["state"] == "done" and run["scan"]["total"] == 7
    assert "/lora-studio/v1/loras" in run["api_routes"], run["api_routes"]  # mounted on the WebUI's app
    assert run["ui_tabs"] == ["LoRA Studio", "Train LoRA"], run["ui_tabs"]  # browser panel and Train tab, built with the WebUI's gradio
    print("WebUI:", run["flavor"], run["versions"])


def test_selected_checkpoint_read_without_loading(run: dict[str, Any]) -> None:
    sel = run["selected_checkpoint"]
    assert Path(sel["path"]).name == "sd15.safetensors" and sel["architecture"] == "sd1"
    assert sel["model_before"] == sel["model_after"]  # nothing was loaded by LoRA Studio
    assert sel["model_after"] in ("NoneType", "FakeInitialModel")


def test_txt2img_through_the_api(run: dict[str, Any]) -> None:
    s = _scenario(run, "basic")
    assert s["all_prompts"] == ["a portrait zk_alice, red coat, <lora:zk_alice:0.8>"]
    assert s["all_negative_prompts"] == ["lowres, blurry, extra fingers"]
    assert _files(run, s["loaded_per_pass"]) == ["zk_alice.safetensors"]
    # what reached the text encoder: the WebUI stripped the tag, the trigger words stayed
    assert ["a portrait zk_alice, red coat,"] in s["encoded"]
    assert "LoRA Studio: " in _entry(s["infotexts"][0]) and "words: zk_alice, red coat" in s["infotexts"][0]


def test_batch_with_different_prompts(run: dict[str, Any]) -> None:
    s = _scenario(run, "batch2")
    assert s["all_prompts"] == ["girl zk_alice, red coat, <lora:zk_alice:0.5>", "boy mychar, <lora:kotori:1>"]
    assert _files(run, s["loaded_per_pass"]) == ["zk_alice.safetensors"]  # the WebUI uses the first prompt's
    assert any("different LoRAs" in c for c in s["comments"])
    assert all("different LoRAs" in info for info in s["infotexts"])


def test_styles(run: dict[str, Any]) -> None:
    s = _scenario(run, "styles")
    assert s["all_prompts"] == ["on a bench, zk_alice, red coat, <lora:zk_alice:0.7>"]
    assert s["all_negative_prompts"] == ["bad hands, blurry, extra fingers"]
    assert _files(run, s["loaded_per_pass"]) == ["zk_alice.safetensors"]


def test_hires_fix(run: dict[str, Any]) -> None:
    s = _scenario(run, "hires")
    assert s["all_prompts"] == ["a cat mychar, <lora:kotori:0.6>"]
    assert s["all_hr_prompts"] == ["a cat, detailed zk_alice, red coat, <lora:zk_alice:0.3>"]
    assert _files(run, s["loaded_per_pass"]) == ["chars/kotori.safetensors"]
    assert _files(run, s["loaded_per_pass"], hr=True) == ["zk_alice.safetensors"]
    assert 'Hires prompt: "a cat, detailed zk_alice, red coat, <lora:zk_alice:0.3>"' in s["infotexts"][0]


def test_img2img(run: dict[str, Any]) -> None:
    s = _scenario(run, "img2img")
    assert s["all_prompts"] == ["mychar, <lora:kotori:0.9> rain"]
    assert _files(run, s["loaded_per_pass"]) == ["chars/kotori.safetensors"]


def test_missing_name_removed_other_loras_still_load(run: dict[str, Any]) -> None:
    s = _scenario(run, "missing")
    assert "zk_alce" not in s["all_prompts"][0]
    assert _files(run, s["loaded_per_pass"]) == ["chars/kotori.safetensors"]
    assert any("zk_alce" in c and "not found" in c for c in s["comments"])
    assert "missing zk_alce" in s["infotexts"][0]


def test_shadowed_duplicate_loads_the_named_file(run: dict[str, Any]) -> None:
    s = _scenario(run, "dup")
    assert _files(run, s["loaded_per_pass"]) == ["b/dup.safetensors"]
    if run["flavor"] == "forge":  # what Forge's patcher was handed (it skips the work when unchanged)
        root = Path(run["_root"]) / "Lora"
        assert [Path(f).relative_to(root).as_posix() for f, *_ in s["forge_applied"]] in ([], ["b/dup.safetensors"])


def test_incompatible_skipped(run: dict[str, Any]) -> None:
    s = _scenario(run, "skip_incompatible")
    assert "myxl_style" not in s["all_prompts"][0]
    assert _files(run, s["loaded_per_pass"]) == ["zk_alice.safetensors"]
    assert any(c.startswith("LoRA Studio: skipped xl/myxl_style") for c in s["comments"]), s["comments"]
    assert "skipped xl/myxl_style" in s["infotexts"][0]


def test_disabled_passes_through(run: dict[str, Any]) -> None:
    s = _scenario(run, "disabled")
    assert s["all_prompts"] == ["<lora:zk_alice:0.8> x"]
    assert "LoRA Studio" not in s["infotexts"][0]
    assert not any(c.startswith("LoRA Studio") for c in s["comments"])


@pytest.mark.parametrize("suffix", ["", "_fresh"])
def test_png_info_round_trip(run: dict[str, Any], suffix: str) -> None:
    """PNG Info -> Send to txt2img -> Generate gives the same prompt and the same file. "_fresh": the
    built-in tables rebuilt as after a restart, so the built-in's paste handler renames the shadowed
    LoRA by its hash and LoRA Studio's handler must put its name back."""
    first = _scenario(run, "dup")
    pasted = _scenario(run, "paste_dup" + suffix)["params"]
    assert pasted["Prompt"] == first["all_prompts"][0]
    again = _scenario(run, "regen_dup" + suffix)
    assert again["all_prompts"] == first["all_prompts"]
    assert again["all_negative_prompts"] == first["all_negative_prompts"]
    assert _files(run, again["loaded_per_pass"]) == _files(run, first["loaded_per_pass"])


def test_lyco_tag_loads(run: dict[str, Any]) -> None:
    """A1111 registers <lyco:> as an alias of the built-in Lora; Forge does not (LoRA Studio writes <lora:>)."""
    s = _scenario(run, "lyco")
    expected = "<lora:kotori:0.5>" if run["flavor"] == "forge" else "<lyco:kotori:0.5>"
    assert expected in s["all_prompts"][0]
    assert _files(run, s["loaded_per_pass"]) == ["chars/kotori.safetensors"]


def test_vram_queue_and_access(run: dict[str, Any]) -> None:
    assert run["vram"]["freed"], run["vram"]  # A1111: model to CPU and back; Forge: unload_all_models
    assert run["queue_lock_held"]  # nobody else could take the WebUI's queue lock meanwhile
    assert run["remote"] == {"is_remote": False, "auth": False}


DRIFT = "different person, character change, inconsistent appearance"
HERO = "mychar, <lora:hero_v2:1>, (herotok:1.3), same character, consistent appearance, at the beach, <lora:hero_v1:1>"


def test_char_tag_txt2img_styles_hires_batch(run: dict[str, Any]) -> None:
    s = _scenario(run, "char")
    assert s["all_prompts"] == [HERO, HERO]
    assert s["all_hr_prompts"] == [HERO, HERO]
    assert s["all_negative_prompts"] == [f"lowres, bad hands, {DRIFT}"] * 2
    assert _files(run, s["loaded_per_pass"]) == ["characters/hero/lora/hero_v2.safetensors",
                                                 "characters/hero/lora/hero_v1.safetensors"]
    assert _files(run, s["loaded_per_pass"], hr=True) == _files(run, s["loaded_per_pass"])
    info = s["infotexts"][0]
    assert "Characters: hero v2, hero v1" in info or 'Characters: "hero v2, hero v1"' in info
    assert info.startswith(HERO) and info.count("different person") == 1


def test_char_tag_img2img_and_unknown(run: dict[str, Any]) -> None:
    s = _scenario(run, "char_img2img")
    assert s["all_prompts"] == ["mychar, <lora:hero_v1:0.5>, (herotok:1.3), same character, consistent appearance, rain"]
    assert _files(run, s["loaded_per_pass"]) == ["characters/hero/lora/hero_v1.safetensors"]
    u = _scenario(run, "char_unknown")
    assert "<char" not in u["all_prompts"][0]
    assert any("character 'heor' not found (did you mean hero?)" in c for c in u["comments"])


def test_char_reference_without_model_says_what_to_install(run: dict[str, Any]) -> None:
    s = _scenario(run, "char_reference")
    assert s["all_prompts"] == ["(reftok:1.3), same character, consistent appearance, x"]
    with_controlnet = run["flavor"] == "forge" or _a1111_controlnet() is not None
    wanted = "download ip-adapter_sd15.safetensors" if with_controlnet else "install the sd-webui-controlnet extension"
    assert any(wanted in c for c in s["comments"]), s["comments"]


def test_char_reference_unit_reaches_the_real_controlnet(run: dict[str, Any]) -> None:
    """Issue 11 part 5: with an IP-Adapter model file present, ``<char:refchar>`` gets an enabled unit in the
    ControlNet script's slice of ``p.script_args``, read back by the real ControlNet's ``get_enabled_units``
    and image reader: Forge's built-in ``lib_controlnet``, or A1111's sd-webui-controlnet (linked in when a
    checkout is found, see the module docstring)."""
    forge = run["flavor"] == "forge"
    if not forge and _a1111_controlnet() is None:
        pytest.skip("no sd-webui-controlnet checkout: set WEBUI_CONTROLNET_DIR or put it in $WEBUI_DIR/extensions")
    s = _scenario(run, "char_reference_unit")
    cn = s["controlnet"]
    assert "error" not in cn, cn["error"]
    assert len(cn["calls"]) == 1, cn
    call = cn["calls"][0]
    assert call["args_in_slice"] and call["slice_len"] == cn["span"][1] - cn["span"][0]
    [unit] = call["enabled"]  # the API's default units are all disabled: ours took the first
    assert call["enabled_at"] == [0], call["enabled_at"]
    if forge:
        assert cn["script"].endswith("ControlNetForForgeOfficial"), cn["script"]
        assert unit["type"] == "lib_controlnet.external_code.ControlNetUnit"
        module = "CLIP-ViT-H (IPAdapter)"
    else:
        assert cn["script"].endswith(".Script") and "controlnet" in cn["script"], cn["script"]
        assert call["external_code"].endswith("external_code"), call["external_code"]
        assert unit["type"] == "internal_controlnet.args.ControlNetUnit", unit["type"]  # what external_code exports
        module = "ip-adapter_clip_sd15"
    assert unit["module"] == module and unit["preprocessor_known"], unit
    assert unit["model"].startswith("ip-adapter_sd15 [") and unit["model_file"].endswith("ip-adapter_sd15.safetensors")
    assert unit["weight"] == 0.7 and unit["image_shape"][:2] == [8, 8], unit
    # ControlNet's own image reader took it (sd-webui-controlnet hands a CLIP unit RGB plus its mask channel)
    assert call["input_images"] == [[[8, 8, 3 if forge else 4]]], call["input_images"]
    assert not any("IP-Adapter" in c or "reference image" in c for c in s["comments"]), s["comments"]
    info = s["infotexts"][0].strip().splitlines()[-1]
    assert f'Character reference: "refchar: front.png ({module}, ip-adapter_sd15 [' in info, info


def test_consistency_sheet_in_the_real_webui(run: dict[str, Any]) -> None:
    """Rows, columns and labels of a sheet rendered through the real processing (not the art)."""
    from lib_lora.consistency.scenes import trainer_scenes

    s = run["consistency"]
    assert "error" not in s, s.get("error")
    assert s["state"] == "succeeded", s["message"]
    assert s["rows"] == [sc.label for sc in trainer_scenes()]
    assert s["columns"] == ["zk_alice\nw 0.5", "zk_alice\nw 1", "kotori\nw 0.5", "kotori\nw 1"]
    assert len(s["cells"]) == 20 and all(c["image"] and c["score"] is None for c in s["cells"])
    assert s["score_message"].startswith("score skipped")
    assert len(s["loaded"]) == 20 and {tuple(x) for x in s["loaded"]} == {("zk_alice.safetensors",), ("kotori.safetensors",)}


def test_consistency_sheet_stages_epoch_files(run: dict[str, Any]) -> None:
    """A character's version and a training job's epoch file: the epoch file is staged into the LoRA folder,
    loaded by the real built-in Lora under its staged name, and gone (from disk and the list) afterwards."""
    s = run["consistency_epochs"]
    assert "error" not in s, s.get("error")
    assert s["state"] == "succeeded", s["message"]
    assert s["cells"] == 10 and len(s["loaded"]) == 10, s
    root = Path(run["_root"]) / "Lora"
    files = {Path(f).relative_to(root).as_posix() for cell in s["loaded"] for f in cell}
    staged = sorted(f for f in files if f.startswith("LoRA Studio/"))
    assert files - set(staged) == {"characters/hero/lora/hero_v1.safetensors"}, files
    assert len(staged) == 1 and staged[0].endswith("_hero-000001.safetensors"), staged
    assert not (root / "LoRA Studio").exists() and s["available_after"] == []
    assert Path(s["sheet"]).is_relative_to(root / "characters" / "hero"), s["sheet"]
    print("columns:", s["columns"])


def test_tagger_signatures_and_messages(run: dict[str, Any]) -> None:
    t = run["taggers"]
    assert "error" not in t, t.get("error")
    assert t["deepbooru_sig"]["tag"] == ["pil_image"] and t["deepbooru_sig"]["start"] == []
    assert t["deepbooru_sig"]["tag_multi"][:2] == ["pil_image", "force_disable_ranks"]
    assert t["interrogate_sig"] == ["pil_image"]
    assert set(t["available"]) == {"deepbooru", "interrogate"}
    assert "DeepDanbooru could not start" in t["deepbooru"] and "weights absent" in t["deepbooru"]
    assert "interrogator failed" in t["interrogate"]


# ------------------------------------------------------------------------------------------------
# the extra-networks pane in the real UI (headless Debian Chromium through Playwright)


@pytest.fixture(scope="module")
def ui_url(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Any:
    """The real WebUI's UI on a loopback port, with an SD 1.5 and an SDXL LoRA, SD 1.5 selected."""
    pytest.importorskip("playwright.sync_api")
    root = tmp_path_factory.mktemp("webui-ui")
    lora, ckpt = _ui_library(root, fixtures_dir)
    try:
        with serving_ui(root, lora, ckpt, fixtures_dir / "clip-tokenizer") as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


def _ui_library(root: Path, fixtures_dir: Path) -> tuple[Path, Path]:
    """An SD 1.5 LoRA (with its A1111 sidecar) and an SDXL one; an SD 1.5 and an SDXL checkpoint."""
    lora, ckpt = root / "Lora", root / "Stable-diffusion"
    for d in (lora / "xl", ckpt):
        d.mkdir(parents=True)
    shutil.copyfile(fixtures_dir / SD15, lora / "zk_alice.safetensors")
    shutil.copyfile(fixtures_dir / "sidecars" / "alice.json", lora / "zk_alice.json")
    shutil.copyfile(fixtures_dir / SDXL, lora / "xl" / "myxl_style.safetensors")
    sys.path.insert(0, str(REPO / "tests"))
    from factory import make_checkpoint

    make_checkpoint(ckpt, "sd15", "ckpt-sd1")
    make_checkpoint(ckpt, "sdxl", "ckpt-sdxl")
    return lora, ckpt


@contextlib.contextmanager
def serving_ui(root: Path, lora: Path, ckpt: Path, clip_tokenizer: Path, timeout: float = 900,
               extension: Path = REPO, options: dict[str, Any] | None = None) -> Iterator[str]:
    """The real WebUI's UI (tests/webui_real_runner.py ``serve_ui``) over ``lora`` / ``ckpt`` with LoRA Studio
    (this checkout, or ``extension``) linked into ``root/data/extensions``, SD 1.5 selected and the WebUI
    ``options`` set before the UI is built; yields its URL (also used by benchmarks/)."""
    import time

    from e2e_support import free_port, stop_process

    data = root / "data"
    (data / "extensions").mkdir(parents=True, exist_ok=True)
    link = data / "extensions" / "lora-studio"
    if link.is_symlink() and link.resolve() != extension.resolve():
        link.unlink()  # a work folder reused with another checkout of LoRA Studio: serve this one
    if not link.exists():
        link.symlink_to(extension, target_is_directory=True)
    ready, stop = root / "ui-ready", root / "ui-stop"
    ready.unlink(missing_ok=True)
    stop.unlink(missing_ok=True)
    config = {
        "data_dir": str(data), "lora_dir": str(lora), "ckpt_dir": str(ckpt), "checkpoint": "sd15.safetensors",
        "clip_tokenizer": str(clip_tokenizer), "out": str(root / "out.json"), "styles": [], "scenarios": {},
        "serve_ui": True, "ui_port": free_port(), "ui_ready": str(ready), "ui_stop": str(stop),
        "options": options or {}, "allowed_paths": [str(extension.resolve())],
    }  # fmt: skip
    command, env = _runner(root, config, extension)
    log = root / "webui-ui.log"
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(command, cwd=WEBUI_DIR, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the WebUI's UI did not start (exit {proc.poll()}); log: {log}\n"
                                       + log.read_text()[-3000:])
                time.sleep(0.5)
            yield ready.read_text(encoding="utf-8")
        finally:
            stop.touch()  # the runner closes the UI and exits by itself
            stop_process(proc, timeout=60, terminate=False)


def _pick_checkpoint(page: Any, title: str) -> None:
    """Choose a checkpoint in the WebUI's own dropdown (A1111 quicksettings, Forge's model selector)."""
    box = page.locator("#setting_sd_model_checkpoint input, .model_selection input").first
    box.click()
    box.fill(title.split(".")[0])
    page.locator("ul.options li", has_text=title).first.click()
    page.evaluate("() => document.activeElement && document.activeElement.blur()")


@pytest.mark.browser
@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_extra_networks_pane_in_the_real_ui(ui_url: str, tab: str, test_output: Path) -> None:
    """Open the tab and its pane, see the badges for an SD 1.5 and an SDXL LoRA against an SD 1.5
    checkpoint, switch the dropdown to SDXL and see them flip, click a card: tag and trigger in the prompt."""
    from e2e_support import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    flavor = "forge" if (Path(WEBUI_DIR) / "modules_forge").is_dir() else "a1111"
    card = f"#{tab}_lora_studio_cards .lss-pane-card"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            failed: list[str] = []
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("pageerror", lambda e: failed.append(f"page error: {e}"))
            page.goto(ui_url, timeout=120_000)
            page.wait_for_selector(f"#{tab}_extra_tabs", state="attached", timeout=120_000)
            try:
                page.wait_for_function("() => window.loraStudio !== undefined", timeout=30_000)
            except Exception:
                pytest.fail("javascript/lora_studio.js did not run in the WebUI page: " + "; ".join(failed[:10]))
            page.locator("#tabs > .tab-nav button, #tabs > div > button", has_text=tab).first.click()
            page.locator(f"#{tab}_extra_tabs button", has_text="LoRA Studio").first.click()
            page.wait_for_selector(f'{card}[data-name="zk_alice"]', state="visible", timeout=60_000)
            _pick_checkpoint(page, "sd15.safetensors")
            page.wait_for_function(
                f"() => document.querySelector('{card}[data-name=\"zk_alice\"]').dataset.compat === 'exact'"
            )
            alice = page.locator(f'{card}[data-name="zk_alice"] .lss-compat')
            xl = page.locator(f'{card}[data-name="myxl_style"] .lss-compat')
            assert "compatible" in alice.inner_text() and "incompatible" in xl.inner_text()
            page.screenshot(path=str(test_output / f"pane-{flavor}-{tab}-sd15.png"), full_page=True)
            _pick_checkpoint(page, "sdxl.safetensors")
            page.wait_for_function(
                f"() => document.querySelector('{card}[data-name=\"myxl_style\"]').dataset.compat === 'exact'",
                timeout=30_000,
            )
            assert "incompatible" in alice.inner_text()
            page.screenshot(path=str(test_output / f"pane-{flavor}-{tab}-sdxl.png"), full_page=True)
            page.locator(f'{card}[data-name="zk_alice"] .name').click()
            prompt = page.locator(f"#{tab}_prompt textarea").input_value()
            assert prompt.count("<lora:zk_alice:") == 1 and "red coat" in prompt, prompt  # the WebUI added nothing
            assert "blurry, extra fingers" in page.locator(f"#{tab}_neg_prompt textarea").input_value()
            page.screenshot(path=str(test_output / f"pane-{flavor}-{tab}-inserted.png"), full_page=True)
            page.locator(f'{card}[data-name="zk_alice"] .name').click()  # a second click removes them
            prompt = page.locator(f"#{tab}_prompt textarea").input_value()
            assert "<lora:" not in prompt and "red coat" not in prompt, prompt
        finally:
            browser.close()


@pytest.mark.browser
def test_extra_networks_pane_without_the_builtin_lora_page(tmp_path: Path, fixtures_dir: Path) -> None:
    """With ``lora_studio_pane_hide_builtin_lora`` on, the real UI's pane has no built-in Lora page (in Forge
    its on_before_ui runs after LoRA Studio's: the page is taken out at the first component) and LoRA
    Studio's page works."""
    pytest.importorskip("playwright.sync_api")
    from e2e_support import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    lora, ckpt = _ui_library(tmp_path, fixtures_dir)
    options = {"lora_studio_pane_hide_builtin_lora": True}
    with serving_ui(tmp_path, lora, ckpt, fixtures_dir / "clip-tokenizer", options=options) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, timeout=120_000)
            card = "#txt2img_lora_studio_cards .lss-pane-card"
            page.wait_for_selector(card, state="attached", timeout=120_000)
            titles = page.locator("#txt2img_extra_tabs > .tab-nav button").evaluate_all(
                "els => els.map(e => e.textContent.trim())")
            assert "LoRA Studio" in titles and "Lora" not in titles, titles
            assert page.locator("#txt2img_lora_cards, #img2img_lora_cards").count() == 0
            page.locator("#txt2img_extra_tabs button", has_text="LoRA Studio").first.click()
            page.locator(f'{card}[data-name="zk_alice"] .name').click()
            assert "<lora:zk_alice:" in page.locator("#txt2img_prompt textarea").input_value()
        finally:
            browser.close()
