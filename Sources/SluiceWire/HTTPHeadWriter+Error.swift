extension HTTPHeadWriter {
    /// Writes a complete error response:
    /// `HTTP/1.1 <status> <reason>\r\nContent-Type: text/plain\r\nContent-Length: N\r\n`
    /// `Connection: close\r\n\r\n<reason>\n`. Reasons are known for 400, 404, 408, 413, 414,
    /// 417, 431, 500, 501, 502, 503, 504 and 505; any other status says "Error".
    /// - Returns: bytes written; 0 when `out` is too small (200 bytes always suffice).
    public static func writeError(status: UInt16, into out: UnsafeMutableRawBufferPointer) -> Int {
        let reason = reasonPhrase(status)
        var o = OutputCursor(out)
        o.write("HTTP/1.1 ")
        o.write(decimal: UInt64(status))
        o.write(byte: asciiSP)
        o.write(reason)
        o.write("\r\nContent-Type: text/plain\r\nContent-Length: ")
        o.write(decimal: UInt64(reason.utf8CodeUnitCount &+ 1))
        o.write("\r\nConnection: close\r\n\r\n")
        o.write(reason)
        o.write(byte: asciiLF)
        return o.result ?? 0
    }

    /// The reason phrase of RFC 9110 §15 for the statuses the proxy answers with itself.
    public static func reasonPhrase(_ status: UInt16) -> StaticString {
        switch status {
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 408: return "Request Timeout"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 417: return "Expectation Failed"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Error"
        }
    }
}
