/// Reads the ClientHello a TLS client opens with (RFC 8446 §4.1.2 and §5.1, RFC 5246 §6.2 and
/// §7.4.1.2, RFC 6066 §3, RFC 7301 §3.1), to route the connection by SNI without decrypting.
///
/// Stateless: every call re-reads the input from its first byte, so the caller keeps all it
/// has received and calls again after each read. Every outcome is decided by the bytes seen
/// so far, never by where the input happens to end, so a prefix of any input yields
/// `.needMore` or the same answer as the whole input:
///
/// | bytes                         | checked as soon as they arrive                          | else          |
/// | ----------------------------- | ------------------------------------------------------- | ------------- |
/// | record type                   | 22 (handshake)                                          | `.notTLS`     |
/// | record version                | 0x0301…0x0304; 0x0300 too in the first record           | `.notTLS`     |
/// | record length                 | 1 … 2^14 + 2048                                         | `.notTLS`     |
/// | handshake type                | 1 (ClientHello)                                         | `.notTLS`     |
/// | handshake length              | ≤ `maxBytes`, then ≥ 41 (the smallest hello)            | `.tooLarge`, `.notTLS` |
/// | hello body, field by field    | lengths inside the message, the rules below             | `.notTLS`     |
/// | last record of the hello      | whole in the input                                      | `.needMore`   |
///
/// The handshake message may be fragmented over several records; their payloads are copied
/// to `scratch` (the 4-byte handshake header left out) so that the result's ranges index
/// one contiguous body. Bytes after the hello (in its last record, or later records) are
/// not examined. Hello body rules: legacy_version 3.x; session_id ≤ 32 bytes;
/// cipher_suites of even length ≥ 2; compression_methods ≥ 1; then either nothing (an old
/// client without extensions) or an extension block filling the rest exactly, each
/// extension inside it; server_name and ALPN at most once each, well formed (see
/// `serverName` and `alpn` of `ClientHelloInfo`).
public enum ClientHelloParser {
    /// The largest record payload accepted (TLSCompressed's limit, RFC 5246 §6.2.2).
    static let maxRecordPayload = 16384 + 2048
    /// version 2, random 32, session_id 1, cipher_suites 2 + 2, compression_methods 1 + 1.
    static let minBodyBytes = 41

    enum Stop: Error {
        case needMore, notTLS
    }

