"""TFLite Micro's audio frontend (``micro_frontend``) in numpy, bit for bit: the features microWakeWord reads.

16 kHz int16 audio -> one 40-channel feature every 10 ms from a 30 ms Hann window: a 512-point fixed-point FFT
(KISS FFT's int16 radix-4 butterflies, rounding and wrapping where the C code does), a mel filterbank of
12-bit weights, an integer square root, noise reduction (a per-channel running noise estimate, even and odd
channels smoothed at different rates), PCAN gain control (gain from the noise estimate through a piecewise
quadratic table), and a fixed-point natural log. Configured as ``pymicro-features`` configures it for
microWakeWord; the output equals that package's (``test_wakeword.py`` compares every value on speech and noise).

The window, FFT, filterbank and log are computed for all frames of a block at once; only the noise estimate
and PCAN run frame by frame (each frame's estimate depends on the last).

>>> frontend = MicroFrontend()
>>> features = frontend.process(pcm_int16)      # float32 [frames, 40], the same values as pymicro-features
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

SAMPLE_RATE = 16000
WINDOW = 480  # 30 ms
STEP = 160  # 10 ms
CHANNELS = 40
FFT_SIZE = 512
FEATURE_SCALE = np.float32(0.0390625)  # pymicro-features' float scale of the uint16 log output

_WINDOW_BITS = 12
_FILTERBANK_BITS = 12
_NOISE_BITS = 14
_SMOOTHING_BITS = 10
_EVEN_SMOOTHING, _ODD_SMOOTHING, _MIN_SIGNAL = 0.025, 0.06, 0.05
_PCAN_STRENGTH, _PCAN_OFFSET, _PCAN_GAIN_BITS = 0.95, 80.0, 21
_PCAN_SNR_BITS, _PCAN_OUTPUT_BITS = 12, 6
_LOG_SCALE_SHIFT = 6
_LOG_COEFF = 45426
# log_lut.c: log2(1 + x) - x on 128 segments of [0, 1), scaled by 2^16
_LOG_LUT = np.array(
    [0, 224, 442, 654, 861, 1063, 1259, 1450, 1636, 1817, 1992, 2163, 2329, 2490, 2646, 2797, 2944, 3087, 3224, 3358,
     3487, 3611, 3732, 3848, 3960, 4068, 4172, 4272, 4368, 4460, 4549, 4633, 4714, 4791, 4864, 4934, 5001, 5063, 5123,
     5178, 5231, 5280, 5326, 5368, 5408, 5444, 5477, 5507, 5533, 5557, 5578, 5595, 5610, 5622, 5631, 5637, 5640, 5641,
     5638, 5633, 5626, 5615, 5602, 5586, 5568, 5547, 5524, 5498, 5470, 5439, 5406, 5370, 5332, 5291, 5249, 5203, 5156,
     5106, 5054, 5000, 4944, 4885, 4825, 4762, 4697, 4630, 4561, 4490, 4416, 4341, 4264, 4184, 4103, 4020, 3935, 3848,
     3759, 3668, 3575, 3481, 3384, 3286, 3186, 3084, 2981, 2875, 2768, 2659, 2549, 2437, 2323, 2207, 2090, 1971, 1851,
     1729, 1605, 1480, 1353, 1224, 1094, 963, 830, 695, 559, 421, 282, 142, 0, 0],
    np.int64,
)  # fmt: skip
_F32 = np.float32


def _bit_length(x: np.ndarray) -> np.ndarray:
    """``MostSignificantBit32``: the number of bits of each non-negative integer (0 for 0)."""
    return np.frexp(np.asarray(x, np.float64))[1].astype(np.int64)


def _s16(x: np.ndarray) -> np.ndarray:
    """Store into an int16, wrapping like C (values kept as int32 for the next products)."""
    return x.astype(np.int16).astype(np.int32)


def _fixdiv(x: np.ndarray, k: int) -> np.ndarray:
    """KISS FFT's ``C_FIXDIV``: x * (32767 // k) rounded to Q15 (always within int16 for k >= 2)."""
    return (x * np.int32(32767 // k) + (1 << 14)) >> 15


def _wrap16(x: int) -> int:
    return (x + 0x8000) % 0x10000 - 0x8000


def _q15(phase: float) -> tuple[int, int]:
    return math.floor(0.5 + 32767 * math.cos(phase)), math.floor(0.5 + 32767 * math.sin(phase))


@cache
def _fft_tables() -> tuple[np.ndarray, list, np.ndarray]:
    """KISS FFT's tables for a 512-point real FFT: a 256-point complex FFT of 4^4 and the real split's twiddles."""
    n = FFT_SIZE // 2
    twiddles = np.array([_q15(-2 * math.pi * i / n) for i in range(n)], np.int32).T  # [2, n]: cos, sin
    digits = np.arange(n)
    order = sum(((digits >> (2 * d)) & 3) << (2 * (3 - d)) for d in range(4))  # base-4 digit reversal
    stages = []
    for m in (1, 4, 16, 64):
        k = np.arange(m) * (n // (4 * m))
        stages.append((m, np.stack([twiddles[:, j * k] for j in (1, 2, 3)], 1)[:, None, None]))  # [2, 1, 1, 3, m]
    split = np.array([_q15(-math.pi * ((i + 1) / n + 0.5)) for i in range(n // 2)], np.int32).T
    return order, stages, split


def _rfft(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``kiss_fftr`` in FIXED_POINT=16 on int16 frames [F, 512] -> int16 bins [F, 257] (real, imaginary).

    Real and imaginary parts travel together as z[0], z[1]. Sums and differences wrap only where a stage
    stores its outputs: wrapping is exact modulo 2^16, so it commutes with them; products and shifts see
    int16 values, as in C.
    """
    order, stages, split = _fft_tables()
    n, frames = FFT_SIZE // 2, len(x)
    z = np.stack([x[:, 0::2], x[:, 1::2]])[:, :, order].astype(np.int32)
    for m, tw in stages:  # kf_bfly4, innermost stage first
        q = _fixdiv(z.reshape(2, frames, -1, 4, m), 4)
        a = q[:, :, :, 1:]  # Fout[m], Fout[2m], Fout[3m] times their twiddles
        prod = np.stack([a[0] * tw[0] - a[1] * tw[1], a[0] * tw[1] + a[1] * tw[0]])
        s = (prod + (1 << 14)) >> 15
        f0, s0, s1, s2 = q[:, :, :, 0], s[:, :, :, 0], s[:, :, :, 1], s[:, :, :, 2]
        plus, minus, outer, inner = f0 + s1, f0 - s1, s0 + s2, s0 - s2
        turned = np.stack([inner[1], -inner[0]])  # -i * (s0 - s2)
        z = _s16(np.stack([plus + outer, minus + turned, plus - outer, minus - turned], 3).reshape(2, frames, n))
    out = np.zeros((2, frames, n + 1), np.int32)
    dc = _fixdiv(z[:, :, 0], 2)
    out[0, :, 0], out[0, :, n] = _s16(dc[0] + dc[1]), _s16(dc[0] - dc[1])
    k = np.arange(1, n // 2 + 1)
    fpk = _fixdiv(z[:, :, k], 2)
    fpnk = _fixdiv(np.stack([z[0][:, n - k], _s16(-z[1][:, n - k])]), 2)
    f1k, f2k = _s16(fpk + fpnk), _s16(fpk - fpnk)
    sr, si = split[0, k - 1], split[1, k - 1]
    tw = _s16((np.stack([f2k[0] * sr - f2k[1] * si, f2k[0] * si + f2k[1] * sr]) + (1 << 14)) >> 15)
    out[:, :, k] = _s16((f1k + tw) >> 1)
    out[0][:, n - k], out[1][:, n - k] = _s16((f1k[0] - tw[0]) >> 1), _s16((tw[1] - f1k[1]) >> 1)  # k = n/2 last
    return out[0], out[1]


def _f32_call(function, x) -> np.float32:
    """A libm float function (cosf, log1pf) as glibc computes it: the double result rounded to float."""
    return _F32(function(float(x)))


def _freq_to_mel(freq) -> np.float32:
    return _F32(1127.0) * _f32_call(math.log1p, _F32(freq) / _F32(700.0))


@cache
def _filterbank() -> tuple[np.ndarray, int, int]:
    """filterbank_util.c's 12-bit weights as one dense [41, 257] matrix (row c: channel c's weights plus
    channel c-1's unweights), with the FFT bins it reads; computed in float32 as the C code does."""
    spectrum = FFT_SIZE // 2 + 1
    low, high = _F32(125.0), _F32(7500.0)
    mel_low, mel_high = _freq_to_mel(low), _freq_to_mel(high)
    spacing = _F32((mel_high - mel_low) / _F32(CHANNELS + 1))
    centers = [_F32(mel_low + spacing * _F32(i + 1)) for i in range(CHANNELS + 1)]
    hz_per_bin = _F32(0.5) * _F32(SAMPLE_RATE) / (_F32(spectrum) - _F32(1))
    start = int(_F32(1.5) + low / hz_per_bin)
    matrix = np.zeros((CHANNELS + 1, spectrum), np.float64)
    freq, end = start, 0
    for chan in range(CHANNELS + 1):
        first = freq
        while _freq_to_mel(_F32(freq) * hz_per_bin) <= centers[chan]:
            freq += 1
        below = mel_low if chan == 0 else centers[chan - 1]
        for f in range(first, freq):
            weight = _F32((centers[chan] - _freq_to_mel(_F32(f) * hz_per_bin)) / (centers[chan] - below))
            matrix[chan, f] = np.floor(weight * _F32(1 << _FILTERBANK_BITS) + _F32(0.5))
            if chan + 1 <= CHANNELS:
                matrix[chan + 1, f] = np.floor((_F32(1) - weight) * _F32(1 << _FILTERBANK_BITS) + _F32(0.5))
        end = max(end, freq)
    return matrix, start, end


def _pcan_gain(x: int, input_bits: int) -> int:
    value = _F32(x) / _F32(1 << input_bits)
    # powf as glibc rounds it (numpy's float32 power is 1 ulp off for a third of these)
    power = _F32(math.pow(float(value + _F32(_PCAN_OFFSET)), -float(_F32(_PCAN_STRENGTH))))
    gain = _F32(1 << _PCAN_GAIN_BITS) * power
    return 0x7FFF if gain > 0x7FFF else int(gain + _F32(0.5))


@cache
def _gain_table() -> np.ndarray:
    """pcan_gain_control_util.c's piecewise-quadratic table of gain against the noise estimate."""
    input_bits = _SMOOTHING_BITS - _INPUT_CORRECTION_BITS
    lut = np.zeros(4 * 32 - 3, np.int64)
    lut[0], lut[1] = _pcan_gain(0, input_bits), _pcan_gain(1, input_bits)
    for interval in range(2, 33):
        x0 = 1 << (interval - 1)
        x1, x2 = x0 + (x0 >> 1), (x0 + (x0 - 1) if interval == 32 else 2 * x0)
        y0, y1, y2 = (_pcan_gain(x, input_bits) for x in (x0, x1, x2))
        a1 = 4 * (y1 - y0) - (y2 - y0)
        lut[4 * interval - 6 : 4 * interval - 3] = y0, _wrap16(a1), _wrap16((y2 - y0) - a1)
    return lut


_INPUT_CORRECTION_BITS = FFT_SIZE.bit_length() - 1 - _FILTERBANK_BITS // 2  # MostSignificantBit32(512) - 1 - 6 = 3
_SNR_SHIFT = _PCAN_GAIN_BITS - _INPUT_CORRECTION_BITS - _PCAN_SNR_BITS  # 6


def _wide_dynamic_gain(x: np.ndarray) -> np.ndarray:
    """``WideDynamicFunction``: the gain table read at each noise estimate."""
    lut = _gain_table()
    interval = np.maximum(_bit_length(x), 2)
    base = 4 * interval - 6
    shifted = np.where(interval < 11, x << np.maximum(11 - interval, 0), x >> np.maximum(interval - 11, 0))
    frac = (shifted & 0x3FF).astype(np.int32)
    result = (lut[base + 2].astype(np.int32) * frac) >> 5
    result = (result + lut[base + 1].astype(np.int32) * 32) * frac
    result = ((result + (1 << 14)) >> 15) + lut[base].astype(np.int32)
    gain = np.where(x <= 2, lut[np.minimum(x, 2)], result.astype(np.int16).astype(np.int64))
    return gain & 0xFFFFFFFF


def _isqrt_rounded(n: np.ndarray) -> np.ndarray:
    """``Sqrt64``: the square root rounded to nearest, integers in and out (exact below 2^53)."""
    root = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    root -= root * root > n
    root += (root + 1) * (root + 1) <= n
    cap = np.where(n < (1 << 32), 0xFFFF, 0xFFFFFFFF)
    return root + ((n - root * root > root) & (root != cap))


def _log(x: np.ndarray) -> np.ndarray:
    """log_scale.c's fixed-point natural log, scaled by 2^scale_shift (x > 1)."""
    integer = _bit_length(x) - 1
    frac = x - (np.int64(1) << integer)
    frac = np.where(integer < 16, frac << np.maximum(16 - integer, 0), frac >> np.maximum(integer - 16, 0))
    segment = frac >> 9
    c0, c1 = _LOG_LUT[segment], _LOG_LUT[segment + 1]
    fraction = frac + c0 + (((c1 - c0) * (frac - (segment << 9))) >> 16)
    log2 = (integer << 16) + fraction
    loge = ((_LOG_COEFF * log2 + (1 << 15)) >> 16) & 0xFFFFFFFF
    return (((loge << _LOG_SCALE_SHIFT) + (1 << 15)) >> 16) & 0xFFFFFFFF


@cache
def _window() -> np.ndarray:
    arg = _F32(math.pi) * _F32(2.0) / _F32(WINDOW)
    values = [_F32(0.5) - _F32(0.5) * _f32_call(math.cos, arg * (_F32(i) + _F32(0.5))) for i in range(WINDOW)]
    return np.array([np.floor(v * _F32(1 << _WINDOW_BITS) + _F32(0.5)) for v in values], np.int32)


class MicroFrontend:
    """A stream of 16 kHz int16 samples -> float32 features [frames, 40], one frame per 10 ms once 30 ms arrived."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._pending = np.zeros(0, np.int16)
        self._estimate = np.zeros(CHANNELS, np.int64)  # the noise estimate, scaled up by 2^smoothing_bits

    def process(self, samples: np.ndarray) -> np.ndarray:
        """The features of every 30 ms window completed by ``samples`` (int16), in order."""
        data = np.concatenate([self._pending, np.asarray(samples, np.int16)])
        frames = 0 if len(data) < WINDOW else (len(data) - WINDOW) // STEP + 1
        self._pending = data[frames * STEP :]
        if frames == 0:
            return np.zeros((0, CHANNELS), np.float32)
        view = np.lib.stride_tricks.sliding_window_view(data, WINDOW)[::STEP][:frames]
        return self._features(view.astype(np.int32))

    def _features(self, frames: np.ndarray) -> np.ndarray:
        windowed = _s16((frames * _window()) >> _WINDOW_BITS)
        peak = np.abs(windowed.astype(np.int16)).max(axis=1).astype(np.int64)
        shift = 15 - _bit_length(peak)
        fft_in = np.zeros((len(frames), FFT_SIZE), np.int32)
        fft_in[:, :WINDOW] = _s16(windowed << shift[:, None].astype(np.int32))
        real, imag = _rfft(fft_in)
        matrix, start, end = _filterbank()
        energy = (real.astype(np.int64) ** 2 + imag.astype(np.int64) ** 2)[:, start:end]
        work = np.rint(energy.astype(np.float64) @ matrix[1:, start:end].T).astype(np.int64)  # exact: < 2^53
        signal = _isqrt_rounded(work) >> shift[:, None]
        out = self._denoise(signal)
        scaled = (out << _INPUT_CORRECTION_BITS) & 0xFFFFFFFF
        logged = np.where(scaled > 1, _log(np.maximum(scaled, 2)), 0)
        return np.minimum(logged, 0xFFFF).astype(np.float32) * FEATURE_SCALE

    def _denoise(self, signal: np.ndarray) -> np.ndarray:
        """noise_reduction.c then pcan_gain_control.c on frames [F, 40]; only the noise estimate runs frame by frame."""
        smoothing = _smoothing()
        keep = (1 << _NOISE_BITS) - smoothing
        up = (signal << _SMOOTHING_BITS) & 0xFFFFFFFF
        estimates = np.empty_like(up)
        estimate = self._estimate
        for f, row in enumerate(up * smoothing):
            estimate = estimates[f] = ((row + estimate * keep) >> _NOISE_BITS) & 0xFFFFFFFF
        self._estimate = estimate
        floor = (signal * int(_F32(_MIN_SIGNAL) * _F32(1 << _NOISE_BITS))) >> _NOISE_BITS
        reduced = np.maximum((up - np.minimum(estimates, up)) >> _SMOOTHING_BITS, floor)
        snr = ((reduced * _wide_dynamic_gain(estimates)) >> _SNR_SHIFT) & 0xFFFFFFFF
        shift = 2 + 2 * _PCAN_SNR_BITS - _PCAN_OUTPUT_BITS
        return np.where(snr < (2 << _PCAN_SNR_BITS), (snr * snr) >> shift, (snr >> 6) - (1 << _PCAN_OUTPUT_BITS))


@cache
def _smoothing() -> np.ndarray:
    even, odd = (int(_F32(s) * _F32(1 << _NOISE_BITS)) for s in (_EVEN_SMOOTHING, _ODD_SMOOTHING))
    return np.array([even if c % 2 == 0 else odd for c in range(CHANNELS)], np.int64)
