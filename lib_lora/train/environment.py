"""The trainer's own Python environment: a venv in LoRA Studio's data folder with sd-scripts' pinned
requirements and a torch built for the WebUI's CUDA major.

sd-scripts pins transformers/accelerate/diffusers versions that conflict with both WebUIs and needs
torch >= 2.6 (A1111 1.10 ships 2.1), so it never runs in the WebUI's environment: everything here
runs the venv's own interpreter as a subprocess, and the WebUI's site-packages are never written to.
The core never imports torch: the WebUI's CUDA version comes in as a string (``torch.version.cuda``,
read by the WebUI adapter).

Offline install (a machine without internet): download the wheels elsewhere with
``pip download -d WHEELS torch torchvision --index-url https://download.pytorch.org/whl/cu126`` and
``pip download -d WHEELS -r <sd-scripts>/requirements.txt setuptools wheel`` (same Python version and
platform as the WebUI), copy the folder over and pass it as ``wheel_dir``: every install then runs
``pip install --no-index --find-links WHEELS``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lib_lora.errors import TrainerEnvironmentError

MISSING = "missing"
INCOMPLETE = "incomplete"
READY = "ready"

MARKER = ".lora-studio-env.json"
CONSTRAINTS = "lora-studio-constraints.txt"
DEFAULT_TORCH_SPEC = "torch>=2.6"
TORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
#: modules sd-scripts imports at start-up that no requirements line names
EXTRA_DISTRIBUTIONS = ("torch", "torchvision")


@dataclass(frozen=True)
class InstallProgress:
    """One line of progress while the environment is created."""

    stage: str  # "venv", "torch", "requirements", "check"
    step: int  # 1-based
    steps: int
    line: str


@dataclass(frozen=True)
class EnvStatus:
    state: str  # missing / incomplete / ready
    venv_dir: str
    python: str | None
    versions: dict[str, str] = field(default_factory=dict)  # distribution -> installed version
    problems: tuple[str, ...] = ()  # what is missing or at the wrong version
    torch_cuda: str | None = None  # the venv torch's CUDA version ("12.6"), None for CPU/ROCm/unknown
    message: str = ""

    @property
    def ready(self) -> bool:
        return self.state == READY


@dataclass(frozen=True)
class Requirement:
    name: str  # normalised (PEP 503)
    spec: str  # "==4.54.1", "" when unpinned
    line: str


ProgressCallback = Callable[[InstallProgress], None]

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(?:;.*)?$")
_NETWORK_RE = re.compile(
    r"Failed to establish a new connection|Temporary failure in name resolution|Name or service not known"
    r"|Network is unreachable|ConnectTimeoutError|ReadTimeoutError|Max retries exceeded|ProxyError|SSLError"
    r"|Could not fetch URL|nodename nor servname",
    re.I,
)
_NOT_FOUND_RE = re.compile(r"No matching distribution found for (\S+)|Could not find a version that satisfies the requirement (\S+)")


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(text: str) -> list[Requirement]:
    """The named requirements of a requirements.txt (options, ``-e``/``-r`` lines and URLs skipped)."""
    out: list[Requirement] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", ".", "/")) or "://" in line:
            continue
        m = _NAME_RE.match(line)
        if m:
            out.append(Requirement(normalize_name(m.group(1)), m.group(3).strip(), line))
    return out


def cuda_major(cuda: str | None) -> int | None:
    """``"12.1"`` -> 12; None/empty/garbage -> None."""
    if not cuda:
        return None
    m = re.match(r"\s*(\d+)", str(cuda))
    return int(m.group(1)) if m else None


def torch_index_for(major: int | None, *, platform: str = sys.platform) -> tuple[str | None, str]:
    """The PyTorch wheel index and torch requirement for a CUDA major version (the WebUI's).

    CUDA 11 -> cu118 (torch 2.6–2.7 are the last with it), 12 -> cu126, 13 -> cu130 (torch >= 2.9);
    no CUDA -> the CPU index (macOS: PyPI itself, whose wheels use MPS).
    """
    if major is None:
        return (None if platform == "darwin" else TORCH_INDEX.format(tag="cpu")), DEFAULT_TORCH_SPEC
    if major <= 10:
        raise TrainerEnvironmentError(
            f"the WebUI's torch uses CUDA {major}, but the trainer needs torch >= 2.6, which has no CUDA "
            f"{major} build: update the NVIDIA driver and the WebUI's torch, or pass a torch index yourself"
        )
    if major == 11:
        return TORCH_INDEX.format(tag="cu118"), "torch>=2.6,<2.8"
    if major == 12:
        return TORCH_INDEX.format(tag="cu126"), DEFAULT_TORCH_SPEC
    return TORCH_INDEX.format(tag="cu130"), "torch>=2.9"


_PROBE = r"""
import json, sys, importlib.metadata as md, importlib.util as iu, re, os
names = json.loads(sys.argv[1])
versions = {}
for n in names:
    try:
        versions[n] = md.version(n)
    except md.PackageNotFoundError:
        pass
cuda = None
spec = iu.find_spec("torch")
if spec and spec.origin:
    try:
        text = open(os.path.join(os.path.dirname(spec.origin), "version.py"), encoding="utf-8").read()
        m = re.search(r"^cuda\s*(?::\s*\S+)?\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        cuda = m.group(1) if m else None
    except OSError:
        pass
print(json.dumps({"versions": versions, "torch_cuda": cuda, "prefix": sys.prefix,
                  "python": "%d.%d.%d" % sys.version_info[:3]}))
"""


def _version_tuple(v: str) -> tuple[int, ...]:
    parts = []
    for p in re.split(r"[.+]", v):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group(0)))
    return tuple(parts)


def _satisfies(version: str, spec: str) -> bool:
    """A small subset of PEP 440 for the pins sd-scripts uses (==, >=, <, <=, >, !=, comma-joined)."""
    have = _version_tuple(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        m = re.match(r"(==|>=|<=|!=|~=|>|<)\s*(\S+)", clause)
        if not m:
            continue
        op, want_s = m.groups()
        want = _version_tuple(want_s)
        if op == "==" and (have[: len(want)] != want if not want_s.endswith("*") else False):
            return False
        if op == "!=" and have[: len(want)] == want:
            return False
        if (op == ">=" and have < want) or (op == ">" and have <= want) or (op == "<" and have >= want):
            return False
        if op == "<=" and have > want:
            return False
        if op == "~=" and (have < want or have[: len(want) - 1] != want[: len(want) - 1]):
            return False
    return True


class TrainerEnvironment:
    """The venv at ``<data_dir>/trainer-venv`` for the sd-scripts checkout at ``sd_scripts_dir``."""

    def __init__(self, data_dir: str | os.PathLike[str], sd_scripts_dir: str | os.PathLike[str], *,
                 venv_dir: str | os.PathLike[str] | None = None, base_python: str | None = None,
                 isolated_pip: bool = False) -> None:
        """``isolated_pip`` ignores every pip configuration (``PIP_*`` variables, pip.conf files):
        for tests and reproducible installs. By default the user's pip settings (mirrors, proxies,
        certificates) apply."""
        self.isolated_pip = isolated_pip
        self.data_dir = Path(data_dir).absolute()
        self.sd_scripts_dir = Path(sd_scripts_dir).absolute()
        self.venv_dir = Path(venv_dir).absolute() if venv_dir is not None else self.data_dir / "trainer-venv"
        self.base_python = base_python or sys.executable
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------- paths

    @property
    def python(self) -> Path:
        if os.name == "nt":  # pragma: no cover - untested code path
            return self.venv_dir / "Scripts" / "python.exe"
        return self.venv_dir / "bin" / "python"

    def accelerate_command(self) -> list[str]:
        """How to start ``accelerate launch`` with this environment (no console script needed)."""
        return [str(self.python), "-m", "accelerate.commands.launch"]

    def requirements(self) -> list[Requirement]:
        path = self.sd_scripts_dir / "requirements.txt"
        try:
            return parse_requirements(path.read_text(encoding="utf-8"))
        except OSError:
            return []

    def _requirements_hash(self) -> str | None:
        try:
            return hashlib.sha256((self.sd_scripts_dir / "requirements.txt").read_bytes()).hexdigest()
        except OSError:
            return None

    # ------------------------------------------------------------------------------------ status

    def status(self) -> EnvStatus:
        venv = str(self.venv_dir)
        if not self.python.exists():
            return EnvStatus(MISSING, venv, None, message="The trainer environment has not been created yet.")
        reqs = self.requirements()
        names = sorted({r.name for r in reqs} | set(EXTRA_DISTRIBUTIONS))
        try:
            proc = subprocess.run([str(self.python), "-c", _PROBE, json.dumps(names)], capture_output=True,
                                  text=True, timeout=120, stdin=subprocess.DEVNULL)
            probe = json.loads(proc.stdout) if proc.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError):
            probe = None
        if probe is None:
            return EnvStatus(INCOMPLETE, venv, str(self.python), problems=("the venv's Python does not run",),
                             message="The trainer environment is broken: its Python does not run. Re-create it.")
        versions: dict[str, str] = {normalize_name(k): v for k, v in probe["versions"].items()}
        problems: list[str] = []
        for name, spec in [("torch", DEFAULT_TORCH_SPEC[len("torch"):]), ("torchvision", "")] + [
            (r.name, r.spec) for r in reqs
        ]:
            have = versions.get(name)
            if have is None:
                problems.append(f"{name} is not installed")
            elif spec and not _satisfies(have, spec):
                problems.append(f"{name} {have} is installed, sd-scripts needs {name}{spec}")
        marker = self._read_marker()
        if marker is None:
            problems.append("the installation did not finish")
        elif marker.get("requirements_sha256") != self._requirements_hash():
            problems.append("sd-scripts' requirements changed since the environment was created")
        if not (self.sd_scripts_dir / "requirements.txt").is_file():
            problems.append(f"sd-scripts not found at {self.sd_scripts_dir}")
        if problems:
            return EnvStatus(INCOMPLETE, venv, str(self.python), versions, tuple(problems), probe.get("torch_cuda"),
                             "The trainer environment is incomplete: " + "; ".join(problems[:3]))
        torch_v = versions.get("torch", "?")
        cuda = probe.get("torch_cuda")
        return EnvStatus(READY, venv, str(self.python), versions, (), cuda,
                         f"Ready: Python {probe.get('python')}, torch {torch_v}" + (f" (CUDA {cuda})" if cuda else ""))

    def _read_marker(self) -> dict[str, object] | None:
        try:
            data = json.loads((self.venv_dir / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # ------------------------------------------------------------------------------------ create

    def create(
        self,
        progress: ProgressCallback | None = None,
        *,
        wheel_dir: str | os.PathLike[str] | None = None,
        torch_index: str | None = "auto",
        cuda: str | None = None,
        cuda_major: int | None = None,
        torch_spec: str | None = None,
        extra_pip_args: Sequence[str] = (),
        recreate: bool = False,
        use_host_pip: bool | None = None,
    ) -> EnvStatus:
        """Create (or complete) the venv and install torch and sd-scripts' requirements into it.

        ``cuda`` is the WebUI's ``torch.version.cuda`` string (or give ``cuda_major``); it picks the
        PyTorch index unless ``torch_index`` is given (``None`` = PyPI's default). ``wheel_dir`` makes
        the whole install offline (``--no-index --find-links``). ``use_host_pip`` runs this
        interpreter's pip against the venv (``pip --python``) instead of bootstrapping pip into it;
        by default that is only done when ``ensurepip`` is unavailable. Raises
        :class:`TrainerEnvironmentError` with a user-facing message when something fails.
        """
        if not self._lock.acquire(blocking=False):
            raise TrainerEnvironmentError("the trainer environment is already being installed")
        try:
            return self._create(progress, wheel_dir, torch_index, cuda, cuda_major, torch_spec,
                                list(extra_pip_args), recreate, use_host_pip)
        finally:
            self._lock.release()

    def _check_target(self) -> None:
        target = self.venv_dir.resolve()
        running = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
                   Path(sys.executable).resolve().parent.parent}
        for prefix in running:
            if target == prefix or prefix.is_relative_to(target):
                raise TrainerEnvironmentError(
                    f"refusing to install the trainer into {target}: that is the running Python's own "
                    "environment (the trainer needs its own venv)"
                )

    def _create(self, progress: ProgressCallback | None, wheel_dir: str | os.PathLike[str] | None,
                torch_index: str | None, cuda: str | None, major: int | None, torch_spec: str | None,
                extra: list[str], recreate: bool, use_host_pip: bool | None) -> EnvStatus:
        req_file = self.sd_scripts_dir / "requirements.txt"
        if not req_file.is_file():
            raise TrainerEnvironmentError(
                f"sd-scripts is not installed at {self.sd_scripts_dir} (no requirements.txt): run install.py "
                "or point the settings to an sd-scripts / kohya_ss folder"
            )
        self._check_target()
        steps = 4

        def say(stage: str, step: int, line: str) -> None:
            if progress is not None:
                progress(InstallProgress(stage, step, steps, line))

        if major is None:
            major = cuda_major(cuda)
        index, default_spec = torch_index_for(major)
        if torch_index != "auto":
            index = torch_index
        torch_req = torch_spec or default_spec
        find_links: list[str] = []
        if wheel_dir is not None:
            wheels = Path(wheel_dir)
            if not wheels.is_dir():
                raise TrainerEnvironmentError(f"the wheel folder {wheels} does not exist")
            find_links = ["--no-index", "--find-links", str(wheels.resolve())]
            index = None

        # 1. the venv
        if recreate and self.venv_dir.exists():
            say("venv", 1, f"removing {self.venv_dir}")
            shutil.rmtree(self.venv_dir)
        (self.venv_dir / MARKER).unlink(missing_ok=True)
        host_pip = bool(use_host_pip)
        if not self.python.exists():
            self.venv_dir.parent.mkdir(parents=True, exist_ok=True)
            say("venv", 1, f"creating {self.venv_dir} with {self.base_python}")
            cmd = [self.base_python, "-m", "venv", str(self.venv_dir)]
            if host_pip:
                cmd.insert(3, "--without-pip")
            rc, out = self._run(cmd, lambda line: say("venv", 1, line))
            if rc != 0 and not host_pip and "ensurepip" in out and use_host_pip is None:
                say("venv", 1, "ensurepip is not available: using this Python's pip on the new venv instead")
                shutil.rmtree(self.venv_dir, ignore_errors=True)
                host_pip = True
                rc, out = self._run([self.base_python, "-m", "venv", "--without-pip", str(self.venv_dir)],
                                    lambda line: say("venv", 1, line))
            if rc != 0:
                raise TrainerEnvironmentError(f"could not create the trainer venv: {_last_line(out)}")
        elif use_host_pip is None:
            host_pip = not self._has_pip()
        if host_pip:
            _check_host_pip()
        pip = self._pip_command(host_pip)

        # 2. torch, for the WebUI's CUDA major
        torch_args = [*pip, "install", torch_req, "torchvision", *find_links, *extra]
        if index:
            torch_args += ["--index-url", index]
        where = "the wheel folder" if find_links else (index or "PyPI")
        say("torch", 2, f"installing {torch_req} and torchvision from {where}")
        rc, out = self._run(torch_args, lambda line: say("torch", 2, line))
        if rc != 0:
            raise self._pip_error(out, "torch", wheel_dir)

        # 3. sd-scripts' pinned requirements, keeping that torch
        versions = self._installed(["torch", "torchvision"])
        constraints = self.venv_dir / CONSTRAINTS
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in versions.items()), encoding="utf-8")
        req_args = [*pip, "install", "-r", str(req_file.resolve()), "-c", str(constraints), *find_links, *extra]
        say("requirements", 3, f"installing sd-scripts' requirements from {where if find_links else 'PyPI'}")
        rc, out = self._run(req_args, lambda line: say("requirements", 3, line), cwd=self.sd_scripts_dir)
        if rc != 0:
            raise self._pip_error(out, "sd-scripts' requirements", wheel_dir)

        # 4. check and record
        marker = {
            "created_at": time.time(),
            "requirements_sha256": self._requirements_hash(),
            "sd_scripts_dir": str(self.sd_scripts_dir),
            "torch_index": index,
            "wheel_dir": str(wheel_dir) if wheel_dir is not None else None,
            "cuda_major": major,
            "torch_spec": torch_req,
        }
        (self.venv_dir / MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
        status = self.status()
        say("check", 4, status.message)
        if not status.ready:
            (self.venv_dir / MARKER).unlink(missing_ok=True)
            raise TrainerEnvironmentError(status.message)
        return status

    # ---------------------------------------------------------------------------------- helpers

    def _has_pip(self) -> bool:
        try:
            return subprocess.run([str(self.python), "-m", "pip", "--version"], capture_output=True,
                                  timeout=60, stdin=subprocess.DEVNULL).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _pip_command(self, host_pip: bool) -> list[str]:
        common = ["--disable-pip-version-check", "--no-input"]
        if host_pip:
            # this interpreter's pip, re-run by pip itself inside the venv's interpreter
            return [sys.executable, "-m", "pip", "--python", str(self.python), *common]
        return [str(self.python), "-m", "pip", *common]

    def _installed(self, names: list[str]) -> dict[str, str]:
        proc = subprocess.run([str(self.python), "-c", _PROBE, json.dumps(names)], capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        try:
            return dict(json.loads(proc.stdout)["versions"])
        except (ValueError, KeyError):
            return {}

    def _run(self, cmd: Sequence[str], on_line: Callable[[str], None], cwd: Path | None = None) -> tuple[int, str]:
        env = dict(os.environ)
        for var in ("PYTHONPATH", "PYTHONHOME", "PIP_TARGET", "PIP_PREFIX", "PIP_USER", "VIRTUAL_ENV",
                    "PIP_REQUIRE_VIRTUALENV"):
            env.pop(var, None)  # nothing may point pip at the WebUI's site-packages
        if self.isolated_pip:
            for var in [v for v in env if v.startswith("PIP_")]:
                del env[var]
            env["PIP_CONFIG_FILE"] = os.devnull  # pip then loads no configuration file at all
        env["PYTHONUNBUFFERED"] = "1"
        env["PIP_PROGRESS_BAR"] = "off"
        tail: list[str] = []
        try:
            proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=str(cwd) if cwd else None, env=env)
        except OSError as exc:
            return 127, str(exc)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            tail.append(line)
            del tail[:-400]
            on_line(line)
        return proc.wait(), "\n".join(tail)

    def _pip_error(self, out: str, what: str, wheel_dir: str | os.PathLike[str] | None) -> TrainerEnvironmentError:
        missing = _NOT_FOUND_RE.search(out)
        package = (missing.group(1) or missing.group(2)) if missing else None
        if "No space left on device" in out:
            return TrainerEnvironmentError(f"installing {what} failed: the disk is full (No space left on device)")
        if wheel_dir is not None and package:
            return TrainerEnvironmentError(
                f"installing {what} failed: the wheel folder {wheel_dir} has no wheel for {package} "
                "(download it there with 'pip download' on a machine with internet)"
            )
        if _NETWORK_RE.search(out) or package:
            return TrainerEnvironmentError(
                f"installing {what} failed: packages could not be downloaded"
                + (f" ({package})" if package else "")
                + ". Offline install: put the wheels in a folder (pip download -d DIR ...) and use it as the "
                "wheel folder — that runs pip install --no-index --find-links DIR"
            )
        return TrainerEnvironmentError(f"installing {what} failed: {_last_line(out)}")


def _check_host_pip() -> None:
    """``pip --python`` (driving another interpreter) exists since pip 22.3."""
    try:
        from importlib.metadata import version

        have = _version_tuple(version("pip"))
    except Exception:
        have = ()
    if have < (22, 3):
        raise TrainerEnvironmentError(
            "the new trainer venv has no pip (ensurepip is missing: on Debian/Ubuntu install python3-venv) "
            "and this Python's pip is too old to install into it (pip >= 22.3 needed)"
        )


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR") or "Error" in ln]
    return (errors or lines or ["(no output)"])[-1][:300]
