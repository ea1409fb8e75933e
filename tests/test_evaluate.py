"""tools/evaluate.py end to end on a tiny trained model."""
import errno
import json
import os
import shutil
import time

import cv2
import numpy as np
import pytest
import torch

from animal_landmarks_mm.annotation import load_annotation, parse_annotation
from conftest import REPO, run_tool


def _nme_by_hand(ann_dir, predictions, names=None):
    """Inter-ocular NME over all points, and per face, computed here from the files alone."""
    errors, per_face = [], {}
    for pred in predictions:
        pred = parse_annotation(pred)
        gt = load_annotation(ann_dir / f'{pred.image.rsplit(".", 1)[0]}.json')
        for g, p in zip(gt.faces, pred.faces):
            g_pts, p_pts = np.array(g.landmarks), np.array(p.landmarks)
            eyes = np.hypot(*(g_pts[11] - g_pts[19]))
            e = np.hypot(*(p_pts - g_pts).T) / eyes
            errors += list(e)
            per_face[pred.image] = e.mean()
    return float(np.mean(errors)), per_face


@pytest.fixture(scope='module')
def evaluation(trained, coco_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('eval')
    work_dir, _ = trained
    proc = run_tool('evaluate.py', '--checkpoint', work_dir / 'epoch_1.pth',
                    '--image-dir', coco_dir / 'images', '--annotation-dir',
                    coco_dir / 'landmarks', '--split-file', coco_dir / 'test.txt',
                    '--output-dir', out, '--visualize', '--num-vis-samples', '2',
                    '--worst-first', '--compare', work_dir / 'best_NME_epoch_1.pth')
    return out, proc.stdout


def test_every_output_is_written(evaluation, coco_dir):
    out, stdout = evaluation
    for name in ('metrics.txt', 'metrics.json', 'predictions.json', 'ced.png'):
        assert (out / name).is_file(), name
    assert cv2.imread(str(out / 'ced.png')) is not None
    assert 'NME (inter-ocular, 11-19)' in stdout
    text = (out / 'metrics.txt').read_text()
    assert 'per group' in text and 'eye_right_upper_outer' in text
    predictions = json.loads((out / 'predictions.json').read_text())
    listed = (coco_dir / 'test.txt').read_text().split()
    assert len(predictions) == len(listed) == 3


def test_metrics_json_agrees_with_predictions(evaluation, coco_dir):
    out, _ = evaluation
    metrics = json.loads((out / 'metrics.json').read_text())
    predictions = json.loads((out / 'predictions.json').read_text())
    nme, per_face = _nme_by_hand(coco_dir / 'landmarks', predictions)
    assert metrics['NME'] == pytest.approx(nme, rel=1e-6)
    assert metrics['FR@0.1'] == pytest.approx(np.mean([v > 0.1 for v in per_face.values()]))
    # written metrics.txt shows the same number
    assert f'{metrics["NME"]:.4f}' in (out / 'metrics.txt').read_text()


def test_worst_first_pictures(evaluation, coco_dir):
    out, _ = evaluation
    pictures = sorted((out / 'visualizations').glob('*.jpg'))
    assert len(pictures) == 2
    _, per_face = _nme_by_hand(coco_dir / 'landmarks',
                               json.loads((out / 'predictions.json').read_text()))
    worst = max(per_face, key=per_face.get)
    assert pictures[0].name == f'000_{worst.rsplit(".", 1)[0]}.jpg'


def test_coco_file_input_gives_the_same_numbers(evaluation, trained, coco_dir, tmp_path):
    out, _ = evaluation
    work_dir, _ = trained
    run_tool('evaluate.py', '--checkpoint', work_dir / 'epoch_1.pth', '--ann-file',
             coco_dir / 'annotations' / 'test.json', '--output-dir', tmp_path,
             '--config', REPO / 'configs' /
             'td-hm_hrnetv2-w18_dark-1xb64-60e_animal-face-256x256.py')
    ours = json.loads((tmp_path / 'metrics.json').read_text())
    before = json.loads((out / 'metrics.json').read_text())
    assert ours['NME'] == pytest.approx(before['NME'], rel=1e-9)
    assert ours['faces'] == before['faces']


def test_an_output_folder_that_cannot_be_made_is_refused_before_predicting(tmp_path):
    from animal_landmarks_mm.evaluation import EvalFace, EvaluationInputError, evaluate
    (tmp_path / 'afile').write_text('')
    face = EvalFace(image_path=tmp_path / 'x.png', image_name='x.png', width=9, height=9,
                    points=np.zeros((28, 2)), visibility=np.full(28, 2), box=np.zeros(4))
    # the checkpoint is not even looked at: the folder is refused first
    with pytest.raises(EvaluationInputError, match='afile is a file, not a folder'):
        evaluate(tmp_path / 'missing.pth', [face], tmp_path / 'afile' / 'out')


@pytest.mark.parametrize('inside', [False, True])
def test_a_link_to_nothing_as_output_folder_is_refused_before_predicting(tmp_path, inside):
    """A link whose target is not there passed the check (it does not 'exist') and the run
    failed with 'File exists' only after every prediction; a folder under it likewise."""
    from animal_landmarks_mm.evaluation import EvalFace, EvaluationInputError, evaluate
    link = tmp_path / 'out'
    link.symlink_to(tmp_path / 'gone')
    face = EvalFace(image_path=tmp_path / 'images' / 'x.png', image_name='x.png', width=9, height=9,
                    points=np.zeros((28, 2)), visibility=np.full(28, 2), box=np.zeros(4))
    output_dir = link / 'eval' if inside else link
    with pytest.raises(EvaluationInputError) as refused:
        evaluate(tmp_path / 'missing.pth', [face], output_dir)
    assert str(refused.value) == (f'--output-dir {output_dir}: {link} is a link to '
                                  f'{tmp_path / "gone"}, which leads to no file or folder')
    assert link.is_symlink() and not (tmp_path / 'gone').exists()


def test_evaluate_bad_input(trained, tmp_path):
    proc = run_tool('evaluate.py', '--checkpoint', tmp_path / 'missing.pth', '--ann-file',
                    tmp_path / 'missing.json', '--output-dir', tmp_path / 'out', check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith('error: ')
    assert 'missing.json' in proc.stderr


def _test_split(coco_dir, folder):
    """The test split's annotation files, copied into ``folder``."""
    folder.mkdir()
    for name in (coco_dir / 'test.txt').read_text().split():
        shutil.copy(coco_dir / 'landmarks' / name, folder / name)
    return folder


def test_compared_checkpoints_of_one_name_get_a_curve_each(trained, coco_dir, tmp_path,
                                                           monkeypatch):
    """Two runs' best.pth: one CED curve each, labelled with their folders (a dict keyed by
    the file name kept only the second)."""
    from animal_landmarks_mm import evaluation
    work_dir, _ = trained
    for run in ('run_a', 'run_b'):
        (tmp_path / run).mkdir()
        os.link(work_dir / 'epoch_1.pth', tmp_path / run / 'best.pth')
    plotted = []

    def plot_and_record(curves, out_file, **kwargs):  # the real plot, its curves kept
        plotted.append(dict(curves))
        return real_plot_ced(curves, out_file, **kwargs)

    real_plot_ced = evaluation.plot_ced
    monkeypatch.setattr(evaluation, 'plot_ced', plot_and_record)
    faces, _ = evaluation.faces_from_annotation_dir(coco_dir / 'landmarks', coco_dir / 'images',
                                                    coco_dir / 'test.txt')
    evaluation.evaluate(tmp_path / 'run_a' / 'best.pth', faces, tmp_path / 'out',
                        compare=tmp_path / 'run_b' / 'best.pth', progress=False)
    [curves] = plotted
    assert list(curves) == ['run_a/best.pth', 'run_b/best.pth']
    assert (tmp_path / 'out' / 'ced.png').is_file()
    assert evaluation.curve_labels(['a/best.pth', 'b/best.pth', 'c.pth']) == [
        'a/best.pth', 'b/best.pth', 'c.pth']
    assert evaluation.curve_labels(['x/a/best.pth', 'y/a/best.pth']) == [
        'x/a/best.pth', 'y/a/best.pth']
    assert evaluation.curve_labels(['run/best.pth', 'run/best.pth']) == [
        'run/best.pth', 'run/best.pth (2)']


def test_faces_without_eye_corners_give_outputs_not_a_traceback(trained, coco_dir, tmp_path):
    """No face has both points 11 and 19 (the inter-ocular normaliser): the inter-ocular
    numbers, FR and AUC among them, are left out of metrics.json (JSON has no NaN), shown as
    '-' in metrics.txt; predictions.json and ced.png are written as always."""
    from animal_landmarks_mm.annotation import load_annotation, save_annotation
    folder = _test_split(coco_dir, tmp_path / 'landmarks')
    for path in folder.iterdir():
        ann = load_annotation(path)
        for face in ann.faces:
            face.landmarks[11], face.visibility[11] = None, 0
        save_annotation(path, ann)
    out = tmp_path / 'out'
    # an earlier run's picture would pass for this run's; a broken file the split does not
    # list is not this evaluation's problem
    (out / 'visualizations').mkdir(parents=True)
    for earlier in ('004_earlier.jpg', '1000_earlier.jpg'):
        cv2.imwrite(str(out / 'visualizations' / earlier), np.zeros((4, 4, 3), np.uint8))
    (folder / 'broken.json').write_text('{')
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--image-dir',
                    coco_dir / 'images', '--annotation-dir', folder, '--output-dir', out,
                    '--split-file', coco_dir / 'test.txt', '--visualize',
                    '--num-vis-samples', '1')
    assert 'broken.json' not in proc.stderr
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['faces'] == metrics['faces_without_eye_corners'] == 3
    assert not {'NME', 'FR@0.1', 'AUC@0.1'} & metrics.keys() and metrics['NME_box'] > 0
    assert 'failure rate @0.1          -' in proc.stdout
    assert len(json.loads((out / 'predictions.json').read_text())) == 3
    assert cv2.imread(str(out / 'ced.png')) is not None
    assert len(list((out / 'visualizations').glob('*.jpg'))) == 1


@pytest.mark.parametrize('inside', ['', 'eval'])
def test_an_output_folder_among_the_annotations_is_refused(trained, coco_dir, tmp_path,
                                                           inside):
    """metrics.json would overwrite the annotation of an image metrics.png, predictions.json
    would be read later as a bad annotation: refused in one line, nothing written."""
    folder = _test_split(coco_dir, tmp_path / 'landmarks')
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    output_dir = folder / inside if inside else folder
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--image-dir',
                    coco_dir / 'images', '--annotation-dir', folder, '--output-dir',
                    output_dir, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: --output-dir {output_dir} would write metrics.txt, metrics.json, '
        f'predictions.json, ced.png, visualizations/ among the annotation files of {folder}; '
        'choose an output folder outside it')
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_diverged_checkpoint_is_one_line_and_writes_nothing(trained, coco_dir, tmp_path):
    """NaN weights (a diverged --amp run) are refused when the checkpoint is read (they
    loaded like any others and gave NaN points), in one line naming it, before any output is
    written; a compared model too."""
    diverged = _diverged_copy(trained[0] / 'epoch_1.pth', tmp_path / 'diverged.pth')
    out = tmp_path / 'out'
    proc = run_tool('evaluate.py', '--checkpoint', diverged, '--image-dir', coco_dir / 'images',
                    '--annotation-dir', coco_dir / 'landmarks', '--split-file',
                    coco_dir / 'test.txt', '--output-dir', out, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: {diverged}: not a state dict of plain weights: head.final_layer.bias is not '
        'finite (NaN or Inf: a diverged run?)')
    assert not out.exists()  # not even the folder
    # the healthy model first, the diverged one compared: still nothing half-written
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--compare',
                    diverged, '--image-dir', coco_dir / 'images', '--annotation-dir',
                    coco_dir / 'landmarks', '--split-file', coco_dir / 'test.txt',
                    '--output-dir', out, check=False)
    assert proc.returncode == 1 and 'head.final_layer.bias is not finite' in proc.stderr
    assert not out.exists()


