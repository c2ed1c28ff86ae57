"""Audio in, Whisper features out: WAV decoding, resampling to 16 kHz and the log-mel spectrogram (numpy only).

>>> audio = load_audio("command.wav")                       # float32 mono 16 kHz in [-1, 1]
>>> features = log_mel_spectrogram(pad_or_trim(audio, N_SAMPLES))   # [80, 3000], as WhisperFeatureExtractor
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from functools import lru_cache
from math import ceil, gcd
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge.errors import AudioError

SAMPLE_RATE = 16000
N_SAMPLES = 30 * SAMPLE_RATE  # Whisper's 30 s window

CONVERT_HINT = "convert it with `sox in.mp3 -r 16000 -c 1 out.wav` (or `ffmpeg -i in.mp3 -ar 16000 -ac 1 out.wav`)"

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_KNOWN_TAGS = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}


MIN_RATE, MAX_RATE = 4000, 384000  # telephone speech to studio masters; a header outside declares nonsense
MAX_CHANNELS = 8
MAX_FILE_S = 3600.0  # the default cap for files: an hour of speech
MAX_FRAMES = int(MAX_FILE_S * 48000)  # also caps memory (float32 mono, ~0.7 GB) for rates above 48 kHz
MAX_HEADER_BYTES = 16 << 20  # metadata chunks before the samples (LIST, bext, cover art)
_BLOCK_FRAMES = 1 << 16  # frames decoded at a time: the raw bytes are never all held


@dataclass
class WavFormat:
    """What a WAV header declares, checked before any sample is read."""

    tag: int  # _PCM or _FLOAT
    channels: int
    rate: int
    block_align: int  # bytes per frame
    width: int  # container bytes per sample


def load_audio(path: str | Path, max_seconds: float = MAX_FILE_S) -> np.ndarray:
    """Read a WAV file as float32 mono 16 kHz samples in [-1, 1].

    Integer PCM (8/16/24/32-bit) and IEEE float (32/64-bit) are read, including WAVE_FORMAT_EXTENSIBLE;
    channels are averaged and other sample rates resampled. At most ``max_seconds`` are read, so an endless
    stream (a FIFO, /dev/zero) or a huge file cannot fill memory. Raises AudioError for anything else.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return read_audio(f, path, max_seconds)
    except FileNotFoundError:
        raise AudioError(f"Audio file not found: {path}", "check the path") from None
    except IsADirectoryError:
        raise AudioError(f"{path} is a folder, not an audio file", "pass the path of a .wav file") from None
    except PermissionError:
        raise AudioError(f"Cannot read {path}: permission denied", f"make it readable: chmod a+r {path}") from None
    except OSError as e:
        raise AudioError(f"Cannot read {path}: {e.strerror or e}", "pass the path of a .wav file") from None


def decode_audio(data: bytes, name: str | Path = "the audio", max_seconds: float = MAX_FILE_S) -> np.ndarray:
    """:func:`load_audio` for WAV bytes already in memory (an upload); ``name`` is what errors call it."""
    return read_audio(io.BytesIO(data), name, max_seconds)


def read_audio(f: BinaryIO, name: str | Path, max_seconds: float = MAX_FILE_S) -> np.ndarray:
    """The one WAV reader: header checked first, then at most ``max_seconds`` (and :data:`MAX_FRAMES`) of samples
    read from ``f`` in blocks, averaged to mono and resampled to 16 kHz."""
    fmt, declared = _wav_header(f, name)
    limit = min(int(max_seconds * fmt.rate), MAX_FRAMES)
    blocks, frames, remaining = [], 0, declared
    while remaining > 0 and (raw := f.read(min(_BLOCK_FRAMES * fmt.block_align, remaining))):
        remaining -= len(raw)  # a bogus size (streamed WAVs) just reads to the end of the file
        n = len(raw) // fmt.block_align  # a partial frame at the end is dropped
        frames += n
        if frames > limit:
            seconds = limit / fmt.rate
            raise AudioError(
                f"{name} holds more than {seconds:.0f} s of audio at {fmt.rate} Hz, the most edge reads at once",
                f"cut it into parts, e.g. `sox in.wav -r 16000 -c 1 part.wav trim 0 {seconds:.0f}`",
            )
        if n:
            samples = _samples(raw[: n * fmt.block_align], fmt).reshape(n, fmt.channels)
            blocks.append(samples.mean(axis=1) if fmt.channels > 1 else samples[:, 0])
    if frames == 0:
        raise AudioError(f"{name} contains no audio samples", "record or export the audio again")
    mono = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    return np.ascontiguousarray(resample(mono, fmt.rate, SAMPLE_RATE), dtype=np.float32)


