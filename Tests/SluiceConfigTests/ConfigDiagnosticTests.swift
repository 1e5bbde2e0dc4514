import SluiceConfig
import Testing

/// Each class of mistake, with the exact text `sluice check` prints for it.
@Suite struct ConfigDiagnosticTests {
    @Test func unknownFields() {
        #expect(
            diagnostics(minimal(appending: "bogus: 1")) == [
                "t.yaml:8:1: bogus: unknown field 'bogus' (known: workers, timeouts, limits, tuning, listeners, services, accessLog, takeoverSocket)"
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 3, with: "    service: web\n    port: 80")) == [
                "t.yaml:4:5: listeners[0].port: unknown field 'port' (known: name, address, protocol, service, routes, default, acceptProxy, certificates, accessLog, accessLogSample, http2)"
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 5, with: "  - name: web\n    balance: source")) == [
                "t.yaml:6:5: services[0].balance: unknown field 'balance' (known: name, algorithm, endpoints, cookie, proxyProtocol, protocol, tls)"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "timeouts:\n  idle: 5s")) == [
                "t.yaml:9:3: timeouts.idle: unknown field 'idle' (known: connect, client, server, tunnel, drain, requestHead, tlsHello, requestBody, drainDelay)"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "limits:\n  retries: 2")) == [
                "t.yaml:9:3: limits.retries: unknown field 'retries' "
                    + "(known: maxConnections, connectTries, endpointBackoff, upstreamIdlePerEndpoint, upstreamIdle, requestBodyMinRate)"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "tuning:\n  pipesize: 64k")) == [
                "t.yaml:9:3: tuning.pipesize: unknown field 'pipesize' (known: pipeSize, pipePool, copyBuffer, splice, ioBackend)"
            ]
        )
    }

    @Test func wrongTypes() {
        #expect(
            diagnostics(minimal(appending: "workers: two")) == [
                "t.yaml:8:10: workers: expected an integer, found 'two'"
            ])
        #expect(
            diagnostics(minimal(appending: "workers: [2]")) == [
                "t.yaml:8:10: workers: expected an integer, found a sequence"
            ])
        #expect(
            diagnostics(minimal(appending: "timeouts: [5s]")) == [
                "t.yaml:8:11: timeouts: expected a mapping, found a sequence"
            ])
        #expect(diagnostics(minimal(appending: "limits:")) == ["t.yaml:8:8: limits: expected a mapping, found nothing"])
        #expect(
            diagnostics(minimal(appending: "tuning:\n  splice: yes")) == [
                "t.yaml:9:11: tuning.splice: expected true or false, found 'yes'"
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 7, with: "").replacingLine(6, with: "    endpoints: 127.0.0.1:9001")) == [
                "t.yaml:6:16: services[0].endpoints: expected a sequence, found '127.0.0.1:9001'"
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 5, with: "  - name:")) == [
                "t.yaml:5:10: services[0].name: expected a string, found nothing"
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 5, with: "  - name: ''")) == [
                "t.yaml:5:11: services[0].name: must not be empty"
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 7, with: "      - {host: 127.0.0.1, port: 9001}")) == [
                "t.yaml:7:9: services[0].endpoints[0]: expected a string, found a mapping "
                    + "(quote IPv6 addresses: \"[::1]:80\")"
            ]
        )
        #expect(diagnostics("- a\n- b\n") == ["t.yaml:1:1: document: expected a mapping, found a sequence"])
        #expect(diagnostics("just text\n") == ["t.yaml:1:1: document: expected a mapping, found 'just text'"])
        #expect(
            diagnostics("listeners: {web: 1}\nservices: []\n") == [
                "t.yaml:1:12: listeners: expected a sequence, found a mapping"
            ]
        )
        #expect(
            diagnostics("listeners:\n  - 127.0.0.1:8080\nservices: []\n") == [
                "t.yaml:2:5: listeners[0]: expected a mapping, found '127.0.0.1:8080'"
            ]
        )
    }

    @Test func missingRequiredFields() {
        #expect(
            diagnostics("services: []\n") == [
                "t.yaml:1:1: listeners: required field is missing"
            ]
        )
        #expect(
            diagnostics("listeners: []\n") == [
                "t.yaml:1:1: services: required field is missing",
                "t.yaml:1:12: listeners: at least one listener is required",
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 2, with: "  - name: x")) == [
                "t.yaml:2:5: listeners[0].address: required field is missing"
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 3, with: "    name: x")) == [
                "t.yaml:2:5: listeners[0].service: required field is missing"
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 5, with: "  - algorithm: source")) == [
                "t.yaml:5:5: services[0].name: required field is missing"
            ]
        )
    }

    @Test func emptyFile() {
        #expect(
            diagnostics("") == [
                "t.yaml:0:0: document: the file is empty; expected a mapping with 'listeners' and 'services'"
            ]
        )
        #expect(diagnostics("# only a comment\n").count == 1)
    }

    @Test func badAddresses() {
        let cases: [(String, String)] = [
            ("127.0.0.1", "expected HOST:PORT (IPv6 as [ADDR]:PORT)"),
            ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
            ("127.0.0.1:65536", "the port must be a number from 1 to 65535"),
            ("127.0.0.1:http", "the port must be a number from 1 to 65535"),
            ("300.0.0.1:80", "not an IPv4 or IPv6 address literal"),
            ("example.com:80", "not an IPv4 or IPv6 address literal"),
            ("::1:80", "expected HOST:PORT (IPv6 as [ADDR]:PORT)"),
        ]
        for (address, reason) in cases {
            #expect(
                diagnostics(minimal(replacing: 2, with: "  - address: \"\(address)\"")) == [
                    "t.yaml:2:14: listeners[0].address: invalid address '\(address)': \(reason)"
                ]
            )
            #expect(
                diagnostics(minimal(replacing: 7, with: "      - \"\(address)\"")) == [
                    "t.yaml:7:9: services[0].endpoints[0]: invalid address '\(address)': \(reason)"
                ]
            )
        }
    }

    @Test func unknownProtocolAndAlgorithm() {
        #expect(
            diagnostics(minimal(replacing: 3, with: "    service: web\n    protocol: udp")) == [
                "t.yaml:4:15: listeners[0].protocol: unknown protocol 'udp' (expected one of: tcp, http, tls)"
            ]
        )
        #expect(
            diagnostics(minimal(replacing: 5, with: "  - name: web\n    algorithm: random")) == [
                "t.yaml:6:16: services[0].algorithm: unknown algorithm 'random' "
                    + "(expected one of: roundrobin, leastconn, source, cookie)"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "tuning:\n  ioBackend: uring")) == [
                "t.yaml:9:14: tuning.ioBackend: unknown I/O backend 'uring' (expected one of: auto, io_uring, epoll)"
            ]
        )
    }

    @Test func listenerNamingAnUnknownService() {
        #expect(
            diagnostics(minimal(replacing: 3, with: "    service: api")) == [
                "t.yaml:3:14: listeners[0].service: no service named 'api' (defined: web)"
            ]
        )
        let noServices = """
            listeners:
              - address: 127.0.0.1:8080
                service: web
            services: []
            """
        #expect(
            diagnostics(noServices) == [
                "t.yaml:3:14: listeners[0].service: no service named 'web' (no services are defined)"
            ]
        )
    }

    @Test func aServiceThatFailedDoesNotAlsoFailItsListeners() {
        // The service entry has no usable name: the listener's reference is not reported too.
        #expect(
            diagnostics(minimal(replacing: 5, with: "  - name: [web]")) == [
                "t.yaml:5:11: services[0].name: expected a string, found a sequence"
            ]
        )
    }

    @Test func duplicates() {
        let yaml = """
            listeners:
              - address: 127.0.0.1:8080
                service: web
              - address: localhost:8080
                service: web
            services:
              - name: web
                endpoints:
                  - 127.0.0.1:9001
                  - "[::1]:9001"
                  - "[0:0::1]:9001"
              - name: web
            """
        #expect(
            diagnostics(yaml) == [
                "t.yaml:4:14: listeners[1].address: address 127.0.0.1:8080 is already used by listeners[0]",
                "t.yaml:11:9: services[0].endpoints[2]: endpoint [::1]:9001 is already listed at services[0].endpoints[1]",
                "t.yaml:12:11: services[1].name: service name 'web' is already used by services[0]",
            ]
        )
    }

    @Test func badDurations() {
        let cases: [(String, String)] = [
            ("5x", "expected a duration such as 250ms, 5s, 2m, 1h or an integer of milliseconds, found '5x'"),
            ("1.5s", "expected a duration such as 250ms, 5s, 2m, 1h or an integer of milliseconds, found '1.5s'"),
            ("5S", "expected a duration such as 250ms, 5s, 2m, 1h or an integer of milliseconds, found '5S'"),
            ("-5s", "expected a duration such as 250ms, 5s, 2m, 1h or an integer of milliseconds, found '-5s'"),
            ("s", "expected a duration such as 250ms, 5s, 2m, 1h or an integer of milliseconds, found 's'"),
            ("0", "must be greater than 0"),
            ("0ms", "must be greater than 0"),
            ("8761h", "must be at most 8760h"),
            ("99999999999999999999", "must be at most 8760h"),
            ("{}", "expected a duration such as 250ms, 5s, 2m, 1h or an integer of milliseconds, found a mapping"),
        ]
        for (text, reason) in cases {
            #expect(
                diagnostics(minimal(appending: "timeouts:\n  drain: \(text)")) == [
                    "t.yaml:9:10: timeouts.drain: \(reason)"
                ]
            )
        }
        #expect(
            diagnostics(minimal(appending: "limits:\n  endpointBackoff: 0s")) == [
                "t.yaml:9:20: limits.endpointBackoff: must be greater than 0"
            ]
        )
    }

    @Test func badSizes() {
        let cases: [(String, String)] = [
            ("64q", "expected a size in bytes such as 65536, 64k or 1m, found '64q'"),
            ("k", "expected a size in bytes such as 65536, 64k or 1m, found 'k'"),
            ("1.5m", "expected a size in bytes such as 65536, 64k or 1m, found '1.5m'"),
            ("4095", "must be from 4096 to 268435456 bytes"),
            ("1k", "must be from 4096 to 268435456 bytes"),
            ("257m", "must be from 4096 to 268435456 bytes"),
            ("1g", "must be from 4096 to 268435456 bytes"),
            ("99999999999999999999", "must be from 4096 to 268435456 bytes"),
            ("9999999999999999k", "must be from 4096 to 268435456 bytes"),
        ]
        for (text, reason) in cases {
            #expect(
                diagnostics(minimal(appending: "tuning:\n  pipeSize: \(text)")) == [
                    "t.yaml:9:13: tuning.pipeSize: \(reason)"
                ]
            )
        }
        #expect(
            diagnostics(minimal(appending: "tuning:\n  copyBuffer: 512")) == [
                "t.yaml:9:15: tuning.copyBuffer: must be from 1024 to 16777216 bytes"
            ]
        )
    }

    @Test func numbersOutOfRange() {
        #expect(diagnostics(minimal(appending: "workers: 0")) == ["t.yaml:8:10: workers: must be from 1 to 256"])
        #expect(diagnostics(minimal(appending: "workers: 257")) == ["t.yaml:8:10: workers: must be from 1 to 256"])
        #expect(diagnostics(minimal(appending: "workers: -1")) == ["t.yaml:8:10: workers: must be from 1 to 256"])
        #expect(
            diagnostics(minimal(appending: "workers: 99999999999999999999")) == [
                "t.yaml:8:10: workers: must be from 1 to 256"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "workers: 0x10")) == [
                "t.yaml:8:10: workers: expected an integer, found '0x10'"
            ])
        #expect(
            diagnostics(minimal(appending: "limits:\n  maxConnections: 0")) == [
                "t.yaml:9:19: limits.maxConnections: must be at least 1"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "limits:\n  connectTries: 0")) == [
                "t.yaml:9:17: limits.connectTries: must be from 1 to 16"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "limits:\n  connectTries: 17")) == [
                "t.yaml:9:17: limits.connectTries: must be from 1 to 16"
            ]
        )
        #expect(
            diagnostics(minimal(appending: "tuning:\n  pipePool: 4097")) == [
                "t.yaml:9:13: tuning.pipePool: must be from 0 to 4096"
            ]
        )
    }

    @Test func everyProblemIsReportedInFileOrder() {
        let yaml = """
            workers: 0
            timeouts:
              connect: soon
            listeners:
              - address: 127.0.0.1
                service: api
                colour: blue
              - service: web
            services:
              - name: web
                algorithm: random
                endpoints:
                  - 10.0.0.1:80
                  - 10.0.0.1:80
            tuning:
              pipeSize: 1k
            """
        let expected = [
            "t.yaml:1:10: workers: must be from 1 to 256",
            "t.yaml:3:12: timeouts.connect: expected a duration such as 250ms, 5s, 2m, 1h or an integer of milliseconds, "
                + "found 'soon'",
            "t.yaml:5:14: listeners[0].address: invalid address '127.0.0.1': expected HOST:PORT (IPv6 as [ADDR]:PORT)",
            "t.yaml:6:14: listeners[0].service: no service named 'api' (defined: web)",
            "t.yaml:7:5: listeners[0].colour: unknown field 'colour' (known: name, address, protocol, service, routes, default, acceptProxy, certificates, accessLog, accessLogSample, http2)",
            "t.yaml:8:5: listeners[1].address: required field is missing",
            "t.yaml:11:16: services[0].algorithm: unknown algorithm 'random' (expected one of: roundrobin, leastconn, source, cookie)",
            "t.yaml:14:9: services[0].endpoints[1]: endpoint 10.0.0.1:80 is already listed at services[0].endpoints[0]",
            "t.yaml:16:13: tuning.pipeSize: must be from 4096 to 268435456 bytes",
        ]
        #expect(diagnostics(yaml) == expected)
        do {
            _ = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1)
            Issue.record("a bad file loaded")
        } catch {
            #expect(error.description == expected.joined(separator: "\n"))
            #expect(
                error.diagnostics[0]
                    == Diagnostic(
                        file: "t.yaml", line: 1, column: 10, field: "workers", reason: "must be from 1 to 256")
            )
        }
    }
}
