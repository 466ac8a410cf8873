"""Live parser for the console output of kohya sd-scripts, and failure classification from its text.

sd-scripts writes three kinds of output, interleaved on two streams:

* tqdm progress bars on stderr, each update starting with ``\\r`` and none ending with a newline
  (``steps:  50%|█████     | 2/4 [00:02<00:02,  1.46s/it, avr_loss=1.07]``); a log line may be glued
  right after a bar without any separator;
* ``rich`` log records on stderr, wrapped at the console width (80 columns when not a terminal):
  a head line ``<time or blanks> LEVEL    message…    file.py:NN`` and continuation lines indented to
  the message column, long words folded mid-word;
* plain ``print`` lines on stdout (``epoch 1/4``, ``saving checkpoint: <path>``, the
  ``running training`` summary) and Python tracebacks on stderr.

:class:`LogParser` is fed raw byte chunks as they arrive (any chunking: partial lines, split UTF-8
sequences, a ``\\r`` at a chunk's end) and returns typed events. :func:`classify` turns the trainer's
text, exit code and whether the output file exists into a :class:`Failure` with plain advice — from
the text, because under ``accelerate launch`` every failure is exit code 1.
"""

from __future__ import annotations

import codecs
import os
import re
import signal
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

STDOUT = "stdout"
STDERR = "stderr"

# --------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Progress:
    """One update of the training-step bar (tqdm ``steps``)."""

    step: int
    total: int
    rate: float | None  # iterations per second (``1.45s/it`` is normalised to 0.69)
    elapsed: float | None  # seconds
    eta_seconds: float | None
    loss: float | None  # ``avr_loss`` (moving average over the epoch), when shown


@dataclass(frozen=True)
class TaskProgress:
    """Any other tqdm bar (caching latents, reading captions, sample generation, validation)."""

    label: str  # the bar's description, else the last log message before it
    n: int
    total: int | None


@dataclass(frozen=True)
class RunInfo:
    """The ``running training / 学習開始`` summary sd-scripts prints before the first step."""

    total_steps: int | None
    epochs: int | None
    images: int | None  # num train images * repeats
    batches_per_epoch: int | None
    batch_size: int | None
    gradient_accumulation: int | None


@dataclass(frozen=True)
class Epoch:
    n: int
    total: int


@dataclass(frozen=True)
class Saved:
    """``saving checkpoint: <path>`` — a periodic or final LoRA file."""

    path: str


@dataclass(frozen=True)
class Sample:
    """A new sample image in ``<output_dir>/sample`` (found by :class:`SampleWatcher`)."""

    path: str


@dataclass(frozen=True)
class Log:
    """One log record (rich records re-joined from their wrapped lines) or one plain line."""

    level: str  # DEBUG/INFO/WARNING/ERROR/CRITICAL for rich records, "" for plain lines
    text: str
    stream: str = STDERR


@dataclass(frozen=True)
class Error:
    """A line that reports a failure; ``kind`` is one of the ``FailureKind`` names."""

    kind: str
    text: str


Event = Progress | TaskProgress | RunInfo | Epoch | Saved | Sample | Log | Error

# ------------------------------------------------------------------------------------ failure kinds


class FailureKind:
    OOM = "oom"
    DISK_FULL = "disk_full"
    TOKENIZER_OFFLINE = "tokenizer_offline"
    MODEL_MISSING = "model_missing"
    RESOLUTION_MISSING = "resolution_missing"
    NO_IMAGES = "no_images"
    ENVIRONMENT = "environment_missing"
    KILLED = "killed"
    NO_OUTPUT = "no_output"
    INTERRUPTED = "interrupted"  # LoRA Studio was restarted and the trainer did not survive
    GENERIC = "generic"


@dataclass(frozen=True)
class Failure:
    """Why a training run failed, in words a user can act on."""

    kind: str
    message: str  # one line
    advice: tuple[str, ...] = ()
    detail: str = ""  # the trainer's last error lines

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "message": self.message, "advice": list(self.advice), "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Failure:
        advice = data.get("advice") or ()
        return cls(
            kind=str(data.get("kind", FailureKind.GENERIC)),
            message=str(data.get("message", "")),
            advice=tuple(str(a) for a in advice) if isinstance(advice, (list, tuple)) else (),
            detail=str(data.get("detail", "")),
        )


