"""Train and test with mmengine's Runner: the logic behind ``tools/train.py`` and ``tools/test.py``.

The flags and their meaning follow mmpose's own ``tools/train.py`` and ``tools/test.py``; the
functions here take a loaded :class:`mmengine.Config` and apply them, so the CLIs stay thin.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import os.path as osp
import re
import sys
from collections.abc import Iterator

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import animal_landmarks_mm  # noqa: F401  (registers the dataset; safe checkpoint loading)

from .annotation import AnnotationError
from .errors import AnimalLandmarksError, first_line, printable
from .schedule import (
    CHECKPOINT_INTERVAL_OPTION,
    MAX_RUN_ITERS,
    ScheduleError,
    SchedulePlan,
    annotation_file,
    check_count,
    check_positive,
    kept_faces,
    overridden_recipe,
    plan_schedule,
    read_training_faces,
    schedule_options,
    training_face_counts,
    wrapped_datasets,
)
from .schema import INTEROCULAR_INDICES

# the cores this process may run on: one rule, in the lighter module (the generator sizes its
# worker pool by it)
from .synthetic import host_cpus


class TrainingSetupError(AnimalLandmarksError, ValueError):
    """A flag that cannot be honoured on this machine or with this config, or data that cannot
    be trained on; the message is one line."""


class _CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``key=value`` pairs, values parsed as Python literals and
    lists), with a malformed pair a one-line error: ``DictAction`` raises from inside argparse,
    a traceback (``foo`` without ``=``, ``a=[1,2`` unbalanced)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: list[str], option_string: str | None = None) -> None:
        for value in values:  # one at a time, to name the one refused
            try:
                super().__call__(parser, namespace, [value], option_string)
            except (ValueError, AssertionError, RecursionError):  # (RecursionError: a value
                # mmengine's parser cannot take, '[dict(x=[1])]')
                parser.exit(2, f'error: {option_string} takes key=value pairs, got {value!r}\n')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The flags ``tools/train.py`` and ``tools/test.py`` share (mmpose's, plus ``--data-root``
    and ``--device``)."""
    parser.add_argument('--work-dir', help='the dir to save logs, models and results')
    parser.add_argument(
        '--data-root', help='the folder tools/dataset.py wrote (sets every dataloader)')
    parser.add_argument('--device', help='cpu, cuda or cuda:N (default: CUDA when present)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=_CfgOptionsAction,
        help='override settings in the config, key=value (e.g. train_dataloader.num_workers=4); '
        'for training, tools/train.py\'s --epochs N or --iters N set a run\'s length and plan '
        'its schedule, while train_cfg.type, by_epoch, max_epochs, max_iters and '
        'param_scheduler given here set it as written, unplanned')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument(
        '--show-dir', help="draw the predictions (points, box and heatmaps; mmpose's "
        'PoseVisualizationHook): testing, every test image into WORK_DIR/<timestamp>/SHOW_DIR; '
        'training, as mmpose does, the first image of each --interval-th validation batch into '
        'the run\'s vis_data/vis_image and TensorBoard')
    parser.add_argument('--interval', type=int, default=1,
                        help='with --show-dir while training: every N-th validation batch')
    # torch.distributed.launch passes --local_rank, torchrun the LOCAL_RANK variable
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def apply_common_args(args: argparse.Namespace) -> None:
    """``LOCAL_RANK`` for the launcher, and ``--device``: hide every GPU for ``cpu``, all but
    one for ``cuda:N``.

    CUDA reads ``CUDA_VISIBLE_DEVICES`` once, when torch first asks for devices, and importing
    mmengine or mmcv already does (``torch.cuda.is_available()``): ``tools/train.py`` and
    ``tools/test.py`` set the variable from their command line before they import them
    (:func:`cuda_visible_devices` is that rule); here it is set again, to the same value, for
    callers that import this module first (and to validate the flag).

    Raises:
        TrainingSetupError: an unknown device.
    """
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    device = args.device
    if device is None or device == 'cuda':
        return
    visible = cuda_visible_devices(device)
    if visible is None:
        raise TrainingSetupError(f'--device must be cpu, cuda or cuda:N, got {device!r}')
    os.environ['CUDA_VISIBLE_DEVICES'] = visible


def apply_show_args(cfg: Config, show_dir: str | None, interval: int = 1) -> Config:
    """mmpose's ``--show-dir`` and ``--interval``: turn on the config's
    ``PoseVisualizationHook`` (its ``default_hooks.visualization``). Testing, it draws every
    test image into ``<work dir>/<timestamp>/<show_dir>``; training, the first image of every
    ``interval``-th validation batch into the visualizer's backends (the run's
    ``vis_data/vis_image`` and TensorBoard), as mmpose's ``tools/train.py`` does.

    Raises:
        TrainingSetupError: ``interval`` not positive, or a config without the hook.
    """
    if show_dir is None:
        return cfg
    if interval < 1:
        raise TrainingSetupError(f'--interval must be a positive whole number, got {interval}')
    hook = cfg.get('default_hooks', {}).get('visualization')
    if not hook:
        raise TrainingSetupError(
            '--show-dir needs default_hooks.visualization=dict(type=\'PoseVisualizationHook\') '
            'in the config (mmpose\'s default_runtime has it)')
    hook.update(enable=True, out_dir=show_dir, interval=interval)
    return cfg


