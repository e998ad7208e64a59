// CA private keys on disk: PKCS#8 PEM, mode 0600, in a directory only the server can enter.

public import X509
public import Crypto
public import Foundation
import HallmarkSupport
import SwiftASN1

public enum KeyFile {
    /// Writes a private key as PKCS#8 PEM with mode 0600 (the file is created with that mode).
    public static func write(_ key: Certificate.PrivateKey, to path: String) throws {
        try write(pem: key.serializeAsPEM().pemString + "\n", to: path)
    }

    /// Writes a P-256 key (the JWT authority's) as PKCS#8 PEM with mode 0600.
    public static func write(_ key: P256.Signing.PrivateKey, to path: String) throws {
        try write(pem: key.pemRepresentation + "\n", to: path)
    }

    public static func readPrivateKey(_ path: String) throws -> Certificate.PrivateKey {
        try Certificate.PrivateKey(pemEncoded: read(path))
    }

    public static func readP256(_ path: String) throws -> P256.Signing.PrivateKey {
        try P256.Signing.PrivateKey(pemRepresentation: read(path))
    }

    /// Creates a directory with mode 0700 if it does not exist, tightens it if it does, and refuses
    /// one another user owns.
    public static func ensurePrivateDirectory(_ path: String) throws {
        do { try PrivateFiles.ensurePrivateDirectory(path) } catch let error as PrivateFileError { throw CAError(.invalidKey, "ca: \(error.message)", underlying: error) }
    }

    private static func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CAError(.invalidKey, "ca: cannot read the key file \(path)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    private static func write(pem: String, to path: String) throws {
        do { try PrivateFiles.write(pem, to: path, mode: 0o600) } catch let error as PrivateFileError { throw CAError(.invalidKey, "ca: \(error.message)", underlying: error) }
    }
}
