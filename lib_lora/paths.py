"""Where LoRA Studio keeps its own data (the library index, hash cache, job records, demo library).

Order of precedence for the user-data folder:

1. an explicit folder passed by the caller (the WebUI adapter passes one inside the WebUI's data dir);
2. the environment variable ``LORA_STUDIO_DATA``;
3. the platform's user-data folder: ``$XDG_DATA_HOME/lora-studio`` (default ``~/.local/share/lora-studio``)
   on Linux and other Unixes, ``~/Library/Application Support/lora-studio`` on macOS,
   ``%LOCALAPPDATA%\\lora-studio`` on Windows.

Nothing here creates a folder unless asked (``ensure=True``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lib_lora.errors import LibraryError

APP_DIR_NAME = "lora-studio"
ENV_VAR = "LORA_STUDIO_DATA"
INDEX_FILENAME = "library-index.sqlite3"


def platform_data_home() -> Path:
    """The platform's per-user data folder (without the LoRA Studio sub-folder)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.environ.get("APPDATA")
        return Path(base) if base else Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    return Path.home() / ".local" / "share"


def user_data_dir(explicit: str | os.PathLike[str] | None = None, *, ensure: bool = False) -> Path:
    """LoRA Studio's user-data folder (see the module docstring for the order of precedence)."""
    if explicit is not None and os.fspath(explicit):
        path = Path(explicit).expanduser()
    else:
        env = os.environ.get(ENV_VAR, "").strip()
        path = Path(env).expanduser() if env else platform_data_home() / APP_DIR_NAME
    if ensure:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LibraryError(f"cannot create the LoRA Studio data folder {path}: {exc.strerror or exc}") from None
    return path


def default_index_path(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the library index database inside the user-data folder."""
    return user_data_dir(data_dir) / INDEX_FILENAME
