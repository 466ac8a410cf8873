"""The rows of a consistency sheet: five scenes (the character's ``prompts.txt`` scenes when the
Characters library provides them, else the trainer's sample scenes) or the expressions row."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from lib_lora.train.plan_files import SCENES

#: the expressions row of the "expressions" variant; each becomes ``expressions/<expression>.png``
EXPRESSIONS: tuple[str, ...] = ("neutral", "smile", "angry", "surprised", "sad")
_EXPRESSION_PROMPTS = {
    "neutral": "neutral expression, closed mouth",
    "smile": "smile",
    "angry": "angry, frown",
    "surprised": "surprised, open mouth",
    "sad": "sad, teary eyes",
}
SCENE_COUNT = 5


@dataclass(frozen=True)
class Scene:
    id: str  # "scene1" … or the expression
    label: str  # the row label on the sheet
    prompt: str  # with ``{trigger}`` where the trigger goes


def trainer_scenes(kind: str = "character") -> tuple[Scene, ...]:
    """The five sample scenes the trainer renders for ``kind`` (character | style | concept)."""
    scenes = SCENES.get(kind) or SCENES["character"]
    return tuple(Scene(f"scene{i + 1}", _short(text), text) for i, (_shape, text) in enumerate(scenes[:SCENE_COUNT]))


def expression_scenes() -> tuple[Scene, ...]:
    return tuple(Scene(e, e, f"{{trigger}}, portrait, looking at viewer, {_EXPRESSION_PROMPTS[e]}, simple background")
                 for e in EXPRESSIONS)


def character_scenes(character_dir: str) -> tuple[Scene, ...] | None:
    """The scenes of a character folder's ``prompts.txt`` through the Characters library, when that
    library is installed (``lib_lora.characters.load_character(folder).prompts.scenes``: its ``scene:``
    lines); None otherwise or when it gives no scenes (the trainer's scenes are used then)."""
    try:
        characters = importlib.import_module("lib_lora.characters")
    except ImportError:
        return None
    loader = getattr(characters, "load_character", None)
    if loader is None or not os.path.isdir(character_dir):
        return None
    try:
        prompts = loader(character_dir).prompts
    except Exception:
        return None
    texts = [str(getattr(p, "prompt", p)) for p in (getattr(prompts, "scenes", prompts) or ())]
    texts = [t for t in texts if t.strip()][:SCENE_COUNT]
    if not texts:
        return None
    return tuple(Scene(f"scene{i + 1}", _short(t), t if "{trigger}" in t else "{trigger}, " + t)
                 for i, t in enumerate(texts))


def render_prompt(scene: Scene, trigger: str, lora_name: str, weight: float) -> str:
    """The cell's prompt: the scene with the trigger, then the LoRA tag at ``weight``."""
    text = scene.prompt.replace("{trigger}", trigger).strip().strip(",").strip()
    return f"{text}, <lora:{lora_name}:{_weight(weight)}>"


def _weight(w: float) -> str:
    return f"{w:g}"


def _short(text: str, limit: int = 40) -> str:
    words = [w.strip() for w in text.replace("{trigger}", "").split(",") if w.strip()]
    label = ", ".join(words[:2]) if words else text
    return label if len(label) <= limit else label[: limit - 1] + "…"


__all__ = ["EXPRESSIONS", "SCENE_COUNT", "Scene", "character_scenes", "expression_scenes", "render_prompt",
           "trainer_scenes"]
