"""Run LoRA Studio inside a real WebUI checkout (A1111 v1.10.x or Forge) and report what happened as JSON.

Executed by tests/test_webui_real.py as ``<WEBUI_PYTHON> tests/webui_real_runner.py CONFIG.json`` with the
WebUI folder as the working directory. It starts the WebUI the way ``webui.py --nowebui`` does
(``initialize.imports()``, ``initialize.initialize()``), with LoRA Studio linked into the data dir's
``extensions/`` folder, builds the real ``modules.api.api.Api`` (which builds the UI and the scripts' default
arguments like the HTTP API does) and generates through ``Api.text2imgapi`` / ``img2imgapi`` — the real
``processing.process_images``, ``scripts``, ``extra_networks`` and built-in Lora.

Stubbed, because there are no model weights here (and none may be downloaded): the model object (it
records what reached the text encoder, tokenised with the real CLIP tokenizer from tests/fixtures;
``decode_first_stage`` returns zeros) and the sampler (returns its input latent). Forge's LoRA patcher
``load_lora_for_models`` is replaced by a recorder; its name lookup in ``networks.load_networks`` is real.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

CONFIG = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
OUT: dict[str, Any] = {"scenarios": {}, "errors": []}
ENCODED: list[list[str]] = []  # every batch of texts the "text encoder" received
FORGE_APPLIED: list[list[tuple[str, float, float]]] = []
PROCESSING: list[Any] = []


def main() -> None:
    webui_dir = Path.cwd()
    sys.path.insert(0, str(webui_dir))
    data = Path(CONFIG["data_dir"])
    sys.argv = [
        "webui.py", "--skip-torch-cuda-test", "--use-cpu", "all", "--no-half", "--no-half-vae",
        "--data-dir", str(data), "--lora-dir", CONFIG["lora_dir"], "--ckpt-dir", CONFIG["ckpt_dir"],
        "--skip-load-model-at-start", "--nowebui", "--skip-version-check", "--no-download-sd-model",
        "--skip-python-version-check", "--skip-install",
    ]  # fmt: skip
    forge = (webui_dir / "modules_forge").is_dir()
    if forge:
        sys.argv += ["--always-cpu", "--disable-xformers"]
    OUT["flavor"] = "forge" if forge else "a1111"

    from modules import initialize

    initialize.imports()
    initialize.check_versions()
    initialize.initialize()

    import torch
    from modules import processing, scripts, sd_models, sd_samplers, shared

    OUT["versions"] = {"torch": torch.__version__, "gradio": __import__("gradio").__version__}
    with contextlib.suppress(Exception):
        from modules import launch_utils

        OUT["versions"]["webui"] = launch_utils.git_tag()

    install_stubs(forge)
    for style in CONFIG.get("styles", []):
        from modules import styles as styles_mod

        shared.prompt_styles.styles[style["name"]] = styles_mod.PromptStyle(style["name"], style["prompt"], style.get("negative", ""), None)
    from lib_lora import webui as glue

    # The selected checkpoint is read without loading a model (the stub would record a load).
    loads_before = type(sd_models.model_data.sd_model).__name__
    shared.opts.set("sd_model_checkpoint", CONFIG["checkpoint"], run_callbacks=False)
    ref = glue.host().selected_checkpoint()
    detection = glue.host().checkpoint_detection(ref)
    OUT["selected_checkpoint"] = {
        "path": ref.path if ref else None,
        "architecture": getattr(detection, "architecture", None),
        "model_before": loads_before,
        "model_after": type(sd_models.model_data.sd_model).__name__,
    }
    select_checkpoint(CONFIG["checkpoint"])
    from fastapi import FastAPI

    # As webui.api_only(): the API (which builds the UI and the scripts' defaults), then before_ui and
    # app_started (the built-in Lora registers its extra network in before_ui).
    from modules import call_queue, script_callbacks
    from modules.api import api as api_mod
    from modules.api import models

    app = FastAPI()
    api = api_mod.Api(app, call_queue.queue_lock)
    for key, value in CONFIG.get("options", {}).items():  # settings that shape the UI (serve_ui)
        shared.opts.set(key, value)
    script_callbacks.before_ui_callback()
    script_callbacks.app_started_callback(None, app)
    OUT["api_routes"] = sorted({r.path for r in app.routes if "/lora-studio/" in getattr(r, "path", "")})
    try:
        OUT["ui_tabs"] = [title for _block, title, _elem in glue.ui_tabs_hook()]
    except Exception:
        OUT["ui_tabs"] = ["error: " + traceback.format_exc()]
    OUT["lora_studio_script"] = any(type(s).__name__ == "LoraStudioScript" for s in scripts.scripts_txt2img.alwayson_scripts)
    OUT["settings_keys"] = sorted(k for k in shared.opts.data_labels if k.startswith("lora_studio_"))
    OUT["builtin_networks"] = getattr(sys.modules.get("networks"), "__file__", None)

    h = glue.host()
    OUT["lora_roots"] = [str(p) for p in h.lora_roots()]
    status = h.rescan(wait=True)
    OUT["scan"] = {"state": status.state, "total": status.total, "message": status.message}
    OUT["lookup_zk_alice"] = getattr(h.library().lookup("zk_alice"), "status", None)
    if CONFIG.get("serve_ui"):
        serve_ui()
        return

    for name, spec in CONFIG["scenarios"].items():
        ENCODED.clear()
        FORGE_APPLIED.clear()
        PROCESSING.clear()
        if spec.get("checkpoint"):
            select_checkpoint(spec["checkpoint"])
        for key, value in spec.get("options", {}).items():
            if key in shared.opts.data_labels:  # an extension's setting (ControlNet's) exists only with it
                shared.opts.set(key, value)
        try:
            with controlnet_probe(spec.get("controlnet_probe", False), forge) as probe:
                OUT["scenarios"][name] = run_scenario(api, models, spec, forge)
            if probe is not None:
                OUT["scenarios"][name]["controlnet"] = probe
        except Exception:
            OUT["scenarios"][name] = {"error": traceback.format_exc()}
        for key in spec.get("options", {}):
            if key in shared.opts.data_labels:
                shared.opts.set(key, shared.opts.get_default(key))
    del processing, sd_samplers

    # GPU memory and the queue, as the Train tab uses them
    import threading

    from modules import call_queue as cq

    token = h.free_vram()
    OUT["vram"] = {"freed": token.freed, "detail": token.detail}
    h.restore_vram(token)
    seen: list[bool] = []
    with h.queue_lock():
        t = threading.Thread(target=lambda: seen.append(bool(cq.queue_lock.acquire(blocking=False))))
        t.start()
        t.join(10)
    OUT["queue_lock_held"] = seen == [False]
    OUT["remote"] = {"is_remote": h.is_remote(), "auth": h.api_auth_required()}
    OUT["consistency"] = consistency_sheet(h)
    OUT["consistency_epochs"] = consistency_epochs(h)
    OUT["taggers"] = taggers(h)


@contextlib.contextmanager
def controlnet_probe(active: bool, forge: bool) -> Any:
    """The WebUI's ControlNet script (Forge's built-in one, or A1111's sd-webui-controlnet extension), with
    its ``process`` reduced to reading its units: the real ``get_enabled_units`` over the arguments the
    WebUI hands it (its slice of ``p.script_args``) and its own reader of a unit's image, recorded; nothing
    is preprocessed or rendered (no CLIP vision or IP-Adapter weights here)."""
    if not active:
        yield None
        return
    from modules import scripts

    record: dict[str, Any] = {"calls": []}
    script = next((s for s in scripts.scripts_txt2img.alwayson_scripts if str(s.title()) == "ControlNet"), None)
    if script is None:
        record["error"] = "no ControlNet script among the always-on txt2img scripts"
        yield record
        return
    record["script"] = f"{type(script).__module__}.{type(script).__name__}"
    record["span"] = [script.args_from, script.args_to]
    process = _forge_process(script, record) if forge else _a1111_process(script, record)

    def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    patched = {"process": process, "process_before_every_sampling": nothing, "postprocess_batch_list": nothing,
               "before_process_batch": nothing, "postprocess_batch": nothing, "postprocess": nothing}
    for attr, fn in patched.items():
        setattr(script, attr, fn)
    try:
        yield record
    finally:
        for attr in patched:
            script.__dict__.pop(attr, None)


def _enabled_at(args: Any) -> list[int]:
    return [i for i, a in enumerate(args) if (a.get("enabled") if isinstance(a, dict) else getattr(a, "enabled", False))]


def _a1111_process(script: Any, record: dict[str, Any]) -> Any:
    """sd-webui-controlnet's ``process`` reduced to its real unit reading: ``Script.get_enabled_units(p)``
    (``external_code.get_all_units_in_processing`` under it) and ``Script.choose_input_image``."""
    cn = type(script).__dict__["controlnet_main_entry"].__globals__  # the script module's own names
    global_state, preprocessor = cn["global_state"], cn["Preprocessor"]

    def process(p: Any, *args: Any, **kwargs: Any) -> None:
        units = script.get_enabled_units(p)
        inputs = []
        for idx, u in enumerate(units):
            try:
                image, _resize = script.choose_input_image(p, u, idx)
                inputs.append([list(image.shape)])
            except Exception as exc:
                inputs.append(f"{type(exc).__name__}: {exc}")
        call = _call(script, p, args, inputs, units, lambda u: preprocessor.get_preprocessor(u.module),
                     global_state.cn_models)
        call["external_code"] = getattr(cn.get("external_code"), "__name__", None)
        record["calls"].append(call)

    return process


def _call(script: Any, p: Any, args: Any, inputs: list[Any], units: list[Any], preprocessor_of: Any,
          model_files: dict[str, Any]) -> dict[str, Any]:
    """What one ``process`` call saw: where the enabled units sit, what the real readers made of them."""
    return {
        "enabled_at": _enabled_at(args),
        "input_images": inputs,
        "args_in_slice": all(a is b for a, b in zip(p.script_args[script.args_from:script.args_to], args, strict=True)),
        "slice_len": len(args),
        "enabled": [{
            "type": type(u).__module__ + "." + type(u).__name__, "module": u.module, "model": u.model,
            "weight": u.weight, "image_shape": _shape(u.image), "image_dtype": str(getattr(u.image, "dtype", "")),
            "preprocessor_known": preprocessor_of(u) is not None, "model_file": model_files.get(u.model),
        } for u in units],
    }


def _shape(image: Any) -> list[int]:
    if isinstance(image, dict):  # sd-webui-controlnet keeps {"image": array, "mask": array}
        image = image.get("image")
    return list(getattr(image, "shape", []) or [])


def _forge_process(script: Any, record: dict[str, Any]) -> Any:
    """Forge's ``lib_controlnet`` script's ``process`` reduced to ``get_enabled_units(args)`` and
    ``get_input_data``."""

    def process(p: Any, *args: Any, **kwargs: Any) -> None:
        from lib_controlnet import global_state

        units = script.get_enabled_units(args)  # the real one: API dicts become ControlNetUnit
        h, w, _hr_h, _hr_w = script.get_target_dimensions(p)
        inputs = []  # the real reader of a unit's image (what process hands the preprocessor)
        for u in units:
            try:
                images, _mode = script.get_input_data(p, u, global_state.get_preprocessor(u.module), h, w)
                inputs.append([list(image.shape) for image, _mask in images])
            except Exception as exc:
                inputs.append(f"{type(exc).__name__}: {exc}")
        record["calls"].append(_call(script, p, args, inputs, units, lambda u: global_state.get_preprocessor(u.module),
                                     global_state.controlnet_filename_dict))
        script.current_params = {}

    return process


def consistency_sheet(h: Any) -> dict[str, Any]:
    """A consistency sheet through the real processing (model and sampler stubbed), score skipped."""
    try:
        from lib_lora.consistency import SheetManager, SheetRequest

        PROCESSING.clear()
        manager = SheetManager(h, embedder=lambda: None)
        st = manager.wait(manager.submit(SheetRequest(lora="zk_alice", versions=("zk_alice", "chars/kotori"),
                                                      weights=(0.5, 1.0), steps=2, width=64, height=64)), 600)
        meta = json.loads((Path(st.sheet).parent / "sheet.json").read_text(encoding="utf-8")) if st.sheet else {}
        return {"state": st.state, "message": st.message, "cells": [c.to_dict() for c in st.cells],
                "rows": meta.get("rows"), "columns": meta.get("columns"), "score_message": st.score_message,
                "sheet_size": list(__import__("PIL.Image").Image.open(st.sheet).size) if st.sheet else None,
                "loaded": [[Path(f).name for _n, f in p._lora_studio_test_passes[0]["loaded"]] for p in PROCESSING]}
    except Exception:
        return {"error": traceback.format_exc()}


def consistency_epochs(h: Any) -> dict[str, Any]:
    """A character's sheet with one of its versions and a training job's epoch file (outside the LoRA
    folders): the file is staged into the LoRA folder, found by the real built-in Lora after the list refresh,
    and removed afterwards. The job manager is a stand-in holding the job's output folder."""
    try:
        from lib_lora.consistency import SheetManager, SheetRequest

        class Jobs:
            def get(self, job_id: str) -> Any:
                if job_id != "j1":
                    raise KeyError(job_id)
                return _NS(spec={"output_dir": CONFIG["epoch_dir"]})

        PROCESSING.clear()
        manager = SheetManager(h, jobs=Jobs, embedder=lambda: None)
        st = manager.wait(manager.submit(SheetRequest(character="hero", versions=("v1", "job:j1/hero-000001.safetensors"),
                                                      weights=(1.0,), steps=2, width=64, height=64)), 600)
        meta = json.loads((Path(st.sheet).parent / "sheet.json").read_text(encoding="utf-8")) if st.sheet else {}
        networks = sys.modules.get("networks")
        return {"state": st.state, "message": st.message, "sheet": st.sheet, "columns": meta.get("columns"),
                "cells": len(st.cells),
                "loaded": [[f for _n, f in p._lora_studio_test_passes[0]["loaded"]] for p in PROCESSING],
                "prompts": [p.prompt for p in PROCESSING],
                "available_after": sorted(n for n in getattr(networks, "available_networks", {}) if n.startswith("lst"))}
    except Exception:
        return {"error": traceback.format_exc()}


