"""Exporting a Whisper model to a speech-recognition bundle.

Stages as for text models: load (CTranslate2 or Hugging Face folder) -> build the encoder and
decoder graphs -> check fp32 against the source model -> quantize -> verify against fp32 ->
write the bundle. The checks transcribe ``data/speech_check.wav``, a short clip shipped with
the exporter (espeak-ng speaking a sentence that is in no evaluation set).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edge.bundle import (
    DECODER_FILE,
    ENCODER_FILE,
    SPEECH_RECOGNITION,
    TOKENIZER_FILE,
    VAD_FILE,
    Bundle,
    Manifest,
    Source,
    SpeechConfig,
    Tokens,
)
from edge.speech.audio import load_audio, log_mel_spectrogram, pad_or_trim
from edge.speech.transcribe import SpeechRecognizer
from edge.speech.vad import packaged_vad_path
from edge.text.tokenizer import Tokenizer

from . import ct2, verify
from .graph import save_model
from .progress import Progress
from .quantize import quantize
from .sources import SourceError
from .whisper_graph import WhisperSpec, build_decoder, build_encoder, decoder_layout, share_quantized_embedding

SPEECH_PRECISIONS = ("fp32", "int8")
# The fp32 graphs compute what the source computes; only float rounding may differ.
FP32_TOLERANCE = 1e-2


@dataclass
class SpeechQualityReport:
    """What a speech bundle's ``report.json`` holds: the check clip through source, fp32 and this precision."""

    precision: str
    check_clip: str
    size_bytes: int
    fp32_size_bytes: int
    size_vs_fp32: float
    source_text: str
    fp32_text: str
    text: str
    fp32_vs_source_max_abs_logit_diff: float
    top1_agreement: float  # teacher-forced on the source's tokens, this precision vs fp32
    tie_aware_agreement: float  # what the gate reads (export.verify.agreement)
    tie_margin: float
    max_abs_logit_diff: float
    min_agreement: float
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def gate(self) -> str:
        return f"tie-aware top-1 agreement {self.tie_aware_agreement:.1%} (>= {self.min_agreement:.0%})"

    def table(self) -> str:
        rows = [
            ("precision", self.precision),
            ("size", f"{self.size_bytes / 1e6:.1f} MB ({self.size_vs_fp32:.0%} of fp32)"),
            ("source model says", repr(self.source_text)),
            ("fp32 graphs say", repr(self.fp32_text)),
            (f"{self.precision} graphs say", repr(self.text)),
            ("fp32 graph vs source", f"{self.fp32_vs_source_max_abs_logit_diff:.2e} max |logit diff|"),
            ("top-1 agreement with fp32", f"{self.top1_agreement:.1%}"),
            ("tie-aware agreement", f"{self.tie_aware_agreement:.1%} (gate >= {self.min_agreement:.0%})"),
            ("quality gate", "passed" if self.passed else "FAILED"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)


@dataclass
class LoadedWhisper:
    model: Any  # transformers.WhisperForConditionalGeneration
    tokenizer_json: Path
    source: Source


def load(src: Source) -> LoadedWhisper:
    """Load a Whisper source as a float32 transformers model."""
    path = Path(src.path)
    tokenizer_json = path / TOKENIZER_FILE
    if not tokenizer_json.is_file():
        raise SourceError(f"{path}: no tokenizer.json", "add the model's tokenizer.json to the folder")
    if ct2.is_ct2_whisper(path):
        model = ct2.whisper_from_ct2(path)
    else:
        import torch
        from transformers import WhisperForConditionalGeneration

        try:
            model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
        except (OSError, ValueError, KeyError) as e:
            raise SourceError(
                f"{path}: could not load the Whisper model ({e})", "check the folder is complete"
            ) from None
    return LoadedWhisper(model, tokenizer_json, src)


def speech_config(model) -> SpeechConfig:
    """Feature and decoding settings from the model's config and generation config."""
    config, gen = model.config, model.generation_config
    start = [gen.decoder_start_token_id]
    if getattr(gen, "is_multilingual", False) or config.vocab_size >= 51865:
        # transcribe English by default; the language id is the first after the timestamp-free block
        start += [gen.lang_to_id["<|en|>"], gen.task_to_id["transcribe"]]
    start.append(gen.no_timestamps_token_id)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, int) else gen.eos_token_id[0]
    return SpeechConfig(
        sample_rate=16000,
        num_mels=config.num_mel_bins,
        n_fft=400,
        hop_length=160,
        window_s=30.0,
        max_source_positions=config.max_source_positions,
        start_ids=[int(t) for t in start],
        end_id=int(eos),
        suppress_ids=[int(t) for t in (gen.suppress_tokens or config.suppress_tokens or [])],
        begin_suppress_ids=[int(t) for t in (gen.begin_suppress_tokens or config.begin_suppress_tokens or [])],
        max_new_tokens=config.max_target_positions // 2,
    )


def check_clip() -> tuple[str, np.ndarray]:
    ref = resources.files("export").joinpath("data/speech_check.wav")
    with resources.as_file(ref) as path:
        return "speech_check.wav", load_audio(path)


def source_logits(model, config: SpeechConfig, audio: np.ndarray, tokens: list[int]) -> np.ndarray:
    """The source model's logits for the same positions as :meth:`SpeechRecognizer.teacher_forced_logits`."""
    import torch

    mel = log_mel_spectrogram(pad_or_trim(audio, int(config.window_s * config.sample_rate)), config.num_mels)
    ids = torch.tensor([config.start_ids + tokens])
    with torch.no_grad():
        logits = model(input_features=torch.from_numpy(mel[None]), decoder_input_ids=ids).logits[0]
    return logits[len(config.start_ids) - 1 :].numpy()


