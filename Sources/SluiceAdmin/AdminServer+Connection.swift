import SluiceSystem
import SluiceWire

// One admin connection's reads, requests and writes (see the table in `AdminConnection`).
// Admin thread only.
extension AdminServer {
    /// Moves the connection on as far as it can go without waiting: parses what is buffered,
    /// reads while in `reading`, writes while in `writing`.
    func drive(_ slot: Int32) {
        let i = Int(slot)
        while connections[i].live {
            switch connections[i].state {
            case .free, .waiting:
                return
            case .reading:
                if parseBuffered(slot) { continue }
                guard connections[i].state == .reading, connections[i].mayRead else { return }
                if !readSome(slot) { return }
            case .writing:
                if !writeSome(slot) { return }
            case .lingering:
                if !discardSome(slot) { return }
            }
        }
    }

    /// Looks for a whole head in `input`; when there is one, handles its request.
    /// - Returns: true when the state changed (the caller drives on).
    private func parseBuffered(_ slot: Int32) -> Bool {
        let i = Int(slot)
        guard connections[i].inputCount > 0, let input = connections[i].input else { return false }
        let buffered = UnsafeRawBufferPointer(rebasing: input[0..<connections[i].inputCount])
        switch connections[i].scanner.scan(buffered, limits: limits) {
        case .needMore:
            return false
        case .tooLarge:
            answerError(slot, status: 431)
            return true
        case .complete(let length):
            let head = UnsafeRawBufferPointer(rebasing: buffered[0..<Int(length)])
            connections[i].consumed = Int(length)
            switch HTTPRequestParser.parse(head, fields: fields, limits: limits) {
            case .failure(let error):
                answerError(slot, status: error.status)
            case .success(let parsed):
                handle(slot, AdminRequest(parsed, buffer: head, fields: UnsafeBufferPointer(fields)))
            }
            return true
        }
    }

    /// One read into `input`. Returns false when nothing more can be read now (EAGAIN) or the
    /// connection closed.
    private func readSome(_ slot: Int32) -> Bool {
        let i = Int(slot)
        guard let input = connections[i].input else { return false }
        let space = input.count - connections[i].inputCount
        if space == 0 {
            answerError(slot, status: 431)
            return true
        }
        let start = input.baseAddress! + connections[i].inputCount
        do {
            switch try IO.read(connections[i].fd, into: start, count: space) {
            case .wouldBlock:
                connections[i].mayRead = false
                return false
            case .done(0):
                closeConnection(slot)
                return false
            case .done(let n):
                if connections[i].inputCount == 0 { connections[i].deadline = now + options.headMillis }
                connections[i].inputCount += n
                // A short read drained the socket; edge triggering reports later bytes anew.
                if n < space { connections[i].mayRead = false }
                return true
            }
        } catch {
            closeConnection(slot)
            return false
        }
    }

    /// Sends what the socket takes of the answer. Returns false when the socket is full or
    /// the connection closed; true when the answer went out whole (the state moved on).
    private func writeSome(_ slot: Int32) -> Bool {
        let i = Int(slot)
        while connections[i].outputIndex < connections[i].output.count {
            guard connections[i].mayWrite else { return false }
            let block = connections[i].output[connections[i].outputIndex]
            let offset = connections[i].outputOffset
            let left = block.count - offset
            let result: IOResult<Int>
            do {
                result = try IO.write(connections[i].fd, from: block.bytes.baseAddress! + offset, count: left)
            } catch {
                closeConnection(slot)
                return false
            }
            switch result {
            case .wouldBlock:
                connections[i].mayWrite = false
                return false
            case .done(let n):
                if n < left {
                    connections[i].outputOffset += n
                    connections[i].mayWrite = false
                    return false
                }
                connections[i].outputIndex += 1
                connections[i].outputOffset = 0
            }
        }
        finishAnswer(slot)
        return true
    }

