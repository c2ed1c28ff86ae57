"""edge.speech.audio: WAV decoding, resampling, and log-mel features matching WhisperFeatureExtractor."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import tracemalloc
import wave

import numpy as np
import pytest

from edge.errors import AudioError
from edge.speech.audio import (
    N_SAMPLES,
    SAMPLE_RATE,
    decode_audio,
    load_audio,
    log_mel_spectrogram,
    mel_filters,
    pad_or_trim,
    read_audio,
    resample,
)


def band_limited(rate: int, seconds: float = 2.0) -> np.ndarray:
    """The same continuous signal (tones and a chirp, all under 6 kHz) sampled at ``rate``."""
    t = np.arange(int(seconds * rate)) / rate
    return (
        0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.2 * np.sin(2 * np.pi * (100 * t + 1000 * t**2))
        + 0.1 * np.sin(2 * np.pi * 5500 * t + 1)
    ).astype(np.float32)


def chirp_and_noise(seconds: float = 7.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = np.random.default_rng(0).standard_normal(len(t))
    return (0.5 * np.sin(2 * np.pi * (200 * t + 300 * t**2)) * (t < 5) + 0.05 * noise).astype(np.float32)


def write_pcm(path, samples: np.ndarray, rate: int = SAMPLE_RATE, bits: int = 16):
    """Write integer PCM with the stdlib ``wave`` module (an implementation independent of edge's reader)."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    scale = 2 ** (bits - 1)
    ints = np.clip(np.round(frames * scale), -scale, scale - 1).astype(np.int64)
    if bits == 8:
        raw = (ints + 128).astype(np.uint8).tobytes()  # 8-bit WAV is unsigned
    else:
        raw = b"".join(int(v).to_bytes(bits // 8, "little", signed=True) for v in ints.reshape(-1))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(bits // 8)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def write_riff(
    path, tag: int, payload: bytes, channels: int = 1, rate: int = SAMPLE_RATE, width: int = 4, extra: bytes = b""
):
    """A WAV with an arbitrary format tag, for what ``wave`` cannot write (float, A-law); ``extra`` chunks go first."""
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * width, channels * width, width * 8)
    body = b"WAVE" + extra + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(payload)) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def hf_extractor():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (the dev environment)")
    return transformers.WhisperFeatureExtractor()


def espeak(text: str, folder) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path)


@pytest.mark.parametrize("signal", ["chirp", "speech"])
def test_mel_matches_hugging_face_on_30s(signal, tmp_path):
    fe = hf_extractor()
    audio = chirp_and_noise() if signal == "chirp" else espeak("Turn on the kitchen lights, please.", tmp_path)
    audio = pad_or_trim(audio, N_SAMPLES)
    ours = log_mel_spectrogram(audio)
    theirs = fe(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]
    assert ours.shape == theirs.shape == (80, 3000) and ours.dtype == np.float32
    # HF's public call uses torch's float32 STFT when torch is installed: rounding reaches ~3e-5 in a few
    # low-energy bins; the numpy path (float64, like ours) agrees to float32 precision
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    assert np.mean(np.abs(ours - theirs)) < 1e-6
    if hasattr(fe, "_np_extract_fbank_features"):
        numpy_path = fe._np_extract_fbank_features(audio[None], "cpu")[0]
        np.testing.assert_allclose(ours, numpy_path, atol=1e-5, rtol=0)


