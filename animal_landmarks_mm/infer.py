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

import dataclasses
import hashlib
import json
import logging
import math
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from mmengine.logging import print_log

from .annotate import (
    AnnotationSession,
    UnsafeNameError,
    check_output_folder_free,
    persons_files_in_subfolders,
)
from .annotation import (
    ANNOTATION_MAX_FACES,
    IMAGE_SHA256_KEY,
    IMAGE_SUFFIXES,
    MODEL_ANNOTATOR,
    NAME_MAX_BYTES,
    STATUS_PREDICTED,
    WARP_MAX_SIDE,
    AnnotationError,
    Face,
    ImageAnnotation,
    RepeatedKeyError,
    annotation_bytes,
    decode_image,
    file_sha256,
    fit_name,
    image_name_problem,
    image_size,
    is_models_prediction,
    lies_in_folder,
    load_annotation,
    loads_user_json,
    misnamed_images_warning,
    parse_annotation,
    parse_face,
    parse_number,
    read_image_bytes,
    read_regular_file,
    remove_stale_temporaries,
    scan_images,
    unencodable_string,
    write_bytes_atomic,
    write_image,
    write_json_atomic,
)
from .errors import AnimalLandmarksError, first_line, printable
from .onnx_predictor import (
    MAX_BATCH,
    ImagePart,
    NonFinitePredictionError,
    OnnxLandmarkPredictor,
    OnnxModelError,
    bbox_center_scale,
    check_finite_predictions,
    crop_part,
    is_onnx_path,
    test_pipeline_crop,
    warp_matrix,
)

__all__ = ['FaceDetectionError', 'FaceDetector', 'LandmarkPredictor',
           'NonFinitePredictionError', 'OnnxLandmarkPredictor', 'OnnxModelError',
           'check_arguments', 'load_predictor', 'parse_device', 'run_inference']

FACE_DETECTORS = ('yolov3', 'faster-rcnn')
#: anime_face_detector's factor for detected boxes (``LandmarkDetector(box_scale_factor)``).
DETECTED_BOX_SCALE = 1.1
#: A face box with a side longer than this many times the image's longer side is skipped. No
#: face of the image is that large (a detector's box grown by 1.1, or a face running off the
#: picture, stays well below): such a box is a mistake (another image's coordinates, 1e10 for
#: "everything"), its crop would shrink the image to a few pixels, and beyond float32's range
#: its points are not even finite.
MAX_BOX_SIDE_PER_IMAGE_SIDE = 4
#: ``--rank``'s output, in the output folder.
RANKING_FILE = 'ranking.json'
#: The largest ``--boxes`` file read (bytes): a million boxes (about 60 bytes each) fit; a
#: larger file, or a device, is no list of boxes (never read whole).
MAX_BOXES_FILE_BYTES = 64 << 20


def _warn(message: str) -> None:
    """Log a warning; names from the user's folders and files (an escape sequence in a file
    name) are shown escaped, on one line."""
    print_log(printable(message, one_line=True), logger='current', level=logging.WARNING)


def _note(message: str) -> None:
    """Log what the run did that is no problem (escaped as :func:`_warn` does)."""
    print_log(printable(message, one_line=True), logger='current', level=logging.INFO)


class InferenceInputError(AnimalLandmarksError, ValueError):
    """Inputs that cannot be used; the message is one line."""


class FaceDetectionError(InferenceInputError):
    """An image the face detector cannot process (one line); the run skips that image."""


def list_images(path: str | os.PathLike) -> list[Path]:
    """One image, or the images of a folder sorted by name (:func:`~.annotation.scan_images`;
    those whose name no annotation file can hold are left out, one warning naming them).

    Raises:
        InferenceInputError: no such file or folder, a folder without images, or a file that
            a folder's listing would leave out (its suffix, a hidden name, a name that is not
            UTF-8 or holds a line break), saying which; one line.
    """
    path = Path(path)
    if path.is_file():
        # the rules of a folder's listing: the annotator and the annotation files name only
        # such images
        problem = image_name_problem(path.name)
        if problem is not None:
            raise InferenceInputError(f'{path}: {problem}')
        return [path]
    if path.is_dir():
        images, misnamed = scan_images(path)
        if misnamed:  # as the annotator says at start
            _warn(misnamed_images_warning(path, misnamed, 'predict'))
        if not images:
            raise InferenceInputError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {path}')
        return images
    raise InferenceInputError(f'input not found: {path}')


