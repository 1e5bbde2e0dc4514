import Testing

@testable import SluiceConfig

@Suite struct ValueSyntaxTests {
    @Test func integers() {
        #expect(ValueSyntax.integer("0") == .success(0))
        #expect(ValueSyntax.integer("42") == .success(42))
        #expect(ValueSyntax.integer("-7") == .success(-7))
        #expect(ValueSyntax.integer("+7") == .failure(.malformed))
        #expect(ValueSyntax.integer("1_000") == .failure(.malformed))
        #expect(ValueSyntax.integer("") == .failure(.malformed))
        #expect(ValueSyntax.integer("-") == .failure(.malformed))
        #expect(ValueSyntax.integer("9223372036854775807") == .success(Int.max))
        #expect(ValueSyntax.integer("9223372036854775808") == .failure(.tooLarge))
    }

    @Test func durations() {
        #expect(ValueSyntax.durationMillis("250ms") == .success(250))
        #expect(ValueSyntax.durationMillis("3") == .success(3))
        #expect(ValueSyntax.durationMillis("0") == .success(0))
        #expect(ValueSyntax.durationMillis("2m") == .success(120_000))
        #expect(ValueSyntax.durationMillis("ms") == .failure(.malformed))
        #expect(ValueSyntax.durationMillis("5 s") == .failure(.malformed))
        #expect(ValueSyntax.durationMillis("5d") == .failure(.malformed))
        #expect(ValueSyntax.durationMillis("9223372036854775807h") == .failure(.tooLarge))
    }

    @Test func sizes() {
        #expect(ValueSyntax.sizeBytes("100") == .success(100))
        #expect(ValueSyntax.sizeBytes("2k") == .success(2048))
        #expect(ValueSyntax.sizeBytes("2G") == .success(2 << 30))
        #expect(ValueSyntax.sizeBytes("2kb") == .failure(.malformed))
        #expect(ValueSyntax.sizeBytes("-2k") == .failure(.malformed))
        #expect(ValueSyntax.sizeBytes("9223372036854775807k") == .failure(.tooLarge))
    }

    @Test func bools() {
        #expect(ValueSyntax.bool("true") == true)
        #expect(ValueSyntax.bool("FALSE") == false)
        #expect(ValueSyntax.bool("yes") == nil)
        #expect(ValueSyntax.bool("1") == nil)
    }
}
