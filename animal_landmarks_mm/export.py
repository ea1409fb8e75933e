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

from .annotation import file_sha256
from .checkpoints import (
    CheckpointError,
    check_anime_face_detector_compatible,
    read_checkpoint,
    to_anime_face_detector_state_dict,
    to_mmpose_state_dict,
)

FORMATS = ('safetensors', 'pth', 'mmpose')


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
