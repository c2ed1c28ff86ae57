"""The export pipeline: load -> build graph -> check fp32 -> quantize -> verify -> write bundle.

The bundle is assembled in a hidden folder beside ``out`` and renamed into place only when
every stage has passed, so a failure or Ctrl-C never leaves a half-written bundle.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edge import __version__
from edge.bundle import (
    MODEL_FILE,
    PRECISIONS,
    REPORT_FILE,
    SPEECH_RECOGNITION,
    TEXT_GENERATION,
    TOKENIZER_FILE,
    KVCacheLayout,
    Manifest,
    Source,
    Tokens,
    file_entries,
    write_manifest,
)
from edge.cache import DEFAULT_PRECISIONS, DEFAULTS, default_bundle_dir, record_default
from edge.files import atomic_write_json
from edge.text.tokenizer import Tokenizer

from . import chat_template, optimum_graph, sources, speech, verify
from .errors import ExportError, QualityGateError
from .families import FAMILIES
from .graph import DecoderSpec, save_model
from .progress import Progress, Say, stderr_line
from .quantize import quantize

if TYPE_CHECKING:
    from .specialise import Specialisation

# The quality gate's sample: at 230 tokens one token moved agreement by 0.43 points, and the same
# exact Q4_1 weights scored 94.8% or 95.7% depending on the kernel's summation order.
MAX_EVAL_TOKENS = 1024
# how much slower optimum's graph decodes than the fused one on SmolLM2-135M, 1 thread, fp32 and
# int8-weight (`python -m benchmarks decode-optimum`; README "Other architectures")
OPTIMUM_SLOWDOWN = "1.3-1.5x"
STAGES = 6


@dataclass
class ExportResult:
    path: Path
    report: verify.QualityReport | speech.SpeechQualityReport
    seconds: float
    task: str = TEXT_GENERATION


def decoder_spec(family: str, config, context_length: int | None) -> DecoderSpec:
    """The family's shape facts for ``config``, with the context capped at ``context_length`` if given."""
    spec = FAMILIES[family].spec(config)
    if context_length:
        spec.context_length = min(spec.context_length, context_length)
    return spec


