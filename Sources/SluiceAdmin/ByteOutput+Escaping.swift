extension ByteOutput {
    /// A Prometheus/OpenMetrics label value, without the quotes: backslash, double quote and
    /// line feed escaped (`\\`, `\"`, `\n`), every other byte as it is (UTF-8 passes).
    public func write(labelValue text: String) {
        var copy = text
        copy.withUTF8 { bytes in
            var start = 0
            for i in 0..<bytes.count {
                let escape: StaticString
                switch bytes[i] {
                case 0x5C: escape = "\\\\"
                case 0x22: escape = "\\\""
                case 0x0A: escape = "\\n"
                default: continue
                }
                write(bytes, start..<i)
                write(escape)
                start = i + 1
            }
            write(bytes, start..<bytes.count)
        }
    }

    /// A JSON string with its quotes: `"` and `\` escaped, control bytes as `\u00XX`.
    public func write(jsonString text: String) {
        write(byte: 0x22)
        var copy = text
        copy.withUTF8 { bytes in
            var start = 0
            for i in 0..<bytes.count {
                let b = bytes[i]
                guard b < 0x20 || b == 0x22 || b == 0x5C else { continue }
                write(bytes, start..<i)
                switch b {
                case 0x22: write("\\\"")
                case 0x5C: write("\\\\")
                case 0x0A: write("\\n")
                case 0x0D: write("\\r")
                case 0x09: write("\\t")
                default:
                    write("\\u00")
                    write(byte: Self.hexDigit(b >> 4))
                    write(byte: Self.hexDigit(b & 0xF))
                }
                start = i + 1
            }
            write(bytes, start..<bytes.count)
        }
        write(byte: 0x22)
    }

    /// Text for HTML content or a quoted attribute: `&`, `<`, `>`, `"` and `'` as entities.
    public func write(html text: String) {
        var copy = text
        copy.withUTF8 { bytes in
            var start = 0
            for i in 0..<bytes.count {
                let entity: StaticString
                switch bytes[i] {
                case 0x26: entity = "&amp;"
                case 0x3C: entity = "&lt;"
                case 0x3E: entity = "&gt;"
                case 0x22: entity = "&quot;"
                case 0x27: entity = "&#39;"
                default: continue
                }
                write(bytes, start..<i)
                write(entity)
                start = i + 1
            }
            write(bytes, start..<bytes.count)
        }
    }

    private func write(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
        write(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[range])))
    }

    static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x61 + v - 10 }
}
