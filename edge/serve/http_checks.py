"""Checks on an HTTP request before ``edge-run --serve`` acts on it: who may ask (``Host``, ``Origin``,
the API key), how its body is framed, and what a JSON body may hold. Each failure is an :class:`ApiError`,
so the client sees OpenAI's error shape and the server goes on.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from edge.jsonio import JsonInputError, load_json
from edge.serve.api import ApiError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")


def read_json(body: bytes) -> Any:
    """``body`` as JSON, refused with 400 when :func:`edge.jsonio.load_json` refuses it: not UTF-8 JSON,
    nested deeper than its limit, or holding a lone surrogate (``"\\ud800"``).

    A lone surrogate is refused rather than replaced: it is no character at all, only a broken
    client sends one, and a command silently changed by a replacement would be worse than an error.
    """
    try:
        return load_json(body)
    except JsonInputError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None


def content_length(headers: Message) -> int:
    """The body's length as the headers declare it (0 without one); 400 for a framing the server could
    misread (two lengths, a length with ``Transfer-Encoding``, a length that is not a number), 411 for
    a chunked upload."""
    lengths = headers.get_all("Content-Length") or []
    encoding = headers.get("Transfer-Encoding")
    if encoding is not None:
        if lengths:
            raise ApiError(400, "the request has both Content-Length and Transfer-Encoding", code="bad_framing")
        if encoding.strip().lower() == "chunked":
            raise ApiError(
                411, "send the body with a Content-Length; chunked uploads are not accepted", code="length_required"
            )
        raise ApiError(400, f"unsupported Transfer-Encoding {encoding!r}", code="bad_framing")
    if len(lengths) > 1:
        raise ApiError(400, "the request has more than one Content-Length header", code="bad_framing")
    if not lengths:
        return 0
    value = lengths[0].strip()
    if not value.isdigit() or not value.isascii():  # int() would take "+5", " 5" and "5_0"
        raise ApiError(400, f"bad Content-Length header: {value!r}", code="bad_framing")
    return int(value)


def _split_authority(authority: str) -> tuple[str, int | None] | None:
    """``host[:port]`` -> (lower-case host without brackets, port or None); None when malformed."""
    try:
        parts = urlsplit("//" + authority)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return host.rstrip("."), port


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass
class Access:
    """Who may use the server: the ``Host`` names it answers to, same-origin browser pages only, and
    with ``api_key`` set, only callers that send it (``Authorization: Bearer KEY``) on ``/v1``.

    ``Host`` is checked because of DNS rebinding: a page on another site whose name is made to resolve
    to this address reaches the server as same-origin, but its requests carry the page's own host name.
    An IP-literal ``Host`` cannot come from such a page, so any address of the server is accepted.
    """

    bind: str  # the address listened on, as given to --host
    port: int
    allow_hosts: tuple[str, ...] = ()
    api_key: str | None = None
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        bind = self.bind.strip("[]").lower()
        self.wildcard = bind in WILDCARDS
        self.loopback = bind == "localhost" or bool((ip := _ip(bind)) and ip.is_loopback)
        self.names = frozenset({bind, *(h.lower().rstrip(".") for h in self.allow_hosts)})

    def host_allowed(self, host: str) -> bool:
        if host in self.names:
            return True
        ip = _ip(host)
        loopback = host == "localhost" or (ip is not None and ip.is_loopback)
        # a loopback client may spell loopback any way; a wildcard bind answers on every address it has
        return (loopback and (self.loopback or self.wildcard)) or (ip is not None and self.wildcard)

    def check(self, headers: Message, path: str, http_11: bool) -> None:
        """Raise the :class:`ApiError` that refuses this request, if any."""
        host_header = headers.get("Host")
        if len(headers.get_all("Host") or []) > 1:  # RFC 9112: which one a proxy went by is anyone's guess
            raise ApiError(400, "the request has more than one Host header", code="bad_host")
        if host_header is None:
            if http_11:  # RFC 9112: a server must answer 400 to an HTTP/1.1 request without Host
                raise ApiError(400, "the request has no Host header", code="bad_host")
            host = None
        else:
            host = _split_authority(host_header.strip())
            if host is None or not self.host_allowed(host[0]):
                raise ApiError(
                    421,
                    f"this server does not answer to the host name {host_header!r}; if that name is meant to "
                    "reach it, start it with --allow-host NAME",
                    code="host_not_allowed",
                )
        origin = headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, host[1] if host else None):
            raise ApiError(
                403,
                f"requests from pages on {origin!r} are refused: only the server's own pages may call it",
                code="origin_not_allowed",
            )
        if self.api_key is not None and path.startswith("/v1/"):
            sent = headers.get("Authorization", "")
            scheme, _, token = sent.partition(" ")
            # compare_digest takes the same time wherever the first difference is
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                raise ApiError(
                    401,
                    "missing or wrong API key: send it as 'Authorization: Bearer KEY' (the key given to --api-key)",
                    code="invalid_api_key",
                )

    def _origin_allowed(self, origin: str, host_port: int | None) -> bool:
        """A browser page may call the server when it came from the server: the host is one the server
        answers to and the port is the one asked for (a page on localhost:3000 is another site)."""
        scheme, _, authority = origin.strip().partition("://")
        if scheme.lower() not in ("http", "https"):
            return False  # "null" (a file or a sandboxed frame) and anything odd
        parts = _split_authority(authority)
        if parts is None or not self.host_allowed(parts[0]):
            return False
        default = 443 if scheme.lower() == "https" else 80
        port = parts[1] or default
        return port in {self.port, host_port or default}
