"""Start the stand-in WebUI (``modules`` + the built-in Lora) with LoRA Studio loaded, as the WebUI does.

Order, as in the real start-up: the built-in Lora's script is executed with its folder first on
``sys.path`` (so ``import networks`` works), then LoRA Studio's ``scripts/lora_studio.py`` with the
extension folder first; then the settings callbacks, ``before_ui`` (the built-in registers ``lora``) and
``app_started``. :meth:`StandinWebUI.stop` removes every stand-in module again so that other tests
never see a ``modules`` package.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

STANDIN = Path(__file__).resolve().parent
REPO = STANDIN.parents[1]
BUILTIN_LORA = STANDIN / "extensions-builtin" / "Lora"
#: Top-level module names the stand-in (like the WebUI) owns.
OWNED = ("modules", "networks", "network", "extra_networks_lora", "modules_forge", "backend")


def purge() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in OWNED:
            del sys.modules[name]


class FakeApp:
    """Records routers included on app start."""

    def __init__(self) -> None:
        self.routers: list[Any] = []

    def include_router(self, router: Any) -> None:
        self.routers.append(router)


class StandinWebUI:
    def __init__(self, root: Path, *, flavor: str = "a1111") -> None:
        self.root = root
        self.flavor = flavor
        self.lora_dir = root / "models" / "Lora"
        self.ckpt_dir = root / "models" / "Stable-diffusion"
        self.data_dir = root / "lora-studio-data"
        self.app = FakeApp()
        self._saved_path: list[str] | None = None
        self._saved_env: dict[str, str | None] = {}

    # -- lifecycle
    def start(self, *, load_builtin_lora: bool = True, extra_scripts: tuple[tuple[Path, Path], ...] = ()) -> StandinWebUI:
        for d in (self.lora_dir, self.ckpt_dir):
            d.mkdir(parents=True, exist_ok=True)
        env = {
            "STANDIN_WEBUI_ROOT": str(self.root),
            "STANDIN_WEBUI_DATA": str(self.root),
            "LORA_STUDIO_STANDIN_FLAVOR": self.flavor,
            "LORA_STUDIO_DATA": str(self.data_dir),
        }
        for k, v in env.items():
            self._saved_env[k] = os.environ.get(k)
            os.environ[k] = v
        self._saved_path = list(sys.path)
        purge()
        sys.path.insert(0, str(STANDIN))
        if self.flavor == "forge":
            sys.path.insert(0, str(STANDIN / "forge"))
        from lib_lora import webui

        webui.reset_for_tests()
        from modules import script_callbacks, scripts, sd_models, shared

        shared.cmd_opts.lora_dir = str(self.lora_dir)
        sd_models.model_path = str(self.ckpt_dir)
        sd_models.list_models()
        files = []
        if load_builtin_lora:
            files.append((str(BUILTIN_LORA), str(BUILTIN_LORA / "scripts" / "lora_script.py")))
        files.append((str(REPO), str(REPO / "scripts" / "lora_studio.py")))
        files += [(str(b), str(p)) for b, p in extra_scripts]
        scripts.load_scripts(files)
        script_callbacks.ui_settings_callback()
        script_callbacks.before_ui_callback()
        script_callbacks.app_started_callback(None, self.app)
        return self

    def stop(self) -> None:
        from lib_lora import webui
        from lib_lora.webui import adapter

        h = adapter._HOST
        if h is not None and h.scan_status().running:
            h.wait_for_scan(30)  # let the background scan finish before its modules disappear
        webui.reset_for_tests()
        purge()
        if self._saved_path is not None:
            sys.path[:] = self._saved_path
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    # -- helpers
    @property
    def shared(self) -> Any:
        return sys.modules["modules.shared"]

    @property
    def networks(self) -> Any:
        return sys.modules["networks"]

    def host(self) -> Any:
        from lib_lora import webui

        return webui.host()

    def wait_for_index(self) -> None:
        status = self.host().rescan(wait=True)
        assert status.state == "done", status

    def refresh_checkpoints(self) -> None:
        sys.modules["modules.sd_models"].list_models()

    def select_checkpoint(self, title: str) -> None:
        self.shared.opts.set("sd_model_checkpoint", title)

    def set_option(self, key: str, value: Any) -> None:
        self.shared.opts.set(key, value)

    def add_style(self, name: str, prompt: str, negative: str = "") -> None:
        self.shared.prompt_styles.add(name, prompt, negative)

    def txt2img(self, prompt: Any, negative: Any = "", **kwargs: Any) -> Any:
        from modules import processing, scripts

        runner = scripts.scripts_txt2img
        p = processing.StableDiffusionProcessingTxt2Img(
            prompt=prompt, negative_prompt=negative, scripts_value=runner, script_args_value=runner.default_args(), **kwargs
        )
        processed = processing.process_images(p)
        processed.p = p
        return processed

    def img2img(self, prompt: Any, negative: Any = "", **kwargs: Any) -> Any:
        from modules import processing, scripts

        runner = scripts.scripts_img2img
        p = processing.StableDiffusionProcessingImg2Img(
            prompt=prompt, negative_prompt=negative, scripts_value=runner, script_args_value=runner.default_args(), **kwargs
        )
        processed = processing.process_images(p)
        processed.p = p
        return processed

    def paste(self, infotext: str) -> dict[str, Any]:
        from modules import infotext_utils

        return infotext_utils.paste(infotext)
