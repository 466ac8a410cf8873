"""The one adapter between LoRA Studio and the WebUI's ``modules.*`` (AUTOMATIC1111 v1.10.x and Forge).

Everything that differs between the two WebUIs, or that touches a WebUI module, lives in this package (a
test fails if any other ``lib_lora`` module imports ``modules``); the rest of ``lib_lora`` sees only
:class:`lib_lora.host.Host`. ``scripts/lora_studio.py`` (re-executed on every "Reload UI") stays thin and
calls :func:`install` and the ``*_hook`` functions re-exported here; all state lives in these normal
modules, so it survives a reload. Which file owns what:

* :mod:`~lib_lora.webui.adapter` — :class:`WebUIHost`, the Host over the WebUI's modules, and the
  process's one host (:func:`host`);
* :mod:`~lib_lora.webui.register` — :func:`install`: callbacks, settings section, tabs, HTTP API;
* :mod:`~lib_lora.webui.hooks` — the prompt hooks (``process``, ``before_process_batch``, paste) with
  their batch and infotext logic;
* :mod:`~lib_lora.webui.builtin_lora` — the built-in Lora's network table (what it finds, and making it
  find what LoRA Studio resolved);
* :mod:`~lib_lora.webui.extra_networks` — the "LoRA Studio" page of the txt2img / img2img extra-networks
  pane (its cards are rendered by :mod:`lib_lora.ui.pane`).
"""

from __future__ import annotations

from lib_lora.webui import adapter as _adapter
from lib_lora.webui import hooks as _hooks
from lib_lora.webui import register as _register
from lib_lora.webui.adapter import RESCAN_ON_MISS_INTERVAL, WebUIHost, host, is_forge
from lib_lora.webui.builtin_lora import BUILTIN_LORA_MODULES, builtin_networks, builtin_table, ensure_loadable
from lib_lora.webui.hooks import (
    COMMENT_PREFIX,
    P_ATTR,
    SCAN_WAIT_SECONDS,
    before_process_batch_hook,
    guarded,
    infotext_pasted_hook,
    postprocess_hook,
    process_hook,
)
from lib_lora.webui.register import (
    app_started_hook,
    install,
    option_infos,
    register_api,
    register_ui,
    ui_settings_hook,
    ui_tabs_hook,
)

__all__ = [
    "BUILTIN_LORA_MODULES",
    "COMMENT_PREFIX",
    "P_ATTR",
    "RESCAN_ON_MISS_INTERVAL",
    "SCAN_WAIT_SECONDS",
    "WebUIHost",
    "app_started_hook",
    "before_process_batch_hook",
    "builtin_networks",
    "builtin_table",
    "ensure_loadable",
    "guarded",
    "host",
    "infotext_pasted_hook",
    "install",
    "is_forge",
    "option_infos",
    "postprocess_hook",
    "process_hook",
    "register_api",
    "register_ui",
    "reset_for_tests",
    "ui_settings_hook",
    "ui_tabs_hook",
]


def reset_for_tests() -> None:
    """Forget the process state (tests only): the host, the registered tabs and routers, shown warnings."""
    _adapter.reset_for_tests()
    _register.reset_for_tests()
    _hooks.reset_for_tests()
