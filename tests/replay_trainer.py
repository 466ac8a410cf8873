"""A stand-in for ``accelerate launch train_network.py`` that replays a real kohya sd-scripts log.

The runner tests start this as a real subprocess. It writes the fixture log's bytes — stdout and
stderr on their own streams, tqdm updates as separate ``\\r`` chunks, rich records in one write —
compressed to ``--duration`` seconds, makes the files the real trainer would make (the LoRA files of
``saving checkpoint:`` lines, sample images, ``--save_state`` folders) and exits with the log's exit
code. Options make it misbehave the way real runs do: a child process that outlives its parent,
hanging, ignoring SIGTERM.

    python tests/replay_trainer.py --log sd15-ok --output_dir OUT --output_name NAME [options]

``--log`` names a fixture in ``tests/fixtures/kohya-logs`` (``sd15-ok`` replays ``sd15-ok.stdout`` and
``sd15-ok.stderr``; other names the ``.combined`` file). Unknown options are accepted and ignored,
like the real script's many flags, so a runner can pass a real sd-scripts argument list.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lib_lora.safetensors_header import read_header, write_file  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
LOGS = FIXTURES / "kohya-logs"
LORA_FIXTURE = FIXTURES / "kohya-outputs" / "sd15-kohya-dim4-mychar.safetensors"
SAMPLE_FIXTURE = FIXTURES / "kohya-outputs" / "sd15-sample-step4.png"

# Lines sd-scripts writes with print()/accelerator.print() — stdout — when a log has both streams in one file.
_STDOUT_LINE = re.compile(
    r"^(?:accelerator device:|import network module:|prepare optimizer|running training|  num |  batch size|"
    r"  gradient accumulation|  total optimization|epoch \d+/\d+|saving checkpoint:|enable full|$)"
)
_STEP_BAR = re.compile(rb"^steps:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
_SAVE = re.compile(rb"^saving checkpoint: (\S+?)\s*$")
_SAMPLE = re.compile(rb"generating sample images at step")
_EXIT_TRAILER = re.compile(rb"^(?:real|user|sys)\t|^rc=(\d+)\s*$")


def _pieces(data: bytes) -> list[bytes]:
    """Split into write()-sized pieces: each ``\\r`` update alone, each line with its terminator."""
    return [p for p in re.split(rb"(?<=\n)|(?=\r)", data) if p]


def _load(name: str) -> tuple[list[tuple[str, bytes]], int]:
    """The log as an ordered list of (stream, piece), and its exit code."""
    out_path, err_path = LOGS / f"{name}.stdout", LOGS / f"{name}.stderr"
    exit_code = 0
    if err_path.exists():
        err = _pieces(err_path.read_bytes())
        outs = _pieces(out_path.read_bytes()) if out_path.exists() else []
        return _merge(outs, err), exit_code
    path = Path(name) if Path(name).exists() else LOGS / f"{name}.combined"
    pieces: list[tuple[str, bytes]] = []
    for piece in _pieces(path.read_bytes()):
        m = _EXIT_TRAILER.match(piece)
        if m:  # the `time` and `rc=` trailer of the recording shell, not the trainer's output
            if m.group(1):
                exit_code = int(m.group(1))
            continue
        text = piece.decode("utf-8", "replace")
        pieces.append(("stdout" if _STDOUT_LINE.match(text.rstrip("\n")) and not text.startswith("\r") else "stderr", piece))
        if b"subprocess.CalledProcessError" in piece:
            exit_code = 1
    return pieces, exit_code


def _merge(outs: list[bytes], err: list[bytes]) -> list[tuple[str, bytes]]:
    """Interleave a run's stdout into its stderr where sd-scripts prints it: the start-up summary
    before the first step bar, ``epoch k/n`` after the bar's 0 %, each ``saving checkpoint`` after
    the last bar of its step (the final one after the last bar of all)."""
    head: list[bytes] = []
    epochs: list[bytes] = []
    saves: list[tuple[int | None, list[bytes]]] = []
    pending: list[bytes] = []
    for piece in outs:
        line = piece.strip()
        if line.startswith(b"saving checkpoint:"):
            m = re.search(rb"-step(\d+)\.", line)
            saves.append((int(m.group(1)) if m else None, pending + [piece]))
            pending = []
        elif line.startswith(b"epoch "):
            epochs.append(piece)
            pending = []
        elif saves or epochs:
            pending.append(piece)
        else:
            head.append(piece)
    last_bar: dict[int, int] = {}
    for i, piece in enumerate(err):
        m = _STEP_BAR.match(piece.lstrip(b"\r"))
        if m and b"avr_loss" in piece:
            last_bar.setdefault(int(m.group(1)), i)
    merged: list[tuple[str, bytes]] = []
    first_bar_done = False
    for i, piece in enumerate(err):
        m = _STEP_BAR.match(piece.lstrip(b"\r"))
        if m and not first_bar_done:
            merged += [("stdout", p) for p in head]
        merged.append(("stderr", piece))
        if m and not first_bar_done:
            first_bar_done = True
            merged += [("stdout", p) for p in epochs[:1]]
        for step, group in saves:
            if step is not None and last_bar.get(step) == i:
                merged += [("stdout", p) for p in group]
    final = [g for s, g in saves if s is None]
    if final:
        # the final save comes just before sd-scripts logs "model saved."
        idx = next((k for k, (_s, p) in enumerate(merged) if b"model saved." in p), len(merged))
        merged = merged[:idx] + [("stdout", p) for p in final[0] + pending] + merged[idx:]
    return merged


def _rewrite_save(piece: bytes, args: argparse.Namespace) -> tuple[bytes, Path]:
    m = _SAVE.match(piece.strip())
    assert m is not None
    name = Path(m.group(1).decode()).name
    stem_match = re.match(r"^(.*?)((?:-step\d+|-\d{6})?)(\.\w+)$", name)
    suffix, ext = (stem_match.group(2), stem_match.group(3)) if stem_match else ("", ".safetensors")
    path = Path(args.output_dir) / f"{args.output_name}{suffix}{ext}"
    return f"saving checkpoint: {path}\n".encode(), path


def _write_lora(path: Path, args: argparse.Namespace, step: int) -> None:
    header = read_header(LORA_FIXTURE)
    metadata = dict(header.metadata)
    metadata["ss_output_name"] = args.output_name
    metadata["ss_steps"] = str(step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write_file(tmp, header.tensors, metadata, sparse=True)
    os.replace(tmp, path)


def _write_state(args: argparse.Namespace, step: int, final: bool) -> None:
    name = f"{args.output_name}-state" if final else f"{args.output_name}-step{step:08d}-state"
    d = Path(args.output_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.safetensors").write_bytes(b"")
    (d / "train_state.json").write_text(json.dumps({"current_epoch": 1, "current_step": step}))


def _write_sample(args: argparse.Namespace, step: int) -> None:
    d = Path(args.output_dir) / "sample"
    d.mkdir(parents=True, exist_ok=True)
    ts = time.strftime("%Y%m%d%H%M%S")
    target = d / f"{args.output_name}_{step:06d}_00_{ts}_42.png"
    tmp = d / ".writing.tmp"
    shutil.copyfile(SAMPLE_FIXTURE, tmp)
    os.replace(tmp, target)


def _spawn_child(pidfile: str, ignore_term: bool) -> None:
    """A grandchild that would outlive this process (like accelerate's training process)."""
    code = (
        "import signal, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
        + "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "time.sleep(300)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    Path(pidfile).write_text(str(child.pid))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--log", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--output_name", required=True)
    p.add_argument("--duration", type=float, default=1.0, help="seconds the step bars are spread over")
    p.add_argument("--exit-code", type=int, default=None, help="override the log's exit code")
    p.add_argument("--no-output", action="store_true", help="print 'saving checkpoint' but write no file")
    p.add_argument("--save_state", action="store_true", help="write <name>-stepN-state folders with each save")
    p.add_argument("--save_state_on_train_end", action="store_true")
    p.add_argument("--resume", default=None, help="a state folder: skip the steps it holds")
    p.add_argument("--skip_until_initial_step", action="store_true")
    p.add_argument("--spawn-child", metavar="PIDFILE", default=None)
    p.add_argument("--child-ignores-term", action="store_true")
    p.add_argument("--ignore-term", action="store_true", help="this process ignores SIGTERM too")
    p.add_argument("--hang-at-step", type=int, default=None, help="stop writing and sleep at this step")
    p.add_argument("--hang", action="store_true", help="sleep forever after the log")
    p.add_argument("--argv-file", default=None, help="write this process's argv (JSON) here")
    args, _unknown = p.parse_known_args(argv)

    if args.argv_file:
        Path(args.argv_file).write_text(json.dumps(sys.argv))
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.spawn_child:
        _spawn_child(args.spawn_child, args.child_ignores_term)

    pieces, exit_code = _load(args.log)
    if args.exit_code is not None:
        exit_code = args.exit_code
    skip = 0
    if args.resume and args.skip_until_initial_step:
        state = json.loads((Path(args.resume) / "train_state.json").read_text())
        skip = int(state["current_step"])

    n_bars = sum(1 for _s, piece in pieces if _STEP_BAR.match(piece.lstrip(b"\r"))) or 1
    pause = max(args.duration, 0.0) / n_bars
    streams = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    step = 0
    for stream, piece in pieces:
        m = _STEP_BAR.match(piece.lstrip(b"\r"))
        if m:
            step, total = int(m.group(1)), int(m.group(2))
            if args.hang_at_step is not None and step >= args.hang_at_step:
                while True:
                    time.sleep(60)
            time.sleep(pause)
            if skip:
                if step <= skip:
                    continue
                # sd-scripts' bar counts only the remaining steps after --skip_until_initial_step
                piece = piece.replace(f"| {step}/{total} ".encode(), f"| {step - skip}/{total - skip} ".encode())
        elif _SAVE.match(piece.strip()):
            piece, path = _rewrite_save(piece, args)
            if skip and "-step" in path.name and step <= skip:
                continue
            if not args.no_output:
                _write_lora(path, args, step)
                if args.save_state and "-step" in path.name:
                    _write_state(args, step, final=False)
        elif _SAMPLE.search(piece) and SAMPLE_FIXTURE.exists():
            _write_sample(args, step)
        out = streams[stream]
        out.write(piece)
        out.flush()
    if args.save_state_on_train_end and not args.no_output and exit_code == 0:
        _write_state(args, step, final=True)
    if args.hang:
        while True:
            time.sleep(60)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
