"""The prompt hooks: rewrite every prompt of a generation job, batch by batch, and its infotext.

Its one job is what happens at ``process`` (:func:`process_hook`), ``before_process_batch``
(:func:`before_process_batch_hook`), ``postprocess`` and on infotext paste (:func:`infotext_pasted_hook`).
Where the prompt is rewritten (verified against A1111 v1.10.1 and Forge ``modules/processing.py``):

* ``before_process`` sees the raw ``p.prompt`` / ``p.hr_prompt``: too early, styles are not applied yet;
* ``setup_prompts`` applies styles and builds ``p.all_prompts``, ``p.all_negative_prompts`` and, for
  hires fix, ``p.all_hr_prompts`` / ``p.all_hr_negative_prompts``; then ``process`` runs — **here** every
  prompt of the job is rewritten, batch by batch (the WebUI loads only the first prompt's LoRAs per
  batch), and the infotext entry is set;
* per batch, ``before_process_batch`` runs just before ``parse_extra_network_prompts``: a prompt that a
  later script changed after us is rewritten again there, and ``p.all_prompts`` is updated with it so the
  infotext matches the image;
* names that the built-in Lora must find (aliases of shadowed files, files in extra folders) are put in
  its network table right before its lookup (:mod:`lib_lora.webui.builtin_lora`), so its rescan-on-miss
  (which clears the table) never runs.

The infotext gets a ``LoRA Studio`` entry (:data:`lib_lora.rewrite.INFOTEXT_KEY`); on paste,
:func:`infotext_pasted_hook` puts back the names LoRA Studio wrote where the built-in Lora's own paste
handler renamed them by hash, so "PNG Info -> Send to txt2img" regenerates the same image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib_lora.architecture import Detection
from lib_lora.settings import Settings
from lib_lora.webui.adapter import _console, _m, _opt, _ref, host
from lib_lora.webui.builtin_lora import (
    _lyco_registered,
    _table_changed,
    builtin_networks,
    builtin_table,
    ensure_loadable,
)

log = logging.getLogger("lora_studio")

#: Attribute LoRA Studio keeps its per-job state under on the processing object ``p``.
P_ATTR = "lora_studio_run"
#: Prefix of the lines LoRA Studio adds to the generation info (the toast script looks for it).
COMMENT_PREFIX = "LoRA Studio: "
#: How long a generation waits for the first library scan before passing prompts through.
SCAN_WAIT_SECONDS = 120.0

_WARNED_ONCE: set[str] = set()


def reset_for_tests() -> None:
    """Forget the warnings already shown once (tests only)."""
    _WARNED_ONCE.clear()


@dataclass
class _Run:
    """LoRA Studio's state for one generation job (kept on ``p``)."""

    settings: Any  # RewriteSettings
    checkpoint: Detection | None
    hr_checkpoint: Detection | None
    library: Any
    infotexts: dict[int, str] = field(default_factory=dict)
    produced: set[str] = field(default_factory=set)
    produced_hr: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    registered: dict[str, str] = field(default_factory=dict)
    passthrough_reason: str = ""

    def infotext_value(self, index: int) -> str | None:
        return self.infotexts.get(index) or None


def _warn(p: Any, run: _Run | None, message: str) -> None:
    """One warning: generation info comment (toast), console line, once per job."""
    line = " ".join(str(message).split())
    if run is not None:
        if line in run.warnings:
            return
        run.warnings.append(line)
    with contextlib.suppress(Exception):
        p.comment(COMMENT_PREFIX + line)
    _console(line)


def _rewrite_settings(settings: Settings) -> Any:
    from lib_lora.rewrite import RewriteSettings

    base = RewriteSettings.from_settings(settings)
    return dataclasses.replace(
        base, prompt_comments=bool(_opt("enable_prompt_comments", True)), lyco_as_lora=not _lyco_registered()
    )



