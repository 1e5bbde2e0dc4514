import SluiceReactor

extension AccessRecord {
    /// Sets a text field from a string's UTF-8 bytes.
    mutating func set(_ field: Field, _ text: String) {
        set(field, Array(text.utf8))
    }

    /// Sets a text field from raw bytes (which need not be UTF-8).
    mutating func set(_ field: Field, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { set(field, $0) }
    }

    /// An IPv4 client, stored as the loops store it (the address in the low half).
    mutating func setClient(v4 a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) {
        clientV6 = false
        clientHi = 0
        clientLo = UInt64(a) << 24 | UInt64(b) << 16 | UInt64(c) << 8 | UInt64(d)
        clientPort = port
    }

    mutating func setClient(v6 hi: UInt64, _ lo: UInt64, port: UInt16) {
        clientV6 = true
        clientHi = hi
        clientLo = lo
        clientPort = port
    }

    mutating func setEndpoint(v4 a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) {
        endpointV6 = false
        endpointHi = 0
        endpointLo = UInt64(a) << 24 | UInt64(b) << 16 | UInt64(c) << 8 | UInt64(d)
        endpointPort = port
    }

    mutating func setEndpoint(v6 hi: UInt64, _ lo: UInt64, port: UInt16) {
        endpointV6 = true
        endpointHi = hi
        endpointLo = lo
        endpointPort = port
    }
}

/// 2024-12-31T23:59:59.123456Z as wall-clock microseconds.
let newYearsEveMicros: Int64 = 1_735_689_599_123_456

/// An HTTP request record: a 200 from an endpoint over terminated TLS 1.3, the connection
/// left open. Its start is 1 s on the monotonic clock (`newYearsEveMicros` on the wall clock
/// with the offset the tests use).
func httpRecord() -> AccessRecord {
    var record = AccessRecord()
    record.kind = .http
    record.method = 0  // GET
    record.httpVersion = 11
    record.upstreamVersion = 20
    record.startMicros = 1_000_000
    record.setClient(v4: 192, 0, 2, 10, port: 54321)
    record.set(.listener, "web")
    record.set(.host, "example.com")
    record.set(.target, "/a?b=1")
    record.status = 200
    record.bytesIn = 78
    record.bytesOut = 1234
    record.set(.service, "api")
    record.setEndpoint(v4: 127, 0, 0, 1, port: 9001)
    record.requestMicros = 150
    record.connectMicros = -1
    record.responseMicros = 2_500
    record.totalMicros = 3_210
    record.tlsVersion = 0x0304
    record.set(.sni, "example.com")
    record.set(.requestID, "abc-123")
    return record
}

/// A TCP connection from an IPv6 client that the upstream reset.
func tcpRecord() -> AccessRecord {
    var record = AccessRecord()
    record.kind = .tcp
    record.startMicros = 1_000_000
    record.setClient(v6: 0x2001_0DB8_0000_0000, 0x0000_0000_0000_0007, port: 40000)
    record.set(.listener, "db")
    record.bytesIn = 10
    record.set(.service, "db")
    record.setEndpoint(v6: 0, 1, port: 5432)
    record.requestMicros = 20
    record.connectMicros = 1_000
    record.totalMicros = 5_000_000
    record.closeReason = CloseReason.upstreamReset.rawValue
    return record
}

/// The offset that puts a record started at 1 s monotonic on `newYearsEveMicros`.
let testOffset = newYearsEveMicros - 1_000_000
