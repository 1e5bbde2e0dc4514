import CShims
import Glibc

/// A server-side TLS session (OpenSSL, non-blocking), for termination. It never touches a
/// socket: the loop feeds it the ciphertext it read and sends what it wrote (`makeDetached`).
/// Owned by one loop; the caller keeps the pointer and frees it with `free`. Every call
/// returns at once.
public enum TLSSession {
    public enum Outcome: Equatable {
        /// Bytes moved (read/write) or 0 for a finished handshake.
        case done(Int)
        case wantRead
        case wantWrite
        case eof
        case failed
    }

    @inline(__always)
    static func outcome(_ value: Int) -> Outcome {
        switch Int32(truncatingIfNeeded: value) {
        case _ where value >= 0: return .done(value)
        case SLUICE_TLS_WANT_READ: return .wantRead
        case SLUICE_TLS_WANT_WRITE: return .wantWrite
        case SLUICE_TLS_EOF: return .eof
        default: return .failed
        }
    }

    @inline(__always)
    public static func handshake(_ session: OpaquePointer) -> Outcome {
        outcome(Int(sluice_tls_handshake(UnsafeMutableRawPointer(session))))
    }

    @inline(__always)
    public static func read(_ session: OpaquePointer, into buffer: UnsafeMutableRawPointer, count: Int) -> Outcome {
        outcome(sluice_tls_read(UnsafeMutableRawPointer(session), buffer, count))
    }

    @inline(__always)
    public static func write(_ session: OpaquePointer, from buffer: UnsafeRawPointer, count: Int) -> Outcome {
        outcome(sluice_tls_write(UnsafeMutableRawPointer(session), buffer, count))
    }

    /// Sends close_notify (once the handshake is done), without waiting for the peer's.
    public static func shutdown(_ session: OpaquePointer) {
        sluice_tls_shutdown(UnsafeMutableRawPointer(session))
    }

    public static func free(_ session: OpaquePointer) {
        sluice_tls_free(UnsafeMutableRawPointer(session))
    }

    public static func resumed(_ session: OpaquePointer) -> Bool {
        sluice_tls_session_reused(UnsafeMutableRawPointer(session)) == 1
    }

    /// Right after a `.failed` (or `.eof`) outcome: `Errno.protocolError` (a TLS protocol
    /// error), or the errno a system call OpenSSL made left. Clears the thread's
    /// OpenSSL error queue; no allocation (unlike `lastError`).
    public static func takeFailure() -> Errno {
        let code = sluice_tls_take_error()
        return code != 0 ? Errno(rawValue: code) : .protocolError
    }

