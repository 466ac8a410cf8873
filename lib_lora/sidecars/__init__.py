"""Files that sit beside a LoRA: A1111 user metadata, Civitai info, previews.

User metadata — ``<stem>.json``, the file A1111's and Forge's "Edit metadata" dialog writes
(``json.dump(obj, f, indent=4, ensure_ascii=False)``, UTF-8, no trailing newline). The keys A1111 reads
and writes are ``description``, ``sd version`` (``SD1``/``SD2``/``SDXL``/``SD3``/``Unknown``; Forge adds
``Flux``), ``activation text``, ``preferred weight`` (a number, 0 = "not set"), ``negative text`` and
``notes``. Other tools add their own keys; every key we do not know is kept, in its place, on write.
LoRA Studio's own values use namespaced keys that the WebUIs ignore:

- ``lora studio base`` — the user's base-model override: an architecture id (``sdxl``) or a family id
  (``pony``, ``illustrious``…). Never written by a scan or a fetch, only by the user.
- ``lora studio family`` — the family id a Hugging Face model card's ``base_model`` names, written by a
  download and replaced by the next one; shown as coming from the model card, below the user's base.
  (A Civitai family is not copied here: it is read from ``baseModel`` in ``<stem>.civitai.info``.)
- ``lora studio category`` — ``character``/``style``/``concept``/``pose``/``clothing``/``object``/… .

Writes are atomic (temp file in the same folder + ``os.replace``); a sidecar that is not valid JSON is
never overwritten — :class:`~lib_lora.errors.SidecarError` says why.

Civitai — ``<stem>.civitai.info`` (Civitai Helper) holds a *model-version* object (``baseModel``,
``trainedWords``, ``model.type``, ``files[].hashes``, ``images``); a *model* object (``tags`` and the
license fields ``allowNoCredit``, ``allowCommercialUse``, ``allowDerivatives``, ``allowDifferentLicense``)
may be saved as ``<stem>.model.json`` or ``<stem>.api_info.json``. The files are told apart by their
content, not only their names.

Previews — as A1111's ``find_preview``: for each extension ``png, jpg, jpeg, webp, gif`` try
``<stem>.<ext>`` then ``<stem>.preview.<ext>``. (A1111 iterates a set of extensions, so its order between
extensions is not fixed; ours is.)

The package, one job per module: ``model`` (names, keys, values), ``jsonfile`` (bounded reads, atomic
writes), ``user`` (``<stem>.json``), ``civitai`` (Civitai's files), ``find`` (one model's sidecars).
"""

from lib_lora.sidecars.civitai import (
    parse_civitai_info,
    parse_civitai_model,
    parse_commercial_use,
    parse_license,
    read_civitai_info,
    read_civitai_model,
    split_words,
)
from lib_lora.sidecars.find import (
    find_sidecars,
    sidecar_files,
)
from lib_lora.sidecars.jsonfile import (
    atomic_write_text,
)
from lib_lora.sidecars.model import (
    A1111_KEYS,
    CATEGORIES,
    CIVITAI_INFO_SUFFIX,
    CIVITAI_MODEL_SUFFIXES,
    KEY_BASE,
    KEY_CATEGORY,
    KEY_FAMILY,
    MAX_SIDECAR_BYTES,
    PREVIEW_EXTENSIONS,
    PREVIEW_SUFFIXES,
    SD_VERSIONS,
    SIDECAR_SUFFIXES,
    USER_METADATA_SUFFIX,
    CivitaiInfo,
    CivitaiModel,
    LicenseInfo,
    Sidecars,
    UserMetadata,
    category_from_tags,
    sd_version_for,
    sidecars_from_dict,
    stem_path,
    to_jsonable,
    user_metadata_path,
)
from lib_lora.sidecars.user import (
    dump_user_metadata,
    parse_user_metadata,
    read_user_metadata,
    update_user_metadata,
    write_user_metadata,
)

__all__ = [
    "A1111_KEYS",
    "CATEGORIES",
    "CIVITAI_INFO_SUFFIX",
    "CIVITAI_MODEL_SUFFIXES",
    "CivitaiInfo",
    "CivitaiModel",
    "KEY_BASE",
    "KEY_CATEGORY",
    "KEY_FAMILY",
    "LicenseInfo",
    "MAX_SIDECAR_BYTES",
    "PREVIEW_EXTENSIONS",
    "PREVIEW_SUFFIXES",
    "SD_VERSIONS",
    "SIDECAR_SUFFIXES",
    "Sidecars",
    "USER_METADATA_SUFFIX",
    "UserMetadata",
    "atomic_write_text",
    "category_from_tags",
    "dump_user_metadata",
    "find_sidecars",
    "parse_civitai_info",
    "parse_civitai_model",
    "parse_commercial_use",
    "parse_license",
    "parse_user_metadata",
    "read_civitai_info",
    "read_civitai_model",
    "read_user_metadata",
    "sd_version_for",
    "sidecar_files",
    "sidecars_from_dict",
    "split_words",
    "stem_path",
    "to_jsonable",
    "update_user_metadata",
    "user_metadata_path",
    "write_user_metadata",
]
