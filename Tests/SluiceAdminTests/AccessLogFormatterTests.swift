import Foundation
import SluiceReactor
import SluiceRouting
import Testing

@testable import SluiceAdmin

/// The lines the access log writes, byte for byte.
@Suite struct AccessLogFormatterTests {
    private func json(_ record: AccessRecord, offset: Int64 = testOffset) -> String {
        var formatter = AccessLogFormatter(format: .json, wallOffsetMicros: offset)
        return formatter.line(record)
    }

    private func text(_ record: AccessRecord, offset: Int64 = testOffset) -> String {
        var formatter = AccessLogFormatter(format: .text, wallOffsetMicros: offset)
        return formatter.line(record)
    }

    /// The value of `key` in the JSON object of `line` (which must parse).
    private func field(_ line: String, _ key: String) throws -> Any? {
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return try #require(object)[key]
    }

    @Test func httpRecordAsJSON() {
        #expect(
            json(httpRecord())
                == #"{"time":"2024-12-31T23:59:59.123Z","kind":"http","client":"192.0.2.10:54321","listener":"web","#
                + #""host":"example.com","method":"GET","target":"/a?b=1","target_truncated":false,"status":200,"#
                + #""bytes_in":78,"bytes_out":1234,"service":"api","endpoint":"127.0.0.1:9001","request_ms":0.150,"#
                + #""connect_ms":null,"response_ms":2.500,"total_ms":3.210,"close_reason":null,"close_side":null,"#
                + #""tls_version":"TLSv1.3","sni":"example.com","request_id":"abc-123","#
                + #""protocol":"HTTP/1.1","upstream_protocol":"HTTP/2"}"# + "\n")
    }

    @Test func tcpRecordAsJSONHasNullsForWhatDidNotHappen() {
        #expect(
            json(tcpRecord())
                == #"{"time":"2024-12-31T23:59:59.123Z","kind":"tcp","client":"[2001:db8::7]:40000","listener":"db","#
                + #""host":null,"method":null,"target":null,"target_truncated":false,"status":null,"bytes_in":10,"#
                + #""bytes_out":0,"service":"db","endpoint":"[::1]:5432","request_ms":0.020,"connect_ms":1.000,"#
                + #""response_ms":null,"total_ms":5000.000,"close_reason":"upstream_reset","close_side":"upstream","#
                + #""tls_version":null,"sni":null,"request_id":null,"protocol":null,"upstream_protocol":null}"# + "\n")
    }

