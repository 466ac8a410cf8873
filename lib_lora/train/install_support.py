"""The kohya sd-scripts checkout: what ``install.py`` does about it, and where the trainer finds it.

sd-scripts is a git submodule at ``vendor/sd-scripts``, pinned to the commit the option lists in the
test fixtures were taken from. A WebUI "install from URL" initialises first-level submodules, but its
"Update" button does not, and a zip download has none — so ``install.py`` calls
:func:`ensure_sd_scripts` on every start: it initialises the submodule when it is empty and checks the
recorded commit out again when the checkout differs (a pull moved the pin). The user may instead point
a setting at an existing sd-scripts or kohya_ss install (:func:`find_sd_scripts`).

Every git call goes through ``run`` (``subprocess.run``-compatible) with an argument list, never a
shell string; failures come back as a status with a plain message, never as an exception, because a
failing ``install.py`` must not stop the WebUI.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib_lora.errors import TrainerEnvironmentError

SUBMODULE_PATH = "vendor/sd-scripts"
SUBMODULE_URL = "https://github.com/kohya-ss/sd-scripts.git"
#: The commit the help texts in tests/fixtures/sd-scripts-help come from (move the pin only together with them).
PINNED_COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"
#: Environment variable naming an existing sd-scripts / kohya_ss folder to use instead of the submodule.
ENV_VAR = "LORA_STUDIO_SD_SCRIPTS"

OK = "ok"  # the checkout is at the recorded commit
INITIALIZED = "initialized"  # it was empty and has been fetched
UPDATED = "updated"  # it was at another commit and has been moved to the recorded one
EXTERNAL = "external"  # an sd-scripts install outside the extension is used
FAILED = "failed"

Runner = Callable[..., Any]


@dataclass(frozen=True)
class SdScriptsStatus:
    state: str
    path: str
    commit: str | None = None  # what is checked out
    expected: str | None = None  # what the extension's git records
    message: str = ""

    @property
    def usable(self) -> bool:
        return self.state in (OK, INITIALIZED, UPDATED, EXTERNAL)


def _git(run: Runner, ext_dir: Path, *args: str, timeout: float = 60) -> tuple[int, str]:
    try:
        proc = run(["git", "-C", str(ext_dir), *args], capture_output=True, text=True, timeout=timeout,
                   stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, "git is not installed (or not on PATH)"
    except subprocess.TimeoutExpired:
        return 124, f"git {args[0]} took longer than {int(timeout)} s (network?)"
    except OSError as exc:
        return 126, str(exc)
    out = ((proc.stdout or "") + (proc.stderr or "")).rstrip()
    return int(proc.returncode), out


def _last(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.lower().startswith(("fatal", "error"))]
    return (fatal or lines or ["(no output)"])[-1][:300]


def is_sd_scripts(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "train_network.py").is_file()


def find_sd_scripts(path: str | os.PathLike[str]) -> Path:
    """The sd-scripts folder a user setting points to: an sd-scripts checkout itself, or a kohya_ss
    install (which keeps sd-scripts in its ``sd-scripts/`` subfolder). Raises with a plain message."""
    p = Path(os.path.expanduser(str(path))).absolute()
    if not p.is_dir():
        raise TrainerEnvironmentError(f"{p} is not a folder")
    for candidate in (p, p / "sd-scripts"):
        if is_sd_scripts(candidate):
            return candidate
    raise TrainerEnvironmentError(
        f"{p} is not an sd-scripts folder (no train_network.py there or in its sd-scripts/ subfolder): "
        "choose a kohya-ss/sd-scripts checkout or a kohya_ss install"
    )


def recorded_commit(ext_dir: str | os.PathLike[str], run: Runner = subprocess.run) -> str | None:
    """The sd-scripts commit the extension's git records (``git ls-tree HEAD vendor/sd-scripts``)."""
    rc, out = _git(run, Path(ext_dir), "ls-tree", "HEAD", SUBMODULE_PATH)
    if rc != 0:
        return None
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "160000" and parts[1] == "commit":
            return parts[2]
    return None


def submodule_state(ext_dir: str | os.PathLike[str], run: Runner = subprocess.run) -> tuple[str, str | None]:
    """``git submodule status``: ``("-", sha)`` not initialised, ``("+", sha)`` another commit checked
    out, ``(" ", sha)`` at the recorded commit, ``("U", sha)`` conflicts; ``("?", None)`` unknown."""
    rc, out = _git(run, Path(ext_dir), "submodule", "status", "--", SUBMODULE_PATH)
    if rc != 0 or not out:
        return "?", None
    line = out.splitlines()[0]
    flag = line[:1]
    parts = line[1:].split()
    return flag, (parts[0] if parts else None)


def sd_scripts_commit(path: str | os.PathLike[str], run: Runner = subprocess.run) -> str | None:
    """The commit an sd-scripts checkout is at, when it is its own git checkout."""
    p = Path(path)
    if not (p / ".git").exists():
        return None  # never ask git inside an empty folder: it would answer for the parent repository
    rc, out = _git(run, p, "rev-parse", "HEAD")
    return out.split()[0] if rc == 0 and out.strip() else None


