import Testing

@testable import SluiceWire

struct ResponseCase: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    /// nil: valid, with this body kind for a GET.
    var status: UInt16?
    var body: BodyKind = .none
    var testDescription: String { name }
}

let responseCases: [ResponseCase] = [
    ResponseCase(name: "length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", body: .length(3)),
    ResponseCase(name: "zero length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", body: .none),
    ResponseCase(name: "204", raw: "HTTP/1.1 204 No Content\r\n\r\n", body: .none),
    ResponseCase(name: "304 with length", raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", body: .none),
    ResponseCase(name: "100", raw: "HTTP/1.1 100 Continue\r\n\r\n", body: .none),
    ResponseCase(name: "HTTP/1.0 until close", raw: "HTTP/1.0 200 OK\r\n\r\n", body: .untilClose),
    ResponseCase(name: "empty reason", raw: "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\n", body: .length(1)),
    ResponseCase(name: "no reason", raw: "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", body: .length(1)),
    ResponseCase(name: "chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", body: .chunked),
    ResponseCase(
        name: "gzip until close", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", body: .untilClose),
    ResponseCase(name: "no length", raw: "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", body: .untilClose),
    ResponseCase(
        name: "identical lengths", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\n",
        body: .length(2)),
    ResponseCase(
        name: "identical lengths with leading zeros", raw: "HTTP/1.1 200 OK\r\nContent-Length: 02, 2\r\n\r\n",
        body: .length(2)),
    ResponseCase(
        name: "101", raw: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        body: .none),
    ResponseCase(name: "reason with tab and obs-text", raw: "HTTP/1.1 404 Not\tF\u{e9}und\r\n\r\n", body: .untilClose),

    ResponseCase(
        name: "CL and TE", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        status: 502),
    ResponseCase(name: "two CL", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", status: 502),
    ResponseCase(name: "CL list", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3,4\r\n\r\n", status: 502),
    ResponseCase(name: "bad CL", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3a\r\n\r\n", status: 502),
    ResponseCase(name: "CL empty member first", raw: "HTTP/1.1 200 OK\r\nContent-Length: ,3\r\n\r\n", status: 502),
    ResponseCase(name: "CL empty member last", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3,\r\n\r\n", status: 502),
    ResponseCase(
        name: "CL list then a differing field",
        raw: "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 4\r\n\r\n", status: 502),
    ResponseCase(
        name: "chunked twice", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", status: 502),
    ResponseCase(name: "TE in HTTP/1.0", raw: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", status: 502),
    ResponseCase(name: "HTTP/2", raw: "HTTP/2 200 OK\r\n\r\n", status: 502),
    ResponseCase(name: "HTTP/1.2", raw: "HTTP/1.2 200 OK\r\n\r\n", status: 502),
    ResponseCase(name: "two-digit status", raw: "HTTP/1.1 20 OK\r\n\r\n", status: 502),
    ResponseCase(name: "status under 100", raw: "HTTP/1.1 099 X\r\n\r\n", status: 502),
    ResponseCase(name: "four-digit status", raw: "HTTP/1.1 2000 X\r\n\r\n", status: 502),
    ResponseCase(name: "bare LF", raw: "HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n", status: 502),
    ResponseCase(name: "NUL in reason", raw: "HTTP/1.1 200 O\u{0}K\r\n\r\n", status: 502),
    ResponseCase(name: "obs-fold", raw: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", status: 502),
    ResponseCase(name: "space before colon", raw: "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", status: 502),
    ResponseCase(name: "not HTTP", raw: "ICY 200 OK\r\n\r\n", status: 502),
    ResponseCase(
        name: "too many fields", raw: "HTTP/1.1 200 OK\r\n" + String(repeating: "X: y\r\n", count: 101) + "\r\n",
        status: 502),
]

@Suite struct ResponseParserTests {
    @Test(arguments: responseCases)
    func corpus(_ c: ResponseCase) {
        let input = bytes(c.raw)
        let whole = runResponse(input)
        #expect(whole == runResponse(input, cuts: byteCuts(input.count)), "whole and one byte at a time differ")
        if let status = c.status {
            #expect(whole == .status(status))
        } else if case .response(let r) = whole {
            #expect(r.head.bodyKind(requestMethod: .get) == c.body)
        } else {
            Issue.record("expected a response, got \(whole)")
        }
    }

    @Test func fieldsAndFlags() throws {
        let input = bytes("HTTP/1.1 101 Switching\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n")
        guard case .response(let r) = runResponse(input) else { throw Failure() }
        #expect(r.status == 101 && r.upgrade && r.keepAlive && !r.close && r.minor == 1)
        #expect(r.fields == ["Connection: keep-alive, Upgrade", "Upgrade: h2c"])
        #expect(r.headLength == Int32(input.count))
    }

    @Test func bodyKindDependsOnTheRequest() throws {
        guard case .response(let ok) = runResponse(bytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")),
            case .response(let chunked) = runResponse(bytes("HTTP/1.1 201 OK\r\nTransfer-Encoding: chunked\r\n\r\n")),
            case .response(let missing) = runResponse(bytes("HTTP/1.1 404 No\r\nContent-Length: 5\r\n\r\n"))
        else { throw Failure() }
        #expect(ok.head.bodyKind(requestMethod: .head) == .none)
        #expect(ok.head.bodyKind(requestMethod: .connect) == .untilClose)
        #expect(chunked.head.bodyKind(requestMethod: .connect) == .untilClose)
        #expect(chunked.head.bodyKind(requestMethod: .post) == .chunked)
        #expect(missing.head.bodyKind(requestMethod: .connect) == .length(5))
    }
}

struct Failure: Error {}
