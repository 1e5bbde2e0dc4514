import ArgumentParser
import Logging
import SluiceReactor
import SluiceRouting
import SluiceSystem

/// `sluice demo`: three local backends that name themselves, one TCP listener balancing them
/// round-robin, a few requests through it to show the rotation, then serving until Ctrl-C.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an embedded demo: a listener balancing three local backends.")

    @Option(help: "The port the demo listener binds on 127.0.0.1.")
    var port: UInt16 = 8080

    @OptionGroup var log: LogOptions

    func run() throws {
        Threads.takeOverSignals()
        let logger = log.bootstrap()
        var endpoints: [Endpoint] = []
        for name in ["backend-a", "backend-b", "backend-c"] {
            let backend = try DemoBackend(name: name)
            backend.start()
            endpoints.append(Endpoint(address: SocketAddress(ip: .v4(0x7F00_0001), port: backend.port), service: 0))
        }
        let listen = SocketAddress(ip: .v4(0x7F00_0001), port: port)
        let snapshot = RoutingSnapshot(
            generation: 1,
            listeners: [Listener(name: "demo", address: listen, protocol: .tcp, service: 0)],
            services: [Service(name: "demo", algorithm: .roundrobin, endpoints: 0..<endpoints.count)],
            endpoints: endpoints
        )
        print(snapshot.render())
        let reactor = try Reactor(workers: 1, snapshot: snapshot, logger: logger)
        reactor.start()
        print("\nsix requests through \(listen):")
        for i in 1...6 {
            print("  GET #\(i) -> \(DemoBackend.get(port: port)?.trimmingSuffixNewline ?? "(no answer)")")
        }
        print("\nserving on http://\(listen)/ — try: curl http://\(listen)/   (Ctrl-C to stop)")
        while true {
            switch Threads.waitForSignal() {
            case .stop:
                reactor.drain(graceMillis: 1000)
                reactor.join()
                return
            case .report: reactor.report()
            case .reload: break
            }
        }
    }
}

extension String {
    fileprivate var trimmingSuffixNewline: String {
        hasSuffix("\n") ? String(dropLast()) : self
    }
}
