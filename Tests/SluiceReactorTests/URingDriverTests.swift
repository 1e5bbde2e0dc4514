#if DEBUG
    import Glibc
    import Testing

    @testable import SluiceReactor
    @testable import SluiceSystem

    /// The io_uring driver's completion paths, with completions made by hand: the driver
    /// records what it would submit (`recorded`), the test answers with `complete`. The
    /// descriptors are real socket pairs, so the plain system calls the driver falls back to
    /// (polling, large sends, splice) are real.
    @Suite(.enabled(if: URing.probe() == nil, "io_uring is not available here"))
    struct URingDriverTests {
        let driver: URingDriver
        let bufferFlag = URing.bufferFlag
        let moreFlag = URing.moreFlag

        init() throws {
            driver = try URingDriver(entries: 64, buffers: 8, bufferSize: 4096)
            driver.recorded = []
        }

        func pair() -> (Int32, Int32) {
            var fds: [Int32] = [0, 0]
            let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            precondition(socketpair(AF_UNIX, flags, 0, &fds) == 0)
            return (fds[0], fds[1])
        }

        func token(_ index: Int32) -> EventToken { EventToken(kind: .downstream, index: index, generation: 1) }

        /// A receive completion carrying `bytes` in provided buffer `id`.
        func receive(_ fd: Int32, _ bytes: String, buffer id: Int32, more: Bool = true) {
            let data = Array(bytes.utf8)
            data.withUnsafeBytes { driver.ring.buffer(id).copyMemory(from: $0.baseAddress!, byteCount: data.count) }
            let flags = bufferFlag | UInt32(id) << URing.bufferShift | (more ? moreFlag : 0)
            driver.complete(data: driver.userData(.recv, fd), result: Int32(data.count), flags: flags)
        }

        func events() -> [(EventToken, Readiness)] {
            let n = driver.flushEvents()
            return (0..<n).map { (driver.token(at: $0), driver.readiness(at: $0)) }
        }

        func read(_ fd: Int32, _ count: Int32) -> (ReadResult, String) {
            var buffer = [UInt8](repeating: 0, count: Int(count))
            let result = buffer.withUnsafeMutableBytes { driver.read(fd, into: $0.baseAddress!, count: count) }
            if case .bytes(let n) = result { return (result, String(decoding: buffer[0..<Int(n)], as: UTF8.self)) }
            return (result, "")
        }

        func ops() -> [URingOp] {
            defer { driver.recorded = [] }
            return driver.recorded ?? []
        }

        @Test func watchArmsOneReceiveAndRaisesTheFirstWritableEvent() {
            let (a, b) = pair()
            defer { close(b) }
            #expect(driver.watch(a, token(7)))
            #expect(ops() == [URingOp(kind: .recv, fd: a)])
            let raised = events()
            #expect(raised.count == 1)
            #expect(raised.first?.0 == token(7))
            #expect(raised.first?.1 == .writable)
            driver.close(a, abort: false)
        }

        @Test func shortReceiveIsReadInPiecesAndItsBufferGoesBack() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = events()
            receive(a, "hello", buffer: 3)
            let raised = events()
            #expect(raised.count == 1 && raised[0].1.mayRead)
            #expect(driver.buffersOut == 1)
            #expect(read(a, 3) == (.bytes(3), "hel"))
            #expect(read(a, 10) == (.bytes(2), "lo"))
            #expect(driver.buffersOut == 0)
            #expect(read(a, 10).0 == .wouldBlock)
            // Still armed (multishot): no new receive prepared.
            #expect(ops() == [URingOp(kind: .recv, fd: a)])
            driver.close(a, abort: false)
        }

        @Test func twoQueuedReceivesCoalesceIntoOneEventAndReadInOrder() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = events()
            receive(a, "GET / HTTP/1.1\r\n", buffer: 0)
            receive(a, "Host: x\r\n\r\n", buffer: 1)
            #expect(events().count == 1)
            #expect(read(a, 100) == (.bytes(27), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
            driver.close(a, abort: false)
        }

        @Test func unreadInputPausesTheReceiveUntilReadEmpty() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = ops()
            receive(a, "one", buffer: 0)
            receive(a, "two", buffer: 1)
            // Two buffers unread: the receive is cancelled (back-pressure stays in the socket).
            #expect(ops() == [URingOp(kind: .cancel, fd: a)])
            driver.complete(data: driver.userData(.recv, a), result: -Errno.canceled.rawValue, flags: 0)
            #expect(driver.inspect(a).recv == .off)
            #expect(ops().isEmpty)
            #expect(read(a, 3) == (.bytes(3), "one"))
            #expect(ops().isEmpty)
            #expect(read(a, 3) == (.bytes(3), "two"))
            // Read empty: receiving again.
            #expect(ops() == [URingOp(kind: .recv, fd: a)])
            driver.close(a, abort: false)
        }

        @Test func anEmptyBufferRingMovesTheSocketToPolling() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = ops()
            _ = events()
            driver.complete(data: driver.userData(.recv, a), result: -Errno.noBuffers.rawValue, flags: 0)
            #expect(ops() == [URingOp(kind: .poll, fd: a)])
            #expect(driver.inspect(a).polling)
            #expect(events().first?.1.mayRead == true)
            // Reads are plain system calls now.
            #expect(read(a, 10).0 == .wouldBlock)
            _ = "ping".withCString { Glibc.write(b, $0, 4) }
            #expect(read(a, 10) == (.bytes(4), "ping"))
            driver.close(a, abort: false)
        }

        @Test func aPollingSocketReadsOnFromTheSocketAfterItsQueue() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = ops()
            _ = events()
            receive(a, "queued ", buffer: 0)
            driver.complete(data: driver.userData(.recv, a), result: -Errno.noBuffers.rawValue, flags: 0)
            #expect(driver.inspect(a).polling)
            // The rest of the input waits in the socket; the poll's edge for it may be spent.
            _ = "in the socket".withCString { Glibc.write(b, $0, 13) }
            _ = events()
            // One read takes both: a short read would say drained, and no edge would follow.
            #expect(read(a, 100) == (.bytes(20), "queued in the socket"))
            #expect(read(a, 100).0 == .wouldBlock)
            driver.close(a, abort: false)
        }

        @Test func aPollingSocketKeepsTheEndFoundBehindItsQueue() {
            let (a, b) = pair()
            _ = driver.watch(a, token(1))
            _ = ops()
            _ = events()
            receive(a, "last", buffer: 1)
            driver.complete(data: driver.userData(.recv, a), result: -Errno.noBuffers.rawValue, flags: 0)
            close(b)
            _ = events()
            #expect(read(a, 100) == (.bytes(4), "last"))
            #expect(events().first?.1.hungUp == true)
            #expect(read(a, 100).0 == .eof)
            driver.close(a, abort: false)
        }

        @Test func aReceiveEndingWithDataIsArmedAgainOnceRead() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = ops()
            receive(a, "last", buffer: 2, more: false)
            #expect(ops().isEmpty)
            #expect(read(a, 10) == (.bytes(4), "last"))
            #expect(ops() == [URingOp(kind: .recv, fd: a)])
            driver.close(a, abort: false)
        }

        @Test func endOfStreamAndErrorsAreReadAfterTheData() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            receive(a, "bye", buffer: 0)
            driver.complete(data: driver.userData(.recv, a), result: 0, flags: 0)
            #expect(events().first?.1.hungUp == true)
            #expect(read(a, 10) == (.bytes(3), "bye"))
            #expect(read(a, 10).0 == .eof)
            let (c, d) = pair()
            defer { close(d) }
            _ = driver.watch(c, token(2))
            driver.complete(data: driver.userData(.recv, c), result: -ECONNRESET, flags: 0)
            #expect(events().last?.1.closed == true)
            #expect(read(c, 10).0 == .failed(Errno(rawValue: ECONNRESET)))
            driver.close(a, abort: false)
            driver.close(c, abort: false)
        }

        @Test func aCompletionAfterCloseOnlyGivesItsBufferBack() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            let stale = driver.userData(.recv, a)
            receive(a, "queued", buffer: 4)
            _ = ops()
            _ = events()
            driver.close(a, abort: false)
            #expect(ops() == [URingOp(kind: .cancel, fd: a), URingOp(kind: .close, fd: a)])
            #expect(driver.buffersOut == 0)
            // The descriptor number comes back for another socket before the old receive ends.
            let (c, d) = pair()
            defer {
                driver.close(c, abort: false)
                close(d)
            }
            _ = driver.watch(c, token(2))
            _ = events()
            let flags = bufferFlag | UInt32(5) << URing.bufferShift
            driver.complete(data: stale, result: 9, flags: flags | moreFlag)
            driver.complete(data: stale, result: -Errno.canceled.rawValue, flags: 0)
            #expect(driver.buffersOut == 0)
            #expect(events().isEmpty)
            #expect(read(c, 10).0 == .wouldBlock)
        }

        @Test func aSecondSendWaitsForTheFirstCompletion() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = ops()
            _ = events()
            let first = Array("response".utf8)
            #expect(first.withUnsafeBytes { driver.send(a, from: $0.baseAddress!, count: 8) } == .bytes(8))
            #expect(ops() == [URingOp(kind: .send, fd: a, count: 8)])
            #expect(first.withUnsafeBytes { driver.send(a, from: $0.baseAddress!, count: 8) } == .wouldBlock)
            driver.shutdownWrite(a)
            #expect(driver.inspect(a).shutdownPending)
            driver.complete(data: driver.userData(.send, a), result: 8, flags: 0)
            let raised = events()
            #expect(raised.count == 1 && raised[0].1.mayWrite)
            #expect(!driver.inspect(a).shutdownPending)
            #expect(driver.inspect(a).sendSlot == -1)
            driver.close(a, abort: false)
        }

        @Test func aFailedSendIsReportedToTheNextCall() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = events()
            let bytes = Array("x".utf8)
            _ = bytes.withUnsafeBytes { driver.send(a, from: $0.baseAddress!, count: 1) }
            driver.complete(data: driver.userData(.send, a), result: -EPIPE, flags: 0)
            #expect(events().first?.1.closed == true)
            #expect(
                bytes.withUnsafeBytes { driver.send(a, from: $0.baseAddress!, count: 1) }
                    == .failed(Errno(rawValue: EPIPE)))
            driver.close(a, abort: false)
        }

        @Test func aLargeSendGoesStraightToTheSocket() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = ops()
            let bytes = [UInt8](repeating: 0x61, count: URingDriver.slotSize + 1)
            let result = bytes.withUnsafeBytes { driver.send(a, from: $0.baseAddress!, count: Int32($0.count)) }
            guard case .bytes(let n) = result else {
                Issue.record("send: \(result)")
                return
            }
            #expect(n > 0)
            #expect(ops().isEmpty)
            driver.close(a, abort: false)
        }

        @Test func aShortPlainSendWaitsForTheSocketsRoom() {
            let (a, b) = pair()
            defer { close(b) }
            _ = driver.watch(a, token(1))
            _ = ops()
            _ = events()
            let bytes = [UInt8](repeating: 0x62, count: 4 << 20)
            let result = bytes.withUnsafeBytes { driver.send(a, from: $0.baseAddress!, count: Int32($0.count)) }
            guard case .bytes(let n) = result, n < 4 << 20 else {
                Issue.record("expected a short send, got \(result)")
                return
            }
            // As epoll's edge would: writable once the socket has room again.
            #expect(ops() == [URingOp(kind: .pollOut, fd: a)])
            #expect(driver.inspect(a).wantWrite)
            driver.complete(data: driver.userData(.pollOut, a), result: Int32(URing.pollOut), flags: 0)
            #expect(events().first?.1.mayWrite == true)
            driver.close(a, abort: false)
        }

        @Test func aRefusedConnectIsItsWritableEventAndError() {
            let result = driver.connect(to: SystemAddress(ip: .v4(0x7F00_0001), port: 1))
            guard case .inProgress(let fd) = result else {
                Issue.record("connect: \(result)")
                return
            }
            #expect(ops() == [URingOp(kind: .connect, fd: fd)])
            #expect(driver.watch(fd, token(3)))
            // Nothing before the connect completes: a writable event would read as connected.
            #expect(events().isEmpty)
            #expect(ops().isEmpty)
            driver.complete(data: driver.userData(.connect, fd), result: -ECONNREFUSED, flags: 0)
            let raised = events()
            #expect(raised.count == 1 && raised[0].1.mayWrite)
            #expect(driver.connectError(fd) == Errno(rawValue: ECONNREFUSED))
            driver.close(fd, abort: false)
        }

        @Test func aConnectedSocketStartsReceiving() {
            let result = driver.connect(to: SystemAddress(ip: .v4(0x7F00_0001), port: 1))
            guard case .inProgress(let fd) = result else { return }
            _ = driver.watch(fd, token(3))
            _ = ops()
            driver.complete(data: driver.userData(.connect, fd), result: 0, flags: 0)
            #expect(driver.connectError(fd) == nil)
            #expect(ops() == [URingOp(kind: .recv, fd: fd)])
            #expect(events().first?.1 == .writable)
            driver.close(fd, abort: false)
        }

        @Test func splicingDrainsTheQueueThenPollsAndRefusedSplicesFallBack() {
            let (a, b) = pair()
            let (c, d) = pair()
            var pipe: [Int32] = [0, 0]
            #expect(Glibc.pipe(&pipe) == 0)
            for fd in pipe { _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
            defer { for fd in [b, d, pipe[0], pipe[1], c] { close(fd) } }
            _ = driver.watch(a, token(1))
            _ = ops()
            receive(a, "early", buffer: 1)
            // What was received goes into the pipe first.
            #expect(driver.splice(from: a, to: pipe[1], count: 65536) == .bytes(5))
            #expect(driver.buffersOut == 0)
            // Then the receive is cancelled before the socket's own bytes move.
            #expect(driver.splice(from: a, to: pipe[1], count: 65536) == .wouldBlock)
            #expect(ops() == [URingOp(kind: .cancel, fd: a)])
            _ = events()
            driver.complete(data: driver.userData(.recv, a), result: -Errno.canceled.rawValue, flags: 0)
            #expect(ops() == [URingOp(kind: .poll, fd: a)])
            #expect(events().first?.1.mayRead == true)
            _ = "later".withCString { Glibc.write(b, $0, 5) }
            #expect(driver.splice(from: a, to: pipe[1], count: 65536) == .bytes(5))
            var out = [UInt8](repeating: 0, count: 16)
            #expect(Glibc.read(pipe[0], &out, 16) == 10)
            #expect(String(decoding: out[0..<10], as: UTF8.self) == "earlylater")
            // Two sockets cannot splice: EINVAL, for the caller to copy instead.
            _ = "x".withCString { Glibc.write(b, $0, 1) }
            #expect(driver.splice(from: a, to: c, count: 100) == .failed(Errno(rawValue: EINVAL)))
            driver.close(a, abort: false)
        }

        @Test func acceptedConnectionsQueueOnTheListener() throws {
            let listener = try Socket.listen(on: SystemAddress(ip: .v4(0x7F00_0001), port: 0))
            defer { driver.close(listener, abort: false) }
            let port = try Socket.localAddress(listener).port
            driver.watchInput(listener, EventToken(kind: .listener, index: 0, generation: 0), wake: false)
            #expect(ops() == [URingOp(kind: .accept, fd: listener)])
            let (client, _) = try Socket.connect(to: SystemAddress(ip: .v4(0x7F00_0001), port: port))
            defer { close(client) }
            usleep(10_000)
            guard case .done(let socket) = try Socket.accept(listener) else {
                Issue.record("no connection to accept")
                return
            }
            driver.complete(data: driver.userData(.accept, listener), result: socket.fd, flags: moreFlag)
            #expect(events().first?.0.kind == .listener)
            guard case .accepted(let accepted) = driver.accept(listener) else {
                Issue.record("nothing accepted")
                return
            }
            #expect(accepted.fd == socket.fd)
            #expect(accepted.peerAddress != nil)
            #expect(driver.accept(listener).isEmpty)
            // A multishot accept that ends is armed again by the next accept call.
            driver.complete(data: driver.userData(.accept, listener), result: -EMFILE, flags: 0)
            _ = ops()
            #expect(driver.accept(listener).failure == Errno(rawValue: EMFILE))
            #expect(driver.accept(listener).isEmpty)
            #expect(ops() == [URingOp(kind: .accept, fd: listener)])
            close(accepted.fd)
        }
    }

    extension AcceptResult {
        var isEmpty: Bool {
            if case .empty = self { return true }
            return false
        }
        var failure: Errno? {
            if case .failed(let error) = self { return error }
            return nil
        }
    }
#endif
