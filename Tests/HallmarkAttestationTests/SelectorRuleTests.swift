// The selector rules: each malformed selector refused with its code and the rule named, and the
// value rule (control characters refused) for every Unicode scalar exactly as the Unicode general
// category Cc defines it.

import HallmarkAttestation
import Testing

@Suite("selector rules")
struct SelectorRuleTests {
    @Test("a value is refused for a control character (category Cc) and for nothing else, over every scalar")
    func controlCharacters() {
        var refused: [UInt32] = []
        var mismatches: [UInt32] = []
        for value in UInt32(0)...0x10FFFF {
            guard let scalar = Unicode.Scalar(value) else { continue }
            let accepted = (try? Selector(type: "unix", value: "path:/a\(Character(scalar))b")) != nil
            if !accepted { refused.append(value) }
            if accepted == (scalar.properties.generalCategory == .control) { mismatches.append(value) }
        }
        #expect(mismatches.isEmpty, "first mismatches: \(mismatches.prefix(5))")
        #expect(refused.count == 65)
    }

    @Test("a malformed selector is refused with its code and the rule named", arguments: [
        ("", SelectorError.Code.emptyPart, "no ':'"),
        ("unix", .emptyPart, "no ':'"),
        (":uid:0", .emptyPart, "the type is empty"),
        ("unix:", .emptyPart, "has an empty value"),
        ("un ix:uid:0", .invalidType, "may use only letters"),
        ("unix:path:/a\u{7}", .controlCharacter, "control character"),
        ("unix:path:/" + String(repeating: "a", count: 4096), .tooLong, "is longer than"),
    ])
    func refusals(text: String, code: SelectorError.Code, rule: String) {
        let error = #expect(throws: SelectorError.self) { try Selector(parsing: text) }
        #expect(error?.code == code, "\(text.prefix(30)): \(error?.message ?? "")")
        #expect(error?.message.contains(rule) == true, "\(text.prefix(30)): \(error?.message ?? "")")
    }
}
