"""The workers' zygote: one process that imports the worker's code (the interpreter's modules and the pjsua2
library) once and forks each SIP worker from it, so the workers share those pages instead of each holding
its own ~18 MB copy (measured: importing `ivr.sip.worker` is ~14 MB of private heap, libInit ~0.5 MB).

    python -m ivr.sip.zygote --control-fd N

The controller (`ivr/zygote_link.py`) holds the other end of a SOCK_SEQPACKET socketpair; one JSON
object per datagram:

    controller -> zygote   {"op": "spawn", "id": 7, "argv": [...worker argv...]}  + the worker's control
                           socket as SCM_RIGHTS (argv's --control-fd names the number it gets in the child)
                           {"op": "kill", "pid": 1234}             SIGKILL to that worker's process group
    zygote -> controller   {"op": "ready", "pid": ...}
                           {"op": "started", "id": 7, "pid": 1234}
                           {"op": "spawn_failed", "id": 7, "error": "..."}  (fork failed)
                           {"op": "exited", "pid": 1234, "code": -9}  (code as subprocess reports it)

Rules kept here: no thread, no pjsua2 object before a fork (libCreate/libInit run in the child, in
`worker.main`); `gc.freeze()` after the imports so the collector does not touch (and un-share) the
imported objects in the children; the zygote dies with the controller (PDEATHSIG) and each worker with
the zygote, both by SIGTERM (a worker's SIGTERM hangs up its calls and exits, as on EOF of its link);
each worker gets its own session (killpg), its own process title (`ps`, the bench's accounting) and
`os._exit`s when `worker.main` returns (no zygote cleanup runs in a child). The zygote exits on EOF of
its socket (the controller stops it after its workers have exited).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
from typing import Any

import setproctitle

from ivr.sip import worker

_PR_SET_PDEATHSIG = 1
MAX_MESSAGE = 65536
MAX_FD = 1 << 20


def die_with_parent(parent: int, sig: int) -> None:
    """Get `sig` when the parent dies (even by SIGKILL); exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def exit_code(status: int) -> int:
    """waitpid status as subprocess reports it: the exit code, or -signal."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


class Zygote:
    def __init__(self, control_fd: int) -> None:
        self.sock = socket.socket(fileno=control_fd)
        self.children: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def send(self, message: dict[str, Any]) -> None:
        self.sock.send(json.dumps(message).encode())

    def run(self) -> int:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.send({"op": "ready", "pid": os.getpid()})
        while True:
            readable, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [])
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass
            self.reap()
            if self.sock.fileno() in readable and not self.handle():
                return 0  # the workers still running get SIGTERM (PDEATHSIG): an orderly hang-up

    def handle(self) -> bool:
        """One request; False on EOF."""
        data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 1)
        if not data:
            return False
        request = json.loads(data)
        if request["op"] == "spawn":
            if len(fds) != 1:
                raise RuntimeError(f"spawn request without its control socket: {request!r}")
            self.spawn(request["id"], request["argv"], fds[0])
        elif request["op"] == "kill":
            if request["pid"] in self.children:  # not reaped yet: the pid is still ours
                self.killpg(request["pid"])
        else:
            raise RuntimeError(f"unknown zygote request {request!r}")
        return True

    @staticmethod
    def killpg(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"op": "exited", "pid": pid, "code": exit_code(status)})

    def spawn(self, request_id: int, argv: list[str], fd: int) -> None:
        zygote = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN/ENOMEM: this worker fails, the others keep running
            os.close(fd)
            self.send({"op": "spawn_failed", "id": request_id, "error": str(exc)})
            return
        if pid == 0:
            code = 1
            try:
                code = self.child(zygote, argv, fd)
            except SystemExit as exc:
                code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(fd)
        self.children.add(pid)
        self.send({"op": "started", "id": request_id, "pid": pid})

    def child(self, zygote: int, argv: list[str], fd: int) -> int:
        """In the forked child: become a freshly started `python -m ivr.sip.worker <argv>`."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.sock.detach()  # closed below with the other fds; the object must not close a reused number
        os.setsid()
        die_with_parent(zygote, signal.SIGTERM)  # the zygote dies with the controller: hang up, exit
        target = worker.parse_args(argv).control_fd
        os.closerange(3, fd)  # only stdio and the control socket survive, as with exec + pass_fds
        os.closerange(fd + 1, MAX_FD)
        if fd != target:
            os.dup2(fd, target)
            os.close(fd)
        os.set_inheritable(target, False)
        sys.argv = ["-m", *argv]
        setproctitle.setproctitle(" ".join([sys.executable, "-m", "ivr.sip.worker", *argv]))
        return worker.main(argv)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ivr.sip.zygote", description=__doc__.splitlines()[0])
    p.add_argument("--control-fd", type=int, required=True, help="inherited SOCK_SEQPACKET to the controller")
    p.add_argument("--parent", type=int, default=0, help="controller pid: die with it (PDEATHSIG)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.parent:
        die_with_parent(args.parent, signal.SIGTERM)  # default action: exit; the workers follow
    gc.collect()
    gc.freeze()
    return Zygote(args.control_fd).run()


if __name__ == "__main__":
    sys.exit(main())
