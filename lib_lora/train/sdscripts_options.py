"""The command-line options each sd-scripts training script accepts, at the pinned commit.

Read from ``sdscripts_options.json`` next to this file, which ``_gen_options.py`` generates from the real
``--help`` texts (see that module). Used to refuse a plan whose argument list the trainer would reject and
to add an option only when the pinned trainer has it (``--console_log_simple``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lib_lora.errors import TrainingError

OPTIONS_FILE = Path(__file__).with_name("sdscripts_options.json")


@dataclass(frozen=True)
class OptionSpec:
    name: str  # "--learning_rate"
    takes_value: bool  # False for store_true flags
    choices: tuple[str, ...] | None  # argparse choices, as the help prints them
    multiple: bool  # nargs="*" (``--optimizer_args a=1 b=2``)


@dataclass(frozen=True)
class ScriptOptions:
    script: str  # "train_network.py"
    options: Mapping[str, OptionSpec]

    def has(self, name: str) -> bool:
        return name in self.options


@functools.lru_cache(maxsize=1)
def load_all() -> dict[str, ScriptOptions]:
    try:
        raw = json.loads(OPTIONS_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # a broken install, not a user error, but say what is missing
        raise TrainingError(f"cannot read the sd-scripts option table {OPTIONS_FILE}: {exc}") from exc
    out: dict[str, ScriptOptions] = {}
    for script, opts in raw["scripts"].items():
        specs = {
            name: OptionSpec(
                name=name,
                takes_value=bool(spec["value"]),
                choices=tuple(spec["choices"]) if spec["choices"] is not None else None,
                multiple=bool(spec["multiple"]),
            )
            for name, spec in opts.items()
        }
        out[script] = ScriptOptions(script=script, options=specs)
    return out


def for_script(script: str) -> ScriptOptions:
    table = load_all()
    if script not in table:
        raise TrainingError(f"unknown sd-scripts training script {script!r} (known: {', '.join(sorted(table))})")
    return table[script]


def check_args(script: str, args: Sequence[str]) -> list[str]:
    """Problems with an sd-scripts argument list (empty when every option exists and is well formed).

    Options are written ``--name`` followed by zero (flag), one, or (``nargs="*"``) several values; a value
    never starts with ``--``. ``--name=value`` is accepted as argparse does.
    """
    opts = for_script(script).options
    problems: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--"):
            problems.append(f"{script}: unexpected value {token!r} without an option")
            i += 1
            continue
        name, eq, inline = token.partition("=")
        spec = opts.get(name)
        if spec is None:
            problems.append(f"{script}: unknown option {name}")
            i += 1
            while i < len(args) and not args[i].startswith("--"):
                i += 1
            continue
        values: list[str] = [inline] if eq else []
        i += 1
        while i < len(args) and not args[i].startswith("--"):
            values.append(args[i])
            i += 1
        if not spec.takes_value:
            if values:
                problems.append(f"{script}: {name} is a flag and takes no value (got {values!r})")
        elif spec.multiple:
            if not values:
                problems.append(f"{script}: {name} needs at least one value")
        elif len(values) != 1:
            problems.append(f"{script}: {name} takes exactly one value (got {len(values)})")
        elif spec.choices is not None and values[0] not in spec.choices:
            problems.append(f"{script}: {name} {values[0]!r} is not one of {', '.join(spec.choices)}")
    return problems
