"""``edge-run``: the command line over :mod:`edge`'s Python API. It parses and prints, nothing more."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from .cache import DEFAULT_PRECISION, DEFAULT_SOURCE, build_command, default_bundle_dir
from .errors import EdgeError
from .system import peak_rss_mb

EPILOG = f"""\
examples:
  edge-run --prompt "What is the capital of France?"        # default model ({DEFAULT_SOURCE})
  edge-run --model bundles/smollm2 --prompt "Write a haiku about rain" --temperature 0.8 --seed 1
  edge-run --model bundles/smollm2/model.onnx --chat
  echo "Once upon a time" | edge-run --model bundles/smollm2 --raw --max-new-tokens 40
  edge-run --model bundles/smollm2 --prompt "Hi" --json       # one JSON object with timings

Without --model, edge uses the default bundle in {default_bundle_dir()} and builds it
first when it is missing and the export extra is installed (pip install 'edge[export]').
In --chat, Ctrl-C stops the current reply; Ctrl-D or /exit quits. When the conversation
outgrows the context, the oldest turns are dropped (the system prompt is kept).
"""


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
    mode.add_argument("--prompt", "-p", metavar="TEXT", help="text to answer (default: read stdin)")
    mode.add_argument("--chat", action="store_true", help="interactive chat with history")
    p.add_argument("--system", metavar="TEXT", help="system prompt for chat models")
    p.add_argument("--raw", action="store_true", help="continue the text as is, without the chat template")
    s = p.add_argument_group("sampling")
    s.add_argument("--temperature", "-t", type=float, metavar="T", default=0.7, help="0 = greedy (default: 0.7)")
    s.add_argument(
        "--top-k", type=int, metavar="K", default=40, help="keep the k likeliest tokens, 0 = off (default: 40)"
    )
    s.add_argument("--top-p", type=float, metavar="P", default=0.9, help="nucleus sampling mass (default: 0.9)")
    s.add_argument(
        "--repetition-penalty",
        metavar="R",
        type=float,
        default=1.0,
        help="penalise tokens already seen, e.g. 1.1; 1 = off (default: 1)",
    )
    s.add_argument("--seed", type=int, metavar="N", help="fix the random seed: same seed, same output")
    s.add_argument("--max-new-tokens", "-n", type=int, metavar="N", default=256, help="reply length cap (default: 256)")
    s.add_argument("--stop", action="append", metavar="TEXT", help="stop when this text appears (repeatable)")
    r = p.add_argument_group("runtime")
    r.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: onnxruntime's choice)")
    r.add_argument(
        "--max-context", type=int, metavar="N", help="context window in tokens (default: 2048, capped by the model)"
    )
    r.add_argument("--json", action="store_true", help="print one JSON object with the text and timings")
    r.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def _default_model_path() -> Path:
    path = default_bundle_dir()
    if (path / "edge.json").is_file():
        return path
    try:
        from export.pipeline import export_bundle  # heavy-ok: only when building the default bundle
    except ImportError:
        raise EdgeError(
            f"no --model given and the default bundle is not built yet ({path})",
            f"build it with: pip install 'edge[export]' && {build_command()}",
        ) from None
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    # two first runs at once: one builds, the other waits and then uses the result
    with open(path.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "edge.json").is_file():
            print(
                f"edge-run: building the default bundle ({DEFAULT_SOURCE}, {DEFAULT_PRECISION}) in {path}",
                file=sys.stderr,
            )
            export_bundle(DEFAULT_SOURCE, path, DEFAULT_PRECISION)
    return path


def _sampling(args):
    from .sampling import SamplingOptions

    opts = SamplingOptions(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed)
    try:
        opts.validate()
    except ValueError as e:
        raise EdgeError(str(e), "see `edge-run --help` for the valid ranges") from None
    return opts


def _read_stdin() -> str:
    data = sys.stdin.buffer.read()
    return data.decode("utf-8", errors="replace")


def run_prompt(model, args) -> int:
    from .generate import GenerationStats

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
    while True:
        try:
            line = input("> ")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    # a closed pipe (edge-run ... | head) is a normal way to stop reading
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        from .model import load

        path = Path(args.model) if args.model else _default_model_path()
        model = load(path, threads=args.threads, max_context=args.max_context)
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


if __name__ == "__main__":
    sys.exit(main())
