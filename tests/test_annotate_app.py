"""The annotator's server in-process: the open/edit protocol (ordering, retries, autosave,
two tabs, a full disk), the image route's path safety, the Host check against DNS rebinding,
model-assisted annotation and its pre-annotation in the background, and the CLI's one-line
errors (the browser test drives the same server through Chromium)."""
import errno
import http.client
import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from animal_landmarks_mm import annotate as annotate_module
from animal_landmarks_mm.annotate import AnnotationSession, lock_output_folder
from animal_landmarks_mm.annotate_app import (
    MAX_BODY_BYTES,
    SHORTCUTS,
    AllowedHosts,
    Annotator,
    PreAnnotator,
    _box_for_face,
    create_app,
    exposure_warning,
    image_key,
    launch,
    lazy_image,
    whole_image_box,
)
from animal_landmarks_mm.annotation import (
    AnnotationError,
    Face,
    ImageAnnotation,
    load_annotation,
    save_annotation,
)
from animal_landmarks_mm.errors import AnimalLandmarksError
from animal_landmarks_mm.export import export_checkpoint
from animal_landmarks_mm.infer import LandmarkPredictor
from animal_landmarks_mm.testing.browser import free_port
from conftest import MAIN_CONFIG, REPORT

TAB, OTHER_TAB = 'tab-one-0001', 'tab-two-0002'


