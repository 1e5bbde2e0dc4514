import Testing

@testable import SluiceWire

/// Parses `raw` as a request and writes it for the upstream; nil when the writer refused.
func rewriteRequest(
    _ raw: String, pathOverride: String? = nil, client: String = "9.9.9.9", proto: String = "http",
    port: UInt16 = 80, upgrading: Bool = false, trailersTE: Bool = false, capacity: Int = 4096
) -> String? {
    let input = bytes(raw)
    let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 128)
    defer { fields.deallocate() }
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 1)
    defer { out.deallocate() }
    return input.withUnsafeBytes { b -> String? in
        guard case .success(let head) = HTTPRequestParser.parse(b, fields: fields, limits: HTTPLimits()) else {
            Issue.record("does not parse: \(raw)")
            return nil
        }
        let over = pathOverride.map(bytes)
        let n = bytes(client).withUnsafeBytes { c in
            bytes(proto).withUnsafeBytes { p in
                withOptionalBytes(over) { o in
                    HTTPHeadWriter.writeRequest(
                        head, from: b, fields: UnsafeBufferPointer(fields), pathOverride: o, clientAddress: c,
                        proto: p, port: port, upgrading: upgrading, trailersTE: trailersTE, into: out)
                }
            }
        }
        return n.map { String(decoding: out[0..<$0], as: UTF8.self) }
    }
}

func withOptionalBytes<R>(_ a: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let a else { return body(nil) }
    return a.withUnsafeBytes { body($0) }
}

func rewriteResponse(
    _ raw: String, close: Bool = false, http10KeepAlive: Bool = false, upgrading: Bool = false,
    extra: String? = nil, capacity: Int = 4096
) -> String? {
    let input = bytes(raw)
    let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 128)
    defer { fields.deallocate() }
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 1)
    defer { out.deallocate() }
    return input.withUnsafeBytes { b -> String? in
        guard case .success(let head) = HTTPResponseParser.parse(b, fields: fields, limits: HTTPLimits()) else {
            Issue.record("does not parse: \(raw)")
            return nil
        }
        let n = withOptionalBytes(extra.map(bytes)) { e in
            HTTPHeadWriter.writeResponse(
                head, from: b, fields: UnsafeBufferPointer(fields), close: close, http10KeepAlive: http10KeepAlive,
                upgrading: upgrading, extraFields: e, into: out)
        }
        return n.map { String(decoding: out[0..<$0], as: UTF8.self) }
    }
}

@Suite struct HeadWriterTests {
    static let busyRequest =
        "GET /p HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n"
        + "Keep-Alive: 5\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-Proto: ftp\r\n"
        + "X-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\nTE: trailers\r\nTrailer: X\r\nProxy-Connection: x\r\n"
        + "Upgrade: h2c\r\nAccept:  */*  \r\n\r\n"

