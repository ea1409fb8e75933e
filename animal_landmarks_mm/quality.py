"""Find likely labelling mistakes in a folder of annotation files (``tools/check_annotations.py``).

Every face of the folder is compared with the folder itself: no model is needed for the geometry
checks, only enough faces (:attr:`CheckSettings.min_faces`) for the set to say what is usual.

1. **Shape model.** The faces are aligned to a mean shape by weighted similarity transforms
   (rotation, scale, shift; no reflection) in a robust generalised Procrustes analysis: each
   face is fitted by iteratively reweighted least squares (Huber weights, so that a few wrong
   points do not drag the fit), the mean is the coordinate-wise median of the aligned faces,
   and the iteration repeats. Each face enters the mean as labelled or with left and right
   exchanged, whichever fits better, so mirrored faces (in any share) do not blur it; the
   mean's orientation is that of the annotator's chart face, where it starts ("left" is
   image-left), so that a set labelled the other way round shows as mirrored faces. The mean's
   eye line (points 11-19) is horizontal and one unit long: aligned coordinates are in
   inter-ocular distances (IOD). Each point then gets a robust 2x2 covariance of its residuals
   (reweighted, leaving out the set's own outliers, floored at
   :attr:`CheckSettings.min_sigma`); a point's *distance* is its Mahalanobis distance from the
   mean, in standard deviations (sigma) of the set. Absent points are left out everywhere;
   occluded points weigh half in the fits, and their deviations count
   :attr:`CheckSettings.occluded_sigma_factor` times less in every check (they are placed by
   estimate).
2. **Relabellings** (``mirrored face``, ``left/right swapped``, ``out of click order``). A fixed
   list of 99 relabellings of the 28 points (:func:`relabellings`) is tried on every face that
   has a point :attr:`CheckSettings.relabel_prefilter` sigma from the mean, each refitted from
   scratch: the mirror of every point (the face labelled from the wrong side); each left/right
   pair and each side-exchange of a whole group (brows, eyes, jaw); within each run of points
   clicked one after the other (jaw, each brow, each eye, mouth) every exchange of two points,
   every shift by one along three consecutive points (a point clicked late or early), upper and
   lower lid exchanged, outer and inner ends exchanged. The *energy* of a face is
   ``sum(rho(d))`` over its points, with the robust ``rho(d) = c**2 log(1 + d**2 / c**2)``
   (``c`` = :attr:`CheckSettings.robust_scale`): ``d**2`` for small distances, logarithmic for
   wild ones. A relabelling is reported when ``sqrt(energy before - energy after)`` reaches
   :attr:`CheckSettings.relabel_score`; the best one is applied and the search repeats (a face
   may hold two mistakes); the later checks look at the corrected face. A relabelling found
   after another is described in the corrected face's labels; its entry then says which
   correction it follows and which of the file's points those are (its ``points``).
3. **Point off the shape**: a point of the corrected face at least
   :attr:`CheckSettings.off_shape_sigma` sigma and :attr:`CheckSettings.off_shape_min_iod` IOD
   from the mean. A closed eye (a wink, ``^^`` eyes: each upper and lower lid partner closer
   than :attr:`CheckSettings.closed_eye_share` of the eye's width) is no mistake: its lid
   points are measured from the segment between the set's upper and lower lid, where a
   closed lid lies; the summary counts such faces in a note, no entry.
4. **Two points on one spot**: two points closer than :attr:`CheckSettings.duplicate_iod`, than
   :attr:`CheckSettings.duplicate_share` times the pair's
   :attr:`CheckSettings.duplicate_quantile` quantile over the set, and
   :attr:`CheckSettings.duplicate_sigma` robust sigma closer than the set's median for the
   pair: pairs that often meet in the set (closed lips, lid ends drawn as one) never qualify.
   The lid partners of a closed eye meet by right (and are left out of the set's measure);
   any other pair on one spot, in a closed eye or not, is reported. The outer eye corners
   (11 and 19) closer than :attr:`CheckSettings.collapsed_pixels` or
   :attr:`CheckSettings.duplicate_iod` (of the IOD the chart face's proportions give for the
   face's extent) are this finding whatever the set says: their distance is the unit of the
   mean shape, so such a face is not learnt from, and its other checks leave those two points
   out (which of them is wrong the set cannot say). A folder in which no face has them apart
   cannot be measured: the summary says so, and its entries are those faces (with any
   collapsed ones). Should the set's mean eye line still come out (next to) no length, the mean
   is sized by the chart face's proportions instead, with a note.
5. **Nose off the midline**: the nose tip's sideways position in the aligned frame, less what a
   robust regression over the set predicts from the face's midlines (the mean sideways position
   of the jaw's mirrored pairs and chin; of the brows', eyes' and mouth's pairs and lips): a
   face turned to 3/4 view shifts its nose legitimately, and its inner features with it. Reported
   at :attr:`CheckSettings.nose_sigma` robust sigma of the set and
   :attr:`CheckSettings.nose_min_iod` IOD.
6. **Far from the model's prediction** (with a checkpoint): each face predicted from its box
   (:func:`~.converter.face_box_xyxy`); a point whose distance from its prediction, in the
   face's IOD (from its alignment, as its own eye corners may be the mistake), is
   :attr:`CheckSettings.model_sigma` robust sigma beyond the set's median for that point and at
   least :attr:`CheckSettings.model_min_iod` IOD; in a set of fewer than
   :attr:`CheckSettings.min_faces` faces, every point beyond that floor.
7. **Points collapsed**: a face whose placed points all lie within
   :attr:`CheckSettings.collapsed_pixels` of one another (clicked on one spot) is this one
   finding and is left out of checks 1-5 and of the shape model: a shape of no size has no
   click order, side or midline. It needs no set; its score is that of the face shrunk to a
   point at the middle of the mean shape. A face with every point on exactly one spot is no
   finding: the file format refuses it (:func:`~.annotation.parse_annotation`), so its file
   is unusable, as a broken one, and is listed with them in the summary, not in the report.

Scores are in sigma of the set, through the same ``rho``: ``sqrt(sum(rho(d)))`` over the
points an entry names, ``d`` being each check's own measure in sigma (for the relabellings, the
square root of the energy they remove; for the model check in a small set, the distance in
units of its floor). They grow with both how far and how many points are wrong, are comparable
across the checks, and a mirrored face, whose every point is wrong, comes first.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .annotation import (
    AnnotationError,
    ImageAnnotation,
    read_image,
    write_json_atomic,
)
from .converter import AnnotationReader, face_box_xyxy
from .errors import AnimalLandmarksError, counted, printable
from .schema import (
    ABSENT,
    INTEROCULAR_INDICES,
    KEYPOINT_INDEX,
    KEYPOINT_NAMES,
    LANDMARKS,
    NUM_KEYPOINTS,
    OCCLUDED,
    click_runs,
    describe,
    flip_indices,
    group_indices,
)

REASON_MIRRORED = 'mirrored face'
REASON_LEFT_RIGHT = 'left/right swapped'
REASON_ORDER = 'out of click order'
REASON_OFF_SHAPE = 'point off the shape'
REASON_DUPLICATE = 'two points on one spot'
REASON_NOSE = 'nose off the midline'
REASON_MODEL = "far from the model's prediction"
REASON_COLLAPSED = 'points collapsed'
#: Every reason an entry can give, in the order the summary lists them.
REASONS = (REASON_COLLAPSED, REASON_MIRRORED, REASON_LEFT_RIGHT, REASON_ORDER, REASON_OFF_SHAPE,
           REASON_DUPLICATE, REASON_NOSE, REASON_MODEL)

NOSE_TIP = KEYPOINT_INDEX['nose_tip']
#: The model check measures a face without an aligned shape in its own eye line only when that
#: is at least this share of the inter-ocular distance its box suggests (a third of the box's
#: longer side; a face in profile keeps a third of its frontal eye line): else in the box's
MIN_EYE_LINE_OF_BOX = 0.1


class QualityCheckError(AnimalLandmarksError, ValueError):
    """The check cannot run (no folder, no usable faces, a model without its images)."""


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds of the checks; distances in standard deviations (sigma) of the set or in
    inter-ocular distances (IOD) of the mean shape. The defaults were measured on clean
    synthetic sets (see ``tests/test_check_annotations.py``).

    Attributes:
        min_faces: fewer usable faces than this: the set cannot say what is usual, the geometry
            checks are skipped (with a note).
        min_points: a face with fewer placed points is not checked.
        collapsed_pixels: a face whose placed points all lie within this many pixels of one
            another (across and down), not all on exactly one spot (an unusable file), is one
            finding, ``points collapsed``, and is left out of the other geometry checks: a
            shape of no size has no order, side or midline.
        min_sigma: floor of each point's standard deviation, in IOD (a set of near-identical
            faces must not turn a pixel of difference into an alarm).
        occluded_sigma_factor: occluded points are this much less certain than visible ones.
        robust_scale: ``c`` of the robust ``rho``, in sigma.
        relabel_score: report a relabelling that removes at least this score.
        relabel_prefilter: relabellings are tried on the faces with a point at least this far
            (sigma) from the mean only (a clean face's farthest point is 2.4 sigma away in the
            median, 3.6 in the 99th percentile), which keeps the search (99 refits per face)
            to a tenth of a clean set.
        max_relabellings: at most this many relabellings found per face.
        off_shape_sigma: report a point this far from the mean shape, in sigma ...
        off_shape_min_iod: ... and in IOD.
        duplicate_iod: two points are on one spot when they are closer than this (IOD), ...
        duplicate_quantile: ... closer than ``duplicate_share`` times this quantile of the
            pair's distances over the set, ...
        duplicate_share: (see ``duplicate_quantile``) ...
        duplicate_sigma: ... and at least this many robust sigma closer than the set's median
            for the pair: pairs that often meet in the set (closed lips, lid ends drawn as one)
            never qualify.
        closed_eye_share: an eye is closed (a wink, ``^^`` eyes: both lids drawn as one line)
            when each of its placed upper/lower lid partners (two at least) are closer than this
            share of the eye's width in the mean shape (an open eye's top and bottom are more
            than half its width apart); its partners are then no two points on one spot, and
            its lid points are off the shape only far from the segment between the set's
            upper and lower lid.
        nose_sigma: report a nose this many robust sigma off the midline the set predicts ...
        nose_min_iod: ... and at least this far (IOD).
        model_sigma: report a point this many robust sigma beyond the set's median distance
            from the model's prediction ...
        model_min_iod: ... and at least this far from it (IOD).
    """

    min_faces: int = 10
    min_points: int = 6
    collapsed_pixels: float = 1.0
    min_sigma: float = 0.01
    occluded_sigma_factor: float = 2.0
    robust_scale: float = 8.0
    relabel_score: float = 5.0
    relabel_prefilter: float = 3.0
    max_relabellings: int = 3
    off_shape_sigma: float = 6.0
    off_shape_min_iod: float = 0.1
    duplicate_iod: float = 0.03
    duplicate_quantile: float = 0.02
    duplicate_share: float = 0.5
    duplicate_sigma: float = 3.5
    closed_eye_share: float = 0.2
    nose_sigma: float = 6.0
    nose_min_iod: float = 0.08
    model_sigma: float = 5.0
    model_min_iod: float = 0.25


