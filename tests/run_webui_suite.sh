#!/usr/bin/env bash
# Run LoRA Studio's real-WebUI suite (tests/test_webui_real.py) against one or more WebUI installs.
#
#   tests/run_webui_suite.sh WEBUI_DIR[=WEBUI_PYTHON] [WEBUI_DIR[=WEBUI_PYTHON] ...]
#
# Each WEBUI_DIR is an AUTOMATIC1111 v1.10.x or Forge checkout as its own launcher leaves it: the
# `repositories/` it clones next to `modules/` (A1111: stable-diffusion-stability-ai, generative-models,
# k-diffusion, BLIP, assets; Forge: huggingface_guess, BLIP, assets) and a venv with its
# requirements_versions.txt plus the `clip` package its launcher installs. For A1111's IP-Adapter tests,
# a sd-webui-controlnet checkout (WEBUI_CONTROLNET_DIR, else WEBUI_DIR/extensions/sd-webui-controlnet, its
# requirements.txt installed in that venv) is linked in; without one those tests skip (Forge: built in). WEBUI_PYTHON defaults to
# WEBUI_DIR/venv/bin/python. A CPU-only torch is enough: no model weights are loaded (the model and the
# sampler are stubbed), nothing is downloaded (HF_HUB_OFFLINE=1), and LoRA Studio is linked into a
# temporary data dir's extensions/ folder, so the install is not modified.
#
# PYTHON (default python3) runs pytest and needs LoRA Studio's core requirements. The two extra-networks
# pane tests also need `playwright` importable by it and Debian's chromium (/usr/bin/chromium, or
# LORA_STUDIO_CHROMIUM); without playwright they are skipped. To borrow playwright from another venv of
# the same Python version, link its `playwright` and `greenlet` packages into a folder and put that folder
# on PYTHONPATH after the repository (not the whole site-packages: its pytest would shadow PYTHON's).
#
# This script installs nothing; it only runs the tests, one WebUI after another.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
[ $# -gt 0 ] || { sed -n "2,22p" "$0"; exit 2; }
status=0
for spec in "$@"; do
    dir="${spec%%=*}"
    py="${spec#*=}"
    [ "$py" != "$spec" ] || py="$dir/venv/bin/python"
    [ -d "$dir/modules" ] || { echo "not a WebUI checkout: $dir" >&2; status=1; continue; }
    [ -x "$py" ] || { echo "no python at $py (pass WEBUI_DIR=WEBUI_PYTHON)" >&2; status=1; continue; }
    echo "== $dir ($("$py" -c 'import sys; print(sys.version.split()[0])'))"
    (cd "$here" && WEBUI_DIR="$dir" WEBUI_PYTHON="$py" "$python" -m pytest tests/test_webui_real.py -q -rA -p no:cacheprovider) || status=1
done
exit $status
