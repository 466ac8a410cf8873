"""The one adapter between LoRA Studio and the WebUI's ``modules.*`` (AUTOMATIC1111 v1.10.x and Forge).

Everything that differs between the two WebUIs, or that touches a WebUI module, lives here; the rest of
``lib_lora`` sees only :class:`lib_lora.host.Host`. ``scripts/lora_studio.py`` (re-executed on every
"Reload UI") stays thin and calls :func:`install` and the ``*_hook`` functions below; all state lives in
this normal module, so it survives a reload.

Where the prompt is rewritten (verified against A1111 v1.10.1 and Forge ``modules/processing.py``):

* ``before_process`` sees the raw ``p.prompt`` / ``p.hr_prompt``: too early, styles are not applied yet;
* ``setup_prompts`` applies styles and builds ``p.all_prompts``, ``p.all_negative_prompts`` and, for
  hires fix, ``p.all_hr_prompts`` / ``p.all_hr_negative_prompts``; then ``process`` runs — **here** every
  prompt of the job is rewritten (:func:`process_hook`), batch by batch (the WebUI loads only the first
  prompt's LoRAs per batch), and the infotext entry is set;
* per batch, ``before_process_batch`` runs just before ``parse_extra_network_prompts``: a prompt that a
  later script changed after us is rewritten again there (:func:`before_process_batch_hook`), and
  ``p.all_prompts`` is updated with it so the infotext matches the image;
* names that the built-in Lora must find (aliases of shadowed files, files in extra folders) are put in
  its network table right before its lookup, so its rescan-on-miss (which clears the table) never runs.

The infotext gets a ``LoRA Studio`` entry (:data:`lib_lora.rewrite.INFOTEXT_KEY`); on paste,
:func:`infotext_pasted_hook` puts back the names LoRA Studio wrote where the built-in Lora's own paste
handler renamed them by hash, so "PNG Info -> Send to txt2img" regenerates the same image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib_lora import settings as settings_mod
from lib_lora.architecture import Detection
from lib_lora.host import (
    CheckpointDetector,
    CheckpointRef,
    KeptLibrary,
    LibraryKeeper,
    ScanStatus,
    VramToken,
    credentials_match,
    parse_credentials,
)
from lib_lora.settings import SCHEMA, Settings

log = logging.getLogger("lora_studio")

#: Attribute LoRA Studio keeps its per-job state under on the processing object ``p``.
P_ATTR = "lora_studio_run"
#: Prefix of the lines LoRA Studio adds to the generation info (the toast script looks for it).
COMMENT_PREFIX = "LoRA Studio: "
#: How long a generation waits for the first library scan before passing prompts through.
SCAN_WAIT_SECONDS = 120.0
#: A name not found triggers at most one rescan per this many seconds.
RESCAN_ON_MISS_INTERVAL = 30.0
#: The built-in Lora extension's module names (taken: never create modules with these names).
BUILTIN_LORA_MODULES = ("networks", "network")


# ------------------------------------------------------------------------------------------------
# WebUI modules, looked up lazily (importing this file must not import the WebUI)


def _m(name: str) -> Any:
    return importlib.import_module(name)


def _opts() -> Any:
    return _m("modules.shared").opts


def _cmd_opts() -> Any:
    return _m("modules.shared").cmd_opts


def is_forge() -> bool:
    """Forge ships ``modules_forge`` next to ``modules``; A1111 does not."""
    if "modules_forge" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("modules_forge") is not None
    except (ImportError, ValueError):
        return False


def builtin_networks() -> Any | None:
    """The built-in Lora's ``networks`` module as the WebUI imported it (``None`` if it is not loaded)."""
    mod = sys.modules.get("networks")
    if mod is None or not hasattr(mod, "available_network_aliases"):
        return None
    return mod


def _opt(key: str, default: Any = None) -> Any:
    try:
        data = _opts().data
    except Exception:
        return default
    return data.get(key, default) if isinstance(data, dict) else default


# ------------------------------------------------------------------------------------------------
# the Host implementation


