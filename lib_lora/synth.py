"""Synthetic LoRA and checkpoint headers with the real key names and shapes of each trainer.

Pure functions: every preset returns ``(tensors, metadata)`` where ``tensors`` maps a tensor name to
``(dtype, shape)`` exactly as :func:`lib_lora.safetensors_header.read_header` reports it, so a file
written with :func:`write_lora` (zero or sparse data) is indistinguishable from a real one for anything
that reads only the header: detection, the library index, the demo library, the scan benchmark, tests.

Key names follow the trainers' own conventions:

* kohya sd-scripts (``networks.lora``, LyCORIS through ``lycoris.kohya``): ``lora_unet_`` /
  ``lora_te_`` / ``lora_te1_`` / ``lora_te2_`` / ``lora_te3_`` + the module path with ``.`` → ``_``;
  SD1/SD2 U-Nets use diffusers module paths (``down_blocks_0_attentions_0_...``), SDXL the
  ldm/sgm ones (``input_blocks_4_1_...``), Flux the BFL ones (``double_blocks_0_img_attn_qkv``), SD3 the
  MMDiT ones (``joint_blocks_0_x_block_attn_qkv``);
* PEFT / diffusers: ``unet.`` / ``text_encoder.`` / ``text_encoder_2.`` / ``transformer.`` + the dotted
  diffusers path + ``.lora_A.weight`` / ``.lora_B.weight``;
* adapters: ``lora_down``/``lora_up``/``alpha``, LoHa ``hada_w1_a``…, LoKr ``lokr_w1``/``lokr_w2_a``…,
  OFT/BOFT ``oft_blocks``, GLoRA ``a1.weight``…, DoRA ``dora_scale``, IA3 ``weight``+``on_input``,
  full ``diff``/``diff_b``, norm ``w_norm``/``b_norm``.

Shapes come from the real model configurations (SD1.5 / SDXL diffusers ``config.json``, the BFL Flux
and SD3 parameter sets). The SD1.5 and SDXL U-Net-only kohya presets reproduce the two real kohya
outputs in tests/fixtures/kohya-outputs key for key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lib_lora.safetensors_header import write_file

#: ``{tensor name: (dtype, shape)}``
Tensors = dict[str, tuple[str, tuple[int, ...]]]
#: what every preset returns
Synth = tuple[Tensors, dict[str, str]]


@dataclass(frozen=True)
class Mod:
    """One adaptable layer: its dotted path inside a component and its input/output width."""

    name: str
    inp: int
    out: int
    kernel: tuple[int, ...] = ()  # () for Linear, (1, 1) / (3, 3) for Conv2d


# --------------------------------------------------------------------------------------------------
# Module tables (dotted paths, real widths)

#: (block path, channels, transformer depth) of each attention block.
_UNET_ATTENTION_BLOCKS: dict[str, list[tuple[str, int, int]]] = {
    # SD1.x / SD2.x, diffusers paths (what kohya train_network.py names)
    "sd-diffusers": [
        *[(f"down_blocks.{b}.attentions.{a}", c, 1) for b, c in ((0, 320), (1, 640), (2, 1280)) for a in (0, 1)],
        ("mid_block.attentions.0", 1280, 1),
        *[(f"up_blocks.{b}.attentions.{a}", c, 1) for b, c in ((1, 1280), (2, 640), (3, 320)) for a in (0, 1, 2)],
    ],
    # SD1.x / SD2.x, ldm paths (single-file checkpoints)
    "sd-ldm": [
        *[(f"input_blocks.{i}.1", c, 1) for i, c in ((1, 320), (2, 320), (4, 640), (5, 640), (7, 1280), (8, 1280))],
        ("middle_block.1", 1280, 1),
        *[(f"output_blocks.{i}.1", c, 1) for i, c in ((3, 1280), (4, 1280), (5, 1280), (6, 640), (7, 640), (8, 640),
                                                       (9, 320), (10, 320), (11, 320))],
    ],
    # SDXL base, diffusers paths (PEFT / diffusers LoRAs, diffusers checkpoints)
    "sdxl-diffusers": [
        *[(f"down_blocks.{b}.attentions.{a}", c, d) for b, c, d in ((1, 640, 2), (2, 1280, 10)) for a in (0, 1)],
        ("mid_block.attentions.0", 1280, 10),
        *[(f"up_blocks.{b}.attentions.{a}", c, d) for b, c, d in ((0, 1280, 10), (1, 640, 2)) for a in (0, 1, 2)],
    ],
    # SDXL base, sgm paths (kohya sdxl_train_network.py, single-file checkpoints)
    "sdxl-sgm": [
        *[(f"input_blocks.{i}.1", c, d) for i, c, d in ((4, 640, 2), (5, 640, 2), (7, 1280, 10), (8, 1280, 10))],
        ("middle_block.1", 1280, 10),
        *[(f"output_blocks.{i}.1", c, d) for i, c, d in ((0, 1280, 10), (1, 1280, 10), (2, 1280, 10),
                                                          (3, 640, 2), (4, 640, 2), (5, 640, 2))],
    ],
    # SDXL refiner (model_channels 384, channel_mult 1,2,4,4, transformer depth 4 on levels 1-2)
    "refiner-sgm": [
        *[(f"input_blocks.{i}.1", c, 4) for i, c in ((4, 768), (5, 768), (7, 1536), (8, 1536))],
        ("middle_block.1", 1536, 4),
        *[(f"output_blocks.{i}.1", c, 4) for i, c in ((3, 1536), (4, 1536), (5, 1536), (6, 768), (7, 768), (8, 768))],
    ],
}


def unet_attention_mods(layout: str, context_dim: int, *, conv_proj: bool) -> list[Mod]:
    """Every Linear of the U-Net's transformer blocks (what kohya's default LoRA targets)."""
    mods: list[Mod] = []
    proj_kernel = (1, 1) if conv_proj else ()
    for block, c, depth in _UNET_ATTENTION_BLOCKS[layout]:
        mods.append(Mod(f"{block}.proj_in", c, c, proj_kernel))
        mods.append(Mod(f"{block}.proj_out", c, c, proj_kernel))
        for t in range(depth):
            tb = f"{block}.transformer_blocks.{t}"
            for attn, kv in (("attn1", c), ("attn2", context_dim)):
                mods.append(Mod(f"{tb}.{attn}.to_q", c, c))
                mods.append(Mod(f"{tb}.{attn}.to_k", kv, c))
                mods.append(Mod(f"{tb}.{attn}.to_v", kv, c))
                mods.append(Mod(f"{tb}.{attn}.to_out.0", c, c))
            mods.append(Mod(f"{tb}.ff.net.0.proj", c, 8 * c))  # GEGLU: 2 x 4c
            mods.append(Mod(f"{tb}.ff.net.2", 4 * c, c))
    return mods


def unet_attention_only_mods(layout: str, context_dim: int) -> list[Mod]:
    """``to_q``/``to_k``/``to_v``/``to_out.0`` only: what the diffusers LoRA training scripts target."""
    return [m for m in unet_attention_mods(layout, context_dim, conv_proj=False)
            if ".attn1." in m.name or ".attn2." in m.name]


def sd_unet_conv_mods() -> list[Mod]:
    """The SD1.x U-Net's ResNet/down/up-sampler layers (diffusers paths): what LoCon adds with ``conv_dim``."""
    mods: list[Mod] = []
    out = [320, 640, 1280, 1280]
    prev = 320
    for b, c in enumerate(out):
        for r in range(2):
            cin = prev if r == 0 else c
            base = f"down_blocks.{b}.resnets.{r}"
            mods += [Mod(f"{base}.conv1", cin, c, (3, 3)), Mod(f"{base}.time_emb_proj", 1280, c),
                     Mod(f"{base}.conv2", c, c, (3, 3))]
            if cin != c:
                mods.append(Mod(f"{base}.conv_shortcut", cin, c, (1, 1)))
        if b < 3:
            mods.append(Mod(f"down_blocks.{b}.downsamplers.0.conv", c, c, (3, 3)))
        prev = c
    for r in range(2):
        base = f"mid_block.resnets.{r}"
        mods += [Mod(f"{base}.conv1", 1280, 1280, (3, 3)), Mod(f"{base}.time_emb_proj", 1280, 1280),
                 Mod(f"{base}.conv2", 1280, 1280, (3, 3))]
    rev = list(reversed(out))
    prev = rev[0]
    for b, c in enumerate(rev):
        skip_in = rev[min(b + 1, 3)]
        for r in range(3):
            res_skip = skip_in if r == 2 else c
            cin = (prev if r == 0 else c) + res_skip
            base = f"up_blocks.{b}.resnets.{r}"
            mods += [Mod(f"{base}.conv1", cin, c, (3, 3)), Mod(f"{base}.time_emb_proj", 1280, c),
                     Mod(f"{base}.conv2", c, c, (3, 3)), Mod(f"{base}.conv_shortcut", cin, c, (1, 1))]
        if b < 3:
            mods.append(Mod(f"up_blocks.{b}.upsamplers.0.conv", c, c, (3, 3)))
        prev = c
    return mods