#: (kind, pattern) in priority order: the first kind whose pattern occurs anywhere in the text wins.
#: Tokenizer comes before environment: offline, transformers hides the missing tokenizer behind an
#: ImportError about protobuf.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        FailureKind.OOM,
        re.compile(
            r"CUDA out of memory|OutOfMemoryError|HIP out of memory|MPS backend out of memory"
            r"|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_(?:ALLOC_FAILED|NOT_ENOUGH_WORKSPACE)"
            r"|DefaultCPUAllocator: can't allocate memory|Unable to allocate [\d.]+ \w?i?B",
            re.I,
        ),
    ),
    (
        FailureKind.DISK_FULL,
        re.compile(r"No space left on device|\bENOSPC\b|\[Errno 28\]|PytorchStreamWriter failed writing file", re.I),
    ),
    (
        FailureKind.TOKENIZER_OFFLINE,
        re.compile(
            r"requires the protobuf library but it was not found|import_protobuf_decode_error"
            r"|Can't load tokenizer for|couldn't connect to 'https://huggingface\.co'"
            r"|LocalEntryNotFoundError|offline mode is enabled|Cannot find the requested files in the disk cache",
            re.I,
        ),
    ),
    (
        FailureKind.MODEL_MISSING,
        re.compile(
            r"is neither a valid local path nor a valid repo id|Repository Not Found"
            r"|HFValidationError|does not appear to have a file named model_index\.json"
            r"|No such file or directory: '[^']*\.(?:safetensors|ckpt|pt|bin|sft|gguf)'",
            re.I,
        ),
    ),
    (FailureKind.RESOLUTION_MISSING, re.compile(r"resolution is required", re.I)),
    (FailureKind.NO_IMAGES, re.compile(r"No data found\.|no image found|画像がありません")),
    (
        FailureKind.ENVIRONMENT,
        re.compile(
            r"No module named|ModuleNotFoundError|Error while finding module specification"
            r"|accelerate: (?:command )?not found|Torch not compiled with CUDA enabled"
            r"|no kernel image is available for execution|trainer environment (?:is )?(?:missing|not found)",
            re.I,
        ),
    ),
)

_SIGNAL_RE = re.compile(r"died with <Signals\.(SIG\w+): (\d+)>|^Killed\s*$", re.M)
_EXCEPTION_RE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit)\b(?::.*)?$")
_MODULE_RE = re.compile(r"No module named '?([\w.]+)'?")
_MODEL_PATH_RES = (
    re.compile(r'pretrained_model_name_or_path "([^"]+)"'),
    re.compile(r"No such file or directory: '([^']+\.(?:safetensors|ckpt|pt|bin|sft|gguf))'"),
)

