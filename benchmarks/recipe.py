"""Choosing a specialise recipe or generator change on a tune set: fine-tune in torch, score hand-written requests.

``python -m benchmarks.recipe [--set FILE --tune FILE] [--base ALIAS] [--epochs N] [--per-command N] [--layers N]
[--lr X] [--fp32]`` trains the base model on the set's generated requests exactly as ``edge-export specialise`` does
(:func:`export.specialise.fine_tune`), then scores each hand-written tune request teacher-forced: right when
every token of its expected command is the model's top choice (stricter than the runtime's constrained
decoding). Defaults: the aquarium set and its 42 tune requests, kept for this so the reported dev sets are
never tuned on. Appends one JSON line to benchmarks/results/recipe.jsonl and prints the misses.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, SOURCE

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.recipe", description=__doc__.splitlines()[0])
    p.add_argument("--set", default=str(HERE / "commands" / "aquarium.json"))
    p.add_argument("--tune", default=str(HERE / "commands" / "aquarium.tune.jsonl"))
    p.add_argument("--base", default=SOURCE, help=f"the base model, an edge-export source (default {SOURCE})")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--per-command", type=int, default=300)
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--fp32", action="store_true", help="compute in float32 even where bfloat16 is fast")
    a = p.parse_args()

    import torch

    from edge.commands.command_set import CommandSet
    from edge.files import sha256_file
    from edge.text.tokenizer import Tokenizer
    from export import chat_template, sources, utterances
    from export.progress import Progress
    from export.specialise import Recipe, _answer_logits, _tensors, fine_tune, to_sequences
    from export.utterances import Example, generate, split

    loaded = sources.load(sources.resolve(a.base))
    work = Path(tempfile.mkdtemp())
    loaded.tokenizer.backend_tokenizer.save(str(work / "tokenizer.json"))
    tokenizer, template = Tokenizer(work / "tokenizer.json"), chat_template.convert(loaded.tokenizer)
    cs = CommandSet.from_file(a.set)
    recipe = Recipe(
        epochs=a.epochs, per_command=a.per_command, train_layers=a.layers, learning_rate=a.lr, bf16=not a.fp32
    )
    train, val = split(generate(cs, recipe.per_command, recipe.seed), recipe.validation)
    lines = [json.loads(line) for line in Path(a.tune).read_text().splitlines() if line.strip()]
    tune = [Example(d["text"], d["expected"]) for d in lines]
    start = time.perf_counter()
    measured = fine_tune(loaded.model, *(to_sequences(x, cs, tokenizer, template) for x in (train, val)), recipe,
                         loaded.pad_id or 0, Progress(every=60))  # fmt: skip
    misses = []
    with torch.no_grad():
        for ex, seq in zip(tune, to_sequences(tune, cs, tokenizer, template), strict=True):
            logits, target, _ = _answer_logits(loaded.model, *_tensors([seq], loaded.pad_id or 0, "cpu"))
            if not bool((logits.argmax(-1) == target).all()):
                misses.append(f"{ex.text}  ->  {_greedy_answer(loaded, seq, tokenizer)}")
    row = {
        "set": Path(a.set).name, "tune": Path(a.tune).name, "recipe": vars(a),
        "generator_sha256": sha256_file(Path(utterances.__file__))[:12],  # which generator made the requests
        "seconds": round(time.perf_counter() - start),
        "generated_held_out": measured["validation_teacher_forced_exact"],
        "tune_exact": round(1 - len(misses) / len(tune), 4), "n": len(tune), "misses": misses,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "recipe.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "misses"}))
    print("\n".join(f"  miss: {t}" for t in misses))


def _greedy_answer(loaded, seq, tokenizer, limit: int = 40) -> str:
    """What the fine-tuned model answers unconstrained (greedy), to see what a miss was taken for."""
    import torch

    ids = list(seq.ids[: seq.n_prompt])
    out: list[int] = []
    with torch.no_grad():
        for _ in range(limit):
            token = int(loaded.model(torch.tensor([ids + out])).logits[0, -1].argmax())
            if token in loaded.stop_ids:
                break
            out.append(token)
    return tokenizer.decode(out).strip()


if __name__ == "__main__":
    main()