    /// Parses the ClientHello at the start of `buffer` (every byte received so far; call
    /// again with more). The handshake message may span several TLS records: its body is
    /// reassembled into `scratch` (at least `maxBytes` long, owned by the caller, overwritten
    /// on every call) and the ranges of the result index `scratch`.
    ///
    /// Pure apart from writing `scratch`: no allocation, any thread. Cost is linear in the
    /// bytes given, however they are split into records.
    /// - Returns: `.needMore` for every proper prefix of a valid hello, `.notTLS` as soon as
    ///   the bytes rule TLS out, `.tooLarge` when the handshake length exceeds `maxBytes`.
    public static func parse(
        _ buffer: UnsafeRawBufferPointer,
        scratch: UnsafeMutableRawBufferPointer,
        maxBytes: Int = 16384
    ) -> ClientHelloResult {
        precondition(maxBytes >= 0 && maxBytes < 1 << 24 && scratch.count >= maxBytes, "scratch smaller than maxBytes")
        let s = Span<UInt8>(_unsafeBytes: buffer)
        let n = s.count

        var record = 0  // offset of the current record header
        var seen = 0  // handshake bytes seen: header (4) then body
        var header = 0  // the handshake header's bytes, big-endian
        var bodyLength = 0  // known once the 4 header bytes are in
        var helloEnd = -1  // end of the record holding the hello's last byte
        while true {
            // Record header, a byte at a time so that the first wrong byte decides.
            if record >= n { break }
            guard s[record] == 22 else { return .notTLS }
            if record &+ 1 >= n { break }
            guard s[record &+ 1] == 3 else { return .notTLS }
            if record &+ 2 >= n { break }
            let minor = s[record &+ 2]
            guard minor <= 4, minor >= 1 || record == 0 else { return .notTLS }
            if record &+ 4 >= n { break }
            let length = Int(s[record &+ 3]) << 8 | Int(s[record &+ 4])
            guard length >= 1, length <= Self.maxRecordPayload else { return .notTLS }

            let payload = record &+ 5
            let available = min(length, n &- payload)
            var k = 0
            while k < available && seen < 4 {
                let b = s[payload &+ k]
                guard seen > 0 || b == 1 else { return .notTLS }
                header = header << 8 | Int(b)
                seen &+= 1
                k &+= 1
                if seen == 4 {
                    bodyLength = header & 0xFF_FFFF
                    guard bodyLength <= maxBytes else { return .tooLarge }
                    guard bodyLength >= Self.minBodyBytes else { return .notTLS }
                }
            }
            if seen >= 4 {
                let take = min(bodyLength &- (seen &- 4), available &- k)
                if take > 0, let from = buffer.baseAddress, let to = scratch.baseAddress {
                    // SAFETY: payload + k + take <= n (take <= available - k); the body offset
                    // seen - 4 + take <= bodyLength <= maxBytes <= scratch.count.
                    (to + (seen &- 4)).copyMemory(from: from + (payload &+ k), byteCount: take)
                }
                seen &+= take
                if seen &- 4 == bodyLength {
                    if available == length { helloEnd = payload &+ length }
                    break
                }
            }
            if available < length { break }
            record = payload &+ length
        }
        guard seen > 4 else { return .needMore }

        let body = Span<UInt8>(_unsafeBytes: UnsafeRawBufferPointer(scratch))
        do throws(Stop) {
            var info = try Self.body(body, have: seen &- 4, total: bodyLength)
            guard helloEnd > 0 else { return .needMore }
            info.recordBytes = Int32(truncatingIfNeeded: helloEnd)
            return .hello(info)
        } catch {
            return error == .notTLS ? .notTLS : .needMore
        }
    }

    /// Iterates the ALPN protocol names: calls `body` with each name's range in `scratch`.
    /// `list` is `ClientHelloInfo.alpn` from a `.hello` parsed into the same `scratch`; the
    /// walk stops at the first name that would not fit in `list`.
    public static func forEachALPN(
        _ list: Range<Int32>,
        in scratch: UnsafeRawBufferPointer,
        _ body: (Range<Int32>) -> Void
    ) {
        guard list.lowerBound >= 0, Int(list.upperBound) <= scratch.count else { return }
        let s = Span<UInt8>(_unsafeBytes: scratch)
        var i = Int(list.lowerBound)
        let end = Int(list.upperBound)
        while i < end {
            let length = Int(s[i])
            guard length > 0, length < end &- i else { return }
            body(Int32(truncatingIfNeeded: i &+ 1)..<Int32(truncatingIfNeeded: i &+ 1 &+ length))
            i &+= 1 &+ length
        }
    }

