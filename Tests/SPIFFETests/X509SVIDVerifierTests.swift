// X509-SVID verification (X509-SVID specification section 5) with chains minted by the tests:
// a valid chain, then every rule broken on its own, each asserting its error code.

import Foundation
import Testing
import X509
import SPIFFE
import HallmarkTestSupport

@Suite("X509-SVID verification")
struct X509SVIDVerifierTests {
    let root: TestCA
    let bundle: X509Bundle

    init() throws {
        root = try TestCA.root()
        bundle = X509Bundle(trustDomain: try TrustDomain("example.org"), authorities: [root.certificate])
    }

    private func verify(_ chain: [Certificate], bundles: some X509BundleSource, at time: Date = TestClock.now) async -> Result<VerifiedX509SVID, SPIFFEError> {
        do {
            return .success(try await X509SVIDVerifier(bundles: bundles).verify(chain, at: time))
        } catch let error as SPIFFEError {
            return .failure(error)
        } catch {
            Issue.record("unexpected error \(error)")
            return .failure(SPIFFEError(.malformedCertificate, "\(error)"))
        }
    }

    private func code(_ chain: [Certificate], at time: Date = TestClock.now) async -> SPIFFEError.Code? {
        if case .failure(let error) = await verify(chain, bundles: bundle, at: time) { return error.code }
        return nil
    }

    private func leafCode(_ change: (inout TestCA.LeafOptions) -> Void) async throws -> SPIFFEError.Code? {
        var options = TestCA.LeafOptions()
        change(&options)
        return await code([try root.leaf(options).certificate])
    }

    @Test("a leaf signed by the root verifies")
    func leafRoot() async throws {
        let leaf = try root.leaf().certificate
        let result = try await verify([leaf], bundles: bundle).get()
        #expect(result.id.description == "spiffe://example.org/workload")
        #expect(result.chain.count == 2)
        #expect(result.chain.last == root.certificate)
    }

    @Test("a leaf-intermediate-root chain verifies")
    func leafIntermediateRoot() async throws {
        let intermediate = try root.intermediate()
        let leaf = try intermediate.leaf().certificate
        let result = try await verify([leaf, intermediate.certificate], bundles: bundle).get()
        #expect(result.chain == [leaf, intermediate.certificate, root.certificate])
    }

    @Test("a bundle set picks the bundle of the SVID's own trust domain")
    func bundleSet() async throws {
        let other = try TestCA.root(.init(name: "Other Root", trustDomain: "other.org"))
        let set = X509BundleSet([bundle, X509Bundle(trustDomain: try TrustDomain("other.org"), authorities: [other.certificate])])
        let mine = try root.leaf().certificate
        let theirs = try other.leaf(.init(id: "spiffe://other.org/svc")).certificate
        #expect(try await verify([mine], bundles: set).get().id.trustDomain.name == "example.org")
        #expect(try await verify([theirs], bundles: set).get().id.trustDomain.name == "other.org")
    }

    @Test("no URI SAN") func noURISAN() async throws {
        #expect(try await leafCode { $0.uris = [] } == .missingURISAN)
    }

    @Test("two URI SANs") func twoURISANs() async throws {
        #expect(try await leafCode { $0.uris = ["spiffe://example.org/a", "spiffe://example.org/b"] } == .multipleURISANs)
    }

    @Test("a URI SAN that is not a SPIFFE ID") func nonSPIFFEURI() async throws {
        #expect(try await leafCode { $0.uris = ["https://example.org/a"] } == .invalidURISAN)
    }

    @Test("a leaf whose ID has no path") func leafWithoutPath() async throws {
        #expect(try await leafCode { $0.uris = ["spiffe://example.org"] } == .leafIDWithoutPath)
    }

    @Test("a leaf with CA=true") func leafIsCA() async throws {
        #expect(try await leafCode { $0.isCA = true } == .leafIsCA)
    }

    @Test("keyCertSign on a leaf") func keyCertSignOnLeaf() async throws {
        #expect(try await leafCode { $0.keyUsage = KeyUsage(digitalSignature: true, keyCertSign: true) } == .leafHasKeyCertSign)
    }

