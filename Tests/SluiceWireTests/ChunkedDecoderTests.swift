import Testing

@testable import SluiceWire

@Suite struct ChunkedDecoderTests {
    static let body = Array(
        "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n".utf8)
    static let payload = Array("helloabcdefghijklmnopqrstuvwxyz".utf8)

    /// Fed in pieces of every size, the payload comes out whole and in order.
    @Test(arguments: [1, 2, 3, 7, 64]) func decodesAcrossSplits(piece: Int) {
        var decoder = ChunkedDecoder()
        var out: [UInt8] = []
        var start = 0
        while start < Self.body.count {
            var part = Array(Self.body[start..<min(start + piece, Self.body.count)])
            let n = part.withUnsafeMutableBytes { decoder.decode($0.baseAddress!, count: $0.count) }
            out += part[0..<n]
            start += piece
        }
        #expect(out == Self.payload)
        #expect(decoder.isDone)
    }

    @Test func stopsAtTheEndOfTheMessage() {
        var decoder = ChunkedDecoder()
        var bytes = Array("3\r\nabc\r\n0\r\n\r\nGARBAGE".utf8)
        let n = bytes.withUnsafeMutableBytes { decoder.decode($0.baseAddress!, count: $0.count) }
        #expect(Array(bytes[0..<n]) == Array("abc".utf8))
        #expect(decoder.isDone)
    }

    /// Kept, the trailer section follows the payload, split anywhere.
    @Test(arguments: [1, 2, 5, 64]) func keepsTheTrailerSection(piece: Int) {
        var decoder = ChunkedDecoder()
        let body = Array("3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx-a: b\r\n\r\n".utf8)
        var payload: [UInt8] = []
        var trailer: [UInt8] = []
        var start = 0
        while start < body.count {
            var part = Array(body[start..<min(start + piece, body.count)])
            var kept = 0
            let n = part.withUnsafeMutableBytes { decoder.decode($0.baseAddress!, count: $0.count, trailers: &kept) }
            payload += part[0..<n]
            trailer += part[n..<n + kept]
            start += piece
        }
        #expect(payload == Array("abc".utf8))
        #expect(String(decoding: trailer, as: UTF8.self) == "grpc-status: 0\r\nx-a: b\r\n")
        #expect(decoder.isDone)
    }
}
