"""Multiscale voxel features for the random-forest pixel classifier (NumPy or CuPy).

In the spirit of Trainable Weka Segmentation / scikit-image ``multiscale_basic_features``:
for each scale sigma (voxels) the Gaussian-smoothed intensity, the gradient magnitude, the
Laplacian of Gaussian and the difference to the next scale. Written on top of the
``ndimage`` module of the array's backend so that the same code runs on the GPU.
"""

from __future__ import annotations

from ._backend import array_module, ndimage_module


def feature_names(sigmas) -> list[str]:
    names = ["intensity"]
    for s in sigmas:
        names += [f"gauss_{s:g}", f"gradmag_{s:g}", f"log_{s:g}"]
    names += [f"dog_{a:g}_{b:g}" for a, b in zip(sigmas[:-1], sigmas[1:])]
    return names


def feature_halo(sigmas, truncate: float = 4.0) -> int:
    """Overlap in voxels after which chunked features equal the in-memory ones."""
    return int(truncate * max(sigmas) + 0.5) + 2


def multiscale_features(volume, sigmas, *, scale: float = 1.0):
    """Stack of features, shape (n_features, *volume.shape), float32, on the volume's device.

    ``scale`` divides the intensities (a fixed normalisation stored with the classifier).
    """
    xp = array_module(volume)
    ndi = ndimage_module(xp)
    v = volume.astype(xp.float32) / xp.float32(scale)
    feats = [v]
    gauss = []
    for s in sigmas:
        g = ndi.gaussian_filter(v, s, mode="reflect")
        gauss.append(g)
        feats += [
            g,
            ndi.gaussian_gradient_magnitude(v, s, mode="reflect"),
            ndi.gaussian_laplace(v, s, mode="reflect") * xp.float32(s * s),
        ]
    feats += [b - a for a, b in zip(gauss[:-1], gauss[1:])]
    return xp.stack(feats).astype(xp.float32)