@pytest.fixture
def folders(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in (('a.png', (300, 200)), ('b.png', (1200, 900)), ('c.png', (64, 64))):
        cv2.imwrite(str(images / name), rng.integers(0, 255, (h, w, 3), np.uint8))
    return images, tmp_path / 'out'


def _annotator(folders, predictor=None, **options) -> Annotator:
    return Annotator(AnnotationSession(*folders, annotator='t'), predictor, model='tiny.pth',
                     **options)


class Tab:
    """One browser tab's side of the protocol: numbered operations for the open image."""

    def __init__(self, annotator: Annotator, tab: str = TAB):
        self.annotator, self.tab, self.seq = annotator, tab, 0
        self.state = None

    def open(self, **where) -> dict:
        answer = self.annotator.open(self.tab, **where)
        if answer.get('state'):
            self.state, self.seq = answer['state'], 0
        return answer

    def send(self, *ops: dict, seqs=None) -> dict:
        numbered = []
        for k, op in enumerate(ops):
            if seqs is None:
                self.seq += 1
            numbered.append(dict(op, seq=self.seq if seqs is None else seqs[k]))
        status, answer = self.annotator.edit(self.tab, self.state['token'], numbered)
        assert status == 200, answer
        self.state = answer['state']
        return self.state


def _places(points, face=0):
    return [dict(op='place', face=face, index=k, x=float(x), y=float(y))
            for k, (x, y) in enumerate(points)]


POINTS = [(10 + 9 * k, 5 + 6 * k) for k in range(28)]


def test_a_new_tab_opens_the_first_image_to_do_and_edits_are_saved_at_once(folders):
    annotator = _annotator(folders)
    tab = Tab(annotator)
    answer = tab.open(go='start')
    state = answer['state']
    assert answer['ok'] and state['image'] == 'a.png' and (state['width'], state['height']) == \
        (300, 200)
    assert state['url'].startswith('annotator/image/0?v=') and state['next_url']
    assert state['status_label'] == 'not started' and state['file'] == 'a.json'
    tab.send(*_places(POINTS[:3]))
    assert tab.state['saved'] == tab.state['applied'] == 3
    assert tab.state['status_label'] == 'draft (unfinished)'
    tab.send(*_places(POINTS)[3:])
    saved = load_annotation(folders[1] / 'a.json')
    assert np.allclose(saved.faces[0].landmarks, POINTS) and saved.meta['annotator'] == 't'
    assert tab.state['status_label'] == 'annotated'
    assert tab.state['progress'] == dict(done=1, predicted=0, to_do=2, total=3)
    tab.send(dict(op='move', index=12, x=40.5, y=30.25), dict(op='undo'), dict(op='redo'))
    assert load_annotation(folders[1] / 'a.json').faces[0].landmarks[12] == (40.5, 30.25)
    assert tab.state['undo'] == 29 and tab.state['redo'] == 0


def test_operations_apply_once_and_in_order(folders):
    annotator = _annotator(folders)
    tab = Tab(annotator)
    tab.open(image='b.png')
    first = _places(POINTS[:2])
    tab.send(*first)
    tab.send(*first, seqs=[1, 2])  # a resend after a lost answer: nothing happens twice
    assert tab.state['applied'] == 2 and tab.state['undo'] == 2
    tab.send(dict(op='place', index=5, x=1, y=1), seqs=[9])  # a gap: wait for 3..8
    assert tab.state['applied'] == 2 and tab.state['edit']['faces'][0]['points'][5] is None
    tab.seq = 2
    state = tab.send(dict(op='place', index=2, x=1e9, y=1), dict(op='place', index=2, x=3, y=3))
    assert state['applied'] == 4 and state['message'].startswith('refused:')
    assert state['edit']['faces'][0]['points'][2] == [3, 3]
    status, answer = annotator.edit(TAB, 'not-the-token', [])
    assert status == 410 and answer['reason'] == 'unknown_token'


def test_a_refused_edit_is_an_undo_step_on_both_sides(folders):
    """The page records an undo step before it sends an edit; a refused one is a step that
    changes nothing on the server too, so the next undo undoes the same edit on both sides
    (not an earlier, real one)."""
    tab = Tab(_annotator(folders))
    tab.open(image='a.png')
    tab.send(*_places(POINTS[:2]))
    assert tab.state['undo'] == 2
    state = tab.send(dict(op='place', index=2, x=1e9, y=1))  # refused: off the picture
    assert state['message'].startswith('refused:') and state['undo'] == 3
    state = tab.send(dict(op='predict'))  # refused: no model
    assert state['message'].startswith('refused:') and state['undo'] == 4
    points = state['edit']['faces'][0]['points']
    state = tab.send(dict(op='undo'), dict(op='undo'))  # the page's two refused steps
    assert state['edit']['faces'][0]['points'] == points and state['undo'] == 2
    state = tab.send(dict(op='undo'))  # then the real one
    assert state['edit']['faces'][0]['points'][1] is None
    assert state['edit']['faces'][0]['points'][0] == list(POINTS[0])


def test_the_undo_history_of_an_image_is_kept_when_the_tab_leaves_and_comes_back(
        folders, monkeypatch):
    """A stray n (or Clear face, then n) left an image beyond undo: its history went with
    it. A tab coming back finds its steps (undo and redo) as it left them, unless the files
    changed meanwhile (another tab's save), it reloads (discard), or more images were left
    since than the server keeps."""
    from animal_landmarks_mm import annotate_app
    annotator = _annotator(folders)
    tab, other = Tab(annotator, TAB), Tab(annotator, OTHER_TAB)
    tab.open(image='a.png')
    clicked = [(x + 0.123456789, y + 0.987654321) for x, y in POINTS]  # a file keeps 4 digits
    tab.send(*_places(clicked))
    tab.send(dict(op='clear_face'), dict(op='place', index=0, x=50, y=50), dict(op='undo'))
    assert (tab.state['undo'], tab.state['redo']) == (29, 1)
    assert tab.state['status_label'] == 'draft (unfinished)'  # the file still has 28 points
    assert tab.open(go='next')['state']['undo'] == 0  # b.png: its own (empty) history
    state = tab.open(image='a.png')['state']
    assert (state['undo'], state['redo']) == (29, 1) and state['edit']['faces'][0]['points'] \
        == [None] * 28
    state = tab.send(dict(op='undo'))  # the Clear face, undone after coming back
    assert state['edit']['faces'][0]['points'] == [list(p) for p in clicked]
    assert state['status_label'] == 'annotated'
    assert np.allclose(load_annotation(folders[1] / 'a.json').faces[0].landmarks, clicked)
    assert not (folders[1] / '.drafts' / 'a.json').exists()
    # left finished (the file's points rounded): its steps come back too
    tab.send(dict(op='move', index=2, x=7.123456, y=8.654321))
    tab.open(go='next')
    assert tab.open(image='a.png')['state']['undo'] == 29
    # a Reload drops the page's work and its history
    tab.open(go='next')
    assert tab.open(image='a.png', discard=True)['state']['undo'] == 0
    # another tab's save while this one is away: the steps would undo into an unseen state
    tab.send(dict(op='move', index=3, x=20, y=20))
    tab.open(go='next')
    other.open(image='a.png')
    other.send(dict(op='move', index=4, x=30, y=30))
    assert tab.open(image='a.png')['state']['undo'] == 0
    # the most recently left images only, for all tabs together
    monkeypatch.setattr(annotate_app, 'KEPT_HISTORIES', 1)
    tab.send(dict(op='move', index=5, x=20, y=20))
    tab.open(image='c.png')
    tab.send(dict(op='place', index=0, x=1, y=1))
    tab.open(image='b.png')  # c.png is the one kept now
    assert tab.open(image='a.png')['state']['undo'] == 0
    assert list(annotator.kept_histories) == [(TAB, 'c.png')]
    assert tab.open(image='c.png')['state']['undo'] == 1
    # a stray Skip over a face begun (the file keeps no unfinished face of a skipped image)
    tab = Tab(_annotator(folders), 'tab-three-0003')
    tab.open(image='b.png')
    tab.send(*_places(POINTS[:3]), dict(op='skip', reason='stray'))
    tab.open(go='next')
    state = tab.open(image='b.png')['state']
    assert state['status_label'] == 'skipped: stray' and state['undo'] == 4
    state = tab.send(dict(op='undo'))
    assert state['edit']['faces'][0]['points'][:4] == [list(p) for p in POINTS[:3]] + [None]


def test_the_page_is_told_why_a_complete_face_is_not_done(folders):
    """28 clicks on one spot: complete by count, but no annotation the converter takes; the
    answer says so (message and problem), the work is a draft, and a fix makes it done."""
    tab = Tab(_annotator(folders))
    tab.open(image='a.png')
    state = tab.send(*[dict(op='place', index=k, x=40, y=30) for k in range(28)])
    assert 'all its points on one spot' in state['problem']
    assert state['message'].startswith('not done, kept as a draft: face 1 has all its points')
    assert state['status_label'] == 'draft (unfinished)' and not (folders[1] / 'a.json').exists()
    state = tab.send(*_places(POINTS))
    assert state['problem'] is None and state['message'] == ''
    assert load_annotation(folders[1] / 'a.json').status == 'annotated'


def test_go_to_an_image_by_number_name_part_or_direction(folders):
    annotator = _annotator(folders)
    tab = Tab(annotator)
    tab.open(image='a.png')
    assert tab.open(wanted='3')['state']['image'] == 'c.png'
    assert tab.open(wanted='b.png')['state']['image'] == 'b.png'
    assert tab.open(wanted='c')['state']['image'] == 'c.png'
    assert tab.open(go='prev')['state']['image'] == 'b.png'
    assert tab.open(go='next')['state']['image'] == 'c.png'
    assert tab.open(go='next') == dict(ok=False, reason='end', message='no more images this way')
    missing = tab.open(wanted='zzz')
    assert not missing['ok'] and "no image 'zzz'" in missing['message']
    assert tab.open(index=0)['state']['image'] == 'a.png'
    for odd in ('²', '1' * 5000, '٣'):  # digits int() refuses or chokes on: not found
        assert tab.open(wanted=odd)['reason'] == 'not_found'
    # a page that shows no image yet: next is the first image, not the second
    fresh = Tab(annotator, OTHER_TAB)
    assert fresh.open(go='next', current=-1)['state']['image'] == 'a.png'



def test_the_state_names_the_picture_u_would_show_where_n_would_not(folders):
    """The page decodes ahead the pictures n and u would show: u's is named only where it is
    another image than n's (and than the one shown)."""
    images, out = folders
    face = Face([(5.0 + k, 3.0 + k) for k in range(28)])
    save_annotation(out / 'b.json', ImageAnnotation('b.png', 1200, 900, [face]))
    tab = Tab(_annotator(folders))
    state = tab.open(image='a.png')['state']
    assert state['next_url'].startswith('annotator/image/1?v=')  # b, done
    assert state['to_do_url'].startswith('annotator/image/2?v=')  # c
    assert tab.open(image='b.png')['state']['to_do_url'] is None  # c: n's too
    # from c, u wraps round to a (n: none after the last)
    state = tab.open(image='c.png')['state']
    assert state['next_url'] is None and state['to_do_url'].startswith('annotator/image/0?v=')
    # an edit's answer names none (the page decodes ahead when it shows an image)
    assert tab.send(dict(op='place', index=0, x=3.0, y=4.0))['to_do_url'] is None
    for image in ('c.png', 'a.png'):
        tab.open(image=image)
        tab.send(dict(op='skip', reason='no face'))
    assert tab.open(image='a.png')['state']['to_do_url'] is None  # nothing to do

def test_a_link_leading_out_of_the_folder_spoils_only_itself(folders, tmp_path):
    images, _ = folders
    outside = tmp_path / 'elsewhere.png'
    outside.write_bytes((images / 'b.png').read_bytes())
    (images / 'b.png').unlink()
    (images / 'b.png').symlink_to(outside)
    tab = Tab(_annotator(folders))
    answer = tab.open(image='a.png')  # its neighbour is the link
    assert answer['ok'] and answer['state']['next_url'] is None
    assert tab.send(dict(op='place', index=0, x=10, y=10))['saved'] == 1
    refused = tab.open(go='next')
    assert not refused['ok'] and 'outside' in refused['message']


def test_hidden_and_outside_names_are_refused_without_reading_them(folders, monkeypatch):
    images, _ = folders
    (images / '.x.png').write_bytes((images / 'a.png').read_bytes())
    annotator = _annotator(folders)
    read = []
    monkeypatch.setattr(annotate_module, 'image_size', lambda path: read.append(path))
    for name, message in (('.x.png', 'starting with a dot'), ('../a.png', 'outside'),
                          ('/etc/passwd', 'outside'), ('sub/a.png', 'outside'),
                          ('a.txt', 'not an image')):
        answer = annotator.open(TAB, image=name)
        assert not answer['ok'] and answer['reason'] == 'not_found'
        assert message in answer['message'], answer
    assert read == []


def test_reload_sets_a_conflicting_change_aside_where_no_draft_was_ever_written(folders):
    """Finished files only (no .drafts folder yet): the set-aside failed on the missing folder
    and the change was dropped (a review's repro)."""
    annotator = _annotator(folders)
    first, second = Tab(annotator, TAB), Tab(annotator, OTHER_TAB)
    first.open(image='a.png')
    second.open(image='a.png')
    first.send(*_places(POINTS))  # finished: written to a.json, no draft
    assert not (folders[1] / '.drafts').exists()
    assert second.send(dict(op='place', index=0, x=20, y=20))['conflict']
    message = second.open(image='a.png', discard=True)['state']['message']
    kept, = (folders[1] / '.drafts' / 'superseded').iterdir()
    assert message == f'your unsaved change of a.png is set aside in {kept}'

def test_a_skip_keeps_an_unfinished_face_aside_and_says_so(folders):
    """A skipped file holds finished faces only: 12 points of a face begun were dropped from
    disk unsaid (Ctrl+Z brought them back only while the server ran; a review's repro)."""
    tab = Tab(_annotator(folders))
    tab.open(image='a.png')
    tab.send(*_places(POINTS[:12]))
    state = tab.send(dict(op='skip', reason='blurry'))
    assert load_annotation(folders[1] / 'a.json').faces == []
    kept, = (folders[1] / '.drafts' / 'superseded').iterdir()
    assert state['message'] == (f'1 unfinished face (12 points) not in the skipped file: kept '
                                f'in {kept}')
    tab.send(dict(op='skip', reason='blurry'), seqs=[tab.seq])  # sent again: no second copy
    tab.send(dict(op='skip', reason='too small'))  # another reason: none either
    assert len(list(kept.parent.iterdir())) == 1
    assert json.loads(kept.read_text())['faces'][0]['points'][:12] == [list(p)
                                                                      for p in POINTS[:12]]
    tab.open(image='b.png')  # a skip with no face begun says nothing of it
    assert tab.send(dict(op='skip', reason='no face'))['message'] == ''

def test_a_second_tab_cannot_overwrite_and_reload_shows_the_first(folders):
    annotator = _annotator(folders)
    first, second = Tab(annotator, TAB), Tab(annotator, OTHER_TAB)
    first.open(image='a.png')
    second.open(image='a.png')
    first.send(dict(op='place', index=0, x=10, y=10))  # saved as a draft at once
    state = second.send(dict(op='place', index=0, x=20, y=20))
    assert state['conflict'] and 'another tab' in state['save_error']
    assert state['saved'] == 0 and state['applied'] == 1
    moved = second.open(go='next')  # refuses to move on and drop the point
    assert not moved['ok'] and moved['reason'] == 'unsaved'
    # ... and tells a reloaded page (same tab id) what it holds, so it can show it and Reload
    assert moved['state']['image'] == 'a.png' and moved['state']['conflict']
    assert moved['state']['edit']['faces'][0]['points'][0] == [20, 20]
    second.seq = moved['state']['applied']  # (as the page counts on: show())
    state = second.send(dict(op='place', index=1, x=30, y=30))  # (the page refuses it now)
    assert state['applied'] == 2, state['message']
    answer = second.open(image='a.png', discard=True)  # Reload
    again = answer['state']
    assert again['edit']['faces'][0]['points'][0] == [10, 10]
    # the work Reload drops is set aside, not lost (it was dropped with no copy kept)
    kept, = (folders[1] / '.drafts' / 'superseded').iterdir()
    assert kept.name.startswith('a.') and str(kept) in again['message']
    assert json.loads(kept.read_text())['faces'][0]['points'][:2] == [[20, 20], [30, 30]]
    assert second.open(image='a.png', discard=True)['state']['message'] == ''  # nothing new


def test_edits_resent_after_a_restart_do_not_overwrite_a_newer_file(folders):
    """A page whose server restarted opens its image again with the revisions it had seen
    and sends its unsaved edits: over files changed meanwhile (another tab, a duplicated one)
    they are a conflict, not a silent overwrite; over unchanged files they are saved."""
    first = Tab(_annotator(folders))
    first.open(image='a.png')
    first.send(dict(op='place', index=0, x=10, y=10))
    seen = first.state['seen']
    assert seen['revision'] is None and len(seen['draft_revision']) == 64
    restarted = _annotator(folders)  # the first page's edits now reach this server
    resent = Tab(restarted)
    assert resent.open(image='a.png', discard=True, seen=seen)['ok']
    assert resent.send(dict(op='place', index=1, x=12, y=12))['saved'] == 1  # unchanged files
    seen = resent.state['seen']
    other = Tab(restarted, OTHER_TAB)  # meanwhile, another tab moves point 0
    other.open(image='a.png')
    other.send(dict(op='move', index=0, x=30, y=30))
    draft = folders[1] / '.drafts' / 'a.json'
    theirs = draft.read_bytes()
    again = Tab(_annotator(folders))
    again.open(image='a.png', discard=True, seen=seen)
    state = again.send(dict(op='place', index=2, x=14, y=14))
    assert state['conflict'] and state['saved'] == 0 and draft.read_bytes() == theirs
    with pytest.raises(AnimalLandmarksError, match='sha256'):
        again.annotator.open(TAB, image='a.png', seen=dict(revision='../x'))


def test_two_pictures_of_one_size_and_time_never_share_a_url(folders):
    """The URL named an image by its place in the list and its size and time: a picture added
    before it (or another --files order) gave its place to another file of the same size and
    time (frames unpacked from a tar), and the browser showed its cached picture under the
    other's points (a hunt's repro). The URL carries the file's name too."""
    image_dir = folders[0]
    first_url = _annotator(folders).image_url(0)
    first = image_dir / 'a.png'
    added = image_dir / '0.png'  # before a.png in the list now
    added.write_bytes(b'\x89PNG' + bytes(first.stat().st_size - 4))
    os.utime(added, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns))
    annotator = _annotator(folders)
    assert annotator.session.images[0] == '0.png'
    assert annotator.image_url(0) != first_url
    assert annotator.image_url(1).split('?v=')[1] == first_url.split('?v=')[1]


