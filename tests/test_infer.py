"""mmpose's inference API on our config and checkpoints, and tools/infer.py."""
import json
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from animal_landmarks_mm import schema
from animal_landmarks_mm.annotate import (
    AnnotationSession,
    OutputFolderInUseError,
    lock_output_folder,
)
from animal_landmarks_mm.annotation import (
    TEMPORARY_SUFFIX,
    Face,
    ImageAnnotation,
    file_sha256,
    load_annotation,
    save_annotation,
)
from animal_landmarks_mm.infer import (
    FaceDetector,
    InferenceInputError,
    LandmarkPredictor,
    check_arguments,
    run_inference,
    scale_detected_box,
)
from conftest import MAIN_CONFIG, run_tool


@pytest.fixture(scope='module')
def checkpoint(trained):
    return trained[0] / 'epoch_1.pth'


@pytest.fixture(scope='module')
def model(checkpoint):
    from mmpose.apis import init_model
    return init_model(str(MAIN_CONFIG), str(checkpoint), device='cpu')


def _image_and_box(coco_dir, index=0):
    ann = load_annotation(sorted((coco_dir / 'landmarks').glob('*.json'))[index])
    points = np.array(ann.faces[0].landmarks)
    box = np.concatenate([points.min(0) - 8, points.max(0) + 8]).astype(np.float32)
    return coco_dir / 'images' / ann.image, box


def test_init_model_and_inference_topdown(model, coco_dir):
    from mmpose.apis import inference_topdown
    meta = model.dataset_meta
    assert meta['dataset_name'] == 'animal_character_face'
    assert [meta['keypoint_id2name'][i] for i in range(28)] == list(schema.KEYPOINT_NAMES)
    assert len(meta['skeleton_links']) == len(schema.SKELETON)
    image_path, box = _image_and_box(coco_dir)
    results = inference_topdown(model, str(image_path), bboxes=box[None], bbox_format='xyxy')
    assert results[0].pred_instances.keypoints.shape == (1, 28, 2)
    assert results[0].pred_instances.keypoint_scores.shape == (1, 28)


def test_mmpose_inferencer_draws_our_skeleton(checkpoint, coco_dir, tmp_path):
    from mmpose.apis import MMPoseInferencer
    inferencer = MMPoseInferencer(pose2d=str(MAIN_CONFIG), pose2d_weights=str(checkpoint),
                                  device='cpu')
    image_path, _ = _image_and_box(coco_dir)
    # a 2-iteration model may place its points anywhere, even off the image: the whole-image
    # box (draw_bbox) is what is sure to be drawn; every point is drawn whatever its score
    result = next(inferencer(str(image_path), vis_out_dir=str(tmp_path), show=False,
                             kpt_thr=-1e9, draw_bbox=True))
    assert len(result['predictions'][0][0]['keypoints']) == 28
    drawn = cv2.imread(str(tmp_path / image_path.name))
    original = cv2.imread(str(image_path))
    assert drawn.shape == original.shape and (drawn != original).any()
    visualizer = inferencer.inferencer.visualizer
    assert visualizer.dataset_meta['dataset_name'] == 'animal_character_face'
    assert [tuple(link) for link in visualizer.skeleton] == list(schema.SKELETON)
    for k, landmark in enumerate(schema.LANDMARKS):
        assert tuple(visualizer.kpt_color[k]) == schema.GROUP_COLORS[landmark.group]


def test_infer_tool_with_boxes_writes_pictures_and_annotations(model, checkpoint, coco_dir,
                                                              tmp_path):
    from mmpose.apis import inference_topdown
    image_path, box = _image_and_box(coco_dir)
    other_path, other_box = _image_and_box(coco_dir, 1)
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps({image_path.name: [box.tolist()],
                                 other_path.name: [other_box.tolist(), other_box.tolist()]}))
    out = tmp_path / 'out'
    proc = run_tool('infer.py', coco_dir / 'images', '--config', MAIN_CONFIG, '--checkpoint',
                    checkpoint, '--boxes', boxes, '--out-dir', out)
    assert '2 images predicted' in proc.stdout  # the others have no boxes: skipped, warned
    assert 'no boxes in' in proc.stdout + proc.stderr
    ann = load_annotation(out / 'annotations' / f'{image_path.stem}.json')
    two = load_annotation(out / 'annotations' / f'{other_path.stem}.json')
    assert len(ann.faces) == 1 and len(two.faces) == 2
    assert (out / 'vis' / f'{image_path.name}.jpg').is_file()
    expected = inference_topdown(model, str(image_path), bboxes=box[None], bbox_format='xyxy')
    np.testing.assert_allclose(np.array(ann.faces[0].landmarks),
                               expected[0].pred_instances.keypoints[0], atol=1e-3)
    np.testing.assert_allclose(ann.faces[0].scores,
                               expected[0].pred_instances.keypoint_scores[0], atol=1e-4)
    assert ann.faces[0].bbox == pytest.approx(tuple(box.tolist()))
    # a model's points are to review: never trained on until a person accepts them
    assert ann.status == 'predicted' and ann.meta['annotator'] == 'model'
    assert ann.meta['model'] == f'sha256:{file_sha256(checkpoint)}'
    assert ann.meta['prediction']['boxes'] == 'boxes file'
    assert ann.meta['image_sha256'] == file_sha256(image_path)  # the picture predicted on


def test_infer_tool_whole_image_fallback_warns(coco_dir, trained, tmp_path):
    image_path, _ = _image_and_box(coco_dir)
    proc = run_tool('infer.py', image_path, '--config', MAIN_CONFIG, '--checkpoint',
                    trained[0] / 'epoch_1.pth', '--out-dir', tmp_path)
    assert 'using the whole image as the face box' in proc.stdout + proc.stderr
    ann = load_annotation(tmp_path / 'annotations' / f'{image_path.stem}.json')
    assert ann.faces[0].bbox == (0.0, 0.0, float(ann.width), float(ann.height))


def test_face_detector_boxes_are_grown_as_anime_face_detector_does(coco_dir, trained,
                                                                   tmp_path):
    """anime_face_detector's real YOLOv3 (random weights: its release is not downloadable
    here) drives the box path; boxes reach the landmark model grown by 1.1."""
    from anime_face_detector._face import YOLOv3FaceDetector
    torch.manual_seed(0)
    weights = tmp_path / 'yolov3.pth'
    torch.save(YOLOv3FaceDetector().state_dict(), weights)
    detector = FaceDetector('yolov3', weights, score_thr=0.0)
    image_path, _ = _image_and_box(coco_dir)
    image = cv2.imread(str(image_path))
    raw = detector.model.detect(image)
    boxes = detector(image)
    assert len(boxes) == len(raw) > 0
    np.testing.assert_allclose(boxes, [scale_detected_box(b[:4]) for b in raw], rtol=1e-6)
    size = raw[0, 2:4] - raw[0, :2] + 1
    np.testing.assert_allclose(boxes[0, 2:4] - boxes[0, :2], size * 1.1, rtol=1e-5)
    proc = run_tool('infer.py', image_path, '--config', MAIN_CONFIG, '--checkpoint',
                    trained[0] / 'epoch_1.pth', '--face-detector', 'yolov3',
                    '--face-detector-checkpoint', weights, '--face-score-thr', '0',
                    '--out-dir', tmp_path / 'out')
    ann = load_annotation(tmp_path / 'out' / 'annotations' / f'{image_path.stem}.json')
    # random weights find boxes off the image too: each skipped with a warning
    height, width = image.shape[:2]
    on_image = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, 0] < width)
                     & (boxes[:, 1] < height)]
    assert len(ann.faces) == len(on_image) > 0
    np.testing.assert_allclose([face.bbox for face in ann.faces], on_image, atol=1e-3)
    assert (proc.stdout + proc.stderr).count('skipped: outside the image') == \
        len(boxes) - len(on_image)
    assert ann.meta['prediction']['boxes'] == 'anime_face_detector face detector'


