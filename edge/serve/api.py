"""The OpenAI wire format: request bodies in, response objects and error bodies out (no HTTP here).

Only what a small local model can honour is accepted: one choice (``n`` = 1), ``temperature``,
``top_p``, ``max_tokens`` (or ``max_completion_tokens``), ``stop``, ``seed``, ``stream``. Fields
OpenAI defines but edge ignores (``presence_penalty``, ``user``, ...) are accepted and ignored, so
clients that always send them keep working; a field with a wrong type is refused by name.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from edge.text.sampling import SamplingOptions

DEFAULT_MAX_TOKENS = 256  # as edge-run's --max-new-tokens
MAX_STOPS = 4  # OpenAI's limit
ROLES = ("system", "user", "assistant")


class ApiError(Exception):
    """A request that fails, as OpenAI reports it: an HTTP status and ``{"error": {...}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


@dataclass
class TextRequest:
    """A chat or completion request, checked: ``messages`` for chat, ``prompt`` for completions."""

    sampling: SamplingOptions
    max_tokens: int = DEFAULT_MAX_TOKENS
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise invalid(name, f"'{name}' must be a number from {low} to {high}, got {value!r}")
    return float(value)


def _common(body: Any) -> TextRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    # fields OpenAI leaves out default to edge-run's (temperature 0.7, top_k 40, top_p 0.9): a 135M
    # model sampled at OpenAI's temperature 1 without top-k drifts into noise
    defaults = SamplingOptions()
    sampling = SamplingOptions(
        temperature=_number(body, "temperature", defaults.temperature, 0, 2),
        top_p=_number(body, "top_p", defaults.top_p, 0, 1) or 1.0,  # OpenAI allows 0: treat as "no nucleus cut"
    )
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise invalid("seed", f"'seed' must be an integer from 0 to 2**64 - 1, got {seed!r}")
        sampling.seed = seed
    req = TextRequest(sampling=sampling)
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise invalid(name, f"'{name}' must be a positive integer, got {value!r}")
            req.max_tokens = value
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
        raise invalid("stop", f"'stop' must be a string or a list of at most {MAX_STOPS} strings")
    req.stop = [s for s in stops if s]
    n = body.get("n", 1)
    if n != 1:
        raise invalid("n", "only one choice per request is supported ('n' must be 1)")
    req.stream = body.get("stream") is True
    options = body.get("stream_options") or {}
    req.include_usage = req.stream and isinstance(options, dict) and options.get("include_usage") is True
    return req


def _content(message: dict, where: str) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # the newer list form: [{"type": "text", "text": ...}, ...]; only text parts mean anything here
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in content):
            raise invalid(where, "only text content parts are supported")
        return "".join(p["text"] for p in content)
    raise invalid(where, "'content' must be a string or a list of text parts")


def chat_request(body: Any) -> TextRequest:
    """Check a ``/v1/chat/completions`` body."""
    req = _common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "'messages' must be a non-empty list of {role, content} objects")
    req.messages = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise invalid(where, f"'{where}' must be an object with a role and content")
        role = "system" if m.get("role") == "developer" else m.get("role")  # OpenAI's newer name for system
        if role not in ROLES:
            raise invalid(f"{where}.role", f"'{where}.role' must be one of {', '.join(ROLES)}, got {role!r}")
        req.messages.append({"role": role, "content": _content(m, f"{where}.content")})
    return req


def completion_request(body: Any) -> TextRequest:
    """Check a ``/v1/completions`` body."""
    req = _common(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid("prompt", "'prompt' must be a string (one prompt per request)")
    req.prompt = prompt
    return req


def finish_reason(edge_reason: str) -> str:
    """edge's finish reasons in OpenAI's words: running out of context is a length stop."""
    return "stop" if edge_reason == "stop" else "length"


class Reply:
    """The response objects of one request: full, or as stream chunks sharing one id."""

    def __init__(self, model: str, chat: bool):
        self.model, self.chat = model, chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def _head(self, object_: str) -> dict[str, Any]:
        return {"id": self.id, "object": object_, "created": self.created, "model": self.model}

    @staticmethod
    def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def full(self, text: str, reason: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return self._head(self.object) | {"choices": [choice], "usage": self.usage(prompt_tokens, completion_tokens)}

    def chunk(self, text: str | None, reason: str | None = None, first: bool = False) -> dict[str, Any]:
        """One stream event: a piece of text, or (``text`` None) the closing one with its finish reason."""
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else {} if text is None else {"content": text}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return self._head("chat.completion.chunk") | {"choices": [choice]}
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}
        return self._head("text_completion") | {"choices": [choice]}

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The last event when ``stream_options.include_usage`` is set: no choices, only usage."""
        object_ = "chat.completion.chunk" if self.chat else "text_completion"
        return self._head(object_) | {"choices": [], "usage": self.usage(prompt_tokens, completion_tokens)}


def models_list(model: str, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "edge"}]}
