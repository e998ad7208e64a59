// Authorizers and their composition.

import Testing
import SPIFFE

@Suite("Authorizer")
struct AuthorizerTests {
    let model = try! SPIFFEID(parsing: "spiffe://ai.example/model/llama")
    let pipeline = try! SPIFFEID(parsing: "spiffe://ai.example/pipeline/etl")
    let foreign = try! SPIFFEID(parsing: "spiffe://other.example/model/llama")

    private func allows(_ authorizer: Authorizer, _ id: SPIFFEID) -> Bool {
        (try? authorizer.authorize(id)) != nil
    }

    @Test func any() {
        #expect(allows(.any, model) && allows(.any, foreign))
    }

    @Test func id() {
        #expect(allows(.id(model), model))
        #expect(!allows(.id(model), pipeline))
    }

    @Test func oneOf() {
        let authorizer = Authorizer.oneOf([model, pipeline])
        #expect(allows(authorizer, model) && allows(authorizer, pipeline))
        #expect(!allows(authorizer, foreign))
    }

    @Test func memberOf() throws {
        let authorizer = Authorizer.memberOf(try TrustDomain("ai.example"))
        #expect(allows(authorizer, model))
        #expect(!allows(authorizer, foreign))
    }

    @Test func matchingAndComposition() throws {
        let models = Authorizer.matching("a model server") { $0.path.hasPrefix("/model/") }
        let local = Authorizer.memberOf(try TrustDomain("ai.example"))
        #expect(allows(local.and(models), model))
        #expect(!allows(local.and(models), pipeline))
        #expect(!allows(local.and(models), foreign))
        #expect(allows(Authorizer.id(pipeline).or(models), foreign))
        #expect(!allows(Authorizer.id(pipeline).or(.id(model)), foreign))
    }

    @Test("a refusal names the ID and the expectation")
    func refusalMessage() {
        let error = #expect(throws: SPIFFEError.self) { try Authorizer.id(model).authorize(pipeline) }
        #expect(error?.code == .unauthorized)
        #expect(error?.message.contains("spiffe://ai.example/pipeline/etl") == true)
        #expect(error?.message.contains("spiffe://ai.example/model/llama") == true)
    }

    @Test("a custom check's own error passes through")
    func custom() {
        struct Nope: Error {}
        #expect(throws: Nope.self) { try Authorizer { _ in throw Nope() }.authorize(model) }
    }
}