def _diverged_copy(checkpoint, path):
    """``checkpoint``'s weights with the head's bias NaN, as a diverged run leaves them."""
    from animal_landmarks_mm.checkpoints import read_checkpoint, to_mmpose_state_dict
    state_dict, meta = read_checkpoint(checkpoint)
    state_dict = to_mmpose_state_dict(state_dict)
    state_dict['head.final_layer.bias'] = torch.full_like(state_dict['head.final_layer.bias'],
                                                          float('nan'))
    torch.save(dict(state_dict=state_dict, meta=meta), path)
    return path


def _undecodable_copy(coco_dir, tmp_path):
    """The test split's annotation files and the images, in a folder ``d<0xff>`` whose name is
    no UTF-8 (a lone surrogate in Python): (its landmarks/, its images/)."""
    top = tmp_path / os.fsdecode(b'd\xff')
    top.mkdir()
    shutil.copytree(coco_dir / 'images', top / 'images')
    return _test_split(coco_dir, top / 'landmarks'), top / 'images'


def test_folders_whose_names_are_not_utf8_are_evaluated(trained, coco_dir, tmp_path):
    """cv2.imread crashed the process (a segmentation fault, exit 139) on a path that is not
    UTF-8; the images and annotations in such a folder work as any other."""
    folder, images = _undecodable_copy(coco_dir, tmp_path)
    out = tmp_path / 'eval'
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--image-dir',
                    images, '--annotation-dir', folder, '--output-dir', out, '--visualize',
                    '--num-vis-samples', '2', check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / 'metrics.json').read_text())['faces'] == 3
    assert len(list((out / 'visualizations').glob('*.jpg'))) == 2


