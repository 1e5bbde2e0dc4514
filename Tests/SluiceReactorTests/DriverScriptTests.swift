#if DEBUG
    import Logging
    import SluiceRouting
    import Testing

    @testable import SluiceReactor
    @testable import SluiceSystem

    /// A real `Loop` whose every system call a `FakeKernel` answers. The test is the event
    /// loop: it raises each socket's events (`event`) and moves the clock (`advance`) by hand,
    /// then asserts the exact script of calls the loop made in answer.
    final class ScriptedLoop {
        let loop: Loop
        let kernel = FakeKernel()
        /// The fake listening sockets, in the snapshot's listener order.
        private(set) var listeners: [Int32] = []
        /// The calls that installed the listeners (not left in `kernel`).
        private(set) var setup: [FakeKernel.Call] = []

        init(_ snapshot: RoutingSnapshot) throws {
            var logger = Logger(label: "driver-script")
            logger.logLevel = .critical
            loop = try Loop(index: 0, workers: 1, snapshot: snapshot, logger: logger)
            // Before the listeners are installed: from here on no call reaches the system.
            loop.driver.kernel = kernel
            var sockets: [ListenerKey: Int32] = [:]
            for listener in snapshot.listeners {
                let fd = kernel.listener()
                sockets[listener.key] = fd
                listeners.append(fd)
            }
            loop.swap(to: snapshot, sockets: sockets)
            setup = kernel.take()
        }

        /// One batch with one event: `readiness` on `fd`'s registration, then what the loop
        /// does after every batch (resumed connections, expired timers).
        func event(_ fd: Int32, _ readiness: Readiness) {
            loop.dispatch(kernel.token(fd), readiness)
            loop.runResumed()
            loop.expireTimers()
        }

        /// Moves the loop's clock by `millis`, then expires timers as a batch would.
        func advance(millis: Int64) {
            loop.nowMicros += millis * 1000
            loop.now = loop.nowMicros / 1000
            loop.runResumed()
            loop.expireTimers()
        }

        /// The connection slot of a client.
        func connection(_ client: Int32) -> Connection { loop.table.pointer(kernel.token(client).index).pointee }

        /// A client on listener `index`, accepted and watched. The script of its accept is
        /// checked here; `then` is what the listener's path does before the next accept.
        @discardableResult
        func accept(on index: Int = 0, then: (Int32) -> [FakeKernel.Call] = { _ in [] }) -> Int32 {
            let listener = listeners[index]
            let client = kernel.queueClient(on: listener)
            event(listener, .readable)
            let expected: [FakeKernel.Call] =
                [.accept(listener, client), .setNoDelay(client), .watch(client, .downstream)] + then(client)
                + [.accept(listener, nil)]
            #expect(kernel.take() == expected)
            return client
        }
    }

    /// The exact system calls a loop makes for HTTP requests, tunnels and failed connects,
    /// against a kernel the test plays (`FakeKernel`). Each `#expect(kernel.take() == …)` is
    /// everything the loop asked of the kernel in answer to one event.
    @Suite struct DriverScriptTests {
        typealias Call = FakeKernel.Call

        static let backend: UInt16 = 9001
        static let request = "GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n"
        static let response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

        static func http(_ ports: [UInt16] = [backend]) -> RoutingSnapshot {
            Build.http(port: 8080, services: [("app", ports)], hosts: [("app.test", 0)])
        }

        static func tcp(_ ports: [UInt16] = [backend], tuning: Tuning = Tuning()) -> RoutingSnapshot {
            let (services, endpoints) = Build.services([("app", ports)])
            let listener = Listener(name: "tcp", address: Build.address(8081), protocol: .tcp, service: 0)
            return RoutingSnapshot(
                generation: 1, listeners: [listener], services: services, endpoints: endpoints, tuning: tuning)
        }

        static func bytes(_ text: String) -> Int32 { Int32(text.utf8.count) }

        /// How many reads (or splices out) of `fd` are in `calls`.
        static func reads(of fd: Int32, in calls: [Call]) -> Int {
            calls.count {
                switch $0 {
                case .read(fd, _), .splice(fd, _, _): return true
                default: return false
                }
            }
        }

        /// The upstream ports of the connects in `calls`, in order.
        static func connectPorts(_ calls: [Call]) -> [UInt16] {
            calls.compactMap { if case .connect(let port, _) = $0 { return port } else { return nil } }
        }

        @Test func listenersAreWatchedOnceInstalled() throws {
            let rig = try ScriptedLoop(Self.http())
            let listener = rig.listeners[0]
            // Redundant today: `swap` unwatches every listener before watching it again, also
            // one installed by this very swap that was never watched (an epoll_ctl DEL that
            // fails with ENOENT, once per new listener per loop).
            #expect(rig.setup == [.unwatch(listener), .watchInput(listener)])
            #expect(rig.kernel.violations.isEmpty)
        }

        /// Accept, read the head, connect, send the rewritten head on the connect's writable
        /// event, read the response on the upstream's readable event and send it; the upstream
        /// is parked for the client's next request.
        @Test func keepAliveRequest() throws {
            let rig = try ScriptedLoop(Self.http())
            let kernel = rig.kernel

            // No read before the client's first event.
            let client = rig.accept()

            kernel.deliver(Self.request, to: client)
            rig.event(client, [.readable, .writable])
            let upstream = try #require(kernel.upstreams.first)
            let headEvent = kernel.take()
            #expect(
                headEvent == [
                    .read(client, .bytes(Self.bytes(Self.request))),
                    .connect(Self.backend, .inProgress(upstream)), .setNoDelay(upstream),
                    .watch(upstream, .upstream),
                ])
            // The rule: the read came up short, so the client is not read again until a new event.
            #expect(Self.reads(of: client, in: headEvent) == 1)

            // The connect completes: the head goes out. The upstream is not read to hear
            // "would block" before its own readable event.
            rig.event(upstream, .writable)
            let head = kernel.received(upstream)
            let connectEvent = kernel.take()
            #expect(connectEvent == [.connectError(upstream, nil), .send(upstream, .bytes(Int32(head.count)))])
            // The rule: no read of the upstream before its readable event.
            #expect(Self.reads(of: upstream, in: connectEvent) == 0)
            let forwarded = kernel.receivedText(upstream)
            #expect(forwarded.hasPrefix("GET /a HTTP/1.1\r\n"))
            #expect(forwarded.contains("Host: app.test\r\n"))
            #expect(forwarded.contains("X-Forwarded-For: 192.0.2.7\r\n"))
            #expect(forwarded.hasSuffix("\r\n\r\n"))

            kernel.deliver(Self.response, to: upstream)
            rig.event(upstream, .readable)
            let answer = kernel.received(client)
            #expect(
                kernel.take() == [
                    .read(upstream, .bytes(Self.bytes(Self.response))), .send(client, .bytes(Int32(answer.count))),
                ])
            let text = kernel.receivedText(client)
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n") && text.hasSuffix("\r\n\r\nhello"))

            // Parked: pooled under the client's token, no system call.
            #expect(rig.connection(client).upFD == -1)
            #expect(rig.connection(client).parked >= 0)
            #expect(rig.loop.pool.count == 1)
            #expect(kernel.socket(upstream)?.closed == false)
            #expect(kernel.violations.isEmpty)
        }

        /// The second request on the connection takes back the upstream it parked: no
        /// connect, no (re)registration, one send of the head.
        @Test func secondRequestReusesTheParkedUpstream() throws {
            let rig = try ScriptedLoop(Self.http())
            let kernel = rig.kernel
            let client = rig.accept()
            kernel.deliver(Self.request, to: client)
            rig.event(client, [.readable, .writable])
            let upstream = try #require(kernel.upstreams.first)
            rig.event(upstream, .writable)
            kernel.deliver(Self.response, to: upstream)
            rig.event(upstream, .readable)
            let firstHead = kernel.received(upstream).count
            let firstAnswer = kernel.received(client).count
            _ = kernel.take()

            let second = "GET /b HTTP/1.1\r\nHost: app.test\r\n\r\n"
            kernel.deliver(second, to: client)
            rig.event(client, .readable)
            let head = kernel.received(upstream).count - firstHead
            #expect(kernel.take() == [.read(client, .bytes(Self.bytes(second))), .send(upstream, .bytes(Int32(head)))])
            let forwarded = String(decoding: kernel.received(upstream).dropFirst(firstHead), as: UTF8.self)
            #expect(forwarded.hasPrefix("GET /b HTTP/1.1\r\n"))
            #expect(kernel.upstreams == [upstream])
            #expect(rig.loop.pool.count == 0)

            kernel.deliver(Self.response, to: upstream)
            rig.event(upstream, .readable)
            let answer = kernel.received(client).count - firstAnswer
            #expect(
                kernel.take() == [
                    .read(upstream, .bytes(Self.bytes(Self.response))), .send(client, .bytes(Int32(answer))),
                ])
            #expect(rig.loop.pool.count == 1)

            // The client leaves: its parked upstream moves to the pool's own token.
            kernel.closePeer(client)
            rig.event(client, [.readable, .readHangup])
            #expect(kernel.take() == [.read(client, .eof), .watchIdle(upstream, .pooled), .close(client)])
            #expect(rig.loop.pool.count == 1)
            #expect(kernel.violations.isEmpty)
        }

        /// A tcp listener: a client that fills the copy buffer in one read moves its flow to a
        /// pipe; the splices go in order; EOF each way is passed on with SHUT_WR; both sockets
        /// close once both directions are done.
        @Test func tcpTunnelMovesToSplice() throws {
            let rig = try ScriptedLoop(Self.tcp())
            let kernel = rig.kernel
            let capacity = rig.loop.buffers.bufferSize
            let listener = rig.listeners[0]
            let client = kernel.queueClient(on: listener)
            rig.event(listener, .readable)
            let upstream = try #require(kernel.upstreams.first)
            #expect(
                kernel.take() == [
                    .accept(listener, client), .setNoDelay(client), .watch(client, .downstream),
                    .connect(Self.backend, .inProgress(upstream)), .setNoDelay(upstream), .watch(upstream, .upstream),
                    .accept(listener, nil),
                ])

            // The client's bytes wait while the connect is in progress.
            let full = (0..<capacity).map { UInt8(truncatingIfNeeded: $0) }
            kernel.deliver(full, to: client)
            rig.event(client, [.readable, .writable])
            #expect(kernel.take() == [])

            // Connected: one full copy, then the flow takes a pipe and tops it up until the
            // client would block. The upstream is not read before its readable event.
            rig.event(upstream, .writable)
            let n = Int32(capacity)
            let connected = kernel.take()
            #expect(Self.reads(of: upstream, in: connected) == 0)
            #expect(
                connected == [
                    .connectError(upstream, nil), .read(client, .bytes(n)), .send(upstream, .bytes(n)),
                    .splice(client, FakeKernel.pipe, .wouldBlock),
                ])

            // More from the client: into the pipe, out to the upstream. A splice short of the
            // pipe's slots proves nothing (`FlowState`), so one more splice hears EAGAIN.
            let more = [UInt8](repeating: 7, count: 3000)
            kernel.deliver(more, to: client)
            rig.event(client, .readable)
            #expect(
                kernel.take() == [
                    .splice(client, FakeKernel.pipe, .bytes(3000)), .splice(FakeKernel.pipe, upstream, .bytes(3000)),
                    .splice(client, FakeKernel.pipe, .wouldBlock),
                ])
            #expect(kernel.received(upstream) == full + more)

            // The endpoint answers a little: copied, one read (short) and one send.
            kernel.deliver("pong", to: upstream)
            rig.event(upstream, .readable)
            #expect(kernel.take() == [.read(upstream, .bytes(4)), .send(client, .bytes(4))])
            #expect(kernel.receivedText(client) == "pong")

            // The client ends: its EOF comes through the pipe, and the upstream gets SHUT_WR.
            kernel.closePeer(client)
            rig.event(client, [.readable, .readHangup])
            #expect(kernel.take() == [.splice(client, FakeKernel.pipe, .eof), .shutdownWrite(upstream)])

            // The endpoint ends too: SHUT_WR to the client, then both close.
            kernel.closePeer(upstream)
            rig.event(upstream, [.readable, .readHangup])
            #expect(
                kernel.take() == [.read(upstream, .eof), .shutdownWrite(client), .close(client), .close(upstream)])
            #expect(rig.loop.table.live == 0)
            #expect(kernel.pipes.values.allSatisfy { $0.isEmpty })
            #expect(kernel.violations.isEmpty)
        }

        /// One connector for tunnels and HTTP: a connect refused at once moves to the
        /// service's other endpoint, with nothing closed (no socket was made).
        @Test func refusedConnectMovesToTheNextEndpointForTCP() throws {
            let ports: [UInt16] = [9001, 9002]
            let rig = try ScriptedLoop(Self.tcp(ports))
            let kernel = rig.kernel
            kernel.connectOutcomes = [.refused]
            let listener = rig.listeners[0]
            let client = kernel.queueClient(on: listener)
            rig.event(listener, .readable)
            let calls = kernel.take()
            let tried = Self.connectPorts(calls)
            let upstream = try #require(kernel.upstreams.first)
            #expect(tried.count == 2 && Set(tried) == Set(ports))
            #expect(
                calls == [
                    .accept(listener, client), .setNoDelay(client), .watch(client, .downstream),
                    .connect(tried[0], .failed(.connectionRefused)), .connect(tried[1], .inProgress(upstream)),
                    .setNoDelay(upstream), .watch(upstream, .upstream), .accept(listener, nil),
                ])
            #expect(kernel.violations.isEmpty)
        }

        @Test func refusedConnectMovesToTheNextEndpointForHTTP() throws {
            let ports: [UInt16] = [9001, 9002]
            let rig = try ScriptedLoop(Self.http(ports))
            let kernel = rig.kernel
            let client = rig.accept()
            kernel.connectOutcomes = [.refused]
            kernel.deliver(Self.request, to: client)
            rig.event(client, [.readable, .writable])
            let calls = kernel.take()
            let tried = Self.connectPorts(calls)
            let upstream = try #require(kernel.upstreams.first)
            #expect(tried.count == 2 && Set(tried) == Set(ports))
            #expect(
                calls == [
                    .read(client, .bytes(Self.bytes(Self.request))), .connect(tried[0], .failed(.connectionRefused)),
                    .connect(tried[1], .inProgress(upstream)), .setNoDelay(upstream), .watch(upstream, .upstream),
                ])
            rig.event(upstream, .writable)
            #expect(
                kernel.take() == [
                    .connectError(upstream, nil), .send(upstream, .bytes(Int32(kernel.received(upstream).count))),
                ])
            #expect(kernel.violations.isEmpty)
        }

        /// With one endpoint a refused connect is the client's 502, written before SHUT_WR;
        /// the connection closes when the client does.
        @Test func refusedConnectToTheOnlyEndpointAnswers502() throws {
            let rig = try ScriptedLoop(Self.http())
            let kernel = rig.kernel
            let client = rig.accept()
            kernel.connectOutcomes = [.refused]
            kernel.deliver(Self.request, to: client)
            rig.event(client, [.readable, .writable])
            let answer = kernel.received(client)
            #expect(
                kernel.take() == [
                    .read(client, .bytes(Self.bytes(Self.request))),
                    .connect(Self.backend, .failed(.connectionRefused)), .send(client, .bytes(Int32(answer.count))),
                    .shutdownWrite(client),
                ])
            #expect(kernel.receivedText(client).hasPrefix("HTTP/1.1 502 "))
            #expect(kernel.upstreams.isEmpty)

            kernel.closePeer(client)
            rig.event(client, [.readable, .readHangup])
            #expect(kernel.take() == [.read(client, .eof), .close(client)])
            #expect(rig.loop.table.live == 0)
            #expect(kernel.violations.isEmpty)
        }

        /// A connect that never completes: the connect timer (the test's clock) closes it and
        /// the next endpoint is tried.
        @Test func connectTimeoutMovesToTheNextEndpoint() throws {
            let ports: [UInt16] = [9001, 9002]
            let rig = try ScriptedLoop(Self.http(ports))
            let kernel = rig.kernel
            let client = rig.accept()
            kernel.deliver(Self.request, to: client)
            rig.event(client, [.readable, .writable])
            let first = try #require(kernel.upstreams.first)
            let tried = Self.connectPorts(kernel.take())

            rig.advance(millis: rig.loop.snapshot.timeouts.connectMillis - 100)
            #expect(kernel.take() == [])
            rig.advance(millis: 200)
            let calls = kernel.take()
            let second = try #require(kernel.upstreams.last)
            let next = Self.connectPorts(calls)
            #expect(next.count == 1 && Set(tried + next) == Set(ports))
            #expect(
                calls == [
                    .close(first), .connect(next[0], .inProgress(second)), .setNoDelay(second),
                    .watch(second, .upstream),
                ])
            #expect(kernel.violations.isEmpty)
        }
    }
#endif
