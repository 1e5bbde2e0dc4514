import SluiceRouting
import Yams

/// The top level of the file and the settings sections (`timeouts`, `limits`, `tuning`).
extension ConfigDecoder {
    static let topLevelFields = [
        "workers", "timeouts", "limits", "tuning", "listeners", "services", "accessLog", "takeoverSocket",
    ]

    /// The whole configuration, or nil when anything was reported. `root` is nil for an empty
    /// document. Every section is checked even after another has failed.
    mutating func decode(root: Node?, generation: UInt64) -> LoadedConfig? {
        guard let root else {
            report("document", at: nil, "the file is empty; expected a mapping with 'listeners' and 'services'")
            return nil
        }
        guard let top = fields(root, path: "", known: Self.topLevelFields) else { return nil }

        let workers = top["workers"].flatMap { integer($0, path: "workers", in: 1...256) }
        let takeoverSocket = top["takeoverSocket"].flatMap { decodeTakeoverSocket($0) }
        let timeouts = top["timeouts"].map { decodeTimeouts($0) } ?? Timeouts()
        let limits = top["limits"].map { decodeLimits($0) } ?? Limits()
        let tuning = top["tuning"].map { decodeTuning($0) } ?? Tuning()
        // Absent: no access log; present but invalid: nil (reported).
        let accessLog = top["accessLog"].map { decodeAccessLog($0) }
        let services = required(top, "services").flatMap { decodeServices($0) }
        let listeners = required(top, "listeners").flatMap {
            decodeListeners($0, services: services, accessLog: accessLog != nil)
        }

        guard diagnostics.isEmpty, let services, let listeners else { return nil }
        return LoadedConfig(
            workers: workers, accessLog: accessLog.flatMap { $0 }, takeoverSocket: takeoverSocket,
            snapshot: Self.snapshot(
                generation: generation, listeners: listeners, services: services,
                timeouts: timeouts, limits: limits, tuning: tuning
            )
        )
    }

    /// Fields left out keep the defaults of `Timeouts()`.
    mutating func decodeTimeouts(_ node: Node) -> Timeouts {
        let durations: [(name: String, field: WritableKeyPath<Timeouts, Int64>)] = [
            ("connect", \.connectMillis), ("client", \.clientMillis), ("server", \.serverMillis),
            ("tunnel", \.tunnelMillis), ("drain", \.drainMillis), ("requestHead", \.requestHeadMillis),
            ("tlsHello", \.tlsHelloMillis), ("requestBody", \.requestBodyMillis),
        ]
        var timeouts = Timeouts()
        guard let section = fields(node, path: "timeouts", known: durations.map(\.name) + ["drainDelay"]) else {
            return timeouts
        }
        for (name, field) in durations {
            if let node = section[name], let value = durationMillis(node, path: "timeouts.\(name)") {
                timeouts[keyPath: field] = value
            }
        }
        if let node = section["drainDelay"] { timeouts.drainDelayMillis = drainDelayMillis(node) }
        return timeouts
    }

    /// Fields left out keep the defaults of `Limits()`.
    mutating func decodeLimits(_ node: Node) -> Limits {
        var limits = Limits()
        let known = [
            "maxConnections", "connectTries", "endpointBackoff", "upstreamIdlePerEndpoint", "upstreamIdle",
            "requestBodyMinRate",
        ]
        guard let section = fields(node, path: "limits", known: known) else { return limits }
        if let node = section["maxConnections"],
            let value = integer(node, path: "limits.maxConnections", in: 1...Int.max)
        {
            limits.maxConnections = value
        }
        if let node = section["connectTries"], let value = integer(node, path: "limits.connectTries", in: 1...16) {
            limits.connectTries = value
        }
        if let node = section["endpointBackoff"], let value = durationMillis(node, path: "limits.endpointBackoff") {
            limits.endpointBackoffMillis = value
        }
        if let node = section["upstreamIdlePerEndpoint"],
            let value = integer(node, path: "limits.upstreamIdlePerEndpoint", in: 0...4096)
        {
            limits.upstreamIdlePerEndpoint = value
        }
        if let node = section["upstreamIdle"], let value = durationMillis(node, path: "limits.upstreamIdle") {
            limits.upstreamIdleMillis = value
        }
        if let node = section["requestBodyMinRate"],
            let value = integer(node, path: "limits.requestBodyMinRate", in: 0...(1 << 30))
        {
            limits.requestBodyMinRate = value
        }
        return limits
    }

    /// Fields left out keep the defaults of `Tuning()`. The pipe size bounds are the kernel's
    /// page size and a size no pipe-max-size setting in practice allows.
    mutating func decodeTuning(_ node: Node) -> Tuning {
        var tuning = Tuning()
        guard
            let section = fields(
                node, path: "tuning", known: ["pipeSize", "pipePool", "copyBuffer", "splice", "ioBackend"])
        else { return tuning }
        if let node = section["pipeSize"], let value = sizeBytes(node, path: "tuning.pipeSize", in: 4096...(1 << 28)) {
            tuning.pipeSize = value
        }
        if let node = section["pipePool"], let value = integer(node, path: "tuning.pipePool", in: 0...4096) {
            tuning.pipePoolSize = value
        }
        if let node = section["copyBuffer"],
            let value = sizeBytes(node, path: "tuning.copyBuffer", in: 1024...(1 << 24))
        {
            tuning.copyBufferSize = value
        }
        if let node = section["splice"], let value = bool(node, path: "tuning.splice") {
            tuning.splice = value
        }
        if let node = section["ioBackend"], let text = string(node, path: "tuning.ioBackend") {
            if let choice = IOBackendChoice(rawValue: text) {
                tuning.ioBackend = choice
            } else {
                let allowed = IOBackendChoice.allCases.map(\.rawValue).joined(separator: ", ")
                report("tuning.ioBackend", at: node, "unknown I/O backend '\(text)' (expected one of: \(allowed))")
            }
        }
        return tuning
    }
}