class WebUIHost(KeptLibrary):
    """:class:`lib_lora.host.Host` over A1111 / Forge. One per process (see :func:`host`)."""

    def __init__(self) -> None:
        self.kind = "forge" if is_forge() else "a1111"
        self._detector = CheckpointDetector()
        self._keeper = LibraryKeeper(self.lora_roots, lambda: self.data_dir() / "library-index.sqlite3")
        self._last_miss_rescan = 0.0

    # -- folders and settings
    def data_dir(self) -> Path:
        env = os.environ.get("LORA_STUDIO_DATA", "").strip()
        if env:
            path = Path(env).expanduser()
        else:
            try:
                base = Path(_m("modules.paths").data_path)
            except Exception:
                base = Path.cwd()
            path = base / "lora-studio"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def preview_url(self, path: str) -> str | None:
        """The WebUI's own thumbnail route for a preview inside the folders its Lora page registers
        (``--lora-dir``), so the image loads in the browser under the UI's login; None elsewhere (the
        panel then uses LoRA Studio's API route)."""
        try:
            cmd = _cmd_opts()
            allowed = [Path(d).absolute() for d in (getattr(cmd, "lora_dir", None),
                                                    getattr(cmd, "lyco_dir_backcompat", None)) if d]
            target = Path(path).absolute()
            if not any(root in target.parents for root in allowed):
                return None
            mtime = int(target.stat().st_mtime)
        except Exception:
            return None
        quoted = urllib.parse.quote(str(target), safe="")
        return f"./sd_extra_networks/thumb?filename={quoted}&mtime={mtime}"

    def lora_roots(self) -> list[Path]:
        roots: list[Path] = []
        try:
            cmd = _cmd_opts()
        except Exception:
            cmd = None
        for attr in ("lora_dir", "lyco_dir_backcompat"):
            value = getattr(cmd, attr, None) if cmd is not None else None
            if not value:
                continue
            path = Path(value)
            if attr == "lyco_dir_backcompat" and not path.is_dir():
                continue  # A1111 only; usually absent
            if path not in roots:
                roots.append(path)
        for extra in self.settings().extra_roots:
            path = Path(extra)
            if path not in roots:
                roots.append(path)
        return roots

    def settings(self) -> Settings:
        values: dict[str, Any] = {}
        for spec in SCHEMA:
            key = settings_mod.WEBUI_KEY_PREFIX + spec.name
            value = _opt(key)
            if value is not None:
                values[key] = value
        return Settings.from_mapping(values, prefix=settings_mod.WEBUI_KEY_PREFIX)

    def update_settings(self, **changes: Any) -> Settings:
        current = self.settings()
        new = Settings.from_mapping({**current.to_mapping(), **changes})
        if new.problems:
            from lib_lora.errors import LoraStudioError

            raise LoraStudioError("; ".join(new.problems))
        opts = _opts()
        for key, value in new.to_mapping(prefix=settings_mod.WEBUI_KEY_PREFIX, labels=True).items():
            opts.set(key, value)
        with contextlib.suppress(Exception):
            opts.save(_m("modules.shared").config_filename)
        return new

    # -- library (library, rescan, scan_status: KeptLibrary)
    def wait_for_scan(self, timeout: float) -> ScanStatus:
        """Block until the current scan ends or ``timeout`` seconds pass (starts the first scan if needed)."""
        status = self._keeper.status()
        if status.state == "idle":
            status = self._keeper.scan()
        deadline = time.monotonic() + timeout
        while status.running and time.monotonic() < deadline:
            time.sleep(0.05)
            status = self._keeper.status()
        return status

    def rescan_after_miss(self) -> bool:
        """Rescan (waiting) after a name was not found, at most once per :data:`RESCAN_ON_MISS_INTERVAL`."""
        now = time.monotonic()
        if self._last_miss_rescan and now - self._last_miss_rescan < RESCAN_ON_MISS_INTERVAL:
            return False
        self._last_miss_rescan = now
        self._keeper.scan(wait=True)
        return True

    # -- checkpoints
    def list_checkpoints(self) -> list[CheckpointRef]:
        try:
            sd_models = _m("modules.sd_models")
        except Exception:
            return []
        return [_ref(info) for info in list(sd_models.checkpoints_list.values())]

    def selected_checkpoint(self) -> CheckpointRef | None:
        """The checkpoint picked in the UI (``opts.sd_model_checkpoint``), resolved by the WebUI's own
        matcher — never by reading ``shared.sd_model``, which can load a model."""
        info = _selected_checkpoint_info()
        return _ref(info) if info is not None else None

    def loaded_checkpoint(self) -> CheckpointRef | None:
        """The checkpoint of the model in memory, if any (peeked, never loaded)."""
        info = _loaded_checkpoint_info()
        return _ref(info) if info is not None else None

    def checkpoint_detection(
        self, checkpoint: CheckpointRef | str | os.PathLike[str] | None
    ) -> Detection | None:
        if checkpoint is None:
            return None
        path = checkpoint.path if isinstance(checkpoint, CheckpointRef) else os.fspath(checkpoint)
        if not path:
            return None
        return self._detector.detect(path)

    # -- GPU memory and the queue
    def free_vram(self) -> VramToken:
        if self.kind == "forge":
            try:
                mm = _m("backend.memory_management")
                mm.unload_all_models()
                mm.soft_empty_cache(force=True)
            except Exception as exc:
                return VramToken(freed=False, detail=f"Forge could not free GPU memory: {exc}")
            return VramToken(freed=True, detail="Forge unloaded its models; it reloads them by itself")
        try:
            sd_models = _m("modules.sd_models")
        except Exception as exc:
            return VramToken(freed=False, detail=f"no WebUI model module: {exc}")
        model = getattr(getattr(sd_models, "model_data", None), "sd_model", None)  # peek: never load
        if model is None:
            return VramToken(freed=False, detail="no model is loaded")
        sd_models.send_model_to_cpu(model)
        return VramToken(freed=True, detail="the checkpoint was moved to the CPU", handle=model)

    def restore_vram(self, token: VramToken) -> None:
        if not token.freed or token.handle is None or self.kind == "forge":
            return
        sd_models = _m("modules.sd_models")
        current = getattr(getattr(sd_models, "model_data", None), "sd_model", None)
        if current is token.handle:
            sd_models.send_model_to_device(current)

    def queue_lock(self) -> contextlib.AbstractContextManager[Any]:
        try:
            lock = _m("modules.call_queue").queue_lock
        except Exception:
            lock = _FALLBACK_QUEUE_LOCK
        return _hold(lock)

    # -- remote access
    def is_remote(self) -> bool:
        try:
            return bool(getattr(_cmd_opts(), "disable_extension_access", False))
        except Exception:
            return True  # cannot tell: be safe

    def _credentials(self) -> dict[str, str]:
        try:
            spec = getattr(_cmd_opts(), "api_auth", None)
        except Exception:
            spec = None
        try:
            return parse_credentials(spec)
        except Exception:
            return {"\0": "\0"}  # malformed: nobody gets in rather than everybody

    def api_auth_required(self) -> bool:
        return bool(self._credentials())

    def check_api_credentials(self, username: str | None, password: str | None) -> bool:
        return credentials_match(self._credentials(), username, password)

    # -- used by the prompt hook
    def checkpoint_for_generation(self, p: Any = None) -> CheckpointRef | None:
        """What the image is generated with: the loaded model (the WebUI loads it before ``process``),
        else the selected one."""
        return self.loaded_checkpoint() or self.selected_checkpoint()


