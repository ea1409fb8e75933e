"""ONNX export: one graph from crops to keypoints (flip test and DARK inside), run by
onnxruntime alone, giving mmpose's points.

The equality with mmpose is measured on a model whose heatmaps really peak (conftest's
``peaked_checkpoint``, see tests/peaked_model.py), and the test checks that before comparing.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from animal_landmarks_mm.schema import KEYPOINT_NAMES, NUM_KEYPOINTS, flip_indices
from conftest import MAIN_CONFIG, REPORT, run_tool

ort = pytest.importorskip('onnxruntime', reason='the ONNX export needs onnxruntime '
                          '(pip install onnx onnxruntime)')
onnx = pytest.importorskip('onnx', reason='the ONNX export needs onnx')

import cv2  # noqa: E402
import torch  # noqa: E402
from peaked_model import crops_of  # noqa: E402

from animal_landmarks_mm import onnx_predictor  # noqa: E402
from animal_landmarks_mm.onnx_export import (  # noqa: E402
    METADATA_KEYS,
    OPSET,
    build_graph,
    calibration_crops,
    export_onnx,
    quantize_int8,
)
from animal_landmarks_mm.onnx_predictor import (  # noqa: E402
    LandmarkInstances,
    LandmarkResult,
    NonFinitePredictionError,
    OnnxLandmarkPredictor,
    OnnxModelError,
    bbox_center_scale,
    crop_boxes,
    warp_matrix,
)

#: the equality asked of the ONNX graph against mmpose, in image pixels
TOLERANCE_PX = 0.05

@pytest.fixture(scope='module')
def cli_export(peaked_checkpoint, tmp_path_factory) -> tuple[Path, str]:
    """tools/export.py with an ``.onnx`` output (the format follows the suffix)."""
    out = tmp_path_factory.mktemp('onnx') / 'animal_face.onnx'
    proc = run_tool('export.py', peaked_checkpoint, out)
    return out, proc.stdout


def test_cli_export_writes_a_checked_graph_and_says_how_to_use_it(cli_export):
    out, stdout = cli_export
    assert out.is_file()
    assert f'opset {OPSET}' in stdout
    assert 'onnxruntime' in stdout and 'InferenceSession' in stdout
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out))
    assert {o.domain or 'ai.onnx': o.version for o in model.opset_import}['ai.onnx'] == OPSET
    [graph_input] = model.graph.input
    assert graph_input.name == 'crops'
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param == 'batch' and [d.dim_value for d in dims[1:]] == [256, 256, 3]
    assert [o.name for o in model.graph.output] == ['keypoints', 'scores']
    assert all(o.type.tensor_type.shape.dim[0].dim_param == 'batch' for o in model.graph.output)


def test_metadata_describes_the_graph_and_its_source(cli_export, peaked_checkpoint):
    from animal_landmarks_mm.annotation import file_sha256
    out, _ = cli_export
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert set(METADATA_KEYS) <= metadata.keys()
    assert json.loads(metadata['keypoint_names']) == list(KEYPOINT_NAMES)
    assert json.loads(metadata['flip_indices']) == flip_indices()
    assert json.loads(metadata['input_size']) == [256, 256]
    assert json.loads(metadata['mean']) == [123.675, 116.28, 103.53]
    assert json.loads(metadata['std']) == [58.395, 57.12, 57.375]
    assert json.loads(metadata['bbox_padding']) == 1.25
    assert json.loads(metadata['flip_test']) is True
    assert metadata['source_sha256'] == file_sha256(peaked_checkpoint)
    # the file's name, not the exporting machine's folders (a distributed file)
    assert metadata['source_checkpoint'] == peaked_checkpoint.name
    assert 'BGR' in metadata['input_format'] and 'uint8' in metadata['input_format']
    assert metadata['exported_by'].startswith('animal_landmarks_mm')


def test_function_export_gives_the_same_graph_as_the_cli(cli_export, peaked_checkpoint,
                                                         tmp_path):
    """The same graph; and what a killed export of the output left beside it is removed, when
    old enough to be no export at work (the folder's other files stay)."""
    import time

    from animal_landmarks_mm.annotation import STALE_TEMPORARY_AGE, new_temporary
    stale, young = new_temporary(tmp_path / 'again.onnx'), new_temporary(tmp_path / 'again.onnx')
    others = new_temporary(tmp_path / 'other.onnx')
    old = time.time() - 2 * STALE_TEMPORARY_AGE
    for path in (stale, others):
        os.utime(path, (old, old))
    out = export_onnx(peaked_checkpoint, tmp_path / 'again.onnx')
    assert sorted(tmp_path.iterdir()) == sorted([out, young, others])
    onnx.checker.check_model(str(out), full_check=True)
    crops = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    first = ort.InferenceSession(str(cli_export[0]), providers=['CPUExecutionProvider'])
    second = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    for a, b in zip(first.run(None, {'crops': crops}), second.run(None, {'crops': crops})):
        np.testing.assert_array_equal(a, b)


def test_batch_axis_is_dynamic_and_faces_are_independent(cli_export, peaked_scenes):
    session = ort.InferenceSession(str(cli_export[0]), providers=['CPUExecutionProvider'])
    image, boxes, _ = peaked_scenes[0]
    crops, _ = crops_of(image, np.concatenate([boxes, boxes + 4, boxes[:1] - 3]))
    assert len(crops) == 5
    keypoints, scores = session.run(None, {'crops': crops})
    assert keypoints.shape == (5, NUM_KEYPOINTS, 2) and scores.shape == (5, NUM_KEYPOINTS)
    assert keypoints.dtype == np.float32 and scores.dtype == np.float32
    for i in range(5):
        one_keypoints, one_scores = session.run(None, {'crops': crops[i:i + 1]})
        assert one_keypoints.shape == (1, NUM_KEYPOINTS, 2)
        np.testing.assert_allclose(one_keypoints[0], keypoints[i], atol=1e-3)
        np.testing.assert_allclose(one_scores[0], scores[i], atol=1e-5)


def test_crop_is_mmposes_topdown_affine():
    from mmpose.structures.bbox import bbox_xyxy2cs, get_warp_matrix
    rng = np.random.default_rng(1)
    for _ in range(20):
        x0, y0 = rng.uniform(-50, 500, 2)
        box = np.float32([x0, y0, x0 + rng.uniform(5, 400), y0 + rng.uniform(5, 400)])
        center, scale = bbox_xyxy2cs(box[None], padding=1.25)
        w, h = scale[0]
        scale = np.float32([[max(w, h), max(w, h)]])
        ours_center, ours_scale = bbox_center_scale(box[None], 1.25, 1.0)
        np.testing.assert_array_equal(ours_center, center)
        np.testing.assert_array_equal(ours_scale, scale)
        np.testing.assert_array_equal(warp_matrix(ours_center[0], ours_scale[0], (256, 256)),
                                      get_warp_matrix(center[0], scale[0], 0, (256, 256)))


def _boxes_to_compare(boxes: np.ndarray) -> np.ndarray:
    """The faces' boxes, shifted, grown and made wide: several per image, in one batch."""
    shifted = boxes + np.float32([3, -2, 5, 1])
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * np.float32([1.15, 1.05])
    grown = np.concatenate([centre - half, centre + half], axis=1)
    return np.concatenate([boxes, shifted, grown]).astype(np.float32)


def _clear_maxima(heatmaps: np.ndarray, radius: int = 2, margin: float = 0.02
                  ) -> tuple[float, float]:
    """How well defined the heatmaps' maxima are: the share of maps whose maximum beats
    everything farther than ``radius`` heatmap pixels from it by ``margin`` of its value (float
    noise is ~1e-6 of it), and the median maximum. A random model: ~60 % and 0.03; the
    fixture's: ~95 % and 0.4."""
    clear, flat = 0, heatmaps.reshape(-1, *heatmaps.shape[-2:])
    for heatmap in flat:
        y, x = np.unravel_index(heatmap.argmax(), heatmap.shape)
        peak = heatmap[y, x]
        away = heatmap.copy()
        away[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1] = -np.inf
        clear += bool(peak - away.max() >= margin * abs(peak))
    return clear / len(flat), float(np.median(flat.max(axis=(1, 2))))


def test_onnx_gives_mmposes_points_on_a_trained_model(cli_export, peaked_checkpoint,
                                                     peaked_scenes):
    from animal_landmarks_mm.infer import LandmarkPredictor
    mmpose_predictor = LandmarkPredictor(config=None, checkpoint=peaked_checkpoint)
    onnx_predictor = OnnxLandmarkPredictor(cli_export[0], providers=['CPUExecutionProvider'])
    graph = build_graph(mmpose_predictor.model)
    worst_px, worst_score, count = 0.0, 0.0, 0
    for image, boxes, points in peaked_scenes:
        compared = _boxes_to_compare(boxes)
        crops, _ = crops_of(image, compared)
        with torch.no_grad():
            heatmaps = graph.heatmaps(torch.from_numpy(crops)).numpy()
        # the comparison means something only where the maxima are well defined
        clear, median_peak = _clear_maxima(heatmaps)
        assert clear >= 0.9 and median_peak >= 0.2, \
            f'the fixture model\'s heatmaps are not peaked ({clear:.0%} clear, {median_peak:.2f})'
        expected = mmpose_predictor.predict(image, compared).pred_instances
        result = onnx_predictor.predict(image, compared).pred_instances
        assert result.keypoints.shape == (len(compared), NUM_KEYPOINTS, 2)
        assert result.keypoint_scores.shape == (len(compared), NUM_KEYPOINTS)
        # and the model is trained: its points are on the landmarks (mean within 3 px)
        assert np.linalg.norm(result.keypoints[:len(boxes)] - points, axis=-1).mean() < 3
        worst_px = max(worst_px, float(np.abs(result.keypoints - expected.keypoints).max()))
        worst_score = max(worst_score, float(np.abs(result.keypoint_scores
                                                    - expected.keypoint_scores).max()))
        count += len(compared)
    REPORT.append(f'ONNX vs mmpose on a trained model, {count} faces x {NUM_KEYPOINTS} points: '
                  f'max |dx|,|dy| {worst_px:.2e} px, max score difference {worst_score:.2e}')
    assert worst_px <= TOLERANCE_PX
    assert worst_score <= 1e-4


def test_a_picture_longer_than_opencvs_warp_takes_is_predicted(cli_export, peaked_checkpoint,
                                                                peaked_scenes, monkeypatch):
    """A webtoon strip of a side of 32,767 px or more: cv2.warpAffine refused it, and infer
    ended with a traceback there, the images after it never predicted (a hunt's repro). Each
    crop is made from the part of the picture it samples now: a face gives the points it gives
    in a picture of usual size; a box longer than the warp takes is shrunk first, alike in
    both predictors."""
    from animal_landmarks_mm.infer import LandmarkPredictor
    from animal_landmarks_mm.onnx_predictor import WARP_MAX_SIDE
    image, boxes, _ = peaked_scenes[0]
    height, width = image.shape[:2]
    top = 20_000
    strip = np.zeros((WARP_MAX_SIDE + 100, width, 3), np.uint8)
    strip[top:top + height] = image
    whole = np.float32([[0, 0, width, WARP_MAX_SIDE + 100]])
    predicted = []
    for predictor in (OnnxLandmarkPredictor(cli_export[0]),
                      LandmarkPredictor(None, peaked_checkpoint)):
        expected = predictor.predict(image, boxes).pred_instances.keypoints
        result = predictor.predict(strip, boxes + np.float32([0, top, 0, top])).pred_instances
        np.testing.assert_allclose(result.keypoints - np.float32([0, top]), expected, atol=0.05)
        assert np.allclose(result.bboxes, boxes + np.float32([0, top, 0, top]), atol=0.01)
        predicted.append(predictor.predict(strip, whole).pred_instances.keypoints)
        # no boxes: the whole picture (mmpose's rule), which mmpose's predictor cropped whole;
        # a box off the picture, as the API takes it: a crop of nothing of it
        np.testing.assert_array_equal(predictor.predict(strip, None).pred_instances.keypoints,
                                      predicted[-1])
        off = predictor.predict(strip, np.float32([[width + 10, 0, width + 60, 50]]))
        assert np.isfinite(off.pred_instances.keypoints).all()
    # a crop of the whole strip: flat heatmaps of no face, whose maxima may differ; the most
    # points alike all the same (both shrink the strip alike)
    assert np.isfinite(predicted[0]).all() and np.isfinite(predicted[1]).all()
    assert np.median(np.abs(predicted[0] - predicted[1])) < 1
    # the shrunk part, sampled as the warp samples the whole (on a smooth picture, where the
    # two differ by the shrink's averaging alone)
    rows, columns = np.mgrid[0:3000, 0:800]
    smooth = np.dstack([columns * 0.3 % 255, rows * 0.08 % 255,
                        (columns * 0.1 + rows * 0.05) % 255]).astype(np.uint8)
    center, scale = onnx_predictor.bbox_center_scale(np.float32([[0, 0, 800, 3000]]), 1.25, 1)
    matrix = onnx_predictor.warp_matrix(center[0], scale[0], (256, 256))
    expected = cv2.warpAffine(smooth, matrix, (256, 256), flags=cv2.INTER_LINEAR)
    monkeypatch.setattr(onnx_predictor, 'WARP_MAX_SIDE', 1000)  # a side of 3000: shrunk by 4
    assert np.abs(onnx_predictor.warp_crop(smooth, matrix, (256, 256)).astype(int)
                  - expected).mean() < 0.1


def test_predictor_on_an_image_file(cli_export, peaked_scenes, tmp_path):
    image, boxes, _ = peaked_scenes[0]
    path = tmp_path / 'two_faces.png'  # PNG: no EXIF orientation to apply
    assert cv2.imwrite(str(path), image)
    loaded = cv2.imread(str(path))
    predictor = OnnxLandmarkPredictor(cli_export[0])
    assert 'CPUExecutionProvider' in predictor.providers
    result = predictor.predict(loaded, boxes.tolist())
    instances = result.pred_instances
    assert isinstance(instances.keypoints, np.ndarray) and len(instances) == 2
    assert instances.keypoints.dtype == np.float32
    np.testing.assert_array_equal(instances.keypoints_visible, instances.keypoint_scores)
    inside = ((instances.keypoints >= boxes[:, None, :2] - 20)
              & (instances.keypoints <= boxes[:, None, 2:] + 20))
    assert inside.all()
    np.testing.assert_array_equal(instances.keypoints,
                                  predictor.predict(image, boxes).pred_instances.keypoints)
    whole = predictor.predict(loaded).pred_instances  # no boxes: the whole image, as mmpose
    np.testing.assert_array_equal(whole.bboxes, [[0, 0, image.shape[1], image.shape[0]]])
    predictor.draw(loaded, result, tmp_path / 'drawn.jpg')
    assert cv2.imread(str(tmp_path / 'drawn.jpg')).shape == image.shape
    with pytest.raises(OnnxModelError, match='uint8'):
        predictor.predict(loaded.astype(np.float32), boxes)
    # text, nothing or complex numbers for boxes, a picture of no pixel: one line (they were
    # a TypeError of numpy's isfinite, a ComplexWarning and a cv2.error)
    for image_given, boxes_given, message in (
            (loaded, np.array([['0', '0', '9', '9']]), "got shape (1, 4) <U1"),
            (loaded, np.array([[None] * 4]), 'got shape (1, 4) object'),
            (loaded, boxes.astype(np.complex64), 'got shape (2, 4) complex64'),
            (np.zeros((0, 0, 3), np.uint8), boxes, 'of some pixels, got (0, 0, 3) uint8')):
        with pytest.raises(OnnxModelError, match=re.escape(message)):
            predictor.predict(image_given, boxes_given)


def test_predictor_module_needs_neither_torch_nor_mmpose(cli_export, peaked_scenes, tmp_path):
    """Loaded with torch, mmpose, mmcv and mmengine made unimportable, as on a machine with
    onnxruntime only: the package imports without its mmpose registrations."""
    image, boxes, _ = peaked_scenes[0]
    np.save(tmp_path / 'image.npy', image)
    np.save(tmp_path / 'boxes.npy', boxes)
    script = textwrap.dedent(f'''
        import importlib.abc, sys
        BLOCKED = {{'torch', 'mmpose', 'mmcv', 'mmengine', 'mmdet', 'torchvision'}}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in BLOCKED:  # as if not installed
                    raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)

        sys.meta_path.insert(0, Block())
        import numpy as np
        from animal_landmarks_mm.onnx_predictor import OnnxLandmarkPredictor
        predictor = OnnxLandmarkPredictor({str(cli_export[0])!r})
        result = predictor.predict(np.load({str(tmp_path / 'image.npy')!r}),
                                   np.load({str(tmp_path / 'boxes.npy')!r}))
        np.save({str(tmp_path / 'keypoints.npy')!r}, result.pred_instances.keypoints)
        loaded = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)
        print('heavy modules:', loaded)
    ''')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'heavy modules: []' in proc.stdout
    expected = OnnxLandmarkPredictor(cli_export[0]).predict(image, boxes)
    np.testing.assert_array_equal(np.load(tmp_path / 'keypoints.npy'),
                                  expected.pred_instances.keypoints)


def test_broken_or_foreign_files_give_one_line_naming_the_file(tmp_path):
    broken = tmp_path / 'broken.onnx'
    broken.write_bytes(b'\x00not a model\xff' * 10)
    with pytest.raises(OnnxModelError) as caught:
        OnnxLandmarkPredictor(broken)
    assert str(broken) in str(caught.value) and '\n' not in str(caught.value)
    foreign = tmp_path / 'identity.onnx'
    node = onnx.helper.make_node('Identity', ['x'], ['y'])
    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], 'identity',
                                   [tensor('x', onnx.TensorProto.FLOAT, [1])],
                                   [tensor('y', onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid('', 17)]),
              str(foreign))
    with pytest.raises(OnnxModelError, match='not a landmark graph') as caught:
        OnnxLandmarkPredictor(foreign)
    assert str(foreign) in str(caught.value) and '\n' not in str(caught.value)
    with pytest.raises(OnnxModelError, match='no such'):
        OnnxLandmarkPredictor(tmp_path / 'missing.onnx')


