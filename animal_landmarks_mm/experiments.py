"""Experiments that choose recipes: how many faces are needed, and whether fine-tuning pays.

``tools/recipe_experiments.py`` runs them; each trains real models through ``tools/train.py``
(the schedule planner, the configs as users run them) on synthetic faces and writes a JSON file
of the numbers and a picture:

- :func:`learning_curve`: the best validation NME against the number of training faces, on a
  fixed validation set, each size trained with the same schedule (the default plan, or a given
  number of steps);
- :func:`transfer_curve`: a model pretrained on one style family (human anime faces, as
  anime_face_detector's model was) fine-tuned on another (animal characters with muzzles) with
  the fine-tuning config, against training from scratch with the main config, on the same
  faces: validation NME against steps for both.

They take hours on a CPU at the default schedule (a GPU makes them minutes): ``--iters`` sets
a smaller budget, and the pictures say which budget and device made them.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from . import __version__
from .annotation import (
    AnnotationError,
    file_sha256,
    read_regular_file,
    write_bytes_atomic,
    write_json_atomic,
)
from .converter import convert
from .errors import AnimalLandmarksError, first_line, printable
from .model_zoo import CONFIG_ROOT, MAIN_CONFIG
from .schedule import ScheduleError, check_positive
from .synthetic import make_synthetic_dataset, seed_problem
from .training import host_cpus

FINETUNE_CONFIG = (CONFIG_ROOT /
                   'td-hm_hrnetv2-w18_dark-ft-animeface-1xb32-30e_animal-face-256x256.py')
TOOLS = Path(__file__).resolve().parent.parent / 'tools'
_PACKAGE = Path(__file__).resolve().parent
#: the code whose changes change what a run trains and measures (the faces, the augmentation,
#: the model, the metric, the plan and the loop): a run recorded under other code is trained
#: again, not read back
RESULT_SOURCES = tuple(_PACKAGE / name for name in (
    'synthetic.py', 'transforms.py', 'metrics.py', 'models.py', 'dataset.py', 'schema.py',
    'schedule.py', 'training.py', 'hooks.py')) + (TOOLS / 'train.py',)


class ExperimentError(AnimalLandmarksError, RuntimeError):
    """A training run of an experiment failed; the message names its log."""


def make_split(folder: Path, train_faces: int, val_faces: int, seed: int,
               family: str | None = None) -> Path:
    """Synthetic faces converted to train/val COCO files; returns the data root.

    The validation faces come from their own seed, so that every training size of a learning
    curve is measured on the same faces. What an earlier call left in ``folder`` (another
    seed, other counts) is replaced, never mixed in.
    """
    train_dir, val_dir = folder / 'train_set', folder / 'val_set'
    for name in ('train_set', 'val_set', 'images', 'landmarks', 'annotations'):
        _remove_own_folder(folder / name)
    # thousands of faces for a GPU's runs: drawn on the host's cores
    workers = min(8, host_cpus())
    make_synthetic_dataset(train_dir, train_faces, seed=seed, progress=False, family=family,
                           workers=workers)
    make_synthetic_dataset(val_dir, val_faces, seed=10_000 + seed, progress=False,
                           family=family, workers=workers)
    for name in ('images', 'landmarks'):
        (folder / name).mkdir(parents=True, exist_ok=True)
    # one image folder, two annotation folders: the validation folder is the val split whole
    for source in (train_dir, val_dir):
        for image in (source / 'images').iterdir():
            os.replace(image, folder / 'images' / image.name)
    convert(train_dir / 'landmarks', folder / 'images', folder, train_ratio=1.0, val_ratio=0.0,
            test_ratio=0.0, val_annotation_dir=val_dir / 'landmarks', progress=False)
    return folder


def _remove_own_folder(path: Path) -> None:
    """Remove a folder this module made; a link found there is unlinked, never followed (what
    it points to is not ours), and a folder that cannot be removed is an error, not skipped."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


