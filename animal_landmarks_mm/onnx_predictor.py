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
import math
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .annotation import (
    WARP_MAX_SIDE,
    AnnotationError,
    NotRegularFileError,
    is_sha256_hex,
    read_regular_file,
    write_image,
)
from .errors import AnimalLandmarksError, first_line, shown_value
from .schema import KEYPOINT_NAMES

#: metadata the predictor needs from the file (written by :func:`.onnx_export.export_onnx`)
REQUIRED_METADATA = ('keypoint_names', 'flip_indices', 'input_size', 'bbox_padding')
CUDA_PROVIDER = 'CUDAExecutionProvider'
CPU_PROVIDER = 'CPUExecutionProvider'
#: The graph's input type: the crops of ``cv2.warpAffine``, as they are.
INPUT_TYPE = 'tensor(uint8)'
#: The graph's outputs' type: float32 points and scores, as the export writes them.
OUTPUT_TYPE = 'tensor(float)'
#: The largest crop side a file's ``input_size`` may ask for: the export's is 256, and each
#: crop of a run is ``W * H * 3`` bytes (a 100000x100000 one, 28 GiB, ended the process).
MAX_INPUT_SIDE = 4096
#: The largest fixed batch a graph may have (the export's batch axis is dynamic; onnx's own
#: exporters fix it by default): every run is filled up to it, a single box too, so a fixed
#: batch of 2048 cost 5.4 s and 2.7 GB a box, and one of 200000 asked numpy for 36.6 GiB.
MAX_FIXED_BATCH = 256
#: The most pixels a run of a fixed batch may fill (:data:`MAX_FIXED_BATCH` crops of the
#: export's 256x256, 48 MiB of crops): the batch counts crops, and 256 crops of a graph taking
#: 4096x4096 ones asked for 12 GiB a run, a single box too.
MAX_FIXED_BATCH_PIXELS = MAX_FIXED_BATCH * 256 * 256
#: The box padding (mmpose's ``GetBBoxCenterScale``) a file's ``bbox_padding`` may give: the
#: export writes its config's, 1.25 by default; mmpose's configs use 0.8 and 1.25. Outside it the
#: crop is a speck of the box or a box the size of a continent (1e308 overflowed float32 and
#: was then blamed on the boxes).
BBOX_PADDING_RANGE = (0.5, 10.0)
#: The longest value (characters) of a metadata key the predictor decodes
#: (:data:`DECODED_METADATA`): the export's are a few hundred; the others are never decoded,
#: whatever their length (a 57 MB ``[{},{},...]`` took 2.3 GB to decode).
MAX_METADATA_VALUE_CHARS = 64 * 1024
#: The longest reason from onnxruntime kept in a message (its errors can run to a page).
MAX_REASON_CHARS = 240
#: The largest ONNX file the predictor reads (bytes): the exported HRNetV2-W18 graph is about
#: 38 MB (int8: about 10 MB).
MAX_ONNX_FILE_BYTES = 512 << 20
#: The most nodes a graph may hold, subgraphs and functions included: the exported graphs hold
#: 1,100 to 1,400 (float) and about 2,700 (int8); onnxruntime took 35 s and 1.2 GB to load a 10 MB
#: file of 400,000 nodes before any check of ours could refuse it.
MAX_GRAPH_NODES = 20_000
#: The most protobuf fields the operator check reads (about a microsecond each): the
#: exported graphs have about 17,000 (float) and 35,000 (int8); a file of empty nodes, 2 bytes
#: each, was walked for seconds a few megabytes (minutes a gigabyte) before its count was seen.
MAX_GRAPH_FIELDS = 1_000_000
#: The operators (standard domain) of the graphs ``tools/export.py`` writes, float and int8,
#: and a few of the same kind (elementwise, shapes) another torch may choose: a graph is data,
#: and one of a stranger's running a ``Loop`` of 2**62 turns held ``predict`` for good (no
#: ``Loop``, ``Scan``, ``If`` or operator of another domain here). Some of these allocate as
#: their inputs say (``ConstantOfShape``, ``Resize``): the export needs them, so a hostile graph
#: can still ask for gigabytes there.
EXPORTED_OPERATORS = frozenset({
    'Abs', 'Add', 'And', 'ArgMax', 'BatchNormalization', 'Cast', 'Ceil', 'Clip', 'Concat',
    'Constant', 'ConstantOfShape', 'Conv', 'DequantizeLinear', 'Div', 'Equal', 'Exp',
    'Flatten', 'Floor', 'Gather', 'GatherElements', 'Greater', 'Identity', 'Less', 'Log', 'Max',
    'Min', 'Mod', 'Mul', 'Neg', 'Not', 'Pow', 'QuantizeLinear', 'ReduceMax', 'ReduceMean',
    'ReduceSum', 'Relu', 'Reshape', 'Resize', 'Round', 'Shape', 'Sigmoid', 'Slice', 'Softmax',
    'Split', 'Sqrt', 'Squeeze', 'Sub', 'Transpose', 'Unsqueeze', 'Where', 'Xor'})


