"""python -m benchmarks.wakeword: the wake-word detector alone, on a tuning set kept apart from the benchmark's.

The assistant benchmark (``python -m benchmarks assistant``) reports recall and false wakes with the detector as
shipped; this one chooses how it is shipped. It synthesises sessions with other espeak-ng voices and speeds,
other phrases after the wake word, other household talk and other noise clips (seeds) than the assistant
benchmark, runs the model once per session on each runtime (onnxruntime and TFLite), and then:

- compares the two runtimes: per-call probabilities and detections with the sidecar's rule;
- sweeps the detection rule (the cutoff on the mean of the last ``window`` outputs) over the recorded outputs,
  giving recall per noise level against false wakes per hour for each setting.

Writes benchmarks/results/wakeword.{json,md}. Needs espeak-ng, pymicro-wakeword and the converted models
(``python -m export.wakeword``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.assistant import NOISE_SNR_DB, RATE, add_noise, espeak, noise, piper, silence

RESULTS = Path(__file__).resolve().parent / "results"
# none of these voices, phrases or seeds is in the assistant benchmark
TUNING_VOICES = [("en-us+m2", 150), ("en+f4", 170), ("en-gb+m1", 145), ("en-us+f2", 180), ("en+m5", 165)]
AFTER_WAKE = ["open the blinds", "what time is it", "play some music", "is it going to rain", "stop", "lights"]
TUNING_TALK = [
    "We could paint the bedroom blue this weekend, if the shop still has that colour in stock.",
    "Okay, now I know why the bus was late, there was a truck blocking the whole road.",
    "Put the kettle on, would you? I will be down in five minutes once this call is over.",
    "The neighbour's dog barked all night again, I barely slept at all.",
    "Remember to water the tomatoes, they looked a bit dry yesterday evening.",
    "Nobody told me the meeting moved to Thursday, so I turned up to an empty room.",
]
CUTOFFS = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]
WINDOWS = [1, 3, 5, 7, 10]
HIT_WINDOW_S = 1.0  # a detection up to this long after the phrase ends counts


def speakers(with_piper: bool):
    out = [(f"espeak {v} {s}", lambda t, v=v, s=s: espeak(t, v, s)) for v, s in TUNING_VOICES]
    if with_piper:
        from edge.speech.speak import Speaker

        speaker = Speaker()
        out.append(("piper joe", lambda t: piper(t, speaker)))
    return out


def tuning_set(phrase: str, with_piper: bool, noise_minutes: float):
    """(positives [(audio, label, phrase_start, phrase_end)], negatives [audio]) of the tuning set."""
    positives, negatives = [], []
    for si, (who, say) in enumerate(speakers(with_piper)):
        wake = say(phrase)
        for ni, (level, snr) in enumerate(NOISE_SNR_DB.items()):
            for ri, after in enumerate(AFTER_WAKE):
                lead = 0.5 + 0.25 * ri
                audio = np.concatenate([silence(lead), wake, silence(0.3), say(after), silence(1.5)])
                audio = add_noise(audio, snr, seed=50_000 + si * 1000 + ni * 100 + ri)
                positives.append((audio, f"{who} / {level}", lead, lead + len(wake) / RATE))
        talk = np.concatenate([np.concatenate([say(t), silence(0.6)]) for t in TUNING_TALK])
        for ni, (_, snr) in enumerate(NOISE_SNR_DB.items()):
            negatives.append(add_noise(talk, snr, seed=60_000 + si * 10 + ni))
    negatives.append(noise(noise_minutes * 60, seed=70_001) * 0.05)
    return positives, negatives


def outputs(detector, audio: np.ndarray) -> tuple[np.ndarray, float]:
    """The model's raw output at each call (every ``stride`` features) over ``audio``, and the CPU seconds."""
    detector.reset()
    start = time.process_time()
    raw = []
    for i in range(0, len(audio), 512):  # the assistant's block size
        pcm = np.clip(np.round(audio[i : i + 512] * 32768.0), -32768, 32767).astype(np.int16)
        for row in detector.frontend.process(pcm):
            detector._pending.append(row)
            if len(detector._pending) == detector.model.stride:
                raw.append(detector.model.probability(np.stack(detector._pending)))
                detector._pending.clear()
    return np.array(raw), time.process_time() - start


def detections(raw: np.ndarray, stride: int, cutoff: float, window: int) -> list[float]:
    """Seconds at which the rule fires over one session's outputs (1 s deaf after each, the window emptied)."""
    found, since, deaf_until = [], 0, 0
    means = np.convolve(raw, np.ones(window) / window, mode="full")[: len(raw)]
    for k, mean in enumerate(means):
        since += 1
        features = (k + 1) * stride
        if since >= window and features >= deaf_until and mean > cutoff:
            found.append((480 + 160 * (features - 1)) / RATE)
            since, deaf_until = 0, features + 100
    return found


