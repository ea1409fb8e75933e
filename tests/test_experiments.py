"""The recipe experiments' runner: a real (tiny) learning-curve run, its JSON and picture, and
a rerun that reads finished runs instead of training them again; and what measures on a GPU
beside them: the benchmark tool's results and deadlines, and tools/gpu_checks.sh's settings and
exit status (neither benchmarks nor trains: stand-ins run)."""
import json
import math
import os
from pathlib import Path

import cv2
import pytest

from animal_landmarks_mm.experiments import (
    FINISHED_RUN,
    ExperimentError,
    finished_run,
    learning_curve,
    make_split,
    plot_transfer_curve,
    run_log,
    train_run,
    transfer_curve,
)
from animal_landmarks_mm.schedule import ScheduleError
from conftest import MAIN_CONFIG, run_tool


def test_a_tiny_learning_curve_runs_end_to_end(tmp_path):
    args = ('learning-curve', '--out-dir', tmp_path, '--sizes', '4', '--val-faces', '3',
            '--iters', '2', '--batch-size', '2')
    first = run_tool('recipe_experiments.py', *args)
    assert 'run_4: training' in first.stdout
    results = json.loads((tmp_path / 'learning_curve.json').read_text())
    assert results['iters'] == 2 and [r['faces'] for r in results['runs']] == [4]
    run = results['runs'][0]
    assert run['validations'] and all(v['step'] in (1, 2) for v in run['validations'])
    assert run['best_NME'] == min(v['NME'] for v in run['validations']) > 0
    assert cv2.imread(str(tmp_path / 'learning_curve.png')) is not None

    assert results['device'] == run['device']  # where it ran

    # the same experiment again (as after a crash in a later run): the finished run is read;
    # here as if it had been trained on a GPU, which the results and the picture then name
    log = tmp_path / 'run_4.log'
    trained = log.stat().st_mtime_ns
    record = tmp_path / 'run_4' / FINISHED_RUN
    record.write_text(json.dumps({**json.loads(record.read_text()), 'device': 'NVIDIA H100'}))
    again = run_tool('recipe_experiments.py', *args)
    assert 'run_4: finished before from the same inputs' in again.stdout
    assert log.stat().st_mtime_ns == trained
    rerun = json.loads((tmp_path / 'learning_curve.json').read_text())
    assert rerun['device'] == rerun['runs'][0]['device'] == 'NVIDIA H100'
    rerun = rerun['runs'][0]
    assert rerun['validations'] == run['validations'] and rerun['minutes'] == run['minutes']
    # other faces under the same arguments (another seed): trained again, not reused
    assert 'run_4: training' in run_tool('recipe_experiments.py', *args, '--seed', '1').stdout
    # an unreadable or malformed record is not trusted
    good = json.loads(record.read_text())
    assert finished_run(tmp_path / 'run_4') == good
    for broken in ('{"inputs": ', json.dumps({**good, 'validations': [{'step': 1}]}),
                   json.dumps({k: v for k, v in good.items() if k != 'minutes'})):
        record.write_text(broken)
        assert finished_run(tmp_path / 'run_4') is None


def test_a_split_replaces_its_own_folders_and_never_follows_a_link(tmp_path):
    user = tmp_path / 'user_pictures'
    user.mkdir()
    (user / 'holiday.png').write_bytes(b'not ours')
    folder = tmp_path / 'data'
    make_split(folder, 3, 2, seed=0)
    (folder / 'images').rename(tmp_path / 'old_images')
    (folder / 'images').symlink_to(user)  # say, a user linked a folder there
    make_split(folder, 2, 1, seed=1)
    assert (user / 'holiday.png').read_bytes() == b'not ours' and len(list(user.iterdir())) == 1
    images = sorted(p.name for p in (folder / 'images').iterdir())
    assert not (folder / 'images').is_symlink() and len(images) == 3
    assert all(name.startswith(('synthetic_1_', 'synthetic_10001_')) for name in images)


def test_a_frozen_stage_run_reaches_the_model(tmp_path):
    """What ``--finetune-frozen-stages`` adds to a fine-tuning run reaches the model's config
    (mmpose's HRNet then freezes those stages)."""
    data = make_split(tmp_path / 'data', 4, 3, seed=0, family='animal')
    found = train_run(MAIN_CONFIG, data, tmp_path / 'frozen', iters=1, batch_size=2,
                      cfg_options=('model.backbone.frozen_stages=2',))
    assert found and finished_run(tmp_path / 'frozen')['inputs']['args'][-5:] == [
        'model.backbone.frozen_stages=2', '--iters', '1', '--batch-size', '2']
    assert 'frozen_stages=2' in run_log(tmp_path / 'frozen').read_text()


