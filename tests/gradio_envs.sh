#!/usr/bin/env bash
# Build (once, cached) and use the two pinned gradio environments LoRA Studio's UI must work in:
#   a1111 — gradio 3.41.2 + fastapi 0.94 + pydantic 1     (AUTOMATIC1111 v1.10.x)
#   forge — gradio 4.40.0 + fastapi 0.104.1 + pydantic 2.8.2 (Forge)
#
#   tests/gradio_envs.sh build [a1111|forge|all]        create/refresh the venvs (idempotent)
#   tests/gradio_envs.sh run a1111|forge CMD [ARGS...]   run CMD with that venv's python first on PATH
#   tests/gradio_envs.sh test [a1111|forge|all] [PYTEST ARGS...]
#                                                        run the UI/API/e2e tests in the venv(s)
#   tests/gradio_envs.sh path a1111|forge                print the venv folder
#
# Venvs live in $LORA_STUDIO_CACHE/gradio-<name> (default ~/.cache/lora-studio-ci) and are rebuilt only when
# their pin file (tests/envs/<name>.txt + tools.txt) changes; pip's cache makes a rebuild quick.
# The project is not installed into them: the repo root goes on PYTHONPATH, so a venv serves any clone.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${LORA_STUDIO_CACHE:-$HOME/.cache/lora-studio-ci}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$CACHE/pip}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

find_python() {
    if [[ -n "${LORA_STUDIO_ENV_PYTHON:-}" ]]; then echo "$LORA_STUDIO_ENV_PYTHON"; return; fi
    for p in /root/.pyenv/versions/3.10.*/bin/python3.10 "$(command -v python3.10 || true)" "$(command -v python3 || true)"; do
        if [[ -n "$p" && -x "$p" ]]; then echo "$p"; return; fi
    done
    echo "no python found (set LORA_STUDIO_ENV_PYTHON)" >&2
    exit 1
}

stamp_of() {  # what the venv was built from: pins + tools + interpreter
    local name="$1" py
    py="$(find_python)"
    { cat "$HERE/envs/$name.txt" "$HERE/envs/tools.txt"; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16
}

pip_q() {  # pip_q VENV ARGS...: quiet pip install; drops pip's notes about absent optional local indexes
    local venv="$1"; shift
    if ! "$venv/bin/python" -m pip install -q "$@" > "$venv/pip.log" 2>&1; then
        grep -v "is ignored: it is neither" "$venv/pip.log" >&2 || true
        echo "[gradio_envs] pip install $* failed in $venv" >&2
        exit 1
    fi
}

build_one() {
    local name="$1" venv="$CACHE/gradio-$1" py stamp
    [[ -f "$HERE/envs/$name.txt" ]] || { echo "unknown env '$name' (a1111|forge)" >&2; exit 2; }
    stamp="$(stamp_of "$name")"
    if [[ -f "$venv/.lora-studio-stamp" && "$(cat "$venv/.lora-studio-stamp")" == "$stamp" ]]; then
        echo "[gradio_envs] $name: up to date ($venv)"
        return
    fi
    py="$(find_python)"
    echo "[gradio_envs] $name: building with $py -> $venv"
    rm -rf "$venv"
    mkdir -p "$CACHE"
    "$py" -m venv "$venv"
    pip_q "$venv" --upgrade "pip<25" wheel
    pip_q "$venv" -r "$HERE/envs/$name.txt" -r "$HERE/envs/tools.txt"
    "$venv/bin/python" - <<'PY'
import fastapi, gradio, pydantic
print(f"[gradio_envs] gradio {gradio.__version__}, fastapi {fastapi.__version__}, pydantic {pydantic.VERSION}")
PY
    echo "$stamp" > "$venv/.lora-studio-stamp"
}

run_in() {
    local name="$1"; shift
    local venv="$CACHE/gradio-$name"
    [[ -x "$venv/bin/python" ]] || build_one "$name"
    PATH="$venv/bin:$PATH" PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" VIRTUAL_ENV="$venv" \
        LORA_STUDIO_GRADIO_ENV="$name" "$@"
}

names_of() {
    case "${1:-all}" in
        all) echo "a1111 forge" ;;
        *) echo "$1" ;;
    esac
}

cmd="${1:-}"; shift || true
case "$cmd" in
    build)
        for n in $(names_of "${1:-all}"); do build_one "$n"; done ;;
    run)
        name="$1"; shift; run_in "$name" "$@" ;;
    path)
        echo "$CACHE/gradio-$1" ;;
    test)
        which="${1:-all}"; shift || true
        status=0
        for n in $(names_of "$which"); do
            echo "[gradio_envs] === tests in $n ==="
            (cd "$REPO" && run_in "$n" python -m pytest -p no:cacheprovider \
                tests/test_browse.py tests/test_api.py tests/test_browser_e2e.py "$@") || status=$?
        done
        exit "$status" ;;
    *)
        sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 2 ;;
esac