def cuda_visible_devices(device: str) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` for a ``--device`` other than ``cuda``: ``''`` for ``cpu``,
    ``'N'`` for ``cuda:N``; None for anything else. ``tools/device_flag.py`` keeps a copy of this
    rule that runs before torch is imported (it cannot import this package)."""
    if device == 'cpu':
        return ''
    if device.startswith('cuda:') and device[5:].isdigit():
        return device[5:]
    return None


def default_work_dir(config_path: str) -> str:
    """``work_dirs/<config name>``, as mmpose does."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def load_config(config_path: str, cfg_options: dict | None = None) -> Config:
    """Read a config and apply ``--cfg-options``.

    Raises:
        TrainingSetupError: the config does not exist, cannot be read (a syntax error, a name
            it lacks: mmengine runs it), or an option cannot be merged into it (the message
            names it).
        OSError: a file it names as its base cannot be read.
    """
    if not osp.isfile(config_path):
        raise TrainingSetupError(f'config not found: {config_path}')
    try:
        cfg = Config.fromfile(config_path)
    except OSError:
        raise  # names its file: the tools say so in one line
    except Exception as e:  # the config is Python, run by mmengine: any error is the file's
        raise TrainingSetupError(f'{config_path}: not a config mmengine can read '
                                 f'({e.__class__.__name__}: {first_line(e)})') from None
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TrainingSetupError(f'--cfg-options: {first_line(e)}') from None
    check_pipelines(cfg)
    return cfg


def check_pipelines(cfg: Config) -> None:
    """Refuse a transform that would break every batch it reaches, before any is made.

    ``RandomGrayscale`` is mmcv's (this package registered its own under that name until
    2026-12-05, keeping three channels): without ``keep_channels=True`` it gives a one-channel
    image, which mmpose's data preprocessor fails on half-way through an epoch. A config saved
    in a work dir before then (``type='RandomGrayscale', prob=0.1``) has no such flag.

    Raises:
        TrainingSetupError: naming the loader and what to add.
    """
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(name) or {}).get('dataset') or {}
        for transform in dataset.get('pipeline') or ():
            if (isinstance(transform, dict) and transform.get('type') == 'RandomGrayscale'
                    and not transform.get('keep_channels')):
                raise TrainingSetupError(
                    f'{name}: RandomGrayscale without keep_channels=True gives one-channel '
                    'images the model cannot take; add keep_channels=True, channel_weights='
                    '(0.114, 0.587, 0.299) as the project\'s configs have it (a config saved '
                    'before 2026-12-05 lacks them)')


def config_from_args(args: argparse.Namespace) -> Config:
    """Apply the shared flags (:func:`add_common_args`) and read the config they name."""
    apply_common_args(args)
    cfg = load_config(args.config, args.cfg_options)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    return cfg


def set_data_root(cfg: Config, data_root: str) -> Config:
    """Point every dataloader (and the top-level ``data_root``) at ``data_root``.

    A config's ``data_root`` variable is substituted when the file is read, so overriding it
    with ``--cfg-options`` alone would not reach the dataloaders. Inside mmengine's
    ``RepeatDataset`` and ``ConcatDataset`` it is set on the datasets they wrap (the wrappers
    take none).
    """
    if not osp.isdir(data_root):
        raise TrainingSetupError(f'data root not found: {data_root}')
    cfg.data_root = data_root
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader is not None:
            for _, dataset, _ in wrapped_datasets(loader.dataset, f'{name}.dataset'):
                dataset.data_root = data_root
    return cfg


#: what the processes of each ``--launcher`` find in their environment (mmengine's
#: ``init_dist`` and torch's ``env://`` rendezvous read it), and what starts them so
LAUNCHER_ENVIRONMENT = dict(
    pytorch=(('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
             'torchrun, as tools/dist_train.sh does'),
    slurm=(('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
           'srun, as tools/slurm_train.sh does'),
    mpi=(('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK',
          'MASTER_ADDR'), "Open MPI's mpirun"),
)


def check_launcher_environment(launcher: str) -> None:
    """Refuse a ``--launcher`` whose environment is not there (the command run by hand, not by
    its launcher): mmengine would fail on the first variable it reads, in a traceback.

    Raises:
        TrainingSetupError: naming the variables missing and what sets them.
    """
    variables, starter = LAUNCHER_ENVIRONMENT.get(launcher, ((), ''))
    missing = [name for name in variables if name not in os.environ]
    if missing:
        raise TrainingSetupError(f'--launcher {launcher} needs the environment its launcher '
                                 f'sets ({", ".join(missing)} not set): start it with '
                                 f'{starter}')


def _set_run_place(cfg: Config, config_path: str, work_dir: str | None, launcher: str) -> None:
    """Work dir (``--work-dir``, else the config's, else ``work_dirs/<config name>``) and
    launcher, for training and testing alike.

    Raises:
        TrainingSetupError: a launcher without its environment.
    """
    check_launcher_environment(launcher)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = default_work_dir(config_path)
    if launcher != 'none' and not torch.cuda.is_available():
        # distributed on CPUs: gloo instead of nccl, and DDP without device ids
        cfg.env_cfg.dist_cfg = dict(backend='gloo')
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                     broadcast_buffers=False)


def _registry_name(kind: object) -> str:
    """A registry ``type`` as its class name: ``'mmengine.AmpOptimWrapper'`` (scoped) or the
    class itself (a lazy config) alike."""
    kind = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    return kind.rpartition('.')[2]


def _counts_epochs(train_cfg: dict) -> bool:
    """Whether mmengine builds an epoch-based training loop of ``train_cfg``: by its ``type``,
    else by ``by_epoch``."""
    kind = _registry_name(train_cfg.get('type'))
    return kind == 'EpochBasedTrainLoop' if kind else bool(train_cfg.get('by_epoch'))


def _amp_device_available() -> bool:
    """Whether mmengine's ``AmpOptimWrapper`` has a device here: its own test (CUDA, or an
    NPU, MLU or MUSA device)."""
    from mmengine.device import (
        is_cuda_available,
        is_mlu_available,
        is_musa_available,
        is_npu_available,
    )
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def _check_loop_length_keys(train_cfg: dict) -> None:
    """Refuse a loop length mmengine's training loop would not take: ``max_iters`` for the
    epoch-based loop, ``max_epochs`` for the iteration-based one (``--cfg-options
    train_cfg.max_iters=N`` over the config's epoch loop was a TypeError traceback once the
    runner was built). mmengine picks the loop by ``type``, else by ``by_epoch``.

    Raises:
        TrainingSetupError: one line with the way that works.
    """
    kind = _registry_name(train_cfg.get('type'))
    by_epoch = _counts_epochs(train_cfg)
    if not kind and 'by_epoch' not in train_cfg:
        return  # neither: mmengine builds no loop of its own from it (a test or val run)
    if by_epoch and 'max_iters' in train_cfg:
        raise TrainingSetupError(
            'train_cfg.max_iters: the config\'s training loop counts epochs (train_cfg.max_epochs'
            '); for a run of N optimizer steps give --iters N (planned), or --cfg-options '
            'train_cfg._delete_=True train_cfg.type=IterBasedTrainLoop train_cfg.max_iters=N '
            'train_cfg.val_interval=M')
    if not by_epoch and kind in ('', 'IterBasedTrainLoop') and 'max_epochs' in train_cfg:
        raise TrainingSetupError(
            'train_cfg.max_epochs: the config\'s training loop counts iterations '
            '(train_cfg.max_iters); for a run of N epochs give --epochs N (planned), or '
            '--cfg-options train_cfg._delete_=True train_cfg.by_epoch=True '
            'train_cfg.max_epochs=N train_cfg.val_interval=M')


#: the ``--cfg-options`` key of the checkpoint hook's unit, kept where it is given
CHECKPOINT_BY_EPOCH_OPTION = 'default_hooks.checkpoint.by_epoch'


def _check_training_loop(train_cfg: dict, given_by: str, epochs_given: bool = False) -> None:
    """Refuse a ``train_cfg`` set by ``--cfg-options`` (``given_by``) that names no training
    loop mmengine can build: neither ``type`` nor ``by_epoch``, or no length (``max_epochs``
    may come from ``--epochs``: ``epochs_given``). A ``train_cfg._delete_=True`` with
    ``val_interval`` alone was a TypeError traceback once the runner was built.

    Raises:
        TrainingSetupError: one line with the way that works.
    """
    kind = _registry_name(train_cfg.get('type'))
    if kind in ('', 'EpochBasedTrainLoop', 'IterBasedTrainLoop'):
        by_epoch = _counts_epochs(train_cfg)
        length = 'max_epochs' if by_epoch else 'max_iters'
        has_length = length in train_cfg or (by_epoch and epochs_given)
        if (not kind and 'by_epoch' not in train_cfg) or not has_length:
            raise TrainingSetupError(
                f'train_cfg is {dict(train_cfg)} with --cfg-options {given_by}: no training '
                'loop mmengine can build; give train_cfg.by_epoch=True train_cfg.max_epochs=N '
                '(or train_cfg.type=IterBasedTrainLoop train_cfg.max_iters=N), or leave the '
                'schedule to the plan (--epochs, --iters)')
        # as --epochs and --iters are held: 1.5 was an assertion traceback once the runner
        # was built, 0 a run of nothing that exited 0
        try:
            for key, least in ((length, 1), ('val_interval', 1), ('val_begin', None)):
                if key in train_cfg:
                    check_count(f'train_cfg.{key}', train_cfg[key], least,
                                f'--cfg-options {given_by}')
        except ScheduleError as e:
            raise TrainingSetupError(str(e)) from None


def apply_train_args(cfg: Config, config_path: str, work_dir: str | None = None,
                     resume: str | None = None, amp: bool = False, no_validate: bool = False,
                     auto_scale_lr: bool = False, launcher: str = 'none',
                     checkpoint: str | None = None) -> Config:
    """Apply mmpose's ``tools/train.py`` flags to a config.

    A run resumes when ``resume`` names a checkpoint, or is ``'auto'`` and the work dir has
    one: weights, optimizer, schedule and step all come from it. ``'auto'`` in a work dir
    without one starts afresh from the start weights (``checkpoint``, else the config's
    ``load_from``), and says so, as a rerun of a run that crashed before its first checkpoint
    expects. A fresh run into a work dir that already holds checkpoints warns: its own are
    saved beside them.

    Args:
        cfg: the loaded config (``--cfg-options`` already merged).
        config_path: its file, for the default work dir.
        work_dir: ``--work-dir``; default ``work_dirs/<config name>``.
        resume: ``'auto'`` to resume from the latest checkpoint of the work dir, or a checkpoint
            path; ``None`` to start fresh.
        amp: mixed precision (needs a CUDA device).
        no_validate: skip validation during training.
        auto_scale_lr: scale the lr by the actual batch size against ``auto_scale_lr``.
        launcher: ``none``, ``pytorch``, ``slurm`` or ``mpi``.
        checkpoint: ``--checkpoint``, the start weights of a run that does not resume, named
            in what is said here (:func:`apply_simple_flags` sets them).

    Raises:
        TrainingSetupError: ``amp`` without a CUDA device.
        CheckpointError: a resume checkpoint that cannot be read or is refused (see
            :func:`check_resume`), or a ``Pretrained`` init checkpoint that is not a local
            file or is refused (:func:`~.checkpoints.check_pretrained_init`).
    """
    from .checkpoints import check_pretrained_init
    # mmengine's init (every run, a resumed one too) would fetch a URL and unpickle it unsafely
    check_pretrained_init(cfg.get('model'))
    _set_run_place(cfg, config_path, work_dir, launcher)
    if amp:
        if not torch.cuda.is_available():
            raise TrainingSetupError(
                '--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper); none is visible here')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    elif _registry_name(cfg.get('optim_wrapper', {}).get('type')) == 'AmpOptimWrapper' and \
            not _amp_device_available():  # a config's or --cfg-options': mmengine's assert
        # came after the runner was built, in a traceback
        raise TrainingSetupError('optim_wrapper.type=AmpOptimWrapper (mixed precision) needs a '
                                 'CUDA GPU; none is visible here')
    _check_loop_length_keys(cfg.get('train_cfg') or {})
    resume_from = check_resume(cfg.work_dir, resume) if resume is not None else None
    if resume_from is not None:
        # 'auto' is left to mmengine (it logs the file it found); a path becomes load_from
        cfg.resume, cfg.load_from = True, None if resume == 'auto' else resume_from
    elif resume == 'auto':
        start = checkpoint or cfg.get('load_from')
        _say(f'--resume: no checkpoint in {cfg.work_dir} to resume from; starting afresh '
             f'from {start or "random initialisation (no start weights)"}')
        cfg.resume = False
    if not cfg.get('resume'):  # (a config's own resume=True is mmengine's, as written)
        warn_about_earlier_checkpoints(cfg.work_dir)
    if no_validate:
        cfg.train_cfg.val_interval = 10**9
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint.save_best = None
    if auto_scale_lr:
        if not (cfg.get('auto_scale_lr') or {}).get('base_batch_size'):
            # mmengine's assertion (or an AttributeError of no section) once the runner ran
            raise TrainingSetupError('--auto-scale-lr needs the config\'s auto_scale_lr.'
                                     'base_batch_size (the batch its lr is for): give '
                                     '--cfg-options auto_scale_lr.base_batch_size=N')
        cfg.auto_scale_lr.enable = True
    return cfg


def check_resume(work_dir: str, resume: str) -> str | None:
    """Read the checkpoint a run will resume from, as data, before the runner starts.

    A run killed while saving leaves a truncated checkpoint that mmengine's resume would meet
    with a traceback, and a checkpoint from elsewhere may carry code mmengine's resume would run
    (:func:`~.checkpoints.read_resume_checkpoint`, which :class:`~.hooks.StrictLoadFromHook`
    applies again for every runner); this names the file in one line instead.

    Args:
        work_dir: the run's work dir (where ``'auto'`` looks for its latest checkpoint).
        resume: ``'auto'`` or a checkpoint path.

    Returns:
        The checkpoint to resume from; None when ``'auto'`` finds none.

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a training checkpoint, or
            carries code.
    """
    from .checkpoints import CheckpointError, read_resume_checkpoint, resume_file
    try:
        path = resume_file(None if resume == 'auto' else resume, work_dir)
    except CheckpointError as e:  # an empty last_checkpoint
        raise CheckpointError(f'--resume: {e}') from None
    if path is None:
        return None
    try:
        read_resume_checkpoint(path)
    except CheckpointError as e:
        hint = (' (the latest checkpoint of the work dir; resume from an earlier one with '
                '--resume PATH)') if resume == 'auto' else ''
        raise CheckpointError(f'--resume: {e}{hint}') from None
    return path


def resumed_iteration(cfg: Config) -> int:
    """The loader iteration a run goes on from: that its resume checkpoint was saved at
    (``meta['iter']``, where mmengine's resume sets the loop), 0 for a run that does not resume
    (or a checkpoint without a count).

    Raises:
        CheckpointError: a checkpoint that cannot be read or is refused (see
            :func:`check_resume`).
    """
    if not cfg.get('resume'):
        return 0
    from .checkpoints import read_resume_checkpoint, resume_file
    path = resume_file(cfg.get('load_from'), cfg.work_dir)
    if path is None:  # nothing to resume from: a fresh run
        return 0
    done = read_resume_checkpoint(path)['meta']['iter']
    return done if isinstance(done, int) and not isinstance(done, bool) and done > 0 else 0


def warn_about_earlier_checkpoints(work_dir: str) -> None:
    """Say, in one line, that a fresh run's work dir already holds checkpoints (an earlier
    run's ``best_NME_*.pth`` stays beside this run's, and ``ls work_dir/best_NME_*.pth`` then
    names both; mmengine saves over a checkpoint of the same name, ``epoch_10.pth`` of both
    runs)."""
    try:
        earlier = sorted(name for name in os.listdir(work_dir) if name.endswith('.pth'))
    except OSError:  # no work dir yet
        return
    if earlier:
        shown = ', '.join(earlier[:3]) + (f', ... ({len(earlier)} in all)'
                                          if len(earlier) > 3 else '')
        _say(f'warning: {work_dir} already holds checkpoints of an earlier run ({shown}); this '
             'run saves its own beside them and replaces those of the same name: use a new '
             '--work-dir to keep runs apart, or --resume to continue that run', error=True)


def _say(message: str, error: bool = False) -> None:
    """One line for the person running training, from the first process only."""
    if is_main_process():
        print(message, file=sys.stderr if error else sys.stdout, flush=True)


def _rescale_schedule(cfg: Config, epochs: int) -> None:
    """Stretch the epoch-based schedulers of the old length over ``epochs`` (configs without
    a ``schedule`` recipe): ``begin``, ``end``, ``T_max`` and ``milestones`` alike, so that a
    warmup keeps its share and a cosine still ends at its minimum. Schedulers counted in steps
    (``by_epoch=False``) are left as they are.

    Raises:
        TrainingSetupError: an iteration-based ``train_cfg`` (no epochs to rescale).
    """
    old = cfg.train_cfg.get('max_epochs')
    if not old:
        if _counts_epochs(cfg.train_cfg):
            return  # an epoch loop of no length yet (train_cfg._delete_=True): --epochs is it
        raise TrainingSetupError('--epochs needs an epoch-based train_cfg; this one counts '
                                 'steps (set its max_iters instead)')
    ratio = epochs / old
    schedulers = cfg.get('param_scheduler', None) or []
    for scheduler in [schedulers] if isinstance(schedulers, dict) else schedulers:
        if not scheduler.get('by_epoch', True):
            continue
        # converted to steps, fractions of an epoch are kept; stepped per epoch, whole epochs
        fractional = scheduler.get('convert_to_iter_based', False)
        scheduler.begin = _scaled(scheduler.get('begin', 0), ratio, fractional)
        end = scheduler.get('end')
        if end is not None and end <= old:  # mmengine's default end (unbounded) stays
            scheduler.end = epochs if end == old else max(
                _scaled(end, ratio, fractional), scheduler.begin + (not fractional))
        if scheduler.get('T_max') is not None:
            scheduler.T_max = _scaled(scheduler.T_max, ratio, fractional, least=1)
        if 'milestones' in scheduler:
            scheduler.milestones = [max(1, round(m * ratio)) for m in scheduler.milestones]


def _scaled(epochs: float, ratio: float, fractional: bool, least: int = 0) -> float:
    """``epochs`` times ``ratio``: as it is for a scheduler converted to steps, else rounded
    to whole epochs (at least ``least``)."""
    return epochs * ratio if fractional else max(least, round(epochs * ratio))


def apply_simple_flags(cfg: Config, *, epochs: int | None = None, iters: int | None = None,
                       batch_size: int | None = None, lr: float | None = None,
                       checkpoint: str | None = None, accumulate: int | None = None,
                       early_stop: int | None = None, early_stop_min_delta: float = 0.001,
                       save_freq: int | None = None, val_annotation_dir: str | None = None,
                       val_image_dir: str | None = None, workers: int | None = None,
                       cfg_options: dict | None = None) -> SchedulePlan | None:
    """The original training tools' flags, and the schedule sized to the data.

    A config with a ``schedule`` recipe is planned by :func:`~.schedule.plan_schedule` for its
    training faces; ``epochs``, ``iters``, ``batch_size`` and ``lr`` then give exactly what they
    say and the rest follows, and the ``train_cfg`` settings and checkpoint interval of
    ``cfg_options`` are kept over the plan. A ``--cfg-options`` key that sets the schedule
    itself (:data:`~.schedule.SCHEDULE_OPTIONS`) leaves the config's schedule as written, and
    says so in one line; such a config, and one without a recipe, take the flags as plain
    settings.

    Args:
        cfg: the config (``work_dir`` and ``data_root`` already set).
        epochs: exactly this many epochs: passes over the training loader's dataset (a
            ``RepeatDataset``'s repeats included).
        iters: exactly this many optimizer steps (an iteration-based run).
        batch_size: faces per iteration (the lr follows it, see :mod:`.schedule`).
        lr: the peak lr, as it is.
        checkpoint: start weights (``load_from``): a checkpoint trained here, one of
            anime_face_detector's, or a pretrained name (``anime-face-detector``); not used
            (and said so) when the run resumes (``cfg.resume``, see :func:`apply_train_args`).
        accumulate: gradient accumulation over this many iterations
            (``optim_wrapper.accumulative_counts``).
        early_stop: stop when the validation NME has not improved for this many validations
            (mmengine's ``EarlyStoppingHook``).
        early_stop_min_delta: a smaller NME gain is not an improvement.
        save_freq: also save a checkpoint every N epochs (the best one is kept as well).
        val_annotation_dir: a folder of annotation files to validate on, converted here.
        val_image_dir: the folder its ``image`` names are relative to (default: the same).
        workers: the training loader's worker processes, as they are; without them, and
            without ``--cfg-options train_dataloader.num_workers``, sized to the device
            (:func:`loader_workers`).
        cfg_options: the ``--cfg-options`` given, already merged into ``cfg``.

    Returns:
        The plan, or None when the schedule is the config's own.

    Raises:
        TrainingSetupError: a non-positive or non-finite number, an unusable validation folder
            (or one with validation off), ``early_stop`` with validation off, ``epochs``
            beside ``--cfg-options train_cfg.max_epochs``, ``iters`` without a recipe to plan
            them, or a schedule that cannot be planned.
    """
    for name, value, most in (('--epochs', epochs, MAX_RUN_ITERS),
                              ('--iters', iters, MAX_RUN_ITERS), ('--batch-size', batch_size, None),
                              ('--lr', lr, None), ('--accumulate', accumulate, None),
                              ('--early-stop', early_stop, None), ('--save-freq', save_freq, None)):
        try:
            check_positive(name, value, most)
        except ScheduleError as e:
            raise TrainingSetupError(str(e)) from None
    if workers is not None and workers < 0:
        raise TrainingSetupError(f'--workers must be 0 or more, got {workers}')
    if save_freq is not None and CHECKPOINT_INTERVAL_OPTION in (cfg_options or {}):
        raise TrainingSetupError(f'--save-freq and --cfg-options {CHECKPOINT_INTERVAL_OPTION} '
                                 'both set the checkpoint interval: give one of them')
    if not (math.isfinite(early_stop_min_delta) and early_stop_min_delta >= 0):
        raise TrainingSetupError('--early-stop-min-delta must be 0 or more, got '
                                 f'{early_stop_min_delta}')
    given_length = _max_epochs_option(cfg_options)
    if epochs is not None and given_length is not None:
        # --epochs stretches the schedulers from the length they were written for, which the
        # option has already replaced in the config
        raise TrainingSetupError(f'--epochs {epochs} and --cfg-options {given_length} both set '
                                 'the number of epochs: give one of them')
    if val_annotation_dir is not None and cfg.get('val_dataloader') is None:
        raise TrainingSetupError(f'--val-annotation-dir {val_annotation_dir} with '
                                 '--no-validate: nothing would validate on it; drop one of them')
    if early_stop is not None and cfg.get('val_dataloader') is None:
        # mmengine's EarlyStoppingHook waits for a validation NME that never comes
        raise TrainingSetupError(f'--early-stop {early_stop} with --no-validate: no validation '
                                 'NME to stop on; drop one of them')
    launcher = cfg.get('launcher', 'none')
    loader = cfg.train_dataloader
    configured = loader.get('num_workers', 0)
    if workers is None and not workers_set_by_options(cfg_options):
        workers = loader_workers(configured, cuda=torch.cuda.is_available(), cpus=host_cpus(),
                                 processes=processes_on_this_host(launcher))
    if workers is not None and workers != configured:
        set_loader_workers(loader, workers)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        each = cfg.get(name)
        # torch refuses persistent workers without any: --cfg-options train_dataloader.
        # num_workers=0 (the help's own example) was a ValueError traceback once built
        if each is not None and not each.get('num_workers', 0) and each.get('persistent_workers'):
            each.persistent_workers = False
    if epochs is not None and iters is not None:
        raise TrainingSetupError('give --epochs or --iters, not both')
    if checkpoint is not None:
        from .model_zoo import is_pretrained_name
        if not (osp.isfile(checkpoint) or is_pretrained_name(checkpoint)):
            from .checkpoints import missing_file_message
            if osp.lexists(checkpoint):  # there, but a folder, a FIFO or a link to nothing
                raise TrainingSetupError(f'--checkpoint {missing_file_message(checkpoint)}')
            raise TrainingSetupError(f'--checkpoint not found: {checkpoint} (a file, or a '
                                     'pretrained name such as anime-face-detector)')
        resumed = None
        if cfg.get('resume'):
            # load_from is the file mmengine resumes from: start weights have no place there
            from .checkpoints import resume_file
            resumed = resume_file(cfg.get('load_from'), cfg.work_dir)
        if resumed is not None:
            _say(f'--checkpoint {checkpoint} not used: the run resumes from {resumed} (its '
                 'weights, optimizer and schedule)')
        else:  # nothing to resume from (a config's resume=True in a new work dir): a fresh run
            cfg.resume, cfg.load_from = False, checkpoint
    if accumulate is not None:
        cfg.optim_wrapper.accumulative_counts = accumulate
    if val_annotation_dir is not None:
        import hashlib

        from .annotation import write_bytes_atomic
        from .converter import AnnotationReader, coco_bytes
        reader = AnnotationReader(val_image_dir or val_annotation_dir, progress=False)
        records = reader.read(val_annotation_dir).records
        if not records:
            raise TrainingSetupError(f'no usable annotation files in {val_annotation_dir}')
        # the images named relative to their folder, not to the work dir: the file is then the
        # same wherever the work dir is (a checkpoint records its hash, which a resume into
        # another work dir compared as other data)
        image_root = osp.abspath(val_image_dir or val_annotation_dir)
        data = coco_bytes(records, image_root)
        # named by its content: a run refused later (its plan, its resume) replaced an earlier
        # run's validation file in a shared work dir, which that run then validated on
        ann_file = osp.abspath(osp.join(
            cfg.work_dir, f'val_annotations-{hashlib.sha256(data).hexdigest()[:12]}.json'))
        if not osp.isfile(ann_file):
            write_bytes_atomic(ann_file, data, make_folder=True)
        cfg.val_dataloader.dataset.data_root = image_root
        cfg.val_dataloader.dataset.ann_file = ann_file
        cfg.val_dataloader.dataset.data_prefix = dict(img='')

    planned = None
    has_recipe = cfg.get('schedule') is not None
    bypassed_by = ' and '.join(schedule_options(cfg_options)) if has_recipe else ''
    overridden = overridden_recipe(cfg.filename) if has_recipe and cfg.filename else None
    if overridden is not None and not bypassed_by:
        # the plan would replace what that file says, unseen (it did, documented only)
        derived, keys = overridden
        raise TrainingSetupError(
            f'{derived} sets {" and ".join(keys)} over the schedule recipe it inherits, whose '
            'plan would replace them: drop them and size the run with --epochs, --iters or '
            '--batch-size, checkpoints with --save-freq (the plan follows them), or add '
            f'`schedule = None` to {derived} to train by its own train_cfg, param_scheduler '
            'and checkpoint hook as written')
    if has_recipe and not bypassed_by:
        counted = check_annotation_files(cfg, ('train_dataloader',))
        try:
            planned = plan_schedule(cfg, training_face_counts(cfg, counted), epochs=epochs,
                                    iters=iters, batch_size=batch_size, lr=lr,
                                    processes=world_size(launcher), cfg_options=cfg_options)
            planned.workers = loader.get('num_workers', 0)
        except ScheduleError as e:
            raise TrainingSetupError(str(e)) from None
    else:
        if iters is not None and bypassed_by:
            raise TrainingSetupError(
                f'--iters {iters}: --cfg-options {bypassed_by} sets the schedule, so the '
                f'config\'s recipe, which plans --iters, is not used; drop {bypassed_by} (other '
                '--cfg-options may stay)')
        if iters is not None:
            raise TrainingSetupError(
                f'--iters {iters} needs a config with a schedule recipe; this one has none: add '
                '`schedule = dict()` to it (the recipe\'s defaults, see '
                'animal_landmarks_mm/schedule.py)')
        if bypassed_by:
            if lr is not None:
                lr_rule = f'--lr {lr:g} is the lr as it is'
            elif (cfg.get('auto_scale_lr') or {}).get('enable'):
                lr_rule = 'the lr follows the batch by mmengine\'s linear rule (--auto-scale-lr)'
            else:
                lr_rule = '--batch-size does not rescale the lr'
            _say(f'--cfg-options {bypassed_by} sets the schedule: the config\'s, as written, not '
                 f'planned for the training faces (no plan printed); {lr_rule}')
        given_by = ' and '.join(schedule_options(cfg_options))  # a config's without a recipe too
        if given_by:
            _check_training_loop(cfg.get('train_cfg') or {}, given_by,
                                 epochs_given=epochs is not None)
        loop = cfg.get('train_cfg') or {}
        if (loop.get('type') or 'by_epoch' in loop) and not _counts_epochs(loop):
            # an iteration loop (as the refusals of --iters advise): the checkpoint hook and
            # the log counting epochs, mmengine's CheckpointHook saved nothing until the end
            # (a killed run left nothing to resume), whatever its interval or --save-freq
            for option, section in ((CHECKPOINT_BY_EPOCH_OPTION, cfg.default_hooks.checkpoint),
                                    ('log_processor.by_epoch', cfg.get('log_processor'))):
                if section is not None and option not in (cfg_options or {}):
                    section.by_epoch = False
        if epochs is not None:
            _rescale_schedule(cfg, epochs)
            cfg.train_cfg.max_epochs = epochs
        if batch_size is not None:
            cfg.train_dataloader.batch_size = batch_size
        if lr is not None:
            cfg.optim_wrapper.optimizer.lr = lr
            if cfg.get('auto_scale_lr'):  # as the plan takes it: the lr given, not rescaled
                cfg.auto_scale_lr.enable = False
    if save_freq is not None:
        per_epoch = planned.iters_per_epoch if planned and planned.epochs is None else 1
        cfg.default_hooks.checkpoint.interval = save_freq * per_epoch
        if planned is not None:
            planned.checkpoint_interval = save_freq * per_epoch
    if planned is not None and cfg.get('val_cfg') is None:  # --no-validate
        planned.validate = False
    if early_stop is not None:
        cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(
            type='EarlyStoppingHook', monitor='NME', rule='less', patience=early_stop,
            min_delta=early_stop_min_delta)]
    return planned


def _max_epochs_option(cfg_options: dict | None) -> str | None:
    """The ``--cfg-options`` pair that sets ``train_cfg.max_epochs`` (``key=value``, as given),
    alone or inside a whole ``train_cfg``; None when none does."""
    for key, value in (cfg_options or {}).items():
        if key == 'train_cfg.max_epochs':
            return f'{key}={value!r}'
        if key == 'train_cfg' and isinstance(value, dict) and 'max_epochs' in value:
            return f'train_cfg.max_epochs={value["max_epochs"]!r}'
    return None


def world_size(launcher: str) -> int:
    """How many training processes the launcher starts (read before they meet: torchrun's
    ``WORLD_SIZE``, slurm's ``SLURM_NTASKS``, Open MPI's ``OMPI_COMM_WORLD_SIZE``)."""
    variable = dict(pytorch='WORLD_SIZE', slurm='SLURM_NTASKS',
                    mpi='OMPI_COMM_WORLD_SIZE').get(launcher)
    return int(os.environ.get(variable, 1)) if variable else 1


def processes_on_this_host(launcher: str) -> int:
    """How many of the launcher's training processes share this machine's cores (torchrun's
    ``LOCAL_WORLD_SIZE``, slurm's ``SLURM_NTASKS_PER_NODE``, Open MPI's
    ``OMPI_COMM_WORLD_LOCAL_SIZE``); 1 without a launcher, and 1 for a slurm task given its own
    cores (``--cpus-per-task``: :func:`host_cpus` is then already its share)."""
    if launcher == 'slurm' and os.environ.get('SLURM_CPUS_PER_TASK'):
        return 1
    variable = dict(pytorch='LOCAL_WORLD_SIZE', slurm='SLURM_NTASKS_PER_NODE',
                    mpi='OMPI_COMM_WORLD_LOCAL_SIZE').get(launcher)
    # slurm writes counts like "4(x2)" (4 tasks on each of 2 nodes)
    found = re.match(r'\d+', os.environ.get(variable, '')) if variable else None
    return max(1, int(found[0])) if found else 1


def is_main_process() -> bool:
    """Whether this is the first (or only) training process, the one that prints the plan."""
    return all(os.environ.get(v, '0') == '0' for v in ('RANK', 'SLURM_PROCID',
                                                       'OMPI_COMM_WORLD_RANK'))


#: data-loading workers per GPU when neither ``--workers`` nor ``--cfg-options`` sets them:
#: the training pipeline (decode, augmentation, heatmaps) measured 244 faces/s per worker on a
#: Xeon core (README "Benchmarks"), so the config's 2 workers feed about 500 faces/s, likely
#: below what one GPU trains HRNetV2-W18 at (not measured yet: tools/gpu_checks.sh's training
#: benchmark will say); 8 keep well ahead on a host with cores to spare
GPU_LOADER_WORKERS = 8


def loader_workers(configured: int, *, cuda: bool, cpus: int, processes: int = 1) -> int:
    """The training loader's worker processes when no flag or option chose them: the
    config's on a CPU (the training itself needs the cores), on a GPU up to
    :data:`GPU_LOADER_WORKERS`, never more than the host's cores per process leave beside the
    training process."""
    if not cuda:
        return configured
    return max(configured, min(GPU_LOADER_WORKERS, cpus // processes - 1))


def set_loader_workers(loader: dict, workers: int) -> None:
    """Give a dataloader config ``workers`` processes, kept between epochs when there are any
    (torch refuses persistence without workers)."""
    loader['num_workers'] = workers
    loader['persistent_workers'] = workers > 0


def workers_set_by_options(cfg_options: dict | None) -> bool:
    """Whether ``--cfg-options`` set the training loader's workers (then they are kept)."""
    return 'train_dataloader.num_workers' in (cfg_options or {})


def apply_test_args(cfg: Config, config_path: str, checkpoint: str, work_dir: str | None = None,
                    out: str | None = None, launcher: str = 'none') -> Config:
    """Apply mmpose's ``tools/test.py`` flags: the checkpoint, work dir and a dump of the
    predictions (``--dump`` in mmpose), as a pickle of every prediction.

    Raises:
        TrainingSetupError: a dump that is not a pickle file, a checkpoint not found, a
            launcher without its environment.
    """
    from .model_zoo import is_pretrained_name
    # mmengine's DumpResults refuses any other name, once the runner is built
    if out is not None and not out.endswith(('.pkl', '.pickle')):
        raise TrainingSetupError(f'--dump must name a .pkl or .pickle file (mmengine\'s '
                                 f'DumpResults writes a pickle), got {out}')
    if out is not None and osp.lexists(out) and not osp.isfile(out):  # it failed once the
        # whole test had run, the metrics never printed
        raise TrainingSetupError(f'--dump {out} is there and no file (a folder?): give the '
                                 'name of a .pkl file to write')
    if not (osp.isfile(checkpoint) or is_pretrained_name(checkpoint)):
        from .checkpoints import missing_file_message
        raise TrainingSetupError(missing_file_message(checkpoint))
    _set_run_place(cfg, config_path, work_dir, launcher)
    cfg.load_from = checkpoint
    if out is not None:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        evaluators = cfg.test_evaluator
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        cfg.test_evaluator = [*evaluators, dict(type='DumpResults', out_file_path=out)]
    return cfg


def _init_cpu_process_group(cfg: Config) -> None:
    """Join torchrun's process group over gloo when there is no GPU.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` whatever the backend; a process
    group that exists already is used as it is, so CPU-only machines start it here.
    """
    import torch.distributed as dist
    if (cfg.get('launcher', 'none') == 'pytorch' and not torch.cuda.is_available()
            and not dist.is_initialized()):
        dist.init_process_group(backend='gloo')


def check_annotation_files(cfg: Config, loaders: tuple[str, ...]) -> dict[str, int]:
    """Refuse, before the runner starts, a COCO file that is missing, that mmpose would fail
    on or train on wrongly once the runner has started (:func:`~.dataset.check_coco`), or that
    holds nothing to learn or measure (no images, no faces, or only absent points; for
    validation, no face with both outer eye corners placed and apart: no NME), naming the
    file: mmengine would fail later with a traceback, "need at least one array to
    concatenate", or a KeyError 'NME' when saving the best checkpoint.

    Returns:
        The training faces of each file read (:func:`~.schedule.training_faces`), by
        :func:`~.schedule.annotation_file`: the plan counts them without reading them again.

    Raises:
        TrainingSetupError: naming the file and what it lacks (and the entry at fault).
    """
    faces = {}
    for name in loaders:
        loader = cfg.get(name)
        if not loader or not loader.get('dataset'):
            continue
        for _, dataset, _ in wrapped_datasets(loader.dataset, f'{name}.dataset'):
            if dataset.get('ann_file'):
                path = annotation_file(dataset)
                if path not in faces:  # a file read twice (a ConcatDataset of one) is read once
                    faces[path] = _check_annotation_file(name, path, image_folder(dataset))
    return faces


def image_folder(dataset: dict) -> str | None:
    """The folder a dataset config reads its images from, as mmengine's ``BaseDataset`` joins
    its ``data_prefix['img']`` to its ``data_root`` (and mmpose the file names to it); None for
    images read through a storage backend (``backend_args``: nothing to look for on disk)."""
    if dataset.get('backend_args'):
        return None
    prefix = (dataset.get('data_prefix') or {}).get('img', '')
    root = dataset.get('data_root') or ''
    if '://' in prefix or '://' in root:
        return None
    return prefix if osp.isabs(prefix) or not root else osp.join(root, prefix)


def _check_annotation_file(name: str, path: str, images_in: str | None) -> int:
    """:func:`check_annotation_files` for one file of the loader ``name``, whose images lie in
    ``images_in`` (None: not looked for); its training faces."""
    if not osp.isfile(path):
        raise TrainingSetupError(f'{name}: annotation file not found: {path} (run '
                                 'tools/dataset.py, then pass its --output-dir as --data-root)')
    try:
        coco, faces = read_training_faces(path)
    except AnnotationError as e:  # names the file and the entry
        raise TrainingSetupError(f'{name}: {e}') from None
    images, annotations = coco['images'], coco['annotations']
    absent = not faces and not any(any(a.get('keypoints') or ()) for a in annotations)
    what = ('no images' if not images else 'no annotations' if not annotations
            else 'only absent points' if absent
            else 'no face mmpose keeps (each is crowd, or has an empty box or no labelled '
            'point)' if not faces else None)
    if what:
        raise TrainingSetupError(f'{name}: {path} holds {what}; nothing to '
                                 f'{"train on" if name.startswith("train") else "measure"}')
    if name == 'val_dataloader' and not _faces_with_eye_corners(coco):
        # LandmarkMetric then leaves NME out, and mmengine's CheckpointHook (save_best='NME')
        # fails on the missing key after the first validation
        first, second = INTEROCULAR_INDICES
        raise TrainingSetupError(
            f'{name}: {path} holds no face with both outer eye corners (points {first} and '
            f'{second}) placed and apart; the inter-ocular NME, which keeps the best '
            'checkpoint, has nothing to measure')
    if images_in is not None:
        # mmpose's LoadImage would stop the run at the first missing one, an epoch in
        missing = [image['file_name'] for image in images
                   if not osp.isfile(osp.join(images_in, image['file_name']))]
        if missing:
            raise TrainingSetupError(
                f'{name}: {len(missing)} of the {len(images)} images {path} lists are not '
                f'files under {printable(images_in or ".")}, such as '
                f'{printable(missing[0])} (run tools/dataset.py again, or pass its '
                '--output-dir as --data-root)')
    return faces


def _faces_with_eye_corners(coco: dict) -> int:
    """How many faces mmpose keeps of a COCO file (:func:`~.schedule.kept_faces`) the
    inter-ocular NME measures: those whose outer eye corners are placed and apart, as
    :func:`~.metrics.landmark_errors` decides it."""
    import numpy as np

    from .metrics import landmark_errors, per_face_nme
    faces = kept_faces(coco)
    if not faces:
        return 0
    # float32, as mmpose hands the metric its points (two corners 1e-6 px apart are apart in
    # float64, not in float32: the NME the best checkpoint is kept by was missing)
    points = np.array([face['keypoints'] for face in faces], np.float32).reshape(
        len(faces), -1, 3)
    # the truth against itself: every placed point of a measured face is 0, of others NaN
    errors = landmark_errors(points[..., :2], points[..., :2], points[..., 2].astype(int),
                             np.zeros((len(faces), 4)))['interocular']
    return int(np.count_nonzero(~np.isnan(per_face_nme(errors))))


def train(cfg: Config, checked: tuple[str, ...] = ()) -> torch.nn.Module:
    """Build the runner from ``cfg`` and train; returns the trained model.

    Args:
        cfg: the config, flags applied.
        checked: loaders whose annotation files were checked already (those of a planned run,
            :func:`apply_simple_flags`): not read again.
    """
    check_annotation_files(cfg, tuple(name for name in ('train_dataloader', 'val_dataloader')
                                      if name not in checked))
    _init_cpu_process_group(cfg)
    with _registry_names_checked():
        return Runner.from_cfg(cfg).train()


def test(cfg: Config) -> dict:
    """Build the runner from ``cfg`` and test ``cfg.load_from``; returns the metrics."""
    check_annotation_files(cfg, ('test_dataloader',))
    _init_cpu_process_group(cfg)
    with _registry_names_checked():
        return Runner.from_cfg(cfg).test()


@contextlib.contextmanager
def _registry_names_checked() -> Iterator[None]:
    """A ``type`` that names nothing registered (a typo in a config or ``--cfg-options``) is
    one line: mmengine's registry raises a KeyError as the runner builds the part (the model at
    once, a dataset when its loop starts), a traceback after the environment's dump.

    Raises:
        TrainingSetupError: naming the type and the registry.
    """
    try:
        yield
    except KeyError as e:
        message = e.args[0] if e.args and isinstance(e.args[0], str) else ''
        if ' is not in the ' not in message or ' registry' not in message:
            raise
        raise TrainingSetupError(f'{first_line(message).split(". ")[0]}: check the type\'s '
                                 'spelling in the config or --cfg-options') from None