_FALLBACK_QUEUE_LOCK = threading.RLock()


@contextlib.contextmanager
def _hold(lock: Any) -> Iterator[None]:
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _ref(info: Any) -> CheckpointRef:
    return CheckpointRef(
        title=str(getattr(info, "title", "") or getattr(info, "name", "")),
        name=str(getattr(info, "name", "") or ""),
        path=str(getattr(info, "filename", "") or ""),
        short_hash=getattr(info, "shorthash", None),
    )


def _loaded_checkpoint_info() -> Any | None:
    try:
        sd_models = _m("modules.sd_models")
    except Exception:
        return None
    model = getattr(getattr(sd_models, "model_data", None), "sd_model", None)
    # Forge's FakeInitialModel and an unloaded A1111 have no sd_checkpoint_info.
    return getattr(model, "sd_checkpoint_info", None) if model is not None else None


def _selected_checkpoint_info() -> Any | None:
    try:
        sd_models = _m("modules.sd_models")
    except Exception:
        return None
    title = _opt("sd_model_checkpoint")
    info = None
    if title:
        with contextlib.suppress(Exception):
            info = sd_models.get_closet_checkpoint_match(title)
    if info is None:
        params = getattr(getattr(sd_models, "model_data", None), "forge_loading_parameters", None)
        if isinstance(params, dict):
            info = params.get("checkpoint_info")
    if info is None:
        info = _loaded_checkpoint_info()
    return info


# ------------------------------------------------------------------------------------------------
# process-wide state


