"""The annotator's session logic: order, edits, undo, review of predictions, several faces,
saving without losing work, and which file belongs to which image."""
import errno
import json
import os
import shutil
import time
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest

from animal_landmarks_mm.annotate import (
    HISTORY_STEPS,
    MAX_FACES,
    MAX_REASON_CHARS,
    PICTURE_CHANGED_NOTICE,
    AnnotationConflictError,
    AnnotationSession,
    EditError,
    FaceEdit,
    OrderFileError,
    OutputFolderError,
    OutputFolderInUseError,
    UnsafeNameError,
    check_output_folder_free,
    lock_output_folder,
    read_order_file,
)
from animal_landmarks_mm.annotation import (
    ANNOTATION_MAX_FACES,
    NAME_MAX_BYTES,
    TEMPORARY_SUFFIX,
    AnnotationError,
    Face,
    ImageAnnotation,
    file_sha256,
    load_annotation,
    parse_annotation,
    save_annotation,
)
from animal_landmarks_mm.converter import AnnotationReader, list_annotation_files
from animal_landmarks_mm.errors import AnimalLandmarksError
from animal_landmarks_mm.schema import ABSENT, OCCLUDED, VISIBLE


def _images(folder, names, size=(80, 60)):
    folder.mkdir(exist_ok=True)
    for name in names:
        ok, data = cv2.imencode('.png', np.full((size[1], size[0], 3), 128, np.uint8))
        (folder / name).write_bytes(data.tobytes())
    return folder


@pytest.fixture
def session(tmp_path):
    images = _images(tmp_path / 'images', ('a.png', 'b.png', 'c.jpg'))
    (images / 'notes.txt').write_text('not an image')
    return AnnotationSession(images, tmp_path / 'out', annotator='tester')


def _fill(edit, start=0):
    for k in range(start, 28):
        assert edit.click(1.0 + k, 2.0 + k) == k


def _predicted_file(session, image, scores=True):
    """What tools/infer.py (or a review tool) writes: a model's points, not reviewed."""
    points = [(2.0 + k, 3.0 + k) for k in range(28)]
    face = Face(points, bbox=(1.0, 1.0, 40.0, 40.0),
                scores=[0.5 + k / 100 for k in range(28)] if scores else None)
    save_annotation(session.annotation_path(image), ImageAnnotation(
        image, 80, 60, [face], status='predicted', meta=dict(model='hrnet.pth')))


def test_points_come_in_order_with_their_meaning(session):
    assert session.images == ['a.png', 'b.png', 'c.jpg']
    edit = session.open('a.png')
    assert edit.prompt() == 'face 1 of 1, next: 0: temple, image-left'
    edit.click(10, 20)
    assert edit.prompt() == 'face 1 of 1, next: 1: cheek, image-left'
    _fill(edit, 1)
    assert edit.prompt() == 'face 1 of 1: complete' and edit.click(5, 5) is None


def test_clear_last_clear_all_and_correction(session):
    edit = session.open('a.png')
    edit.click(1, 1)
    edit.click(2, 2)
    assert edit.clear_last() == 1 and edit.current.next_index() == 1
    edit.clear_all()
    assert edit.current.points == [None] * 28
    _fill(edit)
    edit.select(12)
    assert edit.prompt().endswith('correcting: 12: left eye, upper lid, top')
    assert edit.click(40.5, 30.25) == 12
    assert edit.current.points[12] == (40.5, 30.25) and edit.selected is None


def test_occluded_and_absent(session):
    edit = session.open('a.png')
    assert edit.mark(OCCLUDED) == 0
    assert 'occluded' in edit.prompt()
    edit.click(3, 3)  # placed by estimate
    assert edit.mark(ABSENT) == 1  # no point; the order moves on
    assert edit.current.next_index() == 2
    _fill(edit, 2)
    session.save(edit)
    face = load_annotation(session.annotation_path('a.png')).faces[0]
    assert face.visibility[:3] == [OCCLUDED, ABSENT, VISIBLE]
    assert face.landmarks[0] == (3.0, 3.0) and face.landmarks[1] is None


def test_a_flag_set_by_mistake_is_unset(session):
    edit = session.open('a.png')
    edit.place(0, 5, 5)
    edit.set_visibility(0, OCCLUDED)
    assert edit.current.points[0] == (5.0, 5.0)  # an occluded point keeps its place
    edit.set_visibility(0, VISIBLE)  # the editor's o toggles back
    assert edit.current.visibility[0] == VISIBLE and edit.current.points[0] == (5.0, 5.0)
    edit.set_visibility(3, ABSENT)
    edit.set_visibility(3, VISIBLE)
    assert edit.current.next_index() == 1 and edit.current.visibility[3] == VISIBLE


def test_undo_and_redo_every_kind_of_edit(session):
    edit = session.open('a.png')
    states = [edit.to_json()]

    def did(action):
        action()
        states.append(edit.to_json())

    did(lambda: edit.place(0, 10, 11))
    did(lambda: edit.apply(dict(op='move', index=0, x=12.5, y=13.25)))
    did(lambda: edit.apply(dict(op='flag', index=1, flag=OCCLUDED)))
    did(lambda: edit.apply(dict(op='flag', index=2, flag=ABSENT)))
    did(lambda: edit.apply(dict(op='remove', index=0)))
    did(lambda: edit.apply(dict(op='box', box=[5, 6, 50, 40])))
    did(lambda: edit.set_face([(1.0 + k, 2.0 + k) for k in range(28)], (5, 6, 50, 40),
                              scores=[0.9] * 28, model='m'))
    did(lambda: edit.apply(dict(op='accept')))
    did(lambda: edit.apply(dict(op='new_face')))
    did(lambda: edit.apply(dict(op='place', face=1, index=0, x=30, y=30)))
    did(lambda: edit.apply(dict(op='remove_face', face=0)))
    did(lambda: edit.apply(dict(op='clear_face')))
    did(lambda: edit.apply(dict(op='skip', reason='bad quality')))
    for expected in reversed(states[:-1]):  # every step back...
        assert edit.undo()
        assert edit.to_json() == expected
    assert not edit.undo()
    for expected in states[1:]:  # ...and forward again
        assert edit.redo()
        assert edit.to_json() == expected
    assert not edit.redo()
    edit.undo()
    edit.place(5, 1, 1)  # a new edit drops what was undone
    assert not edit.redo()


def test_more_than_a_hundred_undo_steps(session):
    edit = session.open('a.png')
    for step in range(150):
        edit.place(step % 28, step % 70, step % 50)
    for _ in range(150):
        assert edit.undo()
    assert edit.current.points == [None] * 28 and not edit.undo()
    assert HISTORY_STEPS >= 100


def test_undo_goes_to_disk_like_any_edit(session):
    edit = session.open('a.png')
    _fill(edit)
    session.save(edit)
    edit.select(27)
    edit.click(70, 50)  # a correction
    session.save(edit)
    edit.undo()  # undoes the correction, not "the last point"
    session.save(edit)
    assert load_annotation(session.annotation_path('a.png')).faces[0].landmarks[27] == \
        (28.0, 29.0)


def test_bad_operations_are_refused_without_changing_anything(session):
    edit = session.open('a.png')
    before = edit.to_json()
    for op in (dict(op='explode'), dict(op='place', index=28, x=1, y=1),
               dict(op='place', index=0, x=float('nan'), y=1),
               dict(op='place', index=0, x=80, y=1), dict(op='place', index=True, x=1, y=1),
               dict(op='flag', index=0, flag=7), dict(op='box', box=[1, 1, 1.2, 30]),
               dict(op='place', face=3, index=0, x=1, y=1), 'place'):
        with pytest.raises(EditError):
            edit.apply(op)
    assert edit.to_json() == before and not edit.history
    edit.apply(dict(op='place', index=0, x=-0.5, y=59.5))  # the image's outer edge is fine
    assert issubclass(EditError, (AnimalLandmarksError, ValueError))


def test_several_faces_save_and_reopen(session):
    edit = session.open('b.png')
    _fill(edit)
    edit.new_face()
    assert edit.prompt().startswith('face 2 of 2, next: 0:')
    for k in range(28):  # another face (the same points twice would be one face)
        edit.click(3.0 + k, 2.0 + k)
    path = session.save(edit)
    ann = load_annotation(path)
    assert len(ann.faces) == 2 and ann.meta['annotator'] == 'tester' and ann.image == 'b.png'
    reopened = session.open('b.png')
    assert [f.points for f in reopened.faces] == [f.points for f in edit.faces]
    reopened.face = 1
    reopened.select(0)
    reopened.click(70, 50)
    session.save(reopened)
    assert load_annotation(path).faces[1].landmarks[0] == (70.0, 50.0)


def test_unfinished_work_goes_to_a_draft_the_converter_ignores(session):
    edit = session.open('a.png')
    edit.click(1, 1)
    draft = session.save(edit)
    assert draft.parent.name == '.drafts' and not session.is_done('a.png')
    assert list_annotation_files(session.output_dir) == []
    again = session.open('a.png')  # the draft comes back, nothing lost
    assert again.current.points[0] == (1.0, 1.0) and again.current.next_index() == 1
    _fill(again, 1)
    session.save(again)
    assert session.is_done('a.png') and not draft.exists()


def test_an_annotated_image_left_half_edited_is_to_do_again(session):
    done = session.open('a.png')
    _fill(done)
    session.save(done)
    assert session.is_done('a.png') and session.progress().done == 1
    reopened = session.open('a.png')
    reopened.new_face()
    reopened.click(5, 5)  # a second face begun, not finished: a draft beside the annotation
    draft = session.save(reopened)
    assert draft.parent.name == '.drafts' and session.annotation_path('a.png').is_file()
    # not forgotten: to do again, here and after a restart
    for current in (session, AnnotationSession(session.image_dir, session.output_dir)):
        assert not current.is_done('a.png') and current.next_to_do() == 0
        assert tuple(vars(current.progress()).values()) == (0, 0, 3, 3)
    # the draft deleted by hand: the image is done again once it is opened
    other = AnnotationSession(session.image_dir, session.output_dir)
    draft.rename(draft.with_name('kept.json.bak'))
    other.open('a.png')
    assert other.is_done('a.png') and other.progress().done == 1
    draft.with_name('kept.json.bak').rename(draft)
    finished = session.open('a.png')
    _fill(finished, 1)
    session.save(finished)
    assert session.is_done('a.png') and not draft.exists()
    assert session.progress().done == 1


def test_two_tabs_do_not_overwrite_each_other(session):
    first, second = session.open('a.png'), session.open('a.png')
    _fill(first)
    _fill(second)
    session.save(first)
    with pytest.raises(AnnotationConflictError, match='changed by someone else'):
        session.save(second)
    assert load_annotation(session.annotation_path('a.png')).faces[0].landmarks == \
        first.current.points


def test_a_draft_written_by_another_tab_is_not_overwritten(session):
    first, second = session.open('a.png'), session.open('a.png')
    first.click(1, 1)
    session.save(first)  # draft
    second.click(2, 2)
    with pytest.raises(AnnotationConflictError, match='another tab'):
        session.save(second)
    first.click(3, 3)
    session.save(first)  # its own draft: fine
    assert session.open('a.png').current.points[:2] == [(1.0, 1.0), (3.0, 3.0)]


def test_a_draft_older_than_its_annotation_file_is_set_aside_not_a_lock(session):
    begun = session.open('a.png')
    begun.click(1, 1)
    draft = session.save(begun)
    mine = draft.read_text()
    superseded = draft.parent / 'superseded'
    for restarted in (False, True):
        draft.write_text(mine)
        _predicted_file(session, 'a.png')  # e.g. tools/infer.py, or a sync, after the draft
        current = AnnotationSession(session.image_dir, session.output_dir) if restarted \
            else session
        opened = current.open('a.png')
        assert opened.status == 'predicted' and not opened.dirty  # the file, not the draft
        assert 'kept as' in opened.notice and not current.has_draft('a.png')
        assert sorted(p.read_text() for p in superseded.iterdir()) == [mine] * (1 + restarted)
        opened.accept()
        current.save(opened)  # saving works again: no conflict with the draft
        assert current.is_done('a.png')


def test_a_draft_made_on_another_picture_size_is_set_aside(session):
    begun = session.open('a.png')
    begun.click(1, 1)
    draft = session.save(begun)
    mine = draft.read_text()
    ok, data = cv2.imencode('.png', np.full((30, 40, 3), 128, np.uint8))
    (session.image_dir / 'a.png').write_bytes(data.tobytes())  # the picture replaced
    opened = session.open('a.png')
    assert (opened.width, opened.height) == (40, 30) and opened.current.points[0] is None
    assert 'made on a 80x60 version of the picture, now 40x30' in opened.notice
    assert not draft.exists()
    assert [p.read_text() for p in (draft.parent / 'superseded').iterdir()] == [mine]


