"""LoRA Studio's user settings: one frozen dataclass, its defaults, and a schema the UIs build from.

Inside a WebUI the values live in the WebUI's own settings (a "LoRA Studio" section registered by
:mod:`lib_lora.webui`, one option per field under the key ``lora_studio_<field>``); the standalone app
keeps them in its data folder. Either way they arrive here as a plain mapping and :meth:`Settings.from_mapping`
turns them into a :class:`Settings`, accepting both the internal ids (``"insert-if-missing"``) and the
labels the WebUI's radio buttons store (``"Insert if missing"``). A value that cannot be understood falls back
to the default and is reported in ``Settings.problems`` — a typo in ``config.json`` never stops generation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

# Trigger-word policy.
TRIGGER_OFF = "off"
TRIGGER_INSERT = "insert-if-missing"
TRIGGER_EMPHASIS = "insert-with-emphasis"
TRIGGER_POLICIES = (TRIGGER_OFF, TRIGGER_INSERT, TRIGGER_EMPHASIS)

# Where inserted trigger words go.
POSITION_START = "prompt-start"
POSITION_BESIDE_TAG = "beside-tag"
TRIGGER_POSITIONS = (POSITION_START, POSITION_BESIDE_TAG)

# What to do with a LoRA whose architecture cannot work with the checkpoint.
INCOMPATIBLE_WARN = "warn"
INCOMPATIBLE_SKIP = "skip"
INCOMPATIBLE_ALLOW = "allow"
INCOMPATIBLE_POLICIES = (INCOMPATIBLE_WARN, INCOMPATIBLE_SKIP, INCOMPATIBLE_ALLOW)

#: Prefix of every LoRA Studio key in the WebUI's settings (``shared.opts``).
WEBUI_KEY_PREFIX = "lora_studio_"
#: Title of the settings section in the WebUI.
SECTION_TITLE = "LoRA Studio"
SECTION_ID = "lora_studio"

MIN_EMPHASIS = 0.1
MAX_EMPHASIS = 2.0


@dataclass(frozen=True)
class Settings:
    """Everything a user can set. Defaults are what a fresh install does."""

    enabled: bool = True
    trigger_policy: str = TRIGGER_INSERT
    trigger_position: str = POSITION_BESIDE_TAG
    emphasis_weight: float = 1.2
    incompatible: str = INCOMPATIBLE_WARN
    extra_roots: tuple[str, ...] = ()
    sd_scripts_path: str = ""
    show_toast: bool = True
    #: Characters (lib_lora.characters): their folder ("" = $LORA_STUDIO_CHARACTERS, else characters/ in
    #: the first LoRA folder) and which parts a <char:NAME> tag expands to.
    characters_root: str = ""
    character_trigger: bool = True
    character_anchors: bool = True
    character_drift: bool = True
    #: the CLIP model that scores consistency sheets (open_clip 2.7.0 names); weights download on first use
    consistency_clip_model: str = "ViT-B-32"
    consistency_clip_pretrained: str = "openai"
    # Civitai / Hugging Face (lib_lora.remote). Networking stays off until a button or civitai_auto_fetch.
    civitai_api_key: str = ""  # also CIVITAI_API_KEY; sent only to the Civitai site, never shown back
    civitai_url: str = ""  # empty: https://civitai.com (LORA_STUDIO_CIVITAI_URL overrides)
    civitai_auto_fetch: bool = False
    civitai_preview_nsfw: str = "pg13"
    civitai_preview_mode: str = "blur"
    download_subfolder: str = "none"
    #: The WebUI's extra-networks pane: leave its built-in "Lora" page out (LoRA Studio's page replaces it).
    #: Off by default: the built-in page is the WebUI's own and other extensions add to it; on, the pane
    #: with a big library is several times lighter (benchmarks/pane_webui.py: the built-in page renders
    #: every LoRA into both tabs, and the WebUI's scripts walk those cards on every change of the page).
    pane_hide_builtin_lora: bool = False
    #: Values that were ignored while reading (one line each); not a setting.
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, prefix: str = "") -> Settings:
        """Build settings from ``values`` (keys ``prefix + field``); missing keys keep their defaults."""
        problems: list[str] = []
        kwargs: dict[str, Any] = {}
        for spec in SCHEMA:
            key = prefix + spec.name
            if key not in values or values[key] is None:
                continue
            try:
                kwargs[spec.name] = spec.parse(values[key])
            except ValueError as exc:
                problems.append(f"setting {spec.label!r}: {exc}; using the default")
        return cls(**kwargs, problems=tuple(problems))

    def to_mapping(self, *, prefix: str = "", labels: bool = False) -> dict[str, Any]:
        """The values keyed by ``prefix + field``; with ``labels`` choices are given as their labels."""
        out: dict[str, Any] = {}
        for spec in SCHEMA:
            out[prefix + spec.name] = spec.format(getattr(self, spec.name), labels=labels)
        return out

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)


@dataclass(frozen=True)
class OptionSpec:
    """How one setting is shown and read: enough for the WebUI and the standalone UI to build a control."""

    name: str
    label: str
    kind: str  # "bool" | "choice" | "text" | "paths" | "number"
    choices: tuple[tuple[str, str], ...] = ()  # (id, label)
    info: str = ""
    minimum: float | None = None
    maximum: float | None = None

    @property
    def default(self) -> Any:
        return {f.name: f.default for f in fields(Settings)}[self.name]

    def webui_default(self) -> Any:
        """The default as the WebUI stores it (labels for choices, one path per line)."""
        return self.format(self.default, labels=True)

    def choice_labels(self) -> list[str]:
        return [label for _, label in self.choices]

    def parse(self, raw: Any) -> Any:
        if self.kind == "bool":
            return _parse_bool(raw)
        if self.kind == "choice":
            text = str(raw).strip()
            for ident, label in self.choices:
                if text.lower() in (ident.lower(), label.lower()):
                    return ident
            raise ValueError(f"unknown value {text!r} (one of: {', '.join(self.choice_labels())})")
        if self.kind == "number":
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{raw!r} is not a number") from None
            if (
                number != number
                or (self.minimum is not None and number < self.minimum)
                or (self.maximum is not None and number > self.maximum)
            ):
                raise ValueError(f"{number:g} is outside {self.minimum}..{self.maximum}")
            return number
        if self.kind == "paths":
            return parse_roots(raw)
        if not isinstance(raw, str):
            raise ValueError(f"{raw!r} is not text")
        return raw.strip()

    def format(self, value: Any, *, labels: bool = False) -> Any:
        if self.kind == "choice" and labels:
            return dict(self.choices).get(value, value)
        if self.kind == "paths":
            return "\n".join(value) if labels else list(value)
        return value


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)) and raw in (0, 1):
        return bool(raw)
    text = str(raw).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise ValueError(f"{raw!r} is not true or false")


def parse_roots(raw: Any) -> tuple[str, ...]:
    """Extra LoRA folders: one per line (a list is accepted too); blank lines and duplicates dropped.

    Lines are split on newlines only — ``:`` and ``;`` occur in real paths (Windows drives, odd names).
    ``~`` is expanded; nothing is checked on disk here (a missing folder is reported by the library scan).
    """
    if isinstance(raw, str):
        items: Iterable[Any] = raw.splitlines()
    elif isinstance(raw, (list, tuple)):
        items = raw
    else:
        raise ValueError(f"{raw!r} is not a list of folders")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a folder path")
        path = item.strip()
        if not path:
            continue
        path = os.path.expanduser(path)
        if path not in out:
            out.append(path)
    return tuple(out)


SCHEMA: tuple[OptionSpec, ...] = (
    OptionSpec(
        "enabled",
        "Enable LoRA Studio's prompt rewriting",
        "bool",
        info="off: prompts reach the WebUI's LoRA loader unchanged",
    ),
    OptionSpec(
        "trigger_policy",
        "Trigger words",
        "choice",
        (
            (TRIGGER_OFF, "Off"),
            (TRIGGER_INSERT, "Insert if missing"),
            (TRIGGER_EMPHASIS, "Insert with emphasis"),
        ),
        info="a word already in the prompt is never added again",
    ),
    OptionSpec(
        "trigger_position",
        "Where inserted trigger words go",
        "choice",
        ((POSITION_START, "Prompt start"), (POSITION_BESIDE_TAG, "Beside the LoRA tag")),
    ),
    OptionSpec(
        "emphasis_weight",
        "Emphasis weight for inserted trigger words",
        "number",
        minimum=MIN_EMPHASIS,
        maximum=MAX_EMPHASIS,
        info="used by 'Insert with emphasis': (word:1.2)",
    ),
    OptionSpec(
        "incompatible",
        "LoRA made for another base model",
        "choice",
        (
            (INCOMPATIBLE_WARN, "Warn"),
            (INCOMPATIBLE_SKIP, "Skip the LoRA"),
            (INCOMPATIBLE_ALLOW, "Allow silently"),
        ),
    ),
    OptionSpec(
        "extra_roots",
        "Extra LoRA folders (one per line)",
        "paths",
        info="scanned besides the WebUI's --lora-dir",
    ),
    OptionSpec("sd_scripts_path", "Existing sd-scripts or kohya_ss folder (empty: the bundled one)", "text"),
    OptionSpec("show_toast", "Show LoRA Studio warnings as a popup", "bool"),
    OptionSpec(
        "characters_root",
        "Characters folder (empty: $LORA_STUDIO_CHARACTERS, else characters/ in the first LoRA folder)",
        "text",
    ),
    OptionSpec("character_trigger", "<char:NAME> adds the weighted trigger word", "bool"),
    OptionSpec("character_anchors", "<char:NAME> adds the anchor phrases", "bool"),
    OptionSpec(
        "character_drift", "<char:NAME> adds the drift phrases to the negative prompt", "bool"
    ),
    OptionSpec("consistency_clip_model", "Consistency score: CLIP model (open_clip name)", "text",
               info="e.g. ViT-B-32, ViT-L-14; its weights download on first use"),
    OptionSpec("consistency_clip_pretrained", "Consistency score: CLIP weights tag", "text",
               info="e.g. openai, laion2b_s34b_b79k"),
    OptionSpec("civitai_api_key", "Civitai API key (for downloads that need a login; or CIVITAI_API_KEY)", "text",
               info="sent only to the Civitai site as an Authorization header"),
    OptionSpec("civitai_url", "Civitai site (empty: https://civitai.com)", "text"),
    OptionSpec("civitai_auto_fetch", "Fetch Civitai info for new LoRAs automatically (and check for new versions daily)",
               "bool", info="off: LoRA Studio goes online only when you press a button"),
    OptionSpec(
        "civitai_preview_nsfw",
        "Highest rating for downloaded previews",
        "choice",
        (("pg", "PG"), ("pg13", "PG-13"), ("r", "R"), ("x", "X"), ("xxx", "XXX")),
    ),
    OptionSpec("civitai_preview_mode", "Previews above that rating", "choice",
               (("blur", "Blur them"), ("skip", "Skip them"))),
    OptionSpec(
        "download_subfolder",
        "Put downloaded LoRAs in a subfolder by",
        "choice",
        (("none", "None"), ("base-model", "Base model"), ("category", "Category")),
    ),
    OptionSpec("pane_hide_builtin_lora",
               "Extra-networks pane: hide the built-in Lora page (LoRA Studio's page replaces it; Reload UI)",
               "bool", info="a big library's pane opens and filters much faster without it"),
)

#: Settings whose value is never shown back (API answers, infotexts, logs).
SECRET_SETTINGS = frozenset({"civitai_api_key"})

SCHEMA_BY_NAME: dict[str, OptionSpec] = {spec.name: spec for spec in SCHEMA}

DEFAULTS = Settings()


def webui_key(name: str) -> str:
    """The WebUI settings key of field ``name`` (``lora_studio_<name>``)."""
    if name not in SCHEMA_BY_NAME:
        raise KeyError(name)
    return WEBUI_KEY_PREFIX + name
