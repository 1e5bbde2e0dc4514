import SluiceRouting
import SluiceSystem
import SluiceTLS
import Testing

/// Client contexts for TLS to endpoints: a client memory session against a server memory
/// session of a termination context, bytes moved between them in memory.
@Suite struct TLSClientContextTests {
    static let server: TLSContextHandle = {
        let files = [TLSCertificateFiles(cert: TestCertificates.path("a.pem"), key: TestCertificates.path("a.key"))]
        do {
            return try TLSContextBuilder.build(certificates: files)
        } catch {
            fatalError("\(error)")
        }
    }()

    enum Outcome: Equatable {
        case done(alpnH2: Bool, version: Int)
        case failed(verify: String?)
    }

    /// Runs both handshakes to the end; the server offers h2 when `serverH2`.
    static func handshake(_ client: TLSContextHandle, serverName: String?, check: Bool, serverH2: Bool = true)
        -> Outcome
    {
        let c = TLSSession.makeClient(context: client.pointer, serverName: serverName, checkName: check)!
        let s = TLSSession.makeDetached(context: server.pointer, prefix: UnsafeRawBufferPointer(start: nil, count: 0))!
        defer {
            TLSSession.free(c)
            TLSSession.free(s)
        }
        if serverH2 { _ = TLSSession.offerHTTP2(s) }
        func move(_ from: OpaquePointer, _ to: OpaquePointer) {
            while true {
                let out = TLSSession.pendingOutput(from)
                guard !out.isEmpty else { return }
                let room = TLSSession.inputRoom(to)
                let n = min(room.count, out.count)
                room.baseAddress!.copyMemory(from: out.baseAddress!, byteCount: n)
                TLSSession.commitInput(to, count: n)
                TLSSession.consumeOutput(from, count: n)
            }
        }
        var clientDone = false
        var serverDone = false
        for _ in 0..<20 {
            if !clientDone {
                switch TLSSession.handshake(c) {
                case .done: clientDone = true
                case .wantRead, .wantWrite: break
                case .eof, .failed: return .failed(verify: TLSSession.verifyFailure(c))
                }
            }
            move(c, s)
            if !serverDone {
                switch TLSSession.handshake(s) {
                case .done: serverDone = true
                case .wantRead, .wantWrite: break
                case .eof, .failed:
                    _ = TLSSession.takeFailure()
                    move(s, c)
                    if case .failed = TLSSession.handshake(c) { return .failed(verify: TLSSession.verifyFailure(c)) }
                    return .failed(verify: nil)
                }
            }
            move(s, c)
            if clientDone && serverDone {
                return .done(alpnH2: TLSSession.selectedHTTP2(c), version: TLSSession.version(c))
            }
        }
        return .failed(verify: "no progress")
    }

    static func client(ca: String? = TestCertificates.path("ca.pem"), verify: Bool = true) throws -> TLSContextHandle {
        try TLSContextBuilder.buildClient(ca: ca, verify: verify, certificate: nil)
    }

    @Test func verifiedHandshakeSelectsH2() throws {
        let outcome = Self.handshake(try Self.client(), serverName: "a.example.com", check: true)
        #expect(outcome == .done(alpnH2: true, version: 0x0304))
        // Names are compared without case.
        #expect(Self.handshake(try Self.client(), serverName: "A.Example.COM", check: true).isDone)
    }

    @Test func aNameTheCertificateDoesNotCarryFailsVerification() throws {
        guard case .failed(let verify) = Self.handshake(try Self.client(), serverName: "b.example.com", check: true)
        else {
            Issue.record("handshake passed")
            return
        }
        #expect(verify?.contains("hostname mismatch") == true, "\(verify ?? "nil")")
    }

    @Test func anUntrustedChainFailsVerification() throws {
        // default.pem is self-signed and unrelated to the server's CA.
        let other = try Self.client(ca: TestCertificates.path("default.pem"))
        guard case .failed(let verify) = Self.handshake(other, serverName: "a.example.com", check: true) else {
            Issue.record("handshake passed")
            return
        }
        #expect(verify != nil)
    }

    @Test func withoutVerifyAnythingPasses() throws {
        let loose = try Self.client(ca: nil, verify: false)
        #expect(Self.handshake(loose, serverName: "wrong.example.com", check: false).isDone)
    }

    @Test func aServerWithoutH2SelectsNoALPN() throws {
        let outcome = Self.handshake(try Self.client(), serverName: "a.example.com", check: true, serverH2: false)
        #expect(outcome == .done(alpnH2: false, version: 0x0304))
    }

    @Test func buildErrorsNameTheFile() {
        #expect {
            _ = try TLSContextBuilder.buildClient(ca: "/nonexistent/ca.pem", verify: true, certificate: nil)
        } throws: { error in
            guard let error = error as? TLSSetupError else { return false }
            return error.field == .ca && error.reason.contains("/nonexistent/ca.pem")
        }
        #expect {
            _ = try TLSContextBuilder.buildClient(
                ca: TestCertificates.path("garbage.pem"), verify: true, certificate: nil)
        } throws: { error in
            (error as? TLSSetupError)?.reason.contains("no PEM certificate") == true
        }
        let mismatched = TLSCertificateFiles(
            cert: TestCertificates.path("a.pem"), key: TestCertificates.path("wild.key"))
        #expect {
            _ = try TLSContextBuilder.buildClient(ca: nil, verify: true, certificate: mismatched)
        } throws: { error in
            guard let error = error as? TLSSetupError else { return false }
            return error.field == .key && error.reason.contains("does not match")
        }
    }
}

extension TLSClientContextTests.Outcome {
    var isDone: Bool {
        if case .done = self { return true }
        return false
    }
}