    /// The first queued OpenSSL error of this thread, as text; clears the queue.
    public static func lastError() -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            sluice_tls_last_error(buffer.baseAddress, 256)
            return String(cString: buffer.baseAddress!)
        }
    }

    // MARK: - Memory transport

    /// A session over memory: the caller reads ciphertext into `inputRoom` and commits it,
    /// and sends what `pendingOutput` holds. `.wantRead` means "no whole record in the input:
    /// read the socket"; `.wantWrite` means "the output is full: send some".
    /// `prefix` (bytes already read, the ClientHello) is the first input. Nil when out of memory.
    public static func makeDetached(context: OpaquePointer, prefix: UnsafeRawBufferPointer) -> OpaquePointer? {
        guard
            let session = sluice_tls_memory_session_new(
                UnsafeMutableRawPointer(context), prefix.baseAddress, prefix.count)
        else { return nil }
        return OpaquePointer(session)
    }

    /// A client session over memory, from a client context (`TLSContextBuilder.buildClient`),
    /// for TLS to an endpoint: `serverName` goes out as SNI (not for an IP address) and, with
    /// `checkName`, the endpoint's certificate must carry it. Nil when out of memory.
    public static func makeClient(context: OpaquePointer, serverName: String?, checkName: Bool) -> OpaquePointer? {
        let session: UnsafeMutableRawPointer?
        if let serverName {
            session = serverName.withCString {
                sluice_tls_memory_client_session_new(UnsafeMutableRawPointer(context), $0, checkName ? 1 : 0)
            }
        } else {
            session = sluice_tls_memory_client_session_new(UnsafeMutableRawPointer(context), nil, 0)
        }
        return session.map(OpaquePointer.init)
    }

    /// After a failed client handshake: why the endpoint's certificate did not verify, or nil
    /// when it did (or was not checked).
    public static func verifyFailure(_ session: OpaquePointer) -> String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            guard sluice_tls_verify_failure(UnsafeRawPointer(session), buffer.baseAddress, 256) == 1 else {
                return nil
            }
            return String(cString: buffer.baseAddress!)
        }
    }

    /// ALPN offers `h2` before `http/1.1` on this session; call before its handshake. False
    /// when OpenSSL could not record it (the session then offers http/1.1 only).
    public static func offerHTTP2(_ session: OpaquePointer) -> Bool {
        sluice_tls_offer_h2(UnsafeMutableRawPointer(session)) == 0
    }

    /// The handshake selected ALPN `h2`.
    public static func selectedHTTP2(_ session: OpaquePointer) -> Bool {
        sluice_tls_alpn_h2(UnsafeRawPointer(session)) == 1
    }

    /// Where ciphertext from the peer goes (allocated on first use); empty when the input is
    /// full (let the session take what it has first).
    @inline(__always)
    public static func inputRoom(_ session: OpaquePointer) -> UnsafeMutableRawBufferPointer {
        var place: UnsafeMutableRawPointer? = nil
        let room = sluice_tls_input_room(UnsafeMutableRawPointer(session), &place)
        // SAFETY: the session owns `room` bytes at `place` until the next call on it.
        return UnsafeMutableRawBufferPointer(start: place, count: place == nil ? 0 : room)
    }

    /// `count` bytes were written at the start of the last `inputRoom`.
    @inline(__always)
    public static func commitInput(_ session: OpaquePointer, count: Int) {
        sluice_tls_input_commit(UnsafeMutableRawPointer(session), count)
    }

    /// The peer ended its stream: once the input is used up, reads say `.eof`.
    public static func endInput(_ session: OpaquePointer) {
        sluice_tls_input_end(UnsafeMutableRawPointer(session))
    }

    /// Ciphertext received and not yet taken by the session.
    @inline(__always)
    public static func pendingInput(_ session: OpaquePointer) -> Int {
        sluice_tls_input_pending(UnsafeMutableRawPointer(session))
    }

    /// Ciphertext waiting to be sent; valid until the next call on the session.
    @inline(__always)
    public static func pendingOutput(_ session: OpaquePointer) -> UnsafeRawBufferPointer {
        var place: UnsafeRawPointer? = nil
        let count = sluice_tls_output(UnsafeMutableRawPointer(session), &place)
        // SAFETY: the session owns `count` bytes at `place` until the next call on it.
        return UnsafeRawBufferPointer(start: place, count: place == nil ? 0 : count)
    }

    /// How many bytes `pendingOutput` holds.
    @inline(__always)
    public static func pendingOutputCount(_ session: OpaquePointer) -> Int {
        var place: UnsafeRawPointer? = nil
        return sluice_tls_output(UnsafeMutableRawPointer(session), &place)
    }

    /// OpenSSL holds record bytes a read would return without more input.
    @inline(__always)
    public static func hasPending(_ session: OpaquePointer) -> Bool {
        sluice_tls_has_pending(UnsafeMutableRawPointer(session)) != 0
    }

    /// `count` bytes of `pendingOutput` were sent.
    @inline(__always)
    public static func consumeOutput(_ session: OpaquePointer, count: Int) {
        sluice_tls_output_consumed(UnsafeMutableRawPointer(session), count)
    }

    /// Frees the session's record buffers (about 2 x 17 KiB) and its input and output
    /// buffers when they hold no bytes; true when it holds none now. For a connection going
    /// idle (a keep-alive client between requests): an idle connection should cost a few
    /// hundred bytes. They are allocated again at the next read or write, so not for a busy
    /// connection. Loop thread.
    @discardableResult
    public static func releaseTransportBuffers(_ session: OpaquePointer) -> Bool {
        sluice_tls_release_transport_buffers(UnsafeMutableRawPointer(session)) == 1
    }

    /// The negotiated protocol version: 0x0303 TLS 1.2, 0x0304 TLS 1.3.
    public static func version(_ session: OpaquePointer) -> Int {
        Int(sluice_tls_session_version(UnsafeMutableRawPointer(session)))
    }
}

extension Errno {
    /// EPROTO: what a TLS session reports for a protocol error (no socket call failed).
    public static let protocolError = Errno(rawValue: EPROTO)
}