#: The most CPU memory (bytes) onnxruntime may hold for the runs of the graphs of a process,
#: all sessions together: half this machine's memory (:func:`run_memory_cap`), at most this.
#: An exported graph sizes some tensors from its inputs (``ConstantOfShape``, ``Resize``), so a
#: stranger's 1.4 kB graph asked for 4 GB in one run (and would have asked for any amount); the
#: export's float graph runs a batch of 32 crops in 1.5 GiB (int8: under 1 GiB), and a fixed
#: batch of :data:`MAX_FIXED_BATCH` needs about 12 GiB.
MAX_RUN_MEMORY_BYTES = 16 << 30
#: The least the cap is, whatever the machine's memory: a run of :data:`MAX_BATCH` crops of
#: the float export was refused under 1.25 GiB and ran under 1.5 GiB (half a 2 GiB machine's
#: memory would refuse every image of many faces).
MIN_RUN_MEMORY_BYTES = 2 << 30
#: onnxruntime's optimizers left out of every session: constant folding computes a graph's
#: constant tensors at load with an allocator of its own, outside the run memory's cap (a
#: ``ConstantOfShape`` of 400 MB was made at load under a cap of 64 MiB); the exports are
#: folded by torch already, and runs took the same time without it.
DISABLED_OPTIMIZERS = ('ConstantFolding',)
# onnxruntime's arena refusal: 'Available memory of 66060032 is smaller than requested bytes
# of 100000000'
_ARENA_REFUSAL = re.compile(r'Available memory of (\d+) is smaller than requested bytes of (\d+)')

#: At most this many faces go through the model at once (both runtimes: infer's mmpose
#: predictor takes it too): the crops and the network's activations of all the boxes of an image
#: at once grow with their number (400 boxes asked 1.6 GB of one allocation).
MAX_BATCH = 32


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
    raise NonFinitePredictionError(f'{model} gives {_non_finite(keypoints, scores)} points: a '
                                   'diverged run? (use an earlier checkpoint of it)')


def _non_finite(*arrays: np.ndarray) -> str:
    """``NaN`` or ``infinite``: what the arrays hold that is not finite."""
    return 'NaN' if any(np.isnan(a).any() for a in arrays) else 'infinite'


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


def test_pipeline_crop(cfg) -> tuple[float, dict | None]:
    """How a config's test pipeline crops a face: the box padding of its
    ``GetBBoxCenterScale`` (mmpose's default, 1.25, without one) and its ``TopdownAffine``
    step (None without one)."""
    padding, affine = 1.25, None
    pipeline = ((cfg.get('test_dataloader') or {}).get('dataset') or {}).get('pipeline') or []
    for step in pipeline:
        if step.get('type') == 'GetBBoxCenterScale':
            padding = float(step.get('padding', 1.25))
        if step.get('type') == 'TopdownAffine':
            affine = step
    return padding, affine


@dataclass(frozen=True)
class ImagePart:
    """The part of a picture a crop samples, shrunk by a whole factor where it is too long for
    OpenCV's warp: its pixel ``(u, v)`` covers the picture's ``shrink`` x ``shrink`` pixels
    from ``(x0 + u * shrink, y0 + v * shrink)``.

    Attributes:
        pixels: ``(h, w, ...)`` the part's pixels.
        x0: the picture's column of the part's first.
        y0: the picture's row of the part's first.
        shrink: how many of the picture's pixels a side of one of the part's covers.
    """
    pixels: np.ndarray
    x0: int
    y0: int
    shrink: int

    @property
    def _offset(self) -> np.ndarray:
        # a pixel's centre: the centre of the pixels it covers
        return np.array([self.x0, self.y0]) + (self.shrink - 1) / 2

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Points ``(..., 2)`` of the part in the picture's pixels."""
        return np.asarray(xy, np.float64) * self.shrink + self._offset

    def from_image(self, xy: np.ndarray) -> np.ndarray:
        """Points ``(..., 2)`` of the picture in the part's pixels."""
        return (np.asarray(xy, np.float64) - self._offset) / self.shrink

    def warp(self, matrix: np.ndarray) -> np.ndarray:
        """The 2x3 affine from the part to a crop, of the one from the picture."""
        matrix = np.array(matrix, np.float64)
        return np.hstack([matrix[:, :2] * self.shrink,
                          matrix[:, 2:] + matrix[:, :2] @ self._offset[:, None]])


def crop_part(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]
              ) -> ImagePart | None:
    """The part of a picture a crop of ``output_size`` by the 2x3 ``matrix`` samples: its
    corners mapped back, 2 pixels more each way for the bilinear neighbours, cut to the
    picture, shrunk (``cv2.INTER_AREA``) where a side is :data:`WARP_MAX_SIDE` or more; None
    when the crop samples nothing of it."""
    height, width = image.shape[:2]
    crop_width, crop_height = output_size
    corners = np.array([[0, 0, 1], [crop_width, 0, 1], [0, crop_height, 1],
                        [crop_width, crop_height, 1]], np.float64) \
        @ cv2.invertAffineTransform(np.float64(matrix)).T
    low, high = np.floor(corners.min(axis=0)) - 2, np.ceil(corners.max(axis=0)) + 3
    x0, y0 = (int(min(max(v, 0), side)) for v, side in zip(low, (width, height)))
    x1, y1 = (int(min(max(v, 0), side)) for v, side in zip(high, (width, height)))
    if x1 <= x0 or y1 <= y0:
        return None
    shrink = math.ceil(max(x1 - x0, y1 - y0) / (WARP_MAX_SIDE - 1))
    pixels = image[y0:y1, x0:x1]
    if shrink > 1:
        pixels = cv2.resize(pixels, (math.ceil((x1 - x0) / shrink),
                                     math.ceil((y1 - y0) / shrink)),
                            interpolation=cv2.INTER_AREA)
    return ImagePart(pixels, x0, y0, shrink)


