"""LandmarkMetric against hand-computed cases and against mmpose's own NME."""
import json

import numpy as np
import pytest
from mmpose.evaluation.metrics import NME

from animal_landmarks_mm import schema
from animal_landmarks_mm.metrics import (
    LandmarkMetric,
    MetricInputError,
    compute_landmark_metrics,
    failure_rate_and_auc,
)


def _face(eye_distance=100.0):
    """28 points with the outer eye corners (11, 19) exactly ``eye_distance`` apart."""
    rng = np.random.default_rng(1)
    points = rng.uniform(0, eye_distance, size=(28, 2))
    points[11], points[19] = [0.0, 50.0], [eye_distance, 50.0]
    return points


BOX = np.array([[0.0, 0.0, 200.0, 120.0]])  # longer side 200


def test_perfect_prediction_is_zero():
    gt = _face()[None]
    m = compute_landmark_metrics(gt, gt, np.full((1, 28), 2), BOX)
    assert m['NME'] == m['NME_box'] == m['FR@0.1'] == 0
    assert m['AUC@0.1'] == 1.0
    assert all(m[f'NME_point/{name}'] == 0 for name in schema.KEYPOINT_NAMES)


def test_known_shift_gives_known_nme():
    gt = _face(eye_distance=100.0)[None]
    pred = gt + [3.0, 4.0]  # 5 px everywhere
    m = compute_landmark_metrics(pred, gt, np.full((1, 28), 2), BOX)
    assert m['NME'] == pytest.approx(0.05)
    assert m['NME_box'] == pytest.approx(5 / 200)
    assert m['NME_eyes'] == pytest.approx(0.05) and m['FR@0.1'] == 0
    assert m['AUC@0.1'] == pytest.approx((0.1 - 0.05) / 0.1)


def test_one_group_off_shows_in_that_group_only():
    gt = _face()[None]
    pred = gt.copy()
    pred[0, 24:28] += [20.0, 0.0]  # the mouth 20 px off, eyes of 100 px
    m = compute_landmark_metrics(pred, gt, np.full((1, 28), 2), BOX)
    assert m['NME_mouth'] == pytest.approx(0.2)
    assert m['NME_eyes'] == m['NME_contour'] == 0
    assert m['NME'] == pytest.approx(0.2 * 4 / 28)
    assert m['NME_point/upper_lip'] == pytest.approx(0.2)


def test_absent_points_are_excluded_and_occluded_reported_apart():
    gt = _face()[None]
    pred = gt.copy()
    pred[0, 2] += [1000.0, 0]  # absent: a wild prediction must not count
    pred[0, 3] += [10.0, 0]  # occluded, 0.1 off
    visibility = np.full((1, 28), 2)
    visibility[0, 2], visibility[0, 3] = 0, 1
    m = compute_landmark_metrics(pred, gt, visibility, BOX)
    assert m['NME'] == pytest.approx(0.1 / 27)
    assert m['NME_occluded'] == pytest.approx(0.1) and m['NME_visible'] == 0
    assert m['occluded_points'] == 1 and 'NME_point/chin' not in m


def test_a_prediction_that_is_no_number_is_a_failure_not_a_point_left_out():
    """NaN points of a diverged model were left out as absent ones are: five of them lowered
    the NME, a face of nothing but NaN counted among faces without eye corners, FR 0
    (reviewer's metric_edge.py). On a counted point it is an infinite error; on an absent
    point it does not count, as any prediction there."""
    gt = np.stack([_face(), _face()])
    pred = gt.copy()
    pred[0, 3] = np.nan
    pred[1, 2, 0] = np.inf
    visibility = np.full((2, 28), 2)
    visibility[1, 2] = 0  # absent: its prediction is not looked at
    m = compute_landmark_metrics(pred, np.array(gt), visibility, np.repeat(BOX, 2, axis=0))
    assert m['NME'] == np.inf and m['NME_box'] == np.inf and m['FR@0.1'] == 0.5
    assert m['faces_without_eye_corners'] == 0
    assert m['NME_point/chin'] == 0  # point 2: absent in the face whose prediction is inf
    pred[0] = np.nan
    m = compute_landmark_metrics(pred, np.array(gt), visibility, np.repeat(BOX, 2, axis=0))
    assert m['FR@0.1'] == 0.5 and m['faces_without_eye_corners'] == 0


