import SluiceRouting
import SluiceWire

/// Request ids for logged listeners: an incoming `X-Request-ID` that can be passed on is;
/// otherwise the loop makes one, 32 lower-case hex digits: 16 of a random per-loop prefix,
/// then 16 of the loop's request counter run through a bijective mix (so ids never repeat
/// within a loop, and loops and restarts do not collide). Made without allocation, forwarded
/// in the request head (`HTTPHeadWriter.writeRequest(requestID:)`) and written in the record.
extension Loop {
    static let requestIDLength = 32

    /// A parsed request on a logged listener: where its host, target and incoming request id
    /// are in the head, or a new id when it brought none that can be passed on.
    func noteRequestHead(
        _ e: UnsafeMutablePointer<HTTPExchange>, _ head: HTTPRequestHead, _ headBuf: UnsafeRawBufferPointer
    ) {
        e.pointee.stats.parsed = true
        if let host = head.host { e.pointee.stats.host = HeadSlice(host) }
        e.pointee.stats.target = HeadSlice(head.target)
        let fields = UnsafeBufferPointer(rebasing: fieldStore[0..<Int(head.fieldCount)])
        if let incoming = HTTPHeadWriter.validRequestID(from: headBuf, fields: fields, count: Int(head.fieldCount)) {
            e.pointee.stats.requestID = HeadSlice(incoming)
        } else {
            requestCounter &+= 1
            e.pointee.stats.generatedID = requestCounter
        }
    }

    /// The request id to forward for the request in flight, in `scratch`-free memory (a
    /// slice of the head, or `requestIDScratch`); nil when its listener does not log.
    func forwardedRequestID(_ e: UnsafeMutablePointer<HTTPExchange>, headBuf: UnsafeRawBufferPointer)
        -> UnsafeRawBufferPointer?
    {
        if e.pointee.stats.generatedID != 0 {
            formatRequestID(e.pointee.stats.generatedID, into: requestIDScratch)
            return UnsafeRawBufferPointer(start: requestIDScratch, count: Self.requestIDLength)
        }
        let slice = e.pointee.stats.requestID
        guard slice.count > 0 else { return nil }
        return UnsafeRawBufferPointer(rebasing: headBuf[Int(slice.offset)..<Int(slice.offset) + Int(slice.count)])
    }

    /// Writes the id made of `counter` (32 hex digits) at `out`.
    func formatRequestID(_ counter: UInt64, into out: UnsafeMutableRawPointer) {
        let digits: StaticString = "0123456789abcdef"
        let low = SocketAddress.mix(counter ^ requestIDKey)
        for i in 0..<16 {
            let shift = UInt64(60 - 4 * i)
            out.storeBytes(of: digits.utf8Start[Int(requestIDPrefix >> shift & 0xF)], toByteOffset: i, as: UInt8.self)
            out.storeBytes(of: digits.utf8Start[Int(low >> shift & 0xF)], toByteOffset: 16 + i, as: UInt8.self)
        }
    }
}

extension HeadSlice {
    init(_ range: Range<Int32>) {
        offset = UInt16(truncatingIfNeeded: range.lowerBound)
        count = UInt16(truncatingIfNeeded: range.count)
    }
}