def test_the_transfer_picture_shows_both_curves(tmp_path):
    results = dict(pretrain_faces=800, target_faces=100, batch_size=8, device='CPU (2 cores)',
                   finetune=[dict(step=50, NME=0.08), dict(step=100, NME=0.05)],
                   finetune_lr={'0.0007': [dict(step=50, NME=0.07), dict(step=100, NME=0.04)]},
                   finetune_frozen={'1': [dict(step=50, NME=0.09), dict(step=100, NME=0.06)]},
                   scratch=[dict(step=50, NME=0.3), dict(step=100, NME=0.12)])
    plot_transfer_curve(results, tmp_path / 'transfer.png')
    assert cv2.imread(str(tmp_path / 'transfer.png')) is not None


@pytest.mark.parametrize('experiment, options, message', [
    (learning_curve, dict(sizes=(50, 0)), '--sizes must be positive, got 0'),
    (learning_curve, dict(batch_size=0), '--batch-size must be positive'),
    (learning_curve, dict(seed=-1), '--seed must be an integer of 0 or more, got -1'),
    (transfer_curve, dict(seed=1.5), '--seed must be an integer of 0 or more, got 1.5'),
    (transfer_curve, dict(pretrain_iters=-5), '--pretrain-iters must be positive, got -5'),
    (transfer_curve, dict(finetune_lrs=(1e-4, math.nan)), '--finetune-lr must be positive, '
     'got nan'),
    (transfer_curve, dict(finetune_frozen_stages=(1, 5)), '--finetune-frozen-stages must be 0 '
     'to 4, got 5'),
])
def test_bad_numbers_are_refused_before_anything_is_made(tmp_path, experiment, options,
                                                         message):
    """tools/train.py would refuse them only when their run starts, after hours of others."""
    with pytest.raises(ScheduleError, match=message):
        experiment(tmp_path / 'out', **options)
    assert not (tmp_path / 'out').exists()


def test_a_pretraining_without_its_checkpoint_is_one_line(tmp_path):
    """A finished pretraining read from its record, its checkpoints deleted since: the way out
    is named, not a traceback."""
    source = make_split(tmp_path / 'data_human', 4, 3, seed=0, family='human')
    train_run(MAIN_CONFIG, source, tmp_path / 'pretrain', iters=1, batch_size=2)
    for checkpoint in (tmp_path / 'pretrain').glob('*.pth'):
        checkpoint.unlink()
    with pytest.raises(ExperimentError, match='no best_NME_.*delete that folder'):
        transfer_curve(tmp_path, pretrain_faces=4, target_faces=4, val_faces=3,
                       pretrain_iters=1, iters=1, batch_size=2)