def load_boxes_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``{"image file name": [[x0, y0, x1, y1], ...], ...}``; ``[]`` for an image without
    faces. Boxes that are well formed but cannot be a face of their image (not finite, off the
    image, far larger than it) are left to :func:`usable_boxes`, which knows the image.

    Raises:
        InferenceInputError: unreadable file (no regular file: a FIFO is never read; over
            :data:`MAX_BOXES_FILE_BYTES`) or malformed boxes, naming which.
    """
    try:
        data = read_regular_file(path, MAX_BOXES_FILE_BYTES)
    except AnnotationError as e:  # a FIFO, a device, too large: the message names the file
        raise InferenceInputError(f'cannot read boxes: {e}') from None
    except OSError as e:
        raise InferenceInputError(f'{path}: cannot read boxes ({e.__class__.__name__}: '
                                  f'{" ".join(str(e).split())[:80]})') from None
    try:
        raw = loads_user_json(data.decode('utf-8'))
    except RepeatedKeyError as e:  # its message is one line, the key cut to fit
        raise InferenceInputError(f'{path}: cannot read boxes: {e}') from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InferenceInputError(f'{path}: cannot read boxes ({e.__class__.__name__}: '
                                  f'{" ".join(str(e).split())[:80]})') from None
    if not isinstance(raw, dict):
        raise InferenceInputError(f'{path}: expected {{"image name": [[x0, y0, x1, y1], ...]}}')
    boxes = {}
    for name, value in raw.items():
        if value == []:  # listed without faces
            boxes[name] = np.zeros((0, 4), np.float32)
            continue
        shown = printable(json.dumps(value, ensure_ascii=False), one_line=True, limit=80)
        try:
            _check_coordinates(value)
        except AnnotationError as e:
            raise InferenceInputError(f'{path}: boxes of {name!r}: {e}, in {shown}') from None
        try:
            with np.errstate(over='ignore'):  # 1e39 is infinite in float32: usable_boxes says
                array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError, OverflowError):  # ragged lists, strings, objects
            array = np.zeros((0,), np.float32)
        if array.ndim != 2 or array.shape[1] < 4:
            raise InferenceInputError(
                f'{path}: boxes of {name!r} must be a list of [x0, y0, x1, y1] with x1 > x0 '
                f'and y1 > y0, got {shown}')
        finite = np.isfinite(array[:, :4]).all(axis=1)
        if (finite & ((array[:, 2] <= array[:, 0]) | (array[:, 3] <= array[:, 1]))).any():
            raise InferenceInputError(
                f'{path}: boxes of {name!r} must be a list of [x0, y0, x1, y1] with x1 > x0 '
                f'and y1 > y0, got {shown}')
        boxes[name] = array[:, :4]
    return boxes


def _check_coordinates(boxes: object) -> None:
    """Refuse a box entry that is no number, by the annotation files' rule for a number
    (:func:`~.annotation.parse_number`): numpy would read ``"10"`` as 10 and true and false as 1 and
    0, a mistake rather than a corner. NaN and infinities are left to :func:`usable_boxes`,
    which skips their box naming the image; the shape is :func:`load_boxes_file`'s to check.

    Raises:
        AnnotationError: the first entry that is no number, in one line.
    """
    for row in boxes if isinstance(boxes, list) else ():
        for value in row if isinstance(row, list) else ():
            if not (isinstance(value, float) and not math.isfinite(value)):
                parse_number(value, 'a coordinate')


def _shown_box(box: np.ndarray) -> str:
    return '[' + ', '.join(f'{float(v):g}' for v in box[:4]) + ']'


def usable_boxes(boxes: np.ndarray, width: int, height: int, image: str) -> np.ndarray:
    """The boxes of an image that can be faces of it; each other one is skipped with a warning
    naming the image and the box: one that is not finite, lies off the image, or has a side
    longer than :data:`MAX_BOX_SIDE_PER_IMAGE_SIDE` times the image's longer side.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        width: the image's width in pixels.
        height: its height.
        image: the image's name, for the warnings.

    Returns:
        The kept boxes, ``(M, 4)``, in their order.
    """
    longest = MAX_BOX_SIDE_PER_IMAGE_SIDE * max(width, height)
    kept = []
    for box in np.asarray(boxes, np.float32).reshape(-1, 4):
        x0, y0, x1, y1 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            why = 'not finite'
        elif x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            why = f'outside the image ({width}x{height})'
        elif max(x1 - x0, y1 - y0) > longest:
            why = (f'a side over {MAX_BOX_SIDE_PER_IMAGE_SIDE} times the image\'s longer side '
                   f'({width}x{height})')
        else:
            kept.append(box)
            continue
        _warn(f'{image}: box {_shown_box(box)} skipped: {why}')
    return np.array(kept, np.float32).reshape(-1, 4)


def scale_detected_box(box: np.ndarray, factor: float = DETECTED_BOX_SCALE) -> np.ndarray:
    """Grow a detected box around its centre as anime_face_detector does before landmarks."""
    size = box[2:4] - box[:2] + 1
    center = (box[:2] + box[2:4]) / 2
    top_left = center - size * factor / 2
    return np.concatenate([top_left, top_left + size * factor])


class FaceDetector:
    """anime_face_detector's YOLOv3 or Faster R-CNN face detector.

    Args:
        name: ``yolov3`` or ``faster-rcnn``.
        checkpoint: the detector's ``.pth`` or ``.safetensors``, or a pretrained name; None for
            the detector's published weights (``anime-face-detector-yolov3`` ...), downloaded
            once into the Hugging Face cache (:mod:`.model_zoo`).
        device: torch device.
        score_thr: keep faces scoring at least this, from 0 to 1 (a detection's score).

    Raises:
        InferenceInputError: an unknown detector, a threshold no score can be compared with
            (NaN keeps no face and says nothing; over 1 the same), or anime-face-detector not
            installed.
        CheckpointError: weights that cannot be found, that :func:`~.checkpoints.read_checkpoint`
            refuses (a file it cannot read safely, or other than plain tensors), or that do not
            fit the detector (one line naming the file).
    """

    def __init__(self, name: str, checkpoint: str | os.PathLike | None = None,
                 device: str = 'cpu', score_thr: float = 0.5):
        from .checkpoints import CheckpointError, compare_state_dicts, read_checkpoint
        from .model_zoo import face_detector_weights, resolve_checkpoint
        if name not in FACE_DETECTORS:
            raise InferenceInputError(f'unknown face detector {name!r}; choose from '
                                      f'{", ".join(FACE_DETECTORS)}')
        if not 0 <= score_thr <= 1:  # before any weights are read (or downloaded)
            raise InferenceInputError(f'the face score threshold is a number from 0 to 1, '
                                      f'not {score_thr}')
        device = torch_device(device)
        try:
            from anime_face_detector._face import FasterRCNNFaceDetector, YOLOv3FaceDetector
        except ImportError:
            raise InferenceInputError(
                'the face detector needs the anime-face-detector package (make setup installs '
                'it)') from None
        try:
            path = resolve_checkpoint(face_detector_weights(name) if checkpoint is None
                                      else checkpoint)
        except CheckpointError as e:
            raise CheckpointError(f'face detector {e}') from None
        # read as every checkpoint is (checkpoints.py's guards: no pickle allocating gigabytes,
        # no compressed zip record, plain tensors only), never by anime_face_detector's
        # load_face_detector, whose own torch.load of the file runs none of them; the pretrained
        # names resolve to a file of the Hugging Face cache, read the same way
        state_dict, _ = read_checkpoint(path)
        model = YOLOv3FaceDetector() if name == 'yolov3' else FasterRCNNFaceDetector()
        # the check load_face_detector's strict load makes, as one line naming the tensors
        difference = compare_state_dicts(state_dict, model.state_dict())
        if difference:
            raise CheckpointError(f'{path}: not a {name} face detector checkpoint '
                                  f'anime_face_detector can load ({difference})')
        try:
            model.load_state_dict(state_dict, strict=True)
        except (RuntimeError, TypeError, ValueError) as e:  # what the comparison cannot see
            raise CheckpointError(f'{path}: not a {name} face detector checkpoint anime_face_'
                                  f'detector can load ({first_line(e)})') from None
        self.model = model.to(device).eval()
        self.name = name
        self.checkpoint = str(checkpoint or face_detector_weights(name))
        self.score_thr = score_thr

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        """Face boxes ``(N, 4)``, grown as anime_face_detector does.

        Raises:
            FaceDetectionError: an image the detector's preprocessing refuses (one a few
                pixels wide and thousands long scales to a width of 0: cv2.resize fails).
        """
        import cv2
        try:
            detections = self.model.detect(image_bgr)
        except cv2.error as e:
            height, width = image_bgr.shape[:2]
            raise FaceDetectionError(f'the face detector cannot process a {width}x{height} '
                                     f'image ({first_line(e).strip()})') from None
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
        device: ``cpu``, ``cuda``, ``cuda:0``... (:func:`torch_device`).
        max_batch: at most this many faces go through the model at once.

    Raises:
        InferenceInputError: a device torch cannot use here.
        CheckpointError: a missing config, an unreadable checkpoint, or weights that do not
            fit the config's model (then pass the config the model was trained with).
    """

    def __init__(self, config: str | os.PathLike | None, checkpoint: str | os.PathLike,
                 device: str = 'cpu', max_batch: int = MAX_BATCH):
        from .checkpoints import init_model_strict
        self.model = init_model_strict(config, checkpoint, device=torch_device(device))
        self.checkpoint = str(checkpoint)
        self.max_batch = max(1, int(max_batch))
        self._visualizer = None

    def _topdown(self, image_bgr: np.ndarray, boxes: np.ndarray | None) -> list:
        """mmpose's ``inference_topdown`` of the boxes (None or none: the whole image), in
        runs of at most ``max_batch`` boxes: it stacks the crops of all the boxes it is given
        into one batch, whose memory grows with their number."""
        from mmpose.apis import inference_topdown
        if max(image_bgr.shape[:2]) >= WARP_MAX_SIDE:  # OpenCV's warp refuses the picture
            if boxes is None or len(boxes) == 0:  # the whole picture, as mmpose takes it
                boxes = np.array([[0, 0, image_bgr.shape[1], image_bgr.shape[0]]], np.float32)
            return [self._topdown_in_part(image_bgr, box) for box in boxes]
        if boxes is None or len(boxes) == 0:
            return inference_topdown(self.model, image_bgr, bboxes=boxes, bbox_format='xyxy')
        results = []
        for start in range(0, len(boxes), self.max_batch):
            results += inference_topdown(self.model, image_bgr,
                                         bboxes=boxes[start:start + self.max_batch],
                                         bbox_format='xyxy')
        return results

    def _topdown_in_part(self, image_bgr: np.ndarray, box: np.ndarray):
        """mmpose's ``inference_topdown`` of one box of a picture with a side of
        :data:`.annotation.WARP_MAX_SIDE` or more, which OpenCV's warp (mmpose's crop)
        refuses: on the part of the picture its crop samples (:func:`.onnx_predictor.
        crop_part`, as the ONNX predictor crops it), its points and box moved back into the
        picture."""
        from mmpose.apis import inference_topdown
        padding, affine = test_pipeline_crop(self.model.cfg)
        size = tuple(int(v) for v in affine['input_size']) if affine else (256, 256)
        box = np.asarray(box, np.float64).reshape(1, 2, 2)
        center, scale = bbox_center_scale(box.reshape(1, 4), padding, size[0] / size[1])
        part = crop_part(image_bgr, warp_matrix(center[0], scale[0], size), size)
        if part is None:  # nothing of the picture in the crop: a crop of zeros, as mmpose's
            part = ImagePart(np.zeros((1, 1, 3), image_bgr.dtype), 0, 0, 1)
        (sample,) = inference_topdown(self.model, part.pixels,
                                      bboxes=part.from_image(box).reshape(1, 4),
                                      bbox_format='xyxy')
        instances = sample.pred_instances
        instances.keypoints = part.to_image(instances.keypoints).astype(np.float32)
        instances.bboxes = part.to_image(instances.bboxes.reshape(-1, 2, 2)).reshape(
            -1, 4).astype(np.float32)
        return sample

    def predict(self, image_bgr: np.ndarray, boxes: np.ndarray):
        """Landmarks of each box: a merged mmpose ``PoseDataSample``
        (``pred_instances.keypoints`` ``(N, 28, 2)``, ``keypoint_scores`` ``(N, 28)``).

        Raises:
            NonFinitePredictionError: NaN or infinite points or scores (a diverged model).
        """
        from mmpose.structures import merge_data_samples
        sample = merge_data_samples(self._topdown(
            image_bgr, None if boxes is None else np.asarray(boxes)))
        check_finite_predictions(sample.pred_instances.keypoints,
                                 sample.pred_instances.keypoint_scores, self.checkpoint)
        return sample

    def flip_disagreement(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """How unsure the model is of each face: the mean distance between the points of a
        plain pass and those of a pass on the mirrored image (mapped back), over the box's
        longer side. A model that knows a face gives the same points both ways; mirrored faces,
        odd styles and occlusions make the passes disagree.

        Returns:
            ``(N,)`` normalised disagreement per box.
        """
        from .schema import flip_indices
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        width = image_bgr.shape[1]
        # pixel centres at integers: pixel x of the image is pixel width - 1 - x of its mirror
        mirrored_boxes = boxes.copy()
        mirrored_boxes[:, [0, 2]] = width - 1 - boxes[:, [2, 0]]
        flip_test = self.model.test_cfg.get('flip_test', False)
        self.model.test_cfg['flip_test'] = False
        try:
            plain = self._topdown(image_bgr, boxes)
            mirrored = self._topdown(np.ascontiguousarray(image_bgr[:, ::-1]), mirrored_boxes)
        finally:
            self.model.test_cfg['flip_test'] = flip_test
        plain_points = np.stack([r.pred_instances.keypoints[0] for r in plain])
        back = np.stack([r.pred_instances.keypoints[0] for r in mirrored])[:, flip_indices()]
        back[..., 0] = width - 1 - back[..., 0]
        size = np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6).max(1)
        return np.linalg.norm(plain_points - back, axis=-1).mean(1) / size

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
        # drawn here, saved by write_image: mmcv.imwrite (out_file=) crashes on a folder whose
        # name is not UTF-8
        drawn_rgb = self._visualizer.add_datasample(
            'prediction', mmcv.bgr2rgb(image_bgr), data_sample=sample, draw_gt=False,
            draw_bbox=True, show_kpt_idx=False, show=False)
        write_image(out_file, mmcv.rgb2bgr(drawn_rgb))


