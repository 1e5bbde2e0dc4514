import Testing

@testable import SluiceWire

/// Runs `PathNormalizer.normalize` on `input` with `capacity` bytes of output (by default
/// `maxOutputCount`), inside a larger buffer whose bytes past `capacity` must stay untouched.
func normalizePath(_ input: [UInt8], capacity: Int? = nil) -> [UInt8]? {
    let room = capacity ?? PathNormalizer.maxOutputCount(input.count)
    let guardBytes = 16
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: room + guardBytes, alignment: 1)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0xA5)
    let n = input.withUnsafeBytes {
        PathNormalizer.normalize($0, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<room]))
    }
    #expect(buffer[room...].allSatisfy { $0 == 0xA5 }, "wrote past the output")
    guard let n else { return nil }
    #expect(n >= 0 && n <= room)
    return Array(buffer[0..<n])
}

func normalizePath(_ input: String, capacity: Int? = nil) -> String? {
    normalizePath(bytes(input), capacity: capacity).map { String(decoding: $0, as: UTF8.self) }
}

/// RFC 3986 §5.2.4 and §6.2.2 written plainly with strings: the model the one-pass code is
/// checked against.
func modelNormalize(_ input: String) -> String? {
    let parts = input.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    let path = Array(parts[0].utf8)
    let query = parts.count > 1 ? "?" + parts[1] : ""
    guard path.isEmpty || path[0] == UInt8(ascii: "/") else { return nil }
    var decoded: [UInt8] = []
    var i = 0
    while i < path.count {
        guard path[i] == UInt8(ascii: "%") else {
            decoded.append(path[i])
            i += 1
            continue
        }
        guard i + 2 < path.count, let v = UInt8(String(decoding: path[(i + 1)...(i + 2)], as: UTF8.self), radix: 16),
            path[i + 1] != UInt8(ascii: "+"), path[i + 1] != UInt8(ascii: "-")
        else { return nil }
        let c = Character(UnicodeScalar(v))
        if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c)) {
            decoded.append(v)
        } else {
            decoded += Array(String(format2: v).utf8)
        }
        i += 3
    }
    var stack: [String] = []
    var trailing = false
    for segment in String(decoding: decoded, as: UTF8.self).split(separator: "/", omittingEmptySubsequences: true) {
        switch segment {
        case ".": trailing = true
        case "..":
            _ = stack.popLast()
            trailing = true
        default:
            stack.append(String(segment))
            trailing = false
        }
    }
    if decoded.last == UInt8(ascii: "/") { trailing = true }
    return "/" + stack.joined(separator: "/") + (trailing && !stack.isEmpty ? "/" : "") + query
}

extension String {
    /// `%XX` with upper-case hex digits.
    fileprivate init(format2 v: UInt8) {
        let digits = Array("0123456789ABCDEF")
        self = "%" + String(digits[Int(v >> 4)]) + String(digits[Int(v & 15)])
    }
}

struct PathCase: Sendable, CustomTestStringConvertible {
    var input: String
    var output: String?
    var testDescription: String { "\(input) → \(output ?? "invalid")" }
}

