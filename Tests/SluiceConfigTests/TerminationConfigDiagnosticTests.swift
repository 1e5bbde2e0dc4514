import SluiceConfig
import Testing

/// Each termination and redirect mistake, with the exact text `sluice check` prints for it
/// (the certificates' directory written `DIR`).
@Suite struct TerminationConfigDiagnosticTests {
    @Test func theBaseFileLoads() {
        #expect(terminatingDiagnostics(terminatingConfig) == [])
    }

    @Test func terminatingNeedsCertificates() {
        #expect(
            terminatingDiagnostics(terminating(removing: 5...9)) == [
                "DIR/t.yaml:9:20: listeners[0].routes[1].terminate: terminating needs certificates: add "
                    + "'certificates' (cert and key files) to this listener",
                "DIR/t.yaml:14:18: listeners[0].default.terminate: terminating needs certificates: add "
                    + "'certificates' (cert and key files) to this listener",
            ])
    }

    @Test func onlyTLSListenersHaveCertificates() {
        #expect(
            terminatingDiagnostics(terminating(replacing: 22, with: "    protocol: http\n    certificates: []")) == [
                "DIR/t.yaml:23:19: listeners[1].certificates: only tls listeners terminate TLS (this one is http); "
                    + "use 'protocol: tls'"
            ])
    }

    @Test func certificatesAreAListOfCertAndKey() {
        #expect(
            terminatingDiagnostics(terminating(removing: 6...9).replacingLine(5, with: "    certificates: []")) == [
                "DIR/t.yaml:5:19: listeners[0].certificates: at least one certificate is required"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 7, with: "        kee: a.key")) == [
                "DIR/t.yaml:6:9: listeners[0].certificates[0].key: required field is missing",
                "DIR/t.yaml:7:9: listeners[0].certificates[0].kee: unknown field 'kee' (known: cert, key)",
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 6, with: "      - cert: \"\"")) == [
                "DIR/t.yaml:6:15: listeners[0].certificates[0].cert: must not be empty"
            ])
    }

    @Test func unreadableOrWrongCertificateFiles() {
        #expect(
            terminatingDiagnostics(terminating(replacing: 6, with: "      - cert: missing.pem")) == [
                "DIR/t.yaml:6:15: listeners[0].certificates[0].cert: cannot read 'DIR/missing.pem': "
                    + "No such file or directory"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 8, with: "      - cert: garbage.pem")) == [
                "DIR/t.yaml:8:15: listeners[0].certificates[1].cert: 'DIR/garbage.pem' holds no PEM certificate "
                    + "(expected -----BEGIN CERTIFICATE-----)"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 7, with: "        key: nope.key")) == [
                "DIR/t.yaml:7:14: listeners[0].certificates[0].key: cannot read 'DIR/nope.key': "
                    + "No such file or directory"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 7, with: "        key: a.pem")) == [
                "DIR/t.yaml:7:14: listeners[0].certificates[0].key: 'DIR/a.pem' holds no unencrypted PEM private key"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 9, with: "        key: a.key")) == [
                "DIR/t.yaml:9:14: listeners[0].certificates[1].key: the key in 'DIR/a.key' does not match the "
                    + "certificate in 'DIR/wild.pem'"
            ])
    }

    @Test func certificatesNobodyUsesAreReported() {
        #expect(
            terminatingDiagnostics(terminating(removing: 13...20)) == [
                "DIR/t.yaml:6:7: listeners[0].certificates: no route or default has 'terminate: true', so these "
                    + "certificates would never be used"
            ])
    }

    @Test func aServerNameIsEitherPassedThroughOrTerminated() {
        #expect(
            terminatingDiagnostics(terminating(replacing: 11, with: "      - host: a.example.com")) == [
                "DIR/t.yaml:13:9: listeners[0].routes[1]: host 'a.example.com' is passed through by "
                    + "listeners[0].routes[0]; a server name is either passed through or terminated"
            ])
        let terminatedFirst = terminating(
            replacing: 17,
            with: """
                        hsts: 600
                      - host: a.example.com
                        service: db
                """)
        #expect(
            terminatingDiagnostics(terminatedFirst) == [
                "DIR/t.yaml:18:9: listeners[0].routes[2]: host 'a.example.com' is terminated by "
                    + "listeners[0].routes[1]; a server name is either passed through or terminated"
            ])
        let samePath = terminating(
            replacing: 17,
            with: """
                        hsts: 600
                      - host: a.example.com
                        terminate: true
                        service: db
                """)
        #expect(
            terminatingDiagnostics(samePath) == [
                "DIR/t.yaml:18:9: listeners[0].routes[2]: host 'a.example.com' with path '/' is already routed by "
                    + "listeners[0].routes[1]"
            ])
    }

    @Test func passthroughRoutesHaveNoPathOrHSTS() {
        #expect(
            terminatingDiagnostics(terminating(replacing: 14, with: "        terminate: false")) == [
                "DIR/t.yaml:16:15: listeners[0].routes[1].path: a passthrough tls route matches the server name "
                    + "only; paths need 'terminate: true' or an http listener",
                "DIR/t.yaml:17:15: listeners[0].routes[1].hsts: only terminated routes add "
                    + "Strict-Transport-Security; add 'terminate: true' or remove hsts",
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 14, with: "        terminate: yes please")) == [
                "DIR/t.yaml:14:20: listeners[0].routes[1].terminate: expected true or false, found 'yes please'"
            ])
    }

    @Test func hstsIsANonNegativeNumberOfSeconds() {
        #expect(
            terminatingDiagnostics(terminating(replacing: 17, with: "        hsts: -1")) == [
                "DIR/t.yaml:17:15: listeners[0].routes[1].hsts: must be from 0 to 315360000"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 17, with: "        hsts: 1y")) == [
                "DIR/t.yaml:17:15: listeners[0].routes[1].hsts: expected an integer, found '1y'"
            ])
        #expect(terminatingDiagnostics(terminating(replacing: 17, with: "        hsts: 0")) == [])
    }

    @Test func terminatingDefaults() {
        #expect(
            terminatingDiagnostics(terminating(replacing: 20, with: "      close: true")) == [
                "DIR/t.yaml:20:14: listeners[0].default.close: give either 'close: true' or 'terminate: true', not both"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 19, with: "      terminate: false")) == [
                "DIR/t.yaml:20:15: listeners[0].default.status: a status and body answer decrypted requests; add "
                    + "'terminate: true'"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 20, with: "      status: 421\n      service: web")) == [
                "DIR/t.yaml:19:7: listeners[0].default: give either 'service' or 'status' and 'body', not both"
            ])
        #expect(
            terminatingDiagnostics(terminating(removing: 20...20).replacingLine(19, with: "      close: false")) == [
                "DIR/t.yaml:19:7: listeners[0].default: a tls default is 'service: NAME', 'close: true' or "
                    + "'terminate: true'"
            ])
    }

    @Test func redirectsHaveNoService() {
        #expect(
            terminatingDiagnostics(terminating(replacing: 26, with: "        service: web")) == [
                "DIR/t.yaml:26:18: listeners[1].routes[0].service: a route either redirects to https or has a "
                    + "service; remove 'service' or 'redirectHTTPS: true'"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 25, with: "        service: web")) == [
                "DIR/t.yaml:26:20: listeners[1].routes[0].httpsPort: httpsPort is the port of a redirect; add "
                    + "'redirectHTTPS: true'"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 26, with: "        httpsPort: 0")) == [
                "DIR/t.yaml:26:20: listeners[1].routes[0].httpsPort: must be from 1 to 65535"
            ])
        #expect(
            terminatingDiagnostics(terminating(replacing: 25, with: "        redirectHTTPS: false")) == [
                "DIR/t.yaml:24:9: listeners[1].routes[0].service: required field is missing",
                "DIR/t.yaml:26:20: listeners[1].routes[0].httpsPort: httpsPort is the port of a redirect; add "
                    + "'redirectHTTPS: true'",
            ])
    }

    @Test func httpRoutesHaveNoHSTS() {
        #expect(
            terminatingDiagnostics(terminating(replacing: 26, with: "        hsts: 600")) == [
                "DIR/t.yaml:26:15: listeners[1].routes[0].hsts: only terminated routes of a tls listener add "
                    + "Strict-Transport-Security (browsers ignore it over plain HTTP)"
            ])
    }
}
