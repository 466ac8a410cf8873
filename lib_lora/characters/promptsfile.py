"""``prompts.txt``: the plain text file a person edits beside a character's LoRAs — read it, change a
field, write it back without losing a line.

The format (documented for users in the README, section "Characters")::

    # Lines starting with '#' are comments. Any other line that is not "key: value" is free text.
    trigger: mychar001
    trigger weight: 1.3
    anchors: same character, consistent appearance, identical face
    drift: different person, character change, inconsistent appearance
    lora weight: 0.8
    lora: some/folder/mychar_v1
    use trigger: yes
    use anchors: yes
    use drift: yes
    use reference: no
    reference: front.png
    reference weight: 0.7
    scene: mychar001 walking in the rain, night, city lights
    scene: mychar001 in a cafe, morning light

Keys are matched whatever their case, and ``_``, ``-`` and spaces in them are the same
(``Trigger_Weight=1.2`` works); ``:`` or ``=`` separates key and value. ``negative`` is another name for
``drift``, ``anchor`` for ``anchors``, ``weight`` for ``lora weight``. A key not in this list, a value
that cannot be read (``trigger weight: heavy``) and every other line are kept as they are and ignored.
When a key appears twice the first line counts. ``scene`` lines are saved scene prompts and may repeat.

A missing key means "the default" (trigger weight 1.3, the default anchor and drift phrases, every part
on); a key with an empty value means "none" (``anchors:`` switches the anchors off for this character).
``lora`` names a LoRA kept elsewhere (a name as in ``<lora:NAME>``) that the character uses while its own
``lora/`` folder is empty — it is recorded here instead of copying the file.

:class:`CharacterPrompts` keeps the file's lines verbatim: ``CharacterPrompts.parse(text).text() == text``
for every text, and :meth:`CharacterPrompts.with_values` changes only the lines of the fields it sets
(appending a line for a field the file does not have yet).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lib_lora.triggers import split_phrases

PROMPTS_FILENAME = "prompts.txt"

DEFAULT_TRIGGER_WEIGHT = 1.3
DEFAULT_ANCHORS = ("same character", "consistent appearance")
DEFAULT_DRIFT = ("different person", "character change", "inconsistent appearance")
MIN_TRIGGER_WEIGHT = 0.1
MAX_TRIGGER_WEIGHT = 2.0

# Field ids (also the canonical key written for a new line, with "_" shown as a space).
TRIGGER = "trigger"
TRIGGER_WEIGHT = "trigger_weight"
ANCHORS = "anchors"
DRIFT = "drift"
LORA_WEIGHT = "lora_weight"
LORA = "lora"
USE_TRIGGER = "use_trigger"
USE_ANCHORS = "use_anchors"
USE_DRIFT = "use_drift"
USE_LORA = "use_lora"
SCENE = "scene"
#: IP-Adapter hand-off (lib_lora.characters.ipadapter): on/off, which image of reference/, the unit's weight
USE_REFERENCE = "use_reference"
REFERENCE = "reference"
REFERENCE_WEIGHT = "reference_weight"
FIELDS = (TRIGGER, TRIGGER_WEIGHT, ANCHORS, DRIFT, LORA_WEIGHT, LORA, USE_TRIGGER, USE_ANCHORS, USE_DRIFT,
          USE_LORA, SCENE, USE_REFERENCE, REFERENCE, REFERENCE_WEIGHT)

_ALIASES = {"negative": DRIFT, "anchor": ANCHORS, "weight": LORA_WEIGHT, "triggers": TRIGGER}
_LINE_RE = re.compile(r"^[ \t]*(?P<key>[A-Za-z][A-Za-z _-]*?)[ \t]*[:=][ \t]?(?P<value>.*?)[ \t]*$")
_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")


def _field_of(key: str) -> str | None:
    norm = re.sub(r"[\s_-]+", "_", key.strip().lower())
    norm = _ALIASES.get(norm, norm)
    return norm if norm in FIELDS else None


def _split_line(line: str) -> tuple[str | None, str]:
    """``(field, value)`` of a ``key: value`` line, ``(None, "")`` for any other line."""
    body = line.rstrip("\r\n")
    if body.lstrip().startswith("#"):
        return None, ""
    m = _LINE_RE.match(body)
    if m is None:
        return None, ""
    field_id = _field_of(m.group("key"))
    if field_id is None:
        return None, ""
    return field_id, m.group("value")


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _flag(value: str) -> bool | None:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _format_value(field_id: str, value: Any) -> str:
    if field_id in (USE_TRIGGER, USE_ANCHORS, USE_DRIFT, USE_LORA, USE_REFERENCE):
        return "yes" if value else "no"
    if field_id in (TRIGGER_WEIGHT, LORA_WEIGHT, REFERENCE_WEIGHT):
        return f"{float(value):.2f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v).strip() for v in value if str(v).strip())
    text = " ".join(str(value).split())  # one line: a newline in a value would start a new line
    return text


def _check_value(field_id: str, value: Any) -> None:
    if field_id in (TRIGGER_WEIGHT, LORA_WEIGHT, REFERENCE_WEIGHT):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{field_id.replace('_', ' ')} must be a number, not {value!r}") from None
        low, high = {TRIGGER_WEIGHT: (MIN_TRIGGER_WEIGHT, MAX_TRIGGER_WEIGHT), LORA_WEIGHT: (-5.0, 5.0),
                     REFERENCE_WEIGHT: (0.0, 2.0)}[field_id]
        if not low <= number <= high:
            raise ValueError(f"{field_id.replace('_', ' ')} {number:g} is outside {low:g}..{high:g}")


@dataclass(frozen=True)
class CharacterPrompts:
    """The lines of one ``prompts.txt`` (verbatim, with their line ends) and the fields read from them."""

    lines: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> CharacterPrompts:
        return cls(tuple(text.splitlines(keepends=True)))

    def text(self) -> str:
        return "".join(self.lines)

    # -- reading
    def raw(self, field_id: str) -> str | None:
        """The value of the first line of ``field_id`` (``None``: no such line)."""
        for line in self.lines:
            key, value = _split_line(line)
            if key == field_id:
                return value
        return None

    def _phrases(self, field_id: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw(field_id)
        return default if value is None else split_phrases(value)

    def _num(self, field_id: str, default: float | None) -> float | None:
        value = self.raw(field_id)
        number = _number(value) if value is not None else None
        if number is None:
            return default
        if field_id == TRIGGER_WEIGHT and not MIN_TRIGGER_WEIGHT <= number <= MAX_TRIGGER_WEIGHT:
            return default
        return number

    def _use(self, field_id: str) -> bool:
        value = self.raw(field_id)
        flag = _flag(value) if value is not None else None
        return True if flag is None else flag

    @property
    def trigger(self) -> tuple[str, ...]:
        return self._phrases(TRIGGER, ())

    @property
    def trigger_weight(self) -> float:
        return self._num(TRIGGER_WEIGHT, DEFAULT_TRIGGER_WEIGHT) or DEFAULT_TRIGGER_WEIGHT

    @property
    def anchors(self) -> tuple[str, ...]:
        return self._phrases(ANCHORS, DEFAULT_ANCHORS)

    @property
    def drift(self) -> tuple[str, ...]:
        return self._phrases(DRIFT, DEFAULT_DRIFT)

    @property
    def lora_weight(self) -> float | None:
        return self._num(LORA_WEIGHT, None)

    @property
    def lora(self) -> str | None:
        value = self.raw(LORA)
        return value.strip() or None if value is not None else None

    @property
    def use_trigger(self) -> bool:
        return self._use(USE_TRIGGER)

    @property
    def use_anchors(self) -> bool:
        return self._use(USE_ANCHORS)

    @property
    def use_drift(self) -> bool:
        return self._use(USE_DRIFT)

    @property
    def use_lora(self) -> bool:
        return self._use(USE_LORA)

    @property
    def use_reference(self) -> bool:
        """IP-Adapter hand-off: off unless the file says ``use reference: yes``."""
        value = self.raw(USE_REFERENCE)
        return bool(_flag(value)) if value is not None else False

    @property
    def scenes(self) -> tuple[str, ...]:
        out = []
        for line in self.lines:
            key, value = _split_line(line)
            if key == SCENE and value.strip():
                out.append(value.strip())
        return tuple(out)

    @property
    def notes(self) -> tuple[str, ...]:
        """Every line that is not a field (free text, comments, unknown keys), without its line end."""
        return tuple(line.rstrip("\r\n") for line in self.lines if _split_line(line)[0] is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": list(self.trigger),
            "trigger_weight": self.trigger_weight,
            "anchors": list(self.anchors),
            "drift": list(self.drift),
            "lora_weight": self.lora_weight,
            "lora": self.lora,
            "use_trigger": self.use_trigger,
            "use_anchors": self.use_anchors,
            "use_drift": self.use_drift,
            "use_lora": self.use_lora,
            "scenes": list(self.scenes),
            "use_reference": self.use_reference,
            "reference": (self.raw(REFERENCE) or "").strip() or None,
        }

    # -- changing
    def with_values(self, values: Mapping[str, Any] | None = None, **changes: Any) -> CharacterPrompts:
        """A copy with fields set: the first line of each field is replaced in place (later repeats are
        left alone), a missing field is appended; ``None`` removes the field's lines (back to the
        default). ``scene`` takes a list and replaces every scene line. Unknown fields raise ValueError."""
        todo = dict(values or {}, **changes)
        for field_id, value in todo.items():
            if field_id not in FIELDS:
                raise ValueError(f"prompts.txt has no field {field_id!r} (known: {', '.join(FIELDS)})")
            if value is not None and field_id != SCENE:
                _check_value(field_id, value)
        lines = list(self.lines)
        for field_id, value in todo.items():
            lines = _set_scenes(lines, value) if field_id == SCENE else _set_field(lines, field_id, value)
        return CharacterPrompts(tuple(lines))


def _newline_of(lines: list[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"


def _key_text(field_id: str) -> str:
    return field_id.replace("_", " ")


def _append(lines: list[str], new_line: str) -> None:
    nl = _newline_of(lines)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += nl
    lines.append(new_line + nl)


def _set_field(lines: list[str], field_id: str, value: Any) -> list[str]:
    out: list[str] = []
    done = False
    for line in lines:
        key, _ = _split_line(line)
        if key != field_id:
            out.append(line)
            continue
        if value is None:
            continue  # every line of the field goes: the default applies again
        if done:
            out.append(line)
            continue
        done = True
        m = _LINE_RE.match(line.rstrip("\r\n"))
        assert m is not None
        ending = line[len(line.rstrip("\r\n")):]
        prefix = line[: m.start("value")]
        if not prefix.endswith((" ", "\t")):
            prefix += " "
        out.append(prefix + _format_value(field_id, value) + ending)
    if value is not None and not done:
        _append(out, f"{_key_text(field_id)}: {_format_value(field_id, value)}")
    return out


def _set_scenes(lines: list[str], scenes: Any) -> list[str]:
    wanted = [" ".join(str(s).split()) for s in (scenes or []) if str(s).strip()]
    out: list[str] = []
    inserted = False
    for line in lines:
        if _split_line(line)[0] != SCENE:
            out.append(line)
            continue
        if not inserted:
            inserted = True
            ending = line[len(line.rstrip("\r\n")):] or _newline_of(lines)
            out.extend(f"scene: {s}{ending}" for s in wanted)
    if not inserted:
        for s in wanted:
            _append(out, f"scene: {s}")
    return out


def new_prompts_text(*, trigger: str = "", anchors: tuple[str, ...] | None = None,
                     drift: tuple[str, ...] | None = None, trigger_weight: float | None = None,
                     lora: str | None = None, lora_weight: float | None = None) -> str:
    """The ``prompts.txt`` of a new character: a short explanation, then its fields."""
    head = (
        "# LoRA Studio character prompts. Edit freely: lines that are not 'key: value' are kept as notes.\n"
        "# Keys: trigger, trigger weight, anchors, drift (negative prompt), lora, lora weight,\n"
        "#       use trigger / use anchors / use drift / use lora (yes/no), scene (saved scene prompts).\n"
    )
    doc = CharacterPrompts.parse(head)
    values: dict[str, Any] = {
        TRIGGER: trigger,
        TRIGGER_WEIGHT: DEFAULT_TRIGGER_WEIGHT if trigger_weight is None else trigger_weight,
        ANCHORS: DEFAULT_ANCHORS if anchors is None else anchors,
        DRIFT: DEFAULT_DRIFT if drift is None else drift,
    }
    if lora:
        values[LORA] = lora
    if lora_weight is not None:
        values[LORA_WEIGHT] = lora_weight
    return doc.with_values(values).text()
