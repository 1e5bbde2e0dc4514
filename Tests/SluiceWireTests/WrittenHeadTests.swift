import Testing

@testable import SluiceWire

/// `WrittenResponseHead` reads what `HTTPHeadWriter` writes exactly as the parser does.
@Suite struct WrittenHeadTests {
    struct Read: Equatable {
        var status: UInt16
        var fields: [String]
        var headLength: Int32
    }

    /// The parser's reading of `raw`: status, "name=value" per field, head length.
    static func parsed(_ raw: [UInt8]) -> Read? {
        let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 128)
        defer { fields.deallocate() }
        return raw.withUnsafeBytes { b -> Read? in
            guard case .success(let head) = HTTPResponseParser.parse(b, fields: fields, limits: HTTPLimits()) else {
                return nil
            }
            let list = fields[0..<Int(head.fieldCount)].map {
                String(decoding: b[Int($0.name.lowerBound)..<Int($0.name.upperBound)], as: UTF8.self) + "="
                    + String(decoding: b[Int($0.value.lowerBound)..<Int($0.value.upperBound)], as: UTF8.self)
            }
            return Read(status: head.status, fields: list, headLength: head.headLength)
        }
    }

    /// The cursor's reading of `raw`, or nil when it fails.
    static func written(_ raw: [UInt8]) -> Read? {
        raw.withUnsafeBytes { b -> Read? in
            guard var head = WrittenResponseHead(b) else { return nil }
            var list: [String] = []
            while let f = head.next() {
                list.append(
                    String(decoding: b[f.name], as: UTF8.self) + "=" + String(decoding: b[f.value], as: UTF8.self))
            }
            return head.failed ? nil : Read(status: head.status, fields: list, headLength: head.headLength)
        }
    }

    static let upstreamHeads = [
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        "HTTP/1.0 204\r\nX-Empty:\r\nX-Tabs:\t a b \t\r\nKeep-Alive: timeout=5\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nConnection: X-Drop, close\r\nX-Drop: 1\r\nVary: a\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
        "HTTP/1.1 500 Weird: reason, with colon\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=b; Path=/\r\n\r\n",
        "HTTP/1.1 999\r\nX-Obs: caf\u{e9} \u{1F600}\r\nContent-Length: 0\r\n\r\n",
    ]

    @Test(arguments: upstreamHeads)
    func writerOutputReadsAsTheParserReadsIt(_ raw: String) throws {
        for (close, upgrading) in [(false, false), (true, false), (false, true)] {
            let out = try #require(
                rewriteResponse(raw, close: close, upgrading: upgrading, extra: "Set-Cookie: SLUICE=3f2a\r\n"))
            let bytes = Array(out.utf8) + Array("body after the head".utf8)
            let want = try #require(Self.parsed(bytes))
            #expect(Self.written(bytes) == want, "\(out)")
        }
    }

    @Test(arguments: [400, 404, 408, 413, 414, 417, 431, 500, 501, 502, 503, 504, 505] as [UInt16])
    func errorHeadsReadAsTheParserReadsThem(_ status: UInt16) throws {
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 1)
        defer { out.deallocate() }
        let n = HTTPHeadWriter.writeError(status: status, into: out)
        let bytes = Array(out[0..<n])
        let want = try #require(Self.parsed(bytes))
        #expect(Self.written(bytes) == want)
    }

    @Test func otherShapesFail() {
        for raw in [
            "HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n",  // a line without a colon
            "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: 1\n\r\n",  // a bare LF
            "HTTP/1.1 200 OK\r\nX: 1\r\n",  // no end
            "HTTP/1.1 200 OK\r\nX: 1\r\n\r",
        ] {
            #expect(Self.written(Array(raw.utf8)) == nil, "\(raw.debugDescription)")
        }
        for raw in ["HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/1.1  200\r\n\r\n", "HTTP/1.1 200 OK\n\r\n", "HTTP/1.1 200"] {
            let bytes = Array(raw.utf8)
            #expect(bytes.withUnsafeBytes { WrittenResponseHead($0) } == nil, "\(raw.debugDescription)")
        }
    }

    /// Every cut of a written head short of its end fails.
    @Test func everyCutBeforeTheEndFails() throws {
        let out = try #require(rewriteResponse(Self.upstreamHeads[0], extra: "Set-Cookie: SLUICE=3f2a\r\n"))
        let bytes = Array(out.utf8)
        let full = try #require(Self.written(bytes))
        #expect(Int(full.headLength) == bytes.count)
        for cut in 0..<bytes.count {
            #expect(Self.written(Array(bytes[0..<cut])) == nil, "cut at \(cut)")
        }
    }
}