let pathCases: [PathCase] = [
    // The bypasses the normaliser exists for.
    PathCase(input: "/admin", output: "/admin"),
    PathCase(input: "/pub/../admin", output: "/admin"),
    PathCase(input: "/pub/%2e%2e/admin", output: "/admin"),
    PathCase(input: "/pub/%2E%2E/admin", output: "/admin"),
    PathCase(input: "/pub/.%2e/admin", output: "/admin"),
    PathCase(input: "/pub/%2E./admin", output: "/admin"),
    PathCase(input: "//admin", output: "/admin"),
    PathCase(input: "/./admin", output: "/admin"),
    PathCase(input: "/%2e/admin", output: "/admin"),
    PathCase(input: "/pub//..//admin", output: "/admin"),
    // Dot segments.
    PathCase(input: "/..", output: "/"),
    PathCase(input: "/../..", output: "/"),
    PathCase(input: "/../admin", output: "/admin"),
    PathCase(input: "/a/b/../../../c", output: "/c"),
    PathCase(input: "/a/b/c/./../../g", output: "/a/g"),
    PathCase(input: "/a/.", output: "/a/"),
    PathCase(input: "/a/..", output: "/"),
    PathCase(input: "/a/b/..", output: "/a/"),
    PathCase(input: "/a/./b/./c", output: "/a/b/c"),
    PathCase(input: "/a/./", output: "/a/"),
    PathCase(input: "/a//../b", output: "/b"),
    PathCase(input: "/.", output: "/"),
    PathCase(input: "/./", output: "/"),
    // Not dot segments.
    PathCase(input: "/...", output: "/..."),
    PathCase(input: "/.../a", output: "/.../a"),
    PathCase(input: "/a..", output: "/a.."),
    PathCase(input: "/..a/b", output: "/..a/b"),
    PathCase(input: "/.a", output: "/.a"),
    PathCase(input: "/%2e%2e%2e", output: "/..."),
    PathCase(input: "/..;/admin", output: "/..;/admin"),
    PathCase(input: "/a\\..\\b", output: "/a\\..\\b"),
    // Slashes.
    PathCase(input: "/", output: "/"),
    PathCase(input: "", output: "/"),
    PathCase(input: "//", output: "/"),
    PathCase(input: "///a///b///", output: "/a/b/"),
    PathCase(input: "/a/", output: "/a/"),
    PathCase(input: "/a//", output: "/a/"),
    // Escapes: unreserved decoded, the rest kept with upper-case hex.
    PathCase(input: "/%41%42c", output: "/ABc"),
    PathCase(input: "/%7e%7E%2d%5f%30%39%61%7a", output: "/~~-_09az"),
    PathCase(input: "/a%2fb", output: "/a%2Fb"),
    PathCase(input: "/a%2F..%2Fadmin", output: "/a%2F..%2Fadmin"),
    PathCase(input: "/pub/..%2Fadmin", output: "/pub/..%2Fadmin"),
    PathCase(input: "/pub/%2e%2e%2fadmin", output: "/pub/..%2Fadmin"),
    PathCase(input: "/%2F", output: "/%2F"),
    PathCase(input: "/%5c%3f%23", output: "/%5C%3F%23"),
    PathCase(input: "/%25", output: "/%25"),
    PathCase(input: "/%252e%252e/a", output: "/%252e%252e/a"),
    PathCase(input: "/%c3%A9", output: "/%C3%A9"),
    PathCase(input: "/%20%00%ff", output: "/%20%00%FF"),
    PathCase(input: "/caf\u{e9}", output: "/caf\u{e9}"),
    PathCase(input: "/a;b=../c", output: "/a;b=../c"),
    // The query is kept as it is.
    PathCase(input: "/a/../b?x=/../y", output: "/b?x=/../y"),
    PathCase(input: "/a?%zz%2e", output: "/a?%zz%2e"),
    PathCase(input: "?q", output: "/?q"),
    PathCase(input: "?", output: "/?"),
    PathCase(input: "/?", output: "/?"),
    PathCase(input: "/a/..?q", output: "/?q"),
    PathCase(input: "//a//?b//", output: "/a/?b//"),
    PathCase(input: "/a%2e?x", output: "/a.?x"),
    PathCase(input: "/%2e%2e?/..", output: "/?/.."),
    // Invalid.
    PathCase(input: "/%", output: nil),
    PathCase(input: "/%2", output: nil),
    PathCase(input: "/%zz", output: nil),
    PathCase(input: "/%g0", output: nil),
    PathCase(input: "/%0g", output: nil),
    PathCase(input: "/a%2?x", output: nil),
    PathCase(input: "/a%?x", output: nil),
    PathCase(input: "/%%41", output: nil),
    PathCase(input: "/%+1", output: nil),
    PathCase(input: "*", output: nil),
    PathCase(input: "a/b", output: nil),
    PathCase(input: "example.com:443", output: nil),
    PathCase(input: "%2Fadmin", output: nil),
]

@Suite struct PathNormalizerTests {
    @Test(arguments: pathCases)
    func table(_ c: PathCase) {
        #expect(normalizePath(c.input) == c.output)
        #expect(modelNormalize(c.input) == c.output, "the model disagrees")
    }

