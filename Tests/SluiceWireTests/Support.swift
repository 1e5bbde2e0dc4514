@testable import SluiceWire

/// What feeding a message through the scanner and a parser led to, in plain values.
enum Outcome: Equatable, CustomStringConvertible {
    case request(RequestSummary)
    case response(ResponseSummary)
    case status(UInt16)
    case needMore

    var description: String {
        switch self {
        case .request(let r): return "request(\(r))"
        case .response(let r): return "response(\(r))"
        case .status(let s): return "status(\(s))"
        case .needMore: return "needMore"
        }
    }
}

struct RequestSummary: Equatable {
    var method: HTTPMethod
    var methodText: String
    var target: String
    var path: String
    var minor: UInt8
    var host: String?
    var contentLength: Int64?
    var chunked: Bool
    var close: Bool
    var keepAlive: Bool
    var connectionUpgrade: Bool
    var upgrade: String?
    var expectContinue: Bool
    var fields: [String]
    var headLength: Int32
    var bodyKind: BodyKind
}

struct ResponseSummary: Equatable {
    var minor: UInt8
    var status: UInt16
    var contentLength: Int64?
    var chunked: Bool
    var close: Bool
    var keepAlive: Bool
    var upgrade: Bool
    var fields: [String]
    var headLength: Int32
    var head: HTTPResponseHead
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func text(_ b: UnsafeRawBufferPointer, _ r: Range<Int32>) -> String {
    precondition(r.lowerBound >= 0 && Int(r.upperBound) <= b.count)
    return String(decoding: b[Int(r.lowerBound)..<Int(r.upperBound)], as: UTF8.self)
}

func fieldLines(_ b: UnsafeRawBufferPointer, _ f: UnsafeMutableBufferPointer<HTTPField>, _ n: Int32) -> [String] {
    (0..<Int(n)).map { "\(text(b, f[$0].name)): \(text(b, f[$0].value))" }
}

/// Runs `HeadScanner` over `input` whole, or growing one byte at a time (or at the given
/// cut points), as a connection would after each read.
func scanHead(_ input: [UInt8], limits: HTTPLimits, cuts: [Int]?) -> HeadScan {
    var scanner = HeadScanner()
    guard let cuts else {
        return input.withUnsafeBytes { scanner.scan($0, limits: limits) }
    }
    for cut in cuts + [input.count] where cut > 0 {
        let r = input.withUnsafeBytes { scanner.scan(UnsafeRawBufferPointer(rebasing: $0[0..<cut]), limits: limits) }
        if r != .needMore { return r }
    }
    return .needMore
}

func byteCuts(_ n: Int) -> [Int] { Array(0...n) }

/// Scanner then request parser, the head copied into a buffer of exactly its length.
func runRequest(_ input: [UInt8], limits: HTTPLimits = HTTPLimits(), cuts: [Int]? = nil) -> Outcome {
    switch scanHead(input, limits: limits, cuts: cuts) {
    case .needMore: return .needMore
    case .tooLarge: return .status(431)
    case .complete(let n):
        let head = Array(input[0..<Int(n)])
        let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 256)
        defer { fields.deallocate() }
        return head.withUnsafeBytes { b in
            switch HTTPRequestParser.parse(b, fields: fields, limits: limits) {
            case .failure(let e): return .status(e.status)
            case .success(let h):
                precondition(h.headLength == n)
                return .request(
                    RequestSummary(
                        method: h.method, methodText: text(b, h.methodRange), target: text(b, h.target),
                        path: text(b, h.path), minor: h.minorVersion, host: h.host.map { text(b, $0) },
                        contentLength: h.contentLength, chunked: h.chunked, close: h.connectionClose,
                        keepAlive: h.connectionKeepAlive, connectionUpgrade: h.connectionUpgrade,
                        upgrade: h.upgrade.map { text(b, $0) }, expectContinue: h.expectContinue,
                        fields: fieldLines(b, fields, h.fieldCount), headLength: h.headLength, bodyKind: h.bodyKind))
            }
        }
    }
}

/// Scanner then response parser.
func runResponse(_ input: [UInt8], limits: HTTPLimits = HTTPLimits(), cuts: [Int]? = nil) -> Outcome {
    switch scanHead(input, limits: limits, cuts: cuts) {
    case .needMore: return .needMore
    case .tooLarge: return .status(502)
    case .complete(let n):
        let head = Array(input[0..<Int(n)])
        let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 256)
        defer { fields.deallocate() }
        return head.withUnsafeBytes { b in
            switch HTTPResponseParser.parse(b, fields: fields, limits: limits) {
            case .failure(let e): return .status(e.status)
            case .success(let h):
                return .response(
                    ResponseSummary(
                        minor: h.minorVersion, status: h.status, contentLength: h.contentLength,
                        chunked: h.chunked, close: h.connectionClose, keepAlive: h.connectionKeepAlive,
                        upgrade: h.upgrade, fields: fieldLines(b, fields, h.fieldCount), headLength: h.headLength,
                        head: h))
            }
        }
    }
}

/// Feeds a body through one `ChunkedScanner` in pieces cut at `cuts`; returns the offset of
/// the end in `input`, or nil for an error, or -1 when the scanner wants more.
func runChunked(_ input: [UInt8], cuts: [Int]) -> Int? {
    var scanner = ChunkedScanner()
    var start = 0
    for cut in cuts + [input.count] where cut >= start {
        let r = input.withUnsafeBytes { scanner.scan(UnsafeRawBufferPointer(rebasing: $0[start..<cut])) }
        switch r {
        case .consumed(let n):
            precondition(Int(n) == cut - start)
        case .end(let n):
            precondition(n >= 0 && Int(n) <= cut - start)
            return start + Int(n)
        case .error(let e):
            precondition(e.status == 400)
            return nil
        }
        start = cut
    }
    return -1
}

/// A small deterministic generator (SplitMix64), so random tests repeat exactly.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
