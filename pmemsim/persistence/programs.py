"""Running a user's program once per crash state: image files kept current, programs started and
waited on as cheaply as the OS allows.

Theory of operation
-------------------
A checker or recovery *program* is run as ``command... IMAGE_PATH`` once per crash state
(pmreorder's ``-c prog`` convention). Three costs dominate, and each has its own part here.

**The image file** (:class:`ImageFiles`). Every run must see exactly the state's image,
whatever earlier runs did to the file (a PMDK program opening a pool writes to it on
every open). Writing the whole pool per state costs a copy of the pool; instead each
file keeps a shadow of what it holds, and only the 4 KiB pages that differ from the
next image are written. That is correct only if nobody else wrote the file since, so
each file is watched with inotify (``inotify(7)``): a program that wrote it (``write``,
``truncate``), or merely held it open for writing -- a write through a shared mapping
gives no event of its own, but the file's last close (``IN_CLOSE_WRITE``, sent when the
mapping too is gone) does -- or that still has it open after the run (or whose open
count cannot be trusted: inotify merges identical events), removed, renamed or
re-permissioned it, gets a new file (created where the old one was, never through a link
left there) holding the whole image. Without inotify (not Linux, no instances left)
every run gets a new file.

**Starting the program** (:class:`ProgramRunner`). ``posix_spawn`` (vfork and exec, no
copy of this process's page tables), in a session of its own so that a timeout or a
Ctrl-C kills the program with its children; what a run leaves running in its session
when it ends is killed too (it could write into the next state's image). SIGPIPE and
SIGXFSZ are back at their defaults, as ``subprocess`` sets them. A *Python* program (``python [options]
script.py ...``, or a script whose ``#!`` line names a Python interpreter) spends most
of a run starting the interpreter, which costs the same for every state. It is started
*warm* instead: one interpreter, the *zygote*, is started with the program's own
interpreter and options; per run it forks, and the child -- a fresh interpreter just
past start-up -- becomes the program: ``sys.argv``, environment, working directory,
``sys.path[0]`` and ``__main__`` as the interpreter would set them for ``python script``,
the modules the zygote imported for itself removed from ``sys.modules``, standard
streams on the run's pipes, its own session. Differences a program could see: its hash
seed (``PYTHONHASHSEED``) and ``sys.orig_argv`` are the zygote's, the same for every
run. ``warm=False`` (``--cold-start``) starts every run from scratch. This is the zygote
of Android's app start-up; a fork of a small, single-threaded interpreter costs about a
millisecond, its start-up ten or more.

**Waiting** (:func:`_collect`). ``Popen.wait(timeout)`` polls with sleeps growing from
0.5 ms, more wall time than a short program itself; here ``poll(2)`` waits on the
program's output and on a descriptor that becomes readable when it ends: a pidfd
(``pidfd_open(2)``) for a spawned program, the zygote's socket (which reports the wait
status) for a warm one. The wait wakes every 100 ms to let the interpreter run signal
handlers (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import re
import select
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ImageFiles", "ProgramRunner", "ProgramRuns", "Ran", "python_command", "status_text"]

#: Granularity of the image files' partial rewrites (a page: what the page cache copies anyway).
_PAGE = 4096
#: Shadow chunks: each is one bytearray, so that comparing it with the next image is one memcmp.
_CHUNK = 64 * _PAGE
#: The longest a wait blocks without letting the interpreter look for signals (milliseconds).
_SIGNAL_SLICE_MS = 100

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# -- image files -------------------------------------------------------------------------------

# inotify(7) event bits: the file was (or may have been) changed by someone else.
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_CLOSE_NOWRITE, _IN_OPEN = 0x10, 0x20
_IN_MOVE_SELF, _IN_DELETE_SELF = 0x800, 0x400
_IN_Q_OVERFLOW, _IN_IGNORED = 0x4000, 0x8000
_WATCHED = (
    _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE | _IN_OPEN | _IN_MOVE_SELF | _IN_DELETE_SELF
)
_CHANGED = (
    _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVE_SELF | _IN_DELETE_SELF | _IN_Q_OVERFLOW | _IN_IGNORED
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


def _inotify() -> tuple[ctypes.CDLL, int] | None:
    """libc and a non-blocking, close-on-exec inotify descriptor; None where there is none."""
    if not hasattr(os, "pidfd_open") and not os.path.exists("/proc/self"):  # pragma: no cover - not Linux
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    except (OSError, AttributeError):  # pragma: no cover - no libc or no inotify
        return None
    return (libc, fd) if fd >= 0 else None


class _Watch:
    """Whether anyone but us touched a set of watched files since we last looked (inotify)."""

    def __init__(self) -> None:
        found = _inotify()
        self._libc: ctypes.CDLL | None = found[0] if found is not None else None
        self.fd = found[1] if found is not None else -1
        self._wds: dict[int, int] = {}  # watch descriptor -> file index
        self._opens: dict[int, int] = {}  # file index -> opens minus closes seen
        #: Files changed by someone since :meth:`ImageFiles.write` last wrote them.
        self.touched: set[int] = set()

    def add(self, index: int, path: str) -> int:
        """Watch file ``index`` at ``path`` (just opened by us); its watch descriptor, -1 if it cannot
        be watched (then assume it changed). Our own open came before the watch, so the open count
        that :meth:`opens` gives is that of everyone else."""
        if self._libc is None:
            return -1
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), _WATCHED))
        if wd < 0:
            return -1
        self._wds[wd] = index
        self._opens[index] = 0
        return wd

    def drop(self, wd: int) -> None:
        """Stop watching ``wd`` (a file replaced or removed: its events no longer count)."""
        if self._wds.pop(wd, None) is not None and self._libc is not None:
            self._libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly if the inode is gone

    def poll(self) -> None:
        """Read the events that arrived: :attr:`touched` gains every file someone wrote, opened for
        writing, moved or removed (every file when events were lost); the open counts follow."""
        if self._libc is None:
            return
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _, size = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + size
                if mask & _IN_Q_OVERFLOW:
                    self.touched.update(self._opens)
                    continue
                index = self._wds.get(wd)
                if index is None:
                    continue
                if mask & _CHANGED:
                    self.touched.add(index)
                if mask & _IN_OPEN:
                    self._opens[index] += 1
                if mask & (_IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE):
                    self._opens[index] -= 1

    def opens(self, index: int) -> int:
        """How many times someone else has file ``index`` open, as far as events tell."""
        return self._opens.get(index, 0)

    def close(self) -> None:
        """Stop watching (closes the inotify descriptor)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._libc = None


