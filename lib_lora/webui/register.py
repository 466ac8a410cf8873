"""Registration with the WebUI: callbacks, the settings section, the tabs and the HTTP API.

Its one job is :func:`install` (called by ``scripts/lora_studio.py`` on start-up and every "Reload UI")
and what the callbacks it registers do: add the ``lora_studio_*`` options, mount the UI tabs
(:func:`register_ui`) and the API routers (:func:`register_api`), add the extra-networks page, start the
first library scan.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any

from lib_lora import settings as settings_mod
from lib_lora.settings import SCHEMA
from lib_lora.webui.adapter import WebUIHost, _console, _m, _opts, host
from lib_lora.webui.extra_networks import before_ui_hook
from lib_lora.webui.hooks import infotext_pasted_hook

_UI_BUILDERS: list[tuple[Callable[..., Any], str, str]] = []
_API_FACTORIES: list[Callable[..., Any]] = []


def reset_for_tests() -> None:
    """Forget the registered tabs and routers (tests only)."""
    _UI_BUILDERS.clear()
    _API_FACTORIES.clear()


def register_ui(
    builder: Callable[..., Any], *, title: str = "LoRA Studio", elem_id: str = "lora_studio"
) -> None:
    """Mount a Gradio UI as a top-level tab: ``builder(host)`` is called inside an open ``gr.Blocks()``
    when the WebUI builds its tabs (``script_callbacks.on_ui_tabs``). Registering the same ``elem_id``
    again replaces the earlier builder (scripts are re-executed on Reload UI)."""
    _UI_BUILDERS[:] = [b for b in _UI_BUILDERS if b[2] != elem_id]
    _UI_BUILDERS.append((builder, title, elem_id))


def register_api(router_factory: Callable[..., Any]) -> None:
    """Mount an HTTP router: ``router_factory(host)`` returns a FastAPI ``APIRouter`` that is included in
    the WebUI's app when it starts (``script_callbacks.on_app_started``). Such routes get **no** auth
    from the WebUI: the router must call ``host.check_api_credentials`` itself."""
    if router_factory not in _API_FACTORIES:
        _API_FACTORIES.append(router_factory)


def install(extension_dir: str | os.PathLike[str] | None = None) -> None:
    """Register LoRA Studio's WebUI callbacks. Called by ``scripts/lora_studio.py`` each time the WebUI
    executes it (start-up and every Reload UI: the WebUI clears its callbacks before re-executing scripts)."""
    cb = _m("modules.script_callbacks")
    cb.on_ui_settings(ui_settings_hook)
    cb.on_infotext_pasted(infotext_pasted_hook)
    cb.on_app_started(app_started_hook)
    cb.on_ui_tabs(ui_tabs_hook)
    cb.on_before_ui(before_ui_hook)  # the "LoRA Studio" page of the txt2img / img2img extra-networks pane
    _register_default_components()
    host()  # created now, so the settings and roots are read from the WebUI's modules


def _api_router(h: WebUIHost) -> Any:
    from lib_lora import api

    return api.make_router(h, jobs=_training_jobs(h))


def _training_jobs(h: WebUIHost) -> Any:
    """The training service's job manager, so the API and the Train tab share one queue per process
    (``None`` when training is unavailable: the API then makes its own)."""
    try:
        from lib_lora.train.service import service_for

        return service_for(h).jobs
    except Exception as exc:
        _console(f"training jobs are not available: {exc}")
        return None


def _train_tab(h: WebUIHost) -> Any:
    from lib_lora.ui.train_tab import build_train_tab

    return build_train_tab(h)


def _browser_tab(h: WebUIHost) -> Any:
    import gradio as gr

    from lib_lora.ui.browser import build_browser
    from lib_lora.ui.characters_view import build_characters

    panel = build_browser(h)
    with gr.Accordion("Characters", open=True, elem_id="lora_studio_characters_accordion"):
        build_characters(h)
    return panel


def _register_default_components() -> None:
    """The HTTP API (``/lora-studio/v1``), the browser panel as a "LoRA Studio" tab and the "Train LoRA" tab
    (lib_lora.ui.train_tab over the process's one TrainingService). A component whose
    dependencies are missing (fastapi, gradio) is left out; other modules may replace these by calling
    :func:`register_ui` / :func:`register_api`."""
    if importlib.util.find_spec("fastapi") is not None:
        register_api(_api_router)
    if importlib.util.find_spec("gradio") is not None:
        register_ui(_browser_tab, title="LoRA Studio", elem_id="lora_studio")
        register_ui(_train_tab, title="Train LoRA", elem_id="lora_studio_train")


# ------------------------------------------------------------------------------------------------
# settings section


def _gradio() -> Any | None:
    try:
        return importlib.import_module("gradio")
    except Exception:
        return None


def option_infos() -> dict[str, Any]:
    """``lora_studio_*`` -> ``shared.OptionInfo``, with components both gradio 3.41 and 4.40 accept."""
    shared = _m("modules.shared")
    gr = _gradio()
    section = ("lora_studio", settings_mod.SECTION_TITLE)
    out: dict[str, Any] = {}
    for spec in SCHEMA:
        component: Any = None
        args: dict[str, Any] | None = None
        if spec.kind == "choice" and gr is not None:
            component, args = gr.Radio, {"choices": spec.choice_labels()}
        elif spec.kind == "number" and gr is not None:
            component, args = gr.Slider, {"minimum": spec.minimum, "maximum": spec.maximum, "step": 0.05}
        elif spec.kind == "paths" and gr is not None:
            component, args = gr.Textbox, {"lines": 3}
        elif spec.name in settings_mod.SECRET_SETTINGS and gr is not None:
            component, args = gr.Textbox, {"type": "password"}  # the Civitai key is never shown back
        onchange = _on_roots_changed if spec.name == "extra_roots" else None
        info = shared.OptionInfo(
            spec.webui_default(), spec.label, component, args, onchange=onchange, section=section
        )
        if spec.info and hasattr(info, "info"):
            info = info.info(spec.info)
        out[settings_mod.WEBUI_KEY_PREFIX + spec.name] = info
    return out


def ui_settings_hook() -> None:
    opts = _opts()
    for key, info in option_infos().items():
        opts.add_option(key, info)


def _on_roots_changed() -> None:
    host().rescan()


# ------------------------------------------------------------------------------------------------
# app start, tabs


def app_started_hook(demo: Any, app: Any) -> None:
    h = host()
    if h.scan_status().state == "idle":
        h.rescan()  # background: start-up is not delayed
    for factory in list(_API_FACTORIES):
        try:
            app.include_router(factory(h))
        except Exception as exc:
            _console(f"could not mount the HTTP API: {exc}")


def ui_tabs_hook() -> list[tuple[Any, str, str]]:
    gr = _gradio()
    if gr is None or not _UI_BUILDERS:
        return []
    tabs = []
    for builder, title, elem_id in list(_UI_BUILDERS):
        try:
            with gr.Blocks(analytics_enabled=False) as block:
                builder(host())
            tabs.append((block, title, elem_id))
        except Exception as exc:
            _console(f"could not build the {title} tab: {exc}")
    return tabs
