"""Plain helpers several test modules share (fixtures live in conftest.py; no test module imports another)."""
import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from conftest import ROOT, run_ok, tool_env

CLASSES = ["Drink", "Jump", "Sit"]


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """``run_ok`` with its output stripped: the one way tests run git/dvc."""
    return run_ok(cmd, cwd, env).strip()


def src_env(*paths: Path, **extra: str) -> dict[str, str]:
    """``tool_env`` with ``paths`` (default: this checkout's src/) first on PYTHONPATH, for a child interpreter."""
    pythonpath = os.pathsep.join([*(str(p) for p in paths or (ROOT / "src",)), os.environ.get("PYTHONPATH", "")])
    return tool_env(PYTHONPATH=pythonpath, **extra)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def snapshot(repo: Path) -> dict:
    """Everything production is: git state, the footage sidecar and folder, the served student's bytes."""
    footage = repo / "data/footage"
    return {"head": sh(["git", "rev-parse", "HEAD"], repo), "tags": sh(["git", "tag", "-l"], repo),
            "footage_csv": (repo / "data/footage.csv").read_text(),
            "footage": sorted((str(p.relative_to(footage)), md5(p)) for p in footage.rglob("*") if p.is_file())
            if footage.is_dir() else [],
            "student": md5(repo / "models/student.pt"), "lock": (repo / "dvc.lock").read_text(),
            "status": sh(["git", "status", "--porcelain"], repo)}


def dark_clip(dest: Path, cls: str, seed: int) -> Path:
    """A real dark clip of ``cls`` rendered by the project's synthetic footage generator."""
    from dlkdd.config import GenerateConfig
    from dlkdd.data.synthetic import generate_dataset

    cfg = GenerateConfig(classes=[cls], train_per_class=1, val_per_class=0, test_per_class=0, num_frames=12,
                         width=64, height=48, luma_min=5.0, luma_max=12.0)  # a single clip must pass the batch mean
    tmp = dest.parent / f".render-{seed}"
    generate_dataset(tmp, cfg, seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(tmp / cls / f"{cls}_train_000.avi", dest)
    shutil.rmtree(tmp)
    return dest


def floodlit_clip(dest: Path, seed: int) -> Path:
    """A decodable but far-too-bright clip (lights on): the quality gate must refuse it."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    wr = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (64, 48))
    for _ in range(12):
        wr.write(rng.integers(170, 255, (48, 64, 3), dtype=np.uint8))
    wr.release()
    return dest


def retrain_runs(repo: Path | None = None) -> list:
    """The retrain flow runs the session's Prefect server holds (one server for every module): of ``repo`` only, if
    given."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])))
    return runs if repo is None else [r for r in runs if str(r.parameters.get("repo")) == str(repo)]


def server_state(state):
    """The state the Prefect server recorded for the flow run ``state`` ended (what the runs list shows)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).state


def report_of(repo: Path, out: dict) -> str:
    """The markdown summary a retrain run wrote (its Prefect artifact's text)."""
    return (repo / "reports/retrain" / f"{out['run_id']}.md").read_text()


def promote_in_subprocess(repo: Path, branch: str, base: str, fault: str | None) -> subprocess.CompletedProcess:
    code = ("import sys; from pathlib import Path; from flows.production import ProductionCheckout; "
            "print(ProductionCheckout(Path(sys.argv[1])).promote(sys.argv[2], sys.argv[3], 'test'))")
    env = src_env(ROOT, ROOT / "src")
    env.pop("DLKDD_FAULT", None)
    if fault:
        env["DLKDD_FAULT"] = f"promote@{fault}"
    return subprocess.run([sys.executable, "-c", code, str(repo), branch, base], env=env, capture_output=True,
                          text=True, timeout=300)


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks: a FIFO's open() waits for a writer forever."""
    def expired(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def dlkdd(*args, cwd):
    """The real command in a fresh interpreter (what a user types)."""
    return subprocess.run([sys.executable, "-m", "dlkdd.cli", *map(str, args)], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True,
                          timeout=120)


def dlkdd_inproc(capsys, *args):
    """The same entry point in this process (saves a torch import per call); returns (rc, stdout, stderr)."""
    from dlkdd.cli import main

    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


class SlowFileHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a file like a live camera: ``chunk`` bytes, then ``on_chunk(sent, total)``, then a ``delay`` s pause.
    The hook is the test's hand on the stream (count what was sent, press Ctrl-C on the client half way)."""

    def __init__(self, *args, delay: float, on_chunk: Callable[[int, int], None], chunk: int = 4096, **kwargs):
        self.delay, self.on_chunk, self.chunk = delay, on_chunk, chunk
        super().__init__(*args, **kwargs)  # handles the request: the attributes must be set first

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/x-msvideo")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for i in range(0, len(data), self.chunk):
            try:
                self.wfile.write(data[i:i + self.chunk])
            except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
                return
            self.on_chunk(min(i + self.chunk, len(data)), len(data))
            time.sleep(self.delay)


@contextlib.contextmanager
def serve_slowly(folder: Path, delay: float, on_chunk: Callable[[int, int], None] = lambda sent, total: None,
                 chunk: int = 4096) -> Iterator[str]:
    """Serve ``folder``'s files over loopback HTTP with :class:`SlowFileHandler`; yields the base URL
    ``http://127.0.0.1:<port>`` and shuts the server down after the block."""
    handler = functools.partial(SlowFileHandler, directory=str(folder), delay=delay, on_chunk=on_chunk, chunk=chunk)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