def warp_crop(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]
              ) -> np.ndarray:
    """``cv2.warpAffine`` of an image to a crop (bilinear, zeros outside), for a picture of
    any size: one of a side of :data:`WARP_MAX_SIDE` or more, which OpenCV's warp refuses, is
    cropped from the part the crop samples (:func:`crop_part`: the same pixels, where that
    part is not that long too)."""
    if max(image.shape[:2]) < WARP_MAX_SIDE:
        return cv2.warpAffine(image, matrix, output_size, flags=cv2.INTER_LINEAR)
    part = crop_part(image, matrix, output_size)
    if part is None:  # nothing of the image in the crop
        return np.zeros((output_size[1], output_size[0], *image.shape[2:]), image.dtype)
    return cv2.warpAffine(part.pixels, part.warp(matrix), output_size, flags=cv2.INTER_LINEAR)


#: metadata the predictor decodes as JSON, each at most :data:`MAX_METADATA_VALUE_CHARS`.
#: Every other value stays the text it is, never decoded; of those it reads only
#: ``source_sha256``, by a match of 64 hex digits (a digest of digits only would otherwise
#: become a number).
DECODED_METADATA = ('input_size', 'bbox_padding', 'keypoint_names')


def _decoded(value: str):
    """A metadata value: JSON (lists, numbers, booleans) where it parses, else the text."""
    try:
        return json.loads(value)
    # not JSON; or JSON nested deeper than the decoder's recursion (a crafted file), or an
    # integer of more digits than Python converts: the text, as any other value that is not
    # JSON (those the predictor needs are checked by _landmark_metadata)
    except (ValueError, RecursionError):
        return value


