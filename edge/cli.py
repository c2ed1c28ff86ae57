"""``edge-run``: the command line over :mod:`edge`'s Python API. It parses and prints, nothing more."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from edge.bundle import MAX_CONTEXT, MAX_VOCAB, SPEECH_RECOGNITION, TEXT_GENERATION, open_bundle
from edge.cache import (
    DEFAULT_SOURCE,
    DEFAULT_SPEECH_SOURCE,
    DEFAULTS,
    build_command,
    default_bundle,
    default_bundle_dir,
)
from edge.errors import EdgeError
from edge.system import peak_rss_mb

if TYPE_CHECKING:
    from edge.speech.transcribe import Transcript

EPILOG = f"""\
examples:
  edge-run --prompt "What is the capital of France?"        # default model ({DEFAULT_SOURCE})
  edge-run --model bundles/smollm2 --prompt "Write a haiku about rain" --temperature 0.8 --seed 1
  edge-run --model bundles/smollm2/model.onnx --chat
  echo "Once upon a time" | edge-run --model bundles/smollm2 --raw --max-new-tokens 40
  edge-run --model bundles/smollm2 --prompt "Hi" --json       # one JSON object with timings

voice commands (a command set turns requests into validated JSON commands):
  edge-run --commands panel.json --prompt "turn off the kitchen light"
  edge-run --model bundles/panel --prompt "too dark in the hall"   # a specialised bundle knows its set
  cat requests.txt | edge-run --commands panel.json          # one JSON line per input line
  edge-run --commands panel.json --audio a.wav --json        # adds "transcript" and timings
  edge-run --commands panel.json --listen --asr-model bundles/whisper

local server (OpenAI-compatible API at /v1, the appliance panel page at /):
  edge-run --serve --model bundles/smollm2 --commands panel.json --asr-model bundles/whisper
  curl -s localhost:8080/v1/commands -H 'Content-Type: application/json' -d '{{"text": "kitchen light on"}}'

hands-free assistant (wake word, then a command of the set or a short spoken answer):
  edge-run --assistant --commands panel.json                  # say "okay nabu", then "turn on the kitchen light"
  edge-run --assistant --wake hey_jarvis --commands panel.json --no-speak --json
  edge-run --assistant --commands panel.json --audio session.wav --json   # a recording, as fast as the CPU allows

