"""Soak: one process generates many tokens and transcribes many utterances; memory must stop growing.

    python -m benchmarks.soak [--tokens 20000] [--utterances 500] [--text BUNDLE] [--speech BUNDLE]

Reports the resident-memory slope over the second half of each run (MB per 10,000 tokens and per
1,000 utterances) and the open file descriptors after loading and at the end. The test suite runs the same
function in a reduced form on tiny bundles (tests/test_soak.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import edge
from edge.sampling import SamplingOptions
from edge.system import open_files, rss_mb

CHUNK_TOKENS = 250
PROMPT = "Tell me about the kitchen."


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope over the second half: the first half is allocation warming up."""
    half = len(xs) // 2
    return float(np.polyfit(xs[half:], ys[half:], 1)[0]) if len(xs) - half >= 2 else 0.0


def soak(text_bundle: Path, speech_bundle: Path | None, tokens: int, utterances: int) -> dict:
    """Run the soak in this process and return its figures."""
    model = edge.load(text_bundle, threads=1)
    recognizer = edge.load(speech_bundle, threads=1) if speech_bundle is not None and utterances else None
    files_before = open_files()  # after loading: a leak is growth while working
    done, xs, ys = 0, [], []
    greedy = SamplingOptions(temperature=0)
    while done < tokens:
        ids = model.tokenizer.encode(model.format_prompt(PROMPT))
        for _ in model.stream_ids(ids, max_new_tokens=CHUNK_TOKENS, sampling=greedy, ignore_eos=True):
            done += 1
        xs.append(done)
        ys.append(rss_mb())
    result = {
        "tokens": done,
        "text_rss_start_mb": ys[0],
        "text_rss_end_mb": ys[-1],
        "mb_per_10k_tokens": _slope(xs, ys) * 10_000,
    }
    if recognizer is not None:
        rng = np.random.default_rng(0)
        xs, ys = [], []
        for i in range(utterances):
            t = np.arange(int(16000 * rng.uniform(0.5, 3))) / 16000
            recognizer.transcribe((0.1 * np.sin(2 * np.pi * rng.uniform(100, 800) * t)).astype(np.float32))
            xs.append(i + 1)
            ys.append(rss_mb())
        result |= {
            "utterances": utterances,
            "speech_rss_start_mb": ys[0],
            "speech_rss_end_mb": ys[-1],
            "mb_per_1k_utterances": _slope(xs, ys) * 1000,
        }
    result["open_files_before"] = files_before
    result["open_files_after"] = open_files()
    return result


def main() -> None:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=20_000)
    p.add_argument("--utterances", type=int, default=500)
    p.add_argument("--text", type=Path, default=here / ".bundles" / "smollm2-135m-int4")
    p.add_argument("--speech", type=Path, default=here / ".bundles" / "whisper-tiny.en-int8")
    args = p.parse_args()
    result = soak(args.text, args.speech, args.tokens, args.utterances)
    print(json.dumps(result, indent=2))
    (here / "results" / "soak.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
