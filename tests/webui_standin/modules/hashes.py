import hashlib
import struct

_cache: dict[str, str] = {}


def _addnet(filename):
    h = hashlib.sha256()
    with open(filename, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + n)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _full(filename):
    h = hashlib.sha256()
    with open(filename, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_from_cache(filename, title, use_addnet_hash=False):
    return _cache.get(f"{title}/{use_addnet_hash}")


def sha256(filename, title, use_addnet_hash=False):
    key = f"{title}/{use_addnet_hash}"
    if key not in _cache:
        _cache[key] = _addnet(filename) if use_addnet_hash else _full(filename)
    return _cache[key]