#: what :func:`train_run` records in a work dir when its run has finished
FINISHED_RUN = 'experiment_run.json'
#: The largest run record read (bytes): one holds the run's arguments, its config as mmengine
#: reads it and a few digests, tens of kilobytes.
RUN_RECORD_MAX_BYTES = 16 << 20


def train_run(config: Path, data_root: Path, work_dir: Path, *, iters: int | None = None,
              batch_size: int | None = None, checkpoint: str | None = None,
              extra: tuple[str, ...] = (), cfg_options: tuple[str, ...] = (),
              amp: bool = False) -> list[dict]:
    """Train through ``tools/train.py``; returns the validations: ``{step, NME}`` each.

    A run that finished before in ``work_dir`` from the same inputs (:func:`run_inputs`:
    arguments, the plugin's code, config as mmengine reads it, training and validation files
    and images, start checkpoint) is read, not trained again: an experiment of hours that stops
    at its fourth run goes on from there. Delete the folder to train it again. ``amp``: mixed
    precision (CUDA).
    """
    inputs = run_inputs(config, data_root, work_dir, iters=iters, batch_size=batch_size,
                        checkpoint=checkpoint, extra=extra, cfg_options=cfg_options, amp=amp)
    args = inputs['args']
    record = work_dir / FINISHED_RUN
    earlier, unreadable = _read_finished_run(work_dir)
    if unreadable:
        print(f'[experiment] {work_dir.name}: the record {record} of an earlier run is not '
              f'one this reads ({unreadable}): trained again', flush=True)
    if earlier is not None and earlier['inputs'] == inputs:
        print(f'[experiment] {work_dir.name}: finished before from the same inputs, read '
              f'from {record}', flush=True)
        return earlier['validations']
    record.unlink(missing_ok=True)  # a run that fails now must not leave an older record
    log = run_log(work_dir)
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    # runs take minutes to hours: say which one runs and where its progress is logged
    print(f'[experiment] {work_dir.name}: training, progress in {log}', flush=True)
    start = time.perf_counter()
    with open(log, 'w') as out:
        proc = subprocess.run([sys.executable, str(TOOLS / 'train.py'), *args], stdout=out,
                              stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONWARNINGS='ignore'))
    if proc.returncode != 0:
        raise ExperimentError(f'training failed ({proc.returncode}); see {log}')
    found = validations(work_dir)
    if not found:  # (no record of it: a record without validations is not one to read back)
        raise ExperimentError(f'training logged no validation NME (a run shorter than its '
                              f'validation interval?); see {log}')
    minutes = round((time.perf_counter() - start) / 60, 1)
    best = min(r['NME'] for r in found)
    print(f'[experiment] {work_dir.name}: best validation NME {best:.4f} after {minutes} min',
          flush=True)
    _save(dict(inputs=inputs, validations=found, minutes=minutes, device=_device()), record)
    return found


def run_inputs(config: Path, data_root: Path, work_dir: Path, *, iters: int | None = None,
               batch_size: int | None = None, checkpoint: str | None = None,
               extra: tuple[str, ...] = (), cfg_options: tuple[str, ...] = (),
               amp: bool = False) -> dict:
    """What a run of :func:`train_run` is made from, as its record keeps it: ``tools/train.py``'s
    arguments, the package's version and a digest of :data:`RESULT_SOURCES`, the config as
    mmengine reads it, the annotation files, the images and the start checkpoint."""
    # validations logged by step, to draw NME against steps: an epoch-based run (the default
    # plan, no --iters) logs them by epoch otherwise (the plan of an --iters run does this too)
    args = [str(config), '--data-root', str(data_root), '--work-dir', str(work_dir),
            '--no-time-estimate', *extra, '--cfg-options',
            'default_hooks.logger.log_metric_by_epoch=False', *cfg_options]
    if iters is not None:
        args += ['--iters', str(iters)]
    if batch_size is not None:
        args += ['--batch-size', str(batch_size)]
    if checkpoint is not None:
        args += ['--checkpoint', checkpoint]
    if amp:
        args.append('--amp')
    return dict(args=args, version=__version__, code=_files_digest(RESULT_SOURCES),
                config=_config_digest(config),
                data={p.name: file_sha256(p)
                      for p in sorted((data_root / 'annotations').glob('*.json'))},
                images=_files_digest(p for p in sorted((data_root / 'images').glob('*'))
                                     if p.is_file()),
                checkpoint=file_sha256(checkpoint) if checkpoint else None)


