"""Face landmarks from an exported ONNX graph with onnxruntime, numpy and cv2: no torch, no
mmpose.

The graph (:mod:`.onnx_export`) takes uint8 BGR crops and returns keypoints in crop pixels with
mmpose's flip test and DARK decoding inside; this module does the rest of mmpose's
``inference_topdown``: the crop of each box (``GetBBoxCenterScale`` with the padding stored in the
file, the aspect-ratio fix and ``TopdownAffine``'s warp, the same float32 arithmetic and
``cv2.warpAffine``) and the mapping of the points back into the image
(``TopdownPoseEstimator.add_pred_to_datasample``). The points equal mmpose's within float
rounding (tests/test_onnx.py).

Example::

    import cv2
    from animal_landmarks_mm.onnx_predictor import OnnxLandmarkPredictor
    predictor = OnnxLandmarkPredictor('animal_face.onnx')
    result = predictor.predict(cv2.imread('image.png'), [[x0, y0, x1, y1]])
    result.pred_instances.keypoints        # (N, 28, 2) image pixels
    result.pred_instances.keypoint_scores  # (N, 28)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import AnimalLandmarksError, first_line

#: metadata the predictor needs from the file (written by :func:`.onnx_export.export_onnx`)
REQUIRED_METADATA = ('keypoint_names', 'flip_indices', 'input_size', 'bbox_padding')
CUDA_PROVIDER = 'CUDAExecutionProvider'
CPU_PROVIDER = 'CPUExecutionProvider'


class OnnxModelError(AnimalLandmarksError, ValueError):
    """An ONNX file that cannot be used as a landmark model; the message is one line naming
    the file."""


class NonFinitePredictionError(AnimalLandmarksError, ValueError):
    """A model whose points or scores are NaN or infinite (weights of a diverged run); the
    message is one line naming the model file."""


def is_onnx_path(path: str | os.PathLike) -> bool:
    """Whether a model file is an ONNX graph, by its suffix in any case (``.onnx``,
    ``.ONNX``): the one test of the tools that write (``tools/export.py``) and read
    (:func:`.infer.load_predictor`) such files, so that they never disagree."""
    return str(path).lower().endswith('.onnx')


def check_finite_predictions(keypoints: np.ndarray, scores: np.ndarray,
                             model: str | os.PathLike) -> None:
    """Refuse a model's output that holds NaN or infinite values, right after the model ran.

    A checkpoint of a run that diverged (NaN weights, e.g. a ``--amp`` run whose loss
    overflowed) loads like any other; its points would otherwise reach JSON writers, which
    refuse NaN, half-way through writing a run's outputs.

    Raises:
        NonFinitePredictionError: naming ``model``.
    """
    keypoints, scores = np.asarray(keypoints), np.asarray(scores)
    if np.isfinite(keypoints).all() and np.isfinite(scores).all():
        return
    what = 'NaN' if np.isnan(keypoints).any() or np.isnan(scores).any() else 'infinite'
    raise NonFinitePredictionError(f'{model} gives {what} points: a diverged run? (use an '
                                   'earlier checkpoint of it)')


@dataclass
class LandmarkInstances:
    """The faces of one image, as mmpose's merged ``pred_instances`` holds them.

    Attributes:
        keypoints: ``(N, K, 2)`` float32, image pixels (pixel centres at integers).
        keypoint_scores: ``(N, K)`` float32, the heatmap maxima.
        bboxes: ``(N, 4)`` the boxes, ``x0, y0, x1, y1``.
        bbox_scores: ``(N,)`` ones, as mmpose's ``inference_topdown`` sets them.
    """

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    bboxes: np.ndarray
    bbox_scores: np.ndarray

    @property
    def keypoints_visible(self) -> np.ndarray:
        """mmpose's ``keypoints_visible`` of a heatmap model: the scores."""
        return self.keypoint_scores

    def __len__(self) -> int:
        return len(self.keypoints)


@dataclass
class LandmarkResult:
    """What :meth:`OnnxLandmarkPredictor.predict` returns: the attribute path of mmpose's
    ``PoseDataSample`` (``result.pred_instances.keypoints`` / ``.keypoint_scores``), so that code
    reading those fields works with either predictor."""

    pred_instances: LandmarkInstances