def test_a_file_of_another_picture_size_is_refused_not_laundered(session):
    edit = session.open('a.png')
    _fill(edit)
    target = session.save(edit)
    raw = json.loads(target.read_text())
    raw['image_size'] = dict(width=40, height=30)  # annotated on a smaller version
    target.write_text(json.dumps(raw))
    before = target.read_bytes()
    with pytest.raises(AnnotationError, match='image_size 40x30 does not match the image '
                       r'a.png \(80x60\)'):
        session.open('a.png')
    assert target.read_bytes() == before


def _replace_picture(path, value):
    """Another picture of the same size under the same name (a new batch of IMG_0001.jpg...
    copied over the old), dated as an old file is (the digest of a picture changed just now
    is never kept: a change within the clock's tick would go unseen)."""
    ok, data = cv2.imencode('.png', np.full((60, 80, 3), value, np.uint8))
    path.write_bytes(data.tobytes())
    os.utime(path, ns=(time.time_ns() - 10**10,) * 2)


def test_a_picture_replaced_by_another_of_its_size_is_said_on_open(session):
    """image_size told only a picture of another size; the file now records its picture's
    SHA-256, and a file or draft opened on other bytes says so (a notice: a re-encoded picture
    keeps its points), until a save records the picture as it is."""
    picture = session.image_dir / 'a.png'
    edit = session.open('a.png')
    assert edit.notice == ''
    _fill(edit)
    target = session.save(edit)
    assert json.loads(target.read_text())['meta']['image_sha256'] == file_sha256(picture)
    begun = session.open('b.png')
    begun.click(1, 2)
    draft = session.save(begun)
    assert json.loads(draft.read_text())['image_sha256'] == file_sha256(
        session.image_dir / 'b.png')
    for name, value in (('a.png', 40), ('b.png', 200)):
        _replace_picture(session.image_dir / name, value)
    for restarted in (False, True):
        current = AnnotationSession(session.image_dir, session.output_dir) if restarted \
            else session
        for name in ('a.png', 'b.png'):
            opened = current.open(name)
            assert opened.notice == PICTURE_CHANGED_NOTICE, (name, opened.notice)
            assert not opened.read_only and opened.current.points[0] == (1.0, 2.0)
    assert session.has_draft('b.png')  # kept: the draft opened, not set aside
    opened = session.open('a.png')
    opened.place(0, 3.0, 4.0)
    session.save(opened)  # the points checked: the picture as it is now recorded
    assert json.loads(target.read_text())['meta']['image_sha256'] == file_sha256(picture)
    assert session.open('a.png').notice == ''
    # a file without a digest (an older version's, another tool's) is not compared
    raw = json.loads(target.read_text())
    del raw['meta']['image_sha256']
    target.write_text(json.dumps(raw))
    _replace_picture(picture, 90)
    assert session.open('a.png').notice == ''


def test_the_annotator_and_the_converter_choose_one_file_of_an_image(tmp_path):
    """Of two files naming one image, the converter kept the first by path and the annotator
    the one of its preferred name: the checker flagged one, the annotator opened the other,
    and training took the flagged one. A file naming './b.png' was b.png's to the converter
    but no image's to the annotator, whose new file of b.png the converter then left out
    (reviewer's /tmp/hunt_hitl dup and dot). One rule now (file_choice_key, image_key)."""
    images = _images(tmp_path / 'images', ('a.png', 'b.png'))
    _replace_picture(images / 'b.png', 200)  # two pictures, not one picture twice
    out = tmp_path / 'out'
    session = AnnotationSession(images, out, annotator='me')
    targets = {}
    for image in ('a.png', 'b.png'):
        edit = session.open(image)
        _fill(edit)
        targets[image] = session.save(edit)
    copy = json.loads(targets['a.png'].read_text())
    copy['faces'][0]['landmarks'][0] = [5.0, 6.0]  # another person's, sorting first by path
    copy['meta']['annotator'] = 'bob'
    (out / '00_from_bob.json').write_text(json.dumps(copy))
    dotted = json.loads(targets['b.png'].read_text())
    dotted['image'] = './b.png'
    targets['b.png'].write_text(json.dumps(dotted))
    reopened = AnnotationSession(images, out, annotator='me')
    assert reopened.annotation_path('a.png') == targets['a.png']
    assert reopened.is_done('b.png') and reopened.annotation_path('b.png') == targets['b.png']
    assert reopened.open('b.png').current.points[0] == (1.0, 2.0)
    contents = AnnotationReader(images, progress=False).read(out)
    assert sorted(r.ann_path for r in contents.records) == sorted(targets.values())
    assert [p for p in contents.problems if p.startswith(str(out / '00_from_bob.json'))]


def test_a_visibility_flag_must_be_a_whole_number(session):
    edit = session.open('a.png')
    for flag in (1.0, True, '1'):
        with pytest.raises(EditError, match='unknown visibility flag'):
            edit.set_visibility(0, flag)
    assert edit.current.visibility[0] == VISIBLE


def test_skip_progress_and_next_to_do(session):
    assert tuple(vars(session.progress()).values()) == (0, 0, 3, 3)
    assert session.next_to_do() == 0
    edit = session.open('a.png')
    edit.skip('no usable face')
    session.save(edit)
    ann = load_annotation(session.annotation_path('a.png'))
    assert ann.status == 'skipped' and ann.faces == [] and ann.status_reason == 'no usable face'
    assert str(session.progress()) == '1 done · 0 predicted · 2 to do'
    assert session.next_to_do() == 1
    assert session.next_to_do(after=2) == 1  # wraps past the done one


def test_predicted_images_are_to_review_until_accepted(session):
    _predicted_file(session, 'b.png')
    session = AnnotationSession(session.image_dir, session.output_dir, annotator='rev')
    progress = session.progress()
    assert (progress.done, progress.predicted, progress.to_do) == (0, 1, 3)
    assert session.next_to_do(after=0) == 1  # "next to do" visits predicted images too
    edit = session.open('b.png')
    assert edit.status == 'predicted' and edit.faces[0].predicted
    edit.place(3, 40, 30)  # a correction keeps it predicted: it needs the accept
    session.save(edit)
    saved = load_annotation(session.annotation_path('b.png'))
    assert saved.status == 'predicted' and saved.faces[0].landmarks[3] == (40.0, 30.0)
    # the model's scores were of its points, not of the corrected ones
    assert saved.faces[0].scores is None and saved.meta['model'] == 'hrnet.pth'
    edit.undo()
    assert edit.faces[0].scores is not None  # the model's points, its scores with them
    assert edit.accept() == 1 and edit.accept() == 0
    session.save(edit)
    saved = load_annotation(session.annotation_path('b.png'))
    assert saved.status == 'annotated' and saved.faces[0].scores is None
    assert saved.meta['reviewed_by'] == 'rev' and saved.meta['reviewed_at']
    assert saved.meta['model'] == 'hrnet.pth'  # provenance kept
    assert session.is_done('b.png') and session.progress().predicted == 0
    edit.undo()  # accepting is undoable: back to predicted, unreviewed
    session.save(edit)
    saved = load_annotation(session.annotation_path('b.png'))
    assert saved.status == 'predicted' and 'reviewed_by' not in saved.meta
    assert saved.faces[0].scores is not None


def test_the_annotators_own_prediction_is_predicted_too(session):
    edit = session.open('a.png')
    edit.set_face([(1.0 + k, 2.0 + k) for k in range(28)], (0, 0, 40, 40), scores=[0.8] * 28,
                  model='mine.pth')
    session.save(edit)
    saved = load_annotation(session.annotation_path('a.png'))
    assert saved.status == 'predicted' and saved.meta['model'] == 'mine.pth'
    edit.accept()
    session.save(edit)
    assert load_annotation(session.annotation_path('a.png')).status == 'annotated'


def test_foreign_files_are_kept_and_names_cannot_escape(session):
    foreign = session.output_dir / 'README.txt'
    foreign.write_text('mine')
    edit = session.open('a.png')
    _fill(edit)
    session.save(edit)
    assert foreign.read_text() == 'mine'
    for name in ('../x.png', '/etc/passwd', '../../out/a.png', 'notes.txt', 'zzz.png', ''):
        with pytest.raises(UnsafeNameError):
            session.open(name)


def test_hidden_images_are_neither_listed_nor_opened(tmp_path):
    images = _images(tmp_path / 'images', ('a.png', '.x.png'))
    session = AnnotationSession(images, tmp_path / 'out')
    assert session.images == ['a.png']
    with pytest.raises(UnsafeNameError, match="names starting with a dot"):
        session.open('.x.png')
    with pytest.raises(UnsafeNameError):
        session.annotation_path('.x.png')


def test_a_loop_of_links_in_a_folder_is_no_image_and_no_file_to_write_through(tmp_path):
    """One loop of links among the images ended the listing of the whole folder (DirEntry's
    is_file raised ELOOP): the annotator and the predictions refused a folder of thousands of
    images for it. It is no image, as a link to nothing is none; a loop named like an image's
    annotation file or sidecar is refused for that image alone, in one line, never followed."""
    folder = _images(tmp_path / 'images', ('a.png', 'b.png', 'c.png'))
    (folder / 'loop.png').symlink_to('loop.png')
    (folder / 'gone.png').symlink_to('nothing.png')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'b.json').symlink_to('b.json')
    (folder / 'c.png.json').symlink_to('c.png.json')  # a crawler sidecar's name
    session = AnnotationSession(folder, out)
    assert session.images == ['a.png', 'b.png', 'c.png']
    with pytest.raises(UnsafeNameError) as caught:
        session.open('b.png')
    assert str(caught.value) == f"'b.json' in {out} is a link that cannot be followed (a loop " \
        "of links)"
    for image in ('a.png', 'c.png'):
        edit = session.open(image)
        _fill(edit)
        session.save(edit)
        assert 'source' not in load_annotation(session.annotation_path(image)).meta
    assert (out / 'b.json').is_symlink()  # left as it was


def test_clicks_outside_the_image_are_refused(session):
    edit = session.open('a.png')
    with pytest.raises(ValueError, match='outside the 80x60 image'):
        edit.click(81, 10)


def test_crawler_provenance_is_kept(session):
    sidecar = session.image_dir / 'c.jpg.json'
    sidecar.write_text(json.dumps(dict(format='animal_landmarks_mm.source', source='safebooru',
                                       post_id=7)))
    edit = session.open('c.jpg')
    _fill(edit)
    session.save(edit)
    assert load_annotation(session.annotation_path('c.jpg')).meta['source']['post_id'] == 7
    # a sidecar that is a link out of the image folder, or huge, is not read
    secret = session.output_dir.parent / 'secret.json'
    secret.write_text(json.dumps(dict(token='hunter2')))
    (session.image_dir / 'a.png.json').symlink_to(secret)
    (session.image_dir / 'b.png.json').write_text('{"pad": "' + 'x' * (1 << 20) + '"}')
    for image in ('a.png', 'b.png'):
        edit = session.open(image)
        _fill(edit)
        session.save(edit)
        assert 'source' not in load_annotation(session.annotation_path(image)).meta


def test_an_annotation_file_beside_its_image_is_no_sidecar(tmp_path):
    """--output-dir the image folder, and a.png and a.jpg: a.png's file is a.png.json, the
    name of a crawler sidecar; it is never copied into itself."""
    folder = _images(tmp_path / 'images', ('a.png', 'a.jpg'))
    session = AnnotationSession(folder, folder)
    assert session.annotation_path('a.png').name == 'a.png.json'
    edit = session.open('a.png')
    _fill(edit)
    session.save(edit)
    sizes = []
    for _ in range(3):
        edit = session.open('a.png')
        edit.place(0, 5.0 + len(sizes), 5.0)
        session.save(edit)
        sizes.append(session.annotation_path('a.png').stat().st_size)
        assert 'source' not in load_annotation(session.annotation_path('a.png')).meta
    assert len(set(sizes)) == 1


def test_saving_keeps_what_the_file_said_of_itself(session):
    edit = session.open('a.png')
    _fill(edit)
    path = session.save(edit)
    raw = json.loads(path.read_text())
    raw['meta']['keypoint_scores'] = [[0.5] * 28]  # e.g. written by tools/infer.py
    path.write_text(json.dumps(raw))
    edit = session.open('a.png')
    edit.select(3)
    edit.click(9, 9)
    session.save(edit)
    meta = load_annotation(path).meta
    assert meta['keypoint_scores'] == [[0.5] * 28] and meta['annotator'] == 'tester'


# --- which file is whose -------------------------------------------------------------------


ADVERSARIAL = ['a.png', 'a.jpg', 'a_png.png', 'a.png.jpg', 'A.png', 'a.json.png', 'x.y.z.png',
               'a.PNG', 'é.png', unicodedata.normalize('NFD', 'é.png'), '日本.webp',
               'a.png.png', 'a.1.png', 'a.png.1.png']


