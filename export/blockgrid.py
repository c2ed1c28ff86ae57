"""The 4-bit grid a GGUF block already lies on, so int4 keeps the block instead of rounding it again.

A 4-bit GGUF block of 32 weights holds ``low + d * q`` for codes ``q`` in 0..15: Q4_1 with its
float minimum, Q4_0 with ``low = -8 d``, and each 32-weight sub-block of Q4_K with its 6-bit scale
and minimum. Q4_1's codes span 0..15, so the block's own minimum and maximum give ``low`` and
``d``; Q4_0's and Q4_K's often stop short of one end, and ``(max - min) / 15`` is then a step the
block does not lie on. :func:`fit` finds the step from the values themselves.
"""

from __future__ import annotations

import numpy as np

LEVELS = 16
REL_TOL = 1e-5  # float32 dequantization leaves values within a few ulps of the grid


def fit(blocks: np.ndarray, levels: int = LEVELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``[..., 32]`` blocks: each block's lowest value, a step, and whether the block lies on that grid.

    A block lies on it when every value is ``low + step * q`` (within float rounding) for an
    integer ``q`` in 0..levels-1. The step is the smallest gap between distinct values, so a block
    that skips every other level is not recognised (and is rounded as before, never wrongly).
    """
    s = np.sort(blocks, axis=-1)
    low = s[..., 0]
    tol = np.maximum(np.abs(s).max(-1), np.finfo(np.float32).tiny) * REL_TOL
    gaps = np.diff(s, axis=-1)
    step = np.where(gaps > tol[..., None], gaps, np.inf).min(-1)
    constant = ~np.isfinite(step)
    step = np.where(constant, 1.0, step)
    codes = np.rint((blocks - low[..., None]) / step[..., None])
    close = np.abs(low[..., None] + codes * step[..., None] - blocks) <= tol[..., None]
    on = constant | ((codes.max(-1) <= levels - 1) & close.all(-1))
    return low, step, on


def four_bit_high(blocks: np.ndarray) -> np.ndarray:
    """The top of each block's 16 levels: ``low + 15 step`` on a grid wider than the block's span, else its max."""
    high = blocks.max(-1)
    low, step, on = fit(blocks)
    wider = on & (step * (LEVELS - 1) > (high - low) * (1 + 1e-4))
    return np.where(wider, low + step * (LEVELS - 1), high)


def is_four_bit(blocks: np.ndarray) -> bool:
    """Whether every block already lies on 16 levels: the tensor came from a 4-bit GGUF type."""
    return bool(fit(blocks)[2].all())
