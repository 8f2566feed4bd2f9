"""Start the real MONAI Label server with the SAMUS app, for tests and benchmarks.

    with running_server(studies_dir, conf={"checkpoint": "/path/model.pt"}) as base_url:
        MONAILabelClient(base_url).info()
    with server_process(studies_dir) as server:  # also its process (server.proc.pid) and log
        ...

The server runs as `python -m monailabel.main start_server` from this repository's venv, on 127.0.0.1 and
a free port, with MONAI Label's tracking, auto-scoring and datastore watching off. It is killed (with its
train subprocesses) when the block ends; its log is kept in `<log_dir>/server.log` and shown on failure.
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Optional

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "monailabel_app"

TEST_ENV = {
    "MONAI_LABEL_TRACKING_ENABLED": "false",
    "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
    "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
    "MONAI_LABEL_SESSIONS": "true",
}


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(studies_dir, port: int, conf: Optional[Dict[str, str]] = None, app_dir=APP_DIR):
    cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app_dir),
           "--studies", str(studies_dir), "--host", "127.0.0.1", "--port", str(port)]
    for k, v in (conf or {}).items():
        cmd += ["--conf", k, str(v)]
    return cmd


def server_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(TEST_ENV)
    # The venv's `monailabel` script runs whatever python is first on PATH; pin this interpreter.
    env["MONAILABEL_PYEXE"] = sys.executable
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("OMP_NUM_THREADS", str(min(2, os.cpu_count() or 1)))
    env.update(extra or {})
    return env


def wait_ready(base_url: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"server exited with code {proc.returncode}:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(base_url + "/info/", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.3)
    raise ServerError(f"server not ready after {timeout:.0f} s:\n{tail(log_path)}")


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen) -> None:
    """Kill the server's process group: the server and any train subprocess it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen  # the server process (uvicorn runs in it): its pid, memory
    log_path: Path


@contextlib.contextmanager
def server_process(studies_dir, conf: Optional[Dict[str, str]] = None, env: Optional[Dict[str, str]] = None,
                   log_dir=None, timeout: float = 180.0) -> Iterator[Server]:
    """Start the server on a free port, wait for /info, yield it, then kill it.

    Unless `conf` names a `model_dir`, trained weights go to a fresh temporary folder, so tests never
    publish into the app's own model folder (which `make run` serves)."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="samus-server-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    conf = dict(conf or {})
    conf.setdefault("model_dir", str(log_dir / "model"))
    log_path = log_dir / "server.log"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        # Its own process group, so stop() also reaches the train subprocess MONAI Label spawns.
        proc = subprocess.Popen(server_command(studies_dir, port, conf), stdout=log, stderr=subprocess.STDOUT,
                                env=server_env(env), cwd=str(ROOT), start_new_session=True)
    try:
        wait_ready(base_url, proc, log_path, timeout)
        yield Server(base_url, proc, log_path)
    finally:
        stop(proc)


@contextlib.contextmanager
def running_server(studies_dir, conf: Optional[Dict[str, str]] = None, env: Optional[Dict[str, str]] = None,
                   log_dir=None, timeout: float = 180.0) -> Iterator[str]:
    """`server_process`, yielding only the base URL."""
    with server_process(studies_dir, conf, env, log_dir, timeout) as server:
        yield server.url


def run_server_until_exit(studies_dir, conf: Optional[Dict[str, str]] = None, timeout: float = 120.0):
    """Start the server expecting it to refuse to start: (exit code, output). A server that starts anyway
    is killed after `timeout` and gives exit code None."""
    port = free_port()
    proc = subprocess.Popen(server_command(studies_dir, port, conf), env=server_env(), cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        stop(proc)
        return None, proc.stdout.read() if proc.stdout else ""