def load_predictor(checkpoint: str | os.PathLike, config: str | os.PathLike | None = None,
                   device: str = 'cpu') -> LandmarkPredictor | OnnxLandmarkPredictor:
    """The predictor for a model file: an exported ``.onnx`` graph runs in onnxruntime (no
    config: the graph holds its processing), anything else in mmpose.

    Both have ``.predict(image_bgr, boxes_xyxy)`` giving ``pred_instances.keypoints`` and
    ``keypoint_scores`` (finite, else :class:`NonFinitePredictionError`), and
    ``.draw(image_bgr, result, out_file)``.
    """
    if is_onnx_path(checkpoint):
        if config is not None:
            _warn(f'{checkpoint}: an ONNX graph holds its own processing; --config is not used')
        return OnnxLandmarkPredictor(checkpoint, providers=onnx_providers(device),
                                     max_batch=MAX_BATCH)
    return LandmarkPredictor(config=config, checkpoint=checkpoint, device=device)


def parse_device(device: str) -> int | None:
    """The GPU of a device as the tools name it (``--device``): None for ``cpu``, N for
    ``cuda:N``, 0 for ``cuda``. The one check of a device's name, for checkpoints, ONNX graphs
    and the face detector alike.

    Raises:
        InferenceInputError: any other name, in one line.
    """
    if device == 'cpu':
        return None
    kind, colon, index = str(device).partition(':')
    # isascii: str.isdigit also takes superscripts and other scripts' digits
    if kind != 'cuda' or (colon and not (index.isascii() and index.isdigit())):
        raise InferenceInputError(f'device {device!r}: expected cpu, cuda or cuda:N')
    return int(index or 0)


