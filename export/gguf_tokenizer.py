"""Repairing the tokenizers transformers reads from GGUF files (Gemma's model, Phi-3's spaces).

A GGUF of the ``llama`` tokenizer model stores a SentencePiece vocabulary with scores and no merges.
For Gemma, SentencePiece runs it as BPE (the score is the merge rank) and llama.cpp does the same,
but transformers 4.57 rebuilds it as a Unigram model, whose Viterbi search prefers many frequent
short pieces: " capital" becomes " c" "ap" "it" "al" instead of one token. This rebuilds the model
as BPE, with every split of a piece into two pieces of the vocabulary as a merge, ranked by the
piece's score, keeping transformers' normaliser, decoder and special tokens.
"""

from __future__ import annotations

import json
from typing import Any


def _merges(vocab: list[tuple[str, float]], ids: dict[str, int]) -> list[tuple[str, str]]:
    """SentencePiece BPE's merges: a piece is made from its two halves, higher-scored pieces first."""
    ranked = []
    for piece, score in vocab:
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in ids and right in ids:
                ranked.append((-score, ids[left], ids[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def repair(tokenizer: Any) -> bool:
    """Turn a Unigram model built from a score-ranked BPE vocabulary into that BPE, in place; True if changed."""
    from tokenizers import models

    backend = tokenizer.backend_tokenizer
    state = json.loads(backend.to_str())["model"]
    if state.get("type") != "Unigram":
        return False
    vocab = [(piece, float(score)) for piece, score in state["vocab"]]
    ids = {piece: i for i, (piece, _) in enumerate(vocab)}
    unk = vocab[state["unk_id"]][0] if state.get("unk_id") is not None else None
    backend.model = models.BPE(
        ids, _merges(vocab, ids), unk_token=unk, fuse_unk=True, byte_fallback=bool(state.get("byte_fallback"))
    )
    return True


def restore_spaces(tokenizer: Any) -> bool:
    """Give a SentencePiece-style tokenizer that lost its space handling the normaliser it needs; True if changed.

    transformers 4.57 builds a Phi-3 GGUF's tokenizer with no normaliser and no pre-tokenizer, while its
    vocabulary spells spaces as "▁" and its decoder turns "▁" back into spaces: a space then matches no
    piece and is dropped ("Paris is" encodes as "Parisis"). SentencePiece (and llama.cpp) prefix the text
    with "▁" and replace every space by one, which is the normaliser added here.
    """
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    state = json.loads(backend.to_str())
    if state.get("normalizer") or state.get("pre_tokenizer"):
        return False
    vocab = state["model"].get("vocab") or {}
    pieces = vocab if isinstance(vocab, dict) else dict(vocab)
    if not any(p.startswith("\u2581") for p in pieces) or "\u2581" not in json.dumps(
        state.get("decoder"), ensure_ascii=False
    ):
        return False
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    return True