def _wav_header(f: BinaryIO, name: str | Path) -> tuple[WavFormat, int]:
    """Walk the RIFF chunks up to ``data``; return the checked format and the data size the header declares."""
    # The stdlib `wave` module (3.10/3.11) refuses float and WAVE_FORMAT_EXTENSIBLE, which sox and ffmpeg write
    # for 24-bit and multichannel files; the RIFF layout is simple enough to walk here.
    riff = f.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise AudioError(f"{name} is not a WAV file (no RIFF/WAVE header)", CONVERT_HINT)
    fmt, skipped = None, 0
    while len(head := f.read(8)) == 8:
        chunk_id, size = head[:4], int.from_bytes(head[4:], "little")
        if chunk_id == b"data":
            if fmt is None:
                break
            return fmt, size
        skipped += size + (size & 1)  # chunks are word aligned
        if skipped > MAX_HEADER_BYTES:
            break  # no WAV carries that much before its samples: a damaged header or not audio
        body = f.read(size + (size & 1))
        if chunk_id == b"fmt ":
            fmt = _wav_format(body[:size], name)
    raise AudioError(f"{name} is a damaged WAV file (no fmt or data chunk)", CONVERT_HINT)


def _wav_format(body: bytes, name: str | Path) -> WavFormat:
    """Check a ``fmt `` chunk: encoding, channels, rate and sample width, each against what edge reads."""
    if len(body) < 16:
        raise AudioError(f"{name} is a damaged WAV file (no fmt or data chunk)", CONVERT_HINT)
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE and len(body) >= 26:
        tag = int.from_bytes(body[24:26], "little")  # the SubFormat GUID starts with the real format tag
    if channels == 0 or rate == 0 or block_align == 0 or block_align % channels:
        raise AudioError(f"{name} has an invalid WAV header", CONVERT_HINT)
    width = block_align // channels  # container bytes per sample; bits may be fewer (24 valid bits in 32)
    if not ((tag == _PCM and width in (1, 2, 3, 4)) or (tag == _FLOAT and width in (4, 8))):
        what = _KNOWN_TAGS.get(tag, f"format 0x{tag:04x}")
        kind = f"{bits}-bit {'float' if tag == _FLOAT else 'PCM'}" if tag in (_PCM, _FLOAT) else what
        raise AudioError(f"{name} uses an unsupported WAV encoding ({kind})", CONVERT_HINT)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(
            f"{name} declares a sample rate of {rate} Hz; edge reads {MIN_RATE} to {MAX_RATE} Hz", CONVERT_HINT
        )
    if channels > MAX_CHANNELS:
        raise AudioError(f"{name} declares {channels} channels; edge reads 1 to {MAX_CHANNELS}", CONVERT_HINT)
    return WavFormat(tag, channels, rate, block_align, width)


