"""A model whose heatmaps really peak, for tests that compare two implementations point by point.

Random or barely trained weights give flat heatmaps whose maximum is decided by float noise, so
two correct implementations can disagree by whole pixels. :func:`train_peaked` fine-tunes the head
of the main config's model on frozen backbone features of a few synthetic faces (and their
mirrors, for the flip test) until each heatmap has one sharp maximum at its landmark: about 30 s
of CPU. conftest.py offers it as the session fixtures ``peaked_scenes`` and ``peaked_checkpoint``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from animal_landmarks_mm.onnx_predictor import bbox_center_scale, warp_matrix
from animal_landmarks_mm.schema import flip_indices

INPUT_SIZE = (256, 256)
FACE_SIZE = 300


def faces(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Synthetic characters: (BGR image, (28, 2) landmarks)."""
    from animal_landmarks_mm.synthetic import render_face_image
    drawn = []
    for i in range(count):
        image, points, _ = render_face_image(np.random.default_rng([7, i]), FACE_SIZE, FACE_SIZE)
        drawn.append((image, points.astype(np.float32)))
    return drawn


def tight_box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(0), points.max(0)]).astype(np.float32)


def crops_of(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """mmpose's crops of the boxes (uint8 NHWC) and their warp matrices."""
    center, scale = bbox_center_scale(boxes, 1.25, 1.0)
    matrices = [warp_matrix(c, s, INPUT_SIZE) for c, s in zip(center, scale)]
    crops = np.stack([cv2.warpAffine(image, m, INPUT_SIZE, flags=cv2.INTER_LINEAR)
                      for m in matrices])
    return crops, matrices


def normalised(crops: np.ndarray) -> torch.Tensor:
    """mmpose's data preprocessor: BGR uint8 NHWC -> RGB, ImageNet mean/std, NCHW."""
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().flip(1)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    return (x - mean) / std


def make_scenes() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Two images, (image, face boxes, their landmarks): two characters side by side, and one
    character on a wider canvas."""
    (a, pa), (b, pb), (c, pc) = faces(3)
    two = np.hstack([a, b])
    shifted = pb + np.float32([FACE_SIZE, 0])
    one = np.zeros((FACE_SIZE + 40, FACE_SIZE + 100, 3), np.uint8)
    one[20:20 + FACE_SIZE, 60:60 + FACE_SIZE] = c
    placed = pc + np.float32([60, 20])
    return [(two, np.stack([tight_box(pa), tight_box(shifted)]), np.stack([pa, shifted])),
            (one, tight_box(placed)[None], placed[None])]


def train_peaked(scenes, config: Path, path: Path) -> Path:
    """The config's network with its head fine-tuned (backbone frozen, random) on the scenes'
    faces and their mirrors until its heatmaps peak at the landmarks; saved as a state dict
    ``.pth`` at ``path``."""
    from mmpose.apis import init_model
    from mmpose.codecs import MSRAHeatmap
    torch.manual_seed(0)
    codec = MSRAHeatmap(input_size=INPUT_SIZE, heatmap_size=(64, 64), sigma=2, unbiased=True)
    crops, targets, flip = [], [], flip_indices()
    for image, boxes, points in scenes:
        face_crops, matrices = crops_of(image, boxes)
        for crop, matrix, face_points in zip(face_crops, matrices, points):
            in_crop = cv2.transform(face_points[None], matrix)[0]
            mirrored = in_crop[flip].copy()
            mirrored[:, 0] = INPUT_SIZE[0] - 1 - mirrored[:, 0]
            crops += [crop, crop[:, ::-1]]
            targets += [codec.encode(in_crop[None])['heatmaps'],
                        codec.encode(mirrored[None])['heatmaps']]
    inputs = normalised(np.ascontiguousarray(np.stack(crops)))
    target = torch.from_numpy(np.stack(targets))
    model = init_model(str(config), None, device='cpu')
    with torch.no_grad():
        features = model.extract_feat(inputs)
    model.head.train()
    optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    for _ in range(90):
        # weighted towards the peaks: a plain MSE first learns "zero everywhere"
        loss = ((model.head.forward(features) - target) ** 2 * (1 + 30 * target)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(dict(state_dict=model.eval().state_dict()), path)
    return path
