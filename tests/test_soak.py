"""A reduced soak: one process generating thousands of tokens and transcribing a hundred clips.

The full run (20,000 tokens and 500 utterances on the real bundles) is `python -m benchmarks.soak`.
The bound here is loose because a short run on tiny models is noisy; a real leak (a cache or a
session per call) grows by megabytes per call and fails it.
"""

from __future__ import annotations

import pytest

from benchmarks.soak import soak


@pytest.mark.integration
def test_memory_and_file_descriptors_stay_flat(tiny_bundle, whisper_bundle):
    result = soak(tiny_bundle("llama", "int4"), whisper_bundle("int8"), tokens=4000, utterances=100)
    print(result)
    assert result["tokens"] >= 4000 and result["utterances"] == 100
    assert result["mb_per_10k_tokens"] < 5, result
    assert result["mb_per_1k_utterances"] < 20, result
    assert result["open_files_after"] <= result["open_files_before"], result


@pytest.mark.integration
def test_a_server_soak_answers_every_well_formed_request(tiny_bundle):
    """The server soak's code path, for 10 s (the full run: `python -m benchmarks soak`)."""
    pytest.importorskip("psutil", reason="psutil is a dev dependency: pip install -e '.[dev]'")
    from benchmarks.soak import server_soak

    result = server_soak(tiny_bundle("llama", "fp32"), seconds=10, clients=8)
    print(result)
    assert result["server_alive"] and result["well_formed"] > 10, result
    assert result["well_formed_unanswered"] == 0, result["unanswered_samples"]
    hostile = {k.split(":")[0] for k in result["outcomes"]} - {"chat", "stream", "models", "health", "half-close"}
    assert len(hostile) >= 5, result  # most kinds of hostile client came by
    assert result["threads_end"] <= result["threads_start"] + 2, result
    assert result["rss_end_mb"] - result["rss_start_mb"] < 50, result
