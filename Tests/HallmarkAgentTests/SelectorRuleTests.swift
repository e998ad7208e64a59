// The selector value rule, control characters refused, holds for every Unicode scalar exactly as
// the Unicode general category Cc defines it.

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
}
