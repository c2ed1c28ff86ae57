"""One measured run in a fresh process: ``python -m benchmarks.worker SYSTEM ARTIFACT THREADS TOKENS IDS``.

IDS is the prompt as comma-separated token ids, the same for every system. Prints one JSON
line; ``first_token_wall`` is absolute (time.time()) so the parent can measure process start to
first token, imports and loading included.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    system, artifact, threads, tokens, ids = sys.argv[1:6]
    threads, tokens = int(threads), int(tokens)
    ids = [int(i) for i in ids.split(",")]
    from benchmarks.peers import RUNNERS

    wall_offset = time.time() - time.perf_counter()
    load_s, stamps = RUNNERS[system](artifact, ids, threads, tokens)
    start = time.perf_counter()
    times = list(stamps)
    from edge.system import peak_rss_mb  # stdlib only: loads nothing heavy

    ttft = times[0] - start
    decode = times[-1] - times[0]
    print(
        json.dumps(
            {
                "first_token_wall": times[0] + wall_offset,
                "load_s": load_s,
                "ttft_s": ttft,
                "prompt_tokens": len(ids),
                "new_tokens": len(times),
                "prompt_tokens_per_s": len(ids) / ttft,
                "decode_tokens_per_s": (len(times) - 1) / decode if decode > 0 else 0.0,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
