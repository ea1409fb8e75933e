"""Hooks of this plugin, registered in mmpose's HOOKS."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpose.registry import HOOKS

from .export import (
    CheckpointLayoutError,
    compare_state_dicts,
    is_anime_face_detector_layout,
    read_checkpoint,
    to_mmpose_state_dict,
)


@HOOKS.register_module()
class StrictLoadFromHook(Hook):
    """Load ``load_from`` strictly, from either checkpoint layout.

    mmengine loads ``load_from`` with ``strict=False``: a checkpoint whose names do not match
    (anime_face_detector's mmpose 0.x head, say) would leave those layers at their random init
    with only a log warning. This hook takes ``load_from`` over: it reads ``.pth`` (mmengine,
    mmpose 1.x or 0.x names, with or without ``meta``) and ``.safetensors``, renames 0.x names,
    and requires every tensor of the model to be there with its shape, nothing more; otherwise
    the run stops with the differences. With ``backbone_only=True`` only ``backbone.*`` must
    match and is loaded (the head keeps its initialisation), for a checkpoint with another head.

    Resuming (``--resume``) is left to mmengine.

    Args:
        backbone_only: load the backbone only, on the user's explicit request.
    """

    priority = 'VERY_HIGH'

    def __init__(self, backbone_only: bool = False):
        self.backbone_only = backbone_only
        self._path: str | None = None

    def before_run(self, runner) -> None:
        # mmengine keeps load_from in a private attribute; empty it so that its non-strict
        # load_or_resume() skips it, and load it ourselves once weights are initialised
        if runner._resume or not runner._load_from:
            return
        self._path, runner._load_from = runner._load_from, None

    def _load(self, runner) -> None:
        if self._path is None:
            return
        path, self._path = self._path, None
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state_dict, _ = read_checkpoint(path)
        layout = ('anime_face_detector (mmpose 0.x names)'
                  if is_anime_face_detector_layout(state_dict) else 'mmpose 1.x')
        state_dict = to_mmpose_state_dict(state_dict)
        expected = model.state_dict()
        if self.backbone_only:
            state_dict = {k: v for k, v in state_dict.items() if k.startswith('backbone.')}
            expected = {k: v for k, v in expected.items() if k.startswith('backbone.')}
        difference = compare_state_dicts(state_dict, expected)
        if difference:
            hint = '' if self.backbone_only else (
                ' (to load its backbone only, add custom_hooks=[dict(type='
                '\'StrictLoadFromHook\', backbone_only=True)] or pass --cfg-options '
                'custom_hooks.0.backbone_only=True)')
            raise CheckpointLayoutError(
                f'load_from {path} does not fit the model: {difference}{hint}')
        model.load_state_dict(state_dict, strict=not self.backbone_only)
        runner.logger.info(
            f'StrictLoadFromHook: loaded all {len(state_dict)} tensors of '
            f'{"the backbone" if self.backbone_only else "the model"} from {path} ({layout})')

    def before_train(self, runner) -> None:
        self._load(runner)

    def before_val(self, runner) -> None:
        self._load(runner)

    def before_test(self, runner) -> None:
        self._load(runner)