def test_the_pages_state_replaces_the_undo_steps_a_restart_lost(folders):
    """An undo waiting to be sent when the server restarted would undo nothing on the new
    server (its history is gone): the page sends its state instead (``restore``), checked
    as every edit is."""
    first = Tab(_annotator(folders))
    first.open(image='a.png')
    first.send(*_places(POINTS[:2]))
    shown = first.state['edit']  # the page undid point 1 meanwhile
    shown['faces'][0]['points'][1] = None
    state = {key: shown[key] for key in ('faces', 'face', 'status', 'status_reason',
                                         'reviewed_at', 'model')}
    again = Tab(_annotator(folders))  # restarted
    assert again.open(image='a.png', discard=True, seen=first.state['seen'])['ok']
    answer = again.send(dict(op='restore', state=state))
    assert answer['saved'] == 1 and not answer['message'] and answer['undo'] == 1
    draft = json.loads((folders[1] / '.drafts' / 'a.json').read_text())
    assert draft['faces'][0]['points'][:2] == [list(POINTS[0]), None]
    answer = again.send(dict(op='restore', state=dict(state, face=3)))
    assert answer['message'] == 'refused: no face 3: the state has 1'
    assert answer['edit']['faces'][0]['points'][:2] == [list(POINTS[0]), None]
    # the reason against the status, even the image's own sent back (a hunt's repro: an
    # annotated file with a skip reason; a skip with no reason, which skip() never writes)
    again.send(dict(op='skip', reason='bad quality'))
    skipped = {key: again.state['edit'][key] for key in state}
    answer = again.send(dict(op='restore', state=dict(skipped, status='annotated')))
    assert answer['message'] == "refused: a reason is a skipped image's; this one is annotated"
    other = Tab(_annotator(folders), OTHER_TAB)
    other.open(image='b.png')
    other.send(dict(op='restore', state=dict(state, status='skipped', status_reason='')))
    assert json.loads((folders[1] / 'b.json').read_text())['status_reason'] == 'skipped'


def _full_disk(monkeypatch) -> Callable[[], None]:
    """Make the session's file writes fail as on a full disk (ENOSPC); returns what undoes
    it (the disk freed)."""
    real = annotate_module.write_bytes_atomic

    def full(path, obj, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(annotate_module, 'write_bytes_atomic', full)
    return lambda: monkeypatch.setattr(annotate_module, 'write_bytes_atomic', real)


def test_a_failed_save_is_reported_and_retried(folders, monkeypatch):
    annotator = _annotator(folders)
    tab = Tab(annotator)
    tab.open(image='a.png')
    freed = _full_disk(monkeypatch)
    state = tab.send(dict(op='place', index=0, x=10, y=10))
    assert state['applied'] == 1 and state['saved'] == 0 and not state['conflict']
    assert state['save_error'].startswith('Not saved: cannot write in')
    assert 'No space left on device' in state['save_error']
    assert not state['save_permanent']  # the page sends again until it is saved
    freed()
    state = tab.send()  # the page sends again (nothing new): saved now
    assert state['saved'] == 1 and not state['save_error']
    assert annotator.session.open('a.png').current.points[0] == (10.0, 10.0)


def test_a_tab_forgotten_beyond_max_tabs_keeps_its_unsaved_work(folders, monkeypatch):
    """A running server forgets the least recently used tab beyond MAX_TABS; the work it held
    unsaved (a full disk) went with it, not set aside as Reload sets it (a hunt's finding).
    It is kept in .drafts/superseded/ now."""
    from animal_landmarks_mm.annotate_app import MAX_TABS
    annotator = _annotator(folders)
    tab = Tab(annotator)
    tab.open(image='a.png')
    freed = _full_disk(monkeypatch)
    assert tab.send(dict(op='place', index=0, x=10, y=10))['saved'] == 0
    freed()
    for k in range(MAX_TABS):  # other tabs since, each opening an image
        Tab(annotator, f'tab-{k + 100:06d}').open(image='b.png')
    assert TAB not in annotator.tabs  # forgotten (its page is answered 410, and reopens)
    kept, = (folders[1] / '.drafts' / 'superseded').iterdir()
    assert kept.name.startswith('a.')
    assert json.loads(kept.read_text())['faces'][0]['points'][0] == [10, 10]


def test_predicted_files_are_counted_apart_and_accepted(folders):
    annotator = _annotator(folders)
    tab = Tab(annotator)
    tab.open(image='c.png')
    tab.send(*_places([(1 + k, 2 + k) for k in range(28)]))
    session = annotator.session
    raw = json.loads(session.annotation_path('c.png').read_text())
    raw.update(status='predicted')
    raw['faces'][0]['scores'] = [0.5] * 28
    session.annotation_path('c.png').write_text(json.dumps(raw))
    annotator = Annotator(AnnotationSession(*folders, annotator='reviewer'))
    tab = Tab(annotator)
    state = tab.open(go='start')['state']
    assert state['progress'] == dict(done=0, predicted=1, to_do=3, total=3)
    assert tab.open(go='todo')['state']['image'] == 'b.png'
    state = tab.open(image='c.png')['state']
    assert state['status_label'] == 'predicted, to review'
    assert state['edit']['faces'][0]['predicted']
    state = tab.send(dict(op='accept'))
    assert state['status_label'] == 'annotated' and state['progress']['predicted'] == 0
    meta = load_annotation(session.annotation_path('c.png')).meta
    assert meta['reviewed_by'] == 'reviewer'


@pytest.fixture
def client(folders):
    from starlette.testclient import TestClient
    app = create_app(_annotator(folders), port=7860)
    with TestClient(app, base_url='http://127.0.0.1:7860') as test_client:
        yield test_client


def test_another_site_cannot_post_without_json(client):
    """A page of another site may send text/plain or form bodies without the browser asking
    (no CORS preflight); only application/json is taken."""
    body = json.dumps(dict(tab=TAB, go='start'))
    for media in ('text/plain', 'application/x-www-form-urlencoded', None):
        headers = {'content-type': media} if media else {}
        answer = client.post('/annotator/api/open', content=body, headers=headers)
        assert answer.status_code == 400 and 'application/json' in answer.json()['message']
    assert client.post('/annotator/api/open', content=body,
                       headers={'content-type': 'application/json; charset=utf-8'}).json()['ok']
    # and the browser's question before another page's JSON request is refused: it fell
    # through to Gradio's CORS middleware, which allowed a page of any localhost port (a
    # hunt's repro: the page then opened images and pushed this user's tab out)
    for path in ('/annotator/api/open', '/annotator/api/edit'):
        answer = client.options(path, headers={
            'origin': 'http://localhost:1234', 'access-control-request-method': 'POST',
            'access-control-request-headers': 'content-type'})
        assert answer.status_code == 403, (path, answer.status_code)
        assert not any(key.lower().startswith('access-control-') for key in answer.headers)


def test_images_are_served_by_index_from_the_image_folder_only(client, folders):
    page = client.get('/')
    assert page.status_code == 200 and 'Landmark annotator' in page.text
    config = client.get('/annotator/api/config').json()
    assert config['count'] == 3 and len(config['landmarks']) == 28
    opened = client.post('/annotator/api/open', json=dict(tab=TAB, image='a.png')).json()
    image = client.get(opened['state']['url'])
    assert image.status_code == 200 and image.content == (folders[0] / 'a.png').read_bytes()
    assert image.headers['content-type'] == 'image/png'
    assert 'max-age' in image.headers['cache-control'] and image.headers.get('etag')
    for url in ('/annotator/image/3', '/annotator/image/-1', '/annotator/static/../annotate.py',
                '/annotator/static/editor.html', '/annotator/static/%2e%2e%2fannotate.py'):
        assert client.get(url).status_code in (404, 422), url
    assert client.get('/annotator/static/editor.js').status_code == 200
    for path in (folders[0] / 'a.png', '/etc/passwd'):
        for route in ('/gradio_api/file=', '/file='):
            assert client.get(f'{route}{path}').status_code >= 400, f'{route}{path} was served'
    bad = client.post('/annotator/api/open', json=dict(tab=TAB, image='.x.png'))
    assert bad.status_code == 404 and 'not an image' in bad.json()['message']
    assert client.post('/annotator/api/edit', content=b'not json').status_code == 400


def test_a_sideways_webp_is_served_turned_as_mmcv_shows_it(tmp_path):
    from PIL import Image
    images = tmp_path / 'images'
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # Chromium ignores a WebP's EXIF orientation; JPEG's and PNG's it applies
    for name in ('turned.webp', 'turned.jpg'):
        Image.new('RGB', (200, 120), (90, 90, 90)).save(images / name, exif=exif.tobytes())
    Image.new('RGB', (200, 120)).save(images / 'upright.webp')
    annotator = Annotator(AnnotationSession(images, tmp_path / 'out'))
    payloads = {name: annotator.image_payload(annotator.session.index(name))
                for name in annotator.session.images}
    data, media = payloads['turned.webp']
    assert media == 'image/png'
    import io
    assert Image.open(io.BytesIO(data)).size == (120, 200)
    assert payloads['turned.jpg'] == (images / 'turned.jpg', 'image/jpeg')
    assert payloads['upright.webp'] == (images / 'upright.webp', 'image/webp')
    # a PNG named .webp (the annotator lists it: image_size reads the four formats) is served
    # as it is; the WebP plugin alone refused it and the page was told the image was gone
    Image.new('RGB', (20, 10)).save(images / 'png_inside.webp', format='PNG')
    annotator = Annotator(AnnotationSession(images, tmp_path / 'out'))
    assert annotator.image_payload(annotator.session.index('png_inside.webp')) == (
        images / 'png_inside.webp', 'image/webp')


def test_a_picture_the_browser_would_turn_otherwise_is_served_as_training_decodes_it(tmp_path):
    """A PNG whose eXIf chunk comes after the pixel data (OpenCV applies it, Chromium does
    not), or an animated one (Chromium applies it, OpenCV does not): the browser showed
    another frame than training decodes, and the points were placed in it. Such a picture is
    served as training decodes it (read_image); one the browser shows alike, as it is."""
    from PIL import Image
    from test_annotation import png_with_exif_chunks, tiff_block

    from animal_landmarks_mm.annotation import read_image
    images = tmp_path / 'images'
    images.mkdir()
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 200, 3),
                                                                   np.uint8))
    six = tiff_block(6)
    for name, chunks in (('after.png', dict(after=[six])), ('before.png', dict(before=[six])),
                         ('animated.png', dict(before=[six], animated=True))):
        (images / name).write_bytes(png_with_exif_chunks(picture, **chunks))
    annotator = Annotator(AnnotationSession(images, tmp_path / 'out'))
    for name in ('after.png', 'animated.png'):
        data, media = annotator.image_payload(annotator.session.index(name))
        shown = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert media == 'image/png' and np.array_equal(shown, read_image(images / name)), name
    assert read_image(images / 'after.png').shape[:2] == (200, 120)  # turned, as trained
    assert annotator.image_payload(annotator.session.index('before.png')) == (
        images / 'before.png', 'image/png')