def _benchmark_tool(monkeypatch, results: dict):
    """tools/benchmark.py as a module whose benchmarks return ``results`` at once (none runs);
    returns it and the names it was asked to run."""
    import importlib.util

    from conftest import REPO
    spec = importlib.util.spec_from_file_location('benchmark_tool', REPO / 'tools' /
                                                  'benchmark.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    asked = []

    def fake(name, deadline_s):
        asked.append(name)
        return results[name]

    monkeypatch.setattr(tool, 'run_isolated', fake)
    monkeypatch.setattr(tool, 'machine', lambda: 'test machine')
    return tool, asked


def test_results_are_written_whole_and_nan_as_null(tmp_path, monkeypatch):
    """A results file is replaced whole or not at all (a write that fails leaves the old one),
    and a NaN (a diverged run) is written as null, as JSON has no NaN; a run's record read back
    gives the NaN again."""
    from animal_landmarks_mm.experiments import _save
    path = tmp_path / 'learning_curve.json'
    _save(dict(runs=[dict(best_NME=math.nan, NME=math.inf)]), path)
    assert 'NaN' not in path.read_text() and 'Infinity' not in path.read_text()
    assert json.loads(path.read_text()) == dict(runs=[dict(best_NME=None, NME=None)])
    with pytest.raises(TypeError):
        _save(dict(runs=[object()]), path)
    assert json.loads(path.read_text()) == dict(runs=[dict(best_NME=None, NME=None)])
    record = tmp_path / 'run' / FINISHED_RUN
    _save(dict(inputs={}, validations=[dict(step=1, NME=math.nan), dict(step=2, NME=0.5)],
               minutes=1.0, device='CPU'), record)
    read = finished_run(tmp_path / 'run')['validations']
    assert math.isnan(read[0]['NME']) and read[1]['NME'] == 0.5

    out = tmp_path / 'benchmark.json'
    tool, _ = _benchmark_tool(monkeypatch, dict(pipeline=dict(per_worker_img_s=math.nan)))
    tool.main(['--only', 'pipeline', '--out', str(out)])
    assert json.loads(out.read_text())['results'] == dict(pipeline=dict(per_worker_img_s=None))
    tool, _ = _benchmark_tool(monkeypatch, dict(pipeline=dict(bad=object())))
    with pytest.raises(TypeError):
        tool.main(['--only', 'pipeline', '--out', str(out)])
    assert json.loads(out.read_text())['results'] == dict(pipeline=dict(per_worker_img_s=None))


@pytest.mark.parametrize('where', ['a_file/benchmark.json', 'a_folder'])
def test_the_benchmark_tool_checks_its_out_file_before_it_runs_anything(tmp_path, monkeypatch,
                                                                       capsys, where):
    """Its benchmarks take many minutes: an --out it cannot write is said first, in one line."""
    (tmp_path / 'a_file').write_text('')
    (tmp_path / 'a_folder').mkdir()
    tool, asked = _benchmark_tool(monkeypatch, dict(pipeline={}))
    with pytest.raises(SystemExit) as stop:
        tool.main(['--only', 'pipeline', '--out', str(tmp_path / where)])
    assert str(stop.value).startswith('error: ') and '\n' not in str(stop.value)
    assert str(tmp_path / where.split('/')[0]) in str(stop.value)
    assert asked == []


def test_the_pipeline_benchmark_says_its_loader_rate_is_an_estimate():
    """It times the pipeline in one process; what N workers make is that rate times N, an
    estimate (no DataLoader runs), and is named so, with the workers train.py would give."""
    from animal_landmarks_mm.benchmarks import format_table
    from animal_landmarks_mm.benchmarks.training import pipeline_result
    result = pipeline_result(244.04, 2)
    assert result == dict(per_worker_img_s=244.0, workers=2, estimated_loader_img_s=488.1)
    assert 'estimated_loader_img_s=488.1' in format_table(dict(pipeline=result))
    assert pipeline_result(244.04, 0)['estimated_loader_img_s'] == 244.0  # loads in-process


def _gpu_checks(tmp_path, **env):
    """tools/gpu_checks.sh with a stand-in interpreter (no torch, nothing trained): it fails
    the synthetic data's tool and succeeds at everything else, at once."""
    import os
    import subprocess

    from conftest import REPO
    fake = tmp_path / 'fake_python'
    fake.write_text('#!/usr/bin/env bash\n'
                    'case "$1" in *make_synthetic_dataset.py) exit 3;; esac\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / 'wheels').mkdir(exist_ok=True)
    return subprocess.run(['bash', str(REPO / 'tools' / 'gpu_checks.sh'), str(tmp_path / 'out'),
                           str(tmp_path / 'wheels')], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PY=str(fake), **env))


@pytest.mark.parametrize('env, message', [
    (dict(BUDGET='abc'), "error: BUDGET must be a positive whole number of seconds, got 'abc'"),
    (dict(BUDGET='0'), "error: BUDGET must be a positive whole number of seconds, got '0'"),
    (dict(FACES='1e3'), "error: FACES must be a positive whole number, got '1e3'"),
    (dict(SIZES='100 x'), "error: SIZES must be positive whole numbers, got '100 x'"),
])
def test_gpu_checks_refuse_numbers_that_are_not_in_one_line(tmp_path, env, message):
    """bash's arithmetic read BUDGET=abc as 0 (every step skipped, exit 0)."""
    proc = _gpu_checks(tmp_path, **env)
    assert proc.returncode == 2 and proc.stderr.strip() == message, proc.stderr
    assert not (tmp_path / 'out').exists()


def test_gpu_checks_exit_non_zero_when_a_step_fails_or_is_skipped(tmp_path):
    proc = _gpu_checks(tmp_path, STEPS='recipe', BUDGET='1000')
    summary = (tmp_path / 'out' / 'summary.txt').read_text()
    assert proc.returncode == 1, summary
    assert 'data: exit 3' in summary and 'recipe: not run' in summary
    proc = _gpu_checks(tmp_path, STEPS='benchmark', BUDGET='50')
    summary = (tmp_path / 'out' / 'summary.txt').read_text()
    assert proc.returncode == 1, summary
    assert 'benchmark: skipped (its share of the time left, 15 s, is under 30 s)' in summary
    assert 'all steps: ' in summary  # the summary is written all the same


def test_gpu_checks_summarise_a_learning_curve_with_a_diverged_run(tmp_path):
    """A diverged run's NME is written as null (NaN is no JSON); the summary's learning-curve
    line said nothing at all then (a TypeError formatting None)."""
    import os
    import subprocess
    import sys

    from conftest import REPO
    fake = tmp_path / 'fake_python'
    fake.write_text(  # the curve's tool writes its JSON; the summary's scripts run for real
        '#!/usr/bin/env bash\n'
        'case "$1" in\n'
        '  tools/recipe_experiments.py)\n'
        '    while [[ $# -gt 0 && $1 != --out-dir ]]; do shift; done\n'
        '    mkdir -p "$2"\n'
        '    echo \'{"runs": [{"faces": 100, "best_NME": null, "minutes": 1.5},\' \\\n'
        '         \'{"faces": 300, "best_NME": 0.01234, "minutes": 4.0}]}\' \\\n'
        '         > "$2/learning_curve.json";;\n'
        f'  -) exec {sys.executable} "$@";;\n'
        'esac\n')
    fake.chmod(0o755)
    (tmp_path / 'wheels').mkdir()
    proc = subprocess.run(
        ['bash', str(REPO / 'tools' / 'gpu_checks.sh'), str(tmp_path / 'out'),
         str(tmp_path / 'wheels')], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PY=str(fake), STEPS='learning_curve', BUDGET='1000'))
    summary = (tmp_path / 'out' / 'summary.txt').read_text()
    assert proc.returncode == 0, summary + proc.stderr
    assert ('learning curve: 100 faces NME none (diverged) in 1.5 min, 300 faces NME 0.0123 '
            'in 4.0 min') in summary


