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
def ray_head(num_cpus: int, timeout: float = 180.0, nodes: int = 1) -> Iterator[RayHead]:
    """Start a Ray cluster on the loopback interface, with its own token: a head, and with ``nodes``
    above 1 that many more raylets joined to it as a worker machine joins (``ray start --address``),
    each with its own ports."""
    # Short and outside pytest's tmp_path: Ray's socket paths must fit in 107 characters.
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    port = _free_port()
    # A cluster of several raylets runs on the machine's own address, which Ray insists on then;
    # one node stays on loopback.
    ip = _own_address() if nodes > 1 else "127.0.0.1"
    # Ray replaces 127.0.0.1 with the machine's address unless it believes it cannot cluster;
    # a test cluster stays on loopback. The token keeps other users' drivers out.
    driver_env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1" if nodes > 1 else "0", "RAY_AUTH_MODE": "token",
                  "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}
    env = {**os.environ, **driver_env,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
         f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}",
         f"--node-ip-address={ip}", "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    workers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + timeout
        lines = []
        while "Ray runtime started" not in "".join(lines[-5:]):
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError("ray start --head failed:\n" + "".join(lines[-40:]))
            lines.append(line)
        for _ in range(nodes - 1):
            workers.append(_join(f"{ip}:{port}", ip, env, temp, timeout))
        yield RayHead(f"{ip}:{port}", driver_env)
    finally:
        _stop(*workers, proc)
        shutil.rmtree(temp, ignore_errors=True)


GRACE_S = 5.0  # ray start --block waits about 30 s for its processes on SIGTERM; a test cluster need not


def _stop(*procs: subprocess.Popen) -> None:
    """Stop ``ray start --block`` processes, all asked at once: each takes seconds to wind down."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)  # --block: ray start stops its own processes on the way out
    for proc in procs:
        try:
            proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:  # what is left of each (its raylet, workers, GCS) is in its process group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        proc.stdout.close()


def _own_address() -> str:
    """This machine's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        return s.getsockname()[0]


def _join(address: str, ip: str, env: dict, temp: str, timeout: float) -> subprocess.Popen:
    """A second raylet joined to the head at ``address``, as another machine's ``ray start
    --address`` would, with its own ports (the README's recipe: the same token and RAY_AUTH_MODE)."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--block", f"--address={address}", "--num-cpus=1",
         "--num-gpus=0", f"--node-ip-address={ip}", f"--node-manager-port={_free_port()}",
         f"--object-manager-port={_free_port()}", f"--temp-dir={temp}", "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while "Ray runtime started" not in "".join(lines[-5:]):
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError("ray start --address failed:\n" + "".join(lines[-40:]))
        lines.append(line)
    return proc
