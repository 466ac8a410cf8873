"""Shared plumbing for the remote features: the error type, the HTTP session, safe URL text, the base URLs.

The Civitai API key is only ever put into an ``Authorization`` header by :func:`send` and only for a URL
on the Civitai host (scheme, host and port equal to the configured base URL); redirects are followed by
hand so a signed download URL on another host never sees it. Error messages name URLs without their
query string (signed URLs carry tokens there) and never contain the key.
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from lib_lora.errors import LoraStudioError

DEFAULT_CIVITAI_URL = "https://civitai.com"
ENV_CIVITAI_URL = "LORA_STUDIO_CIVITAI_URL"
ENV_CIVITAI_KEY = "CIVITAI_API_KEY"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"

#: (connect, read) timeouts in seconds.
TIMEOUT = (10.0, 60.0)
MAX_REDIRECTS = 5
#: Longest ``Retry-After`` we wait for; a longer one fails the request with a message.
MAX_RETRY_AFTER = 120.0
USER_AGENT = "LoRA-Studio/0.1 (+https://github.com/; WebUI extension)"


class RemoteError(LoraStudioError):
    """A request to Civitai or Hugging Face failed; ``kind`` says how (``offline``, ``timeout``,
    ``http``, ``cancelled``, ``verify``, ``refused``, ``disk``)."""

    def __init__(self, message: str, *, kind: str = "http", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class Cancelled(RemoteError):
    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message, kind="cancelled")


def civitai_base_url(setting: str | None = None) -> str:
    """The site root: ``LORA_STUDIO_CIVITAI_URL``, else the setting, else ``https://civitai.com``."""
    raw = os.environ.get(ENV_CIVITAI_URL) or setting or DEFAULT_CIVITAI_URL
    raw = raw.strip().rstrip("/")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemoteError(f"Civitai base URL must be an http(s) site root, not {raw!r}", kind="refused")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def civitai_api_key(setting: str | None = None) -> str | None:
    """The key from the setting, else ``CIVITAI_API_KEY``; ``None`` when neither is set."""
    key = (setting or "").strip() or os.environ.get(ENV_CIVITAI_KEY, "").strip()
    return key or None


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in."""
    p = urlsplit(url)
    port = p.port or (443 if p.scheme == "https" else 80)
    return p.scheme.lower(), (p.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    return origin(a) == origin(b)


def safe_url(url: str) -> str:
    """``url`` without query string, fragment or user info (for messages and logs)."""
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return urlunsplit((p.scheme, host, p.path, "", ""))


def retry_after_seconds(value: str | None, default: float = 5.0) -> float:
    """``Retry-After`` as seconds (a number or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


_SESSION_LOCAL = threading.local()


def session() -> Any:
    """A ``requests.Session`` per thread (proxies from the environment: ``trust_env`` is on)."""
    s = getattr(_SESSION_LOCAL, "session", None)
    if s is None:
        try:
            import requests
        except ImportError:  # pragma: no cover - both WebUIs ship requests
            raise RemoteError(
                "the 'requests' package is missing: install lora-studio[app] (the WebUIs ship it)", kind="refused"
            ) from None
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        _SESSION_LOCAL.session = s
    return s


@dataclass(frozen=True)
class Auth:
    """Where the key may go: only to ``base_url``'s origin."""

    base_url: str
    key: str | None = None

    def headers_for(self, url: str) -> dict[str, str]:
        if self.key and same_origin(url, self.base_url):
            return {"Authorization": f"Bearer {self.key}"}
        return {}

    def __repr__(self) -> str:  # never print the key
        return f"Auth(base_url={self.base_url!r}, key={'set' if self.key else 'none'})"


def _sleep(seconds: float, should_stop: Callable[[], bool] | None) -> None:
    end = time.monotonic() + seconds
    while True:
        if should_stop is not None and should_stop():
            raise Cancelled()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.1, left))


