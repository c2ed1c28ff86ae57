"""One measured speech-recognition run in a fresh process: ``python -m benchmarks.asr_worker SPEC``.

SPEC is JSON: system, precision, audio_context ("fit", "full", or "short": fit with no minimum window),
artifact, wavs (the clips to transcribe), latency (the clips for the end-of-speech latency, each with
``speech_end``, its last loud sample) and vad (a Silero VAD .onnx). Prints one JSON line: the hypotheses,
processing and audio seconds, load time, peak RSS and the latency figures (medians over the latency clips).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

FASTER_WHISPER = "faster-whisper"
SHORT = "short"  # edge's fitted window with no minimum length (min_window_s=0)
RATE = 16000
BLOCK = 512  # samples per block a live stream delivers: 32 ms, Silero's chunk
LEAD_S = TAIL_S = 1.0  # silence around each latency clip

Transcribe = Callable[[np.ndarray], str]


def load_edge(spec: dict) -> tuple[float, Transcribe]:
    import edge

    context = spec["audio_context"]
    # "short": the fitted window without its minimum, edge's window before 10 s became the least
    options = {"audio_context": "fit", "min_window_s": 0.0} if context == SHORT else {"audio_context": context}
    start = time.perf_counter()
    model = edge.load(spec["artifact"], threads=1, **options)
    return time.perf_counter() - start, lambda audio: model.transcribe(audio).text


def load_faster_whisper(spec: dict) -> tuple[float, Transcribe]:
    from faster_whisper import WhisperModel

    start = time.perf_counter()
    model = WhisperModel(spec["artifact"], device="cpu", compute_type=spec["precision"], cpu_threads=1, num_workers=1)
    load_s = time.perf_counter() - start

    def transcribe(audio: np.ndarray) -> str:
        segments, _ = model.transcribe(
            audio,
            beam_size=1,
            language="en",
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return "".join(s.text for s in segments).strip()  # segments is lazy: decoding happens here

    return load_s, transcribe


def load_moonshine(spec: dict) -> tuple[float, Transcribe]:
    from pathlib import Path

    from benchmarks.moonshine import Moonshine

    start = time.perf_counter()
    model = Moonshine(Path(spec["artifact"]), threads=1)
    return time.perf_counter() - start, model.transcribe


MOONSHINE = "moonshine"
LOADERS: dict[str, Callable[[dict], tuple[float, Transcribe]]] = {
    "edge": load_edge,
    FASTER_WHISPER: load_faster_whisper,
    MOONSHINE: load_moonshine,
}


def timed(transcribe: Transcribe, audio: np.ndarray) -> tuple[str, float]:
    start = time.perf_counter()
    text = transcribe(audio)
    return text, time.perf_counter() - start


def stream_latency(case: dict, transcribe: Transcribe, detector) -> dict:
    """Feed one clip, with silence either side, through the utterance segmenter as a live stream; then transcribe.

    Stream time is simulated: block i is stamped as captured at (i + 1) * 512 / 16000 s. The VAD hang is the
    stream time from the true end of speech to the capture of the block that completed the utterance; the
    wall time of that block's VAD step and of transcribing the emitted audio come on top.
    """
    from edge.speech.audio import load_audio
    from edge.speech.vad import UtteranceSegmenter

    audio = load_audio(case["wav"])
    lead, tail = np.zeros(int(LEAD_S * RATE), np.float32), np.zeros(int(TAIL_S * RATE), np.float32)
    stream = np.concatenate([lead, audio, tail])
    segmenter = UtteranceSegmenter(detector)
    emitted = []  # (utterance, wall seconds of the feed() that completed it)
    for i in range(0, len(stream), BLOCK):
        block = stream[i : i + BLOCK]
        start = time.perf_counter()
        done = segmenter.feed(block, captured_at=(i + len(block)) / RATE)
        emitted += [(u, time.perf_counter() - start) for u in done]
    if not emitted:  # speech never followed by enough silence: the stream's end closes it
        emitted = [(u, 0.0) for u in segmenter.flush()]
        for u, _ in emitted:
            u.detected_at = len(stream) / RATE
    utterance, step_s = emitted[-1]
    _, transcribe_s = timed(transcribe, utterance.audio)
    hang_s = utterance.detected_at - (len(lead) + case["speech_end"]) / RATE
    return {
        "vad_hang_s": hang_s,
        "vad_step_s": step_s,
        "transcribe_after_vad_s": transcribe_s,
        "latency_s": hang_s + step_s + transcribe_s,
        "segments": len(emitted),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    from edge.speech.audio import load_audio  # numpy only
    from edge.system import peak_rss_mb

    clips = [load_audio(p) for p in spec["wavs"]]
    load_s, transcribe = LOADERS[spec["system"]](spec)
    timed(transcribe, clips[0])  # warm-up: first-call allocations and lazy initialisation
    results = [timed(transcribe, clip) for clip in clips]
    processing_s = sum(t for _, t in results)
    audio_s = sum(len(c) for c in clips) / RATE
    peak_rss = peak_rss_mb()  # before the VAD is loaded: the recognizer alone

    from edge.speech.vad import VoiceActivityDetector

    detector = VoiceActivityDetector(spec["vad"])
    cases = [stream_latency(case, transcribe, detector) for case in spec["latency"]]
    figures = {k: statistics.median(c[k] for c in cases) for k in ("vad_hang_s", "transcribe_after_vad_s", "latency_s")}
    print(
        json.dumps(
            {
                "hypotheses": [text for text, _ in results],
                "processing_s": processing_s,
                "audio_s": audio_s,
                "real_time_factor": processing_s / audio_s,
                "load_s": load_s,
                "peak_rss_mb": peak_rss,
                "peak_rss_with_vad_mb": peak_rss_mb(),
                **figures,
                "vad_split_clips": sum(c["segments"] > 1 for c in cases),
            }
        )
    )


if __name__ == "__main__":
    main()
