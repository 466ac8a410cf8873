"""IP-Adapter hand-off: model detection and the plan (core), and the unit reaching ControlNet's arguments
through stand-ins shaped like sd-webui-controlnet's ``external_code`` and Forge's ``lib_controlnet``
(the real ones need a WebUI: see tests/test_webui_real.py)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from factory import make_checkpoint, make_lora, png_bytes

from lib_lora.characters import create_character, load_character, update_prompts
from lib_lora.characters.ipadapter import (
    A1111,
    FORGE,
    choose_model,
    classify,
    detect_models,
    plan_reference,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_models_are_detected_by_name(tmp_path: Path) -> None:
    cn = tmp_path / "ControlNet"
    for name in ("ip-adapter_sd15.safetensors", "ip-adapter-plus_sd15.safetensors", "ip-adapter_sdxl.safetensors",
                 "ip-adapter_sdxl_vit-h.safetensors", "ip-adapter-faceid_sd15.bin", "control_v11p_sd15_canny.pth",
                 "sub/ip-adapter-plus_sdxl_vit-h.safetensors"):
        _touch(cn / name)
    models = detect_models([cn, tmp_path / "missing"])
    names = [Path(m.path).name for m in models]
    assert "control_v11p_sd15_canny.pth" not in names and len(names) == 6
    assert choose_model(models, "sd1").stem == "ip-adapter_sd15"  # type: ignore[union-attr]
    assert choose_model(models, "sdxl").stem == "ip-adapter_sdxl"  # type: ignore[union-attr]
    assert classify("x/ip-adapter_sdxl_vit-h.safetensors").encoder == "h"  # type: ignore[union-attr]
    assert classify("x/ip-adapter_sdxl.safetensors").encoder == "g"  # type: ignore[union-attr]
    assert classify("x/ip-adapter-faceid_sd15.bin").faceid  # type: ignore[union-attr]
    assert choose_model([m for m in models if m.faceid], "sd1") is None


def test_plan_says_what_is_missing(tmp_path: Path) -> None:
    char = create_character(tmp_path / "characters", "hero", trigger="h")
    plan = plan_reference(char, A1111, "sd1", [], True)
    assert plan.unit is None and "there is none in" in plan.message
    (Path(char.reference_folder) / "front.png").write_bytes(png_bytes())
    char = load_character(char.folder)
    plan = plan_reference(char, A1111, "sd1", [], False)
    assert plan.unit is None and "sd-webui-controlnet" in plan.message
    plan = plan_reference(char, FORGE, "sdxl", [], True)
    assert plan.unit is None and "ip-adapter_sdxl_vit-h.safetensors" in plan.message and "models/ControlNet" in plan.message
    models = detect_models([_touch(tmp_path / "cn" / "ip-adapter_sd15.safetensors").parent])
    a = plan_reference(char, A1111, "sd1", models, True).unit
    f = plan_reference(char, FORGE, "sd1", models, True).unit
    assert a is not None and a.module == "ip-adapter_clip_sd15" and a.image.endswith("front.png") and a.weight == 0.7
    assert f is not None and f.module == "CLIP-ViT-H (IPAdapter)"
    update_prompts(char, {"reference": "nope.png"})
    assert "there is none" in plan_reference(load_character(char.folder), A1111, "sd1", models, True).message


# -- glue -----------------------------------------------------------------------------------------


@dataclass
class FakeUnit:  # the fields both ControlNets' ControlNetUnit have
    enabled: bool = True
    module: str = "None"
    model: str = "None"
    weight: float = 1.0
    image: Any = None


class FakeScript:
    def __init__(self, title: str, args_from: int, args_to: int) -> None:
        self._title, self.args_from, self.args_to = title, args_from, args_to

    def title(self) -> str:
        return self._title


@dataclass
class FakeP:
    prompt: str
    script_args: tuple[Any, ...]
    scripts: Any
    styles: list[str] = field(default_factory=list)
    hr_prompt: str = ""
    extra_generation_params: dict[str, Any] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    def comment(self, text: str) -> None:
        self.comments.append(text)


def _a1111_module(titles: list[str]) -> types.ModuleType:
    """Shaped like sd-webui-controlnet's scripts/external_code.py (the functions LoRA Studio calls)."""
    m = types.ModuleType("extensions.sd-webui-controlnet.scripts.external_code")
    m.ControlNetUnit = FakeUnit  # type: ignore[attr-defined]

    def cn_script(p: Any) -> Any:
        return next(s for s in p.scripts.alwayson_scripts if s.title().lower() == "controlnet")

    def get_all_units_in_processing(p: Any) -> list[Any]:
        s = cn_script(p)
        return list(p.script_args[s.args_from:s.args_to])

    def update_cn_script_in_processing(p: Any, units: list[Any]) -> None:
        s = cn_script(p)
        args = list(p.script_args)
        args[s.args_from:s.args_to] = units
        s.args_to = s.args_from + len(units)
        p.script_args = tuple(args)

    m.get_all_units_in_processing = get_all_units_in_processing  # type: ignore[attr-defined]
    m.update_cn_script_in_processing = update_cn_script_in_processing  # type: ignore[attr-defined]
    m.get_models = lambda update=False: ["None", *titles]  # type: ignore[attr-defined]
    return m