speech (the bundle's task decides what --model does):
  edge-run --model bundles/whisper --audio a.wav b.wav       # one transcript per file
  edge-run --listen                                          # default speech model ({DEFAULT_SPEECH_SOURCE}), live
  edge-run --list-devices && edge-run --listen --device 2 --json

Without --model, edge uses the default bundle in {default_bundle_dir()} (speech:
{default_bundle_dir(SPEECH_RECOGNITION)}) and builds it first when it is missing and the
export extra is installed (pip install 'edge[export]').
In --chat, Ctrl-C stops the current reply; Ctrl-D or /exit quits. When the conversation
outgrows the context, the oldest turns are dropped (the system prompt is kept).
--listen needs a microphone and PortAudio (pip install 'edge[voice]'; Debian: apt install libportaudio2).
"""


MAX_THREADS = min(256, 4 * (os.cpu_count() or 1))  # beyond this onnxruntime only thrashes (thousands hang)


def ranged(kind: type, low: float, high: float = math.inf, *, above: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` parsing ``kind`` (int or float) within [low, high], or (low, high] when ``above``.

    Every numeric flag goes through here, so a bad value is argparse's usual one-line
    ``edge-run: error: argument --port: ...`` (exit 2), never a traceback or a silent empty run.
    """
    noun = "an integer" if kind is int else "a number"
    if above:
        expected = f"{noun} above {low}" + (f" and at most {high}" if high < math.inf else "")
    else:
        expected = f"{noun} from {low} to {high}" if high < math.inf else f"{noun} >= {low}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not math.isfinite(value) or value > high or (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"{text} is out of range; expected {expected}")
        return value

    return parse


def argv_text(text: str) -> str:
    """Text from the command line or a terminal, with bytes that are not UTF-8 as U+FFFD, as stdin is read.

    Python hands such bytes over as lone surrogates (surrogateescape), which the tokenizer cannot encode.
    """
    return _decode(text.encode("utf-8", "surrogateescape"))


def _wake_choices() -> str:
    from edge.wakeword import wake_word_names

    names = wake_word_names()
    return (
        f"one of {', '.join(names)} (default: okay_nabu)" if names else "none installed (pip install 'edge[assistant]')"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-run",
        description="Run a small language model offline from an edge bundle.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", "-m", metavar="PATH", help="bundle folder or its model.onnx (default: the default bundle)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--prompt", "-p", type=argv_text, metavar="TEXT", help="text to answer (default: read stdin)")
    mode.add_argument("--chat", action="store_true", help="interactive chat with history")
    mode.add_argument("--audio", nargs="+", metavar="WAV", help="transcribe these WAV files (speech bundles)")
    mode.add_argument("--listen", action="store_true", help="transcribe the microphone live, utterance by utterance")
    mode.add_argument("--list-devices", action="store_true", help="list microphones for --device and exit")
    mode.add_argument(
        "--serve", action="store_true", help="serve an OpenAI-compatible API and the panel page over HTTP"
    )
    p.add_argument(
        "--commands",
        metavar="FILE",
        help="map each request to a command of this command set (JSON), one line each "
        "(default for a bundle from `edge-export specialise`: the set it was trained on)",
    )
    p.add_argument("--system", type=argv_text, metavar="TEXT", help="system prompt for chat models")
    p.add_argument("--raw", action="store_true", help="continue the text as is, without the chat template")
    s = p.add_argument_group("sampling")
    s.add_argument(
        "--temperature", "-t", type=ranged(float, 0), metavar="T", default=0.7, help="0 = greedy (default: 0.7)"
    )
    s.add_argument(
        "--top-k",
        type=ranged(int, 0, MAX_VOCAB),
        metavar="K",
        default=40,
        help="keep the k likeliest tokens, 0 = off (default: 40)",
    )
    s.add_argument(
        "--top-p",
        type=ranged(float, 0, 1, above=True),
        metavar="P",
        default=0.9,
        help="nucleus sampling mass (default: 0.9)",
    )
    s.add_argument(
        "--repetition-penalty",
        metavar="R",
        type=ranged(float, 0, above=True),
        default=1.0,
        help="penalise tokens already seen, e.g. 1.1; 1 = off (default: 1)",
    )
    s.add_argument(
        "--seed", type=ranged(int, 0, 2**64 - 1), metavar="N", help="fix the random seed: same seed, same output"
    )
    s.add_argument(
        "--max-new-tokens",
        "-n",
        type=ranged(int, 1, MAX_CONTEXT),
        metavar="N",
        default=256,
        help="reply length cap (default: 256)",
    )
    s.add_argument(
        "--stop", action="append", type=argv_text, metavar="TEXT", help="stop when this text appears (repeatable)"
    )
    a = p.add_argument_group("speech")
    a.add_argument("--device", metavar="N|NAME", help="microphone for --listen (default: the system default)")
    a.add_argument(
        "--speak", action="store_true", help="with --commands: say each command back through Piper (edge[speak])"
    )
    a.add_argument(
        "--asr-model",
        metavar="PATH",
        help="with --commands: the speech bundle for --audio/--listen (default: the default speech bundle)",
    )
    a.add_argument(
        "--duration",
        type=ranged(float, 0, above=True),
        metavar="S",
        help="with --listen: stop after S seconds of audio (default: Ctrl-C)",
    )
    a.add_argument(
        "--audio-context",
        choices=("fit", "full"),
        default="fit",
        help="encode only the audio there is (fit, default) or a zero-padded 30 s window (full)",
    )
    w = p.add_argument_group("assistant (--assistant)")
    w.add_argument(
        "--assistant",
        action="store_true",
        help="wait for the wake word, then map the request to a command (or answer it) and speak the reply; "
        "with --audio WAV, run over that recording instead of the microphone",
    )
    w.add_argument("--wake", metavar="NAME", default="okay_nabu", help=f"wake word: {_wake_choices()}")
    w.add_argument("--no-speak", action="store_true", help="print replies without speaking them (Piper)")
    w.add_argument(
        "--answer-model",
        metavar="DIR",
        help="text bundle that answers requests the set declines (default: --model, or the default text bundle "
        "when --model was specialised for commands: such a model only writes commands)",
    )
    h = p.add_argument_group("server (--serve)")
    h.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; others are reachable by anyone)"
    )
    h.add_argument("--port", type=ranged(int, 0, 65535), default=8080, help="port to listen on (default: 8080)")
    h.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get("EDGE_API_KEY"),
        help="require 'Authorization: Bearer KEY' on every /v1 request (OpenAI clients: api_key=KEY; "
        "the panel page asks for it once); prefer the EDGE_API_KEY environment variable, as a flag "
        "shows in ps (default: $EDGE_API_KEY, else none)",
    )
    h.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to this host name, e.g. panel.local (repeatable); the server "
        "answers to its --host address (and localhost on loopback) and refuses other names, so that no "
        "web page can reach it through a DNS name of its own",
    )
    r = p.add_argument_group("runtime")
    r.add_argument(
        "--threads",
        type=ranged(int, 1, MAX_THREADS),
        metavar="N",
        help=f"CPU threads, at most {MAX_THREADS} here (default: onnxruntime's choice)",
    )
    r.add_argument(
        "--provider",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where text models run: cpu (default), or cuda with onnxruntime-gpu and an NVIDIA GPU "
        "(speech runs on the CPU)",
    )
    r.add_argument(
        "--max-context",
        type=ranged(int, 1, MAX_CONTEXT),
        metavar="N",
        help="context window in tokens (default: 2048, capped by the model)",
    )
    r.add_argument("--json", action="store_true", help="print one JSON object with the text and timings")
    r.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def _default_model_path(task: str) -> Path:
    path = default_bundle(task)  # the cache's own, a verified one edge-export recorded, or where to build it
    if (path / "edge.json").is_file():
        return path
    try:
        from export.pipeline import export_bundle  # heavy-ok: only when building the default bundle
    except ImportError:
        raise EdgeError(
            f"no --model given and the default bundle is not built yet ({path})",
            f"build it with: pip install 'edge[export]' && {build_command(task)}",
        ) from None
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    # two first runs at once: one builds, the other waits and then uses the result
    with open(path.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "edge.json").is_file():
            source, precision = DEFAULTS[task]
            print(f"edge-run: building the default bundle ({source}, {precision}) in {path}", file=sys.stderr)
            export_bundle(source, path, precision)
    return path


