"""Fixtures for the interop checks: real Hallmark processes, driven the way a user drives them."""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

HALLMARK = os.environ.get("HALLMARK_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", ".build", "debug", "hallmark"
)


def wait_for(path, needle, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as log:
            if needle in log.read():
                return
        if process.poll() is not None:
            with open(path) as log:
                raise RuntimeError(f"process exited {process.returncode} before '{needle}':\n{log.read()}")
        time.sleep(0.02)
    raise TimeoutError(f"'{needle}' not in {path} after {timeout}s")


class Server:
    def __init__(self, root, trust_domain="example.org"):
        self.root = root
        self.data_dir = os.path.join(root, "data")
        self.admin_socket = os.path.join(root, "admin.sock")
        self.log = os.path.join(root, "server.log")
        self.trust_domain = trust_domain
        self.process = None

    def start(self, *extra):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [HALLMARK, "server", "run", "--data-dir", self.data_dir, "--trust-domain", self.trust_domain,
                 "--admin-socket", self.admin_socket, *extra],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        wait_for(self.log, "hallmark server listening", self.process)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def cli(self, *args, check=True):
        env = dict(os.environ, HALLMARK_ADMIN_SOCKET=self.admin_socket)
        result = subprocess.run([HALLMARK, *args], env=env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"hallmark {' '.join(args)} failed: {result.stderr}")
        return result

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "--output", "json").stdout)


@pytest.fixture
def server():
    root = tempfile.mkdtemp(prefix="hallmark-interop-")
    instance = Server(root)
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(root, ignore_errors=True)
