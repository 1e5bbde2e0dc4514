import SluiceReactor
import SluiceRouting
import SluiceWire

/// Turns `AccessRecord`s into log lines, JSON or text, each ending in a newline.
///
/// The fields, in this order in both forms (text: values only, space-separated):
///
/// | field | value |
/// | --- | --- |
/// | `time` | RFC 3339 UTC with milliseconds: when the request's first byte (tunnel: the connection) was seen |
/// | `kind` | `http`, `tcp` or `tls_passthrough` |
/// | `client` | `ip:port` (IPv6 in brackets; IPv4-mapped shown as IPv4) |
/// | `listener` | the listener's name |
/// | `host` | the request's Host (http), else null |
/// | `method` | `GET`, `POST`… (`OTHER` for an extension method); null for tunnels |
/// | `target` | the request target as received, at most 256 bytes |
/// | `target_truncated` | whether the target was cut to its 256 bytes (text form: `...` inside the quotes) |
/// | `status` | the status sent to the client; null when none was |
/// | `bytes_in`, `bytes_out` | bytes from and to the client |
/// | `service`, `endpoint` | where it went (`ip:port`); null when nowhere |
/// | `request_ms`, `connect_ms`, `response_ms`, `total_ms` | durations, null when the step did not happen |
/// | `close_reason`, `close_side` | why and by which side (`downstream`, `upstream`, `proxy`) the connection closed after this record; null while it stays open |
/// | `tls_version` | `TLSv1.2`, `TLSv1.3` when TLS was terminated here, else null |
/// | `sni` | the ClientHello's server name |
/// | `request_id` | X-Request-ID, as received or generated |
///
/// Strings are escaped byte by byte (see `AccessLogLine.putJSONString`), so a line is always
/// one line of valid JSON whatever the client sent. Runs on the writer thread; no allocation.
public struct AccessLogFormatter {
    public let format: AccessLogFormat
    /// Wall-clock minus monotonic microseconds, sampled by the writer: a record's
    /// `startMicros` plus this is its wall-clock time.
    public var wallOffsetMicros: Int64
    private var clock = AccessLogClock()

    /// Room one line may take (every text field full of bytes that escape to six): the
    /// writer keeps at least this much free before formatting a record.
    public static let maxLineBytes = 8_192

    public init(format: AccessLogFormat, wallOffsetMicros: Int64 = 0) {
        self.format = format
        self.wallOffsetMicros = wallOffsetMicros
    }

    /// Writes `record`'s line, newline included, at `base`, which has room for
    /// `maxLineBytes`; returns its length.
    public mutating func write(_ record: borrowing AccessRecord, into base: UnsafeMutablePointer<UInt8>) -> Int {
        // Through a pointer: a borrowed record's fields read in place, without copying its
        // 768 bytes of text for every field.
        withUnsafePointer(to: record) { write(at: $0, into: base) }
    }

    /// `write(_:into:)` for the record at `record`.
    public mutating func write(at record: UnsafePointer<AccessRecord>, into base: UnsafeMutablePointer<UInt8>) -> Int {
        var line = AccessLogLine(base, capacity: Self.maxLineBytes)
        switch format {
        case .json: json(record, &line)
        case .text: text(record, &line)
        }
        line.put(UInt8(ascii: "\n"))
        precondition(!line.overflow, "an access-log line outgrew AccessLogFormatter.maxLineBytes")
        return line.count
    }

