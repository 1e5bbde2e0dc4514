// Fuzz target for the HTTP/1.1 parsers, built by scripts/fuzz-http.sh together with the
// sources of the module. The first input byte chooses where to cut the rest; every parser
// must give the same answer for the whole input and for the pieces, and every range it
// returns must lie inside the buffer it read.

@inline(never)
func check(_ condition: Bool, _ what: StaticString) {
    if !condition { fatalError("invariant broken: \(what)") }
}

func checkRange(_ r: Range<Int32>, _ count: Int) {
    check(r.lowerBound >= 0 && Int(r.upperBound) <= count, "range inside the buffer")
}

let fieldStorage = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 64)
let secondFields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 128)
let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 1)
let fuzzLimits = HTTPLimits(maxHeadBytes: 4096, maxTargetBytes: 512, maxFields: 64)

func scanWhole(_ data: UnsafeRawBufferPointer) -> HeadScan {
    var s = HeadScanner()
    return s.scan(data, limits: fuzzLimits)
}

func scanGrowing(_ data: UnsafeRawBufferPointer, step: Int) -> HeadScan {
    var s = HeadScanner()
    var end = 0
    while true {
        end = min(data.count, end + step)
        let r = s.scan(UnsafeRawBufferPointer(rebasing: data[0..<end]), limits: fuzzLimits)
        if r != .needMore || end == data.count { return r }
    }
}

func chunkedEnd(_ data: UnsafeRawBufferPointer, step: Int) -> Int? {
    var s = ChunkedScanner()
    var start = 0
    repeat {
        let end = min(data.count, start + step)
        switch s.scan(UnsafeRawBufferPointer(rebasing: data[start..<end])) {
        case .consumed(let n): check(Int(n) == end - start, "consumed all")
        case .end(let n):
            check(n >= 0 && Int(n) <= end - start, "end inside the piece")
            return start + Int(n)
        case .error: return nil
        }
        start = end
    } while start < data.count
    return -1
}

func fuzzRequest(_ head: UnsafeRawBufferPointer) {
    let result = HTTPRequestParser.parse(head, fields: fieldStorage, limits: fuzzLimits)
    guard case .success(let h) = result else { return }
    check(Int(h.headLength) == head.count, "head length")
    check(h.fieldCount >= 0 && Int(h.fieldCount) <= fieldStorage.count, "field count")
    for r in [h.methodRange, h.target, h.path] { checkRange(r, head.count) }
    if let r = h.host { checkRange(r, head.count) }
    if let r = h.upgrade { checkRange(r, head.count) }
    for k in 0..<Int(h.fieldCount) {
        checkRange(fieldStorage[k].name, head.count)
        checkRange(fieldStorage[k].value, head.count)
    }
    check(!(h.chunked && h.contentLength != nil), "never both lengths")
    _ = h.bodyKind

    // What we send upstream must itself be a valid request with the same framing.
    let client: StaticString = "192.0.2.1"
    let proto: StaticString = "http"
    let written = HTTPHeadWriter.writeRequest(
        h, from: head, fields: UnsafeBufferPointer(fieldStorage), pathOverride: nil,
        clientAddress: UnsafeRawBufferPointer(start: client.utf8Start, count: client.utf8CodeUnitCount),
        proto: UnsafeRawBufferPointer(start: proto.utf8Start, count: proto.utf8CodeUnitCount), port: 80,
        upgrading: h.connectionUpgrade && h.upgrade != nil, into: output)
    guard let n = written else {
        fatalError("64 KiB must hold the rewrite of a 4 KiB head")
    }
    let again = HTTPRequestParser.parse(
        UnsafeRawBufferPointer(rebasing: output[0..<n]), fields: secondFields,
        limits: HTTPLimits(maxHeadBytes: 1 << 16, maxTargetBytes: 1 << 16, maxFields: 128))
    guard case .success(let h2) = again else { fatalError("the rewritten request does not parse") }
    check(h2.method == h.method && h2.contentLength == h.contentLength && h2.chunked == h.chunked, "same framing")
    check((h2.host == nil) == (h.host == nil), "same host presence")
}

func fuzzResponse(_ head: UnsafeRawBufferPointer) {
    guard case .success(let h) = HTTPResponseParser.parse(head, fields: fieldStorage, limits: fuzzLimits) else {
        return
    }
    check(Int(h.headLength) == head.count, "head length")
    check(h.status >= 100 && h.status <= 999, "status")
    check(!(h.chunked && h.contentLength != nil), "never both lengths")
    for k in 0..<Int(h.fieldCount) {
        checkRange(fieldStorage[k].name, head.count)
        checkRange(fieldStorage[k].value, head.count)
    }
    for m in [HTTPMethod.get, .head, .connect] { _ = h.bodyKind(requestMethod: m) }
    let written = HTTPHeadWriter.writeResponse(
        h, from: head, fields: UnsafeBufferPointer(fieldStorage), close: true, http10KeepAlive: false,
        upgrading: false, extraFields: nil, into: output)
    guard let n = written else { fatalError("64 KiB must hold the rewrite of a 4 KiB head") }
    let again = HTTPResponseParser.parse(
        UnsafeRawBufferPointer(rebasing: output[0..<n]), fields: secondFields,
        limits: HTTPLimits(maxHeadBytes: 1 << 16, maxTargetBytes: 1 << 16, maxFields: 128))
    guard case .success(let h2) = again else { fatalError("the rewritten response does not parse") }
    check(h2.status == h.status && h2.contentLength == h.contentLength && h2.chunked == h.chunked, "same framing")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let bytes, size > 1 else { return 0 }
    let step = Int(bytes[0] & 0x1F) + 1
    let data = UnsafeRawBufferPointer(start: bytes + 1, count: size - 1)

    let whole = scanWhole(data)
    check(whole == scanGrowing(data, step: step), "head scan whole = split")
    check(whole == scanGrowing(data, step: 1), "head scan whole = byte at a time")
    if case .complete(let n) = whole {
        check(n > 0 && Int(n) <= data.count && Int(n) <= fuzzLimits.maxHeadBytes, "head end inside")
        let head = UnsafeRawBufferPointer(rebasing: data[0..<Int(n)])
        fuzzRequest(head)
        fuzzResponse(head)
    }
    // Parsers must also cope with buffers that do not end a head.
    _ = HTTPRequestParser.parse(data, fields: fieldStorage, limits: fuzzLimits)
    _ = HTTPResponseParser.parse(data, fields: fieldStorage, limits: fuzzLimits)

    let chunked = chunkedEnd(data, step: data.count)
    check(chunked == chunkedEnd(data, step: step), "chunked whole = split")
    check(chunked == chunkedEnd(data, step: 1), "chunked whole = byte at a time")
    if let end = chunked, end > 0 { check(end <= data.count, "chunked end inside") }
    return 0
}
