"""Stand-in of modules/shared.py: cmd_opts, opts, options_templates, prompt_styles, walk_files, sd_model."""

import argparse
import os
import sys
import types

from modules import paths
from modules.options import OptionInfo, Options, options_section

cmd_opts = argparse.Namespace(
    lora_dir=os.path.join(paths.models_path, "Lora"),
    lyco_dir_backcompat=os.path.join(paths.models_path, "LyCORIS"),
    ckpt_dir=None,
    data_dir=paths.data_path,
    api_auth=None,
    disable_extension_access=False,
    enable_insecure_extension_access=False,
    listen=False,
    share=False,
    embeddings_dir=os.path.join(paths.data_path, "embeddings"),
    no_prompt_history=True,
)

config_filename = os.path.join(paths.data_path, "config.json")

options_templates = {}
options_templates.update(options_section(("sd", "Stable Diffusion"), {
    "sd_model_checkpoint": OptionInfo(None, "Stable Diffusion checkpoint", infotext="Model"),
    "sd_checkpoint_hash": OptionInfo("", "SHA256 hash of the current checkpoint"),
}))
options_templates.update(options_section(("infotext", "Infotext"), {
    "add_model_name_to_info": OptionInfo(True, "Add model name to infotext"),
    "infotext_skip_pasting": OptionInfo([], "Disregard fields from pasted infotext"),
}))
options_templates.update(options_section(("extra_networks", "Extra Networks"), {
    "extra_networks_hidden_models": OptionInfo("When searched", "Show cards for models in hidden directories"),
    "extra_networks_card_width": OptionInfo(0, "Card width for Extra Networks"),
    "extra_networks_card_height": OptionInfo(0, "Card height for Extra Networks"),
    "extra_networks_card_text_scale": OptionInfo(1.0, "Card text scale"),
    "extra_networks_card_show_desc": OptionInfo(True, "Show description on card"),
    "extra_networks_card_description_is_html": OptionInfo(False, "Treat card description as HTML"),
    "ui_extra_networks_tab_reorder": OptionInfo("", "Extra networks tab order"),
    "samples_format": OptionInfo("png", "File format for images"),
}))
opts = Options(options_templates)


class PromptStyle:
    def __init__(self, name, prompt, negative_prompt):
        self.name, self.prompt, self.negative_prompt = name, prompt, negative_prompt


def merge_prompts(style_prompt, prompt):
    """A style with ``{prompt}`` wraps the prompt; otherwise it is appended after ", " (as the WebUIs do)."""
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(x for x in (prompt.strip(), style_prompt.strip()) if x)


class StyleDatabase:
    no_style = PromptStyle("None", "", "")

    def __init__(self):
        self.styles = {}

    def add(self, name, prompt, negative_prompt=""):
        self.styles[name] = PromptStyle(name, prompt, negative_prompt)

    def apply_styles_to_prompt(self, prompt, styles):
        for style in styles:
            prompt = merge_prompts(self.styles.get(style, self.no_style).prompt, prompt)
        return prompt

    def apply_negative_styles_to_prompt(self, prompt, styles):
        for style in styles:
            prompt = merge_prompts(self.styles.get(style, self.no_style).negative_prompt, prompt)
        return prompt


prompt_styles = StyleDatabase()


class State:
    interrupted = False
    skipped = False
    stopping_generation = False
    job_count = -1
    job = ""
    jobs_begun = []  # stand-in only: every begin(job=...)

    def begin(self, job="(unknown)"):
        self.job = job
        self.jobs_begun.append(job)

    def end(self):
        self.job = ""


state = State()


def walk_files(path, allowed_extensions=None):
    if not os.path.exists(path):
        return
    if allowed_extensions is not None:
        allowed_extensions = set(allowed_extensions)
    for root, _, files in sorted(os.walk(path, followlinks=True), key=lambda x: x[0].lower()):
        for filename in sorted(files, key=str.lower):
            if allowed_extensions is not None:
                _, ext = os.path.splitext(filename)
                if ext.lower() not in allowed_extensions:
                    continue
            yield os.path.join(root, filename)


class _Shared(types.ModuleType):
    @property
    def sd_model(self):
        # As in the WebUIs: reading shared.sd_model may load a model.
        from modules import sd_models

        return sd_models.model_data.get_sd_model()


sys.modules[__name__].__class__ = _Shared

# As modules/initialize.py does at start-up.
from modules import interrogate as _interrogate  # noqa: E402

interrogator = _interrogate.InterrogateModels("interrogate")
