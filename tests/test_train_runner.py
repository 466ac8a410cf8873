"""The training runner and job queue, with a real subprocess that replays the real kohya logs
(tests/replay_trainer.py): progress, outputs, failures, cancel of a whole process group, resume,
job records that survive a restart."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from factory import wait_for

from lib_lora.safetensors_header import read_header
from lib_lora.train import logparse
from lib_lora.train.jobs import JobManager, gpu_ids_of
from lib_lora.train.logparse import FailureKind, Progress
from lib_lora.train.progressbar import ProgressPrinter, format_duration, format_rate, render
from lib_lora.train.runner import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobStatus,
    TrainingRun,
    find_resume_state,
    group_members,
    pid_alive,
    resume_command,
    resume_spec,
)

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process groups are tested on POSIX")

try:
    from lib_lora.train.plan import JobSpec
except ImportError:  # the plan module is written separately; this is its published contract

    @dataclass(frozen=True)
    class JobSpec:  # type: ignore[no-redef]
        command: tuple[str, ...]
        cwd: str
        env: dict[str, str]
        output_dir: str
        output_name: str
        total_steps: int
        sample_dir: str
        save_every_n_steps: int | None
        resume_state_dir: str | None = None


REPLAY = Path(__file__).with_name("replay_trainer.py")


def make_spec(tmp_path: Path, log: str, *extra: str, name: str = "mylora", env: dict[str, str] | None = None,
              out: Path | None = None, duration: float = 0.6) -> JobSpec:
    out = out or tmp_path / "out"
    command = (sys.executable, str(REPLAY), "--log", log, "--output_dir", str(out), "--output_name", name,
               "--duration", str(duration), *extra)
    return JobSpec(command=command, cwd=str(tmp_path), env=dict(env or {}), output_dir=str(out),
                   output_name=name, total_steps=4, sample_dir=str(out / "sample"), save_every_n_steps=2)




def gone(pid: int) -> bool:
    return not pid_alive(pid)


def fixture_progress(fixtures_dir: Path, name: str) -> list[tuple[int, int, float | None]]:
    events = logparse.parse_all([("stderr", (fixtures_dir / "kohya-logs" / name).read_bytes())])
    return [(e.step, e.total, e.loss) for e in events if isinstance(e, Progress)]


# ------------------------------------------------------------------------------------------ runner


def test_replayed_run_reports_the_log_and_its_files(tmp_path, fixtures_dir):
    statuses: list[JobStatus] = []
    events: list[object] = []
    spec = make_spec(tmp_path, "sd15-ok")
    run = TrainingRun(spec, tmp_path / "job", on_status=statuses.append, on_event=events.append)
    first = run.start()
    assert first.state == RUNNING and first.pid and first.pgid == first.pid
    final = run.wait(30)

    assert final.state == SUCCEEDED, final.message
    assert final.exit_code == 0 and final.failure is None
    progress = [(e.step, e.total, e.loss) for e in events if isinstance(e, Progress)]
    assert progress == fixture_progress(fixtures_dir, "sd15-ok.stderr")
    assert final.loss_history == ((1, 1.11), (2, 1.07), (3, 1.13), (4, 1.07))
    assert (final.step, final.total, final.loss, final.epoch, final.epochs) == (4, 4, 1.07, 1, 1)
    out = Path(spec.output_dir)
    assert final.saves == tuple(str(out / n) for n in
                                ("mylora-step00000002.safetensors", "mylora-step00000004.safetensors", "mylora.safetensors"))
    assert final.output_path == str(out / "mylora.safetensors")
    assert read_header(final.output_path).metadata["ss_output_name"] == "mylora"
    assert len(final.samples) == 1 and Path(final.samples[0]).parent == out / "sample"
    assert "model saved." in final.log_tail
    assert statuses[0].state == RUNNING and statuses[-1] == final
    assert (tmp_path / "job" / "stderr.log").read_bytes() == (fixtures_dir / "kohya-logs" / "sd15-ok.stderr").read_bytes()


def test_child_environment(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, os, sys\n"
        "json.dump({k: os.environ.get(k) for k in ('PYTHONUNBUFFERED', 'LS_TEST')} | "
        "{'stdin': sys.stdin.read(), 'sid': os.getsid(0) == os.getpid()}, open('env.json', 'w'))\n"
    )
    spec = JobSpec(command=(sys.executable, str(probe)), cwd=str(tmp_path), env={"LS_TEST": "x"},
                   output_dir=str(tmp_path), output_name="none", total_steps=1, sample_dir=str(tmp_path / "s"),
                   save_every_n_steps=None)
    run = TrainingRun(spec, tmp_path / "job")
    run.start()
    status = run.wait(15)
    seen = json.loads((tmp_path / "env.json").read_text())
    assert seen == {"PYTHONUNBUFFERED": "1", "LS_TEST": "x", "stdin": "", "sid": True}
    assert status.state == FAILED and status.failure.kind == FailureKind.NO_OUTPUT  # exit 0, no LoRA file


def test_exit_zero_without_file_is_no_images(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / "mylora.safetensors"  # an older run's file must not count as this run's output
    stale.write_bytes(b"old")
    past = time.time() - 3600
    os.utime(stale, (past, past))
    run = TrainingRun(make_spec(tmp_path, "error-no-data-found-exit0"), tmp_path / "job")
    run.start()
    final = run.wait(15)
    assert final.state == FAILED and final.exit_code == 0
    assert final.failure is not None and final.failure.kind == FailureKind.NO_IMAGES
    assert final.output_path is None
    assert any("No data found" in e for e in final.errors)


@pytest.mark.parametrize(
    ("log", "kind"),
    [
        ("error-missing-model", FailureKind.MODEL_MISSING),
        ("error-tokenizer-missing-offline", FailureKind.TOKENIZER_OFFLINE),
        ("error-resolution-missing", FailureKind.RESOLUTION_MISSING),
    ],
)
def test_real_error_logs_fail_with_their_kind(tmp_path, log, kind):
    run = TrainingRun(make_spec(tmp_path, log), tmp_path / "job")
    run.start()
    final = run.wait(15)
    assert final.state == FAILED and final.exit_code == 1
    assert final.failure is not None and final.failure.kind == kind
    assert final.failure.message in final.message


def test_cuda_oom_mid_run(tmp_path, fixtures_dir):
    log = tmp_path / "oom.combined"
    log.write_bytes(
        (fixtures_dir / "kohya-logs" / "sd15-long-run-partial.combined").read_bytes()
        + b"\nTraceback (most recent call last):\n  File \"/opt/sd-scripts/train_network.py\", line 1480, in train\n"
        b"    accelerator.backward(loss)\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. "
        b"GPU 0 has a total capacity of 23.64 GiB of which 1.02 GiB is free.\n"
    )
    run = TrainingRun(make_spec(tmp_path, str(log), "--exit-code", "1"), tmp_path / "job")
    run.start()
    final = run.wait(15)
    assert final.state == FAILED and final.failure is not None and final.failure.kind == FailureKind.OOM
    assert (final.step, final.total) == (2, 200)
    assert "no periodic save" in final.message


def test_missing_trainer_program_is_an_environment_failure(tmp_path):
    spec = JobSpec(command=(str(tmp_path / "venv" / "bin" / "python"), "-m", "accelerate.commands.launch"),
                   cwd=str(tmp_path), env={}, output_dir=str(tmp_path), output_name="x", total_steps=1,
                   sample_dir=str(tmp_path), save_every_n_steps=None)
    status = TrainingRun(spec, tmp_path / "job").start()
    assert status.state == FAILED and status.failure is not None
    assert status.failure.kind == FailureKind.ENVIRONMENT


def test_cancel_ends_the_whole_process_group_and_keeps_the_last_save(tmp_path):
    """The replayed trainer starts a child that ignores SIGTERM and would outlive its parent (as
    accelerate's training process does); cancel must end both and report the periodic save."""
    pidfile = tmp_path / "child.pid"
    spec = make_spec(tmp_path, "sd15-ok", "--hang-at-step", "3", "--save_state",
                     "--spawn-child", str(pidfile), "--child-ignores-term")
    run = TrainingRun(spec, tmp_path / "job", grace_seconds=0.5)
    run.start()
    wait_for(lambda: run.status().step == 2 and run.status().last_save, what="step 2 and its save")
    child = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="child pid"))
    parent = run.status().pid
    assert pid_alive(child) and os.getpgid(child) == run.status().pgid

    run.cancel()
    final = run.wait(15)
    assert final.state == CANCELLED
    assert gone(parent) and wait_for(lambda: gone(child), 5, "child to end")
    assert group_members(final.pgid) == []
    save = str(Path(spec.output_dir) / "mylora-step00000002.safetensors")
    assert final.last_save == save and Path(save).is_file() and save in final.message
    assert final.output_path is None
    assert final.resume_state == str(Path(spec.output_dir) / "mylora-step00000002-state")