def source_transcribe(model, config: SpeechConfig, audio: np.ndarray) -> list[int]:
    """Greedy tokens from the source model on a 30 s window, with the runtime's suppression rules."""
    import torch

    mel = log_mel_spectrogram(pad_or_trim(audio, int(config.window_s * config.sample_rate)), config.num_mels)
    with torch.no_grad():
        out = model.generate(
            torch.from_numpy(mel[None]),
            decoder_input_ids=torch.tensor([config.start_ids]),
            max_new_tokens=config.max_new_tokens,
            num_beams=1,
            do_sample=False,
        )
    tokens = [int(t) for t in out[0]]
    tokens = tokens[len(config.start_ids) :] if tokens[: len(config.start_ids)] == config.start_ids else tokens
    return [t for t in tokens if t != config.end_id][: config.max_new_tokens]


def build(
    src: Source, work: Path, precision: str, stages: Progress, min_agreement: float
) -> tuple[Manifest, SpeechQualityReport]:
    """Write a speech-recognition bundle's files into ``work``; return its manifest and report."""
    from edge import __version__

    say = stages.say

    if precision not in SPEECH_PRECISIONS:
        raise SourceError(
            f"precision {precision!r} is not available for speech models",
            f"choose one of: {', '.join(SPEECH_PRECISIONS)}",
        )
    with stages.stage(f"load {src.alias or src.path}"):
        loaded = load(src)
        spec = WhisperSpec.from_config(loaded.model.config)
        config = speech_config(loaded.model)
        shutil.copyfile(loaded.tokenizer_json, work / TOKENIZER_FILE)
        vad = packaged_vad_path()
        if vad is None:
            say(
                "WARNING: silero-vad is not installed, so the bundle cannot --listen; "
                "pip install --no-deps silero-vad and export again"
            )
        else:
            shutil.copyfile(vad, work / VAD_FILE)
    layout = decoder_layout(spec)
    tokens = Tokens(stop_ids=[config.end_id])
    fp32 = work / "fp32"
    fp32.mkdir()
    n_params = sum(p.numel() for p in loaded.model.parameters())
    with stages.stage(f"build fp32 encoder and decoder graphs ({n_params / 1e6:.0f}M parameters)"):
        save_model(build_encoder(loaded.model, spec), fp32 / ENCODER_FILE)
        save_model(build_decoder(loaded.model, spec), fp32 / DECODER_FILE)

    def manifest(files: dict) -> Manifest:
        return Manifest(
            task=SPEECH_RECOGNITION,
            family="whisper",
            precision=precision,
            context_length=spec.max_target_positions,
            vocab_size=spec.vocab_size,
            tokens=tokens,
            kv_cache=layout,
            source=src,
            files=files,
            speech=config,
            created_by=f"edge-export {__version__}",
        )

    def recognizer(folder: Path, audio_context: str) -> SpeechRecognizer:
        shutil.copyfile(work / TOKENIZER_FILE, folder / TOKENIZER_FILE)
        return SpeechRecognizer(Bundle(folder, manifest({})), audio_context=audio_context)

    clip_name, audio = check_clip()
    with stages.stage(f"check fp32 graphs against the source on {clip_name}"):
        source_tokens = source_transcribe(loaded.model, config, audio)
        ref = source_logits(loaded.model, config, audio, source_tokens)
        fp32_logits = recognizer(fp32, "full").teacher_forced_logits(audio, source_tokens)
        source_diff = float(np.abs(fp32_logits - ref).max())
        say(f"      max |logit diff| fp32 graphs vs source: {source_diff:.2e}")
        if source_diff > FP32_TOLERANCE:
            from .errors import ExportError

            raise ExportError(
                f"the fp32 graphs disagree with the source model (max logit diff {source_diff:.3g})",
                "this is a bug in edge-export; please report it with the source model",
            )
    source_text = Tokenizer(work / TOKENIZER_FILE).decode(source_tokens).strip()
    del loaded
    with stages.stage(f"quantize to {precision}"):
        for name in (ENCODER_FILE, DECODER_FILE):
            quantize(fp32 / name, work / name, precision, per_channel=True)
        save_model(share_quantized_embedding(onnx.load(str(work / DECODER_FILE))), work / DECODER_FILE)
    with stages.stage(f"verify {precision} against fp32"):
        fp32_fit = recognizer(fp32, "fit")
        fp32_fit_logits = fp32_fit.teacher_forced_logits(audio, source_tokens)
        mine = SpeechRecognizer(Bundle(work, manifest({})), audio_context="fit")
        logits = mine.teacher_forced_logits(audio, source_tokens)
        raw, tie_aware = verify.agreement(logits, fp32_fit_logits)
        sizes = [sum(p.stat().st_size for p in d.glob(f"{n}*")) for d in (work, fp32) for n in ("encoder", "decoder")]
        size, fp32_size = sum(sizes[:2]), sum(sizes[2:])
        report = SpeechQualityReport(
            precision=precision,
            check_clip=clip_name,
            size_bytes=size,
            fp32_size_bytes=fp32_size,
            size_vs_fp32=size / fp32_size,
            source_text=source_text,
            fp32_text=fp32_fit.transcribe(audio).text,
            text=mine.transcribe(audio).text,
            fp32_vs_source_max_abs_logit_diff=source_diff,
            top1_agreement=raw,
            tie_aware_agreement=tie_aware,
            tie_margin=verify.TIE_MARGIN,
            max_abs_logit_diff=float(np.abs(logits - fp32_fit_logits).max()),
            min_agreement=min_agreement,
            passed=tie_aware >= min_agreement,
        )
        say(report.table())
    shutil.rmtree(fp32)
    return manifest({}), report