    /// Checks the first `have` of the `total` body bytes in `b`.
    /// - Returns: the hello's SNI and ALPN (`recordBytes` left 0) when `have == total` and it
    ///   is well formed.
    /// - Throws: `.notTLS` when the bytes seen break a rule, `.needMore` when they end first.
    static func body(_ b: Span<UInt8>, have: Int, total: Int) throws(Stop) -> ClientHelloInfo {
        @inline(__always) func need(_ end: Int) throws(Stop) {
            if end > total { throw .notTLS }
            if end > have { throw .needMore }
        }
        @inline(__always) func u16(_ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i &+ 1]) }

        try need(1)
        guard b[0] == 3 else { throw .notTLS }
        var i = 2 &+ 32  // legacy_version, random
        try need(i &+ 1)
        let sessionID = Int(b[i])
        guard sessionID <= 32 else { throw .notTLS }
        i &+= 1 &+ sessionID
        try need(i &+ 2)
        let suites = u16(i)
        guard suites >= 2, suites & 1 == 0 else { throw .notTLS }
        i &+= 2 &+ suites
        try need(i &+ 1)
        let compression = Int(b[i])
        guard compression >= 1 else { throw .notTLS }
        i &+= 1 &+ compression
        try need(i)
        var info = ClientHelloInfo(serverName: nil, alpn: nil, recordBytes: 0)
        if i == total { return info }  // no extensions (allowed before TLS 1.3)

        try need(i &+ 2)
        guard i &+ 2 &+ u16(i) == total else { throw .notTLS }
        i &+= 2
        var sawServerName = false
        var sawALPN = false
        while i < total {
            try need(i &+ 4)
            let type = u16(i)
            let length = u16(i &+ 2)
            i &+= 4
            try need(i &+ length)
            let data = i..<(i &+ length)
            switch type {
            case 0:
                guard !sawServerName else { throw .notTLS }
                sawServerName = true
                info.serverName = try Self.serverName(b, data)
            case 16:
                guard !sawALPN else { throw .notTLS }
                sawALPN = true
                info.alpn = try Self.alpn(b, data)
            default:
                break
            }
            i &+= length
        }
        return info
    }

    /// The first host_name of a server_name extension (RFC 6066 §3), if it is a plausible
    /// DNS name; nil for an empty extension (what a server sends back) or an implausible
    /// name, which routes like a hello without SNI.
    /// - Throws: `.notTLS` when the lengths disagree.
    static func serverName(_ b: Span<UInt8>, _ data: Range<Int>) throws(Stop) -> Range<Int32>? {
        if data.isEmpty { return nil }
        guard data.count >= 2 else { throw .notTLS }
        let end = data.upperBound
        guard data.lowerBound &+ 2 &+ (Int(b[data.lowerBound]) << 8 | Int(b[data.lowerBound &+ 1])) == end else {
            throw .notTLS
        }
        var j = data.lowerBound &+ 2
        var found: Range<Int>?
        while j < end {
            guard end &- j >= 3 else { throw .notTLS }
            let type = b[j]
            let length = Int(b[j &+ 1]) << 8 | Int(b[j &+ 2])
            j &+= 3
            guard length <= end &- j else { throw .notTLS }
            if type == 0 && found == nil { found = j..<(j &+ length) }
            j &+= length
        }
        guard let name = found, name.count >= 1, name.count <= 255 else { return nil }
        var k = name.lowerBound
        while k < name.upperBound {
            guard Self.isHostNameByte(b[k]) else { return nil }
            k &+= 1
        }
        return Int32(truncatingIfNeeded: name.lowerBound)..<Int32(truncatingIfNeeded: name.upperBound)
    }

    /// The ProtocolNameList of an ALPN extension without its length (RFC 7301 §3.1): at
    /// least one name, each 1 to 255 bytes, filling the list exactly.
    /// - Throws: `.notTLS` otherwise.
    static func alpn(_ b: Span<UInt8>, _ data: Range<Int>) throws(Stop) -> Range<Int32> {
        guard data.count >= 4 else { throw .notTLS }  // list length, one name of one byte
        let end = data.upperBound
        guard data.lowerBound &+ 2 &+ (Int(b[data.lowerBound]) << 8 | Int(b[data.lowerBound &+ 1])) == end else {
            throw .notTLS
        }
        var j = data.lowerBound &+ 2
        while j < end {
            let length = Int(b[j])
            guard length >= 1, length < end &- j else { throw .notTLS }
            j &+= 1 &+ length
        }
        return Int32(truncatingIfNeeded: data.lowerBound &+ 2)..<Int32(truncatingIfNeeded: end)
    }

    /// Letters, digits, '-', '.', '_': what a host name routed on may hold.
    @inline(__always)
    static func isHostNameByte(_ c: UInt8) -> Bool {
        (c | 0x20) &- 0x61 < 26 || c &- 0x30 < 10 || c == 0x2D || c == 0x2E || c == 0x5F
    }
}
