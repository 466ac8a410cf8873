"""``python -m lib_lora scan DIR... [--checkpoint FILE] [--json] [--index PATH] [--hash]``.

Indexes the LoRA folders (only new or changed files are read; see :mod:`lib_lora.library`) and prints
one row per LoRA: name, base model, adapter type, rank/alpha, the trigger words a prompt would get, the
compatibility with ``--checkpoint`` and every problem (unreadable, legacy pickle, duplicate name,
metadata conflicts, broken sidecars). Progress goes to stderr when reading takes a while on a terminal.
Exit status: 0, or 1 when a folder could not be scanned or the checkpoint could not be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from lib_lora.safetext import unfiltered, visible


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="LoRA folders (searched recursively, linked folders followed)")
    p.add_argument("--checkpoint", metavar="FILE", help="a .safetensors checkpoint to check every LoRA against")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--index", metavar="PATH", help="index database (default: in the LoRA Studio data folder)")
    p.add_argument("--hash", action="store_true", help="compute missing hashes now (reads whole files; cached)")


class _Progress:
    """``\\r``-updated progress on stderr, only on a terminal and only once reading takes > 0.3 s."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int, path: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < 0.3 or (now - self.last < 0.1 and done != total):
            return
        self.last = now
        self.shown = True
        err = unfiltered(sys.stderr)  # its own escape sequence: clear to the end of the line
        err.write(f"\r{self.label} {done}/{total} …\033[K")
        err.flush()

    def close(self) -> None:
        if self.shown:
            err = unfiltered(sys.stderr)
            err.write("\r\033[K")
            err.flush()


def _checkpoint_detection(path: str) -> Any:
    from lib_lora import architecture
    from lib_lora.errors import LibraryError
    from lib_lora.safetensors_header import read_header

    if os.path.splitext(path)[1].lower() in (".ckpt", ".pt", ".pth", ".bin"):
        raise LibraryError(f"checkpoint {path}: a pickle file; LoRA Studio never opens those — use a .safetensors checkpoint")
    header = read_header(path)  # HeaderError is a LoraStudioError: reported by the CLI
    hints = architecture.Hints(filename=os.path.basename(path))
    try:
        fn = getattr(architecture, "detect_checkpoint", None) or architecture.detect
        return fn(header, hints)
    except NotImplementedError:
        return None


_COMPAT: list[Any] = []  # the lib_lora.compat module (or None), imported once


def _compat_module() -> Any:
    if not _COMPAT:
        import importlib

        try:
            _COMPAT.append(importlib.import_module("lib_lora.compat"))
        except ImportError:
            _COMPAT.append(None)
    return _COMPAT[0]


def _compat(lora_det: Any, ckpt_det: Any) -> tuple[str, str]:
    if lora_det is None:
        return "unknown", "base model of the LoRA unknown"
    compat = _compat_module()
    if compat is None:
        return "unknown", "compatibility check not available"
    try:
        result = compat.check(lora_det, ckpt_det)
    except NotImplementedError:
        return "unknown", "compatibility check not available"
    return str(getattr(result, "level", "unknown")), str(getattr(result, "message", "") or "")


def _base(e: Any) -> str:
    if e.legacy:
        return "legacy .pt" if e.suffix.lower() == ".pt" else "legacy .ckpt"
    if e.error:
        return "unreadable"
    if e.detection is None:
        return "?"
    text = e.detection.architecture or "unknown"
    if e.detection.family and e.detection.family != text:
        text += f"/{e.detection.family}"
    return text


def _triggers(e: Any) -> str:
    from lib_lora import triggers

    sources = e.trigger_words
    chosen = triggers.chosen(sources)
    if chosen is not None:
        return ", ".join(chosen.words)
    guessed = next((s for s in sources if s.guessed), None)
    return f"(guess: {', '.join(guessed.words[:3])})" if guessed is not None else ""


