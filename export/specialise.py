"""Specialise a text model for one command set: generate requests, fine-tune, export a command bundle.

The steps, each reproducible from the recipe's seed:

1. :mod:`export.utterances` makes requests from the command set alone; a share is held out.
2. :func:`fine_tune` trains the top decoder layers (the rest stay frozen, so backward passes stop
   there) on ``prompt -> command JSON``, with the loss on the answer tokens only.
3. The tuned model goes through the ordinary export: fp32 graph checked against it, quantized,
   verified. The bundle carries the command set (``commands.json``) and the recipe, and the
   runtime prompts it exactly as it was trained (:func:`edge.commands.command_model.specialised_system`).
4. The written bundle maps the held-out requests with edge's own runtime; the accuracy goes in
   the manifest.

A finished fine-tune is kept in the user cache (``specialised/<key>``, keyed by the base, the recipe
and the training data itself), so an export that fails or is interrupted after training resumes without retraining,
and the same model can be exported at another precision in minutes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edge.bundle import COMMANDS_FILE, ChatTemplate, CommandsInfo
from edge.cache import cache_dir
from edge.commands.command_model import answer, request_text, specialised_system
from edge.commands.command_set import CommandSet
from edge.files import atomic_write_bytes, atomic_write_json, sha256_file
from edge.text.tokenizer import Tokenizer

from .progress import Progress
from .utterances import Example, generate, split


@dataclass
class Recipe:
    """How a specialised model is trained; recorded in its manifest."""

    seed: int = 0
    per_command: int = 300  # generated requests per command, before the validation split
    validation: float = 0.1
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_steps: int = 10
    train_layers: int = 10  # the top N decoder layers learn; 0 = every weight
    # with a speech model: training requests per command also spoken by varied voices and trained on as
    # that model transcribes them (export/spoken.py), beside the clean text
    heard_per_command: int = 0
    # compute in bfloat16 (weights and optimizer stay float32) where the CPU has bf16 instructions
    bf16: bool = True

    def first_trained_layer(self, num_layers: int) -> int:
        """The lowest decoder layer the fine-tune changes (0 when it trains every weight)."""
        if self.train_layers <= 0 or self.train_layers >= num_layers:
            return 0
        return num_layers - self.train_layers


@dataclass
class Sequence:
    """One training example as token ids: the prompt, then the answer the loss is taken on."""

    ids: list[int]
    n_prompt: int


def to_sequences(
    examples: list[Example], commands: CommandSet, tokenizer: Tokenizer, template: ChatTemplate
) -> list[Sequence]:
    """Tokenize examples the way the runtime will see them: prompt and answer tokenized apart."""
    system = specialised_system(commands)
    end = template.suffix["assistant"]
    out = []
    for ex in examples:
        # the runtime's own normaliser: the model learns the text it will be given
        messages = [{"role": "system", "content": system}, {"role": "user", "content": request_text(ex.text)}]
        prompt = tokenizer.encode(template.render(messages))
        out.append(Sequence(prompt + tokenizer.encode(answer(ex.command) + end.rstrip()), len(prompt)))
    return out


def _batches(seqs: list[Sequence], size: int, rng: random.Random) -> list[list[Sequence]]:
    """Shuffled batches of similar length, so little compute goes on padding."""
    order = seqs[:]
    rng.shuffle(order)
    batches = []
    for i in range(0, len(order), size * 8):
        chunk = sorted(order[i : i + size * 8], key=lambda s: len(s.ids))
        batches += [chunk[j : j + size] for j in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def _tensors(batch: list[Sequence], pad_id: int, device: Any):
    import torch

    width = max(len(s.ids) for s in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, s in enumerate(batch):
        ids[row, : len(s.ids)] = torch.tensor(s.ids)
        mask[row, : len(s.ids)] = 1
        # position t predicts token t+1: answer tokens are predicted from n_prompt-1 on
        labels[row, s.n_prompt - 1 : len(s.ids) - 1] = torch.tensor(s.ids[s.n_prompt :])
    return ids.to(device), mask.to(device), labels.to(device)


def _answer_logits(model, ids, mask, labels):
    """Logits at the answer positions only: the 49k-wide output layer runs on a few tokens per example."""
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    where = labels != -100
    return model.lm_head(hidden[where]), labels[where], where


def trainable(model, recipe: Recipe) -> list:
    """Freeze all but the decoder layers the recipe trains and the final norm (or train everything)."""
    layers = model.model.layers
    first = recipe.first_trained_layer(len(layers))
    if first == 0:
        return [p for p in model.parameters() if p.requires_grad]
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for module in [*layers[first:], model.model.norm]:
        for p in module.parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


def evaluate(model, seqs: list[Sequence], pad_id: int, device: Any, batch_size: int = 32) -> dict[str, float]:
    """Teacher-forced loss and exact match (every answer token the top choice) on ``seqs``."""
    import torch

    model.eval()
    loss_sum, tokens, exact = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(seqs), batch_size):
            ids, mask, labels = _tensors(seqs[i : i + batch_size], pad_id, device)
            logits, target, where = _answer_logits(model, ids, mask, labels)
            loss_sum += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
            tokens += target.numel()
            right = torch.zeros_like(labels, dtype=torch.bool)
            right[where] = logits.argmax(-1) == target
            exact += int((right | ~where).all(dim=1).sum())
    return {"loss": loss_sum / max(tokens, 1), "exact": exact / max(len(seqs), 1)}


def bf16_is_fast(device: str) -> bool:
    """Whether bfloat16 matmuls run natively here: a GPU that has them, or a CPU with AVX512-BF16, AMX or
    Arm's BF16 extension. Elsewhere they are emulated, slower than float32."""
    import torch

    if device != "cpu":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags))


