"""Reading GGUF sources: the tokenizer repair for score-ranked SentencePiece BPE vocabularies (Gemma)."""

from __future__ import annotations

import pytest

from export.gguf_tokenizer import repair


@pytest.fixture
def unigram_from_ranks():
    """What transformers builds from a Gemma GGUF: a Unigram whose scores are BPE merge ranks (negated)."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", "▁", "c", "a", "p", "i", "t", "l", "▁c", "ap", "it", "al", "▁cap", "ital", "▁capital"]
    # merge ranks as a GGUF stores them: "▁capital" late (low score) though it is one token
    scores = [0.0] + [-1.0] * 7 + [-2.0, -3.0, -4.0, -5.0, -100.0, -101.0, -500.0]
    tok = Tokenizer(models.Unigram(list(zip(pieces, scores, strict=True)), unk_id=0))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Replace("▁", " ")
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_unigram_splits_what_bpe_merges(unigram_from_ranks):
    assert unigram_from_ranks.tokenize(" capital") != ["▁capital"]  # the bug being repaired


def test_repair_rebuilds_the_bpe(unigram_from_ranks):
    assert repair(unigram_from_ranks)
    assert unigram_from_ranks.tokenize(" capital") == ["▁capital"]
    assert unigram_from_ranks.tokenize(" cat") == ["▁c", "a", "t"]
    assert unigram_from_ranks.decode(unigram_from_ranks.encode(" capital")) == " capital"
    assert not repair(unigram_from_ranks)  # already BPE: left alone