def _problems(e: Any, dup_count: int) -> list[str]:
    out = []
    if e.error:
        out.append("unreadable: " + e.error.split(": ", 1)[-1] if e.error.startswith(e.path) else e.error)
    if e.link_outside:
        out.append(f"links outside the LoRA folders → {e.link_outside}")
    if e.legacy:
        out.append("legacy pickle (not inspected)")
    if dup_count > 1:
        out.append(f"name shared by {dup_count} files")
    for p in e.sidecars.problems:
        out.append("bad sidecar: " + os.path.basename(p.split(":", 1)[0]))
    if e.detection is not None:
        out.extend(e.detection.conflicts)
    return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _table(rows: list[list[str]], headers: list[str], caps: list[int], term_width: int | None) -> str:
    widths = [min(max([len(h)] + [len(visible(r[i])) for r in rows]), caps[i]) for i, h in enumerate(headers)]
    lines = []
    for r in [headers, *rows]:
        cells = [_cut(visible(c), widths[i]).ljust(widths[i]) if i < len(r) - 1 else _cut(c, widths[i]) for i, c in enumerate(r)]
        line = "  ".join(cells).rstrip()
        if term_width:
            line = _cut(line, term_width)
        lines.append(line)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from lib_lora.errors import LibraryError
    from lib_lora.library import Library

    ckpt_det = None
    ckpt_path = None
    if args.checkpoint:
        ckpt_path = os.path.abspath(args.checkpoint)
        if not os.path.isfile(ckpt_path):
            raise LibraryError(f"checkpoint not found: {args.checkpoint}")
        ckpt_det = _checkpoint_detection(ckpt_path)

    lib = Library(args.dirs, args.index)
    progress = _Progress("reading LoRA headers")
    try:
        result = lib.scan(progress=progress)
    finally:
        progress.close()
    if args.hash:
        hp = _Progress("hashing")
        lib.start_hashing(progress=lambda st: hp(st.done, st.total))
        lib.wait_for_hashes()
        hp.close()
    entries = lib.entries()
    dups = {stem: len(v) for stem, v in lib.duplicates().items()}
    missing_roots = [p for p, m in result.errors if p in lib.roots]

    if args.json:
        loras = []
        for e in entries:
            d = e.to_dict()
            d["problems"] = _problems(e, dups.get(e.name, 1))
            if ckpt_path is not None:
                level, message = _compat(e.detection, ckpt_det)
                d["compat"] = {"level": level, "message": message}
            loras.append(d)
        doc = {
            "roots": list(lib.roots),
            "index": str(lib.index_path),
            "scan": {
                "added": len(result.added), "changed": len(result.changed), "removed": len(result.removed),
                "unchanged": result.unchanged, "reads": result.reads, "seconds": round(result.seconds, 4),
                "errors": [{"path": p, "message": m} for p, m in result.errors], "notes": list(result.notes),
                "linked_folders": [{"link": link, "target": target} for link, target in result.links],
            },
            "checkpoint": None if ckpt_path is None else {
                "path": ckpt_path,
                "architecture": getattr(ckpt_det, "architecture", None),
                "family": getattr(ckpt_det, "family", None),
            },
            "duplicates": {stem: [e.path for e in v] for stem, v in lib.duplicates().items()},
            "loras": loras,
        }
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 1 if missing_roots else 0

    headers = ["NAME", "BASE", "TYPE", "RANK/α", "TRIGGER WORDS"]
    caps = [48, 22, 8, 9, 36]
    if ckpt_path is not None:
        headers.append("COMPAT")
        caps.append(14)
    headers.append("PROBLEMS")
    caps.append(200)
    rows: list[list[str]] = []
    levels: dict[str, int] = {}
    arch_counts: dict[str, int] = {}
    problem_count = 0
    multi_root = len(lib.roots) > 1
    for e in entries:
        det = e.detection
        rank = ""
        if det is not None and det.rank is not None:
            rank = str(det.rank) + (f"/{det.alpha:g}" if isinstance(det.alpha, (int, float)) else "")
        name = e.relpath + ("" if e.suffix.lower() == ".safetensors" else e.suffix)
        if multi_root:
            name = f"[{lib.roots.index(e.root) + 1}] {name}" if e.root in lib.roots else name
        row = [name, _base(e), (det.adapter or "") if det is not None else "", rank, _triggers(e)]
        if ckpt_path is not None:
            level, _msg = _compat(det, ckpt_det)
            levels[level] = levels.get(level, 0) + 1
            row.append(level.upper() if level == "incompatible" else level)
        probs = _problems(e, dups.get(e.name, 1))
        problem_count += bool(probs)
        row.append("; ".join(probs))
        rows.append(row)
        arch_counts[_base(e)] = arch_counts.get(_base(e), 0) + 1

    term = os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else None
    out = sys.stdout
    if multi_root:
        for i, r in enumerate(lib.roots, 1):
            out.write(visible(f"[{i}] {r}") + "\n")
    if rows:
        out.write(_table(rows, headers, caps, term) + "\n\n")
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(arch_counts.items(), key=lambda kv: (-kv[1], kv[0])))
    folders = "folder" if len(lib.roots) == 1 else "folders"
    out.write(f"{len(entries)} LoRAs in {len(lib.roots)} {folders}" + (f" — {kinds}" if kinds else "") + "\n")
    out.write(
        f"scanned in {result.seconds:.2f} s: {len(result.added)} new, {len(result.changed)} changed, "
        f"{len(result.removed)} removed, {result.unchanged} unchanged · {problem_count} with problems\n"
    )
    if ckpt_path is not None:
        arch = getattr(ckpt_det, "architecture", None) or "unknown"
        fam = getattr(ckpt_det, "family", None)
        summary = ", ".join(f"{n} {lvl}" for lvl, n in sorted(levels.items(), key=lambda kv: -kv[1]))
        out.write(f"checkpoint {os.path.basename(ckpt_path)}: {arch}{'/' + fam if fam else ''} — {summary}\n")
    out.write(visible(f"index: {lib.index_path}") + "\n")
    for link, target in result.links:
        out.write(visible(f"info: followed the linked folder {link} → {target}") + "\n")
    for note in result.notes:
        print(visible(f"note: {note}"), file=sys.stderr)
    for path, message in result.errors:
        if path in lib.roots or not any(e.path == path for e in entries):
            print(visible(f"warning: {message}"), file=sys.stderr)
    return 1 if missing_roots else 0
