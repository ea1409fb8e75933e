"""Hooks of this plugin, registered in mmpose's HOOKS."""
from __future__ import annotations

import os.path as osp

from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmpose.registry import HOOKS

from .annotation import AnnotationError, file_sha256, remove_stale_temporaries, write_bytes_atomic
from .checkpoints import (
    CheckpointError,
    CheckpointMismatchError,
    check_pretrained_loads,
    load_strict,
    read_resume_checkpoint,
    resume_file,
)
from .model_zoo import describe_checkpoint
from .schedule import ScheduleError, resumed_schedule_difference

#: ``meta`` key of a checkpoint: what its run trained and validated on
#: (:func:`training_data`), for a resume to compare
TRAINING_DATA_KEY = 'animal_landmarks_training_data'


def _annotation_files(dataset: object) -> list[str]:
    """The annotation files of a dataset config, wrappers (``RepeatDataset``'s ``dataset``,
    ``ConcatDataset``'s ``datasets``) included, each joined to its ``data_root`` as mmengine's
    ``BaseDataset`` joins it."""
    if isinstance(dataset, (list, tuple)):
        return [path for item in dataset for path in _annotation_files(item)]
    if not isinstance(dataset, dict):
        return []
    files = _annotation_files(dataset.get('dataset')) + _annotation_files(dataset.get('datasets'))
    ann_file = dataset.get('ann_file')
    if isinstance(ann_file, str) and ann_file:
        root = dataset.get('data_root')
        files.append(ann_file if osp.isabs(ann_file) or not isinstance(root, str) or not root
                     else osp.join(root, ann_file))
    return files


def _file_digest(path: str) -> str | None:
    try:
        return file_sha256(path)
    except (OSError, AnnotationError):  # missing, a FIFO: mmengine's to say when it builds
        return None  # the dataset


def training_data(cfg) -> dict:
    """What a run trains and validates on: the sha256 of each annotation file of its training
    and validation loaders' datasets, and the training batch size. A resume on other data
    went on without a word, and its best checkpoint then compared NMEs of two validation sets
    (deleting the run's real best)."""
    loaders = {name: cfg.get(f'{name}_dataloader') or {} for name in ('train', 'val')}
    return {**{name: [_file_digest(path) for path in _annotation_files(loader.get('dataset'))]
               for name, loader in loaders.items()},
            'batch_size': loaders['train'].get('batch_size')}


