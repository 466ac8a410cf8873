"""Version reservations of character trainings (lib_lora.characters.reservation): reserve, hold, release,
stale reclaim; real OS processes racing for one character; a resumed job keeps its version; markers never
show as LoRAs or versions; a taken name at placement fails clearly and keeps the trained file."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from factory import make_lora, wait_for

from lib_lora.characters import CharacterError, next_version, scan_characters
from lib_lora.characters.reservation import (
    LOCK_NAME,
    hold,
    job_chain,
    marker_name,
    read_reservation,
    release,
    reserve,
    reserved_versions,
    stale_reason,
)
from lib_lora.cli import main
from lib_lora.errors import TrainingError
from lib_lora.host import StandaloneHost
from lib_lora.safetensors_header import read_header
from lib_lora.train.jobs import JobRecord
from lib_lora.train.placement import install_job, read_result
from lib_lora.train.runner import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobStatus

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_marker(lora: Path, name: str, n: int, **fields: object) -> Path:
    lora.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "version": n, "job": None, "jobs_dir": None, "pid": os.getpid(),
            "host": socket.gethostname(), "created": time.time(), "made_folder": False, **fields}
    path = lora / marker_name(name, n)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _write_job(jobs: Path, job_id: str, state: str, *, result: dict | None = None, resumed_from: str | None = None,
               **status: object) -> JobRecord:
    record = JobRecord(id=job_id, job_dir=str(jobs / job_id), created_at=time.time(), spec={},
                       status=JobStatus(state=state, **status),  # type: ignore[arg-type]
                       resumed_from=resumed_from)
    (jobs / job_id).mkdir(parents=True, exist_ok=True)
    (jobs / job_id / "job.json").write_text(json.dumps(record.to_dict()), encoding="utf-8")
    if result is not None:
        (jobs / job_id / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return record


# ------------------------------------------------------------------------------------- reserve, release


def test_reserve_counts_on_and_release_gives_back(tmp_path: Path) -> None:
    root = tmp_path / "characters"
    folder = root / "Zed"
    first = reserve(folder, "Zed")
    assert (first.version, first.job, first.pid, first.made_folder) == (1, None, os.getpid(), True)
    assert Path(first.path) == folder / "lora" / ".Zed_v1.reserved" and first.notes == ()
    assert read_reservation(first.path) == first.__class__(**{**first.__dict__, "notes": ()})
    second = reserve(folder, "Zed")
    assert second.version == 2 and not second.made_folder
    assert next_version(folder, "Zed") == 3 and next_version(folder, "zed") == 3  # reserved numbers are taken
    assert reserved_versions(folder / "lora", "zed") == [1, 2]
    assert reserve(folder, "Zed", at_least=7).version == 7
    (folder / "lora" / "Zed_v8.safetensors").write_bytes(b"x")
    assert reserve(folder, "Zed").version == 9

    assert not release(folder, "Zed", 1, ["some-job"])  # not its owner
    assert release(folder, "Zed", 1, [None])  # this process's, before a job had it
    assert not release(folder, "Zed", 1, [None])  # gone already
    assert reserved_versions(folder / "lora", "Zed") == [2, 7, 9]
    assert (root / LOCK_NAME).is_file()  # the lock lives in the root, beside (not in) the characters


def test_a_new_character_folder_made_for_a_reservation_goes_when_released(tmp_path: Path) -> None:
    root = tmp_path / "characters"
    res = reserve(root / "Fresh", "Fresh")
    assert scan_characters(root).find("fresh") is not None  # the folder is there while it trains
    assert release(root / "Fresh", "Fresh", res.version, [None])
    assert not (root / "Fresh").exists()
    # one that got files meanwhile stays
    res = reserve(root / "Kept", "Kept")
    (root / "Kept" / "lora" / "Kept_v1.safetensors").write_bytes(b"x")
    assert release(root / "Kept", "Kept", res.version, [None])
    assert (root / "Kept" / "lora" / "Kept_v1.safetensors").is_file()


def test_hold_gives_a_version_to_a_job_and_refuses_a_taken_one(tmp_path: Path) -> None:
    folder = tmp_path / "characters" / "Zed"
    jobs = tmp_path / "jobs"
    res = reserve(folder, "Zed")
    _write_job(jobs, "job-a", RUNNING)
    bound = hold(folder, "Zed", res.version, job="job-a", jobs_dir=str(jobs), owners=[None])
    assert bound is not None and read_reservation(res.path).job == "job-a"  # type: ignore[union-attr]
    assert not release(folder, "Zed", 1, [None])  # the job's now, not the process's
    with pytest.raises(CharacterError, match=r"Zed_v1 is reserved by job job-a"):
        hold(folder, "Zed", 1, job="job-b", jobs_dir=str(jobs), owners=[None], create=True)
    # a resumed job takes it over from the one it continues
    assert hold(folder, "Zed", 1, job="job-b", jobs_dir=str(jobs), owners=["job-a"]) is not None
    assert read_reservation(res.path).job == "job-b"  # type: ignore[union-attr]
    # nothing to take over: None, or reserved anew when asked (and refused when a file has the name)
    assert hold(folder, "Zed", 5, job="job-c", jobs_dir=str(jobs), owners=["job-x"]) is None
    assert hold(folder, "Zed", 5, job="job-c", jobs_dir=str(jobs), owners=[], create=True) is not None
    (folder / "lora" / "Zed_v6.json").write_text("{}")
    with pytest.raises(CharacterError, match=r"Zed_v6 is taken: .* holds Zed_v6.json"):
        hold(folder, "Zed", 6, job="job-d", jobs_dir=str(jobs), owners=[], create=True)
    assert release(folder, "Zed", 1, ["job-b"]) and release(folder, "Zed", 5, ["job-c"])
    assert reserved_versions(folder / "lora", "Zed") == []


def test_job_chain_follows_resumed_jobs(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    _write_job(jobs, "a", CANCELLED)
    _write_job(jobs, "b", FAILED, resumed_from="a")
    c = _write_job(jobs, "c", RUNNING, resumed_from="b")
    assert job_chain(c) == ["c", "b", "a"]


# ---------------------------------------------------------------------------------------- stale ones


def test_stale_reservations_are_reclaimed_with_an_info_message(tmp_path: Path, caplog) -> None:
    lora = tmp_path / "characters" / "Zed" / "lora"
    jobs = tmp_path / "jobs"
    here = socket.gethostname()
    _write_job(jobs, "queued", QUEUED)
    _write_job(jobs, "running", RUNNING)
    _write_job(jobs, "resumable", CANCELLED, last_save="/x/zed-step00000002.safetensors")
    _write_job(jobs, "failed", FAILED)
    _write_job(jobs, "installing", SUCCEEDED)
    _write_job(jobs, "installed", SUCCEEDED, result={"installed": {}})
    kept = {1: dict(pid=os.getpid()),  # this process, still starting its job
            2: dict(job="queued", jobs_dir=str(jobs)), 3: dict(job="running", jobs_dir=str(jobs)),
            4: dict(job="resumable", jobs_dir=str(jobs)), 5: dict(job="installing", jobs_dir=str(jobs)),
            6: dict(job="whatever", jobs_dir=str(jobs), host="another-machine"),  # cannot be judged here
            7: dict(pid=_dead_pid(), host="another-machine")}
    gone = {8: (dict(pid=_dead_pid()), "that reserved it has ended without starting its job"),
            9: (dict(job="deleted", jobs_dir=str(jobs)), "its job deleted is no longer in"),
            10: (dict(job="failed", jobs_dir=str(jobs)), "its job failed failed and cannot be resumed"),
            11: (dict(job="installed", jobs_dir=str(jobs)), "its job installed has finished and its result was handled")}
    for n, fields in kept.items():
        _write_marker(lora, "Zed", n, **fields)
    for n, (fields, _why) in gone.items():
        _write_marker(lora, "Zed", n, **fields)
    (lora / ".Zed_v12.reserved").write_text("not json")
    for n, (_fields, why) in gone.items():
        assert why in (stale_reason(read_reservation(lora / marker_name("Zed", n))) or ""), n  # type: ignore[arg-type]
    for n in kept:
        assert stale_reason(read_reservation(lora / marker_name("Zed", n))) is None, n  # type: ignore[arg-type]
    assert here

    with caplog.at_level(logging.INFO, logger="lib_lora.characters.reservation"):
        res = reserve(lora.parent, "Zed")
    assert res.version == 8  # the highest number still held is 7
    assert reserved_versions(lora, "Zed") == [1, 2, 3, 4, 5, 6, 7, 8]
    assert len(res.notes) == 5
    assert any("reclaimed .Zed_v12.reserved" in n and "cannot be read" in n for n in res.notes)
    assert any("reclaimed the reservation of Zed_v9" in n and "no longer in" in n for n in res.notes)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len([m for m in logged if "reclaimed" in m]) == 5  # never silently


# ------------------------------------------------------------------------------ real processes racing


_RESERVE = """
import json, os, sys, time
from pathlib import Path
from lib_lora.characters.reservation import reserve
Path(sys.argv[2] + "." + str(os.getpid())).touch()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
res = reserve(sys.argv[1], "Zed")
print(json.dumps({"version": res.version, "pid": os.getpid()}), flush=True)
while not os.path.exists(sys.argv[2] + ".end"):  # alive (holding it) until every racer has its number
    time.sleep(0.001)
