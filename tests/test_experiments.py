"""The recipe experiments' runner: a real (tiny) learning-curve run, its JSON and picture."""
import json

import cv2

from animal_landmarks_mm.experiments import plot_transfer_curve
from conftest import run_tool


def test_a_tiny_learning_curve_runs_end_to_end(tmp_path):
    run_tool('recipe_experiments.py', 'learning-curve', '--out-dir', tmp_path, '--sizes', '4',
             '--val-faces', '3', '--iters', '2', '--batch-size', '2')
    results = json.loads((tmp_path / 'learning_curve.json').read_text())
    assert results['iters'] == 2 and [r['faces'] for r in results['runs']] == [4]
    run = results['runs'][0]
    assert run['validations'] and all(v['step'] in (1, 2) for v in run['validations'])
    assert run['best_NME'] == min(v['NME'] for v in run['validations']) > 0
    assert cv2.imread(str(tmp_path / 'learning_curve.png')) is not None


def test_the_transfer_picture_shows_both_curves(tmp_path):
    results = dict(pretrain_faces=800, target_faces=100, batch_size=8, device='CPU (2 cores)',
                   finetune=[dict(step=50, NME=0.08), dict(step=100, NME=0.05)],
                   scratch=[dict(step=50, NME=0.3), dict(step=100, NME=0.12)])
    plot_transfer_curve(results, tmp_path / 'transfer.png')
    assert cv2.imread(str(tmp_path / 'transfer.png')) is not None
