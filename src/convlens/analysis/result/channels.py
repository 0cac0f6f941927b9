"""What each channel of each conv layer responds to (``AnalysisResult.channels``): its top and
bottom exemplars on the analysed images, with the receptive-field crop of each, and, for torch
models, an input optimised to maximise it. The crops and maximising inputs are arrays: they live in
the analysis's ``channels.safetensors`` beside it (keys in :attr:`ChannelRecord.arrays`); these
records hold the numbers and where each array is."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    spatial-mean activation on the analysed images."""

    activation: float
    best_image_activation: float
    steps: int
    seconds: float


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
