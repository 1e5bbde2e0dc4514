import Foundation

/// Throwaway certificates for configuration tests, made once per run with the `openssl`
/// command line in a temporary directory: `a.pem`/`a.key` (SAN a.example.com),
/// `wild.pem`/`wild.key` (SAN *.apps.example.com), and `garbage.pem` (not PEM).
enum TestCertificates {
    static let directory: String = {
        let path = NSTemporaryDirectory() + "sluice-config-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        run(
            """
            set -e
            ec='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2'
            openssl req -x509 $ec -keyout a.key -out a.pem -subj /CN=a.example.com \\
                -addext subjectAltName=DNS:a.example.com
            openssl req -x509 $ec -keyout wild.key -out wild.pem -subj /CN=apps \\
                -addext 'subjectAltName=DNS:*.apps.example.com'
            printf 'hello, not a certificate\\n' > garbage.pem
            """, in: path)
        return path
    }()

    /// Runs `script` with /bin/sh in `directory`; traps when it fails (the tests cannot go on).
    static func run(_ script: String, in directory: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
            process.waitUntilExit()
        } catch {
            fatalError("cannot run /bin/sh: \(error)")
        }
        precondition(process.terminationStatus == 0, "script failed in \(directory):\n\(script)")
    }

    /// A fresh directory under the temporary one, for a test that writes files.
    static func scratchDirectory(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "sluice-config-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
