import Testing

@testable import SluiceWire

/// Parses `raw` and writes it for the upstream with `requestID`; also returns what
/// `validRequestID` picked from it.
private func rewrite(_ raw: String, requestID: String?) -> (head: String, incoming: String?)? {
    let input = bytes(raw)
    let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 128)
    defer { fields.deallocate() }
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)
    defer { out.deallocate() }
    return input.withUnsafeBytes { b -> (String, String?)? in
        guard case .success(let head) = HTTPRequestParser.parse(b, fields: fields, limits: HTTPLimits()) else {
            Issue.record("does not parse: \(raw)")
            return nil
        }
        let used = UnsafeBufferPointer(rebasing: fields[0..<Int(head.fieldCount)])
        let incoming = HTTPHeadWriter.validRequestID(from: b, fields: used, count: Int(head.fieldCount)).map {
            text(b, $0)
        }
        let n = bytes("9.9.9.9").withUnsafeBytes { c in
            bytes("http").withUnsafeBytes { p in
                withOptionalBytes(requestID.map(bytes)) { id in
                    HTTPHeadWriter.writeRequest(
                        head, from: b, fields: used, pathOverride: nil, clientAddress: c, proto: p, port: 80,
                        upgrading: false, requestID: id, into: out)
                }
            }
        }
        return n.map { (String(decoding: out[0..<$0], as: UTF8.self), incoming) }
    }
}

@Suite struct RequestIDWriterTests {
    @Test func noRequestIDLeavesTheHeadAsItWas() {
        let raw = "GET /a HTTP/1.1\r\nHost: h\r\nX-Request-ID: keep me\r\nAccept: */*\r\n\r\n"
        #expect(
            rewrite(raw, requestID: nil)?.head
                == "GET /a HTTP/1.1\r\nHost: h\r\nX-Request-ID: keep me\r\nAccept: */*\r\n"
                + "X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Forwarded-Port: 80\r\n\r\n"
        )
        #expect(rewrite(raw, requestID: nil)?.head == rewriteRequest(raw))
    }

    @Test func aGivenRequestIDReplacesEveryIncomingOne() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nx-request-id: one\r\nAccept: */*\r\nX-REQUEST-ID: two\r\n\r\n"
        #expect(
            rewrite(raw, requestID: "0123456789abcdef0123456789abcdef")?.head
                == "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Request-ID: 0123456789abcdef0123456789abcdef\r\n"
                + "X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Forwarded-Port: 80\r\n\r\n"
        )
        // Similar names are other fields.
        let near = "GET / HTTP/1.1\r\nHost: h\r\nX-Request-IDs: a\r\nX-Request-I: b\r\n\r\n"
        let head = rewrite(near, requestID: "r")?.head ?? ""
        #expect(head.contains("X-Request-IDs: a\r\n") && head.contains("X-Request-I: b\r\n"))
        #expect(head.contains("X-Request-ID: r\r\n"))
    }

    @Test(
        arguments: [
            ("X-Request-ID: abc-123_XYZ.~!\r\n", "abc-123_XYZ.~!"),
            ("X-Request-ID: \(String(repeating: "z", count: 64))\r\n", String(repeating: "z", count: 64)),
            ("X-Request-ID: \(String(repeating: "z", count: 65))\r\n", nil),
            ("X-Request-ID: two words\r\n", nil),
            ("X-Request-ID:\r\n", nil),
            ("X-Request-ID: caf\u{e9}\r\n", nil),
            ("X-Request-ID: first\r\nX-Request-ID: second\r\n", "first"),
            ("X-Request-ID: bad one\r\nX-Request-ID: good\r\n", nil),
            ("Accept: */*\r\n", nil),
        ] as [(String, String?)])
    func onlyAVisibleASCIIValueOfAtMost64BytesIsPassedOn(field: String, expected: String?) {
        #expect(rewrite("GET / HTTP/1.1\r\nHost: h\r\n\(field)\r\n", requestID: nil)?.incoming == expected)
    }

    @Test func aHeadTooLargeForTheBufferWithTheIDIsRefused() {
        let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 8)
        defer { fields.deallocate() }
        let input = bytes("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        input.withUnsafeBytes { b in
            guard case .success(let head) = HTTPRequestParser.parse(b, fields: fields, limits: HTTPLimits()) else {
                Issue.record("does not parse")
                return
            }
            let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 140, alignment: 1)
            defer { out.deallocate() }
            let used = UnsafeBufferPointer(rebasing: fields[0..<Int(head.fieldCount)])
            let fits = bytes("1.1.1.1").withUnsafeBytes { c in
                bytes("http").withUnsafeBytes { p in
                    HTTPHeadWriter.writeRequest(
                        head, from: b, fields: used, pathOverride: nil, clientAddress: c, proto: p, port: 80,
                        upgrading: false, into: out)
                }
            }
            let tooLong = bytes("1.1.1.1").withUnsafeBytes { c in
                bytes("http").withUnsafeBytes { p in
                    bytes(String(repeating: "f", count: 32)).withUnsafeBytes { id in
                        HTTPHeadWriter.writeRequest(
                            head, from: b, fields: used, pathOverride: nil, clientAddress: c, proto: p, port: 80,
                            upgrading: false, requestID: id, into: out)
                    }
                }
            }
            #expect(fits != nil)
            #expect(tooLong == nil)
        }
    }
}
