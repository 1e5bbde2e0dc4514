import Testing

@testable import SluiceWire

/// Heads with many fields and many Connection tokens, the writer's output checked against a
/// plain model of RFC 9110 §7.6.1 written with strings.
@Suite struct HopByHopTests {
    static let limits = HTTPLimits(maxHeadBytes: 1 << 17, maxTargetBytes: 8192, maxFields: 1000)

    /// Parses `raw` (a request, or a response when `response`) with room for 1000 fields and
    /// writes it on; nil when it does not parse or the writer refuses.
    static func rewrite(_ raw: String, response: Bool) -> String? {
        let input = bytes(raw)
        let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 1000)
        defer { fields.deallocate() }
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 18, alignment: 1)
        defer { out.deallocate() }
        return input.withUnsafeBytes { b -> String? in
            let n: Int?
            if response {
                guard case .success(let head) = HTTPResponseParser.parse(b, fields: fields, limits: limits) else {
                    return nil
                }
                n = HTTPHeadWriter.writeResponse(
                    head, from: b, fields: UnsafeBufferPointer(fields), close: false, http10KeepAlive: false,
                    upgrading: false, extraFields: nil, into: out)
            } else {
                guard case .success(let head) = HTTPRequestParser.parse(b, fields: fields, limits: limits) else {
                    return nil
                }
                n = bytes("c").withUnsafeBytes { c in
                    bytes("http").withUnsafeBytes { p in
                        HTTPHeadWriter.writeRequest(
                            head, from: b, fields: UnsafeBufferPointer(fields), pathOverride: nil, clientAddress: c,
                            proto: p, port: 80, upgrading: false, into: out)
                    }
                }
            }
            return n.map { String(decoding: out[0..<$0], as: UTF8.self) }
        }
    }

    /// The field lines the writer should keep from `lines`, in order, by the model: fixed
    /// hop-by-hop names dropped, then every field a Connection token names (ASCII case
    /// ignored), except Content-Length and Transfer-Encoding.
    static func expectedLines(_ lines: [(String, String)], response: Bool) -> [String] {
        var tokens = Set<String>()
        for (name, value) in lines where name.lowercased() == "connection" {
            for token in value.split(separator: ",", omittingEmptySubsequences: true) {
                let t = token.trimmingOWS.lowercased()
                if !t.isEmpty { tokens.insert(t) }
            }
        }
        var always: Set<String> = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"]
        if !response {
            always.formUnion(["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"])
        }
        return lines.compactMap { name, value in
            let lower = name.lowercased()
            if always.contains(lower) { return nil }
            if lower != "content-length" && lower != "transfer-encoding" && tokens.contains(lower) { return nil }
            return "\(name): \(value)"
        }
    }

    /// The field lines of a written head: after the Host line of a request up to its
    /// X-Forwarded-For, or after a response's status line.
    static func writtenLines(_ written: String, response: Bool) -> [String] {
        var lines = written.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeFirst(response ? 1 : 2)
        if !response, let end = lines.firstIndex(where: { $0.hasPrefix("X-Forwarded-For: ") }) {
            lines.removeSubrange(end...)
        }
        return lines.filter { !$0.isEmpty }
    }

    static func head(_ lines: [(String, String)], response: Bool) -> String {
        var raw = response ? "HTTP/1.1 200 OK\r\n" : "GET / HTTP/1.1\r\nHost: a\r\n"
        for (name, value) in lines { raw += "\(name): \(value)\r\n" }
        return raw + "\r\n"
    }

    @Test(arguments: [false, true])
    func manyFieldsManyTokens(response: Bool) throws {
        // 300 fields (three batches of the table), a Connection field every 25, each naming
        // every third of 60 names (in a different case each time), with junk among them.
        var lines: [(String, String)] = []
        for i in 0..<300 {
            if i % 25 == 0 {
                let named = stride(from: i % 3, to: 60, by: 3).map { n in
                    n % 2 == 0 ? "x-field-\(n)" : "X-FIELD-\(n)"
                }
                lines.append(
                    ("Connection", (named + ["junk-\(i)", "keep-alive", "", " x-none "]).joined(separator: ", ")))
            }
            lines.append(("X-Field-\(i % 60)", "v\(i)"))
        }
        lines.append(("Content-Length", "0"))
        let written = try #require(Self.rewrite(Self.head(lines, response: response), response: response))
        let kept = Self.writtenLines(written, response: response)
        #expect(kept == Self.expectedLines(lines, response: response))
        // Connection fields at i = 0 (n ≡ 0), 25 (n ≡ 1) and 50 (n ≡ 2) name every name.
        #expect(kept == ["Content-Length: 0"])
    }

    @Test func fieldsNotNamedSurviveAmongManyTokens() throws {
        let tokens = (0..<2000).map { "t\($0)" }.joined(separator: ",")
        var lines: [(String, String)] = [("Connection", tokens)]
        for i in 0..<150 { lines.append(("T\(i * 7 + 3000)", "\(i)")) }
        lines.append(("t1999", "named"))
        lines.append(("T5", "named"))
        lines.append(("Connection", "\"t9, quoted\", close"))
        let written = try #require(Self.rewrite(Self.head(lines, response: false), response: false))
        let kept = Self.writtenLines(written, response: false)
        #expect(kept == (0..<150).map { "T\($0 * 7 + 3000): \($0)" })
    }

    @Test(arguments: [false, true])
    func randomHeadsMatchTheModel(response: Bool) throws {
        var g = SplitMix(state: response ? 0xb0b : 0xa11ce)
        let pool = [
            "X-A", "x-b", "X-Long-Name-\(String(repeating: "q", count: 40))", "Accept", "Cookie", "Server",
            "Expect", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Connection", "Content-Length",
            "X-Forwarded-For", "X-Forwarded-Host", "Via", "^_`|~", "a", "B",
        ]
        for _ in 0..<300 {
            var lines: [(String, String)] = []
            var hasLength = false
            for _ in 0..<Int.random(in: 0...260, using: &g) {
                if Int.random(in: 0...9, using: &g) == 0 {
                    let value = (0..<Int.random(in: 0...40, using: &g)).map { _ in
                        let name = pool.randomElement(using: &g)!
                        return Bool.random(using: &g) ? name.uppercased() : name.lowercased()
                    }.joined(separator: Bool.random(using: &g) ? "," : " ,\t")
                    lines.append(("Connection", value))
                } else {
                    var name = pool.randomElement(using: &g)!
                    if name == "Content-Length" {
                        guard !hasLength else { continue }
                        hasLength = true
                    }
                    if Bool.random(using: &g) { name = name.uppercased() }
                    lines.append((name, name.lowercased() == "content-length" ? "1" : "v"))
                }
            }
            let raw = Self.head(lines, response: response)
            guard let written = Self.rewrite(raw, response: response) else {
                Issue.record("refused: \(raw)")
                continue
            }
            #expect(
                Self.writtenLines(written, response: response) == Self.expectedLines(lines, response: response),
                "\(raw)")
        }
    }

    @Test func hashFoldsOnlyLetters() {
        // '^' | 0x20 is '~': the two must not be taken for the same name.
        let written = Self.rewrite(
            Self.head([("Connection", "^"), ("~", "1"), ("^", "2")], response: true), response: true)
        #expect(written == "HTTP/1.1 200 OK\r\n~: 1\r\n\r\n")
    }
}

extension Substring {
    fileprivate var trimmingOWS: Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}
