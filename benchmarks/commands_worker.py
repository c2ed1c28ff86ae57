"""One measured voice-command run in a fresh process: ``python -m benchmarks.commands_worker SPEC``.

SPEC is JSON: system (``edge`` or ``baseline-nearest-example``), bundle (the text bundle, edge only),
ground_numbers (false: numeric arguments are not narrowed to the numbers a request states), commands
(the command-set file), asr (a speech bundle, or null for typed text), asr_prompt (text the recognizer reads
before each clip: the set's words, or null), inputs (texts, or .wav paths when asr is
set) and warmup (one input that is not in the dataset). Loads everything once, runs the warm-up, then times each
input. Prints one JSON line: load seconds, peak RSS and per input the transcript, the command (or the error),
parse and transcribe seconds and the model calls the parse made.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

BASELINE = "baseline-nearest-example"
SPECIALISED = "edge-specialised"  # a bundle from `edge-export specialise`, prompted as it was trained
HEARD = "edge-specialised-heard"  # the same, also trained on the speech model's transcripts (--speech-model)
FREE_NUMBERS = ", free numbers"  # after a system: its numbers not narrowed to those the request states

Parser = Callable[[str], dict]


def load_edge(spec: dict, cs) -> tuple[Parser, list[int]]:
    """The edge command model, and a counter of its decoder calls (prefill and steps alike)."""
    import edge
    from edge.commands.command_model import CommandModel

    model = CommandModel(edge.load(spec["bundle"], threads=1), cs, ground_numbers=spec.get("ground_numbers", True))
    calls = [0]
    forward = model.model.decoder.forward

    def counted(*args, **kwargs):
        calls[0] += 1
        return forward(*args, **kwargs)

    model.model.decoder.forward = counted
    return lambda text: model.parse(text).command, calls


def load_baseline(spec: dict, cs) -> tuple[Parser, list[int]]:
    from benchmarks.baseline import NearestExample

    return NearestExample(cs).parse, [0]


def load_asr(spec: dict) -> Callable[[Any], str] | None:
    """Samples to text with the speech bundle, or None for typed input."""
    if not spec.get("asr"):
        return None
    import edge

    recognizer = edge.load(spec["asr"], threads=1, prompt=spec.get("asr_prompt"))
    return lambda audio: recognizer.transcribe(audio).text


def run_one(item: Any, parse: Parser, calls: list[int], transcribe: Callable[[Any], str] | None) -> dict[str, Any]:
    """Transcribe (audio only) and parse one input; the command or the error, with timings."""
    start = time.perf_counter()
    text = transcribe(item) if transcribe else item
    heard = time.perf_counter()
    before = calls[0]
    out: dict[str, Any] = {"transcript": text}
    try:
        out["command"] = parse(text)
    except Exception as e:  # an invalid command is a result to count, not a crash
        out["command"], out["error"] = None, f"{type(e).__name__}: {e}"
    done = time.perf_counter()
    return {**out, "transcribe_s": heard - start, "parse_s": done - heard, "model_calls": calls[0] - before}


def main() -> None:
    spec = json.loads(sys.argv[1])
    from edge.commands.command_set import CommandSet
    from edge.system import peak_rss_mb

    cs = CommandSet.from_file(spec["commands"])
    start = time.perf_counter()
    parse, calls = (load_baseline if spec["system"] == BASELINE else load_edge)(spec, cs)
    transcribe = load_asr(spec)
    load_s = time.perf_counter() - start
    items = [spec["warmup"], *spec["inputs"]]
    if transcribe:  # read the clips before timing: the timings are the recognizer's, not the disk's
        from edge.speech.audio import load_audio

        items = [load_audio(p) for p in items]
    run_one(items[0], parse, calls, transcribe)
    results = [run_one(item, parse, calls, transcribe) for item in items[1:]]
    print(json.dumps({"load_s": load_s, "peak_rss_mb": peak_rss_mb(), "results": results}))


if __name__ == "__main__":
    main()
