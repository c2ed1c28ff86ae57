"""python -m benchmarks assistant: the hands-free loop over synthesised sessions.

Sessions are spoken by espeak-ng (several voices and speeds) and Piper when installed, with pink/brown noise at
three levels: a wake phrase then a request; requests with no wake phrase; long stretches of speech and noise
with no wake phrase at all. Reports wake recall, false wakes per hour, command accuracy after a wake, end of
request -> command event and -> first reply audio, idle CPU, and the fixed 0.5 s endpoint beside the adaptive
one (what it saves, whom it cuts off). Writes benchmarks/results/assistant.{json,md}.

The requests are written here for this benchmark (never the command set's dev requests).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PANEL = ROOT.parent / "shared" / "commands" / "appliance-panel.json"
RATE = 16000

# (request, expected command); None: the set declines it and the text model answers
REQUESTS: list[tuple[str, dict | None]] = [
    ("turn on the kitchen light", {"command": "set_light", "args": {"room": "kitchen", "on": True}}),
    ("switch off the hallway lights", {"command": "set_light", "args": {"room": "hallway", "on": False}}),
    ("set a timer for twelve minutes", {"command": "start_timer", "args": {"minutes": 12}}),
    ("cancel the timer", {"command": "cancel_timer", "args": {}}),
    ("heat the oven to two hundred degrees", {"command": "set_oven_temperature", "args": {"celsius": 200}}),
    ("put the oven on grill", {"command": "set_oven_mode", "args": {"mode": "grill"}}),
    ("turn the oven off", {"command": "oven_off", "args": {}}),
    ("fan speed three please", {"command": "set_fan_speed", "args": {"speed": 3}}),
    ("what is the capital of france", None),
    ("tell me a joke about bread", None),
]
# a pause inside the request: the adaptive endpoint must not act on the first half alone
PAUSED = [
    (("set a timer for", "twenty minutes"), {"command": "start_timer", "args": {"minutes": 20}}),
    (
        ("heat the oven to", "one hundred and eighty degrees"),
        {"command": "set_oven_temperature", "args": {"celsius": 180}},
    ),
]
PAUSE_S = 0.6
# household talk with no wake phrase, for false wakes
CHATTER = [
    "I think we should leave for the station at half past eight, the traffic gets bad after nine.",
    "Can you pass me the salt? The soup needs a little more, and maybe some pepper too.",
    "The kids have football on Saturday morning, so we will have to shop on Sunday instead.",
    "Okay, so the plan is that you cook tonight and I will do the dishes afterwards.",
    "Did you hear about the new bakery on the corner? Their sourdough is supposed to be wonderful.",
    "No, I put the keys in the drawer next to the fridge, not on the table by the door.",
    "Hey, are you coming to dinner or not? Everything is getting cold on the table.",
    "My sister called again about the holiday; she wants us all to go to the coast in August.",
]
ESPEAK_VOICES = [("en-us", 160), ("en+m3", 140), ("en+f3", 175), ("en-gb", 150), ("en+m7", 185)]
NOISE_SNR_DB = {"quiet": None, "noise 20 dB": 20.0, "noise 10 dB": 10.0, "noise 5 dB": 5.0}
WAKE_PHRASES = {"okay_nabu": "okay nabu", "hey_jarvis": "hey jarvis"}


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def espeak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng, float32 16 kHz, its own leading and trailing silence trimmed."""
    from edge.speech.audio import load_audio

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
        return trim(load_audio(path))


def piper(text: str, speaker) -> np.ndarray:
    """``text`` spoken by an edge.speech.speak.Speaker (Piper), resampled to 16 kHz and trimmed."""
    from edge.speech.audio import resample

    audio, rate = speaker.synthesize(text)
    return trim(resample(audio.astype(np.float32) / 32768.0, rate, RATE))


