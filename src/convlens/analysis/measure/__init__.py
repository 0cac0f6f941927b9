"""Measurements: kernel matching (1-D/2-D/3-D), Gabor fits, units, patches, CKA, evolution, receptive fields, feature maps, activations, untrained passes."""
