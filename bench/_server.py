"""Starts the real server (gunicorn) on a free loopback port for a benchmark, and measures its memory."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


class Client:
    """A keep-alive HTTP client for latency figures: http.client costs the client far less than requests
    (about 1 ms against 3 ms for a round trip on this machine), so the figure is the server's."""

    def __init__(self, port: int, token: str | None = None):
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers=self.headers)
        r = self.conn.getresponse()
        return r.status, r.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db_url: str, *, workers: int = 2, threads: int = 4, env: dict[str, str] | None = None,
                 load_artifacts: bool = False):
        self.load_artifacts = load_artifacts
        self.tmp = tempfile.mkdtemp(prefix="lbp-bench-")
        env = {"LBP_CLIENTS_FILE": f"{self.tmp}/clients.json", "MALLOC_ARENA_MAX": "2", **(env or {})}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, DATABASE_URL=db_url, PORT=str(self.port), WEB_CONCURRENCY=str(workers),
                        THREADS=str(threads), LBP_LOAD_ARTIFACTS="false", LOG_LEVEL="warning", **env)
        self.proc: subprocess.Popen | None = None
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> Server:
        if self.load_artifacts:  # once, before the workers start (as `lbp serve` does)
            subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"], cwd=ROOT,
                           env=dict(self.env, LBP_LOAD_ARTIFACTS="true"), check=True, capture_output=True)
        self.log_path = f"{self.tmp}/server.log"
        self.log = open(self.log_path, "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app.wsgi:app"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/healthz", timeout=1).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        else:
            self.log.seek(0)
            raise RuntimeError("server did not start: " + self.log.read().decode(errors="replace")[-2000:])
        threading.Thread(target=self._sample_memory, daemon=True).start()
        return self

    def token(self, scope: str = "system/*.cruds") -> str:
        """Registers a client with a fresh key and gets an access token from the token endpoint."""
        sys.path.insert(0, str(ROOT))
        from app.auth.local import register_client, token_request

        pem = register_client(self.env["LBP_CLIENTS_FILE"], "bench", scope, f"{self.tmp}/keys")
        r = requests.post(self.base + "/auth/token", data=token_request("bench", pem, self.base + "/auth/token",
                                                                        scope), timeout=10)
        r.raise_for_status()
        return r.json()["access_token"]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's processes have used so far: master and workers together."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self._pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (FileNotFoundError, IndexError, ValueError):
                pass
        return total / tick

    def _pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return [self.proc.pid, *map(int, out)]

    def rss_mb(self) -> float:
        """Resident memory of the server: master and workers together."""
        total = 0
        for pid in self._pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
        return total / 1024

    def pss_mb(self) -> float:
        """Proportional set size of the server: pages the workers share with the master (the preloaded
        application, copy-on-write) counted once, where the RSS sum counts them in every process."""
        total = 0
        for pid in self._pids():
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            except (FileNotFoundError, PermissionError):
                pass
        return total / 1024

    def _sample_memory(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())
            self.peak_pss_mb = max(self.peak_pss_mb, self.pss_mb())
            time.sleep(0.2)

    def log_tail(self, n: int = 3000) -> str:
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")

    def __exit__(self, *exc) -> None:
        if exc and exc[0] is not None:
            print("server log (tail):\n" + self.log_tail(), file=sys.stderr)
        self._stop.set()
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
