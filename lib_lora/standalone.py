"""The standalone LoRA Studio app (``python -m lib_lora serve``): the browser panel, the Train tab and the
resolve preview without a WebUI, plus the HTTP API under ``/lora-studio/v1``.

One FastAPI app holds everything: the API router, ``/lora-studio/static/`` (our ``javascript/`` and
``style.css``), and the Gradio UI mounted at ``/``. The WebUIs inject extension scripts into their page
themselves; here a small ASGI middleware adds our ``<script>``/``<link>`` to the UI page, which works the
same under gradio 3.41 and 4.40.

LoRA folder: the one given, else the WebUI's ``models/Lora`` when one is found (``$WEBUI_DIR`` or common
install places), else a generated demo library (labelled "demo library" in the UI). Binds to 127.0.0.1
unless told otherwise.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib_lora import browse
from lib_lora.host import StandaloneHost

log = logging.getLogger("lora_studio")

REPO_DIR = Path(__file__).resolve().parents[1]
STATIC_PREFIX = "/lora-studio/static"
STATIC_FILES = {"lora_studio.js": REPO_DIR / "javascript" / "lora_studio.js", "style.css": REPO_DIR / "style.css"}

#: Where WebUIs are commonly installed (relative to the home folder unless absolute).
COMMON_WEBUI_DIRS = (
    "stable-diffusion-webui",
    "stable-diffusion-webui-forge",
    "sd-webui-forge",
    "webui",
    "src/stable-diffusion-webui",
    "/opt/stable-diffusion-webui",
    "/opt/stable-diffusion-webui-forge",
)


def find_webui_dir(env: dict[str, str] | None = None, home: Path | None = None) -> Path | None:
    """The WebUI install this app can borrow folders from: ``$WEBUI_DIR``, else a common place."""
    env = dict(os.environ) if env is None else env
    home = Path.home() if home is None else home
    candidates: list[Path] = []
    if env.get("WEBUI_DIR"):
        candidates.append(Path(env["WEBUI_DIR"]).expanduser())
    for place in COMMON_WEBUI_DIRS:
        candidates.append(Path(place) if os.path.isabs(place) else home / place)
    for cand in candidates:
        if (cand / "models" / "Lora").is_dir():
            return cand
    return None


@dataclass(frozen=True)
class Folders:
    lora_dirs: tuple[Path, ...]
    checkpoint_dirs: tuple[Path, ...]
    demo: bool
    note: str  # one line saying where the LoRAs come from


def choose_folders(
    lora_dirs: Sequence[str | os.PathLike[str]],
    checkpoint_dirs: Sequence[str | os.PathLike[str]],
    data_dir: Path,
    *,
    demo: bool = False,
    env: dict[str, str] | None = None,
    home: Path | None = None,
) -> Folders:
    """Decide which folders to serve (see the module docstring). Creates the demo library when needed."""
    loras = tuple(Path(d).expanduser() for d in lora_dirs)
    ckpts = tuple(Path(d).expanduser() for d in checkpoint_dirs)
    if demo or not loras:
        webui = None if demo else find_webui_dir(env, home)
        if webui is not None:
            sd = webui / "models" / "Stable-diffusion"
            return Folders(
                (webui / "models" / "Lora",),
                ckpts or ((sd,) if sd.is_dir() else ()),
                False,
                f"LoRAs from the WebUI at {webui}",
            )
        demo_root = data_dir / "demo-library"
        lora_root, ckpt_root = make_demo_library(demo_root)
        return Folders((lora_root,), ckpts or (ckpt_root,), True, f"demo library in {demo_root}")
    return Folders(loras, ckpts, False, "LoRAs from " + ", ".join(str(d) for d in loras))


def make_demo_library(root: Path) -> tuple[Path, Path]:
    """The demo library of ``python -m lib_lora demo`` (real headers, zero weights) under ``root``.
    Returns (LoRA folder, checkpoint folder); written once, reused afterwards."""
    from lib_lora.commands.demo import write_demo_library

    loras = root / "loras"
    if not (root / "README.txt").is_file() or not loras.is_dir():
        loras = write_demo_library(root)
    return loras, root / "checkpoints"


# --------------------------------------------------------------------------------------------------
# the app


class _InjectAssets:
    """ASGI middleware: add our script and stylesheet to the Gradio page (HTML answers of GET /)."""

    def __init__(self, app: Any, snippet: bytes) -> None:
        self.app = app
        self.snippet = snippet

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "GET" or scope.get("path") not in ("/", ""):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = b"".join(chunks)
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                ctype = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
                if b"text/html" in ctype and b"</head>" in body:
                    body = body.replace(b"</head>", self.snippet + b"</head>", 1)
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, capture)


def _asset_snippet() -> bytes:
    stamps = {name: int(path.stat().st_mtime) if path.is_file() else 0 for name, path in STATIC_FILES.items()}
    return (
        f'<link rel="stylesheet" href="{STATIC_PREFIX}/style.css?v={stamps["style.css"]}">'
        f'<script src="{STATIC_PREFIX}/lora_studio.js?v={stamps["lora_studio.js"]}"></script>'
    ).encode()


@dataclass
class App:
    """The built app and what it serves (for tests and the serve command)."""

    asgi: Any
    fastapi: Any
    host: StandaloneHost
    blocks: Any
    folders: Folders
    extras: dict[str, Any] = field(default_factory=dict)


def build_ui(host: StandaloneHost, *, demo: bool = False, note: str = "") -> Any:
    """The Gradio Blocks of the standalone app: checkpoint picker, prompt boxes, browser panel, Train tab."""
    import gradio as gr

    from lib_lora.ui import compat_gradio as cg
    from lib_lora.ui.browser import build_browser, esc

    titles = [c.title for c in host.list_checkpoints()]
    with cg.blocks(title="LoRA Studio", analytics_enabled=False) as blocks:
        with gr.Row(elem_id="lora_studio_top"):
            cg.make(
                gr.HTML,
                value=(
                    '<div class="lss-title"><b>LoRA Studio</b> '
                    + ('<span class="lss-demo">demo library</span> ' if demo else "")
                    + f'<span class="lss-note">{esc(note)}</span></div>'
                ),
            )
            # same elem_id as the WebUI's quicksettings dropdown: the panel's JavaScript watches it
            ckpt = cg.make(
                gr.Dropdown,
                label="Checkpoint",
                choices=titles,
                value=lambda: _selected_title(host),
                elem_id="setting_sd_model_checkpoint",
                allow_custom_value=False,
                interactive=True,
            )
        with gr.Row():
            prompt = cg.make(gr.Textbox, label="Prompt", lines=3, elem_id="lora_studio_prompt",
                             placeholder="click a LoRA card to insert its tag and trigger words here")
            negative = cg.make(gr.Textbox, label="Negative prompt", lines=3, elem_id="lora_studio_negative")

        def pick(title: str | None) -> None:
            if title:
                try:
                    host.select_checkpoint(title)
                except Exception as exc:  # shown as a toast-less log line; badges stay on the old one
                    log.warning("LoRA Studio: cannot select %s: %s", title, exc)

        ckpt.change(pick, inputs=[ckpt], outputs=[], show_progress="hidden")
        with gr.Tabs():
            with gr.Tab("LoRAs", elem_id="lora_studio_tab_browser"):
                build_browser(host, demo=demo, prompt=prompt, negative=negative)
            with gr.Tab("Characters", elem_id="lora_studio_tab_characters"):
                from lib_lora.ui.characters_view import build_characters

                build_characters(host)
            with gr.Tab("Train", elem_id="lora_studio_tab_train"):
                _train_tab(host)
    cg.queue(blocks)
    return blocks


def _selected_title(host: StandaloneHost) -> str | None:
    ref = host.selected_checkpoint()
    return ref.title if ref is not None else None


def _train_tab(host: StandaloneHost) -> None:
    """The Train tab (:mod:`lib_lora.ui.train_tab`) over the process's one training service."""
    import gradio as gr

    try:
        from lib_lora.train.service import service_for
        from lib_lora.ui.train_tab import build_train_tab
    except ImportError as exc:
        gr.HTML(f'<div class="lss-empty">Training is not available in this version of LoRA Studio ({exc}).</div>')
        return
    build_train_tab(host, service_for(host))