def _images_with_a_ced_png(coco_dir, folder):
    """The images copied into ``folder``, with a person's picture named ced.png among them;
    returns every file's bytes."""
    shutil.copytree(coco_dir / 'images', folder)
    shutil.copy(next(folder.glob('*.png')), folder / 'ced.png')
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _coco_copy(coco_dir, root):
    """The converter's test.json and images under ``root`` (annotations/, images/), the layout
    --ann-file reads; returns the COCO file."""
    (root / 'annotations').mkdir(parents=True)
    shutil.copy(coco_dir / 'annotations' / 'test.json', root / 'annotations' / 'test.json')
    return root / 'annotations' / 'test.json'


@pytest.mark.parametrize('mode, inside', [('folder', ''), ('folder', 'eval'), ('coco', ''),
                                          ('coco', 'eval')])
def test_an_output_folder_among_the_images_is_refused(trained, coco_dir, tmp_path, mode,
                                                      inside):
    """ced.png (and metrics.json, predictions.json, the pictures) would land among the images,
    over a person's image of that name: refused in one line, every image as it was; with
    --ann-file, the image folders are those of the COCO file."""
    if mode == 'folder':
        images = tmp_path / 'images'
        inputs = ['--image-dir', images, '--annotation-dir',
                  _test_split(coco_dir, tmp_path / 'landmarks')]
    else:
        images = tmp_path / 'set' / 'images'
        inputs = ['--ann-file', _coco_copy(coco_dir, tmp_path / 'set')]
    before = _images_with_a_ced_png(coco_dir, images)
    output_dir = images / inside if inside else images
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', *inputs,
                    '--output-dir', output_dir, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: --output-dir {output_dir} would write metrics.txt, metrics.json, '
        f'predictions.json, ced.png, visualizations/ among the images of {images}; choose an '
        'output folder outside it')
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before


def test_images_in_the_output_folders_visualizations_are_refused(tmp_path):
    """Each run removes the pictures an earlier one left in visualizations/ (001_cat.jpg):
    images kept there would go with them."""
    from animal_landmarks_mm.evaluation import EvaluationInputError, check_outside_inputs
    images = tmp_path / 'eval' / 'visualizations' / 'cats'
    with pytest.raises(EvaluationInputError, match='its visualizations/ holds the images of'):
        check_outside_inputs(tmp_path / 'eval', image_dirs=[images])
    check_outside_inputs(tmp_path / 'eval', tmp_path / 'landmarks', [tmp_path / 'images'])


def test_a_missing_image_folder_is_one_line_before_any_file_is_read(coco_dir, tmp_path):
    """Not one 'left out: image not found' line per annotation file, then 'no faces'."""
    nowhere = tmp_path / 'nowhere'
    proc = run_tool('evaluate.py', '--checkpoint', tmp_path / 'missing.pth', '--image-dir',
                    nowhere, '--annotation-dir', coco_dir / 'landmarks', '--output-dir',
                    tmp_path / 'out', check=False)
    assert proc.returncode == 1
    assert 'left out' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f'error: --image-dir {nowhere}: no such folder'


def test_listed_files_not_found_are_named_and_skipped_ones_not_counted(trained, coco_dir,
                                                                       tmp_path):
    """--split-file lists three files: one is gone, one was skipped in the annotator. The gone
    one is named; the skipped one is no 'missing or bad' file (it is left out quietly, as
    without a split file)."""
    from animal_landmarks_mm.annotation import load_annotation, save_annotation
    folder = _test_split(coco_dir, tmp_path / 'landmarks')
    gone, skipped, _ = (coco_dir / 'test.txt').read_text().split()
    (folder / gone).unlink()
    ann = load_annotation(folder / skipped)
    ann.status, ann.faces = 'skipped', []
    save_annotation(folder / skipped, ann)
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--image-dir',
                    coco_dir / 'images', '--annotation-dir', folder, '--split-file',
                    coco_dir / 'test.txt', '--output-dir', tmp_path / 'out')
    left_out = [line for line in proc.stderr.splitlines() if line.startswith('left out: ')]
    assert left_out == [f'left out: {coco_dir / "test.txt"}: 1 listed file is not in '
                        f'{folder}: {gone}']
    assert json.loads((tmp_path / 'out' / 'metrics.json').read_text())['faces'] == 1
    assert (tmp_path / 'out' / 'metrics.txt').read_text().startswith(
        'epoch_1.pth on 1 face\n=====================\n')  # not '1 faces'


