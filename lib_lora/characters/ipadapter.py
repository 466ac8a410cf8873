"""IP-Adapter hand-off: which reference image, preprocessor and IP-Adapter model a ``<char:NAME>`` with
"use reference" gets, and what to install when something is missing. No WebUI import here: the unit is
added to the generation by :mod:`lib_lora.webui.ipadapter` through each WebUI's own ControlNet code.

Models are detected, not assumed: files named like the published IP-Adapter weights
(``ip-adapter_sd15.safetensors``, ``ip-adapter-plus_sd15``, ``ip-adapter_sdxl_vit-h``,
``ip-adapter_sdxl`` …) in the ControlNet model folders. SD 1.5 models and the ``_vit-h`` SDXL ones use the
CLIP ViT-H image encoder, the plain SDXL ones ViT-bigG; the preprocessor is named after it, in each
WebUI's spelling: sd-webui-controlnet (A1111) ``ip-adapter_clip_sd15`` / ``ip-adapter_clip_sdxl``, Forge's
built-in ControlNet ``CLIP-ViT-H (IPAdapter)`` / ``CLIP-ViT-bigG (IPAdapter)``. FaceID models need
insightface and another preprocessor: they are listed but not picked.

Per character (``prompts.txt``): ``use reference: yes`` turns it on, ``reference: front.png`` picks the
image in ``reference/`` (default: the first), ``reference weight: 0.7`` the unit's weight.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lib_lora.characters.layout import Character

A1111 = "a1111"
FORGE = "forge"
DEFAULT_WEIGHT = 0.7
MODEL_SUFFIXES = (".safetensors", ".bin", ".pth")
PREPROCESSORS = {
    A1111: {"h": "ip-adapter_clip_sd15", "g": "ip-adapter_clip_sdxl"},
    FORGE: {"h": "CLIP-ViT-H (IPAdapter)", "g": "CLIP-ViT-bigG (IPAdapter)"},
}
INSTALL_CONTROLNET = {
    A1111: "install the sd-webui-controlnet extension (Extensions > Available, or "
           "https://github.com/Mikubill/sd-webui-controlnet) and restart the WebUI",
    FORGE: "enable Forge's built-in ControlNet (extensions-builtin/sd_forge_controlnet)",
}
CONTROLNET_NOT_LOADED = ("ControlNet is installed, but its script is not part of this generation: it probably "
                         "failed to load (look for 'Error loading script' about controlnet in the WebUI console)")
SUGGESTED_MODEL = {"sd1": "ip-adapter_sd15.safetensors", "sdxl": "ip-adapter_sdxl_vit-h.safetensors"}


@dataclass(frozen=True)
class IPAdapterModel:
    """One IP-Adapter weights file."""

    path: str
    base: str | None  # "sd1" | "sdxl" | None (unknown from the name)
    encoder: str  # "h" (CLIP ViT-H) | "g" (ViT-bigG)
    faceid: bool = False

    @property
    def stem(self) -> str:
        return Path(self.path).stem


def classify(path: str) -> IPAdapterModel | None:
    """An IP-Adapter model read from its file name (``None``: not one)."""
    name = Path(path).name.lower()
    if not name.endswith(MODEL_SUFFIXES) or not ("ip-adapter" in name or "ip_adapter" in name or "ipadapter" in name):
        return None
    if "sdxl" in name or "_xl" in name:
        base: str | None = "sdxl"
        encoder = "h" if "vit-h" in name or "vit_h" in name else "g"
    elif "sd15" in name or "sd1.5" in name or "sd_15" in name:
        base, encoder = "sd1", "h"
    else:
        base, encoder = None, "h"
    return IPAdapterModel(path=str(path), base=base, encoder=encoder, faceid="faceid" in name)


def detect_models(folders: Iterable[str | os.PathLike[str]]) -> list[IPAdapterModel]:
    """Every IP-Adapter model in ``folders`` (and one level of subfolders), by path."""
    found: dict[str, IPAdapterModel] = {}
    for folder in folders:
        base = Path(folder)
        if not base.is_dir():
            continue
        candidates = list(base.iterdir()) + [p for d in base.iterdir() if d.is_dir() for p in d.iterdir()]
        for path in candidates:
            model = classify(str(path)) if path.is_file() else None
            if model is not None:
                found.setdefault(os.path.realpath(path), model)
    return sorted(found.values(), key=lambda m: Path(m.path).name.lower())


def choose_model(models: Sequence[IPAdapterModel], base: str | None) -> IPAdapterModel | None:
    """The model for a checkpoint of ``base`` ("sd1"/"sdxl"; SDXL finetunes such as Pony count as sdxl):
    plain first, then "plus", never FaceID."""
    usable = [m for m in models if not m.faceid and (base is None or m.base == base)]

    def rank(m: IPAdapterModel) -> tuple[int, str]:
        name = Path(m.path).name.lower()
        return (1 if "plus" in name or "light" in name else 0, name)

    return min(usable, key=rank) if usable else None


@dataclass(frozen=True)
class ReferenceUnit:
    """An enabled IP-Adapter unit: the reference image, the preprocessor and the model."""

    character: str
    image: str
    module: str
    model: IPAdapterModel
    weight: float = DEFAULT_WEIGHT


@dataclass(frozen=True)
class ReferencePlan:
    """The unit to add, or the plain sentence saying what is missing."""

    unit: ReferenceUnit | None
    message: str = ""


def reference_image(character: Character) -> str | None:
    chosen = (character.prompts.raw("reference") or "").strip()
    if chosen:
        for path in character.references:
            if Path(path).name == chosen or Path(path).stem == chosen:
                return path
        return None
    return character.references[0] if character.references else None


def reference_weight(character: Character) -> float:
    raw = character.prompts.raw("reference_weight")
    try:
        value = float(raw) if raw is not None else DEFAULT_WEIGHT
    except ValueError:
        return DEFAULT_WEIGHT
    return value if 0.0 <= value <= 2.0 else DEFAULT_WEIGHT


def uses_reference(character: Character) -> bool:
    return character.prompts.use_reference


def plan_reference(character: Character, flavor: str, checkpoint_base: str | None,
                   models: Sequence[IPAdapterModel], controlnet_available: bool) -> ReferencePlan:
    """The IP-Adapter unit for ``character`` in WebUI ``flavor`` with a checkpoint of ``checkpoint_base``."""
    who = f"<char:{character.name}>"
    image = reference_image(character)
    if image is None:
        where = os.path.join(character.folder, "reference")
        return ReferencePlan(None, f"{who} uses its reference image, but there is none in {where}: add one")
    if not controlnet_available:
        return ReferencePlan(None, f"{who}: the reference image needs ControlNet: {INSTALL_CONTROLNET.get(flavor, INSTALL_CONTROLNET[A1111])}")
    family = "sdxl" if checkpoint_base and checkpoint_base != "sd1" and checkpoint_base != "sd2" else checkpoint_base
    model = choose_model(models, family)
    if model is None:
        wanted = SUGGESTED_MODEL.get(family or "sd1", SUGGESTED_MODEL["sd1"])
        return ReferencePlan(None, (
            f"{who}: no IP-Adapter model for {family or 'this checkpoint'} was found in the ControlNet model "
            f"folder: download {wanted} (huggingface.co/h94/IP-Adapter) into models/ControlNet"
        ))
    module = PREPROCESSORS.get(flavor, PREPROCESSORS[A1111])[model.encoder]
    return ReferencePlan(ReferenceUnit(character.name, image, module, model, reference_weight(character)))
