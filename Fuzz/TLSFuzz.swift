// Fuzz target for the ClientHello parser and the PROXY protocol parser and writers, built by
// scripts/fuzz-tls.sh together with the sources of the module. The first input byte chooses
// how the rest grows between calls and the ClientHello size limit; every parser must give
// the same answer for the whole input as for its last prefix, each prefix must answer
// `needMore` or that same answer, and every range returned must lie inside its buffer.

@inline(never)
func check(_ condition: Bool, _ what: StaticString) {
    if !condition { fatalError("invariant broken: \(what)") }
}

let bigScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 1)
let smallScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 300, alignment: 1)
let proxyOut = UnsafeMutableRawBufferPointer.allocate(byteCount: 128, alignment: 1)

/// Feeds growing prefixes `step` bytes apart; returns the last answer, checking that every
/// earlier one was `needMore` or that answer.
func helloGrowing(_ data: UnsafeRawBufferPointer, step: Int, scratch: UnsafeMutableRawBufferPointer)
    -> ClientHelloResult
{
    var end = 0
    var decided: ClientHelloResult?
    while true {
        end = min(data.count, end + step)
        let r = ClientHelloParser.parse(
            UnsafeRawBufferPointer(rebasing: data[0..<end]), scratch: scratch, maxBytes: scratch.count)
        if let decided {
            check(r == decided, "a decision stays")
        } else if r != .needMore {
            decided = r
        }
        if end == data.count { return r }
    }
}

func fuzzHello(_ data: UnsafeRawBufferPointer, step: Int, scratch: UnsafeMutableRawBufferPointer) {
    let whole = ClientHelloParser.parse(data, scratch: scratch, maxBytes: scratch.count)
    check(whole == helloGrowing(data, step: step, scratch: scratch), "hello whole = split")
    if data.count <= 2048 {
        check(whole == helloGrowing(data, step: 1, scratch: scratch), "hello whole = byte at a time")
    }
    guard case .hello(let info) = whole else { return }
    check(info.recordBytes > 0 && Int(info.recordBytes) <= data.count, "records inside the input")
    let limit = Int32(scratch.count)
    if let r = info.serverName {
        check(r.lowerBound >= 0 && r.upperBound <= limit && r.count >= 1 && r.count <= 255, "server name inside")
    }
    if let list = info.alpn {
        check(list.lowerBound >= 0 && list.upperBound <= limit && list.count >= 2, "ALPN list inside")
        var covered = list.lowerBound
        ClientHelloParser.forEachALPN(list, in: UnsafeRawBufferPointer(scratch)) { name in
            check(name.lowerBound == covered + 1 && name.count >= 1 && name.upperBound <= list.upperBound, "ALPN name")
            covered = name.upperBound
        }
        check(covered == list.upperBound, "ALPN names fill the list")
    }
    // The hello's records alone give the same answer.
    let again = ClientHelloParser.parse(
        UnsafeRawBufferPointer(rebasing: data[0..<Int(info.recordBytes)]), scratch: scratch, maxBytes: scratch.count)
    check(again == whole, "the records alone")
}

func proxyGrowing(_ data: UnsafeRawBufferPointer, step: Int) -> ProxyParse {
    var end = 0
    var decided: ProxyParse?
    while true {
        end = min(data.count, end + step)
        let r = ProxyHeader.parse(UnsafeRawBufferPointer(rebasing: data[0..<end]))
        if let decided {
            check(r == decided, "a decision stays")
        } else if r != .needMore {
            decided = r
        }
        if end == data.count { return r }
    }
}

/// Writes both versions and parses them back: the same addresses must come out.
func roundTrip(_ source: ProxyAddress, _ destination: ProxyAddress) {
    let v6 = source.v6 || destination.v6
    let mapped = { (a: ProxyAddress) -> ProxyAddress in
        a.v6 || !v6 ? a : .ipv6(hi: 0, lo: 0xFFFF_0000_0000 | a.lo, port: a.port)
    }
    for v2 in [false, true] {
        let n =
            v2
            ? ProxyHeader.writeV2(source: source, destination: destination, into: proxyOut)
            : ProxyHeader.writeV1(source: source, destination: destination, into: proxyOut)
        guard let n else { fatalError("128 bytes must hold a PROXY header") }
        check(v2 || n <= 107, "v1 line length")
        let parsed = ProxyHeader.parse(UnsafeRawBufferPointer(rebasing: proxyOut[0..<n]))
        check(
            parsed
                == .header(length: Int32(n), source: mapped(source), destination: mapped(destination), local: false),
            "round trip")
    }
}

func fuzzProxy(_ data: UnsafeRawBufferPointer, step: Int) {
    let whole = ProxyHeader.parse(data)
    check(whole == proxyGrowing(data, step: step), "proxy whole = split")
    if data.count <= 2048 { check(whole == proxyGrowing(data, step: 1), "proxy whole = byte at a time") }
    if case .header(let length, let source, let destination, let local) = whole {
        check(length >= 15 && Int(length) <= data.count, "header inside the input")
        check((source == nil) == (destination == nil), "both addresses or none")
        check(!local || source == nil, "LOCAL has no addresses")
        if let source, let destination {
            check(source.v6 == destination.v6, "one family")
            check(source.v6 || (source.hi == 0 && source.lo >> 32 == 0), "IPv4 in 32 bits")
            roundTrip(source, destination)
        }
    }
    // The input read as two endpoints, written and parsed back.
    if data.count >= 40 {
        func word(_ at: Int) -> UInt64 { data.loadUnaligned(fromByteOffset: at, as: UInt64.self) }
        let port = { (at: Int) in UInt16(data[at]) << 8 | UInt16(data[at + 1]) }
        // Zero out groups chosen by a mask so that "::" runs of every length turn up.
        let mask = word(32)
        func groups(_ v: UInt64, _ shift: UInt64) -> UInt64 {
            var v = v
            for k in 0..<4 where (mask >> (shift + UInt64(k))) & 1 == 0 { v &= ~(0xFFFF << UInt64(16 * k)) }
            return v
        }
        let a =
            data[0] & 1 == 0
            ? ProxyAddress.ipv4(UInt32(truncatingIfNeeded: word(0)), port: port(8))
            : .ipv6(hi: groups(word(0), 0), lo: groups(word(8), 4), port: port(8))
        let b =
            data[0] & 2 == 0
            ? ProxyAddress.ipv4(UInt32(truncatingIfNeeded: word(16)), port: port(24))
            : .ipv6(hi: groups(word(16), 8), lo: groups(word(24), 12), port: port(26))
        roundTrip(a, b)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let bytes, size > 1 else { return 0 }
    let step = Int(bytes[0] & 0x3F) + 1
    let data = UnsafeRawBufferPointer(start: bytes + 1, count: size - 1)
    fuzzHello(data, step: step, scratch: bytes[0] & 0x40 == 0 ? bigScratch : smallScratch)
    fuzzProxy(data, step: step)
    return 0
}