@pytest.mark.timeout(300)  # before the fix, reading the FIFO waited for a writer for good
@pytest.mark.parametrize('flag', ['--split-file', '--ann-file'])
def test_a_fifo_as_split_or_coco_file_is_refused_not_waited_on(coco_dir, tmp_path, flag):
    fifo = tmp_path / 'listing'
    os.mkfifo(fifo)
    inputs = [flag, fifo] if flag == '--ann-file' else [
        '--image-dir', coco_dir / 'images', '--annotation-dir', coco_dir / 'landmarks', flag,
        fifo]
    proc = run_tool('evaluate.py', '--checkpoint', tmp_path / 'missing.pth', *inputs,
                    '--output-dir', tmp_path / 'out', check=False, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: {fifo}: not a regular file (a FIFO, a device or a folder): left alone')
    assert fifo.is_fifo()



def _broken_coco(case, coco_dir, root):
    """The test split as a COCO file under ``root`` with one defect; returns the file."""
    ann_file = _coco_copy(coco_dir, root)
    shutil.copytree(coco_dir / 'images', root / 'images')
    coco = json.loads(ann_file.read_text())
    image, ann = coco['images'][1], coco['annotations'][0]
    if case == 'not UTF-8':
        image['file_name'] = 'images/café.png'
        ann_file.write_bytes(json.dumps(coco, ensure_ascii=False).encode('latin-1'))
        return ann_file
    if case == 'nested too deeply':
        ann_file.write_text('[' * 100_000)
        return ann_file
    if case == 'infinite point':
        ann['keypoints'][0] = float('inf')
    elif case == 'huge point':
        ann['keypoints'][0] = 1e308
    elif case == 'width not a number':
        image['width'] = 'abc'
    elif case == 'box outside the image':
        ann['bbox'] = [5000, 5000, 50, 50]
    elif case == 'visibility 7':
        ann['keypoints'][2] = 7
    elif case == 'negative box':
        ann['bbox'][2] = -10
    elif case == 'name not Unicode':
        image['file_name'] = 'images/\udcff.png'
    elif case == 'image missing':
        (root / image['file_name']).unlink()
    elif case == 'image truncated':
        path = root / image['file_name']
        path.write_bytes(path.read_bytes()[:300])
    elif case == 'image of another size':
        image['width'] += 1
    ann_file.write_text(json.dumps(coco))  # Infinity as JavaScript writes it
    return ann_file


@pytest.mark.parametrize('case, message', [
    ('not UTF-8', "cannot read ('utf-8' codec can't decode"),
    ('nested too deeply', 'cannot read (JSON nested too deeply)'),
    ('infinite point', 'annotation 1: point 0 x is not a finite number (in float32, as mmpose '
     'reads it): inf'),
    ('huge point', 'annotation 1: point 0 x is not a finite number (in float32, as mmpose reads '
     'it): 1e+308'),
    ('width not a number', '"width" must be a positive whole number, got \'abc\''),
    ('visibility 7', 'annotation 1: point 0 visibility must be one of 2 (visible), 1 (occluded), '
     '0 (absent), got 7'),
    ('name not Unicode', 'is not valid Unicode'),
    ('image missing', 'image not found: '),
    ('image truncated', 'image truncated: '),
    ('image of another size', 'do not match the image ('),
])
def test_a_broken_coco_file_is_one_line_before_anything_is_predicted_or_written(
        trained, coco_dir, tmp_path, case, message):
    """Each of these went through to a traceback, a crash in the pictures, numbers of
    impossible points, or a prediction of every image before the bad one: now one line naming
    the file (and the annotation), before any model runs; nothing written."""
    ann_file = _broken_coco(case, coco_dir, tmp_path / 'set')
    out = tmp_path / 'out'
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--ann-file',
                    ann_file, '--output-dir', out, '--visualize', check=False)
    assert proc.returncode == 1, proc.stdout
    assert 'Traceback' not in proc.stderr and 'evaluating' not in proc.stderr  # no model ran
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: {ann_file}: ') and message in last, last
    assert not out.exists()


@pytest.mark.parametrize('mutate', [
    lambda coco: [image.update(id=str(image['id'])) for image in coco['images']]
    + [ann.update(image_id=str(ann['image_id'])) for ann in coco['annotations']],
    lambda coco: [ann.pop('category_id') for ann in coco['annotations']],
    lambda coco: [ann.pop('id') for ann in coco['annotations']],
], ids=['string image ids', 'no category_id', 'no annotation id'])
def test_a_coco_file_is_read_by_the_rules_training_reads_it_by(coco_dir, tmp_path, mutate):
    """evaluate took files that training's pre-check took too, and mmpose then failed on (a
    traceback once training had started): both read a COCO file through one reader now, and
    refuse it in the same words."""
    from mmengine.config import Config

    from animal_landmarks_mm.evaluation import EvaluationInputError, faces_from_coco
    from animal_landmarks_mm.training import TrainingSetupError, check_annotation_files
    ann_file = _coco_copy(coco_dir, tmp_path)
    shutil.copytree(coco_dir / 'images', tmp_path / 'images')
    coco = json.loads(ann_file.read_text())
    mutate(coco)
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(EvaluationInputError) as evaluated:
        faces_from_coco(ann_file)
    cfg = Config(dict(test_dataloader=dict(dataset=dict(ann_file=str(ann_file)))))
    with pytest.raises(TrainingSetupError) as trained:
        check_annotation_files(cfg, ('test_dataloader',))
    assert str(evaluated.value).startswith(f'{ann_file}: ')
    assert str(trained.value) == f'test_dataloader: {evaluated.value}'


