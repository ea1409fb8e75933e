"""Landmark metrics that say what is wrong: NME variants, per group and point, FR and AUC.

Definitions (faces ``i``, points ``k``, error ``e_ik = |pred_ik - gt_ik|``):

- ``NME``: inter-ocular NME, ``e_ik / |gt_i,11 - gt_i,19|`` averaged over every labelled point
  of every face (mmpose's ``NME`` with ``keypoint_indices=[11, 19]``, to the last digit).
- ``NME_box``: the same normalised by the face box's longer side (mmpose's ``bbox_size``).
- ``NME_visible`` / ``NME_occluded``: inter-ocular NME over visible (flag 2) or occluded (flag 1,
  placed by estimate) points only. Absent points (flag 0) never count.
- ``NME_<group>`` and ``NME_point/<name>``: inter-ocular NME over one group / one point.
- ``FR@0.1``: share of faces whose own NME (mean over its points) exceeds 0.10.
- ``AUC@0.1``: area under the cumulative error distribution of the per-face NME from 0 to 0.10,
  divided by 0.10 (1 = every face perfect): exactly ``mean(max(0, 0.1 - nme_i)) / 0.1``.

Faces whose points 11 or 19 are absent, or on one spot (no distance to divide by), cannot be
normalised inter-ocularly and are left out of the inter-ocular numbers
(``faces_without_eye_corners`` counts them). A number with nothing to measure (no occluded
point; no face with both eye corners apart, for every inter-ocular number, FR and AUC included)
is left out of the result, never NaN: loggers want numbers and JSON has no NaN.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmpose.registry import METRICS

from .errors import AnimalLandmarksError
from .schema import ABSENT, INTEROCULAR_INDICES, KEYPOINT_NAMES, OCCLUDED, VISIBLE, group_indices

FAILURE_THRESHOLD = 0.1


class MetricInputError(AnimalLandmarksError, ValueError):
    """Samples the metric cannot score (not one face each)."""


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def landmark_errors(pred: np.ndarray, gt: np.ndarray, visibility: np.ndarray,
                    boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Per-point errors, normalised both ways.

    Args:
        pred: ``(N, 28, 2)`` predicted points.
        gt: ``(N, 28, 2)`` ground truth.
        visibility: ``(N, 28)`` flags of :data:`~.schema.VISIBILITY_FLAGS`.
        boxes: ``(N, 4)`` ground-truth face boxes ``x0, y0, x1, y1``.

    Returns:
        ``interocular`` and ``box``: ``(N, 28)`` normalised errors, NaN where not counted
        (absent points; for ``interocular`` also faces whose eye corners are absent or on one
        spot). A prediction that is no number (NaN, inf: a diverged model) on a counted point
        is an infinite error, never a point left out (the mean then says the model failed).
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    visibility = np.asarray(visibility)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    error = np.where(np.isfinite(pred).all(axis=-1), np.linalg.norm(pred - gt, axis=-1),
                     np.inf)
    labelled = visibility != ABSENT
    a, b = INTEROCULAR_INDICES
    interocular = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    has_eyes = labelled[:, a] & labelled[:, b] & (interocular > 0)
    box_size = np.max(boxes[:, 2:] - boxes[:, :2], axis=-1)
    with np.errstate(divide='ignore', invalid='ignore'):
        by_eyes = np.where(labelled & has_eyes[:, None], error / interocular[:, None], np.nan)
        by_box = np.where(labelled & (box_size[:, None] > 0), error / box_size[:, None], np.nan)
    return dict(interocular=by_eyes, box=by_box)


def per_face_nme(normalised: np.ndarray) -> np.ndarray:
    """Each face's own NME (mean over its counted points); NaN for a face with none."""
    counted = ~np.isnan(normalised)
    sums = np.where(counted, normalised, 0).sum(axis=1)
    with np.errstate(invalid='ignore'):
        return sums / counted.sum(axis=1)


def failure_rate_and_auc(face_nme: np.ndarray, threshold: float = FAILURE_THRESHOLD
                         ) -> tuple[float | None, float | None]:
    """WFLW's failure rate and CED AUC at ``threshold`` over per-face NMEs (NaN faces left
    out); None for both without a face to measure, as :func:`_mean` of nothing."""
    face_nme = face_nme[~np.isnan(face_nme)]
    if not face_nme.size:
        return None, None
    failure = float((face_nme > threshold).mean())
    auc = float(np.maximum(0.0, threshold - face_nme).mean() / threshold)
    return failure, auc


