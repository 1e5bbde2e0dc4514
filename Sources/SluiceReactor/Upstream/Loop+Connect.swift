import SluiceRouting
import SluiceSystem

/// The one upstream connector, for tunnels and HTTP requests alike: open a non-blocking
/// connect to the connection's endpoint under its upstream token, and on a refusal or a
/// timeout mark the endpoint down and move to the next one while `ConnectionLifecycle`
/// allows another try. What follows a connect (a tunnel, a request head) is the caller's.
extension Loop {
    enum ConnectOpen {
        /// Connected at once.
        case connected
        /// Writability (then `connectError`) or the connect timer tells the outcome.
        case inProgress
        /// The endpoint refused at once (its fault): `retryConnect`.
        case refused
        /// This process is out of descriptors (EMFILE/ENFILE): counted and logged once,
        /// never held against the endpoint.
        case noDescriptors
        /// The poller refused the socket (closed again).
        case unwatched
    }

    /// Starts a connect to the connection's endpoint (in its own snapshot) and watches the
    /// socket under the slot's upstream token.
    func openConnect(_ slot: Int32) -> ConnectOpen {
        let c = table.pointer(slot)
        noteConnectStart(c)
        let address = Self.systemAddress(routed(c).endpoints[Int(c.pointee.endpoint)].address)
        let fd: Int32
        let atOnce: Bool
        switch driver.connect(to: address) {
        case .connected(let socket): (fd, atOnce) = (socket, true)
        case .inProgress(let socket): (fd, atOnce) = (socket, false)
        case .failed(let error):
            guard error == .tooManyFiles || error == .tooManyFilesInSystem else { return .refused }
            noteDescriptorExhaustion()
            return .noDescriptors
        }
        driver.setNoDelay(fd)
        c.pointee.upFD = fd
        guard driver.watch(fd, EventToken(kind: .upstream, index: slot, generation: c.pointee.generation)) else {
            return .unwatched
        }
        return atOnce ? .connected : .inProgress
    }

    /// How the connect in progress ended, once its socket reported writable: nil when it
    /// connected.
    @inline(__always)
    func connectError(_ c: UnsafeMutablePointer<Connection>) -> Errno? { driver.connectError(c.pointee.upFD) }

    /// The connect completed: the endpoint is usable again at once, and the time is noted.
    @inline(__always)
    func connectSucceeded(_ c: UnsafeMutablePointer<Connection>) {
        markEndpointUp(c)
        noteConnected(c)
    }

    /// The connect was refused, reset or timed out: counted, the socket closed, the endpoint
    /// marked down for its back-off. When `ConnectionLifecycle` allows another try and the
    /// picker has another endpoint (from the table the connection was routed with), that
    /// endpoint is the connection's and the new connect's deadline is returned; nil when the
    /// connection gives up.
    func retryConnect(_ slot: Int32, timedOut: Bool) -> Int64? {
        let c = table.pointer(slot)
        if timedOut { counters.connectTimeouts += 1 } else { counters.connectFailures += 1 }
        countConnectFailed(c, timedOut: timedOut)
        timers.cancel(slot)
        if c.pointee.upFD >= 0 {
            driver.close(c.pointee.upFD)
            c.pointee.upFD = -1
        }
        if c.pointee.h2Upstream { detachStream(slot, abort: true, keepMode: true) }
        markEndpointDown(c)
        let next = nextEndpoint(c)
        let action = c.pointee.life.connectFailed(
            now: now, maxTries: snapshot.limits.connectTries, hasNextEndpoint: next != nil,
            connectMillis: snapshot.timeouts.connectMillis)
        guard case .connectNext(let deadline) = action, let next else { return nil }
        counters.retries += 1
        countBackend(c, .retries)
        countClosed(c)
        c.pointee.endpoint = Int32(next)
        return deadline
    }

    /// A connect failed for want of descriptors: counted, logged once per loop, and never
    /// held against the endpoint.
    func noteDescriptorExhaustion() {
        counters.descriptorExhaustion += 1
        if !loggedDescriptorExhaustion {
            loggedDescriptorExhaustion = true
            logger.warning(
                "out of file descriptors on connect (EMFILE/ENFILE): clients are closed, endpoints are not marked down; raise the open-files limit"
            )
        }
    }
}