def _files_digest(paths: Iterable[Path]) -> str:
    """SHA-256 over files' names and bytes. The bytes, not sizes and times: a rerun of an
    experiment draws its synthetic images anew (new times, the same bytes), and a redrawn image
    may keep its size. A second or so for a thousand faces, against minutes of training."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f'{path.name}\0{file_sha256(path)}\0'.encode())
    return digest.hexdigest()


def _config_digest(config: Path) -> str:
    """SHA-256 of the config as mmengine reads it, its bases included: a run recorded under
    an earlier version of the config (another lr, another schedule) is not reused."""
    from mmengine.config import Config
    return hashlib.sha256(Config.fromfile(config).pretty_text.encode()).hexdigest()


def finished_run(work_dir: Path) -> dict | None:
    """What :func:`train_run` recorded of a work dir's finished run (``inputs``,
    ``validations``, ``minutes``, ``device``), or None: none, or unreadable (the run is
    trained again rather than trusted; :func:`_read_finished_run` says why)."""
    return _read_finished_run(work_dir)[0]


def _read_finished_run(work_dir: Path) -> tuple[dict | None, str]:
    """:func:`finished_run`'s record, and why there is none when its file is there but cannot
    be used ('' otherwise).

    The record may be hand-edited or another tool's: every field read later is checked here
    (:func:`_record_problem`), so that one it does not fit is trained again rather than
    failing later in a traceback (``validations: []`` in ``min``, ``device: ["x"]`` in
    :func:`_devices`, nesting deeper than the JSON reader recurses).
    """
    path = work_dir / FINISHED_RUN
    if not os.path.lexists(path):
        return None, ''
    if not path.is_file():  # a FIFO there would wait for a writer
        return None, 'no regular file'
    try:  # a record's size at most: a file of gigabytes there would be read whole
        earlier = json.loads(read_regular_file(path, RUN_RECORD_MAX_BYTES).decode('utf-8'))
    except AnnotationError as e:  # too large, or no regular file (since the check above)
        return None, first_line(e).removeprefix(f'{path}: ')[:200]
    except OSError as e:
        return None, f'cannot be read: {first_line(e)}'
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, nested too deep
        return None, f'no JSON this reads: {type(e).__name__}: {first_line(e)}'[:200]
    problem = _record_problem(earlier)
    if problem:
        return None, problem
    for v in earlier['validations']:  # the NaN of a diverged run, which _save wrote as null
        if v['NME'] is None:
            v['NME'] = math.nan
    return earlier, ''


#: the largest step a record may give (a float64 holds each whole number up to it, for the plot)
_MAX_STEP = 2 ** 53


def _record_problem(earlier) -> str:
    """What in a record read from JSON is not as :func:`train_run` writes it ('' if nothing):
    ``inputs`` an object; ``validations`` a non-empty list of ``{"step": a whole number from 0
    to 2**53, "NME": a finite float >= 0 or null}``; ``minutes`` a finite number >= 0;
    ``device`` a non-empty line of printable text (no ``$``: the picture's title would read
    it as mathtext)."""
    if not isinstance(earlier, dict):
        return 'not a JSON object'
    if not isinstance(earlier.get('inputs'), dict):
        return '"inputs" is no object'
    found = earlier.get('validations')
    if not isinstance(found, list) or not found:
        return '"validations" is no list of validations, or an empty one'
    for i, v in enumerate(found):
        step = v.get('step') if isinstance(v, dict) else None
        nme = v.get('NME', math.nan) if isinstance(v, dict) else math.nan
        if not (isinstance(step, int) and not isinstance(step, bool) and 0 <= step <= _MAX_STEP
                and (nme is None or isinstance(nme, float) and math.isfinite(nme)
                     and nme >= 0)):
            return (f'validation {i} is not {{"step": a whole number from 0 to 2**53, "NME": '
                    'a finite number >= 0 or null}')
    minutes = earlier.get('minutes')
    if not (isinstance(minutes, (int, float)) and not isinstance(minutes, bool)
            and _finite(minutes) and minutes >= 0):
        return '"minutes" is no finite number >= 0'
    device = earlier.get('device')
    if not (isinstance(device, str) and device and len(device) <= 200 and '$' not in device
            and printable(device, one_line=True) == device):
        return '"device" is no line of printable text (up to 200 characters, no $)'
    return ''


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int past a float's range
        return False


def run_log(work_dir: Path) -> Path:
    """Where :func:`train_run` writes a run's output: beside its work dir (not
    ``with_suffix``: a name like ``finetune_lr0.0002`` has a dot)."""
    return work_dir.parent / f'{work_dir.name}.log'


def planned_lr(work_dir: Path) -> float | None:
    """The peak lr of a run's printed plan (in :func:`run_log`), or None."""
    log = run_log(work_dir)
    found = re.search(r'^  lr +([0-9.e+-]+) ', log.read_text(), re.MULTILINE) \
        if log.is_file() else None
    return float(found[1]) if found else None