def _sampling(args):
    from edge.text.sampling import SamplingOptions

    opts = SamplingOptions(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed)
    try:
        opts.validate()
    except ValueError as e:
        raise EdgeError(str(e), "see `edge-run --help` for the valid ranges") from None
    return opts


MAX_PROMPT_BYTES = 1 << 20  # far beyond any context window; bounds memory on a piped file
MAX_REQUEST_BYTES = 4096  # one spoken or typed command


def _decode(data: bytes) -> str:
    """User text as bytes -> str: control characters kept, invalid UTF-8 as U+FFFD, never an error."""
    return data.decode("utf-8", errors="replace")


def _read_stdin() -> str:
    data = sys.stdin.buffer.read(MAX_PROMPT_BYTES + 1)
    if len(data) > MAX_PROMPT_BYTES:
        raise EdgeError(
            f"standard input is over {MAX_PROMPT_BYTES >> 20} MB, far more than the model's context",
            "pass a shorter prompt",
        )
    return _decode(data)


def read_requests(stream, limit: int = MAX_REQUEST_BYTES) -> Iterator[str]:
    """One request per line, in bounded memory, invalid UTF-8 replaced. A line longer than ``limit`` bytes is
    no request anyone said: it reads as an empty one (declined, never a command made of its first part)."""
    number = 0
    while line := stream.readline(limit):
        number += 1
        if len(line) == limit and not line.endswith(b"\n"):
            overlong = False
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                overlong = True  # skip the rest of an overlong line without holding it
            if overlong or rest:
                print(f"edge-run: line {number} is over {limit} bytes: declined (one request per short line)",
                      file=sys.stderr)  # fmt: skip
                yield ""
                continue
        yield _decode(line).strip()