def test_faces_mmpose_leaves_out_of_a_coco_file_are_left_out(coco_dir, tmp_path):
    """Crowd faces were scored, although mmpose's dataset (hence tools/test.py, whose numbers
    evaluate's equal) leaves them out: left out here by training's rule, and named. (A
    num_keypoints of 0 beside labelled points, which mmpose left out too, is refused now.)"""
    from animal_landmarks_mm.evaluation import faces_from_coco
    from animal_landmarks_mm.schedule import read_training_faces
    ann_file = _coco_copy(coco_dir, tmp_path)
    shutil.copytree(coco_dir / 'images', tmp_path / 'images')
    coco = json.loads(ann_file.read_text())
    crowd, also_crowd, *kept = coco['annotations']
    assert kept
    crowd['iscrowd'], also_crowd['iscrowd'] = 1, True
    ann_file.write_text(json.dumps(coco))
    faces, left_out = faces_from_coco(ann_file)
    assert len(faces) == len(kept) == read_training_faces(str(ann_file))[1]
    assert [face.points[:, 0].tolist() for face in faces] == [ann['keypoints'][0::3]
                                                              for ann in kept]
    assert left_out == [f"{ann_file}: 2 annotations that mmpose's dataset leaves out too "
                        '(crowd, without labelled points, or a box of no size on the image): '
                        f'ids {crowd["id"]}, {also_crowd["id"]}']


def test_faces_mmpose_leaves_out_are_not_refused_by_evaluate(coco_dir, tmp_path):
    """A face of no labelled point (every flag 0: a face boxed and never pointed, in a file of
    another tool), a crowd face of no size, a box off the image and a box of negative width:
    training leaves them out and trains, evaluate refused the whole file over them (it
    validated every annotation as the converter's)."""
    from animal_landmarks_mm.evaluation import faces_from_coco
    from animal_landmarks_mm.schedule import read_training_faces
    ann_file = _coco_copy(coco_dir, tmp_path)
    shutil.copytree(coco_dir / 'images', tmp_path / 'images')
    coco = json.loads(ann_file.read_text())
    last_id = max(ann['id'] for ann in coco['annotations'])
    coco['annotations'][2:2] = [dict(coco['annotations'][-1], id=last_id + k, bbox=list(
        coco['annotations'][-1]['bbox'])) for k in (1, 2)]  # two more faces of its image
    unpointed, crowd, off_the_image, negative, *kept = coco['annotations']
    assert kept
    unpointed.update(keypoints=[0] * len(unpointed['keypoints']), num_keypoints=0)
    crowd.update(iscrowd=1, bbox=[crowd['bbox'][0], crowd['bbox'][1], 0, 0], area=0)
    off_the_image['bbox'] = [5000, 5000, 50, 50]
    negative['bbox'][2] = -10
    ann_file.write_text(json.dumps(coco))
    faces, left_out = faces_from_coco(ann_file)
    assert len(faces) == len(kept) == read_training_faces(str(ann_file))[1]
    left = (unpointed, crowd, off_the_image, negative)
    assert left_out == [f"{ann_file}: 4 annotations that mmpose's dataset leaves out too "
                        '(crowd, without labelled points, or a box of no size on the image): '
                        f'ids {", ".join(str(ann["id"]) for ann in left)}']


def test_a_pictures_name_is_one_file_name_whatever_the_image_names():
    """A COCO file mixing absolute and relative file_names: the root '/' was joined into a
    picture's name (`000_/_data_1.jpg`), and --visualize failed on it after metrics.* were
    written."""
    from animal_landmarks_mm.evaluation import _picture_stems
    assert _picture_stems(['/data/a/1.png', 'images/b/1.png', '//srv/x.png']) == [
        'data_a_1', 'images_b_1', 'srv_x']
    assert _picture_stems(['images/a/1.png', 'images/b/1.png']) == ['a_1', 'b_1']
    assert _picture_stems(['/x/1.png', '/x/2.png']) == ['1', '2']


def test_images_of_one_name_in_two_folders_are_told_apart(trained, coco_dir, tmp_path):
    """a/1.png and b/1.png: with --ann-file, predictions.json named both 1.png (the annotation
    folder's route kept a/1.png), and their pictures were both ..._1.jpg. Both routes keep the
    folders now (relative to --image-dir; the COCO file's file_name), and the pictures say
    which image they show."""
    from animal_landmarks_mm.annotation import load_annotation, save_annotation
    from animal_landmarks_mm.converter import convert
    top = tmp_path / 'set'
    for folder, name in zip('ab', (coco_dir / 'test.txt').read_text().split()):
        ann = load_annotation(coco_dir / 'landmarks' / name)
        (top / 'images' / folder).mkdir(parents=True)
        shutil.copy(coco_dir / 'images' / ann.image, top / 'images' / folder / '1.png')
        ann.image = f'{folder}/1.png'
        (top / 'landmarks' / folder).mkdir(parents=True)
        save_annotation(top / 'landmarks' / folder / '1.json', ann)
    convert(top / 'landmarks', top / 'images', top, train_ratio=0, val_ratio=0, test_ratio=1,
            progress=False)
    routes = {'folder': ['--image-dir', top / 'images', '--annotation-dir', top / 'landmarks'],
              'coco': ['--ann-file', top / 'annotations' / 'test.json']}
    names, pictures = {}, {}
    for route, inputs in routes.items():
        out = tmp_path / route
        run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', *inputs,
                 '--output-dir', out, '--visualize')
        names[route] = sorted(p['image'] for p in
                              json.loads((out / 'predictions.json').read_text()))
        pictures[route] = sorted(p.name.split('_', 1)[1]
                                 for p in (out / 'visualizations').iterdir())
    assert names == dict(folder=['a/1.png', 'b/1.png'], coco=['images/a/1.png', 'images/b/1.png'])
    assert pictures == dict(folder=['a_1.jpg', 'b_1.jpg'], coco=['a_1.jpg', 'b_1.jpg'])


