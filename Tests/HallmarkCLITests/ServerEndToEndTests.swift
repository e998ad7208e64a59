// The server as a user meets it: a real `hallmark server run` process on a temporary data
// directory, driven by the real `hallmark` CLI, with openssl and sqlite3 as witnesses.

import Crypto
import Foundation
import Testing
import HallmarkStore
import HallmarkTestSupport
import SPIFFE
import SwiftASN1

@Suite("server end to end", .serialized)
struct ServerEndToEndTests {
    private func json(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8))
    }

    private func create(_ server: TestServer, _ path: String, selector: String = "unix:uid:1000") throws -> String {
        let result = try server.hallmark([
            "entry", "create", "--spiffe-id", "spiffe://example.org\(path)", "--parent-id", "spiffe://example.org/node/a",
            "--selector", selector, "--output", "json",
        ])
        guard result.status == 0, let object = try json(result.stdout) as? [String: Any], let id = object["id"] as? String else {
            throw TestFailure("entry create failed: \(result.stderr)")
        }
        return id
    }

    @Test("entries: create, show, update, delete")
    func entryLifecycle() throws {
        let server = try TestServer()
        let created = try server.hallmark([
            "entry", "create", "--spiffe-id", "spiffe://example.org/model/llama", "--parent-id", "spiffe://example.org/node/gpu-07",
            "--selector", "unix:uid:1001", "--selector", "gpu:model:H100", "--x509-ttl", "600", "--dns-name", "llama.example.org",
            "--hint", "serving", "--output", "json",
        ])
        #expect(created.status == 0, "\(created.stderr)")
        let entry = try #require(try json(created.stdout) as? [String: Any])
        let id = try #require(entry["id"] as? String)
        #expect(entry["selectors"] as? [String] == ["gpu:model:H100", "unix:uid:1001"])
        #expect(entry["x509_svid_ttl"] as? Int == 600)

        let shown = try server.hallmark(["entry", "show", "--selector", "gpu:model:H100", "--output", "json"])
        #expect((try json(shown.stdout) as? [[String: Any]])?.map { $0["id"] as? String } == [id])

        let updated = try server.hallmark(["entry", "update", "--id", id, "--selector", "unix:uid:2002", "--output", "json"])
        #expect(updated.status == 0, "\(updated.stderr)")
        let after = try #require(try json(updated.stdout) as? [String: Any])
        #expect(after["selectors"] as? [String] == ["unix:uid:2002"])
        #expect(after["revision_number"] as? Int == 1)
        #expect(after["dns_names"] as? [String] == ["llama.example.org"], "fields not given keep their values")

        #expect(try server.hallmark(["entry", "delete", "--id", id]).status == 0)
        let empty = try server.hallmark(["entry", "show", "--output", "json"])
        #expect((try json(empty.stdout) as? [Any])?.isEmpty == true)
        let again = try server.hallmark(["entry", "delete", "--id", id])
        #expect(again.status == 1)
        #expect(again.stderr.contains("no entry with ID \(id)"))
    }

    @Test("malformed input: a clear error naming the field, and the database unchanged")
    func malformedInput() throws {
        let server = try TestServer()
        _ = try create(server, "/existing")
        let base = ["entry", "create", "--parent-id", "spiffe://example.org/node/a"]
        let cases: [([String], String)] = [
            (base + ["--spiffe-id", "spiffe://other.org/x", "--selector", "unix:uid:1"], "spiffe_id: spiffe://other.org/x is not in this server's trust domain"),
            (base + ["--spiffe-id", "spiffe://example.org/a/../b", "--selector", "unix:uid:1"], "'.' or '..'"),
            (base + ["--spiffe-id", "spiffe://example.org", "--selector", "unix:uid:1"], "spiffe_id: must have a path"),
            (base + ["--spiffe-id", "spiffe://example.org/hallmark/agent/x", "--selector", "unix:uid:1"], "reserved"),
            (base + ["--spiffe-id", "spiffe://example.org/x"], "selectors: at least one selector"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "nocolon"], "--selector"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:"], "empty value"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "un ix:1"], "may use only letters"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--selector", "unix:uid:1"], "given twice"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--x509-ttl=-5"], "x509_svid_ttl"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--x509-ttl", "99999999"], "x509_svid_ttl"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--jwt-ttl", "100000"], "jwt_svid_ttl"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--dns-name=-bad-.example"], "dns_names[0]"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--dns-name", "a..b"], "dns_names[0]"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--expires-at", "2001-01-01T00:00:00Z"], "expires_at: is in the past"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--expires-at", "tomorrow"], "--expires-at"),
            (base + ["--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1", "--hint", String(repeating: "h", count: 2000)], "hint"),
            (["entry", "create", "--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:1"], "parent_id: is required"),
            (base + ["--spiffe-id", "spiffe://example.org/existing", "--selector", "unix:uid:1000"], "already exists"),
            (["entry", "update", "--id", "nope", "--selector", "unix:uid:1"], "no entry with ID nope"),
            (["entry", "delete", "--id", "nope"], "no entry with ID nope"),
            (["token", "generate", "--ttl=-1"], "ttl"),
            (["token", "generate", "--spiffe-id", "spiffe://other.org/n"], "spiffe_id"),
            (["x509", "mint", "--spiffe-id", "spiffe://example.org/x", "--ttl", "99999999"], "ttl"),
            (["x509", "mint", "--spiffe-id", "spiffe://example.org"], "spiffe_id: must have a path"),
            (["jwt", "mint", "--spiffe-id", "spiffe://example.org/x"], "audience"),
            // The server's and the agents' own identities are never minted by an admin.
            (["x509", "mint", "--spiffe-id", "spiffe://example.org/hallmark/server"], "outside the reserved /hallmark/"),
            (["x509", "mint", "--spiffe-id", "spiffe://example.org/hallmark/agent/join-token/x"], "outside the reserved /hallmark/"),
            (["jwt", "mint", "--spiffe-id", "spiffe://example.org/hallmark/server", "--audience", "agents"], "outside the reserved /hallmark/"),
            (["x509", "mint", "--spiffe-id", "spiffe://example.org/hallmark"], "outside the reserved /hallmark/"),
            (["agent", "show", "--spiffe-id", "spiffe://example.org/hallmark/agent/none"], "no attested agent"),
            (["entry", "show", "--spiffe-id", "not-an-id"], "spiffe_id"),
        ]
        let before = try server.dump()
        for (arguments, expected) in cases {
            let result = try server.hallmark(arguments)
            #expect(result.status != 0, "\(arguments) succeeded")
            #expect(result.stderr.contains(expected), "\(arguments): expected '\(expected)' in: \(result.stderr)")
        }
        #expect(try server.dump() == before, "a refused request changed the database")
    }

    @Test("a minted X509-SVID passes openssl verify -x509_strict against bundle show")
    func mintAndOpenSSL() throws {
        let server = try TestServer()
        let out = server.dir.path("svid")
        let minted = try server.hallmark(["x509", "mint", "--spiffe-id", "spiffe://example.org/svc", "--dns-name", "svc.example.org", "--write", out])
        #expect(minted.status == 0, "\(minted.stderr)")
        let bundle = try server.hallmark(["bundle", "show", "--format", "pem"])
        let bundleFile = try server.dir.write("bundle.pem", bundle.stdout)
        let openssl = try Run.process("/usr/bin/openssl", ["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", bundleFile, "\(out)/svid.pem"])
        #expect(openssl.status == 0, "\(openssl.stdout)\(openssl.stderr)")
        let text = try Run.process("/usr/bin/openssl", ["x509", "-in", "\(out)/svid.pem", "-noout", "-ext", "subjectAltName"])
        #expect(text.stdout.contains("URI:spiffe://example.org/svc") && text.stdout.contains("DNS:svc.example.org"))
        let mode = try FileManager.default.attributesOfItem(atPath: "\(out)/svid.key")[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        // Our verifier agrees, with the SPIFFE bundle format as the bundle.
        let jwks = try server.dir.write("bundle.json", try server.hallmark(["bundle", "show", "--format", "spiffe"]).stdout)
        let ours = try Run.process(Run.hallmarkBinary, ["svid", "verify", "--bundle", jwks, "--chain", "\(out)/svid.pem", "--id", "spiffe://example.org/svc"])
        #expect(ours.status == 0, "\(ours.stderr)")
    }

    @Test("a minted JWT-SVID's ES256 signature verifies with openssl")
    func jwtAndOpenSSL() throws {
        let server = try TestServer()
        let minted = try server.hallmark(["jwt", "mint", "--spiffe-id", "spiffe://example.org/svc", "--audience", "inference"])
        #expect(minted.status == 0, "\(minted.stderr)")
        let token = minted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = token.split(separator: ".")
        #expect(parts.count == 3)
        let jwks = try server.hallmark(["bundle", "show", "--format", "spiffe"]).stdout
        let bundle = try SPIFFEBundle(trustDomain: TrustDomain("example.org"), json: Data(jwks.utf8))
        let header = try #require(try json(String(decoding: Base64URL.decode(parts[0]) ?? [], as: UTF8.self)) as? [String: Any])
        let kid = try #require(header["kid"] as? String)
        let authority = try #require(bundle.jwtAuthorities.first { $0.keyID == kid })
        let publicKey = try server.dir.write("jwt.pub", PEMDocument(type: "PUBLIC KEY", derBytes: authority.publicKeyDER).pemString + "\n")
        let raw = try #require(Base64URL.decode(parts[2]))
        let signature = try P256.Signing.ECDSASignature(rawRepresentation: raw).derRepresentation
        let signatureFile = server.dir.path("jwt.sig")
        try signature.write(to: URL(fileURLWithPath: signatureFile))
        let input = try server.dir.write("jwt.input", "\(parts[0]).\(parts[1])")
        let verified = try Run.process("/usr/bin/openssl", ["dgst", "-sha256", "-verify", publicKey, "-signature", signatureFile, input])
        #expect(verified.stdout.contains("Verified OK"), "\(verified.stdout)\(verified.stderr)")
        // And the same token is a valid JWT-SVID by our own validator.
        let svid = try JWTSVID(parsing: token, bundles: bundle.jwtBundle, audience: "inference")
        #expect(svid.id.description == "spiffe://example.org/svc")
    }

    @Test("everything survives a restart: entries, CA keys, the audit chain")
    func restart() throws {
        let server = try TestServer()
        let id = try create(server, "/persisted")
        let bundle = try server.hallmark(["bundle", "show"]).stdout
        #expect(server.stop() == 0, "SIGTERM shuts down cleanly")
        #expect(server.log.contains("shutting down"))
        try server.start()
        let shown = try server.hallmark(["entry", "show", "--id", id, "--output", "json"])
        #expect((try json(shown.stdout) as? [[String: Any]])?.first?["spiffe_id"] as? String == "spiffe://example.org/persisted")
        #expect(try server.hallmark(["bundle", "show"]).stdout == bundle, "the CA key is reused, not replaced")
        let audit = try server.hallmark(["audit", "verify"])
        #expect(audit.status == 0)
        #expect(audit.stdout.contains("intact"))
    }

    @Test("the admin API refuses a non-admin uid and writes nothing; --admin-uid lets it in")
    func nonAdmin() throws {
        let server = try TestServer()
        let before = try server.dump()
        let refused = try server.hallmark(
            ["entry", "create", "--spiffe-id", "spiffe://example.org/x", "--parent-id", "spiffe://example.org/n", "--selector", "unix:uid:1"],
            uid: 65534
        )
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("uid 65534 is not an admin"), "\(refused.stderr)")
        #expect(try server.dump() == before)
        #expect(server.log.contains("admin call refused"))
        // A client-sent copy of the credentials header is ignored: the kernel's word stands.
        let listing = try server.hallmark(["entry", "show"], uid: 65534)
        #expect(listing.status != 0)

        let permitted = try TestServer(arguments: ["--admin-uid", "65534"])
        let allowed = try permitted.hallmark(
            ["entry", "create", "--spiffe-id", "spiffe://example.org/x", "--parent-id", "spiffe://example.org/n", "--selector", "unix:uid:1"],
            uid: 65534
        )
        #expect(allowed.status == 0, "\(allowed.stderr)")
        let audit = try permitted.hallmark(["audit", "show", "--output", "json"])
        let records = try #require(try json(audit.stdout) as? [[String: Any]])
        #expect(records.contains { $0["action"] as? String == "entry.create" && $0["caller_uid"] as? Int == 65534 && $0["actor"] as? String == "admin:65534" })
    }

    @Test("files and sockets have safe modes")
    func modes() throws {
        let server = try TestServer()
        func mode(_ path: String) throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
        }
        #expect(try mode(server.dataDir) == 0o700)
        #expect(try mode((server.dataDir as NSString).appendingPathComponent("keys")) == 0o700)
        let keys = try FileManager.default.contentsOfDirectory(atPath: (server.dataDir as NSString).appendingPathComponent("keys"))
        #expect(keys.count == 2)
        for key in keys {
            #expect(try mode((server.dataDir as NSString).appendingPathComponent("keys/\(key)")) == 0o600, "\(key)")
        }
        #expect(try mode(server.adminSocket) & 0o002 == 0, "the admin socket is not world-writable")
    }

    @Test("audit verify names the first record altered behind the server's back")
    func auditTampering() throws {
        let server = try TestServer()
        for index in 0..<3 { _ = try create(server, "/audited/\(index)") }
        #expect(try server.hallmark(["audit", "verify"]).status == 0)
        // The table refuses the edit; an attacker with the file drops the trigger first.
        let refused = try server.sqlite("UPDATE audit_log SET target = 'forged' WHERE sequence = 4")
        #expect(refused.status != 0 && refused.stderr.contains("append-only"), "\(refused.stderr)")
        let tamper = try server.sqlite("DROP TRIGGER audit_log_append_only_update; UPDATE audit_log SET target = 'forged' WHERE sequence = 4")
        #expect(tamper.status == 0, "\(tamper.stderr)")
        let result = try server.hallmark(["audit", "verify"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("record 4 was altered"), "\(result.stderr)")
        let report = try #require(try json(try server.hallmark(["audit", "verify", "--output", "json"]).stdout) as? [String: Any])
        #expect(report["first_bad_sequence"] as? Int == 4)
        #expect(report["intact"] as? Bool == false)
    }

    @Test("records deleted behind a stopped server's back are a truncation past its shutdown checkpoint")
    func auditTruncation() throws {
        let server = try TestServer()
        for index in 0..<3 { _ = try create(server, "/truncated/\(index)") }
        #expect(server.stop() == 0)
        #expect(server.log.contains("audit checkpoint at shutdown"), "\(server.log)")
        let last = try server.sqlite("SELECT MAX(sequence) FROM audit_log").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let deleted = try server.sqlite("""
            DROP TRIGGER audit_log_append_only_delete; DROP TRIGGER audit_checkpoints_append_only_delete;
            DELETE FROM audit_log WHERE sequence > \(Int(last)! - 2); DELETE FROM audit_checkpoints;
            """)
        #expect(deleted.status == 0, "\(deleted.stderr)")
        try server.start()
        let result = try server.hallmark(["audit", "verify"])
        #expect(result.status == 1 && result.stderr.contains("the log was truncated"), "\(result.stderr)")
    }

    @Test("audit export is checked with openssl alone (scripts/verify-audit-export); a rewritten export fails it")
    func auditExport() throws {
        let server = try TestServer(arguments: ["--audit-checkpoint-every", "2"])
        for index in 0..<5 { _ = try create(server, "/exported/\(index)") }
        let exported = try server.hallmark(["audit", "export"])
        #expect(exported.status == 0, "\(exported.stderr)")
        let lines = exported.stdout.split(separator: "\n")
        #expect(lines.filter { $0.contains(#""type":"checkpoint""#) }.count >= 2)
        let file = try server.dir.write("audit.jsonl", exported.stdout)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/verify-audit-export").path
        let verified = try Run.process("/bin/bash", [script, file])
        #expect(verified.status == 0 && verified.stdout.contains("verified: \(lines.count - 1 - lines.filter { $0.contains(#""type":"checkpoint""#) }.count) records"), "\(verified.stdout)\(verified.stderr)")
        // The export edited: a record's action changed.
        let forged = try server.dir.write("forged.jsonl", exported.stdout.replacingOccurrences(of: #""action":"entry.create""#, with: #""action":"entry.delete""#))
        let caught = try Run.process("/bin/bash", [script, forged])
        #expect(caught.status != 0, "\(caught.stdout)")
        // The whole chain re-made after changing record 2, as anyone can without the key: every
        // record checks, and the signed checkpoint no longer matches.
        var previous = AuditChain.genesis
        var rewritten: [String] = []
        for line in lines {
            var object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            if object["type"] as? String == "record" {
                let sequence = try #require(object["sequence"] as? Int64)
                if sequence == 2 { object["action"] = "entry.delete" }
                let event = AuditEvent(
                    time: Date(timeIntervalSince1970: TimeInterval(try #require(object["time_ms"] as? Int64)) / 1000),
                    actor: AuditActor(stored: object["actor"] as? String, callerUID: try #require(object["caller_uid"] as? Int64)),
                    action: try #require(object["action"] as? String),
                    target: try #require(object["target"] as? String), result: try #require(object["result"] as? String), detail: try #require(object["detail"] as? String)
                )
                let hash = AuditChain.hash(sequence: sequence, event: event, previousHash: previous)
                object["previous_hash"] = previous.map { String(format: "%02x", $0) }.joined()
                object["hashed"] = Data(AuditChain.preimage(sequence: sequence, event: event, previousHash: previous)).base64EncodedString()
                object["hash"] = hash.map { String(format: "%02x", $0) }.joined()
                previous = hash
            }
            rewritten.append(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
        }
        let rewrittenFile = try server.dir.write("rewritten.jsonl", rewritten.joined(separator: "\n") + "\n")
        let rewriteCaught = try Run.process("/bin/bash", [script, rewrittenFile])
        #expect(rewriteCaught.status != 0 && rewriteCaught.stderr.contains("checkpoint 2: record 2's hash is not the one signed"), "\(rewriteCaught.stdout)\(rewriteCaught.stderr)")
    }

    @Test("token generate, agent list and authority show")
    func tokensAgentsAuthorities() throws {
        let server = try TestServer()
        let token = try #require(try json(try server.hallmark(["token", "generate", "--output", "json"]).stdout) as? [String: Any])
        #expect((token["token"] as? String)?.count == 64)
        #expect(!(server.log.contains(token["token"] as? String ?? "-")), "a join token never appears in the log")
        let aliased = try #require(try json(try server.hallmark(["token", "generate", "--spiffe-id", "spiffe://example.org/node/gpu-07", "--output", "json"]).stdout) as? [String: Any])
        let aliasID = try #require(aliased["id"] as? String)
        let entries = try #require(try json(try server.hallmark(["entry", "show", "--spiffe-id", "spiffe://example.org/node/gpu-07", "--output", "json"]).stdout) as? [[String: Any]])
        #expect(entries.first?["parent_id"] as? String == "spiffe://example.org/hallmark/agent/join-token/\(aliasID)")
        let agents = try server.hallmark(["agent", "list", "--output", "json"])
        #expect((try json(agents.stdout) as? [Any])?.isEmpty == true)
        let authorities = try #require(try json(try server.hallmark(["authority", "x509", "show", "--output", "json"]).stdout) as? [[String: Any]])
        #expect(authorities.map { $0["state"] as? String } == ["active"])
    }

    @Test("an upstream CA makes the server an intermediate")
    func upstreamCA() throws {
        let root = try TestCA.root(.init(name: "Upstream Root", now: Date()))
        let files = try TemporaryDirectory("upstream")
        let cert = try files.write("upstream.pem", TestPEM.pem([root.certificate]))
        let key = try files.write("upstream.key", TestPEM.pem(root.key))
        let server = try TestServer(arguments: ["--upstream-ca-cert", cert, "--upstream-ca-key", key])
        let bundle = try server.hallmark(["bundle", "show"]).stdout
        #expect(bundle == (try TestPEM.pem([root.certificate])), "the bundle holds the upstream root")
        let out = server.dir.path("svid")
        #expect(try server.hallmark(["x509", "mint", "--spiffe-id", "spiffe://example.org/svc", "--write", out]).status == 0)
        let chain = try String(contentsOfFile: "\(out)/svid.pem", encoding: .utf8)
        #expect(chain.components(separatedBy: "BEGIN CERTIFICATE").count - 1 == 2)
        let openssl = try Run.process("/usr/bin/openssl", ["verify", "-x509_strict", "-CAfile", cert, "-untrusted", "\(out)/svid.pem", "\(out)/svid.pem"])
        #expect(openssl.status == 0, "\(openssl.stdout)\(openssl.stderr)")
    }

    @Test("SIGKILL during a burst of concurrent creates: every acknowledged entry survives, integrity ok")
    func sigkillDurability() throws {
        let server = try TestServer()
        let acknowledged = Acknowledged()
        let workers = 8
        let group = DispatchGroup()
        for worker in 0..<workers {
            group.enter()
            Thread {
                defer { group.leave() }
                for index in 0..<200 {
                    guard let result = try? server.hallmark([
                        "entry", "create", "--spiffe-id", "spiffe://example.org/burst/\(worker)/\(index)",
                        "--parent-id", "spiffe://example.org/node/a", "--selector", "unix:uid:\(index)", "--output", "json",
                    ]) else { return }
                    guard result.status == 0 else { return }
                    if let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                        let id = object["id"] as? String
                    {
                        acknowledged.add(id)
                    }
                }
            }.start()
        }
        // Kill once the burst is well under way: a count, not a clock.
        while acknowledged.count < 40 && server.isRunning { usleep(5_000) }
        server.kill()
        group.wait()
        let ids = acknowledged.all
        #expect(ids.count >= 40)

        try server.start()
        #expect(try server.sqlite("PRAGMA integrity_check").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ok")
        let listing = try server.hallmark(["entry", "show", "--output", "json"])
        let stored = Set(((try json(listing.stdout) as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String })
        let missing = Set(ids).subtracting(stored)
        #expect(missing.isEmpty, "\(missing.count) acknowledged entries were lost")
        #expect(try server.hallmark(["audit", "verify"]).status == 0)
    }
}

/// IDs acknowledged by the server, collected from several threads.
final class Acknowledged: @unchecked Sendable {
    private let lock = NSLock()
    private var ids: [String] = []
    func add(_ id: String) { lock.withLock { ids.append(id) } }
    var count: Int { lock.withLock { ids.count } }
    var all: [String] { lock.withLock { ids } }
}
