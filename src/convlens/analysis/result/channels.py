"""What each channel of each conv layer responds to (``AnalysisResult.channels``): its top and
bottom exemplars on the analysed images, with the receptive-field crop of each, and, for torch
models, an input optimised to maximise it. The crops and maximising inputs are arrays: they live in
the analysis's ``channels.safetensors`` beside it (keys in :attr:`ChannelRecord.arrays`); these
records hold the numbers and where each array is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Exemplar:
    """One image that drives a channel: its index among the analysed images, the set it belongs
    to, the channel's extreme value on it (the spatial max, or for a bottom exemplar the min), the
    position of that value in the layer's output map and the input box (rows, columns; end
    exclusive, may extend past the image) of the unit's theoretical receptive field there."""

    image: int
    set: str
    value: float
    position: list[int]
    box: list[int]


@dataclass
class MaximisingInput:
    """An input optimised to maximise the channel's mean activation (Fourier parameterisation,
    jitter, L2 penalty; seeded): the activation it reaches and, for scale, the channel's largest
    spatial-mean activation on the analysed images. The time taken is in ``timings_s``
    (``channels``)."""

    activation: float
    best_image_activation: float
    steps: int


@dataclass
class ConceptMatch:
    """How well a channel's strongest region lines up with a labelled part (eyes, nose, mouth):
    its pooled IoU, the two nulls (the same channel against the part shifted, the layer's
    untrained channels) and whether it detects the part (above both nulls and the floor), with the
    first snapshot epoch from which it does and the IoU at each snapshot epoch."""

    part: str
    iou: float
    null_shift_p95: float
    null_untrained_p95: float | None
    detector: bool
    first_epoch: int | None = None
    over_epochs: dict[str, float] = field(default_factory=dict)


@dataclass
class ChannelRecord:
    """One channel: its top exemplars (largest spatial max), bottom exemplars (smallest spatial
    min: the most negative, for a signed map), the maximising input where computed, and the keys of
    its arrays in ``channels.safetensors``."""

    channel: int
    top: list[Exemplar] = field(default_factory=list)
    bottom: list[Exemplar] = field(default_factory=list)
    maximising_input: MaximisingInput | None = None
    arrays: dict[str, str] = field(default_factory=dict)
    concepts: list[ConceptMatch] = field(default_factory=list)


@dataclass
class LayerChannels:
    """Every channel of one conv layer, on ``n_images`` analysed images (the sets listed), with
    the rule that picked the exemplars."""

    layer: str
    n_images: int
    sets: list[str]
    k: int
    rule: str
    channels: list[ChannelRecord] = field(default_factory=list)
    maximising_rule: str | None = None
    skipped: str | None = None
    concept_rule: str | None = None
    concept_images: int = 0
    """Face images the concepts were measured on (0: not measured: the data are not aligned
    faces)."""
    random_label_detectors: dict[str, int] | None = None
    """Per part, how many channels of the random-label network's same layer detect it (``None``:
    no random-label run)."""

    def detectors(self) -> list[tuple[int, ConceptMatch]]:
        """``(channel, match)`` for every part a channel of this layer detects."""
        return [(ch.channel, c) for ch in self.channels for c in ch.concepts if c.detector]


# ----------------------------------------------------------------------------- arrays in transit
_ARRAYS = "_convlens_channel_arrays"
"""Attribute of an :class:`AnalysisResult` holding the channel arrays until they are written (not
a dataclass field: never serialised)."""


def attach_arrays(result: Any, arrays: dict[str, Any]) -> None:
    """Carry ``arrays`` on ``result`` (an :class:`AnalysisResult`) to the writer."""
    result.__dict__[_ARRAYS] = arrays


def pending_arrays(result: Any) -> dict[str, Any] | None:
    """The channel arrays of a fresh analysis (``None`` when it computed none or was read back)."""
    value = result.__dict__.get(_ARRAYS)
    return value if value else None
