"""Export a landmark model to one ONNX graph: image crops in, keypoints and scores out.

mmdeploy's export of mmpose models stops at the heatmaps and leaves decoding to the user; this
graph holds everything mmpose's ``inference_topdown`` does after the crop, so that a runtime with
onnxruntime alone (:mod:`.onnx_predictor`) gives mmpose's points:

1. ``crops``: ``(B, 256, 256, 3)`` uint8, BGR, channels last: exactly what ``cv2.warpAffine``
   of a ``cv2.imread`` image gives (the crop of mmpose's ``TopdownAffine``). Inside: to float,
   to NCHW, BGR to RGB, ImageNet mean/std, as mmpose's ``PoseDataPreprocessor`` does.
2. Flip test (``test_cfg.flip_test``): the network runs once on a batch of ``2B``, the crops
   and their mirrors; the mirrored heatmaps are flipped back, their channels swapped with the
   flip indices, shifted one pixel to the right (``shift_heatmap``), and averaged with the
   plain ones (mmpose's ``flip_heatmaps`` and ``HeatmapHead.predict``).
3. DARK decoding (mmpose's ``MSRAHeatmap(unbiased=True)``): score and integer location of each
   heatmap's maximum (a location of -1 where the maximum is not positive); the heatmap blurred
   with cv2's 11x11 Gaussian over a zero border, rescaled to the original maximum, clamped at
   1e-10 and logged; one Newton step from finite differences (gradient, Hessian) at the maximum
   where it lies 2 pixels or more inside the map and the Hessian is invertible; times
   ``input_size / heatmap_size``.

Outputs: ``keypoints`` ``(B, K, 2)`` float32 in crop pixels (pixel centres at integers, as
mmpose's input space) and ``scores`` ``(B, K)`` float32 (the averaged heatmap's maximum). The
batch axis is dynamic. The file's ``metadata_props`` say what the graph needs to be used
(:data:`METADATA_KEYS`).
"""
from __future__ import annotations

import itertools
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .annotation import (
    AnnotationError,
    move_into_place,
    new_temporary,
    read_image,
    remove_stale_temporaries,
)
from .checkpoints import CheckpointError
from .errors import first_line
from .onnx_predictor import BBOX_PADDING_RANGE, test_pipeline_crop

if TYPE_CHECKING:
    from .evaluation import EvalFace

#: ONNX opset of the exported graph (onnxruntime >= 1.12 runs it).
OPSET = 17
INPUT_NAME = 'crops'
OUTPUT_NAMES = ('keypoints', 'scores')
#: What the graph takes, in words (also in the file's metadata).
INPUT_FORMAT = ('uint8 (B, H, W, 3) BGR crops, channels last, as cv2.warpAffine gives them; '
                'float conversion, BGR to RGB and mean/std normalisation are inside the graph')
#: metadata_props every exported file carries.
METADATA_KEYS = ('keypoint_names', 'flip_indices', 'input_size', 'heatmap_size', 'input_format',
                 'mean', 'std', 'bgr_to_rgb', 'bbox_padding', 'flip_test', 'shift_heatmap',
                 'blur_kernel_size', 'outputs', 'opset', 'source_checkpoint', 'source_sha256',
                 'exported_by')


def gaussian_kernel_1d(size: int) -> np.ndarray:
    """The 1-D kernel of ``cv2.GaussianBlur(heatmap, (size, size), 0)`` on float32 maps (sigma
    from the size, ``0.3 * ((size - 1) * 0.5 - 1) + 0.8``), as mmpose's DARK blur uses it."""
    import cv2
    return cv2.getGaussianKernel(size, 0).astype(np.float32).ravel()


