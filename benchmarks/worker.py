"""One measured run in a fresh process: ``python -m benchmarks.worker BUNDLE THREADS TOKENS``.

Prints one JSON line. Wall-clock times are absolute (time.time()) so the parent can measure
process start to first token, imports and loading included.
"""

from __future__ import annotations

import json
import sys
import time

PROMPT = (
    "You are a helpful assistant for a kitchen appliance panel. Explain in a few sentences "
    "how an oven thermostat keeps the temperature steady while baking bread."
)


def main() -> None:
    bundle, threads, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    import edge
    from edge.generate import GenerationStats
    from edge.sampling import SamplingOptions
    from edge.system import peak_rss_mb

    model = edge.load(bundle, threads=threads)
    ids = model.encode_prompt(model.format_prompt(PROMPT), tokens)
    stats = GenerationStats()
    first = None
    for _ in model.stream_ids(
        ids, max_new_tokens=tokens, sampling=SamplingOptions(temperature=0), stats=stats, ignore_eos=True
    ):
        first = first or time.time()
    print(
        json.dumps(
            {
                "first_token_wall": first,
                "load_s": model.load_s,
                "ttft_s": stats.ttft_s,
                "prompt_tokens": stats.prompt_tokens,
                "new_tokens": stats.new_tokens,
                "prompt_tokens_per_s": stats.prompt_tokens / stats.ttft_s if stats.ttft_s else 0.0,
                "decode_tokens_per_s": stats.decode_tokens_per_s,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
