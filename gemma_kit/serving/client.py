"""Run the server as its own process on this machine, and call it the way Vertex AI does.

    with LocalServer("--model", "gemma3_270m") as server:       # waits until the health route says 200
        server.predict([{"prompt": "The capital of France is", "max_tokens": 16}])
        # -> [{"text": " Paris...", "prompt_tokens": 7, "generated_tokens": 16, "finish_reason": "length"}]

The process runs ``SERVE_COMMAND``, the ``CMD`` of the Dockerfile (the tests
check they are equal), so what you try on your laptop is what the container
runs on Vertex AI. Its stdout (one JSON line per request) goes to a file that
``log()`` reads back. Leaving the ``with`` block sends SIGTERM, as Vertex AI
does when it scales a replica down.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

SERVE_COMMAND = ["python", "-m", "gemma_kit.cli", "serve"]      # = the Dockerfile's CMD


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class LocalServer:
    """``SERVE_COMMAND`` plus ``flags`` in a subprocess on 127.0.0.1 and a free port."""

    def __init__(self, *flags: str, env: Optional[dict] = None, port: Optional[int] = None,
                 health_route: str = "/health", predict_route: str = "/predict", start_timeout: float = 600):
        self.flags, self.port = list(flags), port or free_port()
        self.env = dict(os.environ, **(env or {}))
        self.health_route, self.predict_route, self.start_timeout = health_route, predict_route, start_timeout
        self.process: Optional[subprocess.Popen] = None
        folder = tempfile.mkdtemp(prefix="gemma_kit_server_")
        self.stdout_path, self.stderr_path = os.path.join(folder, "stdout.jsonl"), os.path.join(folder, "stderr.txt")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LocalServer":
        command = [sys.executable, *SERVE_COMMAND[1:], "--host", "127.0.0.1", "--port", str(self.port), *self.flags]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=self.env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"The server exited with status {self.process.returncode} before it was "
                                   f"healthy:\n{self.tail()}")
            try:
                if self.request("GET", self.health_route, timeout=5)[0] == 200:
                    return self
            except OSError:                                   # not listening yet
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"The server was not healthy after {self.start_timeout} s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> Optional[int]:
        """Send ``sig`` and wait for the process to exit (SIGKILL after ``timeout`` s); its exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- calling it ------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None,
                timeout: float = 600):
        """``(status, decoded JSON body)`` of one request on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode("utf-8", "replace")

    def predict(self, instances: List[dict], parameters: Optional[dict] = None, timeout: float = 600) -> List[dict]:
        """What ``endpoint.predict(instances, parameters)`` returns on Vertex AI: the predictions."""
        body = {"instances": instances, **({"parameters": parameters} if parameters else {})}
        status, answer = self.request("POST", self.predict_route, json.dumps(body).encode(),
                                      {"Content-Type": "application/json"}, timeout=timeout)
        if status != 200:
            raise ServerError(status, answer.get("error", answer) if isinstance(answer, dict) else answer)
        return answer["predictions"]

    def log(self) -> List[dict]:
        """The JSON lines the server wrote so far."""
        with open(self.stdout_path, encoding="utf-8") as file:
            return [json.loads(line) for line in file if line.startswith("{")]

    def tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.stdout_path, self.stderr_path):
            with open(path, encoding="utf-8", errors="replace") as file:
                text += "".join(file.readlines()[-lines:])
        return text
