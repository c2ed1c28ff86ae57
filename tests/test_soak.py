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