def test_mel_on_short_unpadded_audio_matches_hugging_face_numpy_path():
    fe = hf_extractor()
    if not hasattr(fe, "_np_extract_fbank_features"):
        pytest.skip("this transformers version has no numpy feature path")
    audio = chirp_and_noise(1.337)
    ours = log_mel_spectrogram(audio)
    assert ours.shape == (80, len(audio) // 160)
    np.testing.assert_allclose(ours, fe._np_extract_fbank_features(audio[None], "cpu")[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 159, 160, 161, 399, 16000])
def test_mel_works_for_any_length(n):
    mel = log_mel_spectrogram(chirp_and_noise(1.0)[:n])
    assert mel.shape == (80, max(1, n // 160))
    assert np.isfinite(mel).all()


def test_mel_padding_and_128_bins():
    audio = chirp_and_noise(1.0)
    padded = log_mel_spectrogram(audio, padding_samples=160)
    assert padded.shape == (80, 101)
    assert log_mel_spectrogram(audio, n_mels=128).shape == (128, 100)


def test_mel_filters_are_cached_and_read_only():
    assert mel_filters() is mel_filters()
    assert mel_filters().shape == (80, 201)
    assert not mel_filters().flags.writeable


def test_pad_or_trim():
    audio = np.ones(10, np.float32)
    assert np.array_equal(pad_or_trim(audio, 4), np.ones(4))
    assert np.array_equal(pad_or_trim(audio, 12), np.r_[np.ones(10), 0, 0])
    assert pad_or_trim(audio).shape == (N_SAMPLES,)


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
def test_load_integer_pcm(bits, tmp_path):
    original = band_limited(SAMPLE_RATE, 0.5)
    loaded = load_audio(write_pcm(tmp_path / "x.wav", original, bits=bits))
    assert loaded.dtype == np.float32 and loaded.shape == original.shape
    np.testing.assert_allclose(loaded, original, atol=1.0 / 2 ** (bits - 1))


def test_load_float32_wav(tmp_path):
    original = band_limited(SAMPLE_RATE, 0.5)
    original[:3] = [1.5, -2.0, 0.25]  # float WAVs may exceed full scale: clipped into [-1, 1]
    loaded = load_audio(write_riff(tmp_path / "f.wav", 0x0003, original.astype("<f4").tobytes()))
    np.testing.assert_array_equal(loaded[3:], original[3:])
    assert loaded[:3].tolist() == [1.0, -1.0, 0.25]


def test_odd_sized_chunks_and_a_streamed_data_size(tmp_path):
    original = band_limited(SAMPLE_RATE, 0.25)
    pcm = (original * 32767).astype("<i2").tobytes()
    listing = b"LIST" + struct.pack("<I", 5) + b"INFO1" + b"\0"  # odd size: padded to a word boundary
    path = write_riff(tmp_path / "odd.wav", 0x0001, pcm, width=2, extra=listing)
    np.testing.assert_allclose(load_audio(path), original, atol=1e-4)
    # writers streaming to a pipe cannot seek back, so they leave the data size at 0xFFFFFFFF
    data = bytearray(path.read_bytes())
    size_at = data.index(b"data") + 4
    data[size_at : size_at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    np.testing.assert_allclose(load_audio(path), original, atol=1e-4)


def test_stereo_is_averaged(tmp_path):
    left = band_limited(SAMPLE_RATE, 0.5)
    loaded = load_audio(write_pcm(tmp_path / "s.wav", np.stack([left, -0.5 * left], axis=1)))
    np.testing.assert_allclose(loaded, 0.25 * left, atol=1e-4)


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 32000])
def test_resampled_file_lands_on_the_16k_signal(rate, tmp_path):
    reference = band_limited(SAMPLE_RATE)
    loaded = load_audio(write_pcm(tmp_path / "r.wav", band_limited(rate), rate=rate))
    assert len(loaded) == len(reference)
    inner = slice(800, -800)  # the filter sees zeros beyond the ends, so the first and last 50 ms differ
    error = np.abs(loaded[inner] - reference[inner])
    assert error.max() < 1e-3, error.max()
    assert np.sqrt(np.mean(error**2)) < 1e-4


def test_resampler_rejects_aliases():
    t = np.arange(44100) / 44100
    tone = np.sin(2 * np.pi * 10000 * t).astype(np.float32)  # above the 8 kHz Nyquist of the output
    assert np.abs(resample(tone, 44100)[1000:-1000]).max() < 1e-3


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_load_sox_24bit_extensible_stereo(tmp_path):
    # sox writes WAVE_FORMAT_EXTENSIBLE for 24-bit and for more than two channels
    source = write_pcm(tmp_path / "in.wav", band_limited(22050, 1.0), rate=22050)
    out = tmp_path / "out.wav"
    subprocess.run(["sox", str(source), "-b", "24", "-c", "3", str(out)], check=True, capture_output=True)
    assert out.read_bytes()[20:22] == b"\xfe\xff"
    loaded = load_audio(out)
    reference = band_limited(SAMPLE_RATE, 1.0)
    assert np.abs(loaded[800:-800] - reference[800:-800]).max() < 1e-3


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found") as e:
        load_audio(tmp_path / "nope.wav")
    assert e.value.hint


def test_not_a_wav(tmp_path):
    path = tmp_path / "song.mp3"
    path.write_bytes(b"ID3\x04" + bytes(100))
    with pytest.raises(AudioError, match="not a WAV") as e:
        load_audio(path)
    assert "sox in.mp3 -r 16000 -c 1 out.wav" in e.value.hint


def test_unsupported_encoding(tmp_path):
    path = write_riff(tmp_path / "alaw.wav", 0x0006, bytes(800), width=1)
    with pytest.raises(AudioError, match="A-law") as e:
        load_audio(path)
    assert "sox" in str(e.value)


def test_empty_wav(tmp_path):
    with pytest.raises(AudioError, match="no audio"):
        load_audio(write_pcm(tmp_path / "empty.wav", np.zeros(0, np.float32)))


@pytest.mark.parametrize(
    "channels, rate, reason",
    [(1, 1, "sample rate of 1 Hz"), (1, 10**9, "sample rate of 1000000000 Hz"), (9, SAMPLE_RATE, "9 channels")],
)
def test_absurd_header_is_refused_before_any_sample_is_read(tmp_path, channels, rate, reason):
    # 1 Hz used to be resampled to 16 kHz for minutes, gigabytes climbing; now refused from the header alone
    path = write_riff(tmp_path / "h.wav", 0x0001, bytes(2 * channels * 1000), channels=channels, rate=rate, width=2)
    with pytest.raises(AudioError, match=reason) as e:
        load_audio(path)
    assert str(path) in str(e.value) and "sox" in e.value.hint


class EndlessWav(io.RawIOBase):
    """A WAV header followed by silence that never ends, as a FIFO or a streamed upload delivers it."""

    def __init__(self, header: bytes):
        self.header = header

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = len(buffer)
        chunk, self.header = self.header[:n], self.header[n:]
        buffer[: len(chunk)] = chunk
        buffer[len(chunk) : n] = bytes(n - len(chunk))
        return n


def test_endless_or_long_audio_is_read_in_bounded_memory(tmp_path):
    header = write_riff(tmp_path / "s.wav", 0x0001, b"", rate=48000, width=2).read_bytes()[:-4] + b"\xff" * 4
    tracemalloc.start()
    with pytest.raises(AudioError, match="more than 5 s of audio at 48000 Hz") as e:
        read_audio(io.BufferedReader(EndlessWav(header)), "the stream", max_seconds=5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20 and "sox in.wav -r 16000 -c 1 part.wav trim 0 5" in e.value.hint
    # what the server passes: a 2 s clip under a 1 s cap is refused, under the default it loads
    clip = write_pcm(tmp_path / "clip.wav", band_limited(SAMPLE_RATE, 2.0)).read_bytes()
    with pytest.raises(AudioError, match="more than 1 s"):
        decode_audio(clip, "the request body", max_seconds=1)
    assert len(decode_audio(clip)) == 2 * SAMPLE_RATE
    with pytest.raises(AudioError, match="not a WAV"):
        load_audio("/dev/zero")


def test_resampler_cost_follows_the_output_length():
    # 383999 Hz shares no factor with 16 kHz: a full polyphase table would be 16000 x 1626 taps (200 MB)
    audio = band_limited(383999, 0.25)
    tracemalloc.start()
    out = resample(audio, 383999)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(out) == 4000 and peak < 64 << 20
    reference = band_limited(SAMPLE_RATE, 0.25)
    assert np.abs(out[400:-400] - reference[400:-400]).max() < 1e-3
