"""The trainer venv: created with real subprocesses (venv, pip) from a folder of small wheels built
here — offline, fast, and never touching the interpreter running the tests."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lib_lora.errors import TrainerEnvironmentError
from lib_lora.train.environment import (
    INCOMPLETE,
    MISSING,
    READY,
    InstallProgress,
    TrainerEnvironment,
    cuda_major,
    parse_requirements,
    torch_index_for,
)
from lib_lora.train.install_support import (
    EXTERNAL,
    FAILED,
    INITIALIZED,
    OK,
    PINNED_COMMIT,
    SUBMODULE_PATH,
    SUBMODULE_URL,
    UPDATED,
    ensure_sd_scripts,
    find_sd_scripts,
    install_step,
    recorded_commit,
    resolve_sd_scripts,
    submodule_state,
)


def build_wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A minimal valid pure-Python wheel (what `pip wheel` would write for a tiny package)."""
    dist = f"{name}-{version}"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    entries = dict(files)
    entries[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    entries[f"{dist}.dist-info/WHEEL"] = "Wheel-Version: 1.0\nGenerator: lora-studio-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in entries.items():
            data = text.encode()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        zf.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    build_wheel(folder, "torch", "2.6.0", {"torch/__init__.py": "", "torch/version.py": "__version__ = '2.6.0'\ncuda: Optional[str] = '12.6'\n"})
    build_wheel(folder, "torchvision", "0.21.0", {"torchvision/__init__.py": ""})
    build_wheel(folder, "lsts_tinypkg", "1.0", {"lsts_tinypkg/__init__.py": "VALUE = 42\n"})
    return folder


@pytest.fixture
def sd_scripts(tmp_path: Path) -> Path:
    d = tmp_path / "sd-scripts"
    d.mkdir()
    (d / "requirements.txt").write_text("# pinned like sd-scripts pins its own\nlsts_tinypkg==1.0\n")
    (d / "train_network.py").write_text("")
    return d


def test_create_offline_from_a_wheel_folder(tmp_path, wheels, sd_scripts):
    env = TrainerEnvironment(tmp_path / "data", sd_scripts, isolated_pip=True)
    assert env.status().state == MISSING
    seen: list[InstallProgress] = []
    status = env.create(seen.append, wheel_dir=wheels, cuda="12.1", use_host_pip=True)

    assert status.state == READY, status.message
    assert status.versions["torch"] == "2.6.0" and status.versions["lsts-tinypkg"] == "1.0"
    assert status.torch_cuda == "12.6"
    assert Path(status.python or "").is_relative_to(tmp_path / "data" / "trainer-venv")
    assert [p.stage for p in seen][0] == "venv" and {"torch", "requirements", "check"} <= {p.stage for p in seen}
    assert any("lsts_tinypkg" in p.line or "lsts-tinypkg" in p.line for p in seen if p.stage == "requirements")
    assert env.status().state == READY
    assert env.accelerate_command()[:3] == [str(env.python), "-m", "accelerate.commands.launch"]

    # never installed into the interpreter running LoRA Studio
    assert importlib.util.find_spec("lsts_tinypkg") is None
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("lsts_tinypkg")

    # sd-scripts moved its pins: the environment is no longer complete
    (sd_scripts / "requirements.txt").write_text("lsts_tinypkg==2.0\n")
    status = env.status()
    assert status.state == INCOMPLETE
    assert any("lsts-tinypkg 1.0 is installed, sd-scripts needs lsts-tinypkg==2.0" in p for p in status.problems)
    assert any("requirements changed" in p for p in status.problems)


def test_missing_wheel_gives_a_clear_offline_message(tmp_path, wheels, sd_scripts):
    (wheels / "torch-2.6.0-py3-none-any.whl").unlink()  # the folder lacks the torch wheel
    env = TrainerEnvironment(tmp_path / "data", sd_scripts, isolated_pip=True)
    with pytest.raises(TrainerEnvironmentError, match=r"wheel folder .* has no wheel for torch>=2.6"):
        env.create(wheel_dir=wheels, use_host_pip=True)
    status = env.status()
    assert status.state == INCOMPLETE and "the installation did not finish" in status.problems
    assert "torch is not installed" in status.problems


def test_no_network_message_documents_the_offline_path(tmp_path, wheels, sd_scripts):
    env = TrainerEnvironment(tmp_path / "data", sd_scripts, isolated_pip=True)
    with pytest.raises(TrainerEnvironmentError) as err:
        env.create(torch_index="http://127.0.0.1:9/simple", use_host_pip=True,
                   extra_pip_args=["--retries", "0", "--timeout", "2"])
    assert "could not be downloaded" in str(err.value) and "--no-index --find-links" in str(err.value)


def test_refuses_the_running_interpreters_environment(tmp_path, sd_scripts):
    env = TrainerEnvironment(tmp_path / "data", sd_scripts, venv_dir=sys.prefix, isolated_pip=True)
    with pytest.raises(TrainerEnvironmentError, match="running Python's own environment"):
        env.create(wheel_dir=tmp_path)


def test_missing_sd_scripts(tmp_path):
    env = TrainerEnvironment(tmp_path / "data", tmp_path / "nowhere", isolated_pip=True)
    with pytest.raises(TrainerEnvironmentError, match="sd-scripts is not installed"):
        env.create()


def test_torch_index_follows_the_webui_cuda_major():
    assert cuda_major("12.1") == 12 and cuda_major("11.8") == 11 and cuda_major(None) is None and cuda_major("") is None
    assert torch_index_for(12) == ("https://download.pytorch.org/whl/cu126", "torch>=2.6")
    assert torch_index_for(11) == ("https://download.pytorch.org/whl/cu118", "torch>=2.6,<2.8")
    assert torch_index_for(13) == ("https://download.pytorch.org/whl/cu130", "torch>=2.9")
    assert torch_index_for(None, platform="linux") == ("https://download.pytorch.org/whl/cpu", "torch>=2.6")
    assert torch_index_for(None, platform="darwin") == (None, "torch>=2.6")
    with pytest.raises(TrainerEnvironmentError):
        torch_index_for(10)


def test_parse_requirements_like_sd_scripts():
    text = "accelerate==1.6.0\ndiffusers[torch]==0.32.1\n# albumentations==1.3.0\nbitsandbytes\n" \
           "huggingface-hub==0.34.3\nrich==14.1.0 # logs\n-e .\n"
    reqs = {r.name: r.spec for r in parse_requirements(text)}
    assert reqs == {"accelerate": "==1.6.0", "diffusers": "==0.32.1", "bitsandbytes": "",
                    "huggingface-hub": "==0.34.3", "rich": "==14.1.0"}


@pytest.mark.slow
def test_create_with_the_venvs_own_pip(tmp_path, wheels, sd_scripts):
    """The default path: `python -m venv` with pip bootstrapped into it (ensurepip)."""
    env = TrainerEnvironment(tmp_path / "data", sd_scripts, isolated_pip=True)
    status = env.create(wheel_dir=wheels)
    assert status.state == READY, status.message
    assert (Path(env.venv_dir) / "bin" / "pip").exists() or (Path(env.venv_dir) / "Scripts" / "pip.exe").exists()


# ------------------------------------------------------------------------ sd-scripts submodule

REPO = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def git_env(monkeypatch):
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
                       # submodules from a local path are "file" transport, off by default since git 2.38
                       "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.file.allow",
                       "GIT_CONFIG_VALUE_0": "always", "GIT_TERMINAL_PROMPT": "0"}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def fake_upstream(tmp_path, git_env) -> tuple[Path, str, str]:
    """A local stand-in for kohya-ss/sd-scripts with two commits."""
    up = tmp_path / "upstream-sd-scripts"
    up.mkdir()
    git(up, "init", "-q", "-b", "main")
    (up / "train_network.py").write_text("# v1\n")
    (up / "requirements.txt").write_text("toml==0.10.2\n")
    git(up, "add", "-A")
    git(up, "commit", "-q", "-m", "one")
    first = git(up, "rev-parse", "HEAD")
    (up / "train_network.py").write_text("# v2\n")
    git(up, "commit", "-q", "-am", "two")
    return up, first, git(up, "rev-parse", "HEAD")


