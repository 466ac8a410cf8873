"""``python -m lib_lora resolve "PROMPT" --lora-dir DIR [--checkpoint FILE] [--negative TEXT] [--characters DIR] [--json]``.

Shows what LoRA Studio does to a prompt before the WebUI's LoRA loader sees it: every ``<lora:...>``
tag's file (or why it is removed), ``<char:NAME>`` expanded, the trigger words and negative text inserted, compatibility with the
checkpoint and the rewritten prompt pair — the same engine and result as the WebUI hook and the API.
Exit status: 0, or 3 with ``--strict`` when a tag was removed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from lib_lora import settings as settings_mod


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help="the prompt, with <lora:NAME:WEIGHT> tags (use '-' to read it from stdin)")
    p.add_argument("--lora-dir", action="append", required=True, metavar="DIR", dest="lora_dirs",
                   help="a LoRA folder (repeat for several)")
    p.add_argument("--negative", default="", metavar="TEXT", help="the negative prompt")
    p.add_argument("--checkpoint", metavar="FILE", help="check compatibility against this checkpoint (.safetensors)")
    p.add_argument("--index", metavar="FILE", help="index file (default: the LoRA Studio data folder's)")
    p.add_argument("--triggers", choices=settings_mod.TRIGGER_POLICIES, default=settings_mod.TRIGGER_INSERT,
                   help="trigger-word policy (default: %(default)s)")
    p.add_argument("--position", choices=settings_mod.TRIGGER_POSITIONS, default=settings_mod.POSITION_BESIDE_TAG,
                   help="where inserted trigger words go (default: %(default)s)")
    p.add_argument("--emphasis", type=float, default=1.2, help="weight for --triggers insert-with-emphasis")
    p.add_argument("--incompatible", choices=settings_mod.INCOMPATIBLE_POLICIES, default=settings_mod.INCOMPATIBLE_WARN,
                   help="what to do with a LoRA made for another base model (default: %(default)s)")
    p.add_argument("--no-comments", action="store_true", help="the WebUI's 'Enable comments' is off ('#' is text)")
    p.add_argument("--characters", metavar="DIR", help="characters folder for <char:NAME> tags (default: "
                   "$LORA_STUDIO_CHARACTERS, else characters/ in the first --lora-dir)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--strict", action="store_true", help="exit 3 when a tag is removed (missing, ambiguous ...)")


def run(args: argparse.Namespace) -> int:
    from lib_lora.errors import LibraryError
    from lib_lora.host import CheckpointDetector
    from lib_lora.library import Library
    from lib_lora.rewrite import RewriteSettings, preview

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    for d in args.lora_dirs:
        if not os.path.isdir(d):
            raise LibraryError(f"LoRA folder not found: {d}")
    checkpoint = None
    if args.checkpoint:
        if not os.path.isfile(args.checkpoint):
            raise LibraryError(f"checkpoint not found: {args.checkpoint}")
        checkpoint = CheckpointDetector().detect(args.checkpoint)
    cfg = RewriteSettings(
        trigger_policy=args.triggers,
        trigger_position=args.position,
        emphasis_weight=args.emphasis,
        incompatible=args.incompatible,
        prompt_comments=not args.no_comments,
    )
    from lib_lora.characters import character_root, has_character_tags, scan_characters

    characters = None
    if has_character_tags(prompt):
        characters = scan_characters(character_root(args.characters, args.lora_dirs))
    library = Library(args.lora_dirs, args.index)
    try:
        library.scan()
        data = preview(prompt, args.negative, library, checkpoint, cfg, None, characters)
    finally:
        library.close()
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(render(data))
    removed = any(t["status"] != "resolved" for t in data["tags"])
    return 3 if args.strict and removed else 0


def render(data: dict[str, Any]) -> str:
    """The human-readable report."""
    lines: list[str] = []
    ck = data.get("checkpoint")
    if ck:
        fam = f" ({ck['family']})" if ck.get("family") else ""
        lines.append(f"checkpoint: {ck.get('architecture')}{fam}")
    if not data["tags"]:
        lines.append("no <lora:...> tags")
    for t in data["tags"]:
        status = t["status"]
        head = f"{t['original']}"
        if status == "resolved":
            arch = t.get("architecture") or "unknown"
            fam = f"/{t['family']}" if t.get("family") else ""
            via = f" by {t['matched_by']}" if t.get("matched_by") else ""
            load = f", loaded as '{t['loader_name']}'" if t.get("loader_name") != t.get("name") else ""
            lines.append(f"  ok       {head} -> {t['relpath']}{via} [{arch}{fam}]{load}")
            if t.get("compat_level") and t["compat_level"] not in ("exact", "unknown"):
                lines.append(f"           {t['compat_level']}: {t['compat_message']}")
            if t["words_inserted"]:
                lines.append(f"           trigger words added: {', '.join(t['words_inserted'])}")
            offered = [s for s in t.get("trigger_sources", []) if s["words"]]
            if len(offered) > 1:
                for s in offered:
                    lines.append(f"           - {s['label']}: {', '.join(s['words'])}")
        else:
            lines.append(f"  {status:<8} {head}: {t['message']}")
    lines.append("")
    lines.append("prompt:   " + data["prompt"])
    if data["negative"] or data["original_negative"]:
        lines.append("negative: " + data["negative"])
    if data["warnings"]:
        lines.append("")
        lines.extend(f"warning: {w}" for w in data["warnings"])
    if data["aliases"]:
        lines.append("")
        lines.extend(f"alias for the WebUI: {name} -> {path}" for name, path in data["aliases"].items())
    if data["infotext"]:
        lines.append("")
        lines.append(f"infotext: LoRA Studio: {data['infotext']}")
    if data.get("characters"):
        lines.append(f"infotext: Characters: {data['characters']}")
    return "\n".join(lines)
