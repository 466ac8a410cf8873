"""Generate ``sdscripts_options.json`` from the real ``--help`` texts of the sd-scripts training scripts.

The core never reads the help texts at run time: it reads the committed JSON. Regenerate it whenever the
sd-scripts pin moves (together with the help fixtures)::

    python -m lib_lora.train._gen_options tests/fixtures/sd-scripts-help > lib_lora/train/sdscripts_options.json

A test checks that the committed JSON equals what this produces from the fixtures.

Only the ``options:`` section of an argparse help is read. Each option line there starts with two spaces
and the option string; a metavar follows after exactly one space (``--seed SEED``), choices are written
``{a,b,c}`` and ``nargs="*"`` options ``[NAME ...]``; the help text starts after two or more spaces or
on the next line.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

#: option line: name, then optionally " METAVAR" / " {choices}" / " [METAVAR ...]", then 2+ spaces or end
_OPTION_LINE = re.compile(
    r"^  (?:-[A-Za-z], )?(?P<name>--[A-Za-z0-9][A-Za-z0-9_-]*)"
    r"(?: (?P<metavar>\{[^\s}]*\}|\[[A-Za-z0-9_]+ \.\.\.\]|[A-Za-z0-9_]+))?"
    r"(?:\s{2,}.*)?$"
)


def parse_help(text: str) -> dict[str, dict[str, object]]:
    """Option name -> {"value": bool, "choices": [..] | None, "multiple": bool} from one ``--help`` text."""
    options: dict[str, dict[str, object]] = {}
    in_options = False
    for line in text.splitlines():
        if not line.startswith(" "):
            in_options = line.rstrip().endswith(":") and line.strip().lower() in (
                "options:",
                "optional arguments:",
            )
            continue
        if not in_options:
            continue
        m = _OPTION_LINE.match(line)
        if m is None:
            continue
        name = m.group("name")
        if name == "--help":
            continue
        metavar = m.group("metavar")
        choices: list[str] | None = None
        multiple = False
        if metavar is not None and metavar.startswith("{"):
            choices = metavar[1:-1].split(",")
        elif metavar is not None and metavar.startswith("["):
            multiple = True
        options[name] = {"value": metavar is not None, "choices": choices, "multiple": multiple}
    return options


def usage_option_names(text: str) -> set[str]:
    """Every ``--option`` named in the ``usage:`` block (for cross-checking :func:`parse_help`)."""
    usage, _, _ = text.partition("\noptions:")
    return {n for n in re.findall(r"\[(--[A-Za-z0-9][A-Za-z0-9_-]*)", usage) if n != "--help"}


def generate(help_dir: str | Path) -> dict[str, object]:
    """The JSON document: ``{"scripts": {"train_network.py": {option: spec}}}``, sorted for stable diffs."""
    scripts: dict[str, object] = {}
    for path in sorted(Path(help_dir).glob("*.txt")):
        opts = parse_help(path.read_text(encoding="utf-8"))
        scripts[path.stem + ".py"] = {name: opts[name] for name in sorted(opts)}
    if not scripts:
        raise SystemExit(f"no *.txt help files in {help_dir}")
    return {
        "generated_by": "python -m lib_lora.train._gen_options <sd-scripts-help dir>",
        "scripts": scripts,
    }


def render(help_dir: str | Path) -> str:
    """The JSON text, one option per line so that a moved pin gives a readable diff."""
    doc = generate(help_dir)
    scripts = doc["scripts"]
    assert isinstance(scripts, dict)
    out = ["{", f' "generated_by": {json.dumps(doc["generated_by"])},', ' "scripts": {']
    for i, (script, opts) in enumerate(scripts.items()):
        out.append(f"  {json.dumps(script)}: {{")
        items = list(opts.items())
        for j, (name, spec) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            out.append(f"   {json.dumps(name)}: {json.dumps(spec, sort_keys=True)}{comma}")
        out.append("  }" + ("," if i < len(scripts) - 1 else ""))
    out.append(" }")
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lib_lora.train._gen_options HELP_DIR > sdscripts_options.json", file=sys.stderr)
        return 2
    sys.stdout.write(render(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
