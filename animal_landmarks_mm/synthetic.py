"""Procedural cartoon animal-character faces whose 28 landmarks are exact by construction.

Each face is built in a canonical frame (face half-width 1, x to the image-right, y down), its
landmarks placed on the very curves that are drawn (eyelids, brows, jaw, lips), then mapped into
the image by one similarity transform (random rotation, scale, position) after a small yaw-like
shift of the inner features. Species (cat, fox, dog, rabbit, bear) change the ears; colours,
proportions, expression, hair fringe and backgrounds are random; a share of images is greyscale
like monochrome manga. Because the face is left/right distinct only through the image, a wrong
flip pair or a bad augmentation shows up as a worse NME.

Coordinates follow mmpose: a pixel's centre is at integer coordinates.
"""
from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .annotation import (
    AnnotationError,
    Face,
    ImageAnnotation,
    read_regular_file,
    remove_stale_temporaries,
    save_annotation,
    write_bytes_atomic,
    write_json_atomic,
)
from .errors import AnimalLandmarksError, first_line
from .schema import KEYPOINT_INDEX, KEYPOINT_NAMES, NUM_KEYPOINTS, group_indices

SPECIES = ('cat', 'fox', 'dog', 'rabbit', 'bear')
#: Families of styles, for experiments on transfer (pretrain on one, fine-tune on another):
#: ``human``: human anime faces (no animal ears, large eyes, small nose and mouth, pointed chin),
#: like the faces anime_face_detector was trained on; ``animal``: animal characters with other
#: proportions (a muzzle that carries a lower nose and a wider mouth, a round jaw, smaller
#: rounder eyes, ears). None: the original style, neither family (a species' ears, no
#: muzzle, proportions between the two), as the synthetic sets have always been. In both
#: families the mouth lies inside the jaw, the chin below the lips; the original style is left
#: as its measured results were made, where about 5 % of lower lips hang below the chin.
FAMILIES = ('human', 'animal')

#: how far (in face half-widths) the families keep every mouth point above the jaw line: more
#: than half the drawn jaw stroke, so that no lip lies on it
_MOUTH_MARGIN = 0.02


#: raised when a seed draws other faces than before (2: the animal family's round jaw with the
#: mouth inside it), so that a folder of an earlier generator's faces is not extended
GENERATOR_VERSION = 2
#: the settings a set was drawn with, in its folder: a later call adds to it only with the same
SETTINGS_FILE = '.synthetic.json'
#: the largest settings file read (bytes): a few hundred are written
SETTINGS_MAX_BYTES = 1 << 16

#: the largest image side the generator draws: real pictures are 2000-4000 px, and each
#: image's background is made in float64 (at this size 1.6 GB; a side of 10**7 px asked numpy
#: for petabytes)
MAX_DRAWN_SIDE = 8192


class SyntheticDataError(AnimalLandmarksError, ValueError):
    """Settings the generator cannot draw with; the message is one line."""


def seed_problem(seed: object) -> str | None:
    """What is wrong with a seed for numpy's generators (an integer of 0 or more), or None:
    the generator and the experiments refuse one by the same rule, each naming its own flag.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        return f'must be an integer of 0 or more, got {seed!r}'
    return None


def host_cpus() -> int:
    """The cores this process may run on (a container's or a job's share, not the host's): the
    one count the generator's and the training tools' workers are sized by."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_SHIFT = 4  # cv2 drawing in fixed point: coordinates carry 4 fractional bits
_SCALE = 1 << _SHIFT


def _bezier3(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 24) -> np.ndarray:
    """Quadratic curve from p0 to p2 that passes through p1 at its middle."""
    control = 2 * p1 - (p0 + p2) / 2
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t)**2 * p0 + 2 * (1 - t) * t * control + t**2 * p2


def _ellipse(center, rx, ry, start=0.0, end=2 * math.pi, n=48) -> np.ndarray:
    t = np.linspace(start, end, n)
    return np.stack([center[0] + rx * np.cos(t), center[1] + ry * np.sin(t)], axis=1)