def run_prompt(model, args) -> int:
    from edge.text.generate import GenerationStats

    prompt = args.prompt if args.prompt is not None else _read_stdin()
    stats = GenerationStats()
    pieces = model.stream(
        prompt,
        system=args.system,
        raw=args.raw,
        max_new_tokens=args.max_new_tokens,
        sampling=_sampling(args),
        stop=args.stop,
        stats=stats,
    )
    if args.json:
        text = "".join(pieces)
        print(
            json.dumps(
                {
                    "text": text,
                    "prompt_tokens": stats.prompt_tokens,
                    "new_tokens": stats.new_tokens,
                    "finish_reason": stats.finish_reason,
                    "load_s": round(model.load_s, 4),
                    "ttft_s": round(stats.ttft_s, 4),
                    "decode_tokens_per_s": round(stats.decode_tokens_per_s, 2),
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                },
                ensure_ascii=False,
            )
        )
        return 0
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def run_chat(model, args) -> int:
    session = model.chat(system=args.system)
    sampling = _sampling(args)
    print("edge chat: type a message; Ctrl-C stops a reply, Ctrl-D or /exit quits.", file=sys.stderr)
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")  # bytes that are not UTF-8 reach argv_text, not a traceback
    while True:
        try:
            line = argv_text(input("> "))
        except EOFError:
            print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue
        if line.strip() in ("/exit", "/quit"):
            return 0
        if not line.strip():
            continue
        dropped = session.dropped_turns
        try:
            for piece in session.send(line, max_new_tokens=args.max_new_tokens, sampling=sampling, stop=args.stop):
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write(" [stopped]")
        except EdgeError as e:
            print(f"edge-run: {e}", file=sys.stderr)
        sys.stdout.write("\n")
        if session.dropped_turns > dropped:
            print(f"(context full: dropped {session.dropped_turns - dropped} oldest turn(s))", file=sys.stderr)


def _print_transcript(transcript, args, file: str | None = None, **extra) -> None:
    if args.json:
        row = {"file": file} if file is not None else {}
        row |= {
            "transcript": transcript.text,
            "audio_s": round(transcript.audio_s, 3),
            "processing_s": round(transcript.processing_s, 4),
            "real_time_factor": round(transcript.real_time_factor, 4),
        }
        print(json.dumps(row | extra, ensure_ascii=False), flush=True)
    elif file is not None and len(args.audio) > 1:
        print(f"{file}: {transcript.text}", flush=True)
    else:
        print(transcript.text, flush=True)


def transcripts(recognizer, args) -> Iterator[tuple[Transcript, dict]]:
    """Transcripts of --audio files or --listen utterances, with where each came from."""
    if args.audio:
        for file in args.audio:
            yield recognizer.transcribe_file(file), {"file": file}
        return
    from edge.speech.microphone import listen

    if recognizer.bundle.vad_path is None:
        raise EdgeError(
            f"{recognizer.bundle.path}: the bundle has no voice activity detector (vad.onnx), so it cannot --listen",
            "pip install --no-deps silero-vad, then export the bundle again with --force",
        )
    print("edge-run: listening; Ctrl-C stops.", file=sys.stderr)
    for utterance in listen(args.device, recognizer.bundle.vad_path, max_seconds=args.duration):
        transcript = recognizer.transcribe(utterance.audio)
        latency = time.monotonic() - utterance.detected_at
        yield transcript, {"start_s": round(utterance.start, 3), "latency_s": round(latency, 4)}


