"""The LoRA library: every LoRA under a set of folders, indexed, detected, findable by name.

Scanning
    :meth:`Library.scan` walks the roots recursively and follows symlinked folders (users link other
    drives into their LoRA folder); a folder reached twice — a link loop, or two links to one folder — is
    walked once, and real folders are walked before linked ones so a file gets its un-linked path.
    ``.safetensors`` files have their header read (never the tensor data), their sidecars read and their
    base model detected; ``.pt``/``.ckpt`` files are listed as *legacy* and never opened (they are
    pickles). Files that cannot be read are listed with an ``error``; nothing stops the scan. A linked
    *file* whose target lies outside every root is listed with a problem naming the target (still usable);
    linked folders are reported in :attr:`ScanResult.links`.

Index
    An SQLite database (stdlib ``sqlite3``, WAL) in the user-data folder (:mod:`lib_lora.paths`). A
    file's row is reused while ``(realpath, size, mtime_ns)``, the signature of its sidecars (name, size
    and mtime of ``.json``/``.civitai.info``/model objects, names of previews) and the code fingerprint
    (the detector's source) are unchanged, so a rescan only reads new or changed files; rows with an
    error are retried every scan. The detection result is stored as JSON and decoded only when an entry
    is asked for. An index that is not an SQLite file, belongs to another application, or has another
    schema version is moved aside (``<name>.bad-<time>``) and rebuilt; an index folder that cannot be
    written falls back to an in-memory index. Rows are kept per root, so libraries with different roots
    can share one index file.

Names
    :meth:`Library.lookup` resolves a name the way a ``<lora:NAME>`` tag means it, in this order: exact
    file stem (A1111's own rule, case-sensitive), path relative to its root without suffix
    (``chars/alice``; backslashes accepted; a ``.safetensors`` suffix may be given), ``ss_output_name``
    alias, AutoV2 (10 hex of the file sha256) or addnet short hash (12 hex of the sha256 after the
    header, A1111's "Lora hashes"), then a case-insensitive unique match of stem, relative path or alias.
    Hash queries match only hashes already known — kohya's ``sshs_model_hash`` gives the addnet hash
    without reading the file, the background worker fills in the rest — and a miss says how many files
    are still unhashed. ``..`` components and absolute paths are refused. A name shared by several files
    is *ambiguous* and lists them; a miss offers up to three "did you mean" names. Lookups use in-memory
    dictionaries built once per scan.

Hashes
    :meth:`Library.start_hashing` computes sha256 and addnet hashes in a background thread (one pass
    per file, :mod:`lib_lora.hashing`), cached in the index by ``(realpath, size, mtime_ns)``; listing
    never waits for them; :meth:`Library.ensure_hashes` computes one entry's now. Each thread uses its
    own SQLite connection.

Modules
    :mod:`~lib_lora.library.info` (the :class:`LoraInfo` value, result values, metadata summary),
    :mod:`~lib_lora.library.codec` (JSON forms stored in the index), :mod:`~lib_lora.library.index`
    (SQLite schema, rows, code fingerprint, upgrade and recovery), :mod:`~lib_lora.library.scan` (walk,
    reading one file, reader processes), :mod:`~lib_lora.library.lookup` (name tables, did-you-mean),
    :mod:`~lib_lora.library.core` (the :class:`Library` façade, background hashing). Callers import from
    ``lib_lora.library``.
"""

from __future__ import annotations

from lib_lora.library.codec import LazyJSONMapping, detection_from_dict, detection_to_dict
from lib_lora.library.core import Library
from lib_lora.library.index import APPLICATION_ID, SCHEMA_VERSION
from lib_lora.library.info import (
    LEGACY_SUFFIXES,
    MODEL_SUFFIXES,
    SAFETENSORS,
    HashStatus,
    Lookup,
    LoraInfo,
    MetadataSummary,
    ScanProgress,
    ScanResult,
    bounded_metadata,
)
from lib_lora.library.scan import PARALLEL_MIN_FILES, describe_file

__all__ = [
    "APPLICATION_ID",
    "LEGACY_SUFFIXES",
    "MODEL_SUFFIXES",
    "PARALLEL_MIN_FILES",
    "SAFETENSORS",
    "SCHEMA_VERSION",
    "HashStatus",
    "LazyJSONMapping",
    "Library",
    "Lookup",
    "LoraInfo",
    "MetadataSummary",
    "ScanProgress",
    "ScanResult",
    "bounded_metadata",
    "describe_file",
    "detection_from_dict",
    "detection_to_dict",
]
