import Testing

@testable import SluiceWire

/// Random valid requests: parsed whole and at random cuts, then written for the upstream and
/// parsed again; what the generator put in must come out each time.
@Suite struct RoundTripTests {
    struct Generated {
        var raw: String
        var method: String
        var path: String
        var host: String?
        var contentLength: Int64?
        var chunked: Bool
        var fields: [String]
        var endToEnd: [String]
    }

    static let tchars = Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    static let pathChars = Array("abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%")
    static let hostChars = Array("abcdefghijklmnopqrstuvwxyz0123456789-.")
    static let valueChars = Array("abcdefghijklmnopqrstuvwxyz ABC\t0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

    static func pick(_ chars: [Character], _ n: Int, _ g: inout SplitMix) -> String {
        String((0..<n).map { _ in chars.randomElement(using: &g)! })
    }

    static func randomCase(_ s: String, _ g: inout SplitMix) -> String {
        String(s.map { Bool.random(using: &g) ? Character($0.uppercased()) : $0 })
    }

    static func generate(_ g: inout SplitMix) -> Generated {
        let method = ["GET", "POST", "PUT", "DELETE", "PATCH", "X-" + pick(tchars, 3, &g)].randomElement(using: &g)!
        let path = "/" + pick(pathChars, Int.random(in: 0...30, using: &g), &g)
        let minor = Int.random(in: 0...4, using: &g) == 0 ? 0 : 1
        var host: String? = pick(hostChars, Int.random(in: 1...20, using: &g), &g)
        if Bool.random(using: &g) { host! += ":\(Int.random(in: 0...65535, using: &g))" }
        if minor == 0 && Bool.random(using: &g) { host = nil }
        var lines: [(String, String)] = []
        if let host { lines.append(("Host", host)) }
        var contentLength: Int64?
        var chunked = false
        switch Int.random(in: 0...2, using: &g) {
        case 1:
            contentLength = Int64.random(in: 0...Int64(1) << 40, using: &g)
            lines.append((randomCase("content-length", &g), "\(contentLength!)"))
        case 2 where minor == 1:
            chunked = true
            lines.append((randomCase("transfer-encoding", &g), Bool.random(using: &g) ? "chunked" : "gzip, chunked"))
        default: break
        }
        var endToEnd: [String] = []
        for _ in 0..<Int.random(in: 0...12, using: &g) {
            let name = "X-" + pick(tchars, Int.random(in: 1...12, using: &g), &g)
            var value = pick(valueChars, Int.random(in: 0...40, using: &g), &g)
            while value.first == " " || value.first == "\t" { value.removeFirst() }
            while value.last == " " || value.last == "\t" { value.removeLast() }
            lines.append((name, value))
            endToEnd.append("\(name): \(value)")
        }
        if Bool.random(using: &g) { lines.append(("Connection", "keep-alive")) }
        lines.shuffle(using: &g)
        var raw = "\(method) \(path) HTTP/1.\(minor)\r\n"
        for (name, value) in lines {
            let ows = [" ", "", "\t", "  "]
            raw += "\(name):\(ows.randomElement(using: &g)!)\(value)\(ows.randomElement(using: &g)!)\r\n"
        }
        raw += "\r\n"
        // Fields the writer keeps, in their order.
        let kept = lines.filter { !["host", "connection"].contains($0.0.lowercased()) }.map { "\($0.0): \($0.1)" }
        return Generated(
            raw: raw, method: method, path: path, host: host, contentLength: contentLength, chunked: chunked,
            fields: lines.map { "\($0.0): \($0.1)" }, endToEnd: kept)
    }

    @Test func randomRequestsRoundTrip() throws {
        var g = SplitMix(state: 0x5eed)
        for _ in 0..<2000 {
            let gen = Self.generate(&g)
            let input = bytes(gen.raw + "NEXT")
            let cuts = (0..<3).map { _ in Int.random(in: 0...input.count, using: &g) }.sorted()
            let whole = runRequest(input)
            #expect(whole == runRequest(input, cuts: cuts), "\(gen.raw)")
            guard case .request(let r) = whole else {
                Issue.record("\(whole) for \(gen.raw)")
                continue
            }
            #expect(r.methodText == gen.method && r.path == gen.path && r.host == gen.host)
            #expect(r.contentLength == gen.contentLength && r.chunked == gen.chunked && r.fields == gen.fields)
            #expect(Int(r.headLength) == gen.raw.utf8.count)

            let written = try #require(rewriteRequest(gen.raw, client: "10.0.0.1", proto: "http", port: 8080))
            guard case .request(let again) = runRequest(bytes(written)) else {
                Issue.record("rewritten head does not parse: \(written)")
                continue
            }
            #expect(again.methodText == gen.method && again.path == gen.path && again.host == gen.host)
            #expect(again.contentLength == gen.contentLength && again.chunked == gen.chunked)
            let forwarded = again.fields.filter { !$0.lowercased().hasPrefix("host:") && !$0.hasPrefix("X-Forwarded-") }
            #expect(forwarded == gen.endToEnd, "\(written)")
            #expect(again.fields.contains("X-Forwarded-For: 10.0.0.1"))
        }
    }
}