def _save_marker(session, image, marker):
    """Annotate ``image`` with a point that says which image it was: x = marker."""
    edit = session.open(image)
    for k in range(28):
        edit.place(k, marker + k, 1.0 + k)  # a face with an area
    session.save(edit)


def test_every_image_has_its_own_file_whatever_the_names(tmp_path):
    images = _images(tmp_path / 'images', ADVERSARIAL)
    session = AnnotationSession(images, tmp_path / 'out')
    assert len(session.images) == len(ADVERSARIAL)
    names = [session.annotation_path(image).name for image in session.images]
    folded = {unicodedata.normalize('NFC', n).casefold() for n in names}
    assert len(folded) == len(names), names  # apart on case-insensitive disks too
    # the first in order keeps the plain name; a name differing only in case is taken
    assert session.annotation_path('A.png').name == 'A.json'
    assert session.annotation_path('a.PNG').name == 'a.PNG.json'
    for marker, image in enumerate(session.images):
        _save_marker(session, image, float(marker))
    for reopened in (session, AnnotationSession(images, tmp_path / 'out')):
        for marker, image in enumerate(session.images):
            edit = reopened.open(image)
            assert edit.image == image and edit.current.points[0][0] == marker
            assert load_annotation(reopened.annotation_path(image)).image == image
    assert len(list((tmp_path / 'out').glob('*.json'))) == len(ADVERSARIAL)


@pytest.mark.parametrize('seed', range(5))
def test_random_name_sets_map_one_to_one(tmp_path, seed):
    rng = np.random.default_rng(seed)
    parts = ['a', 'A', 'a_png', 'a.png', 'b', 'json', '1', 'é']
    names = set()
    while len(names) < 12:
        stem = '.'.join(rng.choice(parts, rng.integers(1, 4)))
        names.add(f'{stem}.{rng.choice(["png", "jpg", "PNG"])}')
    images = _images(tmp_path / 'images', sorted(names))
    session = AnnotationSession(images, tmp_path / 'out')
    half = session.images[::2]
    for image in half:
        _save_marker(session, image, float(session.images.index(image)))
    again = AnnotationSession(images, tmp_path / 'out')
    files = [again.annotation_path(image).name.casefold() for image in again.images]
    assert len(set(files)) == len(files)
    for image in again.images:
        edit = again.open(image)
        if image in half:
            assert edit.current.points[0][0] == session.images.index(image)
        else:
            assert edit.current.points[0] is None


def test_files_of_the_old_naming_are_found_through_their_image_field(tmp_path):
    images = _images(tmp_path / 'images', ('a.png', 'a.jpg', 'a_png.png'))
    out = tmp_path / 'out'
    out.mkdir()
    points = [(1.0 + k, 2.0 + k) for k in range(28)]
    for name, image in (('a_png.json', 'a.png'), ('a_jpg.json', 'a.jpg')):  # the old scheme
        save_annotation(out / name, ImageAnnotation(image, 80, 60, [Face(points)]))
    session = AnnotationSession(images, out)
    assert session.annotation_path('a.png').name == 'a_png.json'
    assert session.annotation_path('a.jpg').name == 'a_jpg.json'
    assert session.annotation_path('a_png.png').name == 'a_png.png.json'
    assert session.open('a_png.png').current.points[0] is None  # not a.png's points
    assert session.open('a.png').current.points == points
    assert session.progress().done == 2


def test_a_file_naming_another_image_is_never_shown(tmp_path):
    images = _images(tmp_path / 'images', ('a.png', 'b.png'))
    out = tmp_path / 'out'
    out.mkdir()
    points = [(1.0 + k, 2.0 + k) for k in range(28)]
    save_annotation(out / 'a.json', ImageAnnotation('b.png', 80, 60, [Face(points)]))
    save_annotation(out / 'gone.json', ImageAnnotation('gone.png', 80, 60, [Face(points)]))
    session = AnnotationSession(images, out)
    assert session.open('b.png').current.points == points  # its "image" says so
    assert session.open('a.png').current.points[0] is None
    assert session.annotation_path('a.png').name not in ('a.json', 'gone.json')
    _save_marker(session, 'a.png', 5.0)
    assert load_annotation(out / 'a.json').image == 'b.png'  # left alone


def test_a_broken_file_of_a_long_named_image_is_bound_to_it(tmp_path):
    """A long name's file is cut (fit_name): its broken file is still found by the cut name,
    not sidestepped by a second file."""
    from animal_landmarks_mm.annotation import fit_name
    image = 'a' * 251 + '.png'
    images = _images(tmp_path / 'images', (image,))
    out = tmp_path / 'out'
    out.mkdir()
    broken = out / fit_name('a' * 251, '.json')
    broken.write_text('{"format": "animal_landmarks_mm.annotation", "faces": [')
    session = AnnotationSession(images, out)
    assert session.annotation_path(image) == broken
    with pytest.raises(AnnotationError, match='broken|cannot|JSON'):
        session.open(image)
    assert sorted(p.name for p in out.iterdir() if p.suffix == '.json') == [broken.name]


def test_a_broken_file_is_shown_to_its_image_not_sidestepped(tmp_path):
    images = _images(tmp_path / 'images', ('a.png', 'b.png'))
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'a.json').write_text('{"format": "animal_landmarks_mm.annotation", "faces": [')
    session = AnnotationSession(images, out)
    assert session.annotation_path('a.png').name == 'a.json'
    with pytest.raises(AnnotationError, match='a.json'):
        session.open('a.png')
    edit = session.open('b.png')  # the others are fine
    _fill(edit)
    session.save(edit)


def test_stale_temporary_files_are_removed_when_a_session_opens(tmp_path):
    images = _images(tmp_path / 'images', ('a.png',))
    out = tmp_path / 'out'
    (out / '.drafts').mkdir(parents=True)
    old = out / f'.a.json.abcd1234{TEMPORARY_SUFFIX}'
    fresh = out / '.drafts' / f'.a.json.efgh5678{TEMPORARY_SUFFIX}'
    recent, foreign = out / f'.a.json.ijkl9012{TEMPORARY_SUFFIX}', out / '.notes.backup01.tmp'
    for path in (old, fresh, recent, foreign):
        path.write_text('{')
    long_ago = time.time() - 3600
    for path in (old, fresh, foreign):
        os.utime(path, (long_ago, long_ago))
    AnnotationSession(images, out)
    assert not old.exists() and not fresh.exists()  # the tool's own, older than 10 minutes
    assert recent.exists() and foreign.exists()  # a write in progress; someone else's


def test_an_output_folder_that_cannot_be_created_is_one_line(tmp_path):
    images = _images(tmp_path / 'images', ('a.png',))
    (tmp_path / 'file').write_text('not a folder')
    with pytest.raises(OutputFolderError, match='cannot create the output folder') as caught:
        AnnotationSession(images, tmp_path / 'file' / 'out')
    assert '\n' not in str(caught.value)
    assert isinstance(caught.value, (AnimalLandmarksError, OSError))


def test_errors_derive_from_the_package_base():
    for error in (AnnotationConflictError, UnsafeNameError, EditError, OutputFolderError,
                  OrderFileError):
        assert issubclass(error, AnimalLandmarksError)
    assert issubclass(AnnotationConflictError, RuntimeError)
    assert issubclass(UnsafeNameError, ValueError)


def test_a_file_list_sets_the_order(tmp_path):
    images = _images(tmp_path / 'images', ('a.png', 'b.png', 'c.png', 'd.png'))
    text = tmp_path / 'order.txt'
    text.write_text('# most uncertain first\nc.png\n\nmissing.png\ndata/raw/a.png\nc.png\n')
    assert read_order_file(text) == ['# most uncertain first', 'c.png', 'missing.png',
                                     'data/raw/a.png', 'c.png']
    ranking = tmp_path / 'ranking.json'
    ranking.write_text(json.dumps([{'file': 'd.png', 'score': 0.2}, {'image': 'b.png'}]))
    assert read_order_file(ranking) == ['d.png', 'b.png']
    listed = tmp_path / 'list.json'
    listed.write_text(json.dumps(['b.png', 'a.png']))
    assert read_order_file(listed) == ['b.png', 'a.png']
    session = AnnotationSession(images, tmp_path / 'out', order=read_order_file(text))
    assert session.images == ['c.png', 'a.png', 'b.png', 'd.png']  # the others follow
    assert session.unknown_in_order == ['missing.png']
    assert session.next_to_do() == 0
    for bad, message in (('{"files": []}', 'expected a JSON list'), ('[1, 2]', 'item 0'),
                         ('[{"name": "x"}]', 'item 0'), ('[', 'broken JSON'),
                         # a crafted or broken list: one line, not a traceback
                         ('[' * 100_000, 'nested too deeply'),
                         ('[{"file": "a.png", "file": "b.png"}]', 'the key "file" twice'),
                         ('[' + '9' * 5000 + ']', 'cannot read the file list')):
        (tmp_path / 'bad.json').write_text(bad)
        with pytest.raises(OrderFileError, match=message):
            read_order_file(tmp_path / 'bad.json')


def test_a_text_list_takes_names_as_image_boards_give_them(tmp_path):
    """A text list whose first name began with a bracket ('[artist] cat.png') was read as
    broken JSON; a name beginning with '#' was dropped as a comment without a word; a JSON list
    saved with a byte order mark was read as one name. A '#' line naming an image is that
    image; one naming none is a comment (not reported as missing)."""
    images = _images(tmp_path / 'images', ('[artist] cat.png', '#1 cat.png', 'b.png'))
    text = tmp_path / 'list.txt'
    text.write_text('[artist] cat.png\n# a comment\n# data/raw/b.png (done)\n#data/raw/b.png\n'
                    '#1 cat.png\n', encoding='utf-8')
    session = AnnotationSession(images, tmp_path / 'out', order=read_order_file(text))
    assert session.images == ['[artist] cat.png', '#1 cat.png', 'b.png']
    assert session.unknown_in_order == []
    marked = tmp_path / 'ranking.json'
    marked.write_text('\ufeff' + json.dumps(['b.png', '#1 cat.png']), encoding='utf-8')
    assert read_order_file(marked) == ['b.png', '#1 cat.png']
    # a .json file is JSON: broken, it is said so, not read as names
    (tmp_path / 'broken.json').write_text('[artist] cat.png\n')
    with pytest.raises(OrderFileError, match='broken JSON'):
        read_order_file(tmp_path / 'broken.json')


def test_a_listed_name_with_a_backslash_is_that_image_where_the_folder_has_it(tmp_path):
    """A backslash is a character of a file name here: a ranking that lists the image x\\y.png
    first visited y.png first (the name was cut as a Windows path), x\\y.png last. A name of
    no image still stands for its last part, of either kind of path."""
    images = _images(tmp_path / 'images', ('a.png', 'b.png', 'x\\y.png', 'y.png'))
    ranking = tmp_path / 'ranking.json'
    ranking.write_text(json.dumps([{'image': 'x\\y.png'}, {'image': 'C:\\data\\b.png'},
                                   {'image': 'raw/gone.png'}]))
    session = AnnotationSession(images, tmp_path / 'out', order=read_order_file(ranking))
    assert session.images == ['x\\y.png', 'b.png', 'a.png', 'y.png']
    assert session.unknown_in_order == ['raw/gone.png']  # as listed


def test_a_large_folder_opens_quickly(tmp_path):
    images = tmp_path / 'images'
    _images(images, ['0.png'])
    for k in range(1, 2000):
        os.link(images / '0.png', images / f'{k}.png')
    out = tmp_path / 'out'
    out.mkdir()
    template = ImageAnnotation('0.png', 80, 60, [Face([(1.0 + k, 2.0 + k) for k in range(28)])])
    for k in range(0, 2000, 2):
        template.image = f'{k}.png'
        save_annotation(out / f'{k}.json', template)
    start = time.perf_counter()
    session = AnnotationSession(images, out)
    seconds = time.perf_counter() - start
    assert session.progress().done == 1000
    assert seconds < 10  # a generous bound for a loaded machine; the benchmark measures it


def test_a_file_the_converter_refuses_is_not_done_and_never_overwritten(session):
    # one rule for both tools: a file parse_annotation refuses (here a "meta" that is not an
    # object) is neither counted as done nor trained on, and a save never replaces it
    edit = session.open('a.png')
    _fill(edit)
    target = session.save(edit)
    raw = json.loads(target.read_text())
    raw['meta'] = 'by hand'
    target.write_text(json.dumps(raw))
    before = target.read_bytes()
    reopened = AnnotationSession(session.image_dir, session.output_dir, annotator='tester')
    assert reopened.progress().done == 0
    assert reopened.annotation_path('a.png') == target  # still its file: no second one beside
    with pytest.raises(AnimalLandmarksError, match='"meta" must be an object'):
        reopened.open('a.png')
    contents = AnnotationReader(session.image_dir).read(session.output_dir)
    assert not contents.records and '"meta" must be an object' in contents.problems[0]
    # an edit of that image (its draft, say) is refused rather than written over the file
    edit.revision = file_sha256(target)
    edit.dirty = True
    with pytest.raises(AnnotationConflictError, match='fix or move it, nothing was overwritten'):
        reopened.save(edit)
    assert target.read_bytes() == before


