"""``python -m lib_lora download URL [--lora-dir DIR] [--subfolder NAME]``: download a LoRA into place.

URL: a Civitai model page (``/models/ID``, ``?modelVersionId=V``), a Civitai download URL
(``/api/download/models/V``), a Hugging Face ``blob/``/``resolve/`` URL or ``hf://owner/repo/file``.
Prints the path of the verified file and exits 0 only when it is in place; otherwise one error line
and exit 1 (an interrupted download resumes when run again).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from lib_lora.safetext import unfiltered


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", help="Civitai or Hugging Face URL")
    p.add_argument("--lora-dir", metavar="DIR", help="LoRA folder (default: the first extra LoRA folder in the "
                   "settings, else the current folder)")
    p.add_argument("--subfolder", metavar="NAME", help="subfolder of the LoRA folder to put it in")


class _Bar:
    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled or time.monotonic() - self.last < 0.2:
            return
        self.last = time.monotonic()
        self.shown = True
        err = unfiltered(sys.stderr)  # its own escape sequence: clear to the end of the line
        if total:
            err.write(f"\r{message} {done / total:6.1%} {done >> 20}/{total >> 20} MiB\033[K")
        else:
            err.write(f"\r{message} {done >> 20} MiB\033[K")
        err.flush()

    def close(self) -> None:
        if self.shown:
            unfiltered(sys.stderr).write("\r\033[K")


def run(args: argparse.Namespace) -> int:
    from lib_lora import paths
    from lib_lora.commands.fetch_info import cli_settings
    from lib_lora.remote.civitai import CivitaiClient
    from lib_lora.remote.download import download
    from lib_lora.remote.fetch_info import FetchOptions

    settings = cli_settings()
    lora_dir = args.lora_dir or next(iter(getattr(settings, "extra_roots", ()) or ()), None) or os.getcwd()
    bar = _Bar()
    try:
        result = download(
            args.url,
            os.path.abspath(os.path.expanduser(lora_dir)),
            client=CivitaiClient.from_settings(settings),
            subfolder=args.subfolder,
            subfolder_mode=getattr(settings, "download_subfolder", "none"),
            options=FetchOptions.from_settings(settings),
            progress=bar,
            staging_dir=os.path.join(paths.user_data_dir(ensure=True), "staging"),
        )
    finally:
        bar.close()
    for problem in result.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if result.already_present:
        print("already present (identical file)", file=sys.stderr)
    print(result.path)
    return 0