def send(
    method: str,
    url: str,
    auth: Auth,
    *,
    headers: Mapping[str, str] | None = None,
    late_headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    stream: bool = False,
    timeout: tuple[float, float] = TIMEOUT,
    retries: int = 3,
    should_stop: Callable[[], bool] | None = None,
    what: str = "",
) -> Any:
    """One HTTP request with redirects followed by hand (the key is dropped on another origin),
    ``429``/``503`` retried after ``Retry-After``, ``5xx`` and connection resets retried a few times.

    ``late_headers`` (a download's ``Range``) go only to the URL that serves the body: after a redirect,
    or — when the first URL answers directly — on a second request to it.

    Returns the final ``requests.Response`` (any status but 429/5xx after the retries); raises
    :class:`RemoteError` with kind ``offline`` or ``timeout`` when the host cannot be reached.
    """
    import requests

    label = what or safe_url(url)
    attempt = 0
    current = url
    hops = 0
    direct = False  # the first URL serves the body itself
    while True:
        if should_stop is not None and should_stop():
            raise Cancelled()
        h = dict(headers or {})
        if late_headers and (hops > 0 or direct):
            h.update(late_headers)
        h.update(auth.headers_for(current))
        try:
            resp = session().request(
                method, current, headers=h, json=json_body, stream=stream, timeout=timeout, allow_redirects=False
            )
        except requests.exceptions.ConnectTimeout:  # nothing answers at all: say so at once
            raise RemoteError(
                f"cannot reach {origin(current)[1]} (no answer within {timeout[0]:g} s): offline, or blocked by a "
                "proxy/firewall?", kind="offline") from None
        except requests.exceptions.Timeout:
            if attempt < retries:
                attempt += 1
                _sleep(min(8.0, 0.5 * 2**attempt), should_stop)
                continue
            raise RemoteError(f"{label}: no answer from {origin(current)[1]} (timed out)", kind="timeout") from None
        except requests.exceptions.ConnectionError as exc:
            if attempt < 1 and "reset" in str(exc).lower():
                attempt += 1
                continue
            raise RemoteError(
                f"cannot reach {origin(current)[1]} ({_reason(exc)}): offline, or blocked by a proxy/firewall?",
                kind="offline",
            ) from None
        except requests.exceptions.RequestException as exc:
            raise RemoteError(f"{label}: request failed: {_reason(exc)}", kind="http") from None
        if resp.status_code in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
            resp.close()
            hops += 1
            if hops > MAX_REDIRECTS:
                raise RemoteError(f"{label}: too many redirects", kind="http")
            current = urljoin(current, resp.headers["Location"])
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                method, json_body = "GET", None
            continue
        if late_headers and hops == 0 and not direct and resp.status_code < 300:
            resp.close()  # no redirect: ask the same URL again, now with the late headers
            direct = True
            continue
        if resp.status_code == 429 or (resp.status_code >= 500 and resp.status_code != 501):
            wait = retry_after_seconds(resp.headers.get("Retry-After"), default=min(8.0, 0.5 * 2**attempt))
            resp.close()
            if attempt < retries and wait <= MAX_RETRY_AFTER:
                attempt += 1
                _sleep(wait, should_stop)
                current, hops = url, 0  # from the start: a signed URL may have expired
                continue
            reason = "rate limited (429)" if resp.status_code == 429 else f"server error {resp.status_code}"
            raise RemoteError(f"{label}: {reason} from {origin(current)[1]}", kind="http", status=resp.status_code)
        return resp


def _reason(exc: BaseException) -> str:
    """A short reason for a connection error, without URLs (they may carry signed tokens)."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "No route to host", "Network is unreachable", "Connection reset", "timed out",
                   "getaddrinfo failed", "Max retries exceeded", "RemoteDisconnected", "IncompleteRead"):
        if marker.lower() in text.lower():
            return marker.lower() if marker != "Max retries exceeded" else "connection failed"
    return type(exc).__name__


def json_answer(resp: Any, label: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise RemoteError(f"{label}: the answer is not JSON (HTTP {resp.status_code})", kind="http") from None
    finally:
        resp.close()
