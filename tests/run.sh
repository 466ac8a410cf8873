#!/usr/bin/env bash
# Sets up everything the tests need from this repo's own files and runs them.
# This is the README's test command; CI (.ci/run) runs exactly this.
#
#   bash tests/run.sh            # lint, type-check, core tests (py3.11 and py3.10), UI tests in both gradio envs
#   bash tests/run.sh -k header  # extra arguments go to every pytest run
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${LORA_STUDIO_CACHE:-$HOME/.cache/lora-studio-ci}
mkdir -p "$CACHE" test-output

find_python() {  # find_python 3.11 -> path of a python of that minor version
    local v=$1 c
    for c in "python$v" "$HOME/.pyenv/versions/$v"*/bin/python "/usr/bin/python$v" "/usr/local/bin/python$v"; do
        for p in $c; do
            if [ -x "$(command -v "$p" 2>/dev/null || echo "$p")" ] && "$p" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$v'.split('.')))" 2>/dev/null; then
                command -v "$p" 2>/dev/null || echo "$p"; return 0
            fi
        done
    done
    return 1
}

make_venv() {  # make_venv DIR PYTHON -> creates DIR with PYTHON if missing
    local dir=$1 py=$2
    if [ ! -x "$dir/bin/python" ]; then
        "$py" -m venv "$dir"
        "$dir/bin/python" -m pip install -q --upgrade pip
    fi
}

step() { printf '\n=== %s\n' "$*"; }

PY311=$(find_python 3.11) || { echo "Python 3.11 is required for the core tests" >&2; exit 1; }
PY310=$(find_python 3.10 || true)

step "core venv (Python 3.11)"
make_venv "$CACHE/venv-core-3.11" "$PY311"
V311=$CACHE/venv-core-3.11/bin/python
"$V311" -m pip install -q -e "$REPO[test]"
# accelerate's own launcher parser checks our `accelerate launch` options; importing it needs torch.
# Only a CPU build of torch is acceptable here (never a multi-GB CUDA build): use the local CPU wheel
# when the machine has one, else those tests skip with a message.
if ls ${PIP_FIND_LINKS:-/opt/wheels}/torch-2.13.0+cpu-cp311-*.whl >/dev/null 2>&1; then
    "$V311" -m pip install -q torch==2.13.0 accelerate==1.6.0
    # the consistency score uses open_clip 2.7.0 (what A1111 and Forge install). --no-deps everywhere:
    # its requirements would pull a CUDA torch. PyPI's torchvision cannot load its C ops beside the CPU
    # torch; open_clip needs only its Python transforms, and lib_lora.consistency.clip_import handles that.
    "$V311" -m pip install -q --no-deps open-clip-torch==2.7.0 torchvision==0.28.0 ftfy regex tqdm wcwidth
else
    echo "no local CPU torch wheel: the accelerate launcher-parser test will be skipped" >&2
fi

step "ruff"
"$V311" -m ruff check "$REPO"
step "mypy (core)"
"$V311" -m mypy

status=0
run_pytest() {  # run_pytest PYTHON ARGS...: fails on test failures and on "no tests ran" (exit 5)
    local py=$1; shift
    set +e
    "$py" -m pytest "$@"
    local rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        echo "pytest exited $rc" >&2
        status=1
    fi
}

step "core tests (Python 3.11)"
run_pytest "$V311" -q -m "not browser and not gradio" "$@"

if [ -n "$PY310" ]; then
    step "core tests (Python 3.10)"
    make_venv "$CACHE/venv-core-3.10" "$PY310"
    V310=$CACHE/venv-core-3.10/bin/python
    "$V310" -m pip install -q -e "$REPO[test]"
    run_pytest "$V310" -q -p no:cacheprovider -m "not browser and not gradio and not slow" "$@"
else
    echo "Python 3.10 not found: skipping the 3.10 run" >&2
fi

if [ -f "$REPO/.ci/ui-envs.sh" ]; then
    step "gradio environments (A1111: gradio 3.41.2, Forge: gradio 4.40.0)"
    # shellcheck source=/dev/null
    source "$REPO/.ci/ui-envs.sh"
    for env in $UI_ENVS; do
        step "UI tests in $env"
        run_pytest "$CACHE/$env/bin/python" -q -p no:cacheprovider -m "gradio or browser" "$@"
    done
fi

exit $status
