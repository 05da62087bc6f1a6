"""Isolated workers: a job that crashes, hangs or runs out of memory costs the one input it was given, never the run.

This module is the mechanism only; it knows nothing of what the jobs do. A caller runs a picklable, importable
``fn(arg)`` in a **worker process** supervised from here (:class:`IsolatedWorker`, :func:`map_isolated`):

- the job says it is alive by calling :func:`beat` while it works; a worker silent for ``timeout_s`` seconds is
  killed and the input is reported as ``timeout``: a long job that keeps working is never cut off, a stuck one is;
- a worker that dies (segfault, abort, killed by the kernel's OOM killer) is reported as ``crashed`` with its signal;
- any other exception raised while one input is handled (by the job in the worker, or by the parent reading the
  job's result) is reported as ``error`` with its one line (:func:`call_for_file`);
- in every case a fresh or the same worker takes the next input: one input never stops the run.

A worker dies with its parent: the kernel kills it when the thread that started it ends (``PR_SET_PDEATHSIG`` on
Linux), even when the parent itself is killed with SIGKILL, and it exits when its pipe to the parent closes; an
orphaned worker never goes on eating a CPU.

Workers are fresh interpreters (no forked copy of the parent's threads or CUDA state) reused across inputs. A
:class:`WorkerKind` names a setup function each worker runs before it says it is ready (heavy imports), so that start
cost is paid once per worker and never counted against an input's time limit; it also words the failures. The video
decoding jobs and their kind live in :mod:`dlkdd.data.untrusted`.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from queue import Queue
from typing import Any

POLL_S = 0.1  # how often the supervisor looks at the worker
STARTUP_S = 120.0  # a worker must be ready within this (its setup importing OpenCV on a loaded machine)
BEAT_S = 0.5  # a worker says it is alive at most this often (a message per beat() call would cost more)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_BOOT = "import sys; sys.path[:0] = sys.argv[5:]; from dlkdd.isolated import _serve; _serve()"


@dataclass(frozen=True)
class WorkerKind:
    """What a worker is for: ``setup`` (``"module:function"``, or empty) runs in each worker before it is ready; the
    texts word its failures (``crashed`` is formatted with ``how``, ``timeout`` with ``timeout_s``; the input's
    subject and ``": "`` come first)."""

    name: str = "worker"
    setup: str = ""
    crashed: str = "the worker crashed on this input ({how})"
    timeout: str = "the worker made no progress for {timeout_s:g} s"


@dataclass(frozen=True)
class Failure:
    """What an isolated call produced instead of a result: ``kind`` is ``crashed``, ``timeout`` or ``error``."""

    kind: str
    message: str


class WorkerError(RuntimeError):
    """The function raised in the worker; the message is ``<ExceptionType>: <its first line>``."""


class WorkerStartError(RuntimeError):
    """No worker could be started: the machine's problem, not an input's, so it stops the run."""


def one_line(err: BaseException) -> str:
    """``<ExceptionType>: <first line of its message>`` (cv2.error and MemoryError messages span lines)."""
    try:
        text = str(err).strip()
    except Exception:  # a broken __str__ must not cost the report
        text = ""
    return f"{type(err).__name__}: {text.splitlines()[0] if text else '(no message)'}"


_beat: Callable[[], None] | None = None  # set in a worker process by _serve


def beat() -> None:
    """Tell the supervisor the running job is still making progress (call it often; it sends at most one message
    per ``BEAT_S``). A no-op outside a worker process."""
    if _beat is not None:
        _beat()


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when the thread that started it ends (Linux; its parent killed even
    with SIGKILL included), then leave at once if the parent went before the request was made."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: a closed pipe still stops it (between jobs, at a beat)
            pass
    if os.getppid() != parent:
        os._exit(0)


def _run_setup(spec: str) -> None:
    """Run a :class:`WorkerKind` ``setup`` (``"module:function"``) in this worker."""
    if spec:
        module, _, name = spec.partition(":")
        getattr(importlib.import_module(module), name)()


def _serve() -> None:
    """The worker process's main loop: read ``(fn, arg)``, answer ``(True, result)`` or ``(False, one line)``; between
    them, ``("beat",)`` while the job calls :func:`beat`."""
    global _beat
    _die_with_parent(int(sys.argv[3]))
    _run_setup(sys.argv[4])
    inbox, outbox = Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)
    last = [0.0]

    def send_beat() -> None:
        now = time.monotonic()
        if now - last[0] > BEAT_S:
            last[0] = now
            try:
                outbox.send(("beat",))
            except OSError:  # the parent is gone: nobody wants this input's result
                os._exit(0)

    _beat = send_beat
    outbox.send(("ready",))
    while True:
        try:
            fn, arg = inbox.recv()
        except EOFError:
            return
        try:
            outbox.send((True, fn(arg)))  # a result that cannot be pickled raises here, before a byte is written
        except Exception as err:  # the function's own errors travel back as one line
            try:
                outbox.send((False, one_line(err)))
            except OSError:  # the parent is gone
                return


class IsolatedWorker:
    """One supervised worker process: :meth:`call` runs ``fn(arg)`` there (both picklable, ``fn`` importable).

    A plain ``python -c`` child (not multiprocessing's ``spawn``, which re-runs the caller's ``__main__`` and so
    breaks scripts without a main guard), talking over two pipes; stdout and stderr stay the job's. The process
    is killed when the thread that started it ends (module doc): keep a worker in the thread that uses it, or in a
    pool whose threads outlive it (:func:`map_isolated`).
    """

    def __init__(self, timeout_s: float, kind: WorkerKind = WorkerKind()) -> None:
        self.timeout_s = timeout_s
        self.kind = kind
        self._proc: subprocess.Popen | None = None
        self._env: dict[str, str] = {}

    @property
    def pid(self) -> int | None:
        """The worker process's id while one runs."""
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._proc = subprocess.Popen([sys.executable, "-c", _BOOT, str(to_child_r), str(from_child_w),
                                       str(os.getpid()), self.kind.setup, *sys.path],
                                      pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL)
        self._env = dict(os.environ)
        os.close(to_child_r)
        os.close(from_child_w)
        self._send, self._recv = Connection(to_child_w, readable=False), Connection(from_child_r, writable=False)
        # the start (an interpreter running the kind's setup) is not the input's time: wait for it apart, generously
        limit = max(STARTUP_S, self.timeout_s)
        try:
            ready = self._recv.poll(limit) and self._recv.recv() == ("ready",)
        except (EOFError, OSError):  # it died while starting
            ready = False
        if not ready:
            self.close()
            raise WorkerStartError(f"the isolated {self.kind.name} did not start within {limit:g} s")

    def call(self, fn: Callable[[Any], Any], arg: Any, subject: str = "") -> Any:
        """``fn(arg)`` in the worker; a :class:`Failure` when the worker died or stopped making progress. An exception
        raised by ``fn`` comes back as :class:`WorkerError` with its one-line message; any other exception raised
        here (the job or its result cannot be pickled) propagates after the worker is replaced."""
        if self._proc is not None and self._env != dict(os.environ):
            self.close()  # a kept worker would run under the environment it started with (codec options, faults)
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        try:
            self._send.send((fn, arg))  # a job that cannot be pickled raises before a byte is written
        except (BrokenPipeError, OSError):
            return self._died(subject)
        try:
            return self._answer(subject)
        except WorkerError:
            raise  # the worker caught it and is ready for the next job
        except Exception:
            self.close()  # the conversation is in an unknown state: the next call starts a fresh worker
            raise

    def _answer(self, subject: str) -> Any:
        """Wait for the worker's answer to the job just sent, a heartbeat resetting the time limit."""
        assert self._proc is not None
        since = time.monotonic()
        while True:
            if self._recv.poll(POLL_S):
                try:
                    msg = self._recv.recv()
                except (EOFError, OSError):
                    return self._died(subject)
                if msg == ("beat",):
                    since = time.monotonic()
                    continue
                ok, value = msg
                if not ok:
                    raise WorkerError(value)
                return value
            if self._proc.poll() is not None:
                return self._died(subject)
            if time.monotonic() - since > self.timeout_s:
                self.close()
                return Failure("timeout", f"{subject}: {self.kind.timeout.format(timeout_s=self.timeout_s)}")

    def _died(self, subject: str) -> Failure:
        assert self._proc is not None
        proc = self._proc
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # its pipe closed but it lingers: close() kills it
            pass
        self.close()
        code = proc.returncode
        try:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        except ValueError:
            how = f"signal {-code}"
        return Failure("crashed", f"{subject}: {self.kind.crashed.format(how=how)}")

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(5)
            self._send.close()
            self._recv.close()
            self._proc = None