def test_a_file_too_large_or_not_utf8_is_counted_as_the_converter_counts_it(tmp_path,
                                                                            monkeypatch):
    """The output folder's files are read at the start as the converter reads them
    (read_annotation_json): a file over ANNOTATION_MAX_BYTES (it was read whole: a stray dump
    exhausted the memory) or in UTF-16 (json.loads of bytes took it) is not done but broken,
    still its image's file, and the big one is not read past the limit."""
    from pathlib import Path

    from animal_landmarks_mm import annotation as annotation_module
    from animal_landmarks_mm.annotation import ANNOTATION_MAX_BYTES
    images = _images(tmp_path / 'images', ('a.png', 'b.png', 'c.png'))
    out = tmp_path / 'out'
    out.mkdir()
    points = [(1.0 + k, 2.0 + k) for k in range(28)]

    def text(image):
        return json.dumps(ImageAnnotation(image, 80, 60, [Face(points)]).to_json())

    big, wide = out / 'a.json', out / 'b.json'
    big.write_text(text('a.png') + ' ' * ANNOTATION_MAX_BYTES)  # JSON, but no annotation's size
    wide.write_bytes(text('b.png').encode('utf-16'))
    (out / 'c.json').write_text(text('c.png'))
    reads, real = [], annotation_module.read_regular_file

    def recording(path, max_bytes=None):
        reads.append((Path(path).name, max_bytes))
        return real(path, max_bytes)

    monkeypatch.setattr(annotation_module, 'read_regular_file', recording)
    session = AnnotationSession(images, out)
    assert ('a.json', ANNOTATION_MAX_BYTES) in reads  # read up to the limit, not whole
    assert session.progress().done == 1 and session.is_done('c.png')
    for image, path, why in (('a.png', big, f'more than {ANNOTATION_MAX_BYTES} bytes'),
                             ('b.png', wide, "cannot read \\('utf-8' codec")):
        assert not session.is_done(image)
        assert session.annotation_path(image) == path  # its file, broken: never written over
        with pytest.raises(AnnotationError, match=why) as caught:
            session.open(image)
        assert str(caught.value).startswith(f'{path}: ') and '\n' not in str(caught.value)
    contents = AnnotationReader(images).read(out)
    assert len(contents.records) == 1 and len(contents.problems) == 2


def test_a_draft_too_large_to_be_one_is_refused_in_one_line(session):
    """A draft is read as an annotation file is: at most ANNOTATION_MAX_BYTES (it was read
    whole)."""
    from animal_landmarks_mm.annotation import ANNOTATION_MAX_BYTES
    edit = session.open('a.png')
    edit.click(1.0, 2.0)
    draft = session.save(edit)
    draft.write_text(draft.read_text() + ' ' * ANNOTATION_MAX_BYTES)
    with pytest.raises(AnnotationError) as caught:
        session.open('a.png')
    assert str(caught.value) == (f'{draft}: more than {ANNOTATION_MAX_BYTES} bytes, too large '
                                 'to read')


@pytest.mark.parametrize('case', ['all_absent', 'one_point', 'one_spot', 'on_a_line'])
def test_a_face_the_converter_would_refuse_stays_a_draft(session, case):
    """One rule for both tools: complete by click count, but not an annotation the converter
    (or parse_annotation) takes, so it is never written as done; the work is kept as a draft
    and the prompt says why."""
    edit = session.open('a.png')
    for k in range(28):
        if case == 'all_absent' or (case == 'one_point' and k > 0):
            edit.set_visibility(k, ABSENT)
        elif case == 'one_spot':
            edit.place(k, 10.0, 10.0)
        else:
            edit.place(k, 10.0 + k, 20.0)
    assert edit.current.complete() and not edit.finished()
    why = {'all_absent': 'fewer than 2 placed points', 'one_point': 'fewer than 2 placed points',
           'one_spot': 'all its points on one spot', 'on_a_line': 'has no area'}[case]
    assert why in edit.problem() and edit.problem().startswith('face 1 ')
    assert 'kept as a draft' in edit.prompt() and why in edit.prompt()
    saved = session.save(edit)
    assert saved.parent.name == '.drafts' and not session.is_done('a.png')
    assert not session.annotation_path('a.png').exists()
    assert session.open('a.png').current.visibility == edit.current.visibility  # kept
    # fixed, it is done, and the converter takes the file
    fixed = session.open('a.png')
    for k in range(28):
        fixed.place(k, 5.0 + k, 3.0 + k)
    assert fixed.finished() and fixed.problem() is None
    assert session.save(fixed) == session.annotation_path('a.png')
    assert session.is_done('a.png')
    assert len(AnnotationReader(session.image_dir).read(session.output_dir).records) == 1


@pytest.mark.parametrize('payload', [
    '[' * 100_000 + ']' * 100_000,
    'DRAFT_WITH_FACE {"points": [[1e999, 2]], "visibility": [2]}',
    'DRAFT_WITH_FACE {"points": [[1, 2]], "visibility": [true]}',
    'DRAFT_WITH_FACE {"points": [[1, 2]], "visibility": [7]}',
    'DRAFT_WITH_FACE {"points": [[1, 2]], "visibility": [2], "bbox": "box"}',
    'DRAFT_WITH_FACE {"points": "none", "visibility": [2]}',
    '{"faces": {"not": "a list"}}',
    'FACE_INDEX "0"',
    'FACE_INDEX 1.5',
    # text no file can be written with (JSON spells a lone surrogate), or no text at all
    'FIELDS {"status_reason": "bad \\udcff"}',
    'FIELDS {"model": "\\udcff"}',
    'FIELDS {"model": ["not", "text"]}',
    'FIELDS {"reviewed_at": "\\ud800"}',
    'FACES 0',
    # more than DRAFT_MAX_FACES (twice a file's): 60,000 took 53 MiB an undo step
    'FACES 2049',
])
def test_a_hostile_draft_is_one_line_never_a_traceback(session, payload):
    draft = session.draft_path('a.png')
    draft.parent.mkdir(parents=True, exist_ok=True)
    if payload.startswith(('FIELDS', 'FACES')):
        kind, value = payload.split(' ', 1)
        fields = json.loads(value) if kind == 'FIELDS' else {}
        faces = int(value) if kind == 'FACES' else 1
        payload = json.dumps(dict(dict(
            image='a.png', width=80, height=60, face=0, status='annotated', status_reason='',
            revision=None, faces=[dict(points=[None] * 28, visibility=[2] * 28)] * faces),
            **fields))
    if payload.startswith('FACE_INDEX'):
        payload = json.dumps(dict(image='a.png', width=80, height=60,
                                  face=json.loads(payload.split(' ', 1)[1]),
                                  status='annotated', status_reason='', revision=None,
                                  faces=[dict(points=[None] * 28, visibility=[2] * 28)]))
    if payload.startswith('DRAFT_WITH_FACE'):
        face = json.loads(payload.split(' ', 1)[1])
        payload = json.dumps(dict(image='a.png', width=80, height=60, face=0,
                                  status='annotated', status_reason='', revision=None,
                                  faces=[face]))
    draft.write_text(payload)
    with pytest.raises(AnnotationError, match='broken draft|JSON nested too deeply') as caught:
        session.open('a.png')
    assert str(draft) in str(caught.value) and '\n' not in str(caught.value)
    assert draft.read_text() == payload  # never modified


def test_a_model_named_otherwise_than_by_text_stays_the_files_and_its_draft_reopens(session):
    """meta is free-form: a prediction whose meta.model is an object opened, and its draft
    (which holds a model's name as text only) could never be opened again. The edit has no
    model's name; the file's meta keeps the object through the save."""
    _predicted_file(session, 'a.png')
    raw = json.loads(session.annotation_path('a.png').read_text())
    raw['meta']['model'] = {'name': 'hrnet', 'epoch': 210}
    session.annotation_path('a.png').write_text(json.dumps(raw))
    edit = session.open('a.png')
    assert edit.model is None
    edit.place(0, 10.0, 10.0)
    edit.new_face()  # a face of no points yet: unfinished, a draft
    assert session.save(edit) == session.draft_path('a.png')
    reopened = session.open('a.png')
    assert reopened.faces[0].points[0] == (10.0, 10.0) and len(reopened.faces) == 2
    _fill(reopened)
    reopened.accept()
    assert session.save(reopened) == session.annotation_path('a.png')
    assert load_annotation(session.annotation_path('a.png')).meta['model'] == {
        'name': 'hrnet', 'epoch': 210}


@pytest.mark.parametrize('reason, expected', [(None, ''), (3, 'must be text, got int'),
                                              (['x'], 'must be text, got list')])
def test_a_status_reason_of_null_is_none_and_of_another_type_refused(session, reason,
                                                                     expected):
    """null was read as the text 'None' (shown as 'skipped: None' and written back)."""
    save_annotation(session.annotation_path('a.png'), ImageAnnotation(
        'a.png', 80, 60, [], status='skipped', status_reason='blurry'))
    raw = json.loads(session.annotation_path('a.png').read_text())
    raw['status_reason'] = reason
    if expected:
        with pytest.raises(AnnotationError, match=f'"status_reason" {expected}'):
            parse_annotation(raw)
    else:
        assert parse_annotation(raw).status_reason == ''


@pytest.mark.parametrize('which', ['annotation', 'draft'])
def test_a_file_written_between_its_read_and_its_hash_is_a_conflict(session, monkeypatch,
                                                                    which):
    """The revision an edit saves against is the hash of the bytes it parsed: the file was
    hashed after it was parsed, and another version written in between (a sync client) was
    overwritten by the save without a conflict."""
    import animal_landmarks_mm.annotate as annotate_module
    _predicted_file(session, 'a.png')
    if which == 'draft':
        edit = session.open('a.png')
        edit.new_face()  # unfinished: a draft
        session.save(edit)
    path = session.annotation_path('a.png') if which == 'annotation' else \
        session.draft_path('a.png')
    theirs = path.read_bytes().replace(b'"predicted"', b'"predicted" ', 1)
    assert theirs != path.read_bytes()
    parse = annotate_module.read_annotation_json

    def read_then_written(file, data=None):
        raw = parse(file, data)
        if Path(file) == path:
            path.write_bytes(theirs)  # another writer, just after the read
        return raw

    monkeypatch.setattr(annotate_module, 'read_annotation_json', read_then_written)
    monkeypatch.setattr(annotate_module, 'load_annotation',
                        lambda file, data=None: parse_annotation(read_then_written(file, data)))
    edit = session.open('a.png')
    monkeypatch.undo()
    edit.place(0, 10.0, 10.0)
    with pytest.raises(AnnotationConflictError, match='was changed by someone else'):
        session.save(edit)
    assert path.read_bytes() == theirs


@pytest.mark.parametrize('which', ['annotation', 'draft'])
def test_a_file_written_just_after_a_save_is_a_conflict_at_the_next(session, monkeypatch,
                                                                   which):
    """A save's revision is the hash of the bytes it wrote: the file was hashed again after
    the write, and a version written in between (a sync client) was taken for this edit's and
    overwritten by its next save without a conflict."""
    import animal_landmarks_mm.annotate as annotate_module
    from animal_landmarks_mm.annotation import write_bytes_atomic as write
    edit = session.open('a.png')
    if which == 'annotation':
        _fill(edit)
    else:
        edit.click(1.0, 2.0)  # unfinished: a draft
    path = session.annotation_path('a.png') if which == 'annotation' else \
        session.draft_path('a.png')
    theirs = b'{"written": "by someone else"}'

    def written_then_theirs(file, data, **kwargs):
        write(file, data, **kwargs)
        if Path(file) == path:
            Path(file).write_bytes(theirs)

    import animal_landmarks_mm.annotation as annotation_module
    for module in (annotate_module, annotation_module):  # whichever module the save writes by
        monkeypatch.setattr(module, 'write_bytes_atomic', written_then_theirs, raising=False)
    assert session.save(edit) == path
    monkeypatch.undo()
    edit.place(0, 7.0, 7.0)
    with pytest.raises(AnnotationConflictError, match='was changed by someone else'):
        session.save(edit)
    assert path.read_bytes() == theirs


