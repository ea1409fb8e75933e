"""The predict-review-retrain loop end to end on synthetic data, with the real tools:
annotate (the first half, by a 'person') -> convert -> train -> infer --rank on the rest ->
review in the annotator's session (correct, accept) -> check -> convert -> retrain."""
import json
import shutil

from animal_landmarks_mm.annotate import AnnotationSession
from animal_landmarks_mm.annotation import load_annotation
from animal_landmarks_mm.synthetic import make_synthetic_dataset
from conftest import MAIN_CONFIG, TINY, run_tool


def test_the_loop_runs_end_to_end(tmp_path):
    make_synthetic_dataset(tmp_path / 'synthetic', 24, seed=21, min_size=160, max_size=200,
                           progress=False)
    images, truth = tmp_path / 'synthetic' / 'images', tmp_path / 'synthetic' / 'landmarks'
    landmarks = tmp_path / 'data' / 'landmarks'  # the annotator's output folder
    landmarks.mkdir(parents=True)
    names = sorted(p.name for p in images.iterdir())
    for name in names[:12]:  # the first 12 annotated by hand (here: the exact points)
        shutil.copy(truth / name.replace('.png', '.json'), landmarks)

    def convert(out):
        return run_tool('dataset.py', '--annotation-dir', landmarks, '--image-dir', images,
                        '--output-dir', out, '--train-ratio', '0.5', '--val-ratio', '0.5',
                        '--test-ratio', '0', '--no-progress').stdout

    convert(tmp_path / 'coco1')
    run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path / 'model1', '--data-root',
             tmp_path / 'coco1', '--cfg-options', *TINY)
    model = tmp_path / 'model1' / 'epoch_1.pth'

    # predictions for the other 12, straight into the annotator's folder, ranked
    run_tool('infer.py', images, '--checkpoint', model, '--out-dir', tmp_path / 'infer',
             '--annotation-dir', landmarks, '--rank')
    ranking = json.loads((tmp_path / 'infer' / 'ranking.json').read_text())
    assert sorted(r['image'] for r in ranking) == names[12:]  # the person's files untouched
    for name in names[:12]:
        assert load_annotation(landmarks / name.replace('.png', '.json')).status == 'annotated'
    summary = convert(tmp_path / 'coco2')
    assert '12 files of unreviewed predictions (status "predicted"), left out' in summary, \
        summary

    # review the most uncertain one: move every point to the truth, accept
    session = AnnotationSession(images, landmarks, annotator='reviewer',
                                order=[r['image'] for r in ranking])
    assert session.images[0] == ranking[0]['image']
    assert str(session.progress()).startswith('12 done')
    edit = session.open(session.images[0])
    assert edit.status == 'predicted'
    exact = load_annotation(truth / session.images[0].replace('.png', '.json'))
    for k, (x, y) in enumerate(exact.faces[0].landmarks):
        edit.place(k, x, y)
    assert edit.accept() == 1
    reviewed = load_annotation(session.save(edit))
    assert reviewed.status == 'annotated' and reviewed.meta['reviewed_by'] == 'reviewer'
    assert reviewed.faces[0].landmarks == exact.faces[0].landmarks

    # a labelling mistake in a person's file (the outer eye corners swapped): the checker
    # reads the folder (predictions left out), lists that file first, and it is fixed
    mistaken = landmarks / names[3].replace('.png', '.json')
    good = mistaken.read_bytes()
    raw = json.loads(good)
    points = raw['faces'][0]['landmarks']
    points[11], points[19] = points[19], points[11]
    mistaken.write_text(json.dumps(raw))
    run_tool('check_annotations.py', '--annotation-dir', landmarks, '--image-dir', images,
             '--output', tmp_path / 'report.json')
    report = json.loads((tmp_path / 'report.json').read_text())
    assert report and report[0]['annotation'] == mistaken.name, report[:3]
    assert report[0]['file'] == names[3]  # the image, as the annotator opens it (--files)
    predicted = {r['image'] for r in ranking[1:]}  # still predictions: never checked
    assert not predicted & {entry['image'] for entry in report}
    mistaken.write_bytes(good)

    # retrain on 13 faces, starting from the first model
    summary = convert(tmp_path / 'coco3')
    assert '11 files of unreviewed predictions' in summary
    counts = {line.split(':')[0].strip(): int(line.split(':')[1].split()[0])
              for line in summary.splitlines() if line.startswith(('train', 'val'))}
    assert counts['train'] + counts['val'] == 13
    proc = run_tool('train.py', MAIN_CONFIG, '--work-dir', tmp_path / 'model2', '--data-root',
                    tmp_path / 'coco3', '--checkpoint', model, '--cfg-options', *TINY)
    assert 'StrictLoadFromHook: loaded all 1839 tensors' in proc.stdout + proc.stderr
    assert (tmp_path / 'model2' / 'epoch_1.pth').is_file()
