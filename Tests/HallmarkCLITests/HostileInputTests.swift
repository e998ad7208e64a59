// Hostile input through the real interfaces: malformed admin requests sent as raw gRPC (what the
// CLI would never send: unknown fields, oversized fields, control bytes), and malformed HTTP/2
// on the Workload API socket. Each is refused, nothing is written, and everyone else keeps
// being served.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkProto
import HallmarkTestSupport
import SwiftProtobuf
import Testing
#if canImport(Glibc)
import Glibc
#endif

typealias AdminAPI = Admin_Admin.Client<HTTP2ClientTransport.Posix>

/// One malformed admin request: what it is, the fragment the refusal must contain, the call.
struct HostileRequest: Sendable, CustomStringConvertible {
    let description: String
    let expected: String
    let call: @Sendable (AdminAPI) async throws -> Void
}

@Suite("hostile input")
struct HostileInputTests {
    static func entry(_ change: (inout Admin_Entry) -> Void = { _ in }) -> Admin_Entry {
        var entry = Admin_Entry.with {
            $0.spiffeID = "spiffe://example.org/model/llama"
            $0.parentID = "spiffe://example.org/node/a"
            $0.selectors = [Admin_Selector.with { $0.type = "unix"; $0.value = "uid:1000" }]
        }
        change(&entry)
        return entry
    }

    static func create(_ name: String, _ expected: String, _ change: @escaping @Sendable (inout Admin_Entry) -> Void) -> HostileRequest {
        HostileRequest(description: "create: \(name)", expected: expected) { admin in
            _ = try await admin.createEntry(Admin_CreateEntryRequest.with { $0.entry = entry(change) })
        }
    }

    static func selectors(_ pairs: [(String, String)]) -> [Admin_Selector] {
        pairs.map { pair in Admin_Selector.with { $0.type = pair.0; $0.value = pair.1 } }
    }

    /// The bytes of a varint field 99 = 1, a field no Hallmark message defines.
    static let unknownField: [UInt8] = [0x98, 0x06, 0x01]