def test_predictions_never_overwrite_a_persons_work_and_rank_by_uncertainty(coco_dir, trained,
                                                                             tmp_path):
    images = sorted((coco_dir / 'images').iterdir())[:4]
    folder = tmp_path / 'images'
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    annotated = load_annotation(coco_dir / 'landmarks' / f'{images[0].stem}.json')
    annotated.meta = dict(annotator='me')
    out = tmp_path / 'landmarks'  # the annotator's output folder
    save_annotation(out / f'{images[0].stem}.json', annotated)
    before = (out / f'{images[0].stem}.json').read_bytes()
    session = AnnotationSession(folder, out)  # a person's unfinished work on the second image
    begun = session.open(images[1].name)
    begun.click(5, 5)
    draft = session.save(begun)
    proc = run_tool('infer.py', folder, '--checkpoint', trained[0] / 'epoch_1.pth', '--out-dir',
                    tmp_path / 'infer', '--annotation-dir', out, '--rank')
    assert '2 images already annotated by a person or being annotated' in proc.stdout
    assert (out / f'{images[0].stem}.json').read_bytes() == before
    assert draft.is_file() and not session.annotation_path(images[1].name).exists()
    ranking = json.loads((tmp_path / 'infer' / 'ranking.json').read_text())
    assert len(ranking) == 2
    assert {images[0].name, images[1].name}.isdisjoint(r['image'] for r in ranking)
    scores = [r['uncertainty'] for r in ranking]
    assert scores == sorted(scores, reverse=True) and all(s >= 0 for s in scores)
    for entry in ranking:
        assert load_annotation(entry['annotation']).status == 'predicted'
    # a second run replaces predictions but still not the person's file
    run_tool('infer.py', folder, '--checkpoint', trained[0] / 'epoch_1.pth', '--out-dir',
             tmp_path / 'infer', '--annotation-dir', out)
    assert (out / f'{images[0].stem}.json').read_bytes() == before


def test_a_face_the_model_does_not_know_ranks_first(peaked_scenes, peaked_checkpoint, tmp_path):
    """--rank on faces the model knows (it agrees with its mirrored pass) and on drawings it
    has never seen (noise, a face turned upside down): the unknown ones come first."""
    from animal_landmarks_mm.infer import run_inference
    folder = tmp_path / 'images'
    folder.mkdir()
    image, boxes, _ = peaked_scenes[1]  # one known character, its box
    box = [float(v) for v in boxes[0][:4]]
    cv2.imwrite(str(folder / 'known.png'), image)
    cv2.imwrite(str(folder / 'upside_down.png'), np.ascontiguousarray(image[::-1]))
    flipped_box = [box[0], image.shape[0] - box[3], box[2], image.shape[0] - box[1]]
    noise = np.random.default_rng(0).integers(0, 256, image.shape, dtype=np.uint8)
    cv2.imwrite(str(folder / 'noise.png'), noise)
    (tmp_path / 'boxes.json').write_text(json.dumps(
        {'known.png': [box], 'upside_down.png': [flipped_box], 'noise.png': [box]}))
    result = run_inference(folder, config=None, checkpoint=peaked_checkpoint,
                           out_dir=tmp_path / 'out', boxes_file=tmp_path / 'boxes.json',
                           rank=True, progress=False)
    ranking = json.loads(Path(result.ranking).read_text())
    order = [entry['image'] for entry in ranking]
    assert order[-1] == 'known.png', ranking
    known = ranking[-1]['uncertainty']
    assert all(entry['uncertainty'] > 2 * known for entry in ranking[:-1]), ranking


def test_flip_disagreement_is_the_same_for_a_face_and_its_mirror(coco_dir, trained):
    """A face and its mirror: the plain pass on one equals the mirrored pass on the other, so
    the disagreement of the mirrored image equals that of the original."""
    from animal_landmarks_mm.infer import LandmarkPredictor
    predictor = LandmarkPredictor(None, trained[0] / 'epoch_1.pth')
    image_path, box = _image_and_box(coco_dir)
    image = cv2.imread(str(image_path))
    width = image.shape[1]
    mirrored_box = np.array([[width - 1 - box[2], box[1], width - 1 - box[0], box[3]]])
    plain = predictor.flip_disagreement(image, box[None])
    mirrored = predictor.flip_disagreement(np.ascontiguousarray(image[:, ::-1]), mirrored_box)
    assert plain.shape == (1,) and plain[0] > 0
    np.testing.assert_allclose(plain, mirrored, rtol=1e-3)


@pytest.mark.parametrize('args, message', [
    (['missing_dir'], 'error: input not found: missing_dir'),
    (['IMG', '--face-detector-checkpoint', 'x.pth'],
     'error: --face-detector-checkpoint needs --face-detector'),
    (['IMG', '--face-detector', 'yolov3', '--face-detector-checkpoint', 'nope.pth'],
     'error: face detector checkpoint not found: nope.pth'),
    # argparse's float() takes nan: it kept no face and said nothing
    (['IMG', '--face-detector', 'yolov3', '--face-score-thr', 'nan'],
     'error: the face score threshold is a number from 0 to 1, not nan'),
    (['IMG', '--face-detector', 'yolov3', '--face-score-thr', '50'],
     'error: the face score threshold is a number from 0 to 1, not 50.0'),
    (['IMG', '--boxes', 'BOXES'], "must be a list of [x0, y0, x1, y1] with x1 > x0"),
    (['IMG', '--boxes', 'BOOLEANS'], 'a coordinate is not a number: False'),
])
def test_infer_bad_input_is_a_one_line_error(coco_dir, trained, tmp_path, args, message):
    image_path, _ = _image_and_box(coco_dir)
    bad_boxes = tmp_path / 'boxes.json'
    bad_boxes.write_text(json.dumps({image_path.name: [[10, 10, 5, 20]]}))
    booleans = tmp_path / 'booleans.json'
    booleans.write_text(json.dumps({image_path.name: [[False, False, True, True]]}))
    given = {'IMG': str(image_path), 'BOXES': str(bad_boxes), 'BOOLEANS': str(booleans)}
    args = [given.get(a, a) for a in args]
    proc = run_tool('infer.py', *args, '--config', MAIN_CONFIG, '--checkpoint',
                    trained[0] / 'epoch_1.pth', '--out-dir', tmp_path / 'out', check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and message in last


def test_a_diverged_checkpoint_is_one_line_before_any_output(coco_dir, trained, tmp_path):
    """NaN weights (a diverged --amp run) are refused when the checkpoint is read, naming it
    and the tensor, before the image's picture or annotation is written."""
    from animal_landmarks_mm.checkpoints import read_checkpoint, to_mmpose_state_dict
    state_dict, meta = read_checkpoint(trained[0] / 'epoch_1.pth')
    state_dict = to_mmpose_state_dict(state_dict)
    state_dict['head.final_layer.bias'] = torch.full_like(state_dict['head.final_layer.bias'],
                                                          float('nan'))
    diverged = tmp_path / 'diverged.pth'
    torch.save(dict(state_dict=state_dict, meta=meta), diverged)
    image_path, box = _image_and_box(coco_dir)
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps({image_path.name: [box.tolist()]}))
    out = tmp_path / 'out'
    proc = run_tool('infer.py', image_path, '--checkpoint', diverged, '--boxes', boxes,
                    '--out-dir', out, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: {diverged}: not a state dict of plain weights: head.final_layer.bias is not '
        'finite (NaN or Inf: a diverged run?)')
    assert not [p for p in out.rglob('*') if p.is_file()]