class _File:
    """One image file: its descriptor (kept open), inode and the shadow of what it holds."""

    __slots__ = ("fd", "inode", "shadow", "size", "wd")

    def __init__(self, fd: int, inode: int, wd: int) -> None:
        self.fd, self.inode, self.wd = fd, inode, wd
        self.shadow: list[bytearray] = []
        self.size = 0


class ImageFiles:
    """A private directory holding one image file per registered file, handed to programs by path.

    :meth:`write` makes a file hold exactly an image, writing only the pages that changed
    when the file is known to be as it was left (see the module's theory of operation).
    ``whole_writes`` and ``page_writes`` count what was written, for the curious and the tests.
    """

    def __init__(self, keys: Sequence[str], prefix: str) -> None:
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.paths = [
            os.path.join(self.dir, f"{i}-{_UNSAFE.sub('_', os.path.basename(key)) or 'image'}")
            for i, key in enumerate(keys)
        ]
        self._files: list[_File | None] = [None] * len(self.paths)
        self._watch = _Watch()
        self.whole_writes = 0
        self.page_writes = 0

    def write(self, index: int, view: memoryview) -> str:
        """Make file ``index`` hold exactly ``view``; its path."""
        path, f, watch = self.paths[index], self._files[index], self._watch
        watch.poll()
        # Someone wrote it, held it open for writing (a shared mapping), still holds it open (or
        # the count cannot be trusted: inotify merges identical events), changed its mode,
        # replaced or removed it: the next run gets a new file, created here (never through a
        # link the program left at the path), with the whole image in it.
        if f is not None and (
            f.wd < 0 or index in watch.touched or watch.opens(index) != 0 or not self._same_inode(path, f)
        ):
            self._forget(index)
            f = None
        if f is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            f = self._files[index] = _File(fd, os.fstat(fd).st_ino, -1)
            f.wd = watch.add(index, path)
        if not f.shadow or f.size != len(view):
            self._write_whole(f, view)
        else:
            self._write_changes(f, view)
        watch.poll()  # our own writes are not the program's
        watch.touched.discard(index)
        return path

    @staticmethod
    def _same_inode(path: str, f: _File) -> bool:
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return st.st_ino == f.inode and stat.S_ISREG(st.st_mode)

    def _write_whole(self, f: _File, view: memoryview) -> None:
        done, total = 0, len(view)
        while done < total:
            done += os.pwrite(f.fd, view[done:] if done else view, done)
        if os.fstat(f.fd).st_size != total:
            os.ftruncate(f.fd, total)
        f.size = total
        f.shadow = [bytearray(view[a : a + _CHUNK]) for a in range(0, total, _CHUNK)]
        self.whole_writes += 1

    def _write_changes(self, f: _File, view: memoryview) -> None:
        for k, chunk in enumerate(f.shadow):
            base = k * _CHUNK
            if chunk == view[base : base + len(chunk)]:  # one memcmp: the common case
                continue
            run = -1  # first page of the current run of changed pages (offsets within the chunk)
            for p in range(0, len(chunk) + _PAGE, _PAGE):
                differs = p < len(chunk) and chunk[p : p + _PAGE] != view[base + p : base + p + _PAGE]
                if differs and run < 0:
                    run = p
                elif not differs and run >= 0:
                    data = view[base + run : base + p]
                    done = 0
                    while done < len(data):
                        done += os.pwrite(f.fd, data[done:], base + run + done)
                    chunk[run:p] = data
                    self.page_writes += (p - run) // _PAGE
                    run = -1

    def _forget(self, index: int) -> None:
        f = self._files[index]
        if f is not None:
            self._watch.drop(f.wd)
            os.close(f.fd)
            self._files[index] = None

    def close(self) -> None:
        """Close and remove the files and their directory."""
        for i in range(len(self._files)):
            self._forget(i)
        self._watch.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- which programs start warm -------------------------------------------------------------------

