"""Checking an exported graph against its reference on a fixed English text.

Two checks: the fp32 graph against the source model (same logits, to float tolerance), and
the quantized graph against the fp32 graph (teacher-forced top-1 agreement, perplexity of both,
largest logit difference). The second one is the quality gate a bundle's ``report.json`` records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from edge.bundle import KVCacheLayout
from edge.text.decoder import OnnxDecoder

from .progress import Ticker

MIN_EVAL_TOKENS = 128
# The fp32 graph computes what the source computes; only float rounding may differ.
FP32_TOLERANCE = 1e-2
# A logit difference is a log probability ratio: within 0.1, fp32 itself rates the two tokens within
# 10.5% of each other, a tie that the kernel's summation order decides. On SmolLM2 (1,009 tokens)
# int8-weight's and int4's disagreements with fp32 have median fp32 gaps of 0.04 (all under 0.33),
# and which of them flip moved raw agreement between 94.8% and 95.5% from machine to machine;
# dynamic int8's are real (median 0.37, up to 4.5). See README "Export a bundle".
TIE_MARGIN = 0.1


def eval_text() -> str:
    return resources.files("export").joinpath("data/eval_text.txt").read_text(encoding="utf-8")


def graph_logits(
    model_path: Path, layout: KVCacheLayout, ids: list[int], threads: int | None = None, ticker: Ticker | None = None
) -> np.ndarray:
    """Teacher-forced logits through the KV-cache path: row ``t`` predicts ``ids[t + 1]``.

    One token per call, as generation runs: minutes for 1,009 tokens on a board, so ``ticker`` counts them.
    """
    decoder = OnnxDecoder(model_path, layout, threads=threads)
    steps = ids[:-1] if ticker is None else ticker.over(ids[:-1])
    return np.stack([decoder.forward([t]) for t in steps])


def perplexity(logits: np.ndarray, targets: list[int]) -> float:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    nll = -logprobs[np.arange(len(targets)), targets]
    return float(np.exp(nll.mean()))


def agreement(logits: np.ndarray, reference: np.ndarray, margin: float = TIE_MARGIN) -> tuple[float, float]:
    """Top-1 agreement of ``logits`` with ``reference``: raw, and tie-aware.

    Tie-aware, a position also agrees when the reference's logit for the token ``logits`` picked
    is within ``margin`` of the reference's own top logit: the reference had no clear choice there.
    """
    rows = np.arange(len(reference))
    ours, theirs = logits.argmax(-1), reference.argmax(-1)
    gap = reference[rows, theirs] - reference[rows, ours]
    return float((ours == theirs).mean()), float((gap < margin).mean())


@dataclass
class Thresholds:
    min_agreement: float = 0.95
    max_ppl_increase: float = 0.03


@dataclass
class QualityReport:
    """What ``report.json`` holds: how far the bundle's precision strays from fp32."""

    precision: str
    eval_tokens: int
    size_bytes: int
    fp32_size_bytes: int
    size_vs_fp32: float
    top1_agreement: float  # raw: the same top token as fp32
    tie_aware_agreement: float  # what the gate reads: the same, or one fp32 rates within ``tie_margin``
    tie_margin: float
    perplexity_fp32: float
    perplexity: float
    perplexity_increase: float
    max_abs_logit_diff: float
    fp32_vs_source_max_abs_logit_diff: float
    min_agreement: float
    max_ppl_increase: float
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def gate(self) -> str:
        return (
            f"tie-aware agreement {self.tie_aware_agreement:.1%} (>= {self.min_agreement:.0%}), "
            f"perplexity {self.perplexity_increase:+.2%} (<= {self.max_ppl_increase:+.0%})"
        )

    def table(self) -> str:
        """A small markdown table for the terminal and the docs."""
        mb, fp32_mb = self.size_bytes / 1e6, self.fp32_size_bytes / 1e6
        ppl = f"{self.perplexity_fp32:.3f} -> {self.perplexity:.3f} ({self.perplexity_increase:+.2%}"
        rows = [
            ("precision", self.precision),
            ("size", f"{mb:.1f} MB ({self.size_vs_fp32:.0%} of fp32 {fp32_mb:.1f} MB)"),
            ("top-1 agreement with fp32", f"{self.top1_agreement:.1%} over {self.eval_tokens} tokens"),
            (
                "tie-aware agreement",
                f"{self.tie_aware_agreement:.1%} (ties within {self.tie_margin} of fp32's top logit count; "
                f"gate >= {self.min_agreement:.0%})",
            ),
            ("perplexity fp32 -> this", f"{ppl}, gate <= {self.max_ppl_increase:+.0%})"),
            ("max |logit diff| vs fp32", f"{self.max_abs_logit_diff:.3f}"),
            ("fp32 graph vs source", f"{self.fp32_vs_source_max_abs_logit_diff:.2e} max |logit diff|"),
            ("quality gate", "passed" if self.passed else "FAILED"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)


def source_logits(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, :-1].float().numpy()


def check_fp32(
    model, fp32_path: Path, layout: KVCacheLayout, ids: list[int], ticker: Ticker | None = None
) -> tuple[np.ndarray, float]:
    """The fp32 graph's teacher-forced logits and their largest difference from the source model."""
    onnx_logits = graph_logits(fp32_path, layout, ids, ticker=ticker)
    diff = float(np.abs(onnx_logits - source_logits(model, ids)).max())
    return onnx_logits, diff


def compare(
    precision: str,
    model_path: Path,
    fp32_path: Path,
    fp32_logits: np.ndarray,
    fp32_vs_source: float,
    layout: KVCacheLayout,
    ids: list[int],
    thresholds: Thresholds,
    ticker: Ticker | None = None,
) -> QualityReport:
    """Measure the quantized graph at ``model_path`` against the fp32 graph's logits."""
    logits = fp32_logits if precision == "fp32" else graph_logits(model_path, layout, ids, ticker=ticker)
    targets = ids[1:]
    ppl_fp32, ppl = perplexity(fp32_logits, targets), perplexity(logits, targets)
    raw, tie_aware = agreement(logits, fp32_logits)
    increase = ppl / ppl_fp32 - 1
    size = sum(p.stat().st_size for p in model_path.parent.glob(model_path.name + "*"))
    fp32_size = sum(p.stat().st_size for p in fp32_path.parent.glob(fp32_path.name + "*"))
    return QualityReport(
        precision=precision,
        eval_tokens=len(targets),
        size_bytes=size,
        fp32_size_bytes=fp32_size,
        size_vs_fp32=size / fp32_size,
        top1_agreement=raw,
        tie_aware_agreement=tie_aware,
        tie_margin=TIE_MARGIN,
        perplexity_fp32=ppl_fp32,
        perplexity=ppl,
        perplexity_increase=increase,
        max_abs_logit_diff=float(np.abs(logits - fp32_logits).max()),
        fp32_vs_source_max_abs_logit_diff=fp32_vs_source,
        min_agreement=thresholds.min_agreement,
        max_ppl_increase=thresholds.max_ppl_increase,
        passed=tie_aware >= thresholds.min_agreement and increase <= thresholds.max_ppl_increase,
    )