def test_a_file_with_more_faces_than_a_page_may_make_opens_edits_and_reopens(session):
    """A detector on a crowd picture writes more than MAX_FACES faces: the file opens, its
    unfinished edit goes to a draft, and that draft opens again (the bound is on new faces)."""
    points = [(2.0 + k, 3.0 + k) for k in range(28)]
    count = MAX_FACES + 6
    save_annotation(session.annotation_path('a.png'), ImageAnnotation(
        'a.png', 80, 60, [Face(points) for _ in range(count)], status='predicted',
        meta=dict(model='detector')))
    edit = session.open('a.png')
    assert len(edit.faces) == count
    edit.remove_point(0, face=count - 1)  # unfinished: saved as a draft
    assert session.save(edit) == session.draft_path('a.png')
    again = session.open('a.png')  # the draft
    assert len(again.faces) == count and again.faces[count - 1].points[0] is None
    with pytest.raises(EditError, match=f'at most {MAX_FACES} faces'):
        again.apply(dict(op='new_face'))  # a page still makes no more


def test_a_negative_face_index_in_a_draft_opens_the_first_face(session):
    draft = session.draft_path('a.png')
    draft.parent.mkdir(parents=True, exist_ok=True)
    draft.write_text(json.dumps(dict(
        image='a.png', width=80, height=60, face=-5, status='annotated', status_reason='',
        revision=None, faces=[dict(points=[None] * 28, visibility=[2] * 28)])))
    edit = session.open('a.png')
    assert edit.face == 0 and edit.prompt().startswith('face 1 of 1')


def test_a_models_nan_points_or_scores_are_refused_and_never_saved(session):
    edit = session.open('a.png')
    points = [(1.0 + k, 2.0 + k) for k in range(28)]
    with pytest.raises(EditError, match='finite'):
        edit.set_face([(float('nan'), 1.0)] + points[1:])
    with pytest.raises(EditError, match='finite'):
        edit.set_face(points, scores=[float('nan')] * 28)
    assert edit.current.next_index() == 0 and not edit.history  # nothing changed


def test_images_named_in_other_bytes_than_utf8_are_left_out_and_listed(tmp_path):
    images = _images(tmp_path / 'images', ('z.png',))
    ok, data = cv2.imencode('.png', np.full((60, 80, 3), 128, np.uint8))
    with open(os.path.join(os.fsencode(images), b'caf\xe9.png'), 'wb') as f:
        f.write(data.tobytes())
    session = AnnotationSession(images, tmp_path / 'out')
    assert session.images == ['z.png'] and session.misnamed_images == ['caf\udce9.png']
    edit = session.open('z.png')
    _fill(edit)
    assert session.save(edit).name == 'z.json'


def test_a_skip_reason_is_valid_unicode_and_short(session):
    edit = session.open('a.png')
    for reason, why in (('bad \udcff', 'not valid Unicode'), (['no'], 'is text'),
                        ('x' * (MAX_REASON_CHARS + 1), f'at most {MAX_REASON_CHARS}')):
        with pytest.raises(EditError, match=why) as caught:
            edit.apply(dict(op='skip', reason=reason))
        assert '\n' not in str(caught.value) and len(str(caught.value)) < 300
    assert not edit.history and edit.status == 'annotated'  # nothing changed
    edit.skip('x' * MAX_REASON_CHARS)
    assert edit.status == 'skipped'


def test_faces_per_image_are_bounded(session):
    """Every undo step copies every face: a page adding faces without end must not stall the
    annotator."""
    edit = session.open('a.png')
    for _ in range(MAX_FACES - 1):
        edit.apply(dict(op='new_face'))
    assert len(edit.faces) == MAX_FACES
    steps = len(edit.history)
    with pytest.raises(EditError, match=f'at most {MAX_FACES} faces'):
        edit.apply(dict(op='new_face'))
    assert len(edit.faces) == MAX_FACES and len(edit.history) == steps


def test_a_coordinate_too_large_for_a_float_is_refused(session):
    edit = session.open('a.png')
    for op in (dict(op='place', index=0, x=10 ** 400, y=1),
               dict(op='box', box=[0, 0, 10 ** 400, 5])):
        with pytest.raises(EditError, match='must be a finite number, got an integer of'):
            edit.apply(op)
    assert not edit.history and edit.current.points[0] is None and edit.current.bbox is None


def test_an_opened_draft_is_not_dirty_and_refused_edits_keep_it_so(session):
    """Nothing to save until something changed: a rewrite would change the file under another
    tab (a false conflict there)."""
    edit = session.open('a.png')
    edit.click(1, 1)
    draft = session.save(edit)
    opened = session.open('a.png')
    assert opened.current.points[0] == (1.0, 1.0) and not opened.dirty
    opened.record_unchanged()  # a refused edit the page counted as a step
    assert not opened.dirty and len(opened.history) == 1
    opened.click(2, 2)  # a real one
    assert opened.dirty
    session.save(opened)
    assert not opened.dirty and json.loads(draft.read_text())['faces'][0]['points'][1] == [2, 2]


def test_a_draft_that_cannot_be_set_aside_opens_read_only_and_is_kept(session):
    """Setting a draft aside needs the drafts folder writable; where it is not (here the
    folder it goes to is a file), the image opens read-only, saying why, and nothing is lost."""
    begun = session.open('a.png')
    begun.click(1, 1)
    draft = session.save(begun)
    mine = draft.read_bytes()
    _predicted_file(session, 'a.png')  # the annotation file changes behind the draft
    annotation = session.annotation_path('a.png').read_bytes()
    blocker = draft.parent / 'superseded'
    blocker.write_text('not a folder')
    opened = session.open('a.png')
    assert opened.status == 'predicted' and opened.read_only == opened.notice
    assert 'was older than its annotation file and cannot be set aside' in opened.notice
    assert f'it is kept as {draft}' in opened.notice and '\n' not in opened.notice
    with pytest.raises(EditError, match='not editable here: your unfinished draft'):
        opened.apply(dict(op='place', index=0, x=5, y=5))
    with pytest.raises(EditError, match='not editable here'):
        opened.accept()
    assert not opened.dirty and not opened.history
    with pytest.raises(AnnotationConflictError, match='read-only here'):
        session.save(opened)
    assert draft.read_bytes() == mine and blocker.read_text() == 'not a folder'
    assert session.annotation_path('a.png').read_bytes() == annotation
    assert not session.is_done('a.png')  # the draft is still to do
    blocker.unlink()  # writable again: set aside as usual
    assert 'is kept as' in session.open('a.png').notice and not draft.exists()


def test_names_of_many_bytes_get_files_that_fit(tmp_path):
    """A file name holds 255 bytes, a CJK character takes 3: the names made from an image's
    (its file when names clash, a draft set aside) are cut by bytes, and still found."""
    long = '猫' * 83  # 249 bytes; with '.png' 253, a legal image name
    # one stem: <stem>.json, then <name>.json and <name>.<k>.json, which need cutting
    images = _images(tmp_path / 'images', (f'{long}.png', f'{long}.jpg', f'{long}.bmp'))
    session = AnnotationSession(images, tmp_path / 'out')
    for name in session.images:
        edit = session.open(name)
        _fill(edit)
        saved = session.save(edit)
        assert len(saved.name.encode()) <= NAME_MAX_BYTES
    files = sorted(p.name for p in (tmp_path / 'out').glob('*.json'))
    assert len(files) == 3 and f'{long}.json' in files
    again = AnnotationSession(images, tmp_path / 'out')
    assert again.progress().done == 3
    assert sorted(again.annotation_path(name).name for name in again.images) == files
    # a draft of that image set aside: its kept name fits too
    edit = again.open(f'{long}.png')
    edit.apply(dict(op='clear_face'))
    draft = again.save(edit)
    _predicted_file(again, f'{long}.png')
    assert 'is kept as' in again.open(f'{long}.png').notice and not draft.exists()
    kept = list((draft.parent / 'superseded').iterdir())
    assert len(kept) == 1 and len(kept[0].name.encode()) <= NAME_MAX_BYTES
    assert kept[0].name.startswith('猫') and json.loads(kept[0].read_text())['image'] == \
        f'{long}.png'


@pytest.mark.timeout(60)  # before the fix, reading a FIFO waited for a writer for good
def test_fifos_in_the_output_folder_are_left_alone(session):
    out = session.output_dir
    (out / '.drafts').mkdir()
    for fifo in (out / 'a.json', out / 'other.json', out / '.drafts' / 'b.json'):
        os.mkfifo(fifo)
    again = AnnotationSession(session.image_dir, out)
    assert sorted(p.name for p in again.not_regular) == ['a.json', 'b.json', 'other.json']
    assert again.annotation_path('a.png').name == 'a.png.json'  # a.json is not its file
    edit = again.open('a.png')
    _fill(edit)
    assert again.save(edit).name == 'a.png.json'
    edit = again.open('b.png')  # its draft's name is a FIFO: no draft
    edit.click(1, 1)
    assert again.save(edit).name != 'b.json'
    os.mkfifo(again.annotation_path('c.jpg'))  # one appears after the start
    edit = again.open('c.jpg')
    _fill(edit)
    with pytest.raises(AnnotationError, match='not a regular file') as caught:
        again.save(edit)
    assert str(again.annotation_path('c.jpg')) in str(caught.value)
    assert all(p.is_fifo() for p in again.not_regular)


def test_saving_a_file_of_the_plain_format_writes_version_1_without_its_marker(session):
    path = session.annotation_path('a.png')
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(dict(image='a.png', image_size=dict(width=80, height=60),
                                    landmarks=[[1.0 + k, 2.0 + k] for k in range(28)])))
    edit = session.open('a.png')
    edit.place(0, 5.0, 5.0)
    session.save(edit)
    raw = json.loads(path.read_text())
    assert raw['version'] == 1 and 'legacy_format' not in raw['meta']
    assert load_annotation(path).faces[0].landmarks[0] == (5.0, 5.0)


def test_a_value_no_file_can_hold_is_named_and_nothing_is_written(session):
    """json reads NaN in a file (a hand edit, another tool's meta), which no save could write
    back: the file is refused when the image opens, in one line naming it (it was opened, and
    every save of the work done on it failed), counted as the converter counts it (not done,
    a problem), and left as it was."""
    edit = session.open('a.png')
    _fill(edit)
    path = session.save(edit)
    raw = json.loads(path.read_text())
    raw['meta']['score'] = float('nan')
    path.write_text(json.dumps(raw))
    before = path.read_bytes()
    names = sorted(p.name for p in session.output_dir.rglob('*'))
    reopened = AnnotationSession(session.image_dir, session.output_dir, annotator='tester')
    assert reopened.progress().done == 0
    assert reopened.annotation_path('a.png') == path  # still its file: no second one beside
    for current in (session, reopened):
        with pytest.raises(AnnotationError, match='NaN and Infinity are no JSON numbers'
                           ) as caught:
            current.open('a.png')
        assert str(caught.value).startswith(f'{path}: "meta" holds "score" nan')
        assert '\n' not in str(caught.value)
    contents = AnnotationReader(session.image_dir).read(session.output_dir)
    assert not contents.records and 'NaN and Infinity' in contents.problems[0]
    assert path.read_bytes() == before
    assert sorted(p.name for p in session.output_dir.rglob('*')) == names


def test_a_sidecar_no_file_can_hold_is_left_out(session):
    """A crawler's sidecar is a nicety, never a reason not to save."""
    from animal_landmarks_mm.annotation import SIDECAR_FORMAT
    # nested deeper than a file's meta may be (MAX_JSON_DEPTH): written back by recursion,
    # one 985 deep failed every save of its image (RecursionError, HTTP 500 in the page)
    for image, odd in (('a.png', 'NaN'), ('b.png', '"\\udcff"'),
                       ('c.jpg', '[' * 990 + ']' * 990)):
        (session.image_dir / f'{image}.json').write_text(
            f'{{"format": "{SIDECAR_FORMAT}", "site": {odd}}}')
        edit = session.open(image)
        _fill(edit)
        assert 'source' not in load_annotation(session.save(edit)).meta
    # as deep as meta may hold, it is kept
    from animal_landmarks_mm.annotation import MAX_JSON_DEPTH
    deepest = '[' * (MAX_JSON_DEPTH - 2) + ']' * (MAX_JSON_DEPTH - 2)
    (session.image_dir / 'a.png.json').write_text(
        f'{{"format": "{SIDECAR_FORMAT}", "site": {deepest}}}')
    edit = session.open('a.png')
    edit.place(0, 3.0, 3.0)
    assert load_annotation(session.save(edit)).meta['source']['site'] == json.loads(deepest)


