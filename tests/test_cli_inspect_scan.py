from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib_lora import architecture
from lib_lora.cli import main
from lib_lora.commands.demo import DEMO_LORAS, MARKER, write_demo_library
from lib_lora.safetensors_header import read_header, write_file

REPO = Path(__file__).resolve().parents[1]
SD15 = "sd15-kohya-dim4-mychar.safetensors"
SDXL = "sdxl-kohya-unetonly.safetensors"
TINY = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", (4, 320)),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", (320, 4))}


def detector_ready(fixtures_dir: Path) -> bool:
    try:
        architecture.detect(read_header(fixtures_dir / "kohya-outputs" / SD15))
    except NotImplementedError:
        return False
    return True


@pytest.fixture
def loras(tmp_path: Path, fixtures_dir: Path) -> Path:
    r = tmp_path / "loras"
    (r / "chars").mkdir(parents=True)
    (r / "old").mkdir()
    shutil.copyfile(fixtures_dir / "kohya-outputs" / SD15, r / "chars" / SD15)
    shutil.copyfile(fixtures_dir / "kohya-outputs" / SDXL, r / "chars" / SDXL)
    shutil.copyfile(fixtures_dir / "sidecars" / "alice.json", r / "chars" / "sd15-kohya-dim4-mychar.json")
    write_file(r / "old" / "sd15-kohya-dim4-mychar.safetensors", TINY, {}, sparse=True)  # duplicate stem
    (r / "broken.safetensors").write_bytes(b"\x09\x00\x00\x00\x00\x00\x00\x00{not json")
    return r


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- inspect -----------------------------------------------------------------------------------


def test_inspect_real_kohya_outputs(capsys: pytest.CaptureFixture[str], fixtures_dir: Path) -> None:
    files = [str(fixtures_dir / "kohya-outputs" / n) for n in (SD15, SDXL)]
    code, out, err = run_cli(capsys, "inspect", *files)
    assert code == 0 and err == ""
    assert out.count("kohya-outputs/") == 2
    assert "792 tensors" in out and "2166 tensors" in out
    assert "mychar" in out and "modelspec.trigger_phrase" in out
    assert "trained on: sd15_random.safetensors" in out and "2 images" in out
    assert "Lora hash 9c4a1e666816" in out  # from sshs_model_hash
    if detector_ready(fixtures_dir):
        assert "sd1" in out and "sdxl" in out and "evidence" in out


def test_inspect_json_and_hash(capsys: pytest.CaptureFixture[str], fixtures_dir: Path) -> None:
    path = str(fixtures_dir / "kohya-outputs" / SD15)
    code, out, _ = run_cli(capsys, "inspect", "--json", "--hash", path)
    assert code == 0
    (doc,) = json.loads(out)
    assert doc["path"] == path and doc["alias"] == "mylora" and doc["tensors"] == 792
    assert doc["hashes"]["autov2"] == "336be815cb" and doc["hashes"]["lora_hash"] == "9c4a1e666816"
    assert doc["summary"]["steps"] == 4 and "metadata" not in doc
    assert [t["source"] for t in doc["trigger_words"]][:1] == ["modelspec"]
    code, out, _ = run_cli(capsys, "inspect", "--json", "--metadata", path)
    assert json.loads(out)[0]["metadata"]["ss_output_name"] == "mylora"


def test_inspect_reports_each_bad_file_and_goes_on(capsys: pytest.CaptureFixture[str], loras: Path, tmp_path: Path) -> None:
    bomb = tmp_path / "evil.pt"
    marker = tmp_path / "pwned"
    bomb.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    good = loras / "chars" / SD15
    code, out, err = run_cli(capsys, "inspect", str(loras / "broken.safetensors"), str(tmp_path / "missing.safetensors"),
                             str(bomb), str(loras), str(good))
    assert code == 1
    assert "header is not valid JSON" in out and "no such file" in out and "is a folder" in out
    assert "legacy pickle file" in out and "never unpickled" in out and not marker.exists()
    assert "zk_alice, red coat" in out  # the good file after the bad ones, with its sidecar's words
    assert err.count("error:") == 3


