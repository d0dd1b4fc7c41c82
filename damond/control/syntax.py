"""The request syntax of the control protocol: a small, safe subset of a POSIX shell.

The protocol (``docs``: protocol.md, "Requests") accepts the kernel documentation's examples as
they are pasted, so requests are read the way ``sh`` reads a command line, minus everything that
would make the server run or expand anything:

* Words: blanks (space, tab) separate words; single quotes are literal; in double quotes a
  backslash escapes only ``\\ " $ `` ` and newline (POSIX); outside quotes a backslash escapes
  any character; backslash-newline joins lines. A quoted string may span lines, so multi-line
  ``init_regions`` and ``schemes`` values paste as they are.
* Nothing is expanded: ``$x``, ``${x}``, ``$(cmd)``, ``$((1+2))`` and ```cmd``` stay literal
  text (the client's shell expands before sending). Like a shell's tokenizer, ``$( ... )``,
  ``${ ... }`` and backquotes are still delimited, so ``$(pidof <workload>)`` is one word.
* Comments: ``#`` at the start of a word starts a comment to the end of the line (``a#b`` is one
  word). Before that, leading blanks are skipped and a documentation prompt ``# `` or ``$ ``
  at the start of a request is removed once (``# # populate directories`` is a comment).
* Documentation placeholders ``<sysfs>``, ``<debugfs>``, ``<workload>``, ``<N>`` (``<`` followed
  by a name and ``>``) are literal word text, so ``cd <sysfs>/kernel/mm/damon/admin`` works.
* Operators: ``;`` and ``&&`` chain commands; ``>`` redirects the command's output to a file
  (anywhere among the words, with or without a space). Everything else a shell would treat
  specially is refused with a one-line ``EINVAL`` naming it: ``>>``, ``|``, ``||``, ``&``, ``<``,
  here-documents, ``(``/``)``, file-descriptor redirections such as ``2>``, shell keywords
  (``if``, ``for``, ``{``, ...) and variable assignments (``scheme="..."``).

Transport and syntax are separate: :class:`LineAssembler` turns physical lines (or an
arbitrary byte stream already decoded to ``str``) into logical requests, :func:`parse` turns
one logical request into :class:`Step` objects. Both are pure and never raise anything but
:class:`~damond.errors.DamonError` or :class:`Incomplete` on any ``str`` input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from damond.errors import DamonError

MAX_REQUEST_BYTES = 64 * 1024
TOO_LONG_ERRNO = "E2BIG"

_BLANK = " \t"
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHAR = _NAME_START | frozenset("0123456789.-")
_MAX_PLACEHOLDER = 64
_RESERVED = frozenset(
    ("!", "{", "}", "[[", "]]", "case", "do", "done", "elif", "else", "esac", "fi", "for")
    + ("function", "if", "in", "select", "then", "until", "while")
)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
_SAFE_WORD = re.compile(r"[A-Za-z0-9_@%+:,./-]+")
_OPEN_NAMES = {
    "sq": "single quote",
    "dq": "double quote",
    "sub": "$( ... )",
    "brace": "${ ... }",
    "bq": "backquote",
}
_REFUSALS = {
    ">>": "`>>` (append) is not supported: DAMON files cannot be appended to; use `>`",
    ">|": "`>|` is not supported; use `>`",
    ">&": "`>&` (descriptor duplication) is not supported",
    "&>": "`&>` is not supported; use `>`",
    "<": "input redirection (`<`) is not supported",
    "<&": "`<&` (descriptor duplication) is not supported",
    "<>": "`<>` is not supported",
    "<<": "here-documents (`<<`) are not supported",
    "<<-": "here-documents (`<<-`) are not supported",
    "<<<": "here-strings (`<<<`) are not supported",
    "|": "pipes (`|`) are not supported",
    "|&": "pipes (`|&`) are not supported",
    "||": "`||` is not supported: chain commands with `;` or `&&`",
    "&": "background jobs (`&`) are not supported",
    ";;": "`;;` is not supported",
    "(": "subshells and grouping (`(`) are not supported",
    ")": "`)` without a subshell is not supported",
}


class Incomplete(Exception):
    """The request goes on in the next line: an open quote, ``$(``, or a trailing backslash."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why

    def to_error(self) -> DamonError:
        """The refusal to send when no further line will come (end of input)."""
        return DamonError("EINVAL", f"end of input inside {self.why}")


@dataclass
class Step:
    """One simple command of a request.

    ``argv`` are the words after quote removal; ``redirect`` is the file named after ``>``
    (None without one; an empty string for ``> ''``, left for the executor to refuse as a
    missing file); ``connector`` is the operator that follows the step: ``";"``, ``"&&"`` or
    None after the last step (a trailing ``;`` is dropped; an unquoted newline inside the text
    acts as ``;``).
    """

    argv: list[str]
    redirect: str | None = None
    connector: str | None = None


class _Word(NamedTuple):
    value: str
    quoted: bool  # some part came from quotes, an escape or $( ... )
    plain: str  # the unquoted prefix of value (for assignment detection)
    ionum: bool  # unquoted digits directly before `<` or `>`: a descriptor redirection


class _Op(NamedTuple):
    text: str


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------


def strip_prompt(line: str) -> str:
    """Drop leading blanks, then a documentation prompt ``# `` or ``$ `` once.

    ``"    # echo on > state"`` -> ``"echo on > state"``; ``"# # populate"`` -> ``"# populate"``
    (a comment); ``"#text"`` and ``"$x"`` are unchanged apart from the blanks.
    """
    line = line.lstrip(_BLANK)
    return line[2:] if line[:2] in ("# ", "$ ") else line


# --------------------------------------------------------------------------------------------
# Tokenizer: a character-at-a-time state machine, so that a request can be fed in pieces
# --------------------------------------------------------------------------------------------


class _Lexer:
    """Splits a request into words and operators, one character at a time.

    ``collect=False`` tracks only the state (quotes, comments, pending operators), which is all
    :class:`LineAssembler` needs to find where a request ends, in constant memory. With
    ``prompt=True`` the start of the input is handled like :func:`strip_prompt`, one
    character at a time (the assembler cannot wait for a whole line).
    """

    def __init__(self, collect: bool = True, prompt: bool = True) -> None:
        self.collect = collect
        self.tokens: list[_Word | _Op] = []
        self.stack: list[list] = []  # open contexts: [kind] or [kind, depth]
        self.verbatim = 0  # open $( ... ), ${ ... } and backquote contexts
        self.pend = ""  # characters whose meaning depends on the next one
        self.prompt = "lead" if prompt else ""  # "lead", a prompt character being checked, ""
        self.comment = False
        self.newlines = 0  # unquoted newlines seen
        self.in_word = False
        self.value: list[str] = []
        self.vlen = 0
        self.nplain: int | None = None

    # -- feeding -------------------------------------------------------------------------------

    def push(self, text: str) -> None:
        for ch in text:
            self._char(ch)

    def end_line(self) -> bool:
        """Feed a newline; True when it ended the request (it was not quoted or escaped)."""
        before = self.newlines
        self._char("\n")
        return self.newlines > before

    def open_reason(self) -> str:
        if self.pend == "\\":
            return "a line continuation (trailing backslash)"
        if self.stack:
            return f"an unterminated {_OPEN_NAMES[self.stack[-1][0]]}"
        return ""

    def finish(self) -> list[_Word | _Op]:
        """End of input: resolve what is pending and return the tokens."""
        if self.pend == "\\":
            raise Incomplete(self.open_reason())
        self._char(None)
        if self.stack:
            raise Incomplete(self.open_reason())
        self._end_word()
        return self.tokens

    def _char(self, ch: str | None) -> None:
        while not self._step(ch):
            pass

    def _step(self, ch: str | None) -> bool:
        """Handle ``ch`` (None: end of input); False asks for it to be handled again."""
        if self.prompt:
            return self._prompt_step(ch)
        if self.pend:
            return self._pend_step(ch)
        if ch is None:
            return True
        if self.comment:
            if ch == "\n":
                self.comment = False
                self._newline()
            return True
        if self.stack:
            return self._quoted_step(ch)
        return self._plain_step(ch)

    # -- words and tokens ----------------------------------------------------------------------

    def _start_word(self) -> None:
        if not self.in_word:
            self.in_word = True
            self.value = []
            self.vlen = 0
            self.nplain = None

    def _add(self, text: str, quoted: bool) -> None:
        self._start_word()
        if quoted and self.nplain is None:
            self.nplain = self.vlen
        if self.collect:
            self.value.append(text)
            self.vlen += len(text)

    def _end_word(self, before_redirect: bool = False) -> None:
        if not self.in_word:
            return
        self.in_word = False
        if not self.collect:
            return
        value = "".join(self.value)
        quoted = self.nplain is not None
        plain = value if self.nplain is None else value[: self.nplain]
        ionum = before_redirect and not quoted and value.isascii() and value.isdigit()
        self.tokens.append(_Word(value, quoted, plain, ionum))

    def _op(self, text: str) -> None:
        self._end_word(before_redirect=text[0] in "<>")
        if self.collect:
            self.tokens.append(_Op(text))

    def _newline(self) -> None:
        self.newlines += 1
        if self.collect:
            self.tokens.append(_Op("\n"))

    def _open(self, kind: str, text: str = "") -> None:
        self._add(text, quoted=True)
        self.stack.append([kind, 1])
        if kind in ("sub", "brace", "bq"):
            self.verbatim += 1

    def _close(self, text: str = "") -> None:
        kind = self.stack.pop()[0]
        if kind in ("sub", "brace", "bq"):
            self.verbatim -= 1
        if text:
            self._add(text, quoted=True)

    # -- states --------------------------------------------------------------------------------

    def _prompt_step(self, ch: str | None) -> bool:
        if self.prompt == "lead":
            if ch is not None and ch in _BLANK:
                return True
            if ch is not None and ch in "#$":
                self.prompt = ch
                return True
            self.prompt = ""
            return False
        first, self.prompt = self.prompt, ""
        if ch == " ":
            return True
        self._char(first)
        return False

    def _plain_step(self, ch: str) -> bool:
        if ch in _BLANK:
            self._end_word()
        elif ch == "\n":
            self._end_word()
            self._newline()
        elif ch == "#" and not self.in_word:
            self.comment = True
        elif ch == "'":
            self._open("sq")
        elif ch == '"':
            self._open("dq")
        elif ch == "`":
            self._open("bq", "`")
        elif ch in "\\$<>&|;":
            self.pend = ch
        elif ch in "()":
            self._op(ch)
        else:
            self._add(ch, quoted=False)
        return True

    def _quoted_step(self, ch: str) -> bool:
        kind = self.stack[-1][0]
        if kind == "sq":
            if ch == "'":
                self._close("'" if self.verbatim else "")
            else:
                self._add(ch, quoted=True)
        elif kind == "dq" and ch == '"':
            self._close('"' if self.verbatim else "")
        elif ch in "\\$":
            self.pend = ch
        elif kind == "dq":
            if ch == "`":
                self._open("bq", "`")
            else:
                self._add(ch, quoted=True)
        else:
            self._verbatim_step(ch)
        return True

    def _verbatim_step(self, ch: str) -> None:
        """Inside ``$( )``, ``${ }`` or backquotes: copy, tracking nesting and inner quotes."""
        top = self.stack[-1]
        if ch == "'":
            self._open("sq", "'")
        elif ch == '"':
            self._open("dq", '"')
        elif ch == "`":
            if top[0] == "bq":
                self._close("`")
            else:
                self._open("bq", "`")
        else:
            self._add(ch, quoted=True)
            opening, closing = ("(", ")") if top[0] == "sub" else ("{", "}")
            if top[0] != "bq" and ch == opening:
                top[1] += 1
            elif top[0] != "bq" and ch == closing:
                top[1] -= 1
                if top[1] == 0:
                    self._close()

    def _pend_step(self, ch: str | None) -> bool:
        pend = self.pend
        if pend == "\\":
            self.pend = ""
            self._escaped(ch or "")
            return True
        if pend == "$":
            return self._dollar(ch)
        if pend[0] == "<":
            return self._less(ch)
        self.pend = ""
        if ch is not None and ch in _TWO_CHAR_OPS.get(pend, ""):
            self._op(pend + ch)
            return True
        self._op(pend)
        return False

    def _escaped(self, ch: str) -> None:
        """The character after a backslash, in the current context."""
        if self.verbatim:
            self._add("\\" + ch, quoted=True)
        elif ch == "\n":
            pass  # line continuation, in and out of double quotes
        elif not self.stack or ch in '\\"$`':
            self._add(ch, quoted=True)
        else:
            self._add("\\" + ch, quoted=True)

    def _dollar(self, ch: str | None) -> bool:
        self.pend = ""
        if ch == "(":
            self._open("sub", "$(")
            return True
        if ch == "{":
            self._open("brace", "${")
            return True
        self._add("$", quoted=bool(self.stack))
        return False

    def _less(self, ch: str | None) -> bool:
        """``<``: an operator, or the start of a documentation placeholder such as ``<sysfs>``."""
        pend = self.pend
        if pend == "<" and ch is not None and ch in _NAME_START:
            self.pend += ch
            return True
        if pend in ("<", "<<"):
            self.pend = ""
            if ch is not None and ch in _TWO_CHAR_OPS[pend]:
                if pend + ch == "<<":
                    self.pend = "<<"
                else:
                    self._op(pend + ch)
                return True
            self._op(pend)
            return False
        if ch == ">":
            self.pend = ""
            self._add(pend + ">", quoted=False)
            return True
        if ch is not None and ch in _NAME_CHAR and len(pend) <= _MAX_PLACEHOLDER:
            self.pend += ch
            return True
        self.pend = ""
        self._op("<")
        self._add(pend[1:], quoted=False)
        return False


_TWO_CHAR_OPS = {">": ">|&", "&": "&>", "|": "|&", ";": ";", "<": "<&>", "<<": "<-"}


# --------------------------------------------------------------------------------------------
# Parser: tokens -> steps
# --------------------------------------------------------------------------------------------


def _syntax_error(why: str) -> DamonError:
    return DamonError("EINVAL", why)


def _check_command_word(word: _Word) -> None:
    """Refuse shell keywords and variable assignments in command position."""
    if not word.quoted and word.value in _RESERVED:
        raise _syntax_error(f"shell keyword `{word.value}` is not supported")
    m = _ASSIGNMENT.match(word.plain)
    if m:
        raise _syntax_error(
            f"variable assignment `{m.group(0)}...` is not supported: damond keeps no variables;"
            " let your shell expand them before sending"
        )


class _Builder:
    """Collects words into steps, validating operators as they come."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.argv: list[str] = []
        self.redirect: str | None = None
        self.want_target = False
        self.after_and = False

    def word(self, word: _Word, next_token: _Word | _Op | None) -> None:
        if word.ionum:
            op = next_token.text if isinstance(next_token, _Op) else ">"
            raise _syntax_error(
                f"descriptor redirection `{word.value}{op}` is not supported"
                " (to write a number, put a space before `>`)"
            )
        if self.want_target:
            self.redirect = word.value
            self.want_target = False
            return
        if not self.argv:
            _check_command_word(word)
        self.argv.append(word.value)

    def op(self, op: str) -> None:
        if self.want_target:
            raise _syntax_error(f"`>` needs a file name, found `{_show_op(op)}`")
        if op == ">":
            if self.redirect is not None:
                raise _syntax_error("only one `>` redirection per command is supported")
            self.want_target = True
        elif op in (";", "&&", "\n"):
            self.separator(op)
        else:
            raise _syntax_error(_REFUSALS.get(op, f"`{op}` is not supported"))

    def separator(self, op: str) -> None:
        if not self.argv and self.redirect is None:
            if op == "\n":
                return  # blank line, or a line break after `&&`
            raise _syntax_error(f"syntax error near `{op}`: no command before it")
        self.close(";" if op == "\n" else op)
        self.after_and = op == "&&"

    def close(self, connector: str | None) -> None:
        if not self.argv:
            raise _syntax_error("a redirection needs a command, e.g. `echo VALUE > FILE`")
        self.steps.append(Step(self.argv, self.redirect, connector))
        self.argv, self.redirect = [], None

    def finish(self) -> list[Step]:
        if self.want_target:
            raise _syntax_error("`>` needs a file name")
        if self.argv or self.redirect is not None:
            self.close(None)
        elif self.after_and:
            raise _syntax_error("`&&` at the end of the request: nothing to run after it")
        elif self.steps:
            self.steps[-1].connector = None
        return self.steps


def _show_op(op: str) -> str:
    return "newline" if op == "\n" else op


def parse(text: str) -> list[Step]:
    """Parse one logical request into steps; ``[]`` for blank and comment-only requests.

    Raises :class:`Incomplete` when the text ends inside a quote, ``$( )``, ``${ }``,
    backquotes or after a line-continuing backslash, and ``DamonError("EINVAL", why)`` for
    refused or malformed syntax (the first problem from the left). A final ``\\r\\n`` is read as
    ``\\n``; other carriage returns are ordinary characters (use :class:`LineAssembler` for
    protocol input).
    """
    if text.endswith("\r\n"):
        text = text[:-2] + "\n"
    lexer = _Lexer(prompt=False)
    lexer.push(strip_prompt(text))
    tokens = lexer.finish()
    builder = _Builder()
    for i, token in enumerate(tokens):
        if isinstance(token, _Word):
            builder.word(token, tokens[i + 1] if i + 1 < len(tokens) else None)
        else:
            builder.op(token.text)
    return builder.finish()


# --------------------------------------------------------------------------------------------
# echo and quoting helpers
# --------------------------------------------------------------------------------------------


def echo_payload(argv: Sequence[str]) -> str:
    """What ``echo`` writes for ``argv`` (``argv[0]`` is the command name and is ignored).

    The words are joined by single spaces and followed by a newline, which the kernel files
    see (``echo o > monitor_on`` writes ``"o\\n"``). Like dash's ``echo``, only an exact ``-n``
    as the first word is an option (no newline); every other word, ``-e``, ``-E``, ``-nn``, a
    second ``-n`` included, is written as it is, and backslash sequences are not interpreted
    (as bash's default ``echo``), so the bytes written never depend on which shell a user has.
    """
    words = list(argv[1:])
    end = "\n"
    if words and words[0] == "-n":
        words, end = words[1:], ""
    return " ".join(words) + end


def shell_quote(word: str) -> str:
    """Quote ``word`` so that :func:`parse` (and a POSIX shell) reads it back unchanged."""
    if _SAFE_WORD.fullmatch(word) and word not in _RESERVED:
        return word
    return "'" + word.replace("'", "'\\''") + "'"


def shell_join(argv: Sequence[str]) -> str:
    """One request line for ``argv``: each word quoted as needed, joined by spaces."""
    return " ".join(shell_quote(word) for word in argv)


# --------------------------------------------------------------------------------------------
# Line assembly
# --------------------------------------------------------------------------------------------


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class LineAssembler:
    """Joins physical lines into logical requests (open quotes and backslash-newline continue).

    A request is returned as its physical lines joined with ``\\n`` (line ends ``\\n`` or
    ``\\r\\n`` removed; the prompt, if any, still in it; :func:`parse` removes it). Blank and
    comment-only requests are returned too (``parse`` gives ``[]`` for them).

    A request longer than ``max_bytes`` (UTF-8, counting the joining newlines) is not kept:
    its lines are only scanned, in constant memory, until the request ends, and then it is
    answered with ``DamonError("E2BIG", ...)`` in its place, so replies stay in order and the
    connection stays usable. E2BIG ("argument list too long") was chosen as the errno of a too
    long command line; the protocol only requires an ``ERR``.

    Use either :meth:`feed` (one physical line at a time) or :meth:`feed_chunk` (any piece of
    the stream) plus :meth:`close` on one assembler.
    """

    def __init__(self, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.max_bytes = max_bytes
        self._partial = ""  # feed_chunk: unterminated tail of the stream, not yet scanned
        self._reset()

    def _reset(self) -> None:
        self._lexer = _Lexer(collect=False)
        self._lines: list[str] | None = []  # None once the request is too long
        self._size = 0
        self._nlines = 0
        self._in_line = False  # part of the current physical line was scanned already

    @property
    def pending(self) -> bool:
        """True while a request is partly assembled (e.g. inside a multi-line quote)."""
        return bool(self._nlines or self._partial)

    def feed(self, physical_line: str) -> str | None:
        """Add one physical line (its ``\\n`` or ``\\r\\n`` is optional).

        Returns the logical request once it is complete, else None. Raises ``DamonError(E2BIG)``
        in place of a request that was too long.
        """
        if self._partial:
            raise ValueError("feed() mixed with an unterminated feed_chunk() line")
        line = physical_line[:-1] if physical_line.endswith("\n") else physical_line
        if "\n" in line:
            raise ValueError("feed() takes one physical line; use feed_chunk() for a stream")
        result = self._line(line[:-1] if line.endswith("\r") else line)
        if isinstance(result, DamonError):
            raise result
        return result

    def feed_chunk(self, data: str) -> list[str | DamonError]:
        """Add any piece of the stream; return the requests it completes, in order.

        A too long request appears as a ``DamonError`` in the list (not raised), so that a
        caller can answer every request in order.
        """
        out: list[str | DamonError] = []
        *lines, rest = data.split("\n")
        for piece in lines:
            line, self._partial = self._partial + piece, ""
            result = self._line(line[:-1] if line.endswith("\r") else line)
            if result is not None:
                out.append(result)
        self._partial += rest
        if len(self._partial) > self.max_bytes + 1:
            self._spill()
        return out

    def close(self) -> list[str | DamonError]:
        """End of input: complete the last line and report a request left open as ``EINVAL``."""
        out: list[str | DamonError] = []
        if self._partial or self._in_line:
            line, self._partial = self._partial, ""
            result = self._line(line[:-1] if line.endswith("\r") else line)
            if result is not None:
                out.append(result)
        if self._nlines:
            if self._lines is None:
                out.append(self._too_long())
            else:
                reason = self._lexer.open_reason()
                out.append(DamonError("EINVAL", f"end of input inside {reason}"))
            self._reset()
        return out

    def _spill(self) -> None:
        """Scan most of an overlong unterminated line now instead of buffering it."""
        keep = "\r" if self._partial.endswith("\r") else ""
        text = self._partial[: len(self._partial) - len(keep)]
        self._partial = keep
        self._piece(text)

    def _line(self, line: str) -> str | DamonError | None:
        self._piece(line)
        self._in_line = False
        if not self._lexer.end_line():
            return None
        result = "\n".join(self._lines) if self._lines is not None else self._too_long()
        self._reset()
        return result

    def _piece(self, text: str) -> None:
        """Account for and scan (part of) the current physical line."""
        if not self._in_line:
            self._in_line = True
            self._size += 1 if self._nlines else 0
            self._nlines += 1
            if self._lines is not None:
                self._lines.append("")
        self._size += _utf8_len(text)
        if self._size > self.max_bytes:
            self._lines = None
        if self._lines is not None:
            self._lines[-1] += text
        self._lexer.push(text)

    def _too_long(self) -> DamonError:
        return DamonError(TOO_LONG_ERRNO, f"request longer than {self.max_bytes} bytes")