def test_the_image_route_names_a_picture_it_cannot_read_and_reads_a_broken_exif_upright(
        tmp_path):
    """A WebP whose EXIF block is cut short (PIL's own reader raised): a server error (500),
    and the page blamed the browser; it is upright to OpenCV, and served as it is. A WebP cut
    short itself (still in the folder) was said to be gone: one line naming it now."""
    from PIL import Image
    images = tmp_path / 'images'
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new('RGB', (60, 40), (100, 150, 200)).save(images / 'a.webp', 'WEBP',
                                                     exif=exif.tobytes()[:12])
    noise = np.random.default_rng(0).integers(0, 255, (120, 200, 3), np.uint8)
    Image.fromarray(noise).save(images / 'b.webp', 'WEBP', exif=exif.tobytes(), quality=90)
    data = (images / 'b.webp').read_bytes()
    (images / 'b.webp').write_bytes(data[:len(data) * 2 // 3])
    annotator, client = _app_client((images, tmp_path / 'out'))
    answer = client.get('/annotator/image/0')
    assert answer.status_code == 200 and answer.content == (images / 'a.webp').read_bytes()
    answer = client.get('/annotator/image/1')
    assert answer.status_code == 422 and _one_line(answer).startswith(
        f'{images / "b.webp"}: image unreadable (')
    (images / 'b.webp').unlink()
    answer = client.get('/annotator/image/1')
    assert answer.status_code == 404 and _one_line(answer) == 'image 1 is gone from the folder'


def test_a_tab_the_server_forgot_among_many_is_told_so_truly(folders):
    """A tab left open while more than MAX_TABS pages were loaded is forgotten (its image is
    opened again from disk): the server has not restarted, and does not say so."""
    from animal_landmarks_mm.annotate_app import MAX_TABS
    annotator = _annotator(folders)
    tab = Tab(annotator)
    token = tab.open(image='a.png')['state']['token']
    for k in range(MAX_TABS):
        annotator.open(f'other-tab-{k:04d}', go='start')
    status, answer = annotator.edit(TAB, token, [dict(seq=1, op='place', index=0, x=5, y=5)])
    assert status == 410 and answer['message'] == (
        "the server lost this tab's image (restarted, or too many tabs); opening it again")


def _raw_get(port: int, path: str, host: str) -> tuple[int, str]:
    """A plain HTTP request with the given Host header (as a rebinding page's browser sends)."""
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        connection.putrequest('GET', path, skip_host=True)
        connection.putheader('Host', host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode('utf-8', 'replace')
    finally:
        connection.close()


def test_requests_for_another_host_name_are_refused(folders):
    port = free_port()
    server = launch(_annotator(folders), port=port, block=False)
    try:
        for path in ('/', '/annotator/image/0', '/annotator/api/config', '/gradio_api/info',
                     '/config'):
            status, body = _raw_get(port, path, f'evil.example:{port}')
            assert status == 403, path
            assert body.startswith("refused: Host 'evil.example:") and body.count('\n') == 1
        for host in (f'127.0.0.1:{port}', f'localhost:{port}', f'[::1]:{port}', 'LOCALHOST'):
            assert _raw_get(port, '/annotator/image/0', host)[0] == 200, host
        assert _raw_get(port, '/annotator/image/0', f'192.168.1.5:{port}')[0] == 403
    finally:
        server.close()


def test_websockets_for_another_host_name_are_refused(client):
    from starlette.websockets import WebSocketDisconnect
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect('/gradio_api/queue/join',
                                      headers={'host': 'evil.example:7860'}):
            pass
    assert refused.value.code == 1008


def test_serving_beyond_this_machine_warns():
    assert exposure_warning('127.0.0.1', 7860) is None
    assert 'anyone who can reach this machine on port 7860' in exposure_warning('0.0.0.0', 7860)


def test_the_allowed_host_names_follow_the_address_listened_on():
    local = AllowedHosts.for_bind('127.0.0.1')
    assert 'localhost:7860' in local and '[::1]:7860' in local and '127.0.0.1' in local
    assert 'evil.example' not in local and '10.0.0.2' not in local and '' not in local
    named = AllowedHosts.for_bind('annotate.lab', ['alias.lab'])
    assert 'annotate.lab:7860' in named and 'alias.lab' in named and 'evil.lab' not in named
    everywhere = AllowedHosts.for_bind('0.0.0.0')
    assert '10.1.2.3:7860' in everywhere and '[fe80::1]:7860' in everywhere  # digits: no DNS
    assert 'evil.example' not in everywhere
    assert 'nas.lab' in AllowedHosts.for_bind('0.0.0.0', ['nas.lab'])


@pytest.fixture(scope='module')
def predictor(trained):
    return LandmarkPredictor(MAIN_CONFIG, trained[0] / 'epoch_1.pth')


def test_model_assisted_box_then_predict(folders, predictor):
    with _annotator(folders, predictor, pre_annotate=0) as annotator:
        tab = Tab(annotator)
        tab.open(image='b.png')
        state = tab.send(dict(op='box', box=[300, 200, 700, 650]), dict(op='predict', face=0))
        assert state['message'].startswith('predicted 28 points')
        face = state['edit']['faces'][0]
        assert face['predicted'] and len(face['scores']) == 28
        saved = load_annotation(folders[1] / 'b.json')
        assert saved.status == 'predicted' and saved.meta['model'] == 'tiny.pth'
        assert saved.faces[0].bbox == pytest.approx((300, 200, 700, 650))
        expected = predictor.predict(cv2.imread(str(folders[0] / 'b.png')),
                                     np.array([saved.faces[0].bbox], np.float32))
        assert np.allclose(saved.faces[0].landmarks, expected.pred_instances.keypoints[0],
                           atol=1e-3)
        tab.send(dict(op='undo'))  # predicting is an undo step like any other
        assert not tab.state['edit']['faces'][0]['predicted']
        tab.send(dict(op='redo'), dict(op='accept'))
        assert load_annotation(folders[1] / 'b.json').status == 'annotated'


def test_an_onnx_graph_assists_as_its_checkpoint_does(peaked_scenes, peaked_checkpoint,
                                                      tmp_path):
    """The annotator's model assistance with the exported .onnx file (load_predictor, as the
    tool does): the points of the checkpoint it came from, on a face the model knows."""
    from animal_landmarks_mm.infer import load_predictor
    from animal_landmarks_mm.onnx_export import export_onnx
    graph = export_onnx(peaked_checkpoint, tmp_path / 'model.onnx')
    image, boxes, _ = peaked_scenes[1]
    (tmp_path / 'images').mkdir()
    cv2.imwrite(str(tmp_path / 'images' / 'scene.png'), image)
    box = [float(v) for v in boxes[0][:4]]
    folders = (tmp_path / 'images', tmp_path / 'out')
    with _annotator(folders, load_predictor(graph), pre_annotate=0) as annotator:
        tab = Tab(annotator)
        tab.open(image='scene.png')
        state = tab.send(dict(op='box', box=box), dict(op='predict', face=0))
        assert state['message'].startswith('predicted 28 points')
    expected = LandmarkPredictor(MAIN_CONFIG, peaked_checkpoint).predict(
        image, np.array([box], np.float32))
    saved = load_annotation(tmp_path / 'out' / 'scene.json')
    assert saved.status == 'predicted'
    np.testing.assert_allclose(saved.faces[0].landmarks, expected.pred_instances.keypoints[0],
                               atol=0.01)


def test_predict_without_a_model_is_refused(folders):
    tab = Tab(_annotator(folders))
    tab.open(image='a.png')
    state = tab.send(dict(op='predict'))
    # --config only names another config than the main one: --checkpoint is what is needed
    assert state['message'] == 'refused: no model: start the annotator with --checkpoint'


def test_anime_face_detector_layout_checkpoints_predict_the_same(trained, tmp_path, predictor):
    exported = export_checkpoint(trained[0] / 'epoch_1.pth', tmp_path / 'afd.pth')
    afd = LandmarkPredictor(MAIN_CONFIG, exported)
    image = np.random.default_rng(1).integers(0, 255, (200, 200, 3), np.uint8)
    box = np.array([[20, 20, 180, 180]], np.float32)
    assert np.allclose(afd.predict(image, box).pred_instances.keypoints,
                       predictor.predict(image, box).pred_instances.keypoints)
    torch.save({'backbone.conv1.weight': torch.zeros(1)}, tmp_path / 'other.pth')
    with pytest.raises(AnimalLandmarksError, match='does not fit the model'):
        LandmarkPredictor(MAIN_CONFIG, tmp_path / 'other.pth')


def test_the_detected_box_of_the_current_face(folders):
    annotator = _annotator(folders)
    edit = annotator.session.open('b.png')
    boxes = np.array([[0, 0, 50, 50], [200, 200, 500, 500], [600, 100, 700, 200]], float)
    assert _box_for_face(boxes, edit) == (200, 200, 500, 500)  # the largest
    for k in range(28):
        edit.click(610 + k, 150)
    assert _box_for_face(boxes, edit) == (600, 100, 700, 200)  # around its points
    edit.new_face()
    edit.faces[0].points = [(250.0, 250.0)] * 28  # the large one is taken
    assert _box_for_face(boxes, edit) == (600, 100, 700, 200)


# --- pre-annotation in the background ------------------------------------------------------------

WAIT_S = 300  # generous: a loaded 2-core machine


def _wait_for(condition, what: str, timeout: float = WAIT_S) -> None:
    """Wait until ``condition()`` holds (polling: the state of other threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.005)


def _in_thread(function, *args):
    """Run ``function`` in a thread; returns the thread and a dict that gets its result."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=function(*args)), daemon=True)
    thread.start()
    return thread, result


class FakePredictor:
    """A stand-in model: the points of box ``(x0, y0, ...)`` are ``(x0 + k, y0 + 2k)``; records
    each call (the calling thread, the box) and, when ``held``, holds each call until
    :attr:`release` is set (a model call under way)."""

    def __init__(self, held: bool = False):
        self.calls: list[tuple[str, tuple]] = []
        self.release = threading.Event()
        if not held:
            self.release.set()

    def predict(self, image, boxes):
        box = tuple(float(v) for v in boxes[0])
        self.calls.append((threading.current_thread().name, box))
        assert self.release.wait(WAIT_S), 'the fake model was never released'
        points = np.array([[[box[0] + k, box[1] + 2 * k] for k in range(28)]], np.float32)
        return SimpleNamespace(pred_instances=SimpleNamespace(
            keypoints=points, keypoint_scores=np.full((1, 28), 0.5, np.float32)))

    def boxes(self, thread: str | None = None) -> list[tuple]:
        return [box for name, box in self.calls if thread is None or name == thread]


def _files(folder) -> dict:
    """Every file under ``folder``: its modification time and size."""
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob('*')
            if p.is_file()}


def test_predict_jumps_the_queue_and_edits_never_wait_for_the_background(folders):
    model = FakePredictor(held=True)
    with _annotator(folders, model, quiet_s=0.05) as annotator:
        tab = Tab(annotator)
        state = tab.open(image='a.png')['state']
        assert state['prediction'] == 'pending'  # a.png, then b.png, c.png in the background
        _wait_for(lambda: len(model.calls) == 1, 'the background to take the model')
        assert model.calls == [('pre-annotator', whole_image_box(300, 200))]
        # the background holds the model: an edit goes through all the same
        thread, answer = _in_thread(tab.send, dict(op='place', index=0, x=5, y=5))
        thread.join(WAIT_S)
        assert not thread.is_alive() and answer['value']['saved'] == 1
        # a Predict of the page (on a drawn box: not pre-annotated) waits for the call under
        # way only, then goes before the rest of the background's plan
        thread, answer = _in_thread(tab.send, dict(op='box', box=[10, 10, 100, 100]),
                                    dict(op='predict'))
        _wait_for(lambda: annotator.gate.page_waiting == 1, 'the page to wait for the model')
        model.release.set()
        thread.join(WAIT_S)
        assert answer['value']['message'].startswith('predicted 28 points')
        assert annotator.pre.wait_idle(WAIT_S)
        assert model.boxes() == [whole_image_box(300, 200), (10, 10, 100, 100),
                                 whole_image_box(1200, 900), whole_image_box(64, 64)]
        assert model.boxes('pre-annotator') == [whole_image_box(300, 200),
                                                whole_image_box(1200, 900),
                                                whole_image_box(64, 64)]
        assert (annotator.pre.hits, annotator.pre.computed, annotator.pre.pre_annotated) == \
            (0, 1, 3)
        # b.png was pre-annotated: its Predict runs no model
        assert tab.open(image='b.png')['state']['prediction'] == 'ready'
        state = tab.send(dict(op='predict'))
        assert 'pre-annotated' in state['message'] and len(model.calls) == 4
        assert state['edit']['faces'][0]['points'][3] == [3, 6]
        assert annotator.pre.hits == 1


def test_what_is_pre_annotated_and_when_the_cache_misses(folders):
    images, out = folders
    for name in ('d.png', 'e.png', 'f.png', 'g.png'):
        cv2.imwrite(str(images / name), np.zeros((40, 50, 3), np.uint8))
    for name, status in (('b.json', 'annotated'), ('e.json', 'predicted')):
        save_annotation(out / name, ImageAnnotation(
            f'{name[0]}.png', 1200 if name == 'b.json' else 50, 900 if name == 'b.json' else 40,
            [Face([(1.0 + k, 2.0 + k) for k in range(28)])], status=status))
    model = FakePredictor()
    with _annotator(folders, model, quiet_s=0.01) as annotator:
        tab = Tab(annotator)
        tab.open(image='a.png')  # a, then the next 3 to do: c, d, f (b done, e to review)
        assert annotator.pre.wait_idle(WAIT_S)
        assert model.boxes() == [whole_image_box(300, 200), whole_image_box(64, 64)] + \
            [whole_image_box(50, 40)] * 2
        tab.open(image='f.png')  # f is ready; g, after it, is new
        assert annotator.pre.wait_idle(WAIT_S) and len(model.calls) == 5
        # a changed image file is a new image: its points are predicted again
        path = images / 'f.png'
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert tab.open(image='f.png')['state']['prediction'] in ('pending', 'ready')
        assert annotator.pre.wait_idle(WAIT_S) and len(model.calls) == 6
    # the cache keeps the most recently used faces
    cache = PreAnnotator(FakePredictor(), cache_size=2)
    key = image_key(images / 'a.png')
    image = np.zeros((200, 300, 3), np.uint8)
    boxes = [(0, 0, 10, 10), (1, 1, 11, 11), (2, 2, 12, 12)]
    for box in boxes:
        cache.face(key, lambda: image, box)
    assert cache.computed == 3 and cache.cached_face(key, boxes[0]) is None
    assert cache.cached_face(key, boxes[2]) is not None
    assert cache.face(key, lambda: image, (1.0004, 1, 11, 11))[1]  # the same box to 1/1000 px
    assert not cache.alive  # no thread without a plan


def test_detected_faces_are_pre_annotated_and_each_face_finds_its_own(folders):
    boxes = np.array([[100, 100, 500, 500], [600, 100, 900, 400]], np.float32)
    detected = []

    def detector(image):
        detected.append(image.shape)
        return boxes if image.shape[:2] == (900, 1200) else np.zeros((0, 4), np.float32)

    model = FakePredictor()
    with _annotator(folders, model, detector=detector, quiet_s=0.01) as annotator:
        tab = Tab(annotator)
        tab.open(image='b.png')
        assert annotator.pre.wait_idle(WAIT_S)
        assert model.boxes() == [tuple(map(float, boxes[0])), tuple(map(float, boxes[1])),
                                 whole_image_box(64, 64)]  # c.png: no face found
        state = tab.send(dict(op='predict'))
        assert state['edit']['faces'][0]['bbox'] == [100, 100, 500, 500]
        state = tab.send(dict(op='new_face'))
        assert state['prediction'] == 'ready'  # the other face
        state = tab.send(dict(op='predict'))
        assert state['edit']['faces'][1]['bbox'] == [600, 100, 900, 400]
        assert annotator.pre.hits == 2 and len(model.calls) == 3 and len(detected) == 2


def test_opening_an_image_pre_annotates_the_next_so_that_predict_is_instant(folders, predictor):
    images, out = folders
    with _annotator(folders, predictor) as annotator:
        before = _files(images.parent)
        tab = Tab(annotator)
        state = tab.open(image='a.png')['state']
        assert state['prediction'] in ('pending', 'ready')
        assert annotator.pre.wait_idle(WAIT_S)
        for name, size in (('b.png', (1200, 900)), ('c.png', (64, 64))):  # images 2 and 3
            assert annotator.pre.cached_face(image_key(images / name),
                                             whole_image_box(*size)) is not None, name
        assert _files(images.parent) == before, 'pre-annotation wrote a file'
        assert annotator.pre.pre_annotated == 3

        assert tab.open(image='b.png')['state']['prediction'] == 'ready'
        start = time.perf_counter()
        state = tab.send(dict(op='predict'))
        instant = time.perf_counter() - start
        assert 'pre-annotated' in state['message']
        assert (annotator.pre.hits, annotator.pre.computed) == (1, 0)
        face = state['edit']['faces'][0]
        direct = predictor.predict(cv2.imread(str(images / 'b.png')),
                                   np.array([whole_image_box(1200, 900)], np.float32))
        expected = np.clip(direct.pred_instances.keypoints[0], -0.5, (1199.5, 899.5))  # as Predict
        assert np.allclose(face['points'], expected, atol=1e-4)
        assert np.allclose(face['scores'], direct.pred_instances.keypoint_scores[0], atol=1e-5)
        assert load_annotation(out / 'b.json').status == 'predicted'  # saved on Predict only

        # a drawn box was not pre-annotated: the model runs now (for the report: how long)
        start = time.perf_counter()
        state = tab.send(dict(op='new_face'), dict(op='box', box=[100, 100, 600, 500]),
                         dict(op='predict'))
        cold = time.perf_counter() - start
        assert (annotator.pre.hits, annotator.pre.computed) == (1, 1)
        assert state['edit']['faces'][1]['predicted']
        REPORT.append(f'annotator Predict with the tiny model (CPU): pre-annotated '
                      f'{instant * 1000:.1f} ms, computed {cold * 1000:.0f} ms (per request)')


def test_closing_the_app_stops_the_pre_annotation(folders):
    model = FakePredictor(held=True)
    annotator = _annotator(folders, model, quiet_s=0.01)
    server = launch(annotator, port=free_port(), block=False)
    request = urllib.request.Request(
        f'{server.url}/annotator/api/open', data=json.dumps(dict(tab=TAB, image='a.png')).encode(),
        headers={'content-type': 'application/json'})
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert json.load(answer)['state']['prediction'] == 'pending'
    _wait_for(lambda: len(model.calls) == 1, 'the background to take the model')
    closing, _ = _in_thread(server.close)  # waits for the model call under way
    _wait_for(lambda: annotator.pre.closed, 'the pre-annotation to be told to stop')
    model.release.set()
    closing.join(WAIT_S)
    assert not closing.is_alive() and not annotator.pre.alive
    assert len(model.calls) == 1  # b.png and c.png were never started
    annotator.close()  # again: nothing happens


@pytest.mark.parametrize('args, error', [
    (['--image-dir', 'missing', '--output-dir', 'out'], 'image folder not found: missing'),
    (['--image-dir', '.', '--output-dir', 'out', '--config', 'c.py'],
     '--config needs --checkpoint'),
    (['--image-dir', '.', '--output-dir', 'out', '--face-detector', 'yolov3'],
     '--face-detector needs a landmark model (--checkpoint)'),
    (['--image-dir', '.', '--output-dir', 'out', '--checkpoint', 'x.pth'],
     'checkpoint not found: x.pth (give a file, or one of the pretrained names'),
    (['--image-dir', '.', '--output-dir', 'file/out'],
     'cannot create the output folder {cwd}/file/out: Not a directory'),
    (['--image-dir', '.', '--output-dir', 'out', '--files', 'missing.txt'],
     'missing.txt: cannot read the file list'),
    (['--image-dir', '.', '--output-dir', 'out', '--pre-annotate', '-1'],
     '--pre-annotate is a number of images, 0 or more'),
    # "jörg" typed in a Latin-1 terminal: every save would fail on it
    (['--image-dir', '.', '--output-dir', 'out', '--annotator', os.fsdecode(b'j\xf6rg')],
     'the annotator name j\\udcf6rg is not valid UTF-8 (a terminal of another encoding?): '
     'no file can record it; give --annotator NAME'),
])
def test_cli_errors_are_one_line(tmp_path, args, error):
    from conftest import run_tool
    (tmp_path / 'file').write_text('a file, not a folder')
    proc = run_tool('annotate_landmarks.py', *args, cwd=tmp_path, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith(f'error: {error.format(cwd=tmp_path)}'), \
        proc.stderr


def test_names_of_a_files_list_reach_the_terminal_escaped(tmp_path):
    """The warning about names of --files that are not images prints them escaped: an escape
    sequence in a hostile list restyles no terminal. (The address is one this machine does not
    have, TEST-NET-3: the tool warns, then cannot listen, and ends.)"""
    from conftest import run_tool
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / 'list.txt').write_text('a.png\nodd\x1b[31mRED.png\nm1.png\nm2.png\nm3.png\n')
    proc = run_tool('annotate_landmarks.py', '--image-dir', '.', '--output-dir', 'out',
                    '--files', 'list.txt', '--host', '203.0.113.1', cwd=tmp_path, check=False)
    assert '\x1b' not in proc.stderr and (
        f'warning: 4 names of list.txt are not images of {tmp_path} '
        '(odd\\x1b[31mRED.png, m1.png, m2.png and 1 more); left out\n') in proc.stderr, proc.stderr
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(
        'error: cannot listen on 203.0.113.1:7860: ')
    # a port another annotator holds: one line, and no 'open http://...' pointing at it
    with socket.create_server(('127.0.0.1', 0)) as taken:
        port = taken.getsockname()[1]
        proc = run_tool('annotate_landmarks.py', '--image-dir', '.', '--output-dir', 'out',
                        '--port', str(port), cwd=tmp_path, check=False)
    assert proc.returncode == 1 and 'open http' not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: cannot listen on 127.0.0.1:{port}: Address already in use; pass --port N')


def _app_client(folders):
    """A test client of the app over ``folders`` that answers a server error with its status
    (500), not by raising it: the tests below look for the status the page would see."""
    from starlette.testclient import TestClient
    annotator = _annotator(folders)
    return annotator, TestClient(create_app(annotator, port=7860),
                                 base_url='http://127.0.0.1:7860',
                                 raise_server_exceptions=False)


def _one_line(answer) -> str:
    message = answer.json()['message']
    assert '\n' not in message and 'Traceback' not in message
    return message


def test_images_named_in_other_bytes_than_utf8_are_left_out_and_said_so(folders, tmp_path):
    """And names with a line break, which no annotation file holds either: such an image was
    listed, and 28 points on it could never be saved as done."""
    images, _ = folders
    for name in (b'caf\xe9.png', b'night\ncat.png'):
        with open(os.path.join(os.fsencode(images), name), 'wb') as f:
            f.write((images / 'a.png').read_bytes())
    annotator, client = _app_client(folders)
    answer = client.post('/annotator/api/open', json=dict(tab=TAB, go='start'))
    assert answer.status_code == 200 and answer.json()['state']['count'] == 3
    # the tool says so at start, in one line, the name escaped
    from conftest import run_tool
    proc = run_tool('annotate_landmarks.py', '--image-dir', images, '--output-dir',
                    tmp_path / 'out', '--host', '203.0.113.1', check=False)
    warning = [line for line in proc.stderr.splitlines() if 'UTF-8' in line]
    assert warning == [f'warning: 2 images of {images} are left out: their names are not valid '
                       'UTF-8 or hold a line break (caf\\udce9.png, night\\ncat.png); rename '
                       'them to annotate them'], proc.stderr



def test_images_annotated_only_in_subfolders_are_said_at_start(folders):
    """The annotator lists its folder's top level: a person's files moved into round1/ made
    their images show as to do, with no word (the converter trains on them)."""
    from conftest import run_tool
    images, out = folders
    for name in ('a', 'b'):
        save_annotation(out / 'round1' / f'{name}.json', ImageAnnotation(
            f'{name}.png', *cv2.imread(str(images / f'{name}.png')).shape[1::-1],
            [Face([(10.0 + k, 10.0 + k % 5) for k in range(28)])], meta=dict(annotator='al')))
    save_annotation(out / 'b.json', load_annotation(out / 'round1' / 'b.json'))  # also here
    proc = run_tool('annotate_landmarks.py', '--image-dir', images, '--output-dir', out,
                    '--host', '203.0.113.1', check=False)
    warning = [line for line in proc.stderr.splitlines() if 'subfolders' in line]
    assert warning == [f'warning: 1 images are annotated in subfolders of {out} only (such as '
                       'round1/a.json): the annotator lists the top level and shows them as '
                       'to do; the converter trains on those files (a file of the image saved '
                       'here would come first)'], proc.stderr

def test_a_value_no_file_can_hold_is_not_saved_and_said_so(folders):
    """A NaN in a file's meta (json reads it; no save could write it back): the image does not
    open (it opened, and every save of the work done on it failed), the page is told why in
    one line, the file is not counted as done, and it stays as it was."""
    tab = Tab(_annotator(folders))
    tab.open(image='a.png')
    tab.send(*_places(POINTS))
    path = folders[1] / 'a.json'
    raw = json.loads(path.read_text())
    raw['meta']['score'] = float('nan')
    path.write_text(json.dumps(raw))
    before = path.read_bytes()
    for annotator in (tab.annotator, _annotator(folders)):  # the running one, a restarted one
        answer = annotator.open(TAB, image='a.png')
        assert not answer['ok'] and answer['reason'] == 'cannot_open'
        assert answer['message'].startswith(f'Cannot open: {path}: "meta" holds "score" nan: '
                                            'NaN and Infinity are no JSON numbers')
        assert '\n' not in answer['message']
    assert answer['state']['progress']['done'] == 0
    assert path.read_bytes() == before


def test_a_save_that_fails_the_same_way_each_time_is_sent_again_only_when_asked(folders):
    """A folder where the image's annotation file goes (made after the image opened): every
    save is refused the same way. The page is told why in one line, and sends again only when
    asked (s, another edit); nothing is written."""
    tab = Tab(_annotator(folders))
    tab.open(image='a.png')
    path = folders[1] / 'a.json'
    path.mkdir(parents=True)
    state = tab.send(*_places(POINTS))
    assert state['saved'] == 0 and state['applied'] == len(POINTS)
    assert state['save_error'].startswith(f'Not saved: {path}: not a regular file ')
    assert '\n' not in state['save_error']
    assert state['save_permanent'] and state['save_error'].endswith('press s to try again')
    state = tab.send()
    assert state['save_permanent'] and state['saved'] == 0
    assert path.is_dir() and not any(path.iterdir())
    assert not (folders[1] / '.drafts').exists()


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads a file of mode 000 (run as another '
                    'user, e.g. setpriv --reuid=nobody, to check it)')
def test_an_unreadable_draft_is_one_line(folders):
    tab = Tab(_annotator(folders))
    tab.open(image='a.png')
    tab.send(dict(op='place', index=0, x=10, y=10))
    draft = folders[1] / '.drafts' / 'a.json'
    draft.chmod(0)
    try:
        answer = _annotator(folders).open(TAB, image='a.png')
    finally:
        draft.chmod(0o644)
    assert not answer['ok'] and answer['reason'] == 'cannot_open'
    assert answer['message'] == (f"Cannot open: {draft}: cannot read ([Errno 13] Permission "
                                 f"denied: '{draft}')")


def test_a_draft_that_cannot_be_set_aside_opens_read_only(folders):
    """Its annotation file changed, so the draft is to be moved aside; it cannot be (the folder
    it goes to is a file here; read-only folders are the usual case): the image opens as its
    file says, read-only, the page is told why, and the draft stays."""
    tab = Tab(_annotator(folders))
    tab.open(image='a.png')
    tab.send(dict(op='place', index=0, x=10, y=10))
    draft = folders[1] / '.drafts' / 'a.json'
    mine = draft.read_bytes()
    save_annotation(folders[1] / 'a.json', ImageAnnotation('a.png', 300, 200, [Face(
        [tuple(map(float, p)) for p in POINTS])]))
    (draft.parent / 'superseded').write_text('a file where the folder goes')
    annotator, client = _app_client(folders)
    answer = client.post('/annotator/api/open', json=dict(tab=TAB, image='a.png'))
    assert answer.status_code == 200 and answer.json()['ok']
    state = answer.json()['state']
    assert 'cannot be set aside' in state['message'] and '\n' not in state['message']
    assert state['edit']['faces'][0]['points'][0] == list(POINTS[0])  # the file's points
    answer = client.post('/annotator/api/edit', json=dict(tab=TAB, token=state['token'], ops=[
        dict(op='move', index=0, x=40, y=40, seq=1)]))
    state = answer.json()['state']
    assert answer.status_code == 200 and state['message'].startswith('refused: not editable')
    assert not state['save_error'] and draft.read_bytes() == mine


def test_refused_and_unchanged_edits_write_nothing(folders):
    """Nothing is written for edits that change nothing (refused, a flag set to what it was,
    an image only looked at): a rewrite would change the file under another tab, which then
    could not save its real edit (a false conflict). Real changes of a draft are saved."""
    annotator = _annotator(folders)
    first, second = Tab(annotator, TAB), Tab(annotator, OTHER_TAB)
    first.open(image='a.png')
    first.send(*_places(POINTS))
    path = folders[1] / 'a.json'
    second.open(image='a.png')
    first.open(image='a.png')
    before = path.read_bytes()
    state = first.send(dict(op='place', index=0, x=9999, y=1), dict(op='flag', index=1, flag=2),
                       dict(op='remove_face', face=5))
    assert state['message'].count('refused:') == 2 and state['saved'] == state['applied'] == 3
    assert path.read_bytes() == before
    state = second.send(dict(op='move', index=0, x=20, y=20))  # a real edit: no conflict
    assert not state['conflict'] and state['saved'] == 1
    # a draft looked at in one tab while another changes it: moving on writes nothing
    first.open(image='b.png')
    first.send(dict(op='place', index=0, x=10, y=10))
    second.open(image='b.png')
    first.open(image='b.png')
    second.send(dict(op='place', index=1, x=12, y=12))
    assert first.open(go='next')['ok']
    # ... and a draft changed after it was opened is saved
    first.open(image='b.png')
    state = first.send(dict(op='place', index=2, x=14, y=14))
    assert state['saved'] == 1 and not state['conflict']
    draft = json.loads((folders[1] / '.drafts' / 'b.json').read_text())
    assert draft['faces'][0]['points'][:3] == [[10, 10], [12, 12], [14, 14]]


def test_request_bodies_are_bounded(folders):
    annotator, client = _app_client(folders)
    headers = {'content-type': 'application/json'}
    big = json.dumps(dict(tab=TAB, go='start', pad='x' * MAX_BODY_BYTES)).encode()
    answer = client.post('/annotator/api/open', content=big, headers=headers)
    assert answer.status_code == 413 and _one_line(answer) == \
        f'the request body is over {MAX_BODY_BYTES} bytes'

    def chunks():  # no content-length: counted as it comes
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    answer = client.post('/annotator/api/edit', content=chunks(), headers=headers)
    assert answer.status_code == 413
    nested = b'[' * 100_000 + b']' * 100_000  # within the bound, too deep for json
    answer = client.post('/annotator/api/open', content=nested, headers=headers)
    assert answer.status_code == 400 and _one_line(answer) == \
        'the request body must be a JSON object'
    assert client.post('/annotator/api/open', json=dict(tab=TAB, go='start')).json()['ok']


def test_uploads_are_refused(folders):
    """The page has no file input; Gradio's upload route would keep any page's file (any
    site's: it allows them) and serve it back."""
    annotator, client = _app_client(folders)
    for origin in ({}, {'origin': 'https://evil.example'}):
        answer = client.post('/gradio_api/upload', files={'files': ('x.txt', b'hello')},
                             headers=origin)
        assert answer.status_code == 403
        assert answer.text == 'refused: this annotator takes no uploads (it has no file input)\n'
    for path in ('/gradio_api/upload/', '/gradio_api/upload_progress?upload_id=x',
                 '/gradio_api/component_server', '/gradio_api/process_recording'):
        answer = client.post(path, files={'files': ('x.txt', b'hello')})
        assert answer.status_code == 403, path
    assert client.get('/').status_code == 200  # the page itself


def test_an_image_deleted_while_listed_is_404_in_one_line(folders):
    annotator, client = _app_client(folders)
    os.remove(folders[0] / 'b.png')
    answer = client.get('/annotator/image/1')
    assert answer.status_code == 404 and _one_line(answer) == 'image 1 is gone from the folder'
    (folders[0] / 'b.png').mkdir()  # no longer a file
    assert client.get('/annotator/image/1').status_code == 404


def test_values_of_another_type_are_refused_in_one_line(folders):
    annotator, client = _app_client(folders)
    for image in (['a.png'], {'x': 1}, 5):
        answer = client.post('/annotator/api/open', json=dict(tab=TAB, image=image))
        assert answer.status_code == 404, image
        assert _one_line(answer) == f'an image name is text, not {type(image).__name__}'
    answer = client.post('/annotator/api/edit', json=dict(tab=[TAB], token='x', ops=[]))
    assert answer.status_code == 400 and 'a tab id is a text' in _one_line(answer)
    state = client.post('/annotator/api/open', json=dict(tab=TAB, image='a.png')).json()['state']
    # JSON holds any integer, and spells a lone surrogate as \\udcff
    body = json.dumps(dict(tab=TAB, token=state['token'], ops=[
        dict(op='place', index=0, x=10 ** 400, y=5, seq=1),
        dict(op='skip', reason='bad \udcff', seq=2)]))
    answer = client.post('/annotator/api/edit', content=body,
                         headers={'content-type': 'application/json'})
    assert answer.status_code == 200
    assert answer.json()['state']['message'] == (
        'refused: x must be a finite number, got an integer of 1329 bits; refused: a skip '
        'reason is not valid Unicode (a lone surrogate): bad \\udcff')


def test_the_help_for_u_is_served_and_u_goes_to_an_unfinished_draft(client, folders):
    """The page's help comes from the served config: u says it visits unfinished drafts, and
    the image to do after every image is annotated is the one left with a draft."""
    help_u = client.get('/annotator/api/config').json()['shortcuts']['u']
    assert help_u == SHORTCUTS['u'] and 'unfinished draft' in help_u
    annotator = _annotator(folders)
    tab = Tab(annotator)
    for image in ('a.png', 'b.png', 'c.png'):
        tab.open(image=image)
        tab.send(*_places([(1 + k, 2 + k) for k in range(28)]))
    assert tab.open(go='todo')['ok'] is False  # all done
    tab.open(image='b.png')
    state = tab.send(dict(op='new_face'), dict(op='place', face=1, index=0, x=5.0, y=5.0))
    assert annotator.session.has_draft('b.png') and state['progress']['to_do'] == 1
    tab.open(image='a.png')
    assert tab.open(go='todo')['state']['image'] == 'b.png'


def test_the_edit_answer_names_refused_operations_and_the_config_the_reason_limit(client):
    """The page stays on an image whose skip was refused: the answer says which operations
    were refused, and the config how long a skip reason may be (the input's maxlength)."""
    from animal_landmarks_mm.annotate import MAX_REASON_CHARS
    assert client.get('/annotator/api/config').json()['max_reason_chars'] == MAX_REASON_CHARS
    state = client.post('/annotator/api/open', json=dict(tab=TAB, image='a.png')).json()['state']
    answer = client.post('/annotator/api/edit', json=dict(tab=TAB, token=state['token'], ops=[
        dict(op='place', index=0, x=5, y=5, seq=1),
        dict(op='skip', reason='x' * (MAX_REASON_CHARS + 1), seq=2),
        dict(op='place', index=1, x=-5, y=5, seq=3),
        dict(op='skip', reason='blurry', seq=4)])).json()
    assert answer['refused'] == [2, 3]
    assert answer['state']['message'].startswith('refused: a skip reason')
    assert answer['state']['edit']['status'] == 'skipped'  # the fourth was taken


@pytest.mark.parametrize('port', ['0', '65536', '-1', 'http'])
def test_a_port_outside_1_to_65535_is_refused_in_one_line(tmp_path, port):
    from conftest import run_tool
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((20, 20, 3), np.uint8))
    # an address this machine does not have (TEST-NET-3): nothing is served if it goes wrong
    proc = run_tool('annotate_landmarks.py', '--image-dir', '.', '--output-dir', 'out',
                    '--port', port, '--host', '203.0.113.1', cwd=tmp_path, check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        f"error: argument --port: a port is a number from 1 to 65535, not '{port}'")


def test_a_second_annotator_on_the_same_folder_ends_in_one_line(tmp_path):
    """Two annotators on one output folder would overwrite each other's saves."""
    from conftest import run_tool
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / 'out').mkdir()
    held = lock_output_folder(tmp_path / 'out')  # the first annotator (this process)
    try:
        proc = run_tool('annotate_landmarks.py', '--image-dir', '.', '--output-dir', 'out',
                        cwd=tmp_path, check=False)
    finally:
        held.release()
    assert proc.returncode == 1 and 'open http' not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        f'error: {tmp_path / "out"} is in use by another annotator or tools/infer.py (process '
        f'id {os.getpid()}); two on one folder would overwrite each other\'s saves: stop that '
        'one, or choose another --output-dir')