def test_export_refuses_what_the_graph_cannot_express(tmp_path):
    checkpoint = tmp_path / 'not_a_checkpoint.pth'
    checkpoint.write_bytes(b'garbage')
    proc = run_tool('export.py', checkpoint, tmp_path / 'out.onnx', check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith('error:') and str(checkpoint) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'out.onnx').exists()
    config = tmp_path / 'udp.py'
    config.write_text(f'_base_ = [{str(MAIN_CONFIG)!r}]\n'
                      'model = dict(head=dict(decoder=dict(unbiased=False)))\n')
    from animal_landmarks_mm.checkpoints import CheckpointError
    with pytest.raises(CheckpointError, match='DARK'):
        export_onnx(checkpoint, tmp_path / 'out.onnx', config=config)
    # a box padding the predictor refuses (OnnxLandmarkPredictor's BBOX_PADDING_RANGE) is
    # never written into a graph
    config = tmp_path / 'wide.py'
    config.write_text(
        f'_base_ = [{str(MAIN_CONFIG)!r}]\n'
        "test_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImage'), "
        "dict(type='GetBBoxCenterScale', padding=20.0), "
        "dict(type='TopdownAffine', input_size=(256, 256)), dict(type='PackPoseInputs')]))\n")
    with pytest.raises(CheckpointError, match='ONNX export needs a GetBBoxCenterScale padding '
                       'from 0.5 to 10, not 20'):
        export_onnx(checkpoint, tmp_path / 'out.onnx', config=config)