def taggers(h: Any) -> dict[str, Any]:
    """The real DeepDanbooru / interrogator signatures, and LoRA Studio's messages when their weights are
    absent (``modelloader.load_models`` raises as it would offline)."""
    try:
        import inspect

        from modules import deepbooru, modelloader, shared
        from PIL import Image

        out: dict[str, Any] = {
            "deepbooru_sig": {n: list(inspect.signature(getattr(deepbooru.model, n)).parameters)
                              for n in ("start", "stop", "tag", "tag_multi")},
            "interrogate_sig": list(inspect.signature(shared.interrogator.interrogate).parameters),
            "available": h.caption_taggers(),
        }
        real = modelloader.load_models

        def absent(*args: Any, **kwargs: Any) -> Any:
            raise FileNotFoundError(f"weights absent: {kwargs.get('download_name', '')}")

        modelloader.load_models = absent
        try:
            for kind in ("deepbooru", "interrogate"):
                try:
                    with h.caption_tagger(kind) as tag:
                        tag(Image.new("RGB", (64, 64), (200, 200, 200)))
                    out[kind] = "no error"
                except Exception as exc:
                    out[kind] = f"{type(exc).__name__}: {exc}"
        finally:
            modelloader.load_models = real
        return out
    except Exception:
        return {"error": traceback.format_exc()}


