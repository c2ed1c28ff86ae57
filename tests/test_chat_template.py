"""Jinja chat templates convert to prefix/suffix form that renders identically, or are refused."""

from __future__ import annotations

import pytest

from export.chat_template import ChatTemplateError, convert
from tests.conftest import CHATML

DEFAULT_SYSTEM = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
WITH_BOS = "{{ bos_token }}" + CHATML
# not expressible as per-role prefix/suffix: the content is upper-cased
UNSUPPORTED = "{% for message in messages %}{{ message['content'] | upper }}{% endfor %}"


@pytest.fixture
def tokenizer(hf_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_folder("llama"))


@pytest.mark.parametrize("template", [CHATML, DEFAULT_SYSTEM, WITH_BOS])
def test_conversion_renders_like_jinja(tokenizer, template):
    tokenizer.chat_template = template
    converted = convert(tokenizer)
    msgs = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    want = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert converted.render(msgs) == want


def test_default_system_prompt_is_recovered(tokenizer):
    tokenizer.chat_template = DEFAULT_SYSTEM
    assert convert(tokenizer).default_system == "You are helpful."


def test_bos_is_recovered(tokenizer):
    tokenizer.chat_template = WITH_BOS
    assert convert(tokenizer).bos == tokenizer.bos_token


def test_unsupported_template_is_refused(tokenizer):
    tokenizer.chat_template = UNSUPPORTED
    with pytest.raises(ChatTemplateError):
        convert(tokenizer)


def test_no_template_means_none(tokenizer):
    tokenizer.chat_template = None
    assert convert(tokenizer) is None