def make_extension(tmp_path: Path, url: str, commit: str) -> Path:
    """An extension repo that records the submodule exactly as LoRA Studio does (no network)."""
    ext = tmp_path / "ext-origin"
    ext.mkdir()
    git(ext, "init", "-q", "-b", "main")
    (ext / ".gitmodules").write_text(f'[submodule "{SUBMODULE_PATH}"]\n\tpath = {SUBMODULE_PATH}\n\turl = {url}\n')
    git(ext, "add", ".gitmodules")
    git(ext, "update-index", "--add", "--cacheinfo", f"160000,{commit},{SUBMODULE_PATH}")
    git(ext, "commit", "-q", "-m", "pin sd-scripts")
    clone = tmp_path / "ext"
    subprocess.run(["git", "clone", "-q", str(ext), str(clone)], check=True)  # a user's clean clone
    return clone


def test_this_repository_pins_sd_scripts():
    assert recorded_commit(REPO) == PINNED_COMMIT == "48d368fa557731ad0488c07304dfeba8c07910eb"
    gitmodules = (REPO / ".gitmodules").read_text()
    assert f"path = {SUBMODULE_PATH}" in gitmodules and f"url = {SUBMODULE_URL}" in gitmodules


def test_empty_submodule_is_initialised(tmp_path, fake_upstream):
    up, first, _second = fake_upstream
    ext = make_extension(tmp_path, up.as_uri(), first)
    assert (ext / SUBMODULE_PATH).is_dir() and not any((ext / SUBMODULE_PATH).iterdir())
    assert submodule_state(ext)[0] == "-"
    status = ensure_sd_scripts(ext)
    assert status.state == INITIALIZED and status.usable, status.message
    assert status.commit == first == status.expected
    assert (ext / SUBMODULE_PATH / "train_network.py").read_text() == "# v1\n"
    assert ensure_sd_scripts(ext).state == OK  # nothing to do the second time
    assert resolve_sd_scripts(ext) == ext / SUBMODULE_PATH