def _check_destination(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ExportError(f"{out} already exists", "pass --force to replace it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder", "choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)


def _check_disk(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ExportError(
            f"{folder}: {free / 1e9:.1f} GB free, the export needs about {needed / 1e9:.1f} GB",
            "free some disk space or write the bundle elsewhere with --out",
        )


def _eval_ids(tokenizer: Tokenizer, context_length: int, tokens: Tokens) -> list[int]:
    """The gate's text as the runtime would feed it: with the BOS in front when the model wants one."""
    ids = tokenizer.encode(verify.eval_text())
    while len(ids) <= verify.MIN_EVAL_TOKENS:  # tiny test vocabularies still get 128 positions
        ids = ids + ids
    return tokens.with_bos(ids)[: min(MAX_EVAL_TOKENS + 1, context_length)]


def _stop_ids(tokenizer: Tokenizer, template, stop_ids: list[int]) -> list[int]:
    """The model's eos ids plus the token that ends an assistant turn in its chat template."""
    ids = list(stop_ids)
    if template is not None:
        # e.g. "<|im_end|>\n": a whole token once stripped, so generation can stop on it
        turn_end = tokenizer.token_to_id(template.suffix["assistant"].strip())
        if turn_end is not None and turn_end not in ids:
            ids.append(turn_end)
    return ids


def _tuned_from(specialisation: Specialisation | None, spec: DecoderSpec) -> int | None:
    """The first decoder layer a fine-tune changed, so int4 keeps it and those above at 8 bits."""
    if specialisation is None:
        return None
    return specialisation.recipe.first_trained_layer(spec.num_layers)


def _publish(work: Path, out: Path) -> None:
    """Move the finished bundle into place; an old bundle at ``out`` goes only once the new one is there."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
    try:
        os.rename(work, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_bundle(
    source: str,
    out: str | os.PathLike,
    precision: str | None = None,
    *,
    force: bool = False,
    strict: bool = False,
    thresholds: verify.Thresholds | None = None,
    context_length: int | None = None,
    progress: Say = stderr_line,
    specialisation: Specialisation | None = None,
    via_optimum: bool = False,
) -> ExportResult:
    """Export ``source`` (alias, .gguf file, Hugging Face or CTranslate2 folder) to a verified bundle at ``out``.

    ``precision`` defaults to the task's default: fp32 for language models, int8 for speech.
    With ``specialisation`` the text model is first fine-tuned for a command set (:mod:`export.specialise`).
    ``via_optimum`` builds the graph with optimum-onnx even where edge has a fused builder (benchmarks).
    """
    thresholds = thresholds or verify.Thresholds()
    out = Path(out).expanduser().resolve()
    src = sources.resolve(source)
    task = sources.task(src)
    precision = precision or DEFAULT_PRECISIONS[task]
    if specialisation is not None and task != TEXT_GENERATION:
        raise ExportError(f"{source} is a {task} model", "specialise a text model such as smollm2-135m")
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}", f"choose one of: {', '.join(PRECISIONS)}")
    _check_destination(out, force)
    started = time.perf_counter()
    stages = Progress(progress, STAGES + (3 if specialisation else 0))
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        with sources.quiet_transformers():
            if task == SPEECH_RECOGNITION:
                manifest, report = speech.build(src, work, precision, stages, thresholds.min_agreement)
            else:
                manifest, report = _build_text(
                    src, work, precision, stages, thresholds, context_length, specialisation, via_optimum
                )
        if not report.passed:
            msg = f"{precision} misses the quality gate ({report.gate()})"
            if strict:
                raise QualityGateError(msg, "choose a higher precision, or relax the gate thresholds")
            progress(f"WARNING: {msg}. The bundle is written anyway (use --strict to refuse).")
        with stages.stage(f"write bundle to {out}"):
            atomic_write_json(work / REPORT_FILE, report.to_dict())
            manifest.files = file_entries(work, sorted(p.name for p in work.iterdir() if p.is_file()))
            write_manifest(work, manifest)
        if specialisation is not None and manifest.commands is not None:
            with stages.stage(f"map {len(specialisation.validation)} held-out requests with the bundle"):
                manifest.commands.training |= specialisation.check(work, stages)
                write_manifest(work, manifest)
        _publish(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    default_build = (src.alias, precision) == DEFAULTS[task] and not (specialisation or context_length)
    if default_build and out != default_bundle_dir(task).resolve():
        # edge-run without --model would otherwise build this same bundle again in the cache
        record_default(task, out)
        progress(f"edge-run will use this bundle as its default {task} model (recorded in the edge cache)")
    return ExportResult(out, report, time.perf_counter() - started, task)


def _build_text(
    src: Source,
    work: Path,
    precision: str,
    stages: Progress,
    thresholds: verify.Thresholds,
    context_length: int | None,
    specialisation: Specialisation | None = None,
    via_optimum: bool = False,
) -> tuple[Manifest, verify.QualityReport]:
    """Write a text-generation bundle's files into ``work``; return its manifest (files unset) and report."""
    with stages.stage(f"load {src.alias or src.path}"):
        loaded = sources.load(src, via_optimum=via_optimum)
        if loaded.via_optimum:
            spec = optimum_graph.spec(loaded.model.config)
            if context_length:
                spec.context_length = min(spec.context_length, context_length)
            why = "as asked" if loaded.family in FAMILIES else f"edge has no fused graph for {loaded.family!r}"
            stages.say(
                f"NOTE: {why}: exporting through optimum-onnx. Its graph decodes about {OPTIMUM_SLOWDOWN} "
                "slower than edge's fused one at 1 thread, and starts slower (README: Other architectures)"
            )
        else:
            spec = decoder_spec(loaded.family, loaded.model.config, context_length)
        n_params = sum(p.numel() for p in loaded.model.parameters())
        _check_disk(work.parent, n_params * 4 * 3)
        try:
            template = chat_template.convert(loaded.tokenizer)
        except chat_template.ChatTemplateError as e:
            stages.say(f"WARNING: {e}; the bundle gets no chat template, so prompts run as raw text")
            template = None
        loaded.tokenizer.backend_tokenizer.save(str(work / TOKENIZER_FILE))
    tokenizer = Tokenizer(work / TOKENIZER_FILE)
    commands = None
    if specialisation is not None:
        commands = specialisation.tune(loaded, tokenizer, template, work, stages)
    stop_ids = _stop_ids(tokenizer, template, loaded.stop_ids)
    tokens = Tokens(stop_ids=stop_ids, bos_id=loaded.bos_id, pad_id=loaded.pad_id, add_bos=loaded.add_bos)
    ids = _eval_ids(tokenizer, spec.context_length, tokens)
    layout = KVCacheLayout(spec.num_layers, spec.num_kv_heads, spec.head_dim)

    fp32_dir = work / "fp32"
    fp32_dir.mkdir()
    fp32_path = fp32_dir / MODEL_FILE
    builder = "optimum-onnx" if loaded.via_optimum else "edge's fused builder"
    with stages.stage(
        f"build fp32 ONNX graph with {builder} ({n_params / 1e6:.0f}M parameters, {spec.num_layers} layers)"
    ):
        if loaded.via_optimum:
            layout = optimum_graph.export(Path(src.path), fp32_path, spec)
        else:
            save_model(FAMILIES[loaded.family].build(loaded.model, spec, layout), fp32_path)
    with stages.stage(f"check fp32 graph against the source over {len(ids) - 1} tokens"):
        fp32_logits, source_diff = verify.check_fp32(
            loaded.model, fp32_path, layout, ids, stages.ticker(len(ids) - 1, "tokens")
        )
        stages.say(f"      max |logit diff| fp32 graph vs source: {source_diff:.2e}")
        if source_diff > verify.FP32_TOLERANCE:
            raise ExportError(
                f"the fp32 graph disagrees with the source model (max logit diff {source_diff:.3g})",
                "this is a bug in edge-export; please report it with the source model",
            )
    del loaded  # the torch model is not needed past this point; free its memory
    model_path = work / MODEL_FILE
    with stages.stage(f"quantize to {precision}"):
        quantize(
            fp32_path, model_path, precision, eight_bit_from_layer=_tuned_from(specialisation, spec),
            progress=lambda total: stages.ticker(total, "graph nodes"), source_grid=src.kind == "gguf",
        )  # fmt: skip
    with stages.stage(f"verify {precision} against fp32"):
        report = verify.compare(
            precision, model_path, fp32_path, fp32_logits, source_diff, layout, ids, thresholds,
            stages.ticker(len(ids) - 1, "tokens"),
        )  # fmt: skip
        stages.say(report.table())
    shutil.rmtree(fp32_dir)
    if precision == "fp16":
        layout = replace(layout, dtype="float16")
    manifest = Manifest(
        task=TEXT_GENERATION,
        family=spec.family,
        precision=precision,
        context_length=spec.context_length,
        vocab_size=spec.vocab_size,
        tokens=tokens,
        kv_cache=layout,
        source=src,
        files={},
        chat_template=template,
        commands=commands,
        created_by=f"edge-export {__version__}",
    )
    return manifest, report
