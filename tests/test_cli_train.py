"""``python -m lib_lora train``: dry runs that print the report, command and TOML without touching
anything, refusals with clear messages, and real runs through the job queue with a stand-in trainer
that replays a real kohya log (tests/replay_trainer.py)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib_lora.cli import main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from factory import make_checkpoint, make_images  # noqa: E402


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def setup(tmp_path):
    data = make_images(tmp_path / "my pics ü")
    ckpt = tmp_path / "base model.safetensors"
    ckpt.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    return data, ckpt


def run_cli(*args: str) -> int:
    return main(["train", *args])


def test_dry_run_prints_everything_and_starts_nothing(setup, tmp_path, capsys):
    data, ckpt = setup
    before = tree(data)
    out_dir = tmp_path / "out"
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--output", str(out_dir),
                 "--sd-scripts", str(tmp_path / "sd-scripts"), "--dry-run")  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "Dataset:" in out and "16 images" in out and "flat folder" in out
    assert "Plan: default/sd15/character" in out
    assert "Command (not started):" in out
    command_line = next(line for line in out.splitlines() if "accelerate.commands.launch" in line)
    argv = shlex.split(command_line)
    assert argv[argv.index("--pretrained_model_name_or_path") + 1] == str(ckpt)
    assert str(tmp_path / "sd-scripts" / "train_network.py") in argv
    assert "--dataset_config" in argv and "--train_data_dir" not in argv
    assert "[general]" in out and "[[datasets.subsets]]" in out and 'class_tokens = "zed"' in out
    assert "--n " in out and "--w 512" in out  # sample prompts
    assert "PYTHONUNBUFFERED=1" in out
    assert "Coverage: 16 distinct images" in out and "Angles:" in out  # the dataset coverage report
    assert tree(data) == before
    assert not out_dir.exists()


def test_dry_run_for_sdxl_pony_fast_with_gpus(setup, tmp_path, capsys):
    data, ckpt = setup
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sdxl", "--family", "pony",
                 "--preset", "fast", "--free-vram-gb", "80", "--gpus", "0,1", "--kind", "style",
                 "--output", str(tmp_path / "o"), "--dry-run")  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    argv = shlex.split(next(line for line in out.splitlines() if "accelerate.commands.launch" in line))
    assert argv[argv.index("--num_processes") + 1] == "2" and "--multi_gpu" in argv
    script_at = next(i for i, a in enumerate(argv) if a.endswith("sdxl_train_network.py"))
    launcher_args, script_args = argv[:script_at], argv[script_at + 1 :]
    assert launcher_args[launcher_args.index("--dynamo_backend") + 1] == "no"  # the script compiles, not accelerate
    assert script_args[script_args.index("--dynamo_backend") + 1] == "cudagraphs"
    assert "--cache_text_encoder_outputs" in script_args and "--network_train_unet_only" in script_args
    assert "score_9, score_8_up" in out
    assert "fast/pony/style" in out


def test_overrides_and_refusals(setup, tmp_path, capsys):
    data, ckpt = setup
    common = [str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--dry-run"]
    assert run_cli(*common, "--steps", "500", "--lr", "2e-4", "--dim", "16", "--alpha", "8", "--seed", "3") == 0
    out = capsys.readouterr().out
    assert "--max_train_steps 500" in out and "--learning_rate 0.0002" in out and "--network_dim 16" in out
    for extra, message in [
        (["--steps", "0"], "steps 0"),
        (["--steps", "many"], "--steps must be"),
        (["--lr", "1"], "learning rate 1"),
        (["--resolution", "500"], "multiple of 64"),
        (["--gpus", "0,a"], "--gpus must be"),
        (["--extra-args", "--train_data_dir /x"], "cannot be added"),
        (["--extra-args", "--noise_offset 'unclosed"], "cannot be split"),
    ]:
        assert run_cli(*common, *extra) == 1, extra
        err = capsys.readouterr().err
        assert message in err, (extra, err)
    assert run_cli(*common[:-1], "--trigger", "a, b", "--dry-run") == 1
    assert "comma" in capsys.readouterr().err


def test_architecture_comes_from_the_checkpoint_header(setup, tmp_path, capsys):
    data, _ = setup
    ckpt = make_checkpoint(tmp_path, "sd15 base", "ckpt-sd1")
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--dry-run", "--output", str(tmp_path / "o"))
    captured = capsys.readouterr()
    from lib_lora.architecture import detect_checkpoint
    from lib_lora.safetensors_header import read_header

    try:
        detected = detect_checkpoint(read_header(ckpt)).architecture
    except NotImplementedError:
        assert rc == 1 and "pass --arch" in captured.err
        return
    assert detected == "sd1"
    assert rc == 0 and "train_network.py" in captured.out


def test_unreadable_checkpoints_need_arch(setup, tmp_path, capsys):
    data, _ = setup
    ckpt = tmp_path / "old.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 pickled")
    assert run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--dry-run") == 1
    assert "--arch" in capsys.readouterr().err
    assert run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--dry-run") == 0
    assert run_cli(str(data), "--base", str(tmp_path / "none.safetensors"), "--trigger", "zed", "--dry-run") == 1
    assert "not found" in capsys.readouterr().err


def test_write_missing_captions(tmp_path, capsys):
    data = make_images(tmp_path / "d", 16, caption=None)
    (data / "00.txt").write_text("zed, mine", encoding="utf-8")
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"x")
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--dry-run",
                 "--write-missing-captions", "--caption-template", "{trigger}, solo")  # fmt: skip
    assert rc == 0
    assert "wrote 15 missing caption file(s)" in capsys.readouterr().out
    assert (data / "00.txt").read_text(encoding="utf-8") == "zed, mine"
    assert (data / "01.txt").read_text(encoding="utf-8") == "zed, solo\n"


def test_dataset_errors_stop_before_planning(tmp_path, capsys):
    data = make_images(tmp_path / "d", 16)
    (data / "03.txt").write_bytes(b"")
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"x")
    assert run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--dry-run") == 1
    captured = capsys.readouterr()
    assert "[error] 03.txt is an empty file" in captured.out  # the report is still shown
    assert "caption file is empty" in captured.err


def test_start_without_sd_scripts_is_refused(setup, tmp_path, capsys):
    data, ckpt = setup
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1",
                 "--sd-scripts", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"))  # fmt: skip
    assert rc == 1
    assert "sd-scripts not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- real runs through the queue with a stand-in trainer ---------------------------------------------------------------


def stand_in_trainer(tmp_path: Path, *options: str) -> tuple[Path, Path]:
    """An sd-scripts folder and a 'trainer python' that runs replay_trainer.py with the real argv."""
    sd = tmp_path / "sd scripts"
    sd.mkdir()
    (sd / "train_network.py").write_text("# stand-in\n")
    py = tmp_path / "trainer-python"
    replay = REPO / "tests" / "replay_trainer.py"
    py.write_text(
        "#!/bin/sh\nexec " + shlex.join([sys.executable, str(replay), "--log", "sd15-ok", *options]) + ' "$@"\n'
    )
    py.chmod(py.stat().st_mode | stat.S_IXUSR)
    return sd, py


pytestmark_posix = pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")


@pytestmark_posix
def test_real_run_through_the_queue(setup, tmp_path, capsys):
    data, ckpt = setup
    argv_file = tmp_path / "argv.json"
    sd, py = stand_in_trainer(tmp_path, "--duration", "0.5", "--argv-file", str(argv_file))
    out_dir = tmp_path / "out"
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--steps", "4",
                 "--output", str(out_dir), "--sd-scripts", str(sd), "--trainer-python", str(py),
                 "--data-dir", str(tmp_path / "studio"), "--quiet")  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"done: {out_dir / 'zed.safetensors'}" in out
    assert (out_dir / "zed.safetensors").is_file()
    argv = json.loads(argv_file.read_text())
    assert "--dataset_config" in argv and argv[argv.index("--output_name") + 1] == "zed"
    toml_path = Path(argv[argv.index("--dataset_config") + 1])
    assert toml_path.is_file() and toml_path.parent == out_dir / "_training"
    jobs = list((tmp_path / "studio" / "jobs").iterdir())
    assert len(jobs) == 1  # the run is in the same job history as the WebUI tab's
    # a second run refuses to replace the result without --overwrite
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--steps", "4",
                 "--output", str(out_dir), "--sd-scripts", str(sd), "--trainer-python", str(py),
                 "--data-dir", str(tmp_path / "studio"))  # fmt: skip
    assert rc == 1 and "--overwrite" in capsys.readouterr().err


@pytestmark_posix
def test_lora_dir_puts_the_result_into_the_lora_folder(setup, tmp_path, capsys):
    from lib_lora.library import Library
    from lib_lora.sidecars import read_user_metadata

    data, ckpt = setup
    sd, py = stand_in_trainer(tmp_path, "--duration", "0.3")
    loras = tmp_path / "Lora"
    loras.mkdir()
    (loras / "zed").mkdir()
    (loras / "zed" / "zed.safetensors").write_bytes(b"someone else's file")  # never replaced
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--steps", "4",
                 "--output", str(tmp_path / "out"), "--sd-scripts", str(sd), "--trainer-python", str(py),
                 "--data-dir", str(tmp_path / "studio"), "--lora-dir", str(loras), "--quiet")  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    installed = loras / "zed" / "zed-2.safetensors"
    assert f"installed: {installed}" in out
    assert (loras / "zed" / "zed.safetensors").read_bytes() == b"someone else's file"
    meta = read_user_metadata(installed)
    assert meta is not None and meta.activation_text == "zed" and meta.sd_version == "SD1"
    lib = Library([loras], tmp_path / "idx.sqlite3")
    lib.scan()
    assert lib.lookup("zed-2").status == "found"
    assert run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--lora-dir",
                   str(tmp_path / "nope"), "--sd-scripts", str(sd), "--trainer-python", str(py),
                   "--output", str(tmp_path / "out2"), "--data-dir", str(tmp_path / "studio"), "--quiet") == 1
    assert "is not a folder" in capsys.readouterr().err


@pytestmark_posix
def test_failed_run_exits_1_with_advice(setup, tmp_path, capsys):
    data, ckpt = setup
    sd, py = stand_in_trainer(tmp_path, "--duration", "0.2", "--exit-code", "1", "--no-output")
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--steps", "4",
                 "--output", str(tmp_path / "o"), "--sd-scripts", str(sd), "--trainer-python", str(py),
                 "--data-dir", str(tmp_path / "studio"), "--quiet")  # fmt: skip
    assert rc == 1
    assert "training failed" in capsys.readouterr().err


@pytestmark_posix
def test_ctrl_c_cancels_the_whole_trainer(setup, tmp_path):
    data, ckpt = setup
    sd, py = stand_in_trainer(tmp_path, "--duration", "30", "--hang-at-step", "2")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lib_lora", "train", str(data), "--base", str(ckpt), "--trigger", "zed", "--arch",
         "sd1", "--steps", "4", "--output", str(tmp_path / "o"), "--sd-scripts", str(sd), "--trainer-python",
         str(py), "--data-dir", str(tmp_path / "studio"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path),
        # a terminal's Ctrl-C: when the suite itself runs in the background of a non-interactive shell, it
        # inherits SIGINT ignored, and an ignored SIGINT is inherited (and honoured) by the CLI
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        job_json = None
        while time.monotonic() < deadline:
            found = list((tmp_path / "studio" / "jobs").glob("*/job.json")) if (tmp_path / "studio" / "jobs").exists() else []
            if found and json.loads(found[0].read_text(encoding="utf-8"))["status"].get("pid"):
                job_json = found[0]
                break
            time.sleep(0.2)
        assert job_json is not None, "the job never started"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "cancelling" in err
    status = json.loads(job_json.read_text(encoding="utf-8"))["status"]
    assert status["state"] == "cancelled"
    pgid = status.get("pgid")
    if pgid:
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)


def test_missing_trainer_environment_is_refused(setup, tmp_path, capsys, monkeypatch):
    data, ckpt = setup
    monkeypatch.delenv("TRAINER_PYTHON", raising=False)
    sd = tmp_path / "sd"
    sd.mkdir()
    (sd / "train_network.py").write_text("# stand-in\n")
    studio = tmp_path / "studio data"
    rc = run_cli(str(data), "--base", str(ckpt), "--trigger", "zed", "--arch", "sd1", "--sd-scripts", str(sd),
                 "--data-dir", str(studio), "--output", str(tmp_path / "o"))  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    assert "trainer environment is missing" in err and str(studio / "trainer-venv") in err