def run_speech(recognizer, args) -> int:
    for transcript, origin in transcripts(recognizer, args):
        file = origin.pop("file", None)
        _print_transcript(transcript, args, file, **origin)
    return 0


def _recognizer(bundle, args):
    from edge.speech.transcribe import SpeechRecognizer

    return SpeechRecognizer(bundle, threads=args.threads, audio_context=args.audio_context)


def _speech_path(args, text) -> str | Path:
    """--asr-model, else the speech bundle the text bundle was trained on the transcripts of, else the default."""
    from edge.commands.command_model import paired_speech_model

    if args.asr_model:
        return args.asr_model
    paired, why_not = paired_speech_model(text)
    if why_not:
        print(f"edge-run: note: {text.path} learned a speech model's transcripts, but {why_not}", file=sys.stderr)
    return paired or _default_model_path(SPEECH_RECOGNITION)


def _command_recognizer(args, text, command_set):
    """The speech model for spoken commands, first reading the set's own words (Whisper's prompt). Specialised
    int4, commands right (python -m benchmarks commands --audio): reference set +10 (Piper) and +15 (espeak-ng)
    points; garden set -4 (Piper) and +8 (espeak-ng)."""
    from contextlib import suppress

    from edge.commands.command_model import speech_prompt
    from edge.errors import BundleError

    recognizer = _recognizer(_open(_speech_path(args, text), SPEECH_RECOGNITION, "--asr-model"), args)
    if command_set is not None:
        with suppress(BundleError):  # a speech model that takes no prompt transcribes as it is
            recognizer.prompt = speech_prompt(command_set)
    return recognizer


def _text_and_commands(args):
    """The text bundle (--model, else the default) and the command set: --commands, else a specialised
    bundle's own, else None."""
    from edge.commands.command_set import CommandSet

    text = _open(args.model or _default_model_path(TEXT_GENERATION), TEXT_GENERATION, "--model")
    commands_file = args.commands or text.commands_path
    return text, CommandSet.from_file(commands_file) if commands_file else None


def run_serve(args) -> int:
    """--serve: load the models the flags name, then serve until interrupted."""
    from edge.serve.server import serve
    from edge.text.model import TextModel

    wake = None
    if args.assistant:
        from edge.wakeword import load_wake_word

        wake = load_wake_word(args.wake)  # first: a wrong --wake name fails before minutes of model loading
    text, command_set = _text_and_commands(args)
    model = TextModel(text, threads=args.threads, max_context=args.max_context, provider=args.provider)
    recognizer = None
    if args.assistant:
        recognizer = _assistant_recognizer(args, text, command_set)
    elif command_set is not None:
        # the speech model loads now, not on the first spoken command: that one is as quick as the
        # rest, and a missing bundle shows at start rather than in front of a user
        try:
            recognizer = _command_recognizer(args, text, command_set)
        except EdgeError as e:
            if args.asr_model:
                raise
            print(f"edge-run: warning: commands by text only, no speech: {e}", file=sys.stderr)
    beside = None
    if wake is not None:

        def beside(server) -> None:
            # the server's own recognizer and command model, called through its worker: one model call at a time
            from edge.assistant import Assistant
            from edge.assistant.beside_server import start
            from edge.speech.vad import VoiceActivityDetector

            app = server.app
            vad = VoiceActivityDetector(recognizer.bundle.vad_path)
            voice = _assistant_voice(args)
            answerer = _answerer(args, model)
            assistant = Assistant(wake, vad, app.recognizer, app.command_model, answerer, voice)
            start(server, assistant, _assistant_blocks(args, wake))

    serve(
        model,
        command_set,
        recognizer,
        host=args.host,
        port=args.port,
        allow_hosts=tuple(args.allow_host),
        api_key=args.api_key,
        beside=beside,
    )
    return 0