def run_memory_cap() -> int:
    """The bytes onnxruntime's CPU arena may hold for the runs of this process's graphs: half
    the machine's physical memory, at least :data:`MIN_RUN_MEMORY_BYTES` and at most
    :data:`MAX_RUN_MEMORY_BYTES` (that where the system does not say)."""
    try:
        physical = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        return MAX_RUN_MEMORY_BYTES
    if physical <= 0:
        return MAX_RUN_MEMORY_BYTES
    return min(MAX_RUN_MEMORY_BYTES, max(MIN_RUN_MEMORY_BYTES, physical // 2))


_run_memory = {'cap': None, 'lock': threading.Lock()}


def share_capped_cpu_arena(onnxruntime) -> int:
    """Registers, once a process, onnxruntime's CPU arena of :func:`run_memory_cap` bytes that
    the predictors' sessions share (``session.use_env_allocators``), and returns its cap.

    onnxruntime's sessions otherwise each take what their graph asks for, without a bound; the
    arena is the process's (onnxruntime keeps one a device), so every predictor of a process
    shares one cap, and the memory it took stays with the process for the next session (as a
    session's own arena does until the session is gone).
    """
    with _run_memory['lock']:
        if _run_memory['cap'] is None:
            cap = run_memory_cap()
            memory = onnxruntime.OrtMemoryInfo(
                'Cpu', onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                onnxruntime.OrtMemType.DEFAULT)
            # -1: onnxruntime's defaults for the extension strategy, first chunk and dead bytes
            onnxruntime.create_and_register_allocator(memory,
                                                      onnxruntime.OrtArenaCfg(cap, -1, -1, -1))
            _run_memory['cap'] = cap
        return _run_memory['cap']


def _memory(size: int) -> str:
    return f'{size / 2**30:.1f} GiB' if size >= 2**30 else f'{size / 2**20:.0f} MiB'


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


# '[ONNXRuntimeError] : 1 : FAIL : ', before every message of onnxruntime's
_ORT_PREFIX = re.compile(r'^\[ONNXRuntimeError\] : \d+ : (\w+) : ')
# a C++ source location ('/onnxruntime_src/.../model_load_utils.h:46 ') and the signature of
# the function that follows it ('void onnxruntime::ns::Name(' up to its closing parenthesis).
# From the start of a word only: tried inside one, each of its characters would scan on to its
# end, and the message quotes a file's words as they are (a 60 KB op type took 30 s).
_SOURCE_LOCATION = re.compile(
    r'(?<!\S)\S+\.(?:h|hpp|cc|cpp|cu):\d+ (?:[\w:<>,*& ~]*::[\w~]+\()?')


def onnxruntime_reason(error: BaseException, path: str | os.PathLike) -> str:
    """The reason of an onnxruntime error, for a one-line message that names ``path`` already:
    on one line, without the path, the C++ source location and function signature that
    precede the reason, and cut in the middle (head and tail kept: the reason may be at either)
    to :data:`MAX_REASON_CHARS`."""
    text = ' '.join(str(error).split())
    prefix = _ORT_PREFIX.match(text)
    if prefix:
        text = f'{prefix.group(1)}: {text[prefix.end():]}'
    text = text.replace(f'Load model from {path} failed:', '').replace(str(path), 'the file')
    location = _SOURCE_LOCATION.search(text)
    if location:
        end = location.end()
        if text[end - 1] == '(':  # skip the signature's arguments, nested parentheses too
            depth = 1
            while end < len(text) and depth:
                depth += {'(': 1, ')': -1}.get(text[end], 0)
                end += 1
        text = f'{text[:location.start()]}{text[end:]}'
    text = ' '.join(text.split()) or error.__class__.__name__
    if len(text) <= MAX_REASON_CHARS:
        return text
    head = text[:MAX_REASON_CHARS * 2 // 3]
    tail = text[len(text) - (MAX_REASON_CHARS - len(head)):]
    # whole words at the cut
    return f'{head.rsplit(" ", 1)[0]} ... {tail.split(" ", 1)[-1]}'


class _GraphTooLarge(Exception):
    """More nodes or protobuf fields than the operator check reads."""


class _NotExported(Exception):
    """Content no exported graph has, which onnxruntime acts on at load: a sparse tensor,
    made dense there to the size it declares (a 1.4 kB file took gigabytes, outside the runs'
    capped arena)."""


def _protobuf_fields(message: memoryview, budget: list[int]
                     ) -> Iterator[tuple[int, memoryview | None]]:
    """The fields of a protobuf message: ``(number, bytes)`` for a length-delimited one (a
    message, a string), ``(number, None)`` for the others.

    Args:
        message: its bytes.
        budget: ``[fields]`` still to be read, shared by every message of the file; one less
            for each field.

    Raises:
        ValueError: bytes that are no protobuf message ONNX writes (a field running past the
            end, a varint of more than 10 bytes, a group: protobuf skips an unknown one, so a
            file could hide what follows it from a walk that stopped there).
        _GraphTooLarge: the budget is spent.
    """
    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            if pos >= len(message) or shift > 63:
                raise ValueError('a varint past the end of its message')
            byte = message[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if byte < 0x80:
                return value, pos

    pos = 0
    while pos < len(message):
        budget[0] -= 1
        if budget[0] < 0:
            raise _GraphTooLarge
        key, pos = varint(pos)
        wire = key & 7
        if wire == 0:
            pos = varint(pos)[1]
            value = None
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            value = None
        elif wire == 2:
            length, pos = varint(pos)
            value = message[pos:pos + length]
            pos += length
        else:
            raise ValueError(f'a field of wire type {wire}')
        if pos > len(message):
            raise ValueError('a field past the end of its message')
        yield key >> 3, value


def graph_operators(model: bytes) -> list[tuple[str, str]]:
    """The ``(domain, op_type)`` of every node of a serialized ``ModelProto``: its graph's, its
    subgraphs' (an attribute's ``g`` and ``graphs``) and its functions', read from the protobuf
    wire format (onnxruntime, which the predictor needs, has no parser of its own to offer; the
    ``onnx`` package is not needed to run a graph).

    Raises:
        ValueError: bytes that are no protobuf message ONNX writes (see
            :func:`_protobuf_fields`).
        _GraphTooLarge: more than :data:`MAX_GRAPH_NODES` nodes, or than
            :data:`MAX_GRAPH_FIELDS` fields read (said as soon as it is so).
        _NotExported: a sparse initializer or sparse tensor attribute.
    """
    # ModelProto: graph 7, functions 25; GraphProto: node 1, sparse_initializer 15;
    # FunctionProto: node 7; NodeProto: op_type 4, attribute 5, domain 7; AttributeProto:
    # g 6, graphs 11, sparse_tensor 22, sparse_tensors 23
    budget = [MAX_GRAPH_FIELDS]
    operators = []
    graphs = []  # (message, the number of its node field)
    for number, value in _protobuf_fields(memoryview(model), budget):
        if value is not None and number in (7, 25):
            graphs.append((value, 1 if number == 7 else 7))
    done = 0  # the graph first, then the subgraphs and functions, in the order found
    while done < len(graphs):
        graph, node_field = graphs[done]
        done += 1
        for number, node in _protobuf_fields(graph, budget):
            if number == 15 and node_field == 1:
                raise _NotExported('a sparse initializer')
            if number != node_field or node is None:
                continue
            if len(operators) == MAX_GRAPH_NODES:
                raise _GraphTooLarge
            op_type = domain = b''
            for field, value in _protobuf_fields(node, budget):
                if value is None:
                    continue
                if field == 4:
                    op_type = bytes(value)
                elif field == 7:
                    domain = bytes(value)
                elif field == 5:
                    for kind, sub in _protobuf_fields(value, budget):
                        if kind in (22, 23):
                            raise _NotExported('a sparse tensor attribute')
                        if kind in (6, 11) and sub is not None:
                            graphs.append((sub, 1))
            operators.append((domain.decode('utf-8', 'replace'),
                              op_type.decode('utf-8', 'replace')))
    return operators


def check_graph_operators(path: Path) -> bytes:
    """Refuse, before onnxruntime loads it, a file larger than :data:`MAX_ONNX_FILE_BYTES`,
    bytes that are no protobuf message ONNX writes, a graph of more than
    :data:`MAX_GRAPH_NODES` nodes (or :data:`MAX_GRAPH_FIELDS` protobuf fields), one with
    an operator no exported graph has (:data:`EXPORTED_OPERATORS`) or a sparse tensor.

    Returns:
        The bytes checked: onnxruntime is given these, not the path (a file swapped after the
        check would be loaded unchecked).

    Raises:
        OnnxModelError: one line naming the file.
    """
    try:
        model = read_regular_file(path, MAX_ONNX_FILE_BYTES)
    except NotRegularFileError:  # swapped for a FIFO since it was found a file
        raise OnnxModelError(f'{path}: not a regular file') from None
    except AnnotationError:
        raise OnnxModelError(f'{path}: more than {MAX_ONNX_FILE_BYTES >> 20} MB, larger than '
                             'any landmark graph tools/export.py writes') from None
    except OSError as e:
        raise OnnxModelError(f'{path}: cannot be read ({e.strerror or e})') from None
    not_exported = 'not a landmark graph exported by tools/export.py --format onnx'
    try:
        operators = graph_operators(model)
    except ValueError as e:
        raise OnnxModelError(f'{path}: not an ONNX model ({first_line(e)})') from None
    except _GraphTooLarge:
        raise OnnxModelError(f'{path}: {not_exported} (more than {MAX_GRAPH_NODES} nodes or '
                             f'{MAX_GRAPH_FIELDS} protobuf fields; its graphs hold 1,100 to '
                             '1,400 nodes, int8 about 2,700)') from None
    except _NotExported as e:
        raise OnnxModelError(f'{path}: {not_exported} ({e}, which its graphs never '
                             'have)') from None
    for domain, op_type in operators:
        if domain not in ('', 'ai.onnx') or op_type not in EXPORTED_OPERATORS:
            named = op_type if not domain else f'{domain}.{op_type}'
            raise OnnxModelError(f'{path}: {not_exported} (an operator its graphs never '
                                 f'use: {shown_value(named)})')
    return model


def _dims(shape) -> str:
    """A graph's shape as onnxruntime gives it (ints, names of symbolic axes, None)."""
    return '[' + ', '.join(repr(d) if isinstance(d, str) else str(d) for d in shape) + ']'


def check_graph_interface(path: Path, session, input_size: tuple[int, int],
                          num_keypoints: int) -> None:
    """Refuse a graph whose input and outputs do not fit its metadata, at load rather than in
    a run (or, worse, with points silently of another layout).

    Args:
        path: the file, for the messages.
        session: its ``onnxruntime.InferenceSession``.
        input_size: the metadata's crop ``(W, H)``.
        num_keypoints: the metadata's number of keypoint names.

    Raises:
        OnnxModelError: an input that is not ``tensor(uint8)`` ``[batch, H, W, 3]``, or outputs
            that are not ``tensor(float)`` ``[batch, K, 2]`` keypoints and ``[batch, K]`` scores
            (axes the graph leaves symbolic are checked on each run,
            :meth:`OnnxLandmarkPredictor.predict_crops`).
    """
    [crops] = session.get_inputs()
    width, height = input_size
    if crops.type != INPUT_TYPE:
        raise OnnxModelError(f"{path}: the graph's input {crops.name!r} is {crops.type}, not "
                             f'{INPUT_TYPE} crops (B, H, W, 3) as cv2.warpAffine gives them')
    if len(crops.shape) != 4 or list(crops.shape[1:]) != [height, width, 3]:
        raise OnnxModelError(f"{path}: the graph's input {crops.name!r} has shape "
                             f'{_dims(crops.shape)}, not [batch, {height}, {width}, 3] (the '
                             f"metadata's input_size {width}x{height}, BGR)")
    for output, expected in zip(session.get_outputs(), ([num_keypoints, 2], [num_keypoints])):
        if output.type != OUTPUT_TYPE:  # strings, say, which no check of finite values takes
            raise OnnxModelError(f"{path}: the graph's output {output.name!r} is {output.type}, "
                                 f'not {OUTPUT_TYPE}')
        fixed = [d if isinstance(d, int) else None for d in output.shape[1:]]
        if len(output.shape) != len(expected) + 1 or any(
                d is not None and d != e for d, e in zip(fixed, expected)):
            raise OnnxModelError(
                f"{path}: the graph's output {output.name!r} has shape {_dims(output.shape)}, "
                f'not [batch, {", ".join(map(str, expected))}] ({num_keypoints} keypoint names '
                'in its metadata)')


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
        crops[i] = warp_crop(image_bgr, warp_matrix(center[i], scale[i], (width, height)),
                             (width, height))
    return crops, center, scale


def _landmark_metadata(path: Path, raw: dict[str, str]
                       ) -> tuple[tuple[int, int], float, list[str]]:
    """The crop size ``(W, H)``, box padding and keypoint names of a graph's metadata.

    Args:
        path: the file, for the messages.
        raw: its metadata, as the file holds it (text).

    Raises:
        OnnxModelError: values the predictor cannot use, or keypoints other than this
            project's (:data:`.schema.KEYPOINT_NAMES`: the annotation files it writes hold
            those, and a person's corrections start from them); one line naming the file.
    """
    def unusable(what: str, key: str) -> OnnxModelError:
        # the file's own text, cut: a value may be long, or nested too deep to encode again
        return OnnxModelError(f'{path}: unusable landmark metadata ({what}, got '
                              f'{raw[key][:80]!r})')

    for key in DECODED_METADATA:  # before any is decoded: JSON takes many times its size
        if len(raw[key]) > MAX_METADATA_VALUE_CHARS:
            raise unusable(f'{key} is {len(raw[key])} characters long, more than '
                           f'{MAX_METADATA_VALUE_CHARS}', key)
    size, padding, names = (_decoded(raw[key]) for key in DECODED_METADATA)
    # bool is an int to Python: true is no size
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise unusable('input_size must be two sizes [W, H] in pixels', 'input_size')
    if max(size) > MAX_INPUT_SIDE:
        raise unusable(f'input_size must be at most {MAX_INPUT_SIDE} pixels a side',
                       'input_size')
    lowest, highest = BBOX_PADDING_RANGE
    if isinstance(padding, bool) or not isinstance(padding, int | float) or \
            not lowest <= padding <= highest:  # NaN too
        raise unusable(f'bbox_padding must be a number from {lowest:g} to {highest:g}',
                       'bbox_padding')
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise unusable('keypoint_names must be a list of names', 'keypoint_names')
    if tuple(names) != KEYPOINT_NAMES:
        raise OnnxModelError(f"{path}: not a model of this project's {len(KEYPOINT_NAMES)} "
                             f'face keypoints ({_names_differ(names)}); export one with '
                             'tools/export.py --format onnx')
    return (size[0], size[1]), float(padding), names


def _names_differ(names: list[str]) -> str:
    """How a graph's keypoint names differ from :data:`.schema.KEYPOINT_NAMES`, in a few
    words."""
    if len(names) != len(KEYPOINT_NAMES):
        return f'its metadata names {len(names)} keypoints'
    index = next(i for i, (a, b) in enumerate(zip(names, KEYPOINT_NAMES)) if a != b)
    return (f'its keypoint {index} is {names[index][:40]!r}, where this project\'s is '
            f'{KEYPOINT_NAMES[index]!r}')


def _source_sha256(raw: dict[str, str]) -> str | None:
    """The checkpoint digest a file's metadata gives, when it is one (64 hex digits)."""
    value = raw.get('source_sha256', '')
    return value if is_sha256_hex(value) else None


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
            source checkpoint and its sha256, ...), each value the text the file holds, never
            decoded here (``json.loads`` one you need: the export writes lists and numbers as
            JSON); ``source_sha256`` only where it is a sha256 digest.
        input_size: the crops' ``(W, H)``, padding: the box padding, keypoint_names: the
            keypoints' names; decoded from the metadata and checked.
        source_sha256: the sha256 of the checkpoint the graph was exported from, or None
            where the file does not give one (64 hex digits).
        checkpoint: the file, as given.

    Raises:
        OnnxModelError: a missing file, one onnxruntime cannot load, one without the metadata
            of an exported landmark graph of this project's keypoints or whose input and
            outputs do not fit it (:func:`check_graph_interface`), a metadata value it decodes
            longer than :data:`MAX_METADATA_VALUE_CHARS`, a ``bbox_padding`` outside
            :data:`BBOX_PADDING_RANGE`, a fixed batch above :data:`MAX_FIXED_BATCH` crops or
            :data:`MAX_FIXED_BATCH_PIXELS` pixels,
            onnxruntime not installed, or a provider asked for (CUDA) that this onnxruntime
            does not have.
    """

    def __init__(self, path: str | os.PathLike,
                 providers: list[str | tuple[str, dict]] | None = None,
                 intra_op_num_threads: int | None = None, max_batch: int = MAX_BATCH,
                 allow_spinning: bool = False):
        path = Path(path)
        if not path.is_file():
            raise OnnxModelError(f'{path}: no such ONNX file')
        model = check_graph_operators(path)
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
        # the protobuf the operator check read, never onnxruntime's own format, which it
        # chooses for a name ending in .ort (a flatbuffer the check cannot read)
        options.add_session_config_entry('session.load_model_format', 'ONNX')
        # the runs' memory from the process's capped arena (a graph's own sizes are data)
        self.run_memory_cap = share_capped_cpu_arena(onnxruntime)
        options.add_session_config_entry('session.use_env_allocators', '1')
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
                model, options, providers=providers or default_providers(),
                disabled_optimizers=list(DISABLED_OPTIMIZERS))
        except Exception as e:  # InvalidProtobuf, Fail, NoSuchFile...: all "not a model"
            raise OnnxModelError(f'{path}: not an ONNX model onnxruntime can load '
                                 f'({onnxruntime_reason(e, path)})') from None
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
        self.input_size, self.padding, self.keypoint_names = _landmark_metadata(path, raw)
        self.source_sha256 = _source_sha256(raw)
        # the text of each value: those the predictor uses are decoded above, the others are
        # the user's to decode (any may be large, or JSON that takes many times its size)
        self.metadata = {key: value for key, value in raw.items() if key != 'source_sha256'}
        if self.source_sha256 is not None:
            self.metadata['source_sha256'] = self.source_sha256
        check_graph_interface(path, self.session, self.input_size, len(self.keypoint_names))
        self.checkpoint = str(path)
        self.input_name = inputs[0].name
        self.max_batch = max(1, int(max_batch))
        # a graph exported with a fixed batch (onnx's own exporters' default) runs exactly that
        # many crops: runs of it, the last one filled up (a graph of batch 1 stopped the run at
        # the first image of two faces)
        batch_dim = inputs[0].shape[0]
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        if self.fixed_batch is not None and self.fixed_batch > MAX_FIXED_BATCH:
            raise OnnxModelError(
                f'{path}: the graph takes a fixed batch of {self.fixed_batch} crops, more than '
                f'{MAX_FIXED_BATCH}: every run, of a single box too, would be filled up to it; '
                'export with a dynamic batch axis (tools/export.py --format onnx)')
        if self.fixed_batch is not None:
            width, height = self.input_size
            if self.fixed_batch * width * height > MAX_FIXED_BATCH_PIXELS:
                raise OnnxModelError(
                    f'{path}: the graph takes a fixed batch of {self.fixed_batch} crops of '
                    f'{width}x{height} ({self.fixed_batch * width * height * 3 / 2**20:.0f} MiB '
                    f'a run), more than {MAX_FIXED_BATCH} of 256x256 ('
                    f'{MAX_FIXED_BATCH_PIXELS * 3 / 2**20:.0f} MiB): every run, of a single box '
                    'too, would be filled up to it; export with a dynamic batch axis '
                    '(tools/export.py --format onnx)')
            self.max_batch = self.fixed_batch
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
        ``(B, H, W, 3)`` (runs of at most ``max_batch``).

        Raises:
            OnnxModelError: crops of another type or shape (a cast would wrap values, not
                clip them), an error of onnxruntime running the graph, or outputs of another
                shape than the metadata's keypoints; one line.
        """
        crops = np.asarray(crops)
        if crops.dtype != np.uint8:
            raise OnnxModelError(f'crops must be uint8, got {crops.dtype}')
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size[1], self.input_size[0], 3):
            raise OnnxModelError(f'crops must be (B, {self.input_size[1]}, '
                                 f'{self.input_size[0]}, 3) uint8 BGR, got {crops.shape}')
        crops = np.ascontiguousarray(crops)
        num_keypoints = len(self.keypoint_names)
        keypoints, scores = [], []
        for start in range(0, len(crops), self.max_batch):
            batch = crops[start:start + self.max_batch]
            run = batch
            if self.fixed_batch is not None and len(batch) < self.fixed_batch:
                run = np.concatenate([batch, np.repeat(batch[-1:], self.fixed_batch - len(batch),
                                                       axis=0)])
            try:
                k, s = self.session.run(None, {self.input_name: run})
                k, s = k[:len(batch)], s[:len(batch)]  # the filling's results dropped
            except Exception as e:  # onnxruntime's Fail, InvalidArgument, RuntimeException...
                raise OnnxModelError(self._run_failure(e)) from None
            if k.shape != (len(batch), num_keypoints, 2) or s.shape != (len(batch),
                                                                        num_keypoints):
                raise OnnxModelError(
                    f'{self.checkpoint}: the graph gave keypoints of shape {k.shape} and scores '
                    f'of shape {s.shape}, not {(len(batch), num_keypoints, 2)} and '
                    f'{(len(batch), num_keypoints)} ({num_keypoints} keypoint names in its '
                    'metadata)')
            keypoints.append(k)
            scores.append(s)
        if not keypoints:
            return (np.zeros((0, num_keypoints, 2), np.float32),
                    np.zeros((0, num_keypoints), np.float32))
        return np.concatenate(keypoints), np.concatenate(scores)

    def _run_failure(self, error: Exception) -> str:
        """One line on an error of onnxruntime running the graph; a run that asked for more
        than the arena's cap says so in numbers."""
        refused = _ARENA_REFUSAL.search(str(error))
        if refused:
            available, requested = (int(value) for value in refused.groups())
            return (f'{self.checkpoint}: the graph asked onnxruntime for {_memory(requested)} at '
                    f'once, more than the {_memory(available)} left of the '
                    f'{_memory(self.run_memory_cap)} the runs of ONNX graphs may hold (half this '
                    f'machine\'s memory, from {_memory(MIN_RUN_MEMORY_BYTES)} to '
                    f'{_memory(MAX_RUN_MEMORY_BYTES)}; an exported graph runs a batch of 32 crops '
                    'in 1.5 GiB)')
        return (f'{self.checkpoint}: onnxruntime could not run the graph '
                f'({onnxruntime_reason(error, self.checkpoint)})')

    def predict(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray | list | None = None
                ) -> LandmarkResult:
        """Landmarks of each box, in runs of at most ``max_batch`` boxes, each box's crop made
        just before its run.

        Args:
            image_bgr: ``(H, W, 3)`` uint8, as ``cv2.imread`` gives it.
            boxes_xyxy: ``(N, 4)`` (more columns are ignored); None or empty for the whole
                image ``[0, 0, W, H]``, as mmpose's ``inference_topdown`` does.

        Returns:
            ``result.pred_instances.keypoints`` ``(N, K, 2)`` in image pixels and
            ``.keypoint_scores`` ``(N, K)``, as numpy arrays.

        Raises:
            OnnxModelError: an image that is not ``(H, W, 3)`` uint8, or malformed boxes.
            NonFinitePredictionError: NaN or infinite points or scores: the graph's own (a
                diverged model), or points in the image of boxes so large that float32
                overflows.
        """
        image_bgr = np.asarray(image_bgr)
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8 or \
                0 in image_bgr.shape:
            raise OnnxModelError(f'the image must be (H, W, 3) uint8 BGR of some pixels, got '
                                 f'{image_bgr.shape} {image_bgr.dtype}')
        if boxes_xyxy is None or len(boxes_xyxy) == 0:
            boxes = np.array([[0, 0, image_bgr.shape[1], image_bgr.shape[0]]], np.float32)
        else:
            boxes = np.asarray(boxes_xyxy)
            # (text, objects or complex numbers: no finite check, no coordinates)
            if boxes.dtype.kind not in 'iuf' or boxes.ndim != 2 or boxes.shape[1] < 4 or \
                    not np.isfinite(boxes[:, :4]).all():
                raise OnnxModelError(f'boxes must be (N, 4) finite x0, y0, x1, y1, got shape '
                                     f'{boxes.shape} {boxes.dtype}')
            # mmpose computes in the boxes' own float type; integers become float32
            boxes = boxes[:, :4] if np.issubdtype(boxes.dtype, np.floating) else \
                boxes[:, :4].astype(np.float32)
        # the crops of one run at a time: those of all boxes at once take W * H * 3 bytes a box
        # (5.5 GiB for 30000 boxes), the memory max_batch is there to bound
        runs = []
        for start in range(0, len(boxes), self.max_batch):
            with np.errstate(over='ignore', invalid='ignore'):  # checked after the mapping
                crops, center, scale = self.crop(image_bgr, boxes[start:start + self.max_batch])
            keypoints, scores = self.predict_crops(crops)
            del crops  # before the next run's are made
            check_finite_predictions(keypoints, scores, self.checkpoint)
            runs.append((keypoints, scores, center, scale))
        keypoints, scores, center, scale = (np.concatenate(parts) for parts in zip(*runs))
        # add_pred_to_datasample: crop pixels -> image pixels (numpy promotes to float64 there
        # too, before the float32 store)
        input_size = np.array(self.input_size)
        with np.errstate(over='ignore', invalid='ignore'):  # checked below
            in_image = (keypoints / input_size * scale[:, None] + center[:, None]
                        - 0.5 * scale[:, None]).astype(np.float32)
        if not np.isfinite(in_image).all():  # finite in the crop: the boxes overflowed
            worst = boxes[~np.isfinite(in_image).all(axis=(1, 2))][0]
            raise NonFinitePredictionError(
                f'{self.checkpoint} gives {_non_finite(in_image)} points for boxes too large '
                f'for float32 (such as [{", ".join(f"{float(v):g}" for v in worst)}])')
        return LandmarkResult(LandmarkInstances(
            keypoints=in_image, keypoint_scores=scores.astype(np.float32),
            bboxes=boxes.astype(np.float32), bbox_scores=np.ones(len(boxes), np.float32)))

    def draw(self, image_bgr: np.ndarray, result: LandmarkResult, out_file: str | os.PathLike
             ) -> None:
        """Save the image with each face's box, skeleton lines and points in their group
        colours (cv2 only; :meth:`.infer.LandmarkPredictor.draw` draws with mmpose's
        visualizer)."""
        from .schema import GROUP_COLORS, LANDMARKS, SKELETON
        canvas = image_bgr.copy()
        height, width = canvas.shape[:2]
        thickness = max(1, round(max(height, width) / 500))
        # cv2 takes C ints: a point farther than the picture's size off it (a box far larger
        # than the image) is not drawn, nor its lines, and a box is clipped to that margin (its
        # visible edges stay where they are)
        margin = max(height, width)

        def bgr(group: str) -> tuple[int, int, int]:
            r, g, b = GROUP_COLORS[group]
            return int(b), int(g), int(r)

        def pixel(point) -> tuple[int, int] | None:
            x, y = (float(v) for v in point)
            if not (-margin <= x <= width + margin and -margin <= y <= height + margin):
                return None  # NaN too
            return round(x), round(y)

        for points, box in zip(result.pred_instances.keypoints, result.pred_instances.bboxes):
            box = np.asarray(box[:4], np.float64)
            if not np.isnan(box).any():
                x0, x1 = np.clip(box[[0, 2]], -margin, width + margin).round().astype(int)
                y0, y1 = np.clip(box[[1, 3]], -margin, height + margin).round().astype(int)
                cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), (0, 255, 0),
                              thickness, cv2.LINE_AA)
            pixels = [pixel(point) for point in points]
            for a, b in SKELETON:
                if pixels[a] is not None and pixels[b] is not None:
                    cv2.line(canvas, pixels[a], pixels[b], bgr(LANDMARKS[a].group), thickness,
                             cv2.LINE_AA)
            for point, landmark in zip(pixels, LANDMARKS):
                if point is not None:
                    cv2.circle(canvas, point, 2 * thickness, bgr(landmark.group), -1,
                               cv2.LINE_AA)
        write_image(out_file, canvas)