@pytest.fixture
def standin(tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from webui_standin.harness import StandinWebUI

    w = StandinWebUI(tmp_path / "webui", flavor="a1111")
    make_checkpoint(w.ckpt_dir, "sd15", "ckpt-sd1")
    root = w.lora_dir / "characters"
    create_character(root, "hero", trigger="herotok")
    make_lora(root / "hero" / "lora", "hero_v1")
    (root / "hero" / "reference" / "front.png").write_bytes(png_bytes())
    update_prompts(load_character(root / "hero"), {"use_reference": True})
    create_character(root, "plain", trigger="p")
    w.start()
    w.select_checkpoint("sd15.safetensors")
    w.wait_for_index()
    import modules.paths

    yield w, Path(modules.paths.models_path) / "ControlNet"
    w.stop()
    sys.modules.pop("extensions.sd-webui-controlnet.scripts.external_code", None)


def test_a1111_unit_reaches_controlnet_arguments(standin: Any) -> None:
    from lib_lora.webui import ipadapter

    w, cn_dir = standin
    runner = types.SimpleNamespace(alwayson_scripts=[FakeScript("LoRA Studio", 0, 0), FakeScript("ControlNet", 1, 3),
                                                     FakeScript("Other", 3, 4)])
    user_unit = FakeUnit(enabled=True, module="canny", model="control_canny [abc]")
    p = FakeP("<char:hero> at the beach", ("x", user_unit, FakeUnit(enabled=False), "other"), runner)

    ipadapter.before_process_hook(p)  # no ControlNet: the install message
    assert any("sd-webui-controlnet" in c for c in p.comments)

    sys.modules["extensions.sd-webui-controlnet.scripts.external_code"] = _a1111_module(["ip-adapter_sd15 [6a3f6166]"])
    p.comments.clear()
    ipadapter.before_process_hook(p)  # ControlNet, but no model file
    assert any("download ip-adapter_sd15.safetensors" in c for c in p.comments)

    _touch(cn_dir / "ip-adapter_sd15.safetensors")
    p.comments.clear()
    ipadapter.before_process_hook(p)
    assert not p.comments
    units = p.script_args[1:3]
    assert units[0] is user_unit  # the user's enabled unit is kept
    ours = units[1]
    assert ours.enabled and ours.module == "ip-adapter_clip_sd15" and ours.model == "ip-adapter_sd15 [6a3f6166]"
    assert ours.weight == 0.7 and ours.image.shape == (8, 8, 3)
    assert p.script_args[3] == "other"
    assert p.extra_generation_params["Character reference"].startswith("hero: front.png (ip-adapter_clip_sd15")

    q = FakeP("<char:plain> x", ("x", FakeUnit(enabled=False)), types.SimpleNamespace(
        alwayson_scripts=[FakeScript("ControlNet", 1, 2)]))
    ipadapter.before_process_hook(q)  # "use reference" is off for this character
    assert q.script_args[1].enabled is False and not q.comments

    # external_code imports, but the ControlNet script failed to load (seen in a real A1111 whose
    # controlnet.py raised on import): said plainly, nothing added
    broken = FakeP("<char:hero> x", ("x", FakeUnit(enabled=False)), types.SimpleNamespace(
        alwayson_scripts=[FakeScript("LoRA Studio", 0, 1)]))
    ipadapter.before_process_hook(broken)
    assert broken.script_args[1].enabled is False
    assert any("failed to load" in c and "controlnet" in c for c in broken.comments), broken.comments


def test_forge_unit_goes_into_the_script_args_slice(standin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lib_lora.webui import ipadapter

    w, cn_dir = standin
    model = _touch(cn_dir / "ip-adapter_sd15.safetensors")
    ext = types.SimpleNamespace(ControlNetUnit=FakeUnit)
    state = types.SimpleNamespace(controlnet_filename_dict={"None": "x"})

    def update_controlnet_filenames() -> None:  # as Forge's: rebinds the dict
        state.controlnet_filename_dict = {"None": "x", "ip-adapter_sd15 [6a3f6166]": str(model)}

    state.update_controlnet_filenames = update_controlnet_filenames
    monkeypatch.setattr(ipadapter, "forge_controlnet", lambda: (ext, state))
    monkeypatch.setattr(w.host(), "kind", "forge")
    runner = types.SimpleNamespace(alwayson_scripts=[FakeScript("ControlNet", 1, 4)])
    p = FakeP("<char:hero>", ("x", {"enabled": True, "module": "canny"}, FakeUnit(enabled=False),
                              FakeUnit(enabled=False)), runner)
    ipadapter.before_process_hook(p)
    ours = p.script_args[2]
    assert isinstance(p.script_args, tuple) and p.script_args[1] == {"enabled": True, "module": "canny"}
    assert ours.enabled and ours.module == "CLIP-ViT-H (IPAdapter)" and ours.model == "ip-adapter_sd15 [6a3f6166]"
    assert ours.image.shape == (8, 8, 3) and ours.image.dtype.name == "uint8"
    assert p.script_args[3].enabled is False

    full = FakeP("<char:hero>", ("x", FakeUnit(enabled=True)), types.SimpleNamespace(
        alwayson_scripts=[FakeScript("ControlNet", 1, 2)]))
    ipadapter.before_process_hook(full)
    assert any("every ControlNet unit is in use" in c for c in full.comments)
