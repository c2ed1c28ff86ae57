"""Recognition that knows the command set: Whisper prompted with a set's words, for gain and for harm.

``python -m benchmarks.asr_prompt`` transcribes every command set's spoken dev requests (the clips of
``python -m benchmarks commands --audio``: Piper and espeak-ng, cached in ``benchmarks/.audio``) with the
whisper-tiny.en int8 bundle four ways: no prompt, and prompted with each set's words
(:func:`edge.commands.command_model.speech_prompt`). A set's own words measure the gain; another set's words
measure the harm on speech the prompt was not written for. WER after Whisper's English normalizer,
corpus-wide per (set, voice, prompt); decoding is greedy, so one run. Writes results/asr-prompt.{json,md}.
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks.asr import ensure_bundle, normalizer, synthesize
from benchmarks.commands import RESULTS, VOICES, command_sets, load_dataset, results_name

RESULTS_NAME_PROMPT = "asr-prompt"


def edits(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(references: list[str], hypotheses: list[str]) -> float:
    norm = normalizer()
    refs, hyps = [norm(t).split() for t in references], [norm(t).split() for t in hypotheses]
    return sum(edits(r, h) for r, h in zip(refs, hyps, strict=True)) / max(sum(len(r) for r in refs), 1)


def main() -> None:
    import edge
    from benchmarks.asr import _missing_tools
    from edge.commands.command_model import speech_prompt
    from edge.commands.command_set import CommandSet
    from edge.speech.audio import load_audio

    recognizer = edge.load(str(ensure_bundle("int8")), threads=1)
    sets = {name: CommandSet.from_file(path) for name, (path, _) in command_sets().items()}
    prompts = {name: speech_prompt(cs) for name, cs in sets.items()}
    rows = []
    for name, (_, dev) in command_sets().items():
        cs = sets[name]
        texts = [d["text"] for d in load_dataset(dev)]
        for voice in VOICES:
            if why := _missing_tools(voice):
                print(f"voice not run: {voice}: {why}", file=sys.stderr)
                continue
            paths = synthesize(voice, texts, None if results_name(cs) == "commands" else cs.name)
            clips = [load_audio(p) for p in paths]
            for prompted in [None, *prompts]:
                recognizer.prompt = prompts[prompted] if prompted else None
                start = time.perf_counter()
                hyps = [recognizer.transcribe(c).text for c in clips]
                seconds = time.perf_counter() - start
                row = {
                    "set": name,
                    "voice": voice,
                    "prompt": "none" if prompted is None else ("own" if prompted == name else f"other: {prompted}"),
                    "wer": round(wer(texts, hyps), 4),
                    "ms_per_clip": round(1000 * seconds / len(clips), 1),
                    "n": len(clips),
                    "hypotheses": hyps,
                }
                rows.append(row)
                print(f"{name} {voice} prompt {row['prompt']}: WER {row['wer']:.1%}", file=sys.stderr, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{RESULTS_NAME_PROMPT}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / f"{RESULTS_NAME_PROMPT}.md").write_text(markdown(rows))
    print(markdown(rows))


def markdown(rows: list[dict]) -> str:
    lines = [
        "whisper-tiny.en int8 (fit), 1 thread, greedy: WER on each set's spoken dev requests, unprompted and "
        "prompted with a set's words (own: gain; other: harm on speech it was not written for)",
        "",
        "| set | voice | prompt | WER | ms per clip |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['set']} | {r['voice']} | {r['prompt']} | {r['wer']:.1%} | {r['ms_per_clip']:.0f} |" for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
