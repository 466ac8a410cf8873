"""The Civitai REST client: model versions by hash (bulk and single), models and versions by id.

``POST /api/v1/model-versions/by-hash`` takes a JSON array of at most 100 SHA-256 and answers the
version objects it knows (unknown hashes are simply absent); when a server does not offer it (404,
405, 400) the client falls back to ``GET /api/v1/model-versions/by-hash/{sha256}`` (404 = unknown).
Version objects are returned exactly as parsed from the answer, so they can be saved unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lib_lora.remote.common import (
    TIMEOUT,
    Auth,
    RemoteError,
    civitai_api_key,
    civitai_base_url,
    json_answer,
    send,
)

BULK_LIMIT = 100


def version_hashes(version: dict[str, Any]) -> set[str]:
    """Every file SHA-256 (lower case) a version object lists."""
    out: set[str] = set()
    for f in version.get("files") or ():
        if isinstance(f, dict) and isinstance(f.get("hashes"), dict):
            sha = f["hashes"].get("SHA256") or f["hashes"].get("sha256")
            if isinstance(sha, str):
                out.add(sha.lower())
    return out


@dataclass
class CivitaiClient:
    """Talks to one Civitai site (``base_url``); ``api_key`` goes only to that site."""

    base_url: str
    api_key: str | None = None
    should_stop: Callable[[], bool] | None = None
    bulk: bool = True  # switched off after the server refused the bulk lookup once
    timeout: tuple[float, float] = TIMEOUT  # (connect, read) seconds
    retries: int = 3  # for 429 / 5xx / read timeouts

    @classmethod
    def from_settings(cls, settings: Any = None, *, should_stop: Callable[[], bool] | None = None) -> CivitaiClient:
        url = getattr(settings, "civitai_url", None) if settings is not None else None
        key = getattr(settings, "civitai_api_key", None) if settings is not None else None
        return cls(civitai_base_url(url), civitai_api_key(key), should_stop=should_stop)

    def __repr__(self) -> str:
        return f"CivitaiClient({self.base_url!r}, key={'set' if self.api_key else 'none'})"

    @property
    def auth(self) -> Auth:
        return Auth(self.base_url, self.api_key)

    def url(self, path: str) -> str:
        return self.base_url + path

    def is_civitai_url(self, url: str) -> bool:
        from lib_lora.remote.common import same_origin

        return same_origin(url, self.base_url)

    def get_json(self, path: str, *, what: str, missing_ok: bool = False) -> Any:
        resp = send("GET", self.url(path), self.auth, should_stop=self.should_stop, what=what, timeout=self.timeout,
                    retries=self.retries)
        if resp.status_code == 404 and missing_ok:
            resp.close()
            return None
        if resp.status_code != 200:
            resp.close()
            raise RemoteError(f"{what}: Civitai answered HTTP {resp.status_code}", status=resp.status_code)
        return json_answer(resp, what)

    # -- lookups -----------------------------------------------------------------------------------

    def version_by_hash(self, sha256: str) -> dict[str, Any] | None:
        """The model-version object of the file with this SHA-256, ``None`` when Civitai does not know it."""
        obj = self.get_json(f"/api/v1/model-versions/by-hash/{sha256.lower()}", what=f"hash {sha256[:10]}",
                            missing_ok=True)
        if obj is not None and not isinstance(obj, dict):
            raise RemoteError(f"hash {sha256[:10]}: unexpected answer (not an object)")
        return obj

    def versions_by_hashes(self, hashes: Iterable[str],
                           on_chunk: Callable[[int], None] | None = None) -> dict[str, dict[str, Any]]:
        """sha256 -> version object for the hashes Civitai knows (bulk, 100 at a time, else one by one)."""
        wanted = sorted({h.lower() for h in hashes})
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(wanted), BULK_LIMIT):
            chunk = wanted[i:i + BULK_LIMIT]
            found = self._bulk(chunk) if self.bulk else None
            if found is None:
                found = {}
                for h in chunk:
                    v = self.version_by_hash(h)
                    if v is not None:
                        found[h] = v
                    if on_chunk is not None:
                        on_chunk(1)
            elif on_chunk is not None:
                on_chunk(len(chunk))
            out.update(found)
        return out

    def _bulk(self, chunk: Sequence[str]) -> dict[str, dict[str, Any]] | None:
        what = f"bulk hash lookup ({len(chunk)} files)"
        resp = send("POST", self.url("/api/v1/model-versions/by-hash"), self.auth, json_body=list(chunk),
                    should_stop=self.should_stop, what=what, timeout=self.timeout, retries=self.retries)
        if resp.status_code in (400, 404, 405, 501):
            resp.close()
            self.bulk = False
            return None
        if resp.status_code != 200:
            resp.close()
            raise RemoteError(f"{what}: Civitai answered HTTP {resp.status_code}", status=resp.status_code)
        answer = json_answer(resp, what)
        if isinstance(answer, dict) and isinstance(answer.get("items"), list):
            answer = answer["items"]
        if not isinstance(answer, list):
            raise RemoteError(f"{what}: unexpected answer (not a list)")
        wanted = set(chunk)
        out: dict[str, dict[str, Any]] = {}
        for v in answer:
            if isinstance(v, dict):
                for h in version_hashes(v) & wanted:
                    out[h] = v
        return out

    def model(self, model_id: int) -> dict[str, Any] | None:
        obj = self.get_json(f"/api/v1/models/{int(model_id)}", what=f"model {model_id}", missing_ok=True)
        return obj if isinstance(obj, dict) else None

    def version(self, version_id: int) -> dict[str, Any] | None:
        obj = self.get_json(f"/api/v1/model-versions/{int(version_id)}", what=f"model version {version_id}",
                            missing_ok=True)
        return obj if isinstance(obj, dict) else None
