"""Run by the WebUI (A1111 / Forge) in a subprocess on every start, before the UI loads.

It installs nothing into the WebUI's venv that the WebUI does not already ship except the small core
dependencies listed below, and makes sure the pinned kohya-ss sd-scripts submodule is checked out.
The trainer's own dependencies (torch >= 2.6, transformers, accelerate, diffusers ...) go into a
separate venv, created on first use from the Train tab — never into the WebUI's environment.
"""

from __future__ import annotations

import importlib.util
import os
import sys

EXTENSION_DIR = os.path.dirname(os.path.abspath(__file__))

#: import name -> pip requirement. All ship with A1111 1.10 and Forge; checked for odd installs.
CORE_REQUIREMENTS = {
    "numpy": "numpy",
    "PIL": "pillow",
    "safetensors": "safetensors",
}


def _missing() -> list[str]:
    return [req for mod, req in CORE_REQUIREMENTS.items() if importlib.util.find_spec(mod) is None]


def main() -> int:
    if EXTENSION_DIR not in sys.path:
        sys.path.insert(0, EXTENSION_DIR)
    missing = _missing()
    if missing:
        try:
            import launch  # the WebUI's launcher helpers (PYTHONPATH points at the WebUI root)

            for req in missing:
                launch.run_pip(f"install {req}", f"LoRA Studio requirement: {req}")
        except ImportError:
            print(f"[LoRA Studio] missing packages: {', '.join(missing)} (pip install them)", file=sys.stderr)
    try:
        from lib_lora.train.install_support import install_step
    except ImportError as exc:  # a partial checkout: the extension still works without training
        print(f"[LoRA Studio] training support not available: {exc}", file=sys.stderr)
        return 0
    install_step(EXTENSION_DIR)  # prints its own one-line status; never raises
    return 0


if __name__ == "__main__":
    sys.exit(main())