def torch_device(device: str) -> str:
    """``device`` checked for torch: its name (:func:`parse_device`), and for a GPU that torch
    sees it, before any weights are read (else mmpose fails deep inside, with a traceback).

    Raises:
        InferenceInputError: a wrong name, CUDA asked for where torch has none, or a GPU
            number beyond those torch sees; one line.
    """
    index = parse_device(device)
    if index is None:
        return 'cpu'
    import torch
    if not torch.cuda.is_available():
        raise InferenceInputError(f'device {device!r}: torch sees no CUDA GPU here (a CPU-only '
                                  'torch, or no driver); run on the CPU with --device cpu')
    count = torch.cuda.device_count()
    if index >= count:
        raise InferenceInputError(f'device {device!r}: torch sees {count} GPU'
                                  f'{"s" if count > 1 else ""} (cuda:0 to cuda:{count - 1})')
    return device


def onnx_providers(device: str) -> list[str | tuple[str, dict]]:
    """onnxruntime's execution providers for a device as the tools name it: ``cuda:N`` is the
    CUDA provider on GPU N (then the CPU, for the operators CUDA lacks), ``cuda`` GPU 0,
    ``cpu`` the CPU. :class:`OnnxLandmarkPredictor` refuses CUDA where this onnxruntime has
    none (onnxruntime-gpu not installed) rather than run on the CPU.

    Raises:
        InferenceInputError: a wrong name (:func:`parse_device`).
    """
    index = parse_device(device)
    if index is None:
        return ['CPUExecutionProvider']
    return [('CUDAExecutionProvider', {'device_id': index}), 'CPUExecutionProvider']