def compute_landmark_metrics(pred: np.ndarray, gt: np.ndarray, visibility: np.ndarray,
                             boxes: np.ndarray, per_point: bool = True) -> dict[str, float]:
    """All the numbers of the module docstring for N faces (see :func:`landmark_errors`)."""
    errors = landmark_errors(pred, gt, visibility, boxes)
    eyes, box = errors['interocular'], errors['box']
    visibility = np.asarray(visibility)
    metrics: dict[str, float | None] = {
        'NME': _mean(eyes[~np.isnan(eyes)]),
        'NME_box': _mean(box[~np.isnan(box)]),
        'NME_visible': _mean(eyes[(visibility == VISIBLE) & ~np.isnan(eyes)]),
        'NME_occluded': _mean(eyes[(visibility == OCCLUDED) & ~np.isnan(eyes)]),
    }
    for group, indices in group_indices().items():
        part = eyes[:, indices]
        metrics[f'NME_{group}'] = _mean(part[~np.isnan(part)])
    failure, auc = failure_rate_and_auc(per_face_nme(eyes))
    metrics[f'FR@{FAILURE_THRESHOLD:g}'] = failure
    metrics[f'AUC@{FAILURE_THRESHOLD:g}'] = auc
    if per_point:
        for k, name in enumerate(KEYPOINT_NAMES):
            column = eyes[:, k]
            metrics[f'NME_point/{name}'] = _mean(column[~np.isnan(column)])
    metrics['faces'] = float(len(eyes))
    metrics['faces_without_eye_corners'] = float(np.isnan(per_face_nme(eyes)).sum())
    metrics['occluded_points'] = float((visibility == OCCLUDED).sum())
    # None (nothing to average, e.g. no occluded point) is left out: loggers want numbers
    return {k: v for k, v in metrics.items() if v is not None}


@METRICS.register_module()
class LandmarkMetric(BaseMetric):
    """The metrics of :func:`compute_landmark_metrics` as an mmengine evaluator.

    Use it as ``val_evaluator`` / ``test_evaluator``; ``save_best='NME'`` works as with mmpose's
    ``NME`` metric, whose value it reproduces. Each sample is one face (``data_mode='topdown'``,
    as every config of the plugin has it): a bottom-up sample holds all the faces of an image,
    unmatched to the predictions, and is refused.

    Args:
        per_point: also report each point's NME (``NME_point/<name>``).
        collect_device: ``'cpu'`` or ``'gpu'``, for distributed collection.
        prefix: optional prefix of the metric names.
    """

    default_prefix = None

    def __init__(self, per_point: bool = True, collect_device: str = 'cpu',
                 prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.per_point = per_point

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each sample's face.

        Raises:
            MetricInputError: a sample of other than one face (bottom-up data).
        """
        for sample in data_samples:
            gt = sample['gt_instances']
            faces = len(gt['keypoints'])
            if faces != 1:
                raise MetricInputError(
                    f'{self.__class__.__name__} scores one face per sample (top-down data, '
                    f'data_mode="topdown"); a sample of {sample.get("img_path", "an image")} '
                    f'holds {faces} faces')
            raw = sample.get('raw_ann_info') or {}
            if 'keypoints' in raw:  # keep the annotation's flags (mmpose keeps 0 or 1 only)
                visibility = np.asarray(raw['keypoints'], np.float64).reshape(-1, 3)[:, 2][None]
            else:
                visibility = np.where(np.asarray(gt['keypoints_visible']).reshape(1, -1) > 0,
                                      VISIBLE, ABSENT)
            self.results.append(dict(
                pred=np.asarray(sample['pred_instances']['keypoints'])[:1],
                gt=np.asarray(gt['keypoints'])[:1],
                visibility=visibility.astype(int),
                box=np.asarray(gt['bboxes'])[:1]))

    def compute_metrics(self, results: list) -> dict[str, float]:
        MMLogger.get_current_instance().info(f'Evaluating {self.__class__.__name__}...')
        return compute_landmark_metrics(
            np.concatenate([r['pred'] for r in results]),
            np.concatenate([r['gt'] for r in results]),
            np.concatenate([r['visibility'] for r in results]),
            np.concatenate([r['box'] for r in results]), per_point=self.per_point)