def test_checkout_at_another_commit_is_moved_back(tmp_path, fake_upstream):
    up, first, second = fake_upstream
    ext = make_extension(tmp_path, up.as_uri(), first)
    ensure_sd_scripts(ext)
    git(ext / SUBMODULE_PATH, "checkout", "-q", second)
    assert submodule_state(ext) == ("+", second)
    status = ensure_sd_scripts(ext)
    assert status.state == UPDATED and status.commit == first, status.message
    assert (ext / SUBMODULE_PATH / "train_network.py").read_text() == "# v1\n"


def test_fetch_failure_is_a_clear_message_not_an_exception(tmp_path, git_env):
    ext = make_extension(tmp_path, (tmp_path / "no-such-repo").as_uri(), "1" * 40)
    lines: list[str] = []
    status = install_step(ext, echo=lines.append)
    assert status.state == FAILED and not status.usable
    assert "Could not download kohya sd-scripts" in status.message
    assert "git submodule update --init --recursive vendor/sd-scripts" in status.message
    assert "'sd-scripts folder' setting" in status.message
    assert lines == [f"[LoRA Studio] {status.message}"]


def test_not_a_git_checkout(tmp_path):
    ext = tmp_path / "zip-install"
    (ext / SUBMODULE_PATH).mkdir(parents=True)
    status = ensure_sd_scripts(ext)
    assert status.state == FAILED and "not a git checkout" in status.message
    (ext / SUBMODULE_PATH / "train_network.py").write_text("")
    assert ensure_sd_scripts(ext).state == OK


def test_git_runs_through_the_given_runner_as_argument_lists(tmp_path):
    calls: list[list[str]] = []

    def runner(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 128, "", "fatal: not a git repository")

    ensure_sd_scripts(tmp_path, runner)
    assert calls and all(isinstance(c, list) and c[0] == "git" for c in calls)


def test_find_sd_scripts_accepts_sd_scripts_and_kohya_ss(tmp_path):
    sd = tmp_path / "sd-scripts-checkout"
    sd.mkdir()
    (sd / "train_network.py").write_text("")
    kohya = tmp_path / "kohya_ss"
    (kohya / "sd-scripts").mkdir(parents=True)
    (kohya / "sd-scripts" / "train_network.py").write_text("")
    assert find_sd_scripts(sd) == sd
    assert find_sd_scripts(kohya) == kohya / "sd-scripts"
    with pytest.raises(TrainerEnvironmentError, match="not an sd-scripts folder"):
        find_sd_scripts(tmp_path)
    with pytest.raises(TrainerEnvironmentError, match="not a folder"):
        find_sd_scripts(tmp_path / "missing")
    status = ensure_sd_scripts(tmp_path / "ext", external=kohya)
    assert status.state == EXTERNAL and status.path == str(kohya / "sd-scripts")
    assert resolve_sd_scripts(tmp_path / "ext", str(kohya)) == kohya / "sd-scripts"
    with pytest.raises(TrainerEnvironmentError, match="sd-scripts is not installed"):
        resolve_sd_scripts(tmp_path / "ext")