def test_an_image_that_cannot_be_decoded_leaves_its_faces_out(trained, coco_dir, tmp_path):
    """A PNG whose IDAT chunk is corrupt passes the checks before a model runs (its header and
    its end are whole): it stopped the evaluation after the other images were predicted. Its
    faces are left out now, named in a line, and the others evaluated."""
    from animal_landmarks_mm.annotation import load_annotation
    folder = _test_split(coco_dir, tmp_path / 'landmarks')
    shutil.copytree(coco_dir / 'images', tmp_path / 'images')
    broken = tmp_path / 'images' / load_annotation(sorted(folder.iterdir())[0]).image
    data = bytearray(broken.read_bytes())
    start = data.index(b'IDAT') + 20
    data[start:start + 40] = bytes(b ^ 0xff for b in data[start:start + 40])
    broken.write_bytes(bytes(data))
    out = tmp_path / 'out'
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--image-dir',
                    tmp_path / 'images', '--annotation-dir', folder, '--output-dir', out,
                    '--visualize', check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    left_out = [line for line in proc.stderr.splitlines() if line.startswith('left out: ')]
    assert left_out == [f'left out: {broken}: not an image OpenCV can decode (its 1 face)']
    assert json.loads((out / 'metrics.json').read_text())['faces'] == 2
    predictions = json.loads((out / 'predictions.json').read_text())
    assert broken.name not in {p['image'] for p in predictions} and len(predictions) == 2
    assert len(list((out / 'visualizations').glob('*.jpg'))) == 2
    assert broken.read_bytes() == bytes(data)


def test_names_in_left_out_lines_reach_the_terminal_escaped(coco_dir, tmp_path):
    """An escape sequence in a file's name (red text here; others clear the screen) is shown
    escaped in the 'left out' lines, not run by the terminal."""
    folder = _test_split(coco_dir, tmp_path / 'landmarks')
    (folder / 'odd \x1b[31mRED.json').write_text('{')
    proc = run_tool('evaluate.py', '--checkpoint', tmp_path / 'missing.pth', '--image-dir',
                    coco_dir / 'images', '--annotation-dir', folder, '--output-dir',
                    tmp_path / 'out', check=False)
    assert '\x1b' not in proc.stderr
    assert any(line.startswith('left out: ') and 'odd \\x1b[31mRED.json: broken JSON' in line
               for line in proc.stderr.splitlines()), proc.stderr


@pytest.mark.parametrize('args, message', [
    (['--num-vis-samples', '-2'], '--num-vis-samples must be 0 or more, not -2'),
    (['--ann-file', 'test.json', '--annotation-dir', 'landmarks', '--image-dir', 'images'],
     '--ann-file names its images and annotations itself: give it without --annotation-dir '
     'and --image-dir'),
    (['--ann-file', 'test.json', '--image-dir', 'images'],
     '--ann-file names its images and annotations itself: give it without --annotation-dir '
     'and --image-dir'),
])
def test_arguments_that_cannot_go_together_are_refused(tmp_path, args, message):
    """A negative count took that many faces off the end of the list of pictures; folders
    given with --ann-file were silently not read."""
    if '--ann-file' not in args:
        args = [*args, '--annotation-dir', 'landmarks', '--image-dir', 'images']
    proc = run_tool('evaluate.py', '--checkpoint', 'x.pth', '--output-dir', tmp_path / 'out',
                    *args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(f'error: {message}')


def test_long_image_names_get_pictures_of_a_name_the_disk_takes(trained, coco_dir, tmp_path):
    """Images whose names are legal (255 bytes) but leave no room for the rank and '.jpg':
    cv2.imwrite returned False for the longer picture name, unchecked, and the pictures were
    silently missing. Each is cut to 255 bytes on a character boundary, ranks apart."""
    from animal_landmarks_mm.annotation import load_annotation, save_annotation
    folder = _test_split(coco_dir, tmp_path / 'landmarks')
    (tmp_path / 'images').mkdir()
    for k, path in enumerate(sorted(folder.iterdir())):
        ann = load_annotation(path)
        long_name = f'{"ü" * 125 if k == 0 else "a" * 250}{k}.png'  # 255 bytes
        shutil.copy(coco_dir / 'images' / ann.image, tmp_path / 'images' / long_name)
        ann.image = long_name
        save_annotation(path, ann)
    out = tmp_path / 'out'
    run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--image-dir',
             tmp_path / 'images', '--annotation-dir', folder, '--output-dir', out,
             '--visualize', '--num-vis-samples', '3')
    pictures = sorted(p.name for p in (out / 'visualizations').iterdir())
    assert len(pictures) == 3
    for picture in pictures:
        assert picture.endswith('.jpg') and len(picture.encode()) <= 255
        assert cv2.imread(str(out / 'visualizations' / picture)) is not None
    assert any('üü' in p for p in pictures)


def test_outputs_replace_what_is_there_never_write_through_it(trained, coco_dir, tmp_path):
    """metrics.txt, ced.png and the pictures are written beside their place and moved over it,
    as metrics.json: a killed run leaves the old file or the new one whole, and a link left
    there is replaced, not written through into the file it points to. cv2.imwrite crashed the
    process (a segmentation fault) on an output folder whose name is not UTF-8."""
    out = tmp_path / os.fsdecode(b'd\xff') / 'eval'
    out.mkdir(parents=True)
    notes, picture = tmp_path / 'notes.txt', tmp_path / 'picture.png'
    notes.write_text('my notes\n')
    shutil.copy(next((coco_dir / 'images').glob('*.png')), picture)
    before = picture.read_bytes()
    (out / 'metrics.txt').symlink_to(notes)
    (out / 'ced.png').symlink_to(picture)
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--image-dir',
                    coco_dir / 'images', '--annotation-dir', coco_dir / 'landmarks',
                    '--split-file', coco_dir / 'test.txt', '--output-dir', out, '--visualize',
                    '--num-vis-samples', '2', check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert notes.read_text() == 'my notes\n' and picture.read_bytes() == before
    for name in ('metrics.txt', 'ced.png'):
        assert not (out / name).is_symlink() and (out / name).is_file()
    assert 'per point' in (out / 'metrics.txt').read_text()
    assert cv2.imread(str(tmp_path / 'ced.png'), cv2.IMREAD_UNCHANGED) is None  # not there
    assert len(list((out / 'visualizations').glob('*.jpg'))) == 2
    assert not [p for p in out.rglob('*') if p.name.endswith('.animal-landmarks-tmp')]
    assert f'outputs in {tmp_path}/d\\udcff/eval: metrics.txt' in proc.stdout  # escaped


