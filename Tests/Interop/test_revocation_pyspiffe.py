"""Withdrawing trust, seen by py-spiffe, unchanged, watching a real agent's Workload API stream:
a tainted key is replaced, a deleted entry leaves the next message, an evicted agent's stream ends."""

import threading
import time

import grpc
from cryptography import x509
from spiffe import WorkloadApiClient

from conftest import wait_until


def issuer_key_id(certificate):
    return certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier.hex()


class Watch:
    """Every message of FetchX509SVID, with the time it arrived, through py-spiffe's stream."""

    def __init__(self, endpoint, retry=True):
        self.messages = []
        self.errors = []
        self.lock = threading.Lock()
        self.client = WorkloadApiClient(socket_path=endpoint)
        self.handler = self.client.stream_x509_contexts(
            on_success=self._message, on_error=lambda error: self.errors.append(error), retry_connect=retry
        )

    def _message(self, context):
        with self.lock:
            self.messages.append((time.monotonic(), context))

    def since(self, count):
        with self.lock:
            return [context for _, context in self.messages[count:]]

    def count(self):
        with self.lock:
            return len(self.messages)

    def close(self):
        self.handler.cancel()
        self.client.close()


def ids(context):
    return {str(svid.spiffe_id) for svid in context.x509_svids}


def active_authority(stack):
    return next(a["authority_id"] for a in stack.server.cli_json("authority", "x509", "show") if a["state"] == "active")


def test_after_taint_the_watcher_holds_an_svid_from_the_new_key_within_10_s(stack):
    stack.register("/model/serving", "unix:uid:0")
    watch = Watch(stack.endpoint)
    try:
        wait_until(lambda: any(ids(c) == {"spiffe://example.org/model/serving"} for c in watch.since(0)))
        old = active_authority(stack)
        assert issuer_key_id(watch.since(0)[-1].default_svid.leaf) == old
        stack.server.cli("authority", "x509", "prepare")
        stack.server.cli("authority", "x509", "activate")
        new = active_authority(stack)
        assert new != old
        seen = watch.count()
        stack.server.cli("authority", "x509", "taint", "--authority-id", old)
        took = wait_until(
            lambda: any(issuer_key_id(c.default_svid.leaf) == new for c in watch.since(seen)), timeout=10
        )
        print(f"taint: replacement SVID after {took * 1000:.0f} ms")
        # The bundle in the messages still trusts the tainted key until it is revoked.
        latest = watch.since(seen)[-1]
        bundle = latest.x509_bundle_set.get_bundle_for_trust_domain(latest.default_svid.spiffe_id.trust_domain)
        assert len(bundle.x509_authorities) == 2
        # The revoke is refused until the agent has told the server that its workloads' SVIDs moved to
        # the new key, a moment after the watcher sees them: ask until it goes through.
        wait_until(
            lambda: stack.server.cli("authority", "x509", "revoke", "--authority-id", old, check=False).returncode == 0,
            timeout=15, interval=0.1,
        )
        wait_until(lambda: any(
            len(c.x509_bundle_set.get_bundle_for_trust_domain(c.default_svid.spiffe_id.trust_domain).x509_authorities) == 1
            for c in watch.since(seen)
        ))
    finally:
        watch.close()
    assert not watch.errors


def test_after_entry_delete_the_next_message_lacks_the_svid(stack):
    stack.register("/keep", "unix:uid:0")
    gone = stack.register("/gone", "unix:uid:0")
    watch = Watch(stack.endpoint)
    try:
        wait_until(lambda: any(ids(c) == {"spiffe://example.org/keep", "spiffe://example.org/gone"} for c in watch.since(0)))
        seen = watch.count()
        asked = time.monotonic()
        stack.server.cli("entry", "delete", "--id", gone)
        wait_until(lambda: watch.count() > seen)
        arrived, context = watch.messages[seen]
        assert ids(context) == {"spiffe://example.org/keep"}
        print(f"entry delete: next message after {(arrived - asked) * 1000:.0f} ms")
    finally:
        watch.close()
    assert not watch.errors


def has_svid(stack, spiffe_id):
    try:
        with WorkloadApiClient(socket_path=stack.endpoint) as client:
            return spiffe_id in {str(s.spiffe_id) for s in client.fetch_x509_context().x509_svids}
    except Exception:
        return False


def test_after_evict_the_stream_ends_with_permission_denied(stack):
    stack.register("/svc", "unix:uid:0")
    # Without retries a stream opened before the SVID exists would end at once: wait for it first.
    wait_until(lambda: has_svid(stack, "spiffe://example.org/svc"))
    watch = Watch(stack.endpoint, retry=False)
    try:
        wait_until(lambda: any(ids(c) == {"spiffe://example.org/svc"} for c in watch.since(0)))
        stack.server.cli("agent", "evict", "--spiffe-id", stack.agent_id)
        wait_until(lambda: watch.errors)
        assert "no identity issued" in str(watch.errors[0]) or "PERMISSION_DENIED" in str(watch.errors[0])
    finally:
        watch.close()
    with grpc.insecure_channel(stack.endpoint) as channel:
        from spiffe._proto import workload_pb2, workload_pb2_grpc
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        try:
            next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=(("workload.spiffe.io", "true"),)))
            raise AssertionError("an evicted agent's workload still got an SVID")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