    static let requests: [HostileRequest] = {
        var cases: [HostileRequest] = []
        // spiffe_id
        for (name, value, expected) in [
            ("empty", "", "spiffe_id: is required"),
            ("another scheme", "https://example.org/model", "spiffe_id"),
            ("another trust domain", "spiffe://other.org/model", "not in this server's trust domain"),
            ("no path", "spiffe://example.org", "must have a path"),
            ("one slash after the scheme", "spiffe:/example.org/model", "spiffe_id"),
            ("empty segment", "spiffe://example.org//model", "spiffe_id"),
            ("dot segment", "spiffe://example.org/a/./model", "spiffe_id"),
            ("dot-dot segment", "spiffe://example.org/a/../model", "spiffe_id"),
            ("trailing slash", "spiffe://example.org/model/", "spiffe_id"),
            ("query", "spiffe://example.org/model?x=1", "spiffe_id"),
            ("fragment", "spiffe://example.org/model#x", "spiffe_id"),
            ("percent-encoding", "spiffe://example.org/mod%65l", "spiffe_id"),
            ("user info", "spiffe://admin@example.org/model", "spiffe_id"),
            ("port", "spiffe://example.org:8443/model", "spiffe_id"),
            ("NUL byte", "spiffe://example.org/mo\u{0}del", "spiffe_id"),
            ("space in trust domain", "spiffe://exa mple.org/model", "spiffe_id"),
            ("leading space", " spiffe://example.org/model", "spiffe_id"),
            ("reserved path", "spiffe://example.org/hallmark/agent/x", "reserved"),
            ("3,000 bytes", "spiffe://example.org/" + String(repeating: "a", count: 3000), "spiffe_id"),
        ] {
            cases.append(create("spiffe_id \(name)", expected) { $0.spiffeID = value })
        }
        // parent_id
        for (name, value, expected) in [
            ("empty", "", "parent_id: is required"),
            ("not a URI", "node-a", "parent_id"),
            ("another trust domain", "spiffe://other.org/node", "parent_id"),
            ("dot-dot segment", "spiffe://example.org/node/../a", "parent_id"),
            ("query", "spiffe://example.org/node?a", "parent_id"),
        ] {
            cases.append(create("parent_id \(name)", expected) { $0.parentID = value })
        }
        // selectors
        cases.append(create("no selectors", "selectors: at least one") { $0.selectors = [] })
        cases.append(create("65 selectors", "at most 64") { $0.selectors = selectors((0..<65).map { ("unix", "uid:\($0)") }) })
        cases.append(create("empty selector type", "selectors[0]") { $0.selectors = selectors([("", "uid:1")]) })
        cases.append(create("empty selector value", "selectors[0]") { $0.selectors = selectors([("unix", "")]) })
        cases.append(create("space in selector type", "selectors[0]") { $0.selectors = selectors([("un ix", "uid:1")]) })
        cases.append(create("selector given twice", "given twice") { $0.selectors = selectors([("unix", "uid:1"), ("unix", "uid:1")]) })
        cases.append(create("control byte in selector value", "selectors[1]") { $0.selectors = selectors([("unix", "uid:1"), ("unix", "uid:\u{7}")]) })
        cases.append(create("10,000-byte selector value", "selectors[0]") { $0.selectors = selectors([("unix", String(repeating: "9", count: 10_000))]) })
        // TTLs
        cases.append(create("negative X.509 TTL", "x509_svid_ttl") { $0.x509SvidTtl = -1 })
        cases.append(create("X.509 TTL past the maximum", "x509_svid_ttl") { $0.x509SvidTtl = Int32.max })
        cases.append(create("negative JWT TTL", "jwt_svid_ttl") { $0.jwtSvidTtl = -30 })
        cases.append(create("JWT TTL past the maximum", "jwt_svid_ttl") { $0.jwtSvidTtl = 10_000_000 })
        // DNS names
        for (name, names, expected) in [
            ("empty", [""], "dns_names[0]"),
            ("leading hyphen", ["-a.example.org"], "dns_names[0]"),
            ("empty label", ["a..example.org"], "dns_names[0]"),
            ("underscore", ["a_b.example.org"], "dns_names[0]"),
            ("300 bytes", [String(repeating: "a.", count: 150)], "dns_names[0]"),
            ("given twice", ["a.example.org", "a.example.org"], "dns_names[1]"),
            ("33 names", (0..<33).map { "n\($0).example.org" }, "at most 32"),
        ] {
            cases.append(create("dns_names \(name)", expected) { $0.dnsNames = names })
        }
        // The rest of the entry
        cases.append(create("expires_at in the past", "expires_at") { $0.expiresAt = 1_000_000_000 })
        cases.append(create("2,000-byte hint", "hint") { $0.hint = String(repeating: "h", count: 2000) })
        cases.append(create("control byte in hint", "hint") { $0.hint = "a\u{1b}[31m" })
        cases.append(create("id with a space", "id:") { $0.id = "bad id" })
        cases.append(create("300-byte id", "id:") { $0.id = String(repeating: "i", count: 300) })
        // Fields this server does not know, at the top and nested.
        cases.append(HostileRequest(description: "create: unknown top-level field", expected: "unknown field") { admin in
            let bytes: [UInt8] = try Admin_CreateEntryRequest.with { $0.entry = entry() }.serializedBytes()
            _ = try await admin.createEntry(try Admin_CreateEntryRequest(serializedBytes: bytes + unknownField))
        })
        cases.append(HostileRequest(description: "create: unknown field inside the entry", expected: "unknown field inside field 1") { admin in
            let bytes: [UInt8] = try entry().serializedBytes()
            let withUnknown = try Admin_Entry(serializedBytes: bytes + unknownField)
            _ = try await admin.createEntry(Admin_CreateEntryRequest.with { $0.entry = withUnknown })
        })
        cases.append(HostileRequest(description: "create: unknown field inside a selector", expected: "unknown field inside field 1.4") { admin in
            let bytes: [UInt8] = try Admin_Selector.with { $0.type = "unix"; $0.value = "uid:1" }.serializedBytes()
            let selector = try Admin_Selector(serializedBytes: bytes + unknownField)
            _ = try await admin.createEntry(Admin_CreateEntryRequest.with { $0.entry = entry { $0.selectors = [selector] } })
        })
        // Over the transport's message limit: refused before it is read.
        cases.append(HostileRequest(description: "create: a 5 MB request", expected: "") { admin in
            _ = try await admin.createEntry(Admin_CreateEntryRequest.with { $0.entry = entry { $0.hint = String(repeating: "h", count: 5 << 20) } })
        })
        // Other calls
        cases.append(HostileRequest(description: "update: no such entry", expected: "no entry with ID") { admin in
            _ = try await admin.updateEntry(Admin_UpdateEntryRequest.with { $0.entry = entry { $0.id = "missing" } })
        })
        cases.append(HostileRequest(description: "update: no ID", expected: "id") { admin in
            _ = try await admin.updateEntry(Admin_UpdateEntryRequest.with { $0.entry = entry() })
        })
        cases.append(HostileRequest(description: "delete: no such entry", expected: "no entry with ID") { admin in
            _ = try await admin.deleteEntry(Admin_DeleteEntryRequest.with { $0.id = "missing" })
        })
        cases.append(HostileRequest(description: "token: negative TTL", expected: "ttl") { admin in
            _ = try await admin.createJoinToken(Admin_CreateJoinTokenRequest.with { $0.ttlSeconds = -5 })
        })
        cases.append(HostileRequest(description: "token: alias in another trust domain", expected: "spiffe_id") { admin in
            _ = try await admin.createJoinToken(Admin_CreateJoinTokenRequest.with { $0.spiffeID = "spiffe://other.org/node" })
        })
        cases.append(HostileRequest(description: "mint X.509: garbage CSR", expected: "csr") { admin in
            _ = try await admin.mintX509SVID(Admin_MintX509SVIDRequest.with { $0.spiffeID = "spiffe://example.org/w"; $0.csr = Data([0x30, 0x03, 0x02, 0x01, 0x00]); $0.ttlSeconds = 60 })
        })
        cases.append(HostileRequest(description: "mint X.509: no path", expected: "spiffe_id") { admin in
            _ = try await admin.mintX509SVID(Admin_MintX509SVIDRequest.with { $0.spiffeID = "spiffe://example.org"; $0.ttlSeconds = 60 })
        })
        cases.append(HostileRequest(description: "mint JWT: no audience", expected: "audience") { admin in
            _ = try await admin.mintJWTSVID(Admin_MintJWTSVIDRequest.with { $0.spiffeID = "spiffe://example.org/w"; $0.ttlSeconds = 60 })
        })
        cases.append(HostileRequest(description: "evict: no such agent", expected: "agent") { admin in
            _ = try await admin.evictAgent(Admin_EvictAgentRequest.with { $0.spiffeID = "spiffe://example.org/hallmark/agent/none" })
        })
        cases.append(HostileRequest(description: "ban: not a SPIFFE ID", expected: "spiffe_id") { admin in
            _ = try await admin.banAgent(Admin_BanAgentRequest.with { $0.spiffeID = "agent-7" })
        })
        cases.append(HostileRequest(description: "authority: unknown kind", expected: "kind") { admin in
            _ = try await admin.activateAuthority(Admin_ActivateAuthorityRequest.with { $0.kind = "pgp" })
        })
        cases.append(HostileRequest(description: "authority: taint an unknown ID", expected: "authority") { admin in
            _ = try await admin.taintAuthority(Admin_TaintAuthorityRequest.with { $0.kind = "x509"; $0.authorityID = "00ff" })
        })
        cases.append(HostileRequest(description: "authority: revoke the active X.509 key", expected: "active") { admin in
            let active = try await admin.listAuthorities(Admin_ListAuthoritiesRequest()).authorities.first { $0.kind == "x509" && $0.state == "active" }
            _ = try await admin.revokeAuthority(Admin_RevokeAuthorityRequest.with { $0.kind = "x509"; $0.authorityID = active?.authorityID ?? "" })
        })
        return cases
    }()

