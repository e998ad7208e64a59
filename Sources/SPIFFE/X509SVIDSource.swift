// Where a workload's own X509-SVID comes from: a fixed one (from files), or the live Workload API
// (SPIFFEWorkloadAPI's X509Source). TLS code asks a source, not a particular client.

/// Anything that can give the workload's X509-SVID now.
public protocol X509SVIDSource: Sendable {
    /// - Throws: ``SPIFFEError`` when the source has no SVID (yet).
    func x509SVID() throws -> X509SVID
}

/// An SVID that does not change, such as one read from files.
public struct StaticX509SVIDSource: X509SVIDSource {
    public let svid: X509SVID

    public init(_ svid: X509SVID) {
        self.svid = svid
    }

    public func x509SVID() throws -> X509SVID { svid }
}
