"""Hooks of this plugin, registered in mmpose's HOOKS."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpose.registry import HOOKS

from .checkpoints import CheckpointError, CheckpointMismatchError, load_strict


@HOOKS.register_module()
class StrictLoadFromHook(Hook):
    """Load ``load_from`` strictly, from either checkpoint layout or a pretrained name.

    mmengine loads ``load_from`` with ``strict=False``: a checkpoint whose names do not match
    (anime_face_detector's mmpose 0.x head, say) would leave those layers at their random init
    with only a log warning. This hook takes ``load_from`` over and loads it with
    :func:`~animal_landmarks_mm.checkpoints.load_strict`: ``.pth`` (mmengine, mmpose 1.x or 0.x
    names, with or without ``meta``), ``.safetensors`` or a pretrained name such as
    ``anime-face-detector``, every tensor of the model present with its shape, nothing more;
    otherwise the run stops with the differences. With ``backbone_only=True`` only
    ``backbone.*`` must match and is loaded (the head keeps its initialisation), for a
    checkpoint with another head.

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
        try:
            layout = load_strict(model, path, backbone_only=self.backbone_only)
        except CheckpointError as e:
            hint = '' if self.backbone_only or not isinstance(e, CheckpointMismatchError) else (
                ' (to load its backbone only, add custom_hooks=[dict(type='
                '\'StrictLoadFromHook\', backbone_only=True)] or pass --cfg-options '
                'custom_hooks.0.backbone_only=True)')
            raise CheckpointError(f'load_from: {e}{hint}') from None
        part = 'the backbone' if self.backbone_only else 'the model'
        count = sum(1 for k in model.state_dict()
                    if not self.backbone_only or k.startswith('backbone.'))
        runner.logger.info(
            f'StrictLoadFromHook: loaded all {count} tensors of {part} from {path} ({layout})')

    def before_train(self, runner) -> None:
        self._load(runner)

    def before_val(self, runner) -> None:
        self._load(runner)

    def before_test(self, runner) -> None:
        self._load(runner)
