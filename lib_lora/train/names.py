"""The names a user types for a training, checked: the trigger word (it goes into captions, sample
prompts and prompt tags) and the output file name (it must be a usable file name on every platform)."""

from __future__ import annotations

import re

from lib_lora.errors import TrainingError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_trigger(trigger: str) -> str:
    """The trigger, stripped; refuses what breaks captions, sample prompts or prompt tags."""
    t = trigger.strip()
    if not t:
        raise TrainingError("the trigger word is empty")
    if len(t) > 100:
        raise TrainingError(f"the trigger word is {len(t)} characters long; keep it under 100")
    if _CONTROL.search(t):
        raise TrainingError("the trigger word contains a line break or another control character")
    if "--" in t:
        raise TrainingError("the trigger word cannot contain '--' (it starts an option in sd-scripts' sample prompts)")
    if t.startswith("#"):
        raise TrainingError("the trigger word cannot start with '#' (sd-scripts reads such prompt lines as comments)")
    if "," in t:
        raise TrainingError("the trigger word cannot contain a comma: use one word or phrase (commas separate tags)")
    if any(c in t for c in "<>"):
        raise TrainingError("the trigger word cannot contain '<' or '>' (they delimit LoRA tags in prompts)")
    return t


_RESERVED_NAME_CHARS = set('<>:"/\\|?*')
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def default_output_name(trigger: str) -> str:
    name = re.sub(r"[^\w.-]+", "_", trigger.strip(), flags=re.UNICODE).strip("._")
    return name[:80] or "lora"


def validate_output_name(name: str) -> str:
    n = name.strip()
    if not n:
        raise TrainingError("the output name is empty")
    if len(n) > 120:
        raise TrainingError("the output name is longer than 120 characters")
    if _CONTROL.search(n) or any(c in _RESERVED_NAME_CHARS for c in n):
        raise TrainingError(f"the output name {n!r} contains a character that is not allowed in file names (<>:\"/\\|?*)")
    if n in (".", "..") or n.endswith(".") or n.startswith("-"):
        raise TrainingError(f"the output name {n!r} is not a usable file name")
    if n.lower().split(".")[0] in _WINDOWS_DEVICES:
        raise TrainingError(f"the output name {n!r} is a reserved device name on Windows")
    return n


__all__ = ["default_output_name", "validate_output_name", "validate_trigger"]