def clip_mods(layers: int, hidden: int, *, prefix: str = "text_model.encoder.layers") -> list[Mod]:
    """CLIP text-encoder attention and MLP Linears (``text_model.encoder.layers.N...``)."""
    mods: list[Mod] = []
    for i in range(layers):
        base = f"{prefix}.{i}"
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            mods.append(Mod(f"{base}.self_attn.{p}", hidden, hidden))
        mods.append(Mod(f"{base}.mlp.fc1", hidden, 4 * hidden))
        mods.append(Mod(f"{base}.mlp.fc2", 4 * hidden, hidden))
    return mods


def t5_mods(layers: int = 24, d_model: int = 4096, d_ff: int = 10240) -> list[Mod]:
    """T5-XXL encoder Linears (kohya ``lora_te3_encoder_block_0_layer_0_SelfAttention_q``)."""
    mods: list[Mod] = []
    for i in range(layers):
        base = f"encoder.block.{i}.layer"
        for p in ("q", "k", "v", "o"):
            mods.append(Mod(f"{base}.0.SelfAttention.{p}", d_model, d_model))
        mods += [Mod(f"{base}.1.DenseReluDense.wi_0", d_model, d_ff), Mod(f"{base}.1.DenseReluDense.wi_1", d_model, d_ff),
                 Mod(f"{base}.1.DenseReluDense.wo", d_ff, d_model)]
    return mods


def bfl_mods(hidden: int = 3072, double: int = 19, single: int = 38, mlp_ratio: float = 4.0, *,
             modulation: bool = True, swiglu: bool = False, hunyuan_names: bool = False) -> list[Mod]:
    """Flux-style (BFL) double/single stream blocks.

    Flux.1 dev/schnell: 3072, 19 + 38, per-block modulation. Chroma: the same without modulation.
    Flux.2: no per-block modulation, SwiGLU MLPs (klein 4B: 3072, 5 + 20, ratio 3). HunyuanVideo
    (musubi-tuner names ``img_mlp.fc1`` / ``img_mod.linear``): 3072, 20 + 40.
    """
    mlp = int(hidden * mlp_ratio)
    mlp_out = 2 * mlp if swiglu else mlp
    mods: list[Mod] = []
    fc1, fc2, mod_lin, smod = ("mlp.fc1", "mlp.fc2", "mod.linear", "modulation.linear") if hunyuan_names else (
        "mlp.0", "mlp.2", "mod.lin", "modulation.lin")
    for i in range(double):
        for s in ("img", "txt"):
            base = f"double_blocks.{i}.{s}"
            mods += [Mod(f"{base}_attn.qkv", hidden, 3 * hidden), Mod(f"{base}_attn.proj", hidden, hidden),
                     Mod(f"{base}_{fc1}", hidden, mlp_out), Mod(f"{base}_{fc2}", mlp, hidden)]
            if modulation:
                mods.append(Mod(f"{base}_{mod_lin}", hidden, 6 * hidden))
    for i in range(single):
        base = f"single_blocks.{i}"
        mods += [Mod(f"{base}.linear1", hidden, 3 * hidden + mlp_out), Mod(f"{base}.linear2", hidden + mlp, hidden)]
        if modulation:
            mods.append(Mod(f"{base}.{smod}", hidden, 3 * hidden))
    return mods


def flux_diffusers_mods(hidden: int = 3072, double: int = 19, single: int = 38, *, norms: bool = False) -> list[Mod]:
    """diffusers ``FluxTransformer2DModel`` paths (``transformer_blocks.N.attn.to_q``, ``single_transformer_blocks``)."""
    mlp = 4 * hidden
    mods: list[Mod] = []
    for i in range(double):
        base = f"transformer_blocks.{i}"
        for p in ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"):
            mods.append(Mod(f"{base}.attn.{p}", hidden, hidden))
        for ff in ("ff", "ff_context"):
            mods += [Mod(f"{base}.{ff}.net.0.proj", hidden, mlp), Mod(f"{base}.{ff}.net.2", mlp, hidden)]
        if norms:
            mods += [Mod(f"{base}.norm1.linear", hidden, 6 * hidden), Mod(f"{base}.norm1_context.linear", hidden, 6 * hidden)]
    for i in range(single):
        base = f"single_transformer_blocks.{i}"
        for p in ("to_q", "to_k", "to_v"):
            mods.append(Mod(f"{base}.attn.{p}", hidden, hidden))
        mods += [Mod(f"{base}.proj_mlp", hidden, mlp), Mod(f"{base}.proj_out", hidden + mlp, hidden)]
        if norms:
            mods.append(Mod(f"{base}.norm.linear", hidden, 3 * hidden))
    return mods