def test_a_meta_nested_deeper_than_can_be_written_back_is_refused(session):
    """meta is written back as it is read: one nested past Python's recursion would fail
    every save (and the tools' JSON nests a few levels)."""
    from animal_landmarks_mm.annotation import MAX_JSON_DEPTH, json_bytes
    save_annotation(session.annotation_path('a.png'), ImageAnnotation(
        'a.png', 80, 60, [Face([(2.0 + k, 3.0 + k) for k in range(28)])]))
    raw = json.loads(session.annotation_path('a.png').read_text())
    raw['meta']['notes'] = json.loads('[' * (MAX_JSON_DEPTH - 1) + ']' * (MAX_JSON_DEPTH - 1))
    assert parse_annotation(raw).meta['notes']  # the deepest meta may be
    raw['meta']['notes'] = [raw['meta']['notes']]
    with pytest.raises(AnnotationError, match=f'"meta" nests lists and objects more than '
                       f'{MAX_JSON_DEPTH} deep; this file could not be written back'):
        parse_annotation(raw)
    deep = []
    for _ in range(5000):  # past the recursion limit (Python's json cannot read it either)
        deep = [deep]
    with pytest.raises(ValueError, match='nested too deeply to be written'):
        json_bytes(deep)


def test_one_process_at_a_time_holds_the_output_folder(tmp_path):
    """Two annotators on one folder would overwrite each other's saves; the lock says who
    holds it (flock locks two opens apart even in one process)."""
    first = lock_output_folder(tmp_path)
    with pytest.raises(OutputFolderInUseError) as caught:
        lock_output_folder(tmp_path)
    assert str(caught.value).startswith(
        f'{tmp_path} is in use by another annotator or tools/infer.py (process id '
        f'{os.getpid()}); ')
    first.release()
    second = lock_output_folder(tmp_path)  # free again
    assert (tmp_path / '.annotator.lock').read_text() == f'{os.getpid()}\n'
    second.release()
    other = tmp_path / 'other'
    other.mkdir()
    (other / '.annotator.lock').symlink_to(tmp_path / 'target')  # never written through
    with pytest.raises(OutputFolderError, match='cannot make the lock file'):
        lock_output_folder(other)
    assert not (tmp_path / 'target').exists()
    folder = tmp_path / 'folder'
    (folder / '.annotator.lock').mkdir(parents=True)  # said as a FIFO is, not 'Is a directory'
    with pytest.raises(OutputFolderError, match=r'\.annotator\.lock is not a regular file \(a '
                       'FIFO, a device or a folder\\): move it away'):
        lock_output_folder(folder)



def test_a_locked_session_holds_its_folder_before_it_reads_a_file(tmp_path, monkeypatch):
    """The annotator (and tools/infer.py) read the folder's files, then locked it: a run
    writing there in between changed which file is whose unseen (a helper's repro: an image
    that could not be opened all session, a prediction hidden). Files are bound under the
    lock, which a failed start lets go."""
    images = _images(tmp_path / 'images', ('a.png',))
    out = tmp_path / 'out'
    seen = []

    def bind(session):
        with pytest.raises(OutputFolderInUseError):  # another process would be refused
            check_output_folder_free(out)
        seen.append(session.output_dir)
        raise OSError(errno.EIO, 'Input/output error')  # a start failing after the lock
    monkeypatch.setattr(AnnotationSession, '_bind_files', bind)
    with pytest.raises(OSError):
        AnnotationSession(images, out, lock_option='--output-dir')
    assert seen == [out.resolve()]
    lock_output_folder(out).release()  # let go with the failed start
    monkeypatch.undo()
    session = AnnotationSession(images, out, lock_option='--output-dir')
    with pytest.raises(OutputFolderInUseError, match='choose another --output-dir'):
        AnnotationSession(images, out, lock_option='--output-dir')
    session.folder_lock.release()
    assert AnnotationSession(images, out).folder_lock is None  # a session of many in a process

def test_a_peek_at_the_lock_refuses_a_held_folder_and_makes_nothing(tmp_path):
    """tools/infer.py peeks before its model's load: a held folder is refused with the lock's
    own message; a free one, a folder with no lock file, a missing folder, a lock file that is
    a FIFO or a link pass, leaving nothing made, written or locked (the lock reports those)."""
    missing = tmp_path / 'missing'
    check_output_folder_free(missing)
    assert not missing.exists()
    check_output_folder_free(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no lock file made
    held = lock_output_folder(tmp_path)
    with pytest.raises(OutputFolderInUseError) as caught:
        check_output_folder_free(tmp_path, option='--annotation-dir')
    assert str(caught.value) == (
        f'{tmp_path} is in use by another annotator or tools/infer.py (process id '
        f'{os.getpid()}); two on one folder would overwrite each other\'s saves: stop that '
        'one, or choose another --annotation-dir')
    held.release()
    check_output_folder_free(tmp_path)  # free again, and the peek holds nothing after it
    lock = lock_output_folder(tmp_path)
    assert (tmp_path / '.annotator.lock').read_text() == f'{os.getpid()}\n'
    lock.release()  # its id goes with it: a later holder that cannot write is not taken for it
    assert (tmp_path / '.annotator.lock').read_text() == ''
    fifo, linked = tmp_path / 'fifo', tmp_path / 'linked'
    fifo.mkdir(), linked.mkdir()
    os.mkfifo(fifo / '.annotator.lock')
    check_output_folder_free(fifo)  # never waits on it
    (linked / '.annotator.lock').symlink_to(tmp_path / 'target')
    check_output_folder_free(linked)
    assert not (tmp_path / 'target').exists()


@pytest.mark.parametrize('take', [check_output_folder_free, lock_output_folder])
def test_a_held_lock_closes_its_file_whatever_naming_the_holder_meets(tmp_path, monkeypatch,
                                                                     take):
    """The refusal of a held folder reads who holds it (/proc/locks, the lock file): where
    that fails, the error goes on, not taken for a file system that cannot lock (which goes on
    unlocked), and the lock file's descriptor is closed."""
    import fcntl
    lock_output_folder(tmp_path).release()
    holder = os.open(tmp_path / '.annotator.lock', os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def unreadable(fd):
        raise OSError(errno.EIO, 'Input/output error')
    monkeypatch.setattr('animal_landmarks_mm.annotate.lock_holder', unreadable)
    monkeypatch.setattr('animal_landmarks_mm.annotate.LOCK_WAIT_S', 0.0)
    before = len(os.listdir('/proc/self/fd'))
    try:
        with pytest.raises(OSError, match='Input/output error'):
            take(tmp_path)
        after = len(os.listdir('/proc/self/fd'))
    finally:
        os.close(holder)
    assert after == before


@pytest.mark.parametrize('starting', ['an annotator', 'another peek'])
def test_a_tool_starting_during_a_peek_is_not_refused(tmp_path, starting):
    """tools/infer.py's peek holds the lock for an instant; an annotator, or a second
    tools/infer.py peeking, starting in that instant waits it out (a holder that stays is still
    refused, above)."""
    import fcntl
    import threading
    lock_output_folder(tmp_path).release()  # the lock file, as a peek finds it
    peek = os.open(tmp_path / '.annotator.lock', os.O_RDONLY)
    fcntl.flock(peek, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the peek's instant, made longer
    released = threading.Timer(0.05, os.close, (peek,))
    released.start()
    try:
        if starting == 'an annotator':
            lock = lock_output_folder(tmp_path)
            assert lock is not None
            lock.release()
        else:
            check_output_folder_free(tmp_path)  # (raises OutputFolderInUseError if refused)
    finally:
        released.join()


@pytest.mark.skipif(not os.path.exists('/proc/locks'), reason='the holder is named from the '
                    "system's list of locks, /proc/locks (Linux)")
def test_a_holder_that_cannot_write_the_lock_file_is_named_not_the_one_before(tmp_path):
    """A holder that could open the lock file only read-only (another user's file) cannot
    write its id there: the refusal named the id left in it, an earlier holder's (a running
    process, which 'stop that one' would stop); it names the holder."""
    import fcntl
    lock_file = tmp_path / '.annotator.lock'
    lock_file.write_text(f'{os.getppid()}\n')  # an earlier holder's, a process that runs
    holder = os.open(lock_file, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as lock_output_folder holds it then
    try:
        for refused in (lambda: lock_output_folder(tmp_path),
                        lambda: check_output_folder_free(tmp_path)):
            with pytest.raises(OutputFolderInUseError) as caught:
                refused()
            assert f'(process id {os.getpid()});' in str(caught.value)
    finally:
        os.close(holder)


NOBODY = 65534  # the unprivileged user of Debian and Fedora


@pytest.fixture(scope='module')
def as_another_user():
    """Run Python code as the user nobody (a second user of a shared output folder), through
    util-linux's setpriv: a function of the code and its arguments, returning what it prints
    (stdout; a failure fails the test). Only root can become another user; the checkout and
    its interpreter must be readable by it."""
    import subprocess
    import sys
    import tempfile
    if os.geteuid() != 0:
        pytest.skip('only root can run a process as a second user (run the tests as root to '
                    'check a folder shared by two users)')
    setpriv = shutil.which('setpriv')
    if setpriv is None:
        pytest.skip('no setpriv (util-linux) to run a process as a second user')
    as_nobody = [setpriv, f'--reuid={NOBODY}', f'--regid={NOBODY}', '--clear-groups',
                 sys.executable]
    home = tempfile.mkdtemp(prefix='nobody-home-')  # tmp_path's parents are root's alone
    os.chmod(home, 0o777)
    env = dict(os.environ, HOME=home, MPLCONFIGDIR=home,
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
                                           os.environ.get('PYTHONPATH', '')]))

    def run(code: str, *args: object, effective_only: bool = False) -> str:
        """``effective_only``: nobody's effective ids, root's real ones (a process that
        changed only those, which ``os.access`` does not ask about)."""
        command = as_nobody if not effective_only else [
            setpriv, f'--euid={NOBODY}', f'--egid={NOBODY}', '--clear-groups', sys.executable]
        proc = subprocess.run([*command, '-c', code, *map(str, args)], env=env, cwd=home,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    found = 'import importlib.util; assert importlib.util.find_spec("animal_landmarks_mm")'
    probe = subprocess.run([*as_nobody, '-c', found], env=env, cwd=home, capture_output=True,
                           text=True, timeout=300)  # not imported: that takes seconds
    if probe.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f'the user nobody cannot import the package here: '
                    f'{probe.stderr.strip().splitlines()[-1:]}')
    yield run
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def shared_folder():
    """A folder every user may write in (tmp_path's parents are root's alone)."""
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix='shared-'))
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


#: the peek's and the lock's word on each folder of sys.argv[1:]: the error, or whether a lock
#: was taken (the peek never returns one)
_LOCK_AS_NOBODY = """
import sys
from animal_landmarks_mm.annotate import check_output_folder_free, lock_output_folder
for folder in sys.argv[1:]:
    for take in (check_output_folder_free, lock_output_folder):
        try:
            print(take(folder) is not None)
        except Exception as e:
            print(f'{type(e).__name__}: {e}')
"""


def test_a_lock_file_another_user_cannot_open_refuses_them(as_another_user, shared_folder):
    """A lock file made under the umask 077 (mode 600, root's) cannot be opened by a second
    user at all: their peek and lock said nothing and they annotated beside the first. Now
    both refuse, naming the file; only where the folder itself cannot be written (nothing
    could be saved there) does the second annotator go on unlocked."""
    writable = shared_folder / 'out'
    read_only = shared_folder / 'read-only'
    for folder, mode in ((writable, 0o777), (read_only, 0o755)):
        folder.mkdir()
        os.chmod(folder, mode)
        lock_file = folder / '.annotator.lock'
        lock_file.write_text('1\n')
        os.chmod(lock_file, 0o600)
    lock_file = writable / '.annotator.lock'
    refused = (f'OutputFolderError: cannot open the lock file {lock_file} (Permission denied), '
               f'so another annotator in {writable} would go unnoticed: make it readable and '
               f'writable for all (chmod a+rw {lock_file}), or remove it while no annotator '
               'works there')
    # where nothing can be saved, neither refuses, and there is no lock to take
    assert as_another_user(_LOCK_AS_NOBODY, writable, read_only).splitlines() == [
        refused, refused, 'False', 'False']


def test_a_lock_file_that_cannot_be_made_where_none_is_refuses_nothing(as_another_user,
                                                                      shared_folder):
    """In a folder where this process cannot make the lock file and none is there, nothing is
    locked and nothing refused, even where os.access (which asks for the real user) calls the
    folder writable: the refusal named a lock file that did not exist, to chmod."""
    folder = shared_folder / 'roots'
    folder.mkdir()
    os.chmod(folder, 0o755)
    assert as_another_user(_LOCK_AS_NOBODY, folder, effective_only=True).splitlines() == [
        'False', 'False']
    assert list(folder.iterdir()) == []


def test_a_new_lock_file_can_be_locked_by_another_user_whatever_the_umask(as_another_user,
                                                                          shared_folder):
    """Made under the umask 077, the lock file was root's alone (mode 600): no other user
    could lock it. It is made readable and writable for all, and the second user's annotator
    holds it and writes its id there."""
    old_umask = os.umask(0o077)
    try:
        lock = lock_output_folder(shared_folder)
    finally:
        os.umask(old_umask)
    lock_file = shared_folder / '.annotator.lock'
    assert lock_file.stat().st_mode & 0o777 == 0o666
    lock.release()
    written = as_another_user(
        'import os, sys\n'
        'from animal_landmarks_mm.annotate import lock_output_folder\n'
        'lock = lock_output_folder(sys.argv[1])\n'
        'print(os.getpid(), open(sys.argv[2]).read().strip())\n', shared_folder, lock_file)
    pid, recorded = written.split()
    assert recorded == pid


