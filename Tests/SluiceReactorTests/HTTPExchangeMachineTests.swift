import SluiceWire
import Testing

@testable import SluiceReactor

/// The HTTP exchange's control decisions, driven event by event with a clock the test owns.
@Suite struct HTTPExchangeMachineTests {
    typealias Machine = HTTPExchangeMachine
    typealias Timer = HTTPExchangeMachine.Timer

    /// A machine and the hand clock it is driven with.
    struct Exchange {
        var machine = Machine()
        var now: Int64 = 0
        var timeouts = Machine.Timeouts(
            client: 50_000, requestHead: 5_000, connect: 2_000, server: 20_000, requestBody: 30_000, tunnel: 600_000,
            requestBodyMinRate: 1_000, tlsIdle: 1_000)

        mutating func on(_ event: Machine.Event, at time: Int64? = nil) -> Machine.Action {
            if let time { now = time }
            return machine.on(event, now: now, timeouts)
        }

        /// A request parsed and sent on a new upstream connection.
        mutating func send(_ head: Machine.RequestHead = .init(), reused: Bool = false, body: Int64? = nil) {
            #expect(on(.headStarted) == .armTimer(Timer(kind: .requestHead, deadline: now + 5_000)))
            #expect(on(.headParsed(head)) == .route)
            if reused {
                #expect(on(.upstreamAttached(reused: true)) == .sendRequest)
            } else {
                #expect(on(.upstreamAttached(reused: false)) == .connect)
                #expect(on(.connectPending) == .armTimer(Timer(kind: .connect, deadline: now + 2_000)))
                #expect(machine.state == .connecting)
                #expect(on(.connected) == .sendRequest)
            }
            _ = on(.requestQueued(requestBody: body))
            #expect(machine.state == .exchanging)
            #expect(on(.requestBytesSent) == .proceed)
        }

        /// A final response head forwarded; the action it got.
        mutating func respond(_ head: Machine.ResponseHead = .init()) -> Machine.Action {
            let action = on(.responseHead(head))
            #expect(on(.responseQueued) == .proceed)
            return action
        }
    }

    static let post = Machine.RequestHead(method: .post, hasBody: true, bodyless: false)