def _color(rng: np.random.Generator, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi + 1, size=3))


def _shade(color, factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)


@dataclass
class _Canvas:
    """An image plus the canonical-to-image transform; draws canonical shapes anti-aliased."""

    image: np.ndarray
    matrix: np.ndarray  # 2x3 affine, canonical -> image pixels
    unit: float  # pixels per canonical unit

    def map(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]

    def _fixed(self, pts: np.ndarray) -> np.ndarray:
        return np.round(self.map(pts) * _SCALE).astype(np.int32)

    def fill(self, pts, color) -> None:
        cv2.fillPoly(self.image, [self._fixed(pts)], color, cv2.LINE_AA, _SHIFT)

    def line(self, pts, color, width: float, closed: bool = False) -> None:
        thickness = max(1, int(round(width * self.unit)))
        cv2.polylines(self.image, [self._fixed(pts)], closed, color, thickness, cv2.LINE_AA,
                      _SHIFT)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A gradient with random translucent shapes and noise: not a plain colour to segment."""
    top, bottom = np.array(_color(rng)), np.array(_color(rng))
    ramp = np.linspace(0, 1, height)[:, None, None]
    image = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1).astype(np.uint8)
    for _ in range(rng.integers(3, 9)):
        overlay = image.copy()
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        size = int(rng.integers(8, max(9, min(width, height) // 3)))
        if rng.random() < 0.5:
            cv2.circle(overlay, center, size, _color(rng), -1, cv2.LINE_AA)
        else:
            cv2.rectangle(overlay, center, (center[0] + size, center[1] + size // 2), _color(rng),
                          -1)
        alpha = rng.uniform(0.2, 0.7)
        image = cv2.addWeighted(overlay, alpha, image, 1 - alpha, 0)
    noise = rng.normal(0, rng.uniform(2, 8), image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


class FaceModel:
    """One random face in the canonical frame: its parameters, landmarks and drawing.

    The geometry (eyelids, brows, the 28 points) is decided once, when the face is made; the
    landmarks and the drawing both read it, so they agree however often either is asked for.

    Args:
        rng: the random generator that decides everything about the face.
        frontal: face the viewer squarely (no yaw, level eyes), as the annotator's chart does.
        family: one of :data:`FAMILIES`, or None for the original style (neither).
    """

    def __init__(self, rng: np.random.Generator, frontal: bool = False,
                 family: str | None = None):
        self.rng = rng
        u = rng.uniform
        self.species = SPECIES[rng.integers(len(SPECIES))]
        self.yaw = u(-0.25, 0.25)
        self.chin_length = u(0.85, 1.15)
        # < 1: full cheeks down to a pointed chin (anime); 1: a straight V; > 1: hollow cheeks
        self.jaw_power = u(0.55, 1.1)
        self.jaw_roundness = None  # a pointed chin (see _jaw_depth); the animal family's is round
        self.eye_x, self.eye_y = u(0.38, 0.5), u(0.02, 0.18)
        self.eye_half_width = u(0.17, 0.25)
        self.eye_up, self.eye_down = u(0.16, 0.3), u(0.1, 0.2)
        self.eye_tilt = u(-0.04, 0.08)
        self.brow_gap, self.brow_arch = u(0.08, 0.18), u(0.02, 0.09)
        self.nose_y = u(0.36, 0.5)
        self.mouth_y, self.mouth_half_width = u(0.6, 0.76), u(0.07, 0.2)
        self.mouth_open = u(0.0, 0.14) if rng.random() < 0.5 else u(0.015, 0.03)
        self.smile = u(-0.03, 0.05)
        self.skin = _color(rng, 150, 255)
        self.hair = _color(rng)
        self.iris = _color(rng)
        self.outline = _shade(self.hair, 0.35)
        self.muzzle = False
        # a family redraws some proportions after the common ones, so that the original
        # style (family None) draws exactly what it always drew
        if family == 'human':
            self.species = 'human'
            self.jaw_power, self.chin_length = u(0.5, 0.75), u(0.95, 1.15)
            self.eye_half_width, self.eye_up = u(0.21, 0.27), u(0.24, 0.32)
            self.nose_y = u(0.38, 0.46)
            self.mouth_y, self.mouth_half_width = u(0.62, 0.72), u(0.05, 0.11)
        elif family == 'animal':
            # a round jaw whose chin is a gap below the lower lip (the muzzle reaches 0.12
            # below it): a chin length drawn on its own put the mouth below the chin
            self.jaw_roundness, chin_gap = u(1.7, 2.3), u(0.13, 0.2)
            self.eye_half_width = u(0.13, 0.18)
            self.eye_up = self.eye_down = u(0.12, 0.18)  # round eyes
            self.nose_y = u(0.44, 0.54)
            self.mouth_y, self.mouth_half_width = u(0.62, 0.72), u(0.14, 0.22)
            self.chin_length = self.mouth_y + self.mouth_open + 0.1 + chin_gap
            self.muzzle = True
        elif family is not None:
            raise SyntheticDataError(f'unknown family {family!r}; choose from '
                                     f'{", ".join(FAMILIES)}')
        if frontal:
            self.yaw, self.eye_tilt = 0.0, 0.0
        if family is not None:
            self._fit_jaw_to_mouth()
        self._build_geometry()

    # geometry -------------------------------------------------------------------------------

    def _jaw_depth(self, s: float) -> float:
        """How far down the jaw is at ``s`` (in [-1, 1]) as a share of the chin's depth: a
        power of ``1 - |s|``, with a kink (a point) at the chin whatever the power, or, for a
        round jaw, a superellipse, flat at the chin."""
        if self.jaw_roundness is None:
            return (1 - abs(s))**self.jaw_power
        return (1 - abs(s)**self.jaw_roundness)**(1 / self.jaw_roundness)

    def _jaw_point(self, s: float) -> np.ndarray:
        """Jaw curve from the left temple (s=-1) through the chin (s=0) to the right temple."""
        return np.array([s, -0.1 + self.chin_length * self._jaw_depth(s)])

    def _fit_jaw_to_mouth(self) -> None:
        """Lengthen the jaw where a mouth point lies less than :data:`_MOUTH_MARGIN` above it
        (a face that has the margin keeps its chin length, and draws as it did)."""
        for x, y in self._mouth().values():
            needed = (y + _MOUTH_MARGIN + 0.1) / self._jaw_depth(x)
            self.chin_length = max(self.chin_length, needed)

    def _mouth(self) -> dict[str, np.ndarray]:
        """The four mouth points by their schema names."""
        m = np.array([0.0, self.mouth_y]) + self._feature_shift(0.3)
        half = self.mouth_half_width
        return {'mouth_left': m + [-half, -self.smile], 'upper_lip': m,
                'mouth_right': m + [half, -self.smile], 'lower_lip': m + [0, self.mouth_open]}

    def _feature_shift(self, depth: float) -> np.ndarray:
        """How far the yaw moves a feature that stands ``depth`` in front of the face plane."""
        return np.array([self.yaw * depth, 0.0])

    def _eye(self, side: int) -> np.ndarray:
        """Six eyelid points of one eye (side -1: image-left, +1: image-right).

        Order: upper outer, upper top, upper inner, lower outer, lower bottom, lower inner.
        """
        jitter = self.rng.normal(0, 0.012, size=(6, 2))
        foreshorten = 1 - 0.6 * self.yaw * side  # the eye turned away looks narrower
        w = self.eye_half_width * foreshorten
        cx = side * self.eye_x + self.yaw * 0.25
        cy = self.eye_y
        outer, inner = side, -side  # the outer corner is towards the face side
        pts = np.array([
            [cx + outer * w, cy - self.eye_tilt],
            [cx + outer * 0.1 * w, cy - self.eye_up],
            [cx + inner * 0.95 * w, cy - 0.35 * self.eye_up],
            [cx + outer * 0.8 * w, cy + 0.45 * self.eye_down],
            [cx, cy + self.eye_down],
            [cx + inner * 0.75 * w, cy + 0.4 * self.eye_down],
        ])
        return pts + jitter

    def _brow(self, side: int, eye: np.ndarray) -> np.ndarray:
        """Three brow points, outer to inner."""
        top = eye[1, 1] - self.brow_gap
        outer = [eye[0, 0] + side * 0.05, top + 0.03 + self.rng.normal(0, 0.01)]
        middle = [(eye[0, 0] + eye[2, 0]) / 2, top - self.brow_arch]
        inner = [eye[2, 0] - side * 0.02, top + 0.02 + self.rng.normal(0, 0.01)]
        return np.array([outer, middle, inner])

    def _build_geometry(self) -> None:
        """Eyelids, brows and the 28 points, from the parameters and the eyes' jitter."""
        self.eye_l, self.eye_r = self._eye(-1), self._eye(+1)
        self.brow_l, self.brow_r = self._brow(-1, self.eye_l), self._brow(+1, self.eye_r)
        nose = np.array([0.0, self.nose_y]) + self._feature_shift(0.4)
        # each point by its schema name; the eye arrays are ordered upper outer, top, inner,
        # lower outer, bottom, inner; the brows outer, middle, inner
        eyelid = ('upper_outer', 'upper_top', 'upper_inner', 'lower_outer', 'lower_bottom',
                  'lower_inner')
        brow = ('outer', 'middle', 'inner')
        named = {
            **dict(zip(('temple_left', 'cheek_left', 'chin', 'cheek_right', 'temple_right'),
                       (self._jaw_point(s) for s in (-0.97, -0.6, 0.0, 0.6, 0.97)))),
            **{f'brow_left_{part}': p for part, p in zip(brow, self.brow_l)},
            **{f'brow_right_{part}': p for part, p in zip(brow, self.brow_r)},
            **{f'eye_left_{part}': p for part, p in zip(eyelid, self.eye_l)},
            **{f'eye_right_{part}': p for part, p in zip(eyelid, self.eye_r)},
            'nose_tip': nose,
            **self._mouth(),
        }
        self._points = np.array([named[name] for name in KEYPOINT_NAMES], dtype=np.float64)
        assert self._points.shape == (NUM_KEYPOINTS, 2)

    def landmarks(self) -> np.ndarray:
        """The 28 landmarks in the canonical frame, in the schema's order (a copy)."""
        return self._points.copy()

    # drawing --------------------------------------------------------------------------------

    def _draw_ears(self, cv: _Canvas) -> None:
        if self.species == 'human':  # human anime faces: hair, no animal ears
            return
        rng = self.rng
        inner_color = _shade((200, 170, 255), rng.uniform(0.8, 1.1))
        for side in (-1, 1):
            if self.species in ('cat', 'fox'):
                size = 0.55 if self.species == 'cat' else 0.75
                angle = math.radians(rng.uniform(30, 55)) * side
                base_c = np.array([math.sin(angle) * 0.95, -0.1 - math.cos(angle) * 0.95])
                normal = base_c - [0, -0.1]
                normal /= np.linalg.norm(normal)
                tangent = np.array([-normal[1], normal[0]])
                tip = base_c + normal * size * rng.uniform(0.9, 1.2) + tangent * side * 0.1
                outer = np.array([base_c - tangent * 0.32, tip, base_c + tangent * 0.32])
                cv.fill(outer, self.hair)
                inner = base_c + (outer - base_c) * 0.6
                cv.fill(inner, inner_color)
            elif self.species == 'rabbit':
                angle = math.radians(rng.uniform(5, 25)) * side
                length = rng.uniform(0.9, 1.3)
                center = np.array([side * 0.35 + math.sin(angle) * length,
                                   -0.9 - math.cos(angle) * length])
                pts = _ellipse(center, 0.2, length, n=40)
                rot = np.array([[math.cos(angle), -math.sin(angle)],
                                [math.sin(angle), math.cos(angle)]])
                cv.fill((pts - center) @ rot.T + center, self.hair)
                cv.fill(((pts - center) * [0.5, 0.8]) @ rot.T + center, inner_color)
            elif self.species == 'dog':
                center = np.array([side * 1.0, 0.2])
                cv.fill(_ellipse(center, 0.3, 0.65), _shade(self.hair, 0.8))
            else:  # bear
                center = np.array([side * 0.75, -0.85])
                cv.fill(_ellipse(center, 0.3, 0.3), self.hair)
                cv.fill(_ellipse(center, 0.16, 0.16), inner_color)

    def _face_outline(self) -> np.ndarray:
        jaw = np.array([self._jaw_point(s) for s in np.linspace(-1, 1, 41)])
        # from the right temple over the top of the head back to the left one
        cranium = _ellipse((0, -0.1), 1.0, 1.0, 0, -math.pi, n=40)[1:-1]
        return np.vstack([jaw, cranium])

    def _draw_eye(self, cv: _Canvas, eye: np.ndarray, side: int) -> None:
        upper = _bezier3(eye[0], eye[1], eye[2])
        lower = _bezier3(eye[3], eye[4], eye[5])
        sclera = np.vstack([upper, lower[::-1]])
        layer = cv.image.copy()
        sub = _Canvas(layer, cv.matrix, cv.unit)
        sub.fill(sclera, (250, 250, 250))
        center = eye[[1, 4]].mean(axis=0) + [self.rng.uniform(-0.03, 0.03), 0.02]
        half_h = (eye[4, 1] - eye[1, 1]) / 2
        iris_w = abs(eye[0, 0] - eye[2, 0]) * 0.33
        sub.fill(_ellipse(center, iris_w, half_h * 0.95), self.iris)
        sub.fill(_ellipse(center + [0, 0.02], iris_w * 0.5, half_h * 0.5), _shade(self.iris, 0.3))
        sub.fill(_ellipse(center + [-0.04, -half_h * 0.45], iris_w * 0.3, half_h * 0.2),
                 (255, 255, 255))
        mask = np.zeros(cv.image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [sub._fixed(sclera)], 255, cv2.LINE_AA, _SHIFT)
        alpha = (mask.astype(np.float32) / 255)[..., None]
        cv.image[:] = (layer * alpha + cv.image * (1 - alpha)).astype(np.uint8)
        cv.line(upper, self.outline, 0.06)
        lash = np.array([eye[0], eye[0] + [side * 0.08, -0.06]])
        cv.line(lash, self.outline, 0.04)
        cv.line(lower, self.outline, 0.025)

    def draw(self, cv: _Canvas) -> None:
        """Draw the whole character onto ``cv``."""
        rng = self.rng
        points = self._points
        self._draw_ears(cv)
        # long hair behind the head
        if rng.random() < 0.6:
            back = np.array([[-1.15, -0.3], [1.15, -0.3], [1.25, rng.uniform(0.8, 1.8)],
                             [-1.25, rng.uniform(0.8, 1.8)]])
            cv.fill(back, _shade(self.hair, 0.85))
        cv.fill(_ellipse((0, -0.12), 1.08, 1.06), self.hair)
        # neck and shoulders
        chin_y = points[KEYPOINT_INDEX['chin'], 1]
        cv.fill(np.array([[-0.35, chin_y - 0.3], [0.35, chin_y - 0.3], [0.4, chin_y + 0.5],
                          [-0.4, chin_y + 0.5]]), _shade(self.skin, 0.85))
        cv.fill(np.array([[-1.3, chin_y + 0.35], [1.3, chin_y + 0.35], [1.6, chin_y + 1.6],
                          [-1.6, chin_y + 1.6]]), _color(rng))
        outline = self._face_outline()
        cv.fill(outline, self.skin)
        jaw = np.array([self._jaw_point(s) for s in np.linspace(-1, 1, 41)])
        cv.line(jaw, _shade(self.skin, 0.55), 0.025)
        if self.muzzle:  # a lighter snout around nose and mouth
            nose = points[KEYPOINT_INDEX['nose_tip']]
            lower = points[KEYPOINT_INDEX['lower_lip']]
            center = (nose + lower) / 2
            cv.fill(_ellipse(center, self.mouth_half_width + 0.12,
                             (lower[1] - nose[1]) / 2 + 0.12), _shade(self.skin, 1.12))
        if rng.random() < 0.6:  # blush
            for side in (-1, 1):
                cv.fill(_ellipse((side * 0.5, points[KEYPOINT_INDEX['nose_tip'], 1] - 0.02),
                                 0.14, 0.05),
                        _shade((255, 150, 160), rng.uniform(0.9, 1.1)))
        self._draw_eye(cv, self.eye_l, -1)
        self._draw_eye(cv, self.eye_r, +1)
        for brow in (self.brow_l, self.brow_r):
            cv.line(_bezier3(*brow), _shade(self.hair, 0.5), rng.uniform(0.03, 0.06))
        nose = points[KEYPOINT_INDEX['nose_tip']]
        cv.line(np.array([nose + [-0.015, -0.07], nose]), _shade(self.skin, 0.5), 0.025)
        left, upper, right, lower = (points[KEYPOINT_INDEX[name]] for name in (
            'mouth_left', 'upper_lip', 'mouth_right', 'lower_lip'))
        upper_curve = _bezier3(left, upper, right)
        if self.mouth_open > 0.04:
            mouth = np.vstack([upper_curve, _bezier3(right, lower, left)])
            cv.fill(mouth, (60, 40, 140))
            cv.fill(_ellipse(lower - [0, self.mouth_open * 0.3], self.mouth_half_width * 0.4,
                             self.mouth_open * 0.25), (150, 130, 240))
            cv.line(mouth, self.outline, 0.02, closed=True)
        else:
            cv.line(upper_curve, self.outline, 0.025)
            cv.line(_bezier3(left * 0.3 + right * 0.7, lower, right * 0.3 + left * 0.7),
                    _shade(self.skin, 0.6), 0.015)
        self._draw_fringe(cv, points)

    def _draw_fringe(self, cv: _Canvas, points: np.ndarray) -> None:
        """Spiky bangs from the hairline down towards (rarely over) the brows."""
        brow_top = min(points[group_indices()['eyebrows'], 1]) - 0.04
        xs = np.linspace(-1.0, 1.0, int(self.rng.integers(5, 9)) * 2 + 1)
        tips = []
        for i, x in enumerate(xs):
            if i % 2:  # spike tip
                tips.append([x, brow_top - self.rng.uniform(0.0, 0.25)])
            else:
                tips.append([x, brow_top - self.rng.uniform(0.35, 0.5)])
        fringe = np.vstack([[[-1.02, -0.2]], tips, [[1.02, -0.2], [0.9, -0.9], [-0.9, -0.9]]])
        cv.fill(fringe, self.hair)


