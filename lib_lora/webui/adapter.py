"""The Host over A1111 / Forge: :class:`WebUIHost` and the lazy lookups of the WebUI's ``modules.*``.

Its one job is to answer :class:`lib_lora.host.Host`'s questions (folders, settings, checkpoints, GPU
memory, the queue lock, remote access) from the WebUI's modules, and to keep the process's one host
across "Reload UI" (:func:`host`). Importing it imports no WebUI module: they are looked up when used.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lib_lora import settings as settings_mod
from lib_lora.architecture import Detection
from lib_lora.host import (
    CheckpointDetector,
    CheckpointRef,
    GenerationRequest,
    KeptLibrary,
    LibraryKeeper,
    ScanStatus,
    VramToken,
    credentials_match,
    parse_credentials,
)
from lib_lora.settings import SCHEMA, Settings

#: A name not found triggers at most one rescan per this many seconds.
RESCAN_ON_MISS_INTERVAL = 30.0


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
        return self._detector.detect_ref(checkpoint)

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

    # -- generation and taggers (lib_lora.webui.generation)
    def generate(self, request: GenerationRequest) -> Any:
        from lib_lora.webui import generation

        with self.queue_lock():
            return generation.txt2img(request)

    def refresh_lora_list(self) -> None:
        from lib_lora.webui import generation

        generation.refresh_lora_list()

    def caption_taggers(self) -> dict[str, str]:
        from lib_lora.webui import generation

        return generation.available_taggers()

    def caption_tagger(self, kind: str) -> contextlib.AbstractContextManager[Any]:
        """The tagger as a context manager giving image -> text; holds the generation queue."""
        from lib_lora.webui import generation

        @contextlib.contextmanager
        def held() -> Iterator[Any]:
            with self.queue_lock(), generation.tagger(kind) as tag:
                yield tag

        return held()

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


def host() -> WebUIHost:
    """The process's one :class:`WebUIHost` (kept across "Reload UI")."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            _HOST = WebUIHost()
        return _HOST



def reset_for_tests() -> None:
    """Forget the process's host (tests only)."""
    global _HOST
    with _HOST_LOCK:
        _HOST = None


def _console(message: str) -> None:
    print(f"[LoRA Studio] {' '.join(str(message).split())}", flush=True)

