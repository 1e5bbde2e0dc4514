import SluiceKube
import Testing

@Suite("Watch line splitter")
struct WatchLineSplitterTests {
    /// Feeds `bytes` in pieces of `size` and returns every line, the final unterminated one
    /// included.
    static func split(_ bytes: [UInt8], chunkSize size: Int, limit: Int = 16 << 20) throws -> [[UInt8]] {
        var splitter = WatchLineSplitter(maxLineBytes: limit)
        var lines: [[UInt8]] = []
        var start = 0
        while start < bytes.count {
            let end = min(start + size, bytes.count)
            lines += try splitter.feed(bytes[start..<end])
            start = end
        }
        if let last = splitter.finish() { lines.append(last) }
        return lines
    }

    @Test(
        "every fixture stream at every chunk size yields the same events",
        .enabled(if: Fixtures.available, Fixtures.skipMessage), arguments: Fixtures.streams)
    func fixtureStreamsAtEveryChunkSize(_ name: String) throws {
        let bytes = try Fixtures.bytes(name)
        let expected = try Fixtures.lines(name)
        #expect(expected.count == 5)
        let withoutFinalNewline = Array(bytes.last == UInt8(ascii: "\n") ? bytes.dropLast() : bytes[...])
        let crlf = Array(String(decoding: bytes, as: UTF8.self).replacingNewlines().utf8)
        for size in 1...64 {
            #expect(try Self.split(bytes, chunkSize: size) == expected, "chunk size \(size)")
            #expect(try Self.split(withoutFinalNewline, chunkSize: size) == expected, "chunk size \(size), no final LF")
            #expect(try Self.split(crlf, chunkSize: size) == expected, "chunk size \(size), CRLF")
        }
        // And the lines decode to the same events whichever kind the stream carries.
        for line in expected {
            if name.contains("services") {
                _ = try KubeWatchEvent<KubeService>.decode(line)
            } else {
                _ = try KubeWatchEvent<KubeEndpointSlice>.decode(line)
            }
        }
    }

    @Test(.enabled(if: Fixtures.available, Fixtures.skipMessage))
    func bothStreamsConcatenatedInOneChunk() throws {
        let all = try Fixtures.bytes(Fixtures.streams[0]) + Fixtures.bytes(Fixtures.streams[1])
        var splitter = WatchLineSplitter()
        let lines = try splitter.feed(all)
        #expect(lines.count == 10)
        #expect(splitter.pendingByteCount == 0)
    }

    @Test func finalLineIsHeldUntilMoreArrives() throws {
        var splitter = WatchLineSplitter()
        #expect(try splitter.feed(Array("{\"a\":1}\n{\"b\"".utf8)) == [Array("{\"a\":1}".utf8)])
        #expect(splitter.pendingByteCount == 4)
        #expect(try splitter.feed(Array(":2}".utf8)).isEmpty)
        #expect(try splitter.feed(Array("\n\n".utf8)) == [Array("{\"b\":2}".utf8)])
        #expect(splitter.finish() == nil)
    }

    @Test func lineLongerThanTheLimitIsAnError() throws {
        var splitter = WatchLineSplitter(maxLineBytes: 8)
        #expect(try splitter.feed(Array("12345678\n".utf8)) == [Array("12345678".utf8)])
        #expect(try splitter.feed(Array("1234".utf8)).isEmpty)
        #expect(throws: WatchLineSplitter.SplitError.lineTooLong(limit: 8)) {
            try splitter.feed(Array("56789".utf8))
        }
        // The held bytes were dropped; a new body starts clean.
        #expect(splitter.pendingByteCount == 0)
        #expect(try splitter.feed(Array("ok\n".utf8)) == [Array("ok".utf8)])
        // Byte at a time reaches the limit too.
        var slow = WatchLineSplitter(maxLineBytes: 3)
        #expect(throws: WatchLineSplitter.SplitError.lineTooLong(limit: 3)) {
            for byte in Array("abcde".utf8) { _ = try slow.feed([byte]) }
        }
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        var out = ""
        for character in self {
            if character == "\n" { out += "\r\n" } else { out.append(character) }
        }
        return out
    }
}
