#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads a configuration file whole, reporting failures in the operating system's words.
enum ConfigFile {
    /// Why a file could not be turned into text.
    enum ReadError: Error, Equatable, CustomStringConvertible {
        /// open(2) or read(2) failed with this errno.
        case system(operation: String, errno: Int32)
        /// The bytes are not UTF-8.
        case notUTF8
        /// Larger than any configuration file should be (`/dev/zero` given by mistake).
        case tooLarge

        var description: String {
            switch self {
            case .system(let operation, let code):
                return "cannot \(operation) the file: \(String(cString: strerror(code)))"
            case .notUTF8:
                return "the file is not valid UTF-8 text"
            case .tooLarge:
                return "the file is larger than \(ConfigFile.maximumBytes >> 20) MiB"
            }
        }
    }

    static let maximumBytes = 16 << 20

    /// The contents of `path` as text. Blocks; retries reads interrupted by a signal (a SIGHUP
    /// arriving while the previous one is handled must not fail the reload).
    static func contents(atPath path: String) -> Result<String, ReadError> {
        var fd: Int32
        repeat {
            fd = open(path, O_RDONLY | O_CLOEXEC)
        } while fd < 0 && errno == EINTR
        guard fd >= 0 else { return .failure(.system(operation: "open", errno: errno)) }
        defer { close(fd) }

        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                // SAFETY: read(2) writes at most buffer.count bytes into memory this closure owns.
                read(fd, buffer.baseAddress, buffer.count)
            }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(.system(operation: "read", errno: errno))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            guard bytes.count <= maximumBytes else { return .failure(.tooLarge) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(.notUTF8) }
        return .success(text)
    }
}