def fine_tune(
    model, train: list[Sequence], val: list[Sequence], recipe: Recipe, pad_id: int, stages: Progress
) -> dict[str, Any]:
    """Train ``model`` in place; return what it measured (steps, seconds, losses, held-out exact match)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    model.to(device)
    model.config.use_cache = False
    params = trainable(model, recipe)
    n_trained = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(train) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs

    def rate(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        return max(0.0, (total - step) / max(total - recipe.warmup_steps, 1))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    fast_bf16 = recipe.bf16 and bf16_is_fast(device)
    say = stages.say
    say(
        f"      training {n_trained / 1e6:.1f}M of {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M weights "
        f"on {device}: {len(train)} requests x {recipe.epochs} epochs = {total} steps"
    )
    before = evaluate(model, val, pad_id, device)
    say(f"      held-out requests before training: exact match {before['exact']:.1%}, loss {before['loss']:.4f}")
    start = time.perf_counter()
    ticker = stages.ticker(total, "steps")
    recent: deque[float] = deque(maxlen=10)  # the loss shown is the mean of the last 10 steps
    for epoch in range(recipe.epochs):
        model.train()
        for batch in _batches(train, recipe.batch_size, rng):
            ids, mask, labels = _tensors(batch, pad_id, device)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=fast_bf16):
                logits, target, _ = _answer_logits(model, ids, mask, labels)
            loss = torch.nn.functional.cross_entropy(logits.float(), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            recent.append(loss.item())
            ticker.step(f"(epoch {epoch + 1}) loss {sum(recent) / len(recent):.4f}")
    ticker.close()
    seconds = time.perf_counter() - start
    held_out = evaluate(model, val, pad_id, device)
    say(f"      held-out requests: exact match {held_out['exact']:.1%} (teacher-forced), loss {held_out['loss']:.4f}")
    model.to("cpu")
    model.eval()
    return {
        "device": device,
        "steps": total,
        "train_seconds": round(seconds, 1),
        "trained_parameters": n_trained,
        "train_requests": len(train),
        "validation_requests": len(val),
        "validation_teacher_forced_exact": round(held_out["exact"], 4),
        "validation_loss": round(held_out["loss"], 5),
        "validation_teacher_forced_exact_before": round(before["exact"], 4),
        "validation_loss_before": round(before["loss"], 5),
    }


WEIGHTS = "trained.pt"
RECORD = "training.json"
KEEP_VERSION = 1  # bump when the training loop changes what the same data and recipe produce


def keep(model, measured: dict[str, Any], folder: Path) -> None:
    """Save the trained weights and their record, each written whole (temp file + rename)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({name: p.detach() for name, p in model.named_parameters() if p.requires_grad}, buffer)
    atomic_write_bytes(folder / WEIGHTS, buffer.getvalue())
    atomic_write_json(folder / RECORD, measured)  # written last: its presence means the weights are whole


