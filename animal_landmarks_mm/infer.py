"""Predict the 28 landmarks of the faces in images, with mmpose's inference API.

Face boxes come from the user (a JSON file), from anime_face_detector's face detector when that
package and a detector checkpoint are at hand locally, or else the whole image (with a warning).
Results are written as pictures (mmpose's visualizer, our colours and skeleton) and as one
annotation file per image in the project's format, so that predictions open in the annotator.

Box conventions (measured against anime-face-detector 0.1.0, see tests/test_export.py): for the
same ``[x0, y0, x1, y1]`` both implementations crop identically (centre = midpoint, size =
``x1 - x0``, padding 1.25) and give the same points within 1e-3 px. The two differ only where
they make boxes themselves: anime_face_detector grows detected boxes by 1.1 around their centre
(with size ``x1 - x0 + 1``), which :func:`scale_detected_box` reproduces, and uses
``[0, 0, w - 1, h - 1]`` for the whole image where mmpose uses ``[0, 0, w, h]`` (we follow mmpose).
"""
from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from mmengine.logging import print_log

from .annotation import IMAGE_SUFFIXES, Face, ImageAnnotation, image_files, save_annotation
from .errors import AnimalLandmarksError

FACE_DETECTORS = ('yolov3', 'faster-rcnn')
#: anime_face_detector's factor for detected boxes (``LandmarkDetector(box_scale_factor)``).
DETECTED_BOX_SCALE = 1.1


def _warn(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)


class InferenceInputError(AnimalLandmarksError, ValueError):
    """Inputs that cannot be used; the message is one line."""


def list_images(path: str | os.PathLike) -> list[Path]:
    """One image, or the images of a folder sorted by name."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        images = image_files(path)
        if not images:
            raise InferenceInputError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {path}')
        return images
    raise InferenceInputError(f'input not found: {path}')


def load_boxes_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``{"image file name": [[x0, y0, x1, y1], ...], ...}``.

    Raises:
        InferenceInputError: unreadable file or malformed boxes, naming which.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InferenceInputError(f'{path}: cannot read boxes ({e})') from None
    if not isinstance(raw, dict):
        raise InferenceInputError(f'{path}: expected {{"image name": [[x0, y0, x1, y1], ...]}}')
    boxes = {}
    for name, value in raw.items():
        array = np.asarray(value, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] < 4 or not np.isfinite(array).all() or \
                (array[:, 2] <= array[:, 0]).any() or (array[:, 3] <= array[:, 1]).any():
            raise InferenceInputError(
                f'{path}: boxes of {name!r} must be a list of [x0, y0, x1, y1] with x1 > x0 '
                f'and y1 > y0, got {value!r}')
        boxes[name] = array[:, :4]
    return boxes


def scale_detected_box(box: np.ndarray, factor: float = DETECTED_BOX_SCALE) -> np.ndarray:
    """Grow a detected box around its centre as anime_face_detector does before landmarks."""
    size = box[2:4] - box[:2] + 1
    center = (box[:2] + box[2:4]) / 2
    top_left = center - size * factor / 2
    return np.concatenate([top_left, top_left + size * factor])


class FaceDetector:
    """anime_face_detector's YOLOv3 or Faster R-CNN face detector, from a local checkpoint.

    Args:
        name: ``yolov3`` or ``faster-rcnn``.
        checkpoint: the detector's ``.pth`` or ``.safetensors`` (user-supplied; never fetched).
        device: torch device.
        score_thr: keep faces scoring at least this.
    """

    def __init__(self, name: str, checkpoint: str | os.PathLike, device: str = 'cpu',
                 score_thr: float = 0.5):
        if name not in FACE_DETECTORS:
            raise InferenceInputError(f'unknown face detector {name!r}; choose from '
                                      f'{", ".join(FACE_DETECTORS)}')
        if not Path(checkpoint).is_file():
            raise InferenceInputError(f'face detector checkpoint not found: {checkpoint}')
        try:
            from anime_face_detector._face import load_face_detector
        except ImportError:
            raise InferenceInputError(
                'the face detector needs the anime-face-detector package (make setup installs '
                'it)') from None
        self.model = load_face_detector(name, str(checkpoint), device=device)
        self.score_thr = score_thr

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        """Face boxes ``(N, 4)``, grown as anime_face_detector does."""
        detections = self.model.detect(image_bgr)
        kept = [scale_detected_box(d[:4]) for d in detections if d[4] >= self.score_thr]
        return np.array(kept, dtype=np.float32).reshape(-1, 4)


class LandmarkPredictor:
    """A trained model behind mmpose's ``init_model`` / ``inference_topdown``.

    Args:
        config: the model's config; None for the project's main config, whose network every
            checkpoint of the shipped configs and of anime_face_detector has.
        checkpoint: a checkpoint trained here, one in anime_face_detector's layout (its
            released model for human anime faces, or an export), or a pretrained name
            (``anime-face-detector``); loaded strictly.
        device: ``cpu``, ``cuda``, ``cuda:0``...

    Raises:
        InferenceInputError: a missing config.
        CheckpointError: an unreadable checkpoint, or weights that do not fit the config's
            model (then pass the config the model was trained with).
    """

    def __init__(self, config: str | os.PathLike | None, checkpoint: str | os.PathLike,
                 device: str = 'cpu'):
        from mmpose.apis import init_model

        from .checkpoints import CheckpointError, load_strict
        from .model_zoo import MAIN_CONFIG
        config = MAIN_CONFIG if config is None else config
        if not Path(config).is_file():
            raise InferenceInputError(f'config not found: {config}')
        # Not init_model's loading: it ignores names that do not match, which would leave an
        # anime_face_detector checkpoint's head random without a word.
        self.model = init_model(str(config), None, device=device)
        try:
            load_strict(self.model, checkpoint)
        except CheckpointError as e:
            raise CheckpointError(f'{e} of {config}' if 'does not fit' in str(e) else str(e)
                                  ) from None
        self.checkpoint = str(checkpoint)
        self._visualizer = None

    def predict(self, image_bgr: np.ndarray, boxes: np.ndarray):
        """Landmarks of each box: a merged mmpose ``PoseDataSample``
        (``pred_instances.keypoints`` ``(N, 28, 2)``, ``keypoint_scores`` ``(N, 28)``)."""
        from mmpose.apis import inference_topdown
        from mmpose.structures import merge_data_samples
        results = inference_topdown(self.model, image_bgr, bboxes=boxes, bbox_format='xyxy')
        return merge_data_samples(results)

    def draw(self, image_bgr: np.ndarray, sample, out_file: str | os.PathLike) -> None:
        """Save the image with boxes, points (group colours) and skeleton lines."""
        import mmcv
        from mmpose.registry import VISUALIZERS
        if self._visualizer is None:
            cfg = self.model.cfg.visualizer.copy()
            cfg.vis_backends = None  # draw only; no log files
            cfg.name = f'landmark_predictor_{id(self)}'
            self._visualizer = VISUALIZERS.build(cfg)
            self._visualizer.set_dataset_meta(self.model.dataset_meta)
        self._visualizer.add_datasample(
            'prediction', mmcv.bgr2rgb(image_bgr), data_sample=sample, draw_gt=False,
            draw_bbox=True, show_kpt_idx=False, show=False, out_file=str(out_file))


def predictions_to_annotation(image_name: str, width: int, height: int, sample,
                              boxes: np.ndarray, source: dict) -> ImageAnnotation:
    """Predictions as an annotation of the project's format (status 'annotated' by a model)."""
    keypoints = sample.pred_instances.keypoints
    scores = sample.pred_instances.keypoint_scores
    faces = [Face(landmarks=[(float(x), float(y)) for x, y in kpts],
                  bbox=tuple(float(v) for v in box))
             for kpts, box in zip(keypoints, boxes)]
    return ImageAnnotation(
        image=image_name, width=width, height=height, faces=faces,
        meta=dict(annotator='model', created=datetime.now(UTC).isoformat(),
                  source=source, keypoint_scores=[[round(float(s), 4) for s in face]
                                                  for face in scores]))


