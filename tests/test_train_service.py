"""The training service end to end, with a real subprocess that replays a real kohya log
(tests/replay_trainer.py) behind the real plan's argument list: start → progress → success → the LoRA
in the LoRA folder with its sidecar and preview → the library resolves it; cancel, resume, failures;
the WebUI's queue lock and VRAM; refusals for remote access and bad paths."""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from lib_lora.errors import AccessDeniedError, TrainerEnvironmentError, TrainingError
from lib_lora.host import StandaloneHost, VramToken
from lib_lora.safetensors_header import read_header
from lib_lora.train.jobs import JobManager
from lib_lora.train.runner import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobStatus
from lib_lora.train.service import (
    TrainingRequest,
    TrainingService,
    parse_gpu_ids,
    pick_preview_sample,
    request_from_mapping,
    validate_folder,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from factory import make_checkpoint, make_images, make_lora, wait_for

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")

REPO = Path(__file__).resolve().parents[1]
REPLAY = REPO / "tests" / "replay_trainer.py"


# ----------------------------------------------------------------------------------------- helpers


class RecordingHost(StandaloneHost):
    """A standalone host that behaves like a WebUI: a model to free, a queue to hold."""

    kind = "a1111"

    def __init__(self, *args, remote: bool = False, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.calls: list[object] = []
        self.remote = remote
        self.lock_held_at_free: bool | None = None

    def free_vram(self) -> VramToken:
        self.lock_held_at_free = not _can_take(self)
        self.calls.append("free")
        return VramToken(freed=True, detail="moved to the CPU", handle="the-model")

    def restore_vram(self, token: VramToken) -> None:
        self.calls.append(("restore", token.handle, not _can_take(self)))

    def is_remote(self) -> bool:
        return self.remote


def _can_take(host: StandaloneHost, timeout: float = 0.0) -> bool:
    """Whether another thread could take the host's queue lock now (the lock is an RLock: test from a
    thread of our own so our own holds do not count)."""
    result: list[bool] = []

    def probe() -> None:
        got = host._queue_lock.acquire(timeout=timeout) if timeout else host._queue_lock.acquire(blocking=False)
        if got:
            host._queue_lock.release()
        result.append(got)

    t = threading.Thread(target=probe)
    t.start()
    t.join(timeout + 5)
    return bool(result and result[0])


def stand_in_trainer(tmp_path: Path, *options: str) -> tuple[Path, Path, Path]:
    """An sd-scripts folder and a 'trainer python' that runs replay_trainer.py with the plan's real
    argv; while the returned hang file exists the run stops at step 3."""
    sd = tmp_path / "sd scripts"
    sd.mkdir()
    (sd / "train_network.py").write_text("# stand-in\n")
    hang = tmp_path / "hang-at-3"
    argv = tmp_path / "argv.json"
    py = tmp_path / "trainer-python"
    base = [sys.executable, str(REPLAY), "--log", "sd15-ok", "--argv-file", str(argv), *options]
    py.write_text(
        "#!/bin/sh\n"
        f"if [ -e {shlex.quote(str(hang))} ]; then\n"
        f"  exec {shlex.join([*base, '--hang-at-step', '3'])} \"$@\"\n"
        "fi\n"
        f"exec {shlex.join(base)} \"$@\"\n"
    )
    py.chmod(py.stat().st_mode | stat.S_IXUSR)
    return sd, py, hang


class World:
    def __init__(self, tmp_path: Path, *, remote: bool = False, trainer_options: tuple[str, ...] = ("--duration", "0.4"),
                 lock_timeout: float = 10.0) -> None:
        self.tmp = tmp_path
        self.images = make_images(tmp_path / "pictures of zed")
        self.loras = tmp_path / "models" / "Lora"
        self.loras.mkdir(parents=True)
        self.ckpts = tmp_path / "models" / "Stable-diffusion"
        self.ckpt = make_checkpoint(self.ckpts, "sd15-base", "ckpt-sd1")
        self.data = tmp_path / "studio"
        self.host = RecordingHost([str(self.loras)], data_dir=self.data, checkpoint_dirs=[str(self.ckpts)],
                                  remote=remote)
        self.host.rescan(wait=True)
        self.sd, self.py, self.hang = stand_in_trainer(tmp_path, *trainer_options)
        self.jobs = JobManager(self.data, grace_seconds=3.0, poll_interval=0.05)
        self.service = TrainingService(self.host, self.jobs, sd_scripts_dir=self.sd, trainer_python=self.py,
                                       lock_timeout=lock_timeout)

    def request(self, **kw) -> TrainingRequest:  # type: ignore[no-untyped-def]
        fields = dict(folder=str(self.images), trigger="zed", base="sd15-base.safetensors", steps=4,
                      overrides={"save_every_n_steps": 2, "sample_every_n_steps": 4})
        fields.update(kw)
        return TrainingRequest(**fields)  # type: ignore[arg-type]

    def close(self) -> None:
        self.service.close()
        for record in self.jobs.list():
            if not record.status.done:
                self.jobs.cancel(record.id, grace_seconds=0.5)
                self.jobs.wait(record.id, 15)
        self.jobs.close()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()




# ------------------------------------------------------------------------------------ the happy path


def test_start_runs_and_installs_the_lora(world):
    statuses: list[JobStatus] = []
    world.jobs.subscribe(lambda record: statuses.append(record.status))
    job_id = world.service.start(world.request())
    view = world.service.wait(job_id, timeout=60)

    assert view.state == SUCCEEDED, view.status.message
    # progress came through the runner: the real log's steps and losses
    running = [s for s in statuses if s.state == RUNNING and s.total]
    assert running and running[-1].total == 4
    assert view.status.loss_history == ((1, 1.11), (2, 1.07), (3, 1.13), (4, 1.07))
    # the run's own files live in the data folder, not in the user's pictures
    assert Path(view.status.output_path).parent.parent == world.data / "training"
    assert sorted(p.name for p in world.images.iterdir() if not p.name.endswith((".png", ".txt"))) == []

    installed = view.installed
    assert installed is not None, view.install_error
    target = world.loras / "zed" / "zed.safetensors"
    assert installed.path == str(target) and installed.name == "zed"
    assert target.read_bytes() == Path(view.status.output_path).read_bytes()
    assert read_header(target).metadata["ss_output_name"] == "zed"

    sidecar = json.loads((world.loras / "zed" / "zed.json").read_text(encoding="utf-8"))
    assert sidecar["activation text"] == "zed"
    assert sidecar["sd version"] == "SD1"
    assert sidecar["preferred weight"] == 0.8
    assert "default/sd15/character" in sidecar["description"] and "4 steps" in sidecar["description"]
    assert "sd15-base.safetensors" in sidecar["description"]
    assert installed.sidecar == str(world.loras / "zed" / "zed.json")

    preview = world.loras / "zed" / "zed.preview.png"
    assert installed.preview == str(preview)
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert preview.read_bytes() == Path(view.status.samples[-1]).read_bytes()

    # it resolves in prompts right away, with its trigger word and base
    lookup = world.host.library().lookup("zed")
    assert lookup.found and lookup.entry is not None and lookup.entry.path == str(target)
    assert lookup.entry.architecture == "sd1"
    assert installed.found
    assert "<lora:zed:0.8>" in installed.message

    # the history shows it, and a second install is a no-op that returns the same result
    history = world.service.history()
    assert [h.id for h in history] == [job_id]
    assert history[0].installed == installed and history[0].trigger == "zed" and history[0].source == "tab"
    assert history[0].base == "sd15-base.safetensors" and history[0].preset == "default/sd15/character"
    assert world.service.install(job_id) == installed
    assert sorted(p.name for p in (world.loras / "zed").iterdir()) == ["zed.json", "zed.preview.png",
                                                                        "zed.safetensors"]
    assert json.loads(json.dumps(history[0].to_dict()))["installed"]["path"] == str(target)


def test_an_existing_lora_is_never_overwritten(world):
    existing = make_lora(world.loras, "zed", "kohya-sdxl", subdir="zed")
    before = existing.read_bytes()
    other = make_lora(world.loras, "zed-2", "kohya-sd1", subdir="elsewhere")  # same name in another folder
    world.host.rescan(wait=True)
    view = world.service.wait(world.service.start(world.request()), timeout=60)
    assert view.installed is not None, view.install_error
    assert view.installed.path == str(world.loras / "zed" / "zed-3.safetensors")
    assert existing.read_bytes() == before and other.is_file()
    assert not (world.loras / "zed" / "zed.json").exists()  # the old LoRA's (absent) sidecar is not written
    assert (world.loras / "zed" / "zed-3.json").is_file() and (world.loras / "zed" / "zed-3.preview.png").is_file()
    lookup = world.host.library().lookup("zed-3")
    assert lookup.found and lookup.entry.path == view.installed.path


def test_the_output_name_and_weight_are_the_users(world):
    view = world.service.wait(world.service.start(world.request(output_name="zed_v2", preferred_weight=0.65)), 60)
    assert view.installed is not None
    assert view.installed.path == str(world.loras / "zed" / "zed_v2.safetensors")
    assert json.loads((world.loras / "zed" / "zed_v2.json").read_text())["preferred weight"] == 0.65


# ------------------------------------------------------------------------------- the GPU and the queue


def test_vram_is_freed_and_restored_and_the_queue_held_while_training(world):
    world.hang.touch()
    job_id = world.service.start(world.request(free_vram=True))
    wait_for(lambda: world.service.status(job_id).status.step >= 2, what="step 2")
    assert world.host.calls == ["free"]
    assert world.host.lock_held_at_free is True  # the model is moved only while nobody generates
    assert world.service.queue_held and world.service.vram_freed
    assert not _can_take(world.host, timeout=0.3)  # a generation would wait
    world.service.cancel(job_id)
    view = world.service.wait(job_id, timeout=30)
    assert view.state == CANCELLED
    assert world.host.calls == ["free", ("restore", "the-model", True)]  # restored before the lock is let go
    assert not world.service.queue_held and _can_take(world.host)


def test_the_queue_lock_is_released_when_the_trainer_fails(tmp_path):
    w = World(tmp_path, trainer_options=("--duration", "0.2", "--exit-code", "1", "--no-output"))
    try:
        job_id = w.service.start(w.request())
        view = w.service.wait(job_id, timeout=60)
        assert view.state == FAILED and view.installed is None and not view.installing
        assert view.status.failure is not None
        assert _can_take(w.host) and not w.service.queue_held
        assert w.host.calls == ["free", ("restore", "the-model", True)]
    finally:
        w.close()


def test_the_queue_lock_is_released_when_the_start_fails(world, monkeypatch):
    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise TrainingError("the job manager is closed")

    monkeypatch.setattr(world.jobs, "submit", boom)
    with pytest.raises(TrainingError, match="closed"):
        world.service.start(world.request())
    assert _can_take(world.host) and world.host.calls == ["free", ("restore", "the-model", True)]


def test_a_generation_in_progress_makes_start_wait_then_refuse(tmp_path):
    w = World(tmp_path, lock_timeout=0.3)
    release = threading.Event()
    holding = threading.Event()

    def generate() -> None:
        with w.host.queue_lock():
            holding.set()
            release.wait(10)

    t = threading.Thread(target=generate)
    t.start()
    try:
        holding.wait(5)
        with pytest.raises(TrainingError, match="still generating"):
            w.service.start(w.request())
        assert w.jobs.list() == [] and w.host.calls == []  # nothing started, the model untouched
    finally:
        release.set()
        t.join(5)
    try:
        assert _can_take(w.host, timeout=2)  # the abandoned attempt let go as soon as it got the lock
        view = w.service.wait(w.service.start(w.request()), timeout=60)
        assert view.state == SUCCEEDED
    finally:
        w.close()


def test_no_queue_lock_when_not_asked(world):
    world.hang.touch()
    job_id = world.service.start(world.request(free_vram=False, hold_queue=False))
    wait_for(lambda: world.service.status(job_id).status.step >= 2, what="step 2")
    assert _can_take(world.host) and world.host.calls == []
    world.service.cancel(job_id)
    assert world.service.wait(job_id, 30).state == CANCELLED


# ------------------------------------------------------------------------------------- cancel, resume


def test_cancel_keeps_the_last_save_and_resume_finishes_and_installs(world):
    world.hang.touch()
    job_id = world.service.start(world.request())
    wait_for(lambda: world.service.status(job_id).status.step >= 2, what="step 2")
    wait_for(lambda: world.service.status(job_id).status.last_save, what="the periodic save")
    view = world.service.cancel(job_id)
    assert view.state in ("cancelling", CANCELLED)
    view = world.service.wait(job_id, timeout=30)
    assert view.state == CANCELLED and view.installed is None
    assert view.status.last_save and view.status.last_save.endswith("zed-step00000002.safetensors")
    assert view.resumable and view.status.resume_state
    assert not list(world.loras.rglob("*.safetensors"))  # nothing half-trained goes into the library
    assert _can_take(world.host)

    world.hang.unlink()
    new_id = world.service.resume(job_id)
    assert new_id != job_id
    resumed = world.service.wait(new_id, timeout=60)
    assert resumed.state == SUCCEEDED, resumed.status.message
    assert resumed.resumed_from == job_id
    argv = json.loads((world.tmp / "argv.json").read_text())
    assert argv[argv.index("--resume") + 1] == view.status.resume_state and "--skip_until_initial_step" in argv
    assert resumed.installed is not None and resumed.installed.path == str(world.loras / "zed" / "zed.safetensors")
    assert world.host.library().lookup("zed").found
    assert world.host.calls == ["free", ("restore", "the-model", True), "free", ("restore", "the-model", True)]
    with pytest.raises(TrainingError, match="only a cancelled or failed"):
        world.service.resume(new_id)


def test_a_restart_installs_a_job_that_finished_unwatched(world):
    job_id = world.service.start(world.request())
    world.service.close()  # the WebUI went away: nobody listens when the run ends
    assert _can_take(world.host)  # closing lets go of the queue
    world.jobs.wait(job_id, 60)
    assert not (world.loras / "zed").exists()
    again = TrainingService(world.host, world.jobs, sd_scripts_dir=world.sd, trainer_python=world.py)
    try:
        view = again.wait(job_id, timeout=60)
        assert view.installed is not None and view.installed.path == str(world.loras / "zed" / "zed.safetensors")
        third = TrainingService(world.host, world.jobs, sd_scripts_dir=world.sd, trainer_python=world.py)
        time.sleep(0.3)
        third.close()
        assert sorted(p.name for p in (world.loras / "zed").glob("*.safetensors")) == ["zed.safetensors"]
    finally:
        again.close()


# ----------------------------------------------------------------------------------------- refusals


def test_remote_access_is_refused_with_a_clear_message(tmp_path):
    w = World(tmp_path, remote=True)
    try:
        for call in (
            lambda: w.service.start(w.request()),
            lambda: w.service.plan(w.request()),
            lambda: w.service.check(str(w.images), "zed", "sd15-base.safetensors"),
            lambda: w.service.setup_environment(),
            lambda: w.service.resume("20260101-000000-abcdef"),
            lambda: w.service.cancel("20260101-000000-abcdef"),
        ):
            with pytest.raises(AccessDeniedError, match="--enable-insecure-extension-access"):
                call()
        assert w.jobs.list() == [] and w.host.calls == [] and _can_take(w.host)
        assert w.service.history() == []  # reading the history is fine
    finally:
        w.close()


def test_folder_paths_are_validated(tmp_path):
    real = make_images(tmp_path / "imgs", 1)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert validate_folder(str(link)) == str(real.resolve())  # symlinks are resolved
    assert validate_folder(str(real) + "/") == str(real.resolve())
    for bad, message in [
        ("", "empty"),
        ("relative/folder", "full path"),
        (str(tmp_path / "missing"), "not found"),
        (str(real / "00.png"), "is a file"),
        ("/dev/null", "not a folder"),
        ("/proc/self", "system folder"),
        ("/tmp/a\0b", "characters"),
        (str(tmp_path) + "/x\nrm", "characters"),
    ]:
        with pytest.raises(TrainingError, match=message):
            validate_folder(bad)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(TrainingError, match="not found"):
        validate_folder(str(dangling))


def test_the_checkpoint_must_come_from_the_list_or_be_a_real_file(world):
    with pytest.raises(TrainingError, match="choose one from the list"):
        world.service.plan(world.request(base="../../etc/passwd"))
    with pytest.raises(TrainingError, match="not found"):
        world.service.plan(world.request(base=str(world.tmp / "none.safetensors")))
    with pytest.raises(TrainingError, match="choose a base checkpoint"):
        world.service.plan(world.request(base=""))
    plan = world.service.plan(world.request(base=str(world.ckpt)))  # a local path is fine
    assert plan.base_checkpoint == str(world.ckpt) and plan.base_arch == "sd1"
    sdxl = make_checkpoint(world.ckpts, "xl", "ckpt-sdxl")
    assert world.service.plan(world.request(base=sdxl.name)).base_arch == "sdxl"


def test_user_strings_never_reach_a_shell(world):
    trigger = "$(touch pwned) `touch pwned`; touch pwned | touch pwned"
    view = world.service.wait(world.service.start(world.request(trigger=trigger)), timeout=60)
    assert view.state == SUCCEEDED
    assert not list(world.tmp.rglob("pwned")) and not Path("pwned").exists()  # trainer cwd, test cwd
    argv = json.loads((world.tmp / "argv.json").read_text())
    assert argv[argv.index("--metadata_trigger_phrase") + 1] == trigger  # one argument, verbatim
    assert view.installed is not None
    folder = Path(view.installed.path).parent
    assert folder.parent == world.loras and "/" not in folder.name and "$" not in folder.name
    assert json.loads(Path(view.installed.sidecar).read_text())["activation text"] == trigger


def test_a_missing_trainer_is_refused_before_anything_is_held(world):
    service = TrainingService(world.host, world.jobs, sd_scripts_dir=world.sd,
                              trainer_python=world.tmp / "no-venv" / "bin" / "python", install_pending=False)
    try:
        with pytest.raises(TrainerEnvironmentError, match="Set up trainer"):
            service.start(world.request())
        assert world.host.calls == [] and world.jobs.list() == [] and _can_take(world.host)
    finally:
        service.close()


def test_dataset_errors_and_bad_settings_are_refused(world):
    (world.images / "03.txt").write_bytes(b"")
    with pytest.raises(TrainingError, match="empty"):
        world.service.start(world.request())
    (world.images / "03.txt").write_text("zed", encoding="utf-8")
    for kw, message in [({"preset": "turbo"}, "unknown preset"), ({"kind": "pet"}, "unknown LoRA kind"),
                        ({"steps": 0}, "steps"), ({"trigger": "a, b"}, "comma"),
                        ({"preferred_weight": 5.0}, "preferred weight")]:
        with pytest.raises(TrainingError, match=message):
            world.service.start(world.request(**kw))
    assert world.jobs.list() == [] and world.host.calls == []


# ------------------------------------------------------------------------------------- check, helpers


def test_check_reports_and_captions_are_written_only_on_request(world):
    bare = make_images(world.tmp / "bare", 16, caption=None)
    report = world.service.check(str(bare), "zed", "sd15-base.safetensors")
    assert report.image_count == 16 and len(report.missing_captions()) == 16
    assert not list(bare.glob("*.txt"))
    written = world.service.write_captions(report, "{trigger}, solo")
    assert len(written) == 16 and (bare / "00.txt").read_text() == "zed, solo\n"
    assert world.service.check(str(bare), "zed", "sd15-base.safetensors").missing_captions() == ()


def test_preview_sample_choice(tmp_path):
    names = ["zed_000002_00_20260101_42.png", "zed_000004_01_20260101_42.png", "zed_000004_00_20260101_42.png",
             "zed_000004_03_20260101_42.png"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert pick_preview_sample([str(tmp_path / n) for n in names]) == str(tmp_path / names[2])
    assert pick_preview_sample([], str(tmp_path)) == str(tmp_path / names[2])
    assert pick_preview_sample([str(tmp_path / "gone.png")]) is None


def test_request_helpers():
    assert parse_gpu_ids("0, 1") == (0, 1) and parse_gpu_ids("") is None and parse_gpu_ids(None) is None
    with pytest.raises(TrainingError, match="numbers"):
        parse_gpu_ids("0;rm")
    req = request_from_mapping({"folder": "/x", "trigger": "t", "base": "b", "gpu_ids": [1], "steps": 10})
    assert req.gpu_ids == (1,) and req.plan_overrides() == {"steps": 10}
    with pytest.raises(TrainingError, match="unknown training field"):
        request_from_mapping({"folder": "/x", "trigger": "t", "base": "b", "shell": "rm -rf /"})


def test_one_service_and_one_job_manager_per_data_folder(tmp_path):
    from lib_lora.train import service as service_module

    try:
        host = StandaloneHost([str(tmp_path / "Lora")], data_dir=tmp_path / "data")
        first = service_module.service_for(host)
        assert service_module.service_for(host) is first
        assert service_module.job_manager_for(tmp_path / "data") is first.jobs
        other = StandaloneHost([str(tmp_path / "Lora")], data_dir=tmp_path / "data")  # e.g. after a reset
        second = service_module.service_for(other)
        assert second is not first and second.jobs is first.jobs and first._closed
    finally:
        service_module.reset_for_tests()


def test_gpus_come_from_nvidia_smi(tmp_path):
    from lib_lora.train.service import GpuInfo, list_gpus

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '0, NVIDIA H100 80GB HBM3, 81559, 80000\\n1, NVIDIA H100 80GB HBM3, 81559, 1024\\n'\n")
    fake.chmod(0o755)
    gpus = list_gpus(str(fake))
    assert gpus == [GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, 80000), GpuInfo(1, "NVIDIA H100 80GB HBM3", 81559, 1024)]
    assert gpus[0].label() == "0: NVIDIA H100 80GB HBM3, 78.1 of 80 GiB free"
    broken = tmp_path / "broken-smi"
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    broken.chmod(0o755)
    assert list_gpus(str(broken)) == [] and list_gpus(str(tmp_path / "none")) == []


def test_when_the_generation_queue_is_held(world):
    wants = world.service._wants_queue
    assert wants(world.request()) is True  # a WebUI, VRAM freed
    assert wants(world.request(free_vram=False)) is True  # same GPU as the WebUI
    assert wants(world.request(free_vram=False, gpu_ids=(1,))) is False  # another GPU: generation goes on
    assert wants(world.request(free_vram=False, gpu_ids=(1,), hold_queue=True)) is True
    world.host.kind = "standalone"
    assert wants(world.request()) is False