def test_infer_and_evaluate_take_the_onnx_file(cli_export, peaked_scenes, tmp_path):
    """tools/infer.py and tools/evaluate.py with --checkpoint model.onnx: onnxruntime's points,
    no config; --rank refused (the graph averages the two passes it would compare)."""
    from animal_landmarks_mm.annotation import (
        Face,
        ImageAnnotation,
        load_annotation,
        save_annotation,
    )
    image, boxes, points = peaked_scenes[0]
    (tmp_path / 'images').mkdir()
    cv2.imwrite(str(tmp_path / 'images' / 'two.png'), image)
    (tmp_path / 'boxes.json').write_text(json.dumps({'two.png': boxes.tolist()}))
    proc = run_tool('infer.py', tmp_path / 'images', '--checkpoint', cli_export[0], '--boxes',
                    tmp_path / 'boxes.json', '--out-dir', tmp_path / 'out', '--config',
                    MAIN_CONFIG)
    assert '--config is not used' in proc.stdout + proc.stderr
    predicted = load_annotation(tmp_path / 'out' / 'annotations' / 'two.json')
    expected = OnnxLandmarkPredictor(cli_export[0]).predict(image, boxes).pred_instances
    assert predicted.status == 'predicted'
    # the graph holds its processing: no config was used, whatever --config said
    assert predicted.meta['prediction'] == dict(
        checkpoint=str(cli_export[0]), config=None, runtime='onnxruntime', boxes='boxes file',
        image_dir=str((tmp_path / 'images').resolve()))
    np.testing.assert_allclose([f.landmarks for f in predicted.faces], expected.keypoints,
                               atol=1e-3)
    proc = run_tool('infer.py', tmp_path / 'images', '--checkpoint', cli_export[0], '--rank',
                    '--out-dir', tmp_path / 'ranked', check=False)
    assert proc.returncode != 0 and 'error: --rank needs the plain and the mirrored pass' in \
        proc.stderr.strip().splitlines()[-1]
    save_annotation(tmp_path / 'truth' / 'two.json', ImageAnnotation(
        'two.png', image.shape[1], image.shape[0],
        [Face([tuple(map(float, p)) for p in face]) for face in points]))
    run_tool('evaluate.py', '--checkpoint', cli_export[0], '--image-dir', tmp_path / 'images',
             '--annotation-dir', tmp_path / 'truth', '--output-dir', tmp_path / 'eval')
    metrics = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    assert metrics['faces'] == 2 and metrics['NME'] < 0.1  # the peaked model knows these faces


def test_the_readmes_onnxruntime_example_runs_as_written(cli_export, peaked_scenes, tmp_path):
    """The README's onnxruntime-only example, run as it stands there (on a face the model
    knows, at the paths it names): the points of OnnxLandmarkPredictor, whose crop is mmpose's
    to the last bit, within a hundredth of a pixel."""
    readme = (Path(__file__).resolve().parent.parent / 'README.md').read_text()
    section = readme.split('With onnxruntime alone:', 1)[1]
    code = section.split('```python\n', 1)[1].split('```', 1)[0]
    image, boxes, _ = peaked_scenes[1]
    x0, y0, x1, y1 = (int(round(float(v))) for v in boxes[0][:4])
    code = code.replace('(100, 100, 300, 300)', f'({x0}, {y0}, {x1}, {y1})')
    (tmp_path / 'work_dirs').mkdir()
    os.link(cli_export[0], tmp_path / 'work_dirs' / 'animal_face.onnx')
    cv2.imwrite(str(tmp_path / 'cat.png'), image)
    namespace = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, 'README.md', 'exec'), namespace)
    finally:
        os.chdir(cwd)
    expected = OnnxLandmarkPredictor(cli_export[0]).predict(image, [[x0, y0, x1, y1]])
    np.testing.assert_allclose(namespace['points'], expected.pred_instances.keypoints[0],
                               atol=0.01)
    np.testing.assert_allclose(namespace['scores'][0], expected.pred_instances.keypoint_scores[0],
                               atol=1e-3)


def test_the_device_names_its_gpu_for_onnxruntime():
    from animal_landmarks_mm.infer import InferenceInputError, onnx_providers
    assert onnx_providers('cpu') == ['CPUExecutionProvider']
    assert onnx_providers('cuda') == [('CUDAExecutionProvider', {'device_id': 0}),
                                      'CPUExecutionProvider']
    assert onnx_providers('cuda:1')[0] == ('CUDAExecutionProvider', {'device_id': 1})
    for wrong in ('cuda:x', 'cuda:', 'cudafoo', 'gpu'):
        with pytest.raises(InferenceInputError, match=f"device '{wrong}'"):
            onnx_providers(wrong)


def test_calibration_crops_spread_over_the_faces_of_several_images(tmp_path):
    """Faces picked evenly over the folder (two per image here), each cropped as the predictor
    crops it, in order, whether picked alone or beside its image's other face."""
    from animal_landmarks_mm.annotation import Face, ImageAnnotation, save_annotation
    from animal_landmarks_mm.converter import face_box_xyxy
    images, landmarks = tmp_path / 'images', tmp_path / 'landmarks'
    images.mkdir()
    rng = np.random.default_rng(0)
    expected = []
    for k in range(3):
        image = rng.integers(0, 255, (300, 400, 3), np.uint8)
        cv2.imwrite(str(images / f'i{k}.png'), image)
        faces = [Face([(x0 + 3.0 * j, 40.0 + 2.0 * j) for j in range(NUM_KEYPOINTS)])
                 for x0 in (20.0, 200.0)]
        save_annotation(landmarks / f'i{k}.json', ImageAnnotation(f'i{k}.png', 400, 300, faces))
        expected += [crop_boxes(image, np.array([face_box_xyxy(f, 400, 300)], np.float32),
                                (256, 256), 1.25)[0][0] for f in faces]
    everything = calibration_crops(landmarks, images, input_size=(256, 256), padding=1.25)
    assert everything.shape == (6, 256, 256, 3)
    assert all(np.array_equal(a, b) for a, b in zip(everything, expected))
    # 4 of 6: faces 0, 2, 3 and 5 (even spread), both of image 1, one of images 0 and 2
    some = calibration_crops(landmarks, images, input_size=(256, 256), padding=1.25, faces=4)
    assert all(np.array_equal(a, expected[k]) for a, k in zip(some, (0, 2, 3, 5), strict=True))


def test_an_int8_export_calibrated_on_annotated_faces(peaked_checkpoint, peaked_scenes,
                                                      cli_export, tmp_path):
    """tools/export.py --int8: the network's convolutions quantised (QDQ), calibrated on the
    faces of an annotation folder that a split file lists; the decoder stays float; the
    metadata says so; the points stay close to the float graph's on faces the model knows."""
    from animal_landmarks_mm.annotation import Face, ImageAnnotation, save_annotation
    images, landmarks = tmp_path / 'images', tmp_path / 'landmarks'
    images.mkdir()
    for k, (image, _, points) in enumerate(peaked_scenes):
        cv2.imwrite(str(images / f'scene_{k}.png'), image)
        save_annotation(landmarks / f'scene_{k}.json', ImageAnnotation(
            f'scene_{k}.png', image.shape[1], image.shape[0],
            [Face([tuple(map(float, p)) for p in face]) for face in points]))
    # the validation split's faces (scene 0 mirrored): not to calibrate on
    image, _, points = peaked_scenes[0]
    cv2.imwrite(str(images / 'mirrored.png'), np.ascontiguousarray(image[:, ::-1]))
    save_annotation(landmarks / 'mirrored.json', ImageAnnotation(
        'mirrored.png', image.shape[1], image.shape[0],
        [Face([(image.shape[1] - 1 - float(x), float(y)) for x, y in face]) for face in points]))
    # a listed training picture OpenCV cannot decode (its header and end are whole): its face
    # is left out, named in a line, as evaluation leaves it out; it ended the export
    image, _, points = peaked_scenes[1]
    cv2.imwrite(str(images / 'broken.png'), image)
    _corrupt_pixels(images / 'broken.png')
    save_annotation(landmarks / 'broken.json', ImageAnnotation(
        'broken.png', image.shape[1], image.shape[0],
        [Face([tuple(map(float, p)) for p in face]) for face in points]))
    (tmp_path / 'train.txt').write_text('scene_0.json\nscene_1.json\nbroken.json\n')
    out = tmp_path / 'int8.onnx'
    proc = run_tool('export.py', peaked_checkpoint, out, '--int8',
                    '--calibration-annotation-dir', landmarks, '--calibration-image-dir', images,
                    '--calibration-split-file', tmp_path / 'train.txt')
    assert 'int8' in proc.stdout
    assert [line for line in proc.stderr.splitlines() if line.startswith('left out: ')] == [
        f'left out: {images / "broken.png"}: not an image OpenCV can decode (its 1 face)']
    model = onnx.load(str(out))
    kinds = [node.op_type for node in model.graph.node]
    assert kinds.count('QuantizeLinear') > 100
    decoder = [n for n in model.graph.node if n.name.startswith('/decoder/')]
    assert decoder and not any(n.op_type in ('QuantizeLinear', 'DequantizeLinear')
                               for n in decoder)
    assert out.stat().st_size < 0.4 * cli_export[0].stat().st_size  # int8 weights
    int8 = OnnxLandmarkPredictor(out)
    assert 'calibrated on 3 faces' in int8.metadata['quantization']
    assert int8.metadata['source_sha256'] == OnnxLandmarkPredictor(
        cli_export[0]).metadata['source_sha256']
    float_graph = OnnxLandmarkPredictor(cli_export[0])
    differences = np.concatenate([np.linalg.norm(
        int8.predict(image, boxes).pred_instances.keypoints
        - float_graph.predict(image, boxes).pred_instances.keypoints, axis=-1).ravel()
        for image, boxes, _ in peaked_scenes])
    REPORT.append(f'int8 vs float32 ONNX on the peaked model (random backbone), 3 faces x 28 '
                  f'points: median {np.median(differences):.2f} px, max '
                  f'{differences.max():.2f} px')
    # faces of 300 px: quantisation noise (a trained backbone gives less, see the README),
    # not a wrong layout or a broken decoder, which would be tens of pixels. Measured with 7-bit
    # weights on an AVX2-only CPU: median 0.29 px, max 4.4 px (8-bit weights saturated there:
    # median 1.81 px, max 92 px); the max bound leaves room for another CPU's rounding
    assert np.median(differences) < 0.75 and differences.max() < 8.0
    # bad calibration input: one line naming the option, nothing written
    proc = run_tool('export.py', peaked_checkpoint, tmp_path / 'none.onnx', '--int8',
                    '--calibration-annotation-dir', tmp_path / 'empty',
                    '--calibration-image-dir', images, check=False)
    assert proc.returncode != 0 and proc.stderr.strip() == (
        f'error: --calibration-annotation-dir {tmp_path / "empty"}: no such folder')
    assert not (tmp_path / 'none.onnx').exists()
    proc = run_tool('export.py', peaked_checkpoint, tmp_path / 'none.onnx', '--int8',
                    check=False)
    assert 'error: --int8 needs --calibration-annotation-dir' in proc.stderr