"""


def test_processes_racing_for_one_character_get_distinct_versions(tmp_path: Path) -> None:
    folder = tmp_path / "characters" / "Zed"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _RESERVE, str(folder), str(go)], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(4)]
    try:
        wait_for(lambda: len(list(tmp_path.glob("go.*"))) == len(procs), timeout=60, what="the racers to start")
        go.touch()  # all reserve at once
        results = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
        assert sorted(r["version"] for r in results) == [1, 2, 3, 4]
        assert reserved_versions(folder / "lora", "Zed") == [1, 2, 3, 4]
        assert reserve(folder, "Zed").version == 5  # held by live processes: nothing is reclaimed
        (tmp_path / "go.end").touch()
        for p in procs:
            p.communicate(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # their processes have ended without starting a job: the next reservation reclaims all four (not v5,
    # this process's)
    res = reserve(folder, "Zed", at_least=1)
    assert res.version == 6 and len(res.notes) == 4
    assert reserved_versions(folder / "lora", "Zed") == [5, 6]
    assert all("without starting its job" in n for n in res.notes)


@pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")
def test_two_train_character_cli_processes_at_once(tmp_path: Path) -> None:
    """The gap this exists for: two ``python -m lib_lora train --character`` at once (separate job stores)."""
    from test_characters_cli import train_setup

    common, loras, _data = train_setup(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("LORA_STUDIO_CHARACTERS", None)

    def command(i: int) -> list[str]:
        return [sys.executable, "-m", "lib_lora", *common, "--data-dir", str(tmp_path / f"studio{i}"),
                "--output", str(tmp_path / f"out{i}"), "--character", "zed", "--trigger", "zed"]

    procs = [subprocess.Popen(command(i), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=tmp_path) for i in (1, 2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lora = loras / "characters" / "zed" / "lora"
    for n in (1, 2):
        assert read_header(lora / f"zed_v{n}.safetensors").metadata["ss_output_name"] == f"zed_v{n}"
    assert reserved_versions(lora, "zed") == []  # both were placed: no reservation is left
    assert not [p for p in lora.iterdir() if p.name.startswith(".")]


# -------------------------------------------------------------------------------- never a LoRA or version


def test_markers_are_neither_versions_nor_loras(tmp_path: Path, capsys) -> None:
    loras = tmp_path / "Lora"
    root = loras / "characters"
    lora = root / "hero" / "lora"
    make_lora(lora, "hero_v1")
    reserve(root / "hero", "hero")  # v2, training
    reserve(root / "hero", "hero")  # v3
    char = scan_characters(root).find("hero")
    assert char is not None and [v.label for v in char.versions] == ["v1"]
    host = StandaloneHost([str(loras)], data_dir=tmp_path / "studio")
    host.rescan(wait=True)
    assert [e.name for e in host.library().entries()] == ["hero_v1"]
    assert not host.library().lookup("hero_v2").found
    assert main(["characters", "--lora-dir", str(loras)]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "v3 (training), v2 (training), v1" in row
    assert main(["characters", "--lora-dir", str(loras), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["characters"][0]
    assert data["training"] == [2, 3] and data["version_labels"] == ["v1"]


# ------------------------------------------------------------------------------------ placement conflicts


def test_a_taken_name_at_placement_fails_and_keeps_the_trained_file(tmp_path: Path) -> None:
    loras = tmp_path / "Lora"
    root = loras / "characters"
    res = reserve(root / "Zed", "Zed")
    jobs = tmp_path / "studio" / "jobs"
    trained = make_lora(tmp_path / "training" / "out", "Zed_v1")
    record = _write_job(jobs, "job-1", SUCCEEDED, output_path=str(trained))
    record = JobRecord(**{**record.__dict__, "meta": {"install": {
        "name": "Zed_v1", "trigger": "zed", "arch": "sd1",
        "character": {"root": str(root), "name": "Zed", "trigger": "zed", "version": 1, "new": True, "references": []},
    }}})
    hold(root / "Zed", "Zed", res.version, job="job-1", jobs_dir=str(jobs), owners=[None])
    someone = make_lora(root / "Zed" / "lora", "Zed_v1", rank=8)  # put there by hand meanwhile
    before = someone.read_bytes()
    host = StandaloneHost([str(loras)], data_dir=tmp_path / "studio")
    with pytest.raises(TrainingError, match=r"Zed_v1.safetensors cannot be written: the file exists; nothing was "
                                            r"overwritten or renamed: the trained file stays at .*Zed_v1.safetensors"):
        install_job(record, host)
    assert someone.read_bytes() == before and trained.is_file()
    assert sorted(p.name for p in (root / "Zed" / "lora").iterdir()) == ["Zed_v1.safetensors"]  # no Zed_v2
    assert "the file exists" in str((read_result(record.job_dir) or {}).get("error"))
    assert reserved_versions(root / "Zed" / "lora", "Zed") == []  # it will never be placed: given back


def test_a_folder_without_file_locks_still_reserves(tmp_path: Path, monkeypatch, caplog) -> None:
    from lib_lora.characters import reservation

    def no_locks(fd: int) -> None:
        raise OSError(37, "No locks available")

    monkeypatch.setattr(reservation, "_lock_fd", no_locks)
    with caplog.at_level(logging.WARNING, logger="lib_lora.characters.reservation"):
        assert [reserve(tmp_path / "c" / "Zed", "Zed").version for _ in range(2)] == [1, 2]
    assert "reserving without the lock" in caplog.text