    /// `record`'s line appended to `out` (tests, tools).
    public mutating func append(_ record: borrowing AccessRecord, to out: inout [UInt8]) {
        let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: Self.maxLineBytes)
        defer { scratch.deallocate() }
        // SAFETY: `scratch` holds `maxLineBytes`, and `write` returns how many it filled.
        let n = write(record, into: scratch)
        out.append(contentsOf: UnsafeBufferPointer(start: scratch, count: n))
    }

    /// `record`'s line as text (tests, tools).
    public mutating func line(_ record: borrowing AccessRecord) -> String {
        var out: [UInt8] = []
        append(record, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: - JSON

    private mutating func json(_ record: UnsafePointer<AccessRecord>, _ line: inout AccessLogLine) {
        line.put("{\"time\":\"")
        clock.put(record.pointee.startMicros &+ wallOffsetMicros, to: &line)
        line.put("\",\"kind\":")
        line.put(Self.kindName(record.pointee.kind))
        line.put(",\"client\":\"")
        line.putAddress(
            v6: record.pointee.clientV6, hi: record.pointee.clientHi, lo: record.pointee.clientLo,
            port: record.pointee.clientPort)
        line.put("\",\"listener\":")
        jsonText(record, .listener, &line)
        line.put(",\"host\":")
        jsonText(record, .host, &line)
        line.put(",\"method\":")
        if let method = Self.methodName(record.pointee) {
            line.put(UInt8(ascii: "\""))
            line.put(method)
            line.put(UInt8(ascii: "\""))
        } else {
            line.put("null")
        }
        line.put(",\"target\":")
        jsonText(record, .target, &line)
        line.put(",\"target_truncated\":")
        line.put(Self.isCut(record.pointee, .target) ? "true" : "false")
        line.put(",\"status\":")
        if record.pointee.status == 0 { line.put("null") } else { line.put(decimal: UInt64(record.pointee.status)) }
        line.put(",\"bytes_in\":")
        line.put(decimal: record.pointee.bytesIn)
        line.put(",\"bytes_out\":")
        line.put(decimal: record.pointee.bytesOut)
        line.put(",\"service\":")
        jsonText(record, .service, &line)
        line.put(",\"endpoint\":")
        if record.pointee.endpointPort == 0 {
            line.put("null")
        } else {
            line.put(UInt8(ascii: "\""))
            line.putAddress(
                v6: record.pointee.endpointV6, hi: record.pointee.endpointHi, lo: record.pointee.endpointLo,
                port: record.pointee.endpointPort)
            line.put(UInt8(ascii: "\""))
        }
        line.put(",\"request_ms\":")
        jsonDuration(record.pointee.requestMicros, &line)
        line.put(",\"connect_ms\":")
        jsonDuration(record.pointee.connectMicros, &line)
        line.put(",\"response_ms\":")
        jsonDuration(record.pointee.responseMicros, &line)
        line.put(",\"total_ms\":")
        jsonDuration(record.pointee.totalMicros, &line)
        let reason = CloseReason(rawValue: record.pointee.closeReason) ?? CloseReason.none
        line.put(",\"close_reason\":")
        if reason == .none {
            line.put("null,\"close_side\":null")
        } else {
            line.put(UInt8(ascii: "\""))
            line.put(Self.reasonName(reason))
            line.put("\",\"close_side\":")
            line.put(Self.sideName(reason.side))
        }
        line.put(",\"tls_version\":")
        line.put(Self.tlsVersionName(record.pointee.tlsVersion))
        line.put(",\"sni\":")
        jsonText(record, .sni, &line)
        line.put(",\"request_id\":")
        jsonText(record, .requestID, &line)
        line.put(",\"protocol\":")
        line.put(Self.protocolName(record.pointee.httpVersion))
        line.put(",\"upstream_protocol\":")
        line.put(Self.protocolName(record.pointee.upstreamVersion))
        line.put(UInt8(ascii: "}"))
    }

    /// A text field as a JSON string, or null when empty.
    private func jsonText(
        _ record: UnsafePointer<AccessRecord>, _ field: AccessRecord.Field, _ line: inout AccessLogLine
    ) {
        let n = Int(record.pointee.lengths[field.rawValue])
        guard n > 0 else {
            line.put("null")
            return
        }
        line.putJSONString(Self.bytes(record, field, count: n))
    }

    private func jsonDuration(_ micros: Int64, _ line: inout AccessLogLine) {
        if micros < 0 { line.put("null") } else { line.put(millisFromMicros: micros) }
    }

    // MARK: - Text

    private mutating func text(_ record: UnsafePointer<AccessRecord>, _ line: inout AccessLogLine) {
        clock.put(record.pointee.startMicros &+ wallOffsetMicros, to: &line)
        line.put(UInt8(ascii: " "))
        line.put(Self.bareKindName(record.pointee.kind))
        line.put(UInt8(ascii: " "))
        line.putAddress(
            v6: record.pointee.clientV6, hi: record.pointee.clientHi, lo: record.pointee.clientLo,
            port: record.pointee.clientPort)
        line.put(UInt8(ascii: " "))
        quotedText(record, .listener, &line)
        line.put(UInt8(ascii: " "))
        quotedText(record, .host, &line)
        line.put(UInt8(ascii: " "))
        if let method = Self.methodName(record.pointee) { line.put(method) } else { line.put(UInt8(ascii: "-")) }
        line.put(UInt8(ascii: " "))
        quotedText(record, .target, &line)
        line.put(UInt8(ascii: " "))
        if record.pointee.status == 0 {
            line.put(UInt8(ascii: "-"))
        } else {
            line.put(decimal: UInt64(record.pointee.status))
        }
        line.put(UInt8(ascii: " "))
        line.put(decimal: record.pointee.bytesIn)
        line.put(UInt8(ascii: " "))
        line.put(decimal: record.pointee.bytesOut)
        line.put(UInt8(ascii: " "))
        quotedText(record, .service, &line)
        line.put(UInt8(ascii: " "))
        if record.pointee.endpointPort == 0 {
            line.put(UInt8(ascii: "-"))
        } else {
            line.putAddress(
                v6: record.pointee.endpointV6, hi: record.pointee.endpointHi, lo: record.pointee.endpointLo,
                port: record.pointee.endpointPort)
        }
        textDuration(record.pointee.requestMicros, &line)
        textDuration(record.pointee.connectMicros, &line)
        textDuration(record.pointee.responseMicros, &line)
        textDuration(record.pointee.totalMicros, &line)
        let reason = CloseReason(rawValue: record.pointee.closeReason) ?? CloseReason.none
        line.put(UInt8(ascii: " "))
        if reason == .none {
            line.put("- -")
        } else {
            line.put(Self.reasonName(reason))
            line.put(UInt8(ascii: " "))
            line.put(Self.bareSideName(reason.side))
        }
        line.put(UInt8(ascii: " "))
        line.put(Self.bareTLSVersionName(record.pointee.tlsVersion))
        line.put(UInt8(ascii: " "))
        quotedText(record, .sni, &line)
        line.put(UInt8(ascii: " "))
        quotedText(record, .requestID, &line)
        line.put(UInt8(ascii: " "))
        line.put(Self.bareProtocolName(record.pointee.httpVersion))
        line.put(UInt8(ascii: " "))
        line.put(Self.bareProtocolName(record.pointee.upstreamVersion))
    }

    /// The client's HTTP version as a JSON value.
    static func protocolName(_ version: UInt8) -> StaticString {
        switch version {
        case 10: "\"HTTP/1.0\""
        case 11: "\"HTTP/1.1\""
        case 20: "\"HTTP/2\""
        default: "null"
        }
    }

    /// The client's HTTP version for the text format (`-` when none).
    static func bareProtocolName(_ version: UInt8) -> StaticString {
        switch version {
        case 10: "HTTP/1.0"
        case 11: "HTTP/1.1"
        case 20: "HTTP/2"
        default: "-"
        }
    }

    /// A text field quoted, or `-` when empty.
    private func quotedText(
        _ record: UnsafePointer<AccessRecord>, _ field: AccessRecord.Field, _ line: inout AccessLogLine
    ) {
        let n = Int(record.pointee.lengths[field.rawValue])
        guard n > 0 else {
            line.put(UInt8(ascii: "-"))
            return
        }
        line.putQuoted(Self.bytes(record, field, count: n), cut: Self.isCut(record.pointee, field))
    }

    /// A space, then the duration or `-`.
    private func textDuration(_ micros: Int64, _ line: inout AccessLogLine) {
        line.put(UInt8(ascii: " "))
        if micros < 0 { line.put(UInt8(ascii: "-")) } else { line.put(millisFromMicros: micros) }
    }

    /// The first `count` bytes of `field` in place.
    private static func bytes(_ record: UnsafePointer<AccessRecord>, _ field: AccessRecord.Field, count: Int)
        -> UnsafeBufferPointer<UInt8>
    {
        // SAFETY: `text` is an InlineArray of UInt8, laid out as contiguous bytes inside the
        // record the caller's pointer keeps alive; `count` <= the field's capacity (`set`
        // writes no more), so offset + count stays within it.
        let text = UnsafeRawPointer(record.pointer(to: \.text)!).assumingMemoryBound(to: UInt8.self)
        return UnsafeBufferPointer(start: text + field.offset, count: min(count, field.capacity))
    }

    // MARK: - Names

    /// Whether `field` held less than the loop had (the record keeps the first bytes): its
    /// `truncated` bit, which the loops and `AccessRecord.set` keep, so a value of exactly
    /// the field's capacity is not taken for a cut one.
    static func isCut(_ record: borrowing AccessRecord, _ field: AccessRecord.Field) -> Bool {
        record.truncated & (1 << UInt8(field.rawValue)) != 0
    }

    static func methodName(_ record: borrowing AccessRecord) -> StaticString? {
        guard record.kind == .http, let method = HTTPMethod(rawValue: record.method) else { return nil }
        switch method {
        case .get: return "GET"
        case .head: return "HEAD"
        case .post: return "POST"
        case .put: return "PUT"
        case .delete: return "DELETE"
        case .options: return "OPTIONS"
        case .patch: return "PATCH"
        case .trace: return "TRACE"
        case .connect: return "CONNECT"
        case .other: return "OTHER"
        }
    }

    static func kindName(_ kind: AccessRecord.Kind) -> StaticString {
        switch kind {
        case .http: "\"http\""
        case .tcp: "\"tcp\""
        case .tlsPassthrough: "\"tls_passthrough\""
        }
    }

    static func bareKindName(_ kind: AccessRecord.Kind) -> StaticString {
        switch kind {
        case .http: "http"
        case .tcp: "tcp"
        case .tlsPassthrough: "tls_passthrough"
        }
    }

    static func sideName(_ side: CloseReason.Side) -> StaticString {
        switch side {
        case .none: "null"
        case .downstream: "\"downstream\""
        case .upstream: "\"upstream\""
        case .proxy: "\"proxy\""
        }
    }

    static func bareSideName(_ side: CloseReason.Side) -> StaticString {
        switch side {
        case .none: "-"
        case .downstream: "downstream"
        case .upstream: "upstream"
        case .proxy: "proxy"
        }
    }

    static func tlsVersionName(_ version: UInt16) -> StaticString {
        switch version {
        case 0x0304: "\"TLSv1.3\""
        case 0x0303: "\"TLSv1.2\""
        case 0x0302: "\"TLSv1.1\""
        case 0x0301: "\"TLSv1\""
        default: "null"
        }
    }

    static func bareTLSVersionName(_ version: UInt16) -> StaticString {
        switch version {
        case 0x0304: "TLSv1.3"
        case 0x0303: "TLSv1.2"
        case 0x0302: "TLSv1.1"
        case 0x0301: "TLSv1"
        default: "-"
        }
    }

    /// `CloseReason.name` without a `String`.
    static func reasonName(_ reason: CloseReason) -> StaticString { reason.staticName }
}