def validations(work_dir: Path) -> list[dict]:
    """The validation NMEs mmengine logged in ``work_dir`` by its latest run (the newest
    ``<timestamp>/vis_data/scalars.json``: a rerun into the same folder is not mixed with an
    earlier one), by step."""
    found = []
    runs = sorted(work_dir.glob('*/vis_data/scalars.json'))  # timestamps sort as times
    for scalars in runs[-1:]:
        for line in scalars.read_text().splitlines():
            entry = json.loads(line)
            if 'NME' in entry:
                found.append(dict(step=int(entry['step']), NME=float(entry['NME'])))
    return found


def _devices(devices: Iterable[str]) -> str:
    """The devices runs trained on, in order, each once, for the results and the picture: runs
    read back from records made elsewhere name where they ran, not this machine."""
    return ' and '.join(dict.fromkeys(devices))


def _device() -> str:
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f'CPU ({host_cpus()} cores)'


def learning_curve(out_dir: str | os.PathLike, sizes: tuple[int, ...] = (50, 100, 200, 400, 800),
                   val_faces: int = 100, iters: int | None = None, batch_size: int = 8,
                   seed: int = 0, amp: bool = False) -> dict:
    """The best validation NME against the number of training faces (see the module docstring).

    Args:
        out_dir: work folder; ``learning_curve.json`` and ``learning_curve.png`` go there.
        sizes: numbers of training faces.
        val_faces: validation faces (the same for every size).
        iters: steps for every size (default: the main config's plan for each size).
        batch_size: faces per step.
        seed: seed of the synthetic faces.
        amp: train with mixed precision (CUDA).
    """
    _check_numbers(('--sizes', size) for size in sizes)
    _check_numbers([('--val-faces', val_faces), ('--iters', iters), ('--batch-size', batch_size)],
                   seed)
    out_dir = Path(out_dir)
    results = dict(experiment='learning_curve', device='', batch_size=batch_size,
                   iters=iters or 'default plan', val_faces=val_faces, amp=amp, runs=[])
    for size in sizes:
        data = make_split(out_dir / f'data_{size}', size, val_faces, seed)
        runs = train_run(MAIN_CONFIG, data, out_dir / f'run_{size}', iters=iters,
                         batch_size=batch_size, amp=amp)
        trained = finished_run(out_dir / f'run_{size}')  # also when read from an earlier run
        results['runs'].append(dict(faces=size, best_NME=min(r['NME'] for r in runs),
                                    validations=runs, minutes=trained['minutes'],
                                    device=trained['device']))
        results['device'] = _devices(r['device'] for r in results['runs'])
        # both after each size: a curve stopped at a later size leaves numbers and a picture
        # of the same sizes, not an earlier experiment's picture beside its numbers
        _save(results, out_dir / 'learning_curve.json')
        plot_learning_curve(results, out_dir / 'learning_curve.png')
    return results