_ADVICE: dict[str, tuple[str, tuple[str, ...]]] = {
    FailureKind.OOM: (
        "The GPU ran out of memory (CUDA out of memory).",
        (
            "Lower the batch size (1 or 2) or the resolution (512 for SD1.5, 768–1024 for SDXL).",
            "Enable gradient checkpointing.",
            "Cache latents (and text-encoder outputs for SDXL) and train the U-Net only.",
            "With the fast preset, pick a smaller batch size; free the WebUI's model from VRAM and close "
            "other programs using the GPU.",
        ),
    ),
    FailureKind.DISK_FULL: (
        "The disk is full (No space left on device).",
        (
            "Free space on the drive holding the output folder and the job folder.",
            "Save less often (a larger --save_every_n_steps) or keep fewer saves and states.",
        ),
    ),
    FailureKind.TOKENIZER_OFFLINE: (
        "The CLIP tokenizer could not be loaded: it is not cached and the Hugging Face hub is not "
        "reachable (the message about protobuf in the log is misleading).",
        (
            "Go online once so sd-scripts can download it, or set a tokenizer cache folder "
            "(--tokenizer_cache_dir) holding openai_clip-vit-large-patch14 (and, for SDXL, "
            "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k).",
        ),
    ),
    FailureKind.MODEL_MISSING: (
        "The base model was not found.",
        (
            "Check that the checkpoint file still exists and is a .safetensors/.ckpt file or a diffusers "
            "folder; choose it again from the list.",
        ),
    ),
    FailureKind.RESOLUTION_MISSING: (
        "The dataset has no training resolution (sd-scripts: resolution is required).",
        ("Set the resolution (e.g. 512 for SD1.5, 1024 for SDXL) in the advanced settings or the dataset TOML.",),
    ),
    FailureKind.NO_IMAGES: (
        "No training images were found (sd-scripts: No data found).",
        (
            "Point the training folder at the parent of the '<repeats>_<name>' folders (e.g. the folder "
            "containing '10_mychar'), not at the image folder itself.",
            "Check that the images are .png, .jpg, .jpeg, .webp or .bmp files.",
        ),
    ),
    FailureKind.ENVIRONMENT: (
        "The trainer environment is missing or incomplete.",
        (
            "Create or repair the trainer environment (Train tab → Trainer environment), or point the "
            "settings to a working sd-scripts / kohya_ss install.",
        ),
    ),
    FailureKind.KILLED: (
        "The trainer was killed.",
        (
            "This is usually the system running out of RAM (the OOM killer; see `dmesg`): close other "
            "programs, lower the batch size, use fewer data-loader workers, cache latents to disk.",
        ),
    ),
    FailureKind.NO_OUTPUT: (
        "The trainer finished without an error but wrote no LoRA file.",
        ("Check the log below; make sure the output folder is writable and the step count is above 0.",),
    ),
    FailureKind.INTERRUPTED: (
        "LoRA Studio was restarted while training.",
        ("Resume the job to continue from its last saved state, or start it again.",),
    ),
    FailureKind.GENERIC: ("The trainer failed.", ("See the last lines of the log below.",)),
}


def failure_for(kind: str, message: str | None = None, detail: str = "") -> Failure:
    """A :class:`Failure` of ``kind`` with the standard advice (``message`` overrides the standard one)."""
    default, advice = _ADVICE.get(kind, _ADVICE[FailureKind.GENERIC])
    return Failure(kind, message or default, advice, detail)


def error_kind(text: str) -> str | None:
    """The failure kind a single line or text points to, or ``None``."""
    for kind, pattern in _RULES:
        if pattern.search(text):
            return kind
    return None


def _last_error_lines(text: str, limit: int = 12) -> str:
    """The end of the trainer's own last traceback (not accelerate's wrapper around it), else the
    last lines."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip() and ln.strip(" ^~")]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("Traceback (most recent call last)")]
    chosen = lines
    for pos in range(len(starts) - 1, -1, -1):
        end = starts[pos + 1] if pos + 1 < len(starts) else len(lines)
        block = lines[starts[pos] : end]
        chosen = block
        if not any("CalledProcessError" in ln for ln in block):
            # the trainer's traceback runs on until accelerate's; keep what came after it too
            # (e.g. an exception message on several lines) but not the wrapper itself
            break
    return "\n".join(chosen[-limit:])


def last_exception(text: str) -> str | None:
    """The last ``SomeError: message`` line that is not accelerate's ``CalledProcessError`` wrapper."""
    found = None
    for line in text.splitlines():
        s = line.strip()
        if _EXCEPTION_RE.match(s) and not s.startswith("subprocess.CalledProcessError"):
            found = s
    return found


