"""The extra-networks pane's LoRA Studio page with 10,000 LoRAs inside a real WebUI, in headless Chromium.

    WEBUI_DIR=... [WEBUI_PYTHON=...] python benchmarks/pane_webui.py [--count 10000] [--work DIR]

Starts the real UI through tests/webui_real_runner.py (``serve_ui``: the WebUI's own ``ui.create_ui`` and
launch, model stubbed, nothing generated) over benchmarks/browser.py's library, then measures, median of
``--rounds`` page loads:

- pane ready: from navigation to the LoRA Studio page's cards in the DOM (the WebUI fills every page of
  the pane on load, the built-in Lora page with its own 10,000 cards included);
- first paint: from the click on the pane's "LoRA Studio" tab to the first card on screen;
- checkpoint switch: from picking the other checkpoint in the WebUI's dropdown to every badge flipped;
- "compatible only" on: to the matching window of cards in place (a big library's pane renders one
  window of cards, see lib_lora/ui/pane.py; the others come from ``GET /lora-studio/v1/pane/cards``);
- the WebUI's own search box: from typing a LoRA's name to the matching cards in place (the WebUI's code
  filters the rendered cards, LoRA Studio's script fetches the matching window);
- for comparison, the built-in "Lora" page over the same files: first paint after its tab click, search.

``--hide-builtin yes|both`` measures with LoRA Studio's ``pane_hide_builtin_lora`` setting on (both: off and
on, one server each). ``--against DIR`` measures another checkout of LoRA Studio first, in the same run (a
``git archive`` of an older commit unpacked into DIR: its ``lib_lora`` and ``javascript/`` are served, this
checkout's test runner drives it), and prints each variant's medians as ratios to it; ``--repeat N`` takes
N turns of all variants, so a slow spell of a shared machine hits all of them. ``--profile`` adds, per step,
where Chromium's main thread went (see :class:`Probe`), and a 3 s idle step after the first paint (what the
page does by itself: timers, pollers, mutation observers). ``--strip-builtin`` is an experiment: the built-in
page's cards are taken out of the page in the browser, to see what they cost the rest of the page.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms" if values else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lora-studio-pane-bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    help="also attribute each step's time (Chromium's CPU profiler: per script and function; "
                         "its metrics: script, style, layout; the pane/cards requests' Server-Timing)")
    ap.add_argument("--against", type=Path, metavar="DIR",
                    help="another LoRA Studio checkout (e.g. `git archive` of an older commit) measured in the same "
                         "run, before this one; with --repeat, taking turns")
    ap.add_argument("--repeat", type=int, default=1, help="how many turns of the variants")
    ap.add_argument("--hide-builtin", choices=("no", "yes", "both"), default="no",
                    help="the lora_studio_pane_hide_builtin_lora setting for this checkout (both: one variant each)")
    ap.add_argument("--strip-builtin", action="store_true",
                    help="an experiment: take the built-in Lora page's cards out of the page before measuring")
    args = ap.parse_args()
    if not os.environ.get("WEBUI_DIR"):
        print("set WEBUI_DIR (and WEBUI_PYTHON) to a WebUI checkout", file=sys.stderr)
        return 2

    from browser import make_library  # benchmarks/browser.py
    from conftest import FIXTURES
    from e2e_support import CHROMIUM, CHROMIUM_ARGS
    from test_webui_real import serving_ui

    variants: list[tuple[str, Path, dict[str, Any]]] = []
    if args.against:
        variants.append((f"{args.against.name} (--against)", args.against.resolve(), {}))
    for hide in {"no": [False], "yes": [True], "both": [False, True]}[args.hide_builtin]:
        name = "this checkout" + (", built-in Lora page hidden" if hide else "")
        # always set: the work folder's WebUI settings (config.json) keep what an earlier run set
        variants.append((name, REPO, {"lora_studio_pane_hide_builtin_lora": hide}))
    loras, ckpts = make_library(args.work / "lib", args.count)
    results: dict[str, dict[str, list[float]]] = {}
    for turn in range(args.repeat):
        for name, extension, options in variants:
            t0 = time.perf_counter()
            with serving_ui(args.work / "webui-run", loras, ckpts, FIXTURES / "clip-tokenizer",
                            extension=extension, options=options) as url:
                print(f"[{name}, turn {turn + 1}] WebUI up (scan of {args.count} files included): "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
                figures = measure(url, args.rounds, CHROMIUM, CHROMIUM_ARGS, args.profile, args.strip_builtin)
            for key, values in figures.items():
                results.setdefault(name, {}).setdefault(key, []).extend(values)
            report(figures)
    if len(variants) > 1:
        print(f"\nAll turns, median of {args.rounds * args.repeat} page loads each:")
        first = results[variants[0][0]]
        for name, _e, _o in variants:
            print(f"- {name}:")
            report(results[name], first if name != variants[0][0] else None)
    return 0


#: What :func:`measure` returns, in the order printed, and how it is printed.
STEPS = {
    "ready": "pane ready after navigation",
    "paint": "first paint after the tab click",
    "flip": "checkpoint switch",
    "only": "compatible only",
    "search": "the WebUI's search box",
}


def report(figures: dict[str, list[float]], against: dict[str, list[float]] | None = None) -> None:
    """Print the medians of :func:`measure`'s figures (with ``against``: and the ratio to its medians)."""

    def fig(key: str) -> str:
        text = median_ms(figures.get(key, []))
        if against and figures.get(key) and against.get(key):
            text += f" ({statistics.median(figures[key]) / statistics.median(against[key]):.2f}x)"
        return text

    print("; ".join(f"{label} {fig(key)}" for key, label in STEPS.items()))
    own = sorted(k for k in figures if k.startswith("own:"))
    print("of which LoRA Studio's script: " + ", ".join(f"{k[4:]} {median_ms(figures[k])}" for k in own)
          + " (badges: flipping the shown cards; request: pane/cards round trip; window: putting its cards in)")
    print(f"timed inside the page (from the click's pointerdown, without the driver's waits): checkpoint switch "
          f"{fig('flip_in_page')}, compatible only {fig('only_in_page')}")
    print(f"built-in Lora page, same files: first paint after the tab click {fig('builtin_paint')}; "
          f"its search box {fig('builtin_search')}")


