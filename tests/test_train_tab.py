"""The Train LoRA tab: its HTML renderers, its controller driving a real (replayed) training job, and the
Gradio builder under both pinned gradio versions (3.41.2 for A1111, 4.40.0 for Forge; marked ``gradio``)."""

from __future__ import annotations

import html
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lib_lora.train.logparse import Failure
from lib_lora.train.runner import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobStatus
from lib_lora.train.service import InstalledLora, JobView
from lib_lora.ui.train_tab import (
    ARCH_AUTO,
    TrainTabController,
    gallery_items,
    render_env_html,
    render_history_html,
    render_loss_svg,
    render_progress_html,
    render_report_html,
    request_from_form,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_service import World, wait_for

posix = pytest.mark.skipif(os.name == "nt", reason="the stand-in trainer is a shell script")


def view(state: str = RUNNING, **status) -> JobView:  # type: ignore[no-untyped-def]
    st = JobStatus(state=state, **status)
    return JobView(id="20261122-101010-abcdef", status=st, created_at=1_700_000_000.0, source="tab", trigger="zed",
                   output_name="zed", base="sd15-base.safetensors", preset="default/sd15/character", total_steps=4,
                   job_dir="/tmp/job", installs=True)


def form(world: World, **kw):  # type: ignore[no-untyped-def]
    values = dict(folder=str(world.images), trigger="zed", base="sd15-base.safetensors", preset="default",
                  kind="character", steps=4, batch_size=0, learning_rate="", network_dim=0, network_alpha=0,
                  resolution=0, gpus="", output_name="", arch=ARCH_AUTO, preferred_weight=0.8, free_vram=True)
    values.update(kw)
    return list(values.values())


# --------------------------------------------------------------------------------------------- renderers


def test_loss_svg_is_valid_svg_with_both_lines():
    history = [(s, 1.2 - s * 0.001 + (0.05 if s % 7 == 0 else 0)) for s in range(1, 400)]
    out = render_loss_svg(history)
    svg = out[out.index("<svg"): out.index("</svg>") + 6]
    root = ET.fromstring(svg)  # well-formed XML
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert [line.get("class") for line in lines] == ["lst-loss-raw", "lst-loss-smooth"]
    points = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    assert len(points) == len(history)
    xs = [p[0] for p in points]
    assert xs == sorted(xs) and min(xs) >= 48 and max(xs) <= 560
    assert "step 399" in out
    assert "after the first steps" in render_loss_svg([(1, 1.0)])
    nan = render_loss_svg([(1, 1.0), (2, float("nan")), (3, 0.9)])
    assert "NaN/inf" in nan and "<svg" in nan
    flat = render_loss_svg([(1, 0.5), (2, 0.5)])  # no division by zero
    ET.fromstring(flat[flat.index("<svg"): flat.index("</svg>") + 6])


def test_progress_html_for_each_state():
    running = render_progress_html(view(RUNNING, step=2, total=4, rate=2.0, eta_seconds=65, loss=1.07,
                                        epoch=1, epochs=1, elapsed_seconds=3))
    assert "width:50.0%" in running and "step 2/4" in running and "ETA 1:05" in running
    assert "loss 1.07" in running and "2.00 it/s" in running and "epoch 1/1" in running
    starting = render_progress_html(view(RUNNING, task="caching latents 3/16"))
    assert "Starting: caching latents 3/16" in starting
    queued = render_progress_html(view("queued", message="Waiting for the GPU"))
    assert "Waiting for the GPU" in queued
    done = view(SUCCEEDED, step=4, total=4, started_at=100.0, ended_at=170.0, output_path="/x/zed.safetensors")
    installing = render_progress_html(done)
    assert "Copying the LoRA" in installing and "1:10" in installing
    installed = render_progress_html(
        JobView(**{**done.__dict__, "installed": InstalledLora(path="/L/zed/zed.safetensors", name="zed", found=True,
                                                               weight=0.8, trigger="zed")})
    )
    assert "&lt;lora:zed:0.8&gt;" in installed and "/L/zed/zed.safetensors" in installed
    failed = render_progress_html(view(FAILED, message="CUDA ran out of memory", last_save="/x/zed-step2.safetensors",
                                       failure=Failure("oom", "CUDA ran out of memory",
                                                       ("lower the batch size", "enable gradient checkpointing"),
                                                       "torch.OutOfMemoryError")))
    assert "lower the batch size" in failed and "<li>" in failed and "torch.OutOfMemoryError" in failed
    assert "Resume" in failed  # a last save makes it resumable
    cancelled = render_progress_html(view(CANCELLED, message="Cancelled at step 2/4; no periodic save was made"))
    assert "Cancelled at step 2/4" in cancelled and "Resume" not in cancelled
    assert "No training yet" in render_progress_html(None)


def test_everything_user_made_is_escaped():
    evil = '<img src=x onerror="alert(1)">'
    v = JobView(id="j", status=JobStatus(state=FAILED, message=evil, log_tail=(evil,)), created_at=0, source=evil,
                trigger=evil, output_name=evil, base=evil, preset=evil, total_steps=0, job_dir="/j")
    for out in (render_progress_html(v), render_history_html([v])):
        assert "<img" not in out and html.escape(evil, quote=True) in out


def test_report_html(tmp_path):
    from factory import make_images

    from lib_lora.train.dataset import check_dataset

    folder = make_images(tmp_path / "d", 16, caption=None)
    (folder / "00.txt").write_text("someone else", encoding="utf-8")
    out = render_report_html(check_dataset(folder, "zed", "sd1"))
    assert "Ready to train" in out and "<b>16</b>" in out and "15 image(s) have no caption file" in out
    assert "⚠️" in out and "00.txt" in out
    (folder / "01.txt").write_bytes(b"")
    bad = render_report_html(check_dataset(folder, "zed", "sd1"))
    assert "would stop the trainer" in bad and "⛔" in bad
    assert render_report_html(None) == ""


def test_gpus_html():
    from lib_lora.train.service import GpuInfo
    from lib_lora.ui.train_tab import render_gpus_html

    two = render_gpus_html([GpuInfo(0, "H100", 81559, 80000), GpuInfo(1, "H100 <x>", 81559, 1024)])
    assert "0: H100, 78.1 of 80 GiB free" in two and "--multi_gpu" in two and "&lt;x&gt;" in two
    assert "No NVIDIA GPU" in render_gpus_html([])


def test_env_html_names_an_outside_trainer_python(world):
    ctl = TrainTabController(world.service)
    assert "Using the trainer Python" in ctl.env_html() and str(world.py) in ctl.env_html(refresh=True)


def test_env_html():
    from lib_lora.train.environment import EnvStatus

    assert "Set up trainer" in render_env_html(EnvStatus("missing", "/v", None, message="Not created yet."), "/sd")
    assert "Ready" in render_env_html(EnvStatus("ready", "/v", "/v/bin/python", message="Ready: Python 3.10"), "/sd")
    assert "--enable-insecure-extension-access" in render_env_html(None, remote=True)
    assert "not installed" in render_env_html(None, sd_error="sd-scripts is not installed")


def test_form_values_become_a_request():
    req = request_from_form("/data/zed", " zed ", "sd15 [abc]", "fast", "style", 0, 4.0, "2e-4", 16, 8.0, 768,
                            "0,1", "", "sdxl", 0.7, False)
    assert (req.folder, req.trigger, req.base, req.preset, req.kind) == ("/data/zed", "zed", "sd15 [abc]", "fast", "style")
    assert req.steps is None and req.batch_size == 4 and req.learning_rate == 2e-4 and req.network_dim == 16
    assert req.network_alpha == 8.0 and req.resolution == 768 and req.gpu_ids == (0, 1) and req.arch == "sdxl"
    assert req.preferred_weight == 0.7 and req.free_vram is False and req.output_name is None
    from lib_lora.errors import TrainingError

    with pytest.raises(TrainingError, match="whole number"):
        request_from_form("/d", "t", "b", steps=2.5)
    with pytest.raises(TrainingError, match="learning rate must be a number"):
        request_from_form("/d", "t", "b", learning_rate="fast")
    with pytest.raises(TrainingError, match="GPUs"):
        request_from_form("/d", "t", "b", gpus="0;1")


# --------------------------------------------------------------------------------- controller, real jobs


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


@posix
def test_controller_runs_a_job_to_an_installed_lora(world):
    ctl = TrainTabController(world.service)
    html_report, report = ctl.check(str(world.images), "zed", "sd15-base.safetensors")
    assert report is not None and "Ready to train" in html_report
    assert "Coverage — " in html_report and "<b>Angles</b>" in html_report  # the coverage report
    job_id, notice = ctl.start(*form(world))
    assert job_id and "Started job" in notice
    world.service.wait(job_id, timeout=60)
    poll = ctl.poll(job_id)
    assert poll.job_id == job_id and not poll.can_cancel and not poll.can_resume
    assert "succeeded" in poll.progress_html and "&lt;lora:zed:0.8&gt;" in poll.progress_html
    assert poll.loss_html.count("<polyline") == 2
    assert "model saved." in poll.log_text
    assert job_id in poll.history_html and poll.job_ids == (job_id,)
    assert len(poll.samples) == 1
    thumbs = gallery_items(poll.samples)
    assert len(thumbs) == 1 and max(thumbs[0][0].size) <= 384 and thumbs[0][1] == "step 4 · prompt 1"
    assert ctl.poll(None).job_id == job_id  # with no job chosen, the newest is shown
    assert "sd15-base.safetensors" in ctl.checkpoint_titles()


@posix
def test_controller_progress_cancel_and_resume(world):
    ctl = TrainTabController(world.service)
    world.hang.touch()
    job_id, _ = ctl.start(*form(world))
    wait_for(lambda: world.service.status(job_id).status.step >= 2, what="step 2")
    wait_for(lambda: world.service.status(job_id).status.last_save, what="the periodic save")
    poll = ctl.poll(job_id)
    assert poll.can_cancel and not poll.can_resume
    assert re.search(r"step [23]/4", poll.progress_html) and "ETA" in poll.progress_html
    assert "Cancelling" in ctl.cancel(job_id)
    wait_for(lambda: world.service.status(job_id).done, what="the cancel")
    poll = ctl.poll(job_id)
    assert "cancelled" in poll.progress_html and poll.can_resume and not poll.can_cancel
    world.hang.unlink()
    new_id, notice = ctl.resume(job_id)
    assert new_id and "Resuming" in notice
    assert world.service.wait(new_id, timeout=60).state == SUCCEEDED
    assert "No running training" in ctl.cancel(new_id)


def test_controller_refusals_are_notices(tmp_path):
    w = World(tmp_path, remote=True)
    try:
        ctl = TrainTabController(w.service)
        job_id, notice = ctl.start(*form(w))
        assert job_id is None and "--enable-insecure-extension-access" in notice
        out, report = ctl.check(str(w.images), "zed", "sd15-base.safetensors")
        assert report is None and "--enable-insecure-extension-access" in out
        assert "--enable-insecure-extension-access" in ctl.env_html()
        poll = ctl.poll(None)
        assert not poll.can_cancel and "No training yet" in poll.progress_html
    finally:
        w.close()
    w2 = World(tmp_path / "local")
    try:
        ctl = TrainTabController(w2.service)
        job_id, notice = ctl.start(*form(w2, folder=str(w2.images / "00.png")))
        assert job_id is None and "is a file" in notice
        job_id, notice = ctl.start(*form(w2, steps="many"))
        assert job_id is None and "steps must be a number" in notice
        assert "Check the dataset first" in ctl.write_captions(None, "{trigger}")[0]
    finally:
        w2.close()


def test_setup_trainer_streams_progress(world, monkeypatch):
    from lib_lora.train.environment import EnvStatus, InstallProgress

    def fake_setup(progress, **options):  # type: ignore[no-untyped-def]
        for i, stage in enumerate(("venv", "torch", "requirements", "check"), 1):
            progress(InstallProgress(stage, i, 4, f"working on {stage}"))
            time.sleep(0.05)
        return EnvStatus("ready", "/v", "/v/bin/python")

    monkeypatch.setattr(world.service, "setup_environment", fake_setup)
    monkeypatch.setattr(world.service, "trainer_python", lambda: str(world.service.environment().python))
    monkeypatch.setattr(world.service, "environment_status",
                        lambda: EnvStatus("ready", "/v", "/v/bin/python", message="Ready: torch 2.7"))
    outputs = list(TrainTabController(world.service).setup_trainer())
    assert len(outputs) >= 3
    assert "[2/4 torch] working on torch" in outputs[-1][0] and outputs[-1][0].endswith("done")
    assert "Ready: torch 2.7" in outputs[-1][1]

    def failing(progress, **options):  # type: ignore[no-untyped-def]
        from lib_lora.errors import TrainerEnvironmentError

        progress(InstallProgress("torch", 2, 4, "ERROR: no matching distribution"))
        raise TrainerEnvironmentError("torch cannot be downloaded: use a wheel folder")

    monkeypatch.setattr(world.service, "setup_environment", failing)
    last = list(TrainTabController(world.service).setup_trainer())[-1]
    assert "FAILED: torch cannot be downloaded" in last[0] and "could not be set up" in last[1]


# ------------------------------------------------------------------------------------ gradio builders


@pytest.mark.gradio
def test_tab_builds_and_polls_in_this_gradio(world):
    gr = pytest.importorskip("gradio")
    from lib_lora.ui import compat_gradio as cg
    from lib_lora.ui.train_tab import build_train_tab

    with gr.Blocks() as demo:
        tab = build_train_tab(world.host, world.service, poll_seconds=1.0)
    c = tab.components
    for key in ("folder", "trigger", "base", "preset", "kind", "steps", "batch", "lr", "dim", "alpha", "resolution",
                "gpus", "free_vram", "check", "write_captions", "start", "cancel", "resume", "progress", "loss",
                "gallery", "log", "history", "job", "env", "setup", "setup_log"):
        assert key in c, key
    assert c["base"].choices and "sd15-base.safetensors" in str(c["base"].choices)
    config = demo.get_config_file()
    deps = config["dependencies"]
    if cg.IS_GRADIO_4:
        assert type(tab.timer).__name__ == "Timer"
        ticks = [d for d in deps if "tick" in str(d.get("targets"))]
        assert ticks and all(d["targets"][0][0] in d["outputs"] for d in ticks)  # each tick sets its timer's pace
    else:
        assert any(d.get("trigger") == "load" and d.get("every") == 1.0 for d in deps)
    elem_ids = {comp.get("props", {}).get("elem_id") for comp in config["components"]}
    assert {"lora_studio_train_start", "lora_studio_train_progress", "lora_studio_train_loss"} <= elem_ids

    # the polling callback: HTML every time, the gallery and job list only when they change
    outputs = tab.refresh(None, None)
    assert len(outputs) == 9 and "No training yet" in outputs[0]
    seen = outputs[-1]
    again = tab.refresh(None, seen)
    assert again[2] == cg.update() and again[5] == cg.update()  # nothing new: not re-sent
    assert again[-1]["active"] is False  # no job: the timer slows down (paced)

    if os.name == "nt":
        return
    job_id, _ = tab.controller.start(*form(world))
    world.service.wait(job_id, timeout=60)
    outputs = tab.refresh(job_id, seen)
    progress, loss, gallery, log, history, job_update, cancel, resume, seen = outputs
    assert "succeeded" in progress and "<svg" in loss and "model saved." in log and job_id in history
    assert isinstance(gallery, list) and len(gallery) == 1
    assert job_update == cg.update(choices=[job_id])
    assert cancel == cg.update(interactive=False) and resume == cg.update(interactive=False)
    assert tab.refresh(job_id, seen)[2] == cg.update()


@pytest.mark.gradio
def test_tab_for_a_remote_webui_has_its_buttons_off(tmp_path):
    gr = pytest.importorskip("gradio")
    from lib_lora.ui.train_tab import build_train_tab

    w = World(tmp_path, remote=True)
    try:
        with gr.Blocks():
            tab = build_train_tab(w.host, w.service)
        c = tab.components
        for key in ("start", "check", "write_captions", "setup", "folder"):
            assert c[key].interactive is False, key
    finally:
        w.close()


def test_paced_polls_slowly_while_nothing_runs() -> None:
    """gradio 4's timer gets its next interval from each tick: quick while busy, IDLE_POLL_SECONDS otherwise."""
    from lib_lora.ui.train_tab import IDLE_POLL_SECONDS, paced

    tick = paced(lambda job: (f"<p>{job}</p>", {"active": job == "running"}), 1.0, lambda _a, out: out[-1]["active"])
    assert tick("running") == ("<p>running</p>", {"active": True}, 1.0)
    assert tick("done")[-1] == IDLE_POLL_SECONDS > 1.0