def mmdit_mods(depth: int, attn2_layers: Iterable[int] = ()) -> list[Mod]:
    """SD3/SD3.5 MMDiT (kohya/ComfyUI paths ``joint_blocks.N.x_block.attn.qkv``); hidden = 64 x depth."""
    hidden = 64 * depth
    attn2 = set(attn2_layers)
    mods: list[Mod] = []
    for i in range(depth):
        for blk in ("context_block", "x_block"):
            base = f"joint_blocks.{i}.{blk}"
            pre_only = blk == "context_block" and i == depth - 1
            mods.append(Mod(f"{base}.attn.qkv", hidden, 3 * hidden))
            if not pre_only:
                mods += [Mod(f"{base}.attn.proj", hidden, hidden), Mod(f"{base}.mlp.fc1", hidden, 4 * hidden),
                         Mod(f"{base}.mlp.fc2", 4 * hidden, hidden)]
            n_mods = 2 if pre_only else (9 if blk == "x_block" and i in attn2 else 6)
            if blk == "x_block" and i in attn2:
                mods += [Mod(f"{base}.attn2.qkv", hidden, 3 * hidden), Mod(f"{base}.attn2.proj", hidden, hidden)]
            mods.append(Mod(f"{base}.adaLN_modulation.1", hidden, n_mods * hidden))
    return mods


def sd3_diffusers_mods(depth: int, attn2_layers: Iterable[int] = ()) -> list[Mod]:
    """diffusers ``SD3Transformer2DModel`` attention paths (``transformer_blocks.N.attn.add_q_proj`` …)."""
    hidden = 64 * depth
    attn2 = set(attn2_layers)
    mods: list[Mod] = []
    for i in range(depth):
        base = f"transformer_blocks.{i}"
        for p in ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj"):
            mods.append(Mod(f"{base}.attn.{p}", hidden, hidden))
        if i < depth - 1:
            mods.append(Mod(f"{base}.attn.to_add_out", hidden, hidden))
        if i in attn2:
            for p in ("to_q", "to_k", "to_v", "to_out.0"):
                mods.append(Mod(f"{base}.attn2.{p}", hidden, hidden))
    return mods


def dit_attn12_mods(blocks: int, hidden: int, context: int, *, root: str = "transformer_blocks",
                    ff: str = "ff.net") -> list[Mod]:
    """PixArt / LTX-Video / Hunyuan-DiT / Wan (diffusers) style ``attn1`` + ``attn2`` blocks."""
    mods: list[Mod] = []
    for i in range(blocks):
        base = f"{root}.{i}"
        for attn, kv in (("attn1", hidden), ("attn2", context)):
            mods += [Mod(f"{base}.{attn}.to_q", hidden, hidden), Mod(f"{base}.{attn}.to_k", kv, hidden),
                     Mod(f"{base}.{attn}.to_v", kv, hidden), Mod(f"{base}.{attn}.to_out.0", hidden, hidden)]
        mods += [Mod(f"{base}.{ff}.0.proj", hidden, 4 * hidden), Mod(f"{base}.{ff}.2", 4 * hidden, hidden)]
    return mods


def wan_mods(blocks: int = 30, dim: int = 1536, ffn: int = 8960) -> list[Mod]:
    """Wan 2.x original paths (musubi-tuner ``lora_unet_blocks_0_self_attn_q``); 1.3B: 1536 x 30."""
    mods: list[Mod] = []
    for i in range(blocks):
        base = f"blocks.{i}"
        for a in ("self_attn", "cross_attn"):
            mods += [Mod(f"{base}.{a}.{p}", dim, dim) for p in ("q", "k", "v", "o")]
        mods += [Mod(f"{base}.ffn.0", dim, ffn), Mod(f"{base}.ffn.2", ffn, dim)]
    return mods


def qwen_image_mods(blocks: int = 60, hidden: int = 3072) -> list[Mod]:
    """diffusers ``QwenImageTransformer2DModel`` (``img_mlp`` / ``txt_mlp`` / ``img_mod``)."""
    mods: list[Mod] = []
    for i in range(blocks):
        base = f"transformer_blocks.{i}"
        for p in ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"):
            mods.append(Mod(f"{base}.attn.{p}", hidden, hidden))
        for s in ("img", "txt"):
            mods += [Mod(f"{base}.{s}_mlp.net.0.proj", hidden, 4 * hidden), Mod(f"{base}.{s}_mlp.net.2", 4 * hidden, hidden),
                     Mod(f"{base}.{s}_mod.1", hidden, 6 * hidden)]
    return mods


def auraflow_mods(joint: int = 4, single: int = 32, hidden: int = 3072) -> list[Mod]:
    """diffusers ``AuraFlowTransformer2DModel`` (``joint_transformer_blocks`` + ``single_transformer_blocks``)."""
    mods: list[Mod] = []
    for i in range(joint):
        base = f"joint_transformer_blocks.{i}"
        for p in ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"):
            mods.append(Mod(f"{base}.attn.{p}", hidden, hidden))
    for i in range(single):
        base = f"single_transformer_blocks.{i}"
        for p in ("to_q", "to_k", "to_v", "to_out.0"):
            mods.append(Mod(f"{base}.attn.{p}", hidden, hidden))
    return mods


def hidream_mods(double: int = 16, single: int = 32, hidden: int = 2560) -> list[Mod]:
    """diffusers ``HiDreamImageTransformer2DModel`` (``double_stream_blocks.N.block.attn1``)."""
    mods: list[Mod] = []
    for kind, n in (("double_stream_blocks", double), ("single_stream_blocks", single)):
        for i in range(n):
            base = f"{kind}.{i}.block.attn1"
            mods += [Mod(f"{base}.{p}", hidden, hidden) for p in ("to_q", "to_k", "to_v", "to_out")]
    return mods


def lumina2_mods(layers: int = 26, hidden: int = 2304) -> list[Mod]:
    """Lumina-Image 2.0 (kohya ``lora_unet_layers_0_attention_qkv``)."""
    mods: list[Mod] = []
    for i in range(layers):
        base = f"layers.{i}"
        mods += [Mod(f"{base}.attention.qkv", hidden, hidden + 2 * 2 * 256), Mod(f"{base}.attention.out", hidden, hidden),
                 Mod(f"{base}.feed_forward.w1", hidden, 6144), Mod(f"{base}.feed_forward.w2", 6144, hidden),
                 Mod(f"{base}.feed_forward.w3", hidden, 6144)]
    return mods


def cascade_prior_mods(blocks: int = 8, hidden: int = 2048) -> list[Mod]:
    """Stable Cascade stage C (prior) attention Linears."""
    mods: list[Mod] = []
    for i in range(blocks):
        base = f"down_blocks.0.{3 * i + 2}.attention.attn"
        mods += [Mod(f"{base}.to_q", hidden, hidden), Mod(f"{base}.to_k", hidden, hidden),
                 Mod(f"{base}.to_v", hidden, hidden), Mod(f"{base}.out_proj", hidden, hidden)]
    return mods