def test_an_upper_case_onnx_name_is_an_onnx_graph(cli_export, peaked_checkpoint, peaked_scenes,
                                                  tmp_path):
    """tools/export.py and the tools that read models tell an ONNX file by one test
    (is_onnx_path), in any case: model.ONNX is a graph, written and read as one."""
    from animal_landmarks_mm.infer import load_predictor
    from animal_landmarks_mm.onnx_predictor import is_onnx_path
    assert is_onnx_path('a/model.ONNX') and is_onnx_path('model.Onnx')
    assert not is_onnx_path('model.onnx.pth') and not is_onnx_path('onnx')
    out = tmp_path / 'model.ONNX'
    proc = run_tool('export.py', peaked_checkpoint, out)
    assert f'opset {OPSET}' in proc.stdout
    onnx.checker.check_model(str(out), full_check=True)
    predictor = load_predictor(out)
    assert isinstance(predictor, OnnxLandmarkPredictor)
    image, boxes, _ = peaked_scenes[0]
    np.testing.assert_array_equal(
        predictor.predict(image, boxes).pred_instances.keypoints,
        OnnxLandmarkPredictor(cli_export[0]).predict(image, boxes).pred_instances.keypoints)
    # a graph under another name would be read as a checkpoint: refused
    proc = run_tool('export.py', peaked_checkpoint, tmp_path / 'model.pth', '--format', 'onnx',
                    check=False)
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: {tmp_path / "model.pth"}: an ONNX graph needs an .onnx name, by which the tools '
        'tell it from a checkpoint')


def test_the_onnx_export_never_overwrites_its_input(peaked_checkpoint, tmp_path):
    from animal_landmarks_mm.annotation import file_sha256
    from animal_landmarks_mm.checkpoints import CheckpointError
    digest = file_sha256(peaked_checkpoint)
    os.link(peaked_checkpoint, tmp_path / 'same.onnx')
    with pytest.raises(CheckpointError, match='the output is the checkpoint being exported '
                       r'\(the same file as'):
        export_onnx(peaked_checkpoint, tmp_path / 'same.onnx')
    assert file_sha256(peaked_checkpoint) == digest
    assert [p.name for p in tmp_path.iterdir()] == ['same.onnx']


