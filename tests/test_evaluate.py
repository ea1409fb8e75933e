"""tools/evaluate.py end to end on a tiny trained model."""
import json

import cv2
import numpy as np
import pytest

from animal_landmarks_mm.annotation import load_annotation, parse_annotation
from conftest import REPO, run_tool


def _nme_by_hand(ann_dir, predictions, names=None):
    """Inter-ocular NME over all points, and per face, computed here from the files alone."""
    errors, per_face = [], {}
    for pred in predictions:
        pred = parse_annotation(pred)
        gt = load_annotation(ann_dir / f'{pred.image.rsplit(".", 1)[0]}.json')
        for g, p in zip(gt.faces, pred.faces):
            g_pts, p_pts = np.array(g.landmarks), np.array(p.landmarks)
            eyes = np.hypot(*(g_pts[11] - g_pts[19]))
            e = np.hypot(*(p_pts - g_pts).T) / eyes
            errors += list(e)
            per_face[pred.image] = e.mean()
    return float(np.mean(errors)), per_face


@pytest.fixture(scope='module')
def evaluation(trained, coco_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('eval')
    work_dir, _ = trained
    proc = run_tool('evaluate.py', '--checkpoint', work_dir / 'epoch_1.pth',
                    '--image-dir', coco_dir / 'images', '--annotation-dir',
                    coco_dir / 'landmarks', '--split-file', coco_dir / 'test.txt',
                    '--output-dir', out, '--visualize', '--num-vis-samples', '2',
                    '--worst-first', '--compare', work_dir / 'best_NME_epoch_1.pth')
    return out, proc.stdout


def test_every_output_is_written(evaluation, coco_dir):
    out, stdout = evaluation
    for name in ('metrics.txt', 'metrics.json', 'predictions.json', 'ced.png'):
        assert (out / name).is_file(), name
    assert cv2.imread(str(out / 'ced.png')) is not None
    assert 'NME (inter-ocular, 11-19)' in stdout
    text = (out / 'metrics.txt').read_text()
    assert 'per group' in text and 'eye_right_upper_outer' in text
    predictions = json.loads((out / 'predictions.json').read_text())
    listed = (coco_dir / 'test.txt').read_text().split()
    assert len(predictions) == len(listed) == 3


def test_metrics_json_agrees_with_predictions(evaluation, coco_dir):
    out, _ = evaluation
    metrics = json.loads((out / 'metrics.json').read_text())
    predictions = json.loads((out / 'predictions.json').read_text())
    nme, per_face = _nme_by_hand(coco_dir / 'landmarks', predictions)
    assert metrics['NME'] == pytest.approx(nme, rel=1e-6)
    assert metrics['FR@0.1'] == pytest.approx(np.mean([v > 0.1 for v in per_face.values()]))
    # written metrics.txt shows the same number
    assert f'{metrics["NME"]:.4f}' in (out / 'metrics.txt').read_text()


def test_worst_first_pictures(evaluation, coco_dir):
    out, _ = evaluation
    pictures = sorted((out / 'visualizations').glob('*.jpg'))
    assert len(pictures) == 2
    _, per_face = _nme_by_hand(coco_dir / 'landmarks',
                               json.loads((out / 'predictions.json').read_text()))
    worst = max(per_face, key=per_face.get)
    assert pictures[0].name == f'000_{worst.rsplit(".", 1)[0]}.jpg'


def test_coco_file_input_gives_the_same_numbers(evaluation, trained, coco_dir, tmp_path):
    out, _ = evaluation
    work_dir, _ = trained
    run_tool('evaluate.py', '--checkpoint', work_dir / 'epoch_1.pth', '--ann-file',
             coco_dir / 'annotations' / 'test.json', '--output-dir', tmp_path,
             '--config', REPO / 'configs' /
             'td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py')
    ours = json.loads((tmp_path / 'metrics.json').read_text())
    before = json.loads((out / 'metrics.json').read_text())
    assert ours['NME'] == pytest.approx(before['NME'], rel=1e-9)
    assert ours['faces'] == before['faces']


def test_evaluate_bad_input(trained, tmp_path):
    proc = run_tool('evaluate.py', '--checkpoint', tmp_path / 'missing.pth', '--ann-file',
                    tmp_path / 'missing.json', '--output-dir', tmp_path / 'out', check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith('error: ')
    assert 'missing.json' in proc.stderr
