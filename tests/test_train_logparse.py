"""The sd-scripts log parser and failure classification, against the real kohya logs in the fixtures."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_lora.train.logparse import (
    Epoch,
    Error,
    FailureKind,
    Log,
    LogParser,
    Progress,
    RunInfo,
    SampleWatcher,
    Saved,
    TaskProgress,
    classify,
    parse_all,
    parse_duration,
    parse_rate,
)


def _log(fixtures_dir: Path, name: str) -> bytes:
    return (fixtures_dir / "kohya-logs" / name).read_bytes()


def _progress(events):
    return [(e.step, e.total, e.loss) for e in events if isinstance(e, Progress)]


def _logs(events, level=None):
    return [e.text for e in events if isinstance(e, Log) and (level is None or e.level == level)]


# ------------------------------------------------------------------------------------ real logs


def test_sd15_ok_stderr_progress_exact(fixtures_dir):
    events = parse_all([("stderr", _log(fixtures_dir, "sd15-ok.stderr"))])
    assert _progress(events) == [
        (0, 4, None),
        (1, 4, None),
        (1, 4, 1.11),
        (2, 4, 1.11),
        (2, 4, 1.07),
        (3, 4, 1.07),
        (3, 4, 1.13),
        (4, 4, 1.13),
        (4, 4, 1.07),
        (4, 4, 1.07),
    ]
    first_step = next(e for e in events if isinstance(e, Progress) and e.step == 1)
    assert first_step.rate == pytest.approx(1 / 1.45)  # "1.45s/it" normalised to it/s
    assert first_step.elapsed == 1.0 and first_step.eta_seconds == 4.0
    assert [e for e in events if isinstance(e, Progress)][0].rate is None  # "?it/s"
    assert not [e for e in events if isinstance(e, Error)]


def test_sd15_ok_rich_records_rejoined(fixtures_dir):
    """80-column rich records: wrapped words joined with a space, long words folded mid-word
    joined without one, CJK continuation lines kept, dataset dump kept line by line."""
    events = parse_all([("stderr", _log(fixtures_dir, "sd15-ok.stderr"))])
    info = _logs(events, "INFO")
    assert "load tokenizer from cache: /data/job/tokcache/openai_clip-vit-large-patch14" in info
    assert "found directory /data/job/data/10_mychar contains 2 image files" in info
    assert "load StableDiffusion checkpoint: /data/job/sd15_random.safetensors" in info
    assert "get image size from name of cache files" in info
    assert "epoch is incremented. current_epoch: 0, epoch: 1" in info  # glued right after a bar
    assert "generating sample images at step / サンプル画像生成 ステップ: 4" in info
    assert "model saved." in info
    dataset = next(t for t in info if t.startswith("[Dataset 0]\n"))
    assert "    caption_dropout_every_n_epochs: 0" in dataset.split("\n")
    assert '    image_dir: "/data/job/data/10_mychar"' in dataset.split("\n")
    warnings = _logs(events, "WARNING")
    assert "no regularization images / 正則化画像が見つかりませんでした" in warnings
    assert warnings.count("Failed to get git commit hash, using fallback") == 3
    assert "" not in _logs(events)  # logger.info("") spacer dropped


def test_sd15_ok_task_progress_labels(fixtures_dir):
    events = parse_all([("stderr", _log(fixtures_dir, "sd15-ok.stderr"))])
    tasks = [(e.label, e.n, e.total) for e in events if isinstance(e, TaskProgress)]
    assert ("caching latents...", 1, 2) in tasks
    assert ("read caption", 2, 2) in tasks
    assert ("generating sample images at step / サンプル画像生成 ステップ: 4", 1, 2) in tasks


def test_sd15_ok_stdout(fixtures_dir):
    events = parse_all([("stdout", _log(fixtures_dir, "sd15-ok.stdout"))])
    assert [e for e in events if isinstance(e, Saved)] == [
        Saved("/data/job/out/mylora-step00000002.safetensors"),
        Saved("/data/job/out/mylora-step00000004.safetensors"),
        Saved("/data/job/out/mylora.safetensors"),
    ]
    assert [e for e in events if isinstance(e, Epoch)] == [Epoch(1, 1)]
    assert [e for e in events if isinstance(e, RunInfo)] == [
        RunInfo(total_steps=4, epochs=1, images=4, batches_per_epoch=4, batch_size=1, gradient_accumulation=1)
    ]
    assert all(e.stream == "stdout" for e in events if isinstance(e, Log))


def test_long_run_glued_carriage_returns(fixtures_dir):
    """Progress updates glued by bare \\r (no newline), the last one unterminated."""
    data = _log(fixtures_dir, "sd15-long-run-partial.combined")
    assert b"2.23s/it]\rsteps:" in data
    events = parse_all([("stderr", data)])
    assert _progress(events) == [(0, 200, None), (1, 200, None), (1, 200, 0.964), (2, 200, 0.964), (2, 200, 1.01)]
    last = [e for e in events if isinstance(e, Progress)][-1]
    assert last.rate == pytest.approx(1 / 1.85) and last.eta_seconds == 6 * 60 + 5 and last.elapsed == 3
    assert Epoch(1, 50) in events
    info = next(e for e in events if isinstance(e, RunInfo))
    assert (info.total_steps, info.epochs, info.images) == (200, 50, 4)


def test_unterminated_bar_is_reported_at_once(fixtures_dir):
    """A live run's newest bar has no terminator until the next update: report it immediately."""
    parser = LogParser()
    events = parser.feed(b"\rsteps:   1%|          | 2/200 [00:03<06:05,  1.85s/it, avr_loss=1.01]", "stderr")
    assert _progress(events) == [(2, 200, 1.01)]
    # ... and only once when the next update terminates it
    events = parser.feed(b"\rsteps:   2%|          | 3/200 [00:05<06:05,  1.85s/it, avr_loss=1.02]", "stderr")
    assert _progress(events) == [(3, 200, 1.02)]
    assert _progress(parser.close()) == []


