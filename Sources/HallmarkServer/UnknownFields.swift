// Fields a request carries that this server's schema does not define, at any depth. Protobuf
// keeps them silently; a security service should not: a client that sets a newer field (a
// restriction, say) on an older server must learn it was not applied.

import Foundation
import GRPCCore
import SwiftProtobuf

enum UnknownFields {
    /// - Throws: `RPCError` InvalidArgument naming where the first unknown field is.
    static func refuse(_ message: some Message) throws {
        var finder = Finder()
        try message.traverse(visitor: &finder)
        if let path = finder.found {
            let place = path.isEmpty ? "" : " inside field \(path.map(String.init).joined(separator: "."))"
            throw RPCError(
                code: .invalidArgument,
                message: "\(type(of: message).protoMessageName): unknown field\(place); this server does not know it and will not ignore it"
            )
        }
    }

    /// Visits every field; records the field-number path of the first message with unknown fields.
    private struct Finder: Visitor {
        var path: [Int] = []
        var found: [Int]?

        mutating func visitUnknown(bytes: Data) throws {
            if found == nil, !bytes.isEmpty { found = path }
        }

        mutating func visitSingularMessageField<M: Message>(value: M, fieldNumber: Int) throws {
            path.append(fieldNumber)
            defer { path.removeLast() }
            try value.traverse(visitor: &self)
        }

        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type, value: _ProtobufMessageMap<KeyType, ValueType>.BaseType, fieldNumber: Int
        ) throws {
            path.append(fieldNumber)
            defer { path.removeLast() }
            for item in value.values { try item.traverse(visitor: &self) }
        }

        mutating func visitMapField<KeyType, ValueType: MapValueType>(
            fieldType: _ProtobufMap<KeyType, ValueType>.Type, value: _ProtobufMap<KeyType, ValueType>.BaseType, fieldNumber: Int
        ) throws {}

        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type, value: _ProtobufEnumMap<KeyType, ValueType>.BaseType, fieldNumber: Int
        ) throws where ValueType.RawValue == Int {}

        mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws {}
        mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws {}
        mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws {}
        mutating func visitSingularEnumField<E: Enum>(value: E, fieldNumber: Int) throws {}
        mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws {}
        mutating func visitSingularStringField(value: String, fieldNumber: Int) throws {}
        mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws {}
    }
}
