"""``python -m lib_lora inspect FILE... [--json] [--hash]``: what a LoRA (or checkpoint) file is.

For each file: kind, base architecture and family, adapter type, rank/alpha, what it targets, trigger
words with their source, the evidence behind each conclusion, conflicts between metadata and
structure, training facts from the metadata and what its sidecars say. Only the header is read
(``--hash`` reads the whole file once). ``.pt``/``.ckpt`` files are never opened. A file that cannot be
read is reported and the others still are; the exit status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from lib_lora.safetext import visible


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help=".safetensors LoRA or checkpoint files")
    p.add_argument("--json", action="store_true", help="print one JSON document (a list, one object per file)")
    p.add_argument("--hash", action="store_true", help="also compute sha256 / AutoV2 / addnet hashes (reads the file)")
    p.add_argument("--metadata", action="store_true", help="with --json: include the kept header metadata")


def _fmt_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def inspect_file(path: str, *, want_hash: bool = False) -> dict[str, Any]:
    """Everything the report shows about ``path`` as a JSON-ready dict; ``error`` set on failure."""
    from lib_lora.errors import LoraStudioError
    from lib_lora.hashing import hash_file
    from lib_lora.library import describe_file
    from lib_lora.safetensors_header import read_header

    out: dict[str, Any] = {"path": os.path.abspath(path)}
    if os.path.isdir(path):
        out["error"] = f"{path}: is a folder (use 'scan' for folders)"
        return out
    if not os.path.exists(path):
        out["error"] = f"{path}: no such file"
        return out
    header = None
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".pt", ".ckpt", ".pth", ".bin", ".pkl", ".pickle"):
        try:
            header = read_header(path)
        except LoraStudioError as exc:
            out["error"] = exc.message
            return out
    try:
        info = describe_file(path, header=header)
    except LoraStudioError as exc:
        out["error"] = exc.message
        return out
    out.update(info.to_dict(metadata=True))
    if header is not None:
        out["tensors"] = len(header.tensors)
        out["header_bytes"] = header.header_size
    if want_hash and not out.get("error"):
        try:
            h = hash_file(path, addnet=header is not None)
        except LoraStudioError as exc:
            out["hash_error"] = exc.message
        else:
            out["hashes"] = {"sha256": h.sha256, "autov2": h.autov2, "addnet": h.addnet, "lora_hash": h.lora_short}
    return out


def _line(label: str, value: object) -> str:
    return f"  {label:<14}{value}"


def render(d: dict[str, Any]) -> str:
    """The human-readable report of one :func:`inspect_file` result (file text shown terminal-safe)."""
    return "\n".join(visible(line) for line in _render_lines(d))


def _render_lines(d: dict[str, Any]) -> list[str]:
    lines = [d["path"]]
    if d.get("error") and not d.get("name"):
        lines.append(f"  error: {d['error']}")
        return lines
    det = d.get("detection") or {}
    if d.get("legacy"):
        lines.append(_line("kind", "legacy pickle file (.pt/.ckpt) — not opened, never unpickled"))
    elif d.get("error"):
        lines.append(f"  error: {d['error']}")
    kind = det.get("kind")
    if kind:
        lines.append(_line("kind", kind))
    if not d.get("legacy") and not d.get("error"):
        arch = d.get("architecture") or "unknown"
        cands = det.get("candidates") or []
        lines.append(_line("architecture", arch + (f"  (one of: {', '.join(cands)})" if cands else "")))
        lines.append(_line("family", d.get("family") or "—"))
        if det:
            rank = det.get("rank")
            alpha = det.get("alpha")
            adapter = det.get("adapter") or "—"
            bits = [adapter]
            if rank is not None:
                bits.append(f"rank {rank}")
            if alpha is not None:
                bits.append(f"alpha {alpha:g}" if isinstance(alpha, (int, float)) else f"alpha {alpha}")
            lines.append(_line("adapter", "   ".join(bits)))
            if det.get("targets"):
                lines.append(_line("targets", ", ".join(det["targets"])))
        else:
            lines.append(_line("detection", "not available in this version"))
    words = d.get("trigger_words") or []
    if words:
        first = True
        for src in words:
            text = ", ".join(src["words"])
            label = src.get("label", src["source"])
            mark = " — not inserted" if src.get("guessed") else ""
            lines.append(_line("trigger words" if first else "", f"{text}   ← {label}{mark}"))
            first = False
    else:
        lines.append(_line("trigger words", "—"))
    size = _fmt_size(d.get("size", 0))
    if d.get("tensors") is not None:
        lines.append(_line("file", f"{size}, {d['tensors']} tensors, header {_fmt_size(d['header_bytes'])}"))
    else:
        lines.append(_line("file", size))
    s = d.get("summary") or {}
    facts = []
    for key, label in (("title", "title"), ("output_name", "output name"), ("base_model_version", "base version"),
                       ("base_checkpoint", "trained on"), ("network_module", "module")):
        if s.get(key):
            facts.append(f"{label}: {s[key]}")
    train = []
    if s.get("images") is not None:
        train.append(f"{s['images']} images")
    if s.get("steps") is not None:
        train.append(f"{s['steps']} steps")
    if s.get("epochs") is not None:
        train.append(f"{s['epochs']} epochs")
    if s.get("resolution"):
        train.append(str(s["resolution"]))
    if s.get("learning_rate") is not None:
        train.append(f"lr {s['learning_rate']:g}")
    if train:
        facts.append("training: " + ", ".join(train))
    if s.get("top_tags"):
        facts.append("top tags: " + ", ".join(f"{t} ({c})" for t, c in s["top_tags"][:8]))
    if s.get("license"):
        facts.append(f"license: {s['license']}")
    for i, fact in enumerate(facts):
        lines.append(_line("metadata" if i == 0 else "", fact))
    side = d.get("sidecars") or {}
    user = side.get("user")
    civ = side.get("civitai")
    notes = []
    if user:
        bits = [f"{k.replace('_', ' ')}: {user[k]}" for k in ("sd_version", "preferred_weight", "base", "category")
                if user.get(k) not in (None, "")]
        notes.append("user metadata (.json)" + (" — " + "; ".join(bits) if bits else ""))
    if civ:
        notes.append(f"Civitai: {civ.get('model_name') or '?'} — base {civ.get('base_model') or '?'}, type {civ.get('model_type') or '?'}")
    if d.get("license"):
        notes.append(f"license: {d['license']}")
    if side.get("preview"):
        notes.append(f"preview: {os.path.basename(side['preview'])}")
    for i, note in enumerate(notes):
        lines.append(_line("sidecars" if i == 0 else "", note))
    hashes = d.get("hashes") or {}
    if hashes.get("sha256"):
        lines.append(_line("hashes", f"AutoV2 {hashes['autov2']}   Lora hash {hashes.get('lora_hash')}   sha256 {hashes['sha256']}"))
    elif hashes.get("lora_hash"):
        lines.append(_line("hashes", f"Lora hash {hashes['lora_hash']} (from sshs_model_hash)"))
    if d.get("hash_error"):
        lines.append(_line("hashes", d["hash_error"]))
    evidence = det.get("evidence") or []
    if evidence:
        lines.append("  evidence")
        for e in evidence:
            lines.append(f"    - [{e.get('source')}] {e.get('claim')}: {e.get('detail')}")
    problems = d.get("problems") or []
    shown = [p for p in problems if p != d.get("error")]
    if shown:
        lines.append("  problems")
        for p in shown:
            lines.append(f"    ! {p}")
    return lines


def run(args: argparse.Namespace) -> int:
    results = [inspect_file(f, want_hash=args.hash) for f in args.files]
    failed = any(r.get("error") for r in results)
    if args.json:
        if not args.metadata:
            for r in results:
                r.pop("metadata", None)
        json.dump(results, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n\n".join(render(r) for r in results) + "\n")
    for r in results:
        if r.get("error"):
            print(visible(f"error: {r['error']}"), file=sys.stderr)
    return 1 if failed else 0