# relabellings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Relabelling:
    """A way the points of a face can have been labelled wrongly.

    Attributes:
        reason: one of :data:`REASONS`.
        order: the correction: label ``k`` of the corrected face is the point labelled
            ``order[k]`` in the file.
        points: the labels it moves.
        detail: one sentence for the report.
    """

    reason: str
    order: tuple[int, ...]
    points: tuple[int, ...]
    detail: str


def _swapped(pairs: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """The correction that exchanges the points of each pair."""
    order = list(range(NUM_KEYPOINTS))
    for i, j in pairs:
        order[i], order[j] = order[j], order[i]
    return tuple(order)


def _names(points: Sequence[int]) -> str:
    """``'5, 6, 7'``."""
    return ', '.join(str(i) for i in points)


def _partner_pairs(members: Sequence[int], a: str, b: str) -> list[tuple[int, int]]:
    """Pairs of ``members`` whose names differ by ``a`` -> ``b`` (e.g. 'upper' -> 'lower')."""
    pairs = []
    for i in members:
        name = KEYPOINT_NAMES[i]
        if a in name:
            partner = name.replace(a, b)
            if partner in KEYPOINT_INDEX and KEYPOINT_INDEX[partner] in members:
                pairs.append((i, KEYPOINT_INDEX[partner]))
    return pairs


def lid_pairs() -> dict[str, list[tuple[int, int]]]:
    """Each eye's lid partners, ``(upper, lower)`` (outer ends, inner ends, top and bottom),
    by click run (``'left eye'``...): the runs with more than one such pair."""
    pairs = {}
    for part, members in click_runs().items():
        lids = (_partner_pairs(members, 'upper', 'lower')
                + _partner_pairs(members, 'upper_top', 'lower_bottom'))
        if len(lids) > 1:
            pairs[part] = lids
    return pairs


def relabellings() -> list[Relabelling]:
    """The relabellings the checker tries (see the module docstring), each correction once."""
    flip = flip_indices()
    paired = tuple(i for i in range(NUM_KEYPOINTS) if flip[i] != i)
    found: dict[tuple[int, ...], Relabelling] = {}
    lids_of = lid_pairs()

    def add(reason: str, order: tuple[int, ...], detail: str) -> None:
        points = tuple(i for i in range(NUM_KEYPOINTS) if order[i] != i)
        if points and order not in found:
            found[order] = Relabelling(reason, order, points, detail)

    add(REASON_MIRRORED, tuple(flip),
        f'the whole face looks labelled from the wrong side: left and right exchanged '
        f'(points {_names(paired)})')
    for i in paired:
        if i < flip[i]:
            add(REASON_LEFT_RIGHT, _swapped([(i, flip[i])]),
                f'points {i} and {flip[i]} look exchanged ({LANDMARKS[i].description} / '
                f'{LANDMARKS[flip[i]].description})')
    for group, members in group_indices().items():
        pairs = [(i, flip[i]) for i in members if i < flip[i]]
        if len(pairs) > 1:
            add(REASON_LEFT_RIGHT, _swapped(pairs),
                f'the left and right {group} look exchanged (points '
                f'{_names(sorted(i for p in pairs for i in p))})')
    for part, members in click_runs().items():
        for k, i in enumerate(members):
            for j in members[k + 1:]:
                reason = REASON_LEFT_RIGHT if flip[i] == j else REASON_ORDER
                add(reason, _swapped([(i, j)]),
                    f'points {i} and {j} look exchanged ({LANDMARKS[i].description} / '
                    f'{LANDMARKS[j].description})')
        for k in range(len(members) - 2):
            a, b, c = members[k:k + 3]
            # clicked late: a's point was clicked after b's and c's (a, b, c got b, c, a)
            late, early = list(range(NUM_KEYPOINTS)), list(range(NUM_KEYPOINTS))
            late[a], late[b], late[c] = c, a, b
            early[a], early[b], early[c] = b, c, a
            add(REASON_ORDER, tuple(late),
                f'points {a}, {b}, {c} look clicked in the order {b}, {c}, {a} ({part}: point '
                f'{a} clicked late)')
            add(REASON_ORDER, tuple(early),
                f'points {a}, {b}, {c} look clicked in the order {c}, {a}, {b} ({part}: point '
                f'{c} clicked early)')
        lids = lids_of.get(part, [])
        if lids:
            add(REASON_ORDER, _swapped(lids),
                f'the upper and lower lid of the {part} look exchanged (points '
                f'{_names(sorted(i for p in lids for i in p))})')
        ends = _partner_pairs(members, 'outer', 'inner')
        if len(ends) > 1:
            add(REASON_ORDER, _swapped(ends),
                f'the outer and inner ends of the {part} look exchanged (points '
                f'{_names(sorted(i for p in ends for i in p))})')
    return list(found.values())


# geometry -----------------------------------------------------------------------------------

def _nan_median(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """``np.nanmedian`` without its warning for a column with no value (NaN there)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        return np.nanmedian(values, axis)


def _nan_quantile(values: np.ndarray, q: float, axis: int = 0) -> np.ndarray:
    """``np.nanquantile`` without its warning for a column with no value (NaN there)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        return np.nanquantile(values, q, axis=axis)


def _robust_rho(distance: np.ndarray, scale: float) -> np.ndarray:
    """``c**2 log(1 + d**2 / c**2)``: ``d**2`` for small distances, logarithmic for wild ones."""
    return scale ** 2 * np.log1p((distance / scale) ** 2)


def _fit_similarity(points: np.ndarray, weights: np.ndarray, target: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares similarity transform of ``points`` onto ``target``.

    Points are complex numbers ``x + iy``; a similarity is ``a * z + b`` with complex ``a``.

    Args:
        points: ``(..., K)`` complex.
        weights: ``(..., K)``; 0 leaves a point out.
        target: ``(K,)`` or ``(..., K)`` complex.

    Returns:
        The transformed points ``(..., K)`` and ``|a|`` ``(...)``, the scale from the points'
        units to the target's.
    """
    total = np.maximum(weights.sum(-1, keepdims=True), 1e-12)
    centre = (weights * points).sum(-1, keepdims=True) / total
    target_centre = (weights * target).sum(-1, keepdims=True) / total
    centred = points - centre
    spread = (weights * (centred.real ** 2 + centred.imag ** 2)).sum(-1, keepdims=True)
    a = (weights * (target - target_centre) * np.conj(centred)).sum(-1, keepdims=True)
    a = a / np.maximum(spread, 1e-12)
    return a * centred + target_centre, np.abs(a[..., 0])


def _chart_face() -> np.ndarray:
    """The annotator's chart face (frontal, upright) as complex points: the start of the mean
    shape, which fixes what "left" means."""
    from .synthetic import FaceModel
    points = FaceModel(np.random.default_rng(4), frontal=True).landmarks()
    return points[:, 0] + 1j * points[:, 1]


#: a mean shape whose eye line is shorter than this share of what the chart face's proportions
#: give for its size cannot be sized by it (see :func:`_normalise_mean`)
MIN_EYE_LINE_SHARE = 0.1


def _rms_size(shape: np.ndarray) -> float:
    """Root mean square distance of a shape's points from their centre (0: one spot)."""
    return float(np.sqrt(np.mean(np.abs(shape - shape.mean()) ** 2)))


def _normalise_mean(mean: np.ndarray, reference: np.ndarray | None = None
                    ) -> tuple[np.ndarray, bool]:
    """Centre, level the eye line and make it one unit long (the IOD unit).

    Args:
        mean: ``(K,)`` complex shape.
        reference: a shape already in IOD units (the chart face): where ``mean``'s eye line
            has (next to) no length (shorter than :data:`MIN_EYE_LINE_SHARE` of what the
            reference's proportions give for ``mean``'s size) or is not finite, ``mean`` is
            fitted onto the reference by a similarity instead (its unit is then the
            reference's eye line), or is the reference where it has no size itself. None:
            ``mean`` is taken as it is (the chart face itself).

    Returns:
        The shape, and whether it was sized by the reference (False: by its own eye line).
    """
    left, right = INTEROCULAR_INDICES
    mean = mean - mean.mean()
    eye_line = mean[right] - mean[left]
    if reference is None:
        return mean / eye_line, False  # divides by |eye line| and turns it onto +x
    size = _rms_size(mean)
    usable = (np.all(np.isfinite(mean)) and size > 0
              and abs(eye_line) >= MIN_EYE_LINE_SHARE * size / _rms_size(reference))
    if usable:
        return mean / eye_line, False
    if np.all(np.isfinite(mean)) and size > 0:
        fitted, _ = _fit_similarity(mean, np.ones(len(mean)), reference)
        if np.all(np.isfinite(fitted)) and _rms_size(fitted) > 0:
            return fitted, True
    return reference.copy(), True


@dataclass
class Alignment:
    """Faces aligned to a :class:`ShapeModel`.

    Attributes:
        aligned: ``(..., K)`` complex points in the mean shape's frame (IOD units).
        distance: ``(..., K)`` Mahalanobis distance of each point from the mean, in sigma
            (0 for absent points).
        scale: ``(...)`` image pixels -> IOD units.
    """

    aligned: np.ndarray
    distance: np.ndarray
    scale: np.ndarray


class ShapeModel:
    """The set's robust mean shape and each point's spread about it.

    Args:
        settings: the thresholds (the spread's floor, the weight of occluded points).
    """

    def __init__(self, settings: CheckSettings):
        self.settings = settings
        self.chart, _ = _normalise_mean(_chart_face())
        self.mean = self.chart.copy()
        #: the set's mean eye line had no length: the mean is sized by the chart face's
        self.sized_by_chart = False
        self.whitening = np.tile(np.eye(2) / 0.05, (NUM_KEYPOINTS, 1, 1))

    def distances(self, aligned: np.ndarray, visibility: np.ndarray,
                  target: np.ndarray | None = None) -> np.ndarray:
        """Mahalanobis distance of each point from the mean, or from ``target`` (points
        broadcast with ``aligned``) with the mean's spreads (0 where absent)."""
        residual = aligned - (self.mean if target is None else target)
        w = self.whitening
        dx = w[:, 0, 0] * residual.real + w[:, 0, 1] * residual.imag
        dy = w[:, 1, 0] * residual.real + w[:, 1, 1] * residual.imag
        distance = np.hypot(dx, dy)
        distance = np.where(visibility == OCCLUDED,
                            distance / self.settings.occluded_sigma_factor, distance)
        return np.where(visibility == ABSENT, 0.0, distance)

    def align(self, points: np.ndarray, visibility: np.ndarray,
              iterations: int = 5) -> Alignment:
        """Robust similarity alignment of faces onto the mean (IRLS, Huber weights).

        Args:
            points: ``(..., K)`` complex image points (anything where absent).
            visibility: ``(..., K)`` flags.
            iterations: reweighting rounds.
        """
        base = np.where(visibility == ABSENT, 0.0, np.where(visibility == OCCLUDED, 0.5, 1.0))
        points = np.where(visibility == ABSENT, 0, points)
        weights = base
        for _ in range(iterations):
            aligned, scale = _fit_similarity(points, weights, self.mean)
            distance = self.distances(aligned, visibility)
            weights = base * np.minimum(1.0, 2.0 / np.maximum(distance, 1e-9))
        aligned, scale = _fit_similarity(points, weights, self.mean)
        return Alignment(aligned, self.distances(aligned, visibility), scale)

    def fit(self, points: np.ndarray, visibility: np.ndarray, rounds: int = 6) -> None:
        """Fit the mean and the spreads to a set of faces: a generalised Procrustes analysis
        with coordinate-wise medians.

        Each face enters the mean as labelled or with left and right exchanged, whichever fits
        better, so that mirrored faces (in any share) do not blur it; the mean's own
        orientation is the chart's ("left" is image-left, as the schema says), so that a set
        labelled mostly the other way round shows as mirrored faces, not as the norm.

        Args:
            points: ``(N, K)`` complex image points.
            visibility: ``(N, K)`` flags.
            rounds: iterations.
        """
        flip = flip_indices()
        for k in range(rounds):
            aligned, oriented = self._align_either_way(points, visibility)
            masked = np.where(oriented != ABSENT, aligned, np.nan)
            mean = _nan_median(masked.real) + 1j * _nan_median(masked.imag)
            mean = np.where(np.isnan(mean), self.mean, mean)  # absent everywhere: chart's place
            if self._misfit(mean[flip]) < self._misfit(mean):
                mean = mean[flip]
            self.mean, self.sized_by_chart = _normalise_mean(mean, self.chart)
            if k >= 1:  # from the second round, spreads of the set rather than a guess
                self._fit_spreads(*self._align_either_way(points, visibility))

    def _align_either_way(self, points: np.ndarray, visibility: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Each face aligned as labelled or mirrored, whichever fits better: the aligned
        points and their visibility flags, in that face's better labelling."""
        flip = flip_indices()
        as_is = self.align(points, visibility)
        mirrored = self.align(points[:, flip], visibility[:, flip])
        scale = self.settings.robust_scale
        better = (_robust_rho(mirrored.distance, scale).sum(1)
                  < _robust_rho(as_is.distance, scale).sum(1))[:, None]
        return (np.where(better, mirrored.aligned, as_is.aligned),
                np.where(better, visibility[:, flip], visibility))

    def _misfit(self, shape: np.ndarray) -> float:
        """How badly a shape matches the chart face after the best similarity transform."""
        aligned, _ = _fit_similarity(shape, np.ones(NUM_KEYPOINTS), self.chart)
        return float(np.sum(np.abs(aligned - self.chart) ** 2))

    def _fit_spreads(self, aligned: np.ndarray, visibility: np.ndarray) -> None:
        """Each point's robust covariance: start from the median absolute deviations, keep the
        residuals within the 97.5 % ellipse, re-estimate, three times (consistency-corrected)."""
        floor = self.settings.min_sigma ** 2
        # chi2(2) 97.5 % quantile, and the factor that makes a truncated covariance consistent
        cutoff, consistency = 7.378, 1.104
        for k in range(NUM_KEYPOINTS):
            visible = visibility[:, k] != ABSENT
            residual = aligned[visible, k] - self.mean[k]
            if len(residual) < 3:
                continue
            xy = np.stack([residual.real, residual.imag], 1)
            sigma = 1.4826 * np.median(np.abs(xy - np.median(xy, 0)), 0)
            cov = np.diag(np.maximum(sigma ** 2, floor))
            for _ in range(3):
                inverse = np.linalg.inv(cov)
                d2 = np.einsum('ni,ij,nj->n', xy, inverse, xy)
                inliers = xy[d2 <= cutoff]
                if len(inliers) < 3:
                    break
                cov = consistency * (inliers.T @ inliers) / len(inliers)
                values, vectors = np.linalg.eigh(cov)
                cov = (vectors * np.maximum(values, floor)) @ vectors.T
            values, vectors = np.linalg.eigh(cov)
            self.whitening[k] = (vectors / np.sqrt(np.maximum(values, floor))) @ vectors.T


# findings -----------------------------------------------------------------------------------

@dataclass
class Finding:
    """One likely mistake in one face.

    Attributes:
        face: the face's index in the arrays given to :func:`find_mistakes`.
        reason: one of :data:`REASONS`.
        score: larger is more likely wrong (sigma of the set, see the module docstring).
        points: the labels concerned, as in the file.
        detail: one sentence.
    """

    face: int
    reason: str
    score: float
    points: list[int]
    detail: str


def _merge(findings: list[Finding]) -> list[Finding]:
    """One finding per (face, reason): points united, details joined, the scores added as the
    module docstring says (``sqrt`` of the summed ``rho``: each score is the root of its own
    sum), so that a face with two mistakes ranks above one with either."""
    merged: dict[tuple[int, str], Finding] = {}
    for f in findings:
        key = (f.face, f.reason)
        if key not in merged:
            merged[key] = Finding(f.face, f.reason, f.score, list(f.points), f.detail)
            continue
        m = merged[key]
        m.points = sorted(set(m.points) | set(f.points))
        m.detail = f'{m.detail}; {f.detail}'
        m.score = math.hypot(m.score, f.score)
    return list(merged.values())


def _energy(distance: np.ndarray, settings: CheckSettings) -> np.ndarray:
    """Each face's ``sum(rho(d))`` over its points (the last axis)."""
    return _robust_rho(distance, settings.robust_scale).sum(-1)


def _find_relabellings(model: ShapeModel, points: np.ndarray, visibility: np.ndarray,
                       candidates: list[Relabelling], settings: CheckSettings,
                       chunk: int = 2_000_000
                       ) -> tuple[np.ndarray, list[list[tuple[Relabelling, float, list[int]]]]]:
    """Greedy search of the best relabellings of each face.

    Returns:
        Each face's total correction ``(N, K)`` (label k of the corrected face is the point
        labelled ``order[k]`` in the file) and, per face, the relabellings found, in the order
        they were applied, with their scores and the file's labels of the points they move
        (the relabelling's ``points``, one by one, through the corrections found before it).
    """
    n = len(points)
    orders = np.array([c.order for c in candidates])  # (C, K)
    total = np.tile(np.arange(NUM_KEYPOINTS), (n, 1))
    found: list[list[tuple[Relabelling, float, list[int]]]] = [[] for _ in range(n)]
    todo = np.flatnonzero(model.align(points, visibility).distance.max(1)
                          >= settings.relabel_prefilter)
    for _ in range(settings.max_relabellings):
        if not len(todo):
            break
        current = np.take_along_axis(points[todo], total[todo], 1)
        current_vis = np.take_along_axis(visibility[todo], total[todo], 1)
        before = _energy(model.align(current, current_vis).distance, settings)
        best_gain = np.zeros(len(todo))
        best = np.full(len(todo), -1)
        step = max(1, chunk // (len(candidates) * NUM_KEYPOINTS))
        for start in range(0, len(todo), step):
            part = slice(start, start + step)
            tried = current[part][:, orders]  # (n, C, K)
            tried_vis = current_vis[part][:, orders]
            after = _energy(model.align(tried, tried_vis).distance, settings)
            gain = before[part, None] - after
            k = gain.argmax(1)
            best_gain[part] = gain[np.arange(len(k)), k]
            best[part] = k
        accepted = best_gain >= settings.relabel_score ** 2
        for face, k, gain in zip(todo[accepted], best[accepted], best_gain[accepted]):
            in_file = [int(total[face, label]) for label in candidates[k].points]
            found[face].append((candidates[k], math.sqrt(gain), in_file))
            total[face] = total[face][orders[k]]
        todo = todo[accepted]
    return total, found


def _relabelling_detail(relabel: Relabelling, in_file: list[int],
                        earlier: list[tuple[Relabelling, float, list[int]]]) -> str:
    """A relabelling's sentence for the report. A relabelling found after others names the
    labels of the face those corrected, which the file may give other labels (after a mirrored
    face, the left eye's are the file's right eye's): the sentence then says which correction
    it follows and which of the file's points it means, as the entry's ``points`` do.

    Args:
        relabel: the relabelling.
        in_file: the file's labels of ``relabel.points``, one by one.
        earlier: the face's relabellings applied before this one.
    """
    if list(relabel.points) == in_file:  # its points untouched by the earlier corrections
        return relabel.detail
    reasons = ' and '.join(dict.fromkeys(r.reason for r, _, _ in earlier))
    return (f'{relabel.detail}, once the {reasons} correction is made (points '
            f'{_names(relabel.points)} there are the file\'s {_names(in_file)})')


def _midline_offsets(aligned: np.ndarray, visibility: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sideways (x, aligned frame) position of the jaw's midline, of the inner features'
    midline (brows, eyes, mouth) and of the nose tip; NaN where a face lacks the points."""
    flip = flip_indices()
    groups = group_indices()
    present = visibility != ABSENT
    jaw, inner = [], []
    for i in range(NUM_KEYPOINTS):
        if i == NOSE_TIP or flip[i] < i:
            continue
        j = flip[i]
        x = np.where(present[:, i] & present[:, j], (aligned[:, i].real + aligned[:, j].real) / 2,
                     np.nan)
        (jaw if i in groups['contour'] else inner).append(x)

    def mean(columns: list[np.ndarray]) -> np.ndarray:
        """Each face's mean over the columns it has (NaN: none)."""
        stacked = np.stack(columns, 1)
        count = np.isfinite(stacked).sum(1)
        return np.where(count > 0, np.nansum(stacked, 1) / np.maximum(count, 1), np.nan)

    nose = np.where(present[:, NOSE_TIP], aligned[:, NOSE_TIP].real, np.nan)
    return mean(jaw), mean(inner), nose


def _robust_line(features: np.ndarray, target: np.ndarray, iterations: int = 10
                 ) -> np.ndarray:
    """Huber-reweighted least squares ``target ~ features @ beta``; returns the residuals."""
    weights = np.ones(len(target))
    residual = target - np.median(target)
    for _ in range(iterations):
        root = np.sqrt(weights)[:, None]
        beta, *_ = np.linalg.lstsq(features * root, target * root[:, 0], rcond=None)
        residual = target - features @ beta
        sigma = max(1.4826 * np.median(np.abs(residual - np.median(residual))), 1e-9)
        weights = np.minimum(1.0, 1.5 * sigma / np.maximum(np.abs(residual), 1e-12))
    return residual


def _nose_findings(aligned: np.ndarray, visibility: np.ndarray, settings: CheckSettings
                   ) -> dict[int, tuple[float, float, float]]:
    """Faces whose nose is off the midline: face -> (score, sigma, offset in IOD)."""
    jaw, inner, nose = _midline_offsets(aligned, visibility)
    jaw = np.where(np.isnan(jaw), inner, jaw)  # no jaw pair: the inner features' midline
    usable = np.isfinite(nose) & np.isfinite(inner)
    if usable.sum() < settings.min_faces:
        return {}
    features = np.stack([np.ones(usable.sum()), jaw[usable], inner[usable]], 1)
    residual = _robust_line(features, nose[usable])
    sigma = max(1.4826 * np.median(np.abs(residual - np.median(residual))), settings.min_sigma)
    z = np.abs(residual - np.median(residual)) / sigma
    faces = np.flatnonzero(usable)
    z = np.where(visibility[faces, NOSE_TIP] == OCCLUDED, z / settings.occluded_sigma_factor, z)
    result = {}
    for face, zi, offset in zip(faces, z, residual):
        if zi >= settings.nose_sigma and abs(offset) >= settings.nose_min_iod:
            score = math.sqrt(_robust_rho(zi, settings.robust_scale))
            result[int(face)] = (score, float(zi), float(offset))
    return result


def _closed_eyes(aligned: np.ndarray, visibility: np.ndarray, mean: np.ndarray,
                 settings: CheckSettings) -> tuple[np.ndarray, np.ndarray]:
    """The lid points of closed eyes, and where the set puts each point.

    An eye is closed (a wink, ``^^`` eyes: both lids drawn as one line) when at least two of
    its lid partners (:func:`lid_pairs`) are placed and each placed pair is closer than
    :attr:`CheckSettings.closed_eye_share` of the eye's width in the mean shape. A closed
    lid lies anywhere from where the set's upper lid is to where its lower lid is: its point's
    place is the nearest point of the segment between the mean's two partners.

    Args:
        aligned: ``(N, K)`` complex points in the mean shape's frame.
        visibility: ``(N, K)`` flags.
        mean: ``(K,)`` the mean shape.
        settings: thresholds.

    Returns:
        ``(N, K)`` True for each lid point of a closed eye; ``(N, K)`` complex: the mean, or
        for those points their place on the segment.
    """
    present = visibility != ABSENT
    closed = np.zeros(aligned.shape, bool)
    place = np.broadcast_to(mean, aligned.shape).copy()
    for lids in lid_pairs().values():
        eye = [k for pair in lids for k in pair]
        width = max(abs(mean[a] - mean[b]) for a in eye for b in eye)
        upper, lower = (np.array(side) for side in zip(*lids))
        placed = present[:, upper] & present[:, lower]
        together = np.abs(aligned[:, upper] - aligned[:, lower]) < settings.closed_eye_share * width
        shut = (placed.sum(1) >= 2) & np.all(together | ~placed, 1)
        for u, lo in lids:
            start, span = mean[u], mean[lo] - mean[u]
            for k in (u, lo):
                along = np.clip((np.conj(span) * (aligned[shut, k] - start)).real
                                / max(abs(span) ** 2, 1e-12), 0, 1)
                place[shut, k] = start + along * span
                closed[shut, k] = present[shut, k]
    return closed, place


def _duplicate_findings(aligned: np.ndarray, visibility: np.ndarray, closed: np.ndarray,
                        settings: CheckSettings
                        ) -> dict[int, list[tuple[int, int, float, float]]]:
    """Pairs of points on one spot: face -> [(i, j, distance in IOD, score)]. The lid
    partners of a closed eye (``closed``, from :func:`_closed_eyes`) meet by right: they are
    neither reported nor part of the set's measure of how often a pair meets (a few closed
    eyes would otherwise make every double click of top and bottom lid usual); any other pair
    of its points on one spot is still a double click."""
    present = visibility != ABSENT
    i, j = np.triu_indices(NUM_KEYPOINTS, 1)
    partners = {tuple(sorted(pair)) for lids in lid_pairs().values() for pair in lids}
    lid_partners = np.array([(a, b) in partners for a, b in zip(i, j)])
    distance = np.abs(aligned[:, i] - aligned[:, j])  # (N, pairs)
    met = lid_partners & closed[:, i] & closed[:, j]
    both = present[:, i] & present[:, j] & ~met
    masked = np.where(both, distance, np.nan)
    quantile = _nan_quantile(masked, settings.duplicate_quantile)
    median = _nan_median(masked)
    spread = np.maximum(1.4826 * _nan_median(np.abs(masked - median)), settings.min_sigma)
    limit = np.minimum(settings.duplicate_iod, settings.duplicate_share * quantile)
    z = (median - distance) / spread
    occluded = (visibility[:, i] == OCCLUDED) | (visibility[:, j] == OCCLUDED)
    z = np.where(occluded, z / settings.occluded_sigma_factor, z)
    close = both & (distance < limit) & (z >= settings.duplicate_sigma)
    result: dict[int, list[tuple[int, int, float, float]]] = {}
    for face, pair in zip(*np.nonzero(close)):
        score = math.sqrt(_robust_rho(z[face, pair], settings.robust_scale))
        result.setdefault(int(face), []).append(
            (int(i[pair]), int(j[pair]), float(distance[face, pair]), score))
    return result


def _collapsed_findings(points: np.ndarray, visibility: np.ndarray, faces: np.ndarray,
                        spans: np.ndarray, model: ShapeModel) -> list[Finding]:
    """One ``points collapsed`` finding per face of ``faces``. Its score is that of the face
    shrunk to a point at the middle of the mean shape (each placed point's distance from its
    place on the mean, in sigma, through ``rho``): every point wrong, as a mirrored face's."""
    findings = []
    for face in faces:
        placed = visibility[face] != ABSENT
        middle = np.full(NUM_KEYPOINTS, model.mean[placed].mean())
        distance = model.distances(middle, visibility[face])[placed]
        score = math.sqrt(_robust_rho(distance, model.settings.robust_scale).sum())
        findings.append(Finding(
            int(face), REASON_COLLAPSED, score, [int(k) for k in np.flatnonzero(placed)],
            f'its {int(placed.sum())} placed points lie within {spans[face]:.2f} pixels of '
            'one another: clicked on one spot'))
    return findings


def _eyes_on_one_spot(z: np.ndarray, placed: np.ndarray, spans: np.ndarray,
                      chart: np.ndarray, settings: CheckSettings) -> tuple[np.ndarray, np.ndarray]:
    """Faces whose outer eye corners (:data:`~.schema.INTEROCULAR_INDICES`) are on one spot:
    closer than :attr:`CheckSettings.collapsed_pixels`, or than
    :attr:`CheckSettings.duplicate_iod` of the inter-ocular distance the chart face's
    proportions give for the face's extent. Their eye line, the unit every check measures in,
    has no length: no eye, whatever its pose, has its corners there.

    Returns:
        ``(N,)`` True for those faces (both corners placed); ``(N,)`` the corners' distance
        in pixels.
    """
    left, right = INTEROCULAR_INDICES
    gap = np.abs(z[:, right] - z[:, left])
    extent = max(np.ptp(chart.real), np.ptp(chart.imag))  # in IOD
    with np.errstate(invalid='ignore'):  # the extent of a face without points: -inf
        limit = np.maximum(settings.collapsed_pixels, settings.duplicate_iod * spans / extent)
        met = placed[:, left] & placed[:, right] & (gap < limit)
    return met, gap


def _eye_findings(visibility: np.ndarray, faces: np.ndarray, gaps: np.ndarray,
                  model: ShapeModel) -> list[Finding]:
    """One ``two points on one spot`` finding per face of ``faces`` (outer eye corners on one
    spot, :func:`_eyes_on_one_spot`). Its score is that of both corners at the middle of the
    mean's eye line (each one's distance from its place on the mean, in sigma, through
    ``rho``): no set is needed, nor a size of the face."""
    left, right = INTEROCULAR_INDICES
    findings = []
    for face in faces:
        shrunk = model.mean.copy()
        shrunk[[left, right]] = (model.mean[left] + model.mean[right]) / 2
        distance = model.distances(shrunk, visibility[face])[[left, right]]
        score = math.sqrt(_robust_rho(distance, model.settings.robust_scale).sum())
        findings.append(Finding(
            int(face), REASON_DUPLICATE, score, [left, right],
            f'points {left} and {right} are {gaps[face]:.2f} pixels apart '
            f'({LANDMARKS[left].description} / {LANDMARKS[right].description}): the eye line, '
            'the unit the checks measure the face in, has no length'))
    return findings


@dataclass
class GeometryResult:
    """What :func:`find_mistakes` found, with what the model check needs.

    Attributes:
        findings: one per (face, reason).
        checked: which faces were checked (enough points, enough faces in the set).
        scale: image pixels -> IOD units of each checked face (NaN where not checked).
        notes: why checks were skipped.
    """

    findings: list[Finding]
    checked: np.ndarray
    scale: np.ndarray
    notes: list[str] = field(default_factory=list)


def find_mistakes(points: np.ndarray, visibility: np.ndarray,
                  settings: CheckSettings | None = None, *,
                  source: str = 'the set') -> GeometryResult:
    """The geometry checks (no model) on a set of faces.

    Args:
        points: ``(N, 28, 2)`` image pixels (anything for absent points).
        visibility: ``(N, 28)`` flags.
        settings: thresholds (default :class:`CheckSettings`).
        source: what the notes call the set (the folder).
    """
    settings = settings or CheckSettings()
    points = np.asarray(points, np.float64).reshape(-1, NUM_KEYPOINTS, 2)
    visibility = np.asarray(visibility).reshape(-1, NUM_KEYPOINTS)
    n = len(points)
    z = np.nan_to_num(points[..., 0]) + 1j * np.nan_to_num(points[..., 1])
    placed = visibility != ABSENT
    checked = placed.sum(1) >= settings.min_points
    # the extent of each face's placed points, across or down, whichever is larger
    spans = np.max([np.where(placed, v, -np.inf).max(1) - np.where(placed, v, np.inf).min(1)
                    for v in (z.real, z.imag)], 0)
    collapsed = np.flatnonzero(checked & (spans < settings.collapsed_pixels))
    shaped = checked.copy()
    shaped[collapsed] = False  # no size: no order, side or midline to judge, nor to learn from
    scale = np.full(n, np.nan)
    notes = []
    if n - checked.sum():
        notes.append(f'{counted(int(n - checked.sum()), "face")} with fewer than '
                     f'{settings.min_points} placed points not checked')
    model = ShapeModel(settings)
    # outer eye corners on one spot: the eye line is the unit of the mean shape, which such
    # faces would shrink to nothing (a set of them: NaN everywhere); they are a finding each
    # and are left out of the set's shape, against which they are still checked without those
    # two points (one of them is wrong, and which the set cannot say: kept, they were 'out of
    # click order' with a neighbour)
    eyes_met, gaps = _eyes_on_one_spot(z, placed, spans, model.chart, settings)
    eyes_met &= shaped
    eye_faces = np.flatnonzero(eyes_met)
    sized = shaped & ~eyes_met
    alone = sized.sum() < settings.min_faces  # too few faces to learn from
    if len(eye_faces):
        notes.append(f'{counted(len(eye_faces), "face")} with the outer eye corners (points '
                     f'{INTEROCULAR_INDICES[0]} and {INTEROCULAR_INDICES[1]}) on one spot: '
                     'listed as two points on one spot and not learnt from (the eye line is the '
                     'unit of the set\'s shape)' + ('' if alone else ', checked without those '
                                                    'points'))
    if alone:
        if len(eye_faces) and not sized.any():
            left, right = INTEROCULAR_INDICES
            notes.append(f'geometry checks skipped: no face in {source} has its outer eye '
                         f'corners (points {left} and {right}) apart, to measure the set in')
        else:
            notes.append(f'geometry checks skipped: {counted(int(sized.sum()), "usable face")}, '
                         f'fewer than {settings.min_faces} to learn what is usual from')
        # a collapsed face needs no set, nor do eye corners on one spot: scored against the
        # chart face's shape
        checked_alone = np.zeros(n, bool)
        checked_alone[collapsed] = True
        checked_alone[eye_faces] = True
        return GeometryResult(_collapsed_findings(z, visibility, collapsed, spans, model)
                              + _eye_findings(visibility, eye_faces, gaps, model),
                              checked_alone, scale, notes)
    index = np.flatnonzero(shaped)
    all_z, all_visibility = z, visibility
    z, visibility = z[index], visibility[index].copy()

    model.fit(z[~eyes_met[index]], visibility[~eyes_met[index]])
    visibility[np.ix_(eyes_met[index], INTEROCULAR_INDICES)] = ABSENT
    if model.sized_by_chart:
        notes.append(f'the set\'s mean eye line (points {INTEROCULAR_INDICES[0]} to '
                     f'{INTEROCULAR_INDICES[1]}) has next to no length: distances are in the '
                     'chart face\'s inter-ocular distances')
    total, found = _find_relabellings(model, z, visibility, relabellings(), settings)
    corrected = np.take_along_axis(z, total, 1)
    corrected_vis = np.take_along_axis(visibility, total, 1)
    alignment = model.align(corrected, corrected_vis)
    scale[index] = alignment.scale

    findings = _collapsed_findings(all_z, all_visibility, collapsed, spans, model)
    findings += _eye_findings(all_visibility, eye_faces, gaps, model)
    for face, relabels in enumerate(found):
        for k, (relabel, score, in_file) in enumerate(relabels):
            findings.append(Finding(int(index[face]), relabel.reason, score, sorted(in_file),
                                    _relabelling_detail(relabel, in_file, relabels[:k])))
    explained: dict[int, set[int]] = {}  # labels (corrected face) a more specific finding names
    for face, (score, sigma, offset) in _nose_findings(alignment.aligned, corrected_vis,
                                                      settings).items():
        side = 'image-right' if offset > 0 else 'image-left'
        findings.append(Finding(
            int(index[face]), REASON_NOSE, score, [int(total[face, NOSE_TIP])],
            f'the nose tip lies {abs(offset):.2f} inter-ocular distances {side} of where the '
            f'face\'s midline puts it ({sigma:.1f} sigma of the set)'))
        explained.setdefault(face, set()).add(NOSE_TIP)
    closed, expected = _closed_eyes(alignment.aligned, corrected_vis, model.mean, settings)
    if closed.any():
        faces_closed = int(closed.any(1).sum())
        notes.append(f'{counted(faces_closed, "face")} with an eye closed? (its upper and lower '
                     'lid points together): not counted as points on one spot or off the '
                     'shape')
    for face, pairs in _duplicate_findings(alignment.aligned, corrected_vis, closed,
                                           settings).items():
        for i, j, distance, score in pairs:
            a, b = sorted((int(total[face, i]), int(total[face, j])))
            findings.append(Finding(
                int(index[face]), REASON_DUPLICATE, score, [a, b],
                f'points {a} and {b} are {distance:.3f} inter-ocular distances apart '
                f'({LANDMARKS[a].description} / {LANDMARKS[b].description})'))
            explained.setdefault(face, set()).update((i, j))
    residual = np.abs(alignment.aligned - expected)
    sigma_off = model.distances(alignment.aligned, corrected_vis, expected)
    far = ((sigma_off >= settings.off_shape_sigma)
           & (residual >= settings.off_shape_min_iod) & (corrected_vis != ABSENT))
    for face in np.flatnonzero(far.any(1)):
        labels = [k for k in np.flatnonzero(far[face]) if k not in explained.get(face, ())]
        if not labels:
            continue
        score = math.sqrt(_robust_rho(sigma_off[face, labels], settings.robust_scale).sum())
        parts = [f'{describe(int(total[face, k]))} is {residual[face, k]:.2f} inter-ocular '
                 f'distances ({sigma_off[face, k]:.1f} sigma) from where the set puts '
                 'it' for k in labels]
        findings.append(Finding(int(index[face]), REASON_OFF_SHAPE, score,
                                sorted(int(total[face, k]) for k in labels), '; '.join(parts)))
    checked_all = np.zeros(n, bool)
    checked_all[index] = True
    checked_all[collapsed] = True
    checked_all[eye_faces] = True
    return GeometryResult(_merge(findings), checked_all, scale, notes)


def model_findings(points: np.ndarray, visibility: np.ndarray, predicted: np.ndarray,
                   iod_pixels: np.ndarray, settings: CheckSettings | None = None
                   ) -> list[Finding]:
    """Points far from a model's prediction (see the module docstring, check 6).

    Args:
        points: ``(N, 28, 2)`` labelled points, image pixels.
        visibility: ``(N, 28)`` flags.
        predicted: ``(N, 28, 2)`` the model's points.
        iod_pixels: ``(N,)`` each face's inter-ocular distance in pixels; a face whose
            distance is 0 or not finite has no unit to measure in and is left out.
        settings: thresholds.
    """
    settings = settings or CheckSettings()
    visibility = np.asarray(visibility)
    iod_pixels = np.asarray(iod_pixels, np.float64)
    sized = np.isfinite(iod_pixels) & (iod_pixels > 0)
    present = (visibility != ABSENT) & sized[:, None]
    distance = np.linalg.norm(np.nan_to_num(points) - predicted, axis=-1)
    distance = np.divide(distance, np.where(sized, iod_pixels, 1.0)[:, None])
    distance = np.where(present, distance, np.nan)
    with np.errstate(invalid='ignore'):
        far = present & (distance >= settings.model_min_iod)
    # a point placed in enough faces is measured against the set's spread of it; one placed
    # in fewer (whatever the set's size: a point placed in 2 faces of 50 was never flagged),
    # in units of the floor
    enough = (np.isfinite(distance).sum(axis=0) >= settings.min_faces)[None, :]
    median = _nan_median(distance)
    spread = np.maximum(1.4826 * _nan_median(np.abs(distance - median)), settings.min_sigma)
    evidence = np.where(enough, (distance - median) / spread, distance / settings.model_min_iod)
    threshold = np.where(enough, settings.model_sigma, 1.0)
    # an occluded point is placed by estimate: its evidence counts that much less, as its
    # sigma distances do in the geometry checks (whose floors in IOD stay as they are)
    evidence = np.where(visibility == OCCLUDED, evidence / settings.occluded_sigma_factor,
                        evidence)
    with np.errstate(invalid='ignore'):
        far &= evidence >= threshold
    findings = []
    for face in np.flatnonzero(far.any(1)):
        labels = np.flatnonzero(far[face])
        score = math.sqrt(_robust_rho(evidence[face, labels], settings.robust_scale).sum())
        worst = labels[np.argmax(distance[face, labels])]
        findings.append(Finding(
            int(face), REASON_MODEL, score, [int(k) for k in labels],
            f'{len(labels)} points far from the model\'s prediction, the farthest '
            f'{describe(int(worst))} at {distance[face, worst]:.2f} inter-ocular distances'))
    return findings


# folders ------------------------------------------------------------------------------------

@dataclass
class LabelledFace:
    """One face of the folder.

    Attributes:
        annotation: the annotation file, relative to the annotation folder (POSIX).
        image: the image, relative to the image folder (the file's ``image``).
        face: the face's index in its file.
        image_path: the image file; None when the folder is read without images.
        annotation_data: the whole file, parsed.
    """

    annotation: str
    image: str
    face: int
    image_path: Path | None
    annotation_data: ImageAnnotation


@dataclass
class FolderFaces:
    """The faces of a folder and the files that gave none."""

    faces: list[LabelledFace] = field(default_factory=list)
    files: int = 0
    problems: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


def default_image_dir(annotation_dir: str | os.PathLike) -> Path | None:
    """The project's layout (``data/x/landmarks`` and ``data/x/images``): the annotation
    folder's sibling ``images/``, if it exists; the sibling of the folder as named, not of
    where a link of that name leads (``data/x/landmarks -> /store/labels``: the images of
    ``data/x``, not ``/store/images``)."""
    candidate = Path(os.path.abspath(annotation_dir)).parent / 'images'
    return candidate if candidate.is_dir() else None


def read_faces(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike | None, *,
               include_predicted: bool = False, progress: bool = False) -> FolderFaces:
    """The faces of every usable annotation file of a folder (read recursively).

    With ``image_dir`` the files are validated against their images
    (:class:`~.converter.AnnotationReader`); without, only read and checked as files (the
    geometry needs no pixels). Skipped files, and unreviewed predictions unless
    ``include_predicted``, are left out; broken files are listed in ``problems``.

    Raises:
        QualityCheckError: the annotation folder or the image folder does not exist.
    """
    annotation_dir = Path(annotation_dir)
    if not annotation_dir.is_dir():
        raise QualityCheckError(f'annotation folder not found: {annotation_dir}')
    result = FolderFaces()
    if image_dir is not None and not Path(image_dir).is_dir():
        raise QualityCheckError(f'image folder not found: {image_dir}')
    contents = AnnotationReader(image_dir, include_predicted=include_predicted,
                                progress=progress).read(annotation_dir)
    result.problems = contents.problems
    result.left_out = contents.skipped + contents.predicted
    sources = [(r.name, r.image_path, r.annotation) for r in contents.records]
    result.files = len(sources) + len(result.problems) + len(result.left_out)
    for name, image_path, annotation in sources:
        for k in range(len(annotation.faces)):
            result.faces.append(LabelledFace(name, annotation.image, k, image_path, annotation))
    return result


def _face_arrays(faces: list[LabelledFace]) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 28, 2)`` points (NaN where absent) and ``(N, 28)`` visibility flags."""
    points = np.full((len(faces), NUM_KEYPOINTS, 2), np.nan)
    visibility = np.zeros((len(faces), NUM_KEYPOINTS), np.int64)
    for n, item in enumerate(faces):
        face = item.annotation_data.faces[item.face]
        visibility[n] = face.visibility
        for k, p in enumerate(face.landmarks):
            if p is not None and face.visibility[k] != ABSENT:
                points[n, k] = p
            else:
                visibility[n, k] = ABSENT
    return points, visibility


def predict_faces(faces: list[LabelledFace], *, checkpoint: str | os.PathLike,
                  config: str | os.PathLike | None = None, device: str = 'cpu',
                  progress: bool = False) -> tuple[np.ndarray, list[str]]:
    """A model's points for every face, predicted from its box.

    Returns:
        ``(N, 28, 2)`` points, NaN for the faces of an image that cannot be decoded (its header
        read, its pixels cut short: the model check leaves them out, the geometry keeps them),
        and one line per such image.

    Raises:
        QualityCheckError: a face read without its image.
        CheckpointError: a checkpoint that cannot be loaded.
    """
    from tqdm import tqdm

    from .infer import load_predictor
    predictor = load_predictor(checkpoint, config=config, device=device)
    predicted = np.full((len(faces), NUM_KEYPOINTS, 2), np.nan)
    unreadable = []
    by_image: dict[Path, list[int]] = {}
    for n, item in enumerate(faces):
        if item.image_path is None:
            raise QualityCheckError('the model check needs the images: give --image-dir')
        by_image.setdefault(item.image_path, []).append(n)
    for image_path, members in tqdm(by_image.items(), desc='model', unit='img',
                                    disable=not progress):
        try:
            image = read_image(image_path)
        except AnnotationError as e:
            unreadable.append(f'{e}: its faces left out of the model check')
            continue
        annotation = faces[members[0]].annotation_data
        boxes = np.array([face_box_xyxy(annotation.faces[faces[n].face], annotation.width,
                                        annotation.height) for n in members], np.float32)
        sample = predictor.predict(image, boxes)
        predicted[members] = np.asarray(sample.pred_instances.keypoints)[:, :, :2]
    return predicted, unreadable


@dataclass
class QualityReport:
    """What :func:`check_annotations` found.

    Attributes:
        entries: the report's JSON objects, worst first (see :meth:`entry` for the fields).
        faces: faces read; ``checked`` of them were checked.
        checked: faces the geometry checks covered.
        files: annotation files found.
        problems: files that could not be used, one line each: not checked, and not in the
            report (one entry names a face; the file may not even name its image).
        left_out: skipped files and unreviewed predictions.
        notes: checks skipped and why.
        seconds: time taken.
    """

    entries: list[dict]
    faces: int
    checked: int
    files: int
    problems: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Entries per reason, every reason listed."""
        counts = dict.fromkeys(REASONS, 0)
        for entry in self.entries:
            counts[entry['reason']] += 1
        return counts

    def flagged_faces(self) -> int:
        """How many faces have at least one entry."""
        return len({(e['annotation'], e['face']) for e in self.entries})

    def format_summary(self, top: int = 20) -> str:
        """The table printed by the tool: entries per reason, then the worst ``top``."""
        lines = [f'{counted(self.files, "annotation file")}, {counted(self.faces, "face")}, '
                 f'{self.checked} checked in {self.seconds:.1f} s: '
                 f'{counted(len(self.entries), "likely mistake")} in '
                 f'{counted(self.flagged_faces(), "face")}']
        width = max(len(r) for r in REASONS)
        lines += [f'  {reason:{width}s}  {count:6d}' for reason, count in self.counts().items()]
        lines += self.notes
        if self.left_out:
            lines.append(f'{counted(len(self.left_out), "file")} skipped in the annotator or '
                         'unreviewed predictions, not checked')
        if self.problems:
            lines.append(f'{counted(len(self.problems), "annotation file")} unusable, not '
                         'checked and not in the report:')
            lines += [f'  {p}' for p in self.problems]
        if self.entries and top > 0:
            shown = self.entries[:top]
            lines.append(f'worst {len(shown)}:')
            name_width = min(48, max(len(e['annotation']) for e in shown))
            lines.append(f'  {"score":>7s}  {"reason":{width}s}  {"annotation":{name_width}s}  '
                         'face  points')
            for e in shown:
                points = ','.join(str(p) for p in e['points'])
                lines.append(f'  {e["score"]:7.1f}  {e["reason"]:{width}s}  '
                             f'{e["annotation"]:{name_width}s}  {e["face"]:4d}  {points}')
        # names and reasons come from the files: no escape sequence reaches the terminal
        return printable('\n'.join(lines))

    def write(self, path: str | os.PathLike) -> None:
        """The entries as a JSON list (atomically).

        Raises:
            QualityCheckError: an entry with a score that is not a finite number (a fault of
                the checks: JSON has no NaN); nothing is written.
        """
        for e in self.entries:
            if not math.isfinite(e['score']):
                raise QualityCheckError(
                    f'{path} not written: the entry for {e["annotation"]} face {e["face"]} '
                    f'({e["reason"]}, points {_names(e["points"])}) has score {e["score"]}, '
                    'not a number JSON can hold (a fault of the checker: please report it)')
        write_json_atomic(path, self.entries)


def entry(face: LabelledFace, finding: Finding) -> dict:
    """A report entry: ``file`` (the image, relative to the image folder: what the annotator's
    ``--files`` visits), ``image`` (the same), ``annotation`` (the annotation file, relative to
    the annotation folder), ``face`` (index in the file), ``reason``, ``score``, ``points``
    (labels concerned), ``detail``."""
    return dict(file=face.image, image=face.image, annotation=face.annotation, face=face.face,
                reason=finding.reason, score=round(float(finding.score), 2),
                points=[int(p) for p in finding.points], detail=finding.detail)


def check_annotations(annotation_dir: str | os.PathLike,
                      image_dir: str | os.PathLike | None = None, *,
                      checkpoint: str | os.PathLike | None = None,
                      config: str | os.PathLike | None = None, device: str = 'cpu',
                      settings: CheckSettings | None = None, include_predicted: bool = False,
                      progress: bool = False) -> QualityReport:
    """Check every face of a folder; the report's entries are worst first.

    Args:
        annotation_dir: the folder of annotation files (read recursively).
        image_dir: the folder the files' ``image`` names are relative to; None: the annotation
            folder's sibling ``images/`` if there is one, else the files are read without
            images (fine for the geometry checks).
        checkpoint: a model to compare the labels with (needs the images).
        config: the model's config (None: the main config).
        device: where the model runs.
        settings: thresholds.
        include_predicted: check unreviewed predictions too.
        progress: show progress bars.

    Raises:
        QualityCheckError: a missing folder, no faces, a model without images.
        CheckpointError: a checkpoint that cannot be loaded.
    """
    started = time.perf_counter()
    settings = settings or CheckSettings()
    if image_dir is None:
        image_dir = default_image_dir(annotation_dir)
    if checkpoint is not None and image_dir is None:
        raise QualityCheckError(
            f'the model check needs the images: give --image-dir (no images/ folder next to '
            f'{annotation_dir})')
    folder = read_faces(annotation_dir, image_dir, include_predicted=include_predicted,
                        progress=progress)
    if not folder.faces:
        # the first reason says what is wrong when it is the same for all (the wrong images)
        first = f'; the first: {folder.problems[0]}' if folder.problems else ''
        images = f'images from {image_dir}' if image_dir is not None else 'without images'
        raise QualityCheckError(
            f'no usable faces in {annotation_dir}, read {images} ({folder.files} annotation '
            f'files, {len(folder.problems)} unusable, {len(folder.left_out)} skipped or '
            f'predicted){first}')
    points, visibility = _face_arrays(folder.faces)
    geometry = find_mistakes(points, visibility, settings, source=str(annotation_dir))
    findings = list(geometry.findings)
    if checkpoint is not None:
        predicted, unreadable = predict_faces(folder.faces, checkpoint=checkpoint, config=config,
                                  device=device, progress=progress)
        left, right = INTEROCULAR_INDICES
        own = np.linalg.norm(points[:, left] - points[:, right], axis=-1)
        boxes = [face_box_xyxy(f.annotation_data.faces[f.face], f.annotation_data.width,
                               f.annotation_data.height) for f in folder.faces]
        box_size = np.array([max(b[2] - b[0], b[3] - b[1]) for b in boxes]) / 3
        # the face's size from the whole shape where it was aligned: its own eye corners may
        # be the mistake; else its eye line, unless that is far shorter than its box says
        # (corners 0.6 px apart made every good point 60 IODs off, and 1e-153 px an infinite
        # score that lost the whole report); else the box's
        usable = np.isfinite(geometry.scale) & (geometry.scale > 0)
        with np.errstate(invalid='ignore'):
            own = np.where(own >= MIN_EYE_LINE_OF_BOX * box_size, own, box_size)
        iod = np.where(usable, 1 / np.where(usable, geometry.scale, 1.0), own)
        iod = np.where(np.isfinite(iod) & (iod > 0), iod, box_size)
        findings += model_findings(points, visibility, predicted, iod, settings)
        folder.problems += unreadable
    entries = [entry(folder.faces[f.face], f) for f in findings]
    entries.sort(key=lambda e: (-e['score'], e['annotation'], e['face'], e['reason']))
    return QualityReport(entries, faces=len(folder.faces), checked=int(geometry.checked.sum()),
                         files=folder.files, problems=folder.problems,
                         left_out=folder.left_out, notes=geometry.notes,
                         seconds=time.perf_counter() - started)
