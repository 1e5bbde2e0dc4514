import Testing

@testable import SluiceWire

struct RequestCase: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    /// nil: the request is valid and `check` holds.
    var status: UInt16?
    var check: @Sendable (RequestSummary) -> Bool = { _ in true }
    var testDescription: String { name }
}

private func ok(_ name: String, _ raw: String, _ check: @escaping @Sendable (RequestSummary) -> Bool) -> RequestCase {
    RequestCase(name: name, raw: raw, status: nil, check: check)
}

private func bad(_ status: UInt16, _ name: String, _ raw: String) -> RequestCase {
    RequestCase(name: name, raw: raw, status: status)
}

private let h = "Host: a\r\n"

let requestCases: [RequestCase] = [
    ok("simple GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n") {
        $0.method == .get && $0.host == "a" && $0.path == "/" && $0.minor == 1 && $0.bodyKind == .none
            && $0.fields == ["Host: a"] && $0.headLength == 27
    },
    ok("query and port", "GET /x?y=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n") {
        $0.path == "/x?y=1" && $0.host == "example.com:8080" && $0.fields.count == 2
    },
    ok("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n") { $0.host == nil && $0.minor == 0 },
    ok("HTTP/1.0 with Host", "GET / HTTP/1.0\r\nHost: b\r\n\r\n") { $0.host == "b" && $0.minor == 0 },
    ok("Content-Length", "POST /u HTTP/1.1\r\n\(h)Content-Length: 5\r\n\r\n") {
        $0.method == .post && $0.contentLength == 5 && $0.bodyKind == .length(5)
    },
    ok("Content-Length 0", "POST /u HTTP/1.1\r\n\(h)Content-Length: 0\r\n\r\n") {
        $0.contentLength == 0 && $0.bodyKind == .none
    },
    ok("identical Content-Length fields", "PUT / HTTP/1.1\r\n\(h)Content-Length: 5\r\ncontent-length: 5\r\n\r\n") {
        $0.method == .put && $0.contentLength == 5
    },
    ok("identical Content-Length list", "PUT / HTTP/1.1\r\n\(h)Content-Length: 5 , 5\r\n\r\n") {
        $0.contentLength == 5
    },
    ok(
        "identical Content-Length list and field",
        "PUT / HTTP/1.1\r\n\(h)Content-Length: 5,5\r\nContent-Length: 5\r\n\r\n"
    ) {
        $0.contentLength == 5 && $0.fields.count == 3
    },
    ok("Content-Length leading zeros", "PUT / HTTP/1.1\r\n\(h)Content-Length: 007, 7\r\n\r\n") {
        $0.contentLength == 7
    },
    ok("Content-Length maximum", "PUT / HTTP/1.1\r\n\(h)Content-Length: 9223372036854775807\r\n\r\n") {
        $0.contentLength == Int64.max
    },
    ok("chunked", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked\r\n\r\n") {
        $0.chunked && $0.bodyKind == .chunked && $0.contentLength == nil
    },
    ok("gzip then chunked", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: gzip;q=1, CHUNKED\r\n\r\n") { $0.chunked },
    ok("codings in two fields", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
    {
        $0.chunked
    },
    ok("absolute-form wins over Host", "GET http://b.example/p?q HTTP/1.1\r\nHost: a\r\n\r\n") {
        $0.host == "b.example" && $0.path == "/p?q" && $0.target == "http://b.example/p?q"
    },
    ok("absolute-form https without path", "GET HTTPS://b:8443 HTTP/1.1\r\nHost: b\r\n\r\n") {
        $0.host == "b:8443" && $0.path == ""
    },
    ok("absolute-form query only", "GET http://b?x=1 HTTP/1.1\r\nHost: b\r\n\r\n") {
        $0.host == "b" && $0.path == "?x=1"
    },
    ok("absolute-form with empty Host", "GET http://b/ HTTP/1.1\r\nHost:\r\n\r\n") { $0.host == "b" },
    ok("CONNECT authority-form", "CONNECT b.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n") {
        $0.method == .connect && $0.host == "b.example:443" && $0.target == "b.example:443"
    },
    ok("OPTIONS asterisk", "OPTIONS * HTTP/1.1\r\n\(h)\r\n") { $0.method == .options && $0.path == "*" },
    ok("all methods", "DELETE / HTTP/1.1\r\n\(h)\r\n") { $0.method == .delete },
    ok("HEAD", "HEAD / HTTP/1.1\r\n\(h)\r\n") { $0.method == .head },
    ok("PATCH", "PATCH / HTTP/1.1\r\n\(h)\r\n") { $0.method == .patch },
    ok("TRACE", "TRACE / HTTP/1.1\r\n\(h)\r\n") { $0.method == .trace },
    ok("unknown method", "PURGE /c HTTP/1.1\r\n\(h)\r\n") { $0.method == .other && $0.methodText == "PURGE" },
    ok("methods are case-sensitive", "get / HTTP/1.1\r\n\(h)\r\n") { $0.method == .other },
    ok("Connection list", "GET / HTTP/1.1\r\n\(h)Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n") {
        $0.keepAlive && $0.connectionUpgrade && !$0.close && $0.upgrade == "websocket"
    },
    ok("several Connection fields", "GET / HTTP/1.1\r\n\(h)Connection: foo\r\nconnection: ,CLOSE,\r\n\r\n") {
        $0.close && !$0.keepAlive
    },
    ok("Expect 100-continue", "POST / HTTP/1.1\r\n\(h)Expect: 100-Continue\r\nContent-Length: 1\r\n\r\n") {
        $0.expectContinue
    },
    ok("other Expect ignored", "POST / HTTP/1.1\r\n\(h)Expect: something\r\n\r\n") { !$0.expectContinue },
    ok("OWS trimmed", "GET / HTTP/1.1\r\nHost:\t a \t\r\nX-A:   v  w  \r\nX-E:\r\n\r\n") {
        $0.host == "a" && $0.fields == ["Host: a", "X-A: v  w", "X-E: "]
    },
    ok("obs-text in a value", "GET / HTTP/1.1\r\n\(h)X-U: caf\u{e9}\r\n\r\n") { $0.fields.count == 2 },
    ok("IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n") { $0.host == "[::1]:8080" },
    ok("IPv4 host", "GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n") { $0.host == "10.0.0.1" },
    ok("pct-encoded host", "GET / HTTP/1.1\r\nHost: a%2Db\r\n\r\n") { $0.host == "a%2Db" },
    ok("pipelined bytes after the head", "GET / HTTP/1.1\r\n\(h)\r\nGET /next HTTP/1.1\r\n") {
        $0.headLength == 27 && $0.path == "/"
    },

    // Request line.
    bad(400, "empty method", " / HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "bad method byte", "G(T / HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "two spaces after method", "GET  / HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "two spaces after target", "GET /  HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "space after version", "GET / HTTP/1.1 \r\n\(h)\r\n"),
    bad(400, "no version", "GET /\r\n\(h)\r\n"),
    bad(400, "lower-case version", "GET / http/1.1\r\n\(h)\r\n"),
    bad(400, "long version", "GET / HTTP/1.10\r\n\(h)\r\n"),
    bad(400, "version garbage", "GET / HTTP/x.1\r\n\(h)\r\n"),
    bad(505, "HTTP/2.0", "GET / HTTP/2.0\r\n\(h)\r\n"),
    bad(505, "HTTP/1.2", "GET / HTTP/1.2\r\n\(h)\r\n"),
    bad(505, "HTTP/0.9", "GET / HTTP/0.9\r\n\(h)\r\n"),
    bad(400, "NUL in target", "GET /a\u{0}b HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "tab in target", "GET /a\tb HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "fragment", "GET /a#b HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "authority-form without CONNECT", "GET b:443 HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "CONNECT with origin-form", "CONNECT / HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "CONNECT without port", "CONNECT b HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "CONNECT with absolute-form", "CONNECT http://b:80/ HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "asterisk without OPTIONS", "GET * HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "other scheme", "GET ftp://b/ HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "empty authority", "GET http:///x HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "userinfo", "GET http://u@b/ HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "relative target", "GET x/y HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "leading empty line", "\r\nGET / HTTP/1.1\r\n\(h)\r\n"),
    bad(414, "target too long", "GET /" + String(repeating: "a", count: 8192) + " HTTP/1.1\r\n\(h)\r\n"),

    // Line ends and bytes.
    bad(400, "bare LF after request line", "GET / HTTP/1.1\n\(h)\r\n"),
    bad(400, "bare LF after a field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"),
    bad(400, "bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n"),
    bad(400, "bare LF final line", "GET / HTTP/1.1\r\nHost: a\r\n\n"),
    bad(400, "bare CR in a value", "GET / HTTP/1.1\r\n\(h)X: a\rb\r\n\r\n"),
    bad(400, "bare CR in request line", "GET /\r HTTP/1.1\r\n\(h)\r\n"),
    bad(400, "bare CR final line", "GET / HTTP/1.1\r\n\(h)\r\r\n\r\n"),
    bad(400, "NUL in a value", "GET / HTTP/1.1\r\n\(h)X: a\u{0}b\r\n\r\n"),
    bad(400, "control byte in a value", "GET / HTTP/1.1\r\n\(h)X: a\u{1}b\r\n\r\n"),
    bad(400, "DEL in a value", "GET / HTTP/1.1\r\n\(h)X: a\u{7f}b\r\n\r\n"),

    // Field syntax.
    bad(400, "space before colon", "GET / HTTP/1.1\r\n\(h)X-A : b\r\n\r\n"),
    bad(400, "tab before colon", "GET / HTTP/1.1\r\n\(h)X-A\t: b\r\n\r\n"),
    bad(400, "obs-fold", "GET / HTTP/1.1\r\n\(h)X: a\r\n b\r\n\r\n"),
    bad(400, "obs-fold with tab", "GET / HTTP/1.1\r\n\(h)X: a\r\n\tb\r\n\r\n"),
    bad(400, "folded first field", "GET / HTTP/1.1\r\n \(h)\r\n"),
    bad(400, "empty field name", "GET / HTTP/1.1\r\n\(h): b\r\n\r\n"),
    bad(400, "bad name byte", "GET / HTTP/1.1\r\n\(h)X(: b\r\n\r\n"),
    bad(400, "no colon", "GET / HTTP/1.1\r\n\(h)X-A\r\n\r\n"),
    bad(431, "too many fields", "GET / HTTP/1.1\r\n\(h)" + String(repeating: "X: y\r\n", count: 100) + "\r\n"),
    bad(431, "head too large", "GET / HTTP/1.1\r\n\(h)X: " + String(repeating: "y", count: 16400) + "\r\n\r\n"),

    // Host.
    bad(400, "HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n"),
    bad(400, "two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
    bad(400, "two Host fields in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
    bad(400, "absolute-form and two Hosts", "GET http://b/ HTTP/1.1\r\nHost: a\r\nHost: c\r\n\r\n"),
    bad(400, "absolute-form without Host", "GET http://b/ HTTP/1.1\r\n\r\n"),
    bad(400, "empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n"),
    bad(400, "Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    bad(400, "Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"),
    bad(400, "Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
    bad(400, "Host with empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n"),
    bad(400, "Host with big port", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n"),
    bad(400, "Host with bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n"),
    bad(400, "Host with bad IPv6", "GET / HTTP/1.1\r\nHost: [zz::1]\r\n\r\n"),
    bad(400, "Host with unclosed IPv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"),
    bad(400, "Host with bad pct", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"),
    bad(400, "only port", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n"),

    // Length: request smuggling.
    bad(400, "CL then TE", "POST / HTTP/1.1\r\n\(h)Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    bad(400, "TE then CL", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
    bad(400, "two different CL", "POST / HTTP/1.1\r\n\(h)Content-Length: 5\r\nContent-Length: 6\r\n\r\n"),
    bad(400, "CL list that differs", "POST / HTTP/1.1\r\n\(h)Content-Length: 5, 6\r\n\r\n"),
    bad(400, "CL not digits", "POST / HTTP/1.1\r\n\(h)Content-Length: abc\r\n\r\n"),
    bad(400, "CL negative", "POST / HTTP/1.1\r\n\(h)Content-Length: -1\r\n\r\n"),
    bad(400, "CL plus sign", "POST / HTTP/1.1\r\n\(h)Content-Length: +5\r\n\r\n"),
    bad(400, "CL hex", "POST / HTTP/1.1\r\n\(h)Content-Length: 0x5\r\n\r\n"),
    bad(400, "CL inner space", "POST / HTTP/1.1\r\n\(h)Content-Length: 5 5\r\n\r\n"),
    bad(400, "CL empty", "POST / HTTP/1.1\r\n\(h)Content-Length:\r\n\r\n"),
    bad(400, "CL only commas", "POST / HTTP/1.1\r\n\(h)Content-Length: ,\r\n\r\n"),
    bad(400, "CL empty member first", "POST / HTTP/1.1\r\n\(h)Content-Length: ,5\r\n\r\n"),
    bad(400, "CL empty member last", "POST / HTTP/1.1\r\n\(h)Content-Length: 5,\r\n\r\n"),
    bad(400, "CL empty member inside", "POST / HTTP/1.1\r\n\(h)Content-Length: 5, ,5\r\n\r\n"),
    bad(
        400, "CL list then a differing field",
        "POST / HTTP/1.1\r\n\(h)Content-Length: 5, 5\r\nContent-Length: 6\r\n\r\n"),
    bad(400, "CL quoted", "POST / HTTP/1.1\r\n\(h)Content-Length: \"5\"\r\n\r\n"),
    bad(400, "CL one over Int64", "POST / HTTP/1.1\r\n\(h)Content-Length: 9223372036854775808\r\n\r\n"),
    bad(400, "CL semicolon", "POST / HTTP/1.1\r\n\(h)Content-Length: 5;5\r\n\r\n"),
    bad(400, "CL overflow", "POST / HTTP/1.1\r\n\(h)Content-Length: 99999999999999999999\r\n\r\n"),
    bad(400, "CL space before colon", "POST / HTTP/1.1\r\n\(h)Content-Length : 5\r\n\r\n"),
    bad(400, "TE not chunked", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: gzip\r\n\r\n"),
    bad(400, "TE chunked not final", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked, gzip\r\n\r\n"),
    bad(400, "TE chunked twice", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked, chunked\r\n\r\n"),
    bad(
        400, "TE chunked in two fields",
        "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
    bad(400, "TE chunked with parameter", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked;a=b\r\n\r\n"),
    bad(400, "TE look-alike", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: xchunked\r\n\r\n"),
    bad(400, "TE with junk", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding: chunked x\r\n\r\n"),
    bad(400, "TE empty", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding:\r\n\r\n"),
    bad(400, "TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    bad(400, "TE space before colon", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding : chunked\r\n\r\n"),
    bad(400, "TE obs-fold", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding:\r\n chunked\r\n\r\n"),
    bad(400, "TE with vertical tab", "POST / HTTP/1.1\r\n\(h)Transfer-Encoding:\u{b}chunked\r\n\r\n"),
]

@Suite struct RequestParserTests {
    @Test(arguments: requestCases)
    func corpus(_ c: RequestCase) {
        let input = bytes(c.raw)
        let whole = runRequest(input)
        let split = runRequest(input, cuts: byteCuts(input.count))
        #expect(whole == split, "whole and one byte at a time differ")
        if let status = c.status {
            #expect(whole == .status(status))
        } else if case .request(let r) = whole {
            #expect(c.check(r), "\(r)")
        } else {
            Issue.record("expected a request, got \(whole)")
        }
    }

    @Test func incompleteHeadNeedsMore() {
        #expect(runRequest(bytes("GET / HTTP/1.1\r\nHost: a\r\n")) == .needMore)
        #expect(runRequest(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r")) == .needMore)
    }

    @Test func fieldArrayCapacityLimitsFields() {
        let input = bytes("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n")
        let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 2)
        defer { fields.deallocate() }
        let r = input.withUnsafeBytes { HTTPRequestParser.parse($0, fields: fields, limits: HTTPLimits()) }
        #expect(r == .failure(HTTPError(status: 431, reason: "Request Header Fields Too Large")))
    }

    @Test func limitsAreHonoured() {
        let limits = HTTPLimits(maxHeadBytes: 64, maxTargetBytes: 4, maxFields: 1)
        #expect(runRequest(bytes("GET /abc HTTP/1.1\r\nHost: a\r\n\r\n"), limits: limits).isRequest)
        #expect(runRequest(bytes("GET /abcd HTTP/1.1\r\nHost: a\r\n\r\n"), limits: limits) == .status(414))
        #expect(runRequest(bytes("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n"), limits: limits) == .status(431))
        let long = bytes("GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "y", count: 40) + "\r\n\r\n")
        #expect(runRequest(long, limits: limits) == .status(431))
        #expect(runRequest(long, limits: limits, cuts: byteCuts(long.count)) == .status(431))
    }

    @Test func headScannerResumesAndRepeats() {
        var scanner = HeadScanner()
        let input = bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY")
        input.withUnsafeBytes { b in
            #expect(scanner.scan(UnsafeRawBufferPointer(rebasing: b[0..<26]), limits: HTTPLimits()) == .needMore)
            #expect(scanner.scan(b, limits: HTTPLimits()) == .complete(27))
            #expect(scanner.scan(b, limits: HTTPLimits()) == .complete(27))
            scanner.reset()
            #expect(scanner.scan(UnsafeRawBufferPointer(rebasing: b[0..<10]), limits: HTTPLimits()) == .needMore)
        }
    }
}

extension Outcome {
    var isRequest: Bool {
        if case .request = self { return true }
        return false
    }
}
