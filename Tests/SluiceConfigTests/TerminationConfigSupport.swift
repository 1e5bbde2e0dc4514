import Foundation

/// A terminating tls listener and an http listener that redirects to it; tests change one
/// line at a time. Certificate paths are relative to `terminatingFile`'s directory.
///
///      1 listeners:
///      2   - name: https
///      3     address: 127.0.0.1:8443
///      4     protocol: tls
///      5     certificates:
///      6       - cert: a.pem
///      7         key: a.key
///      8       - cert: wild.pem
///      9         key: wild.key
///     10     routes:
///     11       - host: db.example.com
///     12         service: db
///     13       - host: a.example.com
///     14         terminate: true
///     15         service: web
///     16         path: /
///     17         hsts: 600
///     18     default:
///     19       terminate: true
///     20       status: 421
///     21   - address: 127.0.0.1:8080
///     22     protocol: http
///     23     routes:
///     24       - host: a.example.com
///     25         redirectHTTPS: true
///     26         httpsPort: 8443
///     27 services:
///     28   - name: db
///     29     endpoints: [127.0.0.1:9443]
///     30   - name: web
///     31     endpoints: [127.0.0.1:9080]
let terminatingConfig = """
    listeners:
      - name: https
        address: 127.0.0.1:8443
        protocol: tls
        certificates:
          - cert: a.pem
            key: a.key
          - cert: wild.pem
            key: wild.key
        routes:
          - host: db.example.com
            service: db
          - host: a.example.com
            terminate: true
            service: web
            path: /
            hsts: 600
        default:
          terminate: true
          status: 421
      - address: 127.0.0.1:8080
        protocol: http
        routes:
          - host: a.example.com
            redirectHTTPS: true
            httpsPort: 8443
    services:
      - name: db
        endpoints: [127.0.0.1:9443]
      - name: web
        endpoints: [127.0.0.1:9080]

    """

/// The name the configuration is parsed under: a file next to the test certificates.
var terminatingFile: String { TestCertificates.directory + "/t.yaml" }

/// `terminatingConfig` with `line` (1-based) replaced by `text` (several lines, or none).
func terminating(replacing line: Int, with text: String) -> String {
    terminatingConfig.replacingLine(line, with: text)
}

/// `terminatingConfig` without `lines` (1-based).
func terminating(removing lines: ClosedRange<Int>) -> String {
    var all = terminatingConfig.split(separator: "\n", omittingEmptySubsequences: false)
    all.removeSubrange((lines.lowerBound - 1)...(lines.upperBound - 1))
    return all.joined(separator: "\n")
}

/// The diagnostics for `yaml` parsed as `terminatingFile`, with that file's directory
/// written `DIR` so expectations read the same on every machine.
func terminatingDiagnostics(_ yaml: String) -> [String] {
    diagnostics(yaml, file: terminatingFile).map {
        $0.replacingOccurrences(of: TestCertificates.directory, with: "DIR")
    }
}