def _data_difference(saved: dict, now: dict) -> str | None:
    """How a run's data differs from a checkpoint's (:func:`training_data`), or None.

    Validation files are compared only where both validate: the check keeps the best
    checkpoint's NMEs of one validation set, and a run that validates nothing compares none
    (it carries the saved files on, :meth:`StrictLoadFromHook._check_resume`), nor does a
    run resumed from one that never validated have a best NME to compare with."""
    if saved.get('batch_size') != now['batch_size']:
        return f'its batch was {saved.get("batch_size")} faces, this run\'s is {now["batch_size"]}'
    if saved.get('train') != now['train']:
        return 'its training annotations were other files than this run\'s'
    if saved.get('val') and now['val'] and saved['val'] != now['val']:
        return 'its validation annotations were other files than this run\'s'
    return None


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
    checkpoint with another head. The log line of a load names the checkpoint, for a pretrained
    name with the repository commit its weights came from.

    Resuming (``--resume``, ``resume=True``) is left to mmengine, after four checks of the
    file it will resume from (``load_from``, or the work dir's latest checkpoint), read as data
    before mmengine opens it: it must not carry a ``meta['config']`` (code mmengine's resume
    would run; :func:`~animal_landmarks_mm.checkpoints.read_resume_checkpoint`), its weights
    must fit the model under the names mmengine loads them by (it loads with ``strict=False``,
    leaving the rest as initialised), the run's schedule must be the one it was saved with
    (mmengine would load the saved one over it;
    :func:`~animal_landmarks_mm.schedule.resumed_schedule_difference`), and so must its data
    (the annotation files and batch size, :func:`training_data`, which this hook writes into
    every checkpoint's ``meta``; a checkpoint without it, of an older version, is not
    compared; validation files only where both runs validate).

    Args:
        backbone_only: load the backbone only, on the user's explicit request.
    """

    priority = 'VERY_HIGH'

    def __init__(self, backbone_only: bool = False):
        self.backbone_only = backbone_only
        self._path: str | None = None
        self._data: dict | None = None

    def before_run(self, runner) -> None:
        # runs before mmengine's load_or_resume() (Runner.train, .val, .test)
        from mmengine.runner import BaseLoop
        if isinstance(runner._train_loop, BaseLoop):  # training: its datasets loaded now
            # the data of the run, as it is now: a conversion rewriting the files later in a
            # long run is not what it trained on
            self._data = training_data(runner.cfg)
            if runner.cfg.get('val_cfg') is not None and runner.cfg.get('val_dataloader'):
                # for every runner (mim train too), before the first epoch: a validation file
                # with no face the NME measures failed after it, a KeyError 'NME' traceback
                from .training import check_annotation_files
                check_annotation_files(runner.cfg, ('val_dataloader',))
        if runner._resume:
            self._data = self._check_resume(runner, self._data)
            return
        # mmengine keeps load_from in a private attribute; empty it so that its non-strict
        # load_or_resume() skips it, and load it ourselves once weights are initialised
        if not runner._load_from:
            return
        self._path, runner._load_from = runner._load_from, None

    @staticmethod
    def _check_resume(runner, data: dict | None) -> dict | None:
        """Refuse the checkpoint mmengine is about to resume from when it carries code, weights
        that do not fit the model, or a schedule or data (``data``: the run's
        :func:`training_data`; None for a run that does not train, a test of a resumed run's
        config) other than the run's (see the class docstring).

        Returns:
            The data record for the run's checkpoints: ``data``, with the checkpoint's
            validation files where this run validates nothing (``--no-validate``): the best
            NME mmengine carries on in the run's state is still theirs, for a later resume that
            validates to be compared with.
        """
        from mmengine.optim.scheduler import _ParamScheduler

        from .checkpoints import compare_state_dicts, without_wrapper_prefix
        path = resume_file(runner._load_from, runner.work_dir)
        if path is None:
            return data  # nothing to resume from: mmengine starts afresh
        try:
            checkpoint = read_resume_checkpoint(path)
        except CheckpointError as e:
            raise CheckpointError(f'resume: {e}') from None
        # mmengine's resume loads the weights with strict=False, stripping module. alone (no
        # layout mapping): whatever does not fit stays as initialised, with only a log line
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        difference = compare_state_dicts(without_wrapper_prefix(checkpoint['state_dict']),
                                         model.state_dict())
        if difference:
            raise CheckpointMismatchError(
                f'resume: {path} does not fit the model: {difference} (mmengine would resume '
                'anyway, with the weights it cannot load left as initialised): resume with the '
                'config of the run it continues')
        meta = checkpoint.get('meta')
        saved_data = meta.get(TRAINING_DATA_KEY) if isinstance(meta, dict) else None
        if isinstance(saved_data, dict) and data is not None:
            difference = _data_difference(saved_data, data)
            if difference:
                raise CheckpointMismatchError(
                    f'resume: {path} was trained on other data ({difference}): mmengine would '
                    'go on, its best checkpoint comparing NMEs of other validation faces; to '
                    'train on the new data start a new run from its weights with --checkpoint '
                    f'{path}, or resume with the data of the run it continues')
            if not data['val']:
                data = {**data, 'val': saved_data.get('val')}
        schedulers, saved = runner.param_schedulers, checkpoint.get('param_schedulers')
        if not schedulers or saved is None:
            return data  # mmengine resumes no schedule then
        groups = schedulers.values() if isinstance(schedulers, dict) else [schedulers]
        if not all(isinstance(s, _ParamScheduler) for group in groups for s in group):
            return data  # not built (a validation or test run): no schedule to resume
        difference = resumed_schedule_difference(schedulers, saved)
        if difference:
            raise ScheduleError(
                f'resume: this run\'s schedule is not the one {path} was saved with '
                f'({difference}), and mmengine would go on with the saved one: resume with the '
                'flags and faces of the run it continues (--epochs, --iters, --batch-size, '
                f'--lr, --accumulate), or start a new run from its weights with --checkpoint '
                f'{path}')
        return data

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._data is not None:  # taken when the run began (before_run)
            checkpoint.setdefault('meta', {})[TRAINING_DATA_KEY] = self._data

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
        # a pretrained name follows its repository's main branch: the log names the commit
        # that was loaded, so that a run's start weights can be told (and fetched) later
        runner.logger.info(f'StrictLoadFromHook: loaded all {count} tensors of {part} from '
                           f'{describe_checkpoint(path)} ({layout})')

    def before_train(self, runner) -> None:
        # the weights are initialised now (Runner.train: init, then load or resume, then the
        # loop's hooks); a resumed run's are the checkpoint's whatever the init loaded
        if not runner._resume:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            try:
                check_pretrained_loads(model, runner.cfg.get('model'))
            except CheckpointError as e:
                raise type(e)(f'Pretrained init: {e}') from None
        self._load(runner)

    def before_val(self, runner) -> None:
        self._load(runner)

    def before_test(self, runner) -> None:
        self._load(runner)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, each file written whole or not at all: into a temporary
    beside it, then moved over it (:func:`~.annotation.write_bytes_atomic`). mmengine's own
    writes straight into the final name, so a full disk or a kill mid-save left a truncated
    checkpoint under a name the tools then pick (``best_NME_*.pth``)."""

    def put(self, obj: bytes, filepath) -> None:
        write_bytes_atomic(filepath, obj, make_folder=True)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        write_bytes_atomic(filepath, obj.encode(encoding), make_folder=True)


#: The name :class:`AtomicLocalBackend` is registered under (``backend_args=dict(backend=...)``).
ATOMIC_LOCAL_BACKEND = 'atomic_local'
register_backend(ATOMIC_LOCAL_BACKEND, AtomicLocalBackend, force=True)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with nothing lost when a save is cut short.

    mmengine removes the previous best checkpoint before it writes the new one, straight into
    its final name: a full disk or a kill during that write left a truncated
    ``best_NME_*.pth`` and no other (``--resume`` then finished without complaint, and
    ``tools/test.py`` refused the file). Here checkpoints are written atomically
    (:class:`AtomicLocalBackend`) and the previous best is removed only once the new one is
    in place; a failed save leaves it. Arguments as ``CheckpointHook``'s. Given an ``out_dir``,
    ``backend_args`` or ``file_client_args`` (maybe another storage), files are written by the
    backend they give, as mmengine writes them (in place, not atomically); the previous best
    is still removed after the new one. mmengine's ``last_checkpoint`` note is a plain write
    (see :func:`~.checkpoints.resume_file` for an empty one).
    """

    def __init__(self, *args, **kwargs):
        if not any(kwargs.get(key) is not None
                   for key in ('out_dir', 'backend_args', 'file_client_args')):
            kwargs['backend_args'] = dict(backend=ATOMIC_LOCAL_BACKEND)
        super().__init__(*args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.backend_args == dict(backend=ATOMIC_LOCAL_BACKEND):
            # a save killed in an earlier run left its temporary (hidden, tens of MB); not a
            # young one, which may be another process's save in progress
            remove_stale_temporaries(self.out_dir)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        # mmengine's method, its removals of the previous best held back until it returns
        # (the new best then written): on this hook's backend object alone, for the call
        backend, outdated = self.file_backend, []
        backend.remove = backend.rmtree = outdated.append
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            del backend.remove, backend.rmtree
        current = {getattr(self, 'best_ckpt_path', None),
                   *getattr(self, 'best_ckpt_path_dict', {}).values()}
        for path in outdated:
            if path in current:  # the same name saved again: the new file, not an old one
                continue
            if backend.isfile(path):
                backend.remove(path)
            elif backend.isdir(path):
                backend.rmtree(path)