def test_sdxl_wide_log(fixtures_dir):
    events = parse_all([("stderr", _log(fixtures_dir, "sdxl-ok.combined"))])
    assert _progress(events) == [(0, 2, None), (1, 2, None), (1, 2, 1.03), (2, 2, 1.03), (2, 2, 1.07), (2, 2, 1.07)]
    assert [e.path for e in events if isinstance(e, Saved)] == ["/data/job/outxl/myxl.safetensors"]
    assert "load tokenizer from cache: /data/job/tokcache/laion_CLIP-ViT-bigG-14-laion2B-39B-b160k" in _logs(events, "INFO")
    assert "text encoder 2: <All keys matched successfully>" in _logs(events, "INFO")
    assert Epoch(1, 1) in events


@pytest.mark.parametrize(
    ("name", "kind", "exit_code"),
    [
        ("error-missing-model.combined", FailureKind.MODEL_MISSING, 1),
        ("error-resolution-missing.combined", FailureKind.RESOLUTION_MISSING, 1),
        ("error-tokenizer-missing-offline.combined", FailureKind.TOKENIZER_OFFLINE, 1),
        ("error-no-data-found-exit0.combined", FailureKind.NO_IMAGES, 0),
    ],
)
def test_error_logs_classified(fixtures_dir, name, kind, exit_code):
    data = _log(fixtures_dir, name)
    events = parse_all([("stderr", data)])
    assert kind in {e.kind for e in events if isinstance(e, Error)}
    failure = classify(data.decode("utf-8"), exit_code, output_exists=False)
    assert failure is not None and failure.kind == kind
    assert failure.advice and failure.message
    assert "CalledProcessError" not in failure.detail  # the trainer's traceback, not accelerate's wrapper


def test_missing_model_message_names_the_path(fixtures_dir):
    failure = classify(_log(fixtures_dir, "error-missing-model.combined").decode(), 1, False)
    assert failure is not None
    assert "/data/job/nope.safetensors" in failure.message
    assert failure.detail.splitlines()[-1].startswith("ValueError: The provided pretrained_model_name_or_path")


