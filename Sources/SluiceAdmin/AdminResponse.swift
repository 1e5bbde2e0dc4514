import SluiceWire

/// One answer of the admin listener: status, content type and body. The head is a handful
/// of fixed fields (it never grows with the body); a large body follows from its own block.
public struct AdminResponse: Sendable {
    public var status: UInt16
    public var contentType: StaticString
    public var body: ByteOutput
    /// `Allow: GET, HEAD` (405 answers).
    public var allowGetHead = false
    /// The connection closes after this answer, whatever the request asked.
    public var close = false
    /// Collecting paths: how long the loops took to answer and the rendering took, sent as
    /// `Server-Timing: collect;dur=MS, render;dur=MS` (`Perf/scrape_bench.py` reads it).
    public var timing: (collectMicros: Int64, renderMicros: Int64)?

    public init(status: UInt16, contentType: StaticString = "text/plain; charset=utf-8", body: ByteOutput) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// A short text answer.
    public static func text(_ status: UInt16, _ text: StaticString) -> AdminResponse {
        let body = ByteOutput(capacity: text.utf8CodeUnitCount + 1)
        body.write(text)
        return AdminResponse(status: status, body: body)
    }

    /// Bodies up to this size go out in the same block (one send) as the head.
    static let inlineBodyBytes = 64 * 1024

    /// Writes `HTTP/1.1 <status> <reason>`, Content-Type, Content-Length (the body's, also
    /// for HEAD), `Cache-Control: no-store`, `Allow` for 405 and `Connection: close` when
    /// `closing` (or `Connection: keep-alive` for an HTTP/1.0 client kept open) into `out`.
    public func writeHead(into out: ByteOutput, closing: Bool, http10KeepAlive: Bool) {
        out.write("HTTP/1.1 ")
        out.write(unsigned: UInt64(status))
        out.write(" ")
        out.write(Self.reason(status))
        out.write("\r\nContent-Type: ")
        out.write(contentType)
        out.write("\r\nContent-Length: ")
        out.write(unsigned: UInt64(body.count))
        out.write("\r\nCache-Control: no-store\r\n")
        if allowGetHead { out.write("Allow: GET, HEAD\r\n") }
        if let timing {
            out.write("Server-Timing: collect;dur=")
            out.write(fixed: Double(timing.collectMicros) / 1000, places: 3)
            out.write(", render;dur=")
            out.write(fixed: Double(timing.renderMicros) / 1000, places: 3)
            out.write("\r\n")
        }
        if closing {
            out.write("Connection: close\r\n")
        } else if http10KeepAlive {
            out.write("Connection: keep-alive\r\n")
        }
        out.write("\r\n")
    }

    /// The blocks to send, in order: the head with the body when it is small (or none, for
    /// HEAD), else the head and then the body's own block.
    public func wire(closing: Bool, http10KeepAlive: Bool, headOnly: Bool) -> [ByteOutput] {
        let head = ByteOutput(capacity: 256 + (headOnly || body.count > Self.inlineBodyBytes ? 0 : body.count))
        writeHead(into: head, closing: closing, http10KeepAlive: http10KeepAlive)
        if headOnly || body.count == 0 { return [head] }
        if body.count <= Self.inlineBodyBytes {
            head.write(body.bytes)
            return [head]
        }
        return [head, body]
    }

    static func reason(_ status: UInt16) -> StaticString {
        switch status {
        case 200: "OK"
        case 405: "Method Not Allowed"
        default: HTTPHeadWriter.reasonPhrase(status)
        }
    }
}
