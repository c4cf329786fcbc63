"""The zygote: the process `pgrepl run` forks before its first connection and thread, and that forks the workers.

A worker forked from it shares the modules it imported (psycopg and the sync code, loaded by `pgrepl run` before
the fork) with it, with the controller and with the other workers, copy-on-write: a worker dirties a few MB of its
own instead of importing everything again (docs/benchmarks.md). The controller itself cannot fork them: a child
would inherit its control connection and the threads of a process that has some (the metrics listener).
multiprocessing's forkserver does the same with a clean process, but it starts that server as a new interpreter
(exec: no page shared with the controller, whose imports are ~17 MB of its own) with a resource tracker beside it.

The controller talks to it over a socket pair, one line a message: `start NAME` (answer `pid PID`) and
`signal PID SIGNUM` one way, `exit PID CODE` (a waitpid exit code, -SIGNUM for a signal) the other, for every worker
it reaps. Deaths cascade: the zygote gets SIGTERM when the controller dies (even by kill -9), and so does a worker
when the zygote dies. In `ps`: `pgrepl zygote` and `pgrepl worker NAME` (see set_title).
"""

from __future__ import annotations

import ctypes
import gc
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):   # not Linux: a worker's getppid() check alone notices a dead parent
    _PRCTL = None


def _setproctitle():
    """The setproctitle module, or None. SPT_NOENV (read when it first sets a title): /proc/PID/environ keeps the
    controller's environment, so a title longer than the original command line is cut (under systemd that line is
    50-odd characters)."""
    os.environ["SPT_NOENV"] = "1"
    try:
        import setproctitle
    except ImportError:
        return None
    return setproctitle


def set_title(title: str) -> None:
    """TITLE as this process's command line in `ps` (setproctitle), else as its 15-character kernel name (`ps -e`,
    `top`, `pgrep`)."""
    spt = _setproctitle()
    if spt is not None:
        spt.setproctitle(title)
    elif _PRCTL is not None:
        _PRCTL(PR_SET_NAME, title.encode()[:15])


def die_with(parent: int) -> None:
    """In a child just forked by PARENT: SIGTERM when PARENT dies, and exit now if it already has."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def _send(sock: socket.socket, *words) -> None:
    sock.sendall((" ".join(map(str, words)) + "\n").encode())


class Zygote:
    """The controller's side: forks the zygote at once (call it before any connection or thread exists)."""

    def __init__(self, control_conninfo: str) -> None:
        _setproctitle()   # imported before the fork: shared too
        ours, theirs = socket.socketpair()
        controller = os.getpid()
        gc.freeze()   # what is imported stays out of the collector's reach: its pages stay shared
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ours.close()
                code = _serve(theirs, control_conninfo, controller)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        self.pid, self.sock, self.alive = pid, ours, True
        self.buf = b""
        self.started: list[int] = []
        self.exits: dict[int, int] = {}

    def start(self, name: str) -> ForkedWorker:
        """Forks the worker of sync NAME."""
        self._tell("start", name)
        deadline = time.monotonic() + 30
        while not self.started and self.alive and time.monotonic() < deadline:
            self.pump(deadline - time.monotonic())
        if not self.started:
            raise OSError(f"the zygote (pid {self.pid}) did not start a worker for {name}")
        return ForkedWorker(self, self.started.pop(0))

    def pump(self, timeout: float) -> None:
        """Reads what the zygote said within TIMEOUT (0: only what is there)."""
        if self.alive and select.select([self.sock], [], [], max(timeout, 0))[0]:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            self.alive = bool(data)
            self.buf += data
            *lines, self.buf = self.buf.split(b"\n")
            for verb, *args in (line.decode().split() for line in lines):
                if verb == "pid":
                    self.started.append(int(args[0]))
                elif verb == "exit":
                    self.exits[int(args[0])] = int(args[1])

    def signal(self, pid: int, signum: int) -> None:
        if self.alive:
            self._tell("signal", pid, int(signum))

    def _tell(self, *words) -> None:
        try:
            _send(self.sock, *words)
        except OSError:   # the zygote is gone (its workers with it)
            self.alive = False

    def close(self, timeout: float = 10) -> None:
        """Ends the zygote (it exits when its socket closes) and reaps it."""
        self.sock.close()
        self.alive = False
        deadline = time.monotonic() + timeout
        while os.waitpid(self.pid, os.WNOHANG)[0] == 0:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                return
            time.sleep(0.05)


class ForkedWorker:
    """A forked worker, as the controller sees it (the part of subprocess.Popen it uses)."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.zygote.pump(0)
            self.returncode = self.zygote.exits.pop(self.pid, None)
        return self.returncode

    def terminate(self) -> None:
        self.zygote.signal(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        self.zygote.signal(self.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        """Its exit code; None when the zygote died (the worker gets SIGTERM with it: nobody can tell its code)."""
        deadline = time.monotonic() + timeout
        while self.poll() is None and self.zygote.alive:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            self.zygote.pump(deadline - time.monotonic())
        return self.poll()


# --- the zygote's side ----------------------------------------------------------------------------------------

def _serve(sock: socket.socket, control_conninfo: str, controller: int) -> int:
    try:
        return _loop(sock, control_conninfo, controller)
    except (BrokenPipeError, ConnectionResetError):   # the controller closed its end while we told it something
        return 0


def _loop(sock: socket.socket, control_conninfo: str, controller: int) -> int:
    die_with(controller)
    set_title("pgrepl zygote")
    # what `pgrepl worker` reads: its control database, and the parent whose death means stop (_orphaned)
    os.environ.update(PGREPL_CONTROL=control_conninfo, PGREPL_CONTROLLER_PID=str(os.getpid()))
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole process group: the controller stops us
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wfd)   # a worker's death wakes the select()
    children: set[int] = set()
    me, buf = os.getpid(), b""
    while True:
        ready = select.select([sock, rfd], [], [])[0]
        if rfd in ready:
            try:
                while os.read(rfd, 4096):
                    pass
            except BlockingIOError:
                pass
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if not pid:
                break
            children.discard(pid)
            _send(sock, "exit", pid, os.waitstatus_to_exitcode(status))
        if sock in ready:
            data = sock.recv(65536)
            if not data:   # the controller is done (or dead): the workers left get SIGTERM as we exit
                return 0
            *lines, buf = (buf + data).split(b"\n")
            for verb, rest in (line.decode().split(" ", 1) for line in lines):
                if verb == "start":
                    gc.freeze()
                    pid = os.fork()
                    if pid == 0:
                        _run_worker(rest, me, sock, (rfd, wfd))
                    children.add(pid)
                    _send(sock, "pid", pid)
                elif verb == "signal":
                    pid, signum = map(int, rest.split())
                    if pid in children:   # not reaped yet: the pid is still that worker's
                        os.kill(pid, signum)


def _run_worker(name: str, zygote: int, sock: socket.socket, fds: tuple[int, int]) -> None:
    """In a new child of the zygote: `pgrepl worker NAME` (its messages and exit codes), then exits."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        sock.close()
        for fd in fds:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        die_with(zygote)
        set_title(f"pgrepl worker {name}")
        from .cli.main import main  # loaded by `pgrepl run` before the zygote was forked
        code = main(["worker", name])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
