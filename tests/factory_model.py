"""A user's own model factory, imported by name in the bring-your-own-model tests."""

from torch import nn


def build() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
    )


def build_softmax() -> nn.Module:
    """The same network ending in a softmax: its output is already probabilities."""
    return nn.Sequential(*build(), nn.Softmax(dim=1))


def build_log_softmax() -> nn.Module:
    """The same network ending in a log-softmax: its output is log-probabilities."""
    return nn.Sequential(*build(), nn.LogSoftmax(dim=1))
