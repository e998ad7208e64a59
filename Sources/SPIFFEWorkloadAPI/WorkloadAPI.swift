// The SPIFFE Workload API's wire types (generated from Schemas/proto/workload.proto) and the
// constants every client and server of it shares.

/// Constants of the SPIFFE Workload API.
public enum WorkloadAPI {
    /// The metadata key every call must carry, with the value `true`.
    public static let securityHeaderKey = "workload.spiffe.io"
    /// The value of ``securityHeaderKey``.
    public static let securityHeaderValue = "true"
    /// The environment variable naming the endpoint (`unix:///path` or `tcp://IP:port`).
    public static let endpointSocketVariable = "SPIFFE_ENDPOINT_SOCKET"
}