def test_a_child_really_outlives_its_parent_without_group_kill(tmp_path):
    """Control for the test above: killing only the leader leaves the child running."""
    pidfile = tmp_path / "child.pid"
    spec = make_spec(tmp_path, "sd15-long-run-partial", "--hang", "--spawn-child", str(pidfile))
    run = TrainingRun(spec, tmp_path / "job", grace_seconds=0.5)
    status = run.start()
    child = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="child pid"))
    os.kill(status.pid, signal.SIGKILL)
    final = run.wait(15)  # the runner notices the leader's end and ends what is left of the group
    assert final.state == FAILED and final.failure is not None and final.failure.kind == FailureKind.KILLED
    assert wait_for(lambda: gone(child), 10, "orphaned child to be ended")


def test_cancel_of_a_trainer_that_ignores_sigterm_escalates(tmp_path):
    spec = make_spec(tmp_path, "sd15-long-run-partial", "--hang", "--ignore-term")
    run = TrainingRun(spec, tmp_path / "job", grace_seconds=0.3)
    run.start()
    wait_for(lambda: run.status().step == 2, what="the log to be replayed")
    run.cancel()
    final = run.wait(15)
    assert final.state == CANCELLED and final.exit_code == -signal.SIGKILL
    assert gone(final.pid)


