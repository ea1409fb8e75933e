"""The annotator app's behaviour in-process: display mapping, drawing, zoom, two tabs, broken
images and model-assisted annotation (the browser test drives the same code through Chromium)."""
import cv2
import gradio as gr
import numpy as np
import pytest
import torch

from animal_landmarks_mm.annotate import AnnotationSession
from animal_landmarks_mm.annotate_app import (
    Annotator,
    TabState,
    View,
    draw_points,
    reference_chart,
    zoom_crop,
)
from animal_landmarks_mm.annotation import load_annotation
from animal_landmarks_mm.export import export_checkpoint
from animal_landmarks_mm.infer import InferenceInputError, LandmarkPredictor
from animal_landmarks_mm.schema import GROUP_COLORS, LANDMARKS
from conftest import MAIN_CONFIG


@pytest.fixture
def folders(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in (('a.png', (300, 200)), ('b.png', (1200, 900)), ('c.png', (64, 64))):
        cv2.imwrite(str(images / name), rng.integers(0, 255, (h, w, 3), np.uint8))
    return images, tmp_path / 'out'


def _annotator(folders, predictor=None) -> Annotator:
    return Annotator(AnnotationSession(*folders, annotator='t'), predictor)


def _click(annotator: Annotator, state: TabState, x: float, y: float) -> str:
    """Click image pixel (x, y) where the tab shows it; returns the message line."""
    u, v = annotator.view(state).to_display([(x, y)])[0]
    return annotator.click(state, gr.SelectData(None, dict(index=[round(u), round(v)],
                                                           value=None)))[4]


def _open(annotator: Annotator, name: str) -> TabState:
    state = TabState()
    annotator.jump(state, name)
    return state


@pytest.mark.parametrize('size', [(300, 200), (1200, 900), (5000, 3000), (64, 64)])
def test_view_maps_shown_pixels_to_image_pixels(size):
    view = View.fit(0, 0, *size)
    assert 960 <= max(view.shown_width, view.shown_height) <= 1600
    points = np.array([(0.0, 0.0), (size[0] - 1, size[1] - 1), (17.25, 11.5)])
    back = np.array([view.to_image(u, v) for u, v in view.to_display(points)])
    assert np.allclose(back, points)
    if view.scale == (1.0, 1.0):
        assert view.to_image(5, 7) == (5, 7)


def test_zoomed_view_maps_into_the_crop():
    crop = zoom_crop((100, 120, 180, 200), 1200, 900)
    view = View.fit(*crop)
    assert crop[0] <= 100 and crop[0] + crop[2] >= 180 and view.shown_width >= 960
    x, y = view.to_image(*view.to_display([(140.5, 150.25)])[0])
    assert (x, y) == pytest.approx((140.5, 150.25))


def test_points_are_drawn_in_their_group_colours():
    picture = np.zeros((100, 100, 3), np.uint8)
    points = np.full((28, 2), np.nan)
    points[2] = (50, 50)  # the chin: contour
    draw_points(picture, [(points, [2] * 28)], current=0, numbers=False)
    assert tuple(picture[50, 50]) == GROUP_COLORS[LANDMARKS[2].group]
    assert reference_chart(12).shape[2] == 3


def test_click_save_and_reopen_through_the_handlers(folders):
    annotator = _annotator(folders)
    state = TabState()
    outputs = annotator.start(state)
    state = outputs[0]
    assert state.edit.image == 'a.png' and outputs[1].shape[1] == 960  # 300 px shown at 960
    for k in range(28):
        _click(annotator, state, 10 + 9 * k, 5 + 6 * k)
    saved = load_annotation(folders[1] / 'a.json')
    expected = np.array([(10 + 9 * k, 5 + 6 * k) for k in range(28)], float)
    assert np.abs(np.array(saved.faces[0].landmarks) - expected).max() <= 0.2
    # with the face complete, a click near a point picks it, the next moves it
    _click(annotator, state, 11, 6)
    assert state.edit.selected == 0
    _click(annotator, state, 40, 30)
    assert load_annotation(folders[1] / 'a.json').faces[0].landmarks[0] == \
        pytest.approx((40, 30), abs=0.2)


def test_zoom_on_the_face_keeps_clicks_exact(folders):
    annotator = _annotator(folders)
    state = _open(annotator, 'b.png')
    for k in range(5):
        _click(annotator, state, 500 + 40 * k, 400 + (k % 2) * 30)
    annotator.toggle_zoom(state)
    assert state.zoom is not None and annotator.view(state).scale[0] > 1
    _click(annotator, state, 555.5, 420.25)  # point 5, shown enlarged
    assert state.edit.current.points[5] == pytest.approx((555.5, 420.25), abs=0.1)
    annotator.toggle_zoom(state)
    assert state.zoom is None


def test_a_second_tab_cannot_overwrite_and_moving_on_keeps_the_work(folders):
    annotator = _annotator(folders)
    first, second = _open(annotator, 'a.png'), _open(annotator, 'a.png')
    _click(annotator, first, 10, 10)  # saved as a draft at once
    message = _click(annotator, second, 20, 20)
    assert message.startswith('**Not saved:**') and 'another tab' in message
    annotator.go(second, 1)  # refuses to move on and drop the point
    assert second.edit.image == 'a.png'
    annotator.reload(second)  # shows what the first tab saved
    assert second.edit.current.points[0] == pytest.approx((10, 10), abs=0.2)
    annotator.go(first, 1)
    reopened = _open(annotator, 'a.png')
    assert reopened.edit.current.points[0] == pytest.approx((10, 10), abs=0.2)


def test_a_broken_image_is_reported_not_fatal(folders):
    (folders[0] / 'broken.png').write_bytes(b'not a png')
    annotator = _annotator(folders)
    state = TabState()
    outputs = annotator.jump(state, 'broken.png')
    assert outputs[1] is None and 'broken.png' in outputs[4] and 'unreadable' in outputs[4]
    assert annotator.go(state, -1)[0].edit.image == 'b.png'


@pytest.fixture(scope='module')
def predictor(trained):
    return LandmarkPredictor(MAIN_CONFIG, trained[0] / 'epoch_1.pth')


def test_model_assisted_box_then_predict(folders, predictor):
    annotator = _annotator(folders, predictor)
    state = _open(annotator, 'b.png')
    annotator.draw_box(state)
    _click(annotator, state, 300, 200)
    message = _click(annotator, state, 700, 650)  # second corner: predicts at once
    assert message.startswith('predicted 28 points')
    assert state.edit.current.complete()
    saved = load_annotation(folders[1] / 'b.json').faces[0]
    assert saved.bbox == pytest.approx((300, 200, 700, 650), abs=0.5)
    expected = predictor.predict(cv2.imread(str(folders[0] / 'b.png')),
                                 np.array([saved.bbox], np.float32))
    assert np.allclose(saved.landmarks, expected.pred_instances.keypoints[0], atol=1e-3)


def test_anime_face_detector_layout_checkpoints_predict_the_same(trained, tmp_path, predictor):
    exported = export_checkpoint(trained[0] / 'epoch_1.pth', tmp_path / 'afd.pth')
    afd = LandmarkPredictor(MAIN_CONFIG, exported)
    image = np.random.default_rng(1).integers(0, 255, (200, 200, 3), np.uint8)
    box = np.array([[20, 20, 180, 180]], np.float32)
    assert np.allclose(afd.predict(image, box).pred_instances.keypoints,
                       predictor.predict(image, box).pred_instances.keypoints)
    torch.save({'backbone.conv1.weight': torch.zeros(1)}, tmp_path / 'other.pth')
    with pytest.raises(InferenceInputError, match='does not fit the model'):
        LandmarkPredictor(MAIN_CONFIG, tmp_path / 'other.pth')


def test_go_to_an_image_by_number_name_or_part_of_a_name(folders):
    annotator = _annotator(folders)
    state = _open(annotator, 'a.png')
    assert annotator.jump(state, '3')[0].edit.image == 'c.png'
    assert annotator.jump(state, 'b.png')[0].edit.image == 'b.png'
    assert annotator.jump(state, 'c')[0].edit.image == 'c.png'
    outputs = annotator.jump(state, 'zzz')
    assert state.edit.image == 'c.png' and "no image 'zzz'" in outputs[4]


def test_the_detected_box_of_the_current_face(folders):
    from animal_landmarks_mm.annotate_app import _box_for_face
    annotator = _annotator(folders)
    state = _open(annotator, 'b.png')
    boxes = np.array([[0, 0, 50, 50], [200, 200, 500, 500], [600, 100, 700, 200]], float)
    assert _box_for_face(boxes, state.edit) == (200, 200, 500, 500)  # the largest
    for k in range(28):
        state.edit.click(610 + k, 150)
    assert _box_for_face(boxes, state.edit) == (600, 100, 700, 200)  # around its points
    state.edit.new_face()
    state.edit.faces[0].points = [(250.0, 250.0)] * 28  # the large one is taken
    assert _box_for_face(boxes, state.edit) == (600, 100, 700, 200)


@pytest.mark.parametrize('args, error', [
    (['--image-dir', 'missing', '--output-dir', 'out'], 'image folder not found: missing'),
    (['--image-dir', '.', '--output-dir', 'out', '--checkpoint', 'x.pth'],
     '--checkpoint and --config go together'),
    (['--image-dir', '.', '--output-dir', 'out', '--face-detector', 'yolov3'],
     '--face-detector needs --face-detector-checkpoint and a landmark model'),
])
def test_cli_errors_are_one_line(tmp_path, args, error):
    from conftest import run_tool
    proc = run_tool('annotate_landmarks.py', *args, cwd=tmp_path, check=False)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1] == f'error: {error}'