def restore(model, folder: Path) -> dict[str, Any]:
    """Load kept weights into ``model``; return the record of the run that trained them."""
    import torch

    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    missing = set(state) - {name for name, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{folder / WEIGHTS}: weights the base model does not have: {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)
    model.eval()
    return json.loads((folder / RECORD).read_text()) | {"reused_from": str(folder)}


# The accuracy gate on held-out generated requests, as the runtime maps them. Generated requests are
# easier than people's (the model learned their phrasings), so a bundle below this misreads many more
# real requests: the set's descriptions or argument types are likely too thin or ambiguous to learn from.
MIN_ACCURACY = 0.9
# training requests per command spoken and transcribed when a speech model is given: a fifth of the
# default 300, about 2 minutes for 9 commands on 2 cores (espeak-ng and whisper-tiny.en int8)
HEARD_PER_COMMAND = 60


class Specialisation:
    """The fine-tuning step an export runs between loading the base model and building its graph."""

    def __init__(
        self,
        commands_path: str | Path,
        recipe: Recipe | None = None,
        min_accuracy: float = MIN_ACCURACY,
        strict: bool = False,
        speech_model: str | Path | None = None,
    ):
        self.commands_path = Path(commands_path)
        self.commands = CommandSet.from_file(self.commands_path)
        self.recipe = recipe or Recipe()
        # the speech bundle whose transcripts the model also learns from (None: clean text only)
        self.speech_model = Path(speech_model).resolve() if speech_model else None
        if self.speech_model and not self.recipe.heard_per_command:
            self.recipe = replace(self.recipe, heard_per_command=HEARD_PER_COMMAND)
        if self.recipe.heard_per_command and not self.speech_model:
            from .pipeline import ExportError

            raise ExportError("--heard-per-command needs a speech model", "add --speech-model DIR (a speech bundle)")
        self.min_accuracy = min_accuracy
        self.strict = strict  # fail below min_accuracy, leaving nothing at --out, instead of warning
        self.validation: list[Example] = []

    def tune(
        self, loaded, tokenizer: Tokenizer, template: ChatTemplate | None, work: Path, stages: Progress
    ) -> CommandsInfo:
        """Generate requests, fine-tune ``loaded.model`` in place, put the command set into ``work``."""
        from .pipeline import ExportError

        if template is None:
            raise ExportError(
                f"{loaded.source.path}: specialising needs a chat model (it has no chat template)",
                "use an instruction-tuned base such as smollm2-135m",
            )
        r, stage, say = self.recipe, stages.stage, stages.say
        with stage(f"generate training requests from {self.commands_path.name}"):
            examples = generate(self.commands, r.per_command, r.seed)
            train, self.validation = split(examples, r.validation)
            heard_info = {}
            if self.speech_model:
                heard_examples, heard_info = self.hear(train, stages)
                train = train + heard_examples
            train_seqs = to_sequences(train, self.commands, tokenizer, template)
            val_seqs = to_sequences(self.validation, self.commands, tokenizer, template)
            n_tokens = sum(len(s.ids) for s in train_seqs)
            say(f"      {len(train)} training and {len(self.validation)} held-out requests, {n_tokens} tokens")
        pad = loaded.pad_id if loaded.pad_id is not None else 0
        kept = self.kept_dir(loaded, train_seqs)
        with stage(f"fine-tune ({r.epochs} epochs, top {r.train_layers or 'all'} layers)"):
            if (kept / WEIGHTS).is_file() and (kept / RECORD).is_file():
                say(f"      reusing the fine-tuned weights of an earlier run with this recipe ({kept})")
                measured = restore(loaded.model, kept)
            else:
                measured = fine_tune(loaded.model, train_seqs, val_seqs, r, pad, stages)
                keep(loaded.model, measured, kept)
        # the set as it is now, checked against the one trained on: an edit during training would
        # leave the bundle prompting as specialised for a set it never saw
        atomic_write_bytes(work / COMMANDS_FILE, self.commands_path.read_bytes())
        if sha256_file(work / COMMANDS_FILE) != self.commands.sha256:
            raise ExportError(
                f"{self.commands_path} changed while the model was being specialised",
                "run edge-export specialise again once the command set is final",
            )
        return CommandsInfo(
            name=self.commands.name,
            sha256=self.commands.sha256 or "",
            training={"recipe": asdict(self.recipe), "base": loaded.source.alias or loaded.source.path}
            | heard_info
            | measured,
        )

    def hear(self, train: list[Example], stages: Progress) -> tuple[list[Example], dict[str, Any]]:
        """Training requests spoken by varied voices and transcribed by the speech model, and its record."""
        from edge.bundle import MANIFEST
        from edge.speech.transcribe import load

        from .pipeline import ExportError
        from .spoken import heard, missing_tools

        if why := missing_tools():
            raise ExportError(f"cannot speak training requests: {why}", "or specialise without --speech-model")
        recognizer = load(self.speech_model)
        per_command = Counter(ex.command["command"] for ex in train).values()
        n = sum(min(self.recipe.heard_per_command, k) for k in per_command)
        ticker = stages.ticker(n, "requests spoken and transcribed")
        out = heard(train, recognizer, self.recipe.heard_per_command, self.recipe.seed, lambda: ticker.step())
        ticker.close()
        source = recognizer.manifest.source
        stages.say(f"      {len(out)} transcripts by {self.speech_model.name} to train on beside the clean text")
        return out, {
            "heard_requests": len(out),
            "speech_model": {
                "path": str(self.speech_model),
                "source": source.alias or Path(source.path).name,
                "precision": recognizer.manifest.precision,
                "manifest_sha256": sha256_file(self.speech_model / MANIFEST),
            },
        }

    def kept_dir(self, loaded, train: list[Sequence]) -> Path:
        """Where this fine-tune is kept between runs: keyed by the base, the recipe and the training data itself."""
        key = hashlib.sha256()
        key.update(json.dumps([loaded.source.sha256 or loaded.source.path, asdict(self.recipe), KEEP_VERSION]).encode())
        for s in train:
            key.update(json.dumps([s.ids, s.n_prompt]).encode())
        return cache_dir() / "specialised" / key.hexdigest()[:16]

    def check(self, bundle_dir: Path, stages: Progress) -> dict[str, Any]:
        """Map the held-out requests with edge's runtime on the written bundle; return the accuracy."""
        from edge.bundle import open_bundle
        from edge.commands.command_model import CommandModel
        from edge.text.model import TextModel

        bundle = open_bundle(bundle_dir)
        parser = CommandModel(TextModel(bundle), CommandSet.from_file(bundle.commands_path))
        held_out = stages.ticker(len(self.validation), "requests").over(self.validation)
        right = sum(parser.parse(ex.text).command == ex.command for ex in held_out)
        accuracy = right / max(len(self.validation), 1)
        stages.say(f"      held-out requests through the bundle: {right}/{len(self.validation)} exact ({accuracy:.1%})")
        passed = accuracy >= self.min_accuracy
        if not passed:
            self._missed(accuracy, stages)
        return {"validation_accuracy": round(accuracy, 4), "min_accuracy": self.min_accuracy, "passed": passed}

    def _missed(self, accuracy: float, stages: Progress) -> None:
        """Below the accuracy gate: fail with --strict (nothing is written), else warn loudly."""
        from .pipeline import QualityGateError

        msg = (
            f"the specialised bundle maps only {accuracy:.1%} of its held-out requests right "
            f"(gate: {self.min_accuracy:.0%}); people's own wording will fare worse"
        )
        hint = (
            "describe each command and argument more fully in the command set (what it does, units, what values "
            "mean), rename near-identical commands, or train longer (--per-command, --epochs)"
        )
        if self.strict:
            raise QualityGateError(msg, hint)
        stages.say(f"WARNING: {msg}. The bundle is written anyway (use --strict to refuse). Hint: {hint}.")