    @Test func recordsAsText() {
        #expect(
            text(httpRecord())
                == #"2024-12-31T23:59:59.123Z http 192.0.2.10:54321 "web" "example.com" GET "/a?b=1" 200 78 1234 "#
                + #""api" 127.0.0.1:9001 0.150 - 2.500 3.210 - - TLSv1.3 "example.com" "abc-123" HTTP/1.1 HTTP/2"#
                + "\n")
        #expect(
            text(tcpRecord())
                == #"2024-12-31T23:59:59.123Z tcp [2001:db8::7]:40000 "db" - - - - 10 0 "db" [::1]:5432 0.020 1.000 "#
                + #"- 5000.000 upstream_reset upstream - - - - -"# + "\n")
    }

    @Test func passthroughRecordNamesItsKindAndServerName() throws {
        var record = tcpRecord()
        record.kind = .tlsPassthrough
        record.set(.sni, "db.example.com")
        record.closeReason = CloseReason.clientClosed.rawValue
        let line = json(record)
        #expect(try field(line, "kind") as? String == "tls_passthrough")
        #expect(try field(line, "sni") as? String == "db.example.com")
        #expect(try field(line, "close_reason") as? String == "client_closed")
        #expect(try field(line, "close_side") as? String == "downstream")
        #expect(text(record).contains(" client_closed downstream - \"db.example.com\" - - -\n"))
    }

    @Test func everyMethodAndTLSVersionHasItsName() throws {
        let names = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "OTHER"]
        for (raw, name) in names.enumerated() {
            var record = httpRecord()
            record.method = UInt8(raw)
            #expect(try field(json(record), "method") as? String == name)
        }
        for (version, name) in [(0x0303, "TLSv1.2"), (0x0304, "TLSv1.3")] as [(UInt16, String)] {
            var record = httpRecord()
            record.tlsVersion = version
            #expect(try field(json(record), "tls_version") as? String == name)
        }
        var plain = httpRecord()
        plain.tlsVersion = 0
        #expect(json(plain).contains(#""tls_version":null"#))
    }

    @Test func closeReasonNamesAreTheModelsNames() {
        for reason in CloseReason.allCases {
            #expect("\(AccessLogFormatter.reasonName(reason))" == reason.name)
        }
    }

    @Test func timeIsRFC3339UTCWithMilliseconds() {
        let cases: [(Int64, String)] = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000Z"),
            (1_709_251_199_999_999, "2024-02-29T23:59:59.999Z"),
            (1_709_251_200_000_500, "2024-03-01T00:00:00.000Z"),
            (4_102_444_800_001_000, "2100-01-01T00:00:00.001Z"),
        ]
        for (micros, stamp) in cases {
            var record = httpRecord()
            record.startMicros = micros
            #expect(json(record, offset: 0).hasPrefix(#"{"time":""# + stamp + #"","#))
        }
        // Records of one second share the cached date; the next second is rendered anew.
        var formatter = AccessLogFormatter(format: .text, wallOffsetMicros: testOffset)
        var record = httpRecord()
        #expect(formatter.line(record).hasPrefix("2024-12-31T23:59:59.123Z "))
        record.startMicros += 500_000
        #expect(formatter.line(record).hasPrefix("2024-12-31T23:59:59.623Z "))
        record.startMicros += 500_000
        #expect(formatter.line(record).hasPrefix("2025-01-01T00:00:00.123Z "))
    }

    @Test func addresses() throws {
        let cases: [(hi: UInt64, lo: UInt64, v6: Bool, text: String)] = [
            (0, 0x0000_FFFF_0A00_0001, true, "10.0.0.1:80"),  // IPv4-mapped
            (0, 0x0000_FFFF_0A00_0001, false, "10.0.0.1:80"),
            (0, 1, true, "[::1]:80"),
            (0, 0, true, "[::]:80"),
            (0x2001_0DB8_0000_0000, 0x0001_0000_0000_0001, true, "[2001:db8::1:0:0:1]:80"),
            (0x2001_0DB8_0000_0001, 0x0000_0000_0000_0001, true, "[2001:db8:0:1::1]:80"),
            (0x2001_0DB8_0001_0001, 0x0001_0001_0001_0001, true, "[2001:db8:1:1:1:1:1:1]:80"),
            (0x2001_0DB8_0000_0001, 0x0001_0001_0001_0001, true, "[2001:db8:0:1:1:1:1:1]:80"),
            (0xFE80_0000_0000_0000, 0x0ABC_00FF_FE00_1234, true, "[fe80::abc:ff:fe00:1234]:80"),
        ]
        for item in cases {
            var record = httpRecord()
            record.clientV6 = item.v6
            record.clientHi = item.hi
            record.clientLo = item.lo
            record.clientPort = 80
            #expect(try field(json(record), "client") as? String == item.text)
        }
        var record = httpRecord()
        record.endpointPort = 0
        #expect(json(record).contains(#""endpoint":null"#))
        #expect(text(record).contains(#" "api" - "#))
    }

    @Test func stringsAreEscapedByteByByte() throws {
        var record = httpRecord()
        let nasty: [UInt8] =
            Array("/q\"b\\s".utf8) + [0x0A, 0x0D, 0x09, 0x08, 0x0C, 0x00, 0x1F, 0x7F] + Array("é😀".utf8)
            + [0xFF, 0xC3, 0x41, 0xC0, 0xAF, 0xED, 0xA0, 0x80, 0xF4, 0x90, 0x80, 0x80, 0xE2, 0x82]
        record.set(.target, nasty)
        let line = json(record)
        #expect(
            line.contains(
                #""target":"/q\"b\\s\n\r\t\b\f\u0000\u001f\u007fé😀\u00ff\u00c3A\u00c0\u00af\u00ed\u00a0\u0080\u00f4\u0090\u0080\u0080\u00e2\u0082","#
            ))
        // Valid JSON whatever the bytes; invalid ones read back as their Latin-1 characters.
        let target = try #require(try field(line, "target") as? String)
        #expect(target.hasPrefix("/q\"b\\s\n\r\t\u{8}\u{C}\u{0}\u{1F}\u{7F}é😀\u{FF}\u{C3}A"))
        #expect(line.filter { $0 == "\n" }.count == 1)

        let textLine = text(record)
        #expect(
            textLine.contains(
                #" "/q\"b\\s\x0a\x0d\x09\x08\x0c\x00\x1f\x7fé😀\xff\xc3A\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82" "#
            ))
    }

    /// The eight-bytes-at-a-time scan never passes over a byte that needs a look.
    @Test func theWordScanSeesEveryByteThatNeedsALook() {
        for byte in 0...255 {
            let needs = byte < 0x20 || byte >= 0x7F || byte == 0x22 || byte == 0x5C
            for position in 0..<8 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 8)
                bytes[position] = UInt8(byte)
                // Neighbours that could borrow into it: the lowest and highest plain bytes.
                for neighbour in [0x20, 0x7E, 0x21, 0x5B] as [UInt8] {
                    if position > 0 { bytes[position - 1] = neighbour }
                    let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    if needs { #expect(AccessLogLine.needsLook(word), "byte \(byte) at \(position)") }
                }
            }
        }
        let plain = Array("abcdefgh".utf8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(!AccessLogLine.needsLook(plain))
    }

    @Test func everyTextFieldIsEscaped() throws {
        var record = httpRecord()
        record.set(.listener, "l\"1")
        record.set(.host, "h\n")
        record.set(.service, "s\\")
        record.set(.sni, "n\u{1}")
        record.set(.requestID, "r\"")
        let line = json(record)
        #expect(try field(line, "listener") as? String == "l\"1")
        #expect(try field(line, "host") as? String == "h\n")
        #expect(try field(line, "service") as? String == "s\\")
        #expect(try field(line, "sni") as? String == "n\u{1}")
        #expect(try field(line, "request_id") as? String == "r\"")
        #expect(
            text(record).contains(#" "l\"1" "h\x0a" GET "#)
                && text(record).hasSuffix(#" "n\x01" "r\"" HTTP/1.1 HTTP/2"# + "\n"))
    }

    @Test func aTargetLongerThanItsFieldIsMarked() throws {
        var record = httpRecord()
        let long = "/" + String(repeating: "x", count: 299)
        record.set(.target, long)
        let line = json(record)
        #expect(try field(line, "target") as? String == String(long.prefix(256)))
        #expect(try field(line, "target_truncated") as? Bool == true)
        #expect(text(record).contains(" \"" + String(long.prefix(256)) + "...\" 200 "))

        // Exactly the field's capacity is not a cut; one byte more is.
        record.set(.target, String(long.prefix(256)))
        #expect(try field(json(record), "target_truncated") as? Bool == false)
        record.set(.target, String(long.prefix(257)))
        #expect(try field(json(record), "target_truncated") as? Bool == true)
        record.set(.target, String(long.prefix(255)))
        #expect(try field(json(record), "target_truncated") as? Bool == false)
        #expect(text(record).contains(" \"" + String(long.prefix(255)) + "\" 200 "))
    }

    @Test func theWorstRecordFitsItsLine() throws {
        var record = httpRecord()
        for field in AccessRecord.Field.allCases {
            record.set(field, [UInt8](repeating: 0x01, count: field.capacity + 10))
        }
        record.bytesIn = .max
        record.bytesOut = .max
        record.requestMicros = .max
        record.connectMicros = .max
        record.responseMicros = .max
        record.totalMicros = .max
        record.status = .max
        record.setClient(v6: 0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, port: .max)
        record.setEndpoint(v6: 0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, port: .max)
        record.closeReason = CloseReason.requestBodyTimeout.rawValue
        for format in AccessLogFormat.allCases {
            var formatter = AccessLogFormatter(format: format, wallOffsetMicros: 0)
            var out: [UInt8] = []
            formatter.append(record, to: &out)
            #expect(out.count < AccessLogFormatter.maxLineBytes)
            // Six bytes (JSON) or four (text) for each of the 768 bytes of text.
            #expect(out.count > (format == .json ? 6 : 4) * AccessRecord.textCapacity)
        }
        _ = try field(json(record), "target")
    }
}
