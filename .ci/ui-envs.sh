# Sourced by tests/run.sh (CI): makes sure Debian's chromium is installed and the two pinned gradio
# venvs exist (A1111: gradio 3.41.2 / fastapi 0.94 / pydantic 1; Forge: gradio 4.40.0 / fastapi 0.104.1 /
# pydantic 2.8.2), then sets UI_ENVS to their folder names under $CACHE. Idempotent and cached: venvs are
# rebuilt only when tests/envs/*.txt change, and pip's cache lives in $CACHE/pip.
# The browser is Debian's (/usr/bin/chromium); `playwright install` is never run.
_lora_ui_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LORA_STUDIO_CACHE="${CACHE:-${LORA_STUDIO_CACHE:-$HOME/.cache/lora-studio-ci}}"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null) \
        || echo "warning: could not install Debian chromium; browser tests will fail" >&2
fi
bash "$_lora_ui_repo/tests/gradio_envs.sh" build all
UI_ENVS="gradio-a1111 gradio-forge"
unset _lora_ui_repo