def bbox_center_scale(boxes: np.ndarray, padding: float, aspect_ratio: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Centres and sizes of the crops of ``(N, 4)`` xyxy boxes: mmpose's ``bbox_xyxy2cs`` with
    the padding, then ``TopdownAffine._fix_aspect_ratio`` (widen the short side)."""
    scale = (boxes[:, 2:] - boxes[:, :2]) * padding
    center = (boxes[:, 2:] + boxes[:, :2]) * 0.5
    w, h = np.hsplit(scale, [1])
    scale = np.where(w > h * aspect_ratio, np.hstack([w, w / aspect_ratio]),
                     np.hstack([h * aspect_ratio, h]))
    return center, scale


def warp_matrix(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]
                ) -> np.ndarray:
    """The 2x3 affine from the image to a crop of ``output_size``: mmpose's ``get_warp_matrix``
    without rotation or shift, with its float32 points, so that the crops are identical."""
    src_w = scale[0]
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + np.array([src_w * -0.5, 0.])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([dst_w * -0.5, 0.])
    for points in (src, dst):  # the third point: the first two's vector turned by 90 degrees
        direction = points[0, :] - points[1, :]
        points[2, :] = points[1, :] + np.r_[-direction[1], direction[0]]
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def _decoded(value: str):
    """A metadata value: JSON (lists, numbers, booleans) where it parses, else the text."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build has it, then the CPU."""
    import onnxruntime
    available = onnxruntime.get_available_providers()
    return [p for p in (CUDA_PROVIDER, CPU_PROVIDER) if p in available]


def _provider_name(provider: str | tuple[str, dict]) -> str:
    return provider if isinstance(provider, str) else provider[0]


def _missing_provider_message(path: Path, missing: list[str], why: str) -> str:
    """One line: the providers asked for that the session cannot have, and the way out."""
    if CUDA_PROVIDER in missing:
        return (f'{path}: CUDA asked for, but {why}: install onnxruntime-gpu (in place of '
                'onnxruntime), or run on the CPU (--device cpu)')
    return f'{path}: {", ".join(missing)} asked for, but {why}'



def crop_boxes(image_bgr: np.ndarray, boxes_xyxy: np.ndarray, input_size: tuple[int, int],
               padding: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's input crops of the boxes, as mmpose's test pipeline makes them.

    Args:
        image_bgr: ``(H, W, 3)`` uint8.
        boxes_xyxy: ``(N, 4)`` face boxes.
        input_size: the crops' ``(W, H)``.
        padding: mmpose's box padding (``GetBBoxCenterScale``).

    Returns:
        ``(N, H, W, 3)`` uint8 crops, the crops' centres ``(N, 2)`` and sizes ``(N, 2)`` in
        image pixels.
    """
    width, height = input_size
    center, scale = bbox_center_scale(boxes_xyxy, padding, width / height)
    crops = np.empty((len(boxes_xyxy), height, width, 3), np.uint8)
    for i in range(len(boxes_xyxy)):
        crops[i] = cv2.warpAffine(image_bgr, warp_matrix(center[i], scale[i], (width, height)),
                                  (width, height), flags=cv2.INTER_LINEAR)
    return crops, center, scale


class OnnxLandmarkPredictor:
    """An exported landmark graph behind the interface of :class:`.infer.LandmarkPredictor`.

    Args:
        path: the ``.onnx`` file from ``tools/export.py --format onnx``.
        providers: onnxruntime execution providers, in order of preference, each a name or
            ``(name, options)`` (``('CUDAExecutionProvider', {'device_id': 1})``); None for
            CUDA when present, else the CPU. A provider asked for that this onnxruntime lacks
            or cannot start is an error (onnxruntime itself would warn and run on the CPU).
        intra_op_num_threads: CPU threads of one run; None for onnxruntime's default (the
            physical cores).
        max_batch: at most this many crops per run (bounds memory for images with many faces).
        allow_spinning: let onnxruntime's idle threads spin-wait for the next run. Off by
            default: measured on 2 shared cores it made runs 1.4x slower, and in a process that
            also runs torch (a face detector) the spinning threads take its cores.

    Attributes:
        metadata: the file's metadata (keypoint names, flip indices, input size, mean/std,
            source checkpoint and its sha256, ...), JSON values decoded.
        checkpoint: the file, as given.

    Raises:
        OnnxModelError: a missing file, one onnxruntime cannot load, one without the metadata
            of an exported landmark graph, onnxruntime not installed, or a provider asked for
            (CUDA) that this onnxruntime does not have.
    """

    def __init__(self, path: str | os.PathLike,
                 providers: list[str | tuple[str, dict]] | None = None,
                 intra_op_num_threads: int | None = None, max_batch: int = 32,
                 allow_spinning: bool = False):
        path = Path(path)
        if not path.is_file():
            raise OnnxModelError(f'{path}: no such ONNX file')
        try:
            import onnxruntime
        except ImportError:
            raise OnnxModelError(f'{path}: running ONNX models needs onnxruntime '
                                 '(pip install onnxruntime)') from None
        options = onnxruntime.SessionOptions()
        if intra_op_num_threads:
            options.intra_op_num_threads = int(intra_op_num_threads)
        options.add_session_config_entry('session.intra_op.allow_spinning',
                                         '1' if allow_spinning else '0')
        available = onnxruntime.get_available_providers()
        # onnxruntime only warns and runs on the CPU when a provider asked for is missing: a
        # GPU run asked for would silently be a CPU run, many times slower
        asked = [_provider_name(p) for p in providers or () if _provider_name(p) != CPU_PROVIDER]
        lacking = [name for name in asked if name not in available]
        if lacking:
            raise OnnxModelError(_missing_provider_message(
                path, lacking, f'this onnxruntime build has only {", ".join(available)}'))
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=providers or default_providers())
        except Exception as e:  # InvalidProtobuf, Fail, NoSuchFile...: all "not a model"
            first = first_line(e)
            raise OnnxModelError(f'{path}: not an ONNX model onnxruntime can load '
                                 f'({first[:200]})') from None
        # present in the build but not started (CUDA or cuDNN libraries missing): again only
        # a warning from onnxruntime
        not_started = [name for name in asked if name not in self.session.get_providers()]
        if not_started:
            raise OnnxModelError(_missing_provider_message(
                path, not_started, 'onnxruntime could not start it (see its warning above: '
                'CUDA or cuDNN libraries missing or of another version?)'))
        raw = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in REQUIRED_METADATA if key not in raw]
        inputs = self.session.get_inputs()
        if missing or len(inputs) != 1 or len(self.session.get_outputs()) != 2:
            raise OnnxModelError(f'{path}: not a landmark graph exported by tools/export.py '
                                 f'--format onnx (missing metadata: {", ".join(missing)})'
                                 if missing else f'{path}: not a landmark graph exported by '
                                 'tools/export.py --format onnx (one input, keypoints and '
                                 'scores expected)')
        self.metadata = {key: _decoded(value) for key, value in raw.items()}
        try:
            self.input_size = tuple(int(v) for v in self.metadata['input_size'])
            self.padding = float(self.metadata['bbox_padding'])
            self.keypoint_names = [str(name) for name in self.metadata['keypoint_names']]
            if len(self.input_size) != 2 or min(self.input_size) <= 0 or self.padding <= 0:
                raise ValueError(f'input_size {self.input_size}, bbox_padding {self.padding}')
        except (TypeError, ValueError) as e:
            raise OnnxModelError(f'{path}: unusable landmark metadata ({e})') from None
        self.checkpoint = str(path)
        self.input_name = inputs[0].name
        self.max_batch = max(1, int(max_batch))
        self.providers = self.session.get_providers()

    def crop(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model's input crops of the boxes, as mmpose's test pipeline makes them.

        Returns:
            ``(N, H, W, 3)`` uint8 crops, the crops' centres ``(N, 2)`` and sizes ``(N, 2)``
            in image pixels.
        """
        return crop_boxes(image_bgr, boxes_xyxy, self.input_size, self.padding)

    def predict_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints ``(B, K, 2)`` in crop pixels and scores ``(B, K)`` of uint8 BGR crops
        ``(B, H, W, 3)`` (runs of at most ``max_batch``)."""
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size[1], self.input_size[0], 3):
            raise OnnxModelError(f'crops must be (B, {self.input_size[1]}, '
                                 f'{self.input_size[0]}, 3) uint8 BGR, got {crops.shape}')
        keypoints, scores = [], []
        for start in range(0, len(crops), self.max_batch):
            k, s = self.session.run(None, {self.input_name: crops[start:start + self.max_batch]})
            keypoints.append(k)
            scores.append(s)
        num_keypoints = len(self.keypoint_names)
        if not keypoints:
            return (np.zeros((0, num_keypoints, 2), np.float32),
                    np.zeros((0, num_keypoints), np.float32))
        return np.concatenate(keypoints), np.concatenate(scores)

    def predict(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray | list | None = None
                ) -> LandmarkResult:
        """Landmarks of each box, in one batch (with its flip test, one run of ``2N`` crops).

        Args:
            image_bgr: ``(H, W, 3)`` uint8, as ``cv2.imread`` gives it.
            boxes_xyxy: ``(N, 4)`` (more columns are ignored); None or empty for the whole
                image ``[0, 0, W, H]``, as mmpose's ``inference_topdown`` does.

        Returns:
            ``result.pred_instances.keypoints`` ``(N, K, 2)`` in image pixels and
            ``.keypoint_scores`` ``(N, K)``, as numpy arrays.

        Raises:
            OnnxModelError: an image that is not ``(H, W, 3)`` uint8, or malformed boxes.
            NonFinitePredictionError: NaN or infinite points or scores (a diverged model).
        """
        image_bgr = np.asarray(image_bgr)
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise OnnxModelError(f'the image must be (H, W, 3) uint8 BGR, got '
                                 f'{image_bgr.shape} {image_bgr.dtype}')
        if boxes_xyxy is None or len(boxes_xyxy) == 0:
            boxes = np.array([[0, 0, image_bgr.shape[1], image_bgr.shape[0]]], np.float32)
        else:
            boxes = np.asarray(boxes_xyxy)
            if boxes.ndim != 2 or boxes.shape[1] < 4 or not np.isfinite(boxes[:, :4]).all():
                raise OnnxModelError(f'boxes must be (N, 4) finite x0, y0, x1, y1, got shape '
                                     f'{boxes.shape}')
            # mmpose computes in the boxes' own float type; integers become float32
            boxes = boxes[:, :4] if np.issubdtype(boxes.dtype, np.floating) else \
                boxes[:, :4].astype(np.float32)
        crops, center, scale = self.crop(image_bgr, boxes)
        keypoints, scores = self.predict_crops(crops)
        check_finite_predictions(keypoints, scores, self.checkpoint)
        # add_pred_to_datasample: crop pixels -> image pixels (numpy promotes to float64 there
        # too, before the float32 store)
        input_size = np.array(self.input_size)
        in_image = (keypoints / input_size * scale[:, None] + center[:, None]
                    - 0.5 * scale[:, None])
        return LandmarkResult(LandmarkInstances(
            keypoints=in_image.astype(np.float32), keypoint_scores=scores.astype(np.float32),
            bboxes=boxes.astype(np.float32), bbox_scores=np.ones(len(boxes), np.float32)))

    def draw(self, image_bgr: np.ndarray, result: LandmarkResult, out_file: str | os.PathLike
             ) -> None:
        """Save the image with each face's box, skeleton lines and points in their group
        colours (cv2 only; :meth:`.infer.LandmarkPredictor.draw` draws with mmpose's
        visualizer)."""
        from .schema import GROUP_COLORS, LANDMARKS, SKELETON
        canvas = image_bgr.copy()
        thickness = max(1, round(max(canvas.shape[:2]) / 500))

        def bgr(group: str) -> tuple[int, int, int]:
            r, g, b = GROUP_COLORS[group]
            return int(b), int(g), int(r)

        for points, box in zip(result.pred_instances.keypoints, result.pred_instances.bboxes):
            x0, y0, x1, y1 = (int(round(float(v))) for v in box[:4])
            cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 255, 0), thickness, cv2.LINE_AA)
            for a, b in SKELETON:
                cv2.line(canvas, tuple(int(round(v)) for v in points[a]),
                         tuple(int(round(v)) for v in points[b]), bgr(LANDMARKS[a].group),
                         thickness, cv2.LINE_AA)
            for point, landmark in zip(points, LANDMARKS):
                cv2.circle(canvas, tuple(int(round(v)) for v in point), 2 * thickness,
                           bgr(landmark.group), -1, cv2.LINE_AA)
        if not cv2.imwrite(str(out_file), canvas):
            raise OSError(f'could not write {out_file}')