class DarkDecoder(nn.Module):
    """mmpose's ``MSRAHeatmap(unbiased=True).decode`` for a batch, in ONNX-exportable torch.

    Args:
        num_keypoints: heatmaps per instance.
        heatmap_size: ``(W, H)`` of the heatmaps.
        scale: input size over heatmap size, ``(sx, sy)``.
        blur_kernel_size: the DARK blur kernel (odd).
    """

    #: (dx, dy) of the neighbours the Taylor step reads, around the maximum.
    NEIGHBOURS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (2, 0), (-2, 0), (0, 2), (0, -2),
                  (1, 1), (1, -1), (-1, 1), (-1, -1))

    def __init__(self, num_keypoints: int, heatmap_size: tuple[int, int],
                 scale: tuple[float, float], blur_kernel_size: int):
        super().__init__()
        if blur_kernel_size % 2 != 1:
            raise CheckpointError(f'the DARK blur kernel must be odd, got {blur_kernel_size}')
        self.width, self.height = (int(v) for v in heatmap_size)
        self.blur_padding = blur_kernel_size // 2
        self.num_keypoints = num_keypoints
        kernel = torch.from_numpy(gaussian_kernel_1d(blur_kernel_size))
        # separable, as cv2 filters: along x, then along y; one depthwise filter per keypoint
        # (constant shapes: ONNX's Conv needs a kernel of known shape)
        self.register_buffer('kernel_x', kernel.view(1, 1, 1, -1).repeat(num_keypoints, 1, 1, 1)
                             .contiguous(), persistent=False)
        self.register_buffer('kernel_y', kernel.view(1, 1, -1, 1).repeat(num_keypoints, 1, 1, 1)
                             .contiguous(), persistent=False)
        self.register_buffer('scale', torch.tensor(scale, dtype=torch.float32),
                             persistent=False)
        self.register_buffer('neighbour_offsets', torch.tensor(
            [dy * self.width + dx for dx, dy in self.NEIGHBOURS], dtype=torch.int64),
            persistent=False)

    def blur(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """cv2's Gaussian blur of each map over a zero border (mmpose pads with zeros wider
        than the kernel reaches, so cv2's own border mode never matters)."""
        pad = self.blur_padding
        blurred = nn.functional.conv2d(heatmaps, self.kernel_x, padding=(0, pad),
                                       groups=self.num_keypoints)
        return nn.functional.conv2d(blurred, self.kernel_y, padding=(pad, 0),
                                    groups=self.num_keypoints)

    def forward(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints ``(B, K, 2)`` in input pixels and scores ``(B, K)`` of ``(B, K, H, W)``
        heatmaps."""
        width, height = self.width, self.height
        flat = heatmaps.flatten(2)
        scores, index = flat.max(dim=2)
        x = index % width
        y = torch.div(index, width, rounding_mode='floor')
        positive = scores > 0
        locations = torch.stack([x, y], dim=-1).to(heatmaps.dtype)
        locations = torch.where(positive.unsqueeze(-1), locations,
                                torch.full_like(locations, -1.0))

        blurred = self.blur(heatmaps).flatten(2)
        # mmpose rescales each blurred map to its original maximum before the log
        blurred = blurred * (scores / blurred.amax(dim=2)).unsqueeze(-1)
        log_maps = torch.log(torch.clamp(blurred, min=1e-10))
        # neighbours of maxima near the border are read clamped; their step is discarded below
        gather_index = torch.clamp(index.unsqueeze(-1) + self.neighbour_offsets, 0,
                                   width * height - 1)
        v = torch.gather(log_maps, 2, gather_index)
        centre, x_plus, x_minus, y_plus, y_minus = (v[..., i] for i in range(5))
        x_plus2, x_minus2, y_plus2, y_minus2 = (v[..., i] for i in range(5, 9))
        pp, pm, mp, mm = (v[..., i] for i in range(9, 13))  # (x+-1, y+-1)
        # mmpose's refine_keypoints_dark, term by term in its order
        dx = 0.5 * (x_plus - x_minus)
        dy = 0.5 * (y_plus - y_minus)
        dxx = 0.25 * (x_plus2 - 2 * centre + x_minus2)
        dxy = 0.25 * (pp - pm - mp + mm)
        dyy = 0.25 * (y_plus2 - 2 * centre + y_minus2)
        det = dxx * dyy - dxy * dxy
        inside = (x > 1) & (x < width - 2) & (y > 1) & (y < height - 2) & positive
        refine = inside & (det != 0)
        safe_det = torch.where(refine, det, torch.ones_like(det))
        # offset = -inverse(Hessian) @ gradient, the 2x2 inverse written out
        offset_x = -(dyy * dx - dxy * dy) / safe_det
        offset_y = -(dxx * dy - dxy * dx) / safe_det
        offset = torch.stack([offset_x, offset_y], dim=-1)
        offset = torch.where(refine.unsqueeze(-1), offset, torch.zeros_like(offset))
        return (locations + offset) * self.scale, scores


class LandmarkGraph(nn.Module):
    """An mmpose top-down heatmap model with mmpose's test-time processing around it.

    Args:
        model: an mmpose ``TopdownPoseEstimator`` with a ``HeatmapHead`` (eval mode).
        flip_indices: each keypoint's mirror partner.
        mean: the data preprocessor's per-channel mean, RGB order when ``bgr_to_rgb``.
        std: its standard deviation.
        bgr_to_rgb: whether the model was trained on RGB (the crops come in BGR).
        heatmap_size: ``(W, H)``.
        input_size: ``(W, H)``.
        blur_kernel_size: the DARK blur kernel.
        flip_test: average with the mirrored crop's heatmaps.
        shift_heatmap: shift the flipped-back heatmaps one pixel to the right, as mmpose does.
    """

    def __init__(self, model: nn.Module, *, flip_indices: list[int], mean: list[float],
                 std: list[float], bgr_to_rgb: bool, heatmap_size: tuple[int, int],
                 input_size: tuple[int, int], blur_kernel_size: int, flip_test: bool = True,
                 shift_heatmap: bool = True):
        super().__init__()
        self.model = model
        self.flip_test = flip_test
        self.shift_heatmap = shift_heatmap
        self.bgr_to_rgb = bgr_to_rgb
        self.register_buffer('flip_indices', torch.tensor(flip_indices, dtype=torch.int64),
                             persistent=False)
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        scale = (input_size[0] / heatmap_size[0], input_size[1] / heatmap_size[1])
        self.decoder = DarkDecoder(len(flip_indices), heatmap_size, scale, blur_kernel_size)

    def heatmaps(self, crops: torch.Tensor) -> torch.Tensor:
        """The (flip-tested) heatmaps ``(B, K, H, W)`` of uint8 BGR NHWC crops."""
        inputs = crops.permute(0, 3, 1, 2).to(torch.float32)
        if self.bgr_to_rgb:
            inputs = inputs.flip(1)
        inputs = (inputs - self.mean) / self.std
        if not self.flip_test:
            return self.model.head.forward(self.model.extract_feat(inputs))
        both = torch.cat([inputs, inputs.flip(3)], dim=0)
        heatmaps = self.model.head.forward(self.model.extract_feat(both))
        # (2B, K, H, W) -> (2, B, K, H, W): plain and mirrored, for any B
        heatmaps = heatmaps.reshape(2, -1, *heatmaps.shape[1:])
        plain, mirrored = heatmaps[0], heatmaps[1]
        mirrored = mirrored.flip(3).index_select(1, self.flip_indices)
        if self.shift_heatmap:
            # mmpose: heatmaps[..., 1:] = heatmaps[..., :-1] (column 0 keeps its value)
            mirrored = torch.cat([mirrored[..., :1], mirrored[..., :-1]], dim=3)
        return (plain + mirrored) * 0.5

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints ``(B, K, 2)`` in crop pixels and scores ``(B, K)``."""
        return self.decoder(self.heatmaps(crops))


def graph_settings(model: nn.Module) -> dict:
    """What the graph must reproduce, read from an mmpose model and its config.

    Raises:
        CheckpointError: a model the graph cannot express (one line saying what).
    """
    from .schema import KEYPOINT_NAMES, NUM_KEYPOINTS, flip_indices
    cfg = model.cfg
    kind = cfg.model.get('type')
    if kind != 'TopdownPoseEstimator':
        raise CheckpointError(f'ONNX export supports top-down models, not {kind}')
    head = cfg.model.head
    if head.get('type') != 'HeatmapHead':
        raise CheckpointError(f'ONNX export supports HeatmapHead, not {head.get("type")}')
    codec = head.get('decoder') or {}
    if codec.get('type') != 'MSRAHeatmap' or not codec.get('unbiased', False):
        raise CheckpointError('ONNX export supports the DARK decoder (MSRAHeatmap with '
                              f'unbiased=True), not {codec.get("type")} '
                              f'unbiased={codec.get("unbiased", False)}')
    test_cfg = cfg.model.get('test_cfg') or {}
    flip_test = bool(test_cfg.get('flip_test', False))
    if flip_test and test_cfg.get('flip_mode', 'heatmap') != 'heatmap':
        raise CheckpointError(f'ONNX export supports flip_mode="heatmap", not '
                              f'{test_cfg.get("flip_mode")!r}')
    if test_cfg.get('output_keypoint_indices') is not None:
        raise CheckpointError('ONNX export does not support test_cfg.output_keypoint_indices')
    out_channels = head.get('out_channels')
    if out_channels != NUM_KEYPOINTS:
        raise CheckpointError(f'the head predicts {out_channels} keypoints; the ONNX graph '
                              f'carries the {NUM_KEYPOINTS}-point layout')
    preprocessor = cfg.model.get('data_preprocessor') or {}
    mean, std = preprocessor.get('mean'), preprocessor.get('std')
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        raise CheckpointError('ONNX export needs the data preprocessor\'s 3-channel mean and '
                              'std')
    padding, affine = test_pipeline_crop(cfg)
    if affine is None or affine.get('use_udp', False):
        raise CheckpointError('ONNX export needs a test pipeline with TopdownAffine (no UDP)')
    lowest, highest = BBOX_PADDING_RANGE  # the predictor refuses a graph of another
    if not lowest <= padding <= highest:
        raise CheckpointError(f'ONNX export needs a GetBBoxCenterScale padding from {lowest:g} '
                              f'to {highest:g}, not {padding:g}')
    input_size = tuple(int(v) for v in affine['input_size'])
    if tuple(codec['input_size']) != input_size:
        raise CheckpointError(f'the codec\'s input size {tuple(codec["input_size"])} differs '
                              f'from TopdownAffine\'s {input_size}')
    meta_flip = (getattr(model, 'dataset_meta', None) or {}).get('flip_indices')
    indices = [int(i) for i in meta_flip] if meta_flip is not None else flip_indices()
    if sorted(indices) != list(range(NUM_KEYPOINTS)):
        raise CheckpointError(f'flip indices {indices} are not a permutation of the '
                              f'{NUM_KEYPOINTS} keypoints')
    return dict(
        keypoint_names=list(KEYPOINT_NAMES), flip_indices=indices,
        input_size=list(input_size), heatmap_size=[int(v) for v in codec['heatmap_size']],
        mean=[float(v) for v in mean], std=[float(v) for v in std],
        bgr_to_rgb=bool(preprocessor.get('bgr_to_rgb', False)), bbox_padding=padding,
        flip_test=flip_test, shift_heatmap=bool(test_cfg.get('shift_heatmap', False)),
        blur_kernel_size=int(codec.get('blur_kernel_size', 11)))


def build_graph(model: nn.Module, settings: dict | None = None) -> LandmarkGraph:
    """The exportable module of an mmpose model (see :func:`graph_settings`)."""
    settings = settings or graph_settings(model)
    return LandmarkGraph(
        model.eval(), flip_indices=settings['flip_indices'], mean=settings['mean'],
        std=settings['std'], bgr_to_rgb=settings['bgr_to_rgb'],
        heatmap_size=tuple(settings['heatmap_size']), input_size=tuple(settings['input_size']),
        blur_kernel_size=settings['blur_kernel_size'], flip_test=settings['flip_test'],
        shift_heatmap=settings['shift_heatmap']).eval()


def source_checkpoint_name(checkpoint: str | os.PathLike) -> str:
    """How an exported file names the checkpoint it came from: the file's name (its folders are
    the exporting machine's, a home directory perhaps, and the file is handed out), or a
    pretrained name as given; with the repository and commit of a file of the Hugging Face
    cache (what a pretrained name resolves to), read from its snapshot folder. The weights
    themselves are told by ``source_sha256``."""
    from .model_zoo import hub_snapshot, is_pretrained_name, resolve_checkpoint
    path = Path(checkpoint)
    name = str(checkpoint) if is_pretrained_name(checkpoint) and not path.is_file() else \
        path.name
    snapshot = hub_snapshot(resolve_checkpoint(checkpoint))
    if snapshot is None:
        return name
    return f'{name} ({snapshot.repo_id} at commit {snapshot.commit})'


def _metadata(settings: dict, checkpoint: str | os.PathLike, opset: int) -> dict[str, str]:
    """The file's metadata_props: every value a string (JSON for lists)."""
    import animal_landmarks_mm

    from .annotation import file_sha256
    from .model_zoo import resolve_checkpoint
    values = dict(settings, input_format=INPUT_FORMAT, opset=opset,
                  outputs='keypoints (B, K, 2) float32 in crop pixels (pixel centres at '
                  'integers); scores (B, K) float32, the flip-averaged heatmap maximum',
                  source_checkpoint=source_checkpoint_name(checkpoint),
                  source_sha256=file_sha256(resolve_checkpoint(checkpoint)),
                  exported_by=f'animal_landmarks_mm {animal_landmarks_mm.__version__}, torch '
                  f'{torch.__version__}')
    return {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in ((k, values[k]) for k in METADATA_KEYS)}


#: Annotated faces an int8 export calibrates on by default.
CALIBRATION_FACES = 64


class CalibrationCrops:
    """onnxruntime's calibration data reader (``get_next``) over crops, one crop per run."""

    def __init__(self, crops: np.ndarray):
        self._crops = iter(crops)

    def get_next(self) -> dict[str, np.ndarray] | None:
        crop = next(self._crops, None)
        return None if crop is None else {INPUT_NAME: crop[None]}


def pick_calibration_faces(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike,
                           *, faces: int = CALIBRATION_FACES,
                           split_file: str | os.PathLike | None = None,
                           left_out: Callable[[str], None] | None = None) -> list[EvalFace]:
    """The annotated faces an int8 export calibrates on: up to ``faces`` faces spread evenly
    over the usable annotation files, read as evaluation reads them
    (:func:`.evaluation.faces_from_annotation_dir`: the split file first, then only the files
    it lists, validated against their images as the converter does). Reads no pixels:
    :func:`export_onnx` calls it before the model's weights are loaded.

    Args:
        annotation_dir: a folder of annotation files (``--calibration-annotation-dir``).
        image_dir: their images (``--calibration-image-dir``).
        faces: at most this many faces.
        split_file: only the files it lists (the converter's ``train.txt``), so that the
            faces a model is then evaluated on (``val.txt``, ``test.txt``) are not among those
            its int8 ranges were calibrated on.
        left_out: told, one line each, of the files left out for a defect and of the listed
            files the folder lacks (default :func:`.evaluation.print_left_out`, on stderr).

    Raises:
        CheckpointError: ``faces`` below 1, a folder that is not there, or no usable annotated
            face in the folder (or in the split).
        EvaluationInputError: an unreadable split file.
    """
    from .evaluation import faces_from_annotation_dir, print_left_out
    if faces < 1:
        raise CheckpointError(f'calibrating needs at least 1 face, not {faces}')
    # named by the export's options (evaluation's own check names --annotation-dir)
    for flag, folder in (('--calibration-annotation-dir', annotation_dir),
                         ('--calibration-image-dir', image_dir)):
        if not Path(folder).is_dir():
            raise CheckpointError(f'{flag} {folder}: no such folder')
    found, contents = faces_from_annotation_dir(annotation_dir, image_dir, split_file=split_file)
    for problem in contents.problems:
        (left_out or print_left_out)(problem)
    if not found:
        among = '' if split_file is None else f' listed in {split_file}'
        raise CheckpointError(f'no usable annotated face{among} in {annotation_dir} (with '
                              f'images in {image_dir}) to calibrate the int8 export on')
    picks = sorted(set(np.linspace(0, len(found) - 1, min(faces, len(found))).round()
                       .astype(int).tolist()))
    return [found[k] for k in picks]


def crop_calibration_faces(faces: list[EvalFace], *, input_size: tuple[int, int],
                           padding: float, left_out: Callable[[str], None] | None = None
                           ) -> np.ndarray:
    """The crops of :func:`pick_calibration_faces`, in order, cropped as the predictor crops
    them.

    An image that cannot be decoded (the reader checks an image's header and end, not its
    pixels: a PNG with a corrupt IDAT chunk passes it) has its faces left out, as evaluation
    leaves them out; the others are cropped.

    Args:
        faces: the faces (those of one image next to each other, as listed).
        input_size: the crops' ``(W, H)``.
        padding: mmpose's box padding.
        left_out: told, one line each, of the images that cannot be decoded (default
            :func:`.evaluation.print_left_out`, on stderr).

    Returns:
        ``(N, H, W, 3)`` uint8 crops, N at least 1.

    Raises:
        CheckpointError: none of the faces' images can be decoded.
    """
    from .errors import counted
    from .evaluation import print_left_out
    from .onnx_predictor import crop_boxes
    crops = []
    # each image is decoded once, all its faces cropped together
    for image_path, group in itertools.groupby(faces, key=lambda face: face.image_path):
        group = list(group)
        try:
            image = read_image(image_path)
        except AnnotationError as e:
            (left_out or print_left_out)(f'{e} (its {counted(len(group), "face")})')
            continue
        boxes = np.array([face.box for face in group], np.float32)
        crops.extend(crop_boxes(image, boxes, input_size, padding)[0])
    if not crops:
        raise CheckpointError(f'none of the images of the {counted(len(faces), "face")} to '
                              'calibrate the int8 export on could be decoded')
    return np.stack(crops)


def calibration_crops(annotation_dir: str | os.PathLike, image_dir: str | os.PathLike, *,
                      input_size: tuple[int, int], padding: float,
                      faces: int = CALIBRATION_FACES,
                      split_file: str | os.PathLike | None = None,
                      left_out: Callable[[str], None] | None = None) -> np.ndarray:
    """Crops of annotated faces for an int8 export's calibration:
    :func:`pick_calibration_faces`, then :func:`crop_calibration_faces` (see those for the
    arguments and errors)."""
    return crop_calibration_faces(
        pick_calibration_faces(annotation_dir, image_dir, faces=faces, split_file=split_file,
                               left_out=left_out),
        input_size=input_size, padding=padding, left_out=left_out)


def quantize_int8(graph: str | os.PathLike, out: str | os.PathLike, crops: np.ndarray,
                  temporaries_of: str | os.PathLike | None = None) -> None:
    """Static int8 quantisation of an exported graph's network (onnxruntime's
    ``quantize_static``: QDQ, per-channel int8 weights of 7 bits, uint8 activations whose ranges
    are calibrated on ``crops``). The decoder's convolutions (DARK's blur) stay float: the
    Taylor step needs the heatmaps' fine shape. The metadata is kept, with ``quantization``
    added.

    7-bit weights (``reduce_range``): onnxruntime's uint8 x int8 kernels on x86 CPUs without
    VNNI (AVX2, AVX-512 before VNNI) add pairs of products in 16 bits, which saturate with
    8-bit weights: measured on an AVX2-only CPU (AMD EPYC), the peaked test model's points
    moved a median 1.81 px, up to 92 px, from the float graph's; 0.29 px, up to 4.4 px, with
    7 bits. A graph is exported once and run on whatever CPU the user has.

    Args:
        graph: the float graph.
        out: the file to write.
        crops: ``(N, H, W, 3)`` uint8 calibration crops.
        temporaries_of: the file whose temporaries (:func:`.annotation.new_temporary`) the
            working files are, beside it (default ``out``): :func:`export_onnx` names its
            final output, ``out`` being a temporary itself, so that its clean-up finds them.
    """
    import onnx
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )
    model = onnx.load(str(graph))
    decoder = [node.name for node in model.graph.node
               if node.op_type == 'Conv' and node.name.startswith('/decoder/')]
    # One of our hidden temporaries beside the output (a folder there was left in the person's
    # folder by a killed export, where nothing cleans it; these :func:`remove_stale_temporaries`
    # knows).
    prepared = new_temporary(out if temporaries_of is None else temporaries_of)
    try:
        # shape inference and onnxruntime's fusions first, as its quantisation guide asks
        quant_pre_process(str(graph), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), CalibrationCrops(crops),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=['Conv'], nodes_to_exclude=decoder)
    finally:
        prepared.unlink(missing_ok=True)
    quantized = onnx.load(str(out))
    known = {entry.key for entry in quantized.metadata_props}
    for entry in model.metadata_props:
        if entry.key not in known:
            quantized.metadata_props.add(key=entry.key, value=entry.value)
    quantized.metadata_props.add(
        key='quantization', value=f'int8 static (QDQ, per-channel 7-bit weights), calibrated on '
        f'{len(crops)} faces; the decoder in float')
    onnx.checker.check_model(quantized, full_check=True)
    onnx.save(quantized, str(out))


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike,
                config: str | os.PathLike | None = None, opset: int = OPSET,
                calibration: tuple[str | os.PathLike, str | os.PathLike] | None = None,
                calibration_faces: int = CALIBRATION_FACES,
                calibration_split_file: str | os.PathLike | None = None) -> Path:
    """Write a checkpoint as one ONNX graph from uint8 BGR crops to keypoints and scores.

    Args:
        checkpoint: a checkpoint trained here or in anime_face_detector's layout, or a
            pretrained name; loaded strictly.
        out: the ``.onnx`` file to write.
        config: the model's config (default: the main config).
        opset: the ONNX opset (default :data:`OPSET`).
        calibration: ``(annotation_dir, image_dir)`` of annotated faces to write an int8
            graph calibrated on them (:func:`pick_calibration_faces` before the weights are
            read, :func:`crop_calibration_faces`, :func:`quantize_int8`); None for float32.
            Files and images left out are told on stderr, one line each.
        calibration_faces: at most this many faces to calibrate on.
        calibration_split_file: calibrate only on the annotation files it lists (the
            converter's ``train.txt``: not on the faces the model is evaluated on).

    Returns:
        The file written, checked with ``onnx.checker``. A failed export leaves neither it nor
        a temporary file.

    Raises:
        CheckpointError: an unreadable checkpoint, weights that do not fit the config, a
            model the graph cannot express, an output not named ``.onnx`` (in any case: the
            tools tell ONNX files by it), an output that is the checkpoint itself (a link to
            it included), or calibration folders without a usable face.
        EvaluationInputError: an unreadable calibration split file.
    """
    import onnx

    from .checkpoints import init_model_strict
    from .export import refuse_overwriting_input
    from .onnx_predictor import is_onnx_path
    if not is_onnx_path(out):
        raise CheckpointError(f'{out}: an ONNX graph needs an .onnx name, by which the tools '
                              'tell it from a checkpoint')
    if Path(out).is_dir():
        raise CheckpointError(f'{out}: a folder; give the name of the file to write')
    refuse_overwriting_input(checkpoint, out)
    # the calibration's folders, split file and faces are checked before the weights are read
    # (seconds, or a download for a pretrained name); their pixels once the crop is known
    picked = None if calibration is None else pick_calibration_faces(
        *calibration, faces=calibration_faces, split_file=calibration_split_file)
    # The config is checked first: a model the graph cannot express is refused before its
    # weights are read (or downloaded, for a pretrained name).
    model = init_model_strict(config, checkpoint, device='cpu', check_model=graph_settings)
    settings = graph_settings(model)
    crops = None
    if picked is not None:  # cropped as the predictor will crop
        crops = crop_calibration_faces(picked, input_size=tuple(settings['input_size']),
                                       padding=settings['bbox_padding'])
    graph = build_graph(model, settings)
    width, height = settings['input_size']
    example = torch.zeros(2, height, width, 3, dtype=torch.uint8)
    with torch.no_grad():
        produced = tuple(graph.heatmaps(example[:1]).shape[2:])
    if produced != tuple(reversed(settings['heatmap_size'])):
        raise CheckpointError(f'the head makes {produced[1]}x{produced[0]} heatmaps, the codec '
                              f'decodes {settings["heatmap_size"][0]}x'
                              f'{settings["heatmap_size"][1]}')
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # what a killed export of this output left (a folder may hold the person's other files:
    # those of this output's naming only, and old enough not to be another export's at work)
    remove_stale_temporaries(out.parent, of=out.name)
    tmp = new_temporary(out)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter (dynamo=False): torch.export's needs onnxscript, one
            # dependency more, for no gain on this graph. Its tracer makes mmpose's resize
            # sizes constants: right for the fixed input size (the batch axis stays dynamic,
            # tests/test_onnx.py).
            warnings.simplefilter('ignore', DeprecationWarning)
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            torch.onnx.export(
                graph, (example,), str(tmp), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_axes={INPUT_NAME: {0: 'batch'}, **{name: {0: 'batch'}
                                                           for name in OUTPUT_NAMES}},
                do_constant_folding=True)
        proto = onnx.load(str(tmp))
        proto.doc_string = ('28-point face landmarks (HRNetV2-W18 + DARK, anime_face_detector\'s '
                            f'layout), flip test and DARK decoding inside. Input: {INPUT_FORMAT}.')
        for key, value in _metadata(settings, checkpoint, opset).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        if crops is not None:
            float_graph, tmp = tmp, new_temporary(out)
            try:
                quantize_int8(float_graph, tmp, crops, temporaries_of=out)
            finally:
                float_graph.unlink(missing_ok=True)
    except CheckpointError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as e:  # torch's exporter, onnx's checker, onnxruntime's quantisation:
        tmp.unlink(missing_ok=True)  # one line, no partial file
        first = first_line(e)
        raise CheckpointError(f'{checkpoint}: ONNX export failed ({first[:300]})') from None
    except BaseException:  # Ctrl-C: no partial file either
        tmp.unlink(missing_ok=True)
        raise
    move_into_place(tmp, out)
    return out