def test_cuda_asked_of_an_onnxruntime_without_it_is_an_error(cli_export, peaked_scenes,
                                                             tmp_path):
    """onnxruntime alone would warn and run on the CPU: --device cuda with the CPU build is
    refused in one line saying what to install."""
    from animal_landmarks_mm.infer import onnx_providers
    if 'CUDAExecutionProvider' in ort.get_available_providers():
        pytest.skip('this onnxruntime has CUDA (onnxruntime-gpu)')
    for device in ('cuda', 'cuda:1'):
        with pytest.raises(OnnxModelError, match=r'CUDA asked for, but this onnxruntime build '
                           r'has only .*: install onnxruntime-gpu .*--device cpu'):
            OnnxLandmarkPredictor(cli_export[0], providers=onnx_providers(device))
    image, boxes, _ = peaked_scenes[1]
    cv2.imwrite(str(tmp_path / 'one.png'), image)
    proc = run_tool('infer.py', tmp_path / 'one.png', '--checkpoint', cli_export[0],
                    '--device', 'cuda', '--out-dir', tmp_path / 'out', check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: {cli_export[0]}: CUDA asked for') and \
        'install onnxruntime-gpu' in last
    assert not (tmp_path / 'out').exists()
    assert OnnxLandmarkPredictor(cli_export[0], providers=onnx_providers('cpu')).providers == [
        'CPUExecutionProvider']


def test_calibration_takes_only_the_faces_a_split_file_lists(tmp_path):
    """--calibration-split-file train.txt: the int8 ranges are fitted to the training faces,
    not to the validation faces the graph is then evaluated on. The split file is read first
    and only the files it lists, as evaluation reads them: the whole folder was read and
    de-duplicated, so a listed file was dropped when an unlisted copy of its picture sorted
    first; the listed files' problems are told, one line each (they were dropped silently)."""
    import shutil

    from animal_landmarks_mm.annotation import Face, ImageAnnotation, save_annotation
    from animal_landmarks_mm.checkpoints import CheckpointError
    from animal_landmarks_mm.converter import face_box_xyxy
    images, landmarks = tmp_path / 'images', tmp_path / 'landmarks'
    images.mkdir()
    rng = np.random.default_rng(0)
    expected = {}
    face = Face([(20.0 + 3.0 * j, 40.0 + 2.0 * j) for j in range(NUM_KEYPOINTS)])
    for k in range(3):
        image = rng.integers(0, 255, (300, 400, 3), np.uint8)
        cv2.imwrite(str(images / f'i{k}.png'), image)
        save_annotation(landmarks / f'i{k}.json', ImageAnnotation(f'i{k}.png', 400, 300, [face]))
        expected[k] = crop_boxes(image, np.array([face_box_xyxy(face, 400, 300)], np.float32),
                                 (256, 256), 1.25)[0][0]
    # i0's picture annotated again under a name that sorts first, listed nowhere; and an
    # unlisted broken file, whose problem is not the calibration's
    shutil.copy(images / 'i0.png', images / 'a_copy.png')
    save_annotation(landmarks / 'a_copy.json', ImageAnnotation('a_copy.png', 400, 300, [face]))
    (landmarks / 'unlisted_broken.json').write_text('{')
    (tmp_path / 'train.txt').write_text('i0.json\ni2.json\ngone.json\n')
    told = []
    crops = calibration_crops(landmarks, images, input_size=(256, 256), padding=1.25,
                              split_file=tmp_path / 'train.txt', left_out=told.append)
    assert len(crops) == 2
    assert np.array_equal(crops[0], expected[0]) and np.array_equal(crops[1], expected[2])
    assert told == [f'{tmp_path / "train.txt"}: 1 listed file is not in {landmarks}: gone.json']
    (tmp_path / 'none.txt').write_text('other.json\n')
    with pytest.raises(CheckpointError, match=f'no usable annotated face listed in '
                       f'{tmp_path / "none.txt"}'):
        calibration_crops(landmarks, images, input_size=(256, 256), padding=1.25,
                          split_file=tmp_path / 'none.txt', left_out=told.append)


def _corrupt_pixels(png: Path) -> None:
    """Spoil a PNG's pixel data (its IDAT chunk) and leave its header and end whole, as
    tests/test_evaluate.py does: the checks before a model runs pass it, OpenCV cannot decode
    it."""
    data = bytearray(png.read_bytes())
    start = data.index(b'IDAT') + 20
    data[start:start + 40] = bytes(b ^ 0xff for b in data[start:start + 40])
    png.write_bytes(bytes(data))


def _one_face_folder(root: Path, count: int) -> tuple[Path, Path, list[np.ndarray]]:
    """``count`` random 400x300 images of one annotated face each, and each face's crop."""
    from animal_landmarks_mm.annotation import Face, ImageAnnotation, save_annotation
    from animal_landmarks_mm.converter import face_box_xyxy
    images, landmarks = root / 'images', root / 'landmarks'
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    face = Face([(20.0 + 3.0 * j, 40.0 + 2.0 * j) for j in range(NUM_KEYPOINTS)])
    crops = []
    for k in range(count):
        image = rng.integers(0, 255, (300, 400, 3), np.uint8)
        cv2.imwrite(str(images / f'i{k}.png'), image)
        save_annotation(landmarks / f'i{k}.json', ImageAnnotation(f'i{k}.png', 400, 300, [face]))
        crops.append(crop_boxes(image, np.array([face_box_xyxy(face, 400, 300)], np.float32),
                                (256, 256), 1.25)[0][0])
    return landmarks, images, crops


def test_calibration_inputs_are_checked_before_the_weights_are_read(tmp_path):
    """The calibration's folders, split file and faces are checked before the model is
    loaded (seconds; a download for a pretrained name): they were checked after. The
    checkpoint here does not exist, and the calibration's error is the one told; a missing
    folder is named by its option (it was 'no usable annotated face')."""
    from animal_landmarks_mm.errors import AnimalLandmarksError
    landmarks, images, _ = _one_face_folder(tmp_path, 1)
    (tmp_path / 'none.txt').write_text('other.json\n')
    absent = tmp_path / 'absent.pth'
    for calibration, options, message in (
            ((landmarks, tmp_path / 'nope'), {},
             f'--calibration-image-dir {tmp_path / "nope"}: no such folder'),
            ((tmp_path / 'nope', images), {},
             f'--calibration-annotation-dir {tmp_path / "nope"}: no such folder'),
            ((landmarks, images), dict(calibration_split_file=tmp_path / 'none.txt'),
             f'no usable annotated face listed in {tmp_path / "none.txt"}'),
            ((landmarks, images), dict(calibration_split_file=tmp_path / 'missing.txt'),
             f'{tmp_path / "missing.txt"}: cannot read'),
            ((landmarks, images), dict(calibration_faces=0),
             'calibrating needs at least 1 face, not 0')):
        with pytest.raises(AnimalLandmarksError) as caught:
            export_onnx(absent, tmp_path / 'out.onnx', calibration=calibration, **options)
        assert str(caught.value).startswith(message), str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['images', 'landmarks', 'none.txt']


def test_a_calibration_image_that_cannot_be_decoded_leaves_its_faces_out(tmp_path):
    """An image the reader passes (its header and end are whole) that OpenCV cannot decode,
    found when the faces are cropped after the model loaded: its faces are left out, named in
    a line as evaluation names them, and the others cropped (it ended the export). None
    decodable: one line."""
    from animal_landmarks_mm.checkpoints import CheckpointError
    from animal_landmarks_mm.onnx_export import crop_calibration_faces, pick_calibration_faces
    landmarks, images, expected = _one_face_folder(tmp_path, 3)
    picked = pick_calibration_faces(landmarks, images)
    _corrupt_pixels(images / 'i1.png')
    told = []
    crops = crop_calibration_faces(picked, input_size=(256, 256), padding=1.25,
                                   left_out=told.append)
    assert len(crops) == 2
    assert np.array_equal(crops[0], expected[0]) and np.array_equal(crops[1], expected[2])
    assert told == [f'{images / "i1.png"}: not an image OpenCV can decode (its 1 face)']
    for k in (0, 2):
        _corrupt_pixels(images / f'i{k}.png')
    with pytest.raises(CheckpointError, match='none of the images of the 3 faces to calibrate '
                       'the int8 export on could be decoded'):
        crop_calibration_faces(picked, input_size=(256, 256), padding=1.25,
                               left_out=told.append)


def test_the_source_checkpoint_is_named_without_the_exporting_machines_folders(
        peaked_checkpoint, tmp_path):
    """A file by its name; one of the Hugging Face cache with the repository and commit its
    snapshot folder names (what a pretrained name resolves to)."""
    from animal_landmarks_mm.onnx_export import source_checkpoint_name
    from conftest import prepare_hub_cache
    assert source_checkpoint_name(peaked_checkpoint) == peaked_checkpoint.name
    cached = prepare_hub_cache(tmp_path / 'hub', 'someone/faces', 'model.pth', peaked_checkpoint)
    assert source_checkpoint_name(cached) == f'model.pth (someone/faces at commit {"0" * 40})'


def _landmark_like_graph(path: Path, *, input_type: int = onnx.TensorProto.UINT8,
                         input_shape=('batch', 256, 256, 3), points: int | None = NUM_KEYPOINTS,
                         metadata: dict | None = None, opset: int = 17,
                         keypoint_type: int = onnx.TensorProto.FLOAT) -> Path:
    """A small graph with an exported graph's interface and metadata: crops in, keypoints
    ``(B, points, 2)`` (of ``keypoint_type``) and scores ``(B, points)`` out (pixel values of
    the crop). ``points`` None: as many as the crops' largest pixel value, which no shape
    inference can know."""
    helper, proto = onnx.helper, onnx.TensorProto

    def ints(name: str, values: list[int]):
        return helper.make_tensor(name, proto.INT64, [len(values)], values)

    if points is None:
        count = [helper.make_node('ReduceMax', ['pixels'], ['largest'], keepdims=0),
                 helper.make_node('Cast', ['largest'], ['count_scalar'], to=proto.INT64),
                 helper.make_node('Reshape', ['count_scalar', 'one'], ['count']),
                 helper.make_node('Concat', ['count', 'point_rest'], ['point_ends'], axis=0),
                 helper.make_node('Concat', ['count', 'score_rest'], ['score_ends'], axis=0)]
        ends = [ints('one', [1]), ints('point_rest', [2, 1]), ints('score_rest', [1, 1])]
    else:
        count, ends = [], [ints('point_ends', [points, 2, 1]), ints('score_ends', [points, 1, 1])]
    declared = 'points' if points is None else points
    graph = helper.make_graph(
        [helper.make_node('Cast', ['crops'], ['pixels'], to=proto.FLOAT), *count,
         helper.make_node('Slice', ['pixels', 'starts', 'point_ends', 'axes'], ['points4']),
         helper.make_node('Squeeze', ['points4', 'last'], ['float_keypoints']),
         helper.make_node('Cast', ['float_keypoints'], ['keypoints'], to=keypoint_type),
         helper.make_node('Slice', ['pixels', 'starts', 'score_ends', 'axes'], ['scores4']),
         helper.make_node('Squeeze', ['scores4', 'last_two'], ['scores'])],
        'landmark_like',
        [helper.make_tensor_value_info('crops', input_type, list(input_shape))],
        [helper.make_tensor_value_info('keypoints', keypoint_type, ['batch', declared, 2]),
         helper.make_tensor_value_info('scores', proto.FLOAT, ['batch', declared])],
        [ints('starts', [0, 0, 0]), ints('axes', [1, 2, 3]), ints('last', [3]),
         ints('last_two', [2, 3]), *ends])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])
    values = dict(keypoint_names=json.dumps(list(KEYPOINT_NAMES)),
                  flip_indices=json.dumps(flip_indices()), input_size='[256, 256]',
                  bbox_padding='1.25')
    values.update(metadata or {})
    for key, value in values.items():
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize('options, message', [
    (dict(input_type=onnx.TensorProto.FLOAT),
     "the graph's input 'crops' is tensor(float), not tensor(uint8)"),
    (dict(input_shape=('batch', 128, 128, 3)),
     "the graph's input 'crops' has shape ['batch', 128, 128, 3], not [batch, 256, 256, 3]"),
    (dict(input_shape=('batch', 3, 256, 256)), "has shape ['batch', 3, 256, 256]"),
    (dict(points=5), "the graph's output 'keypoints' has shape ['batch', 5, 2], not "
     '[batch, 28, 2] (28 keypoint names in its metadata)'),
    (dict(metadata=dict(bbox_padding='NaN')), 'bbox_padding must be a number from 0.5 to 10'),
    (dict(metadata=dict(bbox_padding='0')), 'bbox_padding must be a number from 0.5 to 10'),
    (dict(metadata=dict(input_size='[256, true]')), 'input_size must be two sizes'),
    # each crop of a run is W * H * 3 bytes: this one 28 GiB
    (dict(metadata=dict(input_size='[100000, 100000]')),
     "input_size must be at most 4096 pixels a side, got '[100000, 100000]'"),
    # JSON nested deeper than Python's decoder goes (within the length allowed): its text,
    # not a RecursionError
    (dict(metadata=dict(input_size='[' * 30_000 + ']' * 30_000)),
     "input_size must be two sizes [W, H] in pixels, got '[[[["),
    # a value the predictor decodes is bounded before it is decoded (this one is valid JSON)
    (dict(metadata=dict(keypoint_names='[' + ' ' * 70_000 + json.dumps(KEYPOINT_NAMES)[1:])),
     'keypoint_names is 70546 characters long, more than 65536'),
    (dict(metadata=dict(input_size='[' * 100_000 + ']' * 100_000)),
     'input_size is 200000 characters long, more than 65536'),
    # every run is filled up to a fixed batch, of a single box too: this one asked numpy for
    # 36.6 GiB on the first run
    (dict(input_shape=(200_000, 256, 256, 3)), 'the graph takes a fixed batch of 200000 '
     'crops, more than 256: every run, of a single box too, would be filled up to it; export '
     'with a dynamic batch axis'),
    (dict(input_shape=(257, 256, 256, 3)), 'a fixed batch of 257 crops, more than 256'),
    # the batch counts crops: 256 of 4096x4096 would be 12 GiB a run
    (dict(input_shape=(256, 4096, 4096, 3), metadata=dict(input_size='[4096, 4096]')),
     'the graph takes a fixed batch of 256 crops of 4096x4096 (12288 MiB a run), more than 256 '
     'of 256x256 (48 MiB): every run, of a single box too, would be filled up to it; export '
     'with a dynamic batch axis'),
    (dict(input_shape=(3, 4096, 2048, 3), metadata=dict(input_size='[2048, 4096]')),
     'a fixed batch of 3 crops of 2048x4096 (72 MiB a run), more than 256 of 256x256'),
    # strings, which no check of finite points takes
    (dict(keypoint_type=onnx.TensorProto.STRING),
     "the graph's output 'keypoints' is tensor(string), not tensor(float)"),
    (dict(keypoint_type=onnx.TensorProto.DOUBLE), "is tensor(double), not tensor(float)"),
])
def test_a_graph_that_does_not_fit_its_metadata_is_refused_at_load(tmp_path, options, message):
    """The input must take the uint8 crops the predictor makes, of the metadata's size; the
    outputs must hold one point per keypoint name; the box padding must be usable."""
    assert OnnxLandmarkPredictor(_landmark_like_graph(tmp_path / 'fits.onnx')).input_size == (
        256, 256)
    path = _landmark_like_graph(tmp_path / 'odd.onnx', **options)
    with pytest.raises(OnnxModelError, match=re.escape(message)) as caught:
        OnnxLandmarkPredictor(path)
    assert str(caught.value).startswith(f'{path}: ') and '\n' not in str(caught.value)