def test_inspect_a_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path, fixtures_dir: Path) -> None:
    from lib_lora import synth

    ckpt = tmp_path / "base.safetensors"
    synth.write_lora(ckpt, "ckpt-sd1", sparse=True)
    code, out, _ = run_cli(capsys, "inspect", "--json", str(ckpt))
    assert code == 0
    doc = json.loads(out)[0]
    if detector_ready(fixtures_dir):
        assert doc["detection"]["kind"] == "checkpoint" and doc["architecture"] == "sd1"


# --- scan --------------------------------------------------------------------------------------


def test_scan_table(capsys: pytest.CaptureFixture[str], loras: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx.sqlite3"
    code, out, err = run_cli(capsys, "scan", str(loras), "--index", str(index))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "BASE", "TYPE", "RANK/α", "TRIGGER"]
    row = next(line for line in lines if line.startswith("chars/sd15-kohya-dim4-mychar"))
    assert "zk_alice, red coat" in row and "name shared by 2 files" in row
    broken = next(line for line in lines if line.startswith("broken"))
    assert "unreadable" in broken and "not valid JSON" in broken
    assert "4 LoRAs in 1 folder" in out and "4 new" in out and "with problems" in out
    assert f"index: {index}" in out and index.is_file()
    # second run: nothing read again
    code, out, _ = run_cli(capsys, "scan", str(loras), "--index", str(index), "--json")
    doc = json.loads(out)
    assert doc["scan"]["unchanged"] == 3 and doc["scan"]["added"] == 0  # the broken file is re-read each time
    assert doc["scan"]["reads"] == 1
    assert sorted(doc["duplicates"]) == ["sd15-kohya-dim4-mychar"]
    names = [d["relpath"] for d in doc["loras"]]
    assert names == ["broken", "chars/sd15-kohya-dim4-mychar", "chars/sdxl-kohya-unetonly", "old/sd15-kohya-dim4-mychar"]
    alice = doc["loras"][1]
    assert alice["sidecars"]["user"]["activation_text"] == "zk_alice, red coat"
    assert "name shared by 2 files" in alice["problems"]