def classify(text: str, exit_code: int | None, output_exists: bool) -> Failure | None:
    """Why a run failed, or ``None`` when it succeeded (exit code 0 **and** an output file).

    ``exit_code`` is ``None`` when unknown (a run watched after a restart), negative for a signal
    (as :mod:`subprocess` reports it). A run that exits 0 without a file is a failure: with
    ``No data found`` in the text it is :attr:`FailureKind.NO_IMAGES`, else :attr:`FailureKind.NO_OUTPUT`.
    """
    if exit_code == 0 and output_exists:
        return None
    detail = _last_error_lines(text)
    for kind, pattern in _RULES:
        m = pattern.search(text)
        if m is None:
            continue
        message, advice = _ADVICE[kind]
        if kind == FailureKind.MODEL_MISSING:
            for rx in _MODEL_PATH_RES:
                pm = rx.search(text)
                if pm:
                    message = f"The base model was not found: {pm.group(1)}"
                    break
        elif kind == FailureKind.ENVIRONMENT:
            mm = _MODULE_RE.search(text)
            if mm:
                message = f"The trainer environment is incomplete: Python module '{mm.group(1)}' is missing."
            elif "CUDA" in m.group(0) or "kernel image" in m.group(0):
                message = f"The trainer environment's torch cannot use this GPU ({m.group(0)})."
        elif kind == FailureKind.OOM and ("CPU" in m.group(0) or m.group(0).startswith("Unable to allocate")):
            message = "The computer ran out of memory (RAM)."
        return Failure(kind, message, advice, detail)
    sig = _signal_of(text, exit_code)
    if sig is not None:
        message, advice = _ADVICE[FailureKind.KILLED]
        return Failure(FailureKind.KILLED, f"The trainer was killed ({sig}).", advice, detail)
    if exit_code == 0:
        message, advice = _ADVICE[FailureKind.NO_OUTPUT]
        return Failure(FailureKind.NO_OUTPUT, message, advice, detail)
    message, advice = _ADVICE[FailureKind.GENERIC]
    exc = last_exception(text)
    code = "unknown exit code" if exit_code is None else f"exit code {exit_code}"
    message = f"The trainer failed ({code}): {exc}" if exc else f"The trainer failed ({code})."
    return Failure(FailureKind.GENERIC, message, advice, detail)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _signal_of(text: str, exit_code: int | None) -> str | None:
    if exit_code is not None and exit_code < 0:
        return _signal_name(-exit_code)
    if exit_code is not None and exit_code in (128 + 9, 128 + 15):  # shells and some launchers
        return _signal_name(exit_code - 128)
    matches = list(_SIGNAL_RE.finditer(text))
    if matches:
        return matches[-1].group(1) or "SIGKILL"
    return None


# ---------------------------------------------------------------------------------------- the parser

_ANSI_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_TQDM_RE = re.compile(
    r"(?P<desc>[^\n|]*?)(?P<pct>\d{1,3})%\|(?P<bar>[^|\n]*)\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[^<\]\n]*)<(?P<remaining>[^,\]\n]*),\s*(?P<rate>[^,\]\n]*)(?P<postfix>,[^\]\n]*)?\]"
)
_TQDM_NOTOTAL_RE = re.compile(
    r"(?P<desc>[^\n|\[]*?)(?P<n>\d+)it \[(?P<elapsed>[^,\]\n<]*),\s*(?P<rate>[^,\]\n]*)(?P<postfix>,[^\]\n]*)?\]"
)
_RATE_RE = re.compile(r"(?P<v>\d+(?:\.\d+)?)\s*(?P<k>[kMG]?)(?P<unit>it/s|s/it)")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HEAD_RE = re.compile(
    r"^(?P<time>\[?\d[\d/:\- .,]*\d\]?|\s*) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)(?: |$)"
)
_PATH_RE = re.compile(r"(?<= )(?P<path>[\w.\-]+\.py:\d+)\s*$")
_EPOCH_RE = re.compile(r"^epoch (\d+)/(\d+)$")
_SAVE_RE = re.compile(r"^saving checkpoint: (.+?)\s*$")
_SUMMARY_RE = re.compile(r"^\s+(num train images \* repeats|num batches per epoch|num epochs|batch size per device"
                         r"|gradient accumulation steps|total optimization steps) /.*?[:=]\s*(\d+)\s*$")
_SUMMARY_KEYS = {
    "num train images * repeats": "images",
    "num batches per epoch": "batches_per_epoch",
    "num epochs": "epochs",
    "batch size per device": "batch_size",
    "gradient accumulation steps": "gradient_accumulation",
    "total optimization steps": "total_steps",
}
_SAMPLE_PARAM_RE = re.compile(
    r"^(?:prompt|negative_prompt|height|width|sample_steps|scale|sample_sampler|seed|controlnet_image"
    r"|guidance_scale|cfg_scale|flow_shift|scheduler)\b"
)
_MAX_PENDING = 1 << 20  # a "line" longer than this without a terminator is emitted as is


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def parse_duration(text: str) -> float | None:
    """``05:03`` / ``1:02:03`` / ``2d 01:00:00`` (tqdm's formats) -> seconds; ``?`` -> None."""
    text = text.strip()
    days = 0
    if "d " in text:
        d, _, text = text.partition("d ")
        if not d.strip().isdigit():
            return None
        days = int(d)
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.strip().isdigit() for p in parts):
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    return float(seconds + days * 86400)