_HOST: WebUIHost | None = None
_HOST_LOCK = threading.Lock()
_UI_BUILDERS: list[tuple[Callable[..., Any], str, str]] = []
_API_FACTORIES: list[Callable[..., Any]] = []
_WARNED_ONCE: set[str] = set()


def host() -> WebUIHost:
    """The process's one :class:`WebUIHost` (kept across "Reload UI")."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            _HOST = WebUIHost()
        return _HOST


def reset_for_tests() -> None:
    """Forget the process state (tests only)."""
    global _HOST
    with _HOST_LOCK:
        _HOST = None
    _UI_BUILDERS.clear()
    _API_FACTORIES.clear()
    _WARNED_ONCE.clear()


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
    from lib_lora.ui.browser import build_browser

    return build_browser(h)


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


# ------------------------------------------------------------------------------------------------
# the prompt hook


@dataclass
class _Run:
    """LoRA Studio's state for one generation job (kept on ``p``)."""

    settings: Any  # RewriteSettings
    checkpoint: Detection | None
    hr_checkpoint: Detection | None
    library: Any
    infotexts: dict[int, str] = field(default_factory=dict)
    produced: set[str] = field(default_factory=set)
    produced_hr: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    registered: dict[str, str] = field(default_factory=dict)
    passthrough_reason: str = ""

    def infotext_value(self, index: int) -> str | None:
        return self.infotexts.get(index) or None


def _console(message: str) -> None:
    print(f"[LoRA Studio] {' '.join(str(message).split())}", flush=True)


def _warn(p: Any, run: _Run | None, message: str) -> None:
    """One warning: generation info comment (toast), console line, once per job."""
    line = " ".join(str(message).split())
    if run is not None:
        if line in run.warnings:
            return
        run.warnings.append(line)
    with contextlib.suppress(Exception):
        p.comment(COMMENT_PREFIX + line)
    _console(line)


def _rewrite_settings(settings: Settings) -> Any:
    from lib_lora.rewrite import RewriteSettings

    base = RewriteSettings.from_settings(settings)
    return dataclasses.replace(
        base, prompt_comments=bool(_opt("enable_prompt_comments", True)), lyco_as_lora=not _lyco_registered()
    )


def _lyco_registered() -> bool:
    """A1111 registers ``lyco`` as an alias of the built-in ``lora``; Forge does not (its tags are dropped)."""
    try:
        en = _m("modules.extra_networks")
    except Exception:
        return True
    registry = getattr(en, "extra_network_registry", {})
    aliases = getattr(en, "extra_network_aliases", {})
    if "lora" not in registry:
        return True  # cannot tell yet: leave the tags as typed
    return "lyco" in registry or "lyco" in aliases


def builtin_table() -> dict[str, str] | None:
    """name -> file of every name the built-in Lora's lookup answers to now (``None``: not loaded)."""
    net = builtin_networks()
    if net is None:
        return None
    forbidden = getattr(net, "forbidden_network_aliases", {})
    table: dict[str, str] = {}
    for name, entry in list(net.available_network_aliases.items()):
        if name.lower() in forbidden:
            entry = net.available_networks.get(name)
        if getattr(entry, _OWN_ENTRY, False):
            continue  # LoRA Studio's own registration: not a name the built-in found by itself
        filename = getattr(entry, "filename", None)
        if filename:
            table[name] = filename
    return table


#: Marks the built-in ``NetworkOnDisk`` entries LoRA Studio registered.
_OWN_ENTRY = "lora_studio_registered"


def ensure_loadable(name: str, path: str) -> bool:
    """Make the built-in Lora's lookup of ``name`` give exactly ``path`` (register it if needed).

    Returns True when the table was changed. Only the alias table is touched (and the name table for a
    name the built-in treats as forbidden), so the Lora page does not list LoRA Studio's aliases.
    """
    net = builtin_networks()
    network_mod = sys.modules.get("network")
    if net is None or network_mod is None:
        return False
    forbidden = name.lower() in getattr(net, "forbidden_network_aliases", {})
    current = (net.available_networks if forbidden else net.available_network_aliases).get(name)
    if current is not None and _same_path(getattr(current, "filename", ""), path):
        return False
    entry = network_mod.NetworkOnDisk(name, path)
    entry.alias = name  # the built-in's paste-by-hash then writes this name back
    setattr(entry, _OWN_ENTRY, True)
    net.available_network_aliases[name] = entry
    if forbidden:
        net.available_networks[name] = entry
    return True


