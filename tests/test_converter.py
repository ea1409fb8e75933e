"""tools/dataset.py and the converter: COCO output, splits, bad and hostile input."""
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from animal_landmarks_mm.annotation import Face, ImageAnnotation, save_annotation
from animal_landmarks_mm.converter import BOX_MARGIN, ConversionError, face_box
from animal_landmarks_mm.converter import convert as convert_folder
from animal_landmarks_mm.schema import ABSENT, OCCLUDED, VISIBLE
from conftest import run_tool


def _tree_digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


def _points(x0=20.0, y0=20.0):
    return [(x0 + (i % 7) * 5, y0 + (i // 7) * 6) for i in range(28)]


@pytest.fixture
def small_set(tmp_path):
    """Eight annotated 64x48 images; returns (image_dir, ann_dir)."""
    image_dir, ann_dir = tmp_path / 'images', tmp_path / 'ann'
    image_dir.mkdir()
    ann_dir.mkdir()
    for i in range(8):
        cv2.imwrite(str(image_dir / f'img{i}.png'), np.full((48, 64, 3), 50 + i, np.uint8))
        save_annotation(ann_dir / f'img{i}.json',
                        ImageAnnotation(f'img{i}.png', 64, 48, [Face(_points())]))
    return image_dir, ann_dir


def convert(image_dir, ann_dir, out, *ratios, **kwargs):
    train, val, test = ratios or (0.5, 0.25, 0.25)
    return convert_folder(ann_dir, image_dir, out, train_ratio=train, val_ratio=val,
                          test_ratio=test, progress=False, **kwargs)


def test_coco_output(small_set, tmp_path):
    image_dir, ann_dir = small_set
    face = Face(_points(), [VISIBLE] * 26 + [OCCLUDED, ABSENT],
                bbox=None)
    face.landmarks[27] = None
    save_annotation(ann_dir / 'img0.json', ImageAnnotation('img0.png', 64, 48, [
        face, Face(_points(1, 1), bbox=(0.0, 0.0, 40.0, 30.0))]))
    summary = convert(image_dir, ann_dir, tmp_path / 'out', seed=1)
    assert summary.counts == dict(train=4, val=2, test=2)
    merged = {'images': [], 'annotations': []}
    for split in ('train', 'val', 'test'):
        coco = json.loads((tmp_path / 'out' / 'annotations' / f'{split}.json').read_text())
        listing = (tmp_path / 'out' / f'{split}.txt').read_text().split()
        assert len(listing) == len(coco['images'])
        assert coco['categories'][0]['name'] == 'face'
        assert len(coco['categories'][0]['keypoints']) == 28
        merged['images'] += coco['images']
        merged['annotations'] += coco['annotations']
        for image in coco['images']:  # relative to the output dir, as the configs expect
            assert (tmp_path / 'out' / image['file_name']).resolve().is_file()
    assert len({im['id'] for im in merged['images']}) == 8  # ids unique across splits
    img0 = next(im for im in merged['images'] if im['file_name'].endswith('img0.png'))
    two = [a for a in merged['annotations'] if a['image_id'] == img0['id']]
    assert len(two) == 2  # multi-face image
    kpts = np.array(two[0]['keypoints']).reshape(28, 3)
    assert kpts[:26, 2].tolist() == [2] * 26 and kpts[26, 2] == 1 and kpts[27].tolist() == [0] * 3
    assert two[0]['num_keypoints'] == 27
    assert two[1]['bbox'] == [0.0, 0.0, 40.0, 30.0] and two[1]['area'] == 1200.0
    # the box from points: their extent plus BOX_MARGIN of it on each side
    xs, ys = kpts[:27, 0], kpts[:27, 1]
    w, h = xs.max() - xs.min(), ys.max() - ys.min()
    np.testing.assert_allclose(two[0]['bbox'], [xs.min() - BOX_MARGIN * w,
                                                ys.min() - BOX_MARGIN * h,
                                                w * (1 + 2 * BOX_MARGIN),
                                                h * (1 + 2 * BOX_MARGIN)], atol=1e-3)


def test_split_is_deterministic_and_independent_of_file_order(small_set, tmp_path):
    image_dir, ann_dir = small_set
    reversed_dir = tmp_path / 'ann_reversed'
    reversed_dir.mkdir()
    for path in sorted(ann_dir.iterdir(), reverse=True):  # other creation order
        shutil.copy(path, reversed_dir / path.name)
    convert(image_dir, ann_dir, tmp_path / 'a', seed=7)
    convert(image_dir, reversed_dir, tmp_path / 'b', seed=7)
    convert(image_dir, ann_dir, tmp_path / 'c', seed=8)
    splits = {k: [(tmp_path / k / f'{s}.txt').read_text() for s in ('train', 'val', 'test')]
              for k in 'abc'}
    assert splits['a'] == splits['b']
    assert splits['a'] != splits['c']
    assert sorted(''.join(splits['a']).split()) == sorted(p.name for p in ann_dir.iterdir())


def test_val_annotation_dir_is_the_validation_split(small_set, tmp_path):
    image_dir, ann_dir = small_set
    val_dir = tmp_path / 'val_ann'
    val_dir.mkdir()
    for i in (6, 7):
        (ann_dir / f'img{i}.json').rename(val_dir / f'img{i}.json')
    summary = convert(image_dir, ann_dir, tmp_path / 'out', 0.5, 0.25, 0.25,
                      val_annotation_dir=val_dir)
    # 6 files split train:test = 0.5:0.25, the val folder whole
    assert summary.counts == dict(train=4, val=2, test=2)
    assert (tmp_path / 'out' / 'val.txt').read_text().split() == ['img6.json', 'img7.json']


def _break(ann_dir: Path, image_dir: Path, case: str) -> str:
    """Damage img1 in one way; returns the expected reason."""
    path = ann_dir / 'img1.json'
    raw = json.loads(path.read_text())
    if case == 'broken_json':
        path.write_text(path.read_text()[:-20])
        return 'broken JSON'
    if case == 'wrong_count':
        raw['faces'][0]['landmarks'].pop()
        raw['faces'][0]['visibility'].pop()
        reason = 'face 0 has 27 landmarks, expected 28'
    elif case == 'nan':
        path.write_text(path.read_text().replace('[20.0, 20.0]', '[NaN, 20.0]', 1))
        return 'face 0 point 0 x is not finite'
    elif case == 'far_outside':
        raw['faces'][0]['landmarks'][5] = [500.0, 10.0]
        reason = 'face 0 point 5 (500, 10) is far outside the 64x48 image'
    elif case == 'image_missing':
        (image_dir / 'img1.png').unlink()
        return 'image not found'
    elif case == 'image_unreadable':
        (image_dir / 'img1.png').write_bytes(b'not a png at all')
        return 'image unreadable'
    elif case == 'size_mismatch':
        raw['image_size'] = dict(width=640, height=480)
        reason = 'image_size 640x480 does not match the image img1.png (64x48)'
    elif case == 'outside_image_dir':
        raw['image'] = '../../etc/passwd'
        reason = 'is outside the image folder'
    path.write_text(json.dumps(raw))
    return reason


BAD_CASES = ['broken_json', 'wrong_count', 'nan', 'far_outside', 'image_missing',
             'image_unreadable', 'size_mismatch', 'outside_image_dir']


@pytest.mark.parametrize('case', BAD_CASES)
def test_bad_file_is_left_out_with_a_one_line_reason(small_set, tmp_path, case):
    image_dir, ann_dir = small_set
    reason = _break(ann_dir, image_dir, case)
    before = _tree_digest(tmp_path)
    summary = convert(image_dir, ann_dir, tmp_path / 'out', seed=0)
    assert len(summary.problems) == 1
    problem = summary.problems[0]
    assert 'img1.json' in problem and reason in problem and '\n' not in problem
    assert sum(summary.counts.values()) == 7
    assert 'img1.json' not in ''.join((tmp_path / 'out' / f'{s}.txt').read_text()
                                      for s in ('train', 'val', 'test'))
    # inputs never modified
    after = {k: v for k, v in _tree_digest(tmp_path).items() if not k.startswith('out/')}
    assert after == before


@pytest.mark.parametrize('case', ['wrong_count', 'image_missing'])
def test_strict_turns_a_bad_file_into_a_failure(small_set, tmp_path, case):
    image_dir, ann_dir = small_set
    _break(ann_dir, image_dir, case)
    with pytest.raises(ConversionError, match='img1.json'):
        convert(image_dir, ann_dir, tmp_path / 'out', strict=True)
    assert not (tmp_path / 'out' / 'annotations').exists()


def test_cli_strict_error_and_summary(small_set, tmp_path):
    image_dir, ann_dir = small_set
    _break(ann_dir, image_dir, 'wrong_count')
    args = ['--annotation-dir', ann_dir, '--image-dir', image_dir, '--output-dir',
            tmp_path / 'out', '--no-progress']
    ok = run_tool('dataset.py', *args)
    assert '1 annotation files left out' in ok.stdout and 'img1.json' in ok.stdout
    bad = run_tool('dataset.py', *args, '--strict', check=False)
    assert bad.returncode != 0 and 'img1.json' in bad.stderr and 'Traceback' not in bad.stderr


@pytest.mark.parametrize('ratios, message', [
    (['0.7', '0.2', '0.2'], 'split ratios must sum to 1, got train 0.7 + val 0.2 + test 0.2'),
    (['1.2', '-0.1', '-0.1'], '--train-ratio must be between 0 and 1, got 1.2'),
    (['0.9', '0.09', '0.01'], 'the test split is empty'),
])
def test_cli_bad_ratios_are_one_line_errors(small_set, tmp_path, ratios, message):
    image_dir, ann_dir = small_set
    proc = run_tool('dataset.py', '--annotation-dir', ann_dir, '--image-dir', image_dir,
                    '--output-dir', tmp_path / 'out', '--train-ratio', ratios[0],
                    '--val-ratio', ratios[1], '--test-ratio', ratios[2], '--no-progress',
                    check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f'error: {message}'] or \
        message in proc.stderr.strip().splitlines()[-1]


def test_skipped_images_are_left_out_quietly(small_set, tmp_path):
    image_dir, ann_dir = small_set
    save_annotation(ann_dir / 'img2.json', ImageAnnotation(
        'img2.png', 64, 48, [], status='skipped', status_reason='no usable face'))
    summary = convert(image_dir, ann_dir, tmp_path / 'out')
    assert summary.problems == [] and len(summary.skipped_by_annotator) == 1
    assert sum(summary.counts.values()) == 7


def test_face_box_is_clipped_to_the_image():
    face = Face([(-3.0, -3.0)] + [(10.0, 10.0)] * 27)
    x, y, w, h = face_box(face, 12, 12)
    assert (x, y) == (0.0, 0.0) and x + w <= 12 and y + h <= 12
