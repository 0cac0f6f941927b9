"""Apply the library to user images and write the results (the ``convlens filter`` command).

The layer above :mod:`convlens.ops`, :mod:`convlens.kernels` and :mod:`convlens.data`: it takes a
loaded image and bank kernels, computes the feature maps with the pure-NumPy engine and writes them
as PNG (matplotlib, imported only when writing) and ``.npy`` files with a JSON summary. Nothing below
this layer imports it.
"""

from convlens.apply.filtering import FeatureMap, apply_kernels, display_range, write_feature_maps

__all__ = ["FeatureMap", "apply_kernels", "display_range", "write_feature_maps"]