    @Test("cRLSign on a leaf") func crlSignOnLeaf() async throws {
        #expect(try await leafCode { $0.keyUsage = KeyUsage(digitalSignature: true, cRLSign: true) } == .leafHasCRLSign)
    }

    @Test("no digitalSignature") func noDigitalSignature() async throws {
        #expect(try await leafCode { $0.keyUsage = KeyUsage(keyEncipherment: true) } == .missingDigitalSignature)
    }

    @Test("no key usage at all") func noKeyUsage() async throws {
        #expect(try await leafCode { $0.keyUsage = nil } == .missingKeyUsage)
    }

    @Test("key usage not critical") func keyUsageNotCritical() async throws {
        #expect(try await leafCode { $0.keyUsageCritical = false } == .keyUsageNotCritical)
    }

    @Test("an EKU without clientAuth") func ekuWithoutClientAuth() async throws {
        #expect(try await leafCode { $0.extendedKeyUsage = [.serverAuth] } == .extendedKeyUsageMismatch)
    }

    @Test("no EKU at all is allowed") func noEKU() async throws {
        #expect(try await leafCode { $0.extendedKeyUsage = nil } == nil)
    }

    @Test("expired") func expired() async throws {
        let leaf = try root.leaf().certificate
        #expect(await code([leaf], at: TestClock.now.addingTimeInterval(7200)) == .certificateExpired)
    }

    @Test("not yet valid") func notYetValid() async throws {
        let leaf = try root.leaf().certificate
        #expect(await code([leaf], at: TestClock.now.addingTimeInterval(-60)) == .certificateNotYetValid)
    }

    @Test("an expired intermediate") func expiredIntermediate() async throws {
        var options = TestCA.Options(name: "Short Intermediate")
        options.notAfter = TestClock.now.addingTimeInterval(60)
        let intermediate = try root.intermediate(options)
        let leaf = try intermediate.leaf().certificate
        #expect(await code([leaf, intermediate.certificate], at: TestClock.now.addingTimeInterval(120)) == .certificateExpired)
    }

    @Test("a chain to a foreign root") func foreignRoot() async throws {
        let foreign = try TestCA.root(.init(name: "Foreign Root"))
        let leaf = try foreign.leaf().certificate
        #expect(await code([leaf]) == .chainNotTrusted)
    }

    @Test("another trust domain's bundle") func otherTrustDomainsBundle() async throws {
        let leaf = try root.leaf(.init(id: "spiffe://other.org/workload")).certificate
        #expect(await code([leaf]) == .bundleNotFound)
        // Even when the other trust domain's bundle holds the very root that signed it.
        let misfiled = X509Bundle(trustDomain: try TrustDomain("other.org"), authorities: [])
        let set = X509BundleSet([misfiled, bundle])
        if case .failure(let error) = await verify([leaf], bundles: set) {
            #expect(error.code == .chainNotTrusted)
        } else {
            Issue.record("a leaf of other.org verified against example.org's bundle")
        }
    }

    @Test("an intermediate without CA=true") func intermediateNotCA() async throws {
        var options = TestCA.Options(name: "Not A CA")
        options.isCA = false
        let intermediate = try root.intermediate(options)
        let leaf = try intermediate.leaf().certificate
        #expect(await code([leaf, intermediate.certificate]) == .signingCertificateNotCA)
    }

    @Test("an intermediate without keyCertSign") func intermediateWithoutKeyCertSign() async throws {
        var options = TestCA.Options(name: "No Cert Sign")
        options.keyCertSign = false
        let intermediate = try root.intermediate(options)
        let leaf = try intermediate.leaf().certificate
        #expect(await code([leaf, intermediate.certificate]) == .signingCertificateMissingKeyCertSign)
    }

    @Test("a missing intermediate breaks the path") func missingIntermediate() async throws {
        let intermediate = try root.intermediate()
        let leaf = try intermediate.leaf().certificate
        #expect(await code([leaf]) == .chainNotTrusted)
    }

    @Test("an empty chain") func emptyChain() async {
        #expect(await code([]) == .emptyChain)
    }
}