def measure(url: str, rounds: int, chromium: str, chromium_args: list[str], profile: bool = False,
            strip_builtin: bool = False) -> dict[str, list[float]]:
    """Seconds per step and page load (the keys of :data:`STEPS`, ``builtin_*`` and ``own:*``)."""
    cards = "#txt2img_lora_studio_cards .lss-pane-card"
    ready, paint, flip, only, search = [], [], [], [], []
    builtin_paint: list[float] = []
    builtin_search: list[float] = []
    own: dict[str, list[float]] = {}  # LoRA Studio's script's own time (window.loraStudio.timings)
    in_page: dict[str, list[float]] = {}  # the same steps timed inside the page (IN_PAGE)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=chromium_args)
        for r in range(rounds):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            probe = Probe(page, profile)
            t0 = time.perf_counter()
            page.goto(url, wait_until="commit", timeout=300_000)
            page.wait_for_selector(cards, state="attached", timeout=300_000)
            ready.append(time.perf_counter() - t0)
            page.wait_for_function("() => window.loraStudio !== undefined")
            if strip_builtin:  # what the built-in page's cards cost the rest of the page: take them out
                page.evaluate(STRIP_BUILTIN)
            with probe.step("first paint"):
                t0 = time.perf_counter()
                page.locator("#txt2img_extra_tabs button", has_text="LoRA Studio").first.click()
                page.wait_for_selector(cards, state="visible")
                paint.append(time.perf_counter() - t0)
            if profile:  # what the page does by itself with the pane open (timers, pollers, observers)
                with probe.step("idle, 3 s"):
                    page.wait_for_timeout(3000)
            page.wait_for_function("() => document.querySelector('.lss-pane').dataset.lssApplied !== undefined")
            current = page.evaluate("() => document.querySelector('.lss-pane').dataset.lssApplied")
            target = "sdxl.safetensors" if "sd15" in current else "sd15.safetensors"
            box = page.locator("#setting_sd_model_checkpoint input, .model_selection input").first
            box.click()
            box.fill(target.split(".")[0])
            option = page.locator("ul.options li", has_text=target).first
            option.wait_for()
            with probe.step("checkpoint switch"):
                page.evaluate(IN_PAGE, ["lssApplied", target])
                t0 = time.perf_counter()
                option.click()
                page.evaluate("() => document.activeElement && document.activeElement.blur()")
                page.wait_for_function(  # A1111's titles end in the hash: "sdxl.safetensors [0123abcd]"
                    "(t) => (document.querySelector('#txt2img_lora_studio_cards').closest('.lss-pane').dataset"
                    ".lssApplied || '').startsWith(t)", arg=target, timeout=60_000)
                flip.append(time.perf_counter() - t0)
                in_page.setdefault("flip_in_page", []).append(page.evaluate(IN_PAGE_DONE))
                target = page.evaluate("() => document.querySelector('#txt2img_lora_studio_cards')"
                                       ".closest('.lss-pane').dataset.lssApplied")
            with probe.step("compatible only"):
                page.evaluate(IN_PAGE, ["lssKey", json.dumps(["", target], separators=(",", ":"))])
                t0 = time.perf_counter()
                page.locator("#tab_txt2img .lss-pane-compat-only").check()
                page.wait_for_function(SETTLED, arg=["", target], timeout=60_000)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
                only.append(time.perf_counter() - t0)
                in_page.setdefault("only_in_page", []).append(page.evaluate(IN_PAGE_DONE))
            page.locator("#tab_txt2img .lss-pane-compat-only").uncheck()
            page.wait_for_function(SETTLED, arg=["", ""], timeout=60_000)
            name = f"lora_{(r * 7919) % 1000:05d}"
            with probe.step("search"):
                search.extend(search_time(page, "#txt2img_lora_studio_extra_search", cards, name, ours=True))
            # The built-in "Lora" page over the same 10,000 files, for comparison: first paint and search.
            builtin = "#txt2img_lora_cards .card"
            if not strip_builtin and page.locator("#txt2img_extra_tabs button", has_text="Lora").count() > 1:
                t0 = time.perf_counter()
                page.locator("#txt2img_extra_tabs button", has_text="Lora").last.click()
                page.wait_for_selector(builtin, state="visible")
                builtin_paint.append(time.perf_counter() - t0)
                builtin_search.extend(search_time(page, "#txt2img_lora_extra_search", builtin, name))
            for t in page.evaluate("() => window.loraStudio.timings"):
                own.setdefault(t["what"], []).append(t["ms"] / 1000)
            page.close()
        browser.close()
    if profile:
        Probe.report()
    return {"ready": ready, "paint": paint, "flip": flip, "only": only, "search": search,
            "builtin_paint": builtin_paint, "builtin_search": builtin_search, **in_page,
            **{f"own:{k}": v for k, v in own.items()}}