def create_app(
    lora_dirs: Sequence[str | os.PathLike[str]] = (),
    *,
    checkpoint_dirs: Sequence[str | os.PathLike[str]] = (),
    data_dir: str | os.PathLike[str] | None = None,
    bind_host: str = "127.0.0.1",
    demo: bool = False,
    api_auth: str | None = None,
    allow_remote: bool = False,
    env: dict[str, str] | None = None,
    scan: bool = True,
) -> App:
    """Build the whole app (not started). ``scan``: start the background rescan now."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse

    from lib_lora import api, paths
    from lib_lora.ui import compat_gradio as cg

    data = paths.user_data_dir(data_dir, ensure=True)
    folders = choose_folders(lora_dirs, checkpoint_dirs, data, demo=demo, env=env)
    host = StandaloneHost(
        [str(p) for p in folders.lora_dirs],
        data_dir=data,
        checkpoint_dirs=[str(p) for p in folders.checkpoint_dirs],
        bind_host=bind_host,
        allow_remote_access=allow_remote,
        api_auth=api_auth,
    )
    refs = host.list_checkpoints()
    if refs:  # the demo tells its story best on SDXL
        preferred = [r for r in refs if "sdxl" in r.name.lower()] if folders.demo else []
        host.select_checkpoint((preferred or refs)[0])
    if scan:
        host.rescan()
    # warm the browser's catalog from the index while the UI is built
    threading.Thread(target=_warm, args=(host,), name="lora-studio-warm", daemon=True).start()

    app = FastAPI(title="LoRA Studio", version=_version(), description="LoRA Studio standalone app and HTTP API")
    api.install(app, host, jobs=_training_jobs(host))

    @app.get(STATIC_PREFIX + "/{name}", include_in_schema=False)
    def static(name: str) -> Any:
        path = STATIC_FILES.get(name)
        if path is None or not path.is_file():
            raise HTTPException(404, "not found")
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    blocks = build_ui(host, demo=folders.demo, note=folders.note)
    app = cg.mount(app, blocks, "/")
    asgi = _InjectAssets(app, _asset_snippet())
    return App(asgi=asgi, fastapi=app, host=host, blocks=blocks, folders=folders)


def _training_jobs(host: StandaloneHost) -> Any:
    """The training service's job manager (shared by the API and the Train tab), or None."""
    try:
        from lib_lora.train.service import service_for

        return service_for(host).jobs
    except Exception as exc:  # the API then makes its own manager or answers 501/503
        log.warning("LoRA Studio: training jobs are not available: %s", exc)
        return None


def _warm(host: StandaloneHost) -> None:
    try:
        browse.catalog_cache_for(host).get()
    except Exception as exc:  # shown by the panel when it renders
        log.debug("LoRA Studio: warm-up failed: %s", exc)


def _version() -> str:
    from lib_lora import __version__

    return __version__