def test_resume_from_saved_state(tmp_path):
    spec = make_spec(tmp_path, "sd15-ok", "--hang-at-step", "3", "--save_state")
    run = TrainingRun(spec, tmp_path / "job", grace_seconds=0.5)
    run.start()
    wait_for(lambda: run.status().step == 2 and run.status().last_save, what="step 2")
    assert run.cancel().state == "cancelling"
    assert run.wait(15).state == CANCELLED

    state = find_resume_state(spec.output_dir, spec.output_name)
    assert state == str(Path(spec.output_dir) / "mylora-step00000002-state")
    argv_file = tmp_path / "argv.json"
    base = JobSpec(**{**spec.__dict__, "command": tuple(a for a in spec.command if a not in ("--hang-at-step", "3"))
                      + ("--argv-file", str(argv_file))})
    resumed, step = resume_spec(base, state)
    assert step == 2 and resumed.resume_state_dir == state
    assert resumed.command[-3:] == ("--resume", state, "--skip_until_initial_step")

    statuses: list[JobStatus] = []
    run2 = TrainingRun(resumed, tmp_path / "job2", step_offset=step, on_status=statuses.append)
    run2.start()
    final = run2.wait(30)
    assert final.state == SUCCEEDED, final.message
    assert (final.step, final.total) == (4, 4)  # the resumed bar counts 0..2 of 2; shown as 2..4 of 4
    assert all(s.step >= 2 for s in statuses if s.loss_history)
    assert final.loss_history[0][0] >= 3
    assert json.loads(argv_file.read_text())[-3:] == ["--resume", state, "--skip_until_initial_step"]


