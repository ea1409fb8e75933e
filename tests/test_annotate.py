"""The annotator's session logic: order, edits, several faces, saving without losing work."""
import json

import cv2
import numpy as np
import pytest

from animal_landmarks_mm.annotate import AnnotationConflictError, AnnotationSession, UnsafeNameError
from animal_landmarks_mm.annotation import load_annotation
from animal_landmarks_mm.converter import AnnotationConverter
from animal_landmarks_mm.schema import ABSENT, OCCLUDED, VISIBLE


@pytest.fixture
def session(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    for name in ('a.png', 'b.png', 'c.jpg'):
        cv2.imwrite(str(images / name), np.full((60, 80, 3), 128, np.uint8))
    (images / 'notes.txt').write_text('not an image')
    return AnnotationSession(images, tmp_path / 'out', annotator='tester')


def _fill(edit, start=0):
    for k in range(start, 28):
        assert edit.click(1.0 + k, 2.0 + k) == k


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


def test_several_faces_save_and_reopen(session):
    edit = session.open('b.png')
    _fill(edit)
    edit.new_face()
    assert edit.prompt().startswith('face 2 of 2, next: 0:')
    _fill(edit)
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


def test_unfinished_work_goes_to_a_draft_the_converter_ignores(session, tmp_path):
    edit = session.open('a.png')
    edit.click(1, 1)
    draft = session.save(edit)
    assert draft.parent.name == '.drafts' and not session.is_done('a.png')
    converter = AnnotationConverter(session.image_dir, tmp_path / 'coco', progress=False)
    assert converter.list_annotation_files(session.output_dir) == []
    again = session.open('a.png')  # the draft comes back, nothing lost
    assert again.current.points[0] == (1.0, 1.0) and again.current.next_index() == 1
    _fill(again, 1)
    session.save(again)
    assert session.is_done('a.png') and not draft.exists()


def test_two_tabs_do_not_overwrite_each_other(session):
    first, second = session.open('a.png'), session.open('a.png')
    _fill(first)
    _fill(second)
    session.save(first)
    with pytest.raises(AnnotationConflictError, match='changed by someone else'):
        session.save(second)
    assert load_annotation(session.annotation_path('a.png')).faces[0].landmarks == \
        first.current.points


def test_skip_progress_and_next_unannotated(session):
    assert session.progress() == (0, 3) and session.next_unannotated() == 0
    edit = session.open('a.png')
    edit.skip('no usable face')
    session.save(edit)
    ann = load_annotation(session.annotation_path('a.png'))
    assert ann.status == 'skipped' and ann.faces == []
    assert session.progress() == (1, 3) and session.next_unannotated() == 1
    assert session.next_unannotated(after=2) == 1  # wraps past the done one


def test_foreign_files_are_kept_and_names_cannot_escape(session):
    foreign = session.output_dir / 'README.txt'
    foreign.write_text('mine')
    edit = session.open('a.png')
    _fill(edit)
    session.save(edit)
    assert foreign.read_text() == 'mine'
    for name in ('../x.png', '/etc/passwd', '../../out/a.png'):
        with pytest.raises(UnsafeNameError):
            session.open(name)


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


def test_images_sharing_a_stem_get_their_own_files(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    for name in ('x.png', 'x.jpg', 'y.png'):
        cv2.imwrite(str(images / name), np.zeros((20, 30, 3), np.uint8))
    session = AnnotationSession(images, tmp_path / 'out')
    assert session.annotation_path('x.png').name == 'x_png.json'
    assert session.annotation_path('x.jpg').name == 'x_jpg.json'
    assert session.annotation_path('y.png').name == 'y.json'
    for name in ('x.png', 'x.jpg'):
        edit = session.open(name)
        edit.skip('test')
        session.save(edit)
    assert session.progress() == (2, 3)
    assert load_annotation(session.annotation_path('x.jpg')).image == 'x.jpg'


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