def trim(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio


def write_wav(path: Path, audio: np.ndarray) -> Path:
    """float32 16 kHz mono -> 16-bit WAV."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes((np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes())
    return path


def noise(seconds: float, seed: int) -> np.ndarray:
    """Household-like noise: brown (rumble) plus pink-ish hiss plus the odd clatter, unit RMS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    brown = np.cumsum(rng.standard_normal(n))
    brown -= np.convolve(brown, np.ones(400) / 400, mode="same")  # no drift
    hiss = np.convolve(rng.standard_normal(n), [0.5, 0.3, 0.2], mode="same")
    clatter = np.zeros(n)
    for start in rng.integers(0, max(n - 800, 1), size=max(1, n // (RATE * 3))):
        clatter[start : start + 800] += rng.standard_normal(800) * np.exp(-np.arange(800) / 120) * 4
    mix = brown / (brown.std() + 1e-9) + hiss / hiss.std() + clatter
    return (mix / mix.std()).astype(np.float32)


def add_noise(audio: np.ndarray, snr_db: float | None, seed: int) -> np.ndarray:
    """``audio`` with noise at ``snr_db`` below the speech's RMS (voiced samples only); None: unchanged."""
    if snr_db is None:
        return audio
    voiced = audio[np.abs(audio) > 0.01]
    level = float(np.sqrt(np.mean(voiced**2))) if len(voiced) else 0.05
    return np.clip(audio + noise(len(audio) / RATE, seed) * level * 10 ** (-snr_db / 20), -1, 1).astype(np.float32)


@dataclass
class Session:
    """One synthesised recording and what happens in it (seconds from its start)."""

    audio: np.ndarray = field(repr=False)
    label: str
    wake_at: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each wake phrase
    request_end: float | None = None  # where the request's speech ends
    expected: dict | None = None  # the command; None with request_end set: an answer

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


def wake_session(
    say, wake: str, request: str | tuple[str, ...], expected: dict | None, label: str, gap_s: float = 0.4
) -> Session:
    """1 s of quiet, the wake phrase, ``gap_s``, the request (its parts ``PAUSE_S`` apart), 2 s of quiet."""
    phrase = say(WAKE_PHRASES[wake])
    parts = [silence(1.0), phrase, silence(gap_s)]
    for i, part in enumerate((request,) if isinstance(request, str) else request):
        parts += ([silence(PAUSE_S)] if i else []) + [say(part)]
    request_end = sum(len(p) for p in parts) / RATE
    parts.append(silence(2.0))
    wake_end = 1.0 + len(phrase) / RATE
    return Session(np.concatenate(parts), label, [(1.0, wake_end)], request_end, expected)


def run_session(assistant, session: Session) -> list:
    """The assistant's events over one session (its loop, as fast as the CPU allows)."""
    blocks = (session.audio[i : i + 512] for i in range(0, len(session.audio), 512))
    return list(assistant.run(blocks))


def load_parts(whisper: str | None, text: str | None, threads: int = 1):
    """The models the assistant runs on, chosen as edge-run --assistant chooses them: the speech model a
    specialised text bundle learned the transcripts of (else the default), prompted with the set's words."""
    import edge
    from benchmarks.common import ensure_bundle
    from edge.assistant import Answerer
    from edge.commands.command_model import CommandModel, paired_speech_model, speech_prompt
    from edge.commands.command_set import CommandSet

    model = edge.load(text, threads=threads)
    command_set = CommandSet.from_file(PANEL)
    if whisper is None:
        from edge.bundle import SPEECH_RECOGNITION
        from edge.cache import default_bundle

        whisper = paired_speech_model(model.bundle)[0] or default_bundle(SPEECH_RECOGNITION)
    recognizer = edge.load(whisper, threads=threads)
    recognizer.prompt = speech_prompt(command_set)
    commands = CommandModel(model, command_set)
    # a bundle specialised for commands writes only commands: answers come from the base model, at int4
    # (edge-run --assistant --answer-model benchmarks/.bundles/smollm2-135m-int4)
    answers = model if model.manifest.commands is None else edge.load(ensure_bundle("int4"), threads=threads)
    return recognizer, commands, Answerer(answers), recognizer.bundle.vad_path


def make_voice():
    """A Voice that synthesises with Piper but plays to nothing (None when Piper is not installed)."""
    from edge.assistant import Voice
    from edge.errors import EdgeError

    try:
        from edge.speech.speak import Speaker

        speaker = Speaker()
    except EdgeError:
        return None

    class Muted(Voice):
        def _play(self, audio, rate: int) -> None:
            pass

    return Muted(speaker)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(args) -> None:
    """Build the sessions, run them, write results/assistant.{json,md}."""
    from edge.assistant import Assistant, Endpointing
    from edge.speech.vad import VoiceActivityDetector
    from edge.wakeword import load_wake_word

    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed to synthesise the sessions (apt-get install espeak-ng)")
    recognizer, commands, answerer, vad_path = load_parts(args.asr_model, args.model, threads=1)
    args.speech_bundle = str(recognizer.bundle.path)
    voice = make_voice()
    speakers = [(f"espeak {v} {s}", lambda t, v=v, s=s: espeak(t, v, s)) for v, s in ESPEAK_VOICES]
    if voice is not None:
        speakers.append(("piper joe", lambda t: piper(t, voice.speaker)))
    if args.quick:
        speakers = speakers[:2]

    positives: list[Session] = []
    for si, (who, say) in enumerate(speakers):
        for ni, (level, snr) in enumerate(NOISE_SNR_DB.items()):
            items = [(r, e) for r, e in REQUESTS] + [(r, e) for r, e in PAUSED]
            if args.quick:
                items = items[:3] + items[-1:]
            for ri, (request, expected) in enumerate(items):
                if (si + ni + ri) % 2 and not args.quick:
                    continue  # half of the grid: every request, voice and level still appears
                s = wake_session(say, args.wake, request, expected, f"{who} / {level}")
                s.audio = add_noise(s.audio, snr, seed=si * 100 + ni * 10 + ri)
                positives.append(s)

    def assistant(endpointing: Endpointing, with_voice: bool = False) -> Assistant:
        return Assistant(
            load_wake_word(args.wake),
            VoiceActivityDetector(vad_path),
            recognizer,
            commands,
            answerer,
            voice if with_voice else None,
            endpointing,
        )

    rows = []
    adaptive = assistant(Endpointing(), with_voice=voice is not None)
    fixed = assistant(Endpointing(short_s=0.5, long_s=0.5))
    for s in positives:
        row = {"label": s.label, "expected": s.expected, "seconds": s.seconds}
        for name, a in (("adaptive", adaptive), ("fixed", fixed)):
            events = run_session(a, s)
            wakes = [e for e in events if e.event == "wake"]
            done = next((e for e in events if e.event in ("command", "answer")), None)
            row[name] = {"woke": bool(wakes), "events": [e.as_dict() for e in events]}
            if done is not None:
                compute = done.ready_at - done.endpoint_at
                row[name] |= {
                    "kind": done.event,
                    "correct": (
                        {"command": done.command, "args": done.args} == s.expected
                        if s.expected
                        else done.event == "answer"
                    ),
                    "to_event_s": done.t - s.request_end + (compute if done.event == "command" else 0.0),
                    "compute_s": compute,
                }
                if done.event == "answer":  # a chat model answers in sentences; a command model in JSON
                    row[name]["prose"] = bool(done.text.strip()) and not done.text.lstrip().startswith("{")
                if name == "adaptive" and voice is not None:
                    voice.wait(timeout=30)
                    if voice.first_audio_at is not None:
                        row[name]["to_first_audio_s"] = done.t - s.request_end + voice.first_audio_at - done.endpoint_at
        rows.append(row)
        print(
            f"{s.label:32s} {str(s.expected and s.expected['command']):22s} {json.dumps(row['adaptive'].get('events'))}"
        )

    # false wakes: requests with no wake phrase, then long chatter and noise
    negatives: list[np.ndarray] = []
    said: list[tuple[str, list[tuple[int, str]]]] = []  # per negative: its label, and where each phrase ends
    for si, (who, say) in enumerate(speakers):
        texts = [r if isinstance(r, str) else " ".join(r) for r, _ in REQUESTS] + list(CHATTER)
        talk = [np.concatenate([say(t), silence(0.7)]) for t in texts]
        ends = np.cumsum([len(t) for t in talk]).tolist()
        stretch = np.concatenate(talk)
        for ni, (level, snr) in enumerate(NOISE_SNR_DB.items()):
            negatives.append(add_noise(stretch, snr, seed=1000 + si * 10 + ni))
            said.append((f"{who} / {level}", list(zip(ends, texts, strict=True))))
    minutes = 2 if args.quick else args.noise_minutes
    negatives.append(noise(minutes * 60, seed=7) * 0.05)  # a long stretch of household noise alone
    said.append(("household noise alone", []))
    idle = assistant(Endpointing())
    false_wakes, negative_s, cpu_s = 0, 0.0, 0.0
    for audio in negatives:
        start = time.process_time()
        events = run_session(idle, Session(audio, "negative"))
        cpu_s += time.process_time() - start
        false_wakes += sum(e.event == "wake" for e in events)
        negative_s += len(audio) / RATE
    # the wake-word detector alone over the same audio: the loop's count above also depends on how long each
    # false wake leaves it deaf (recording, then answering), so it moves with what the text model does
    detector_wakes, woken_by = 0, []
    for audio, (label, phrases) in zip(negatives, said, strict=True):
        detector = load_wake_word(args.wake)
        for i in range(0, len(audio), 512):
            for _ in detector.feed(audio[i : i + 512]):
                detector_wakes += 1
                # the phrase being said when it fired: the first that ends after this point
                text = next((t for end, t in phrases if end >= i), "")
                woken_by.append({"negative": label, "t": round((i + 512) / RATE, 2), "phrase": text})
    # idle CPU: the loop over quiet-room noise, nothing but the wake-word model and the ring buffer at work
    quiet = noise(120, seed=11) * 0.01
    start = time.process_time()
    run_session(idle, Session(quiet, "idle"))
    idle_cpu = (time.process_time() - start) / 120

    summary = summarise(rows, false_wakes, negative_s, idle_cpu, args)
    summary["detector_false_wakes"] = detector_wakes
    summary["detector_false_wakes_per_hour"] = detector_wakes / (negative_s / 3600)
    summary["detector_woken_by"] = woken_by
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "assistant.json").write_text(json.dumps({"summary": summary, "sessions": rows}, indent=1) + "\n")
    (RESULTS / "assistant.md").write_text(markdown(summary) + "\n")
    print(markdown(summary))
    if voice is not None:
        voice.close()


def summarise(rows: list[dict], false_wakes: int, negative_s: float, idle_cpu: float, args) -> dict:
    out: dict = {
        "wake_word": args.wake,
        "sessions_with_wake": len(rows),
        "negative_hours": negative_s / 3600,
        "false_wakes": false_wakes,
        "false_wakes_per_hour": false_wakes / (negative_s / 3600),
        "idle_cpu_of_one_core": idle_cpu,
        "text_bundle": args.model,
        "speech_bundle": getattr(args, "speech_bundle", None),
        "threads": 1,
    }
    for name in ("adaptive", "fixed"):
        r = [row[name] for row in rows]
        woke = [x for x in r if x["woke"]]
        commands = [x for x, row in zip(r, rows, strict=True) if x["woke"] and row["expected"]]
        answers = [x for x, row in zip(r, rows, strict=True) if x["woke"] and not row["expected"]]
        cmd_lat = [x["to_event_s"] for x in commands if x.get("kind") == "command"]
        out[name] = {
            "wake_recall": len(woke) / len(r),
            "command_accuracy": sum(bool(x.get("correct")) for x in commands) / max(len(commands), 1),
            "answers_recognised": sum(bool(x.get("correct")) for x in answers) / max(len(answers), 1),
            "answers_in_prose": sum(bool(x.get("prose")) for x in answers if x.get("kind") == "answer")
            / max(sum(x.get("kind") == "answer" for x in answers), 1),
            "to_command_median_s": percentile(cmd_lat, 50),
            "to_command_p90_s": percentile(cmd_lat, 90),
            # a wrong mapping often carries a number that was not said, so it waits for the long silence
            "to_right_command_median_s": percentile(
                [x["to_event_s"] for x in commands if x.get("kind") == "command" and x.get("correct")], 50
            ),
            "to_first_audio_median_s": percentile([x["to_first_audio_s"] for x in r if "to_first_audio_s" in x], 50),
            "to_answer_audio_median_s": percentile(
                [x["to_first_audio_s"] for x in answers if "to_first_audio_s" in x], 50
            ),
        }
    levels = sorted({row["label"].split(" / ")[1] for row in rows}, key=list(NOISE_SNR_DB).index)
    out["wake_recall_by_level"] = {
        level: statistics.mean(r["adaptive"]["woke"] for r in rows if r["label"].endswith(" / " + level))
        for level in levels
    }
    # whom the adaptive endpoint cuts off: right with the fixed 0.5 s, wrong with the adaptive one
    out["cut_off_by_adaptive"] = [
        row["label"] + ": " + json.dumps(row["adaptive"]["events"][1:])
        for row in rows
        if row["fixed"].get("correct") and not row["adaptive"].get("correct")
    ]
    return out


def markdown(s: dict) -> str:
    a, f = s["adaptive"], s["fixed"]

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    lines = [
        f"Wake word `{s['wake_word']}`, {s['sessions_with_wake']} sessions with a wake phrase, "
        f"{s['negative_hours']:.2f} h without one; text bundle {s['text_bundle']}, speech bundle "
        f"{s.get('speech_bundle')} prompted with the set's words (as edge-run --assistant), 1 thread.",
        "",
        "| measure | edge (adaptive endpoint) | edge (fixed 0.5 s) | target | published anchor |",
        "|---|---|---|---|---|",
        f"| wake recall | {pct(a['wake_recall'])} | {pct(f['wake_recall'])} | >= 95% | microWakeWord okay_nabu: "
        "2% false rejects on Piper clips (its README, cutoff 0.5, window 10); openWakeWord: < 5% (its goal) |",
        f"| false wakes per hour | {s['false_wakes_per_hour']:.2f} ({s['false_wakes']} in {s['negative_hours']:.2f} h)"
        " | same | <= 0.5 | microWakeWord okay_nabu: 0.122/h (Picovoice set), 0.187/h (DiPCo); "
        "openWakeWord: < 0.5/h (its stated goal) |",
        f"| false wakes per hour, the detector alone on the same audio | "
        f"{s.get('detector_false_wakes_per_hour', float('nan')):.2f} ({s.get('detector_false_wakes')}) | | <= 0.5 | |",
        f"| command accuracy after a wake | {pct(a['command_accuracy'])} | {pct(f['command_accuracy'])} | | |",
        f"| declined requests answered | {pct(a['answers_recognised'])} | {pct(f['answers_recognised'])} | | |",
        f"| answers in sentences (not a command's JSON) | {pct(a.get('answers_in_prose', float('nan')))} | | | |",
        f"| end of request -> command event, median (p90) | {a['to_command_median_s']:.2f} s "
        f"({a['to_command_p90_s']:.2f}) | {f['to_command_median_s']:.2f} s ({f['to_command_p90_s']:.2f})"
        " | <= 0.6 s | |",
        f"| end of request -> command event, right commands only, median | {a['to_right_command_median_s']:.2f} s"
        f" | {f['to_right_command_median_s']:.2f} s | <= 0.6 s | |",
        f"| end of request -> first reply audio, median (commands and answers) | {a['to_first_audio_median_s']:.2f} s"
        " | | <= 1.2 s | |",
        f"| end of request -> first audio of an answer, median | {a['to_answer_audio_median_s']:.2f} s | | | |",
        f"| CPU while waiting for the wake word | {pct(s['idle_cpu_of_one_core'])} of one core | | <= 10% | |",
    ]
    by_level = ", ".join(f"{level} {pct(recall)}" for level, recall in s["wake_recall_by_level"].items())
    lines += ["", f"Wake recall by noise level: {by_level}."]
    if s.get("detector_woken_by"):
        lines += ["", "What the detector woke on without the wake phrase (the phrase being said at the time):", ""]
        lines += [f"- {w['negative']}, {w['t']} s: {w['phrase']!r}" for w in s["detector_woken_by"]]
    if s["cut_off_by_adaptive"]:
        lines += ["", "Cut off by the adaptive endpoint (right with the fixed one):", ""]
        lines += [f"- {c}" for c in s["cut_off_by_adaptive"]]
    return "\n".join(lines)
