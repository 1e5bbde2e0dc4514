import Testing

@testable import SluiceReactor

@Suite struct FlowStateTests {
    func spliceFlow(capacity: Int32 = 1000) -> FlowState {
        var flow = FlowState()
        flow.capacity = capacity
        flow.dstWritable = true
        return flow
    }

    @Test func waitsUntilReadable() {
        let flow = spliceFlow()
        #expect(flow.next == .wait)
    }

    @Test func readThenWriteThenWaitOnWouldBlock() {
        var flow = spliceFlow()
        flow.srcReadable = true
        #expect(flow.next == .read(room: 1000))
        flow.didRead(.bytes(300), requested: 1000)
        // A short splice does not prove the socket drained: the write comes first, then
        // another read asks the socket.
        #expect(flow.next == .write(count: 300))
        flow.didWrite(.bytes(300))
        #expect(flow.next == .read(room: 1000))
        flow.didRead(.wouldBlock, requested: 1000)
        #expect(flow.srcReadable == false)
        #expect(flow.next == .wait)
    }

    /// A short splice into an empty 1 MiB pipe (256 slots) that moved fewer bytes than there
    /// are slots cannot have run out of slots: the socket was drained, no extra splice is
    /// made to learn it. More bytes than slots, a pipe already holding bytes, or a pending
    /// hangup keep the source readable.
    @Test func shortSpliceIntoEmptyPipeBelowSlotCountEndsReading() {
        var small = spliceFlow(capacity: 1 << 20)
        small.srcReadable = true
        small.didRead(.bytes(255), requested: 1 << 20)
        #expect(small.srcReadable == false)
        #expect(small.next == .write(count: 255))

        var large = spliceFlow(capacity: 1 << 20)
        large.srcReadable = true
        large.didRead(.bytes(256), requested: 1 << 20)
        #expect(large.srcReadable == true)

        var topUp = spliceFlow(capacity: 1 << 20)
        topUp.srcReadable = true
        topUp.didRead(.bytes(100), requested: 1 << 20)
        topUp.srcReadable = true
        topUp.didRead(.bytes(50), requested: (1 << 20) - 100)
        #expect(topUp.srcReadable == true)

        var hangup = spliceFlow(capacity: 1 << 20)
        hangup.srcReadable = true
        hangup.srcHangup = true
        hangup.didRead(.bytes(10), requested: 1 << 20)
        #expect(hangup.srcReadable == true)
    }

    /// With splice allowed a flow starts by copying; a read of a quarter of the buffer or more
    /// makes it a bulk flow, which moves to the pipe once the buffer is written out, and stays.
    @Test func copyFirstThenSpliceOnceAReadIsLarge() {
        var flow = FlowState()
        flow.copyMode = true
        flow.spliceWhenFull = true
        flow.capacity = 65536
        flow.dstWritable = true
        flow.srcReadable = true
        #expect(flow.next == .read(room: 65536))
        flow.didRead(.bytes(16383), requested: 65536)
        #expect(flow.spliceDue == false)
        #expect(flow.srcReadable == false)  // a short read drained the socket
        flow.didWrite(.bytes(16383))
        #expect(flow.takeSpliceSwitch(pipeCapacity: 1 << 20) == false)
        flow.srcReadable = true
        flow.didRead(.bytes(16384), requested: 65536)
        #expect(flow.spliceDue == true)
        // Not while bytes wait in the buffer.
        #expect(flow.takeSpliceSwitch(pipeCapacity: 1 << 20) == false)
        flow.didWrite(.bytes(16384))
        #expect(flow.takeSpliceSwitch(pipeCapacity: 1 << 20) == true)
        #expect(flow.copyMode == false)
        #expect(flow.capacity == 1 << 20)
        flow.srcReadable = true
        #expect(flow.next == .read(room: 1 << 20))
        #expect(flow.takeSpliceSwitch(pipeCapacity: 1 << 20) == false)
    }

    @Test func partialWriteKeepsOrderAndWaitsForWritable() {
        var flow = spliceFlow()
        flow.srcReadable = true
        flow.didRead(.bytes(500), requested: 1000)
        flow.didWrite(.bytes(200))
        #expect(flow.pending == 300)
        #expect(flow.next == .write(count: 300))
        flow.didWrite(.wouldBlock)
        #expect(flow.dstWritable == false)
        // The pipe still has room: keep reading while the destination is blocked.
        #expect(flow.next == .read(room: 700))
        flow.didRead(.bytes(700), requested: 700)
        #expect(flow.next == .wait)
        flow.dstWritable = true
        #expect(flow.next == .write(count: 1000))
    }

