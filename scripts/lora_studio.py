"""LoRA Studio's entry point for AUTOMATIC1111 v1.10.x and Forge.

The WebUI executes this file at start-up and again on every "Reload UI" (it is not an importable module),
so it only registers; all logic and state live in :mod:`lib_lora.webui`. While this file runs, the WebUI
has put the extension's folder first on ``sys.path``, which is how ``lib_lora`` is found.
"""

from __future__ import annotations

import os

from modules import scripts

from lib_lora import webui

webui.install(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LoraStudioScript(scripts.Script):
    """Always on, no controls: rewrites ``<lora:...>`` tags after styles, before the built-in Lora."""

    def title(self):
        return "LoRA Studio"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return []

    def before_process(self, p, *args):
        from lib_lora.webui import ipadapter

        webui.guarded(ipadapter.before_process_hook, p)

    def process(self, p, *args):
        webui.guarded(webui.process_hook, p)

    def before_process_batch(self, p, *args, **kwargs):
        webui.guarded(webui.before_process_batch_hook, p, **kwargs)

    def postprocess(self, p, processed, *args):
        webui.guarded(webui.postprocess_hook, p, processed)