def ensure_sd_scripts(ext_dir: str | os.PathLike[str], run: Runner = subprocess.run, *,
                      external: str | os.PathLike[str] | None = None, timeout: float = 900) -> SdScriptsStatus:
    """Make ``<ext_dir>/vendor/sd-scripts`` a checkout of the recorded commit (network only when it
    must fetch), or validate ``external``. Never raises; see the returned status's ``message``."""
    ext = Path(ext_dir).absolute()
    target = ext / SUBMODULE_PATH
    if external:
        try:
            found = find_sd_scripts(external)
        except TrainerEnvironmentError as exc:
            return SdScriptsStatus(FAILED, str(external), message=str(exc))
        commit = sd_scripts_commit(found, run)
        note = "" if commit in (None, PINNED_COMMIT) else (
            f" (at {commit[:10]}; LoRA Studio's option lists are for {PINNED_COMMIT[:10]})")
        return SdScriptsStatus(EXTERNAL, str(found), commit, PINNED_COMMIT, f"Using sd-scripts at {found}{note}")

    expected = recorded_commit(ext, run)
    if expected is None:  # not a git checkout (zip download) or git missing
        if is_sd_scripts(target):
            return SdScriptsStatus(OK, str(target), None, None, f"sd-scripts found at {target} (not a git checkout)")
        return SdScriptsStatus(
            FAILED, str(target), None, PINNED_COMMIT,
            "sd-scripts is missing and cannot be fetched: LoRA Studio is not a git checkout (or git is not "
            f"installed). Clone https://github.com/kohya-ss/sd-scripts at {PINNED_COMMIT[:10]} into {target}, "
            "or point the 'sd-scripts folder' setting at an existing sd-scripts / kohya_ss install.",
        )

    flag, current = submodule_state(ext, run)
    empty = not target.is_dir() or not any(target.iterdir())
    if flag == " " and not empty and is_sd_scripts(target):
        return SdScriptsStatus(OK, str(target), current, expected, f"sd-scripts is at {expected[:10]}")
    if flag == "-" and not empty and is_sd_scripts(target):
        return SdScriptsStatus(OK, str(target), None, expected,
                               f"sd-scripts files found at {target} (not a submodule checkout; not updated)")
    if flag == "U":
        return SdScriptsStatus(FAILED, str(target), current, expected,
                               f"sd-scripts at {target} has merge conflicts; resolve them or delete the folder")

    state = INITIALIZED if (flag == "-" or empty) else UPDATED
    _git(run, ext, "submodule", "sync", "--", SUBMODULE_PATH)
    rc, out = _git(run, ext, "submodule", "update", "--init", "--recursive", "--", SUBMODULE_PATH, timeout=timeout)
    flag2, now = submodule_state(ext, run)
    if rc != 0 or flag2 != " " or not is_sd_scripts(target):
        what = "download" if state == INITIALIZED else f"check out {expected[:10]} of"
        return SdScriptsStatus(
            FAILED, str(target), now, expected,
            f"Could not {what} kohya sd-scripts ({_last(out) if rc != 0 else 'checkout incomplete'}). Check the "
            f"network and run 'git submodule update --init --recursive {SUBMODULE_PATH}' in {ext}, or point the "
            "'sd-scripts folder' setting at an existing sd-scripts / kohya_ss install.",
        )
    verb = "Fetched" if state == INITIALIZED else f"Moved from {(current or '?')[:10]} to"
    return SdScriptsStatus(state, str(target), now, expected, f"{verb} sd-scripts {expected[:10]}")


def resolve_sd_scripts(ext_dir: str | os.PathLike[str], setting: str | None = None) -> Path:
    """The sd-scripts folder to train with: the user's setting (or ``$LORA_STUDIO_SD_SCRIPTS``), else
    the submodule. Raises :class:`TrainerEnvironmentError` when there is none."""
    chosen = setting or os.environ.get(ENV_VAR)
    if chosen:
        return find_sd_scripts(chosen)
    target = Path(ext_dir).absolute() / SUBMODULE_PATH
    if is_sd_scripts(target):
        return target
    raise TrainerEnvironmentError(
        f"sd-scripts is not installed at {target}: restart the WebUI so install.py fetches it, run "
        f"'git submodule update --init {SUBMODULE_PATH}' there, or set the 'sd-scripts folder' setting"
    )


def install_step(ext_dir: str | os.PathLike[str], run: Runner = subprocess.run,
                 echo: Callable[[str], None] = print) -> SdScriptsStatus:
    """What ``install.py`` runs: ensure sd-scripts, print one line about it, never raise."""
    try:
        status = ensure_sd_scripts(ext_dir, run, external=os.environ.get(ENV_VAR) or None)
    except Exception as exc:  # pragma: no cover - install.py must never stop the WebUI
        status = SdScriptsStatus(FAILED, str(Path(ext_dir) / SUBMODULE_PATH), message=f"sd-scripts check failed: {exc}")
    if status.state != OK:
        echo(f"[LoRA Studio] {status.message}")
    return status
