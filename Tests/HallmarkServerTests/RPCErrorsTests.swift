// Every error code of the CA and the store, mapped to its gRPC status once, in the one place both
// APIs use; the message passes through untouched.

import GRPCCore
import HallmarkCA
@testable import HallmarkServer
import HallmarkStore
import Testing

@Suite("gRPC status of each error code")
struct RPCErrorsTests {
    @Test("CAError: each code to its status, the message unchanged")
    func caErrors() {
        let expected: [(CAError.Code, RPCError.Code)] = [
            (.invalidCSR, .invalidArgument), (.invalidArgument, .invalidArgument),
            (.expired, .failedPrecondition), (.failedPrecondition, .failedPrecondition),
            (.notFound, .notFound), (.unavailable, .unavailable),
            (.invalidKey, .internalError), (.configuration, .internalError), (.internalError, .internalError),
        ]
        for (code, status) in expected {
            let rpc = RPCErrors.rpcError(CAError(code, "ca: message for \(code)"))
            #expect(rpc.code == status, "\(code)")
            #expect(rpc.message == "ca: message for \(code)")
        }
    }

    @Test("StoreError: each code to its status, the message unchanged")
    func storeErrors() {
        let expected: [(StoreError.Code, RPCError.Code)] = [
            (.notFound, .notFound), (.alreadyExists, .alreadyExists),
            (.revisionMismatch, .failedPrecondition), (.conflict, .failedPrecondition),
            (.banned, .permissionDenied), (.tokenUsed, .permissionDenied), (.tokenExpired, .permissionDenied),
            (.newerSchema, .internalError), (.corrupt, .internalError),
        ]
        for (code, status) in expected {
            let rpc = RPCErrors.rpcError(StoreError(code, "store: message for \(code)"))
            #expect(rpc.code == status, "\(code)")
            #expect(rpc.message == "store: message for \(code)")
        }
    }

    @Test("an RPCError passes through; a validation failure is INVALID_ARGUMENT naming its field; anything else is INTERNAL")
    func others() {
        #expect(RPCErrors.rpcError(RPCError(code: .aborted, message: "m")).code == .aborted)
        let validation = RPCErrors.rpcError(ValidationFailure("ttl", "must be positive"))
        #expect(validation.code == .invalidArgument && validation.message.contains("ttl"))
        struct Other: Error {}
        #expect(RPCErrors.rpcError(Other()).code == .internalError)
    }
}
