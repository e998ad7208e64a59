// What one local user may take of the Workload API: connections (per uid and in all), time to
// start speaking HTTP/2 and time idle, calls and buffered bytes per connection, and JWT-SVID
// signatures a second. Every socket user can connect, so without these one of them could hold
// every descriptor, every stream slot or every server signature the agent has. Each refusal is
// a gRPC status naming the limit and its flag.

public import Foundation
public import HallmarkSupport
import Synchronization

public struct WorkloadAPILimits: Sendable, Equatable {
    /// Connections one uid may hold open.
    public var connectionsPerUID = 256
    /// Connections open in all.
    public var connections = 2048
    /// Seconds a new connection has to send HTTP/2's preface and SETTINGS.
    public var prefaceTimeout: TimeInterval = 10
    /// Seconds a connection may stay open with no call on it.
    public var idleTimeout: TimeInterval = 300
    /// Calls (streams) open at once on one connection; announced in SETTINGS_MAX_CONCURRENT_STREAMS.
    public var streamsPerConnection = 100
    /// Bytes one connection may hold in the agent: requests not yet complete, and answers its
    /// client has not yet read. Past it, new calls are refused and updates wait.
    public var bufferedBytesPerConnection = 4 << 20
    /// JWT-SVIDs the server is asked to sign for one uid (answers from the cache are free).
    public var jwtMintsPerUID = RateLimiter<UInt32>.Limit(rate: 10, burst: 50)

    public init() {}

    /// The smallest buffer that still takes one whole request.
    public static let minimumBufferedBytes = 32 * 1024

    /// How long a connection refused for too many may stay to hear why (its first call answered).
    static let refusedConnectionGrace: TimeInterval = 1
    /// Refused connections waiting to hear why, at most; past it they are closed at once.
    static let refusedConnectionsWaiting = 64
}

/// Counts open Workload API connections by uid, and admits a new one only within the limits.
final class WorkloadConnectionCounter: Sendable {
    private struct Counts {
        var total = 0
        var byUID: [UInt32: Int] = [:]
        var refusedWaiting = 0
    }

    private let limits: WorkloadAPILimits
    private let counts = Mutex(Counts())

    init(limits: WorkloadAPILimits) {
        self.limits = limits
    }

    /// What became of a new connection.
    enum Admission: Equatable {
        /// Counted; call ``release(uid:)`` when it closes.
        case admitted
        /// Over the limit set by `flag`: it may hear the refusal (`message`); call ``releaseRefused()`` when it closes.
        case refused(flag: String, message: String)
        /// Over a limit with too many refused connections already waiting: close it now.
        case closed
    }

    /// - Parameter uid: the connecting process's uid, or nil when the kernel could not say (such a
    ///   connection is counted in all, and answered only with PermissionDenied).
    func admit(uid: UInt32?) -> Admission {
        counts.withLock { counts in
            var refusal: (flag: String, message: String)?
            if counts.total >= limits.connections {
                refusal = ("--workload-connections", "the agent has \(counts.total) Workload API connections open, the most it allows (--workload-connections); close idle ones or retry")
            } else if let uid, counts.byUID[uid, default: 0] >= limits.connectionsPerUID {
                refusal = ("--workload-connections-per-uid", "uid \(uid) has \(counts.byUID[uid, default: 0]) Workload API connections open, the most one uid may (--workload-connections-per-uid); close idle ones or retry")
            }
            guard let refusal else {
                counts.total += 1
                if let uid { counts.byUID[uid, default: 0] += 1 }
                return .admitted
            }
            guard counts.refusedWaiting < WorkloadAPILimits.refusedConnectionsWaiting else { return .closed }
            counts.refusedWaiting += 1
            return .refused(flag: refusal.flag, message: refusal.message)
        }
    }

    func release(uid: UInt32?) {
        counts.withLock { counts in
            counts.total -= 1
            guard let uid else { return }
            let left = counts.byUID[uid, default: 1] - 1
            counts.byUID[uid] = left > 0 ? left : nil
        }
    }

    func releaseRefused() {
        counts.withLock { $0.refusedWaiting -= 1 }
    }

    /// Open connections: in all, and of `uid`.
    func open(uid: UInt32? = nil) -> Int {
        counts.withLock { counts in uid.map { counts.byUID[$0, default: 0] } ?? counts.total }
    }
}
