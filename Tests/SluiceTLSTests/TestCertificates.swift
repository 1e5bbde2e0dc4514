import Foundation

/// Throwaway certificates made with the `openssl` command line, once per test run, in a
/// temporary directory:
///
/// | files                      | names                                   | signed by      |
/// | -------------------------- | --------------------------------------- | -------------- |
/// | `ca.pem`, `ca.key`         | CN Sluice Test CA                       | itself         |
/// | `a.pem` (+ CA), `a.key`    | SAN a.example.com, A2.Example.com.      | the CA (EC)    |
/// | `wild.pem`, `wild.key`     | SAN *.apps.example.com                  | the CA (RSA)   |
/// | `default.pem`, `default.key` | CN default.example.com, no SAN        | itself (EC)    |
/// | `garbage.pem`              | not PEM                                 |                |
enum TestCertificates {
    static let directory: String = {
        let path = NSTemporaryDirectory() + "sluice-tls-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(path)'
            ec='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'
            openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj '/CN=Sluice Test CA'
            printf 'subjectAltName=DNS:a.example.com,DNS:A2.Example.com.\\n' > a.ext
            openssl req $ec -keyout a.key -out a.csr -subj '/CN=a.example.com'
            openssl x509 -req -in a.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile a.ext -out a.leaf.pem
            cat a.leaf.pem ca.pem > a.pem
            printf 'subjectAltName=DNS:*.apps.example.com\\n' > wild.ext
            openssl req -newkey rsa:2048 -nodes -keyout wild.key -out wild.csr -subj '/CN=wildcard apps'
            openssl x509 -req -in wild.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile wild.ext \\
                -out wild.pem
            openssl req -x509 $ec -keyout default.key -out default.pem -days 2 -subj '/CN=default.example.com'
            printf 'hello, not a certificate\\n' > garbage.pem
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
            process.waitUntilExit()
        } catch {
            fatalError("cannot run openssl: \(error)")
        }
        precondition(process.terminationStatus == 0, "openssl failed making test certificates in \(path)")
        return path
    }()

    static func path(_ name: String) -> String { directory + "/" + name }
}
