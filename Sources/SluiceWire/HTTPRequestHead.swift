/// A parsed request head: offsets into the buffer given to `HTTPRequestParser.parse`, which
/// stays owned by the caller and must outlive any use of the ranges.
public struct HTTPRequestHead: Equatable, Sendable {
    public var method: HTTPMethod
    public var methodRange: Range<Int32>
    /// The request-target as sent: origin-form `/path?q`, absolute-form, authority-form
    /// (CONNECT only) or `*` (OPTIONS only).
    public var target: Range<Int32>
    /// The origin-form part of the target. For absolute-form: from the end of the authority
    /// (empty, or starting with '?', when the target has no path: the writer then puts "/"
    /// in front). For authority-form and `*`: the whole target.
    public var path: Range<Int32>
    /// 0 or 1: HTTP/1.0 or HTTP/1.1.
    public var minorVersion: UInt8
    /// The authority of an absolute-form or authority-form target if any, else the Host
    /// field value; nil only for an HTTP/1.0 request without Host.
    public var host: Range<Int32>?
    /// The length every Content-Length field (and every member of a list in one) agrees on;
    /// nil when absent. The writer forwards it as one `Content-Length: N` line.
    public var contentLength: Int64?
    /// Transfer-Encoding ends in chunked (always so when present: other final codings are
    /// refused with 400).
    public var chunked: Bool
    public var connectionClose: Bool
    public var connectionKeepAlive: Bool
    public var connectionUpgrade: Bool
    /// The first Upgrade field value.
    public var upgrade: Range<Int32>?
    /// `Expect: 100-continue` (case-insensitive) was sent; any other expectation is ignored.
    public var expectContinue: Bool
    /// Fields written to the caller's array, in order.
    public var fieldCount: Int32
    /// Bytes of the head, final empty line included.
    public var headLength: Int32

    public init(
        method: HTTPMethod, methodRange: Range<Int32>, target: Range<Int32>, path: Range<Int32>,
        minorVersion: UInt8, host: Range<Int32>?, contentLength: Int64?, chunked: Bool,
        connectionClose: Bool, connectionKeepAlive: Bool, connectionUpgrade: Bool,
        upgrade: Range<Int32>?, expectContinue: Bool, fieldCount: Int32, headLength: Int32
    ) {
        self.method = method
        self.methodRange = methodRange
        self.target = target
        self.path = path
        self.minorVersion = minorVersion
        self.host = host
        self.contentLength = contentLength
        self.chunked = chunked
        self.connectionClose = connectionClose
        self.connectionKeepAlive = connectionKeepAlive
        self.connectionUpgrade = connectionUpgrade
        self.upgrade = upgrade
        self.expectContinue = expectContinue
        self.fieldCount = fieldCount
        self.headLength = headLength
    }
}

extension HTTPRequestHead {
    /// How the request body ends (RFC 9112 §6.3): `.chunked`, `.length(n)` for n > 0, else
    /// `.none`. A request never reads until close.
    public var bodyKind: BodyKind {
        if chunked { return .chunked }
        if let n = contentLength, n > 0 { return .length(n) }
        return .none
    }
}