def test_predict_decodes_an_image_in_a_folder_whose_name_is_not_utf8(tmp_path):
    """Predict decodes the picture from its bytes: OpenCV's ``imread`` takes a path as UTF-8 and
    crashed the whole annotator (a segmentation fault) on a folder named in other bytes, which
    Linux allows and Python holds as a lone surrogate."""
    folder = tmp_path / os.fsdecode(b'caf\xe9')  # Latin-1, as an old archive may name it
    folder.mkdir()
    picture = np.zeros((30, 40, 3), np.uint8)
    picture[5:10, 5:10] = (0, 0, 255)
    assert cv2.imencode('.png', picture)[0]
    (folder / 'a.png').write_bytes(cv2.imencode('.png', picture)[1].tobytes())
    decoded = lazy_image(folder / 'a.png')()
    assert decoded.shape == (30, 40, 3) and (decoded == picture).all()
    (folder / 'b.png').write_bytes(b'not a picture')
    with pytest.raises(AnnotationError, match='b.png: not an image OpenCV can decode'):
        lazy_image(folder / 'b.png')()


def test_an_image_turned_into_a_link_out_of_the_folder_is_no_server_error(folders, tmp_path,
                                                                          monkeypatch):
    """An open image moved to another disk, a link left in its place: each edit answers the
    page with the state and why it is not saved (it was 500, every edit); a folder the server
    may not read answers one line."""
    annotator, client = _app_client(folders)
    images, _ = folders
    token = client.post('/annotator/api/open', json=dict(tab=TAB, image='a.png')
                        ).json()['state']['token']
    answer = client.post('/annotator/api/edit', json=dict(tab=TAB, token=token, ops=[
        dict(op='place', index=0, x=5, y=5, seq=1)]))
    assert answer.status_code == 200 and answer.json()['state']['saved'] == 1
    (tmp_path / 'store').mkdir()
    (images / 'a.png').rename(tmp_path / 'store' / 'a.png')
    (images / 'a.png').symlink_to(tmp_path / 'store' / 'a.png')
    answer = client.post('/annotator/api/edit', json=dict(tab=TAB, token=token, ops=[
        dict(op='place', index=1, x=6, y=6, seq=2)]))
    assert answer.status_code == 200, answer.text
    state = answer.json()['state']
    assert state['applied'] == 2 and state['saved'] == 1 and state['file'] is None
    assert "'a.png' is outside" in state['save_error']

    def refused(*args):
        raise PermissionError(errno.EACCES, 'Permission denied', str(folders[1]))

    monkeypatch.setattr(annotator.session, 'progress', refused)
    answer = client.post('/annotator/api/edit', json=dict(tab=TAB, token=token, ops=[]))
    assert answer.status_code == 409 and _one_line(answer) == (
        f'{folders[1]}: Permission denied')
    answer = client.post('/annotator/api/open', json=dict(tab=TAB, image='b.png'))
    assert answer.status_code == 409 and _one_line(answer) == (
        f'{folders[1]}: Permission denied')


