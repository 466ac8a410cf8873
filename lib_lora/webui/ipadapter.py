"""IP-Adapter units for ``<char:NAME>`` with ``use reference: yes``: added in ``before_process`` through
the WebUI's own ControlNet code, so the next generation is guided by the character's reference image.

Its one job is reaching ControlNet; what to add is :mod:`lib_lora.characters.ipadapter`.

* A1111 + sd-webui-controlnet: its ``scripts/external_code.py`` (found among the loaded modules, else
  imported as ``extensions.<folder>.scripts.external_code`` like other extensions do):
  ``get_all_units_in_processing(p)``, ``ControlNetUnit(enabled, module, model, weight, image, …)``,
  ``get_models()`` (titles ``name [hash]``) and ``update_cn_script_in_processing(p, units)``;
* Forge's built-in ControlNet (``lib_controlnet``, no such helper): the ControlNet script's slice of
  ``p.script_args`` (``args_from:args_to``) holds its units (``ControlNetUnit`` objects or API dicts); the
  first disabled one is replaced by ours. ``global_state.update_controlnet_filenames()`` rescans the model
  folders and rebinds ``global_state.controlnet_filename_dict`` (titles ``name [hash]`` -> path); the
  unit's ``image`` is a plain HxWx3 uint8 array (its script reads ``unit.image`` as an array).

The unit takes the place of the first disabled unit and never replaces one the user enabled. Runs before
ControlNet reads its units (in ``process``). Missing ControlNet or model: one plain warning.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from lib_lora.webui.adapter import _cmd_opts, _m, _opt, host
from lib_lora.webui.hooks import _warn


def _prompt_text(p: Any) -> str:
    """The prompts of the job with styles applied (``before_process`` sees them raw)."""
    texts = [str(getattr(p, "prompt", "") or ""), str(getattr(p, "hr_prompt", "") or "")]
    styles = list(getattr(p, "styles", None) or [])
    if styles:
        try:
            shared = _m("modules.shared")
            texts.append(shared.prompt_styles.apply_styles_to_prompt(texts[0], styles))
        except Exception:
            pass
    return "\n".join(texts)


def a1111_external_code() -> Any | None:
    """sd-webui-controlnet's ``external_code`` module, or ``None`` when the extension is not there."""
    for name, module in list(sys.modules.items()):
        if name.endswith("external_code") and hasattr(module, "update_cn_script_in_processing") \
                and hasattr(module, "get_all_units_in_processing"):
            return module
    try:
        extensions = _m("modules.extensions").active()
    except Exception:
        return None
    for ext in extensions:
        if os.path.isfile(os.path.join(ext.path, "scripts", "external_code.py")) and "controlnet" in ext.name.lower():
            try:
                return importlib.import_module(f"extensions.{ext.name}.scripts.external_code")
            except Exception:
                continue
    return None


def forge_controlnet() -> tuple[Any, Any] | None:
    """Forge's ``lib_controlnet.external_code`` and ``global_state`` (``None``: not loaded)."""
    try:
        return importlib.import_module("lib_controlnet.external_code"), importlib.import_module(
            "lib_controlnet.global_state")
    except Exception:
        return None


def model_folders(flavor: str) -> list[str]:
    """Where ControlNet looks for models: ``models/ControlNet``, its settings, and (A1111) its own folder."""
    out: list[str] = []
    try:
        out.append(os.path.join(_m("modules.paths").models_path, "ControlNet"))
    except Exception:
        pass
    for extra in (_opt("control_net_models_path"), getattr(_safe_cmd_opts(), "controlnet_dir", None)):
        if extra:
            out.append(str(extra))
    if flavor == "forge":
        try:
            out.append(str(_m("modules_forge.shared").controlnet_dir))
        except Exception:
            pass
    else:
        module = a1111_external_code()
        if module is not None and getattr(module, "__file__", None):
            out.append(str(Path(module.__file__).resolve().parents[1] / "models"))
    return list(dict.fromkeys(out))


def _safe_cmd_opts() -> Any:
    try:
        return _cmd_opts()
    except Exception:
        return None


def _image(path: str) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def _title(titles: Any, stem: str) -> str | None:
    for title in titles or []:
        if str(title).split(" [", 1)[0] == stem:
            return str(title)
    return None


def _enabled(unit: Any) -> bool:
    return bool(unit.get("enabled", False) if isinstance(unit, dict) else getattr(unit, "enabled", False))


