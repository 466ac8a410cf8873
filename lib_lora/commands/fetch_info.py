"""``python -m lib_lora fetch-info DIR... [--all]``: fetch Civitai info for every LoRA under the folders.

For each ``.safetensors`` file without a ``.civitai.info`` (every file with ``--all``) the SHA-256 (from
the index's hash cache, computed when missing) is looked up on Civitai; the sidecars and the preview are
written as :mod:`lib_lora.remote.fetch_info` describes. Prints one summary line. Exit status: 0 when every
file was fetched, is unknown to Civitai or already had info; 1 when a request failed (offline included).
"""

from __future__ import annotations

import argparse
import sys

from lib_lora.commands.scan import _Progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="LoRA folders (searched recursively)")
    p.add_argument("--all", action="store_true",
                   help="also re-fetch files that already have info, and ask again about files Civitai did not know")
    p.add_argument("--index", metavar="PATH", help="index database (default: in the LoRA Studio data folder)")


def cli_settings() -> object:
    """The standalone app's saved settings (Civitai URL, key, preview rating), else the defaults."""
    import json

    from lib_lora import paths
    from lib_lora.settings import Settings

    path = paths.user_data_dir() / "settings.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Settings()
    return Settings.from_mapping(raw) if isinstance(raw, dict) else Settings()


def run(args: argparse.Namespace) -> int:
    from lib_lora import paths
    from lib_lora.library import Library
    from lib_lora.remote.civitai import CivitaiClient
    from lib_lora.remote.fetch_info import FAILED, FetchOptions, fetch_info, memory_for

    settings = cli_settings()
    client = CivitaiClient.from_settings(settings)
    lib = Library(args.dirs, args.index)
    try:
        lib.scan()
        entries = [e for e in lib.entries() if not e.legacy and not e.error]
        progress = _Progress("fetch-info")

        def hasher(path: str) -> str:
            sha = lib.ensure_hashes(path).sha256
            assert sha is not None
            return sha

        report = fetch_info(
            [e.path for e in entries],
            client,
            FetchOptions.from_settings(settings, refetch=args.all),
            hasher=hasher,
            memory=memory_for(paths.user_data_dir(ensure=True)),
            progress=progress,
        )
        progress.close()
    finally:
        lib.close()
    for r in report.results:
        if r.status == FAILED and not report.offline:
            print(f"{r.path}: {r.message}", file=sys.stderr)
        elif r.problems:
            print(f"{r.path}: {'; '.join(r.problems)}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1
