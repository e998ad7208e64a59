// How the server's failures become gRPC statuses: one place for the admin API and the agent API,
// by each error's code, never by its message.

import GRPCCore
import HallmarkCA
import HallmarkStore

enum RPCErrors {
    static func rpcError(_ error: any Error) -> RPCError {
        switch error {
        case let error as RPCError:
            return error
        case let error as ValidationFailure:
            return RPCError(code: .invalidArgument, message: error.description)
        case let error as StoreError:
            return RPCError(code: code(for: error), message: error.message)
        case let error as CAError:
            return RPCError(code: code(for: error), message: error.message)
        default:
            return RPCError(code: .internalError, message: "internal error: \(error)")
        }
    }

    static func code(for error: StoreError) -> RPCError.Code {
        switch error.code {
        case .notFound: .notFound
        case .alreadyExists: .alreadyExists
        case .revisionMismatch, .conflict: .failedPrecondition
        case .banned, .tokenUsed, .tokenExpired: .permissionDenied
        default: .internalError
        }
    }

    static func code(for error: CAError) -> RPCError.Code {
        switch error.code {
        case .invalidCSR, .invalidArgument: .invalidArgument
        case .expired, .failedPrecondition: .failedPrecondition
        case .notFound: .notFound
        case .unavailable: .unavailable
        default: .internalError
        }
    }
}