def test_a_finished_run_is_reused_only_under_the_same_code_and_images(tmp_path, monkeypatch):
    """Its record was keyed by the arguments, config and annotation files only: a run trained
    under another generator, augmentation or model (or on other images under the same
    annotations) was read back as if it were this one's. Nothing trains here: training is
    replaced by a stand-in that says it was asked."""
    import subprocess

    import animal_landmarks_mm.experiments as experiments
    from animal_landmarks_mm.annotation import write_json_atomic

    class Trained(Exception):
        pass

    def no_training(*args, **kwargs):
        raise Trained

    monkeypatch.setattr(subprocess, 'run', no_training)
    data = make_split(tmp_path / 'data', 3, 2, seed=0)
    work = tmp_path / 'run'

    def record_as_now():  # what train_run records after training in this state
        inputs = experiments.run_inputs(MAIN_CONFIG, data, work, iters=1)
        write_json_atomic(work / FINISHED_RUN, dict(inputs=inputs, validations=[
            dict(step=1, NME=0.5)], minutes=0.1, device='CPU'))

    work.mkdir()
    record_as_now()
    assert train_run(MAIN_CONFIG, data, work, iters=1) == [dict(step=1, NME=0.5)]
    # the same split made again (a rerun of the experiment): the same images, still reused
    make_split(tmp_path / 'data', 3, 2, seed=0)
    assert train_run(MAIN_CONFIG, data, work, iters=1) == [dict(step=1, NME=0.5)]
    # an image redrawn under the same annotations
    image = sorted((data / 'images').iterdir())[0]
    image.write_bytes(image.read_bytes() + b'\0')
    with pytest.raises(Trained):
        train_run(MAIN_CONFIG, data, work, iters=1)
    record_as_now()
    assert train_run(MAIN_CONFIG, data, work, iters=1) == [dict(step=1, NME=0.5)]
    # the plugin's code changed (here: a source file the digest reads), or its version
    source = tmp_path / 'synthetic.py'
    source.write_text('# another generator\n')
    monkeypatch.setattr(experiments, 'RESULT_SOURCES', (source,))
    with pytest.raises(Trained):
        train_run(MAIN_CONFIG, data, work, iters=1)
    record_as_now()
    monkeypatch.setattr(experiments, '__version__', '99.0')
    with pytest.raises(Trained):
        train_run(MAIN_CONFIG, data, work, iters=1)