    @Test("at least 50 malformed admin requests: each refused with a reason naming the field, the database unchanged")
    func malformedAdminRequests() async throws {
        #expect(Self.requests.count >= 50)
        let server = try TestServer()
        let created = try server.hallmark([
            "entry", "create", "--spiffe-id", "spiffe://example.org/existing", "--parent-id", "spiffe://example.org/node/a", "--selector", "unix:uid:7",
        ])
        #expect(created.status == 0, "\(created.stderr)")
        let before = try server.dump()
        let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: server.adminSocket), transportSecurity: .plaintext)
        let outcomes = try await withGRPCClient(transport: transport) { grpc in
            let admin = AdminAPI(wrapping: grpc)
            var outcomes: [(String, String, RPCError?)] = []
            for request in Self.requests {
                do {
                    try await request.call(admin)
                    outcomes.append((request.description, request.expected, nil))
                } catch let error as RPCError {
                    outcomes.append((request.description, request.expected, error))
                }
            }
            return outcomes
        }
        for (description, expected, error) in outcomes {
            guard let error else {
                Issue.record("\(description): accepted")
                continue
            }
            #expect(error.code != .unknown && error.code != .internalError, "\(description): \(error.code) \(error.message)")
            #expect(expected.isEmpty || error.message.contains(expected), "\(description): expected '\(expected)' in: \(error.message)")
        }
        #expect(try server.dump() == before, "a refused request changed the database")
        // Still serving: a valid request goes through.
        #expect(try server.hallmark(["entry", "show", "--spiffe-id", "spiffe://example.org/existing"]).status == 0)
    }

    /// What a raw connection to a Unix socket saw after sending `bytes`.
    struct RawOutcome { var closed: Bool; var received: [UInt8] }

    /// Connects, sends `bytes`, then reads until the peer closes or `timeout` passes.
    static func raw(_ path: String, _ bytes: [UInt8], timeout: TimeInterval = 10) throws -> RawOutcome {
        let fd = try connectUnix(path)
        defer { close(fd) }
        var interval = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var outcome = RawOutcome(closed: false, received: [])
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 { outcome.received += buffer[..<count]; continue }
            if count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) { outcome.closed = true; break }
        }
        return outcome
    }

    static func connectUnix(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() where index < buffer.count - 1 { buffer[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw TestFailure("connect \(path): \(errno)")
        }
        return fd
    }

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// An HTTP/2 frame header: 24-bit length, type, flags, stream.
    static func frame(length: Int, type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8] = []) -> [UInt8] {
        [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags,
         UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
    }

    static let badConnections: [(String, [UInt8])] = [
        ("HTTP/1.1 instead of HTTP/2", Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
        ("random bytes", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }),
        ("a preface of the right length with the wrong bytes", Array("PRI * HTTP/9.9\r\n\r\nSM\r\n\r\n".utf8)),
        ("a frame longer than the peer allows (16 MiB)", preface + frame(length: 0xffffff, type: 0x4) + [UInt8](repeating: 0, count: 1024)),
        ("a SETTINGS frame of the wrong length", preface + frame(length: 5, type: 0x4, payload: [0, 1, 0, 0, 0])),
        ("HEADERS on stream 0", preface + frame(length: 0, type: 0x4) + frame(length: 3, type: 0x1, flags: 0x4, stream: 0, payload: [0x82, 0x86, 0x84])),
        ("HEADERS with garbage HPACK", preface + frame(length: 0, type: 0x4) + frame(length: 8, type: 0x1, flags: 0x4, stream: 1, payload: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])),
        ("DATA on a stream never opened", preface + frame(length: 0, type: 0x4) + frame(length: 4, type: 0x0, stream: 7, payload: [1, 2, 3, 4])),
        ("WINDOW_UPDATE of zero", preface + frame(length: 0, type: 0x4) + frame(length: 4, type: 0x8, stream: 0, payload: [0, 0, 0, 0])),
    ]

    @Test("malformed HTTP/2 on the Workload API socket closes that connection; others keep being served")
    func badFrames() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        _ = try agent.register("/workload", selectors: ["unix:uid:\(getuid())"])
        _ = try agent.waitForSVID("spiffe://example.org/workload")
        // A connection left open mid-preface while the others run: it must not hold anyone up.
        let idle = try Self.connectUnix(agent.socket)
        defer { close(idle) }
        _ = Self.preface.prefix(5).withUnsafeBytes { send(idle, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        for (description, bytes) in Self.badConnections {
            let outcome = try Self.raw(agent.socket, bytes)
            #expect(outcome.closed, "\(description): the agent kept the connection open")
            let fetched = try agent.workload(["svid", "fetch", "--output", "json"])
            #expect(fetched.status == 0 && fetched.stdout.contains("spiffe://example.org/workload"), "after \(description): \(fetched.stderr)")
        }
        #expect(!agent.log.contains("Fatal error"), "the agent crashed")
    }
}