def test_find_resume_state_naming(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for i, name in enumerate(["mylora-step00000100-state", "mylora-000002-state", "mylora-state",
                              "other-step00000900-state", "mylora-step00000200-state", "mylora-step00000300-state"]):
        d = out / name
        d.mkdir()
        if name != "mylora-step00000300-state":  # accelerate had not written into this one yet
            (d / "model.safetensors").write_bytes(b"")
        t = time.time() - 100 + i
        os.utime(d, (t, t))
    assert find_resume_state(out, "mylora") == str(out / "mylora-step00000200-state")
    (out / "mylora-state" / "x").write_bytes(b"")
    os.utime(out / "mylora-state", None)
    assert find_resume_state(out, "mylora") == str(out / "mylora-state")
    assert find_resume_state(out, "nothing") is None
    assert find_resume_state(tmp_path / "missing", "mylora") is None


def test_find_resume_state_prefers_a_folder_accelerate_finished(tmp_path):
    # A cancel in the middle of a save leaves a newer folder without random_states_*.pkl (written last).
    out = tmp_path / "out"
    for i, (name, files) in enumerate([("mylora-step00000100-state", ["model.safetensors", "optimizer.bin",
                                                                      "random_states_0.pkl", "train_state.json"]),
                                       ("mylora-step00000200-state", ["train_state.json", "model.safetensors"])]):
        d = out / name
        d.mkdir(parents=True)
        for f in files:
            (d / f).write_bytes(b"")
        t = time.time() - 100 + i
        os.utime(d, (t, t))
    assert find_resume_state(out, "mylora") == str(out / "mylora-step00000100-state")
    (out / "mylora-step00000200-state" / "random_states_0.pkl").write_bytes(b"")
    os.utime(out / "mylora-step00000200-state", None)
    assert find_resume_state(out, "mylora") == str(out / "mylora-step00000200-state")


def test_resume_command_replaces_earlier_resume():
    cmd, step = resume_command(["accelerate", "train.py", "--resume", "/old", "--skip_until_initial_step"], "/new")
    assert cmd == ["accelerate", "train.py", "--resume", "/new"] and step == 0


# -------------------------------------------------------------------------------------------- jobs


def hanging(tmp_path: Path, name: str, gpu: str | None = None, out: Path | None = None, *extra: str) -> JobSpec:
    env = {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}
    return make_spec(tmp_path, "sd15-long-run-partial", "--hang", *extra, name=name, env=env, out=out)


def test_job_runs_and_its_record_is_kept(tmp_path):
    seen: list[str] = []
    manager = JobManager(tmp_path / "data", spec_type=JobSpec, grace_seconds=0.5)
    manager.subscribe(lambda r: seen.append(r.status.state))
    job_id = manager.submit(make_spec(tmp_path, "sd15-ok"), {"trigger": "mychar", "base": "sd15"})
    record = manager.wait(job_id, 30)
    assert record.state == SUCCEEDED and record.status.output_path
    data = json.loads((tmp_path / "data" / "jobs" / job_id / "job.json").read_text())
    assert data["status"]["state"] == SUCCEEDED and data["meta"]["trigger"] == "mychar"
    assert data["status"]["pid"] == record.status.pid and data["status"]["pgid"] == record.status.pgid
    assert data["spec"]["command"][1] == str(REPLAY)
    assert {QUEUED, RUNNING, SUCCEEDED} <= set(seen)
    manager.close()

    again = JobManager(tmp_path / "data", spec_type=JobSpec)
    [kept] = again.list()
    assert kept.id == job_id and kept.status == record.status and kept.meta == record.meta


def test_queue_one_job_per_gpu_set(tmp_path):
    manager = JobManager(tmp_path / "data", spec_type=JobSpec, grace_seconds=0.5)
    a = manager.submit(hanging(tmp_path, "a", "0", tmp_path / "oa"))
    b = manager.submit(hanging(tmp_path, "b", "1", tmp_path / "ob"))  # other GPU: runs alongside
    c = manager.submit(hanging(tmp_path, "c", "0", tmp_path / "oc"))  # same GPU as a: waits
    d = manager.submit(hanging(tmp_path, "d", "1", tmp_path / "od"))
    try:
        assert manager.get(a).state == RUNNING and manager.get(b).state == RUNNING
        assert manager.get(c).state == QUEUED and manager.get(d).state == QUEUED
        assert manager.cancel(d).state == CANCELLED  # a queued job is simply dropped
        manager.cancel(a)
        assert manager.wait(a, 15).state == CANCELLED
        wait_for(lambda: manager.get(c).state == RUNNING, what="c to start after a")
        assert manager.get(c).status.started_at >= manager.get(a).status.ended_at
        assert manager.get(b).state == RUNNING
    finally:
        for job in (a, b, c):
            manager.cancel(job)
        for job in (a, b, c):
            assert manager.wait(job, 15).state == CANCELLED


def test_gpu_ids_of_spec(tmp_path):
    assert gpu_ids_of(make_spec(tmp_path, "x", env={"CUDA_VISIBLE_DEVICES": "1,0"})) == (0, 1)
    spec = make_spec(tmp_path, "x")
    assert gpu_ids_of(spec) is None
    multi = JobSpec(**{**spec.__dict__, "command": ("accelerate", "launch", "--gpu_ids", "2,3", "train.py")})
    assert gpu_ids_of(multi) == (2, 3)


def test_restart_reattaches_to_a_live_trainer(tmp_path):
    first = JobManager(tmp_path / "data", spec_type=JobSpec, grace_seconds=0.5)
    job_id = first.submit(hanging(tmp_path, "live"))
    wait_for(lambda: first.get(job_id).status.step == 2, what="progress")
    pid = first.get(job_id).status.pid
    first.close()  # LoRA Studio goes away; the trainer keeps running
    assert pid_alive(pid)

    second = JobManager(tmp_path / "data", spec_type=JobSpec, grace_seconds=0.5)
    record = wait_for(lambda: (r := second.get(job_id)).status.step == 2 and r, what="reattached progress")
    assert record.state == RUNNING and record.status.pid == pid and record.status.total == 200
    assert record.status.loss == 1.01
    second.cancel(job_id)
    final = second.wait(job_id, 15)
    assert final.state == CANCELLED and gone(pid)
    assert json.loads((Path(final.job_dir) / "job.json").read_text())["status"]["state"] == CANCELLED


def test_restart_notices_a_dead_trainer_and_resume_continues_it(tmp_path):
    first = JobManager(tmp_path / "data", spec_type=JobSpec, grace_seconds=0.5)
    spec = make_spec(tmp_path, "sd15-ok", "--hang-at-step", "3", "--save_state")
    job_id = first.submit(spec)
    wait_for(lambda: first.get(job_id).status.last_save, what="the step-2 save")
    status = first.get(job_id).status
    first.close()
    os.killpg(status.pgid, signal.SIGKILL)  # the trainer dies while nobody watches
    wait_for(lambda: gone(status.pid), what="the trainer to die")

    second = JobManager(tmp_path / "data", spec_type=JobSpec, grace_seconds=0.5)
    record = second.get(job_id)
    save = str(Path(spec.output_dir) / "mylora-step00000002.safetensors")
    assert record.state == FAILED
    assert record.status.failure is not None and record.status.failure.kind == FailureKind.INTERRUPTED
    assert record.status.message == f"LoRA Studio was restarted while training; last save: {save}"
    assert record.status.resume_state == str(Path(spec.output_dir) / "mylora-step00000002-state")

    # resume: a new job from the saved state, counting on from step 2 (the replay no longer hangs:
    # it is told to resume, so it skips the steps the state holds)
    plain = JobSpec(**{**spec.__dict__, "command": tuple(a for a in spec.command if a not in ("--hang-at-step", "3"))})
    second._specs[job_id] = plain  # the same job, minus the test's hang switch
    new_id = second.resume(job_id)
    resumed = second.wait(new_id, 30)
    assert resumed.state == SUCCEEDED, resumed.status.message
    assert resumed.resumed_from == job_id and resumed.step_offset == 2
    assert "--resume" in resumed.spec["command"] and resumed.meta["resume_from"] == record.status.resume_state
    assert (resumed.status.step, resumed.status.total) == (4, 4)


def test_restart_with_a_reused_pid_is_not_reattached(tmp_path):
    """A record whose pid now belongs to another program is a dead job, not a live one."""
    data = tmp_path / "data"
    manager = JobManager(data, spec_type=JobSpec)
    job_id = manager.submit(make_spec(tmp_path, "error-resolution-missing"))
    manager.wait(job_id, 15)
    manager.close()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = data / "jobs" / job_id / "job.json"
        record = json.loads(path.read_text())
        record["status"].update(state=RUNNING, pid=other.pid, pgid=other.pid, failure=None)
        path.write_text(json.dumps(record))
        again = JobManager(data, spec_type=JobSpec)
        assert again.get(job_id).state == FAILED
        assert again.get(job_id).status.failure.kind == FailureKind.INTERRUPTED
        assert pid_alive(other.pid)  # never signalled
    finally:
        other.kill()
        other.wait()


def test_resume_refuses_a_job_without_saves(tmp_path):
    manager = JobManager(tmp_path / "data", spec_type=JobSpec)
    job_id = manager.submit(make_spec(tmp_path, "error-resolution-missing"))
    assert manager.wait(job_id, 15).state == FAILED
    with pytest.raises(Exception, match="no saved state"):
        manager.resume(job_id)


# --------------------------------------------------------------------------------- progress bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_mid_run():
    status = JobStatus(state=RUNNING, step=2, total=4, rate=1 / 1.46, eta_seconds=2, loss=1.07, epoch=1, epochs=1)
    line = render(status, 100)
    assert line.startswith("[") and " 50%  2/4  1.46 s/it  ETA 0:02  loss 1.07  epoch 1/1" in line
    assert render(status, 100, unicode=False).count("#") == render(status, 100).count("█")
    assert len(render(status, 30)) <= 30
    assert render(JobStatus(state=RUNNING, task="caching latents... 3/30"), 80) == "starting: caching latents... 3/30"
    assert format_duration(3723) == "1:02:03" and format_rate(12.5) == "12.50 it/s" and format_rate(None) == "? it/s"


def test_progress_printer_on_a_real_run(tmp_path):
    tty = _Tty()
    printer = ProgressPrinter(tty, width=100)
    plain = io.StringIO()
    lines = ProgressPrinter(plain, width=100)
    run = TrainingRun(make_spec(tmp_path, "sd15-ok"), tmp_path / "job", on_status=lambda s: (printer(s), lines(s)))
    run.start()
    final = run.wait(30)
    assert final.state == SUCCEEDED
    drawn = tty.getvalue()
    assert drawn.startswith("\r") and drawn.endswith("\n") and "done in" in drawn.rsplit("\r", 1)[-1]
    logged = plain.getvalue().splitlines()
    assert "\r" not in plain.getvalue() and logged[-1].startswith("done in") and len(logged) >= 2


def test_progress_printer_ascii_stream():
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    printer = ProgressPrinter(stream, width=80)
    printer(JobStatus(state=RUNNING, step=1, total=4, rate=2.0, eta_seconds=1.5))
    printer.log_line("INFO prepare dataset")
    stream.flush()
    text = stream.buffer.getvalue().decode("ascii")  # type: ignore[attr-defined]
    assert "[" in text and "#" in text and "INFO prepare dataset" in text


def test_two_managers_on_one_folder_never_start_a_job_twice(tmp_path):
    """The WebUI and the CLI may both hold a JobManager on the same data folder."""
    webui = JobManager(tmp_path / "data", spec_type=JobSpec, grace_seconds=0.5)
    first = webui.submit(hanging(tmp_path, "first", out=tmp_path / "o1"))
    second = webui.submit(hanging(tmp_path, "second", out=tmp_path / "o2"))
    wait_for(lambda: webui.get(first).status.step == 2, what="first job's progress")
    cli = JobManager(tmp_path / "data", spec_type=JobSpec, grace_seconds=0.5)
    try:
        assert cli.get(first).state == RUNNING  # followed, not restarted
        assert cli.get(second).state == QUEUED
        webui.cancel(first)
        wait_for(lambda: webui.get(second).state == RUNNING and cli.get(second).state == RUNNING,
                 what="the second job to start and be seen by both")
        assert webui.get(second).status.pid == cli.get(second).status.pid
        assert (Path(webui.get(second).job_dir) / "claim").read_text() == str(os.getpid())
    finally:
        cli.cancel(second)
        assert cli.wait(second, 15).state == CANCELLED
        assert webui.wait(second, 15).state == CANCELLED
        cli.close()
        webui.close()