def test_the_learning_curve_picture_is_drawn_with_each_size(tmp_path, monkeypatch):
    """The JSON was saved after each size, the picture only at the end: a curve stopped after
    its first size left an earlier experiment's picture beside the new numbers. Nothing trains
    here: the runs are stand-ins, the second of which fails."""
    import animal_landmarks_mm.experiments as experiments
    monkeypatch.setattr(experiments, 'make_split', lambda folder, *args, **kwargs: folder)

    def train(config, data, work_dir, **kwargs):
        if work_dir.name == 'run_8':
            raise ExperimentError('training failed (stand-in)')
        return [dict(step=1, NME=0.25)]

    monkeypatch.setattr(experiments, 'train_run', train)
    monkeypatch.setattr(experiments, 'finished_run', lambda work_dir: dict(minutes=1.0,
                                                                          device='CPU'))
    picture = tmp_path / 'learning_curve.png'
    cv2.imwrite(str(picture), 255 * __import__('numpy').ones((8, 8, 3), 'uint8'))
    stale = picture.read_bytes()
    with pytest.raises(ExperimentError):
        learning_curve(tmp_path, sizes=(4, 8), iters=1)
    assert [r['faces'] for r in json.loads((tmp_path / 'learning_curve.json').read_text())
            ['runs']] == [4]
    assert picture.read_bytes() != stale and cv2.imread(str(picture)).shape[:2] == (400, 600)


def test_a_benchmark_past_its_deadline_is_stopped_and_said_in_one_line(monkeypatch):
    """A hung benchmark (a loader worker or a browser that never answers) was waited for
    forever; here one that waits for a signal that never comes (stdlib's signal.pause)."""
    import time

    from animal_landmarks_mm import benchmarks
    monkeypatch.setitem(benchmarks.BENCHMARKS, 'hang', 'signal:pause')
    start = time.perf_counter()
    result = benchmarks.run_isolated('hang', deadline_s=2)
    assert time.perf_counter() - start < 30
    assert result == dict(error='no result within its deadline of 2 s: its process was stopped')


def test_the_benchmark_tool_refuses_a_deadline_that_is_not_positive(monkeypatch, capsys):
    tool, asked = _benchmark_tool(monkeypatch, dict(pipeline={}))
    with pytest.raises(SystemExit):
        tool.main(['--only', 'pipeline', '--deadline', '0'])
    assert 'must be a positive number of seconds' in capsys.readouterr().err and asked == []


def _record_now(out_dir, size: int = 1) -> dict:
    """What train_run would record now for learning_curve(out_dir, (size,), val_faces=1,
    iters=1, batch_size=1)'s run, its inputs those of this state: read back, not trained."""
    import animal_landmarks_mm.experiments as experiments
    data = make_split(out_dir / f'data_{size}', size, 1, seed=0)
    inputs = experiments.run_inputs(MAIN_CONFIG, data, out_dir / f'run_{size}', iters=1,
                                    batch_size=1)
    (out_dir / f'run_{size}').mkdir()
    return dict(inputs=inputs, validations=[dict(step=1, NME=0.5)], minutes=1.0, device='CPU')


def _stand_in_training(monkeypatch, validates: bool = True) -> list:
    """tools/train.py replaced by a stand-in that logs one validation (NME 0.25 at step 1) as
    mmengine does (only a training loss when not ``validates``); returns the work dirs it was
    asked to train."""
    import subprocess
    asked = []
    completed = subprocess.CompletedProcess

    def train(command, **kwargs):
        work_dir = Path(command[command.index('--work-dir') + 1])
        asked.append(work_dir)
        scalars = work_dir / '20260101_000000' / 'vis_data' / 'scalars.json'
        scalars.parent.mkdir(parents=True)
        logged = dict(NME=0.25, step=1) if validates else dict(loss=0.1, step=1)
        scalars.write_text(json.dumps(logged) + '\n')
        return completed(command, 0)

    monkeypatch.setattr(subprocess, 'run', train)
    return asked