def model_id(checkpoint: str | os.PathLike) -> str:
    """How a prediction's file names its model: a pretrained name with the commit of its
    repository that was loaded (``name@<commit>``: a name follows the repository's ``main``),
    else the checkpoint's sha256 (``sha256:<hex>``), which survives renaming and copying the
    file."""
    from .model_zoo import is_pretrained_name, pretrained_model_id, resolve_checkpoint
    if is_pretrained_name(checkpoint) and not Path(checkpoint).is_file():
        return pretrained_model_id(str(checkpoint))
    return f'sha256:{file_sha256(resolve_checkpoint(checkpoint))}'


def predictions_to_annotation(image_name: str, width: int, height: int, sample,
                              boxes: np.ndarray, model: str, prediction: dict,
                              image_sha256: str) -> ImageAnnotation:
    """A model's points as an annotation file to review: status ``predicted`` (left out of
    training until a person accepts it in the annotator), each point's score in its face, the
    model in ``meta.model``, how it ran in ``meta.prediction``, the picture's bytes it
    predicted on in ``meta.image_sha256`` (``meta.source`` is the image's own provenance, from
    the crawler)."""
    keypoints = sample.pred_instances.keypoints
    scores = sample.pred_instances.keypoint_scores
    faces = [Face(landmarks=[(float(x), float(y)) for x, y in kpts],
                  bbox=tuple(float(v) for v in box),
                  scores=[float(v) for v in face_scores])
             for kpts, box, face_scores in zip(keypoints, boxes, scores)]
    return ImageAnnotation(
        image=image_name, width=width, height=height, faces=faces, status=STATUS_PREDICTED,
        meta=dict(annotator=MODEL_ANNOTATOR, model=model,
                  created=datetime.now(UTC).isoformat(timespec='seconds'),
                  prediction=prediction, **{IMAGE_SHA256_KEY: image_sha256}))


def readable_faces(annotation: ImageAnnotation, boxes: np.ndarray) -> list[int]:
    """The faces of a prediction that its annotation file can hold, by the reader's own rules
    (:func:`~.annotation.parse_annotation` of what :func:`~.annotation.save_annotation` would
    write): a file the reader refuses is never written, since later runs would keep it as a
    person's work for good. Each other face (its points rounded onto one spot, as in a box of
    1e-5 pixels; not 28 points) is skipped with a warning naming the image and its box.

    Args:
        annotation: the prediction (:func:`predictions_to_annotation`).
        boxes: its faces' boxes, ``(N, 4)``, for the warnings.

    Returns:
        The indices of the faces to keep; none (warned) where no face is left or the file
        would be refused for another reason (an image name holding a line break). The file's
        size (:data:`~.annotation.ANNOTATION_MAX_BYTES`) is checked where its bytes are made,
        once, before anything of the image is written.
    """
    kept = []
    for i, (face, box) in enumerate(zip(annotation.faces, boxes)):
        try:
            parse_face(face.to_json(), f'face {i}')
        except AnnotationError as e:
            _warn(f'{annotation.image}: box {_shown_box(box)} skipped: {e}, which no '
                  'annotation file can hold')
        else:
            kept.append(i)
    if not kept:
        _warn(f'{annotation.image}: no face an annotation file can hold, skipped')
        return []
    try:
        kept_annotation = dataclasses.replace(annotation,
                                              faces=[annotation.faces[i] for i in kept])
        parse_annotation(kept_annotation.to_json())
    except AnnotationError as e:
        _warn(f'{annotation.image}: skipped: its annotation file would not be readable ({e})')
        return []
    return kept


def picture_name(image: str) -> str:
    """The file name of an image's picture: ``<image>.jpg``; where that passes
    :data:`~.annotation.NAME_MAX_BYTES` (an image name that is itself legal), the name cut on a
    character and a hash of the whole name (``<cut>~<8 hex>.jpg``), distinct for every image."""
    name = f'{image}.jpg'
    if len(name.encode('utf-8')) <= NAME_MAX_BYTES:
        return name
    return fit_name(image, f'~{hashlib.sha256(image.encode("utf-8")).hexdigest()[:8]}.jpg')


#: :func:`_kept_as_it_is`'s answer for a file a person wrote (or one that cannot be read)
PERSONS_WORK = 'person'


#: ``meta.prediction`` key of a prediction file: the image folder (resolved) its picture lies in
PREDICTION_IMAGE_DIR_KEY = 'image_dir'