def serve_ui() -> None:
    """As ``webui.py`` without ``--nowebui``: build the real UI, launch it on loopback, add the extra-networks
    routes and run app_started; write the URL to ``ui_ready`` and serve until ``ui_stop`` exists."""
    import time

    from modules import script_callbacks, shared, ui, ui_extra_networks

    shared.demo = ui.create_ui()
    shared.demo.queue(64)
    # The page's CSS/JS are gradio files (``file=...``) that must lie in an allowed path: the WebUI's folder,
    # its data dir (the default --gradio-allowed-path) and LoRA Studio's folder (symlinked into the data
    # dir's extensions/; gradio resolves links).
    allowed = [str(Path.cwd()), *(getattr(shared.cmd_opts, "gradio_allowed_path", None) or []),
               str(Path(__file__).resolve().parents[1]), *CONFIG.get("allowed_paths", [])]
    app, local_url, _share = shared.demo.launch(
        server_name="127.0.0.1", server_port=int(CONFIG["ui_port"]), prevent_thread_lock=True, inbrowser=False,
        allowed_paths=allowed,
    )  # fmt: skip
    with contextlib.suppress(Exception):
        ui.setup_ui_api(app)
    ui_extra_networks.add_pages_to_demo(app)
    script_callbacks.app_started_callback(shared.demo, app)
    OUT["ui_url"] = local_url
    Path(CONFIG["ui_ready"]).write_text(local_url, encoding="utf-8")
    stop = Path(CONFIG["ui_stop"])
    deadline = time.monotonic() + float(CONFIG.get("ui_seconds", 900))
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(Exception):
        shared.demo.close()