def unet_norm_mods(layout: str) -> list[Mod]:
    """LayerNorms of the transformer blocks (for the LyCORIS ``norm`` algo): in = out = width."""
    mods: list[Mod] = []
    for block, c, depth in _UNET_ATTENTION_BLOCKS[layout]:
        for t in range(depth):
            mods += [Mod(f"{block}.transformer_blocks.{t}.norm{n}", c, c) for n in (1, 2, 3)]
    return mods


# --------------------------------------------------------------------------------------------------
# Adapters: the tensors one adapted module contributes, by algorithm

AdapterFn = Callable[[str, Mod, int], Tensors]
F16 = "F16"


def _k(m: Mod) -> tuple[int, ...]:
    return m.kernel


def _prod(t: tuple[int, ...]) -> int:
    p = 1
    for x in t:
        p *= x
    return p


def lora_kohya(base: str, m: Mod, r: int) -> Tensors:
    """kohya ``networks.lora`` / LyCORIS LoCon: ``lora_down`` [r, in(, kh, kw)], ``lora_up`` [out, r(, 1, 1)], ``alpha``."""
    if m.kernel:
        down: tuple[int, ...] = (r, m.inp, *m.kernel)
        up: tuple[int, ...] = (m.out, r, 1, 1)
    else:
        down, up = (r, m.inp), (m.out, r)
    return {f"{base}.alpha": (F16, ()), f"{base}.lora_down.weight": (F16, down), f"{base}.lora_up.weight": (F16, up)}


def lora_peft(base: str, m: Mod, r: int) -> Tensors:
    """PEFT / diffusers: ``lora_A.weight`` [r, in], ``lora_B.weight`` [out, r]; no alpha tensor."""
    if m.kernel:
        return {f"{base}.lora_A.weight": (F16, (r, m.inp, *m.kernel)), f"{base}.lora_B.weight": (F16, (m.out, r, 1, 1))}
    return {f"{base}.lora_A.weight": (F16, (r, m.inp)), f"{base}.lora_B.weight": (F16, (m.out, r))}


def loha(base: str, m: Mod, r: int) -> Tensors:
    """LyCORIS LoHa: ``hada_w1_a`` [out, r], ``hada_w1_b`` [r, in·k], same for w2, ``alpha``."""
    inp = m.inp * _prod(m.kernel)
    return {f"{base}.alpha": (F16, ()),
            f"{base}.hada_w1_a": (F16, (m.out, r)), f"{base}.hada_w1_b": (F16, (r, inp)),
            f"{base}.hada_w2_a": (F16, (m.out, r)), f"{base}.hada_w2_b": (F16, (r, inp))}


def factorize(dim: int) -> tuple[int, int]:
    """``(m, n)``, ``m <= n``, ``m * n == dim``, ``m`` the largest divisor not above the square root."""
    m = int(dim**0.5)
    while m > 1 and dim % m:
        m -= 1
    return m, dim // m


def lokr(base: str, m: Mod, r: int) -> Tensors:
    """LyCORIS LoKr: ``lokr_w1`` [a, c] ⊗ (``lokr_w2_a`` [b, r] · ``lokr_w2_b`` [r, d·k]); in = c·d, out = a·b."""
    a, b = factorize(m.out)
    c, d = factorize(m.inp)
    out: Tensors = {f"{base}.alpha": (F16, ()), f"{base}.lokr_w1": (F16, (a, c))}
    if r >= max(b, d) / 2:
        out[f"{base}.lokr_w2"] = (F16, (b, d, *m.kernel))
    else:
        out[f"{base}.lokr_w2_a"] = (F16, (b, r))
        out[f"{base}.lokr_w2_b"] = (F16, (r, d * _prod(m.kernel)))
    return out


def dora(base: str, m: Mod, r: int) -> Tensors:
    """DoRA (LyCORIS ``dora_wd``): a kohya LoRA plus ``dora_scale`` [1, in]."""
    t = lora_kohya(base, m, r)
    t[f"{base}.dora_scale"] = (F16, (1, m.inp, *(1 for _ in m.kernel)))
    return t


def ia3(base: str, m: Mod, r: int) -> Tensors:
    """LyCORIS IA3: ``weight`` [out] and the ``on_input`` flag (an int64 scalar)."""
    return {f"{base}.weight": ("F32", (m.out,)), f"{base}.on_input": ("I64", ())}


def _blocks(dim: int, want: int) -> int:
    n = max(1, min(want, dim))
    while dim % n:
        n -= 1
    return n