def test_failure_rate_and_auc_on_a_constructed_error_list():
    errors = np.array([0.0, 0.02, 0.05, 0.08, 0.12, 0.3])
    failure, auc = failure_rate_and_auc(errors)
    assert failure == pytest.approx(2 / 6)
    # area under the CED up to 0.1 = sum of (0.1 - e) over faces below 0.1, / N, / 0.1
    assert auc == pytest.approx((0.1 + 0.08 + 0.05 + 0.02) / 6 / 0.1)


def test_face_without_eye_corners_is_left_out_of_interocular_numbers():
    gt = np.stack([_face(), _face()])
    pred = gt + [1.0, 0]
    visibility = np.full((2, 28), 2)
    visibility[1, 11] = 0
    m = compute_landmark_metrics(pred, gt, visibility, np.repeat(BOX, 2, axis=0))
    assert m['faces_without_eye_corners'] == 1
    assert m['NME'] == pytest.approx(0.01)  # from face 0 alone
    assert m['NME_box'] == pytest.approx(1 / 200)  # the box still normalises both


def test_no_face_with_both_eye_corners_leaves_the_interocular_numbers_out():
    """Nothing to normalise inter-ocularly: NME, FR and AUC are left out (as a number with
    nothing to average always was), never NaN, which JSON cannot hold; the box NME stays."""
    gt = np.stack([_face(), _face()])
    visibility = np.full((2, 28), 2)
    visibility[0, 11] = visibility[1, 19] = 0
    m = compute_landmark_metrics(gt + [1.0, 0], gt, visibility, np.repeat(BOX, 2, axis=0))
    assert m['faces_without_eye_corners'] == 2
    for key in ('NME', 'FR@0.1', 'AUC@0.1', 'NME_eyes', 'NME_point/chin'):
        assert key not in m, key
    assert m['NME_box'] == pytest.approx(1 / 200)
    json.dumps(m, allow_nan=False)  # what metrics.json is written with
    assert failure_rate_and_auc(np.array([np.nan, np.nan])) == (None, None)


def _samples(rng, n=6):
    samples = []
    for _ in range(n):
        gt = _face(rng.uniform(40, 120))[None] + rng.uniform(0, 50, size=2)
        pred = gt + rng.normal(0, 3, size=gt.shape)
        visible = np.ones((1, 28))
        visible[0, rng.integers(0, 28, size=2)] = 0  # some absent points (never 11 or 19)
        visible[0, [11, 19]] = 1
        box = np.concatenate([gt[0].min(0), gt[0].max(0)])[None]
        samples.append(dict(pred_instances=dict(keypoints=pred),
                            gt_instances=dict(keypoints=gt, keypoints_visible=visible,
                                              bboxes=box)))
    return samples


@pytest.mark.parametrize('norm', ['interocular', 'box'])
def test_equals_mmpose_nme_where_the_definitions_coincide(norm):
    samples = _samples(np.random.default_rng(7))
    meta = dict(dataset_name='animal_character_face',
                keypoint_id2name=dict(enumerate(schema.KEYPOINT_NAMES)))
    if norm == 'interocular':
        theirs = NME(norm_mode='keypoint_distance', keypoint_indices=[11, 19])
        key = 'NME'
    else:
        theirs = NME(norm_mode='use_norm_item', norm_item='bbox_size')
        key = 'NME_box'
    ours = LandmarkMetric()
    for metric in (theirs, ours):
        metric.dataset_meta = meta
        metric.process([], samples)
    expected = theirs.compute_metrics(theirs.results)['NME']
    assert ours.compute_metrics(ours.results)[key] == pytest.approx(expected, rel=1e-12)


def test_a_sample_of_several_faces_is_a_one_line_error():
    """A bottom-up sample (one per image, all its faces) cannot be scored face by face: one
    line saying what the metric takes, not numpy's broadcasting error."""
    first, second = _samples(np.random.default_rng(3), n=2)
    merged = {part: {key: np.concatenate([first[part][key], second[part][key]])
                     for key in first[part]} for part in ('pred_instances', 'gt_instances')}
    merged['raw_ann_info'] = [  # as mmpose's bottom-up mode gives it: one dict per face
        dict(keypoints=np.concatenate([s['gt_instances']['keypoints'][0], np.full((28, 1), 2)],
                                      axis=1).ravel().tolist()) for s in (first, second)]
    metric = LandmarkMetric()
    with pytest.raises(MetricInputError) as info:
        metric.process([], [merged])
    assert 'one face per sample' in str(info.value) and '2 faces' in str(info.value)
    assert '\n' not in str(info.value)
