"""``python -m lib_lora characters [DIR] [--root DIR] [--lora-dir DIR] [--json]``: list the characters.

One row per character folder below the root: its name, trigger word(s), base model (of its newest LoRA),
LoRA versions (newest first; ``v3 (training)``: a version a training holds, not placed yet)
and how many reference images and expressions it has. The root is ``DIR`` / ``--root``, else
``$LORA_STUDIO_CHARACTERS``, else ``characters/`` inside ``--lora-dir``. Exit status 1 when no root is
known or it does not exist.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from lib_lora.errors import LoraStudioError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", metavar="DIR", help="the characters folder (same as --root)")
    p.add_argument("--root", metavar="DIR", help="the characters folder (default: $LORA_STUDIO_CHARACTERS, "
                   "else characters/ in --lora-dir)")
    p.add_argument("--lora-dir", metavar="DIR", help="LoRA folder whose characters/ subfolder is the default root")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")


def character_rows(lib: Any) -> list[dict[str, Any]]:
    """The JSON rows (also used by the API's listing); ``base_model`` is the newest version's,
    ``training`` the version numbers trainings have reserved (not placed yet)."""
    from lib_lora.characters.layout import version_base
    from lib_lora.characters.reservation import reserved_versions

    rows = []
    for c in lib.characters:
        row = c.to_dict()
        row["version_labels"] = [v.label for v in c.versions]
        row["training"] = reserved_versions(c.lora_folder, c.name)
        row["base_model"] = version_base(c.versions[0]) if c.versions else None
        row["reference_count"] = len(c.references)
        row["expression_count"] = len(c.expressions)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    from lib_lora.characters import character_root, scan_characters

    if args.dir and args.root and os.path.abspath(args.dir) != os.path.abspath(args.root):
        raise LoraStudioError("give the characters folder once: DIR or --root, not both")
    root = character_root(args.root or args.dir, [args.lora_dir] if args.lora_dir else [])
    if root is None:
        raise LoraStudioError("no characters folder: give DIR or --root DIR, set LORA_STUDIO_CHARACTERS, "
                              "or give --lora-dir")
    if not root.is_dir():
        raise LoraStudioError(f"the characters folder {root} does not exist")
    lib = scan_characters(root)
    rows = character_rows(lib)
    if args.json:
        json.dump({"root": str(root), "characters": rows}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print(f"no characters in {root}")
        return 0
    table = [("NAME", "TRIGGER", "BASE", "VERSIONS", "REFS", "EXPR")]
    for r in rows:
        table.append((
            r["name"],
            ", ".join(r["trigger"]) or "-",
            r["base_model"] or "-",
            ", ".join([*(f"v{n} (training)" for n in reversed(r["training"])), *r["version_labels"]]) or "-",
            str(r["reference_count"]),
            str(r["expression_count"]),
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows)} character(s) in {root}")
    return 0
