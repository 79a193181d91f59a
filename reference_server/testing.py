"""Run the reference server as a child process on a free loopback port.

Used by the test suite, `make demo` and the benchmarks, so all of them exercise the
real server over real HTTP the way users run it (`maas serve`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`with ServerProcess(env={...}) as server:` starts `maas serve`, waits for `/ready`,
    and on exit sends SIGTERM (then SIGKILL after `grace` seconds)."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        port: int | None = None,
        ready_timeout: float = 300.0,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
        self.ready_timeout = ready_timeout
        self.log_path = log_path
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "reference_server", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), *self.extra_args]
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the server was not ready within {self.ready_timeout} s")

    def stop(self, grace: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> ServerProcess:  # noqa: PYI034 - subclasses keep this type
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    """`python -m reference_server.testing CMD...`: run CMD with a server up, MAAS_BASE_URL set."""
    command = sys.argv[1:]
    if not command:
        print("usage: python -m reference_server.testing COMMAND [ARGS...]", file=sys.stderr)
        return 2
    log = Path(os.environ.get("MAAS_SERVER_LOG", ".cache/server.log"))
    log.parent.mkdir(parents=True, exist_ok=True)
    with ServerProcess(log_path=log) as server:
        env = {**os.environ, "MAAS_BASE_URL": server.base_url}
        return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