def _same_path(a: str, b: str) -> bool:
    if not a or not b:
        return False
    if os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b)):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _batches(count: int, batch_size: int) -> list[range]:
    size = max(1, int(batch_size or 1))
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def _start_run(p: Any) -> _Run | None:
    h = host()
    settings = h.settings()
    for problem in settings.problems:
        if problem not in _WARNED_ONCE:
            _WARNED_ONCE.add(problem)
            _console(problem)
    if not settings.enabled:
        return None
    status = h.scan_status()
    if status.state in ("idle", "scanning"):
        if status.state == "scanning":
            _console(f"waiting for the LoRA index ({status.done}/{status.total or '?'} files)")
        status = h.wait_for_scan(SCAN_WAIT_SECONDS)
    library = None
    reason = ""
    if status.running:
        reason = "the LoRA index is still being built; prompts were passed to the WebUI unchanged"
    else:
        try:
            library = h.library()
        except Exception as exc:
            reason = f"the LoRA library is unavailable ({exc}); prompts were passed to the WebUI unchanged"
    checkpoint_ref = h.checkpoint_for_generation(p)
    checkpoint = h.checkpoint_detection(checkpoint_ref)
    hr_info = _hr_checkpoint_info(p)
    hr_checkpoint = h.checkpoint_detection(_ref(hr_info)) if hr_info is not None else checkpoint
    run = _Run(
        settings=_rewrite_settings(settings),
        checkpoint=checkpoint,
        hr_checkpoint=hr_checkpoint,
        library=library,
        passthrough_reason=reason,
    )
    setattr(p, P_ATTR, run)
    p.extra_generation_params[_infotext_key()] = _InfotextValue(run)
    if reason:
        _warn(p, run, reason)
    elif builtin_networks() is None:
        _warn_once(
            p, run, "the built-in Lora extension is not loaded: LoRA tags are resolved but nothing loads them"
        )
    return run


def _hr_checkpoint_info(p: Any) -> Any | None:
    """The hires pass's own checkpoint, if one is chosen (txt2img resolves ``hr_checkpoint_name`` only in
    ``init``, after ``process``: resolve it the same way here)."""
    info = getattr(p, "hr_checkpoint_info", None)
    if info is not None:
        return info
    name = getattr(p, "hr_checkpoint_name", None) if getattr(p, "enable_hr", False) else None
    if not name or name == "Use same checkpoint":
        return None
    try:
        return _m("modules.sd_models").get_closet_checkpoint_match(name)
    except Exception:
        return None


def _warn_once(p: Any, run: _Run, message: str) -> None:
    if message in _WARNED_ONCE:
        return
    _WARNED_ONCE.add(message)
    _warn(p, run, message)


def _infotext_key() -> str:
    from lib_lora.rewrite import INFOTEXT_KEY

    return INFOTEXT_KEY


