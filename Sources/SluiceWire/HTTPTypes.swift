/// One field line of a head, as offsets into the buffer that was parsed.
public struct HTTPField: Equatable, Sendable {
    /// The field name as sent (case preserved).
    public var name: Range<Int32>
    /// The field value with leading and trailing SP/HTAB removed; may be empty.
    public var value: Range<Int32>

    public init(name: Range<Int32>, value: Range<Int32>) {
        self.name = name
        self.value = value
    }
}

/// The request method. Methods are case-sensitive: `get` is `.other`. Any token is accepted.
public enum HTTPMethod: UInt8, Sendable, BitwiseCopyable {
    case get, head, post, put, delete, options, patch, trace, connect, other
}

/// Why a head or body was refused, as the status the proxy answers with.
///
/// Request parsing yields 400, 414, 431 or 505; response parsing always yields 502; chunked
/// framing yields 400 (the proxy answers 502 when the body came from upstream).
public struct HTTPError: Error, Equatable, Sendable {
    public var status: UInt16
    public var reason: StaticString

    public init(status: UInt16, reason: StaticString) {
        self.status = status
        self.reason = reason
    }

    public static func == (a: HTTPError, b: HTTPError) -> Bool {
        guard a.status == b.status, a.reason.utf8CodeUnitCount == b.reason.utf8CodeUnitCount else { return false }
        let n = a.reason.utf8CodeUnitCount
        let pa = a.reason.utf8Start
        let pb = b.reason.utf8Start
        var i = 0
        while i < n {
            if pa[i] != pb[i] { return false }
            i += 1
        }
        return true
    }

    static var badRequest: HTTPError { HTTPError(status: 400, reason: "Bad Request") }
    static var uriTooLong: HTTPError { HTTPError(status: 414, reason: "URI Too Long") }
    static var fieldsTooLarge: HTTPError { HTTPError(status: 431, reason: "Request Header Fields Too Large") }
    static var versionNotSupported: HTTPError { HTTPError(status: 505, reason: "HTTP Version Not Supported") }
    static var badGateway: HTTPError { HTTPError(status: 502, reason: "Bad Gateway") }
}

/// How a message body ends, by RFC 9112 §6.3.
public enum BodyKind: Equatable, Sendable, BitwiseCopyable {
    /// No body bytes follow the head.
    case none
    /// Exactly this many bytes follow (never 0: a zero length is `.none`).
    case length(Int64)
    /// Chunked framing follows; `ChunkedScanner` finds its end.
    case chunked
    /// The body ends when the upstream closes (responses only).
    case untilClose
}
