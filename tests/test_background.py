"""lib_lora/background.py, the in-process job registry: how jobs end (returned, failed, raised, cancelled),
cooperative cancel, waiting, the running limit, bounded retention, concurrent submits, snapshots."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lib_lora.background import (
    CANCELLED,
    CANCELLING,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    BackgroundJobs,
    JobContext,
)
from lib_lora.errors import LoraStudioError

WAIT = 30  # seconds a test waits at the most for a job that should end at once


class Gate:
    """A job function that reports it started, then blocks until opened (or until cancelled)."""

    def __init__(self, result: Any = "ok") -> None:
        self.started = threading.Event()
        self.open = threading.Event()
        self.result = result

    def __call__(self, ctx: JobContext[Any]) -> Any:
        self.started.set()
        while not self.open.wait(0.01):
            if ctx.should_stop():
                ctx.update(message="stopped early")
                return "partial"
        return self.result


def test_a_returned_value_succeeds_with_progress_and_the_jobs_shape() -> None:
    reg: BackgroundJobs[dict[str, int]] = BackgroundJobs()

    def work(ctx: JobContext[dict[str, int]]) -> dict[str, int]:
        ctx.progress(1, 4, "one")
        ctx.update(result={"partial": 1}, output_path="/out/x")
        ctx.progress(4, 4)
        return {"n": 4}

    job = reg.wait(reg.submit("demo", work, {"a": 1}).id, timeout=WAIT)
    assert job.state == SUCCEEDED and job.done
    assert job.result == {"n": 4} and job.output_path == "/out/x"
    assert job.message == "one"  # progress without a message keeps the last one
    assert (job.step, job.total, job.fraction) == (4, 4, 1.0)
    assert job.started_at is not None and job.ended_at is not None and job.ended_at >= job.started_at
    d = job.to_dict()
    assert set(d) == {"id", "kind", "created_at", "meta", "status", "result"}
    assert d["kind"] == "demo" and d["meta"] == {"a": 1} and d["id"].startswith("demo-")
    assert set(d["status"]) == {"state", "step", "total", "fraction", "message", "errors", "output_path",
                                "started_at", "ended_at"}
    assert d["status"]["errors"] == []


def test_a_job_that_raises_fails_with_its_message_never_silently() -> None:
    reg: BackgroundJobs[Any] = BackgroundJobs()

    def refused(ctx: JobContext[Any]) -> Any:
        raise LoraStudioError("the file is not a LoRA")

    def bug(ctx: JobContext[Any]) -> Any:
        return {}["missing"]

    job = reg.wait(reg.submit("x", refused).id, timeout=WAIT)
    assert job.state == FAILED and job.message == "the file is not a LoRA" and job.errors == [job.message]
    job = reg.wait(reg.submit("x", bug).id, timeout=WAIT)
    assert job.state == FAILED and job.message == "internal error: KeyError: 'missing'"
    assert job.errors == [job.message] and job.to_dict()["status"]["errors"] == [job.message]


def test_fail_keeps_the_result_and_ends_failed() -> None:
    reg: BackgroundJobs[Any] = BackgroundJobs()

    def half(ctx: JobContext[Any]) -> Any:
        ctx.fail("2 of 3 files failed")
        return {"ok": False}

    job = reg.wait(reg.submit("x", half).id, timeout=WAIT)
    assert job.state == FAILED and job.result == {"ok": False} and job.errors == ["2 of 3 files failed"]


def test_cancel_is_cooperative() -> None:
    reg: BackgroundJobs[Any] = BackgroundJobs()
    gate = Gate()
    job = reg.submit("x", gate)
    assert gate.started.wait(WAIT)
    assert reg.cancel(job.id, message="cancelling after this file").state == CANCELLING
    assert reg.get(job.id).message == "cancelling after this file"
    job = reg.wait(job.id, timeout=WAIT)
    assert job.state == CANCELLED and job.result == "partial" and job.message == "stopped early"
    assert reg.cancel(job.id).state == CANCELLED  # a finished job is left as it is

    def cancelled_error(ctx: JobContext[Any]) -> Any:
        gate2.started.set()
        while not ctx.should_stop():
            ctx.job.stop.wait(0.01)
        raise LoraStudioError("download cancelled")

    gate2 = Gate()
    job = reg.submit("x", cancelled_error)
    assert gate2.started.wait(WAIT)
    reg.cancel(job.id)
    job = reg.wait(job.id, timeout=WAIT)
    assert job.state == CANCELLED and job.message == "download cancelled" and job.errors == []


def test_the_running_limit_queues_and_a_queued_cancel_never_starts() -> None:
    reg: BackgroundJobs[Any] = BackgroundJobs(max_running=1)
    first, second = Gate(), Gate()
    a = reg.submit("x", first)
    assert first.started.wait(WAIT)
    b = reg.submit("x", second)
    c = reg.submit("x", Gate())
    assert reg.get(b.id).state == QUEUED and reg.get(c.id).state == QUEUED
    assert reg.cancel(c.id).state == QUEUED  # ends when its turn comes
    assert reg.get(a.id).state == RUNNING
    first.open.set()
    assert second.started.wait(WAIT)
    second.open.set()
    assert reg.wait(a.id, timeout=WAIT).state == SUCCEEDED
    assert reg.wait(b.id, timeout=WAIT).state == SUCCEEDED
    c_job = reg.wait(c.id, timeout=WAIT)
    assert c_job.state == CANCELLED and c_job.message == "cancelled before it started" and c_job.started_at is None


def test_wait_returns_an_unfinished_job_after_the_timeout() -> None:
    reg: BackgroundJobs[Any] = BackgroundJobs()
    gate = Gate()
    job = reg.submit("x", gate)
    assert not reg.wait(job.id, timeout=0.05).done
    gate.open.set()
    assert reg.wait(job.id).state == SUCCEEDED  # no timeout: until it ends
    with pytest.raises(KeyError):
        reg.wait("nope")
    with pytest.raises(KeyError):
        reg.get("nope")
    with pytest.raises(KeyError):
        reg.cancel("nope")


def test_retention_forgets_the_earliest_finished_never_an_unfinished_job() -> None:
    reg: BackgroundJobs[Any] = BackgroundJobs(keep=3)
    gate = Gate()
    long = reg.submit("x", gate)  # the oldest, still running
    assert gate.started.wait(WAIT)
    ids = []
    for i in range(5):
        ids.append(reg.wait(reg.submit("x", lambda ctx, i=i: i).id, timeout=WAIT).id)
    kept = {j.id for j in reg.list()}
    assert kept == {long.id, *ids[-3:]}
    with pytest.raises(KeyError):
        reg.get(ids[0])
    gate.open.set()
    reg.wait(long.id, timeout=WAIT)
    # the job that ended last is kept even though it was created first
    assert {j.id for j in reg.list()} == {long.id, *ids[-2:]}
    with pytest.raises(ValueError):
        BackgroundJobs(keep=0)


def test_concurrent_submits_get_distinct_ids_and_all_finish() -> None:
    counter = iter(range(10**6))
    lock = threading.Lock()

    def fresh(kind: str) -> str:  # collides on purpose: the registry retries until the id is free
        with lock:
            return f"{kind}-{next(counter) % 50}"

    reg: BackgroundJobs[int] = BackgroundJobs(keep=1000, new_id=fresh)
    ids: list[str] = []
    ids_lock = threading.Lock()

    def submitter(n: int) -> None:
        for k in range(10):
            job = reg.submit("c", lambda ctx, v=n * 10 + k: v)
            with ids_lock:
                ids.append(job.id)

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(ids) == 40 and len(set(ids)) == 40
    results = sorted(reg.wait(i, timeout=WAIT).result or 0 for i in ids)
    assert results == list(range(40))
    listed = reg.list()
    assert {j.id for j in listed} == set(ids)
    assert all(a.created_at >= b.created_at for a, b in zip(listed, listed[1:], strict=False))  # newest first


def test_list_filters_by_kind_and_snapshot_is_a_copy() -> None:
    reg: BackgroundJobs[Any] = BackgroundJobs()
    a = reg.wait(reg.submit("fetch", lambda ctx: 1).id, timeout=WAIT)
    b = reg.wait(reg.submit("download", lambda ctx: 2).id, timeout=WAIT)
    assert [j.id for j in reg.list("download")] == [b.id]
    assert [j.id for j in reg.list()] == [b.id, a.id]
    snap = reg.snapshot(a.id)
    snap.errors.append("x")
    snap.meta["y"] = 1
    assert reg.get(a.id).errors == [] and reg.get(a.id).meta == {}
