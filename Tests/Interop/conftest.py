"""Fixtures for the interop checks: real Hallmark processes, driven the way a user drives them."""

import json
import re
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
                 "--admin-socket", self.admin_socket, "--listen", "127.0.0.1:0", *extra],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        wait_for(self.log, "hallmark server listening", self.process)
        with open(self.log) as log:
            self.agent_api = re.findall(r"agent_api=([0-9.]+:[0-9]+)", log.read())[-1]

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


class Stack:
    """A server and an attested agent, with the agent's Workload API socket."""

    def __init__(self, root):
        self.server = Server(os.path.join(root, "server"))
        os.makedirs(self.server.root, exist_ok=True)
        self.server.start()
        self.socket_dir = os.path.join(root, "socket")
        os.makedirs(self.socket_dir, exist_ok=True)
        os.chmod(root, 0o755)
        os.chmod(self.socket_dir, 0o755)
        self.socket = os.path.join(self.socket_dir, "api.sock")
        self.endpoint = "unix://" + self.socket
        self.agent_log = os.path.join(root, "agent.log")
        bundle = os.path.join(root, "bundle.pem")
        with open(bundle, "w") as out:
            out.write(self.server.cli("bundle", "show").stdout)
        token = self.server.cli_json("token", "generate")["token"]
        with open(self.agent_log, "a") as log:
            self.agent = subprocess.Popen(
                [HALLMARK, "agent", "run", "--data-dir", os.path.join(root, "agent"), "--server", self.server.agent_api,
                 "--trust-bundle", bundle, "--socket", self.socket, "--join-token", token, "--log-level", os.environ.get("HALLMARK_LOG_LEVEL", "info")],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        wait_for(self.agent_log, "hallmark agent listening", self.agent)
        self.agent_id = self.server.cli_json("agent", "list")[0]["spiffe_id"]

    def register(self, path, *selectors, ttl=None):
        args = ["entry", "create", "--spiffe-id", f"spiffe://example.org{path}", "--parent-id", self.agent_id]
        for selector in selectors:
            args += ["--selector", selector]
        if ttl:
            args += ["--x509-ttl", str(ttl)]
        return self.server.cli_json(*args)["id"]

    def stop(self):
        if self.agent.poll() is None:
            self.agent.terminate()
            self.agent.wait(timeout=30)
        self.server.stop()


@pytest.fixture
def stack():
    root = tempfile.mkdtemp(prefix="hallmark-stack-")
    instance = Stack(root)
    yield instance
    instance.stop()
    if os.environ.get("HALLMARK_KEEP_TEST_DIRS"):
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def wait_until(condition, timeout=20, interval=0.02):
    """Polls `condition` (a real process's state) until it holds; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")