def oft(base: str, m: Mod, r: int) -> Tensors:
    """kohya ``networks.oft`` / LyCORIS diag-OFT: ``oft_blocks`` [n, out/n, out/n] and ``alpha``."""
    n = _blocks(m.out, r)
    return {f"{base}.alpha": (F16, ()), f"{base}.oft_blocks": (F16, (n, m.out // n, m.out // n))}


def boft(base: str, m: Mod, r: int) -> Tensors:
    """LyCORIS BOFT: ``oft_blocks`` [m, n, b, b] (butterfly levels x blocks) and ``alpha``."""
    b = _blocks(m.out, 8)
    return {f"{base}.alpha": (F16, ()), f"{base}.oft_blocks": (F16, (2, m.out // b, b, b))}


def glora(base: str, m: Mod, r: int) -> Tensors:
    """LyCORIS GLoRA: ``a1`` [in, r], ``a2`` [r, in], ``b1`` [out, r], ``b2`` [r, in] (``.weight``) and ``alpha``."""
    return {f"{base}.alpha": (F16, ()), f"{base}.a1.weight": (F16, (m.inp, r)), f"{base}.a2.weight": (F16, (r, m.inp)),
            f"{base}.b1.weight": (F16, (m.out, r)), f"{base}.b2.weight": (F16, (r, m.inp))}


def full(base: str, m: Mod, r: int) -> Tensors:
    """LyCORIS full / kohya diff: ``diff`` [out, in(, k)] and ``diff_b`` [out]."""
    return {f"{base}.diff": (F16, (m.out, m.inp, *m.kernel)), f"{base}.diff_b": (F16, (m.out,))}


def norm(base: str, m: Mod, r: int) -> Tensors:
    """LyCORIS norm: ``w_norm`` / ``b_norm`` [width]."""
    return {f"{base}.w_norm": (F16, (m.inp,)), f"{base}.b_norm": (F16, (m.inp,))}


def plain(base: str, m: Mod, r: int) -> Tensors:
    """A checkpoint's own ``weight`` [out, in(, k)] and ``bias`` [out]."""
    return {f"{base}.weight": (F16, (m.out, m.inp, *m.kernel)), f"{base}.bias": (F16, (m.out,))}


ADAPTER_FNS: dict[str, AdapterFn] = {
    "lora": lora_kohya, "peft": lora_peft, "loha": loha, "lokr": lokr, "dora": dora, "ia3": ia3, "oft": oft,
    "boft": boft, "glora": glora, "full": full, "norm": norm, "plain": plain,
}


def kohya_name(prefix: str) -> Callable[[str], str]:
    """``lora_unet`` + ``down_blocks.0.x`` -> ``lora_unet_down_blocks_0_x``."""
    return lambda path: f"{prefix}_{path.replace('.', '_')}"


def dotted_name(prefix: str) -> Callable[[str], str]:
    """``unet`` + ``down_blocks.0.x`` -> ``unet.down_blocks.0.x`` (empty prefix: the path itself)."""
    return (lambda path: f"{prefix}.{path}") if prefix else (lambda path: path)


Group = tuple[Callable[[str], str], list[Mod]]


def assemble(groups: Iterable[Group], adapter: str | AdapterFn, rank: int, *, conv_rank: int | None = None) -> Tensors:
    """The tensors of ``adapter`` applied to every module of every ``(namer, modules)`` group."""
    fn = ADAPTER_FNS[adapter] if isinstance(adapter, str) else adapter
    tensors: Tensors = {}
    for namer, mods in groups:
        for m in mods:
            r = conv_rank if (conv_rank is not None and m.kernel and m.kernel != (1, 1)) else rank
            tensors.update(fn(namer(m.name), m, r))
    return tensors


# --------------------------------------------------------------------------------------------------
# Metadata, mimicking what kohya sd-scripts writes (key set of the real outputs in the fixtures)

#: kohya ``ss_base_model_version`` and ``modelspec.architecture`` (without ``/lora``) per architecture.
KOHYA_VERSIONS: dict[str, tuple[str, str]] = {
    "sd1": ("sd_v1", "stable-diffusion-v1"),
    "sd2": ("sd_v2", "stable-diffusion-v2-512"),
    "sd2-768v": ("sd_v2_v", "stable-diffusion-v2-768-v"),
    "sdxl": ("sdxl_base_v1-0", "stable-diffusion-xl-v1-base"),
    "sd3": ("medium", "stable-diffusion-3-medium"),
    "sd3.5-large": ("5-large", "stable-diffusion-3-5-large"),
    "sd3.5-medium": ("5-medium", "stable-diffusion-3-5-medium"),
    "flux1": ("flux1", "flux-1-dev"),
    "chroma": ("chroma", "chroma"),
    "lumina2": ("lumina2", "lumina-2"),
}

_RESOLUTION = {"sd1": "512x512", "sd2": "512x512", "sd2-768v": "768x768"}


def _class_tokens(folder: str) -> str | None:
    head, sep, rest = folder.partition("_")
    return rest if sep and head.isdigit() and rest else None


def kohya_metadata(arch: str, *, rank: int = 4, alpha: float = 2.0, output_name: str = "mylora",
                   trigger: str | None = "mychar", dataset_dirs: dict[str, tuple[int, int]] | None = None,
                   tags: dict[str, int] | None = None, sd_model_name: str | None = None,
                   sd_model_sha256: str | None = None, network_module: str = "networks.lora",
                   network_args: dict[str, str] | None = None, title: str | None = None,
                   steps: int = 4) -> dict[str, str]:
    """The ``ss_*`` and ``modelspec.*`` metadata kohya sd-scripts writes, as strings."""
    version, spec_arch = KOHYA_VERSIONS.get(arch, ("", ""))
    # {folder: (n_repeats, img_count)}; kohya folder names are "<repeats>_<class tokens>", but a dataset
    # config can override the repeats (the real fixtures say "10_mychar" with n_repeats 2)
    dirs = dataset_dirs if dataset_dirs is not None else {f"10_{trigger or 'mychar'}": (2, 2)}
    tag_freq = tags if tags is not None else {trigger or "mychar": 2, "red hat": 2}
    model_name = sd_model_name or {"sd1": "v1-5-pruned-emaonly.safetensors", "sdxl": "sd_xl_base_1.0.safetensors",
                                   "flux1": "flux1-dev.safetensors"}.get(arch, f"{arch}_base.safetensors")
    is_sdxl = arch == "sdxl"
    md: dict[str, Any] = {
        "ss_session_id": "3116613815", "ss_training_started_at": "1795360765.1180987", "ss_output_name": output_name,
        "ss_learning_rate": "0.0001", "ss_text_encoder_lr": "None", "ss_unet_lr": "None", "ss_num_train_images": "4",
        "ss_num_validation_images": "0", "ss_num_reg_images": "0", "ss_num_batches_per_epoch": "4", "ss_num_epochs": "1",
        "ss_gradient_checkpointing": "False", "ss_gradient_accumulation_steps": "1", "ss_max_train_steps": str(steps),
        "ss_lr_warmup_steps": "0", "ss_lr_scheduler": "constant", "ss_network_module": network_module,
        "ss_network_dim": str(rank), "ss_network_alpha": str(float(alpha)), "ss_network_dropout": "None",
        "ss_mixed_precision": "bf16" if is_sdxl else "no", "ss_full_fp16": "False", "ss_v2": str(arch.startswith("sd2")),
        "ss_base_model_version": version, "ss_clip_skip": "None", "ss_max_token_length": "None", "ss_cache_latents": "True",
        "ss_seed": "1", "ss_lowram": "False", "ss_noise_offset": "None", "ss_multires_noise_iterations": "None",
        "ss_multires_noise_discount": "0.3", "ss_adaptive_noise_scale": "None", "ss_zero_terminal_snr": "False",
        "ss_training_comment": "None", "ss_sd_scripts_commit_hash": "(unknown)", "ss_optimizer": "torch.optim.adamw.AdamW",
        "ss_max_grad_norm": "1.0", "ss_caption_dropout_rate": "0.0", "ss_caption_dropout_every_n_epochs": "0",
        "ss_caption_tag_dropout_rate": "0.0", "ss_face_crop_aug_range": "None", "ss_prior_loss_weight": "1.0",
        "ss_min_snr_gamma": "None", "ss_scale_weight_norms": "None", "ss_ip_noise_gamma": "None",
        "ss_debiased_estimation": "False", "ss_noise_offset_random_strength": "False",
        "ss_ip_noise_gamma_random_strength": "False", "ss_loss_type": "l2", "ss_huber_schedule": "snr",
        "ss_huber_scale": "1.0", "ss_huber_c": "0.1", "ss_fp8_base": "False", "ss_fp8_base_unet": "False",
        "ss_validation_seed": "None", "ss_validation_split": "0.0", "ss_max_validation_steps": "None",
        "ss_validate_every_n_epochs": "None", "ss_validate_every_n_steps": "None", "ss_resize_interpolation": "None",
        "ss_tag_frequency": json.dumps({d: tag_freq for d in dirs}),
        "ss_dataset_dirs": json.dumps({d: {"n_repeats": r, "img_count": n} for d, (r, n) in dirs.items()}),
        "ss_sd_model_name": model_name, "ss_steps": str(steps), "ss_epoch": "1",
        "ss_training_finished_at": "1795360796.673895",
        "sshs_model_hash": "9c4a1e6668167b81d516f03aaa8dbc4a3cd88beb64ac4fd211a5bc95027577f8",
        "sshs_legacy_hash": "84f1b400",
    }
    sha = sd_model_sha256 or "3b5ba5e18e15fb1e13cb1b2a03be5800284c89964daedf55cbddd3ac58fd7ba9"
    md["ss_sd_model_hash"] = sha[:8]
    md["ss_new_sd_model_hash"] = sha
    md["ss_datasets"] = json.dumps([{
        "is_dreambooth": True, "batch_size_per_device": 1, "num_train_images": 4, "num_reg_images": 0,
        "resolution": [64, 64], "enable_bucket": False, "min_bucket_reso": None, "max_bucket_reso": None,
        "tag_frequency": {d: tag_freq for d in dirs}, "bucket_info": None, "resize_interpolation": None,
        "subsets": [{"img_count": n, "num_repeats": r, "image_dir": d,
                     "class_tokens": _class_tokens(d),
                     "is_reg": False, "keep_tokens": 1, "shuffle_caption": False} for d, (r, n) in dirs.items()],
    }])
    if network_args:
        md["ss_network_args"] = json.dumps(network_args)
    if spec_arch:
        md.update({
            "modelspec.sai_model_spec": "1.0.1",
            "modelspec.architecture": f"{spec_arch}/lora",
            "modelspec.implementation": "https://github.com/Stability-AI/generative-models" if is_sdxl else "diffusers",
            "modelspec.implementation_version": "sd-scripts/unknown",
            "modelspec.title": title or output_name,
            "modelspec.date": "2026-11-22T15:19:56",
            "modelspec.resolution": _RESOLUTION.get(arch, "1024x1024"),
            "modelspec.prediction_type": "v" if arch == "sd2-768v" else "epsilon",
        })
        if trigger:
            md["modelspec.trigger_phrase"] = trigger
    return {k: str(v) for k, v in md.items()}


def peft_metadata() -> dict[str, str]:
    """What ``safetensors.torch.save_file`` writes for a diffusers/PEFT LoRA."""
    return {"format": "pt"}


# --------------------------------------------------------------------------------------------------
# Presets: name -> (rank) -> (tensors, metadata)

Preset = Callable[[int], Synth]

_SD1_UNET = ("sd-diffusers", 768)
_SD2_UNET = ("sd-diffusers", 1024)


def _sd1_groups(te: bool = True) -> list[Group]:
    g: list[Group] = [(kohya_name("lora_unet"), unet_attention_mods(*_SD1_UNET, conv_proj=True))]
    if te:
        g.insert(0, (kohya_name("lora_te"), clip_mods(12, 768)))
    return g


def _sdxl_groups(unet: bool = True, te: bool = True) -> list[Group]:
    g: list[Group] = []
    if te:
        g += [(kohya_name("lora_te1"), clip_mods(12, 768)), (kohya_name("lora_te2"), clip_mods(32, 1280))]
    if unet:
        g.append((kohya_name("lora_unet"), unet_attention_mods("sdxl-sgm", 2048, conv_proj=False)))
    return g


def _kohya(groups: list[Group], arch: str, adapter: str = "lora", *, network_module: str = "networks.lora",
           network_args: dict[str, str] | None = None, conv_rank: int | None = None, **md: Any) -> Preset:
    def build(rank: int) -> Synth:
        tensors = assemble(groups, adapter, rank, conv_rank=conv_rank)
        return tensors, kohya_metadata(arch, rank=rank, alpha=rank / 2, network_module=network_module,
                                       network_args=network_args, **md)
    return build


def _peft(groups: list[Group], adapter: str = "peft") -> Preset:
    def build(rank: int) -> Synth:
        return assemble(groups, adapter, rank), peft_metadata()
    return build


def _lycoris(groups: list[Group], arch: str, algo: str, adapter: str) -> Preset:
    return _kohya(groups, arch, adapter, network_module="lycoris.kohya",
                  network_args={"algo": algo, "conv_dim": "4", "conv_alpha": "1"})


def _no_metadata(p: Preset) -> Preset:
    return lambda rank: (p(rank)[0], {})


def _with_metadata(p: Preset, **changes: str | None) -> Preset:
    def build(rank: int) -> Synth:
        tensors, md = p(rank)
        md = dict(md)
        for k, v in changes.items():
            key = k.replace("__", ".")
            if v is None:
                md.pop(key, None)
            else:
                md[key] = v
        return tensors, md
    return build


def _checkpoint(groups: list[Group], extra: Tensors | None = None, metadata: dict[str, str] | None = None) -> Preset:
    def build(rank: int) -> Synth:
        tensors = assemble(groups, "plain", rank)
        tensors.update(extra or {})
        return tensors, dict(metadata or {})
    return build


def _ldm_ckpt(layout: str, context: int, *, conv_proj: bool, te: str) -> Preset:
    """A single-file ldm/sgm checkpoint: U-Net attention layers, the text encoder(s), a few VAE tensors."""
    groups: list[Group] = [(dotted_name("model.diffusion_model"), unet_attention_mods(layout, context, conv_proj=conv_proj))]
    extra: Tensors = {
        "model.diffusion_model.input_blocks.0.0.weight": (F16, (320 if layout != "refiner-sgm" else 384, 4, 3, 3)),
        "model.diffusion_model.time_embed.0.weight": (F16, (1280 if layout != "refiner-sgm" else 1536, 320 if layout != "refiner-sgm" else 384)),
        "first_stage_model.encoder.conv_in.weight": (F16, (128, 3, 3, 3)),
        "first_stage_model.decoder.conv_out.weight": (F16, (3, 128, 3, 3)),
    }
    if te == "sd1":
        groups.append((dotted_name("cond_stage_model.transformer"), clip_mods(12, 768)))
        extra["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = (F16, (49408, 768))
    elif te == "sd2":
        extra["cond_stage_model.model.token_embedding.weight"] = (F16, (49408, 1024))
        for i in range(23):
            extra[f"cond_stage_model.model.transformer.resblocks.{i}.attn.in_proj_weight"] = (F16, (3072, 1024))
            extra[f"cond_stage_model.model.transformer.resblocks.{i}.attn.out_proj.weight"] = (F16, (1024, 1024))
    elif te == "sdxl":
        groups.append((dotted_name("conditioner.embedders.0.transformer"), clip_mods(12, 768)))
        extra["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] = (F16, (49408, 768))
        extra["conditioner.embedders.1.model.token_embedding.weight"] = (F16, (49408, 1280))
        for i in range(32):
            extra[f"conditioner.embedders.1.model.transformer.resblocks.{i}.attn.in_proj_weight"] = (F16, (3840, 1280))
        extra["model.diffusion_model.label_emb.0.0.weight"] = (F16, (1280, 2816))
    elif te == "refiner":
        extra["conditioner.embedders.0.model.token_embedding.weight"] = (F16, (49408, 1280))
        for i in range(32):
            extra[f"conditioner.embedders.0.model.transformer.resblocks.{i}.attn.in_proj_weight"] = (F16, (3840, 1280))
        extra["model.diffusion_model.label_emb.0.0.weight"] = (F16, (1536, 2560))
    return _checkpoint(groups, extra)


def _flux_ckpt(*, chroma: bool = False, schnell: bool = False, prefix: str = "") -> Preset:
    p = f"{prefix}." if prefix else ""
    groups: list[Group] = [(dotted_name(prefix), bfl_mods(modulation=not chroma))]
    extra: Tensors = {f"{p}img_in.weight": (F16, (3072, 64)), f"{p}txt_in.weight": (F16, (3072, 4096)),
                      f"{p}final_layer.linear.weight": (F16, (64, 3072))}
    if chroma:
        extra[f"{p}distilled_guidance_layer.in_proj.weight"] = (F16, (5120, 64))
    else:
        extra[f"{p}time_in.in_layer.weight"] = (F16, (3072, 256))
        extra[f"{p}vector_in.in_layer.weight"] = (F16, (3072, 768))
        if not schnell:
            extra[f"{p}guidance_in.in_layer.weight"] = (F16, (3072, 256))
    return _checkpoint(groups, extra)


def _sd3_ckpt(depth: int, attn2: Iterable[int] = ()) -> Preset:
    hidden = 64 * depth
    groups: list[Group] = [(dotted_name("model.diffusion_model"), mmdit_mods(depth, attn2))]
    extra: Tensors = {"model.diffusion_model.x_embedder.proj.weight": (F16, (hidden, 16, 2, 2)),
                      "model.diffusion_model.context_embedder.weight": (F16, (hidden, 4096)),
                      "model.diffusion_model.pos_embed": (F16, (1, 36864 if depth == 24 else 36864, hidden))}
    if attn2 or depth == 38:
        extra["model.diffusion_model.joint_blocks.0.context_block.attn.ln_k.weight"] = (F16, (64,))
    return _checkpoint(groups, extra)


_SD35M_ATTN2 = range(13)

PRESETS: dict[str, Preset] = {
    # --- kohya sd-scripts, networks.lora
    "kohya-sd1": _kohya(_sd1_groups(), "sd1"),
    "kohya-sd1-unet": _kohya(_sd1_groups(te=False), "sd1"),
    "kohya-sd1-te": _kohya([(kohya_name("lora_te"), clip_mods(12, 768))], "sd1"),
    "kohya-sd2": _kohya([(kohya_name("lora_te"), clip_mods(23, 1024)),
                         (kohya_name("lora_unet"), unet_attention_mods(*_SD2_UNET, conv_proj=False))], "sd2"),
    "kohya-sd2-768v": _kohya([(kohya_name("lora_unet"), unet_attention_mods(*_SD2_UNET, conv_proj=False))], "sd2-768v"),
    "kohya-sdxl": _kohya(_sdxl_groups(), "sdxl"),
    "kohya-sdxl-unet": _kohya(_sdxl_groups(te=False), "sdxl", output_name="myxl", title="myxl"),
    "kohya-sdxl-te": _kohya(_sdxl_groups(unet=False), "sdxl"),
    "kohya-sd3": _kohya([(kohya_name("lora_unet"), mmdit_mods(24))], "sd3"),
    "kohya-sd3.5-large": _kohya([(kohya_name("lora_unet"), mmdit_mods(38))], "sd3.5-large"),
    "kohya-sd3.5-medium": _kohya([(kohya_name("lora_unet"), mmdit_mods(24, _SD35M_ATTN2))], "sd3.5-medium"),
    "kohya-flux": _kohya([(kohya_name("lora_unet"), bfl_mods())], "flux1"),
    "kohya-flux-te": _kohya([(kohya_name("lora_te1"), clip_mods(12, 768)), (kohya_name("lora_unet"), bfl_mods())], "flux1"),
    "kohya-chroma": _kohya([(kohya_name("lora_unet"), bfl_mods(modulation=False))], "chroma"),
    "kohya-lumina2": _kohya([(kohya_name("lora_unet"), lumina2_mods())], "lumina2"),
    "dylora-sd1": _kohya(_sd1_groups(), "sd1", network_module="networks.dylora", network_args={"unit": "4"}),
    # --- LyCORIS (through lycoris.kohya)
    "locon-sd1": _kohya([(kohya_name("lora_te"), clip_mods(12, 768)),
                         (kohya_name("lora_unet"), unet_attention_mods(*_SD1_UNET, conv_proj=True) + sd_unet_conv_mods())],
                        "sd1", network_module="lycoris.kohya", network_args={"algo": "locon", "conv_dim": "4", "conv_alpha": "1"},
                        conv_rank=4),
    "loha-sd1": _lycoris(_sd1_groups(), "sd1", "loha", "loha"),
    "loha-sdxl": _lycoris(_sdxl_groups(), "sdxl", "loha", "loha"),
    "lokr-sd1": _lycoris(_sd1_groups(), "sd1", "lokr", "lokr"),
    "lokr-sdxl": _lycoris(_sdxl_groups(), "sdxl", "lokr", "lokr"),
    "dora-sd1": _lycoris(_sd1_groups(), "sd1", "locon", "dora"),
    "dora-sdxl": _lycoris(_sdxl_groups(), "sdxl", "locon", "dora"),
    "ia3-sd1": _lycoris(_sd1_groups(), "sd1", "ia3", "ia3"),
    "oft-sd1": _kohya(_sd1_groups(te=False), "sd1", "oft", network_module="networks.oft"),
    "boft-sd1": _lycoris(_sd1_groups(te=False), "sd1", "boft", "boft"),
    "glora-sd1": _lycoris(_sd1_groups(), "sd1", "glora", "glora"),
    "full-sd1": _lycoris(_sd1_groups(), "sd1", "full", "full"),
    "norm-sd1": _lycoris([(kohya_name("lora_unet"), unet_norm_mods("sd-diffusers"))], "sd1", "norm", "norm"),
    # --- PEFT / diffusers
    "peft-sd1": _peft([(dotted_name("unet"), unet_attention_only_mods(*_SD1_UNET)),
                       (dotted_name("text_encoder"), clip_mods(12, 768))]),
    "peft-sdxl": _peft([(dotted_name("unet"), unet_attention_only_mods("sdxl-diffusers", 2048)),
                        (dotted_name("text_encoder"), clip_mods(12, 768)),
                        (dotted_name("text_encoder_2"), clip_mods(32, 1280))]),
    "peft-sdxl-unet-raw": _peft([(dotted_name("base_model.model"), unet_attention_only_mods("sdxl-diffusers", 2048))]),
    "peft-flux": _peft([(dotted_name("transformer"), flux_diffusers_mods())]),
    "peft-flux-norms": _peft([(dotted_name("transformer"), flux_diffusers_mods(norms=True))]),
    "peft-flux-bfl": _peft([(dotted_name("diffusion_model"), bfl_mods())]),
    "peft-sd3": _peft([(dotted_name("transformer"), sd3_diffusers_mods(24))]),
    "peft-sd3.5-large": _peft([(dotted_name("transformer"), sd3_diffusers_mods(38))]),
    "peft-sd3.5-medium": _peft([(dotted_name("transformer"), sd3_diffusers_mods(24, _SD35M_ATTN2))]),
    "peft-flux2-klein": _peft([(dotted_name("diffusion_model"),
                                bfl_mods(3072, 5, 20, 3.0, modulation=False, swiglu=True))]),
    "peft-flux2-dev": _peft([(dotted_name("diffusion_model"),
                              bfl_mods(6144, 8, 48, 3.0, modulation=False, swiglu=True))]),
    "peft-auraflow": _peft([(dotted_name("transformer"), auraflow_mods())]),
    "peft-pixart": _peft([(dotted_name("transformer"), dit_attn12_mods(28, 1152, 1152))]),
    "peft-ltx-video": _peft([(dotted_name("transformer"), dit_attn12_mods(28, 2048, 2048))]),
    "peft-hunyuan-dit": _peft([(dotted_name("transformer"), dit_attn12_mods(40, 1408, 1024, root="blocks"))]),
    "peft-wan": _peft([(dotted_name("transformer"), dit_attn12_mods(30, 1536, 1536, root="blocks", ff="ffn.net"))]),
    "peft-hidream": _peft([(dotted_name("transformer"), hidream_mods())]),
    "peft-qwen-image": _peft([(dotted_name("transformer"), qwen_image_mods())]),
    "musubi-wan": _kohya([(kohya_name("lora_unet"), wan_mods())], "wan"),
    "musubi-hunyuan-video": _kohya([(kohya_name("lora_unet"), bfl_mods(3072, 20, 40, hunyuan_names=True))],
                                   "hunyuan-video"),
    "onetrainer-stable-cascade": _kohya([(kohya_name("lora_prior_unet"), cascade_prior_mods())], "stable-cascade"),
}

# --- metadata variants
PRESETS.update({
    "nometa-sd1": _no_metadata(PRESETS["kohya-sd1"]),
    "nometa-sdxl": _no_metadata(PRESETS["kohya-sdxl"]),
    "nometa-sdxl-unet": _no_metadata(PRESETS["kohya-sdxl-unet"]),
    "nometa-flux": _no_metadata(PRESETS["kohya-flux"]),
    "nometa-chroma": _no_metadata(PRESETS["kohya-chroma"]),
    # SDXL tensors whose metadata claims SD1 (a mislabelled file)
    "wrongmeta-sdxl-as-sd1": _with_metadata(PRESETS["kohya-sdxl"], ss_base_model_version="sd_v1",
                                            modelspec__architecture="stable-diffusion-v1/lora"),
    # SD1 tensors claiming SDXL
    "wrongmeta-sd1-as-sdxl": _with_metadata(PRESETS["kohya-sd1"], ss_base_model_version="sdxl_base_v1-0",
                                            modelspec__architecture="stable-diffusion-xl-v1-base/lora"),
    # families (SDXL tensors; metadata names the finetune trained on)
    "pony-sdxl": _with_metadata(PRESETS["kohya-sdxl"], ss_sd_model_name="ponyDiffusionV6XL_v6StartWithThisOne.safetensors",
                                ss_tag_frequency=json.dumps({"10_mychar": {"score_9": 20, "score_8_up": 20, "mychar": 20}})),
    "illustrious-sdxl": _with_metadata(PRESETS["kohya-sdxl"], ss_sd_model_name="illustriousXL_v01.safetensors"),
    "noobai-sdxl": _with_metadata(PRESETS["kohya-sdxl"], ss_sd_model_name="noobaiXLNAIXL_epsilonPred11Version.safetensors"),
    "sdxl-base-hash": _with_metadata(PRESETS["kohya-sdxl"], ss_sd_model_name="model.safetensors",
                                     ss_new_sd_model_hash="31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b"),
})

# --- checkpoints (minimal, real names and shapes)
PRESETS.update({
    "ckpt-sd1": _ldm_ckpt("sd-ldm", 768, conv_proj=True, te="sd1"),
    "ckpt-sd2": _ldm_ckpt("sd-ldm", 1024, conv_proj=False, te="sd2"),
    "ckpt-sdxl": _ldm_ckpt("sdxl-sgm", 2048, conv_proj=False, te="sdxl"),
    "ckpt-sdxl-refiner": _ldm_ckpt("refiner-sgm", 1280, conv_proj=False, te="refiner"),
    "ckpt-sdxl-diffusers-unet": _checkpoint([(dotted_name(""), unet_attention_mods("sdxl-diffusers", 2048, conv_proj=False))]),
    "ckpt-flux1": _flux_ckpt(),
    "ckpt-flux1-schnell": _flux_ckpt(schnell=True),
    "ckpt-flux1-comfy": _flux_ckpt(prefix="model.diffusion_model"),
    "ckpt-chroma": _flux_ckpt(chroma=True),
    "ckpt-sd3": _sd3_ckpt(24),
    "ckpt-sd3.5-large": _sd3_ckpt(38),
    "ckpt-sd3.5-medium": _sd3_ckpt(24, _SD35M_ATTN2),
})

#: presets that describe checkpoints rather than LoRAs
CHECKPOINT_PRESETS = tuple(name for name in PRESETS if name.startswith("ckpt-"))


def build(preset: str, rank: int = 4, metadata_overrides: dict[str, str | None] | None = None) -> Synth:
    """``(tensors, metadata)`` of ``preset`` at ``rank``; ``metadata_overrides`` sets keys (``None`` deletes)."""
    try:
        fn = PRESETS[preset]
    except KeyError:
        raise KeyError(f"unknown synth preset {preset!r}; known: {', '.join(sorted(PRESETS))}") from None
    tensors, metadata = fn(rank)
    if metadata_overrides:
        metadata = dict(metadata)
        for k, v in metadata_overrides.items():
            if v is None:
                metadata.pop(k, None)
            else:
                metadata[k] = str(v)
    return tensors, metadata


def write_lora(path: str | os.PathLike[str], preset_name: str, rank: int = 4,
               metadata_overrides: dict[str, str | None] | None = None, *, sparse: bool = True) -> int:
    """Write a valid ``.safetensors`` file for ``preset_name`` (zeroed or sparse data); returns its size."""
    tensors, metadata = build(preset_name, rank, metadata_overrides)
    return write_file(path, tensors, metadata, sparse=sparse)


#: Alias: checkpoints are written the same way.
write_checkpoint = write_lora