def run_scenario(api: Any, models: Any, spec: dict[str, Any], forge: bool) -> dict[str, Any]:
    kind = spec.get("kind", "txt2img")
    if kind == "paste":
        if spec.get("fresh"):
            # As after a restart: the built-in Lora's tables hold only what it scanned itself.
            sys.modules["networks"].list_available_networks()
        source = OUT["scenarios"][spec["from"]]
        return paste(source["infotexts"][spec.get("index", 0)])
    req = dict(spec.get("request", {}))
    if spec.get("from_paste"):
        params = OUT["scenarios"][spec["from_paste"]]["params"]
        req.update(prompt=params["Prompt"], negative_prompt=params.get("Negative prompt", ""))
        if params.get("Hires prompt"):
            req["hr_prompt"] = params["Hires prompt"]
    req.setdefault("width", 64)
    req.setdefault("height", 64)
    req.setdefault("steps", 2)
    req.setdefault("sampler_name", "Euler")
    req.setdefault("save_images", False)
    req.setdefault("send_images", False)
    if forge and req.get("enable_hr"):
        req.setdefault("hr_additional_modules", ["Use same choices"])  # what Forge's UI sends
    if kind == "direct":
        return run_direct(api, req)
    if kind == "img2img":
        import base64
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (req["width"], req["height"]), (128, 128, 128)).save(buf, format="PNG")
        req["init_images"] = ["data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()]
        response = api.img2imgapi(models.StableDiffusionImg2ImgProcessingAPI(**req))
    else:
        response = api.text2imgapi(models.StableDiffusionTxt2ImgProcessingAPI(**req))
    return report(json.loads(response.info))


def run_direct(api: Any, req: dict[str, Any]) -> dict[str, Any]:
    """txt2img built as the API builds it, but with a list of prompts (what "Prompts from file" and
    wildcard scripts hand the WebUI): one batch, different prompts."""
    from modules import processing, scripts, shared

    runner = scripts.scripts_txt2img
    req.pop("save_images", None)
    req.pop("send_images", None)
    p = processing.StableDiffusionProcessingTxt2Img(sd_model=shared.sd_model, do_not_save_samples=True, do_not_save_grid=True, **req)
    p.scripts = runner
    p.script_args = tuple(api.default_script_arg_txt2img)
    processed = processing.process_images(p)
    return report(json.loads(processed.js()))


def report(info: dict[str, Any]) -> dict[str, Any]:
    p = PROCESSING[-1] if PROCESSING else None
    networks = sys.modules.get("networks")
    return {
        "all_prompts": info.get("all_prompts"),
        "all_negative_prompts": info.get("all_negative_prompts"),
        "all_hr_prompts": list(getattr(p, "all_hr_prompts", None) or []),
        "infotexts": info.get("infotexts"),
        "comments": list(getattr(p, "comments", {}) or {}),
        "encoded": [list(batch) for batch in ENCODED],
        "loaded": [
            [n.mentioned_name, n.network_on_disk.filename, n.te_multiplier, n.unet_multiplier]
            for n in (networks.loaded_networks if networks is not None else [])
        ],
        "forge_applied": FORGE_APPLIED[:],
        "loaded_per_pass": getattr(p, "_lora_studio_test_passes", []),
    }


def paste(infotext: str) -> dict[str, Any]:
    from modules import infotext_utils, script_callbacks

    params = infotext_utils.parse_generation_parameters(infotext)
    script_callbacks.infotext_pasted_callback(infotext, params)
    return {"params": {k: v for k, v in params.items() if isinstance(v, (str, int, float))}}


# ------------------------------------------------------------------------------------------------
# stubs: model weights and sampling


def _tokenizer() -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(CONFIG["clip_tokenizer"])


class FakeCheckpointModel:
    """Stands in for a loaded SD1.5 model: no weights; records the text encoder's input."""

    def __init__(self, checkpoint_info: Any) -> None:
        import torch

        self.sd_checkpoint_info = checkpoint_info
        self.sd_model_checkpoint = checkpoint_info.filename
        self.sd_model_hash = getattr(checkpoint_info, "calculate_shorthash", lambda: None)() or "0123456789"
        self.filename = checkpoint_info.filename
        self.is_sdxl = "xl" in os.path.basename(checkpoint_info.filename).lower()
        self.is_sd1, self.is_sd2, self.is_sd3, self.is_ssd = not self.is_sdxl, False, False, False
        self.is_sdxl_inpaint = False
        self.lowvram = False
        self.parameterization = "eps"
        self.cond_stage_key = "txt"
        self.latent_channels = 4
        self.network_layer_mapping: dict[str, Any] = {}
        self.first_stage_model = torch.nn.Identity()
        self.first_stage_model.dtype = torch.float32
        self.model = torch.nn.Identity()
        self.model.conditioning_key = "crossattn"
        self.cond_stage_model = torch.nn.Identity()
        self.tokenizer = _tokenizer()
        self.comments: list[str] = []
        self.extra_generation_params: dict[str, Any] = {}
        self.current_lora_hash = ""

    @contextlib.contextmanager
    def ema_scope(self):
        yield

    def get_learned_conditioning(self, texts: list[str]) -> Any:
        import torch

        texts = list(texts)
        ENCODED.append(texts)
        ids = self.tokenizer(texts, truncation=False)["input_ids"]
        out = torch.zeros(len(texts), 77, 768)
        for i, row in enumerate(ids):
            out[i, 0, 0] = float(len(row))  # token count, so equal prompts give equal conds
        return out

    def encode_first_stage(self, x: Any) -> Any:
        import torch

        return torch.zeros(x.shape[0], 4, x.shape[2] // 8, x.shape[3] // 8)

    def get_first_stage_encoding(self, z: Any) -> Any:
        return z

    def decode_first_stage(self, x: Any) -> Any:
        import torch

        return torch.zeros(x.shape[0], 3, x.shape[2] * 8, x.shape[3] * 8)

    def to(self, *args: Any, **kwargs: Any) -> FakeCheckpointModel:
        return self


class _NS:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class FakeForgeObjects:
    """What Forge keeps on ``sd_model.forge_objects`` (unet/clip/vae patchers), reduced to what processing
    and the built-in LoRA lookup read."""

    def __init__(self) -> None:
        import torch

        self.unet = _NS(model=_NS(storage_dtype=torch.float32, predictor=None))
        self.clip = _NS()
        self.vae = _NS(latent_channels=4)

    def shallow_copy(self) -> FakeForgeObjects:
        new = FakeForgeObjects()
        new.unet, new.clip, new.vae = self.unet, self.clip, self.vae
        return new


class FakeForgeModel(FakeCheckpointModel):
    def __init__(self, checkpoint_info: Any) -> None:
        super().__init__(checkpoint_info)
        self.forge_objects = FakeForgeObjects()
        self.forge_objects_original = self.forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()
        self.model_config = _NS()
        self.use_distilled_cfg_scale = False
        self.tiling_enabled = False
        self.is_inpaint = False
        self.is_webui_legacy_model = lambda: True

    def set_clip_skip(self, clip_skip: int) -> None:
        pass


class FakeSampler:
    conditioning_key = "crossattn"
    config = None

    def __init__(self, model: Any = None) -> None:
        self.p = None
        self.model_wrap = _NS(inner_model=model)

    def sample(self, p: Any, x: Any, conditioning: Any, unconditional_conditioning: Any, steps: Any = None, image_conditioning: Any = None) -> Any:
        _record_pass(p)
        return x

    def sample_img2img(self, p: Any, x: Any, noise: Any, conditioning: Any, unconditional_conditioning: Any, steps: Any = None, image_conditioning: Any = None) -> Any:
        _record_pass(p)
        return x


def _record_pass(p: Any) -> None:
    networks = sys.modules.get("networks")
    loaded = [[n.mentioned_name, n.network_on_disk.filename] for n in networks.loaded_networks] if networks else []
    passes = getattr(p, "_lora_studio_test_passes", [])
    passes.append({"hr": bool(getattr(p, "is_hr_pass", False)), "loaded": loaded})
    p._lora_studio_test_passes = passes
    if p not in PROCESSING:
        PROCESSING.append(p)


def install_stubs(forge: bool) -> None:
    from modules import processing, sd_models, sd_samplers

    def create_sampler(name: str, model: Any) -> FakeSampler:
        return FakeSampler(model)

    sd_samplers.create_sampler = create_sampler
    processing.sd_samplers.create_sampler = create_sampler

    def load_fake(checkpoint_info: Any = None, *args: Any, **kwargs: Any) -> Any:
        current = sd_models.model_data.sd_model
        target = checkpoint_info or sd_models.select_checkpoint()
        if isinstance(current, FakeCheckpointModel) and current.sd_checkpoint_info.filename == target.filename:
            return current
        model = (FakeForgeModel if forge else FakeCheckpointModel)(target)
        sd_models.model_data.set_sd_model(model)
        sd_models.model_data.was_loaded_at_least_once = True
        return model

    if forge:
        def forge_model_reload() -> Any:
            params = getattr(sd_models.model_data, "forge_loading_parameters", {}) or {}
            return load_fake(params.get("checkpoint_info")), False

        sd_models.forge_model_reload = forge_model_reload
        processing.forge_model_reload = forge_model_reload
        processing_forge_patches(load_fake)
    else:
        sd_models.load_model = lambda checkpoint_info=None, already_loaded_state_dict=None: load_fake(checkpoint_info)

        def reload_model_weights(sd_model: Any = None, info: Any = None, forced_reload: bool = False) -> Any:
            return load_fake(info)

        sd_models.reload_model_weights = reload_model_weights
        processing.sd_models.reload_model_weights = reload_model_weights


def select_checkpoint(title: str) -> None:
    from modules import sd_models, shared

    info = sd_models.get_closet_checkpoint_match(title)
    if info is None:
        raise RuntimeError(f"checkpoint {title} not listed: {list(sd_models.checkpoints_list)}")
    shared.opts.set("sd_model_checkpoint", info.title)  # its onchange reloads: the stub by now
    if hasattr(sd_models.model_data, "forge_loading_parameters"):
        sd_models.model_data.forge_loading_parameters = dict(
            sd_models.model_data.forge_loading_parameters or {}, checkpoint_info=info
        )
    OUT.setdefault("checkpoint_titles", []).append(info.title)


def processing_forge_patches(load_fake: Any) -> None:
    """Forge: the model object carries ``forge_objects``; the LoRA patcher is replaced by a recorder."""
    networks = sys.modules.get("networks")
    if networks is not None:
        def load_lora_for_models(model, clip, lora, strength_model, strength_clip, filename="default", online_mode=False):
            FORGE_APPLIED.append([filename, strength_model, strength_clip])
            return model, clip

        networks.load_lora_for_models = load_lora_for_models
        networks.load_lora_state_dict = lambda filename: {}


if __name__ == "__main__":
    try:
        main()
    except Exception:
        OUT["errors"].append(traceback.format_exc())
    Path(CONFIG["out"]).write_text(json.dumps(OUT, indent=1, default=str), encoding="utf-8")
    sys.stdout.flush()
    os._exit(0)  # the WebUI leaves non-daemon threads behind
