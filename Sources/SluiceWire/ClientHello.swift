/// What the first bytes of a TLS connection say.
public enum ClientHelloResult: Equatable, Sendable {
    /// A valid prefix of a ClientHello: read more and call again.
    case needMore
    /// Definitely not a TLS handshake: first byte not 22, a bad version, bad lengths, a
    /// record of another type before the hello is whole, or a malformed ClientHello.
    case notTLS
    /// The ClientHello's handshake length exceeds `maxBytes`.
    case tooLarge
    /// A whole, well-formed ClientHello.
    case hello(ClientHelloInfo)
}

/// What a ClientHello says about where the connection should go.
public struct ClientHelloInfo: Equatable, Sendable {
    /// host_name from server_name, as bytes in `scratch` (nil: no SNI extension, or one whose
    /// first host_name is empty, longer than 255 bytes or not made of letters, digits, '-',
    /// '.' and '_'). The bytes are as sent: case and any trailing dot are not changed.
    public var serverName: Range<Int32>?
    /// The ALPN extension's ProtocolNameList (without its 2-byte length) in `scratch`, nil if
    /// absent. Never empty when present; `ClientHelloParser.forEachALPN` walks it.
    public var alpn: Range<Int32>?
    /// TLS record bytes that carried the whole ClientHello (what was consumed from the
    /// input): the end of the record holding its last byte.
    public var recordBytes: Int32

    public init(serverName: Range<Int32>?, alpn: Range<Int32>?, recordBytes: Int32) {
        self.serverName = serverName
        self.alpn = alpn
        self.recordBytes = recordBytes
    }
}
