"""Opt-in: the real kohya sd-scripts on the CPU at 64 px, end to end through LoRA Studio's plan and
JobManager — real progress events, cancel of the whole process group with the last periodic save kept,
resume from the saved state to completion, the exit-0-without-file case, and the output detected as an
SD1 LoRA with its trigger word.

Runs only when ``SD_SCRIPTS_DIR`` (an sd-scripts checkout at the pinned commit) and ``TRAINER_PYTHON``
(the Python of a venv with sd-scripts' requirements) are set. A random-weight SD1.5 checkpoint is built
once per session from ``tests/fixtures/model-configs/sd15`` (``benchmarks/make_random_checkpoint.py``),
cached in ``$LORA_STUDIO_TEST_CACHE`` when set. About 4 minutes on 2 CPU cores (plus ~45 s for the
checkpoint when it is not cached).

    SD_SCRIPTS_DIR=... TRAINER_PYTHON=... python -m pytest -m trainer tests/test_trainer_real.py
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

from lib_lora.train.jobs import JobManager
from lib_lora.train.logparse import FailureKind
from lib_lora.train.runner import CANCELLED, FAILED, SUCCEEDED, group_members, pid_alive

pytestmark = [pytest.mark.trainer, pytest.mark.slow]

SD_SCRIPTS = os.environ.get("SD_SCRIPTS_DIR", "").strip()
TRAINER_PY = os.environ.get("TRAINER_PYTHON", "").strip()
if not (SD_SCRIPTS and TRAINER_PY):
    pytest.skip(
        "real-trainer suite: set SD_SCRIPTS_DIR (sd-scripts checkout) and TRAINER_PYTHON (its venv's python) to run it",
        allow_module_level=True,
    )

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import train_smoke  # noqa: E402

TRIGGER = "zkchar"
STEPS = 8
SAVE_EVERY = 2
TIMEOUT = 600.0


@pytest.fixture(scope="session")
def setup(tmp_path_factory: pytest.TempPathFactory) -> train_smoke.Setup:
    if not os.path.isfile(os.path.join(SD_SCRIPTS, "train_network.py")):
        pytest.fail(f"SD_SCRIPTS_DIR={SD_SCRIPTS} has no train_network.py")
    work = tmp_path_factory.mktemp("trainer-real")
    cache = os.environ.get("LORA_STUDIO_TEST_CACHE") or str(tmp_path_factory.mktemp("checkpoint-cache"))
    return train_smoke.prepare(work, SD_SCRIPTS, TRAINER_PY, device="cpu", cache_dir=cache, images=6,
                               trigger=TRIGGER, resolution=64)  # fmt: skip


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory):
    mgr = JobManager(tmp_path_factory.mktemp("lora-studio-data"), grace_seconds=10.0)
    yield mgr
    for record in mgr.list():
        if not record.status.done:
            mgr.cancel(record.id, 0.0)
            mgr.wait(record.id, 60.0)
    mgr.close()


@dataclasses.dataclass
class Cancelled:
    job_id: str
    plan: object
    statuses: list
    members_before: list[int]
    pgid: int
    save_at_cancel: str


@pytest.fixture(scope="module")
def cancelled(setup, manager, tmp_path_factory) -> Cancelled:
    """A run of 8 steps (saves + state every 2) cancelled once step 3 has started after the step-2 save."""
    out = tmp_path_factory.mktemp("out") / "lora out ü"
    plan = train_smoke.plan_for(setup, "default", out, steps=STEPS,
                                overrides={"batch_size": 1, "save_every_n_steps": SAVE_EVERY})  # fmt: skip
    spec = plan.write_files(plan.job_dir)
    statuses: list = []
    box: list[str] = []
    unsubscribe = manager.subscribe(lambda r: statuses.append(r.status) if box and r.id == box[0] else None)
    job_id = manager.submit(spec, {"plan": plan.to_dict()}, gpu_ids=plan.gpu_ids)
    box.append(job_id)
    deadline = time.monotonic() + TIMEOUT
    members: list[int] = []
    try:
        while True:
            st = manager.get(job_id).status
            assert not st.done, f"the run ended before it could be cancelled: {st.state} {st.message}"
            if st.step >= SAVE_EVERY + 1 and st.last_save and os.path.isfile(st.last_save):
                members = group_members(st.pgid)
                break
            assert time.monotonic() < deadline, "no periodic save within the time limit"
            time.sleep(0.2)
        save_at_cancel = st.last_save
        manager.cancel(job_id, 10.0)
        record = manager.wait(job_id, 120.0)
    finally:
        unsubscribe()
    assert record.status.done, record.status
    return Cancelled(job_id, plan, statuses, members, st.pgid, save_at_cancel)


def test_real_progress_events(cancelled: Cancelled) -> None:
    running = [s for s in cancelled.statuses if s.state == "running" and s.step > 0]
    assert running, "no progress was parsed from the trainer"
    steps = [s.step for s in running]
    assert steps == sorted(steps) and steps[-1] >= SAVE_EVERY + 1
    assert all(s.total == STEPS for s in running)
    with_loss = [s for s in running if s.loss is not None]
    assert with_loss and all(0.0 < s.loss < 10.0 for s in with_loss)
    assert any(s.rate and s.rate > 0 for s in running)
    last = running[-1]
    assert last.loss_history and last.loss_history[-1][0] == last.step
    # the step-2 save was seen live, as a `saving checkpoint:` line
    assert any(p.endswith(f"{TRIGGER}-step{SAVE_EVERY:08d}.safetensors") for p in last.saves)


def test_cancel_ends_the_whole_group_and_keeps_the_last_save(cancelled: Cancelled, manager: JobManager) -> None:
    record = manager.get(cancelled.job_id)
    st = record.status
    assert st.state == CANCELLED, st
    # accelerate launch + the training process were both in the group; none survives
    assert len(cancelled.members_before) >= 2, cancelled.members_before
    assert group_members(cancelled.pgid) == []
    assert not any(pid_alive(p) for p in cancelled.members_before)
    assert st.last_save and os.path.isfile(st.last_save)
    assert st.last_save == cancelled.save_at_cancel or os.path.isfile(cancelled.save_at_cancel)
    plan = cancelled.plan
    assert not os.path.exists(os.path.join(plan.output_dir, plan.output_name + ".safetensors"))
    assert st.resume_state and os.path.isdir(st.resume_state)
    assert "Cancelled" in st.message or "cancel" in st.message.lower()


def test_resume_from_saved_state_to_completion(cancelled: Cancelled, manager: JobManager) -> None:
    new_id = manager.resume(cancelled.job_id)
    record = manager.wait(new_id, TIMEOUT)
    st = record.status
    assert st.state == SUCCEEDED, (st.state, st.message, st.failure)
    assert record.resumed_from == cancelled.job_id
    assert record.step_offset >= SAVE_EVERY and record.step_offset % SAVE_EVERY == 0
    assert "--resume" in record.spec["command"] and "--skip_until_initial_step" in record.spec["command"]
    # the resumed trainer counted on from the saved step instead of starting again at 0
    log = Path(record.job_dir, "stdout.log").read_text("utf-8", "replace") + Path(
        record.job_dir, "stderr.log"
    ).read_text("utf-8", "replace")
    assert f"skipping {record.step_offset} steps" in log
    assert st.step == STEPS
    plan = cancelled.plan
    final = os.path.join(plan.output_dir, plan.output_name + ".safetensors")
    assert st.output_path == final and os.path.isfile(final)
    det = train_smoke.check_output(final, TRIGGER)
    assert det["ok"], det
    assert det["architecture"] == "sd1" and det["trigger_words"] == [TRIGGER]
    assert det["ss_base_model_version"] == "sd_v1" and det["rank"] == plan.network_dim


def test_exit_0_without_a_file_is_no_images_found(setup, manager: JobManager, tmp_path: Path) -> None:
    """The kohya-layout mistake the plan itself never makes: ``--train_data_dir`` pointed at the image
    folder (no ``<repeats>_<name>`` subfolders). sd-scripts logs "No data found" and exits 0."""
    plan = train_smoke.plan_for(setup, "default", tmp_path / "out", steps=2, overrides={"batch_size": 1})
    spec = plan.write_files(tmp_path / "job")
    cmd = list(spec.command)
    i = cmd.index("--dataset_config")
    cmd[i : i + 2] = ["--train_data_dir", setup.dataset]
    job_id = manager.submit(dataclasses.replace(spec, command=tuple(cmd)), {"case": "exit0"})
    record = manager.wait(job_id, TIMEOUT)
    st = record.status
    assert st.exit_code == 0
    assert st.state == FAILED
    assert st.failure is not None and st.failure.kind == FailureKind.NO_IMAGES, st.failure
    assert "No training images" in st.failure.message
    assert not os.path.exists(os.path.join(plan.output_dir, plan.output_name + ".safetensors"))