def test_folders_named_like_pictures_cost_those_pictures_not_the_run(trained, coco_dir,
                                                                     tmp_path):
    """A folder named like a picture ended the run after the earlier outputs were removed
    (unlink, then the picture's write: IsADirectoryError); it is left, and each picture that
    would go there is one warning."""
    out = tmp_path / 'eval'
    stems = [name.rsplit('.', 1)[0] for name in (coco_dir / 'test.txt').read_text().split()]
    folders = [out / 'visualizations' / '999_x.jpg'] + [
        out / 'visualizations' / f'{rank:03d}_{stem}.jpg' for rank in range(3) for stem in stems]
    for folder in folders:
        folder.mkdir(parents=True)
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--image-dir',
                    coco_dir / 'images', '--annotation-dir', coco_dir / 'landmarks',
                    '--split-file', coco_dir / 'test.txt', '--output-dir', out, '--visualize',
                    '--num-vis-samples', '3', check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(folder.is_dir() for folder in folders)
    assert (out / 'metrics.json').is_file() and (out / 'ced.png').is_file()
    warnings = [line for line in proc.stderr.splitlines() if 'no picture drawn' in line]
    assert len(warnings) == 3 and all(line.startswith('warning: no picture drawn: ') and
                                      line.endswith('.jpg is a folder') for line in warnings)


def test_faces_left_out_of_the_inter_ocular_numbers_are_counted(trained, coco_dir, tmp_path):
    """A face whose eye corners (points 11 and 19) are absent or on one spot has no
    inter-ocular distance: left out of NME, FR and AUC. metrics.txt and the printed summary say
    how many, so that the numbers' coverage is stated."""
    from animal_landmarks_mm.annotation import load_annotation, save_annotation
    folder = _test_split(coco_dir, tmp_path / 'landmarks')
    first = sorted(folder.iterdir())[0]
    ann = load_annotation(first)
    ann.faces[0].landmarks[19] = ann.faces[0].landmarks[11]  # one spot: distance 0
    save_annotation(first, ann)
    out = tmp_path / 'out'
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--image-dir',
                    coco_dir / 'images', '--annotation-dir', folder, '--output-dir', out)
    row = ('faces without eye corners  1   (points 11 and 19 absent or on one spot: out of the '
           'inter-ocular numbers)')
    assert row in (out / 'metrics.txt').read_text() and row in proc.stdout
    assert json.loads((out / 'metrics.json').read_text())['faces_without_eye_corners'] == 1


def test_a_model_without_a_curve_says_why_in_the_legend(tmp_path, monkeypatch):
    """Eye corners on one spot have no distance either: the legend said 'no face has both eye
    corners' of faces that had both."""
    import matplotlib.pyplot as plt

    from animal_landmarks_mm.evaluation import plot_ced
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, 'close', lambda fig: (figures.append(fig), real_close(fig)))
    plot_ced({'run/best.pth': np.array([np.nan, np.nan])}, tmp_path / 'ced.png')
    [legend] = [text.get_text() for text in figures[0].axes[0].get_legend().get_texts()]
    assert legend == ('run/best.pth (no curve: in every face points 11 and 19 are absent or '
                      'on one spot)')
    assert cv2.imread(str(tmp_path / 'ced.png')) is not None


def test_a_coco_face_with_points_just_off_the_picture_is_read(tmp_path):
    """The converter takes points up to a tenth of the picture off it and writes the box it
    makes of them cut to the picture; --ann-file checked that box as an annotated one, which
    must hold half the points, and refused the whole file."""
    from animal_landmarks_mm.annotation import Face
    from animal_landmarks_mm.converter import face_box
    from animal_landmarks_mm.evaluation import faces_from_coco
    from animal_landmarks_mm.schema import VISIBLE
    (tmp_path / 'images').mkdir()
    assert cv2.imwrite(str(tmp_path / 'images' / 'a.png'), np.zeros((80, 100, 3), np.uint8))
    # a face cut by the right edge: most points up to 8 px past it (the tolerance is 10)
    points = [(97.0 + (k % 8) * 1.5, 10.0 + 2 * k) for k in range(28)]
    box = face_box(Face(points), 100, 80)
    keypoints = [v for x, y in points for v in (x, y, VISIBLE)]
    coco = dict(images=[dict(id=1, file_name='images/a.png', width=100, height=80)],
                annotations=[dict(id=7, image_id=1, category_id=1, keypoints=keypoints,
                                  num_keypoints=28, bbox=list(box), area=box[2] * box[3],
                                  iscrowd=0)],
                categories=[dict(id=1, name='face')])
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'test.json').write_text(json.dumps(coco))
    faces, left_out = faces_from_coco(tmp_path / 'annotations' / 'test.json')
    assert not left_out
    assert len(faces) == 1 and np.allclose(faces[0].points[:, 0], [p[0] for p in points])


def test_a_face_whose_points_lie_within_a_pixel_is_pictured(tmp_path):
    """A face whose points all lie within one pixel (the format allows it; check_annotations
    finds 'points collapsed') has a box of no size: its crop was empty, and --visualize
    stopped with OpenCV's traceback (cv2.resize: !ssize.empty()). The picture shows the pixels
    around it."""
    from animal_landmarks_mm.annotation import Face
    from animal_landmarks_mm.converter import face_box_xyxy
    from animal_landmarks_mm.evaluation import EvalFace, draw_comparison
    image = tmp_path / 'a.png'
    assert cv2.imwrite(str(image), np.full((80, 100, 3), 90, np.uint8))
    points = [(50.2 + 0.01 * k, 40.1 + 0.01 * k) for k in range(28)]
    box = face_box_xyxy(Face(points), 100, 80)
    assert int(box[0]) == int(box[2]) and int(box[1]) == int(box[3])  # within one pixel
    face = EvalFace(image_path=image, image_name='a.png', width=100, height=80,
                    points=np.array(points), visibility=np.full(28, 2), box=np.array(box))
    draw_comparison(face, np.array(points) + 1, 0.5, tmp_path / 'picture.jpg')
    picture = cv2.imread(str(tmp_path / 'picture.jpg'))
    assert picture is not None and min(picture.shape[:2]) >= 384