def transfer_curve(out_dir: str | os.PathLike, pretrain_faces: int = 800,
                   target_faces: int = 100, val_faces: int = 100,
                   pretrain_iters: int | None = None, iters: int | None = None,
                   batch_size: int = 8, seed: int = 0,
                   finetune_lrs: tuple[float, ...] = (),
                   finetune_frozen_stages: tuple[int, ...] = (), amp: bool = False) -> dict:
    """Fine-tuning from another style family against training from scratch (see the module
    docstring).

    Args:
        out_dir: work folder; ``transfer.json`` and ``transfer.png`` go there.
        pretrain_faces: human anime faces to pretrain on (main config, its default plan or
            ``pretrain_iters``).
        target_faces: animal-character faces to fine-tune / train on.
        val_faces: validation faces of the target family.
        pretrain_iters: steps of the pretraining.
        iters: steps of each target run (default: each config's own plan).
        batch_size: faces per step.
        seed: seed of the synthetic faces.
        finetune_lrs: more fine-tuning runs at these peak lrs, beside the config's own.
        finetune_frozen_stages: more fine-tuning runs at the config's lr with the backbone
            frozen up to each of these HRNet stages (``model.backbone.frozen_stages``: 0 the
            stem, 1 the stem and the first stage, up to 4).
        amp: train with mixed precision (CUDA).
    """
    _check_numbers([('--pretrain-faces', pretrain_faces), ('--target-faces', target_faces),
                    ('--val-faces', val_faces), ('--pretrain-iters', pretrain_iters),
                    ('--iters', iters), ('--batch-size', batch_size)], seed)
    _check_numbers(('--finetune-lr', lr) for lr in finetune_lrs)
    for stages in finetune_frozen_stages:  # HRNet has the stem (0) and stages 1-4
        if not isinstance(stages, int) or not 0 <= stages <= 4:
            raise ScheduleError(f'--finetune-frozen-stages must be 0 to 4, got {stages!r}')
    out_dir = Path(out_dir)
    results = dict(experiment='transfer', device='', batch_size=batch_size, amp=amp,
                   pretrain_faces=pretrain_faces, target_faces=target_faces,
                   pretrain_iters=pretrain_iters or 'default plan',
                   iters=iters or 'default plans')
    source = make_split(out_dir / 'data_human', pretrain_faces, val_faces, seed, family='human')
    results['pretrain'] = train_run(MAIN_CONFIG, source, out_dir / 'pretrain',
                                    iters=pretrain_iters, batch_size=batch_size, amp=amp)
    # the best checkpoint of the pretraining (mmengine keeps one; the newest if a rerun left
    # more)
    best = list((out_dir / 'pretrain').glob('best_NME_*.pth'))
    if not best:  # a finished run read from its record, its checkpoints deleted since
        raise ExperimentError(f'no best_NME_*.pth in {out_dir / "pretrain"} to fine-tune '
                              'from; delete that folder to train the pretraining again')
    pretrained = max(best, key=lambda p: p.stat().st_mtime)
    target = make_split(out_dir / 'data_animal', target_faces, val_faces, seed + 1,
                        family='animal')
    def fine_tune(name: str, **options) -> list[dict]:
        return train_run(FINETUNE_CONFIG, target, out_dir / name, iters=iters,
                         batch_size=batch_size, checkpoint=str(pretrained), amp=amp, **options)

    results['finetune'] = fine_tune('finetune')
    results['finetune_config_lr'] = planned_lr(out_dir / 'finetune')
    results['finetune_lr'] = {f'{lr:g}': fine_tune(f'finetune_lr{lr:g}', extra=('--lr', str(lr)))
                              for lr in finetune_lrs}
    results['finetune_frozen'] = {
        str(stages): fine_tune(f'finetune_frozen{stages}',
                               cfg_options=(f'model.backbone.frozen_stages={stages}',))
        for stages in finetune_frozen_stages}
    results['scratch'] = train_run(MAIN_CONFIG, target, out_dir / 'scratch', iters=iters,
                                   batch_size=batch_size, amp=amp)
    results['scratch_lr'] = planned_lr(out_dir / 'scratch')
    runs = ([out_dir / 'pretrain', out_dir / 'finetune', out_dir / 'scratch']
            + [out_dir / f'finetune_lr{lr:g}' for lr in finetune_lrs]
            + [out_dir / f'finetune_frozen{stages}' for stages in finetune_frozen_stages])
    results['device'] = _devices(r['device'] for r in map(finished_run, runs) if r is not None)
    _save(results, out_dir / 'transfer.json')
    plot_transfer_curve(results, out_dir / 'transfer.png')
    return results