    @Test(arguments: pathCases.compactMap(\.output))
    func outputIsAFixedPoint(_ normal: String) {
        #expect(normalizePath(normal) == normal)
    }

    /// Every prefix of every case, as a path cut short one byte at a time would be: never a
    /// crash, the model's answer each time, and a result that normalises to itself.
    @Test func everyPrefix() {
        for c in pathCases {
            let input = bytes(c.input)
            for cut in 0...input.count {
                let prefix = String(decoding: input[0..<cut], as: UTF8.self)
                guard prefix.utf8.count == cut else { continue }  // cut inside a UTF-8 sequence
                let got = normalizePath(prefix)
                #expect(got == modelNormalize(prefix), "\(prefix)")
                if let got { #expect(normalizePath(got) == got) }
            }
        }
    }

    @Test func outputRoom() {
        for c in pathCases {
            guard let normal = c.output else { continue }
            let input = bytes(c.input)
            // Too little room for the result is always refused.
            for room in 0..<normal.utf8.count {
                #expect(normalizePath(input, capacity: room) == nil, "\(c.input) in \(room)")
            }
            // Room for the input (plus the "/" an empty path gains) is always enough.
            let enough = max(input.count, normal.utf8.count)
            #expect(normalizePath(input, capacity: enough).map { String(decoding: $0, as: UTF8.self) } == normal)
        }
        // Without dot segments the result's own length is enough.
        #expect(normalizePath("//a//b%2f?q", capacity: 9) == "/a/b%2F?q")
        #expect(normalizePath("//a//b%2f?q", capacity: 8) == nil)
    }

    @Test func longPaths() {
        let deep = String(repeating: "/seg", count: 4096)
        #expect(normalizePath(deep) == deep)
        let climbing = String(repeating: "/..", count: 5000) + "/admin"
        #expect(normalizePath(climbing) == "/admin")
        let slashes = "/" + String(repeating: "/", count: 20000) + "a" + String(repeating: "/", count: 20000)
        #expect(normalizePath(slashes) == "/a/")
        let up = String(repeating: "/a", count: 3000) + String(repeating: "/..", count: 2999) + "/%2E%2e/b"
        #expect(normalizePath(up) == "/b")
        let escapes = "/" + String(repeating: "%2e", count: 3000)
        #expect(normalizePath(escapes) == "/" + String(repeating: ".", count: 3000))
        let long = String(repeating: "/x", count: 50000)
        #expect(normalizePath(bytes(long), capacity: 99_999) == nil)
        #expect(normalizePath(bytes(long), capacity: 100_000).map { $0.count } == 100_000)
    }

    @Test func randomPathsMatchTheModel() {
        var g = SplitMix(state: 0x9a7e)
        let pieces = [
            "/", "/", "//", ".", "..", "a", "b", "%2e", "%2E", "%2f", "%2F", "%41", "%7e", "%c3", "%", "%2", "%zz",
            "?", "~", ";", "%25", "%5C", "\\",
        ]
        for _ in 0..<20000 {
            var path = Bool.random(using: &g) || Int.random(in: 0...20, using: &g) > 0 ? "/" : ""
            for _ in 0..<Int.random(in: 0...14, using: &g) { path += pieces.randomElement(using: &g)! }
            let got = normalizePath(path)
            #expect(got == modelNormalize(path), "\(path)")
            if let got {
                #expect(normalizePath(got) == got, "\(path) → \(got) is not a fixed point")
            }
        }
    }

    @Test func nothingButThePathIsTouched() {
        // Bytes the parser lets into a target, each alone in a segment and in the query.
        for b in UInt8(0x21)...UInt8(0xFF) where b != 0x7F && b != 0x23 && b != 0x25 && b != 0x2F && b != 0x3F {
            let segment = [0x2F, 0x78, b, 0x78]
            #expect(normalizePath(segment) == segment)
            let query: [UInt8] = [0x2F, 0x3F, b, 0x25, b]
            #expect(normalizePath(query) == query)
        }
    }
}