def test_a_face_is_pictured_where_the_enlarged_picture_shows_it(tmp_path):
    """cv2.resize maps a pixel's centre u to (u + 0.5) * scale - 0.5: a point on a pixel is
    drawn on that pixel's enlargement (times the scale alone drew it 7.5 px up and left of it
    at this face's enlargement of 16)."""
    from animal_landmarks_mm.evaluation import EvalFace, draw_comparison
    image = np.zeros((200, 200, 3), np.uint8)
    image[100, 100] = 255
    assert cv2.imwrite(str(tmp_path / 'a.png'), image)
    points = np.tile([100.0, 100.0], (28, 1))
    visibility = np.zeros(28, int)
    visibility[0] = 2  # the ground truth's point 0 alone drawn, green; none predicted (NaN)
    face = EvalFace(tmp_path / 'a.png', 'a.png', 200, 200, points, visibility,
                    np.array([96.0, 96.0, 104.0, 104.0]))
    draw_comparison(face, np.full((28, 2), -1e4), 0.0, tmp_path / 'picture.png')
    picture = cv2.imread(str(tmp_path / 'picture.png'))
    assert picture.shape[:2] == (384, 384)  # 24 px enlarged 16 times: pixel 100 at 191.5..207.5
    blue, green, red = np.moveaxis(picture.astype(int), 2, 0)
    ys, xs = np.nonzero((green > 150) & (blue < 100) & (red < 100))  # the green dot
    assert abs(xs.mean() - 199.5) < 0.6 and abs(ys.mean() - 199.5) < 0.6, (xs.mean(), ys.mean())


def test_a_compared_model_that_is_not_there_is_found_before_any_prediction(trained, coco_dir,
                                                                           tmp_path):
    """Both models load before either predicts: a misnamed --compare was found after the
    first model had predicted every face."""
    proc = run_tool('evaluate.py', '--checkpoint', trained[0] / 'epoch_1.pth', '--ann-file',
                    coco_dir / 'annotations' / 'test.json', '--output-dir', tmp_path / 'out',
                    '--compare', tmp_path / 'typo.pth', check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f'error: checkpoint not found: {tmp_path / "typo.pth"}')
    assert 'evaluating epoch_1.pth' not in proc.stderr and not (tmp_path / 'out').exists()


@pytest.mark.parametrize('flag, name', [('--ann-file', 'predictions.json'),
                                        ('--split-file', 'metrics.txt'),
                                        ('link', 'predictions.json')])
def test_an_input_file_an_output_would_replace_is_refused(coco_dir, tmp_path, flag, name):
    """Each run removes its outputs before it writes them: a COCO file or split file that is
    one of them (or a link to one's place) was replaced by the predictions; refused in one line
    before anything is read, the file as it was."""
    out = tmp_path / 'out'
    out.mkdir()
    given = out / name
    if flag == '--split-file':
        shutil.copy(coco_dir / 'test.txt', given)
        args = ['--image-dir', coco_dir / 'images', '--annotation-dir', coco_dir / 'landmarks',
                flag, given]
    else:
        shutil.copy(coco_dir / 'annotations' / 'test.json', given)
        if flag == 'link':  # given through a link to the output's place
            given = tmp_path / 'test.json'
            given.symlink_to(out / name)
        args = ['--ann-file', given]
    before = (out / name).read_bytes()
    proc = run_tool('evaluate.py', '--checkpoint', tmp_path / 'model.pth', *args,
                    '--output-dir', out, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: {given} is the {name} --output-dir {out} would replace; choose another output '
        'folder, or move the file')
    assert (out / name).read_bytes() == before and os.listdir(out) == [name]


def test_a_failed_write_leaves_no_earlier_runs_output_beside_this_runs(trained, coco_dir,
                                                                       tmp_path):
    """Evaluated again into the same folder with another model, a write that fails partway (a
    disk filling up: here the process's file size limit, a real EFBIG) leaves part of the new
    run's outputs and none of the earlier run's: the earlier ced.png, another model's curve,
    stayed byte for byte beside the new metrics with nothing to tell them apart."""
    resource = pytest.importorskip('resource')
    import signal

    from animal_landmarks_mm import evaluation
    faces, _ = evaluation.faces_from_annotation_dir(coco_dir / 'landmarks', coco_dir / 'images',
                                                    coco_dir / 'test.txt')
    out = tmp_path / 'out'
    evaluation.evaluate(trained[0] / 'epoch_1.pth', faces, out, progress=False)
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(earlier) == {'metrics.json', 'metrics.txt', 'predictions.json', 'ced.png'}
    # dated an hour back: a file of this run is newer (the two models may give equal numbers)
    an_hour_ago = time.time() - 3600
    for name in earlier:
        os.utime(out / name, (an_hour_ago, an_hour_ago))
    # room for the metrics and predictions, not for the picture: the failure comes after
    # some of the new outputs are written
    limit = len(earlier['ced.png']) // 2
    assert max(len(data) for name, data in earlier.items() if name != 'ced.png') < limit // 2
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # past the limit the kernel sends SIGXFSZ, which ends the process unless ignored (the
    # write then fails with EFBIG)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError) as caught:
            evaluation.evaluate(trained[0] / 'best_NME_epoch_1.pth', faces, out,
                                progress=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert caught.value.errno == errno.EFBIG
    assert (out / 'metrics.txt').read_text().startswith('best_NME_epoch_1.pth on 3 faces')
    left = {p.name: p.stat().st_mtime for p in out.iterdir()}
    assert 'ced.png' not in left  # the earlier one is gone, the new one never written whole
    assert {'metrics.json', 'metrics.txt'} <= set(left)
    assert not [name for name, mtime in left.items() if mtime < an_hour_ago + 60]
