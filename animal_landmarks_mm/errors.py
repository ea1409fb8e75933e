"""The package's one error base class.

Every error raised for a bad input, file, setting or server answer derives from
:class:`AnimalLandmarksError`; its message is one line that names the file or value and says what
to do. The tools in ``tools/`` catch this one class and print ``error: <message>`` (exit status
1) instead of a traceback. Subclasses keep the built-in base they had (``ValueError``,
``RuntimeError``) so that callers catching those still work.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import unicodedata
from collections.abc import Iterator


class AnimalLandmarksError(Exception):
    """A problem the user can fix; the message is one line naming the file or value.

    Args:
        *args: the message (Exception's arguments).
        quoted: lines shown below it, each on a line of its own (the reasons files were left
            out, say): the message itself stays one line whatever names it holds.
    """

    def __init__(self, *args, quoted: tuple[str, ...] | list[str] = ()):
        super().__init__(*args)
        self.quoted = tuple(quoted)

    def __str__(self) -> str:
        return super().__str__() + ''.join(f'\n  {line}' for line in self.quoted)


#: what a secret is replaced with in messages and logs
REDACTED = '***'
# the user info of scheme://user:password@host (or of a scheme-relative //user@host), up to the
# authority's last @: a password may hold an unencoded one
_URL_USERINFO = re.compile(r'''(?<=//)[^/?#\s'"<>]+@''')


def redact_userinfo(text: str) -> str:
    """``text`` with the user info (``user:password@``) of the URLs in it replaced by
    :data:`REDACTED`: a proxy or mirror URL may carry a password, and libraries' errors quote
    the URLs they requested."""
    return _URL_USERINFO.sub(f'{REDACTED}@', text)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, for a one-line report of an error raised by a
    library (torch's unpickling errors, onnxruntime's, run to a page); its class name when it
    says nothing."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else error.__class__.__name__


def _unsafe(c: str, one_line: bool) -> bool:
    """Whether a character may not reach a terminal as it is: control and format characters
    (an escape sequence restyles or rewrites the screen, a bidi override reorders what is shown),
    lone surrogates (the undecodable bytes of a file name, which a strict UTF-8 stdout refuses),
    line and paragraph separators; a line break or tab only for one line. Spaces of any script
    (the ideographic space of a Japanese file name) are text."""
    if c in '\n\t':
        return one_line
    return unicodedata.category(c)[0] == 'C' or unicodedata.category(c) in ('Zl', 'Zp')


def printable(text: str, *, one_line: bool = False, limit: int | None = None) -> str:
    """``text`` safe for a terminal: the characters :func:`_unsafe` names as Python escapes.

    Args:
        text: from a file or a name, maybe hostile.
        one_line: escape line breaks and tabs too (a value inside a one-line message).
        limit: cut to this many characters (a hostile file may hold megabytes), '...' added.
    """
    if text.isprintable() or not any(_unsafe(c, one_line) for c in text):
        shown = text  # the common case, without building a new string
    else:
        shown = ''.join(c.encode('unicode_escape', 'backslashreplace').decode('ascii')
                        if _unsafe(c, one_line) else c for c in text)
    return shown if limit is None or len(shown) <= limit else f'{shown[:limit]}...'


def some_names(names: list[str], first: int = 3) -> str:
    """The first ``first`` of ``names``, each escaped and cut to one short line (no escape
    sequence reaches the terminal), and how many more: ``a, b, c and 4 more``."""
    shown = ', '.join(printable(name, one_line=True, limit=80) for name in names[:first])
    more = len(names) - first
    return f'{shown} and {more} more' if more > 0 else shown


def counted(number: int, noun: str) -> str:
    """A count for a message: ``1 face`` or ``3 faces`` (nouns of a plain plural)."""
    return f'{number} {noun}' if number == 1 else f'{number} {noun}s'


def shown_value(value: object, limit: int = 40) -> str:
    """A value from a file or a request for a one-line message: its ``repr``, escaped
    (:func:`printable`) and cut short (a hostile file may hold megabytes)."""
    return printable(repr(value), one_line=True, limit=limit)


@contextlib.contextmanager
def exit_on_error(path: str | os.PathLike | None = None) -> Iterator[None]:
    """A tool's ``main``: the package's errors and the operating system's (a folder that
    cannot be written, a full disk) end the program with one line ``error: ...`` and exit
    status 1, never a traceback.

    Args:
        path: what an ``OSError`` that names no file is about (the output folder, say).

    Ctrl+C ends it with ``interrupted`` and the shell's status for it, 130 (a traceback of
    wherever the program was said nothing of use; the tools write each file whole, through a
    temporary moved into place, so the file being written is left as it was).
    """
    try:
        yield
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    except AnimalLandmarksError as e:
        # one line, whatever a name in it holds (a line break in a file's name forged a
        # second 'error:' line); the lines it quotes each on its own
        quoted = getattr(e, 'quoted', ())
        message = Exception.__str__(e) if quoted else str(e)
        sys.exit(f'error: {printable(message, one_line=True)}' + ''.join(
            f'\n  {printable(line, one_line=True)}' for line in quoted))
    except OSError as e:
        if e.errno is None:  # not the system's (a network library's, PIL's): as it says
            sys.exit(f'error: {printable(first_line(e), one_line=True)}')
        where = e.filename if e.filename is not None else path
        sys.exit(printable(f'error: {e.strerror or first_line(e)}'
                           + ('' if where is None else f': {os.fsdecode(where)}'),
                           one_line=True))
