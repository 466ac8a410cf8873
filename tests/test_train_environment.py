"""The trainer venv: created with real subprocesses (venv, pip) from a folder of small wheels built
here — offline, fast, and never touching the interpreter running the tests."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
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