@pytest.mark.parametrize('names, differs', [
    ([f'p{i}' for i in range(5)], 'its metadata names 5 keypoints'),
    ([*KEYPOINT_NAMES, *(f'extra_{i}' for i in range(12))], 'its metadata names 40 keypoints'),
    ([*KEYPOINT_NAMES[:3], 'nose', *KEYPOINT_NAMES[4:]],
     f"its keypoint 3 is 'nose', where this project's is {KEYPOINT_NAMES[3]!r}"),
    ([*KEYPOINT_NAMES[1:], KEYPOINT_NAMES[0]],
     f"its keypoint 0 is {KEYPOINT_NAMES[1]!r}, where this project's is "
     f"{KEYPOINT_NAMES[0]!r}"),
])
def test_a_graph_of_other_keypoints_than_the_projects_is_refused_at_load(tmp_path, names,
                                                                         differs):
    """The annotation files the predictor writes hold this project's 28 points: a graph of 5
    failed when drawn, one of 40 wrote files the project refuses, kept as a person's work."""
    path = _landmark_like_graph(tmp_path / 'other.onnx', points=len(names),
                                metadata=dict(keypoint_names=json.dumps(names)))
    with pytest.raises(OnnxModelError) as caught:
        OnnxLandmarkPredictor(path)
    assert str(caught.value) == (f"{path}: not a model of this project's 28 face keypoints "
                                 f'({differs}); export one with tools/export.py --format onnx')


def test_metadata_the_predictor_does_not_need_is_never_a_traceback(tmp_path):
    """Values the predictor does not use are never decoded: kept as the text the file holds,
    one nested deeper than Python's JSON decoder goes included. The source checkpoint's digest
    is text of 64 hex digits or None (``null`` or a number there failed where it is shown)."""
    digest = '0123456789' * 6 + 'abcd'
    deep = '[' * 100_000 + ']' * 100_000
    for given, expected in ((digest, digest), ('null', None), ('12', None), ('', None),
                            (digest.upper(), None), ('[1, 2]', None), (deep, None)):
        path = _landmark_like_graph(tmp_path / 'graph.onnx', metadata=dict(
            source_sha256=given, notes=deep, opset='17'))
        predictor = OnnxLandmarkPredictor(path)
        assert predictor.source_sha256 == expected, given[:20]
        assert predictor.metadata.get('source_sha256') == expected
        assert predictor.metadata['notes'] == deep and predictor.metadata['opset'] == '17'
    # a digest of digits alone is text still, not a number
    path = _landmark_like_graph(tmp_path / 'digits.onnx', metadata=dict(source_sha256='1' * 64))
    assert OnnxLandmarkPredictor(path).metadata['source_sha256'] == '1' * 64