def add_unit_a1111(p: Any, unit: Any, external_code: Any) -> str:
    """Add ``unit`` (a :class:`ReferenceUnit`) through sd-webui-controlnet; returns the model title."""
    try:
        titles = external_code.get_models(update=True)
    except TypeError:
        titles = external_code.get_models()
    title = _title(titles, unit.model.stem)
    if title is None:
        raise LookupError(f"ControlNet does not list {unit.model.stem}: refresh ControlNet's model list")
    cn_unit = external_code.ControlNetUnit(
        enabled=True, module=unit.module, model=title, weight=unit.weight, image=_image(unit.image),
    )
    units = list(external_code.get_all_units_in_processing(p))
    free = next((i for i, u in enumerate(units) if not _enabled(u)), None)
    if free is None:
        units.append(cn_unit)
    else:
        units[free] = cn_unit
    external_code.update_cn_script_in_processing(p, units)
    return title


def controlnet_script(p: Any) -> Any | None:
    """The ControlNet script among this generation's always-on scripts (both WebUIs title it "ControlNet"),
    or ``None``: its module may be importable while its script failed to load."""
    return next((s for s in getattr(getattr(p, "scripts", None), "alwayson_scripts", None) or []
                 if str(s.title()).lower() == "controlnet"), None)


def add_unit_forge(p: Any, unit: Any, external_code: Any, global_state: Any) -> str:
    """Put ``unit`` into the first disabled unit of Forge's ControlNet script arguments."""
    script = controlnet_script(p)
    if script is None:
        raise LookupError("Forge's ControlNet script is not part of this generation")
    global_state.update_controlnet_filenames()  # rebinds the dict: read it afterwards
    title = _title(global_state.controlnet_filename_dict, unit.model.stem)
    if title is None:
        raise LookupError(f"ControlNet does not list {unit.model.stem}: refresh ControlNet's model list")
    args = list(p.script_args)
    span = range(script.args_from, min(script.args_to, len(args)))
    free = next((i for i in span if not _enabled(args[i])), None)
    if free is None:
        raise LookupError("every ControlNet unit is in use: disable one for the character's reference image")
    args[free] = external_code.ControlNetUnit(
        enabled=True, module=unit.module, model=title, weight=unit.weight, image=_image(unit.image),
    )
    p.script_args = tuple(args) if isinstance(p.script_args, tuple) else args
    return title


def before_process_hook(p: Any) -> None:
    """``Script.before_process``: an IP-Adapter unit per ``<char:NAME>`` that uses its reference image."""
    from lib_lora.characters import characters_for_host, has_character_tags
    from lib_lora.characters.expand import character_names
    from lib_lora.characters.ipadapter import (
        A1111,
        CONTROLNET_NOT_LOADED,
        FORGE,
        detect_models,
        plan_reference,
        uses_reference,
    )

    h = host()
    if not h.settings().enabled:
        return
    text = _prompt_text(p)
    if not has_character_tags(text):
        return
    library = characters_for_host(h)
    wanted = [c for c in (library.find(n) for n in character_names(text)) if c is not None and uses_reference(c)]
    if not wanted:
        return
    flavor = FORGE if h.kind == "forge" else A1111
    forge = forge_controlnet() if flavor == FORGE else None
    a1111 = a1111_external_code() if flavor == A1111 else None
    available = forge is not None or a1111 is not None
    if available and controlnet_script(p) is None:
        for character in wanted:
            _warn(p, None, f"<char:{character.name}>: the reference image was not added: {CONTROLNET_NOT_LOADED}")
        return
    models = detect_models(model_folders(flavor)) if available else []
    detection = h.checkpoint_detection(h.checkpoint_for_generation(p))
    base = getattr(detection, "architecture", None)
    for character in wanted:
        plan = plan_reference(character, flavor, base, models, available)
        if plan.unit is None:
            _warn(p, None, plan.message)
            continue
        try:
            if forge is not None:
                title = add_unit_forge(p, plan.unit, *forge)
            else:
                title = add_unit_a1111(p, plan.unit, a1111)
        except Exception as exc:
            _warn(p, None, f"<char:{character.name}>: the reference image was not added: {exc}")
            continue
        p.extra_generation_params.setdefault("Character reference", f"{character.name}: {Path(plan.unit.image).name} "
                                             f"({plan.unit.module}, {title})")
