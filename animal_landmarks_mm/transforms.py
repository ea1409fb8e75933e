"""Pixel-level augmentations for drawn characters, registered in mmpose's TRANSFORMS.

mmpose already provides flip (``RandomFlip``, with the flip pairs of the metainfo), rotation /
scale / shift of the box (``RandomBBoxTransform``) and colour jitter
(``PhotometricDistortion``), and mmcv greyscale (``RandomGrayscale``, which the configs use
for monochrome manga). What they lack without the albumentations package (whose
opencv-python-headless would replace the ``cv2`` mmcv needs) are these two. Neither moves a
point: they change pixels only, so keypoints, visibility and flip pairs pass through untouched.
Their settings are checked when the pipeline is built, as mmcv's are, not in a loader worker.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmpose.registry import TRANSFORMS

#: the largest blur sigma (pixels): an eighth of the configs' 256-pixel input, where a face is
#: a smear already; OpenCV's kernel is about 6 sigma a side (an infinite one its assertion)
MAX_BLUR_SIGMA = 32.0


def _probability(prob: float) -> float:
    """``prob``, refused unless a number in [0, 1]."""
    if not isinstance(prob, (int, float)) or isinstance(prob, bool) or not 0 <= prob <= 1:
        raise ValueError(f'prob must be a number in [0, 1], got {prob!r}')
    return float(prob)


def _range(name: str, values: Sequence[float], high: float | None) -> tuple[float, float]:
    """A ``(low, high)`` pair with ``0 < low <= high`` (``<= high`` when given); numpy would
    read a single value or a reversed pair as some other range without a word."""
    if (not isinstance(values, Sequence) or len(values) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            or not 0 < values[0] <= values[1] or (high is not None and values[1] > high)):
        bound = '' if high is None else f' <= {high:g}'
        raise ValueError(f'{name} must be two numbers 0 < low <= high{bound}, got {values!r}')
    return float(values[0]), float(values[1])


@TRANSFORMS.register_module()
class RandomGaussianBlur(BaseTransform):
    """Blur with a random sigma, as scans, downscaled and compressed images are.

    Args:
        prob: probability of applying it.
        sigma_range: the Gaussian's sigma in pixels, drawn uniformly; at most
            :data:`MAX_BLUR_SIGMA`.
    """

    def __init__(self, prob: float = 0.1, sigma_range: tuple[float, float] = (0.5, 2.0)):
        self.prob = _probability(prob)
        self.sigma_range = _range('sigma_range', sigma_range, high=MAX_BLUR_SIGMA)

    @cache_randomness
    def _sigma(self) -> float | None:
        if np.random.rand() >= self.prob:
            return None
        return float(np.random.uniform(*self.sigma_range))

    def transform(self, results: dict) -> dict:
        sigma = self._sigma()
        if sigma is not None:
            results['img'] = cv2.GaussianBlur(results['img'], (0, 0), sigma)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(prob={self.prob}, sigma_range={self.sigma_range})'


@TRANSFORMS.register_module()
class RandomCutout(BaseTransform):
    """Paint a few rectangles of random colour over the image, like hair, hands or props
    covering part of a face. Points stay where they are: the model learns to place them under
    the occluder.

    Args:
        prob: probability of applying it.
        max_holes: at most this many rectangles.
        size_range: each side as a share of the image side, drawn uniformly.
    """

    def __init__(self, prob: float = 0.3, max_holes: int = 2,
                 size_range: tuple[float, float] = (0.05, 0.2)):
        self.prob = _probability(prob)
        if not isinstance(max_holes, int) or isinstance(max_holes, bool) or max_holes < 1:
            raise ValueError(f'max_holes must be an integer of 1 or more, got {max_holes!r}')
        self.max_holes = max_holes
        self.size_range = _range('size_range', size_range, high=1.0)

    @cache_randomness
    def _holes(self, height: int, width: int,
               channels: int) -> list[tuple[int, int, int, int, tuple]]:
        if np.random.rand() >= self.prob:
            return []
        holes = []
        for _ in range(np.random.randint(1, self.max_holes + 1)):
            h = int(np.random.uniform(*self.size_range) * height)
            w = int(np.random.uniform(*self.size_range) * width)
            y, x = np.random.randint(0, max(1, height - h)), np.random.randint(0, max(1, width - w))
            color = tuple(int(c) for c in np.random.randint(0, 256, channels))
            holes.append((x, y, w, h, color))
        return holes

    def transform(self, results: dict) -> dict:
        image = results['img']
        # a colour of the image's own channels: grey (H x W or H x W x 1), BGR, BGRA
        channels = image.shape[2] if image.ndim == 3 else 1
        holes = self._holes(*image.shape[:2], channels)
        if holes:
            image = image.copy()
            for x, y, w, h, color in holes:
                image[y:y + h, x:x + w] = color
            results['img'] = image
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, max_holes={self.max_holes}, '
                f'size_range={self.size_range})')