def _scene_folder(peaked_scenes, folder: Path, names: dict[str, int]) -> tuple[list[float], ...]:
    """Images of the peaked scenes under the given names (name: scene index); their boxes."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, k in names.items():
        assert cv2.imwrite(str(folder / name), peaked_scenes[k][0])
    return tuple([float(v) for v in peaked_scenes[k][1][0][:4]] for k in names.values())


def _age(path: Path, seconds: float = 3600) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path



def test_a_run_on_another_folder_leaves_its_predictions_of_the_same_names_be(
        peaked_scenes, peaked_checkpoint, tmp_path):
    """infer on raw/sub into raw's annotation folder took sub/a.png for raw/a.png and replaced
    that picture's prediction with its own points (a helper's repro): predictions record the
    folder of their picture, and one of a picture still there as predicted is left be, said in
    one line. A picture gone from there is no other folder's."""
    from animal_landmarks_mm.infer import run_inference
    raw, sub = tmp_path / 'raw', tmp_path / 'raw' / 'sub'
    box_a, box_b = _scene_folder(peaked_scenes, raw, {'a.png': 0, 'b.png': 1})
    _scene_folder(peaked_scenes, sub, {'a.png': 1})
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps({'a.png': [box_a], 'b.png': [box_b]}))
    out = tmp_path / 'landmarks'

    def predict(folder):
        return run_inference(folder, config=None, checkpoint=peaked_checkpoint,
                             out_dir=tmp_path / 'infer', annotation_dir=out, boxes_file=boxes,
                             progress=False)
    predict(raw)
    before = (out / 'a.json').read_bytes()
    assert load_annotation(out / 'a.json').meta['prediction']['image_dir'] == str(raw)
    result = predict(sub)
    assert result.of_other_folder == [out / 'a.json'] and not result.written
    assert (out / 'a.json').read_bytes() == before
    assert len(predict(raw).written) == 2  # its own folder's run replaces them
    (raw / 'a.png').unlink()  # that picture gone (moved into sub, say): sub's a.png replaces it
    assert len(predict(sub).written) == 1



@pytest.mark.parametrize('prediction', ['by hand', ['a list'], None, {'image_dir': 7}])
def test_a_prediction_whose_meta_is_no_record_of_a_folder_is_replaced(tmp_path, prediction):
    """A hand-edited meta.prediction (text, a list) ended the run in an AttributeError (a
    review's repro); a file of no such record is any model's prediction, replaced."""
    from animal_landmarks_mm.infer import _kept_as_it_is
    path = tmp_path / 'a.json'
    save_annotation(path, ImageAnnotation(
        'a.png', 64, 48, [Face([(10.0 + k, 10.0 + k % 5) for k in range(28)])],
        status='predicted', meta=dict(annotator='model', prediction=prediction,
                                      image_sha256='0' * 64)))
    assert _kept_as_it_is(path, tmp_path) is None

def test_an_image_a_person_annotated_in_a_subfolder_is_not_predicted(
        peaked_scenes, peaked_checkpoint, tmp_path):
    """The annotator lists its folder's top level, the converter reads it all: alice's file
    moved into round1/ was not seen, the image was predicted, and the prediction (accepted in
    a hurry: the image showed as to do) became the file trained on, alice's left out (a
    helper's repro). A model's untouched prediction in a subfolder does not hold it back."""
    from animal_landmarks_mm.infer import run_inference
    images = tmp_path / 'images'
    box_a, box_b, box_c = _scene_folder(peaked_scenes, images, {'a.png': 0, 'b.png': 1,
                                                                'c.png': 1})
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps({'a.png': [box_a], 'b.png': [box_b], 'c.png': [box_c]}))
    out = tmp_path / 'landmarks'

    def predict():
        return run_inference(images, config=None, checkpoint=peaked_checkpoint,
                             out_dir=tmp_path / 'infer', annotation_dir=out, boxes_file=boxes,
                             progress=False)
    predict()
    (out / 'round1').mkdir()
    alices = load_annotation(out / 'a.json')
    alices.status, alices.meta = 'annotated', dict(annotator='alice')
    save_annotation(out / 'round1' / 'a.json', alices)
    (out / 'a.json').unlink()
    (out / 'c.json').rename(out / 'round1' / 'c.json')  # the model's, moved
    result = predict()
    assert result.kept == [out / 'round1' / 'a.json']
    assert sorted(p.name for p in result.written) == ['b.json', 'c.json']
    assert not (out / 'a.json').exists()

def test_only_the_rankings_stale_temporaries_are_removed(peaked_scenes, peaked_checkpoint,
                                                         tmp_path):
    """The output folder is the user's: a file there named like a temporary (.x.backup01.tmp)
    is not the tool's to delete; ranking.json's own leftovers are, when ranking.json is
    written."""
    box, = _scene_folder(peaked_scenes, tmp_path / 'images', {'one.png': 1})
    (tmp_path / 'boxes.json').write_text(json.dumps({'one.png': [box]}))
    out = tmp_path / 'out'
    out.mkdir()
    users = out / '.x.backup01.tmp'
    users.write_text('user data')
    _age(users)
    leftover = out / f'.ranking.json.k3j5h2l1{TEMPORARY_SUFFIX}'
    leftover.write_text('[')
    _age(leftover)
    common = dict(config=None, checkpoint=peaked_checkpoint, out_dir=out,
                  boxes_file=tmp_path / 'boxes.json', progress=False)
    run_inference(tmp_path / 'images', **common)
    assert users.read_text() == 'user data'
    assert leftover.exists()  # no ranking.json written: its leftovers are not this run's
    result = run_inference(tmp_path / 'images', rank=True, **common)
    assert result.ranking == out / 'ranking.json' and not leftover.exists()
    assert users.read_text() == 'user data'


def test_absurd_boxes_are_skipped_one_by_one_with_a_warning(peaked_scenes, peaked_checkpoint,
                                                            tmp_path):
    """A box off the image, far larger than it, or not finite is skipped naming the image and
    the box; the image's other boxes and the other images go on; an image listed with no boxes
    has no faces: a note, not an error."""
    good, _, _ = _scene_folder(peaked_scenes, tmp_path / 'images',
                               {'good.png': 1, 'huge.png': 1, 'none.png': 1})
    boxes = tmp_path / 'boxes.json'
    # json.dumps writes NaN as Python's json reads it
    boxes.write_text(json.dumps({
        'good.png': [[5000, 5000, 5100, 5100], good, [0, 0, 1e10, 1e10]],
        'huge.png': [[0, 0, 3e38, 3e38], [float('nan'), 0, 10, 10]],
        'none.png': []}))
    out = tmp_path / 'out'
    proc = run_tool('infer.py', tmp_path / 'images', '--checkpoint', peaked_checkpoint,
                    '--boxes', boxes, '--out-dir', out, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert '1 images predicted' in proc.stdout
    assert 'good.png: box [5000, 5000, 5100, 5100] skipped: outside the image' in output
    assert 'good.png: box [0, 0, 1e+10, 1e+10] skipped: ' in output
    assert 'huge.png: box [nan, 0, 10, 10] skipped: not finite' in output
    assert 'huge.png: no usable face box, skipped' in output
    assert 'none.png: no faces in' in output
    predicted = load_annotation(out / 'annotations' / 'good.json')
    assert len(predicted.faces) == 1 and predicted.faces[0].bbox == pytest.approx(tuple(good))
    # (and the lock an annotator there would hold: .annotator.lock)
    assert sorted(p.name for p in (out / 'annotations').iterdir()
                  if not p.name.startswith('.')) == ['good.json']
    assert [p.name for p in (out / 'vis').iterdir()] == ['good.png.jpg']


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels (its data is a few zeros)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))
    path.write_bytes(b'\x89PNG\r\n\x1a\n'
                     + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
                     + chunk(b'IDAT', zlib.compress(b'\0' * 1024)) + chunk(b'IEND', b''))
    return path


