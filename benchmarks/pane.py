"""The extra-networks pane's LoRA Studio page at scale: 10,000 LoRAs, in-process and in headless Chromium.

    python benchmarks/pane.py [--count 10000] [--work DIR]      (needs Playwright for the browser part)

The library is benchmarks/browser.py's (real synth headers hard-linked to ``--count`` files). Printed:

- in-process: cold scan; building the pane (every LoRA against every checkpoint class; the second tab's
  reuses it) and its HTML (the first window of cards, lib_lora/ui/pane.py) — what LoRA Studio adds to the
  WebUI's ``create_html`` (the WebUI's own per-card work is not included); one search window
  (``pane.window_json``, what ``GET /lora-studio/v1/pane/cards`` answers);
- browser (the pane's HTML with style.css and javascript/lora_studio.js, WebUI element ids, no WebUI
  scripts; the API route answered in-process by ``pane.window_json`` through Playwright's routing): first
  paint (navigation to the first card on screen), checkpoint switch (dropdown value changed to every
  badge flipped, includes the script's 150 ms poll), "compatible only" on and off and a search (to the
  matching window in place); medians of ``--rounds``.

The WebUI's own search box and sort buttons are its code and are not measured here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="style.css">
<style>.card {{ position: relative; display: inline-block; width: 200px; height: 260px; margin: 4px;
overflow: hidden; vertical-align: top; }} .card .actions {{ position: absolute; left: 0; right: 0; bottom: 0; }}
.hidden {{ display: none; }}</style></head><body>
<div id="setting_sd_model_checkpoint"><input value="sd15.safetensors"></div>
<div id="tabs"><div id="tab_txt2img"><div id="txt2img_prompt"><textarea></textarea></div>
<div id="txt2img_neg_prompt"><textarea></textarea></div><input id="txt2img_lora_studio_extra_search">
<div id="txt2img_extra_tabs">{pane}</div></div></div>
<script src="lora_studio.js"></script></body></html>"""


#: The pane shows the window for [search text, checkpoint if "compatible only"] (no request in flight).
SETTLED = """(k) => { const p = document.querySelector('.lss-pane');
    return !p.dataset.lssLoading && (p.dataset.lssKey || '["",""]') === JSON.stringify(k); }"""


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lora-studio-pane-bench")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from browser import make_library  # benchmarks/browser.py

    from lib_lora.host import StandaloneHost
    from lib_lora.ui import pane

    loras, ckpts = make_library(args.work / "lib", args.count)
    host = StandaloneHost([loras], data_dir=args.work / "data", checkpoint_dirs=[ckpts])
    t0 = time.perf_counter()
    status = host.rescan(wait=True)
    print(f"scan: {status.total} files, {status.state}, {time.perf_counter() - t0:.1f} s")
    host.select_checkpoint("sd15.safetensors")
    pane.pane_for_host(host)  # the catalog (cached per library generation) and the checkpoint detections
    builds, renders, again = [], [], []
    for _ in range(args.rounds):
        pane._LAST.clear()
        t0 = time.perf_counter()
        model = pane.pane_for_host(host)
        t1 = time.perf_counter()
        pane.pane_for_host(host)  # the second tab's pane (unchanged library and checkpoints)
        again.append(time.perf_counter() - t1)
        t1 = time.perf_counter()
        markup = pane.pane_html(model, "txt2img")
        renders.append(time.perf_counter() - t1)
        builds.append(t1 - t0)
    shown = min(len(model.items), pane.WINDOW)
    print(f"pane of {len(model.items)} LoRAs: build {median_ms(builds)} (second tab {median_ms(again)}), "
          f"HTML of the first {shown} cards {median_ms(renders)} "
          f"({len(markup) / 1e6:.2f} MB, {len(markup) // max(1, shown)} bytes per card)")
    windows = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        pane.window_json(model, f"lora_{(r * 7919) % 1000:05d}")
        windows.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    pane.window_json(model, "", "sdxl.safetensors", True)
    print(f"a search window (pane/cards) {median_ms(windows)}; compatible only {median_ms([time.perf_counter() - t0])}")

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser: skipped (no Playwright)")
        return 0
    site = args.work / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "style.css").write_text((REPO / "style.css").read_text(encoding="utf-8"), encoding="utf-8")
    (site / "lora_studio.js").write_text((REPO / "javascript" / "lora_studio.js").read_text(encoding="utf-8"),
                                         encoding="utf-8")
    (site / "index.html").write_text(PAGE.format(pane=markup), encoding="utf-8")
    paint, flip, only_on, only_off, search = [], [], [], [], []

    def serve(route) -> None:  # type: ignore[no-untyped-def]
        url = urllib.parse.urlparse(route.request.url)
        if url.path.endswith("/lora-studio/v1/pane/cards"):
            a = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
            body = pane.window_json(model, a["q"], a["checkpoint"], a["compatible_only"] == "true",
                                    int(a["offset"]), int(a["limit"]))
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
        elif (site / url.path.lstrip("/")).is_file():
            route.fulfill(status=200, path=str(site / url.path.lstrip("/")))
        else:
            route.fulfill(status=404, body=b"")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        for r in range(args.rounds):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("http://lss.bench/**", serve)
            t0 = time.perf_counter()
            page.goto("http://lss.bench/index.html", wait_until="commit")
            page.wait_for_selector(".lss-pane-card", state="visible")
            paint.append(time.perf_counter() - t0)
            page.wait_for_function("() => window.loraStudio !== undefined")
            title = "sdxl.safetensors" if r % 2 == 0 else "sd15.safetensors"
            page.wait_for_function("() => document.querySelector('.lss-pane').dataset.lssApplied !== undefined")
            t0 = time.perf_counter()
            page.evaluate("(t) => { document.querySelector('#setting_sd_model_checkpoint input').value = t; }", title)
            page.wait_for_function("(t) => document.querySelector('.lss-pane').dataset.lssApplied === t", arg=title)
            flip.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            page.evaluate("() => document.querySelector('.lss-pane-compat-only').click()")
            page.wait_for_function("() => document.querySelector('.lss-pane').classList.contains('lss-only-compatible')")
            page.wait_for_function(SETTLED, arg=["", title])
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
            only_on.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            page.evaluate("() => document.querySelector('.lss-pane-compat-only').click()")
            page.wait_for_function("() => !document.querySelector('.lss-pane').classList.contains('lss-only-compatible')")
            page.wait_for_function(SETTLED, arg=["", ""])
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
            only_off.append(time.perf_counter() - t0)
            name = f"lora_{(r * 7919) % 1000:05d}"
            t0 = time.perf_counter()
            page.evaluate("(t) => { const i = document.querySelector('#txt2img_lora_studio_extra_search'); i.value = t;"
                          " i.dispatchEvent(new Event('input', {bubbles: true})); }", name)
            page.wait_for_function(SETTLED, arg=[name, ""])
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
            search.append(time.perf_counter() - t0)
            page.close()
        browser.close()
    print(f"browser, {len(model.items)} cards: first paint {median_ms(paint)}, checkpoint switch {median_ms(flip)}"
          f" (poll 150 ms included), compatible only on {median_ms(only_on)} / off {median_ms(only_off)}, "
          f"search {median_ms(search)} (its 60 ms debounce included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