def _kept_as_it_is(path: Path, image_dir: Path) -> str | None:
    """Why a prediction must not replace ``path``: :data:`PERSONS_WORK` for what a person
    wrote (an annotation, a skip, a prediction a person saved in the annotator, being
    reviewed: :func:`~.annotation.is_models_prediction`; or a file that cannot be read: kept
    as it is), or the image folder of a model's prediction of another folder's picture that
    is still there as it was predicted (``meta.prediction.image_dir``, ``meta.image_sha256``:
    a run on a subfolder took its ``a.png`` for the folder's own, replacing that picture's
    prediction); None when it may (no file, a prediction of this folder's picture, or of one
    gone, changed or moved here)."""
    if not path.is_file():
        return None
    try:
        annotation = load_annotation(path)
    except AnnotationError as e:
        _warn(f'{e}: kept as it is, not overwritten with a prediction')
        return PERSONS_WORK
    if not is_models_prediction(annotation):
        return PERSONS_WORK
    prediction = annotation.meta.get('prediction')
    recorded = prediction.get(PREDICTION_IMAGE_DIR_KEY) if isinstance(prediction, dict) else None
    digest = annotation.meta.get(IMAGE_SHA256_KEY)
    if not (isinstance(recorded, str) and isinstance(digest, str)) or recorded == str(image_dir):
        return None
    other, here = Path(recorded) / annotation.image, image_dir / annotation.image
    try:
        if os.path.samefile(recorded, image_dir) or not other.is_file() \
                or file_sha256(other) != digest or file_sha256(here) == digest:
            return None
    except (OSError, ValueError):  # a folder unreadable, a NUL in the name: not that folder's
        return None
    return recorded