def test_a_decompression_bomb_is_skipped_before_it_is_decoded(peaked_scenes, peaked_checkpoint,
                                                              tmp_path):
    """An image whose header claims more pixels than PIL's limit is never handed to cv2 (which
    would allocate them all): skipped, named, the other images predicted."""
    box, = _scene_folder(peaked_scenes, tmp_path / 'images', {'good.png': 1})
    _png_header(tmp_path / 'images' / 'bomb.png', 13400, 13400)
    (tmp_path / 'boxes.json').write_text(json.dumps({'good.png': [box], 'bomb.png': [box]}))
    proc = run_tool('infer.py', tmp_path / 'images', '--checkpoint', peaked_checkpoint,
                    '--boxes', tmp_path / 'boxes.json', '--out-dir', tmp_path / 'out')
    output = proc.stdout + proc.stderr
    assert '1 images predicted' in proc.stdout
    assert f'{tmp_path / "images" / "bomb.png"}: image refused, too many pixels' in output
    assert [p.name for p in (tmp_path / 'out' / 'annotations').iterdir()
            if not p.name.startswith('.')] == ['good.json']


def test_image_names_reach_the_terminal_escaped(peaked_scenes, peaked_checkpoint, tmp_path):
    """A file name with an escape sequence (clear screen, red) is shown escaped in the
    warnings, not run by the terminal."""
    name = 'x\x1b[2J\x1b[31mRED.png'
    _scene_folder(peaked_scenes, tmp_path / 'images', {name: 1})
    proc = run_tool('infer.py', tmp_path / 'images', '--checkpoint', peaked_checkpoint,
                    '--out-dir', tmp_path / 'out')
    output = proc.stdout + proc.stderr
    assert '\x1b[2J' not in output and '\x1b[31m' not in output
    assert 'x\\x1b[2J\\x1b[31mRED.png: no boxes given' in output


def test_long_image_names_get_a_shortened_picture_name(peaked_scenes, peaked_checkpoint,
                                                       tmp_path):
    """Images whose names are legal but leave no room for '.jpg' (255 bytes at most): each
    picture gets a shortened, distinct name, cut on a character (UTF-8) boundary; the run
    goes on."""
    names = {'a' * 250 + '.png': 1, 'a' * 249 + 'b.png': 1, 'ü' * 125 + '.png': 1}
    boxes = _scene_folder(peaked_scenes, tmp_path / 'images', names)
    (tmp_path / 'boxes.json').write_text(json.dumps(
        {name: [box] for name, box in zip(names, boxes)}))
    out = tmp_path / 'out'
    result = run_inference(tmp_path / 'images', config=None, checkpoint=peaked_checkpoint,
                           out_dir=out, boxes_file=tmp_path / 'boxes.json', progress=False)
    assert len(result.written) == 3
    pictures = sorted(p.name for p in (out / 'vis').iterdir())
    assert len(pictures) == 3
    for picture in pictures:
        assert picture.endswith('.jpg') and len(picture.encode()) <= 255
        assert cv2.imread(str(out / 'vis' / picture)) is not None
    assert any(p.startswith('üü') for p in pictures)


def test_images_no_annotation_file_can_name_are_left_out_in_one_warning(tmp_path,
                                                                         monkeypatch):
    """As the annotator says at start: a name that is not UTF-8 or holds a line break (the
    split files list a name a line) was predicted, or left out without a word."""
    import animal_landmarks_mm.infer as infer_module
    warnings = []
    monkeypatch.setattr(infer_module, '_warn', warnings.append)
    ok, data = cv2.imencode('.png', np.zeros((8, 8, 3), np.uint8))
    for name in (b'a.png', b'caf\xe9.png', b'night\ncat.png'):
        (tmp_path / os.fsdecode(name)).write_bytes(data.tobytes())
    assert infer_module.list_images(tmp_path) == [tmp_path / 'a.png']
    assert warnings == [f'2 images of {tmp_path} are left out: their names are not valid UTF-8 '
                        'or hold a line break (caf\\udce9.png, night\\ncat.png); rename them '
                        'to predict them']


def test_a_folder_named_like_a_picture_costs_that_picture_not_the_run(peaked_scenes,
                                                                      peaked_checkpoint,
                                                                      tmp_path, monkeypatch):
    """A folder where an image's picture goes ended the run there (IsADirectoryError): the
    images after it were never predicted, and --rank wrote no ranking."""
    import animal_landmarks_mm.infer as infer_module
    warnings = []
    monkeypatch.setattr(infer_module, '_warn', warnings.append)
    names = {'a.png': 1, 'b.png': 1, 'c.png': 1}
    boxes = _scene_folder(peaked_scenes, tmp_path / 'images', names)
    (tmp_path / 'boxes.json').write_text(json.dumps(
        {name: [box] for name, box in zip(names, boxes)}))
    out = tmp_path / 'out'
    (out / 'vis' / 'b.png.jpg').mkdir(parents=True)
    result = run_inference(tmp_path / 'images', config=None, checkpoint=peaked_checkpoint,
                           out_dir=out, boxes_file=tmp_path / 'boxes.json', progress=False,
                           rank=True)
    assert sorted(p.name for p in result.written) == ['a.json', 'b.json', 'c.json']
    assert result.ranking.is_file()
    assert sorted(p.name for p in (out / 'vis').iterdir()) == ['a.png.jpg', 'b.png.jpg',
                                                               'c.png.jpg']
    assert (out / 'vis' / 'b.png.jpg').is_dir()  # left as it was
    assert warnings == [f'b.png: no picture drawn: {out / "vis" / "b.png.jpg"} is a folder']


