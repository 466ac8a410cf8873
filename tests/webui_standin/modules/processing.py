"""Stand-in of modules/processing.py with the real hook order (see ../README.md); sampling is a record of
what reached the text encoder and which LoRA files the built-in Lora applied."""

import hashlib
import os
import sys
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from modules import extra_networks, infotext_utils, sd_models, shared
from modules.shared import opts, state


@dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: object = None
    prompt: Any = ""
    styles: list = None
    seed: int = -1
    negative_prompt: Any = ""
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 20
    width: int = 512
    height: int = 512
    sampler_name: str = "Euler a"
    cfg_scale: float = 7.0
    override_settings: dict = None
    extra_generation_params: dict = None
    disable_extra_networks: bool = False
    do_not_save_samples: bool = True
    do_not_save_grid: bool = True
    scripts_value: Any = None
    script_args_value: list = None

    def __post_init__(self):
        self.styles = self.styles or []
        self.override_settings = self.override_settings or {}
        self.extra_generation_params = self.extra_generation_params or {}
        self.comments = {}
        self.scripts = self.scripts_value
        self.script_args = self.script_args_value or []
        self.iteration = 0
        self.is_hr_pass = False
        self.all_prompts = None
        self.all_negative_prompts = None
        self.all_seeds = None
        self.prompts = None
        self.negative_prompts = None
        self.seeds = None
        self.subseeds = None
        self.extra_network_data = None
        self.main_prompt = None
        self.main_negative_prompt = None
        self.samples = []  # stand-in only: one record per image

    def comment(self, text):
        self.comments[text] = 1

    def close(self):
        self.closed = True

    def setup_prompts(self):
        if isinstance(self.prompt, list):
            self.all_prompts = self.prompt
        elif isinstance(self.negative_prompt, list):
            self.all_prompts = [self.prompt] * len(self.negative_prompt)
        else:
            self.all_prompts = self.batch_size * self.n_iter * [self.prompt]
        if isinstance(self.negative_prompt, list):
            self.all_negative_prompts = self.negative_prompt
        else:
            self.all_negative_prompts = [self.negative_prompt] * len(self.all_prompts)
        if len(self.all_prompts) != len(self.all_negative_prompts):
            raise RuntimeError("Received a different number of prompts and negative prompts")
        self.all_prompts = [shared.prompt_styles.apply_styles_to_prompt(x, self.styles) for x in self.all_prompts]
        self.all_negative_prompts = [shared.prompt_styles.apply_negative_styles_to_prompt(x, self.styles) for x in self.all_negative_prompts]
        self.main_prompt = self.all_prompts[0]
        self.main_negative_prompt = self.all_negative_prompts[0]

    def parse_extra_network_prompts(self):
        self.prompts, self.extra_network_data = extra_networks.parse_prompts(self.prompts)

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass

    def _applied(self):
        networks = sys.modules.get("networks")
        if networks is None:
            return []
        return [(n.mentioned_name, n.network_on_disk.filename, n.te_multiplier, n.unet_multiplier) for n in networks.loaded_networks]

    def sample(self, batch_index):
        pass


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    hr_prompt: Any = ""
    hr_negative_prompt: Any = ""
    hr_checkpoint_name: str = None
    denoising_strength: float = 0.75

    def __post_init__(self):
        super().__post_init__()
        self.all_hr_prompts = None
        self.all_hr_negative_prompts = None
        self.hr_prompts = None
        self.hr_negative_prompts = None
        self.hr_extra_network_data = None
        if self.enable_hr:
            self.extra_generation_params["Denoising strength"] = self.denoising_strength

            def get_hr_prompt(p, index, prompt_text, **kwargs):
                hr_prompt = p.all_hr_prompts[index]
                return hr_prompt if hr_prompt != prompt_text else None

            def get_hr_negative_prompt(p, index, negative_prompt, **kwargs):
                hr_negative_prompt = p.all_hr_negative_prompts[index]
                return hr_negative_prompt if hr_negative_prompt != negative_prompt else None

            self.extra_generation_params["Hires prompt"] = get_hr_prompt
            self.extra_generation_params["Hires negative prompt"] = get_hr_negative_prompt

    def init(self, all_prompts, all_seeds, all_subseeds):
        # As the WebUIs: the hires checkpoint is resolved here, after scripts' process()
        self.hr_checkpoint_info = None
        if self.enable_hr and self.hr_checkpoint_name and self.hr_checkpoint_name != "Use same checkpoint":
            self.hr_checkpoint_info = sd_models.get_closet_checkpoint_match(self.hr_checkpoint_name)

    def setup_prompts(self):
        super().setup_prompts()
        if not self.enable_hr:
            return
        if self.hr_prompt == "":
            self.hr_prompt = self.prompt
        if self.hr_negative_prompt == "":
            self.hr_negative_prompt = self.negative_prompt
        if isinstance(self.hr_prompt, list):
            self.all_hr_prompts = self.hr_prompt
        else:
            self.all_hr_prompts = self.batch_size * self.n_iter * [self.hr_prompt]
        if isinstance(self.hr_negative_prompt, list):
            self.all_hr_negative_prompts = self.hr_negative_prompt
        else:
            self.all_hr_negative_prompts = self.batch_size * self.n_iter * [self.hr_negative_prompt]
        self.all_hr_prompts = [shared.prompt_styles.apply_styles_to_prompt(x, self.styles) for x in self.all_hr_prompts]
        self.all_hr_negative_prompts = [shared.prompt_styles.apply_negative_styles_to_prompt(x, self.styles) for x in self.all_hr_negative_prompts]

    def parse_extra_network_prompts(self):
        res = super().parse_extra_network_prompts()
        if self.enable_hr:
            self.hr_prompts = self.all_hr_prompts[self.iteration * self.batch_size:(self.iteration + 1) * self.batch_size]
            self.hr_negative_prompts = self.all_hr_negative_prompts[self.iteration * self.batch_size:(self.iteration + 1) * self.batch_size]
            self.hr_prompts, self.hr_extra_network_data = extra_networks.parse_prompts(self.hr_prompts)
        return res

    def sample(self, batch_index):
        records = [dict(prompt=pr, negative=neg, loras=self._applied()) for pr, neg in zip(self.prompts, self.negative_prompts, strict=True)]
        if self.enable_hr:
            self.is_hr_pass = True
            if self.scripts is not None:
                self.scripts.before_hr(self)
            if not self.disable_extra_networks:
                extra_networks.activate(self, self.hr_extra_network_data)
            for rec, hp, hn in zip(records, self.hr_prompts, self.hr_negative_prompts, strict=True):
                rec.update(hr_prompt=hp, hr_negative=hn, hr_loras=self._applied())
            self.is_hr_pass = False
        return records


@dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = None
    denoising_strength: float = 0.75

    def __post_init__(self):
        super().__post_init__()
        self.extra_generation_params["Denoising strength"] = self.denoising_strength

    def sample(self, batch_index):
        return [dict(prompt=pr, negative=neg, loras=self._applied()) for pr, neg in zip(self.prompts, self.negative_prompts, strict=True)]


class SampleImage(Image.Image):
    """The stand-in's output image: a small PIL image (its colours follow the prompt, the seed and the
    LoRA files the built-in Lora applied) that also answers ``image["prompt"]``, ``image["loras"]`` …
    with the record of what reached the text encoder."""

    record: dict

    def __getitem__(self, key):
        return self.record[key]


def _sample_image(p, rec, seed):
    loras = "|".join(f"{os.path.basename(f)}:{te}" for _n, f, te, _u in rec.get("loras", []))
    digest = hashlib.sha256(f"{loras}".encode()).digest()
    background = hashlib.sha256(f"{seed}|{rec.get('prompt', '')}".encode()).digest()
    w, h = max(8, min(int(p.width), 256)), max(8, min(int(p.height), 256))
    im = Image.new("RGB", (w, h), tuple(background[:3]))
    ImageDraw.Draw(im).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=tuple(digest[:3]))
    im.__class__ = SampleImage
    im.record = rec
    return im


