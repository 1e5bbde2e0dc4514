import ArgumentParser
import Logging
import SluiceReactor
import SluiceRouting
import SluiceSystem

/// `sluice demo`: name-based virtual hosting on one port, as in a cluster. Three local
/// backends that name themselves; `grafana.example.com` is balanced round-robin over two of
/// them, `kibana.example.com` goes to the third, anything else gets the default 404. A few
/// requests go through it at start to show the routing, then it serves until Ctrl-C.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an embedded demo: two host names on one port routed to local backends.")

    @Option(help: "The port the demo listener binds on 127.0.0.1.")
    var port: UInt16 = 8080

    @OptionGroup var log: LogOptions

    func run() throws {
        ServingProcess.installCrashHandler()
        // Line by line also into a pipe (`scripts/demo.sh | tee`): the demo is watched live.
        FileOutput.lineBufferStandardOutput()
        Threads.takeOverSignals()
        let logger = log.bootstrap()
        try ServingProcess.prepare(logger: logger)
        var endpoints: [Endpoint] = []
        for (index, name) in ["grafana-1", "grafana-2", "kibana-1"].enumerated() {
            let backend = try DemoBackend(name: name)
            backend.start()
            endpoints.append(
                Endpoint(address: SocketAddress(ip: .v4(0x7F00_0001), port: backend.port), service: index < 2 ? 0 : 1))
        }
        let routes = HTTPRouteTable(routes: [
            try HTTPRoute(host: "grafana.example.com", service: 0),
            try HTTPRoute(host: "kibana.example.com", service: 1),
        ])
        let listen = SocketAddress(ip: .v4(0x7F00_0001), port: port)
        let snapshot = RoutingSnapshot(
            generation: 1,
            listeners: [Listener(name: "demo", address: listen, protocol: .http, service: -1, routes: 0)],
            services: [
                Service(name: "grafana", algorithm: .roundrobin, endpoints: 0..<2),
                Service(name: "kibana", algorithm: .roundrobin, endpoints: 2..<3),
            ],
            endpoints: endpoints,
            routeTables: [routes]
        )
        print(snapshot.render())
        let reactor = try Reactor(workers: 1, snapshot: snapshot, logger: logger)
        reactor.start()
        print("\nrequests through http://\(listen)/ :")
        for host in [
            "grafana.example.com", "grafana.example.com", "kibana.example.com", "grafana.example.com",
            "other.example.com",
        ] {
            let answer = DemoBackend.get(port: port, host: host)?.trimmingSuffixNewline ?? "(no answer)"
            print("  Host: \(host)  ->  \(answer)")
        }
        print("\nserving; try:  curl -H 'Host: grafana.example.com' http://\(listen)/   (Ctrl-C to stop)")
        while true {
            switch Threads.waitForSignal() {
            case .stop:
                reactor.drain(graceMillis: 1000)
                reactor.join()
                return
            case .report: reactor.report()
            case .reload, .reopenLogs: break
            }
        }
    }
}

extension String {
    fileprivate var trimmingSuffixNewline: String {
        hasSuffix("\n") ? String(dropLast()) : self
    }
}
