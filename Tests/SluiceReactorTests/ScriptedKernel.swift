#if DEBUG
    import Glibc

    @testable import SluiceReactor
    @testable import SluiceSystem

    /// A kernel played by a test (`Driver.kernel`): every call the loop makes is recorded as a
    /// `Call` and answered from per-descriptor state the test scripts, without a socket.
    ///
    /// Sockets are fake descriptors (a million and up) named for the script: `L1` for
    /// listeners, `C1` for clients (queued with `queueClient`, taken by `accept`), `U1` for
    /// upstream connections (made by `connect`, answered from `connectOutcomes`). Each has
    /// what its peer sent (`deliver`; reads return it, then "would block", then the end of
    /// stream once `closePeer`), what the loop sent it (`received`), and its registration
    /// (`token`, for the test to raise the socket's events). Any other descriptor passed to
    /// `splice` or `fillPipe` is one of the loop's real pipes (`PipePool`): its bytes are kept
    /// here, by the pipe's inode, so both ends of one pipe share them. Nothing is written to a
    /// real descriptor.
    ///
    /// Misuse (a call on a descriptor closed or never made, a second close, a splice between
    /// two sockets) is recorded in `violations`.
    final class FakeKernel: ScriptedKernel {
        /// One driver call and its answer, as the script asserts it.
        enum Call: Equatable, CustomStringConvertible {
            /// A listener (or wake-up descriptor) watched for input.
            case watchInput(Int32)
            /// A connection's socket watched for every event under a token of this kind.
            case watch(Int32, EventToken.Kind)
            /// Moved to another token, every event.
            case rewatch(Int32, EventToken.Kind)
            /// Moved to a token for input and hang-up only (an idle pooled upstream).
            case watchIdle(Int32, EventToken.Kind)
            case unwatch(Int32)
            /// The descriptor accepted from the listener; nil: the queue was empty.
            case accept(Int32, Int32?)
            /// The endpoint's port and the answer.
            case connect(UInt16, ConnectResult)
            case connectError(Int32, Errno?)
            case setNoDelay(Int32)
            case shutdownWrite(Int32)
            case close(Int32)
            case abort(Int32)
            case localAddress(Int32)
            case read(Int32, ReadResult)
            case send(Int32, WriteResult)
            /// From, to (a pipe end is `FakeKernel.pipe`), and the answer.
            case splice(Int32, Int32, ReadResult)
            case fillPipe(Int)

            var description: String { FakeKernel.describe(self) }
        }

        /// How the next `connect` ends.
        enum ConnectOutcome {
            /// EINPROGRESS: writability, then `connectError`, tell.
            case inProgress
            case connected
            /// ECONNREFUSED at once.
            case refused
        }

        /// A fake socket: its state and its peer's.
        struct Peer {
            var name: String
            /// Bytes the peer sent that the loop has not read.
            var inbound: [UInt8] = []
            /// The peer shut its side: reads end with EOF once `inbound` is empty.
            var peerClosed = false
            /// Bytes the loop sent to the peer.
            var received: [UInt8] = []
            /// How many more bytes sends take before "would block" (nil: no limit).
            var sendRoom: Int? = nil
            /// The loop's last registration of the socket.
            var token: EventToken? = nil
            var shutDown = false
            var closed = false
            var aborted = false
            /// Upstreams: the endpoint's port, and what `connectError` answers.
            var port: UInt16 = 0
            var pendingError: Errno? = nil
        }

        /// How splice calls name a pipe end.
        static let pipe: Int32 = -1
        /// Fake descriptors lie far above any real one, so a pipe is never taken for one; the
        /// million tells the kind (listener, client, upstream), so a descriptor names itself.
        static let kinds: [Character] = ["L", "C", "U"]

        private(set) var calls: [Call] = []
        private(set) var sockets: [Int32: Peer] = [:]
        private(set) var violations: [String] = []
        /// Bytes in each of the loop's pipes, by inode.
        private(set) var pipes: [UInt64: [UInt8]] = [:]
        /// Answers for the next connects, in order; `.inProgress` once empty.
        var connectOutcomes: [ConnectOutcome] = []
        private var acceptQueues: [Int32: [Int32]] = [:]
        private var counts: [Int32] = [0, 0, 0]

        // MARK: - Test side

        /// A new listening socket.
        func listener() -> Int32 { make(0) }

        /// A client waiting on `listener`'s queue; its descriptor (what `accept` will return).
        @discardableResult
        func queueClient(on listener: Int32, sending bytes: [UInt8] = []) -> Int32 {
            let fd = make(1)
            sockets[fd]!.inbound = bytes
            acceptQueues[listener, default: []].append(fd)
            return fd
        }

        /// The peer of `fd` sends `bytes`.
        func deliver(_ bytes: [UInt8], to fd: Int32) { sockets[fd]!.inbound += bytes }

        func deliver(_ text: String, to fd: Int32) { deliver(Array(text.utf8), to: fd) }

        /// The peer of `fd` shuts its side (FIN after what it sent).
        func closePeer(_ fd: Int32) { sockets[fd]!.peerClosed = true }

        /// `connectError` on `fd` answers `error` (a connect in progress that failed).
        func failConnect(_ fd: Int32, _ error: Errno) { sockets[fd]!.pendingError = error }

        func setSendRoom(_ fd: Int32, _ room: Int?) { sockets[fd]!.sendRoom = room }

        func received(_ fd: Int32) -> [UInt8] { sockets[fd]?.received ?? [] }

        func receivedText(_ fd: Int32) -> String { String(decoding: received(fd), as: UTF8.self) }

        /// Bytes the peer sent that the loop has not read yet.
        func unread(_ fd: Int32) -> Int { sockets[fd]?.inbound.count ?? 0 }

        func token(_ fd: Int32) -> EventToken {
            guard let token = sockets[fd]?.token else { preconditionFailure("\(Self.name(fd)) is not watched") }
            return token
        }

        func socket(_ fd: Int32) -> Peer? { sockets[fd] }

        /// The upstream descriptors, in the order of their connects.
        private(set) var upstreams: [Int32] = []

        /// The calls since the last `take`, which are forgotten.
        func take() -> [Call] {
            defer { calls.removeAll() }
            return calls
        }

        /// `L1`, `C2`, `U1`, `pipe`; `fd12` for a descriptor the fake did not make.
        static func name(_ fd: Int32) -> String {
            if fd == pipe { return "pipe" }
            let kind = Int(fd / 1_000_000) - 1
            guard kinds.indices.contains(kind) else { return "fd\(fd)" }
            return "\(kinds[kind])\(fd % 1_000_000)"
        }

        // MARK: - ScriptedKernel

        func watch(_ fd: Int32, _ token: EventToken, idle: Bool, moving: Bool) -> Bool {
            if idle && !moving {
                // A listener, or the loop's own wake-up descriptor (made before the fake).
                if sockets[fd] != nil { sockets[fd]!.token = token }
                calls.append(.watchInput(fd))
                return true
            }
            guard check(fd, "watch") else { return false }
            sockets[fd]!.token = token
            if idle {
                calls.append(.watchIdle(fd, token.kind))
            } else {
                calls.append(moving ? .rewatch(fd, token.kind) : .watch(fd, token.kind))
            }
            return true
        }

        func unwatch(_ fd: Int32) {
            if sockets[fd] != nil { sockets[fd]!.token = nil }
            calls.append(.unwatch(fd))
        }

        func accept(_ listener: Int32) -> AcceptResult {
            _ = check(listener, "accept")
            guard var queue = acceptQueues[listener], !queue.isEmpty else {
                calls.append(.accept(listener, nil))
                return .empty
            }
            let fd = queue.removeFirst()
            acceptQueues[listener] = queue
            calls.append(.accept(listener, fd))
            return .accepted(AcceptedSocket(fd: fd, peer: Self.peer))
        }

        func connect(to address: SystemAddress) -> ConnectResult {
            let outcome = connectOutcomes.isEmpty ? .inProgress : connectOutcomes.removeFirst()
            let result: ConnectResult
            switch outcome {
            case .refused:
                result = .failed(.connectionRefused)
            case .inProgress, .connected:
                let fd = make(2)
                sockets[fd]!.port = address.port
                upstreams.append(fd)
                result = outcome == .connected ? .connected(fd) : .inProgress(fd)
            }
            calls.append(.connect(address.port, result))
            return result
        }

        func connectError(_ fd: Int32) -> Errno? {
            _ = check(fd, "connectError")
            let error = sockets[fd]?.pendingError
            calls.append(.connectError(fd, error))
            return error
        }

        func setNoDelay(_ fd: Int32) {
            _ = check(fd, "setNoDelay")
            calls.append(.setNoDelay(fd))
        }

        func shutdownWrite(_ fd: Int32) {
            if check(fd, "shutdownWrite") { sockets[fd]!.shutDown = true }
            calls.append(.shutdownWrite(fd))
        }

        func close(_ fd: Int32, abort: Bool) {
            if check(fd, abort ? "abort" : "close") {
                sockets[fd]!.closed = true
                sockets[fd]!.aborted = abort
                sockets[fd]!.token = nil
            }
            calls.append(abort ? .abort(fd) : .close(fd))
        }

        func localAddress(_ fd: Int32) -> SystemAddress? {
            _ = check(fd, "localAddress")
            calls.append(.localAddress(fd))
            return SystemAddress(ip: .v4(0x7F00_0001), port: 8080)
        }

        func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int32) -> ReadResult {
            let result: ReadResult
            if !check(fd, "read") {
                result = .failed(.badFileDescriptor)
            } else if sockets[fd]!.inbound.isEmpty {
                result = sockets[fd]!.peerClosed ? .eof : .wouldBlock
            } else {
                let n = min(Int(count), sockets[fd]!.inbound.count)
                sockets[fd]!.inbound.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
                sockets[fd]!.inbound.removeFirst(n)
                result = .bytes(Int32(n))
            }
            calls.append(.read(fd, result))
            return result
        }

        func send(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int32) -> WriteResult {
            let result: WriteResult
            if !check(fd, "send") {
                result = .failed(.badFileDescriptor)
            } else if sockets[fd]!.sendRoom == 0 {
                result = .wouldBlock
            } else {
                let n = min(Int(count), sockets[fd]!.sendRoom ?? Int(count))
                sockets[fd]!.received += UnsafeRawBufferPointer(start: buffer, count: n)
                if let room = sockets[fd]!.sendRoom { sockets[fd]!.sendRoom = room - n }
                result = .bytes(Int32(n))
            }
            calls.append(.send(fd, result))
            return result
        }

        func splice(from source: Int32, to destination: Int32, count: Int32) -> ReadResult {
            let result: ReadResult
            switch (sockets[source] != nil, sockets[destination] != nil) {
            case (true, false):
                // Socket into pipe.
                let inode = Self.inode(destination)
                if !check(source, "splice") {
                    result = .failed(.badFileDescriptor)
                } else if sockets[source]!.inbound.isEmpty {
                    result = sockets[source]!.peerClosed ? .eof : .wouldBlock
                } else {
                    let n = min(Int(count), sockets[source]!.inbound.count)
                    pipes[inode, default: []] += sockets[source]!.inbound[0..<n]
                    sockets[source]!.inbound.removeFirst(n)
                    result = .bytes(Int32(n))
                }
                calls.append(.splice(source, Self.pipe, result))
            case (false, true):
                // Pipe into socket.
                let inode = Self.inode(source)
                var held = pipes[inode] ?? []
                if !check(destination, "splice") {
                    result = .failed(.badFileDescriptor)
                } else if held.isEmpty {
                    violations.append("splice from an empty pipe to \(Self.name(destination))")
                    result = .wouldBlock
                } else if sockets[destination]!.sendRoom == 0 {
                    result = .wouldBlock
                } else {
                    let n = min(Int(count), held.count, sockets[destination]!.sendRoom ?? Int(count))
                    sockets[destination]!.received += held[0..<n]
                    if let room = sockets[destination]!.sendRoom { sockets[destination]!.sendRoom = room - n }
                    held.removeFirst(n)
                    pipes[inode] = held
                    result = .bytes(Int32(n))
                }
                calls.append(.splice(Self.pipe, destination, result))
            default:
                violations.append("splice \(Self.name(source)) → \(Self.name(destination)): not a socket and a pipe")
                result = .failed(.invalid)
                calls.append(.splice(source, destination, result))
            }
            return result
        }

        func fillPipe(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int) -> Bool {
            if sockets[fd] != nil { violations.append("fillPipe into socket \(Self.name(fd))") }
            pipes[Self.inode(fd), default: []] += UnsafeRawBufferPointer(start: buffer, count: count)
            calls.append(.fillPipe(count))
            return true
        }

        // MARK: - Helpers

        /// A new socket of `kind` (an index of `kinds`).
        private func make(_ kind: Int) -> Int32 {
            counts[kind] += 1
            let fd = Int32(kind + 1) * 1_000_000 + counts[kind]
            sockets[fd] = Peer(name: Self.name(fd))
            return fd
        }

        /// The socket exists and is open; a violation is noted otherwise.
        private func check(_ fd: Int32, _ call: String) -> Bool {
            guard let socket = sockets[fd] else {
                violations.append("\(call) on unknown descriptor \(fd)")
                return false
            }
            guard !socket.closed else {
                violations.append("\(call) on \(socket.name) after its close")
                return false
            }
            return true
        }

        /// Both ends of a pipe share an inode.
        private static func inode(_ fd: Int32) -> UInt64 {
            var info = stat()
            guard fstat(fd, &info) == 0 else { return UInt64.max }
            return UInt64(info.st_ino)
        }

        /// Every client comes from 192.0.2.7:40000.
        static let peer: sockaddr_storage = {
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { raw in
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = UInt16(40000).bigEndian
                address.sin_addr = in_addr(s_addr: UInt32(0xC000_0207).bigEndian)
                withUnsafeBytes(of: &address) { raw.copyMemory(from: $0) }
            }
            return storage
        }()

        static func describe(_ call: Call) -> String {
            func read(_ result: ReadResult) -> String {
                switch result {
                case .bytes(let n): return "\(n)"
                case .eof: return "EOF"
                case .wouldBlock: return "EAGAIN"
                case .failed(let error): return "\(error)"
                }
            }
            func write(_ result: WriteResult) -> String {
                switch result {
                case .bytes(let n): return "\(n)"
                case .wouldBlock: return "EAGAIN"
                case .failed(let error): return "\(error)"
                }
            }
            switch call {
            case .watchInput(let fd): return "watchInput(\(name(fd)))"
            case .watch(let fd, let kind): return "watch(\(name(fd)), \(kind))"
            case .rewatch(let fd, let kind): return "rewatch(\(name(fd)), \(kind))"
            case .watchIdle(let fd, let kind): return "watchIdle(\(name(fd)), \(kind))"
            case .unwatch(let fd): return "unwatch(\(name(fd)))"
            case .accept(let listener, let fd): return "accept(\(name(listener))) -> \(fd.map(name) ?? "EAGAIN")"
            case .connect(let port, let result):
                switch result {
                case .connected(let fd): return "connect(:\(port)) -> \(name(fd))"
                case .inProgress(let fd): return "connect(:\(port)) -> \(name(fd)) in progress"
                case .failed(let error): return "connect(:\(port)) -> \(error)"
                }
            case .connectError(let fd, let error): return "connectError(\(name(fd))) -> \(error.map { "\($0)" } ?? "0")"
            case .setNoDelay(let fd): return "setNoDelay(\(name(fd)))"
            case .shutdownWrite(let fd): return "shutdownWrite(\(name(fd)))"
            case .close(let fd): return "close(\(name(fd)))"
            case .abort(let fd): return "abort(\(name(fd)))"
            case .localAddress(let fd): return "localAddress(\(name(fd)))"
            case .read(let fd, let result): return "read(\(name(fd))) -> \(read(result))"
            case .send(let fd, let result): return "send(\(name(fd))) -> \(write(result))"
            case .splice(let from, let to, let result): return "splice(\(name(from)) → \(name(to))) -> \(read(result))"
            case .fillPipe(let count): return "fillPipe(\(count))"
            }
        }
    }
#endif
