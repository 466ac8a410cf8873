"""``python -m lib_lora COMMAND``: the same features as the WebUI extension, from a terminal.

Each command lives in ``lib_lora/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; it is imported only when chosen so that ``scan`` on a warm index starts fast.
While a command runs, what it prints passes through :class:`lib_lora.safetext.TerminalStream`: control
characters, ANSI escapes and bidi controls from file names and metadata show as ``\\uXXXX`` (a command
module that sets ``RAW_OUTPUT = True``, the app server with its own coloured logs, is left alone).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from lib_lora.errors import LoraStudioError
from lib_lora.safetext import TerminalStream, visible

#: command name -> (module under lib_lora.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("inspect", "report what a LoRA or checkpoint file is (base model, type, rank, trigger words)"),
    "scan": ("scan", "index LoRA folders and print a table of every LoRA"),
    "resolve": ("resolve", "show how a prompt's <lora:...> tags resolve against a library"),
    "train": ("train", "check a dataset, plan and run a kohya sd-scripts LoRA training"),
    "serve": ("serve", "run the standalone LoRA Studio app (browser panel, Train tab, resolve preview)"),
    "demo": ("demo", "write a small demo LoRA library (real headers, zero weights)"),
    "characters": ("characters", "list the characters (LoRA versions, references, expressions, prompts.txt)"),
    "fetch-info": ("fetch_info", "fetch trigger words, base model, preview and license from Civitai by file hash"),
    "download": ("download", "download a LoRA from Civitai or Hugging Face into the LoRA folder"),
}


def _load(name: str) -> Any:
    return importlib.import_module(f"lib_lora.commands.{COMMANDS[name][0]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib_lora", description="LoRA Studio command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            try:
                _load(name).add_arguments(p)
            except ModuleNotFoundError as exc:
                if exc.name != f"lib_lora.commands.{COMMANDS[name][0]}":
                    raise
                p.set_defaults(_unavailable=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "_unavailable", False):
        print(f"error: the '{args.command}' command is not available in this version", file=sys.stderr)
        return 2
    module = _load(args.command)
    saved = sys.stdout, sys.stderr
    if not getattr(module, "RAW_OUTPUT", False):
        sys.stdout, sys.stderr = TerminalStream(sys.stdout), TerminalStream(sys.stderr)
    try:
        return int(module.run(args) or 0)
    except LoraStudioError as exc:
        print(f"error: {visible(exc.message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        sys.stdout, sys.stderr = saved