    /// EAGAIN on a splice into a non-empty pipe may mean the pipe is full (out of slots), not
    /// that the socket is empty: the source must stay readable, or the flow would stall
    /// forever under edge-triggered readiness.
    @Test func wouldBlockWithBytesInPipeKeepsSourceReadable() {
        var flow = spliceFlow()
        flow.srcReadable = true
        flow.didRead(.bytes(100), requested: 1000)
        flow.dstWritable = false
        #expect(flow.next == .read(room: 900))
        flow.didRead(.wouldBlock, requested: 900)
        #expect(flow.srcReadable == true)
        #expect(flow.next == .wait)
        flow.dstWritable = true
        #expect(flow.next == .write(count: 100))
        flow.didWrite(.bytes(100))
        #expect(flow.next == .read(room: 1000))
    }

    @Test func endOfStreamShutsDownAfterEveryByte() {
        var flow = spliceFlow()
        flow.srcReadable = true
        flow.didRead(.bytes(10), requested: 1000)
        flow.didRead(.endOfStream, requested: 990)
        #expect(flow.srcEOF)
        #expect(flow.next == .write(count: 10))
        flow.didWrite(.bytes(4))
        #expect(flow.next == .write(count: 6))
        flow.didWrite(.bytes(6))
        #expect(flow.next == .shutdown)
        flow.didShutdown()
        #expect(flow.next == .done)
        #expect(flow.isDone)
    }

    @Test func copyModeReadsOnlyIntoEmptyBufferAndTracksOffset() {
        var flow = spliceFlow(capacity: 64)
        flow.copyMode = true
        flow.srcReadable = true
        #expect(flow.next == .read(room: 64))
        flow.didRead(.bytes(64), requested: 64)
        flow.dstWritable = false
        #expect(flow.next == .wait)
        flow.dstWritable = true
        flow.didWrite(.bytes(10))
        #expect(flow.offset == 10)
        #expect(flow.next == .write(count: 54))
        flow.didWrite(.bytes(54))
        #expect(flow.offset == 0)
        // A short read in copy mode means the socket is drained.
        flow.didRead(.bytes(5), requested: 64)
        #expect(flow.srcReadable == false)
    }

    /// Data and FIN that arrived together raise one edge: a short read returns the data, and
    /// no later edge announces the EOF, so after RDHUP the flow reads on until it sees 0.
    @Test func copyModeShortReadAfterHangupKeepsReadingToEOF() {
        var flow = spliceFlow(capacity: 64)
        flow.copyMode = true
        flow.srcReadable = true
        flow.srcHangup = true
        flow.didRead(.bytes(5), requested: 64)
        #expect(flow.srcReadable)
        flow.didWrite(.bytes(5))
        #expect(flow.next == .read(room: 64))
        flow.didRead(.endOfStream, requested: 64)
        #expect(flow.next == .shutdown)
    }

    @Test func copyModeWouldBlockClearsReadable() {
        var flow = spliceFlow(capacity: 64)
        flow.copyMode = true
        flow.srcReadable = true
        flow.didRead(.wouldBlock, requested: 64)
        #expect(flow.srcReadable == false)
        #expect(flow.next == .wait)
    }

    /// Byte-exact model check: random read sizes, write sizes and readiness flips never lose,
    /// duplicate or reorder a byte, and the flow ends with shutdown after the last byte.
    @Test(arguments: [false, true]) func randomScheduleDeliversEveryByteInOrder(copyMode: Bool) {
        var rng = SplitMix(seed: copyMode ? 7 : 11)
        let total = 50_000
        var sent = 0  // bytes the source produced
        var delivered = 0
        var flow = spliceFlow(capacity: 4096)
        flow.copyMode = copyMode
        var shutdowns = 0
        var steps = 0
        while !flow.isDone && steps < 1_000_000 {
            steps += 1
            if rng.next() % 3 == 0 { flow.srcReadable = true }
            if rng.next() % 3 == 0 { flow.dstWritable = true }
            switch flow.next {
            case .read(let room):
                if sent == total {
                    flow.didRead(.endOfStream, requested: room)
                } else if rng.next() % 4 == 0 {
                    flow.didRead(.wouldBlock, requested: room)
                } else {
                    let n = Int32(min(Int(room), total - sent, Int(rng.next() % 3000) + 1))
                    sent += Int(n)
                    flow.didRead(.bytes(n), requested: room)
                }
            case .write(let count):
                if rng.next() % 4 == 0 {
                    flow.didWrite(.wouldBlock)
                } else {
                    let n = Int32(min(Int(count), Int(rng.next() % 2500) + 1))
                    delivered += Int(n)
                    flow.didWrite(.bytes(n))
                }
            case .shutdown:
                #expect(delivered == total)
                shutdowns += 1
                flow.didShutdown()
            case .wait:
                // An edge arrives eventually for whatever is not ready.
                flow.srcReadable = true
                flow.dstWritable = true
            case .done:
                break
            }
            #expect(Int(flow.pending) == sent - delivered)
        }
        #expect(flow.isDone)
        #expect(delivered == total)
        #expect(shutdowns == 1)
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
