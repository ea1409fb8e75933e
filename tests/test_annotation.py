"""The annotation file format: both schemas, validation, atomic writing."""
import json
import os

import pytest

from animal_landmarks_mm.annotation import (
    AnnotationError,
    Face,
    ImageAnnotation,
    load_annotation,
    parse_annotation,
    save_annotation,
    write_json_atomic,
)
from animal_landmarks_mm.schema import ABSENT, OCCLUDED, VISIBLE

POINTS = [(10.0 + i, 20.0 + i / 2) for i in range(28)]


def test_round_trip_keeps_everything(tmp_path):
    vis = [VISIBLE] * 28
    vis[3], vis[4] = OCCLUDED, ABSENT
    points = list(POINTS)
    points[4] = None
    ann = ImageAnnotation(
        image='a.png', width=64, height=48,
        faces=[Face(points, vis, bbox=(1.0, 2.0, 50.0, 40.0)), Face(list(POINTS))],
        meta=dict(annotator='me', source=dict(site='safebooru', post_id=1)))
    save_annotation(tmp_path / 'a.json', ann)
    loaded = load_annotation(tmp_path / 'a.json')
    assert loaded == ann
    raw = json.loads((tmp_path / 'a.json').read_text())
    assert raw['format'] == 'animal_landmarks_mm.annotation' and raw['version'] == 1


def test_legacy_format_is_one_visible_face():
    ann = parse_annotation(dict(image='x.jpg', landmarks=[list(p) for p in POINTS],
                                image_size=dict(width=100, height=80)))
    assert (ann.width, ann.height, len(ann.faces)) == (100, 80, 1)
    assert ann.faces[0].visibility == [VISIBLE] * 28
    assert ann.faces[0].landmarks == POINTS


@pytest.mark.parametrize('raw, reason', [
    ([], 'not a JSON object'),
    (dict(landmarks=[[0, 0]] * 28, image_size=dict(width=9, height=9)), 'missing "image"'),
    (dict(image='x', landmarks=[[0, 0]] * 28), 'missing "image_size"'),
    (dict(image='x', landmarks=[[0, 0]] * 27, image_size=dict(width=9, height=9)),
     'has 27 landmarks, expected 28'),
    (dict(image='x', landmarks=[[0, 0]] * 27 + [[float('nan'), 1]],
          image_size=dict(width=9, height=9)), 'point 27 x is not finite'),
    (dict(image='x', landmarks=[[0, 0]] * 27 + [['a', 1]],
          image_size=dict(width=9, height=9)), 'point 27 x is not a number'),
    (dict(image='x', landmarks=[[0, 0]] * 28, image_size=dict(width=0, height=9)),
     'image_size must be positive'),
    (dict(format='animal_landmarks_mm.annotation', version=7, image='x', faces=[],
          image_size=dict(width=9, height=9)), 'version 7 is not supported'),
    (dict(image='x', image_size=dict(width=9, height=9)), 'neither format'),
])
def test_bad_content_gives_a_one_line_reason(raw, reason):
    with pytest.raises(AnnotationError, match=reason) as info:
        parse_annotation(raw)
    assert '\n' not in str(info.value)


def test_load_names_the_file(tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"image": ')
    with pytest.raises(AnnotationError, match=r'broken\.json: broken JSON'):
        load_annotation(path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / 'a.json'
    write_json_atomic(path, dict(version='old'))
    with pytest.raises(TypeError):
        write_json_atomic(path, dict(version=object()))  # not serialisable: fails mid-write
    assert json.loads(path.read_text()) == dict(version='old')
    assert os.listdir(tmp_path) == ['a.json']  # no temporary file left behind


def test_image_size_follows_the_exif_orientation_like_mmcv(tmp_path):
    import mmcv
    from PIL import Image

    from animal_landmarks_mm.annotation import image_size
    path = tmp_path / 'sideways.jpg'
    image = Image.new('RGB', (200, 100))
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: shown rotated by 90 degrees
    image.save(path, exif=exif)
    height, width = mmcv.imread(str(path)).shape[:2]
    assert image_size(path) == (width, height) == (100, 200)