def parse_rate(text: str) -> float | None:
    """tqdm's rate (``12.5it/s``, ``1.45s/it``, ``1.2kit/s``, ``?it/s``) -> iterations per second."""
    m = _RATE_RE.search(text)
    if not m:
        return None
    value = float(m.group("v")) * {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}[m.group("k")]
    if m.group("unit") == "s/it":
        return 1.0 / value if value > 0 else None
    return value


def parse_postfix(text: str | None) -> dict[str, float]:
    """``, avr_loss=1.07, lr=1e-4`` -> ``{"avr_loss": 1.07, "lr": 0.0001}`` (non-numbers skipped)."""
    out: dict[str, float] = {}
    if not text:
        return out
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        try:
            out[key.strip()] = float(value.strip())
        except ValueError:
            continue
    return out


@dataclass
class _Record:
    """A rich log record being re-joined from its wrapped lines."""

    level: str
    msg_col: int
    path_width: int
    text: str
    last_folded: bool


@dataclass
class _StreamState:
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    pending: str = ""
    emitted_partial: str = ""  # a complete tqdm bar at the end of `pending` already reported
    record: _Record | None = None
    in_traceback: bool = False


class LogParser:
    """Incremental parser: ``feed(chunk, stream)`` returns the events completed by that chunk.

    Chunking never changes the result: feeding a log in one piece or byte by byte gives the same
    events (a rich record is emitted when the next line shows it has ended, or on :meth:`flush`).
    """

    def __init__(self) -> None:
        self._streams: dict[str, _StreamState] = {}
        self._last_message = ""
        self._summary: dict[str, int] = {}

    # -- input

    def feed(self, data: bytes | str, stream: str = STDERR) -> list[Event]:
        st = self._streams.setdefault(stream, _StreamState())
        text = data if isinstance(data, str) else st.decoder.decode(data)
        if not text:
            return []
        st.pending += text
        return self._drain(st, stream, final=False)

    def close(self, stream: str | None = None) -> list[Event]:
        """End of a stream (or of all): emit what is left, partial line and open record included."""
        names = [stream] if stream is not None else list(self._streams)
        events: list[Event] = []
        for name in names:
            st = self._streams.get(name)
            if st is None:
                continue
            st.pending += st.decoder.decode(b"", final=True)
            events += self._drain(st, name, final=True)
            events += self._end_record(st, name)
        return events

    def flush(self) -> list[Event]:
        """Emit open log records now (call when a stream has been quiet for a while)."""
        events: list[Event] = []
        for name, st in self._streams.items():
            events += self._end_record(st, name)
        return events

    # -- segmentation

    def _drain(self, st: _StreamState, stream: str, *, final: bool) -> list[Event]:
        events: list[Event] = []
        buf = st.pending
        start = 0
        n = len(buf)
        i = 0
        while i < n:
            c = buf[i]
            if c == "\n" or c == "\r":
                if c == "\r" and i + 1 == n and not final:
                    break  # may be the first half of \r\n
                seg = buf[start:i]
                if c == "\r" and buf[i + 1 : i + 2] == "\n":
                    i += 1
                    c = "\n"
                events += self._segment(st, stream, seg)
                start = i + 1
            i += 1
        st.pending = buf[start:]
        if st.pending:
            if final or len(st.pending) > _MAX_PENDING:
                events += self._segment(st, stream, st.pending)
                st.pending = ""
            else:
                events += self._maybe_partial_bar(st, stream)
        return events

    def _maybe_partial_bar(self, st: _StreamState, stream: str) -> list[Event]:
        """Report a complete tqdm bar at the end of the buffer without waiting for the next ``\\r``."""
        text = _ANSI_RE.sub("", st.pending)
        if st.emitted_partial or not text.rstrip().endswith("]"):
            return []
        m = _TQDM_RE.match(text) or _TQDM_NOTOTAL_RE.match(text)
        if m is None or text[m.end() :].strip():
            return []
        # a trailing "\r" held back as the possible first half of "\r\n" ends the bar: not part of its text
        st.emitted_partial = st.pending.rstrip("\r")
        return self._bar(st, stream, m)

    def _segment(self, st: _StreamState, stream: str, raw: str) -> list[Event]:
        already = st.emitted_partial
        st.emitted_partial = ""
        text = _ANSI_RE.sub("", raw)
        events: list[Event] = []
        while True:
            m = _TQDM_RE.match(text) or _TQDM_NOTOTAL_RE.match(text)
            if m is None:
                break
            if not (already and raw.startswith(already)):
                events += self._bar(st, stream, m)
            already = ""
            text = text[m.end() :]
        if text.strip() or (not events and not already):
            events += self._line(st, stream, text.rstrip("\r\n"))
        return events

    # -- bars

    def _bar(self, st: _StreamState, stream: str, m: re.Match[str]) -> list[Event]:
        events = self._end_record(st, stream)
        desc = m.group("desc").strip().rstrip(":").strip()
        n = int(m.group("n"))
        total = int(m.group("total")) if "total" in m.groupdict() and m.group("total") else None
        if desc == "steps" and total is not None:
            remaining = m.groupdict().get("remaining")
            postfix = parse_postfix(m.group("postfix"))
            events.append(
                Progress(
                    step=n,
                    total=total,
                    rate=parse_rate(m.group("rate")),
                    elapsed=parse_duration(m.group("elapsed")),
                    eta_seconds=parse_duration(remaining) if remaining is not None else None,
                    loss=postfix.get("avr_loss", postfix.get("loss")),
                )
            )
        else:
            events.append(TaskProgress(label=desc or self._last_message, n=n, total=total))
        return events

    # -- lines and rich records

    def _line(self, st: _StreamState, stream: str, line: str) -> list[Event]:
        rec = st.record
        if rec is not None and self._is_continuation(line, rec):
            self._continue(rec, line)
            return []
        events = self._end_record(st, stream)
        head = _HEAD_RE.match(line)
        if head is not None and head.start("level") >= 1 and (head.group("time").strip() or head.start("level") >= 10):
            level = head.group("level")
            msg_col = head.start("level") + 9
            body = line[msg_col:] if len(line) > msg_col else ""
            pm = _PATH_RE.search(body)
            if pm is not None:
                path = pm.group("path")
                message = body[: pm.start()].rstrip()
                gap = pm.start() - len(message)
                folded = gap <= 1 and " " not in message.strip()
                st.record = _Record(level, msg_col, len(path), message.strip(), folded)
            else:
                st.record = _Record(level, msg_col, -1, body.strip(), False)
            return events
        if line.strip():
            events += self._plain(st, line, stream)
        return events

    @staticmethod
    def _is_continuation(line: str, rec: _Record) -> bool:
        if len(line) <= rec.msg_col:
            return not line.strip() and len(line) >= rec.msg_col  # a padded blank line inside a record
        return not line[: rec.msg_col].strip()

    @staticmethod
    def _continue(rec: _Record, line: str) -> None:
        content = line[rec.msg_col :].rstrip()
        if not content.strip():
            rec.last_folded = False
            if rec.text and not rec.text.endswith("\n"):
                rec.text += "\n"
            return
        indented = content[:1] == " "
        if rec.last_folded and not indented:
            sep = ""
        elif indented or rec.text.endswith("\n") or not rec.text:
            sep = "\n" if rec.text and not rec.text.endswith("\n") else ""
        else:
            sep = " "
        rec.text += sep + (content.rstrip() if indented else content.strip())
        trailing = len(line) - len(line.rstrip())
        # rich pads a wrapped line to the message width, then one space and the empty path column:
        # a line whose padding is only that was filled to the edge, i.e. a long word folded mid-word.
        rec.last_folded = (
            rec.path_width >= 0
            and trailing <= rec.path_width + 1
            and " " not in content.strip()
            and _display_width(content) == len(content)
        )

    def _end_record(self, st: _StreamState, stream: str) -> list[Event]:
        rec = st.record
        if rec is None:
            return []
        st.record = None
        text = "\n".join(ln.rstrip() for ln in rec.text.strip("\n").split("\n"))
        if not text:
            return []  # logger.info("") — sd-scripts uses it as a spacer
        events: list[Event] = [Log(rec.level, text, stream)]
        if not _SAMPLE_PARAM_RE.match(text):  # keep "generating sample images…" as the label
            self._last_message = text.split("\n", 1)[0]
        events += self._specials(text, stream)
        if rec.level in ("ERROR", "CRITICAL"):
            if not any(isinstance(e, Error) for e in events):
                events.append(Error(error_kind(text) or FailureKind.GENERIC, text))
        return events

    def _plain(self, st: _StreamState, line: str, stream: str) -> list[Event]:
        text = line.rstrip()
        events: list[Event] = [Log("", text, stream)]
        if text.startswith("Traceback (most recent call last)"):
            st.in_traceback = True
            return events
        if st.in_traceback:
            if text.startswith("  "):
                return events  # a frame or its source line: names of functions are not errors
            st.in_traceback = False
        events += self._specials(text, stream)
        s = text.strip()
        if not any(isinstance(e, Error) for e in events) and _EXCEPTION_RE.match(s):
            if not s.startswith("subprocess.CalledProcessError") or _SIGNAL_RE.search(s):
                kind = error_kind(s) or (FailureKind.KILLED if _SIGNAL_RE.search(s) else FailureKind.GENERIC)
                events.append(Error(kind, s))
        return events

    def _specials(self, text: str, stream: str) -> list[Event]:
        events: list[Event] = []
        first = text.strip()
        m = _EPOCH_RE.match(first)
        if m:
            events.append(Epoch(int(m.group(1)), int(m.group(2))))
        m = _SAVE_RE.match(first)
        if m:
            events.append(Saved(m.group(1)))
        m = _SUMMARY_RE.match(text)
        if m:
            key = _SUMMARY_KEYS[m.group(1)]
            self._summary[key] = int(m.group(2))
            if key == "total_steps":
                s = self._summary
                events.append(
                    RunInfo(
                        total_steps=s.get("total_steps"),
                        epochs=s.get("epochs"),
                        images=s.get("images"),
                        batches_per_epoch=s.get("batches_per_epoch"),
                        batch_size=s.get("batch_size"),
                        gradient_accumulation=s.get("gradient_accumulation"),
                    )
                )
                self._summary = {}
        kind = error_kind(text)
        if kind is not None:
            events.append(Error(kind, text.strip()))
        return events


