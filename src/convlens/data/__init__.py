"""Data: bundled sample images and datasets, loaders for user data (no downloads, ever)."""

from convlens.data.images import SAMPLE_IMAGES, LoadedImage, load_image

__all__ = ["SAMPLE_IMAGES", "LoadedImage", "load_image"]
