import CShims
import Glibc
import SluiceRouting
import SluiceTLS
import Testing

private func files(_ cert: String, _ key: String) -> TLSCertificateFiles {
    TLSCertificateFiles(cert: TestCertificates.path(cert), key: TestCertificates.path(key))
}

/// The error `build` throws for `certificates`, or nil when it succeeds.
private func failure(_ certificates: [TLSCertificateFiles]) -> TLSSetupError? {
    do {
        _ = try TLSContextBuilder.build(certificates: certificates)
        return nil
    } catch {
        return error
    }
}

@Suite struct TLSContextBuilderTests {
    @Test func namesComeFromSANsOrTheCommonName() throws {
        let handle = try TLSContextBuilder.build(certificates: [
            files("a.pem", "a.key"), files("wild.pem", "wild.key"), files("default.pem", "default.key"),
        ])
        #expect(
            TLSContextBuilder.certificateNames(handle.pointer) == [
                ["a.example.com", "a2.example.com"], ["*.apps.example.com"], ["default.example.com"],
            ])
        #expect(handle.summary == "a.example.com, a2.example.com (default); *.apps.example.com; default.example.com")
    }

    @Test func unreadableCertificateFile() {
        let missing = TestCertificates.path("missing.pem")
        #expect(
            failure([files("missing.pem", "a.key")])
                == TLSSetupError(index: 0, field: .cert, reason: "cannot read '\(missing)': No such file or directory"))
        let directory = TestCertificates.directory
        #expect(
            failure([TLSCertificateFiles(cert: directory, key: TestCertificates.path("a.key"))])
                == TLSSetupError(index: 0, field: .cert, reason: "cannot read '\(directory)': Is a directory"))
    }

    @Test func certificateFileWithoutACertificate() {
        for name in ["garbage.pem", "a.key"] {
            let path = TestCertificates.path(name)
            #expect(
                failure([files(name, "a.key")])
                    == TLSSetupError(
                        index: 0, field: .cert,
                        reason: "'\(path)' holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"))
        }
    }

    @Test func unreadableOrNonPEMKeyFile() {
        let missing = TestCertificates.path("missing.key")
        #expect(
            failure([files("a.pem", "missing.key")])
                == TLSSetupError(index: 0, field: .key, reason: "cannot read '\(missing)': No such file or directory"))
        for name in ["garbage.pem", "ca.pem"] {
            let path = TestCertificates.path(name)
            #expect(
                failure([files("a.pem", name)])
                    == TLSSetupError(index: 0, field: .key, reason: "'\(path)' holds no unencrypted PEM private key"))
        }
    }

    @Test func keyOfAnotherCertificateIsRefusedOnTheRightItem() {
        let key = TestCertificates.path("default.key")
        let cert = TestCertificates.path("wild.pem")
        #expect(
            failure([files("a.pem", "a.key"), files("wild.pem", "default.key")])
                == TLSSetupError(
                    index: 1, field: .key, reason: "the key in '\(key)' does not match the certificate in '\(cert)'"))
    }
}

@Suite struct TLSContextSettingsTests {
    /// The options and mode bits of the top context (`certificate` nil: SIZE_MAX) or one
    /// certificate's.
    private func settings(_ handle: TLSContextHandle, certificate: Int?) -> (options: UInt64, mode: UInt64)? {
        var options: UInt64 = 0
        var mode: UInt64 = 0
        let status = sluice_tls_ctx_settings(
            UnsafeMutableRawPointer(handle.pointer), certificate ?? -1, &options, &mode)
        return status == 0 ? (options, mode) : nil
    }

    @Test func serverCipherOrderAndReleasedBuffersOnEveryContext() throws {
        let handle = try TLSContextBuilder.build(certificates: [files("a.pem", "a.key"), files("wild.pem", "wild.key")])
        for certificate in [nil, 0, 1] as [Int?] {
            let bits = try #require(settings(handle, certificate: certificate))
            let name = certificate.map { "certificate \($0)" } ?? "top context"
            #expect(bits.options & SLUICE_SSL_OP_CIPHER_SERVER_PREFERENCE != 0, "\(name): no server cipher order")
            #expect(bits.options & SLUICE_SSL_OP_PRIORITIZE_CHACHA != 0, "\(name): ChaCha20 not kept for its clients")
            #expect(bits.options & SLUICE_SSL_OP_NO_TICKET == 0, "\(name): tickets off")
            #expect(bits.mode & SLUICE_SSL_MODE_RELEASE_BUFFERS != 0, "\(name): buffers kept when empty")
        }
        #expect(settings(handle, certificate: 2) == nil)
    }
}

@Suite struct TLSSessionBufferTests {
    @Test func anIdleSessionGivesItsBuffersBack() throws {
        let handle = try TLSContextBuilder.build(certificates: [files("a.pem", "a.key")])
        let session = try #require(sluice_tls_memory_session_new(UnsafeMutableRawPointer(handle.pointer), nil, 0))
        defer { sluice_tls_free(session) }
        #expect(sluice_tls_release_buffers(session) == 1)
        #expect(sluice_tls_release_transport_buffers(session) == 1)
    }
}
