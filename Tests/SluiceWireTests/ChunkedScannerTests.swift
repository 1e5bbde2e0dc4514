import Testing

@testable import SluiceWire

let validChunked: [String] = [
    "0\r\n\r\n",
    "5\r\nhello\r\n0\r\n\r\n",
    "5;a=b\r\nhello\r\nA ; x = \"q;\\\"\" ; y\r\n0123456789\r\n0\r\nX-T: v\r\nY:\r\n\r\n",
    "1F\r\n0123456789abcdefghijklmnopqrstu\r\n0000\r\n\r\n",
    "1;ext\r\nx\r\n1;e=\"\"\r\ny\r\n0;last\r\n\r\n",
    "1\r\n\r\r\n0\r\n\r\n",
]

let invalidChunked: [String] = [
    "\r\n",
    "g\r\n",
    ";a\r\n",
    "-1\r\n",
    "5\nhello\r\n0\r\n\r\n",
    "5\rhello\r\n",
    "5\r\nhelloX\r\n0\r\n\r\n",
    "5\r\nhello\n0\r\n\r\n",
    "5\r\nhello\r0\r\n\r\n",
    "1 \r\nx\r\n0\r\n\r\n",
    "1;\r\nx\r\n",
    "1;a \r\nx\r\n",
    "1;=v\r\nx\r\n",
    "1;a=\r\nx\r\n",
    "1;a=\"x\r\n\"\r\n",
    "1;a=b c\r\n",
    "4000000000000000\r\n",
    "100000000000000000\r\n",
    "0\r\nX : v\r\n\r\n",
    "0\r\n v\r\n\r\n",
    "0\r\nX: v\r\n w\r\n\r\n",
    "0\r\n\n",
    "0\r\nX: v\n\r\n",
    "0\r\nX: a\rb\r\n\r\n",
    "0\r\nX: a\u{0}\r\n\r\n",
    "0\r\n: v\r\n\r\n",
    "1;a=" + String(repeating: "b", count: 5000) + "\r\nx\r\n0\r\n\r\n",
    "0\r\n" + String(repeating: "X: y\r\n", count: 3000) + "\r\n",
]

@Suite struct ChunkedScannerTests {
    @Test(arguments: validChunked)
    func validBodyEndsAtEverySplit(_ body: String) {
        let input = bytes(body + "GET / HTTP/1.1\r\n")
        let end = bytes(body).count
        #expect(runChunked(input, cuts: []) == end)
        for cut in 0...input.count {
            #expect(runChunked(input, cuts: [cut]) == end, "split at \(cut)")
        }
        #expect(runChunked(input, cuts: byteCuts(input.count)) == end)
        #expect(runChunked(Array(input[0..<(end - 1)]), cuts: byteCuts(end - 1)) == -1)
    }

    @Test(arguments: invalidChunked)
    func invalidBodyFailsAtEverySplit(_ body: String) {
        let input = bytes(body)
        #expect(runChunked(input, cuts: []) == nil)
        for cut in 0...input.count {
            #expect(runChunked(input, cuts: [cut]) == nil, "split at \(cut)")
        }
        #expect(runChunked(input, cuts: byteCuts(input.count)) == nil)
    }

    @Test func largestSizeIsAccepted() {
        let input = bytes("3FFFFFFFFFFFFFFF\r\nabc")
        #expect(runChunked(input, cuts: []) == -1)
    }

    @Test func afterTheEndAndAfterAnError() {
        var scanner = ChunkedScanner()
        bytes("0\r\n\r\nX").withUnsafeBytes { b in
            #expect(scanner.scan(b) == .end(5))
            #expect(scanner.scan(b) == .end(0))
            scanner.reset()
            #expect(scanner.scan(UnsafeRawBufferPointer(rebasing: b[0..<3])) == .consumed(3))
        }
        var failed = ChunkedScanner()
        bytes("z").withUnsafeBytes { b in
            #expect(failed.scan(b) == .error(HTTPError(status: 400, reason: "Bad Request")))
            #expect(failed.scan(b) == .error(HTTPError(status: 400, reason: "Bad Request")))
        }
    }

    @Test func bigChunkSkipsData() {
        var scanner = ChunkedScanner()
        let header = bytes("100000\r\n")
        let data = [UInt8](repeating: 0x41, count: 0x10_0000)
        header.withUnsafeBytes { #expect(scanner.scan($0) == .consumed(Int32(header.count))) }
        data.withUnsafeBytes { #expect(scanner.scan($0) == .consumed(0x10_0000)) }
        bytes("\r\n0\r\n\r\n").withUnsafeBytes { #expect(scanner.scan($0) == .end(7)) }
    }
}