def _batches(count: int, batch_size: int) -> list[range]:
    size = max(1, int(batch_size or 1))
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def _start_run(p: Any) -> _Run | None:
    h = host()
    settings = h.settings()
    for problem in settings.problems:
        if problem not in _WARNED_ONCE:
            _WARNED_ONCE.add(problem)
            _console(problem)
    if not settings.enabled:
        return None
    status = h.scan_status()
    if status.state in ("idle", "scanning"):
        if status.state == "scanning":
            _console(f"waiting for the LoRA index ({status.done}/{status.total or '?'} files)")
        status = h.wait_for_scan(SCAN_WAIT_SECONDS)
    library = None
    reason = ""
    if status.running:
        reason = "the LoRA index is still being built; prompts were passed to the WebUI unchanged"
    else:
        try:
            library = h.library()
        except Exception as exc:
            reason = f"the LoRA library is unavailable ({exc}); prompts were passed to the WebUI unchanged"
    checkpoint_ref = h.checkpoint_for_generation(p)
    checkpoint = h.checkpoint_detection(checkpoint_ref)
    hr_info = _hr_checkpoint_info(p)
    hr_checkpoint = h.checkpoint_detection(_ref(hr_info)) if hr_info is not None else checkpoint
    run = _Run(
        settings=_rewrite_settings(settings),
        checkpoint=checkpoint,
        hr_checkpoint=hr_checkpoint,
        library=library,
        passthrough_reason=reason,
    )
    setattr(p, P_ATTR, run)
    p.extra_generation_params[_infotext_key()] = _InfotextValue(run)
    if reason:
        _warn(p, run, reason)
    elif builtin_networks() is None:
        _warn_once(
            p, run, "the built-in Lora extension is not loaded: LoRA tags are resolved but nothing loads them"
        )
    return run


def _hr_checkpoint_info(p: Any) -> Any | None:
    """The hires pass's own checkpoint, if one is chosen (txt2img resolves ``hr_checkpoint_name`` only in
    ``init``, after ``process``: resolve it the same way here)."""
    info = getattr(p, "hr_checkpoint_info", None)
    if info is not None:
        return info
    name = getattr(p, "hr_checkpoint_name", None) if getattr(p, "enable_hr", False) else None
    if not name or name == "Use same checkpoint":
        return None
    try:
        return _m("modules.sd_models").get_closet_checkpoint_match(name)
    except Exception:
        return None


def _warn_once(p: Any, run: _Run, message: str) -> None:
    if message in _WARNED_ONCE:
        return
    _WARNED_ONCE.add(message)
    _warn(p, run, message)


def _infotext_key() -> str:
    from lib_lora.rewrite import INFOTEXT_KEY

    return INFOTEXT_KEY


