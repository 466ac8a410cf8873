"""Base-model taxonomy and detection of a LoRA's / a checkpoint's base model from its header alone.

Three layers, strongest first:

1. **Structure** (tensor names and shapes) decides the *architecture* — whether a LoRA can load on a
   checkpoint at all. The trainer prefix (``lora_unet_``, ``lora_te1_``, ``unet.``, ``transformer.``,
   ``diffusion_model.`` …) is stripped, the block layout names the model type (U-Net
   ``down_blocks``/``input_blocks``, Flux ``double_blocks``, SD3 ``joint_blocks`` …) and one width
   separates the members of a type (U-Net cross-attention ``attn2.to_k`` input: 768 SD1, 1024 SD2,
   2048 SDXL, 1280 SDXL refiner; MMDiT hidden 1536 / 2432; Flux hidden 3072 …). Where structure cannot
   separate two architectures (Flux.1 vs Chroma) it reports ``candidates`` and lets metadata choose.
2. **Metadata** written by the trainer (``ss_base_model_version``, ``modelspec.architecture``,
   ``ss_v2``) and the user's sidecars choose among candidates; when they contradict the structure the
   structure wins and the contradiction is reported in ``conflicts``.
3. **Family** (finetunes sharing one architecture: Pony, Illustrious, NoobAI …) comes, in order, from the
   LoRA Studio sidecar override, Civitai ``baseModel``, the training checkpoint's sha256 against
   :data:`KNOWN_BASE_HASHES`, ``ss_sd_model_name`` patterns, ``score_9`` tags (Pony), file/folder names.

Speed: a scan looks at evenly spaced windows of consecutive keys (whole modules, so every adapter's
tensors are seen) and answers the few questions that need every key with ``str.find`` on one joined
string of names plus a handful of direct dict lookups — never a regex per key. An SDXL LoRA header
(~2,200-3,000 keys) costs a fraction of a millisecond, far below reading its 300 kB JSON header.

The package, one job per module, in the order a header flows through it:

- ``taxonomy``: architectures, families, adapters, the :class:`Detection` value and its labels;
- ``keys``: one scan of the tensor names (trainer prefixes stripped, modules sampled);
- ``structure``: block layout and widths -> architecture (or candidates);
- ``claims``: metadata, sidecars, Civitai, hashes and names -> architecture choice, family, conflicts;
- ``lora``: LoRA-only facts (adapter kind, rank/alpha, trigger words);
- ``detect``: :func:`detect`, :func:`detect_lora`, :func:`detect_checkpoint`, which assemble the above.
"""

from lib_lora.architecture.claims import civitai_base, name_family
from lib_lora.architecture.detect import detect, detect_checkpoint, detect_lora
from lib_lora.architecture.taxonomy import (
    A1111,
    ADAPTERS,
    ARCHITECTURES,
    FAMILIES,
    FORGE,
    KNOWN_BASE_HASHES,
    TARGETS,
    UNKNOWN,
    Architecture,
    Detection,
    Evidence,
    Family,
    Hints,
    architecture_label,
    describe,
    family_label,
    runs_in,
)

__all__ = [
    "A1111", "ADAPTERS", "ARCHITECTURES", "FAMILIES", "FORGE", "KNOWN_BASE_HASHES", "TARGETS", "UNKNOWN",
    "Architecture", "Detection", "Evidence", "Family", "Hints", "architecture_label", "civitai_base", "describe",
    "detect", "detect_checkpoint", "detect_lora", "family_label", "name_family", "runs_in",
]
