"""Write a checkpoint trained here in a form another program loads.

- ``safetensors`` / ``pth``: anime_face_detector's layout (its mmpose 0.x names, see
  :mod:`.checkpoints`): only the model's 1,839 tensors, which
  ``anime_face_detector.LandmarkDetector`` loads with ``strict=True``;
- ``mmpose``: ``state_dict`` + ``meta`` under mmpose 1.x names, with the sha256 prefix in the
  file name, as mmpose's ``publish_model.py`` publishes models.

Reading, renaming and comparing checkpoints is :mod:`.checkpoints`' job; this module only writes.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from mmengine.config import Config

from .annotation import file_sha256
from .checkpoints import (
    CheckpointError,
    compare_state_dicts,
    read_checkpoint,
    to_anime_face_detector_state_dict,
    to_mmpose_state_dict,
)
from .model_zoo import MAIN_CONFIG
from .schema import NUM_KEYPOINTS

FORMATS = ('safetensors', 'pth', 'mmpose')


def reference_state_dict(config: str | os.PathLike = MAIN_CONFIG) -> dict[str, torch.Tensor]:
    """The state dict of the model a config builds (random weights; for names and shapes)."""
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    init_default_scope('mmpose')
    return MODELS.build(Config.fromfile(str(config)).model).state_dict()


def check_anime_face_detector_compatible(state_dict: dict[str, torch.Tensor],
                                         reference: dict[str, torch.Tensor] | None = None
                                         ) -> None:
    """Refuse a model anime_face_detector cannot hold.

    Args:
        state_dict: the model's weights under mmpose 1.x names.
        reference: the expected state dict (default: the main config's model).

    Raises:
        CheckpointError: another keypoint count, backbone or head layout, explained.
    """
    final = state_dict.get('head.final_layer.weight')
    if final is not None and final.shape[0] != NUM_KEYPOINTS:
        raise CheckpointError(
            f'the head predicts {final.shape[0]} keypoints; anime_face_detector\'s model holds '
            f'{NUM_KEYPOINTS}')
    reference = reference_state_dict() if reference is None else reference
    for part in ('backbone.', 'head.'):
        ours = {k: v for k, v in state_dict.items() if k.startswith(part)}
        expected = {k: v for k, v in reference.items() if k.startswith(part)}
        difference = compare_state_dicts(ours, expected)
        if difference:
            what = 'backbone (HRNetV2-W18 expected)' if part == 'backbone.' else \
                'head layout (conv 270->270, BN, conv 270->28 expected)'
            raise CheckpointError(
                f'anime_face_detector cannot hold this model: other {what}: {difference}')
    others = sorted(k for k in state_dict if not k.startswith(('backbone.', 'head.')))
    if others:
        raise CheckpointError(
            f'anime_face_detector cannot hold this model: extra tensors {others[:3]}')


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike,
                      fmt: str | None = None) -> Path:
    """Write a checkpoint trained here in a form another program loads.

    Args:
        checkpoint: an mmengine checkpoint (``epoch_N.pth``, ``best_NME_*.pth``) or a state dict
            in either layout.
        out: the output file. For ``mmpose`` the sha256 prefix is added to its name, as
            mmpose's ``publish_model.py`` does.
        fmt: ``safetensors`` or ``pth`` (anime_face_detector layout: tensors only, 0.x names),
            or ``mmpose`` (``state_dict`` + ``meta`` under 1.x names, no optimizer state).
            Default: from the suffix of ``out`` (``.safetensors`` or ``.pth``).

    Returns:
        The file written.

    Raises:
        CheckpointError: an unreadable checkpoint, or a model anime_face_detector cannot hold.
    """
    out = Path(out)
    fmt = fmt or ('safetensors' if out.suffix == '.safetensors' else 'pth')
    if fmt not in FORMATS:
        raise CheckpointError(f'unknown format {fmt!r}; choose from {", ".join(FORMATS)}')
    state_dict, meta = read_checkpoint(checkpoint)
    state_dict = {k: v.detach().cpu().contiguous()
                  for k, v in to_mmpose_state_dict(state_dict).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.tmp')
    if fmt == 'mmpose':
        torch.save(dict(state_dict=state_dict, meta=meta), tmp)
        final = out.with_name(f'{out.stem}-{file_sha256(tmp)[:8]}.pth')
        os.replace(tmp, final)
        return final
    check_anime_face_detector_compatible(state_dict)
    tensors = to_anime_face_detector_state_dict(state_dict)
    if fmt == 'safetensors':
        from safetensors.torch import save_file
        save_file(tensors, str(tmp), metadata=dict(format='anime_face_detector hrnetv2',
                                                   exported_by='animal_landmarks_mm'))
    else:
        torch.save(tensors, tmp)
    os.replace(tmp, out)
    return out