def render_face_image(rng: np.random.Generator, width: int, height: int,
                      family: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Draw one character on a random background.

    Args:
        rng: decides everything.
        width: image width in pixels.
        height: image height in pixels.
        family: a style family of :data:`FAMILIES` (default: the original style, neither).

    Returns:
        The BGR image, the (28, 2) landmarks in image pixels, and the species name.
    """
    image = _background(rng, width, height)
    face = FaceModel(rng, family=family)
    canonical = face.landmarks()
    unit = rng.uniform(0.16, 0.26) * min(width, height)
    angle = math.radians(rng.uniform(-25, 25))
    margin = 1.2 * unit
    center = (rng.uniform(margin, max(margin + 1, width - margin)),
              rng.uniform(margin * 1.1, max(margin * 1.1 + 1, height - margin * 0.9)))
    cos, sin = math.cos(angle) * unit, math.sin(angle) * unit
    matrix = np.array([[cos, -sin, center[0]], [sin, cos, center[1]]])
    cv = _Canvas(image, matrix, unit)
    face.draw(cv)
    if rng.random() < 0.1:  # monochrome, like manga pages
        grey = cv2.cvtColor(cv.image, cv2.COLOR_BGR2GRAY)
        cv.image[:] = grey[..., None]
    return cv.image, cv.map(canonical), face.species


def reference_face(size: int = 320, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """An upright, frontal character on a plain background, for the annotator's point chart.

    Returns:
        The BGR image ``(size, size, 3)`` and its (28, 2) landmarks in pixels.
    """
    face = FaceModel(np.random.default_rng(seed), frontal=True)
    image = np.full((size, size, 3), 245, np.uint8)
    unit = 0.28 * size
    cv = _Canvas(image, np.array([[unit, 0, size / 2], [0, unit, 0.46 * size]]), unit)
    face.draw(cv)
    return cv.image, cv.map(face.landmarks())


def make_synthetic_dataset(out_dir: str | os.PathLike, num_images: int, seed: int = 0,
                           min_size: int = 256, max_size: int = 384,
                           progress: bool = True, family: str | None = None,
                           workers: int = 1) -> list[Path]:
    """Write ``out_dir/images/*.png`` and one annotation JSON each in ``out_dir/landmarks/``.

    Image ``i`` depends only on ``(seed, i)``, so a set can be regenerated or extended in its
    folder, and ``workers`` processes write the same files as one. A folder that holds files of
    another set (another seed, family, image sizes or generator version, or more images than
    asked) is refused, not mixed: the settings are recorded there in :data:`SETTINGS_FILE`.

    Args:
        out_dir: destination folder (created).
        num_images: how many images.
        seed: base random seed.
        min_size: smallest image side in pixels.
        max_size: largest image side in pixels.
        progress: show a progress bar.
        family: draw only faces of this style family (:data:`FAMILIES`); default the original
            style, neither family.
        workers: processes drawing images (thousands of faces for a GPU's experiments); no
            more than there are images or usable cores are started.

    Returns:
        The annotation files written, in image order.

    Raises:
        SyntheticDataError: bad settings, or a folder of another set (one line).
    """
    if num_images <= 0:
        raise SyntheticDataError(f'num_images must be positive, got {num_images}')
    if not 32 <= min_size <= max_size <= MAX_DRAWN_SIDE:
        raise SyntheticDataError(f'need 32 <= min_size <= max_size <= {MAX_DRAWN_SIDE}, got '
                                 f'{min_size}, {max_size}')
    if workers < 1:
        raise SyntheticDataError(f'workers must be at least 1, got {workers}')
    problem = seed_problem(seed)
    if problem:
        raise SyntheticDataError(f'seed {problem}')
    # more processes than images or cores draw nothing sooner (100,000 asked forked 100,000)
    workers = min(workers, num_images, host_cpus())
    out_dir = Path(out_dir)
    _claim_folder(out_dir, num_images, dict(generator=GENERATOR_VERSION, seed=seed,
                                            family=family, min_size=min_size,
                                            max_size=max_size))
    draw = functools.partial(_write_synthetic_image, out_dir, seed=seed, min_size=min_size,
                             max_size=max_size, family=family)
    bar = functools.partial(tqdm, total=num_images, desc='synthetic faces', unit='img',
                            disable=not progress)
    if workers == 1:
        return list(bar(map(draw, range(num_images))))
    # fork where there is one: the children need nothing re-imported; spawn elsewhere
    context = multiprocessing.get_context(
        'fork' if 'fork' in multiprocessing.get_all_start_methods() else 'spawn')
    with context.Pool(workers, initializer=_leave_ctrl_c_to_the_parent) as pool:
        return list(bar(pool.imap(draw, range(num_images), chunksize=8)))


def _leave_ctrl_c_to_the_parent() -> None:
    """A drawing process ignores Ctrl+C, which the terminal sends to every process of the
    tool: the parent stops them (the pool ends with it) and says `interrupted` once, where each
    process printed its own traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _image_name(seed: int, index: int, family: str | None) -> str:
    return f'synthetic_{family + "_" if family else ""}{seed}_{index:05d}.png'


def _claim_folder(out_dir: Path, num_images: int, settings: dict) -> None:
    """Make ``out_dir``'s folders for a set drawn with ``settings``, refusing one that holds
    files of another set, remove the temporaries a killed run left there, and record the
    settings (before drawing: a run stopped halfway can be run again).

    Raises:
        SyntheticDataError: the folder holds other files, or files of unrecorded or other
            settings (one line, naming the way out: another folder).
    """
    names = {_image_name(settings['seed'], i, settings['family']) for i in range(num_images)}
    wanted = {'images': names, 'landmarks': {f'{Path(n).stem}.json' for n in names}}
    found = False
    for sub, expected in wanted.items():
        try:  # the hidden ones are temporaries of a stopped run (``new_temporary``'s)
            present = [e.name for e in os.scandir(out_dir / sub) if not e.name.startswith('.')]
        except FileNotFoundError:
            continue
        other = sorted(set(present) - expected)
        if other:
            raise SyntheticDataError(
                f'{out_dir} holds another synthetic set or other files ({sub}/{other[0]} is '
                f'not one of this set\'s {num_images}); write this set to another folder '
                f'(or delete that one first)')
        found = found or bool(present)
    record = out_dir / SETTINGS_FILE
    if found:
        unreadable = ''
        try:  # a regular file of a record's size (a FIFO would wait for a writer for good)
            recorded = json.loads(read_regular_file(record, SETTINGS_MAX_BYTES).decode('utf-8'))
        except AnnotationError as e:  # no regular file, too large: the message names it
            recorded, unreadable = None, first_line(e)
        except (OSError, ValueError, RecursionError):  # not UTF-8, not JSON
            recorded = None
        if recorded != settings:
            known = (f'cannot be read: {unreadable}' if unreadable else
                     f'are not recorded in {SETTINGS_FILE}: an earlier version made it'
                     if recorded is None else f'were {recorded}')
            raise SyntheticDataError(
                f'{out_dir} holds another synthetic set (its settings {known}; this one\'s '
                f'are {settings}); write this set to another folder (or delete that one first)')
    (out_dir / 'images').mkdir(parents=True, exist_ok=True)
    (out_dir / 'landmarks').mkdir(parents=True, exist_ok=True)
    # A killed run's half-written files, which no later run would replace: only those older
    # than STALE_TEMPORARY_AGE, as every tool removes them, since nothing here stops a second
    # run in the folder (no lock), and a young one may be its write in progress. images/ and
    # landmarks/ hold this set alone; beside them only the settings file is this tool's.
    remove_stale_temporaries(out_dir / 'images')
    remove_stale_temporaries(out_dir / 'landmarks')
    remove_stale_temporaries(out_dir, of=SETTINGS_FILE)
    write_json_atomic(record, settings)


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write a PNG whole or not at all (:func:`.annotation.write_bytes_atomic`)."""
    ok, data = cv2.imencode('.png', image)
    if not ok:
        raise OSError(f'could not encode {path}')
    write_bytes_atomic(path, data.tobytes())


def _write_synthetic_image(out_dir: Path, index: int, *, seed: int, min_size: int,
                           max_size: int, family: str | None) -> Path:
    """Draw and write image ``index`` of a set and its annotation; returns the annotation."""
    rng = np.random.default_rng([seed, index])
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    image, points, species = render_face_image(rng, width, height, family=family)
    name = _image_name(seed, index, family)
    _write_png(out_dir / 'images' / name, image)
    annotation = ImageAnnotation(
        image=name, width=width, height=height,
        faces=[Face(landmarks=[(float(x), float(y)) for x, y in points])],
        meta=dict(annotator='synthetic', source=dict(
            generator='animal_landmarks_mm.synthetic', seed=seed, index=index,
            species=species, **({'family': family} if family else {}))))
    path = out_dir / 'landmarks' / f'{Path(name).stem}.json'
    save_annotation(path, annotation)
    return path
