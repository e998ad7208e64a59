// The Workload API's wire format must be the specification's, byte for byte: off-the-shelf clients
// (go-spiffe, py-spiffe, Envoy) decode these messages with their own copies of the proto.

import Foundation
import SwiftProtobuf
import Testing
import SPIFFEWorkloadAPI

@Suite("Workload API wire format")
struct WireFormatTests {
    @Test("the service and method paths have no proto package")
    func paths() {
        #expect(WorkloadAPI_SpiffeWorkloadAPI.descriptor.fullyQualifiedService == "SpiffeWorkloadAPI")
        let methods = WorkloadAPI_SpiffeWorkloadAPI.Method.descriptors.map(\.fullyQualifiedMethod)
        #expect(methods == [
            "SpiffeWorkloadAPI/FetchX509SVID", "SpiffeWorkloadAPI/FetchX509Bundles", "SpiffeWorkloadAPI/FetchJWTSVID",
            "SpiffeWorkloadAPI/FetchJWTBundles", "SpiffeWorkloadAPI/ValidateJWTSVID",
        ])
        #expect(WorkloadAPI_SpiffeWorkloadAPI.Method.FetchJWTSVID.descriptor.type == .unary)
        #expect(WorkloadAPI_SpiffeWorkloadAPI.Method.FetchX509SVID.descriptor.type == .serverStreaming)
    }

    @Test("X509SVID uses field numbers 1 to 5")
    func x509SVIDFields() throws {
        var svid = WorkloadAPI_X509SVID()
        svid.spiffeID = "a"
        svid.x509Svid = Data([1])
        svid.x509SvidKey = Data([2])
        svid.bundle = Data([3])
        svid.hint = "h"
        // tag = field << 3 | 2 (length-delimited)
        #expect(Array(try svid.serializedBytes() as [UInt8]) == [0x0a, 1, 0x61, 0x12, 1, 1, 0x1a, 1, 2, 0x22, 1, 3, 0x2a, 1, 0x68])
    }

    @Test("X509SVIDResponse: svids 1, crl 2, federated_bundles 3")
    func x509SVIDResponseFields() throws {
        var response = WorkloadAPI_X509SVIDResponse()
        response.crl = [Data([9])]
        response.federatedBundles = ["td": Data([7])]
        let bytes: [UInt8] = try response.serializedBytes()
        #expect(bytes == [0x12, 1, 9, 0x1a, 7, 0x0a, 2, 0x74, 0x64, 0x12, 1, 7])
    }

    @Test("JWT messages use the specification's numbers")
    func jwtFields() throws {
        var request = WorkloadAPI_JWTSVIDRequest()
        request.audience = ["x"]
        request.spiffeID = "y"
        #expect(try request.serializedBytes() as [UInt8] == [0x0a, 1, 0x78, 0x12, 1, 0x79])
        var validate = WorkloadAPI_ValidateJWTSVIDRequest()
        validate.audience = "a"
        validate.svid = "s"
        #expect(try validate.serializedBytes() as [UInt8] == [0x0a, 1, 0x61, 0x12, 1, 0x73])
        var svid = WorkloadAPI_JWTSVID()
        svid.spiffeID = "i"
        svid.svid = "t"
        svid.hint = "h"
        #expect(try svid.serializedBytes() as [UInt8] == [0x0a, 1, 0x69, 0x12, 1, 0x74, 0x1a, 1, 0x68])
    }

    @Test("bundle maps are keyed by trust domain")
    func bundleMaps() throws {
        var x509 = WorkloadAPI_X509BundlesResponse()
        x509.bundles = ["td": Data([1])]
        #expect(try x509.serializedBytes() as [UInt8] == [0x12, 7, 0x0a, 2, 0x74, 0x64, 0x12, 1, 1])
        var jwt = WorkloadAPI_JWTBundlesResponse()
        jwt.bundles = ["td": Data([1])]
        #expect(try jwt.serializedBytes() as [UInt8] == [0x0a, 7, 0x0a, 2, 0x74, 0x64, 0x12, 1, 1])
    }
}