class _InfotextValue:
    """Callable infotext value: the WebUI calls it per image with ``index`` among its keyword arguments."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def __call__(self, index: int = 0, **kwargs: Any) -> str | None:
        return self.run.infotext_value(int(index or 0))


def _rewrite_slice(
    run: _Run,
    prompts: Sequence[str],
    negatives: Sequence[str],
    checkpoint: Detection | None,
) -> Any:
    from lib_lora.rewrite import rewrite_batch

    return rewrite_batch(
        list(prompts),
        list(negatives),
        run.library,
        checkpoint=checkpoint,
        settings=run.settings,
        builtin_names=builtin_table(),
    )


def _any_missing(batch: Any) -> bool:
    from lib_lora.rewrite import MISSING

    return any(t.status == MISSING for r in batch.results for t in r.tags)


def _rewrite_with_retry(
    p: Any, run: _Run, prompts: Sequence[str], negatives: Sequence[str], checkpoint: Any
) -> Any:
    batch = _rewrite_slice(run, prompts, negatives, checkpoint)
    if _any_missing(batch) and host().rescan_after_miss():
        # A file added since the last scan (a fresh training result, a download): look once more.
        run.library = host().library()
        batch = _rewrite_slice(run, prompts, negatives, checkpoint)
    return batch


def _register(p: Any, run: _Run, batch: Any) -> None:
    for result in batch.results:
        wanted = dict(result.aliases)
        for loader, path in result.loras:
            if loader and path:
                wanted.setdefault(loader, path)
        for name, path in wanted.items():
            if run.registered.get(name) == path and not _table_changed(name, path):
                continue
            try:
                ensure_loadable(name, path)
                run.registered[name] = path
            except Exception as exc:
                _warn(p, run, f"could not register {name} with the built-in Lora: {exc}")


def _table_changed(name: str, path: str) -> bool:
    net = builtin_networks()
    if net is None:
        return False
    entry = net.available_network_aliases.get(name)
    return entry is None or not _same_path(getattr(entry, "filename", ""), path)


def process_hook(p: Any) -> None:
    """``Script.process``: rewrite ``all_prompts`` (+ negatives, + hires prompts) batch by batch."""
    run = _start_run(p)
    if run is None or run.library is None:
        return
    prompts = list(p.all_prompts or [])
    negatives = list(p.all_negative_prompts or [""] * len(prompts))
    hires = bool(getattr(p, "enable_hr", False)) and getattr(p, "all_hr_prompts", None) is not None
    hr_prompts = list(p.all_hr_prompts) if hires else []
    hr_negatives = list(getattr(p, "all_hr_negative_prompts", None) or negatives) if hires else []
    batch_size = int(getattr(p, "batch_size", 1) or 1)

    for span in _batches(len(prompts), batch_size):
        batch = _rewrite_with_retry(
            p, run, prompts[span.start : span.stop], negatives[span.start : span.stop], run.checkpoint
        )
        _apply(p, run, batch, span, prompts, negatives, run.produced)
        hr_batch = None
        if hires and span.stop <= len(hr_prompts):
            hr_batch = _rewrite_with_retry(
                p,
                run,
                hr_prompts[span.start : span.stop],
                hr_negatives[span.start : span.stop],
                run.hr_checkpoint,
            )
            _apply(p, run, hr_batch, span, hr_prompts, hr_negatives, run.produced_hr)
        for offset, index in enumerate(span):
            run.infotexts[index] = _merge_infotext(
                batch.results[offset].infotext,
                hr_batch.results[offset].infotext if hr_batch is not None else "",
            )
        for warning in _batch_warnings(batch, hr_batch):
            _warn(p, run, warning)

    p.all_prompts = prompts
    p.all_negative_prompts = negatives
    if prompts:
        p.main_prompt = prompts[0]
        p.main_negative_prompt = negatives[0] if negatives else ""
    if hires:
        p.all_hr_prompts = hr_prompts
        p.all_hr_negative_prompts = hr_negatives


def _apply(
    p: Any, run: _Run, batch: Any, span: range, prompts: list[str], negatives: list[str], produced: set[str]
) -> None:
    for offset, index in enumerate(span):
        result = batch.results[offset]
        prompts[index] = result.prompt
        if index < len(negatives):
            negatives[index] = result.negative
        produced.add(result.prompt)
    _register(p, run, batch)


def _batch_warnings(batch: Any, hr_batch: Any | None) -> list[str]:
    out: list[str] = []
    for b in (batch, hr_batch):
        if b is None:
            continue
        for w in b.all_warnings:
            if w not in out:
                out.append(w)
    return out


def _merge_infotext(main: str, hires: str) -> str:
    if not hires or hires == main:
        return main
    if not main:
        return hires
    return f"{main}; {hires}"


def before_process_batch_hook(
    p: Any, *, batch_number: int = 0, prompts: list[str] | None = None, **kwargs: Any
) -> None:
    """``Script.before_process_batch``: rewrite what a later script changed after :func:`process_hook`.

    ``prompts`` is the list ``p.prompts`` the WebUI parses next; it is changed in place, and
    ``p.all_prompts`` with it so the infotext shows what was generated.
    """
    run = getattr(p, P_ATTR, None)
    if run is None or run.library is None or prompts is None:
        return
    batch_size = int(getattr(p, "batch_size", 1) or 1)
    start = batch_number * batch_size
    span = range(start, start + len(prompts))
    negs = list(getattr(p, "negative_prompts", None) or [""] * len(prompts))
    if any(pr not in run.produced for pr in prompts):
        batch = _rewrite_with_retry(p, run, prompts, negs, run.checkpoint)
        for offset, result in enumerate(batch.results):
            index = span[offset]
            if result.prompt != prompts[offset]:
                prompts[offset] = result.prompt
                _set_at(p, "all_prompts", index, result.prompt)
                run.infotexts[index] = result.infotext
            if offset < len(negs) and result.negative != negs[offset]:
                p.negative_prompts[offset] = result.negative
                _set_at(p, "all_negative_prompts", index, result.negative)
            run.produced.add(result.prompt)
        _register(p, run, batch)
        for warning in batch.all_warnings:
            _warn(p, run, warning)
    hr_all = getattr(p, "all_hr_prompts", None) if getattr(p, "enable_hr", False) else None
    if hr_all is not None and span.stop <= len(hr_all):
        hr_slice = list(hr_all[span.start : span.stop])
        if any(pr not in run.produced_hr for pr in hr_slice):
            hr_negs = list(
                (getattr(p, "all_hr_negative_prompts", None) or [""] * len(hr_all))[span.start : span.stop]
            )
            hr_batch = _rewrite_with_retry(p, run, hr_slice, hr_negs, run.hr_checkpoint)
            for offset, result in enumerate(hr_batch.results):
                index = span[offset]
                hr_all[index] = result.prompt
                if getattr(p, "all_hr_negative_prompts", None) is not None:
                    p.all_hr_negative_prompts[index] = result.negative
                run.produced_hr.add(result.prompt)
            _register(p, run, hr_batch)
            for warning in hr_batch.all_warnings:
                _warn(p, run, warning)
    # The built-in table may have been rebuilt since process() (its own rescan, a refresh click).
    for name, path in list(run.registered.items()):
        if _table_changed(name, path):
            ensure_loadable(name, path)


def _set_at(p: Any, attr: str, index: int, value: str) -> None:
    seq = getattr(p, attr, None)
    if isinstance(seq, list) and 0 <= index < len(seq):
        seq[index] = value


def postprocess_hook(p: Any, processed: Any) -> None:
    """``Script.postprocess``: nothing to undo; the per-job state is dropped."""
    with contextlib.suppress(Exception):
        delattr(p, P_ATTR)


# ------------------------------------------------------------------------------------------------
# paste


def _raw_prompt(infotext: str) -> str:
    """The positive prompt of a raw infotext, split the way the WebUI splits it."""
    import re

    param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
    *lines, last = infotext.strip().split("\n")
    if len(param.findall(last)) < 3:
        lines.append(last)
    out: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            break
        out.append(line)
    return "\n".join(out)


def infotext_pasted_hook(infotext: str, params: dict[str, Any]) -> None:
    """``on_infotext_pasted``: keep the LoRA names LoRA Studio wrote.

    The built-in Lora's paste handler (which runs before this one) renames ``<lora:NAME:`` by the hash in
    "Lora hashes" to the file's alias — for a shadowed file that is the ambiguous name again. The names in
    the raw infotext are the ones LoRA Studio can resolve to exactly the recorded files, so they are put
    back. Nothing else in the prompt is touched; the pasted prompt is already rewritten and rewriting it
    again gives the same prompt.
    """
    from lib_lora.prompt import iter_tags
    from lib_lora.rewrite import INFOTEXT_KEY, parse_infotext

    value = params.get(INFOTEXT_KEY)
    if not value or "Prompt" not in params:
        return
    try:
        record = parse_infotext(str(value))
    except Exception:
        return
    ours = set(record.loader_paths())
    if not ours:
        return
    raw_tags = [t for t in iter_tags(_raw_prompt(infotext)) if t.is_lora]
    pasted = str(params["Prompt"])
    now_tags = [t for t in iter_tags(pasted) if t.is_lora]
    if len(raw_tags) != len(now_tags):
        return
    pieces: list[str] = []
    pos = 0
    changed = False
    for raw, now in zip(raw_tags, now_tags, strict=True):
        if raw.name in ours and now.name != raw.name and now.span is not None and now.network == raw.network:
            from lib_lora.prompt import format_tag

            start, end = now.span
            pieces.append(pasted[pos:start])
            pieces.append(format_tag(now.with_name(raw.name or "")))
            pos = end
            changed = True
    if changed:
        pieces.append(pasted[pos:])
        params["Prompt"] = "".join(pieces)


def guarded(fn: Callable[..., Any], p: Any, *args: Any, **kwargs: Any) -> None:
    """Run a hook; a bug in LoRA Studio becomes one visible warning, never a failed generation."""
    try:
        fn(p, *args, **kwargs)
    except Exception as exc:
        log.exception("LoRA Studio hook %s failed", getattr(fn, "__name__", fn))
        _warn(
            p,
            getattr(p, P_ATTR, None),
            f"internal error in {getattr(fn, '__name__', 'a hook')}: {exc!r}; "
            "the prompt may not have been rewritten",
        )