_PYTHON = re.compile(r"python(\d+(\.\d+)*)?$")
# Interpreter options that a zygote started with them applies to every run the same way as a fresh
# start would; any other option (-c, -m, -i, -x, -) or an unknown one means a plain spawn.
_FLAGS = set("bBdEIOPqsSuv")
_WITH_VALUE = set("WX")


def _split_options(args: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """``[options..., script, args...]`` of a Python command line as (options, [script, args...])."""
    options: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        letters = arg[1:]
        j = 0
        while j < len(letters):
            c = letters[j]
            if c in _WITH_VALUE:
                if j + 1 < len(letters):
                    options.append(f"-{c}{letters[j + 1 :]}")
                elif i + 1 < len(args):
                    options += [f"-{c}", args[i + 1]]
                    i += 1
                else:
                    return None
                break
            if c not in _FLAGS:
                return None
            options.append(f"-{c}")
            j += 1
        i += 1
    if i >= len(args) or args[i] == "-":
        return None
    return options, list(args[i:])


def _source_file(path: str) -> bool:
    """Whether ``path`` is a script the zygote runs as Python does: a regular file of source, not a
    directory or a zip archive (which Python runs through their ``__main__``)."""
    import zipfile  # here: only when a program checker is built

    return os.path.isfile(path) and not zipfile.is_zipfile(path)


def python_command(argv: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """``argv`` as (interpreter and options, [script, args...]) if it runs a Python script, else None.

    Either ``python[X.Y] [options] script.py args...`` or ``script args...`` where the
    script's ``#!`` line names a Python interpreter (directly or through ``env``).
    """
    first = shutil.which(argv[0]) if argv else None
    if first is None:
        return None
    if _PYTHON.match(os.path.basename(first)):
        parts = _split_options(argv[1:])
        if parts is None or not _source_file(parts[1][0]):
            return None
        return [first, *parts[0]], parts[1]
    try:
        with open(first, "rb") as f:
            head = f.readline(256)
    except OSError:
        return None
    if not head.startswith(b"#!") or b"\r" in head:
        return None  # a CR ends up in the interpreter's name: a plain start fails as it should
    words = head[2:].decode(errors="replace").split()
    # Linux hands everything after the interpreter's path to it as one argument: "-S -u", or,
    # through env, "python3 -u" (a program env does not find). Only env -S splits it.
    split, through_env = False, bool(words) and os.path.basename(words[0]) == "env"
    if through_env:
        words = words[1:]
        if words and words[0] == "-S":
            words, split = words[1:], True
    if not split and len(words) > (1 if through_env else 2):
        return None  # what a zygote started with those options as separate arguments would not do
    if not words or not _PYTHON.match(os.path.basename(words[0])) or not _source_file(first):
        return None
    interpreter = shutil.which(words[0])
    options = _split_options([*words[1:], first])
    if interpreter is None or options is None or options[1] != [first]:
        return None
    return [interpreter, *options[0]], [first, *argv[1:]]


# -- running -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ran:
    """How a run ended: ``returncode`` (negative: killed by that signal) and what it wrote.

    ``stderr`` is empty when standard error went with standard output.
    """

    returncode: int
    stdout: bytes
    stderr: bytes


def status_text(returncode: int, tail: str) -> str:
    """``exit status N`` or ``killed by SIGNAME``, then ``: tail`` when there is output."""
    if returncode < 0:
        try:
            what = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            what = f"killed by signal {-returncode}"
    else:
        what = f"exit status {returncode}"
    return what + (f": {tail}" if tail else "")


#: The zygote: started with the program's interpreter and options; per request it forks, and the
#: child breaks out of the loop to become the program. Written for Python 3.9 and later.
_ZYGOTE = r"""
import os, sys
_startup = set(sys.modules)
import json, socket, struct
_sock = socket.socket(fileno=3)
def _send(obj):
    body = json.dumps(obj).encode()
    _sock.sendall(struct.pack("<I", len(body)) + body)
def _recv_exact(n, fds=0):
    got, passed = b"", []
    while len(got) < n:
        if fds and not passed:
            data, passed, _, _ = socket.recv_fds(_sock, n - len(got), fds)
        else:
            data = _sock.recv(n - len(got))
        if not data:
            os._exit(0)
        got += data
    return got, passed
try:  # the child dies with the zygote (which dies with pmemsim): no orphan runs on
    import ctypes
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except Exception:
    _prctl = None
def _killgroup(pid):
    try:
        os.killpg(pid, 9)
    except OSError:
        pass
def _wait(pid):
    # Until the run ends, or pmemsim does (its socket closes): then the run ends with it.
    try:
        pfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pfd = -1
    if pfd >= 0:
        import select
        poller = select.poll()
        poller.register(pfd, select.POLLIN)
        poller.register(_sock.fileno(), select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if pfd in ready:
                break
            try:
                gone = not _sock.recv(1, socket.MSG_PEEK)
            except OSError:
                gone = True
            if gone:
                _killgroup(pid)
                os.waitpid(pid, 0)
                os._exit(0)
            poller.unregister(_sock.fileno())
        os.close(pfd)
    while True:  # ended, not reaped yet: its pid still names its group
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            break
        except InterruptedError:
            pass
    _killgroup(pid)  # what the run left running in its session ends with it
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            pass
import gc as _gc
_gc.freeze()  # collections in a child skip the zygote's objects (no page copied for them)
_send({"ready": os.getpid()})
while True:
    _head, _fds = _recv_exact(4, 2)
    _req = json.loads(_recv_exact(struct.unpack("<I", _head)[0])[0])
    if _req.get("env") is not None:
        os.environ.clear()
        os.environ.update(_req["env"])
    _pid = os.fork()
    if _pid == 0:
        break
    for _fd in _fds:
        os.close(_fd)
    _send({"pid": _pid})
    _send({"status": _wait(_pid)})
os.setsid()
if _prctl is not None:
    _prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
_sock.close()
os.dup2(_fds[0], 1)
os.dup2(_fds[1], 2)
for _fd in set(_fds):
    if _fd > 2:
        os.close(_fd)
os.chdir(_req["cwd"])
for _name in set(sys.modules) - _startup:
    del sys.modules[_name]
sys.argv = _req["argv"]
if sys.path and sys.path[0] == "":
    sys.path[0] = os.path.dirname(os.path.realpath(sys.argv[0]))
import builtins
_main = type(sys)("__main__")
_file = os.path.abspath(sys.argv[0])  # as Python 3.9 and later set it for the main script
_main.__file__, _main.__cached__, _main.__builtins__ = _file, None, builtins
sys.modules["__main__"] = _main
_status = 0
try:
    with open(_file, "rb") as _f:
        _code = compile(_f.read(), _file, "exec", dont_inherit=True)
    exec(_code, _main.__dict__)
except SystemExit as _e:
    _status = _e.code
    if _status is None:
        _status = 0
    elif not isinstance(_status, int):
        print(_status, file=sys.stderr)  # as the interpreter does with sys.exit("message")
        _status = 1
except BaseException as _e:
    _e = _e.with_traceback(_e.__traceback__.tb_next)  # the traceback starts in the program
    sys.excepthook(type(_e), _e, _e.__traceback__)
    _status = -2 if isinstance(_e, KeyboardInterrupt) else 1
# The exit a user can see -- threads joined, atexit functions, the main module's objects released
# (unclosed files flushed), streams flushed -- without the interpreter's full teardown, which
# would write to every object of the forked heap and so copy all of its pages (10 ms and more).
try:
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    import atexit
    atexit._run_exitfuncs()
    _main.__dict__.clear()
    _gc.collect()  # the zygote's own objects are frozen: only the program's are looked at
except BaseException as _e:
    sys.excepthook(type(_e), _e, _e.__traceback__)
for _stream in (sys.stdout, sys.stderr):
    if _stream is None or getattr(_stream, "closed", False):
        continue  # as the interpreter does at exit
    try:
        _stream.flush()
    except BaseException:
        _status = 120 if _status == 0 else _status  # as the interpreter does when a flush fails
if _status == -2:  # KeyboardInterrupt: end by SIGINT, as the interpreter does
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
try:
    os._exit(_status)
except (OverflowError, TypeError):
    os._exit(255)
"""

_HEAD = struct.Struct("<I")
#: Signals Python ignores for itself and a spawned program must get back at their default (as
#: subprocess does): a shell checker's pipeline relies on SIGPIPE.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class _ZygoteGone(Exception):
    """The zygote ended or stopped answering."""


class _NotStarted(Exception):
    """The zygote was gone before it started the program (the run can be made another way)."""


class _Zygote:
    """A warm interpreter that forks one child per run (see the module's theory of operation)."""

    def __init__(self, interpreter: list[str], env: dict[str, str], timeout: float | None) -> None:
        import socket  # here, not at the top: a replay without a Python program never needs it

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = ours
        self.pid = -1
        self._env: dict[str, str] | None = None
        # Its standard output and error are a pipe nobody reads (it writes nothing): the streams
        # Python builds at start-up then are what a run's are, on a pipe (not seekable).
        out_r, out_w = os.pipe()
        try:
            self.pid = os.posix_spawn(
                interpreter[0],
                [*interpreter, "-c", _ZYGOTE],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, out_w, 2),
                    (os.POSIX_SPAWN_DUP2, theirs.fileno(), 3),
                ],
                setsid=True,
                setsigdef=_DEFAULT_SIGNALS,
            )
        finally:
            theirs.close()
            os.close(out_r)
            os.close(out_w)
        self._env = env
        try:
            self._receive(timeout)  # {"ready": pid}: the interpreter started and can fork
        except BaseException:
            self.close()
            raise

    def _receive(self, timeout: float | None) -> dict[str, int]:
        head = self._exact(_HEAD.size, timeout)
        import json

        message: dict[str, int] = json.loads(self._exact(_HEAD.unpack(head)[0], timeout))
        return message

    def _exact(self, n: int, timeout: float | None) -> bytes:
        got = b""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(got) < n:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                raise _ZygoteGone("no answer")
            data = self.sock.recv(n - len(got))
            if not data:
                raise _ZygoteGone("ended")
            got += data
        return got

    def start(self, argv: list[str], env: dict[str, str], out: int, err: int, timeout: float | None) -> int:
        """Fork a child that runs ``argv`` (script first) with ``out`` and ``err`` as its streams; its pid."""
        import json
        import socket

        request = {"argv": argv, "cwd": os.getcwd(), "env": None if env == self._env else env}
        message = (
            _HEAD.pack(len(body := json.dumps(request).encode())) + body
        )  # ASCII (json escapes the rest)
        try:
            sent = socket.send_fds(self.sock, [message], [out, err])
            if sent < len(message):
                self.sock.sendall(message[sent:])
        except OSError as exc:
            raise _ZygoteGone(str(exc)) from exc
        self._env = env
        return self._receive(timeout)["pid"]

    def status(self) -> int:
        """The wait status of the child started last (call once :attr:`sock` is readable)."""
        return self._receive(None)["status"]

    def close(self) -> None:
        """End the zygote (and reap it)."""
        self.sock.close()
        if self.pid > 0:
            _kill(self.pid)
            self.pid = -1


