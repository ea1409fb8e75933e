"""Latency of the exported ONNX graph in onnxruntime against mmpose's ``inference_topdown`` and
anime-face-detector 0.1.0, on the same image, boxes and weights."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .common import device as current_device
from .common import peak_memory, seconds_per_call


def onnx_latency(repeats: int | None = None, batch: int = 8, threads: int | None = None
                 ) -> dict:
    """Per face (one box) and for ``batch`` boxes of one 2000x2000 image: our
    ``OnnxLandmarkPredictor`` (CPU provider, one thread per logical CPU) against
    ``LandmarkPredictor.predict`` (mmpose's ``inference_topdown``) and anime-face-detector's
    ``LandmarkDetector`` on an export of the same weights (random, in the main config's
    network; the time does not depend on them). Flip test and DARK decoding in all three. Also
    the int8 graph (``tools/export.py --int8``, calibrated here on 16 synthetic faces: its
    speed, not its accuracy; measure that with ``tools/evaluate.py`` on a trained model). With
    a GPU, also the CUDA provider against torch on it.

    Args:
        repeats: timed rounds (median taken); default 7 on CPU, 30 with a GPU.
        batch: boxes of the batched measurement.
        threads: CPU threads of torch and onnxruntime alike; default ``os.cpu_count()``, one
            per logical CPU (two per core where SMT is on).
    """
    import onnxruntime
    import torch
    from anime_face_detector import LandmarkDetector

    from ..checkpoints import reference_state_dict
    from ..export import export_checkpoint
    from ..infer import LandmarkPredictor
    from ..onnx_export import export_onnx, quantize_int8
    from ..onnx_predictor import OnnxLandmarkPredictor
    from ..synthetic import render_face_image
    device = current_device()
    repeats = repeats or (30 if device == 'cuda' else 7)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    image, points, _ = render_face_image(np.random.default_rng(21), 2000, 2000)
    face = np.concatenate([points.min(0), points.max(0)]).astype(np.float32)
    # the face box and boxes shifted around it (as detections of several faces would be)
    shifts = np.array([[dx, dy, dx, dy] for dx, dy in
                       [(0, 0), (40, 0), (-40, 0), (0, 40), (0, -40), (30, 30), (-30, -30),
                        (30, -30)]], np.float32)
    boxes = (face + shifts[np.arange(batch) % len(shifts)]).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save(dict(state_dict=reference_state_dict()), tmp / 'ours.pth')
        export_checkpoint(tmp / 'ours.pth', tmp / 'afd.safetensors')
        export_onnx(tmp / 'ours.pth', tmp / 'ours.onnx')
        mmpose_cpu = LandmarkPredictor(config=None, checkpoint=tmp / 'ours.pth', device='cpu')
        onnx_cpu = OnnxLandmarkPredictor(tmp / 'ours.onnx', providers=['CPUExecutionProvider'],
                                         intra_op_num_threads=threads)
        calibration = []
        for k in range(16):  # cropped as the float graph's predictor crops
            face_image, face_points, _ = render_face_image(np.random.default_rng(100 + k),
                                                           320, 320)
            box = np.concatenate([face_points.min(0), face_points.max(0)])[None]
            calibration.append(onnx_cpu.crop(face_image, box)[0])
        quantize_int8(tmp / 'ours.onnx', tmp / 'ours_int8.onnx', np.concatenate(calibration))
        int8_cpu = OnnxLandmarkPredictor(tmp / 'ours_int8.onnx',
                                         providers=['CPUExecutionProvider'],
                                         intra_op_num_threads=threads)
        afd = LandmarkDetector(landmark_checkpoint_path=tmp / 'afd.safetensors',
                               face_detector_name=None, device='cpu')
        gpu = None
        if device == 'cuda' and 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
            gpu = (LandmarkPredictor(config=None, checkpoint=tmp / 'ours.pth', device='cuda'),
                   OnnxLandmarkPredictor(tmp / 'ours.onnx', providers=['CUDAExecutionProvider']))

    def contenders(n: int) -> dict[str, Callable[[], object]]:
        return dict(
            mmpose=lambda: mmpose_cpu.predict(image, boxes[:n]),
            onnx=lambda: onnx_cpu.predict(image, boxes[:n]),
            onnx_int8=lambda: int8_cpu.predict(image, boxes[:n]),
            afd=lambda: afd(image, boxes=[np.append(b, 1.0) for b in boxes[:n]]))

    load_before = os.getloadavg()[0]
    one = seconds_per_call(contenders(1), repeats)
    many = seconds_per_call(contenders(batch), repeats)
    # other processes' load skews torch's OpenMP threads most: say what it was
    result = dict(
        cpu_threads=threads, load_avg_1min=f'{load_before:.1f}-{os.getloadavg()[0]:.1f}',
        image='2000x2000', batch=batch,
        mmpose_ms_per_face=round(one['mmpose'] * 1000, 1),
        onnx_ms_per_face=round(one['onnx'] * 1000, 1),
        afd_ms_per_face=round(one['afd'] * 1000, 1),
        speedup_per_face_onnx_over_mmpose=round(one['mmpose'] / one['onnx'], 2),
        speedup_per_face_onnx_over_afd=round(one['afd'] / one['onnx'], 2),
        mmpose_ms_batch=round(many['mmpose'] * 1000, 1),
        onnx_ms_batch=round(many['onnx'] * 1000, 1),
        afd_ms_batch=round(many['afd'] * 1000, 1),
        speedup_batch_onnx_over_mmpose=round(many['mmpose'] / many['onnx'], 2),
        speedup_batch_onnx_over_afd=round(many['afd'] / many['onnx'], 2),
        onnx_int8_ms_per_face=round(one['onnx_int8'] * 1000, 1),
        onnx_int8_ms_batch=round(many['onnx_int8'] * 1000, 1),
        speedup_per_face_int8_over_mmpose=round(one['mmpose'] / one['onnx_int8'], 2),
        speedup_batch_int8_over_mmpose=round(many['mmpose'] / many['onnx_int8'], 2))
    if gpu is not None:
        mmpose_gpu, onnx_gpu = gpu
        timed = seconds_per_call(dict(
            torch_one=lambda: mmpose_gpu.predict(image, boxes[:1]),
            onnx_one=lambda: onnx_gpu.predict(image, boxes[:1]),
            torch_batch=lambda: mmpose_gpu.predict(image, boxes),
            onnx_batch=lambda: onnx_gpu.predict(image, boxes)),
            repeats, synchronize=torch.cuda.synchronize)
        result.update(
            gpu=torch.cuda.get_device_name(0),
            cuda_torch_ms_per_face=round(timed['torch_one'] * 1000, 2),
            cuda_onnx_ms_per_face=round(timed['onnx_one'] * 1000, 2),
            cuda_torch_ms_batch=round(timed['torch_batch'] * 1000, 2),
            cuda_onnx_ms_batch=round(timed['onnx_batch'] * 1000, 2),
            cuda_speedup_batch_onnx_over_torch=round(timed['torch_batch']
                                                     / timed['onnx_batch'], 2))
    result.update(onnxruntime=onnxruntime.__version__, **peak_memory())
    return result