def test_a_folder_whose_file_system_cannot_lock_is_annotated_unlocked(tmp_path, monkeypatch,
                                                                     caplog):
    """NFS without a lock daemon: flock fails with ENOLCK (no test can make that file system,
    so flock is made to fail as it does there). The annotator starts, warning once."""
    import errno
    import fcntl
    opened = []
    real_open = os.open

    def recording_open(*args, **kwargs):
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(os, 'open', recording_open)
    monkeypatch.setattr(fcntl, 'flock', no_locks)
    with caplog.at_level('WARNING', logger='animal_landmarks_mm.annotate'):
        assert lock_output_folder(tmp_path) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert len(warnings) == 1 and 'cannot lock the output folder' in warnings[0]
    assert "overwrite each other's saves" in warnings[0] and '\n' not in warnings[0]
    for fd in opened:  # the lock file's descriptor is closed
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_restore_sets_the_pages_state_as_one_undo_step(session):
    """What a page sends after a server restart in place of the undo and redo steps the
    server lost with it: the faces, current face, status and review as the page shows them,
    one edit (undone as one)."""
    page = session.open('a.png')
    page.place(0, 10, 11)
    page.set_box([5, 6, 50, 40])
    page.new_face()
    page.place(3, 20.5, 21.25, face=1)
    page.set_visibility(4, ABSENT, face=1)
    page.set_visibility(5, OCCLUDED, face=1)
    page.set_face([(1.0 + k, 2.0 + k) for k in range(28)], (1, 1, 40, 40), scores=[0.5] * 28,
                  model='m', face=0)
    page.skip('bad quality')
    wanted = page.to_json()
    state = {key: wanted[key] for key in ('faces', 'face', 'status', 'status_reason',
                                          'reviewed_at', 'model')}
    edit = session.open('a.png')
    edit.place(7, 1, 1)
    before = edit.to_json()
    edit.apply(dict(op='restore', state=json.loads(json.dumps(state))))  # as JSON brings it
    assert edit.to_json() == wanted and edit.dirty and len(edit.history) == 2
    assert edit.undo() and edit.to_json() == before
    assert edit.redo() and edit.to_json() == wanted
    # a review time as the page writes it (JavaScript's toISOString), in the files' form
    edit.apply(dict(op='restore', state=dict(state, reviewed_at='2024-05-01T10:00:00.123Z')))
    assert edit.reviewed_at == '2024-05-01T10:00:00+00:00'


def _restore_state(**changes) -> dict:
    face = dict(points=[[1.0, 2.0]] + [None] * 27, visibility=[VISIBLE] * 28, bbox=None,
                scores=None, predicted=False)
    state = dict(faces=[face], face=0, status='annotated', status_reason='', reviewed_at=None,
                 model=None)
    for key, value in changes.items():
        if key.startswith('face_'):
            state['faces'] = [dict(face, **{key[5:]: value})]
        else:
            state[key] = value
    return state


def test_a_restore_brings_back_any_earlier_state_of_the_image(session):
    """After a restart the page sends its state in place of its pending undo steps: any
    earlier state of the image, an undone Predict or Accept included; the status is the one
    the faces give (a model's face unaccepted: predicted), the review time is Accept's, read
    back from the file too."""
    page = session.open('a.png')
    page.place(0, 10, 11)
    before_predict = json.loads(json.dumps(page.to_json()))
    page.set_face([(1.0 + k, 2.0 + k) for k in range(28)], (1, 1, 40, 40),
                  scores=[0.5] * 28, model='m')
    predicted = json.loads(json.dumps(page.to_json()))
    page.accept()
    session.save(page)
    keys = ('faces', 'face', 'status', 'status_reason', 'reviewed_at', 'model')

    def state(snapshot, **changes):
        return dict({key: snapshot[key] for key in keys}, **changes)

    edit = session.open('a.png')  # the server after a restart
    assert edit.reviewed_at == page.reviewed_at  # Accept's time, from the file's meta
    edit.apply(dict(op='restore', state=state(predicted)))  # the Accept undone
    assert edit.status == 'predicted' and edit.faces[0].predicted
    edit.apply(dict(op='restore', state=state(before_predict)))  # and the Predict
    assert edit.status == 'annotated' and edit.faces[0].points[0] == (10.0, 11.0)
    with pytest.raises(EditError, match='status annotated with these faces'):
        edit.apply(dict(op='restore', state=state(predicted, status='annotated')))
    # a review time as the page writes it (JavaScript's toISOString), in the files' form
    edit.apply(dict(op='restore', state=state(before_predict,
                                              reviewed_at='2026-12-06T10:00:00.123Z')))
    assert edit.reviewed_at == '2026-12-06T10:00:00+00:00'
    # a skip's reason is written as skip() writes it
    edit.apply(dict(op='restore', state=state(before_predict, status='skipped',
                                              status_reason='  ')))
    assert edit.status == 'skipped' and edit.status_reason == 'skipped'


def test_a_restore_keeps_a_files_point_off_the_picture(session):
    """An imported file may hold points a little off the picture (the converter takes them);
    a restored state that holds them as the file does is taken, a new one off it is not."""
    path = session.annotation_path('a.png')
    first = session.open('a.png')
    _fill(first)  # a finished face: the annotation file is written
    session.save(first)
    raw = json.loads(path.read_text())
    raw['faces'][0]['landmarks'][0] = [82.0, 3.0]  # off the 80x60 picture, in tolerance
    path.write_text(json.dumps(raw))
    edit = session.open('a.png')
    snapshot = json.loads(json.dumps(edit.to_json()))
    edit.place(1, 5, 5)
    edit.apply(dict(op='restore', state={key: snapshot[key] for key in (
        'faces', 'face', 'status', 'status_reason', 'reviewed_at', 'model')}))
    assert edit.faces[0].points[:2] == [(82.0, 3.0), (2.0, 3.0)]
    snapshot['faces'][0]['points'][0] = [83.0, 3.0]
    with pytest.raises(EditError, match='outside the 80x60 image'):
        edit.apply(dict(op='restore', state={key: snapshot[key] for key in (
            'faces', 'face', 'status', 'status_reason', 'reviewed_at', 'model')}))


def test_a_restore_may_hold_the_faces_removed_before_a_restart(session):
    """A file of more faces than New face makes (a detector's) may have had some removed
    before the restart: the page's undo brings them back."""
    page = session.open('a.png')
    for k in range(MAX_FACES + 5):
        if k:
            page.faces.append(type(page.faces[0])())
        page.place(0, 1.0 + k % 70, 2.0, face=k)
    wanted = json.loads(json.dumps(page.to_json()))
    page.remove_face(face=0)
    session.save(page)
    edit = session.open('a.png')
    assert len(edit.faces) == MAX_FACES + 4
    state = {key: wanted[key] for key in ('faces', 'face', 'status', 'status_reason',
                                          'reviewed_at', 'model')}
    edit.apply(dict(op='restore', state=state))
    assert len(edit.faces) == MAX_FACES + 5


@pytest.mark.parametrize('state', [
    None, [], 'faces',
    {key: value for key, value in _restore_state().items() if key != 'faces'},
    _restore_state(faces=[]),
    _restore_state(faces='x'),
    _restore_state(faces=[None]),
    _restore_state(faces=[{}]),
    _restore_state(face_points=[[1.0, 2.0]] * 27),
    _restore_state(face_points=[[80.0, 2.0]] + [None] * 27),  # outside the 80x60 image
    _restore_state(face_points=[[float('nan'), 2.0]] + [None] * 27),
    _restore_state(face_points=[[1.0]] + [None] * 27),
    _restore_state(face_points=['1, 2'] + [None] * 27),
    _restore_state(face_points=[[True, 2.0]] + [None] * 27),
    _restore_state(face_visibility=[VISIBLE] * 27),
    _restore_state(face_visibility=[7] + [VISIBLE] * 27),
    _restore_state(face_visibility=[1.0] + [VISIBLE] * 27),
    _restore_state(face_visibility=[ABSENT] + [VISIBLE] * 27),  # absent, yet placed
    _restore_state(face_bbox=[1, 2, 3]),
    _restore_state(face_bbox=[1, 1, 1.2, 30]),
    _restore_state(face_bbox=[1, 1, 'x', 30]),
    _restore_state(face_scores=[0.5] * 27),
    _restore_state(face_scores=[float('inf')] * 28),
    _restore_state(face_predicted='yes'),
    _restore_state(face=1),
    _restore_state(face=True),
    # more than MAX_FACES faces beyond MAX_FACES (the image has fewer)
    _restore_state(faces=[_restore_state()['faces'][0]] * (2 * MAX_FACES + 1)),
    _restore_state(status='done'),
    _restore_state(status_reason=None),
    _restore_state(status='skipped', status_reason='x' * (MAX_REASON_CHARS + 1)),
    _restore_state(status_reason='bad \udcff'),
    _restore_state(reviewed_at='yesterday'),
    _restore_state(reviewed_at=5),
    _restore_state(model=['not', 'text']),
    _restore_state(model='m' * (MAX_REASON_CHARS + 1)),
    _restore_state(reviewed_at='9999-12-31T23:00:00-05:00'),  # past UTC's last day
    _restore_state(reviewed_at='0001-01-01T00:30:00+05:00'),
    # values no edit makes: the status the faces give, reasons only on skipped images
    _restore_state(face_predicted=True),  # a model's face, yet 'annotated'
    _restore_state(status='predicted'),  # no model's face
    _restore_state(status_reason='why'),  # a reason on an annotated image
])
def test_a_malformed_restore_is_refused_without_changing_anything(session, state):
    edit = session.open('a.png')
    edit.place(7, 1, 1)
    before = edit.to_json()
    with pytest.raises(EditError) as caught:
        edit.apply(dict(op='restore', state=state))
    assert '\n' not in str(caught.value) and len(str(caught.value)) < 300
    assert edit.to_json() == before and len(edit.history) == 1


def test_a_skipped_image_keeps_its_faces_and_taking_the_skip_back_brings_them(session):
    """Skip keeps the image's faces in its file (status skipped: the converter and the checker
    leave them out); opened again they are there, and an edit of a point takes the skip back
    with them."""
    from animal_landmarks_mm.quality import read_faces
    edit = session.open('a.png')
    _fill(edit)
    session.save(edit)
    edit = session.open('a.png')
    edit.apply(dict(op='skip', reason='bad quality'))
    session.save(edit)
    skipped = load_annotation(session.annotation_path('a.png'))
    assert skipped.status == 'skipped' and skipped.status_reason == 'bad quality'
    assert skipped.faces[0].landmarks == [(1.0 + k, 2.0 + k) for k in range(28)]
    contents = AnnotationReader(session.image_dir).read(session.output_dir)
    assert contents.skipped == [str(session.annotation_path('a.png'))]
    assert not contents.problems and not contents.records
    checked = read_faces(session.output_dir, session.image_dir)
    assert not checked.problems and not checked.faces and len(checked.left_out) == 1
    assert session.is_done('a.png')
    reopened = session.open('a.png')
    assert reopened.status == 'skipped' and reopened.faces[0].points == edit.faces[0].points
    state = json.loads(json.dumps(reopened.to_json()))  # a page's restore of it
    reopened.apply(dict(op='restore', state={key: state[key] for key in (
        'faces', 'face', 'status', 'status_reason', 'reviewed_at', 'model')}))
    reopened.place(0, 5.0, 6.0)  # the skip taken back, the faces with it
    session.save(reopened)
    saved = load_annotation(session.annotation_path('a.png'))
    assert saved.status == 'annotated' and saved.status_reason == ''
    assert saved.faces[0].landmarks[:2] == [(5.0, 6.0), (2.0, 3.0)]
    # a face begun has no form in a file: skipping drops it, the complete one stays
    reopened.new_face()
    reopened.place(0, 40.0, 40.0)
    reopened.skip('duplicate')
    session.save(reopened)
    assert len(load_annotation(session.annotation_path('a.png')).faces) == 1


