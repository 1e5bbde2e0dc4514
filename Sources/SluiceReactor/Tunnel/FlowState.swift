import SluiceSystem

/// One direction of a TCP tunnel: bytes from a source socket to a destination socket,
/// through a pipe (splice) or a buffer (copy). A value with no I/O: the loop performs the
/// step it asks for and feeds back the result, so the same machine serves the epoll driver
/// today and an io_uring driver later, and tests drive it with any syscall outcome.
///
/// State table:
///
/// | pending | srcEOF | dstShut | readiness                      | next step  |
/// | ------- | ------ | ------- | ------------------------------ | ---------- |
/// | > 0     |        |         | dst writable                   | `.write`   |
/// | < room  | no     |         | src readable                   | `.read`    |
/// | > 0     |        |         | dst not writable               | `.wait`    |
/// | 0       | yes    | no      |                                | `.shutdown`|
/// | 0       | yes    | yes     |                                | `.done`    |
/// | 0       | no     |         | src not readable               | `.wait`    |
///
/// Invariants: `pending` bytes were read and not yet written, in order; a byte is never
/// dropped or reordered; SHUT_WR is sent once, only after every byte before EOF was written.
/// Readiness is edge-triggered: `srcReadable`/`dstWritable` are set by events and cleared
/// by "would block", by a short read in copy mode, or by a short splice into an empty pipe
/// that moved fewer bytes than the pipe has slots (one slot per page of `capacity`). A
/// non-blocking TCP splice takes what the receive queue holds in one pass and stops early
/// only when the pipe runs out of slots; each slot holds at least one byte, so fewer bytes
/// than slots proves the queue was drained, and a later arrival raises a new edge. Any other
/// short splice proves nothing (the pipe may be out of slots) and the source stays readable:
/// the next splice says "would block" if it really is drained. A splice into a pipe that
/// already holds bytes may say "would block" because the *pipe* is full, not the socket
/// empty: then the flow stops reading until the pipe is flushed (`waitRoom`) and keeps the
/// source marked readable, as HAProxy's `raw_sock_to_pipe` does.
struct FlowState: BitwiseCopyable {
    enum Step: Equatable {
        /// Read up to `room` bytes from the source.
        case read(room: Int32)
        /// Write the `pending` bytes to the destination.
        case write(count: Int32)
        /// The source ended and everything was written: shutdown(SHUT_WR) the destination.
        case shutdown
        /// Nothing to do until an event.
        case wait
        /// This direction is finished.
        case done
    }

    enum Outcome: Equatable {
        case bytes(Int32)
        case endOfStream
        case wouldBlock
    }

    /// Bytes held between read and write.
    var pending: Int32 = 0
    /// Bytes the pipe or buffer can hold.
    var capacity: Int32 = 0
    /// Copy mode only: where the unwritten bytes start in the buffer.
    var offset: Int32 = 0
    var srcReadable = false
    var dstWritable = false
    var srcEOF = false
    var dstShut = false
    /// Copy mode reads only into an empty buffer; splice mode tops up the pipe.
    var copyMode = false
    /// Splice mode: a read into a non-empty pipe would block; read again once it is empty.
    var waitRoom = false
    /// Splice is allowed but the flow starts by copying: small messages cost a read and a
    /// write instead of two splices (and no pipe). A read of a quarter of the buffer or more
    /// marks the flow as bulk (`spliceDue`; a sender that keeps pace with us never fills the
    /// buffer in one read, so "full" would be too strict a test); once the buffer is written
    /// out the flow moves to the pipe for good.
    var spliceWhenFull = false
    var spliceDue = false
    /// The source reported RDHUP/HUP/ERR: its end of stream (or error) is queued behind the
    /// data, and no further edge will announce it, so a short read must not end reading.
    var srcHangup = false

    @inline(__always)
    var next: Step {
        if pending > 0 && dstWritable { return .write(count: pending) }
        if !srcEOF && srcReadable && !waitRoom {
            let room = copyMode ? (pending == 0 ? capacity : 0) : capacity - pending
            if room > 0 { return .read(room: room) }
        }
        if pending > 0 { return .wait }
        if srcEOF { return dstShut ? .done : .shutdown }
        return .wait
    }

    var isDone: Bool { srcEOF && dstShut && pending == 0 }

    @inline(__always)
    mutating func didRead(_ outcome: Outcome, requested: Int32) {
        switch outcome {
        case .bytes(let n):
            let wasEmpty = pending == 0
            pending += n
            if copyMode && spliceWhenFull && n >= capacity / 4 { spliceDue = true }
            if n < requested && !srcHangup && (copyMode || (wasEmpty && n < capacity >> 12)) {
                srcReadable = false
            }
        case .endOfStream:
            srcEOF = true
            srcReadable = false
        case .wouldBlock:
            if pending > 0 && !copyMode { waitRoom = true } else { srcReadable = false }
        }
    }

    @inline(__always)
    mutating func didWrite(_ outcome: Outcome) {
        switch outcome {
        case .bytes(let n):
            pending -= n
            offset = pending == 0 ? 0 : offset + n
            if pending == 0 { waitRoom = false }
        case .wouldBlock:
            dstWritable = false
        case .endOfStream:
            break
        }
    }

    mutating func didShutdown() { dstShut = true }

    /// A bulk flow whose buffer is empty: time to move to a pipe.
    @inline(__always)
    var spliceReady: Bool { spliceDue && pending == 0 && copyMode }

    /// Stays copying for good (no pipe to be had).
    mutating func keepCopying() {
        spliceWhenFull = false
        spliceDue = false
    }

    /// A bulk flow whose buffer is empty moves to splice, with a pipe of `pipeCapacity`
    /// bytes; true when it did (the caller gives the buffer back).
    @inline(__always)
    mutating func takeSpliceSwitch(pipeCapacity: Int32) -> Bool {
        guard spliceReady else { return false }
        copyMode = false
        spliceWhenFull = false
        spliceDue = false
        capacity = pipeCapacity
        offset = 0
        return true
    }
}

extension FlowState {
    /// A readiness event on the source socket: worth a read, and whether the end of stream
    /// behind the data must still be read (a short read then does not mean drained).
    @inline(__always)
    mutating func sourceReady(_ readiness: Readiness) {
        guard readiness.mayRead else { return }
        srcReadable = true
        if readiness.hungUp { srcHangup = true }
    }

    /// A readiness event on the destination socket: a write may go.
    @inline(__always)
    mutating func destinationReady(_ readiness: Readiness) {
        if readiness.mayWrite { dstWritable = true }
    }
}