def sweep(pos_raw, positives, neg_raw, negative_s, stride) -> list[dict]:
    rows = []
    levels = list(NOISE_SNR_DB)
    for window in WINDOWS:
        for cutoff in CUTOFFS:
            hits = []
            for raw, (_, label, begin, end) in zip(pos_raw, positives, strict=True):
                found = detections(raw, stride, cutoff, window)
                hits.append((label.split(" / ")[1], any(begin < t <= end + HIT_WINDOW_S for t in found)))
            false = sum(len(detections(raw, stride, cutoff, window)) for raw in neg_raw)
            rows.append(
                {
                    "cutoff": cutoff,
                    "window": window,
                    "recall": float(np.mean([h for _, h in hits])),
                    "recall_by_level": {lv: float(np.mean([h for lab, h in hits if lab == lv])) for lv in levels},
                    "false_wakes": false,
                    "false_wakes_per_hour": false / (negative_s / 3600),
                }
            )
    return rows


def run(args) -> dict:
    from edge.wakeword import load_wake_word

    phrase = {"okay_nabu": "okay nabu", "hey_jarvis": "hey jarvis"}[args.wake]
    positives, negatives = tuning_set(phrase, not args.no_piper, args.noise_minutes)
    negative_s = sum(len(a) for a in negatives) / RATE
    runtimes = {r: load_wake_word(args.wake, runtime=r) for r in ("onnx", "tflite")}
    spec = runtimes["onnx"].spec
    raw, cpu = {}, {}
    for name, detector in runtimes.items():
        pos = [outputs(detector, a) for a, *_ in positives]
        neg = [outputs(detector, a) for a in negatives]
        raw[name] = ([r for r, _ in pos], [r for r, _ in neg])
        cpu[name] = sum(c for _, c in neg) / negative_s  # while waiting: talk and noise without the phrase
    stride = runtimes["onnx"].model.stride
    pairs = list(zip(raw["onnx"][0] + raw["onnx"][1], raw["tflite"][0] + raw["tflite"][1], strict=True))
    diffs = np.concatenate([np.abs(a - b) for a, b in pairs])
    rule = (spec.probability_cutoff, spec.sliding_window_size)
    same = [detections(a, stride, *rule) == detections(b, stride, *rule) for a, b in pairs]
    result = {
        "wake_word": args.wake,
        "positives": len(positives),
        "negative_hours": negative_s / 3600,
        "sidecar_rule": {"cutoff": rule[0], "window": rule[1]},
        "runtimes": {
            "cpu_of_one_core": cpu,
            "max_probability_difference": float(diffs.max()),
            "mean_probability_difference": float(diffs.mean()),
            "sessions_with_same_detections": f"{sum(same)}/{len(same)}",
        },
        "sweep": {name: sweep(raw[name][0], positives, raw[name][1], negative_s, stride) for name in raw},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wakeword.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "wakeword.md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return result


def markdown(r: dict) -> str:
    rt = r["runtimes"]
    lines = [
        f"Wake word `{r['wake_word']}` on the tuning set (not the assistant benchmark's sessions): "
        f"{r['positives']} phrases, {r['negative_hours']:.2f} h without one.",
        "",
        "onnxruntime vs TFLite on the same features: probabilities differ by at most "
        f"{rt['max_probability_difference']:.3f} (mean {rt['mean_probability_difference']:.4f}); "
        f"same detections in {rt['sessions_with_same_detections']} sessions;"
        f" CPU while waiting {100 * rt['cpu_of_one_core']['onnx']:.2f}% (onnx) and"
        f" {100 * rt['cpu_of_one_core']['tflite']:.2f}% (tflite) of one core, frontend included.",
        "",
        "| runtime | window | cutoff | recall | " + " | ".join(NOISE_SNR_DB) + " | false wakes/h |",
        "|---|---|---|---|" + "---|" * len(NOISE_SNR_DB) + "---|",
    ]
    for name, rows in r["sweep"].items():
        for row in rows:
            levels = " | ".join(f"{100 * row['recall_by_level'][lv]:.0f}%" for lv in NOISE_SNR_DB)
            lines.append(
                f"| {name} | {row['window']} | {row['cutoff']} | {100 * row['recall']:.1f}% | {levels} | "
                f"{row['false_wakes_per_hour']:.2f} ({row['false_wakes']}) |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wakeword", description=__doc__.splitlines()[0])
    parser.add_argument("--wake", default="okay_nabu", choices=["okay_nabu", "hey_jarvis"])
    parser.add_argument("--noise-minutes", type=float, default=20, help="minutes of noise alone (20)")
    parser.add_argument("--no-piper", action="store_true", help="espeak-ng voices only")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