    @Test func pipelinedRequestsRunInOrderOnTheKeptUpstream() {
        var x = Exchange()
        #expect(x.on(.waiting(tls: false)) == .armTimer(Timer(kind: .clientIdle, deadline: 50_000)))
        x.send()
        #expect(x.respond() == .forwardResponse(.length, closeClient: false, dechunk: false))
        #expect(x.machine.responseStarted)
        #expect(x.on(.responseComplete(requestUnfinished: false), at: 100) == .nextRequest(keepUpstream: true))
        #expect(x.machine.state == .readingHead)
        #expect(!x.machine.responseStarted)
        // The second request was already buffered: its head clock starts now.
        x.send(reused: true)
        #expect(x.machine.upstreamReused)
        #expect(x.respond() == .forwardResponse(.length, closeClient: false, dechunk: false))
        #expect(x.on(.responseComplete(requestUnfinished: false)) == .nextRequest(keepUpstream: true))
        #expect(x.on(.waiting(tls: true), at: 200) == .armTimer(Timer(kind: .tlsIdle, deadline: 1_200)))
        #expect(
            x.on(.timerFired(lastActivity: 200, requestBody: nil), at: 1_200)
                == .releaseTLS(Timer(kind: .clientIdle, deadline: 50_200)))
        #expect(x.on(.timerFired(lastActivity: 200, requestBody: nil), at: 50_200) == .expired(.clientIdle))
    }

    @Test func interimResponsesAreForwardedAndDroppedForHTTP10() {
        var x = Exchange()
        x.send()
        #expect(x.on(.interim(status: 103)) == .forwardInterim)
        #expect(x.on(.interimQueued) == .proceed)
        #expect(x.machine.responseStarted)
        #expect(!x.machine.responseHeadDone)
        #expect(x.respond() == .forwardResponse(.length, closeClient: false, dechunk: false))

        var old = Exchange()
        old.send(Machine.RequestHead(http10: true, keepAlive: true))
        #expect(old.on(.interim(status: 100)) == .dropInterim)
        #expect(!old.machine.responseStarted)
        // An error after a dropped 1xx is still answered.
        #expect(old.on(.refused(status: 502)) == .respond(status: 502, Timer(kind: .closing, deadline: 50_000)))
    }

    @Test func continueRestartsTheRequestBodyClock() {
        var x = Exchange()
        _ = x.on(.headStarted)
        _ = x.on(.headParsed(Self.post))
        _ = x.on(.upstreamAttached(reused: true))
        // Server wait 20 s, body grace 30 s: the server timer comes first.
        #expect(
            x.on(.requestQueued(requestBody: 0), at: 1_000) == .armTimer(Timer(kind: .server, deadline: 21_000)))
        #expect(x.on(.interim(status: 100), at: 15_000) == .forwardInterim)
        _ = x.on(.interimQueued)
        // Activity at 20 s: the body is due 30 s after the 100 Continue, plus 1 s per 1000 bytes.
        #expect(
            x.on(.timerFired(lastActivity: 20_000, requestBody: 2_000), at: 21_000)
                == .armTimer(Timer(kind: .server, deadline: 40_000)))
        #expect(x.on(.timerFired(lastActivity: 39_000, requestBody: 2_000), at: 47_000) == .expired(.requestBody))
        #expect(x.on(.refused(status: 408)) == .abort)
    }

    @Test func upgradeRelaysATLSClientAndTunnelsAPlainOne() {
        for tls in [true, false] {
            var x = Exchange()
            x.send(Machine.RequestHead(upgrade: true))
            #expect(x.on(.interim(status: 101)) == .startUpgrade)
            #expect(x.on(.upgradeQueued) == .proceed)
            #expect(x.machine.state == .upgrading)
            if tls {
                #expect(x.on(.upgradeFlushed(tls: true), at: 10) == .relay(Timer(kind: .tunnel, deadline: 600_010)))
                #expect(x.machine.state == .relaying)
                #expect(x.on(.upstreamEnded(reset: false)) == .proceed)
                #expect(x.on(.relayRound(toClientFlushed: true, toUpstreamFlushed: true)) == .notifyClient)
                #expect(x.on(.relayRound(toClientFlushed: true, toUpstreamFlushed: true)) == .proceed)
                #expect(x.on(.clientEnded(reset: false, idle: false)) == .shutdownUpstream)
                #expect(x.on(.relayRound(toClientFlushed: true, toUpstreamFlushed: false)) == .proceed)
                #expect(x.on(.relayRound(toClientFlushed: true, toUpstreamFlushed: true)) == .finishRelay)
            } else {
                #expect(x.on(.upgradeFlushed(tls: false)) == .tunnel)
            }
        }
        var unasked = Exchange()
        unasked.send()
        #expect(unasked.on(.interim(status: 101)) == .rejectResponse)
    }

    @Test func headAnd204And304HaveNoBody() {
        var head = Exchange()
        head.send(Machine.RequestHead(method: .head))
        #expect(head.respond(.init(framing: .length)) == .forwardResponse(.none, closeClient: false, dechunk: false))
        for status: UInt16 in [204, 304] {
            var x = Exchange()
            x.send()
            #expect(
                x.respond(.init(status: status, framing: .chunked))
                    == .forwardResponse(.none, closeClient: false, dechunk: false))
            #expect(x.on(.responseComplete(requestUnfinished: false)) == .nextRequest(keepUpstream: true))
        }
    }

    @Test func closeDelimitedResponseEndsWithTheUpstreamAndClosesTheClient() {
        var x = Exchange()
        x.send()
        #expect(
            x.respond(.init(framing: .untilClose)) == .forwardResponse(.untilClose, closeClient: true, dechunk: false))
        #expect(x.on(.upstreamEnded(reset: false)) == .endResponse)
        #expect(
            x.on(.responseComplete(requestUnfinished: false), at: 7)
                == .closeAfterResponse(keepUpstream: false, Timer(kind: .closing, deadline: 5_007)))
        #expect(x.machine.state == .closing)

        // A reset mid-body is no end: the client is reset.
        var cut = Exchange()
        cut.send()
        _ = cut.respond(.init(framing: .untilClose))
        #expect(cut.on(.upstreamEnded(reset: true)) == .abort)

        // Chunked to an HTTP/1.0 client: framing stripped, the close ends the body.
        var old = Exchange()
        old.send(Machine.RequestHead(http10: true, keepAlive: true))
        #expect(old.respond(.init(framing: .chunked)) == .forwardResponse(.chunked, closeClient: true, dechunk: true))
    }

    @Test func anHTTP2StreamIsOneRequestWithItsBodyEndedByTheStream() {
        let stream = Machine.RequestHead(keepAlive: true, stream: true)
        // Chunked from the upstream: the framing is stripped (DATA frames carry the body).
        var chunked = Exchange()
        chunked.send(stream)
        #expect(
            chunked.respond(.init(framing: .chunked)) == .forwardResponse(.chunked, closeClient: true, dechunk: true))
        // A length-framed body keeps its framing; the stream still ends after it, and the
        // upstream stays reusable.
        var length = Exchange()
        length.send(stream)
        #expect(length.respond(.init(framing: .length)) == .forwardResponse(.length, closeClient: true, dechunk: false))
        #expect(length.machine.upstreamReusable)
        // 1xx answers cross (as HEADERS without END_STREAM).
        var interim = Exchange()
        interim.send(stream)
        #expect(interim.on(.interim(status: 103)) == .forwardInterim)
        // A local answer closes the stream too.
        var local = Exchange()
        _ = local.on(.headStarted)
        _ = local.on(.headParsed(stream))
        #expect(local.on(.localAnswer) == .writeAnswer(keep: false))
    }

    @Test func requestHeadTimeoutAnswers408() {
        var x = Exchange()
        #expect(x.on(.headStarted, at: 1_000) == .armTimer(Timer(kind: .requestHead, deadline: 6_000)))
        #expect(x.on(.timerFired(lastActivity: 1_000, requestBody: nil), at: 6_000) == .expired(.requestHead))
        #expect(x.on(.refused(status: 408)) == .respond(status: 408, Timer(kind: .closing, deadline: 56_000)))
        #expect(x.machine.state == .closing)
        #expect(x.machine.clientClose)
    }

    @Test func serverTimeoutAnswers504OrResetsOnceAResponseStarted() {
        var x = Exchange()
        x.send()
        #expect(
            x.on(.timerFired(lastActivity: 5_000, requestBody: nil), at: 20_000)
                == .armTimer(Timer(kind: .server, deadline: 25_000)))
        #expect(x.on(.timerFired(lastActivity: 5_000, requestBody: nil), at: 25_000) == .expired(.server))
        #expect(x.on(.refused(status: 504)) == .respond(status: 504, Timer(kind: .closing, deadline: 75_000)))

        var started = Exchange()
        started.send()
        _ = started.respond()
        #expect(started.on(.timerFired(lastActivity: 0, requestBody: nil), at: 20_000) == .expired(.server))
        #expect(started.on(.refused(status: 504)) == .abort)
    }

    @Test func connectFailuresTryTheNextEndpointThenGiveUp() {
        var x = Exchange()
        _ = x.on(.headStarted)
        _ = x.on(.headParsed(.init()))
        _ = x.on(.upstreamAttached(reused: false))
        _ = x.on(.connectPending)
        #expect(x.on(.timerFired(lastActivity: 0, requestBody: nil), at: 2_000) == .expired(.connect))
        #expect(x.on(.connectFailed(timedOut: true, triesLeft: true)) == .connectNext)
        #expect(x.on(.connectPending) == .armTimer(Timer(kind: .connect, deadline: 4_000)))
        #expect(x.on(.connectFailed(timedOut: false, triesLeft: false)) == .refuse(502))
        #expect(x.on(.connectFailed(timedOut: true, triesLeft: false)) == .refuse(504))
    }

    @Test func aReusedUpstreamThatClosedIsRetriedOnce() {
        var x = Exchange()
        x.send(reused: true)
        #expect(x.on(.upstreamEnded(reset: false)) == .retry)
        #expect(!x.machine.upstreamReused)
        // The new connection is no reused one: a second failure is answered.
        #expect(x.on(.connectPending) == .armTimer(Timer(kind: .connect, deadline: 2_000)))
        #expect(x.on(.connected) == .sendRequest)
        _ = x.on(.requestQueued(requestBody: nil))
        #expect(x.on(.upstreamEnded(reset: true)) == .refuse(502))

        // A POST not yet sent is retried; one that went out is not sent twice.
        var unsent = Exchange()
        _ = unsent.on(.headStarted)
        _ = unsent.on(.headParsed(Self.post))
        _ = unsent.on(.upstreamAttached(reused: true))
        _ = unsent.on(.requestQueued(requestBody: 0))
        #expect(unsent.on(.upstreamEnded(reset: true)) == .retry)
        var sent = Exchange()
        sent.send(Self.post, reused: true, body: 0)
        #expect(sent.on(.upstreamEnded(reset: false)) == .refuse(502))
        // A new connection is never retried.
        var fresh = Exchange()
        fresh.send()
        #expect(fresh.on(.upstreamEnded(reset: false)) == .refuse(502))
    }

    @Test func theUpstreamIsPooledOnlyWhenTheResponseAllowsIt() {
        func outcome(_ head: Machine.ResponseHead, stray: Bool = false, unfinished: Bool = false) -> Machine.Action {
            var x = Exchange()
            x.send()
            _ = x.respond(head)
            if stray { _ = x.on(.strayBytes) }
            return x.on(.responseComplete(requestUnfinished: unfinished))
        }
        #expect(outcome(.init()) == .nextRequest(keepUpstream: true))
        #expect(outcome(.init(connectionClose: true)) == .nextRequest(keepUpstream: false))
        #expect(outcome(.init(http11: false)) == .nextRequest(keepUpstream: false))
        #expect(outcome(.init(keepAlive: true, http11: false)) == .nextRequest(keepUpstream: true))
        #expect(outcome(.init(), stray: true) == .nextRequest(keepUpstream: false))
        #expect(
            outcome(.init(), unfinished: true)
                == .closeAfterResponse(keepUpstream: false, Timer(kind: .closing, deadline: 5_000)))
        // Draining: the client closes, its clean upstream still goes to the pool.
        #expect(
            outcome(.init(closeClient: true))
                == .closeAfterResponse(keepUpstream: true, Timer(kind: .closing, deadline: 5_000)))
    }

    @Test func anErrorAnswerLingersUntilTheClientCloses() {
        var x = Exchange()
        _ = x.on(.headStarted)
        #expect(x.on(.refused(status: 431), at: 10) == .respond(status: 431, Timer(kind: .closing, deadline: 50_010)))
        #expect(x.on(.answerWritten) == .linger)
        #expect(x.machine.lingering)
        #expect(x.on(.answerWritten) == .proceed)
        #expect(x.on(.clientEnded(reset: true, idle: false)) == .close(abort: false, poolUpstream: false))
        #expect(x.on(.timerFired(lastActivity: 10, requestBody: nil), at: 50_010) == .expired(.closing))
    }

    @Test func localAnswersKeepTheConnectionOnlyWithoutABody() {
        var kept = Exchange()
        _ = kept.on(.headStarted)
        _ = kept.on(.headParsed(.init()))
        #expect(kept.on(.localAnswer) == .writeAnswer(keep: true))
        #expect(kept.on(.answerQueued(upstreamAttached: false)) == .proceed)
        #expect(kept.machine.state == .exchanging)
        #expect(kept.on(.responseComplete(requestUnfinished: false)) == .nextRequest(keepUpstream: false))

        var closed = Exchange()
        _ = closed.on(.headStarted)
        _ = closed.on(.headParsed(Self.post))
        #expect(closed.on(.localAnswer) == .writeAnswer(keep: false))
        #expect(
            closed.on(.answerQueued(upstreamAttached: false)) == .startClosing(Timer(kind: .closing, deadline: 50_000)))
        #expect(closed.machine.state == .closing)
    }

    @Test func connectIsRefusedAndAGoneListenerClosesAfterTheRequest() {
        var x = Exchange()
        _ = x.on(.headStarted)
        #expect(x.on(.headParsed(.init(method: .connect))) == .refuse(501))
        var gone = Exchange()
        _ = gone.on(.headStarted)
        _ = gone.on(.headParsed(.init()))
        #expect(gone.on(.listenerGone) == .proceed)
        #expect(gone.machine.clientClose)
        // Between requests it closes at once.
        var idle = Exchange()
        #expect(idle.on(.listenerGone) == .startClosing(Timer(kind: .closing, deadline: 5_000)))
        // Draining: an idle client closes now, a busy one after its response.
        var drained = Exchange()
        #expect(drained.on(.drain(buffered: false)) == .close(abort: false, poolUpstream: false))
        var busy = Exchange()
        busy.send()
        #expect(busy.on(.drain(buffered: false)) == .proceed)
        _ = busy.respond()
        #expect(busy.machine.clientClose)
    }

    @Test func aClientLeavingBetweenRequestsPoolsItsUpstream() {
        var x = Exchange()
        #expect(x.on(.clientEnded(reset: false, idle: true)) == .close(abort: false, poolUpstream: true))
        var midHead = Exchange()
        #expect(midHead.on(.clientEnded(reset: false, idle: false)) == .close(abort: false, poolUpstream: false))
        var midBody = Exchange()
        midBody.send(Self.post, body: 0)
        #expect(midBody.on(.clientEnded(reset: false, idle: false)) == .close(abort: true, poolUpstream: false))
    }

    @Test func theMachineAndItsActionsStaySmall() {
        #expect(MemoryLayout<HTTPExchangeMachine>.size <= 40)
        #expect(MemoryLayout<HTTPExchangeMachine.Action>.size <= 24)
        #expect(MemoryLayout<HTTPExchangeMachine.Event>.size <= 24)
    }

    @Test func anIllegalEventTraps() async {
        await #expect(processExitsWith: .failure) {
            var machine = HTTPExchangeMachine()
            _ = machine.on(.answerWritten, now: 0, HTTPExchangeMachine.Timeouts())
        }
    }
}