def test_tokenizer_failure_is_not_reported_as_missing_protobuf(fixtures_dir):
    failure = classify(_log(fixtures_dir, "error-tokenizer-missing-offline.combined").decode(), 1, False)
    assert failure is not None and failure.kind == FailureKind.TOKENIZER_OFFLINE
    assert "tokenizer_cache_dir" in " ".join(failure.advice)


def test_no_data_found_exit0_is_a_failure_but_a_good_run_is_not(fixtures_dir):
    text = _log(fixtures_dir, "error-no-data-found-exit0.combined").decode()
    assert classify(text, 0, output_exists=False).kind == FailureKind.NO_IMAGES  # type: ignore[union-attr]
    ok = _log(fixtures_dir, "sdxl-ok.combined").decode()
    assert classify(ok, 0, output_exists=True) is None
    no_file = classify(ok, 0, output_exists=False)
    assert no_file is not None and no_file.kind == FailureKind.NO_OUTPUT


# --------------------------------------------------------------------------- other failure texts

OOM_TEXT = """Traceback (most recent call last):
  File "/opt/sd-scripts/train_network.py", line 1480, in train
    accelerator.backward(loss)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.64 GiB of which 1.02 GiB is free. Including non-PyTorch memory, this process has 22.6 GiB memory in use.
Traceback (most recent call last):
  File "/opt/trainer-venv/bin/accelerate", line 8, in <module>
subprocess.CalledProcessError: Command '['python', 'train_network.py']' returned non-zero exit status 1.
"""


@pytest.mark.parametrize(
    ("text", "exit_code", "kind"),
    [
        (OOM_TEXT, 1, FailureKind.OOM),
        ("OSError: [Errno 28] No space left on device: '/data/out/x.safetensors'", 1, FailureKind.DISK_FULL),
        ("RuntimeError: [enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file data/3: file write failed", 1, FailureKind.DISK_FULL),
        ("Traceback (most recent call last):\n  File \"x\", line 1\nModuleNotFoundError: No module named 'accelerate'", 1, FailureKind.ENVIRONMENT),
        ("/opt/trainer-venv/bin/python: No module named accelerate", 1, FailureKind.ENVIRONMENT),
        ("", -9, FailureKind.KILLED),
        ("subprocess.CalledProcessError: Command '['python', 'train_network.py']' died with <Signals.SIGKILL: 9>.", 1, FailureKind.KILLED),
        ("RuntimeError: something odd\n", 1, FailureKind.GENERIC),
    ],
)
def test_failure_kinds(text, exit_code, kind):
    failure = classify(text, exit_code, output_exists=False)
    assert failure is not None and failure.kind == kind


def test_oom_advice_and_environment_module_name():
    failure = classify(OOM_TEXT, 1, False)
    assert failure is not None
    advice = " ".join(failure.advice).lower()
    assert "batch size" in advice and "gradient checkpointing" in advice and "resolution" in advice
    env = classify("ModuleNotFoundError: No module named 'accelerate'", 1, False)
    assert env is not None and "accelerate" in env.message


def test_generic_failure_quotes_the_trainer_exception_not_the_wrapper():
    text = (
        "Traceback (most recent call last):\n  File \"train_network.py\", line 5\nKeyError: 'lora_unet'\n"
        "Traceback (most recent call last):\n  File \"accelerate\", line 8\n"
        "subprocess.CalledProcessError: Command '['x']' returned non-zero exit status 1.\n"
    )
    failure = classify(text, 1, False)
    assert failure is not None and failure.kind == FailureKind.GENERIC
    assert "KeyError: 'lora_unet'" in failure.message and "exit code 1" in failure.message


def test_success_needs_exit_zero_and_file():
    assert classify("", 0, True) is None
    assert classify("", 1, True) is not None


# ----------------------------------------------------------------------------------- invariants


