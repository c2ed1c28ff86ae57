"""Turn a model's jinja chat template into edge's jinja-free :class:`edge.bundle.ChatTemplate`.

The template is rendered with sentinel contents and cut at the sentinels, which recovers each
role's prefix and suffix, the generation prompt, any text before the first message, and a
default system prompt. The result is then checked against jinja on a multi-turn conversation;
a template that does not fit the prefix/suffix shape is refused rather than approximated.
"""

from __future__ import annotations

from typing import Any

from edge.bundle import ChatTemplate

S, U, A, S2 = "\x00SYS\x00", "\x00USR\x00", "\x00AST\x00", "\x00SYS2\x00"


class ChatTemplateError(ValueError):
    pass


def _render(tokenizer: Any, messages: list[tuple[str, str]], gen: bool = False) -> str:
    msgs = [{"role": r, "content": c} for r, c in messages]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)


def _between(text: str, before: str | None, after: str | None) -> str:
    start = 0 if before is None else text.index(before) + len(before)
    end = len(text) if after is None else text.index(after, start)
    return text[start:end]


def convert(tokenizer: Any) -> ChatTemplate | None:
    """The jinja-free template for ``tokenizer``, or ``None`` if it has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        one_system = _render(tokenizer, [("system", S)])
        two_system = _render(tokenizer, [("system", S), ("system", S2)])
        lead = _between(one_system, None, S)  # bos + system prefix
        sys_suffix = _between(one_system, S, None)
        sys_prefix = _between(two_system, S + sys_suffix, S2)
        if not lead.endswith(sys_prefix):
            raise ChatTemplateError("system prefix is not repeated for a second system message")
        bos = lead[: len(lead) - len(sys_prefix)]

        conv = _render(tokenizer, [("system", S), ("user", U), ("assistant", A)])
        user_prefix = _between(conv, S + sys_suffix, U)
        user_then_asst = _between(conv, U, A)
        asst_suffix = _between(conv, A, None)
        asst_prefix = _between(_render(tokenizer, [("system", S), ("user", U)], gen=True), U, None)
        user_suffix = _between(_render(tokenizer, [("system", S), ("user", U)]), U, None)
        generation_prompt = asst_prefix[len(user_suffix) :] if asst_prefix.startswith(user_suffix) else ""
        if user_then_asst != user_suffix + generation_prompt:
            raise ChatTemplateError("assistant prefix differs from the generation prompt")

        # a system message the template inserts when the conversation has none
        alone = _render(tokenizer, [("user", U)])
        head = _between(alone, None, U)
        default_system = None
        expected_head = bos + user_prefix
        if head != expected_head:
            inner = head[len(bos) + len(sys_prefix) : len(head) - len(sys_suffix) - len(user_prefix)]
            default_system = inner
    except (ValueError, IndexError) as e:  # str.index misses are ValueErrors too
        raise ChatTemplateError(f"chat template does not have a prefix/suffix shape ({e})") from None

    template = ChatTemplate(
        prefix={"system": sys_prefix, "user": user_prefix, "assistant": generation_prompt},
        suffix={"system": sys_suffix, "user": user_suffix, "assistant": asst_suffix},
        generation_prompt=generation_prompt,
        bos=bos,
        default_system=default_system,
    )
    _check(tokenizer, template)
    return template


def _check(tokenizer: Any, template: ChatTemplate) -> None:
    """Render two conversations both ways; any difference means the conversion is wrong."""
    cases = [
        [("user", "Hi there"), ("assistant", "Hello! How can I help?"), ("user", "Name a colour.")],
        [("system", "Be brief."), ("user", "2+2?"), ("assistant", "4"), ("user", "And 3+3?")],
    ]
    for case in cases:
        msgs = [{"role": r, "content": c} for r, c in case]
        want = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        got = template.render(msgs)
        if got != want:
            raise ChatTemplateError(f"converted template renders {got!r}, jinja renders {want!r}")
