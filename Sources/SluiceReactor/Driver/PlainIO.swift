import SluiceSystem

/// The byte calls as plain system calls, turned into the drivers' outcomes (errno kept): the
/// epoll driver's only way, and the io_uring driver's for polling sockets, large sends and
/// splices.
enum PlainIO {
    @inline(__always)
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int32) -> ReadResult {
        do {
            switch try IO.read(fd, into: buffer, count: Int(count)) {
            case .wouldBlock: return .wouldBlock
            case .done(0): return .eof
            case .done(let n): return .bytes(Int32(n))
            }
        } catch {
            return .failed(error)
        }
    }

    @inline(__always)
    static func send(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int32) -> WriteResult {
        do {
            switch try IO.write(fd, from: buffer, count: Int(count)) {
            case .wouldBlock: return .wouldBlock
            case .done(let n): return .bytes(Int32(n))
            }
        } catch {
            return .failed(error)
        }
    }

    @inline(__always)
    static func splice(from source: Int32, to destination: Int32, count: Int32) -> ReadResult {
        do {
            switch try IO.splice(from: source, to: destination, count: Int(count)) {
            case .wouldBlock: return .wouldBlock
            case .done(0): return .eof
            case .done(let n): return .bytes(Int32(n))
            }
        } catch {
            return .failed(error)
        }
    }
}