def test_a_skipped_prediction_is_still_the_models_to_accept(session):
    """A model's points kept through a skip are still unreviewed: taking the skip back makes
    the image predicted again, never annotated without an Accept."""
    _predicted_file(session, 'b.png')
    edit = session.open('b.png')
    edit.new_face()
    for k in range(28):  # a face placed by hand beside the model's
        edit.click(30.0 + k, 2.0 + k)
    edit.skip('not a character face')
    session.save(edit)
    skipped = load_annotation(session.annotation_path('b.png'))
    assert skipped.status == 'skipped' and len(skipped.faces) == 2
    assert skipped.meta['predicted_faces'] == [0]
    reopened = session.open('b.png')
    assert [f.predicted for f in reopened.faces] == [True, False]
    reopened.place(3, 40.0, 30.0, face=1)
    assert reopened.status == 'predicted'
    session.save(reopened)
    saved = load_annotation(session.annotation_path('b.png'))
    assert saved.status == 'predicted' and 'predicted_faces' not in saved.meta
    reopened.skip('again')
    session.save(reopened)
    path = session.annotation_path('b.png')
    raw = json.loads(path.read_text())
    raw['meta']['predicted_faces'] = 'the first'  # edited by hand: all taken for the model's
    path.write_text(json.dumps(raw))
    assert [f.predicted for f in session.open('b.png').faces] == [True, True]


def test_a_face_placed_twice_is_no_annotation(session):
    """Two faces with the same points (Predict twice on the whole image, a pasted copy): the
    converter leaves such a file out, so the annotator keeps it a draft and says why, naming
    the faces as the page numbers them."""
    edit = session.open('a.png')
    _fill(edit)
    edit.new_face()
    _fill(edit)
    assert edit.problem() == ('faces 1 and 2 are the same face (identical points): delete '
                              'one')
    assert edit.prompt().startswith('face 2 of 2: not done, kept as a draft: faces 1 and 2')
    assert session.save(edit) == session.draft_path('a.png')
    assert not session.annotation_path('a.png').exists() and not session.is_done('a.png')
    edit.place(0, 70.0, 50.0)  # now another face
    assert edit.problem() is None
    assert session.save(edit) == session.annotation_path('a.png')
    # a pasted copy dragged half a pixel is the same face still
    nudged = session.open('a.png')
    twin = nudged.faces[0].points
    nudged.new_face()
    for k, (x, y) in enumerate(twin):
        nudged.place(k, x + 0.5, y - 0.25)
    assert nudged.problem() == ('faces 1 and 3 are the same face (no point more than 0.5 px '
                                'from its twin): delete one')


def test_restores_cannot_grow_an_image_without_end(session):
    """Each restore may hold MAX_FACES faces more than the image had when opened (or than
    MAX_FACES), not than it has now: restores one after another stop there."""
    edit = session.open('a.png')
    empty = dict(points=[None] * 28, visibility=[VISIBLE] * 28)
    count, refused = 1, None
    for _ in range(10):
        count += MAX_FACES
        state = dict(faces=[empty] * count, face=0, status='annotated', status_reason='')
        try:
            edit.apply(dict(op='restore', state=state))
        except EditError as e:
            refused = str(e)
            break
    assert refused == f'a restored state has 1 to {2 * MAX_FACES} faces'
    assert len(edit.faces) <= 2 * MAX_FACES


def test_a_restore_never_holds_more_faces_than_a_file_may(session):
    """An image opened with nearly ANNOTATION_MAX_FACES faces (a detector's on a crowd) may
    not be restored past that bound: such a page could never be saved as a file."""
    page = session.open('a.png')
    for k in range(ANNOTATION_MAX_FACES - 10):
        if k:
            page.faces.append(type(page.faces[0])())
        page.place(0, 1.0 + k % 70, 2.0 + k // 70, face=k)
    session.save(page)  # (a draft: no face is complete)
    edit = session.open('a.png')
    assert len(edit.faces) == ANNOTATION_MAX_FACES - 10
    empty = dict(points=[None] * 28, visibility=[VISIBLE] * 28)
    state = dict(faces=[empty] * (ANNOTATION_MAX_FACES + 1), face=0, status='annotated',
                 status_reason='')
    with pytest.raises(EditError, match=f'^a restored state has 1 to {ANNOTATION_MAX_FACES} '
                                        'faces$'):
        edit.apply(dict(op='restore', state=state))
    assert len(edit.faces) == ANNOTATION_MAX_FACES - 10
    edit.apply(dict(op='restore', state=dict(state, faces=[empty] * ANNOTATION_MAX_FACES)))
    assert len(edit.faces) == ANNOTATION_MAX_FACES


def test_a_page_of_more_faces_than_a_file_may_hold_is_never_saved_as_one(tmp_path):
    """A draft of more than ANNOTATION_MAX_FACES faces (an older version's restores were not
    bounded) reopens as it is; skipped, its faces would have been written to a file no tool
    reads back: the save is refused in one line naming the image, nothing written, the draft
    kept."""
    (tmp_path / 'images').mkdir()
    assert cv2.imwrite(str(tmp_path / 'images' / 'a.png'), np.zeros((4000, 4000, 3), np.uint8))
    session = AnnotationSession(tmp_path / 'images', tmp_path / 'out', annotator='t')
    page = session.open('a.png')
    base = [(1.0 + k, 2.0 + k) for k in range(28)]
    page.faces[:] = [FaceEdit(points=[(x + 3.0 * (f % 100), y + 35.0 * (f // 100))
                                      for x, y in base]) for f in range(ANNOTATION_MAX_FACES + 6)]
    draft = session.save(page)  # (more faces than a file holds: not finished, a draft)
    assert draft == session.draft_path('a.png')
    page = session.open('a.png')
    assert len(page.faces) == ANNOTATION_MAX_FACES + 6
    page.skip('a crowd')
    with pytest.raises(AnnotationError) as refused:
        session.save(page)
    assert str(refused.value) == (f'a.png: its annotation file would hold '
                                  f'{ANNOTATION_MAX_FACES + 6} faces, more than the '
                                  f'{ANNOTATION_MAX_FACES} an annotation file may hold')
    assert not session.annotation_path('a.png').exists() and draft.is_file()


@pytest.mark.timeout(60)  # before the fix, PIL's open waited for a writer for good
def test_an_image_replaced_by_a_fifo_is_refused_without_waiting(session):
    (session.image_dir / 'a.png').unlink()
    os.mkfifo(session.image_dir / 'a.png')
    with pytest.raises(AnnotationError, match='a.png: not a regular file'):
        session.open('a.png')
    assert session.open('b.png').width == 80  # the others open


def test_the_reviewer_is_who_accepted_not_who_saved_last(session):
    _predicted_file(session, 'b.png')
    alice = AnnotationSession(session.image_dir, session.output_dir, annotator='alice')
    edit = alice.open('b.png')
    edit.accept()
    alice.save(edit)
    accepted = load_annotation(alice.annotation_path('b.png')).meta
    bob = AnnotationSession(session.image_dir, session.output_dir, annotator='bob')
    edit = bob.open('b.png')
    edit.place(0, 12.0, 21.0)
    bob.save(edit)
    meta = load_annotation(bob.annotation_path('b.png')).meta
    assert meta['annotator'] == 'bob'
    assert (meta['reviewed_by'], meta['reviewed_at']) == ('alice', accepted['reviewed_at'])
    _predicted_file(session, 'a.png')  # an Accept of bob's is his
    edit = bob.open('a.png')
    edit.accept()
    bob.save(edit)
    assert load_annotation(bob.annotation_path('a.png')).meta['reviewed_by'] == 'bob'


def test_a_linked_drafts_folder_is_never_written_through(tmp_path):
    """Drafts go to .drafts of the output folder itself: a link there (to a folder outside)
    is refused when the session starts, and if it appears later, a save writes nothing
    through it; a link as superseded/ takes no draft away either."""
    images = _images(tmp_path / 'images', ('a.png', 'b.png'))
    out, elsewhere = tmp_path / 'out', tmp_path / 'elsewhere'
    out.mkdir()
    elsewhere.mkdir()
    (out / '.drafts').symlink_to(elsewhere)
    with pytest.raises(OutputFolderError, match=r'out/\.drafts is a link: '):
        AnnotationSession(images, out)
    (out / '.drafts').unlink()
    session = AnnotationSession(images, out)
    edit = session.open('b.png')
    edit.place(0, 5, 5)
    (out / '.drafts').symlink_to(elsewhere)
    with pytest.raises(UnsafeNameError, match=r'\.drafts is a link'):
        session.save(edit)
    assert not list(elsewhere.iterdir())
    (out / '.drafts').unlink()
    session.save(edit)  # a draft, older than the file written next
    save_annotation(session.annotation_path('b.png'), ImageAnnotation(
        'b.png', 80, 60, [Face([(2.0 + k, 3.0 + k) for k in range(28)])]))
    (out / '.drafts' / 'superseded').symlink_to(elsewhere)
    reopened = session.open('b.png')  # its draft cannot be set aside through the link
    assert 'is a link' in reopened.read_only and session.draft_path('b.png').is_file()
    assert not list(elsewhere.iterdir())


def test_a_persons_file_is_shown_before_a_models_prediction_of_the_same_image(tmp_path):
    """Two files naming one image (a prediction written by tools/infer.py under a name the
    annotator gave the image by another order): the person's is the image's, whatever the
    names; a prediction a person saved in the annotator counts as the person's."""
    images = _images(tmp_path / 'images', ('a.png',))
    out = tmp_path / 'out'
    points = [(2.0 + k, 3.0 + k) for k in range(28)]
    theirs = ImageAnnotation('a.png', 80, 60, [Face(points, scores=[0.5] * 28)],
                             status='predicted', meta=dict(annotator='model'))
    save_annotation(out / 'a.json', theirs)  # the most preferred name
    mine = ImageAnnotation('a.png', 80, 60, [Face(points[::-1])], meta=dict(annotator='me'))
    save_annotation(out / 'a.png.json', mine)
    session = AnnotationSession(images, out)
    assert session.annotation_path('a.png').name == 'a.png.json'
    assert session.is_done('a.png')
    (out / 'a.png.json').unlink()
    reviewing = ImageAnnotation('a.png', 80, 60, [Face(points[::-1], scores=[0.5] * 28)],
                                status='predicted', meta=dict(annotator='me'))
    save_annotation(out / 'a.png.json', reviewing)
    assert AnnotationSession(images, out).annotation_path('a.png').name == 'a.png.json'


@pytest.mark.parametrize('name, message', [
    (os.fsdecode(b'j\xf6rg'), r'the annotator name j\\udcf6rg is not valid UTF-8'),
    ('model', "the annotator name 'model' is how tools/infer.py marks its predictions"),
])
def test_an_annotator_name_no_file_can_record_is_refused_at_once(tmp_path, name, message):
    """A name of other bytes than UTF-8 (typed in a Latin-1 terminal) would fail every save;
    'model' would mark the person's files as a model's prediction for infer to replace."""
    images = _images(tmp_path / 'images', ('a.png',))
    with pytest.raises(AnimalLandmarksError, match=message):
        AnnotationSession(images, tmp_path / 'out', annotator=name)
    assert not (tmp_path / 'out').exists()


@pytest.mark.timeout(60)  # before the fix, reading a FIFO waited for a writer for good
def test_a_file_list_is_read_bounded(tmp_path, monkeypatch):
    from animal_landmarks_mm import annotate
    os.mkfifo(tmp_path / 'fifo')
    with pytest.raises(OrderFileError, match='fifo: not a regular file'):
        read_order_file(tmp_path / 'fifo')
    (tmp_path / 'list.txt').write_text('a.png\n' * 10)
    monkeypatch.setattr(annotate, 'MAX_ORDER_FILE_BYTES', 50)
    with pytest.raises(OrderFileError, match='list.txt: more than 50 bytes, too large'):
        read_order_file(tmp_path / 'list.txt')


def test_a_draft_that_cannot_be_removed_after_the_save_is_no_failed_save(session,
                                                                         monkeypatch):
    """The annotation file is written: a draft left behind (a folder that refuses the removal)
    is no 'not saved'; it is older than the file, and set aside when the image opens again."""
    edit = session.open('a.png')
    _fill(edit, 0)
    edit.remove_point(27)
    draft = session.save(edit)
    unlink = type(draft).unlink

    def refuse(path, *args, **kwargs):
        if path == draft:
            raise PermissionError(13, 'Permission denied', str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(type(draft), 'unlink', refuse)
    edit.place(27, 30.0, 30.0)
    assert session.save(edit) == session.annotation_path('a.png') and not edit.dirty
    assert draft.is_file()
    monkeypatch.undo()
    reopened = session.open('a.png')
    assert 'kept as' in reopened.notice and not draft.exists()
    assert reopened.faces[0].points == edit.faces[0].points


def test_an_unknown_edit_operation_is_named_in_one_short_line(session):
    """The operation's name comes from the page (any client): a megabyte of it, or a line
    break in it, was echoed whole into the message the page shows."""
    edit = session.open('a.png')
    for name in ('x' * 1_000_000, 'pl\nace\x1b[31m', ['place']):
        with pytest.raises(EditError) as caught:
            edit.apply({'op': name})
        message = str(caught.value)
        assert message.startswith('unknown edit operation ') and '\n' not in message
        assert '\x1b' not in message and len(message) < 300, message[:300]