def test_the_device_is_checked_once_for_checkpoints_graphs_and_the_detector(peaked_checkpoint,
                                                                            tmp_path):
    """One check of --device for every model: cpu, cuda or cuda:N; for torch (a checkpoint,
    the face detector) CUDA must be there, else one line before any weights are read."""
    from animal_landmarks_mm.infer import parse_device
    assert parse_device('cpu') is None
    assert parse_device('cuda') == 0 and parse_device('cuda:3') == 3
    for wrong in ('gpu', 'cuda:x', 'cuda:', 'cuda:\u00b2', 'CUDA', 'cpu:0'):
        with pytest.raises(InferenceInputError, match=f'device {wrong!r}: expected cpu, cuda'):
            parse_device(wrong)
    with pytest.raises(InferenceInputError, match="device 'gpu'"):
        LandmarkPredictor(None, peaked_checkpoint, device='gpu')
    with pytest.raises(InferenceInputError, match="device 'gpu'"):
        FaceDetector('yolov3', tmp_path / 'missing.pth', device='gpu')
    if not torch.cuda.is_available():
        with pytest.raises(InferenceInputError, match="device 'cuda:1': torch sees no CUDA"):
            LandmarkPredictor(None, peaked_checkpoint, device='cuda:1')
    else:
        count = torch.cuda.device_count()
        with pytest.raises(InferenceInputError, match=f"device 'cuda:{count}': torch sees "):
            LandmarkPredictor(None, peaked_checkpoint, device=f'cuda:{count}')
        assert LandmarkPredictor(None, peaked_checkpoint, device='cuda').model is not None
    image = tmp_path / 'one.png'
    assert cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))
    proc = run_tool('infer.py', image, '--checkpoint', peaked_checkpoint, '--device', 'gpu',
                    '--out-dir', tmp_path / 'out', check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: device 'gpu': expected cpu, cuda or cuda:N")
    assert not (tmp_path / 'out').exists()


def test_rank_beside_the_annotation_files_is_refused_before_anything_is_made(
        peaked_scenes, peaked_checkpoint, tmp_path):
    _scene_folder(peaked_scenes, tmp_path / 'images', {'one.png': 1})
    annotations = tmp_path / 'annotations'
    with pytest.raises(InferenceInputError, match='would put ranking.json among the '
                       'annotation files'):
        run_inference(tmp_path / 'images', config=None, checkpoint=peaked_checkpoint,
                      out_dir=annotations / 'out', annotation_dir=annotations, rank=True,
                      progress=False)
    assert not annotations.exists()


def test_images_in_the_out_dirs_vis_are_refused_before_anything_is_made(
        peaked_scenes, peaked_checkpoint, tmp_path):
    """Pictures go to OUT/vis as <image>.jpg: images kept there (a.png beside a.png.jpg) were
    replaced by the drawings of others. Images in vis/ or a folder in it are refused in one
    line before the model loads; an out-dir that holds the images folder, or is it, is fine
    (the pictures go to its vis/, and the images' folder is not searched below)."""
    out = tmp_path / 'out'
    vis = out / 'vis'
    _scene_folder(peaked_scenes, vis, {'a.png': 1, 'a.png.jpg': 1})
    _scene_folder(peaked_scenes, vis / 'cats', {'b.png': 1})
    before = {p: p.read_bytes() for p in vis.rglob('*') if p.is_file()}
    for images in (vis, vis / 'cats', vis / 'a.png'):
        with pytest.raises(InferenceInputError) as caught:
            run_inference(images, config=None, checkpoint=peaked_checkpoint, out_dir=out,
                          progress=False)
        folder = images.parent if images.is_file() else images
        assert str(caught.value) == (
            f'--out-dir {out}: its vis/ holds the images of {folder}, where the pictures '
            '(<image>.jpg) would replace images of those names; choose another output folder')
    assert {p: p.read_bytes() for p in vis.rglob('*') if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ['vis']  # no annotations/ made
    check_arguments(vis / 'cats', checkpoint=peaked_checkpoint, out_dir=vis / 'cats' / 'o')
    check_arguments(vis / 'cats', checkpoint=peaked_checkpoint, out_dir=vis / 'cats')


def test_a_link_out_of_a_folder_is_skipped_and_the_run_goes_on(peaked_scenes, peaked_checkpoint,
                                                              tmp_path, monkeypatch):
    """An image that is a link leading out of the image folder (which the annotator does not
    open either), or whose annotation file is one leading out of the annotation folder, ended
    the run there (UnsafeNameError: the images after it never predicted, no ranking.json); it
    is skipped, named, in one line, and nothing is written through the link; a loop of links
    likewise."""
    from animal_landmarks_mm import infer
    warnings = []
    monkeypatch.setattr(infer, '_warn', warnings.append)
    images = tmp_path / 'images'
    b_box, c_box, e_box = _scene_folder(peaked_scenes, images, {
        'b_good.png': 1, 'c_linked.png': 1, 'e_looped.png': 1})
    _scene_folder(peaked_scenes, tmp_path / 'outside', {'x.png': 1, 'y.png': 1})
    (images / 'a_link.png').symlink_to(tmp_path / 'outside' / 'x.png')
    (images / 'y_link.png').symlink_to(tmp_path / 'outside' / 'y.png')
    annotations = tmp_path / 'annotations'
    annotations.mkdir()
    elsewhere = tmp_path / 'outside' / 'c.json'
    elsewhere.write_text('theirs')
    (annotations / 'c_linked.json').symlink_to(elsewhere)
    # loops of links: one among the images (it ended the listing of the folder) is no image;
    # one named as an image's annotation file skips that image
    (images / 'd_loop.png').symlink_to('d_loop.png')
    (annotations / 'e_looped.json').symlink_to('e_looped.json')
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps({'a_link.png': [b_box], 'b_good.png': [b_box],
                                 'c_linked.png': [c_box], 'e_looped.png': [e_box],
                                 'y_link.png': [b_box]}))
    result = run_inference(images, config=None, checkpoint=peaked_checkpoint,
                           out_dir=tmp_path / 'out', annotation_dir=annotations,
                           boxes_file=boxes, rank=True, progress=False)
    assert [p.name for p in result.written] == ['b_good.json']
    assert [r['image'] for r in json.loads(result.ranking.read_text())] == ['b_good.png']
    for link in ('a_link.png', 'y_link.png'):
        assert f"'{link}' is outside {images} (a link leading out of it); skipped: copy the " \
            'image into the folder to predict it' in warnings
    assert f"c_linked.png: skipped: 'c_linked.json' is outside {annotations} (nothing is " \
        'written through such a link)' in warnings
    assert f"e_looped.png: skipped: 'e_looped.json' in {annotations} is a link that cannot be " \
        'followed (a loop of links) (nothing is written through such a link)' in warnings
    assert not any('d_loop' in warning for warning in warnings)
    assert elsewhere.read_text() == 'theirs'
    assert sorted(p.name for p in (tmp_path / 'out' / 'vis').iterdir()) == ['b_good.png.jpg']


def test_images_in_a_folder_whose_name_is_not_utf8_are_predicted(coco_dir, checkpoint,
                                                                  tmp_path):
    """cv2.imread crashed the process (a segmentation fault, exit 139) on a path that is not
    UTF-8; an image in such a folder is predicted as any other."""
    image_path, _ = _image_and_box(coco_dir)
    folder = tmp_path / os.fsdecode(b'd\xff')
    folder.mkdir()
    shutil.copy(image_path, folder / image_path.name)
    proc = run_tool('infer.py', folder / image_path.name, '--checkpoint', checkpoint,
                    '--out-dir', tmp_path / 'out', check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '1 images predicted' in proc.stdout
    assert (tmp_path / 'out' / 'annotations' / f'{image_path.stem}.json').is_file()


def test_pictures_go_to_an_out_dir_whose_name_is_not_utf8(coco_dir, checkpoint, tmp_path):
    """mmcv.imwrite (the visualizer's out_file) crashed the process (a segmentation fault) on an
    --out-dir whose name is not UTF-8; the picture is now encoded here and written by Python."""
    image_path, _ = _image_and_box(coco_dir)
    out = tmp_path / os.fsdecode(b'd\xff') / 'out'
    proc = run_tool('infer.py', image_path, '--checkpoint', checkpoint, '--out-dir', out,
                    check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    picture = out / 'vis' / f'{image_path.name}.jpg'
    drawn = cv2.imdecode(np.frombuffer(picture.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == cv2.imread(str(image_path)).shape
    assert (out / 'annotations' / f'{image_path.stem}.json').is_file()


def test_a_prediction_under_review_is_kept_and_an_annotator_at_work_stops_a_run(
        peaked_scenes, peaked_checkpoint, tmp_path):
    """A prediction a person corrected in the annotator, not accepted yet (still predicted),
    is their work: the next run keeps it (it replaced it), and the corrected face has no model
    scores any more; a prediction nobody touched is replaced. While an annotator works in the
    folder (its lock), a run is refused in one line before it writes anything (before it
    loads the model): the annotator bound its files to images when it started."""
    one, two = _scene_folder(peaked_scenes, tmp_path / 'images', {'one.png': 1, 'two.png': 1})
    (tmp_path / 'boxes.json').write_text(json.dumps({'one.png': [one], 'two.png': [two]}))
    out = tmp_path / 'landmarks'  # the annotator's output folder
    common = dict(config=None, checkpoint=peaked_checkpoint, out_dir=tmp_path / 'infer',
                  annotation_dir=out, boxes_file=tmp_path / 'boxes.json', progress=False)
    first = run_inference(tmp_path / 'images', **common)
    assert sorted(p.name for p in first.written) == ['one.json', 'two.json']
    session = AnnotationSession(tmp_path / 'images', out, annotator='alice')
    edit = session.open('one.png')
    edit.place(0, 10.0, 12.0)
    corrected = session.save(edit)
    saved = load_annotation(corrected)
    assert saved.status == 'predicted' and saved.faces[0].landmarks[0] == (10.0, 12.0)
    assert saved.faces[0].scores is None and saved.meta['annotator'] == 'alice'
    before = corrected.read_bytes()
    again = run_inference(tmp_path / 'images', **common)
    assert again.kept == [corrected] and [p.name for p in again.written] == ['two.json']
    assert corrected.read_bytes() == before
    untouched = (out / 'two.json').read_bytes()
    held = lock_output_folder(out)  # an annotator at work there
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(b'not a checkpoint')
    try:
        with pytest.raises(OutputFolderInUseError) as caught:
            run_inference(tmp_path / 'images', **common)
        # refused before the model's load: a checkpoint that cannot load is not the message
        with pytest.raises(OutputFolderInUseError):
            run_inference(tmp_path / 'images', **dict(common, checkpoint=broken))
    finally:
        held.release()
    assert str(caught.value) == (
        f'{out} is in use by another annotator or tools/infer.py (process id {os.getpid()}); '
        'two on one folder would overwrite each other\'s saves: stop that one, or choose '
        'another --annotation-dir')
    assert (out / 'two.json').read_bytes() == untouched


def test_an_image_of_more_boxes_than_a_file_may_hold_is_skipped_before_predicting(
        peaked_scenes, peaked_checkpoint, tmp_path, monkeypatch):
    """A boxes file (or a detector) giving an image more faces than an annotation file may
    hold (ANNOTATION_MAX_FACES): one warning, and no crop of it predicted (its file would be
    refused after predicting them all); the other images are predicted and written."""
    from animal_landmarks_mm import infer
    from animal_landmarks_mm.annotation import ANNOTATION_MAX_FACES
    warnings, predicted = [], []
    monkeypatch.setattr(infer, '_warn', warnings.append)
    real_predict = infer.LandmarkPredictor.predict

    def counting_predict(self, image, boxes):
        predicted.append(len(boxes))
        return real_predict(self, image, boxes)

    monkeypatch.setattr(infer.LandmarkPredictor, 'predict', counting_predict)
    good, crowd = _scene_folder(peaked_scenes, tmp_path / 'images', {'one.png': 1,
                                                                      'crowd.png': 1})
    (tmp_path / 'boxes.json').write_text(json.dumps(
        {'one.png': [good], 'crowd.png': [crowd] * (ANNOTATION_MAX_FACES + 1)}))
    result = run_inference(tmp_path / 'images', config=None, checkpoint=peaked_checkpoint,
                           out_dir=tmp_path / 'out', boxes_file=tmp_path / 'boxes.json',
                           progress=False)
    assert [p.name for p in result.written] == ['one.json'] and predicted == [1]
    assert f'crowd.png: skipped: {ANNOTATION_MAX_FACES + 1} face boxes, more than the ' \
           f'{ANNOTATION_MAX_FACES} an annotation file may hold' in warnings, warnings


def test_a_prediction_no_annotation_file_can_hold_is_never_written(peaked_scenes,
                                                                   peaked_checkpoint, tmp_path,
                                                                   monkeypatch):
    """A box of 1e-5 pixels puts all its points on one spot once rounded for the file: such a
    face is skipped with a warning naming the image and the box, the image's other faces are
    written; an image left without faces gets no file, which later runs would keep as a
    person's work for good; nor does one whose file the reader would refuse for its name (a
    line break), left out of the listing."""
    from animal_landmarks_mm import infer
    from animal_landmarks_mm.annotation import Face, ImageAnnotation
    warnings = []
    monkeypatch.setattr(infer, '_warn', warnings.append)
    good, _, _ = _scene_folder(peaked_scenes, tmp_path / 'images',
                               {'both.png': 1, 'tiny.png': 1, 'line\nbreak.png': 1})
    tiny = [10, 10, 10.00001, 10.00001]
    (tmp_path / 'boxes.json').write_text(json.dumps(
        {'both.png': [good, tiny], 'tiny.png': [tiny], 'line\nbreak.png': [good]}))
    out = tmp_path / 'out'
    result = run_inference(tmp_path / 'images', config=None, checkpoint=peaked_checkpoint,
                           out_dir=out, boxes_file=tmp_path / 'boxes.json', progress=False)
    assert [p.name for p in result.written] == ['both.json']
    written = load_annotation(out / 'annotations' / 'both.json')
    assert [face.bbox for face in written.faces] == [pytest.approx(tuple(good))]
    assert sorted(p.name for p in (out / 'annotations').iterdir()
                  if not p.name.startswith('.')) == ['both.json']
    assert [p.name for p in (out / 'vis').iterdir()] == ['both.png.jpg']
    assert any(w.startswith('both.png: box [10, 10, 10, 10] skipped: face 1 has all its '
                            'points on one spot') for w in warnings), warnings
    assert 'tiny.png: no face an annotation file can hold, skipped' in warnings
    # a name no file can hold is left out of the listing, said once (as the annotator does)
    assert f'1 images of {tmp_path / "images"} are left out: their names are not valid UTF-8 ' \
        'or hold a line break (line\\nbreak.png); rename them to predict them' in warnings
    # a model of other points than the project's 28 (another config): no face of it is kept
    five = ImageAnnotation('five.png', 40, 40, [Face([(float(i), 1.0) for i in range(5)])])
    assert infer.readable_faces(five, np.array([[0, 0, 9, 9]])) == []
    assert warnings[-2] == ('five.png: box [0, 0, 9, 9] skipped: face 0 has 5 landmarks, '
                            'expected 28, which no annotation file can hold')


def test_a_boxes_file_is_read_only_if_regular_and_small_and_its_entries_are_numbers(
        tmp_path, monkeypatch):
    """--boxes: a FIFO is refused at once (reading it waited for a writer for good), a file
    over MAX_BOXES_FILE_BYTES is never read whole (/dev/zero ran out of memory), and an entry
    that is no number is refused as the annotation files refuse one (numpy read "10" as 10)."""
    import threading

    from animal_landmarks_mm import infer
    fifo = tmp_path / 'boxes.fifo'
    os.mkfifo(fifo)
    caught = []

    def read():
        try:
            infer.load_boxes_file(fifo)
        except InferenceInputError as e:
            caught.append(str(e))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=20)
    try:
        assert not reader.is_alive(), 'a FIFO was read, waiting for a writer'
    finally:  # a reader waiting on it: a writer that closes at once lets it go
        if reader.is_alive():
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert caught == [f'cannot read boxes: {fifo}: not a regular file (a FIFO, a device or a '
                      'folder): left alone']
    monkeypatch.setattr(infer, 'MAX_BOXES_FILE_BYTES', 100)
    large = tmp_path / 'large.json'
    large.write_text(json.dumps({'a.png': [[0, 0, 10, 10]] * 10}))
    with pytest.raises(InferenceInputError, match=f'^cannot read boxes: {large}: more than 100 '
                       'bytes, too large to read$'):
        infer.load_boxes_file(large)
    for entry, shown in (('"10"', "'10'"), ('true', 'True'), ('null', 'None'), ('[1]', '[1]')):
        given = tmp_path / 'given.json'
        given.write_text(f'{{"a.png": [[{entry}, 10, 20, 20]]}}')
        with pytest.raises(InferenceInputError) as error:
            infer.load_boxes_file(given)
        assert str(error.value) == (f"{given}: boxes of 'a.png': a coordinate is not a number: "
                                    f'{shown}, in [[{entry}, 10, 20, 20]]')
    given.write_text('{"a.png": [[0, 0, 10, 10]], "b.png": [], "a.png": [[5, 5, 20, 20]]}')
    with pytest.raises(InferenceInputError) as error:  # json.loads kept the second a.png only
        infer.load_boxes_file(given)
    assert str(error.value) == (f'{given}: cannot read boxes: the key "a.png" twice in one '
                                'object (which one is meant?)')
    # not finite: usable_boxes skips that box, naming the image (the file is no mistake)
    given.write_text('{"a.png": [[NaN, 0, 10, 10], [0, 0, 1e400, 10]]}')
    assert infer.load_boxes_file(given)['a.png'].shape == (2, 4)


def test_the_boxes_of_an_image_go_through_the_model_a_batch_at_a_time(peaked_scenes,
                                                                      peaked_checkpoint,
                                                                      monkeypatch):
    """Many boxes of one image go to mmpose MAX_BATCH at a time, for the points and for the
    flip disagreement: all at once, 400 boxes asked 1.6 GB of one allocation. The points are
    those of one batch of all."""
    import mmpose.apis

    from animal_landmarks_mm import infer
    assert LandmarkPredictor(None, peaked_checkpoint).max_batch == infer.MAX_BATCH
    image, boxes, _ = peaked_scenes[0]
    boxes = np.concatenate([boxes, boxes + 3, boxes - 3])  # 6 faces
    whole = LandmarkPredictor(None, peaked_checkpoint, max_batch=len(boxes))
    expected = whole.predict(image, boxes).pred_instances
    expected_disagreement = whole.flip_disagreement(image, boxes)
    batches = []
    real = mmpose.apis.inference_topdown

    def counted(model, img, bboxes=None, bbox_format='xyxy'):
        batches.append(len(bboxes))
        return real(model, img, bboxes=bboxes, bbox_format=bbox_format)
    monkeypatch.setattr(mmpose.apis, 'inference_topdown', counted)
    predictor = LandmarkPredictor(None, peaked_checkpoint, max_batch=4)
    predicted = predictor.predict(image, boxes).pred_instances
    assert batches == [4, 2]
    np.testing.assert_allclose(predicted.keypoints, expected.keypoints, atol=1e-3)
    np.testing.assert_allclose(predicted.keypoint_scores, expected.keypoint_scores, atol=1e-5)
    batches.clear()
    np.testing.assert_allclose(predictor.flip_disagreement(image, boxes),
                               expected_disagreement, rtol=1e-4)
    assert batches == [4, 2, 4, 2]  # plain, then mirrored


def test_an_image_the_face_detector_cannot_process_is_skipped(peaked_scenes,
                                                              peaked_checkpoint, tmp_path,
                                                              monkeypatch):
    """An image 2 pixels wide and 3000 high scales to a width of 0 in the detector's
    preprocessing (cv2.resize fails): that image is skipped, named, in one line; the run goes
    on (it ended with cv2's traceback)."""
    from anime_face_detector._face import YOLOv3FaceDetector

    from animal_landmarks_mm import infer
    warnings = []
    monkeypatch.setattr(infer, '_warn', warnings.append)
    torch.manual_seed(0)
    weights = tmp_path / 'yolov3.pth'
    torch.save(YOLOv3FaceDetector().state_dict(), weights)
    detector = FaceDetector('yolov3', weights, score_thr=0.0)
    _scene_folder(peaked_scenes, tmp_path / 'images', {'b_good.png': 1})
    assert cv2.imwrite(str(tmp_path / 'images' / 'a_strip.png'),
                       np.full((3000, 2, 3), 128, np.uint8))
    result = run_inference(tmp_path / 'images', config=None, checkpoint=peaked_checkpoint,
                           out_dir=tmp_path / 'out', face_detector=detector, progress=False)
    assert [p.name for p in result.written] == ['b_good.json']
    strip, = [w for w in warnings if w.startswith('a_strip.png')]
    assert strip.startswith('a_strip.png: the face detector cannot process a 2x3000 image (')
    assert strip.endswith('); skipped') and '\n' not in strip


def test_a_killed_runs_pictures_are_removed(peaked_scenes, peaked_checkpoint, tmp_path):
    """The temporaries a killed run left in out_dir/vis (the tool's own folder) are removed;
    a young one (a picture being written) is left."""
    box, = _scene_folder(peaked_scenes, tmp_path / 'images', {'one.png': 1})
    (tmp_path / 'boxes.json').write_text(json.dumps({'one.png': [box]}))
    vis = tmp_path / 'out' / 'vis'
    vis.mkdir(parents=True)
    stale = vis / f'.gone.png.jpg.k3j5h2l1{TEMPORARY_SUFFIX}'
    stale.write_bytes(b'\xff\xd8')
    _age(stale)
    young = vis / f'.other.png.jpg.a1b2c3d4{TEMPORARY_SUFFIX}'
    young.write_bytes(b'\xff\xd8')
    run_inference(tmp_path / 'images', config=None, checkpoint=peaked_checkpoint,
                  out_dir=tmp_path / 'out', boxes_file=tmp_path / 'boxes.json',
                  progress=False)
    assert not stale.exists() and young.exists()
    assert (vis / 'one.png.jpg').is_file()


@pytest.fixture(scope='module')
def infer_tool():
    """tools/infer.py, imported: its errors without a new interpreter each."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('infer_tool', Path(__file__).parents[1]
                                                  / 'tools' / 'infer.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('args, message', [
    (['missing'], 'error: input not found: missing'),
    (['IMG', '--checkpoint', 'nope.pth'], 'error: checkpoint not found: nope.pth (give a file'),
    (['TIF'], 'error: {tif}: not an image of the kinds the tools read (.jpg, .jpeg, .png'),
    (['IMG', '--checkpoint', 'ONNX', '--rank'], 'error: {onnx}: not an ONNX model'),
])
def test_the_tool_checks_its_arguments_before_the_face_detector_is_read(
        infer_tool, peaked_checkpoint, tmp_path, monkeypatch, args, message):
    """Input, checkpoint and --rank with an ONNX graph are checked as run_inference checks
    them, before the face detector's weights are read (or downloaded): they were checked only
    after it was built."""
    def built(*args, **kwargs):
        raise AssertionError('the face detector was built before the arguments were checked')
    monkeypatch.setattr(infer_tool, 'FaceDetector', built)
    image, tif, onnx = tmp_path / 'one.png', tmp_path / 'a.tif', tmp_path / 'model.onnx'
    assert cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))
    assert cv2.imwrite(str(tif), np.zeros((40, 40, 3), np.uint8))
    onnx.write_bytes(b'not a graph')
    given = {'IMG': str(image), 'TIF': str(tif), 'ONNX': str(onnx)}
    args = [given.get(a, a) for a in args]
    if '--checkpoint' not in args:
        args += ['--checkpoint', str(peaked_checkpoint)]
    message = message.format(tif=tif, onnx=onnx)
    with pytest.raises(SystemExit) as caught:
        infer_tool.main([*args, '--face-detector', 'yolov3', '--out-dir',
                         str(tmp_path / 'out')])
    assert str(caught.value.code).startswith(message), caught.value.code
    assert not (tmp_path / 'out').exists()


def test_an_annotator_at_work_stops_the_tool_before_the_face_detector_is_read(
        infer_tool, peaked_checkpoint, tmp_path, monkeypatch):
    """The in-use peek ran inside run_inference, after the face detector's weights were read
    (or downloaded): it runs with the argument checks, before any model."""
    def built(*args, **kwargs):
        raise AssertionError('the face detector was built before the lock was peeked at')
    monkeypatch.setattr(infer_tool, 'FaceDetector', built)
    image, annotations = tmp_path / 'one.png', tmp_path / 'annotations'
    assert cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))
    annotations.mkdir()
    held = lock_output_folder(annotations)  # an annotator at work there
    try:
        with pytest.raises(SystemExit) as caught:
            infer_tool.main([str(image), '--checkpoint', str(peaked_checkpoint),
                             '--face-detector', 'yolov3', '--out-dir', str(tmp_path / 'out'),
                             '--annotation-dir', str(annotations)])
    finally:
        held.release()
    assert str(caught.value.code) == (
        f'error: {annotations} is in use by another annotator or tools/infer.py (process id '
        f'{os.getpid()}); two on one folder would overwrite each other\'s saves: stop that '
        'one, or choose another --annotation-dir')
    assert not (tmp_path / 'out').exists()


def test_a_single_file_follows_a_folders_rules_for_images(tmp_path):
    """An image given alone is taken only if a folder's listing would take it, and the error
    says which rule it breaks (it was 'not an image of <folder>', after the model loaded)."""
    from animal_landmarks_mm.infer import list_images
    pixels = np.zeros((8, 8, 3), np.uint8)
    for name in ('a.tif', '.hidden.png', 'fine.PNG'):
        assert cv2.imwrite(str(tmp_path / 'x.png'), pixels)
        os.replace(tmp_path / 'x.png', tmp_path / name)
    not_utf8 = tmp_path / os.fsdecode(b'\xff.png')
    shutil.copy(tmp_path / 'fine.PNG', not_utf8)
    assert list_images(tmp_path / 'fine.PNG') == [tmp_path / 'fine.PNG']
    for path, why in ((tmp_path / 'a.tif', 'not an image of the kinds the tools read (.jpg, '
                       '.jpeg, .png, .bmp, .webp)'),
                      (tmp_path / '.hidden.png', 'a hidden name (starting with "."), which '
                       'the tools keep for their own files; rename the image'),
                      (not_utf8, 'the name is not valid UTF-8, which no annotation file can '
                       'hold; rename the image')):
        with pytest.raises(InferenceInputError) as caught:
            list_images(path)
        assert str(caught.value) == f'{path}: {why}'


class _AllocatingPickle:
    """Unpickles as ``bytearray(n)``: a few hundred bytes of file, ``n`` bytes of memory."""

    def __init__(self, size: int):
        self.size = size

    def __reduce__(self):
        return bytearray, (self.size,)


def test_the_face_detectors_weights_are_read_through_the_checkpoint_guards(tmp_path,
                                                                           monkeypatch):
    """The detector's file went straight to anime_face_detector's load_face_detector, whose own
    torch.load ran none of checkpoints.py's guards: a 1 kB pickle of bytearray(1.5e9) took 1.8
    GB before it failed. It is read by read_checkpoint, a file or a pretrained name alike, and
    refused in one line naming it; good weights (.pth under state_dict, .safetensors) load."""
    import zipfile

    import anime_face_detector._face as afd_face
    from anime_face_detector._face import YOLOv3FaceDetector
    from safetensors.torch import save_file

    from animal_landmarks_mm import model_zoo
    from animal_landmarks_mm.checkpoints import CheckpointError

    def unguarded(path):
        raise AssertionError(f'{path} was read by anime_face_detector\'s own torch.load')

    monkeypatch.setattr(afd_face, 'load_state_dict_from_path', unguarded)
    bomb = tmp_path / 'bomb.pth'
    torch.save({'x': _AllocatingPickle(64 << 20)}, bomb)
    plain = tmp_path / 'plain.pth'
    torch.save({'x': torch.zeros(4)}, plain)
    deflated = tmp_path / 'deflated.pth'  # torch.save never compresses: a zip bomb's shape
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(deflated, 'w', zipfile.ZIP_DEFLATED) \
            as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    for path, why in ((bomb, 'refused a pickle importing bytearray'), (deflated, 'compressed')):
        with pytest.raises(CheckpointError) as caught:
            FaceDetector('yolov3', path)
        message = str(caught.value)
        assert message.startswith(f'{path}: not a checkpoint torch can read safely (')
        assert why in message and '\n' not in message
    # the pretrained names resolve to a file of the Hugging Face cache: read the same way
    monkeypatch.setattr(model_zoo, '_download', lambda weights: bomb)
    for checkpoint in (None, 'anime-face-detector-yolov3'):
        with pytest.raises(CheckpointError, match='refused a pickle importing bytearray'):
            FaceDetector('yolov3', checkpoint)
    torch.manual_seed(0)
    weights = YOLOv3FaceDetector().state_dict()
    wrapped, safetensors = tmp_path / 'wrapped.pth', tmp_path / 'yolov3.safetensors'
    torch.save({'state_dict': weights, 'meta': {'epoch': 12}}, wrapped)
    save_file(weights, str(safetensors))
    for path in (wrapped, safetensors):
        loaded = FaceDetector('yolov3', path).model.state_dict()
        assert loaded.keys() == weights.keys()
        assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    del weights['bbox_head.convs_pred.0.bias']
    torch.save(weights, plain)
    with pytest.raises(CheckpointError) as caught:
        FaceDetector('yolov3', plain)
    assert str(caught.value) == (f'{plain}: not a yolov3 face detector checkpoint '
                                 'anime_face_detector can load (missing: '
                                 'bbox_head.convs_pred.0.bias)')


def test_rank_refuses_a_ranking_json_it_cannot_replace_before_any_model_loads(
        peaked_scenes, peaked_checkpoint, infer_tool, tmp_path, monkeypatch):
    """OUT/ranking.json as a folder or a FIFO failed the run's last write, once every image was
    predicted and drawn, naming the hidden temporary: it is refused in one line before any
    model loads. A link there is replaced (the folder it leads to untouched), as a file is; a
    write that fails at the end (a full disk) names ranking.json."""
    import errno

    from animal_landmarks_mm import infer
    box, = _scene_folder(peaked_scenes, tmp_path / 'images', {'one.png': 1})
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps({'one.png': [box]}))
    out = tmp_path / 'out'
    ranking = out / 'ranking.json'
    common = dict(config=None, checkpoint=peaked_checkpoint, out_dir=out, boxes_file=boxes,
                  rank=True, progress=False)
    with monkeypatch.context() as patched:
        def loaded(*args, **kwargs):
            raise AssertionError('the model was loaded before ranking.json was checked')
        patched.setattr(infer, 'load_predictor', loaded)
        ranking.mkdir(parents=True)
        (ranking / 'keep').write_text('the user\'s')
        refusal = (f'{ranking} is a folder, not a file --rank can replace with its ranking: '
                   'move it away or choose another --out-dir')
        with pytest.raises(InferenceInputError) as caught:
            run_inference(tmp_path / 'images', **common)
        assert str(caught.value) == refusal
        with pytest.raises(SystemExit) as caught:
            infer_tool.main([str(tmp_path / 'images'), '--checkpoint', str(peaked_checkpoint),
                             '--boxes', str(boxes), '--out-dir', str(out), '--rank'])
        assert caught.value.code == f'error: {refusal}'
        shutil.rmtree(ranking)
        os.mkfifo(ranking)
        with pytest.raises(InferenceInputError, match=r'ranking.json is a FIFO, a device or a '
                           'socket, not a file --rank can replace'):
            run_inference(tmp_path / 'images', **common)
        assert sorted(p.name for p in out.iterdir()) == ['ranking.json']  # nothing made
        ranking.unlink()
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    ranking.symlink_to(elsewhere)
    result = run_inference(tmp_path / 'images', **common)
    assert result.ranking == ranking and not ranking.is_symlink()
    assert [r['image'] for r in json.loads(ranking.read_text())] == ['one.png']
    assert not any(elsewhere.iterdir())

    def full_disk(path, obj):
        temporary = Path(path).parent / f'.ranking.json.k3j5h2l1{TEMPORARY_SUFFIX}'
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temporary))

    monkeypatch.setattr(infer, 'write_json_atomic', full_disk)
    shutil.rmtree(out)
    with pytest.raises(SystemExit) as caught:
        infer_tool.main([str(tmp_path / 'images'), '--checkpoint', str(peaked_checkpoint),
                         '--boxes', str(boxes), '--out-dir', str(out), '--rank'])
    assert caught.value.code == f'error: {os.strerror(errno.ENOSPC)}: {ranking}'
    assert (out / 'annotations' / 'one.json').is_file()