def test_scan_with_checkpoint(capsys: pytest.CaptureFixture[str], loras: Path, tmp_path: Path, fixtures_dir: Path) -> None:
    ckpt = fixtures_dir / "kohya-outputs" / SDXL  # any safetensors header will do for the plumbing
    code, out, _ = run_cli(capsys, "scan", str(loras), "--index", str(tmp_path / "i.db"), "--checkpoint", str(ckpt), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["checkpoint"]["path"] == str(ckpt)
    assert all("compat" in d and d["compat"]["level"] for d in doc["loras"])
    code, out, _ = run_cli(capsys, "scan", str(loras), "--index", str(tmp_path / "i.db"), "--checkpoint", str(ckpt))
    assert "COMPAT" in out.splitlines()[0] and "checkpoint sdxl-kohya-unetonly.safetensors:" in out


def test_scan_refuses_a_pickle_checkpoint_and_a_missing_one(capsys: pytest.CaptureFixture[str], loras: Path, tmp_path: Path) -> None:
    pt = tmp_path / "model.ckpt"
    pt.write_bytes(b"not opened")
    code, _out, err = run_cli(capsys, "scan", str(loras), "--index", str(tmp_path / "i.db"), "--checkpoint", str(pt))
    assert code == 1 and "never opens" in err
    code, _out, err = run_cli(capsys, "scan", str(loras), "--checkpoint", str(tmp_path / "nope.safetensors"))
    assert code == 1 and "checkpoint not found" in err


def test_scan_missing_folder_is_an_error_but_others_are_listed(capsys: pytest.CaptureFixture[str], loras: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "scan", str(loras), str(tmp_path / "gone"), "--index", str(tmp_path / "i.db"))
    assert code == 1 and "LoRA folder not found" in err and "chars/sdxl-kohya-unetonly" in out


def test_scan_hash(capsys: pytest.CaptureFixture[str], loras: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "scan", str(loras), "--index", str(tmp_path / "i.db"), "--hash", "--json")
    doc = json.loads(out)
    sd15 = next(d for d in doc["loras"] if d["relpath"] == "chars/sd15-kohya-dim4-mychar")
    assert sd15["hashes"]["autov2"] == "336be815cb"


def test_scan_uses_the_user_data_index_by_default(capsys: pytest.CaptureFixture[str], loras: Path, user_data: Path) -> None:
    code, out, _ = run_cli(capsys, "scan", str(loras))
    assert code == 0 and (user_data / "library-index.sqlite3").is_file()


def test_command_modules_import_light() -> None:
    """`scan` on a warm index must start fast: the command modules import nothing heavy up front."""
    code = (
        "import sys, lib_lora.cli, lib_lora.commands.scan, lib_lora.commands.inspect, lib_lora.commands.demo\n"
        "heavy = [m for m in ('lib_lora.library', 'sqlite3', 'lib_lora.architecture', 'PIL', 'numpy', 'lib_lora.synth')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_scan_as_a_subprocess(loras: Path, tmp_path: Path) -> None:
    env = {**os.environ, "LORA_STUDIO_DATA": str(tmp_path / "data")}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "lib_lora", "scan", str(loras)], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "chars/sdxl-kohya-unetonly" in proc.stdout
    assert "0 new" in proc.stdout and "3 unchanged" in proc.stdout


# --- demo --------------------------------------------------------------------------------------


def test_demo_library(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "demo"
    code, out, _ = run_cli(capsys, "demo", str(target), "--no-checkpoints")
    assert code == 0
    loras = Path(out.strip())
    assert loras == target.resolve() / "loras"
    assert (target / "README.txt").read_text().startswith(MARKER) and "DEMO" in (loras / "README.txt").read_text()
    files = sorted(p for p in loras.rglob("*") if p.suffix in (".safetensors", ".pt"))
    assert len(files) == len(DEMO_LORAS) + 1 and all(p.name.startswith("DEMO-") for p in files)
    assert (loras / "characters" / "DEMO-alice-sd15.json").is_file()
    assert json.loads((loras / "characters" / "DEMO-alice-sd15.json").read_text())["activation text"] == "zk_alice, red coat"
    assert any(p.suffix == ".png" for p in loras.rglob("*"))
    # sparse: the files hardly use disk
    if os.name == "posix":
        used = sum(p.stat().st_blocks * 512 for p in loras.rglob("*") if p.is_file())
        assert used < 20_000_000
    # a rerun is fine; the library scans
    assert run_cli(capsys, "demo", str(target), "--no-checkpoints")[0] == 0
    code, out, _ = run_cli(capsys, "scan", str(loras), "--index", str(tmp_path / "i.db"), "--json")
    doc = json.loads(out)
    assert len(doc["loras"]) == len(DEMO_LORAS) + 1
    assert "DEMO-alice-sd15" in doc["duplicates"]
    kotori = next(d for d in doc["loras"] if d["name"] == "DEMO-kotori-noobai")
    assert kotori["sidecars"]["civitai"]["base_model"] == "NoobAI" and kotori["license"].startswith("Commercial")
    assert kotori["trigger_words"][0]["source"] == "civitai"
    # one character in the character-library layout, found where the Characters view looks by default
    code, out, _ = run_cli(capsys, "characters", "--root", str(loras / "characters"), "--json")
    [hero] = json.loads(out)["characters"]
    assert code == 0 and hero["name"] == "DEMO-hero" and hero["trigger"] == ["zk_hero"]


def test_demo_refuses_someone_elses_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("x")
    code, _out, err = run_cli(capsys, "demo", str(tmp_path / "mine"))
    assert code == 1 and "not empty" in err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["precious.txt"]


@pytest.mark.skipif(os.name != "posix", reason="demo checkpoints are written only where sparse files are free")
def test_demo_checkpoints_for_scan(tmp_path: Path, fixtures_dir: Path) -> None:
    loras = write_demo_library(tmp_path / "d")
    ckpt = loras.parent / "checkpoints" / "DEMO-sdxl-checkpoint.safetensors"
    assert ckpt.is_file() and ckpt.stat().st_blocks * 512 < 5_000_000
    if detector_ready(fixtures_dir):
        det = architecture.detect(read_header(ckpt))
        assert det.kind == "checkpoint" and det.architecture == "sdxl"


def test_scan_names_links_outside_the_folders_and_followed_linked_folders(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    r = tmp_path / "loras"
    r.mkdir()
    target = tmp_path / "downloads" / "stray.safetensors"
    target.parent.mkdir()
    write_file(target, TINY, {}, sparse=True)
    (r / "stray.safetensors").symlink_to(target)
    drive = tmp_path / "drive"
    drive.mkdir()
    write_file(drive / "packed.safetensors", TINY, {}, sparse=True)
    (r / "drive").symlink_to(drive, target_is_directory=True)
    code, out, err = run_cli(capsys, "scan", str(r), "--index", str(tmp_path / "i.db"))
    assert code == 0, err
    stray = next(line for line in out.splitlines() if line.startswith("stray"))
    assert f"links outside the LoRA folders → {target}" in stray
    assert "packed" in out and out.count("links outside") == 1
    assert [line for line in out.splitlines() if line.startswith("info:")] == [
        f"info: followed the linked folder {r / 'drive'} → {drive}"]
    code, out, _ = run_cli(capsys, "scan", str(r), "--index", str(tmp_path / "i.db"), "--json")
    doc = json.loads(out)
    assert doc["scan"]["linked_folders"] == [{"link": str(r / "drive"), "target": str(drive)}]
    (entry,) = [e for e in doc["loras"] if e["name"] == "stray"]
    assert entry["link_outside"] == str(target) and any("links outside" in p for p in entry["problems"])


# --- hostile text -------------------------------------------------------------------------------

HOSTILE_CHARS = "\x1b\x07\x00\x7f\x9b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _hostile_lora(folder: Path) -> tuple[Path, dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "evil\x1b[2Jname\u202etxt.safetensors"
    metadata = {
        "modelspec.trigger_phrase": "trig\u202egnp.exe\x07",
        "ss_output_name": "out\x1b]0;pwned\x07",
        "modelspec.title": "a\rb\u2066c\u2069\x9b31m",
        "k\x1b[31mey\u202d": "v\u200ealue\u200f\u202a\u202b\u202c\u2067\u2068\x00\x7f",
    }
    write_file(path, TINY, metadata, sparse=True)
    return path, metadata


def _assert_terminal_safe(text: str) -> None:
    raw = [f"U+{ord(c):04X}" for c in text if c in HOSTILE_CHARS or (ord(c) < 32 and c not in "\n")]
    assert raw == [], raw


def test_cli_prints_control_escape_and_bidi_characters_visibly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path, metadata = _hostile_lora(tmp_path / "loras")
    code, out, err = run_cli(capsys, "scan", str(tmp_path / "loras"), "--index", str(tmp_path / "i.db"))
    assert code == 0, err
    _assert_terminal_safe(out + err)
    assert "evil\\u001b[2Jname\\u202etxt" in out and "trig\\u202egnp.exe\\u0007" in out
    code, out, err = run_cli(capsys, "inspect", str(path))
    assert code == 0, err
    _assert_terminal_safe(out + err)
    assert "a\\u000db\\u2066c\\u2069\\u009b31m" in out and "trig\\u202egnp.exe\\u0007" in out
    # --json: the exact strings come back when the document is decoded
    for argv in (["inspect", "--json", "--metadata", str(path)],
                 ["scan", "--json", str(tmp_path / "loras"), "--index", str(tmp_path / "i.db")]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, err
        _assert_terminal_safe(out + err)
        doc = json.loads(out)
        entry = doc[0] if isinstance(doc, list) else doc["loras"][0]
        assert entry["path"] == str(path) and entry["alias"] == metadata["ss_output_name"]
        assert entry["trigger_words"][0]["words"] == ["trig\u202egnp.exe\x07"]
        if "metadata" in entry:
            assert entry["metadata"] == metadata
    # an error message naming the file is shown safely too
    bad = tmp_path / "loras" / "bad\u202e\x1b[1m.safetensors"
    bad.write_bytes(b"\x09\x00\x00\x00\x00\x00\x00\x00{not json")
    code, out, err = run_cli(capsys, "inspect", str(bad))
    assert code == 1
    _assert_terminal_safe(out + err)
    assert "bad\\u202e\\u001b[1m.safetensors" in err