def test_a_large_metadata_value_the_predictor_does_not_use_is_never_decoded(tmp_path):
    """Every value was decoded at load: a 57 MB ``[{},{},...]`` under a key nobody reads took
    2.3 GB. Now only the values the predictor uses are decoded (each of at most 64 KiB,
    test_a_graph_that_does_not_fit_its_metadata_is_refused_at_load); this one stays its text,
    and the load's Python allocations stay near its size (decoded: about 20 times it)."""
    import tracemalloc
    notes = '[' + '{},' * 300_000 + '{}]'
    path = _landmark_like_graph(tmp_path / 'notes.onnx', metadata=dict(notes=notes))
    tracemalloc.start()
    try:
        predictor = OnnxLandmarkPredictor(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert predictor.metadata['notes'] == notes
    assert predictor.input_size == (256, 256) and predictor.padding == 1.25
    assert peak < 4 * len(notes), f'{peak / len(notes):.1f} times the value'


def test_the_box_padding_is_bounded_to_what_croppers_use(tmp_path):
    """bbox_padding from 0.5 to 10: 1e308 loaded, and its crops' NaN points were then blamed on
    "boxes too large for float32". Not bounded to 1 and more: mmpose's own configs crop with
    0.8 (zebra, locust, FreiHAND) as well as 1.25 (the export writes its config's)."""
    for padding in (0.5, 0.8, 1.25, 10, 0.1, 10.5, 1e308):
        path = _landmark_like_graph(tmp_path / 'padded.onnx',
                                    metadata=dict(bbox_padding=json.dumps(padding)))
        if 0.5 <= padding <= 10:
            assert OnnxLandmarkPredictor(path).padding == padding
            continue
        with pytest.raises(OnnxModelError) as caught:
            OnnxLandmarkPredictor(path)
        assert str(caught.value) == (f'{path}: unusable landmark metadata (bbox_padding must be '
                                     f'a number from 0.5 to 10, got {json.dumps(padding)!r})')


def test_the_crops_of_many_boxes_are_made_a_run_at_a_time(tmp_path):
    """max_batch bounds the memory of an image of many boxes: only one run's crops exist at a
    time (all 30000 boxes' crops at once took 5.5 GiB, W * H * 3 bytes each); the points are
    those of one run of all."""
    import tracemalloc
    path = _landmark_like_graph(tmp_path / 'fits.onnx')
    image = np.random.default_rng(0).integers(0, 256, (80, 90, 3), dtype=np.uint8)
    offsets = np.arange(200, dtype=np.float32)[:, None] % 17
    boxes = np.float32([[5, 3, 60, 70]]) + offsets * np.float32([1, 2, -1, 0.5])
    one_crop = 256 * 256 * 3
    predictor = OnnxLandmarkPredictor(path, max_batch=4)
    tracemalloc.start()
    try:
        result = predictor.predict(image, boxes).pred_instances
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # a run's crops, and the next's being made: not 200 crops (39 MB)
    assert peak < 3 * 4 * one_crop, f'{peak / one_crop:.0f} crops'
    whole = OnnxLandmarkPredictor(path, max_batch=len(boxes)).predict(image, boxes)
    np.testing.assert_array_equal(result.keypoints, whole.pred_instances.keypoints)
    np.testing.assert_array_equal(result.keypoint_scores, whole.pred_instances.keypoint_scores)
    assert result.keypoints.shape == (200, NUM_KEYPOINTS, 2) and len(set(
        map(bytes, result.keypoint_scores))) > 1  # the boxes differ, and so do their points


def _graph_asking_for(path: Path, floats: int, *, from_input: bool) -> Path:
    """A graph of the exported interface that also fills a tensor of ``floats`` float32 (times
    the batch where ``from_input``: sized at run time; else a constant shape, which
    onnxruntime's constant folding would make at load) and adds nothing of it to the scores."""
    helper, proto = onnx.helper, onnx.TensorProto
    model = onnx.load(str(_landmark_like_graph(path)))
    graph = graph_nodes = model.graph
    for node in graph_nodes.node:
        node.output[:] = ['raw_scores' if name == 'scores' else name for name in node.output]
    graph.initializer.extend([helper.make_tensor('size', proto.INT64, [1], [floats]),
                              helper.make_tensor('zero', proto.FLOAT, [], [0.0]),
                              helper.make_tensor('first', proto.INT64, [1], [0]),
                              helper.make_tensor('second', proto.INT64, [1], [1])])
    size = ['size']
    if from_input:
        graph.node.extend([helper.make_node('Shape', ['crops'], ['crops_shape']),
                           helper.make_node('Slice', ['crops_shape', 'first', 'second'],
                                            ['batch']),
                           helper.make_node('Mul', ['batch', 'size'], ['batch_size'])])
        size = ['batch_size']
    graph.node.extend([
        helper.make_node('ConstantOfShape', size, ['filled'],
                         value=helper.make_tensor('one', proto.FLOAT, [1], [1.0])),
        helper.make_node('ReduceSum', ['filled'], ['total'], keepdims=0),
        helper.make_node('Mul', ['total', 'zero'], ['nothing']),
        helper.make_node('Add', ['raw_scores', 'nothing'], ['scores'])])
    onnx.save(model, str(path))
    return path


def test_the_memory_of_runs_is_capped_for_the_process(tmp_path):
    """A graph sizes tensors from its inputs or its constants (``ConstantOfShape`` here, of
    100 MB): onnxruntime's CPU arena, shared by every predictor of the process, refuses what
    passes its cap in one line, at run time or for a constant shape (which onnxruntime's constant
    folding would make at load, outside the arena); graphs that fit run under the same cap."""
    floats = 25_000_000  # 95 MiB
    paths = [_graph_asking_for(tmp_path / 'sized_at_run_time.onnx', floats, from_input=True),
             _graph_asking_for(tmp_path / 'constant_shape.onnx', floats, from_input=False)]
    fits = _landmark_like_graph(tmp_path / 'fits.onnx')
    # the cap is the process's: a 64 MiB one in a process of its own
    script = textwrap.dedent(f'''
        import resource
        import numpy as np
        from animal_landmarks_mm import onnx_predictor
        onnx_predictor.MIN_RUN_MEMORY_BYTES = onnx_predictor.MAX_RUN_MEMORY_BYTES = 64 << 20
        crops = np.full((2, 256, 256, 3), 9, np.uint8)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for path in {[str(p) for p in paths]!r}:
            predictor = onnx_predictor.OnnxLandmarkPredictor(path)
            try:
                predictor.predict_crops(crops)
                print('ran:', path)
            except onnx_predictor.OnnxModelError as e:
                print('refused:', e)
        predictor = onnx_predictor.OnnxLandmarkPredictor({str(fits)!r})
        print('scores:', predictor.predict_crops(crops)[1].max(), predictor.run_memory_cap)
        print('peak MiB:', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    ''')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    refusals = [line for line in proc.stdout.splitlines() if line.startswith('refused:')]
    assert len(refusals) == 2, proc.stdout
    for path, refusal in zip(paths, refusals):
        asked = 191 if path.name == 'sized_at_run_time.onnx' else 95  # a batch of 2, or not
        assert re.fullmatch(
            f'refused: {re.escape(str(path))}: the graph asked onnxruntime for {asked} MiB at '
            r'once, more than the \d+ MiB left of the 64 MiB the runs of ONNX graphs may hold '
            r"\(half this machine's memory, from 64 MiB to 64 MiB; an exported graph runs a "
            r'batch of 32 crops in 1.5 GiB\)', refusal), refusal
    assert f'scores: 9.0 {64 << 20}' in proc.stdout
    # the refused 95 MiB tensors were never made
    assert int(proc.stdout.split('peak MiB:')[1]) < 64, proc.stdout
    half = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2
    assert onnx_predictor.run_memory_cap() == min(onnx_predictor.MAX_RUN_MEMORY_BYTES,
                                                  max(onnx_predictor.MIN_RUN_MEMORY_BYTES, half))


def test_wrong_crops_and_failed_runs_are_one_line(tmp_path):
    """Crops of another type are refused, not cast (a float crop would wrap, not saturate);
    an error of onnxruntime while it runs the graph is one line naming the file."""
    predictor = OnnxLandmarkPredictor(_landmark_like_graph(tmp_path / 'fits.onnx'))
    crops = np.full((2, 256, 256, 3), 7, np.uint8)
    keypoints, scores = predictor.predict_crops(crops)
    assert keypoints.shape == (2, NUM_KEYPOINTS, 2) and (scores == 7).all()
    for other in (crops.astype(np.float32), crops.astype(np.int64)):
        with pytest.raises(OnnxModelError, match=f'crops must be uint8, got {other.dtype}'):
            predictor.predict_crops(other)
    # a point axis the graph does not fix (7 points here): checked on what comes out
    symbolic = OnnxLandmarkPredictor(_landmark_like_graph(tmp_path / 'symbolic.onnx',
                                                          points=None))
    assert symbolic.predict_crops(np.full((1, 256, 256, 3), 28, np.uint8))[0].shape == (
        1, NUM_KEYPOINTS, 2)
    with pytest.raises(OnnxModelError, match=r'gave keypoints of shape \(2, 7, 2\) and '
                       r'scores of shape \(2, 7\), not \(2, 28, 2\) and \(2, 28\)'):
        symbolic.predict_crops(crops)
    # a run onnxruntime refuses: two crops for a graph of a fixed batch of 1, past the
    # predictor's runs of its batch (test_a_graph_of_a_fixed_batch_runs_any_number_of_crops)
    path = _landmark_like_graph(tmp_path / 'one_at_a_time.onnx', input_shape=(1, 256, 256, 3))
    one_at_a_time = OnnxLandmarkPredictor(path)
    one_at_a_time.fixed_batch, one_at_a_time.max_batch = None, 2
    with pytest.raises(OnnxModelError, match='onnxruntime could not run the graph') as caught:
        one_at_a_time.predict_crops(crops)
    message = str(caught.value)
    assert message.startswith(f'{path}: ') and '\n' not in message and 'crops' in message


def test_an_onnxruntime_load_error_keeps_its_reason(tmp_path):
    """onnxruntime's load errors quote the path and C++ source locations before the reason: the
    message names the file once and keeps the reason, whatever the path's length."""
    folder = tmp_path / ('a_long_folder_name_' * 6) / ('another_long_folder_name_' * 6)
    path = _landmark_like_graph(folder / 'future_opset.onnx', opset=99)
    with pytest.raises(OnnxModelError) as caught:
        OnnxLandmarkPredictor(path)
    message = str(caught.value)
    assert message.startswith(f'{path}: not an ONNX model onnxruntime can load (')
    assert 'Opset 99' in message and 'ai.onnx is till opset' in message
    assert message.count(str(path)) == 1 and '\n' not in message
    assert 'onnxruntime_src' not in message and len(message) < len(str(path)) + 350


@pytest.mark.timeout(30)  # the old scan of a 200 KB word took minutes
def test_a_long_word_in_an_onnxruntime_error_is_no_slow_load(tmp_path):
    """onnxruntime's message quotes what the file names (a node input of 200 KB here): finding
    the C++ source location in it took time quadratic in the longest word (30 s for 60 KB)."""
    helper = onnx.helper
    name = 'X' + 'a.' * 100_000
    graph = helper.make_graph(
        [helper.make_node('Relu', [name], ['keypoints']),
         helper.make_node('Relu', ['crops'], ['scores'])],
        'undefined_input', [helper.make_tensor_value_info('crops', onnx.TensorProto.FLOAT,
                                                          ['batch', 28])],
        [helper.make_tensor_value_info('keypoints', onnx.TensorProto.FLOAT, ['batch', 28, 2]),
         helper.make_tensor_value_info('scores', onnx.TensorProto.FLOAT, ['batch', 28])])
    path = tmp_path / 'undefined_input.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), str(path))
    with pytest.raises(OnnxModelError) as caught:
        OnnxLandmarkPredictor(path)
    message = str(caught.value)
    assert message.startswith(f'{path}: not an ONNX model onnxruntime can load (')
    assert 'is not a graph input, initializer, or output of a previous node' in message
    assert '\n' not in message and len(message) < len(str(path)) + 300


def _graph_of(nodes: list, path: Path, functions: tuple = ()) -> Path:
    """An ONNX file of these nodes between an exported graph's input and outputs."""
    helper = onnx.helper
    graph = helper.make_graph(
        nodes, 'hostile', [helper.make_tensor_value_info('crops', onnx.TensorProto.UINT8,
                                                         ['batch', 256, 256, 3])],
        [helper.make_tensor_value_info('keypoints', onnx.TensorProto.FLOAT, ['batch', 28, 2]),
         helper.make_tensor_value_info('scores', onnx.TensorProto.FLOAT, ['batch', 28])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                    helper.make_opsetid('evil.domain', 1)],
                              functions=list(functions))
    onnx.save(model, str(path))
    return path


def test_a_graph_with_operators_no_export_has_is_refused_before_onnxruntime_loads_it(tmp_path):
    """A stranger's graph is data: a Loop of 2**62 turns (1.4 kB) loaded and then held predict
    for good; 400,000 Relu (10 MB) took onnxruntime 35 s and 1.2 GB to load before the missing
    metadata was seen. The file's operators are read first, subgraphs and functions included,
    and any no exported graph has is refused in one line naming it (a custom domain's too)."""
    helper = onnx.helper
    body = helper.make_graph(
        [helper.make_node('Identity', ['condition'], ['condition_out'])], 'body',
        [helper.make_tensor_value_info('turn', onnx.TensorProto.INT64, []),
         helper.make_tensor_value_info('condition', onnx.TensorProto.BOOL, [])],
        [helper.make_tensor_value_info('condition_out', onnx.TensorProto.BOOL, [])])
    turns = helper.make_node('Constant', [], ['turns'],
                             value=helper.make_tensor('t', onnx.TensorProto.INT64, [], [2**62]))
    loop = _graph_of([turns, helper.make_node('Loop', ['turns', ''], [], body=body)],
                     tmp_path / 'loop.onnx')
    # the Loop hidden in a subgraph of an operator the export has
    inner = helper.make_graph([helper.make_node('Loop', ['turns', ''], [], body=body)], 'inner',
                              [], [])
    hidden = _graph_of([helper.make_node('Relu', ['crops'], ['keypoints'], branch=inner)],
                       tmp_path / 'hidden.onnx')
    function = helper.make_function('evil.domain', 'Spin', ['x'], ['y'],
                                    [helper.make_node('Scan', ['x'], ['y'], body=body,
                                                      num_scan_inputs=1)],
                                    [helper.make_opsetid('', 17)])
    in_function = _graph_of([helper.make_node('Spin', ['crops'], ['keypoints'],
                                              domain='evil.domain')],
                            tmp_path / 'function.onnx', functions=(function,))
    for path, named in ((loop, "'Loop'"), (hidden, "'Loop'"), (in_function, "'evil.domain.Spin'")):
        with pytest.raises(OnnxModelError) as caught:
            OnnxLandmarkPredictor(path)
        assert str(caught.value) == (f'{path}: not a landmark graph exported by tools/export.py '
                                     f'--format onnx (an operator its graphs never use: '
                                     f'{named})')
    # a group (which protobuf skips, unknown) before or after the graph ended the walk, and the
    # Loop ran; an .ort name made onnxruntime read its own format, which the walk cannot
    group = b'\xa3\x06\xa4\x06'  # field 100, an empty group
    for name, data in (('group_before.onnx', group + loop.read_bytes()),
                       ('group_after.onnx', loop.read_bytes() + group)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(OnnxModelError) as caught:
            OnnxLandmarkPredictor(tmp_path / name)
        assert str(caught.value) == (f'{tmp_path / name}: not an ONNX model (a field of wire '
                                     'type 3)')
    ort = tmp_path / 'loop.ort'
    ort.write_bytes(loop.read_bytes())
    with pytest.raises(OnnxModelError, match="never use: 'Loop'"):
        OnnxLandmarkPredictor(ort)
    too_large = ('not a landmark graph exported by tools/export.py --format onnx (more than '
                 '20000 nodes or 1000000 protobuf fields; its graphs hold 1,100 to 1,400 '
                 'nodes, int8 about 2,700)')
    many = _graph_of([helper.make_node('Relu', ['crops' if k == 0 else f'r{k}'], [f'r{k + 1}'])
                      for k in range(20_001)], tmp_path / 'many.onnx')
    # empty nodes, 2 bytes each: 4 million were walked whole (4.4 s, 278 MB) before the count
    empty_nodes = tmp_path / 'empty_nodes.onnx'
    graph = b'\x0a\x00' * 4_000_000
    empty_nodes.write_bytes(b'\x3a' + _varint(len(graph)) + graph)
    for path in (many, empty_nodes):
        with pytest.raises(OnnxModelError) as caught:
            OnnxLandmarkPredictor(path)
        assert str(caught.value) == f'{path}: {too_large}'
    fields = tmp_path / 'fields.onnx'  # a million and one fields of the model itself
    fields.write_bytes(b'\x08\x01' * 1_000_001)
    with pytest.raises(OnnxModelError) as caught:
        OnnxLandmarkPredictor(fields)
    assert str(caught.value) == f'{fields}: {too_large}'


def test_a_graph_with_a_sparse_tensor_is_refused_before_onnxruntime_loads_it(tmp_path):
    """A sparse initializer (or a Constant's sparse_value) of no stored value and a declared
    length of 375 million: onnxruntime made it dense at load, 1.4 GB from a 1.4 kB file, outside
    the runs' capped arena (a hunt's repro). No export has one: refused before the load."""
    helper = onnx.helper
    sparse = helper.make_sparse_tensor(helper.make_tensor('s', onnx.TensorProto.FLOAT, [0], []),
                                       helper.make_tensor('s_i', onnx.TensorProto.INT64, [0], []),
                                       [375_000_000])
    constant = _graph_of([helper.make_node('Constant', [], ['s'], sparse_value=sparse),
                          helper.make_node('Relu', ['crops'], ['keypoints'])],
                         tmp_path / 'constant.onnx')
    initializer = tmp_path / 'initializer.onnx'
    model = onnx.load(str(_graph_of([helper.make_node('Relu', ['crops'], ['keypoints'])],
                                     initializer)))
    model.graph.sparse_initializer.append(sparse)
    onnx.save(model, str(initializer))
    for path, what in ((constant, 'a sparse tensor attribute'),
                       (initializer, 'a sparse initializer')):
        with pytest.raises(OnnxModelError) as caught:
            OnnxLandmarkPredictor(path)
        assert str(caught.value) == (f'{path}: not a landmark graph exported by tools/export.py '
                                     f'--format onnx ({what}, which its graphs never have)')


def test_onnxruntime_loads_the_bytes_the_check_read(cli_export, tmp_path, monkeypatch):
    """The operator check read the file, then onnxruntime opened the path again: a file
    swapped between the two (a shared models folder) was loaded unchecked. onnxruntime is
    given the bytes checked now: a swap after the check changes nothing."""
    import shutil

    from animal_landmarks_mm import onnx_predictor
    path = tmp_path / 'model.onnx'
    shutil.copy(cli_export[0], path)
    foreign = _graph_of([onnx.helper.make_node('Sin', ['crops'], ['keypoints'])],
                        tmp_path / 'foreign.onnx')
    foreign_bytes = foreign.read_bytes()
    checked = onnx_predictor.check_graph_operators

    def check_then_swap(checked_path):
        model = checked(checked_path)
        os.replace(foreign, checked_path)
        return model

    monkeypatch.setattr(onnx_predictor, 'check_graph_operators', check_then_swap)
    predictor = OnnxLandmarkPredictor(path)  # the foreign graph has no metadata: refused
    assert path.read_bytes() == foreign_bytes  # swapped on disk, the checked graph loaded
    assert [output.name for output in predictor.session.get_outputs()] == ['keypoints',
                                                                            'scores']


def _varint(value: int) -> bytes:
    """A protobuf varint."""
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def test_the_operators_are_read_as_onnx_reads_them(cli_export):
    """The wire-format walk finds the nodes onnx's own parser finds, on a real export, and
    every one of them is an operator the predictor accepts."""
    from animal_landmarks_mm.onnx_predictor import EXPORTED_OPERATORS, graph_operators
    out, _ = cli_export
    model = onnx.load(str(out))
    assert graph_operators(out.read_bytes()) == [(n.domain, n.op_type) for n in model.graph.node]
    assert {n.op_type for n in model.graph.node} <= EXPORTED_OPERATORS


def test_boxes_beyond_float32_are_refused_and_drawing_never_fails(cli_export, peaked_scenes,
                                                                  tmp_path):
    """A box so large that the mapping back into the image overflows float32 gives
    NonFinitePredictionError, not NaN points; points far outside the picture, or not finite,
    are drawn without a cv2 error."""
    predictor = OnnxLandmarkPredictor(cli_export[0])
    image = peaked_scenes[1][0]
    # float32 boxes (a boxes file's) overflow in the crop; float64 ones in the points' store
    for boxes in (np.float32([[0, 0, 3e38, 3e38]]), [[0, 0, 1e300, 1e300]]):
        with pytest.raises(NonFinitePredictionError, match='too large') as caught:
            predictor.predict(image, boxes)
        assert str(caught.value).startswith(str(cli_export[0])) and \
            '\n' not in str(caught.value)
    far = predictor.predict(image, [[0, 0, 1e10, 1e10]])
    assert np.isfinite(far.pred_instances.keypoints).all()
    nan = LandmarkResult(LandmarkInstances(
        keypoints=np.full((1, NUM_KEYPOINTS, 2), np.nan, np.float32),
        keypoint_scores=np.zeros((1, NUM_KEYPOINTS), np.float32),
        bboxes=np.float32([[np.nan, 0, np.inf, 10]]), bbox_scores=np.ones(1, np.float32)))
    for k, result in enumerate((far, nan)):
        predictor.draw(image, result, tmp_path / f'{k}.jpg')
        assert cv2.imread(str(tmp_path / f'{k}.jpg')).shape == image.shape


def test_int8_quantisation_works_on_hidden_temporaries_only(cli_export, tmp_path, monkeypatch):
    """The graph onnxruntime prepares for quantisation is one of our hidden temporaries beside
    the output, removed after: it was a ``tmpXXXXXXXX/`` folder there, which a killed export
    left in the person's folder where nothing cleans it. Written, as export_onnx writes, into a
    temporary of the final output, its working files are that output's temporaries still, which
    the next export's clean-up (``remove_stale_temporaries(of=...)``) finds."""
    import shutil

    import onnxruntime.quantization as quantization

    from animal_landmarks_mm.annotation import new_temporary, remove_stale_temporaries
    folder = tmp_path / 'models'
    folder.mkdir()
    graph = folder / 'float.onnx'
    shutil.copy(cli_export[0], graph)
    seen = []
    real = quantization.quantize_static

    def quantize_static(*args, **kwargs):  # what the folder holds while onnxruntime works
        seen.extend(sorted(os.listdir(folder)))
        return real(*args, **kwargs)

    monkeypatch.setattr(quantization, 'quantize_static', quantize_static)
    crops = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    temporary = new_temporary(folder / 'int8.onnx')  # as export_onnx writes it
    quantize_int8(graph, temporary, crops, temporaries_of=folder / 'int8.onnx')
    working = [name for name in seen if name != 'float.onnx']
    assert len(working) >= 2 and all(  # the output, and the prepared graph
        name.startswith('.int8.onnx.') and name.endswith('.animal-landmarks-tmp')
        for name in working), seen
    assert sorted(os.listdir(folder)) == sorted(['float.onnx', temporary.name])
    left = tmp_path / 'left'  # as a killed export would leave them: the next one's to remove
    left.mkdir()
    for name in working:
        (left / name).touch()
    assert len(remove_stale_temporaries(left, min_age=0, of='int8.onnx')) == len(working)


def test_onnx_pictures_go_to_an_out_dir_whose_name_is_not_utf8(cli_export, peaked_scenes,
                                                               tmp_path):
    """cv2.imwrite crashed the process (a segmentation fault) on an --out-dir whose name is not
    UTF-8; the ONNX predictor's picture is now encoded here and written by Python."""
    image, boxes, _ = peaked_scenes[0]
    cv2.imwrite(str(tmp_path / 'one.png'), image)
    (tmp_path / 'boxes.json').write_text(json.dumps({'one.png': boxes.tolist()}))
    out = tmp_path / os.fsdecode(b'd\xff') / 'out'
    proc = run_tool('infer.py', tmp_path / 'one.png', '--checkpoint', cli_export[0], '--boxes',
                    tmp_path / 'boxes.json', '--out-dir', out, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    drawn = cv2.imdecode(np.frombuffer((out / 'vis' / 'one.png.jpg').read_bytes(), np.uint8),
                         cv2.IMREAD_COLOR)
    assert drawn.shape == image.shape and not np.array_equal(drawn, image)


@pytest.mark.parametrize('given, named', [
    ('abcdef0123' * 6 + '4567', 'sha256 abcdef0123ab'),
    ('null', "its sha256 is not in the graph's metadata"),
    ('12', "its sha256 is not in the graph's metadata"),
])
def test_rank_with_a_graph_names_its_source_checkpoint_if_the_graph_says(tmp_path, given,
                                                                         named):
    """--rank with an ONNX graph is refused in one line naming the checkpoint's digest where
    the metadata gives one; a source_sha256 of null or a number (a crafted file) failed with a
    TypeError there."""
    from animal_landmarks_mm.infer import InferenceInputError, run_inference
    path = _landmark_like_graph(tmp_path / 'graph.onnx', metadata=dict(source_sha256=given))
    image = tmp_path / 'one.png'
    assert cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(InferenceInputError) as caught:
        run_inference(image, config=None, checkpoint=path, out_dir=tmp_path / 'out', rank=True,
                      progress=False)
    assert str(caught.value) == (
        '--rank needs the plain and the mirrored pass apart, which an ONNX graph with the '
        f'flip test inside does not give: rank with the checkpoint {path} came from ({named})')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('batch', [1, 2, 256])  # 256: the largest fixed batch taken
def test_a_graph_of_a_fixed_batch_runs_any_number_of_crops(tmp_path, batch):
    """A graph whose batch axis is fixed (an exporter's default) runs crops in runs of exactly
    that size, the last one filled up and its filling dropped: a batch-1 graph stopped the run
    at the first image with two faces (onnxruntime refused the shape)."""
    dynamic = OnnxLandmarkPredictor(_landmark_like_graph(tmp_path / 'dynamic.onnx'))
    fixed = OnnxLandmarkPredictor(_landmark_like_graph(
        tmp_path / 'fixed.onnx', input_shape=(batch, 256, 256, 3)))
    crops = np.random.default_rng(batch).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    for got, expected in zip(fixed.predict_crops(crops), dynamic.predict_crops(crops)):
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
