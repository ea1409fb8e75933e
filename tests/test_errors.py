"""The tools' one-line errors: exit_on_error turns the package's errors and the operating
system's into ``error: ...`` and exit status 1."""
import errno

import pytest

from animal_landmarks_mm.errors import (
    AnimalLandmarksError,
    exit_on_error,
    printable,
    redact_userinfo,
)


@pytest.mark.parametrize('error, expected', [
    (AnimalLandmarksError('data/x.json: broken JSON'), 'error: data/x.json: broken JSON'),
    (OSError(errno.ENOSPC, 'No space left on device', 'out/a.json'),
     'error: No space left on device: out/a.json'),
    (OSError(errno.EACCES, 'Permission denied'), 'error: Permission denied: work_dirs/run'),
    (OSError('cannot identify image file x.png'), 'error: cannot identify image file x.png'),
])
def test_errors_become_one_line_and_exit_status_1(error, expected):
    with pytest.raises(SystemExit) as caught, exit_on_error('work_dirs/run'):
        raise error
    assert caught.value.code == expected  # sys.exit(text): printed to stderr, status 1


def test_ctrl_c_is_one_word_and_the_shells_status_130(capsys):
    try:
        with pytest.raises(SystemExit) as caught, exit_on_error():
            raise KeyboardInterrupt
    except KeyboardInterrupt:  # (not let through: it would stop the test session)
        pytest.fail('Ctrl+C went through, a traceback of wherever the tool was')
    assert caught.value.code == 130 and capsys.readouterr().err == 'interrupted\n'


def test_other_errors_are_not_swallowed():
    with pytest.raises(KeyError), exit_on_error():
        raise KeyError('a bug stays a traceback')
    with exit_on_error():  # nothing raised: nothing happens
        pass


def test_names_from_files_reach_the_terminal_escaped():
    """An escape sequence in a hostile file name would restyle the terminal; the bytes of a
    name that is not UTF-8 would stop a strict stdout with a traceback."""
    name = 'data/odd\x1b[31mred\udcff.json'
    assert printable(name) == 'data/odd\\x1b[31mred\\udcff.json'
    assert printable('two\nlines\tkept') == 'two\nlines\tkept'
    assert printable('two\nlines', one_line=True) == 'two\\nlines'
    assert printable('x' * 50, limit=10) == 'x' * 10 + '...'
    # a Japanese name's ideographic space is text; a bidi override, which would show the name
    # reordered, is not
    assert printable('猫\u3000顔.png') == '猫\u3000顔.png'
    assert printable('gnp.\u202eexe') == 'gnp.\\u202eexe'
    with pytest.raises(SystemExit) as caught, exit_on_error():
        raise AnimalLandmarksError(f'{name}: broken JSON')
    assert caught.value.code == 'error: data/odd\\x1b[31mred\\udcff.json: broken JSON'
    with pytest.raises(SystemExit) as caught, exit_on_error():
        raise OSError(errno.ENOENT, 'No such file or directory', name)
    assert '\x1b' not in caught.value.code and caught.value.code.encode('utf-8')


def test_a_line_break_in_a_name_never_makes_a_second_error_line(tmp_path):
    """A checkpoint named `a<line break>error: fake.pth` printed two lines, the second a
    forged `error:` line (a hunt's repro); the lines an error quotes (the reasons files were
    left out) stay a line each, escaped alike."""
    from conftest import run_tool
    name = 'a\nerror: fake.pth'
    with pytest.raises(SystemExit) as caught, exit_on_error():
        raise AnimalLandmarksError(f'{name}: not a checkpoint')
    assert caught.value.code == 'error: a\\nerror: fake.pth: not a checkpoint'
    with pytest.raises(SystemExit) as caught, exit_on_error():
        raise AnimalLandmarksError('2 files left out:', quoted=[f'{name}: broken', 'b: \x1b[2J'])
    assert caught.value.code == ('error: 2 files left out:\n  a\\nerror: fake.pth: broken\n'
                                 '  b: \\x1b[2J')
    with pytest.raises(SystemExit) as caught, exit_on_error():  # the system's errors too
        raise OSError(36, 'File name too long', name)
    assert caught.value.code == 'error: File name too long: a\\nerror: fake.pth'
    checkpoint = tmp_path / name
    checkpoint.write_text('hello')
    proc = run_tool('export.py', checkpoint, tmp_path / 'out.safetensors', check=False)
    assert proc.returncode == 1
    assert [line for line in proc.stderr.splitlines() if line.startswith('error')] == [
        f'error: {tmp_path}/a\\nerror: fake.pth: not a torch checkpoint (a text file: '
        'hello)']


@pytest.mark.parametrize('text, expected', [
    ('via https://alice:p@ss@proxy.example:3128/ for url',
     'via https://***@proxy.example:3128/ for url'),
    ('http://bob@h/path?to=a@b', 'http://***@h/path?to=a@b'),
    ('//u:p@h and http://h/a@b', '//***@h and http://h/a@b'),
])
def test_user_info_is_redacted_up_to_the_authoritys_last_at(text, expected):
    """A password may hold an unencoded @: the part after it was shown."""
    assert redact_userinfo(text) == expected