class _InfotextValue:
    """Callable infotext value: the WebUI calls it per image with ``index`` among its keyword arguments."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def __call__(self, index: int = 0, **kwargs: Any) -> str | None:
        return self.run.infotext_value(int(index or 0))


def _rewrite_slice(
    run: _Run,
    prompts: Sequence[str],
    negatives: Sequence[str],
    checkpoint: Detection | None,
) -> Any:
    from lib_lora.rewrite import rewrite_batch

    return rewrite_batch(
        list(prompts),
        list(negatives),
        run.library,
        checkpoint=checkpoint,
        settings=run.settings,
        builtin_names=builtin_table(),
    )


def _any_missing(batch: Any) -> bool:
    from lib_lora.rewrite import MISSING

    return any(t.status == MISSING for r in batch.results for t in r.tags)


def _rewrite_with_retry(
    p: Any, run: _Run, prompts: Sequence[str], negatives: Sequence[str], checkpoint: Any
) -> Any:
    batch = _rewrite_slice(run, prompts, negatives, checkpoint)
    if _any_missing(batch) and host().rescan_after_miss():
        # A file added since the last scan (a fresh training result, a download): look once more.
        run.library = host().library()
        batch = _rewrite_slice(run, prompts, negatives, checkpoint)
    return batch


def _register(p: Any, run: _Run, batch: Any) -> None:
    for result in batch.results:
        wanted = dict(result.aliases)
        for loader, path in result.loras:
            if loader and path:
                wanted.setdefault(loader, path)
        for name, path in wanted.items():
            if run.registered.get(name) == path and not _table_changed(name, path):
                continue
            try:
                ensure_loadable(name, path)
                run.registered[name] = path
            except Exception as exc:
                _warn(p, run, f"could not register {name} with the built-in Lora: {exc}")



def process_hook(p: Any) -> None:
    """``Script.process``: rewrite ``all_prompts`` (+ negatives, + hires prompts) batch by batch."""
    run = _start_run(p)
    if run is None or run.library is None:
        return
    prompts = list(p.all_prompts or [])
    negatives = list(p.all_negative_prompts or [""] * len(prompts))
    hires = bool(getattr(p, "enable_hr", False)) and getattr(p, "all_hr_prompts", None) is not None
    hr_prompts = list(p.all_hr_prompts) if hires else []
    hr_negatives = list(getattr(p, "all_hr_negative_prompts", None) or negatives) if hires else []
    batch_size = int(getattr(p, "batch_size", 1) or 1)

    for span in _batches(len(prompts), batch_size):
        batch = _rewrite_with_retry(
            p, run, prompts[span.start : span.stop], negatives[span.start : span.stop], run.checkpoint
        )
        _apply(p, run, batch, span, prompts, negatives, run.produced)
        hr_batch = None
        if hires and span.stop <= len(hr_prompts):
            hr_batch = _rewrite_with_retry(
                p,
                run,
                hr_prompts[span.start : span.stop],
                hr_negatives[span.start : span.stop],
                run.hr_checkpoint,
            )
            _apply(p, run, hr_batch, span, hr_prompts, hr_negatives, run.produced_hr)
        for offset, index in enumerate(span):
            run.infotexts[index] = _merge_infotext(
                batch.results[offset].infotext,
                hr_batch.results[offset].infotext if hr_batch is not None else "",
            )
        for warning in _batch_warnings(batch, hr_batch):
            _warn(p, run, warning)

    p.all_prompts = prompts
    p.all_negative_prompts = negatives
    if prompts:
        p.main_prompt = prompts[0]
        p.main_negative_prompt = negatives[0] if negatives else ""
    if hires:
        p.all_hr_prompts = hr_prompts
        p.all_hr_negative_prompts = hr_negatives


def _apply(
    p: Any, run: _Run, batch: Any, span: range, prompts: list[str], negatives: list[str], produced: set[str]
) -> None:
    for offset, index in enumerate(span):
        result = batch.results[offset]
        prompts[index] = result.prompt
        if index < len(negatives):
            negatives[index] = result.negative
        produced.add(result.prompt)
    _register(p, run, batch)


def _batch_warnings(batch: Any, hr_batch: Any | None) -> list[str]:
    out: list[str] = []
    for b in (batch, hr_batch):
        if b is None:
            continue
        for w in b.all_warnings:
            if w not in out:
                out.append(w)
    return out


def _merge_infotext(main: str, hires: str) -> str:
    if not hires or hires == main:
        return main
    if not main:
        return hires
    return f"{main}; {hires}"


def before_process_batch_hook(
    p: Any, *, batch_number: int = 0, prompts: list[str] | None = None, **kwargs: Any
) -> None:
    """``Script.before_process_batch``: rewrite what a later script changed after :func:`process_hook`.

    ``prompts`` is the list ``p.prompts`` the WebUI parses next; it is changed in place, and
    ``p.all_prompts`` with it so the infotext shows what was generated.
    """
    run = getattr(p, P_ATTR, None)
    if run is None or run.library is None or prompts is None:
        return
    batch_size = int(getattr(p, "batch_size", 1) or 1)
    start = batch_number * batch_size
    span = range(start, start + len(prompts))
    negs = list(getattr(p, "negative_prompts", None) or [""] * len(prompts))
    if any(pr not in run.produced for pr in prompts):
        batch = _rewrite_with_retry(p, run, prompts, negs, run.checkpoint)
        for offset, result in enumerate(batch.results):
            index = span[offset]
            if result.prompt != prompts[offset]:
                prompts[offset] = result.prompt
                _set_at(p, "all_prompts", index, result.prompt)
                run.infotexts[index] = result.infotext
            if offset < len(negs) and result.negative != negs[offset]:
                p.negative_prompts[offset] = result.negative
                _set_at(p, "all_negative_prompts", index, result.negative)
            run.produced.add(result.prompt)
        _register(p, run, batch)
        for warning in batch.all_warnings:
            _warn(p, run, warning)
    hr_all = getattr(p, "all_hr_prompts", None) if getattr(p, "enable_hr", False) else None
    if hr_all is not None and span.stop <= len(hr_all):
        hr_slice = list(hr_all[span.start : span.stop])
        if any(pr not in run.produced_hr for pr in hr_slice):
            hr_negs = list(
                (getattr(p, "all_hr_negative_prompts", None) or [""] * len(hr_all))[span.start : span.stop]
            )
            hr_batch = _rewrite_with_retry(p, run, hr_slice, hr_negs, run.hr_checkpoint)
            for offset, result in enumerate(hr_batch.results):
                index = span[offset]
                hr_all[index] = result.prompt
                if getattr(p, "all_hr_negative_prompts", None) is not None:
                    p.all_hr_negative_prompts[index] = result.negative
                run.produced_hr.add(result.prompt)
            _register(p, run, hr_batch)
            for warning in hr_batch.all_warnings:
                _warn(p, run, warning)
    # The built-in table may have been rebuilt since process() (its own rescan, a refresh click).
    for name, path in list(run.registered.items()):
        if _table_changed(name, path):
            ensure_loadable(name, path)


def _set_at(p: Any, attr: str, index: int, value: str) -> None:
    seq = getattr(p, attr, None)
    if isinstance(seq, list) and 0 <= index < len(seq):
        seq[index] = value


def postprocess_hook(p: Any, processed: Any) -> None:
    """``Script.postprocess``: nothing to undo; the per-job state is dropped."""
    with contextlib.suppress(Exception):
        delattr(p, P_ATTR)


# ------------------------------------------------------------------------------------------------
# paste


def _raw_prompt(infotext: str) -> str:
    """The positive prompt of a raw infotext, split the way the WebUI splits it."""
    import re

    param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
    *lines, last = infotext.strip().split("\n")
    if len(param.findall(last)) < 3:
        lines.append(last)
    out: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            break
        out.append(line)
    return "\n".join(out)


def infotext_pasted_hook(infotext: str, params: dict[str, Any]) -> None:
    """``on_infotext_pasted``: keep the LoRA names LoRA Studio wrote.

    The built-in Lora's paste handler (which runs before this one) renames ``<lora:NAME:`` by the hash in
    "Lora hashes" to the file's alias — for a shadowed file that is the ambiguous name again. The names in
    the raw infotext are the ones LoRA Studio can resolve to exactly the recorded files, so they are put
    back. Nothing else in the prompt is touched; the pasted prompt is already rewritten and rewriting it
    again gives the same prompt.
    """
    from lib_lora.prompt import iter_tags
    from lib_lora.rewrite import INFOTEXT_KEY, parse_infotext

    value = params.get(INFOTEXT_KEY)
    if not value or "Prompt" not in params:
        return
    try:
        record = parse_infotext(str(value))
    except Exception:
        return
    ours = set(record.loader_paths())
    if not ours:
        return
    raw_tags = [t for t in iter_tags(_raw_prompt(infotext)) if t.is_lora]
    pasted = str(params["Prompt"])
    now_tags = [t for t in iter_tags(pasted) if t.is_lora]
    if len(raw_tags) != len(now_tags):
        return
    pieces: list[str] = []
    pos = 0
    changed = False
    for raw, now in zip(raw_tags, now_tags, strict=True):
        if raw.name in ours and now.name != raw.name and now.span is not None and now.network == raw.network:
            from lib_lora.prompt import format_tag

            start, end = now.span
            pieces.append(pasted[pos:start])
            pieces.append(format_tag(now.with_name(raw.name or "")))
            pos = end
            changed = True
    if changed:
        pieces.append(pasted[pos:])
        params["Prompt"] = "".join(pieces)


def guarded(fn: Callable[..., Any], p: Any, *args: Any, **kwargs: Any) -> None:
    """Run a hook; a bug in LoRA Studio becomes one visible warning, never a failed generation."""
    try:
        fn(p, *args, **kwargs)
    except Exception as exc:
        log.exception("LoRA Studio hook %s failed", getattr(fn, "__name__", fn))
        _warn(
            p,
            getattr(p, P_ATTR, None),
            f"internal error in {getattr(fn, '__name__', 'a hook')}: {exc!r}; "
            "the prompt may not have been rewritten",
        )
