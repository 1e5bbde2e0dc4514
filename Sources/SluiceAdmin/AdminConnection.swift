import SluiceWire

/// One admin connection's slot. Touched by the admin thread only.
///
/// | state       | waits for                       | deadline                    | then                                 |
/// | ----------- | ------------------------------- | --------------------------- | ------------------------------------ |
/// | `free`      | —                               | —                           | accept → `reading`                   |
/// | `reading`   | a whole request head            | idle (no byte yet), or head | head → `writing` (answered at once)  |
/// |             |                                 | (from a head's first byte)  | or `waiting`; EOF, error, idle →     |
/// |             |                                 |                             | closed; head deadline → 408 `writing`|
/// | `waiting`   | a worker's answer               | none (the worker's wait is  | answer → `writing`                   |
/// |             |                                 | bounded)                    |                                      |
/// | `writing`   | the socket to take the answer   | write                       | sent → `reading` (keep-alive) or     |
/// |             |                                 |                             | `lingering`; error, deadline → closed|
/// | `lingering` | the client's FIN (ours is sent) | linger (1 s)                | EOF, error, deadline → closed        |
///
/// Invariants: `input` is allocated from accept to close; only `reading` reads from the
/// socket (a pipelined request waits in the kernel or in `input` until the answer before it
/// is sent); `consumed` bytes at the front of `input` belong to the request being answered
/// and are dropped when its answer is sent.
struct AdminConnection {
    enum State { case free, reading, waiting, writing, lingering }

    var state: State = .free
    var fd: Int32 = -1
    /// Moves on each reuse of the slot: a late event or answer for an earlier connection is
    /// dropped.
    var generation: UInt32 = 0
    var input: UnsafeMutableRawBufferPointer?
    var inputCount = 0
    var scanner = HeadScanner()
    /// Bytes of the head being answered, dropped from `input` once the answer is sent.
    var consumed = 0
    var deadline: Int64 = .max
    /// Edge-triggered readiness as last reported: cleared on EAGAIN or a short read/write.
    var mayRead = false
    var mayWrite = true
    /// The request being answered.
    var keepAlive = false
    var http10KeepAlive = false
    var headOnly = false
    /// The blocks of the answer being sent and how far.
    var output: [ByteOutput] = []
    var outputIndex = 0
    var outputOffset = 0
    var closeAfterWrite = false

    var live: Bool { state != .free }
}
