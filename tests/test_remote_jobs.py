"""Remote jobs (registry shape, cancel, failure), automatic fetching only when enabled, the daily check."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from lib_lora.errors import LoraStudioError
from lib_lora.remote import auto, versions
from lib_lora.remote.jobs import JobContext, JobRegistry, service_for
from lib_lora.settings import Settings


def test_job_shape_success_failure_and_cancel() -> None:
    reg = JobRegistry()

    def ok(ctx: JobContext) -> tuple[str, Any, str | None]:
        ctx.progress(3, 4, "three")
        return "done", {"ok": True}, "/x/y.safetensors"

    j = reg.wait(reg.start("download", ok, {"url": "u"}).id, timeout=10)
    d = j.to_dict()
    assert d["status"]["state"] == "succeeded" and d["status"]["output_path"] == "/x/y.safetensors"
    assert set(d) == {"id", "kind", "created_at", "meta", "status", "result"}
    assert set(d["status"]) >= {"state", "step", "total", "fraction", "message", "errors", "started_at", "ended_at"}

    def bad(ctx: JobContext) -> tuple[str, Any, str | None]:
        raise LoraStudioError("nope")

    j = reg.wait(reg.start("download", bad, {}).id, timeout=10)
    assert j.state == "failed" and j.errors == ["nope"]

    started = threading.Event()

    def slow(ctx: JobContext) -> tuple[str, Any, str | None]:
        started.set()
        while not ctx.should_stop():
            time.sleep(0.01)
        raise LoraStudioError("download cancelled")

    job = reg.start("download", slow, {})
    started.wait(5)
    assert reg.cancel(job.id).state == "cancelling"
    assert reg.wait(job.id, timeout=10).state == "cancelled"
    assert [x.id for x in reg.list()][0] == job.id


def test_a_result_with_ok_false_fails_the_job_with_its_message() -> None:
    reg = JobRegistry()

    def partly(ctx: JobContext) -> tuple[str, Any, str | None]:
        return "1 of 2 failed", {"ok": False, "results": []}, None

    j = reg.wait(reg.start("civitai-fetch", partly, {}).id, timeout=10)
    d = j.to_dict()["status"]
    assert d["state"] == "failed" and d["message"] == "1 of 2 failed" and d["errors"] == ["1 of 2 failed"]
    assert j.result == {"ok": False, "results": []}


class _Host:
    def __init__(self, data: Path, auto_fetch: bool) -> None:
        self.data = data
        self.auto_fetch = auto_fetch

    def settings(self) -> Settings:
        return Settings(civitai_auto_fetch=self.auto_fetch, civitai_url="http://127.0.0.1:9")

    def data_dir(self) -> Path:
        return self.data

    def library(self) -> Any:
        class L:
            def entries(self) -> tuple[()]:
                return ()

        return L()

    def lora_roots(self) -> list[Path]:
        return [self.data]

    def rescan(self, wait: bool = False) -> None:
        pass


def test_automatic_fetching_only_when_enabled(tmp_path: Path) -> None:
    off = _Host(tmp_path / "a", False)
    assert auto.maybe_start(off) == []
    on = _Host(tmp_path / "b", True)
    ids = auto.maybe_start(on, now=1000.0)
    assert len(ids) == 2  # fetch + the first daily version check
    svc = service_for(on)
    for jid in ids:
        svc.jobs.wait(jid, timeout=30)
    assert auto.maybe_start(on, now=1100.0) == []  # not again within the interval


def test_daily_check_is_due_only_with_automatic_fetching(tmp_path: Path) -> None:
    assert not versions.due(tmp_path, False)
    assert versions.due(tmp_path, True)
    versions.save_checks(tmp_path, {})
    assert not versions.due(tmp_path, True)
    assert versions.due(tmp_path, True, now=time.time() + versions.DAY + 1)


def test_card_buttons() -> None:
    from types import SimpleNamespace

    from lib_lora.ui import remote_panel

    assert "lss-fetch" in remote_panel.card_html(SimpleNamespace(civitai_url=None, relpath="a"))
    assert remote_panel.card_html(SimpleNamespace(civitai_url="https://civitai.com/models/1", relpath="a")) == ""
