import CShims
import Glibc
import SluiceRouting
import SluiceSystem
import SluiceTLS
import Testing

/// The memory transport against a real OpenSSL client on a socketpair: the session never
/// touches the socket; every ciphertext byte moves through `inputRoom` / `pendingOutput`
/// and `IO.read` / `IO.write`, as a loop's driver would move it.
@Suite struct TLSMemoryTransportTests {
    static let context: TLSContextHandle = {
        let files = [TLSCertificateFiles(cert: TestCertificates.path("a.pem"), key: TestCertificates.path("a.key"))]
        do {
            return try TLSContextBuilder.build(certificates: files)
        } catch {
            fatalError("\(error)")
        }
    }()

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What the server side did.
    struct Served {
        var echoed = 0
        var version = 0
        var sawWantWrite = false
        var heldNoBuffers = false
    }

    /// Serves one client on `fd` (blocking): handshake, then reads `chunk` plaintext bytes at
    /// a time and writes each chunk back whole, until the client's close_notify.
    static func serve(_ session: OpaquePointer, fd: Int32, chunk: Int) throws -> Served {
        var served = Served()
        let plain = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
        defer { plain.deallocate() }
        func flush() throws {
            while true {
                let out = TLSSession.pendingOutput(session)
                if out.isEmpty { return }
                guard case .done(let n) = try IO.write(fd, from: out.baseAddress!, count: out.count) else {
                    throw Failure(description: "blocking send would block")
                }
                TLSSession.consumeOutput(session, count: n)
            }
        }
        func fill() throws {
            let room = TLSSession.inputRoom(session)
            guard !room.isEmpty else { throw Failure(description: "input full while the session wants to read") }
            guard case .done(let n) = try IO.read(fd, into: room.baseAddress!, count: room.count) else {
                throw Failure(description: "blocking read would block")
            }
            if n == 0 { TLSSession.endInput(session) } else { TLSSession.commitInput(session, count: n) }
        }
        while true {
            switch TLSSession.handshake(session) {
            case .done:
                try flush()
            case .wantRead:
                try flush()
                try fill()
                continue
            case .wantWrite:
                try flush()
                continue
            case .eof, .failed:
                throw Failure(description: "handshake: \(TLSSession.lastError())")
            }
            break
        }
        served.version = TLSSession.version(session)
        var have = 0
        while true {
            switch TLSSession.read(session, into: plain + have, count: chunk - have) {
            case .done(let n):
                have += n
                guard have == chunk else { continue }
                var off = 0
                while off < chunk {
                    switch TLSSession.write(session, from: plain + off, count: chunk - off) {
                    case .done(let k): off += k
                    case .wantWrite:
                        served.sawWantWrite = true
                        try flush()
                    case .wantRead, .eof, .failed:
                        throw Failure(description: "write: \(TLSSession.lastError())")
                    }
                }
                try flush()
                served.echoed += chunk
                have = 0
            case .wantRead:
                try flush()
                try fill()
            case .wantWrite:
                try flush()
            case .eof:
                served.heldNoBuffers = TLSSession.releaseTransportBuffers(session)
                return served
            case .failed:
                throw Failure(description: "read: \(TLSSession.lastError())")
            }
        }
    }

    /// One client run: `total` bytes echoed in `chunk`-byte pieces; `peek` bytes of the
    /// ClientHello read from the socket before the session exists and handed over as prefix.
    static func run(total: Int, chunk: Int, maxVersion: Int32 = 0, peek: Int = 0) throws -> (Served, Int32) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw Failure(description: "socketpair failed")
        }
        defer {
            close(fds[0])
            close(fds[1])
        }
        let clientFD = fds[0]
        let result = ClientResult()
        let client = Threads.spawn {
            var version: Int32 = 0
            var error = [CChar](repeating: 0, count: 256)
            let status = sluice_tls_test_echo_client(
                clientFD, "a.example.com", total, chunk, maxVersion, &version, &error, error.count)
            let text = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            result.set(status: status, version: version, error: text)
        }
        var prefix = [UInt8](repeating: 0, count: peek)
        if peek > 0 {
            let n = prefix.withUnsafeMutableBytes { recv(fds[1], $0.baseAddress, peek, Int32(MSG_WAITALL)) }
            guard n == peek else { throw Failure(description: "peek read \(n)") }
        }
        let session = try prefix.withUnsafeBytes { bytes -> OpaquePointer in
            guard let s = TLSSession.makeDetached(context: context.pointer, prefix: bytes) else {
                throw Failure(description: "no session")
            }
            return s
        }
        defer { TLSSession.free(session) }
        let served: Served
        do {
            served = try serve(session, fd: fds[1], chunk: chunk)
        } catch {
            shutdown(fds[1], Int32(SHUT_RDWR))
            client.join()
            throw error
        }
        client.join()
        let (status, version, message) = result.get()
        guard status == 0 else { throw Failure(description: message) }
        return (served, version)
    }

    final class ClientResult: @unchecked Sendable {
        // SAFETY (@unchecked Sendable): written by the client thread before it exits, read after `join`.
        private var status: Int32 = -1
        private var version: Int32 = 0
        private var error = ""
        func set(status: Int32, version: Int32, error: String) {
            self.status = status
            self.version = version
            self.error = error
        }
        func get() -> (Int32, Int32, String) { (status, version, error) }
    }

    @Test func echoesAMebibyteOverTLS13() throws {
        let (served, version) = try Self.run(total: 1 << 20, chunk: 16 * 1024)
        #expect(version == 0x0304)
        #expect(served.version == 0x0304)
        #expect(served.echoed == 1 << 20)
        #expect(served.heldNoBuffers)
    }

    @Test func echoesOverTLS12InSmallPieces() throws {
        let (served, version) = try Self.run(total: 200 * 1000, chunk: 1000, maxVersion: 0x0303)
        #expect(version == 0x0303)
        #expect(served.echoed == 200 * 1000)
    }

    /// Writes larger than the output buffer report `.wantWrite` until sent: nothing is lost.
    @Test func aFullOutputAsksToBeSentFirst() throws {
        let (served, _) = try Self.run(total: 4 * 256 * 1024, chunk: 256 * 1024)
        #expect(served.sawWantWrite)
        #expect(served.echoed == 1 << 20)
    }

    /// Bytes read before the session existed (a peeked ClientHello) are its first input.
    @Test(arguments: [1, 5, 60])
    func aPeekedPrefixStartsTheHandshake(peek: Int) throws {
        let (served, _) = try Self.run(total: 64 * 1024, chunk: 4096, peek: peek)
        #expect(served.echoed == 64 * 1024)
    }
}
