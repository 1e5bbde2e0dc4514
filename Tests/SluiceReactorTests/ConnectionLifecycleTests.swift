import Testing

@testable import SluiceReactor

/// The connection's timing and retry decisions, driven by a clock the test owns.
@Suite struct ConnectionLifecycleTests {
    let timeouts: (connect: Int64, tunnel: Int64) = (5_000, 60_000)

    @Test func connectsThenArmsTunnelTimer() {
        var life = ConnectionLifecycle()
        #expect(life.start(now: 1_000, connectMillis: timeouts.connect) == .connect(deadline: 6_000))
        #expect(life.state == .connecting)
        #expect(life.tries == 1)
        #expect(life.connected(now: 1_200, tunnelMillis: timeouts.tunnel) == .arm(deadline: 61_200))
        #expect(life.state == .tunnel)
    }

    @Test func refusalsMoveToNextEndpointUntilTriesAreSpent() {
        var life = ConnectionLifecycle()
        _ = life.start(now: 0, connectMillis: timeouts.connect)
        #expect(
            life.connectFailed(now: 10, maxTries: 3, hasNextEndpoint: true, connectMillis: 5_000)
                == .connectNext(deadline: 5_010))
        #expect(
            life.connectFailed(now: 20, maxTries: 3, hasNextEndpoint: true, connectMillis: 5_000)
                == .connectNext(deadline: 5_020))
        #expect(life.tries == 3)
        #expect(life.connectFailed(now: 30, maxTries: 3, hasNextEndpoint: true, connectMillis: 5_000) == .close)
        #expect(life.state == .closed)
    }

    @Test func singleEndpointServiceGivesUpAtOnce() {
        var life = ConnectionLifecycle()
        _ = life.start(now: 0, connectMillis: timeouts.connect)
        #expect(life.connectFailed(now: 1, maxTries: 3, hasNextEndpoint: false, connectMillis: 5_000) == .close)
    }

    @Test func connectTimeoutCountsAsAFailedTry() {
        var life = ConnectionLifecycle()
        _ = life.start(now: 0, connectMillis: timeouts.connect)
        let action = life.timerFired(now: 5_000, maxTries: 2, hasNextEndpoint: true, timeouts: timeouts)
        #expect(action == .connectNext(deadline: 10_000))
        #expect(life.timerFired(now: 10_000, maxTries: 2, hasNextEndpoint: true, timeouts: timeouts) == .close)
    }

    /// Activity only stamps the time; when the timer comes round it is re-armed from the last
    /// activity, and the connection closes only after a full idle period.
    @Test func busyTunnelIsRearmedIdleTunnelCloses() {
        var life = ConnectionLifecycle()
        _ = life.start(now: 0, connectMillis: timeouts.connect)
        _ = life.connected(now: 0, tunnelMillis: timeouts.tunnel)
        var clock: Int64 = 0
        while clock < 50_000 {
            clock += 7_000
            life.activity(now: clock)
        }
        #expect(life.lastActivity == 56_000)
        #expect(
            life.timerFired(now: 60_000, maxTries: 1, hasNextEndpoint: false, timeouts: timeouts)
                == .arm(deadline: 116_000))
        #expect(life.state == .tunnel)
        #expect(life.timerFired(now: 116_000, maxTries: 1, hasNextEndpoint: false, timeouts: timeouts) == .close)
        #expect(life.state == .closed)
    }

    @Test func activityNeverGoesBack() {
        var life = ConnectionLifecycle()
        _ = life.start(now: 100, connectMillis: 1)
        _ = life.connected(now: 200, tunnelMillis: 1)
        life.activity(now: 150)
        #expect(life.lastActivity == 200)
    }
}
