"""Benchmark: fetch Civitai info for 2,000 LoRAs against the local fake Civitai, and stream a large
download (issue 10).

(a) fetch-info  ``--files`` small files (their SHA-256 given, as the index's hash cache gives them), each
                known to the fake Civitai with its own model and one preview image: 20 bulk lookups,
                one model request and one preview (JPEG -> PNG via Pillow) per file, 4 in flight.
                The fake runs in its own process and reports its handler time ("the server's own
                time"); this process's CPU time is LoRA Studio's overhead. Reported per file: wall
                time, server time, client CPU time; and the peak of Python allocations (tracemalloc,
                a second run) and the max RSS.
(b) download    a generated body of ``--download-mb`` MiB (a safetensors header, then zeros, streamed by
                the fake in 1 MiB chunks)
                downloaded through the redirect to the signed URL, hashed while streaming, verified
                and linked into place; RSS sampled every 50 ms: it must stay flat (no buffering).

    python benchmarks/civitai_fetch.py [--files 2000] [--download-mb 2048] [--skip-download]

Figures are printed and written to ``benchmarks/out/civitai_fetch.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SERVER = r"""
import json, sys, time, hashlib
sys.path.insert(0, {tests!r})
from fake_remote import FakeCivitai, version_object, model_object, safetensors_prefix
manifest = json.load(open({manifest!r}))
fake = FakeCivitai()
for i, (sha, name) in enumerate(manifest["files"]):
    v = version_object(100000 + i, 500000 + i, sha, file_name=name, base_model="Illustrious",
                       words=("zk_%d, red coat" % i,))
    fake.add(v, model_object(500000 + i, [v]))
big = manifest.get("big")
if big:
    size, sha = big
    zero = bytes(1 << 20)
    prefix = safetensors_prefix(size - len(safetensors_prefix(size)))
    def gen():
        def chunks(start):
            yield prefix
            left = size - len(prefix)
            while left > 0:
                n = min(left, len(zero))
                yield zero[:n]
                left -= n
        return size, chunks
    v = version_object(9, 9, sha, file_name="big.safetensors")
    fake.add(v, model_object(9, [v]))
    fake.files[9] = gen
print(fake.url, flush=True)
while True:
    time.sleep(3600)
"""


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stats(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/__stats", timeout=10) as r:
        return json.load(r)  # type: ignore[no-any-return]


def zeros_sha(size: int) -> str:
    """SHA-256 of the benchmark body: a safetensors header, then zeros up to ``size`` bytes."""
    sys.path.insert(0, str(REPO / "tests"))
    from fake_remote import safetensors_prefix

    h = hashlib.sha256()
    zero = bytes(1 << 20)
    prefix = safetensors_prefix(size - len(safetensors_prefix(size)))
    h.update(prefix)
    left = size - len(prefix)
    while left > 0:
        n = min(left, len(zero))
        h.update(zero[:n])
        left -= n
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--download-mb", type=int, default=2048)
    ap.add_argument("--skip-download", action="store_true")
    args = ap.parse_args()

    from lib_lora.remote.civitai import CivitaiClient
    from lib_lora.remote.download import download
    from lib_lora.remote.fetch_info import FetchOptions, fetch_info

    work = Path(tempfile.mkdtemp(prefix="lss-civitai-bench-"))
    server = None
    try:
        loras = work / "loras"
        loras.mkdir()
        shas: dict[str, str] = {}
        files = []
        for i in range(args.files):
            p = loras / f"lora_{i:04d}.safetensors"
            data = os.urandom(64)
            p.write_bytes(data)
            shas[str(p)] = hashlib.sha256(data).hexdigest()
            files.append((shas[str(p)], p.name))
        big_size = args.download_mb << 20
        manifest = {"files": files, "big": None if args.skip_download else [big_size, zeros_sha(big_size)]}
        (work / "manifest.json").write_text(json.dumps(manifest))
        code = SERVER.format(tests=str(REPO / "tests"), manifest=str(work / "manifest.json"))
        server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        client = CivitaiClient(url, "bench-key")
        paths = list(shas)

        # (a) timing run
        before = stats(url)
        cpu0, t0 = time.process_time(), time.perf_counter()
        report = fetch_info(paths, client, FetchOptions(), hasher=shas.__getitem__)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        after = stats(url)
        assert report.ok and report.count("fetched") == args.files, report.summary()
        server_busy = after["busy"] - before["busy"]
        requests = after["requests"] - before["requests"]
        # memory run: the same work again (refetch), with tracemalloc
        for p in loras.glob("*.preview.png"):
            p.unlink()
        tracemalloc.start()
        report2 = fetch_info(paths, client, FetchOptions(refetch=True), hasher=shas.__getitem__)
        _cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert report2.ok
        fetch = {
            "files": args.files,
            "requests": requests,
            "wall_s": round(wall, 2),
            "wall_ms_per_file": round(1000 * wall / args.files, 2),
            "server_ms_per_file": round(1000 * server_busy / args.files, 2),
            "client_cpu_ms_per_file": round(1000 * cpu / args.files, 2),
            "tracemalloc_peak_mb": round(peak / 2**20, 1),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        print("fetch-info:", json.dumps(fetch))

        result: dict[str, object] = {"fetch_info": fetch}
        if not args.skip_download:
            dl_dir = work / "dl"
            dl_dir.mkdir()
            samples: list[float] = []
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    samples.append(rss_mb())
                    time.sleep(0.05)

            base_rss = rss_mb()
            th = threading.Thread(target=sample, daemon=True)
            th.start()
            t0 = time.perf_counter()
            r = download(f"{url}/api/download/models/9", str(dl_dir), client=client,
                         options=FetchOptions(previews=False))
            dt = time.perf_counter() - t0
            done.set()
            th.join()
            assert os.path.getsize(r.path) == big_size
            result["download"] = {
                "mb": args.download_mb,
                "seconds": round(dt, 1),
                "mb_per_s": round(args.download_mb / dt, 1),
                "rss_before_mb": round(base_rss, 1),
                "rss_peak_during_mb": round(max(samples or [base_rss]), 1),
                "rss_growth_mb": round(max(samples or [base_rss]) - base_rss, 1),
            }
            print("download:", json.dumps(result["download"]))
            os.unlink(r.path)
        result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                             "note": "server and client share the machine's CPUs"}
        out = REPO / "benchmarks" / "out"
        out.mkdir(exist_ok=True)
        (out / "civitai_fetch.json").write_text(json.dumps(result, indent=2))
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