def test_discard_is_true_or_false_only(folders, monkeypatch):
    """A page's "false" is text, which bool() takes for true: the tab's unsaved work would be
    dropped without a word. Refused in one line; the work stays."""
    annotator, client = _app_client(folders)
    token = client.post('/annotator/api/open', json=dict(tab=TAB, image='a.png')
                        ).json()['state']['token']
    _full_disk(monkeypatch)
    client.post('/annotator/api/edit', json=dict(tab=TAB, token=token, ops=[
        dict(op='place', index=0, x=5, y=5, seq=1)]))
    answer = client.post('/annotator/api/open', json=dict(tab=TAB, image='b.png',
                                                          discard='false'))
    assert answer.status_code == 400 and _one_line(answer) == (
        "discard is true or false, not 'false'")
    assert annotator.tabs[TAB].edit.image == 'a.png' and annotator.tabs[TAB].edit.dirty
    answer = client.post('/annotator/api/open', json=dict(tab=TAB, image='b.png'))
    assert answer.status_code == 409  # not discarded: saving it first still fails


def test_a_sideways_webp_over_the_pixel_limit_is_one_line(tmp_path, monkeypatch):
    """PIL refuses to turn a WebP of too many pixels: the page's request (a prefetch of the
    next image too) is answered one line, not a server error."""
    from PIL import Image
    images = tmp_path / 'images'
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new('RGB', (300, 200)).save(images / 'big.webp', exif=exif.tobytes())
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 20_000)  # 60,000 pixels: over twice it
    annotator, client = _app_client((images, tmp_path / 'out'))
    answer = client.get('/annotator/image/0')
    assert answer.status_code == 422 and _one_line(answer).startswith(
        f'{images / "big.webp"}: image refused, too many pixels (')


@pytest.mark.timeout(60)  # before the fix, PIL's open waited for a writer for good
def test_an_image_replaced_by_a_fifo_stalls_no_tab(folders):
    """PIL opens a path with a plain open, which waits for a writer on a FIFO: opening such an
    image held the lock every tab shares, and the pre-annotation thread, for good."""
    images, _ = folders
    model = FakePredictor()
    annotator = _annotator(folders, model, quiet_s=0.01)
    other = Tab(annotator, OTHER_TAB)
    other.open(image='b.png')
    (images / 'a.png').unlink()
    os.mkfifo(images / 'a.png')
    answer = Tab(annotator).open(image='a.png')
    assert not answer['ok'] and answer['message'].endswith('a.png: not a regular file (a FIFO, '
                                                           'a device or a folder): left alone')
    assert other.send(dict(op='place', index=0, x=5, y=5))['saved'] == 1
    assert annotator.pre.wait_idle(WAIT_S)  # a.png was scheduled, and given up
    annotator.close()
