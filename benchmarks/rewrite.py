"""Benchmark: rewrite a prompt with 5 LoRA tags against a library of 10,000 LoRAs.

    python benchmarks/rewrite.py [--count 10000] [--runs 2000] [--dir DIR]

Builds (once, in ``--dir`` or a temporary folder) 10,000 real ``.safetensors`` LoRA files — kohya key
names and metadata, sparse data, 5% in shadowed subfolders, 20% with an ``ss_output_name`` alias —
scans them into a real :class:`lib_lora.library.Library` index, then times
:func:`lib_lora.rewrite.rewrite_prompt` on a prompt whose 5 tags resolve by alias, relative path,
case-insensitive match and stem (with trigger-word insertion), plus one name that is not there.
Prints the median and percentiles per rewrite; the target is a median under 1 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib_lora.library import Library
from lib_lora.rewrite import RewriteSettings, rewrite_batch, rewrite_prompt
from lib_lora.safetensors_header import write_file

# A small but real kohya SD1.5 LoRA: two attention modules with their alpha.
TENSORS = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha": ("F16", ()),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": ("F16", (4, 768)),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": ("F16", (320, 4)),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha": ("F16", ()),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": ("F16", (4, 768)),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": ("F16", (768, 4)),
}

PROMPT = (
    "masterpiece, 1girl, <lora:Alias_Style_00042:0.8>, standing, <lora:chars/char_00017:0.7> "
    "<lora:LORA_05005:0.5>, smile, <lora:lora_09999:1:0.5>, <lora:does_not_exist:1>"
)


def build(root: Path, count: int) -> None:
    marker = root / f".built-{count}"
    if marker.exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        if i % 20 == 0:  # every char_N exists as chars/char_N and old/char_N: shadowed stems
            j = i // 20
            name, folder = f"char_{j // 2:05d}", root / ("chars" if j % 2 == 0 else "old")
        else:
            name, folder = f"lora_{i:05d}", root
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "ss_network_module": "networks.lora",
            "ss_base_model_version": "sd_v1",
            "modelspec.architecture": "stable-diffusion-v1/lora",
            "modelspec.trigger_phrase": f"tok{i:05d}",
            "ss_tag_frequency": json.dumps({f"10_tok{i:05d}": {f"tok{i:05d}": 20, "1girl": 18, "smile": 9}}),
        }
        if i % 5 == 1:
            meta["ss_output_name"] = f"Alias_Style_{i // 5:05d}"
        write_file(folder / f"{name}.safetensors", TENSORS, meta, sparse=True)
    marker.write_text("ok")


def measure(fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def report(label: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    print(f"{label:<44} median {statistics.median(ms):7.3f} ms   p90 {p(0.9):7.3f} ms   p99 {p(0.99):7.3f} ms   "
          f"(n={len(ms)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--dir", help="where to build the library (kept between runs)")
    args = ap.parse_args()

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lora-studio-bench-"))
    root = base / "loras"
    t0 = time.perf_counter()
    build(root, args.count)
    t1 = time.perf_counter()
    library = Library([root], base / "index.sqlite3")
    scan = library.scan()
    t2 = time.perf_counter()
    print(f"library: {scan.total} LoRAs in {root} (files {t1 - t0:.1f} s, scan {t2 - t1:.1f} s)")

    settings = RewriteSettings()
    t3 = time.perf_counter()
    first = rewrite_prompt(PROMPT, "lowres", library, settings=settings)
    cold = (time.perf_counter() - t3) * 1000
    for tag in first.tags:
        print(f"  {tag.original:<32} {tag.status:<9} {tag.matched_by or '':<9} -> {tag.output or '(removed)'}")
    print(f"  prompt: {first.prompt}")
    statuses = [t.status for t in first.tags]
    assert statuses == ["resolved"] * 4 + ["missing"], statuses
    assert first.inserted_words, "no trigger words inserted"
    print(f"\nfirst rewrite after a scan (every name looked up, did-you-mean for the missing one): {cold:.1f} ms")
    report("rewrite_prompt, 5 tags", measure(lambda: rewrite_prompt(PROMPT, "lowres", library, settings=settings), args.runs))
    plain = PROMPT.replace(", <lora:does_not_exist:1>", "")
    report("rewrite_prompt, 4 tags, none missing", measure(lambda: rewrite_prompt(plain, "", library, settings=settings), args.runs))
    report("rewrite_batch, 8 identical prompts", measure(lambda: rewrite_batch([PROMPT] * 8, ["lowres"] * 8, library, settings=settings), args.runs // 4))
    library.scan()  # nothing changed: same generation, the remembered resolutions stay valid
    report("rewrite_prompt, 5 tags, after a no-op rescan", measure(lambda: rewrite_prompt(PROMPT, "lowres", library, settings=settings), args.runs))
    t3 = time.perf_counter()
    for name in ("lora_09999", "chars/char_00017", "Alias_Style_00042", "LORA_05005", "does_not_exist"):
        library.lookup(name)
    print(f"(for scale: the 5 Library.lookup calls alone: {(time.perf_counter() - t3) * 1000:.3f} ms)")
    library.close()
    if not args.dir:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
