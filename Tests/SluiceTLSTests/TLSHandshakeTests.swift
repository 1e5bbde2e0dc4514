import CShims
import SluiceRouting
import SluiceTLS
import Testing

/// What an OpenSSL client saw of one handshake with a context.
private struct Outcome: Equatable {
    var certificate: String
    var alpn: String
    var version: Int32
    var reused: Bool
}

/// One handshake (`sluice_tls_test_handshake`) between `handle`'s context and a client.
/// Throws the client's and server's errors as text when it fails.
private func handshake(
    _ handle: TLSContextHandle, serverName: String?, alpn: String? = nil, maxVersion: Int32 = 0,
    noTicket: Bool = false, session: UnsafeMutablePointer<UnsafeMutableRawPointer?>? = nil
) throws(HandshakeFailure) -> Outcome {
    var result = sluice_tls_test_result()
    let status = sluice_tls_test_handshake(
        UnsafeMutableRawPointer(handle.pointer), serverName, alpn, maxVersion, noTicket ? 1 : 0, session, &result)
    func text<T>(_ tuple: inout T) -> String {
        withUnsafeBytes(of: &tuple) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
    guard status == 0 else { throw HandshakeFailure(reason: text(&result.error)) }
    return Outcome(
        certificate: text(&result.subject_cn), alpn: text(&result.alpn), version: result.version,
        reused: result.reused != 0)
}

private struct HandshakeFailure: Error {
    var reason: String
}

private let tls12: Int32 = 0x0303
private let tls13: Int32 = 0x0304

@Suite struct TLSHandshakeTests {
    /// a.example.com (default, CA-signed, with its chain), *.apps.example.com, default.example.com.
    static let context: TLSContextHandle = {
        let files = [("a.pem", "a.key"), ("wild.pem", "wild.key"), ("default.pem", "default.key")].map {
            TLSCertificateFiles(cert: TestCertificates.path($0.0), key: TestCertificates.path($0.1))
        }
        do {
            return try TLSContextBuilder.build(certificates: files)
        } catch {
            fatalError("\(error)")
        }
    }()

    @Test(arguments: [
        ("a.example.com", "a.example.com"),
        ("A2.EXAMPLE.com.", "a.example.com"),
        ("x.apps.example.com", "wildcard apps"),
        ("X.Apps.Example.Com", "wildcard apps"),
        ("default.example.com", "default.example.com"),
        ("y.x.apps.example.com", "a.example.com"),  // a wildcard covers one label only
        ("apps.example.com", "a.example.com"),
        ("unknown.test", "a.example.com"),
    ])
    func serverNamePicksTheCertificate(name: String, certificate: String) throws {
        #expect(try handshake(Self.context, serverName: name).certificate == certificate)
    }

    @Test func noServerNameGetsTheDefault() throws {
        let outcome = try handshake(Self.context, serverName: nil)
        #expect(outcome.certificate == "a.example.com")
        #expect(outcome.version == tls13)
    }

    @Test func alpnSelectsHTTP11OrNothing() throws {
        #expect(try handshake(Self.context, serverName: "a.example.com", alpn: "h2,http/1.1").alpn == "http/1.1")
        #expect(try handshake(Self.context, serverName: "a.example.com", alpn: "http/1.1").alpn == "http/1.1")
        #expect(try handshake(Self.context, serverName: "a.example.com", alpn: "h2").alpn == "")
        #expect(try handshake(Self.context, serverName: "a.example.com").alpn == "")
    }

    @Test func tls12IsAcceptedAndOlderRefused() throws {
        let outcome = try handshake(Self.context, serverName: "x.apps.example.com", maxVersion: tls12)
        #expect(outcome.version == tls12)
        #expect(outcome.certificate == "wildcard apps")
        #expect(throws: HandshakeFailure.self) {
            try handshake(Self.context, serverName: "a.example.com", maxVersion: 0x0302)
        }
        #expect(throws: HandshakeFailure.self) {
            try handshake(Self.context, serverName: "a.example.com", maxVersion: 0x0301)
        }
    }

    /// Tickets (TLS 1.3 and 1.2), and the server's session cache (TLS 1.2 without tickets),
    /// for the default certificate and for one the servername callback switched to.
    @Test(arguments: [(tls13, false), (tls12, false), (tls12, true)], ["a.example.com", "x.apps.example.com"])
    func secondConnectionResumesTheSession(mode: (version: Int32, noTicket: Bool), name: String) throws {
        var session: UnsafeMutableRawPointer? = nil
        defer { sluice_tls_test_session_free(session) }
        let maxVersion = mode.version == tls13 ? 0 : mode.version
        var outcomes: [Outcome] = []
        for _ in 0..<2 {
            outcomes.append(
                try handshake(
                    Self.context, serverName: name, maxVersion: maxVersion, noTicket: mode.noTicket, session: &session))
            #expect(session != nil)
        }
        #expect(outcomes.map(\.reused) == [false, true])
        #expect(outcomes.map(\.version) == [mode.version, mode.version])
        #expect(outcomes[1].certificate == outcomes[0].certificate)
    }

    /// Each context frees its certificate contexts with it (a leak or a double free shows here
    /// under a sanitizer, and a shared index or callback argument would break the next one).
    @Test func contextsAreBuiltAndDroppedRepeatedly() throws {
        for _ in 0..<20 {
            let files = [TLSCertificateFiles(cert: TestCertificates.path("a.pem"), key: TestCertificates.path("a.key"))]
            let handle = try TLSContextBuilder.build(certificates: files)
            #expect(try handshake(handle, serverName: "a.example.com").certificate == "a.example.com")
        }
    }
}
