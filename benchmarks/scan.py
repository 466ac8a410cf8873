"""Benchmark: scanning a LoRA library of 2,000 SDXL LoRAs (issue 2).

Generates ``--files`` LoRA files with the real header of a kohya SDXL U-Net LoRA (2,166 tensors, a
~300 kB header) from ``lib_lora.synth``: ``--variants`` distinct sparse files (each with its own
metadata), hard-linked to reach the count, so the set costs a few MB of disk. One file in ten gets an
A1111 ``.json`` sidecar, one in twenty a preview. Then, in one run, on the same files:

(a) floor      a bare loop that opens every file, reads 8 + N bytes and ``json.loads`` the header;
(b) cold scan  ``Library.scan()`` on a new index: walk, headers, sidecars, detection, SQLite;
(c) warm scan  nothing changed: the same ``Library`` again, and a new ``Library`` on the warm index;
(d) CLI        ``python -m lib_lora scan DIR`` as a subprocess on the warm index (wall time);
(e) memory     tracemalloc peak of an in-process cold scan, and the max RSS of a cold-scan subprocess
               and of the warm CLI.

Targets (issue 2): cold <= 2x floor, warm < 0.1 s, CLI < 1 s, peak < 300 MB. The page cache is warm
for every measurement (a read pass runs first), so (a) and (b) compare the same I/O.

    python benchmarks/scan.py [--files 2000] [--variants 50] [--dir DIR] [--keep]

Figures are printed and written to ``benchmarks/out/scan.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lib_lora import synth  # noqa: E402
from lib_lora.library import Library  # noqa: E402
from lib_lora.safetensors_header import write_file  # noqa: E402

PRESET = "kohya-sdxl-unet"


def generate(root: Path, files: int, variants: int) -> list[Path]:
    tensors, base_md = synth.build(PRESET, 4)
    sources: list[Path] = []
    src_dir = root / "_variants"
    src_dir.mkdir(parents=True)
    for v in range(variants):
        md = dict(base_md)
        md["ss_output_name"] = f"bench_{v:03d}"
        md["modelspec.trigger_phrase"] = f"trig{v:03d}"
        if v % 5 == 1:
            md["ss_sd_model_name"] = "ponyDiffusionV6XL_v6.safetensors"
        elif v % 5 == 2:
            md["ss_sd_model_name"] = "illustriousXL_v01.safetensors"
        path = src_dir / f"v{v:03d}.safetensors"
        write_file(path, tensors, md, sparse=True)
        sources.append(path)
    out: list[Path] = []
    lib = root / "loras"
    for i in range(files):
        folder = lib / f"pack{i // 100:02d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        path = folder / f"lora_{i:05d}.safetensors"
        os.link(sources[i % variants], path)
        if i % 10 == 0:
            (folder / f"lora_{i:05d}.json").write_text(
                json.dumps({"activation text": f"word{i}", "preferred weight": 0.8, "sd version": "SDXL"}, indent=4))
        if i % 20 == 0:
            (folder / f"lora_{i:05d}.preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        out.append(path)
    return out


def floor(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            json.loads(fh.read(n))
    return time.perf_counter() - t0


def cpu() -> float:
    """CPU seconds of this process and its finished children (the reader processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def best(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    return min(fn() for _ in range(runs))


def timed_scan(lib: Library) -> float:
    t0 = time.perf_counter()
    lib.scan()
    return time.perf_counter() - t0


def child_rss_kb(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time and max RSS (kB) of one subprocess, measured by a fresh wrapper process."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\n"
        "dt = time.perf_counter() - t0\n"
        "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env, check=True)
    wall, rss = out.stdout.split()
    return float(wall), int(rss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--variants", type=int, default=50)
    ap.add_argument("--dir", help="work folder (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved floor/cold rounds (best of each is kept)")
    args = ap.parse_args()

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lora-studio-bench-"))
    if work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        t0 = time.perf_counter()
        paths = generate(work, args.files, args.variants)
        gen_s = time.perf_counter() - t0
        root = work / "loras"
        header_kb = (struct.unpack("<Q", paths[0].open("rb").read(8))[0]) / 1000
        disk_mb = sum(p.stat().st_blocks * 512 for p in work.rglob("*") if p.is_file() and p.parent.name == "_variants") / 1e6

        floor(paths)  # warm the page cache
        # Interleaved rounds, best of each: other load on the machine hits every variant alike.
        floor_w, floor_c, cold_w, cold_c, seq_w, seq_c = [], [], [], [], [], []
        for i in range(args.rounds):
            c0 = cpu()
            floor_w.append(floor(paths))
            floor_c.append(cpu() - c0)
            for workers, walls, cpus in ((None, cold_w, cold_c), (0, seq_w, seq_c)):
                c0 = cpu()
                walls.append(timed_scan(Library([root], work / f"cold-{workers}-{i}.sqlite3", workers=workers)))
                cpus.append(cpu() - c0)
        floor_s, cold_s, seq_s = min(floor_w), min(cold_w), min(seq_w)
        index = work / "cold-None-0.sqlite3"

        lib = Library([root], index)
        lib.scan()
        warm_same_s = best(lambda: timed_scan(lib), 5)
        warm_fresh_s = best(lambda: timed_scan(Library([root], index)), 5)

        lookup_lib = Library([root], index)
        lookup_lib.scan()
        names = [f"lora_{i:05d}" for i in range(0, args.files, max(args.files // 5, 1))][:5]
        t = time.perf_counter()
        for _ in range(200):
            for n in names:
                lookup_lib.lookup(n)
        lookup_us = (time.perf_counter() - t) / (200 * len(names)) * 1e6

        tracemalloc.start()
        Library([root], work / "traced.sqlite3").scan()
        _cur, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        cli = [sys.executable, "-m", "lib_lora", "scan", str(root), "--index", str(index)]
        cli_runs = [child_rss_kb(cli, env) for _ in range(5)]
        cli_s = statistics.median(w for w, _ in cli_runs)
        cli_rss_mb = max(r for _, r in cli_runs) / 1024
        cold_cli = [sys.executable, "-m", "lib_lora", "scan", str(root), "--index", str(work / "cold-cli.sqlite3")]
        cold_cli_s, cold_cli_rss = child_rss_kb(cold_cli, env)

        n = len(paths)
        fig = {
            "files": n,
            "variants": args.variants,
            "tensors_per_file": 2166,
            "header_kB": round(header_kb, 1),
            "generate_s": round(gen_s, 2),
            "disk_MB": round(disk_mb, 1),
            "floor_s": round(floor_s, 4),
            "cold_scan_s": round(cold_s, 4),
            "cold_over_floor": round(cold_s / floor_s, 2),
            "cold_scan_one_process_s": round(seq_s, 4),
            "cold_one_process_over_floor": round(seq_s / floor_s, 2),
            "floor_cpu_s": round(min(floor_c), 3),
            "cold_cpu_s": round(min(cold_c), 3),
            "cold_one_process_cpu_s": round(min(seq_c), 3),
            "warm_same_library_s": round(warm_same_s, 4),
            "warm_new_library_s": round(warm_fresh_s, 4),
            "cli_warm_wall_s": round(cli_s, 3),
            "cli_cold_wall_s": round(cold_cli_s, 3),
            "lookup_us": round(lookup_us, 2),
            "tracemalloc_peak_MB": round(traced_peak / 1e6, 1),
            "cli_warm_max_rss_MB": round(cli_rss_mb, 1),
            "cli_cold_max_rss_MB": round(cold_cli_rss / 1024, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "scan_workers": Library([root])._workers,
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        }
        targets = [
            ("cold scan <= 2x floor", fig["cold_over_floor"] <= 2.0),
            ("warm rescan < 0.1 s (same library)", warm_same_s < 0.1),
            ("warm rescan < 0.1 s (new library, warm index)", warm_fresh_s < 0.1),
            ("CLI scan, warm index < 1 s", cli_s < 1.0),
            ("peak memory < 300 MB", max(fig["tracemalloc_peak_MB"], fig["cli_cold_max_rss_MB"], fig["cli_warm_max_rss_MB"]) < 300),
        ]
        print(f"{n} SDXL kohya LoRAs ({fig['tensors_per_file']} tensors, {fig['header_kB']} kB header each; "
              f"{args.variants} distinct files hard-linked, {fig['disk_MB']} MB on disk), Python {fig['python']}, "
              f"{fig['cpus']} CPUs, {fig['scan_workers']} reader processes, load average {fig['load_average']}")
        print(f"  (a) floor: bare header read + json.loads       {floor_s:8.3f} s   ({floor_s / n * 1e3:.2f} ms/file)")
        print(f"  (b) cold scan (walk+headers+sidecars+detect+db) {cold_s:8.3f} s   = {fig['cold_over_floor']:.2f}x floor"
              f"   [{fig['scan_workers']} reader processes]")
        print(f"      cold scan in one process                    {seq_s:8.3f} s   = {fig['cold_one_process_over_floor']:.2f}x floor")
        print(f"      CPU time: floor {fig['floor_cpu_s']} s, cold {fig['cold_cpu_s']} s, one process {fig['cold_one_process_cpu_s']} s")
        print(f"  (c) warm rescan, same Library                   {warm_same_s:8.4f} s   = {warm_same_s / floor_s:.3f}x floor")
        print(f"      warm rescan, new Library on warm index      {warm_fresh_s:8.4f} s")
        print(f"  (d) python -m lib_lora scan, warm index (wall)  {cli_s:8.3f} s   (cold: {cold_cli_s:.2f} s)")
        print(f"  (e) peak memory: tracemalloc {fig['tracemalloc_peak_MB']} MB; max RSS CLI warm {fig['cli_warm_max_rss_MB']} MB, "
              f"cold {fig['cli_cold_max_rss_MB']} MB")
        print(f"      lookup of one name: {lookup_us:.1f} µs")
        for label, ok in targets:
            print(f"  [{'PASS' if ok else 'FAIL'}] {label}")
        out_dir = REPO / "benchmarks" / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "scan.json").write_text(json.dumps({"figures": fig, "targets": dict(targets)}, indent=2))
        return 0 if all(ok for _l, ok in targets) else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
