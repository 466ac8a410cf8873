"""Structure -> architecture: the block layout and one width name the base model a header was made for."""

from __future__ import annotations

from dataclasses import dataclass, field

from lib_lora.architecture.keys import _Scan
from lib_lora.architecture.taxonomy import UNKNOWN, Evidence


@dataclass
class _Result:
    arch: str = UNKNOWN
    candidates: tuple[str, ...] = ()
    evidence: list[Evidence] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    family: str | None = None  # a variant structure itself shows (checkpoints: Flux dev vs schnell)

    def set(self, arch: str, detail: str, candidates: tuple[str, ...] = ()) -> _Result:
        self.arch = arch
        self.candidates = candidates
        claim = "architecture=" + ("|".join(candidates) if candidates else arch)
        self.evidence.append(Evidence("structure", claim, detail))
        return self


def _short(module: str | None) -> str:
    if module is None:
        return "?"
    return module if len(module) <= 72 else module[:34] + "…" + module[-34:]


_UNET_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}


_ATTN2_PROBES = tuple(f"{block}.transformer_blocks.0.attn2.to_k" for block in (
    "input_blocks.4.1", "input_blocks.1.1", "down_blocks.1.attentions.0", "down_blocks.0.attentions.0",
    "middle_block.1", "mid_block.attentions.0"))


def _unet(s: _Scan, r: _Result) -> _Result:
    w, m = None, None
    for pfx, group in s.prefixes.items():  # direct lookups first: no scan
        if group == "denoiser" and w is None:
            for path in _ATTN2_PROBES:
                m = pfx + s.needle(path)[:-1]
                w = s.width(m)
                if w is not None:
                    break
    if w is None:
        # diffusers attention-processor LoRAs name the layer "attn2.processor.to_k_lora"
        w, m = s.first_width("attn2.to_k", "attn2.to_v", "attn2.processor.to_k_lora")
    if w is not None:
        arch = _UNET_WIDTHS.get(w)
        if arch:
            return r.set(arch, f"U-Net cross-attention input width {w} ({_short(m)})")
        return r.set(UNKNOWN, f"U-Net cross-attention input width {w} matches no known base ({_short(m)})")
    # no readable cross-attention width: other structural signs
    m = s.find_module("label_emb", end=False)
    if m is not None:
        lw = s.width(m)
        if lw == 2560:
            return r.set("sdxl-refiner", f"label_emb input width 2560 ({_short(m)})")
        return r.set("sdxl", f"label_emb (class/size conditioning exists only in SDXL) ({_short(m)})")
    pw, pm = s.first_width("proj_in", "attn1.to_q")
    if pw in (384, 768, 1536) and s.has("transformer_blocks.3.", end=False):
        return r.set("sdxl-refiner", f"transformer widths {pw} and depth 4 (SDXL refiner) ({_short(pm)})")
    if s.has("transformer_blocks.2.", end=False):
        return r.set("sdxl", "transformer_blocks index 2 or higher (SD1/SD2 have one block per level)")
    if s.has("input_blocks.4.1.", end=False) and not s.has("input_blocks.1.1.", end=False):
        return r.set("sdxl", "attention at input_blocks 4.1 but none at 1.1 (SDXL's first level has no attention)")
    if s.has("down_blocks.1.attentions.", end=False) and not s.has("down_blocks.0.attentions.", end=False):
        return r.set("sdxl", "attention in down_blocks 1 but none in down_blocks 0 (SDXL's first level has none)")
    pm = s.find_module("proj_in")
    if pm is not None:
        info = s.tensors.get(pm + ".lora_down.weight") or s.tensors.get(pm + ".lora_A.weight") or \
            s.tensors.get(pm + ".weight")
        if info is not None and len(info[1]) == 4:
            return r.set("sd1", f"proj_in is a 1x1 convolution (SD1.x; SD2 and SDXL use Linear) ({_short(pm)})")
        if info is not None and len(info[1]) == 2 and (s.has("down_blocks.0.attentions.", end=False)
                                                       or s.has("input_blocks.1.1.", end=False)):
            return r.set("sd2", f"Linear proj_in with attention on the first level (SD2.x) ({_short(pm)})")
    if s.has("down_blocks.0.attentions.", end=False) or s.has("input_blocks.1.1.", end=False):
        return r.set(UNKNOWN, "U-Net attention on the first level (SD1.x or SD2.x; SDXL has none there) but no "
                              "readable width", ("sd1", "sd2"))
    return r.set(UNKNOWN, "U-Net layers without a cross-attention width", ("sd1", "sd2", "sdxl"))


