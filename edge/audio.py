"""Audio in, Whisper features out: WAV decoding, resampling to 16 kHz and the log-mel spectrogram (numpy only).

>>> audio = load_audio("command.wav")                       # float32 mono 16 kHz in [-1, 1]
>>> features = log_mel_spectrogram(pad_or_trim(audio, N_SAMPLES))   # [80, 3000], as WhisperFeatureExtractor
"""

from __future__ import annotations

import struct
from functools import lru_cache
from math import ceil, gcd
from pathlib import Path

import numpy as np

from .errors import AudioError

SAMPLE_RATE = 16000
N_SAMPLES = 30 * SAMPLE_RATE  # Whisper's 30 s window

CONVERT_HINT = "convert it with `sox in.mp3 -r 16000 -c 1 out.wav` (or `ffmpeg -i in.mp3 -ar 16000 -ac 1 out.wav`)"

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_KNOWN_TAGS = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}


def load_audio(path: str | Path) -> np.ndarray:
    """Read a WAV file as float32 mono 16 kHz samples in [-1, 1].

    Integer PCM (8/16/24/32-bit) and IEEE float (32/64-bit) are read, including WAVE_FORMAT_EXTENSIBLE;
    channels are averaged and other sample rates resampled. Raises AudioError for anything else.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AudioError(f"Audio file not found: {path}", "check the path") from None
    except IsADirectoryError:
        raise AudioError(f"{path} is a folder, not an audio file", "pass the path of a .wav file") from None
    except PermissionError:
        raise AudioError(f"Cannot read {path}: permission denied", f"make it readable: chmod a+r {path}") from None
    return decode_audio(data, path)


def decode_audio(data: bytes, name: str | Path = "the audio") -> np.ndarray:
    """:func:`load_audio` for WAV bytes already in memory (an upload); ``name`` is what errors call it."""
    frames, rate = _decode_wav(data, name)
    if frames.shape[0] == 0:
        raise AudioError(f"{name} contains no audio samples", "record or export the audio again")
    mono = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    return np.ascontiguousarray(resample(mono, rate, SAMPLE_RATE), dtype=np.float32)


def _decode_wav(data: bytes, path: str | Path) -> tuple[np.ndarray, int]:
    """Parse a RIFF/WAVE byte string into float [frames, channels] and its sample rate."""
    # The stdlib `wave` module (3.10/3.11) refuses float and WAVE_FORMAT_EXTENSIBLE, which sox and ffmpeg write
    # for 24-bit and multichannel files; the RIFF layout is simple enough to walk here.
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError(f"{path} is not a WAV file (no RIFF/WAVE header)", CONVERT_HINT)
    fmt = pcm = None
    pos = 12
    while pos + 8 <= len(data) and pcm is None:
        chunk_id, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + size]  # slicing clamps a bogus size (streamed WAVs) to the end of file
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            pcm = body
        pos += 8 + size + (size & 1)  # chunks are word aligned
    if fmt is None or pcm is None or len(fmt) < 16:
        raise AudioError(f"{path} is a damaged WAV file (no fmt or data chunk)", CONVERT_HINT)
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], "little")  # the SubFormat GUID starts with the real format tag
    if channels == 0 or rate == 0 or block_align == 0 or block_align % channels:
        raise AudioError(f"{path} has an invalid WAV header", CONVERT_HINT)
    width = block_align // channels  # container bytes per sample; bits may be fewer (24 valid bits in 32)
    n = len(pcm) // block_align
    raw = pcm[: n * block_align]
    if tag == _PCM and width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0  # 8-bit WAV is unsigned
    elif tag == _PCM and width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif tag == _PCM and width == 3:
        padded = np.zeros((n * channels, 4), np.uint8)
        padded[:, 1:] = np.frombuffer(raw, np.uint8).reshape(-1, 3)  # little endian: shift into the top 3 bytes
        samples = padded.view("<i4")[:, 0].astype(np.float32) / 2.0**31
    elif tag == _PCM and width == 4:
        samples = np.frombuffer(raw, "<i4").astype(np.float32) / 2.0**31
    elif tag == _FLOAT and width in (4, 8):
        samples = np.clip(np.frombuffer(raw, "<f4" if width == 4 else "<f8"), -1.0, 1.0).astype(np.float32)
    else:
        what = _KNOWN_TAGS.get(tag, f"format 0x{tag:04x}")
        kind = f"{bits}-bit {'float' if tag == _FLOAT else 'PCM'}" if tag in (_PCM, _FLOAT) else what
        raise AudioError(f"{path} uses an unsupported WAV encoding ({kind})", CONVERT_HINT)
    return samples.reshape(n, channels), rate


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample 1-D ``audio`` with a Kaiser-windowed sinc (polyphase, anti-aliased); float32 out."""
    audio = np.asarray(audio, dtype=np.float32)
    g = gcd(int(orig_sr), int(target_sr))
    up, down = target_sr // g, orig_sr // g
    if up == down:
        return audio
    table = _sinc_table(up, down)
    taps = table.shape[1]
    n_out = ceil(len(audio) * up / down)
    # output n sits at input time n*down/up: its taps start at floor of that, its filter phase is the remainder
    padded = np.pad(audio.astype(np.float64), (taps // 2 - 1, taps // 2 + 1))
    out = np.empty(n_out, np.float32)
    offsets = np.arange(taps)
    for first in range(0, n_out, 8192):  # bounded memory: 8192 x taps gathers at a time
        n = np.arange(first, min(first + 8192, n_out), dtype=np.int64)
        base, phase = np.divmod(n * down, up)
        out[n] = np.einsum("ij,ij->i", table[phase], padded[base[:, None] + offsets])
    return out


@lru_cache(maxsize=8)
def _sinc_table(up: int, down: int, zero_crossings: int = 16, rolloff: float = 0.945, beta: float = 8.6) -> np.ndarray:
    """Polyphase filter taps [up, taps]: row p filters the output at fractional input position p/up."""
    cutoff = 0.5 * min(1.0, up / down) * rolloff  # cycles per input sample, below the lower Nyquist
    half_width = zero_crossings / (2 * cutoff)  # in input samples
    h = int(ceil(half_width))
    # distance from each output position to each of its 2h input taps (taps start h-1 samples before)
    tau = np.arange(up)[:, None] / up + (h - 1) - np.arange(2 * h)[None, :]
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