    /// The answer is sent: linger, or drop the request's head from `input` and read the next.
    private func finishAnswer(_ slot: Int32) {
        let i = Int(slot)
        if connections[i].closeAfterWrite { return linger(slot) }
        let rest = connections[i].inputCount - connections[i].consumed
        if rest > 0, let input = connections[i].input {
            // SAFETY: both ranges lie inside `input`; `copyMemory` handles the overlap as memmove.
            input.baseAddress!.copyMemory(from: input.baseAddress! + connections[i].consumed, byteCount: rest)
        }
        connections[i].inputCount = rest
        connections[i].consumed = 0
        connections[i].scanner.reset()
        connections[i].output = []
        connections[i].outputIndex = 0
        connections[i].outputOffset = 0
        connections[i].state = .reading
        connections[i].deadline = now + (rest > 0 ? options.headMillis : options.idleMillis)
    }

    /// After the last answer: FIN sent, then what the client still sends is read and dropped
    /// until it closes or `lingerMillis` pass. Closing at once with unread bytes (a body, a
    /// pipelined request) would send a reset that can destroy the answer before the client
    /// reads it.
    private func linger(_ slot: Int32) {
        let i = Int(slot)
        do {
            try Socket.shutdownWrite(connections[i].fd)
        } catch {
            return closeConnection(slot)
        }
        connections[i].output = []
        connections[i].state = .lingering
        connections[i].deadline = now + Self.lingerMillis
    }

    static let lingerMillis: Int64 = 1_000

    /// Reads and drops bytes while lingering. Returns false when nothing more can be read
    /// now or the connection closed.
    private func discardSome(_ slot: Int32) -> Bool {
        let i = Int(slot)
        guard connections[i].mayRead, let input = connections[i].input else { return false }
        do {
            switch try IO.read(connections[i].fd, into: input.baseAddress!, count: input.count) {
            case .wouldBlock:
                connections[i].mayRead = false
                return false
            case .done(0):
                closeConnection(slot)
                return false
            case .done(let n):
                if n < input.count { connections[i].mayRead = false }
                return true
            }
        } catch {
            closeConnection(slot)
            return false
        }
    }

    /// Acts on a parsed request: answers at once, or hands it to a worker.
    private func handle(_ slot: Int32, _ request: AdminRequest) {
        let i = Int(slot)
        connections[i].keepAlive = request.keepAlive
        connections[i].http10KeepAlive = request.http10KeepAlive
        connections[i].headOnly = request.headOnly
        switch request.outcome {
        case .notFound:
            answer(slot, .text(404, "not found\n"))
        case .methodNotAllowed:
            var response = AdminResponse.text(405, "method not allowed\n")
            response.allowGetHead = true
            answer(slot, response)
        case .serve(.index):
            answer(slot, AdminAnswers.index())
        case .serve(.ready):
            answer(slot, AdminAnswers.ready(source))
        case .serve(let route):
            connections[i].state = .waiting
            connections[i].deadline = .max
            let job = AdminWorker.Job(slot: slot, generation: connections[i].generation, route: route)
            if route == .health { probeWorker.submit(job) } else { scrapeWorker.submit(job) }
        }
    }

    /// Starts sending `response` for the request in hand.
    func answer(_ slot: Int32, _ response: AdminResponse) {
        let i = Int(slot)
        let closing = !connections[i].keepAlive || response.close || stopping.load(ordering: .relaxed)
        connections[i].output = response.wire(
            closing: closing, http10KeepAlive: connections[i].http10KeepAlive, headOnly: connections[i].headOnly)
        connections[i].outputIndex = 0
        connections[i].outputOffset = 0
        connections[i].closeAfterWrite = closing
        connections[i].state = .writing
        connections[i].deadline = now + options.writeMillis
    }

    /// An error answer (400, 408, 431, 505…) with `Connection: close`; the connection closes
    /// once it is sent.
    func answerError(_ slot: Int32, status: UInt16) {
        let i = Int(slot)
        let block = ByteOutput(capacity: 256)
        var scratch = [UInt8](repeating: 0, count: 256)
        let n = scratch.withUnsafeMutableBytes { HTTPHeadWriter.writeError(status: status, into: $0) }
        scratch.withUnsafeBytes { block.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        connections[i].output = [block]
        connections[i].outputIndex = 0
        connections[i].outputOffset = 0
        connections[i].closeAfterWrite = true
        connections[i].state = .writing
        connections[i].deadline = now + options.writeMillis
    }
}
