import SluiceConfig
import SluiceRouting
import Testing

@Suite struct ConfigLoaderTests {
    static let fullConfig = """
        workers: 2
        timeouts:
          connect: 250ms
          client: 5s
          server: 2m
          tunnel: 1h
          drain: 1500
        limits:
          maxConnections: 20000
          connectTries: 4
          endpointBackoff: 3s
        tuning:
          pipeSize: 64k
          pipePool: 16
          copyBuffer: 1M
          splice: false
          ioBackend: epoll
        listeners:
          - name: web
            address: 127.0.0.1:8080
            protocol: tcp
            service: web
          - address: "[::1]:8443"
            service: db
          - address: 0.0.0.0:9000
            service: web
        services:
          - name: db
            algorithm: leastconn
            endpoints:
              - 10.0.0.1:5432
              - "[fe80::1:2]:5432"
          - name: web
            algorithm: source
            endpoints:
              - 127.0.0.1:9001
              - localhost:9002
              - "[::1]:9003"
          - name: parked
            endpoints: []
        """

    @Test func fullFileBuildsTheSnapshot() throws {
        let config = try ConfigLoader.parse(yaml: Self.fullConfig, file: "full.yaml", generation: 7)
        let snapshot = config.snapshot
        #expect(config.workers == 2)
        #expect(snapshot.generation == 7)

        #expect(snapshot.timeouts.connectMillis == 250)
        #expect(snapshot.timeouts.clientMillis == 5_000)
        #expect(snapshot.timeouts.serverMillis == 120_000)
        #expect(snapshot.timeouts.tunnelMillis == 3_600_000)
        #expect(snapshot.timeouts.drainMillis == 1_500)
        #expect(snapshot.limits.maxConnections == 20_000)
        #expect(snapshot.limits.connectTries == 4)
        #expect(snapshot.limits.endpointBackoffMillis == 3_000)
        #expect(snapshot.tuning.pipeSize == 65_536)
        #expect(snapshot.tuning.pipePoolSize == 16)
        #expect(snapshot.tuning.copyBufferSize == 1_048_576)
        #expect(snapshot.tuning.splice == false)
        #expect(snapshot.tuning.ioBackend == .epoll)

        #expect(snapshot.services.map(\.name) == ["db", "web", "parked"])
        #expect(snapshot.services.map(\.algorithm) == [.leastconn, .source, .roundrobin])
        #expect(snapshot.services.map(\.endpoints) == [0..<2, 2..<5, 5..<5])
        #expect(
            snapshot.endpoints.map(\.address.description) == [
                "10.0.0.1:5432", "[fe80::1:2]:5432", "127.0.0.1:9001", "127.0.0.1:9002", "[::1]:9003",
            ]
        )
        #expect(snapshot.endpoints.map(\.service) == [0, 0, 1, 1, 1])

        #expect(snapshot.listeners.map(\.name) == ["web", "tcp-[::1]:8443", "tcp-0.0.0.0:9000"])
        #expect(snapshot.listeners.map(\.address.description) == ["127.0.0.1:8080", "[::1]:8443", "0.0.0.0:9000"])
        #expect(snapshot.listeners.map(\.protocol) == [.tcp, .tcp, .tcp])
        #expect(snapshot.listeners.map(\.service) == [1, 0, 1])
    }

    @Test func omittedSettingsTakeTheDefaults() throws {
        let config = try ConfigLoader.parse(yaml: minimalConfig, file: "t.yaml", generation: 1)
        let snapshot = config.snapshot
        #expect(config.workers == nil)
        #expect(snapshot.timeouts == Timeouts())
        #expect(snapshot.limits == Limits())
        #expect(snapshot.tuning == Tuning())
        #expect(
            snapshot.listeners == [
                Listener(
                    name: "tcp-127.0.0.1:8080", address: try SocketAddress.parse("127.0.0.1:8080").get(),
                    protocol: .tcp, service: 0)
            ]
        )
        #expect(snapshot.services == [Service(name: "web", algorithm: .roundrobin, endpoints: 0..<1)])
    }

    @Test func emptySectionsKeepTheirDefaults() throws {
        let yaml = minimal(appending: "timeouts: {}\nlimits: {}\ntuning: {}")
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.timeouts == Timeouts())
        #expect(snapshot.limits == Limits())
        #expect(snapshot.tuning == Tuning())
    }

    @Test func serviceWithoutEndpointsIsAccepted() throws {
        let yaml = """
            listeners:
              - address: 127.0.0.1:8080
                service: empty
            services:
              - name: empty
            """
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.services == [Service(name: "empty", algorithm: .roundrobin, endpoints: 0..<0)])
        #expect(snapshot.endpoints.isEmpty)
    }

    @Test(
        arguments: [
            ("1", 1), ("250", 250), ("250ms", 250), ("5s", 5_000), ("2m", 120_000), ("1h", 3_600_000),
            ("8760h", 31_536_000_000),
        ] as [(String, Int64)])
    func durationForms(text: String, millis: Int64) throws {
        let yaml = minimal(appending: "timeouts:\n  connect: \(text)")
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.timeouts.connectMillis == millis)
    }

    @Test(
        arguments: [
            ("4096", 4096), ("64k", 65_536), ("64K", 65_536), ("1m", 1_048_576), ("1M", 1_048_576),
            ("256m", 268_435_456), ("\"8k\"", 8192),
        ] as [(String, Int)])
    func sizeForms(text: String, bytes: Int) throws {
        let yaml = minimal(appending: "tuning:\n  pipeSize: \(text)")
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.tuning.pipeSize == bytes)
    }

    @Test(arguments: [("true", true), ("false", false), ("True", true), ("FALSE", false)])
    func spliceBooleans(text: String, value: Bool) throws {
        let yaml = minimal(appending: "tuning:\n  splice: \(text)")
        #expect(try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot.tuning.splice == value)
    }

    @Test(arguments: [1, 256])
    func workerBounds(workers: Int) throws {
        let yaml = minimal(appending: "workers: \(workers)")
        #expect(try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).workers == workers)
    }

    @Test func commentsAndFlowStyleAreFine() throws {
        let yaml = """
            # the demo
            listeners: [{address: "127.0.0.1:8080", service: web}]  # one
            services: [{name: web, algorithm: roundrobin, endpoints: ["127.0.0.1:9001", "[::1]:9002"]}]
            """
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.endpoints.map(\.address.description) == ["127.0.0.1:9001", "[::1]:9002"])
    }
}
