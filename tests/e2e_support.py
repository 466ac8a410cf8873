"""Shared by the headless-Chromium end-to-end tests: start the standalone app in a subprocess, and
launch Debian's chromium through Playwright (never a downloaded browser)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("LORA_STUDIO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[1]

SERVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    import uvicorn
    from lib_lora.standalone import create_app
    app = create_app([{loras!r}], checkpoint_dirs=[{ckpts!r}], data_dir={data!r})
    app.host.rescan(wait=True)
    print("READY", flush=True)
    uvicorn.run(app.asgi, host="127.0.0.1", port={port}, log_level="warning")
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def standalone_app(loras: Path, ckpts: Path, data: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The standalone app on a free loopback port, its first scan done; yields its URL."""
    port = free_port()
    code = SERVER.format(repo=str(REPO), loras=str(loras), ckpts=str(ckpts), data=str(data), port=port)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("the standalone app exited:\n" + (proc.stdout.read() if proc.stdout else ""))
            try:
                with urllib.request.urlopen(url + "lora-studio/v1/rescan", timeout=2) as r:
                    if json.load(r)["state"] == "done":
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("the standalone app did not start within 120 s")
        yield url
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[Any], *, timeout: float = 10, terminate: bool = True) -> None:
    """End a server this test started: SIGTERM (unless it stops by itself), then SIGKILL after ``timeout``."""
    if terminate:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def chromium(playwright_api: Any) -> Iterator[Any]:
    """Body of a module-scoped ``browser`` fixture: Debian's chromium, headless."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Debian chromium not found at {CHROMIUM} (apt-get install chromium; see .ci/ui-envs.sh)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextlib.contextmanager
def watched_page(browser: Any, url: str, *, width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A new page at ``url`` in its own context; fails the test if the page raised a JavaScript error."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors: {errors}"