def _samples(raw: bytes, fmt: WavFormat) -> np.ndarray:
    """Whole frames of ``raw`` as float32 samples in [-1, 1], channels interleaved."""
    if fmt.tag == _FLOAT:
        return np.clip(np.frombuffer(raw, "<f4" if fmt.width == 4 else "<f8"), -1.0, 1.0).astype(np.float32)
    if fmt.width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0  # 8-bit WAV is unsigned
    if fmt.width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if fmt.width == 3:
        padded = np.zeros((len(raw) // 3, 4), np.uint8)
        padded[:, 1:] = np.frombuffer(raw, np.uint8).reshape(-1, 3)  # little endian: shift into the top 3 bytes
        return padded.view("<i4")[:, 0].astype(np.float32) / 2.0**31
    return np.frombuffer(raw, "<i4").astype(np.float32) / 2.0**31


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample 1-D ``audio`` with a Kaiser-windowed sinc (polyphase, anti-aliased); float32 out.

    Time and memory grow with the output length times the filter length, never with the rates' ratio:
    an odd rate (g.c.d. 1 with the target) computes only the filter phases its outputs use.
    """
    audio = np.asarray(audio, dtype=np.float32)
    g = gcd(int(orig_sr), int(target_sr))
    up, down = target_sr // g, orig_sr // g
    if up == down:
        return audio
    taps = 2 * _half_width(up, down)
    n_out = ceil(len(audio) * up / down)
    out = np.empty(n_out, np.float32)
    offsets = np.arange(taps) - (taps // 2 - 1)  # output n reads inputs base-(taps/2-1) .. base+taps/2
    rows = max(1, _GATHER // taps)  # bounded memory: rows x taps gathers at a time
    for first in range(0, n_out, rows):
        n = np.arange(first, min(first + rows, n_out), dtype=np.int64)
        # output n sits at input time n*down/up: its taps start at floor of that, its filter phase is the remainder
        base, phase = np.divmod(n * down, up)
        lo, hi = base[0] + offsets[0], base[-1] + offsets[-1] + 1
        window = np.zeros(hi - lo)  # the inputs these outputs read, zero beyond either end
        window[max(lo, 0) - lo : min(hi, len(audio)) - lo] = audio[max(lo, 0) : min(hi, len(audio))]
        filters = _sinc_table(up, down)[phase] if up <= _MAX_TABLE else _sinc_rows(phase, up, down)
        out[n] = np.einsum("ij,ij->i", filters, window[(base - base[0])[:, None] + offsets - offsets[0]])
    return out


_GATHER = 8192 * 34  # float64 elements per gather: 8192 outputs of the 34-tap upsampling filter
_MAX_TABLE = 1024  # filter phases worth caching; every common rate needs at most 640 (11025 Hz)


def _half_width(up: int, down: int, zero_crossings: int = 16, rolloff: float = 0.945) -> int:
    """Taps on each side of an output: the filter spans ``zero_crossings`` of the lower Nyquist's sinc."""
    return int(ceil(zero_crossings / (2 * _cutoff(up, down, rolloff))))


def _cutoff(up: int, down: int, rolloff: float = 0.945) -> float:
    return 0.5 * min(1.0, up / down) * rolloff  # cycles per input sample, below the lower Nyquist


@lru_cache(maxsize=8)
def _sinc_table(up: int, down: int) -> np.ndarray:
    """Every phase's filter [up, taps], cached: common rate pairs have a few hundred phases at most."""
    table = _sinc_rows(np.arange(up), up, down)
    table.flags.writeable = False  # cached and shared
    return table


def _sinc_rows(phase: np.ndarray, up: int, down: int, zero_crossings: int = 16, beta: float = 8.6) -> np.ndarray:
    """Polyphase filter taps [len(phase), taps]: row i filters the output at fractional input position phase[i]/up."""
    cutoff = _cutoff(up, down)
    half_width = zero_crossings / (2 * cutoff)  # in input samples
    h = _half_width(up, down, zero_crossings)
    # distance from each output position to each of its 2h input taps (taps start h-1 samples before)
    tau = np.asarray(phase)[:, None] / up + (h - 1) - np.arange(2 * h)[None, :]
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (tau / half_width) ** 2, 0.0, None))) / np.i0(beta)
    table = 2 * cutoff * np.sinc(2 * cutoff * tau) * window * (np.abs(tau) <= half_width)
    return table / table.sum(axis=1, keepdims=True)  # unit DC gain in every phase


def pad_or_trim(audio: np.ndarray, n_samples: int = N_SAMPLES) -> np.ndarray:
    """Zero-pad the end of ``audio`` or cut it to exactly ``n_samples`` (Whisper wants 30 s)."""
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) >= n_samples:
        return audio[:n_samples]
    return np.pad(audio, (0, n_samples - len(audio)))


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80, n_fft: int = 400, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular mel filters [n_mels, 1 + n_fft // 2] from 0 Hz to Nyquist."""

    def hz_to_mel(f):
        # Slaney: linear below 1 kHz, logarithmic above
        return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + 27.0 * np.log(np.maximum(f, 1e-10) / 1000.0) / np.log(6.4))

    def mel_to_hz(m):
        return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp(np.log(6.4) * (m - 15.0) / 27.0))

    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    slopes = edges[:, None] - fft_freqs[None, :]
    rising = -slopes[:-2] / np.diff(edges)[:-1, None]
    falling = slopes[2:] / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # constant energy per band
    weights.flags.writeable = False  # cached and shared
    return weights


def log_mel_spectrogram(
    audio: np.ndarray, n_mels: int = 80, n_fft: int = 400, hop_length: int = 160, padding_samples: int = 0
) -> np.ndarray:
    """Whisper's log-mel features [n_mels, frames] of 16 kHz ``audio``, as ``WhisperFeatureExtractor`` computes them.

    ``frames`` is ``len(audio) // hop_length`` (at least 1), so 30 s of audio gives 3000. ``padding_samples``
    zeros are appended first. Any length >= 1 sample works; short clips are not padded to 30 s.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected 1-D audio with at least one sample, got shape {audio.shape}")
    if padding_samples:
        audio = np.pad(audio, (0, padding_samples))
    # centred STFT: reflect-pad half a window on each side (numpy reflects repeatedly for very short clips)
    padded = np.pad(audio.astype(np.float64), n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    spectrum = np.fft.rfft(frames * window, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    if power.shape[0] > 1:
        power = power[:-1]  # Whisper drops the last frame: 30 s -> 3000 frames, not 3001
    mel = mel_filters(n_mels, n_fft, SAMPLE_RATE) @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)  # 80 dB dynamic range
    return ((log_spec + 4.0) / 4.0).astype(np.float32)