def call_for_file(worker: IsolatedWorker, fn: Callable[[Any], Any], arg: Any, subject: str) -> Any:
    """``worker.call(fn, arg, subject)`` where whatever one input brings costs that input only: an exception raised
    by ``fn`` in the worker, or by the parent sending the job or reading its result, becomes ``Failure("error", one
    line)``. Only :class:`WorkerStartError` (no worker at all: the machine, not the input) propagates."""
    try:
        return worker.call(fn, arg, subject)
    except WorkerStartError:
        raise
    except Exception as err:
        text = str(err) if isinstance(err, WorkerError) else one_line(err)
        return Failure("error", f"{subject}: failed on this file: {text}")


def map_isolated(fn: Callable[[Any], Any], args: Iterable[Any], workers: int, timeout_s: float,
                 subject: Callable[[Any], str] = str, kind: WorkerKind = WorkerKind()) -> Iterator[Any]:
    """``fn`` over ``args`` in ``workers`` supervised worker processes of ``kind``; yields results (or
    :class:`Failure`, see :func:`call_for_file`) in the order of ``args``. ``subject(arg)`` names the input in failure
    messages. Raises :class:`WorkerStartError` when no worker starts."""
    pool: Queue[IsolatedWorker] = Queue()
    all_workers = [IsolatedWorker(timeout_s, kind) for _ in range(max(1, workers))]
    for w in all_workers:
        pool.put(w)

    def one(arg: Any) -> Any:
        w = pool.get()
        try:
            return call_for_file(w, fn, arg, subject(arg))
        finally:
            pool.put(w)

    try:
        with ThreadPoolExecutor(max_workers=len(all_workers)) as ex:
            yield from ex.map(one, args)
    finally:
        for w in all_workers:
            w.close()