def _bfl(s: _Scan, r: _Result) -> _Result:
    if s.sampled("img_mlp_fc1", "txt_mlp_fc1", "img_mod_linear", "modulation_linear"):
        return r.set("hunyuan-video", "double/single blocks with img_mlp.fc1 / mod.linear names (HunyuanVideo)")
    if s.direct_key("distilled_guidance_layer.in_proj.weight"):
        return r.set("chroma", "distilled_guidance_layer (Chroma's modulation approximator)")
    if s.direct_key("double_stream_modulation_img.lin.weight"):
        return r.set("flux2", "shared double_stream_modulation layers (Flux.2)")
    w, m = s.direct_width("double_blocks.0.img_attn.qkv", "double_blocks.0.txt_attn.qkv", "single_blocks.0.linear1")
    if w is None:
        w, m = s.first_width("img_attn.qkv", "txt_attn.qkv", "linear1", "img_attn.proj", "txt_attn.proj")
    if w == 3584:
        return r.set("hunyuan-image", f"double/single blocks, hidden width 3584 ({_short(m)})")
    if w in (4096, 6144):
        return r.set("flux2", f"double/single blocks, hidden width {w} (Flux.2) ({_short(m)})")
    if w == 3072 and s.direct_width("double_blocks.19.img_attn.qkv", "double_blocks.19.txt_attn.qkv",
                                    "single_blocks.38.linear1", "single_blocks.39.linear1")[0] is not None:
        return r.set("hunyuan-video", "20 double / 40 single blocks at width 3072 (HunyuanVideo)")
    mlp, mm = s.direct_width("single_blocks.0.linear2", "single_blocks.1.linear2", "double_blocks.0.img_mlp.2",
                             "double_blocks.0.txt_mlp.2")
    if mlp is None:
        mlp, mm = s.first_width("linear2", "img_mlp.2", "txt_mlp.2")
    flux2 = mlp in (12288, 9216) if mm is not None and mm.endswith("linear2") else mlp == 9216
    if flux2:
        return r.set("flux2", f"SwiGLU MLP width {mlp} (Flux.2 ratio 3) ({_short(mm)})")
    if w is not None and w != 3072:
        return r.set(UNKNOWN, f"double/single blocks at unknown width {w} ({_short(m)})", ("flux1", "chroma", "flux2"))
    modulation = s.sampled("_img_mod_lin", "_txt_mod_lin", "_modulation_lin") or s.direct_width(
        *(f"double_blocks.{i}.{x}_mod.lin" for i in (0, 1, 2) for x in ("img", "txt")),
        *(f"single_blocks.{i}.modulation.lin" for i in (0, 1, 2)))[0] is not None
    if modulation:
        if s.direct_key("guidance_in.in_layer.weight"):
            r.family = "flux1-dev"
        elif s.direct_key("time_in.in_layer.weight"):
            r.family = "flux1-schnell"
        return r.set("flux1", "double/single blocks with per-block modulation layers (Flux.1; Chroma has none)")
    cands: tuple[str, ...] = ("flux1", "chroma") if mlp is not None else ("flux1", "chroma", "flux2")
    return r.set("flux1", "double/single blocks without modulation layers: Flux.1 and Chroma share this layout",
                 cands)


def _mmdit(s: _Scan, r: _Result) -> _Result:
    w, m = s.direct_width("joint_blocks.0.x_block.attn.qkv", "joint_blocks.0.context_block.attn.qkv",
                          "joint_blocks.1.x_block.attn.qkv")
    if w is None:
        w, m = s.first_width("x_block.attn.qkv", "context_block.attn.qkv", "x_block.mlp.fc1", "x_block.attn.proj")
    if w == 2432:
        return r.set("sd3.5-large", f"MMDiT hidden width 2432 ({_short(m)})")
    if w == 1536 or w is None:
        if s.sampled("_x_block_attn2_") or s.direct_width("joint_blocks.0.x_block.attn2.qkv",
                                                           "joint_blocks.1.x_block.attn2.qkv")[0] is not None:
            return r.set("sd3.5-medium", "MMDiT x_block.attn2 layers (SD 3.5 Medium's MMDiT-X)")
        if w == 1536 and m is not None and "joint_blocks" + s.sep + "0" + s.sep + "x_block" in m:
            return r.set("sd3", f"MMDiT hidden width 1536 without x_block.attn2 ({_short(m)})")
        if w is None and s.has_start("joint_blocks.37."):
            return r.set("sd3.5-large", "38 joint blocks (SD 3.5 Large)")
        if w == 1536:
            return r.set("sd3", f"MMDiT hidden width 1536 ({_short(m)})", ("sd3", "sd3.5-medium"))
        return r.set(UNKNOWN, "MMDiT joint blocks without a readable width", ("sd3", "sd3.5-medium", "sd3.5-large"))
    return r.set(UNKNOWN, f"MMDiT joint blocks at unknown width {w} ({_short(m)})")


