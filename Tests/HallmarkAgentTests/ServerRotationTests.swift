// The agent's list of servers: it keeps to the current one, and a failure moves every caller on
// to the next exactly once, round the list; a report of an older failure moves nothing.

@testable import HallmarkAgent
import Testing

@Suite("server rotation")
struct ServerRotationTests {
    static let a = AgentConfig.ServerAddress(host: "10.0.0.1", port: 8081)
    static let b = AgentConfig.ServerAddress(host: "10.0.0.2", port: 8081)
    static let c = AgentConfig.ServerAddress(host: "::1", port: 8081)

    @Test("a failure of the current server moves on once; a second report of the same failure does not skip a server")
    func advance() {
        let rotation = ServerRotation([Self.a, Self.b, Self.c])
        let first = rotation.current
        #expect(first.address == Self.a)
        // Two sessions both saw server a fail: only the first report moves on.
        #expect(rotation.advance(from: first) == Self.b)
        #expect(rotation.advance(from: first) == nil)
        #expect(rotation.current.address == Self.b)
        #expect(rotation.advance(from: rotation.current) == Self.c)
        #expect(rotation.current.address.description == "[::1]:8081")
        // Round the list, back to the first.
        #expect(rotation.advance(from: rotation.current) == Self.a)
    }

    @Test("with one server there is nowhere to move")
    func single() {
        let rotation = ServerRotation([Self.a])
        #expect(rotation.advance(from: rotation.current) == nil)
        #expect(rotation.current.address == Self.a)
    }
}