def _kill(pid: int) -> None:
    """Kill ``pid`` and everything in its session's group; reap it if it is our child."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class ProgramRunner:
    """Runs ``argv + [path]`` once per call, warm when it is a Python script (see the module's theory).

    ``run`` returns a :class:`Ran`; raises ``subprocess.TimeoutExpired`` past ``timeout``
    (the program and its children are then killed) and ``OSError`` when the program
    cannot start. ``stderr_apart`` keeps standard error out of ``stdout``.
    """

    def __init__(
        self, argv: Sequence[str], *, timeout: float | None, stderr_apart: bool = False, warm: bool = True
    ) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self.stderr_apart = stderr_apart
        self._python = python_command(self.argv) if warm else None
        self._zygote: _Zygote | None = None
        #: Whether runs start warm: a Python program, until its zygote cannot start.
        self.warm = self._python is not None

    def run(self, path: str, env: dict[str, str]) -> Ran:
        """Run the program on ``path`` with environment ``env``."""
        try:
            return self._run(path, env, self.warm)
        except _NotStarted:  # the warm interpreter was gone before the program started: a plain start
            return self._run(path, env, False)

    def _run(self, path: str, env: dict[str, str], warm: bool) -> Ran:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe() if self.stderr_apart else (-1, -1)
        pid, zygote = -1, None
        try:
            try:
                zygote = self._warm(env) if warm else None
                if zygote is not None:
                    assert self._python is not None
                    pid = zygote.start([*self._python[1], path], env, out_w, err_w if err_w >= 0 else out_w,
                                       self.timeout)  # fmt: skip
                    done = zygote.sock.fileno()
                else:
                    pid = self._spawn(path, env, out_w, err_w if err_w >= 0 else out_w)
                    done = _pidfd(pid)
            finally:
                os.close(out_w)
                if err_w >= 0:
                    os.close(err_w)
            try:
                chunks = _collect(done, [out_r] if err_r < 0 else [out_r, err_r], self.timeout)
                if zygote is not None:
                    status = zygote.status()  # the zygote ended the run's session before reaping it
                else:
                    with contextlib.suppress(ProcessLookupError):  # ended, not yet reaped: still its group
                        os.killpg(pid, signal.SIGKILL)  # what the run left running ends with it
                    status = os.waitpid(pid, 0)[1]
            finally:
                if zygote is None and done >= 0:
                    os.close(done)
        except _ZygoteGone as exc:
            self._drop_zygote(pid)  # the next run starts a new one
            if pid < 0:
                raise _NotStarted from None
            raise OSError(f"the program's warm interpreter stopped answering ({exc})") from None
        except subprocess.TimeoutExpired:
            self._end(pid, zygote)
            raise
        except BaseException:
            if pid >= 0:
                self._end(pid, zygote)
            elif zygote is not None:
                self._drop_zygote(-1)  # a request may be on its way: its answers must not reach the next run
            raise
        finally:
            os.close(out_r)
            if err_r >= 0:
                os.close(err_r)
        return Ran(os.waitstatus_to_exitcode(status), chunks[0], chunks[1] if len(chunks) > 1 else b"")

    def _warm(self, env: dict[str, str]) -> _Zygote | None:
        if self._zygote is None:
            assert self._python is not None
            try:
                self._zygote = _Zygote(self._python[0], env, self.timeout)
            except (OSError, _ZygoteGone):
                self.warm = False  # this interpreter cannot serve as a zygote: spawn every run
                return None
        return self._zygote

    def _spawn(self, path: str, env: dict[str, str], out: int, err: int) -> int:
        argv = [*self.argv, path]
        return os.posix_spawnp(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, err, 2),
            ],
            setsid=True,
            setsigdef=_DEFAULT_SIGNALS,
        )

    def _end(self, pid: int, zygote: _Zygote | None) -> None:
        """Kill a run in progress (a timeout, Ctrl-C) with its children."""
        if zygote is None:
            _kill(pid)
            return
        if pid >= 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            ready, _, _ = select.select([zygote.sock], [], [], 5.0)
            if not ready:
                raise _ZygoteGone("no status after a kill")
            zygote.status()  # the zygote reaped it: the next run starts clean
        except (OSError, ValueError, _ZygoteGone):
            self._drop_zygote(-1)  # the next run starts a new one
        except BaseException:  # a second Ctrl-C: the exchange is not where the next run expects
            self._drop_zygote(-1)
            raise

    def _drop_zygote(self, pid: int) -> None:
        if pid >= 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def close(self) -> None:
        """End the zygote, if any (a later run starts a new one)."""
        self._drop_zygote(-1)


def _pidfd(pid: int) -> int:
    """A descriptor readable once ``pid`` has exited (-1 where pidfds do not exist: wait blocking)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # pragma: no cover - Linux before 5.3
        return -1


def _collect(done: int, pipes: list[int], timeout: float | None) -> list[bytes]:
    """What each pipe carried until ``done`` became readable (the run ended), and what is left in them.

    Output still open after the end (a grandchild holds it) is read as far as it is there.
    Raises TimeoutExpired past ``timeout`` (the run is then still going). ``done`` < 0: read
    the pipes to their end instead (no pidfd on this kernel).
    """
    chunks: list[list[bytes]] = [[] for _ in pipes]
    if done < 0:  # pragma: no cover - Linux before 5.3
        for i, fd in enumerate(pipes):
            while data := os.read(fd, 1 << 16):
                chunks[i].append(data)
        return [b"".join(c) for c in chunks]
    deadline = None if timeout is None else time.monotonic() + timeout
    # poll(2) on all: one system call per wake-up, no selector object to build per run.
    poller = select.poll()
    index = {fd: i for i, fd in enumerate(pipes)}
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    poller.register(done, select.POLLIN)
    open_pipes, ended = set(pipes), False
    while not ended:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise subprocess.TimeoutExpired("checker", timeout or 0.0)
        # At most _SIGNAL_SLICE_MS per poll: a Ctrl-C landing after the interpreter last looked for
        # signals and before poll(2) blocks does not interrupt it (no EINTR: the signal is already
        # delivered), so the wait must come back to the interpreter now and then.
        wait = _SIGNAL_SLICE_MS if left is None else min(_SIGNAL_SLICE_MS, max(1, math.ceil(left * 1000)))
        for fd, _ in poller.poll(wait):
            if fd == done:
                ended = True
            elif data := os.read(fd, 1 << 16):
                chunks[index[fd]].append(data)
            else:
                open_pipes.discard(fd)
                poller.unregister(fd)
    poller.unregister(done)
    while open_pipes and (ready := poller.poll(0)):  # what is left in the pipes, without waiting
        for fd, _ in ready:
            data = os.read(fd, 1 << 16)
            if data:
                chunks[index[fd]].append(data)
            else:
                open_pipes.discard(fd)
                poller.unregister(fd)
    return [b"".join(c) for c in chunks]


class ProgramRuns:
    """A program run once per crash state on image files of its own: what checker programs and
    recovery programs share. :meth:`open` before the first run, :meth:`close` after the last.

    ``run(index, view, env)`` writes ``view`` into file ``index`` and runs the program on it:
    ``(path, Ran)``; raises as :meth:`ProgramRunner.run` does.
    """

    def __init__(
        self, argv: Sequence[str], *, timeout: float | None, warm: bool, stderr_apart: bool, prefix: str
    ) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self.warm = warm
        self.stderr_apart = stderr_apart
        self.prefix = prefix
        self.files: ImageFiles | None = None
        self.runner: ProgramRunner | None = None

    def open(self, keys: Sequence[str]) -> None:
        """A fresh directory of image files (one per key) and runner."""
        self.close()
        self.files = ImageFiles(keys, self.prefix)
        self.runner = ProgramRunner(
            self.argv, timeout=self.timeout, stderr_apart=self.stderr_apart, warm=self.warm
        )

    def run(self, index: int, view: memoryview, env: dict[str, str]) -> tuple[str, Ran]:
        """Hand ``view`` over in file ``index`` and run the program on it."""
        if self.files is None or self.runner is None:
            raise RuntimeError("a program run before open()")
        path = self.files.write(index, view)
        return path, self.runner.run(path, env)

    def close(self) -> None:
        """End the warm interpreter; close and remove the image files."""
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        if self.files is not None:
            self.files.close()
            self.files = None