def _dit_mm(s: _Scan, r: _Result) -> _Result:
    if s.sampled("to_qkv_mlp_proj", "_ff_linear_in", "_ff_context_linear_in"):
        return r.set("flux2", "to_qkv_mlp_proj / SwiGLU linear_in layers (Flux.2, diffusers names)")
    w, m = s.direct_width("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                          "transformer_blocks.0.attn.add_q_proj", "single_transformer_blocks.0.attn.to_q")
    if w is None:
        w, m = s.first_width("attn.to_q", "attn.add_q_proj", "attn.to_k", "attn.to_v", "proj_mlp", "ff.net.0.proj")
    if w == 2432:
        return r.set("sd3.5-large", f"joint transformer hidden width 2432 ({_short(m)})")
    if w == 1536:
        if s.sampled("_attn2_") or s.direct_width("transformer_blocks.0.attn2.to_q",
                                                   "transformer_blocks.0.attn2.to_k")[0] is not None:
            return r.set("sd3.5-medium", "transformer_blocks with attn2 (SD 3.5 Medium)")
        if m is not None and "transformer_blocks" + s.sep + "0" + s.sep + "attn" + s.sep in m:
            return r.set("sd3", f"joint transformer hidden width 1536 without attn2 ({_short(m)})")
        return r.set("sd3", f"joint transformer hidden width 1536 ({_short(m)})", ("sd3", "sd3.5-medium"))
    if w in (4096, 6144):
        return r.set("flux2", f"joint transformer hidden width {w} (Flux.2) ({_short(m)})")
    if w == 3072:
        if s.sampled("token_refiner") or s.direct_width(
                "transformer_blocks.19.attn.to_q", "transformer_blocks.19.attn.to_k", "single_transformer_blocks.38.attn.to_q",
                "single_transformer_blocks.39.attn.to_q")[0] is not None:
            return r.set("hunyuan-video", "more than 19 double / 38 single blocks at width 3072 (HunyuanVideo)")
        if s.sampled("_norm1_linear", "_norm1_context_linear", "_norm_linear") or s.direct_width(
                "transformer_blocks.0.norm1.linear", "single_transformer_blocks.0.norm.linear")[0] is not None:
            return r.set("flux1", "per-block norm1.linear modulation (Flux.1; Chroma has none)")
        single = any(n.startswith("single_transformer_blocks_") for n in s.names) or \
            s.find_module("single_transformer_blocks", end=False) is not None
        cands: tuple[str, ...] = ("flux1", "chroma") if single else ("flux1", "chroma", "flux2")
        return r.set("flux1", "transformer_blocks + single_transformer_blocks at width 3072: Flux.1 and Chroma "
                              "share this layout", cands)
    return r.set(UNKNOWN, f"joint transformer blocks at unknown width {w} ({_short(m)})")


def _dit_attn12(s: _Scan, r: _Result) -> _Result:
    w, m = s.first_width("attn1.to_q", "attn1.to_k", "attn2.to_q")
    if w == 1152:
        return r.set("pixart", f"transformer_blocks attn1/attn2 at width 1152 (PixArt) ({_short(m)})")
    if w == 2048:
        return r.set("ltx-video", f"transformer_blocks attn1/attn2 at width 2048 (LTX-Video) ({_short(m)})")
    return r.set(UNKNOWN, f"transformer_blocks attn1/attn2 at width {w} ({_short(m)})", ("pixart", "ltx-video"))


def _blocks_attn12(s: _Scan, r: _Result) -> _Result:
    if s.sampled("_ffn_"):
        return r.set("wan", "blocks.N.attn1/attn2 with ffn (Wan, diffusers names)")
    w, m = s.first_width("attn1.to_q", "attn1.to_k")
    if w == 1408:
        return r.set("hunyuan-dit", f"blocks.N.attn1 at width 1408 (Hunyuan-DiT) ({_short(m)})")
    if w in (1536, 5120, 3072):
        return r.set("wan", f"blocks.N.attn1 at width {w} (Wan) ({_short(m)})")
    return r.set(UNKNOWN, f"blocks.N.attn1 at width {w} ({_short(m)})", ("hunyuan-dit", "wan"))


def _te_only(s: _Scan, r: _Result) -> _Result:
    groups = {g for g, n in s.groups.items() if n and g.startswith("te")}
    te = _te_widths(s)
    if "te" in groups and not groups & {"te1", "te2", "te3"}:
        w = te.get("te")
        if w == 768:
            return r.set("sd1", "text encoder only, width 768 (CLIP ViT-L: SD1.x)")
        if w == 1024:
            return r.set("sd2", "text encoder only, width 1024 (OpenCLIP ViT-H: SD2.x)")
        return r.set(UNKNOWN, f"text encoder only, width {w}")
    if {"te1", "te2", "te3"} <= groups:
        return r.set("sd3", "text encoders CLIP-L + CLIP-G + T5 (SD3 family)", ("sd3", "sd3.5-medium", "sd3.5-large"))
    if {"te1", "te2"} <= groups or ("te" in groups and "te2" in groups):
        return r.set("sdxl", f"two CLIP text encoders (widths {te.get('te1') or te.get('te')} + {te.get('te2')}: SDXL)",
                     ("sdxl", "sd3", "sd3.5-medium", "sd3.5-large") if "te3" not in groups else ())
    if "te1" in groups and "te3" in groups:
        return r.set("flux1", "CLIP-L + T5 text encoders without CLIP-G (Flux.1)")
    if groups == {"te1"}:
        return r.set("sdxl", "CLIP-L text encoder only", ("sdxl", "flux1", "sd3"))
    if groups == {"te2"}:
        return r.set("sdxl", "CLIP-G text encoder only", ("sdxl", "sd3"))
    if groups == {"te3"}:
        return r.set("flux1", "T5 text encoder only", ("flux1", "chroma", "sd3"))
    return r


def _te_widths(s: _Scan) -> dict[str, int]:
    """Hidden width of each text encoder the header adapts (CLIP-L 768, OpenCLIP-H 1024, CLIP-G 1280, T5 4096)."""
    out: dict[str, int] = {}
    blob = s.blob
    for pfx, group in s.prefixes.items():
        if not group.startswith("te") or group in out:
            continue
        start = blob.find("\n" + pfx)
        if start < 0:
            continue
        for path in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.fc1", "SelfAttention.q"):
            n = s.needle(path)
            i = blob.find(n, start)
            if i < 0:
                continue
            ls = blob.rfind("\n", 0, i) + 1
            if not blob.startswith(pfx, ls):
                continue
            w = s.width(blob[ls:i + len(n) - 1])
            if w:
                out[group] = w
                break
    return out


_BRANCHES = {
    "unet-sgm": _unet, "unet-diffusers": _unet, "bfl": _bfl, "mmdit": _mmdit, "dit-mm": _dit_mm,
    "dit-attn12": _dit_attn12, "blocks-attn12": _blocks_attn12,
}
_DIRECT = {
    "cascade": ("stable-cascade", "lora_prior_unet_ prefix (Stable Cascade prior)"),
    "auraflow": ("auraflow", "joint_transformer_blocks / double_layers (AuraFlow)"),
    "hidream": ("hidream", "double_stream_blocks / single_stream_blocks (HiDream)"),
    "qwen": ("qwen-image", "transformer_blocks with img_mlp / txt_mlp / img_mod (Qwen-Image)"),
    "wan": ("wan", "blocks.N.self_attn / cross_attn / ffn (Wan)"),
    "lumina": ("lumina2", "layers.N.attention / feed_forward (Lumina 2)"),
}


_DECISIVE = ("cascade", "auraflow", "hidream", "qwen", "wan", "lumina")


def _structure(s: _Scan) -> _Result:
    r = _Result()
    denoiser = [(n, t) for t, n in s.tags.items() if not t.startswith("te:") and t != "other"]
    if denoiser:
        # a few layouts are decisive even when another tag has more samples (AuraFlow's 4 joint blocks
        # among 32 single_transformer_blocks, Qwen-Image's attention next to its img_mlp)
        tag = next((t for t in _DECISIVE if s.tags.get(t)), None) or max(denoiser)[1]
        if tag in _DIRECT:
            arch, detail = _DIRECT[tag]
            return r.set(arch, detail)
        return _BRANCHES[tag](s, r)
    if any(t.startswith("te:") for t in s.tags):
        return _te_only(s, r)
    return r
