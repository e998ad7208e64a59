// What the fuzz targets share: the input as bytes, a fixed clock, and a way to await an async
// check from libFuzzer's synchronous callback.

import Dispatch
import Foundation

/// The input libFuzzer hands a target.
public func fuzzInput(_ start: UnsafeRawPointer, _ count: Int) -> [UInt8] {
    Array(UnsafeRawBufferPointer(start: start, count: count))
}

/// The input split into its first byte, which picks what the rest is parsed as, and the rest;
/// nil for an empty input.
public func fuzzSelectedInput(_ start: UnsafeRawPointer, _ count: Int) -> (selector: UInt8, bytes: [UInt8])? {
    let input = fuzzInput(start, count)
    guard let selector = input.first else { return nil }
    return (selector, Array(input.dropFirst()))
}

/// A fixed "now" so that a run is repeatable, inside the seeds' validity: 2027-06-01T00:00:00Z.
public let fuzzNow = Date(timeIntervalSince1970: 1_811_808_000)

private final class Box<T>: @unchecked Sendable { var value: T?; init() {} }

/// Runs an async body to completion on the caller's thread's behalf.
public func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let box = Box<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        box.value = await body()
        done.signal()
    }
    done.wait()
    return box.value!
}