class Processed:
    def __init__(self, p, images_list, infotexts=None, comments=""):
        self.images = images_list
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.all_prompts = p.all_prompts
        self.all_negative_prompts = p.all_negative_prompts
        self.infotexts = infotexts or []
        self.info = self.infotexts[0] if self.infotexts else ""
        self.comments = comments
        self.extra_generation_params = p.extra_generation_params


def create_infotext(p, all_prompts, all_seeds, all_subseeds, comments=None, iteration=0, position_in_batch=0, use_main_prompt=False, index=None, all_negative_prompts=None):
    if use_main_prompt:
        index = 0
    elif index is None:
        index = position_in_batch + iteration * p.batch_size
    if all_negative_prompts is None:
        all_negative_prompts = p.all_negative_prompts
    prompt_text = p.main_prompt if use_main_prompt else all_prompts[index]
    negative_prompt = p.main_negative_prompt if use_main_prompt else all_negative_prompts[index]
    model = sd_models.model_data.sd_model
    generation_params = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "Seed": all_seeds[index],
        "Size": f"{p.width}x{p.height}",
        "Model": getattr(getattr(model, "sd_checkpoint_info", None), "name_for_extra", None) if opts.add_model_name_to_info else None,
        **p.extra_generation_params,
        "Version": "standin",
    }
    for key, value in generation_params.items():
        try:
            if isinstance(value, list):
                generation_params[key] = value[index]
            elif callable(value):
                generation_params[key] = value(**locals())
        except Exception:
            from modules import errors

            errors.report(f'Error creating infotext for key "{key}"', exc_info=True)
            generation_params[key] = None
    generation_params_text = ", ".join([k if k == v else f"{k}: {infotext_utils.quote(v)}" for k, v in generation_params.items() if v is not None])
    negative_prompt_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt_text}{negative_prompt_text}\n{generation_params_text}".strip()


def process_images(p):
    if p.scripts is not None:
        p.scripts.before_process(p)
    for k, v in p.override_settings.items():
        opts.set(k, v, is_api=True, run_callbacks=False)
    # Both WebUIs load (or keep) the selected model here, before any prompt work.
    sd_models.reload_model_weights()
    return process_images_inner(p)


def process_images_inner(p):
    seed = p.seed if p.seed != -1 else 1234
    p.setup_prompts()
    p.all_seeds = [int(seed) + x for x in range(len(p.all_prompts))]
    p.all_subseeds = [int(seed) + x for x in range(len(p.all_prompts))]
    if p.scripts is not None:
        p.scripts.process(p)
    infotexts = []
    output_images = []
    p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    for n in range(p.n_iter):
        p.iteration = n
        if state.interrupted:
            break
        sd_models.reload_model_weights()
        p.prompts = p.all_prompts[n * p.batch_size:(n + 1) * p.batch_size]
        p.negative_prompts = p.all_negative_prompts[n * p.batch_size:(n + 1) * p.batch_size]
        p.seeds = p.all_seeds[n * p.batch_size:(n + 1) * p.batch_size]
        p.subseeds = p.all_subseeds[n * p.batch_size:(n + 1) * p.batch_size]
        if p.scripts is not None:
            p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        if len(p.prompts) == 0:
            break
        p.parse_extra_network_prompts()
        if not p.disable_extra_networks:
            extra_networks.activate(p, p.extra_network_data)
        if p.scripts is not None:
            p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        records = p.sample(n)
        for i, rec in enumerate(records):
            p.samples.append(rec)
            infotexts.append(create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, None, n, i))
            output_images.append(_sample_image(p, rec, p.seeds[i]))
    if not p.disable_extra_networks and p.extra_network_data:
        extra_networks.deactivate(p, p.extra_network_data)
    comments = "".join(f"{comment}\n" for comment in p.comments)
    res = Processed(p, output_images, infotexts=infotexts, comments=comments)
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res
