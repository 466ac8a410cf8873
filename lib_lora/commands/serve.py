"""``python -m lib_lora serve``: the standalone LoRA Studio app (browser panel, Train tab, resolve preview,
HTTP API) on a LoRA folder, the WebUI's ``models/Lora``, or a generated demo library."""

from __future__ import annotations

import argparse
import sys

from lib_lora.errors import LoraStudioError

#: the app server writes its own (coloured) logs: its output is not filtered by the CLI
RAW_OUTPUT = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora-dir", action="append", default=[], metavar="DIR",
                        help="LoRA folder (repeatable); default: the WebUI's models/Lora if found, else a demo library")
    parser.add_argument("--checkpoint-dir", action="append", default=[], metavar="DIR",
                        help="checkpoint folder for the compatibility picker (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7861, help="port (default 7861)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="LoRA Studio data folder (index, jobs); default $LORA_STUDIO_DATA or the user data folder")
    parser.add_argument("--demo", action="store_true", help="serve the generated demo library")
    parser.add_argument("--api-auth", default=None, metavar="USER:PASS[,USER2:PASS2]",
                        help="require these HTTP Basic credentials on /lora-studio/v1")
    parser.add_argument("--allow-remote", action="store_true",
                        help="when bound to a non-local address, still accept file paths and training from others "
                             "(like the WebUI's --enable-insecure-extension-access)")


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("error: the standalone app needs gradio, fastapi and uvicorn: pip install 'lora-studio[app]'",
              file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        raise LoraStudioError(f"--port must be between 1 and 65535, not {args.port}")
    try:
        from lib_lora.standalone import create_app
    except ImportError as exc:
        print(f"error: the standalone app cannot start: {exc} (pip install 'lora-studio[app]')", file=sys.stderr)
        return 2
    app = create_app(
        args.lora_dir,
        checkpoint_dirs=args.checkpoint_dir,
        data_dir=args.data_dir,
        bind_host=args.host,
        demo=args.demo,
        api_auth=args.api_auth,
        allow_remote=args.allow_remote,
    )
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"LoRA Studio: {app.folders.note}")
    if app.host.is_remote():
        print("LoRA Studio: reachable by others; file paths and training from the API are refused "
              "(--allow-remote allows them)")
    print(f"LoRA Studio: open http://{shown}:{args.port}/  (API docs: http://{shown}:{args.port}/docs)", flush=True)
    uvicorn.run(app.asgi, host=args.host, port=args.port, log_level="warning")
    return 0