def run_commands(args) -> int:
    """--commands (or a specialised bundle): requests (typed, piped, spoken) -> one validated JSON command per line."""
    from edge.commands.command_model import CommandModel
    from edge.text.model import TextModel

    text, command_set = _text_and_commands(args)
    recognizer = None
    if args.audio or args.listen:
        recognizer = _command_recognizer(args, text, command_set)
    model = TextModel(text, threads=args.threads, max_context=args.max_context, provider=args.provider)
    parser = CommandModel(model, command_set)
    if text.manifest.commands and not parser.specialised:
        print(
            f"edge-run: note: {text.path} was specialised for {text.manifest.commands.name!r}, not for "
            f"{args.commands}; it is prompted with instructions and examples instead",
            file=sys.stderr,
        )
    speaker = None
    if args.speak:
        from edge.speech.speak import Speaker

        speaker = Speaker()

    def emit(request: str, **extra) -> None:
        result = parser.parse(request)
        row = dict(result.command) | extra
        if args.json:
            calls = result.stats.decode_steps + 1 if result.stats.prompt_tokens else 0  # 0: declined unread
            row |= {"latency_s": round(result.latency_s, 4), "model_calls": calls}
        print(json.dumps(row, ensure_ascii=False), flush=True)
        if speaker is not None:
            from edge.speech.speak import confirmation

            speaker.say(confirmation(result.command))

    if recognizer is not None:
        for transcript, origin in transcripts(recognizer, args):
            timings = {"transcribe_s": round(transcript.processing_s, 4)} if args.json else {}
            emit(transcript.text, transcript=transcript.text, **origin, **timings)
    elif args.prompt is not None:
        emit(args.prompt)
    else:
        for request in read_requests(sys.stdin.buffer):
            emit(request)
    return 0


def _answer_model(args, model):
    """The model that answers declined requests: --answer-model; else ``model``, unless it was specialised
    for commands (it writes only commands), then the default text bundle (built on first use); None, with a
    warning, when there is none to use (a board with only its specialised bundle: declined, not answered)."""
    from edge.text.model import TextModel

    if args.answer_model:
        bundle = _open(args.answer_model, TEXT_GENERATION, "--answer-model")
    elif model.manifest.commands is None:
        return model
    else:
        try:
            bundle = open_bundle(_default_model_path(TEXT_GENERATION))
        except EdgeError as e:
            print(
                f"edge-run: warning: {model.bundle.path} only writes commands and there is no chat model to answer "
                f"declined requests ({e}); they get no spoken answer. Pass --answer-model DIR to answer them.",
                file=sys.stderr,
            )
            return None
    return TextModel(bundle, threads=args.threads, max_context=args.max_context, provider=args.provider)


def _answerer(args, model):
    from edge.assistant import Answerer

    answers = _answer_model(args, model)
    return Answerer(answers) if answers is not None else None


def run_assistant(args) -> int:
    """--assistant: the hands-free loop over the microphone (or --audio WAV), one line per event."""
    from edge.assistant import Assistant
    from edge.commands.command_model import CommandModel
    from edge.speech.vad import VoiceActivityDetector
    from edge.text.model import TextModel
    from edge.wakeword import load_wake_word

    if args.audio and len(args.audio) > 1:
        raise EdgeError("--assistant runs over one recording", "pass a single --audio WAV")
    wake = load_wake_word(args.wake)  # first: a wrong --wake name fails before minutes of model loading
    text, command_set = _text_and_commands(args)
    recognizer = _assistant_recognizer(args, text, command_set)
    model = TextModel(text, threads=args.threads, max_context=args.max_context, provider=args.provider)
    commands = CommandModel(model, command_set) if command_set is not None else None
    voice = _assistant_voice(args)
    answerer = _answerer(args, model)
    vad = VoiceActivityDetector(recognizer.bundle.vad_path)
    assistant = Assistant(wake, vad, recognizer, commands, answerer, voice)
    blocks = _assistant_blocks(args, wake)
    try:
        for event in assistant.run(blocks):
            row = event.as_dict()
            if args.json:
                print(json.dumps(row, ensure_ascii=False), flush=True)
            else:
                detail = {k: v for k, v in row.items() if k not in ("event", "t")}
                print(
                    f"[{row['t']:8.2f}] {row['event']}"
                    + (f" {json.dumps(detail, ensure_ascii=False)}" if detail else ""),
                    flush=True,
                )
        if voice is not None:
            voice.wait(timeout=60)  # let the last reply finish before the process ends
    finally:
        if voice is not None:
            voice.close()
    return 0