class Probe:
    """``--profile``: what Chromium did during each step, summed over the rounds and printed by :meth:`report`:
    the CPU profiler's self time per script and per function (a function's forced style and layout count as
    its own), Chromium's own script / style / layout durations, and the ``pane/cards`` requests' timing from
    the Resource Timing API with the route's ``Server-Timing`` (LoRA Studio's Python)."""

    steps: dict[str, dict[str, Any]] = {}

    def __init__(self, page: Any, enabled: bool) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page) if enabled else None
        if self.cdp:
            self.cdp.send("Profiler.enable")
            self.cdp.send("Profiler.setSamplingInterval", {"interval": 250})  # microseconds
            self.cdp.send("Performance.enable")

    def _metrics(self) -> dict[str, float]:
        assert self.cdp is not None
        return {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.cdp is None:
            yield
            return
        self.page.evaluate("() => performance.clearResourceTimings()")
        before = self._metrics()
        self.cdp.send("Profiler.start")
        t0 = time.perf_counter()
        yield
        wall = time.perf_counter() - t0
        profile = self.cdp.send("Profiler.stop")["profile"]
        after = self._metrics()
        requests = self.page.evaluate(REQUESTS)
        step = Probe.steps.setdefault(name, {"n": 0, "wall": 0.0, "metrics": {}, "scripts": {}, "functions": {},
                                             "requests": []})
        step["n"] += 1
        step["wall"] += wall
        for key in ("TaskDuration", "ScriptDuration", "RecalcStyleDuration", "LayoutDuration"):
            step["metrics"][key] = step["metrics"].get(key, 0.0) + after.get(key, 0.0) - before.get(key, 0.0)
        for (script, function), secs in self_times(profile).items():
            step["scripts"][script] = step["scripts"].get(script, 0.0) + secs
            step["functions"][(script, function)] = step["functions"].get((script, function), 0.0) + secs
        step["requests"].extend(requests)
        step.setdefault("nodes", []).append(self.page.evaluate("() => document.getElementsByTagName('*').length"))

    @classmethod
    def report(cls) -> None:
        steps, cls.steps = cls.steps, {}
        for name, step in steps.items():
            n = step["n"]
            m = {k: v / n * 1000 for k, v in step["metrics"].items()}
            print(f"\n[{name}] mean of {n}: {step['wall'] / n * 1000:.0f} ms wall; Chromium's main thread busy "
                  f"{m.get('TaskDuration', 0):.0f} ms: script {m.get('ScriptDuration', 0):.0f}, style "
                  f"{m.get('RecalcStyleDuration', 0):.0f}, layout {m.get('LayoutDuration', 0):.0f} ms; "
                  f"{max(step.get('nodes', [0])):,} elements in the page")
            busy = sorted(((k, v) for k, v in step["scripts"].items() if k != "(idle)"), key=lambda kv: -kv[1])
            print("  CPU profile by script: " + ", ".join(f"{k} {v / n * 1000:.0f}" for k, v in busy[:8] if v / n >= 0.001))
            top = sorted(((k, v) for k, v in step["functions"].items() if k[0] != "(idle)"), key=lambda kv: -kv[1])
            print("  by function: " + ", ".join(f"{f}@{s} {v / n * 1000:.0f}" if f else f"{s} {v / n * 1000:.0f}" for (s, f), v in top[:10]
                                               if v / n >= 0.002))
            others: dict[str, int] = {}
            for r in step["requests"]:
                if "duration" not in r:
                    others[r["name"]] = others.get(r["name"], 0) + 1
                    continue
                print(f"  {r['name']}: {r['duration']:.0f} ms (waiting for the first byte {r['ttfb']:.0f}, "
                      f"body {r['body']:.0f}, {r['size'] / 1000:.0f} kB); server: {r['server'] or '-'}")
            if others:
                print("  other requests: " + ", ".join(f"{k} x{v / n:.1f}" for k, v in sorted(others.items())))


#: The step's requests: pane/cards with their timing (Resource Timing; ``serverTiming`` is the route's
#: Server-Timing header), and of the others, the path.
REQUESTS = """() => performance.getEntriesByType('resource').map(e => e.name.includes('/pane/cards') ? {
    name: 'GET pane/cards', duration: e.duration, ttfb: e.responseStart - e.requestStart,
    body: e.responseEnd - e.responseStart, size: e.encodedBodySize,
    server: (e.serverTiming || []).map(t => t.name + ' ' + t.duration.toFixed(0) + ' ms').join(', ')}
    : {name: new URL(e.name).pathname})"""


def self_times(profile: dict[str, Any]) -> dict[tuple[str, str], float]:
    """Seconds of self time per (script file, function) in a CPU profile (``Profiler.stop``); the time of a
    built-in function (``querySelectorAll``, ``set innerHTML``: style, layout and parsing forced from script
    included) is charged to the nearest script function that called it, marked with its name."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {c: n["id"] for n in profile["nodes"] for c in n.get("children", ())}
    out: dict[tuple[str, str], float] = {}
    for node_id, delta in zip(profile.get("samples", []), profile.get("timeDeltas", []), strict=False):
        frame = nodes[node_id]["callFrame"]
        native = "" if frame.get("url") else frame.get("functionName") or ""
        caller = node_id
        while not nodes[caller]["callFrame"].get("url") and caller in parent:
            caller = parent[caller]
        frame = nodes[caller]["callFrame"]
        url = frame.get("url") or ""
        script = url.split("?")[0].rsplit("/", 1)[-1] or native or "(native)"
        if "/assets/" in url or "/gradio" in url:
            script = "gradio:" + script
        function = (frame.get("functionName") or "(anonymous)") if url else ""
        if url and native:
            function += f">{native}"
        key = (script, function)
        out[key] = out.get(key, 0.0) + delta / 1e6
    return out


#: ``--strip-builtin``: the built-in Lora page's cards taken out of both tabs' panes (an experiment: what the
#: rest of the page pays for them).
STRIP_BUILTIN = """() => document.querySelectorAll('#txt2img_lora_cards, #img2img_lora_cards')
    .forEach(box => { box.innerHTML = ''; })"""


#: Times a step inside the page, without the test driver's own waits (its click's checks, its polling): from
#: the pointerdown of the click to the pane's ``data-<key>`` starting with the value (next frame included).
IN_PAGE = """([key, value]) => { const pane = document.querySelector('#txt2img_lora_studio_cards').closest('.lss-pane');
    const t = window.lssBench = {};
    document.addEventListener('pointerdown', () => { if (t.start === undefined) t.start = performance.now(); },
                              {capture: true, once: true});
    const seen = () => { if (t.end === undefined && (pane.dataset[key] || '').startsWith(value) && !pane.dataset.lssLoading)
        requestAnimationFrame(() => { t.end = performance.now(); }); };
    new MutationObserver(seen).observe(pane, {attributes: true}); }"""
IN_PAGE_DONE = """() => new Promise(r => { const t = window.lssBench;
    const done = () => t.end !== undefined ? r((t.end - t.start) / 1000) : requestAnimationFrame(done); done(); })"""


#: The txt2img pane shows the window for [search text, checkpoint if "compatible only"] (none in flight).
SETTLED = """(k) => { const p = document.querySelector('#txt2img_lora_studio_cards').closest('.lss-pane');
    return !p.dataset.lssLoading && (p.dataset.lssKey || '["",""]') === JSON.stringify(k); }"""


def search_time(page, box: str, cards: str, text: str, ours: bool = False) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds from typing ``text`` in the pane's search box to the other cards hidden and, for LoRA
    Studio's page (``ours``), the matching window in place ([] without a box)."""
    field = page.locator(f"{box}:visible").first
    if not field.count():
        return []
    t0 = time.perf_counter()
    field.fill(text)
    if ours:
        page.wait_for_function(SETTLED, arg=[text, ""], timeout=60_000)
        page.wait_for_function(f"() => document.querySelector('{cards}[data-name*=\"{text}\"]') !== null")
    page.wait_for_function(f"() => document.querySelectorAll('{cards}:not(.hidden)').length < 20", timeout=60_000)
    return [time.perf_counter() - t0]


if __name__ == "__main__":
    raise SystemExit(main())