def run_inference(inputs: str | os.PathLike, *, config: str | os.PathLike | None,
                  checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                  boxes_file: str | os.PathLike | None = None,
                  face_detector: FaceDetector | None = None, device: str = 'cpu',
                  progress: bool = True) -> list[Path]:
    """Predict every image of ``inputs`` and write ``out_dir/vis/`` and ``out_dir/annotations/``.

    Returns:
        The annotation files written.
    """
    import cv2
    from tqdm import tqdm
    images = list_images(inputs)
    given = load_boxes_file(boxes_file) if boxes_file else {}
    predictor = LandmarkPredictor(config=config, checkpoint=checkpoint, device=device)
    out_dir = Path(out_dir)
    (out_dir / 'vis').mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(images, desc='landmarks', unit='img', disable=not progress):
        image = cv2.imread(str(path))
        if image is None:
            _warn(f'{path}: unreadable image, skipped')
            continue
        height, width = image.shape[:2]
        if boxes_file:
            boxes = given.get(path.name)
            if boxes is None:
                _warn(f'{path.name}: no boxes in {boxes_file}, skipped')
                continue
            how = 'boxes file'
        elif face_detector is not None:
            boxes, how = face_detector(image), 'anime_face_detector face detector'
            if len(boxes) == 0:
                _warn(f'{path.name}: the face detector found no face, skipped')
                continue
        else:
            _warn(f'{path.name}: no boxes given and no face detector: using the whole '
                          'image as the face box')
            boxes, how = np.array([[0, 0, width, height]], np.float32), 'whole image'
        sample = predictor.predict(image, boxes)
        predictor.draw(image, sample, out_dir / 'vis' / f'{path.stem}.jpg')
        annotation = predictions_to_annotation(
            path.name, width, height, sample, boxes,
            source=dict(checkpoint=str(checkpoint), config=str(config), boxes=how))
        target = out_dir / 'annotations' / f'{path.stem}.json'
        save_annotation(target, annotation)
        written.append(target)
    return written