def _check_numbers(values: Iterable[tuple[str, float | None]], seed: int = 0) -> None:
    """Refuse a count, a step budget or an lr that is not positive, or a negative seed, before
    anything is made: ``tools/train.py`` would refuse it only when its run starts, maybe after
    hours of the runs before it.

    Raises:
        ScheduleError: naming the flag and the value.
    """
    for flag, value in values:
        check_positive(flag, value)
    problem = seed_problem(seed)  # the generator's own rule
    if problem:
        raise ScheduleError(f'--seed {problem}')


def _save(results: dict, path: Path) -> None:
    """Write results as JSON, whole or not at all (a run killed while writing leaves the
    earlier file); a NaN or infinite number (a diverged run's NME) is written as null, JSON
    having neither."""
    write_json_atomic(path, without_nan(results))


def without_nan(value):
    """``value`` (dicts, lists, numbers) with every NaN or infinite float as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return value


def _save_figure(fig, out_file: str | os.PathLike) -> None:
    """Save a matplotlib figure as PNG, whole or not at all (as :func:`_save` writes JSON)."""
    png = io.BytesIO()
    fig.savefig(png, format='png')
    write_bytes_atomic(out_file, png.getvalue())


def plot_learning_curve(results: dict, out_file: str | os.PathLike) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    runs = results['runs']
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot([r['faces'] for r in runs], [r['best_NME'] for r in runs], 'o-')
    for r in runs:
        ax.annotate(f'{r["best_NME"]:.4f}', (r['faces'], r['best_NME']), fontsize=8,
                    textcoords='offset points', xytext=(0, 6), ha='center')
    ax.set_xscale('log')
    ax.set_xticks([r['faces'] for r in runs], [str(r['faces']) for r in runs])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel('training faces (synthetic)')
    ax.set_ylabel('best validation NME (inter-ocular)')
    ax.set_title(f'How many faces? {results["iters"]} steps at batch {results["batch_size"]}, '
                 f'{results["device"]}', fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, out_file)
    plt.close(fig)


def plot_transfer_curve(results: dict, out_file: str | os.PathLike) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    def lr_of(key: str) -> str:
        return f', peak lr {results[key]:.2g}' if results.get(key) else ''

    curves = [(results['finetune'], f'fine-tuned from {results["pretrain_faces"]} human faces '
               f'(fine-tuning config{lr_of("finetune_config_lr")})')]
    curves += [(runs, f'fine-tuned, peak lr {lr}')
               for lr, runs in results.get('finetune_lr', {}).items()]
    curves += [(runs, f'fine-tuned, backbone frozen to stage {stages}'
                      f'{lr_of("finetune_config_lr")}')
               for stages, runs in results.get('finetune_frozen', {}).items()]
    curves.append((results['scratch'], f'from scratch (main config{lr_of("scratch_lr")})'))
    for runs, label in curves:
        ax.plot([r['step'] for r in runs], [r['NME'] for r in runs], 'o-', label=label)
    ax.set_yscale('log')
    ax.set_xlabel('training steps')
    ax.set_ylabel('validation NME (inter-ocular)')
    ax.set_title(f'{results["target_faces"]} animal faces, batch {results["batch_size"]}, '
                 f'{results["device"]}', fontsize=9)
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, out_file)
    plt.close(fig)