    @Test func requestDropsHopByHopAndSetsForwardedFields() {
        #expect(
            rewriteRequest(Self.busyRequest)
                == "GET /p HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t\r\nAccept: */*\r\n"
                + "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 9.9.9.9\r\nX-Forwarded-Proto: http\r\n"
                + "X-Forwarded-Host: a.example\r\nX-Forwarded-Port: 80\r\n\r\n")
    }

    /// TE is hop-by-hop; towards an HTTP/2 endpoint only `te: trailers` crosses (gRPC needs it).
    @Test func teTrailersCrossOnlyWhenAsked() {
        let raw = "POST /x HTTP/1.1\r\nHost: a\r\nTE: deflate, Trailers\r\nContent-Length: 0\r\n\r\n"
        #expect(rewriteRequest(raw)?.lowercased().contains("\r\nte:") == false)
        #expect(rewriteRequest(raw, trailersTE: true)?.contains("\r\nte: trailers\r\n") == true)
        let gzip = "GET /x HTTP/1.1\r\nHost: a\r\nTE: gzip\r\n\r\n"
        #expect(rewriteRequest(gzip, trailersTE: true)?.lowercased().contains("\r\nte:") == false)
    }

    @Test func requestTooSmallForTheOutput() {
        let full = rewriteRequest(Self.busyRequest)!.utf8.count
        for capacity in 0..<full {
            #expect(rewriteRequest(Self.busyRequest, capacity: capacity) == nil)
        }
        #expect(rewriteRequest(Self.busyRequest, capacity: full) != nil)
    }

    @Test func upgradeKeepsUpgrade() {
        let raw =
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n"
        #expect(
            rewriteRequest(raw, client: "c", proto: "https", port: 443, upgrading: true)
                == "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nX-Forwarded-For: c\r\n"
                + "X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nX-Forwarded-Port: 443\r\nConnection: upgrade\r\n\r\n"
        )
    }

    @Test func absoluteFormAndPathOverride() {
        #expect(
            rewriteRequest("GET http://b/x/y?z HTTP/1.1\r\nHost: a\r\n\r\n", pathOverride: "/y?z", port: 8080)
                == "GET /y?z HTTP/1.1\r\nHost: b\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: http\r\n"
                + "X-Forwarded-Host: b\r\nX-Forwarded-Port: 8080\r\n\r\n")
        #expect(rewriteRequest("GET http://b?q HTTP/1.1\r\nHost: b\r\n\r\n")!.hasPrefix("GET /?q HTTP/1.1\r\n"))
        #expect(rewriteRequest("GET https://b HTTP/1.1\r\nHost: b\r\n\r\n")!.hasPrefix("GET / HTTP/1.1\r\n"))
        #expect(
            rewriteRequest("GET /a/b HTTP/1.1\r\nHost: b\r\n\r\n", pathOverride: "")!.hasPrefix("GET / HTTP/1.1\r\n"))
        #expect(rewriteRequest("OPTIONS * HTTP/1.1\r\nHost: b\r\n\r\n")!.hasPrefix("OPTIONS * HTTP/1.1\r\n"))
    }

    @Test func framingFieldsSurviveConnectionNomination() {
        #expect(
            rewriteRequest(
                "POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, transfer-encoding, host\r\n"
                    + "Content-Length: 3\r\n\r\n", port: 1)
                == "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-Forwarded-For: 9.9.9.9\r\n"
                + "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nX-Forwarded-Port: 1\r\n\r\n")
    }

    @Test(arguments: [
        "Content-Length: 5, 5\r\n", "Content-Length: 5\r\ncontent-length: 5\r\n", "Content-Length:5 ,5\r\n",
        "Content-Length: 005\r\n", "Content-Length: 5\r\nX-A: 1\r\nCONTENT-LENGTH: 5,05\r\n",
    ])
    func requestForwardsOneNormalisedContentLength(_ lengths: String) throws {
        let written = try #require(
            rewriteRequest("PUT /u HTTP/1.1\r\nHost: a\r\n" + lengths + "X-Z: z\r\n\r\n", port: 1))
        let extra = lengths.contains("X-A") ? "X-A: 1\r\n" : ""
        #expect(
            written
                == "PUT /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\(extra)X-Z: z\r\nX-Forwarded-For: 9.9.9.9\r\n"
                + "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a\r\nX-Forwarded-Port: 1\r\n\r\n")
    }

    @Test func responseForwardsOneNormalisedContentLength() {
        #expect(
            rewriteResponse(
                "HTTP/1.1 200 OK\r\nServer: s\r\ncontent-length: 02\r\nContent-Length: 2, 2\r\nX: y\r\n\r\n")
                == "HTTP/1.1 200 OK\r\nServer: s\r\ncontent-length: 2\r\nX: y\r\n\r\n")
        #expect(
            rewriteResponse("HTTP/1.1 304 Not Modified\r\nContent-Length: 9,9\r\nConnection: Content-Length\r\n\r\n")
                == "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n")
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 10, 10\r\n\r\n"
        let full = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
        #expect(rewriteResponse(raw) == full)
        for capacity in 0..<full.utf8.count {
            #expect(rewriteResponse(raw, capacity: capacity) == nil)
        }
    }

    @Test func http10WithoutHostStaysHTTP10() {
        #expect(
            rewriteRequest("GET / HTTP/1.0\r\nX-Forwarded-For:\r\n\r\n", port: 65535)
                == "GET / HTTP/1.0\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 65535\r\n\r\n"
        )
    }

    @Test func responseForAnHTTP10Client() {
        #expect(
            rewriteResponse(
                "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n"
                    + "X-Hop: 1\r\nServer: s\r\n\r\n", http10KeepAlive: true, extra: "Set-Cookie: SLUICE=3f2a\r\n")
                == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: s\r\nSet-Cookie: SLUICE=3f2a\r\n"
                + "Connection: keep-alive\r\n\r\n")
    }

    @Test func responseCloseAndUpgrade() {
        #expect(
            rewriteResponse("HTTP/1.1 204\r\nTrailer: x\r\nTransfer-Encoding: chunked\r\n\r\n", close: true)
                == "HTTP/1.1 204\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        #expect(
            rewriteResponse(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", upgrading: true
            )
                == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
        #expect(
            rewriteResponse("HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n")
                == "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        for capacity in 0..<rewriteResponse(raw)!.utf8.count {
            #expect(rewriteResponse(raw, capacity: capacity) == nil)
        }
    }

    @Test(arguments: [400, 404, 408, 413, 414, 417, 431, 500, 501, 502, 503, 504, 505] as [UInt16])
    func errorResponses(_ status: UInt16) {
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 1)
        defer { out.deallocate() }
        let n = HTTPHeadWriter.writeError(status: status, into: out)
        let reason = "\(HTTPHeadWriter.reasonPhrase(status))"
        #expect(reason != "Error")
        #expect(
            String(decoding: out[0..<n], as: UTF8.self)
                == "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain\r\nContent-Length: \(reason.utf8.count + 1)\r\n"
                + "Connection: close\r\n\r\n\(reason)\n")
        #expect(
            HTTPHeadWriter.writeError(status: status, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<(n - 1)]))
                == 0)
    }

    @Test func exactErrorBytes() {
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 1)
        defer { out.deallocate() }
        let n = HTTPHeadWriter.writeError(status: 502, into: out)
        #expect(
            String(decoding: out[0..<n], as: UTF8.self)
                == "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Gateway\n"
        )
    }
}
