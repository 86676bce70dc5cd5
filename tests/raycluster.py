"""A throwaway Ray cluster on this machine: ``ray start --head --block`` in a temporary folder.

Shared by tests/test_ray.py and bench/bench_ray.py. The head's workers import this checkout's
``labeler`` (PYTHONPATH), and stopping the blocking ``ray start`` stops every process it started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class RayHead:
    address: str  # for --address
    env: dict[str, str]  # what a driver's environment needs to join it


@contextmanager
def ray_head(num_cpus: int, timeout: float = 180.0) -> Iterator[RayHead]:
    """Start a one-node Ray cluster on the loopback interface, with its own token."""
    # Short and outside pytest's tmp_path: Ray's socket paths must fit in 107 characters.
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    port = _free_port()
    # Ray replaces 127.0.0.1 with the machine's address unless it believes it cannot cluster;
    # a test cluster stays on loopback. The token keeps other users' drivers out.
    driver_env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
                  "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}
    env = {**os.environ, **driver_env,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
         f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}",
         "--node-ip-address=127.0.0.1", "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        lines = []
        while "Ray runtime started" not in "".join(lines[-5:]):
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError("ray start --head failed:\n" + "".join(lines[-40:]))
            lines.append(line)
        yield RayHead(f"127.0.0.1:{port}", driver_env)
    finally:
        proc.send_signal(signal.SIGTERM)  # --block: ray start stops its own processes on the way out
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        shutil.rmtree(temp, ignore_errors=True)