def test_ansi_colour_codes_are_ignored():
    line = (
        "\x1b[2;36m2026-11-22 15:19:25\x1b[0m\x1b[2;36m \x1b[0m\x1b[34mINFO    \x1b[0m Using v1 tokenizer"
        "                \x1b[2mstrategy_sd.py\x1b[0m\x1b[2m:\x1b[0m\x1b[2m26\x1b[0m\n"
    )
    events = parse_all([("stderr", line.encode())])
    assert [(e.level, e.text) for e in events if isinstance(e, Log)] == [("INFO", "Using v1 tokenizer")]


def test_crlf_split_across_chunks():
    parser = LogParser()
    events = parser.feed(b"epoch 2/3\r", "stdout") + parser.feed(b"\nsaving checkpoint: /o/a.safetensors\r\n", "stdout")
    events += parser.close()
    assert Epoch(2, 3) in events and Saved("/o/a.safetensors") in events


def test_streams_do_not_mix_partial_lines():
    parser = LogParser()
    events = parser.feed(b"saving check", "stdout")
    events += parser.feed(b"\rsteps:  50%|#    | 1/2 [00:01<00:01,  1.00it/s]", "stderr")
    events += parser.feed(b"point: /o/x.safetensors\n", "stdout")
    events += parser.close()
    assert Saved("/o/x.safetensors") in events
    assert _progress(events) == [(1, 2, None)]


@pytest.mark.parametrize(
    ("name", "stream"),
    [
        ("sd15-ok.stderr", "stderr"),
        ("sd15-long-run-partial.combined", "stderr"),
        ("error-no-data-found-exit0.combined", "stderr"),
        ("sd15-ok.stdout", "stdout"),
    ],
)
@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=40))
def test_chunking_never_changes_events(fixtures_dir, name, stream, cuts):
    """Any split into chunks (mid-line, mid-UTF-8 sequence, between \\r and \\n) gives the same events."""
    data = _log(fixtures_dir, name)
    whole = parse_all([(stream, data)])
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert parse_all([(stream, c) for c in chunks]) == whole


def test_chunk_ending_between_a_bar_and_its_carriage_return_reports_the_bar_once() -> None:
    """A chunk ending in ``<bar>\r`` holds the ``\r`` back (it may start ``\r\n``) yet reports the bar."""
    data = b"\r0it [00:00, ?it/s]\r0it [00:00, ?it/s]\nnext line\n"
    cut = data.index(b"]\r0it") + 2
    assert parse_all([("stderr", data[:cut]), ("stderr", data[cut:])]) == parse_all([("stderr", data)])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data):
    parse_all([("stderr", data), ("stdout", data)])


def test_rates_and_durations():
    assert parse_rate("12.5it/s") == 12.5
    assert parse_rate("  2.00s/it") == 0.5
    assert parse_rate("1.2kit/s") == pytest.approx(1200)
    assert parse_rate("?it/s") is None
    assert parse_duration("07:23") == 443
    assert parse_duration("1:02:03") == 3723
    assert parse_duration("2d 01:00:00") == 2 * 86400 + 3600
    assert parse_duration("?") is None


# ------------------------------------------------------------------------------------- samples


def test_sample_watcher_reports_new_complete_images_once(tmp_path, fixtures_dir):
    sample_dir = tmp_path / "sample"
    sample_dir.mkdir()
    png = fixtures_dir / "kohya-outputs" / "sd15-sample-step4.png"
    old = sample_dir / "mylora_000002_00_20260101000000_42.png"
    shutil.copyfile(png, old)
    past = time.time() - 3600
    os.utime(old, (past, past))
    watcher = SampleWatcher(sample_dir, since=time.time())
    assert watcher.poll() == []  # an older run's sample is not this run's
    new = sample_dir / "mylora_000004_00_20261122000000_42.png"
    shutil.copyfile(png, new)
    (sample_dir / "notes.txt").write_text("x")
    assert watcher.poll() == []  # size seen once: may still be being written
    assert [s.path for s in watcher.poll()] == [str(new)]
    assert watcher.poll() == []
    another = sample_dir / "mylora_000006_00_20261122000001_42.png"
    shutil.copyfile(png, another)
    assert [s.path for s in watcher.poll(final=True)] == [str(another)]
