"""``signals``: a bundled 1-D task (tones vs chirps vs noise), generated, never downloaded.

Every signal has ``LENGTH = 128`` samples and is drawn with ``numpy.random.default_rng(SIGNALS_SEED)``
(``SIGNALS_SEED = 1717``), so the set is the same on every machine; the run's own seed only picks
the train/val/test split, as for the other bundled sets. ``PER_CLASS = 200`` signals per class:

- ``tone``: ``sin(2 pi f t + phase)``, f uniform in [0.05, 0.25] cycles/sample, plus white noise
  (sd ``NOISE_SD = 0.5``);
- ``chirp``: a linear sweep from f0 in [0.02, 0.08] to f1 in [0.2, 0.3] cycles/sample over the
  signal, random phase, plus the same noise;
- ``noise``: white noise with the same total power as a tone (sd ``sqrt(0.5 + NOISE_SD**2)``).

Signals are stored as images of height 1, ``(N, 1, 1, 128)``, mapped to [0, 1] by the fixed rule
``x01 = (s + 3) / 6`` and then standardised with the training split's mean/std like every set.
The 1-D model preset ``signals-cnn`` (``Conv1d`` layers) reads them. Pure NumPy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

LENGTH = 128
PER_CLASS = 200
SIGNALS_SEED = 1717
NOISE_SD = 0.5
CLASSES = ["tone", "chirp", "noise"]


def generate() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The raw signals ``(3 * PER_CLASS, LENGTH)`` and labels (0 tone, 1 chirp, 2 noise)."""
    rng = np.random.default_rng(SIGNALS_SEED)
    t = np.arange(LENGTH, dtype=np.float64)
    n = PER_CLASS
    f = rng.uniform(0.05, 0.25, n)
    phase = rng.uniform(0, 2 * np.pi, (2, n))
    tones = np.sin(2 * np.pi * f[:, None] * t + phase[0][:, None])
    f0, f1 = rng.uniform(0.02, 0.08, n), rng.uniform(0.2, 0.3, n)
    # instantaneous frequency f0 + (f1 - f0) t / LENGTH; the phase is its running integral
    inst = f0[:, None] * t + 0.5 * (f1 - f0)[:, None] * t**2 / LENGTH
    chirps = np.sin(2 * np.pi * inst + phase[1][:, None])
    noise_sd = np.sqrt(0.5 + NOISE_SD**2)
    s = np.concatenate(
        [
            tones + rng.normal(0, NOISE_SD, (n, LENGTH)),
            chirps + rng.normal(0, NOISE_SD, (n, LENGTH)),
            rng.normal(0, noise_sd, (n, LENGTH)),
        ]
    )
    y = np.repeat(np.arange(3, dtype=np.int64), n)
    return s, y


def signals01() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The signals as images ``(N, 1, 1, LENGTH)`` in [0, 1] (``(s + 3) / 6``, clipped) and labels."""
    s, y = generate()
    return np.clip((s + 3.0) / 6.0, 0.0, 1.0)[:, None, None, :], y