@pytest.mark.parametrize('case, why', [
    ('no validations', '"validations" is no list of validations, or an empty one'),
    ('a device that is a list', '"device" is no line of printable text'),
    ('nested too deep', 'no JSON this reads: RecursionError: '),
    # a sparse file of gigabytes was read whole (4.9 GB held)
    ('gigabytes', 'more than 16777216 bytes, too large to read'),
])
def test_a_record_not_as_written_is_trained_again_saying_why(tmp_path, monkeypatch, capsys,
                                                             case, why):
    """A hand-edited or foreign experiment_run.json whose inputs match the run's was read back
    and failed later in a traceback (reviewer's exp_record.py): "validations": [] in min()
    (ValueError), "device": ["x"] in _devices (TypeError: unhashable), nesting deeper than
    the JSON reader recurses in finished_run (RecursionError). Each field read later is
    checked: such a record is unreadable, the run trained again, one line saying why."""
    record = _record_now(tmp_path)
    path = tmp_path / 'run_1' / FINISHED_RUN
    if case == 'no validations':
        path.write_text(json.dumps({**record, 'validations': []}))
    elif case == 'a device that is a list':
        path.write_text(json.dumps({**record, 'device': ['x']}))
    elif case == 'gigabytes':
        path.write_bytes(b'')
        os.truncate(path, 2 << 30)
    else:
        path.write_text(json.dumps(record)[:-1] + ', "notes": ' + '[' * 100_000 + ']' * 100_000
                        + '}')
    asked = _stand_in_training(monkeypatch)
    results = learning_curve(tmp_path, sizes=(1,), val_faces=1, iters=1, batch_size=1)
    assert asked == [tmp_path / 'run_1']  # trained again
    assert results['runs'][0]['best_NME'] == 0.25
    lines = [line for line in capsys.readouterr().out.splitlines() if 'is not one' in line]
    assert len(lines) == 1 and lines[0].startswith(
        f'[experiment] run_1: the record {path} of an earlier run is not one this reads '
        f'({why}'), lines
    assert lines[0].endswith('): trained again')
    assert finished_run(tmp_path / 'run_1')['validations'] == [dict(step=1, NME=0.25)]


def test_a_run_that_logged_no_validation_fails_in_one_line_and_leaves_no_record(tmp_path,
                                                                               monkeypatch):
    """A run that logged no validation NME (shorter than its validation interval) wrote a
    record of no validations, which its reader refuses: every rerun trained it again (hours)
    to the same end. It fails in one line naming the log, and leaves no record."""
    from animal_landmarks_mm.experiments import ExperimentError
    _record_now(tmp_path)  # the inputs, and the run's folder
    asked = _stand_in_training(monkeypatch, validates=False)
    with pytest.raises(ExperimentError) as failed:
        learning_curve(tmp_path, sizes=(1,), val_faces=1, iters=1, batch_size=1)
    assert str(failed.value).startswith('training logged no validation NME (a run shorter than '
                                        'its validation interval?); see ')
    assert asked == [tmp_path / 'run_1'] and finished_run(tmp_path / 'run_1') is None
    assert not (tmp_path / 'run_1' / FINISHED_RUN).exists()


def test_a_record_is_read_only_with_every_field_as_written(tmp_path):
    """Besides the cases above: an NME that is no finite number >= 0 (JSON's NaN and Infinity
    literals, which _save never writes: it writes null), a step that is no whole number from 0
    up (true, -1, 1.5), minutes that are no finite number >= 0 (a number past a float's range,
    text), a device that is empty, not one line or mathtext in the picture's title: all read
    back before, now unreadable, as a record that is no object was. A record as written reads."""
    good = dict(inputs={}, validations=[dict(step=0, NME=0.5), dict(step=2, NME=None)],
                minutes=0, device='NVIDIA H100 80GB HBM3')
    record = tmp_path / FINISHED_RUN
    record.write_text(json.dumps(good))
    assert finished_run(tmp_path)['validations'][0] == dict(step=0, NME=0.5)
    changed = [dict(validations=[dict(step=1, NME=math.inf)]),
               dict(validations=[dict(step=1, NME=math.nan)]),
               dict(validations=[dict(step=1, NME=-0.5)]),
               dict(validations=[dict(step=True, NME=0.5)]),
               dict(validations=[dict(step=-1, NME=0.5)]),
               dict(validations=[dict(step=1.5, NME=0.5)]),
               dict(validations=[[1, 0.5]]),
               dict(minutes=10 ** 400), dict(minutes='1'), dict(minutes=-1),
               dict(device=''), dict(device='GPU\n0'), dict(device=r'$\foo$')]
    for change in changed:
        record.write_text(json.dumps({**good, **change}))
        assert finished_run(tmp_path) is None, change
    record.write_text(json.dumps([good]))
    assert finished_run(tmp_path) is None
    # and each says why (train_run prints it)
    from animal_landmarks_mm.experiments import _read_finished_run
    for change in changed:
        record.write_text(json.dumps({**good, **change}))
        assert _read_finished_run(tmp_path)[1], change
    record.write_text(json.dumps(good))
    assert _read_finished_run(tmp_path)[1] == ''