def _check_ranking_replaceable(path: Path) -> None:
    """Refuse a ``ranking.json`` that the run's last write could not replace: a folder, a
    FIFO, a device or a socket (a regular file or a link is replaced, as every file the tools
    write is).

    Raises:
        InferenceInputError: one line naming it.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # none there (or no folder yet): written afresh
        return
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return
    kind = 'a folder' if stat.S_ISDIR(mode) else 'a FIFO, a device or a socket'
    raise InferenceInputError(
        f'{path} is {kind}, not a file --rank can replace with its ranking: move it away or '
        'choose another --out-dir')


def output_folders(out_dir: str | os.PathLike, annotation_dir: str | os.PathLike | None,
                   rank: bool, image_folder: str | os.PathLike) -> tuple[Path, Path]:
    """A run's output folder and annotation folder (default ``out_dir/annotations``), checked
    before anything is made or loaded.

    Args:
        out_dir: ``--out-dir``.
        annotation_dir: ``--annotation-dir``, if given.
        rank: ``--rank``: ``ranking.json`` is written in ``out_dir``.
        image_folder: the folder of the images to predict.

    Raises:
        InferenceInputError: ``rank`` with ``ranking.json`` among the annotation files (the
            annotator would take it for one) or there as other than a file or a link (a folder,
            a FIFO: written last, it would fail once every image was predicted), or the images
            in ``out_dir/vis`` (or a folder in it): a picture, ``<image>.jpg``, would replace
            an image of that name there.
    """
    out_dir = Path(out_dir)
    annotation_dir = Path(annotation_dir) if annotation_dir else out_dir / 'annotations'
    if rank and lies_in_folder(out_dir / RANKING_FILE, annotation_dir):
        raise InferenceInputError(
            f'--out-dir {out_dir} would put {RANKING_FILE} among the annotation files of '
            f'{annotation_dir}; choose an output folder outside it')
    if rank:
        _check_ranking_replaceable(out_dir / RANKING_FILE)
    if lies_in_folder(image_folder, out_dir / 'vis'):
        raise InferenceInputError(
            f'--out-dir {out_dir}: its vis/ holds the images of {image_folder}, where the '
            f'pictures (<image>.jpg) would replace images of those names; choose another '
            f'output folder')
    return out_dir, annotation_dir


@dataclass
class CheckedArguments:
    """A run's arguments, checked (:func:`check_arguments`).

    Attributes:
        images: the images to predict.
        boxes: the ``--boxes`` file's boxes per image name (empty without one).
        out_dir: the output folder.
        annotation_dir: the annotation folder.
    """

    images: list[Path]
    boxes: dict[str, np.ndarray]
    out_dir: Path
    annotation_dir: Path


def check_arguments(inputs: str | os.PathLike, *, checkpoint: str | os.PathLike,
                    out_dir: str | os.PathLike,
                    annotation_dir: str | os.PathLike | None = None,
                    boxes_file: str | os.PathLike | None = None, device: str = 'cpu',
                    rank: bool = False) -> CheckedArguments:
    """What :func:`run_inference` checks before it makes a folder or loads a model; a caller
    that loads something first (``tools/infer.py``: the face detector's weights, downloaded on
    first use) calls it before that.

    Raises:
        InferenceInputError: no images (:func:`list_images`), an unusable boxes file
            (:func:`load_boxes_file`), a wrong device name (:func:`parse_device`), folders
            that do not fit (:func:`output_folders`), or ``rank`` with an ONNX graph; one line.
        OutputFolderInUseError: an annotator (or another run) works in the annotation folder
            (:func:`~.annotate.check_output_folder_free`: a peek, which makes nothing).
        OutputFolderError: the annotation folder's lock file cannot be opened.
        CheckpointError: a checkpoint that is neither a file nor a pretrained name.
        OnnxModelError: ``rank`` with an ONNX file that is no landmark graph.
    """
    from .model_zoo import is_pretrained_name, resolve_checkpoint
    images = list_images(inputs)
    boxes = load_boxes_file(boxes_file) if boxes_file else {}
    parse_device(device)
    out_dir, annotation_dir = output_folders(out_dir, annotation_dir, rank, images[0].parent)
    # an annotator at work there refuses the run before any model (the checkpoint, the face
    # detector's weights) is read; the lock itself is taken after the model's load, so that a
    # run refused for its checkpoint leaves no folder behind
    check_output_folder_free(annotation_dir, option='--annotation-dir')
    if not is_pretrained_name(checkpoint):  # a name is downloaded: when the model loads
        resolve_checkpoint(checkpoint)  # a file, else the one-line error
    if rank and is_onnx_path(checkpoint):
        # the graph's metadata names the checkpoint it came from (read on the CPU: the
        # session is only opened to say which); None where it holds no digest ('null', 12)
        source = OnnxLandmarkPredictor(checkpoint, providers=onnx_providers('cpu'),
                                       max_batch=MAX_BATCH).source_sha256
        known = 'its sha256 is not in the graph\'s metadata' if source is None else \
            f'sha256 {source[:12]}'
        raise InferenceInputError(
            f'--rank needs the plain and the mirrored pass apart, which an ONNX graph with the '
            f'flip test inside does not give: rank with the checkpoint {checkpoint} came from '
            f'({known})')
    return CheckedArguments(images, boxes, out_dir, annotation_dir)


@dataclass
class InferenceResult:
    """What :func:`run_inference` did.

    Attributes:
        written: the annotation files written (status ``predicted``).
        kept: files left as they were because a person annotated, skipped or reviewed that
            image in the annotator, or has a draft of it under way (its ``.drafts/``).
        of_other_folder: model predictions left as they were because they are of a picture
            of the same name in another image folder, which is still there: the annotation
            folder's files name the images of that one.
        ranking: the ranking file (``--rank``), most uncertain image first.
    """

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    of_other_folder: list[Path] = field(default_factory=list)
    ranking: Path | None = None


def run_inference(inputs: str | os.PathLike, *, config: str | os.PathLike | None,
                  checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                  annotation_dir: str | os.PathLike | None = None,
                  boxes_file: str | os.PathLike | None = None,
                  face_detector: FaceDetector | None = None, device: str = 'cpu',
                  rank: bool = False, progress: bool = True) -> InferenceResult:
    """Predict every image of ``inputs``; write pictures to ``out_dir/vis/`` and one annotation
    file per image, to review in the annotator.

    Args:
        inputs: an image or a folder of images.
        config: the model's config (None: the main config).
        checkpoint: the model (a file or a pretrained name).
        out_dir: pictures go to ``out_dir/vis``, the ranking to ``out_dir/ranking.json``.
        annotation_dir: where the annotation files go (default ``out_dir/annotations``); may
            be the annotator's output folder: a file there that a person annotated, skipped or
            saved in the annotator (a prediction being reviewed) is never overwritten, a model's
            prediction nobody touched is. Held as the annotator holds it while the run writes
            (:func:`~.annotate.lock_output_folder`).
        boxes_file: face boxes per image name (else the face detector, else the whole image);
            a box that cannot be a face of its image is skipped (:func:`usable_boxes`), an
            image listed with no boxes has no faces.
        face_detector: anime_face_detector's face detector.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        rank: also measure each image's uncertainty (:meth:`LandmarkPredictor.flip_disagreement`,
            the worst face of the image) and write ``ranking.json``: a JSON list, most uncertain
            first, of ``{"image", "annotation", "uncertainty", "min_score", "faces"}``.
        progress: show a progress bar.

    Raises:
        InferenceInputError: arguments :func:`check_arguments` refuses, before any folder is
            made or model loaded; one line.
        CheckpointError: a checkpoint that is missing or cannot be loaded; one line.
        OutputFolderInUseError: an annotator (or another run) works in ``annotation_dir``.
        OSError: ``ranking.json`` cannot be written (a full disk), naming it; the annotation
            files and pictures are written by then.
    """
    from tqdm import tqdm

    # arguments first: a refused run leaves no folder behind, and loads no model
    checked = check_arguments(inputs, checkpoint=checkpoint, out_dir=out_dir,
                              annotation_dir=annotation_dir, boxes_file=boxes_file,
                              device=device, rank=rank)
    images, given = checked.images, checked.boxes
    out_dir, annotation_dir = checked.out_dir, checked.annotation_dir
    ranking_file = out_dir / RANKING_FILE
    predictor = load_predictor(checkpoint, config=config, device=device)
    model = model_id(checkpoint)
    if isinstance(predictor, OnnxLandmarkPredictor):  # no config: the graph holds it all
        how_predicted = dict(checkpoint=str(checkpoint), config=None, runtime='onnxruntime')
    else:
        how_predicted = dict(checkpoint=str(checkpoint), config=str(config or 'main config'))
    # the annotator's own naming: one file per image whatever the names, and an existing file
    # is the image's that it names (it creates the folder). The folder is held before its
    # files are read: an annotator at work there bound its files to images when it started,
    # and a prediction written meanwhile could take a name it gave another image, hiding that
    # work (refused before any picture is drawn)
    naming = AnnotationSession(images[0].parent, annotation_dir,
                               lock_option='--annotation-dir')
    lock = naming.folder_lock
    # the folder the files' names are of: a later run on another folder leaves them be (a
    # name no file can hold, not UTF-8, is not recorded: the guard is then off)
    if unencodable_string(str(naming.image_dir)) is None:
        how_predicted[PREDICTION_IMAGE_DIR_KEY] = str(naming.image_dir)
    try:
        annotated_deeper = persons_files_in_subfolders(naming.output_dir)
        (out_dir / 'vis').mkdir(parents=True, exist_ok=True)
        # the tool's own folder: a temporary there older than any write takes is a picture a
        # killed run left
        remove_stale_temporaries(out_dir / 'vis')
        if rank:  # what a killed run left half-written; the folder's other files are the user's
            remove_stale_temporaries(ranking_file.parent, of=ranking_file.name)
        result, ranking = InferenceResult(), []

        def held_back(image: str, target: Path) -> bool:
            # a person's work, a draft (work under way), another folder's prediction: listed
            held = _kept_as_it_is(target, naming.image_dir) or (
                naming.has_draft(image) and PERSONS_WORK)
            if held:
                (result.kept if held == PERSONS_WORK else result.of_other_folder).append(target)
            return bool(held)
        for path in tqdm(images, desc='landmarks', unit='img', disable=not progress):
            try:
                naming.image_path(path.name)
            except UnsafeNameError as e:  # the annotator would not open it either
                _warn(f'{e} (a link leading out of it); skipped: copy the image into the '
                      'folder to predict it')
                continue
            try:
                target = naming.annotation_path(path.name)
                held = held_back(path.name, target)
            except UnsafeNameError as e:  # its file or draft a link out of the folder, or a loop
                _warn(f'{path.name}: skipped: {e} (nothing is written through such a link)')
                continue
            if held:
                continue
            if path.name in annotated_deeper:  # a person's file the annotator does not list
                result.kept.append(annotated_deeper[path.name])
                continue
            try:  # the header only: a decompression bomb is refused before cv2 allocates it
                image_size(path)
            except AnnotationError as e:
                _warn(f'{e}; skipped')
                continue
            try:
                data = read_image_bytes(path)
                image = decode_image(path, data)
            except AnnotationError as e:
                _warn(f'{e}; skipped')
                continue
            picture_sha256 = hashlib.sha256(data).hexdigest()  # of the bytes predicted on
            del data  # a 30 MB PNG's bytes, beside its pixels, through the prediction
            height, width = image.shape[:2]
            if boxes_file:
                boxes = given.get(path.name)
                if boxes is None:
                    _warn(f'{path.name}: no boxes in {boxes_file}, skipped')
                    continue
                if len(boxes) == 0:
                    _note(f'{path.name}: no faces in {boxes_file}, skipped')
                    continue
                how = 'boxes file'
            elif face_detector is not None:
                try:
                    boxes = face_detector(image)
                except FaceDetectionError as e:
                    _warn(f'{path.name}: {e}; skipped')
                    continue
                how = 'anime_face_detector face detector'
                if len(boxes) == 0:
                    _warn(f'{path.name}: the face detector found no face, skipped')
                    continue
            else:
                _warn(f'{path.name}: no boxes given and no face detector: using the whole '
                      'image as the face box')
                boxes, how = np.array([[0, 0, width, height]], np.float32), 'whole image'
            boxes = usable_boxes(boxes, width, height, path.name)
            if len(boxes) == 0:
                _warn(f'{path.name}: no usable face box, skipped')
                continue
            if len(boxes) > ANNOTATION_MAX_FACES:  # before predicting them all, for nothing
                _warn(f'{path.name}: skipped: {len(boxes)} face boxes, more than the '
                      f'{ANNOTATION_MAX_FACES} an annotation file may hold')
                continue
            sample = predictor.predict(image, boxes)
            annotation = predictions_to_annotation(
                path.name, width, height, sample, boxes, model=model,
                prediction=dict(how_predicted, boxes=how), image_sha256=picture_sha256)
            kept = readable_faces(annotation, boxes)
            if not kept:
                continue
            if len(kept) < len(boxes):  # rare: predicted again, the picture and rank of those
                boxes = boxes[kept]
                sample = predictor.predict(image, boxes)
                annotation = predictions_to_annotation(
                    path.name, width, height, sample, boxes, model=model,
                    prediction=dict(how_predicted, boxes=how), image_sha256=picture_sha256)
            try:
                data = annotation_bytes(annotation)  # over the size the reader reads
            except AnnotationError as e:
                _warn(f'{path.name}: skipped: its annotation file would not be readable ({e})')
                continue
            picture = out_dir / 'vis' / picture_name(path.name)
            try:
                predictor.draw(image, sample, picture)
            except IsADirectoryError:  # a folder of the picture's name: one picture less, not
                # the run's end (the images after it never predicted, no ranking)
                _warn(f'{path.name}: no picture drawn: {picture} is a folder')
            if held_back(path.name, target):  # saved meanwhile
                continue
            write_bytes_atomic(target, data, make_folder=True)  # save_annotation's bytes
            result.written.append(target)
            if rank:
                disagreement = predictor.flip_disagreement(image, boxes)
                ranking.append(dict(
                    image=path.name, annotation=str(target),
                    uncertainty=round(float(disagreement.max()), 5),
                    min_score=round(float(sample.pred_instances.keypoint_scores.min()), 4),
                    faces=len(boxes)))
    finally:
        if lock is not None:
            lock.release()
    if rank:
        ranking.sort(key=lambda r: (-r['uncertainty'], r['min_score']))
        result.ranking = ranking_file
        try:
            write_json_atomic(result.ranking, ranking)
        except OSError as e:
            if e.errno is None:
                raise
            # the error names the hidden temporary it was writing (a full disk), or both it and
            # the file (os.replace); ranking.json is what the user asked for
            raise OSError(e.errno, e.strerror, os.fspath(ranking_file)) from None
    return result