def _assistant_recognizer(args, text, command_set):
    """Whisper for --assistant, chosen and prompted as for spoken commands (--asr-model, else the one the text
    bundle learned the transcripts of, else the default; reading the set's words first); it must carry its VAD."""
    recognizer = _command_recognizer(args, text, command_set)
    if recognizer.bundle.vad_path is None:
        raise EdgeError(
            f"{recognizer.bundle.path}: the bundle has no voice activity detector (vad.onnx)",
            "pip install --no-deps silero-vad, then export the bundle again with --force",
        )
    return recognizer


def _assistant_voice(args):
    """The voice that speaks replies, or None with --no-speak or over a recording (faster than speech)."""
    if args.no_speak or args.audio:
        return None
    from edge.assistant import Voice
    from edge.speech.speak import Speaker

    return Voice(Speaker(), device=args.device)


def _assistant_blocks(args, wake):
    """The assistant's audio: --audio WAV, else the microphone (saying what to say)."""
    from edge.assistant import file_blocks, microphone_blocks

    if args.audio:
        return file_blocks(args.audio[0])
    print(f"edge-run: say {wake.spec.phrase!r}, then your request; Ctrl-C stops.", file=sys.stderr)
    return microphone_blocks(args.device, args.duration)


def _open(path, task: str, flag: str):
    bundle = open_bundle(Path(path))
    if bundle.manifest.task != task:
        raise EdgeError(
            f"{bundle.path} is a {bundle.manifest.task} bundle, not {task}", f"pass a {task} bundle to {flag}"
        )
    return bundle


def _task(args) -> str:
    return SPEECH_RECOGNITION if args.audio or args.listen else TEXT_GENERATION


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        if args.serve:
            return run_serve(args)
        if args.list_devices:
            from edge.speech.microphone import list_devices

            print(list_devices())
            return 0
        if args.assistant:
            return run_assistant(args)
        if args.commands:
            return run_commands(args)
        bundle = open_bundle(Path(args.model) if args.model else _default_model_path(_task(args)))
        task = bundle.manifest.task
        if bundle.manifest.commands and not (args.chat or args.raw):
            return run_commands(args)  # a specialised bundle answers with its own command set
        if task != _task(args) and (args.audio or args.listen or task == SPEECH_RECOGNITION):
            wanted = "--audio FILE or --listen" if task == SPEECH_RECOGNITION else "--prompt TEXT or --chat"
            raise EdgeError(f"{bundle.path} is a {task} bundle", f"use it with {wanted}, or pass another --model")
        if task == SPEECH_RECOGNITION:
            return run_speech(_recognizer(bundle, args), args)
        from edge.text.model import TextModel

        model = TextModel(bundle, threads=args.threads, max_context=args.max_context, provider=args.provider)
        if model.manifest.precision == "fp16" and model.decoder.device == "cpu":
            print(
                "edge-run: note: an fp16 bundle is made for a GPU (--provider cuda); on a CPU use an int4 one "
                "(edge-export ... --precision int4), made for CPUs",
                file=sys.stderr,
            )
        if args.debug:
            print(
                f"edge-run: loaded {model.bundle.path} in {model.load_s:.2f} s "
                f"({time.perf_counter() - start:.2f} s since start)",
                file=sys.stderr,
            )
        return run_chat(model, args) if args.chat else run_prompt(model, args)
    except EdgeError as e:
        if args.debug:
            raise
        print(f"edge-run: error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        if args.debug:
            raise
        print(f"edge-run: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (edge-run ... | head): a normal way to stop. Handled here rather than by
        # SIGPIPE's default action, which would also end a server or a test process calling main();
        # stdout goes to /dev/null so the interpreter's last flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