def parse_all(chunks: list[tuple[str, bytes]]) -> list[Event]:
    """Parse ``[(stream, bytes), …]`` in order and close every stream (tests, replays of a job log)."""
    parser = LogParser()
    events: list[Event] = []
    for stream, data in chunks:
        events += parser.feed(data, stream)
    events += parser.close()
    return events


# -------------------------------------------------------------------------------------- sample images

SAMPLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


class SampleWatcher:
    """Reports image files that appear in ``<output_dir>/sample`` (sd-scripts does not log their names).

    Files present before ``since`` (a ``time.time()`` value; the run's start) are ignored, so a reused
    output folder does not show an older run's samples.
    """

    def __init__(self, sample_dir: str | os.PathLike[str], since: float | None = None) -> None:
        self.sample_dir = Path(sample_dir)
        self.since = since
        self._seen: set[str] = set()
        self._sizes: dict[str, int] = {}

    def poll(self, *, final: bool = False) -> list[Sample]:
        """New complete images, oldest first. A file is reported once its size is the same on two
        polls (it may still be being written); ``final=True`` (the trainer has exited) skips that wait."""
        try:
            entries = list(os.scandir(self.sample_dir))
        except OSError:
            return []
        new: list[tuple[float, str]] = []
        for entry in entries:
            if entry.name in self._seen or not entry.name.lower().endswith(SAMPLE_EXTENSIONS):
                continue
            try:
                st = entry.stat()
                is_file = entry.is_file()
            except OSError:
                continue
            if not is_file or st.st_size == 0:
                continue
            if not final and self._sizes.get(entry.name) != st.st_size:
                self._sizes[entry.name] = st.st_size
                continue
            self._seen.add(entry.name)
            self._sizes.pop(entry.name, None)
            if self.since is not None and st.st_mtime < self.since - 1.0:
                continue
            new.append((st.st_mtime, entry.path))
        return [Sample(path) for _mtime, path in sorted(new)]
