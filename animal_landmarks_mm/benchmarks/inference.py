"""Inference latency of our model through mmpose against anime-face-detector 0.1.0."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..synthetic import make_synthetic_dataset
from .common import OUR_CONFIG, peak_memory, seconds_per_call
from .common import device as current_device


def inference_latency(repeats: int | None = None, batch: int = 8) -> dict:
    """Our model through mmpose vs anime-face-detector 0.1.0, same image and boxes (flip test
    and DARK in both), random weights in the same architecture."""
    import cv2
    import torch
    from anime_face_detector import LandmarkDetector
    from mmpose.apis import inference_topdown

    import animal_landmarks_mm  # noqa: F401

    from ..checkpoints import init_model_strict, reference_state_dict
    from ..export import export_checkpoint
    device = current_device()
    repeats = repeats or (50 if device == 'cuda' else 5)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save(dict(state_dict=reference_state_dict()), tmp / 'ours.pth')
        export_checkpoint(tmp / 'ours.pth', tmp / 'afd.safetensors')
        model = init_model_strict(OUR_CONFIG, tmp / 'ours.pth', device=device)
        afd = LandmarkDetector(landmark_checkpoint_path=tmp / 'afd.safetensors',
                               face_detector_name=None, device=device)
        make_synthetic_dataset(tmp / 'img', 1, seed=5, min_size=512, max_size=512,
                               progress=False)
        image = cv2.imread(str(next((tmp / 'img' / 'images').glob('*.png'))))
    boxes = np.array([[100 + 10 * i, 100, 300 + 10 * i, 300] for i in range(batch)], np.float32)

    timed = seconds_per_call(dict(
        ours_one=lambda: inference_topdown(model, image, boxes[:1], bbox_format='xyxy'),
        afd_one=lambda: afd(image, boxes=[np.append(boxes[0], 1.0)]),
        ours_batch=lambda: inference_topdown(model, image, boxes, bbox_format='xyxy'),
        afd_batch=lambda: afd(image, boxes=[np.append(b, 1.0) for b in boxes])),
        repeats, synchronize=torch.cuda.synchronize if device == 'cuda' else lambda: None)
    ours_one, afd_one = timed['ours_one'], timed['afd_one']
    ours_batch, afd_batch = timed['ours_batch'], timed['afd_batch']
    return dict(device=device, ours_ms_per_face=round(ours_one * 1000, 1),
                afd_ms_per_face=round(afd_one * 1000, 1),
                latency_ratio_afd_over_ours=round(afd_one / ours_one, 3),
                ours_faces_s_batched=round(batch / ours_batch, 1),
                afd_faces_s_batched=round(batch / afd_batch, 1),
                throughput_ratio_ours_over_afd=round(afd_batch / ours_batch, 3),
                batch=batch, **peak_memory())


