/// A parsed response head; `fieldCount` fields were written to the caller's array, as
/// offsets into the parsed buffer.
public struct HTTPResponseHead: Equatable, Sendable {
    /// 0 or 1: HTTP/1.0 or HTTP/1.1.
    public var minorVersion: UInt8
    /// 100...999.
    public var status: UInt16
    /// The length every Content-Length field (and every member of a list in one) agrees on;
    /// nil when absent. The writer forwards it as one `Content-Length: N` line.
    public var contentLength: Int64?
    /// Transfer-Encoding ends in chunked.
    public var chunked: Bool
    public var connectionClose: Bool
    public var connectionKeepAlive: Bool
    /// Connection lists `upgrade` and an Upgrade field is present.
    public var upgrade: Bool
    public var fieldCount: Int32
    /// Bytes of the head, final empty line included.
    public var headLength: Int32
    /// Transfer-Encoding is present (its final coding may be other than chunked).
    var transferEncoding: Bool

    public init(
        minorVersion: UInt8, status: UInt16, contentLength: Int64?, chunked: Bool,
        connectionClose: Bool, connectionKeepAlive: Bool, upgrade: Bool, fieldCount: Int32, headLength: Int32
    ) {
        self.minorVersion = minorVersion
        self.status = status
        self.contentLength = contentLength
        self.chunked = chunked
        self.connectionClose = connectionClose
        self.connectionKeepAlive = connectionKeepAlive
        self.upgrade = upgrade
        self.fieldCount = fieldCount
        self.headLength = headLength
        self.transferEncoding = chunked
    }
}

extension HTTPResponseHead {
    /// How the body of this response ends (RFC 9112 §6.3), given the method of the request
    /// it answers: none after HEAD and for 1xx, 204 and 304; until close for a 2xx to CONNECT
    /// (a tunnel follows); else chunked, then Content-Length (`.none` for 0), then until close
    /// (also when Transfer-Encoding ends in a coding other than chunked).
    public func bodyKind(requestMethod: HTTPMethod) -> BodyKind {
        if requestMethod == .head || status < 200 || status == 204 || status == 304 { return .none }
        if requestMethod == .connect && status < 300 { return .untilClose }
        if chunked { return .chunked }
        if transferEncoding { return .untilClose }
        if let n = contentLength { return n > 0 ? .length(n) : .none }
        return .untilClose
    }
}
