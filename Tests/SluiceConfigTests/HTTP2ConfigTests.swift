import SluiceConfig
import SluiceRouting
import Testing

/// `http2` on listeners: where it is taken, and the message where it is not.
@Suite struct HTTP2ConfigTests {
    static let http = """
        listeners:
          - address: 127.0.0.1:8080
            protocol: http
            http2: true
            routes:
              - host: a.example.com
                service: web
        services:
          - name: web
            endpoints: [127.0.0.1:9001]

        """

    @Test func anHTTPListenerTakesIt() throws {
        let snapshot = try ConfigLoader.parse(yaml: Self.http, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.listeners[0].http2)
        #expect(snapshot.render().contains("http2 (prior knowledge)"))
        let off = try ConfigLoader.parse(
            yaml: Self.http.replacingLine(4, with: "    http2: false"), file: "t.yaml", generation: 1
        ).snapshot
        #expect(!off.listeners[0].http2)
        let absent = try ConfigLoader.parse(
            yaml: Self.http.replacingLine(4, with: "    name: web"), file: "t.yaml", generation: 1
        ).snapshot
        #expect(!absent.listeners[0].http2)
    }

    @Test func aTCPListenerOrAPassthroughOneRefusesIt() {
        #expect(
            diagnostics(minimal(replacing: 3, with: "    service: web\n    http2: true")) == [
                "t.yaml:4:12: listeners[0].http2: only http and tls listeners speak HTTP/2 (this one is tcp)"
            ])
        let passthrough = """
            listeners:
              - address: 127.0.0.1:8443
                protocol: tls
                http2: true
                routes:
                  - host: a.example.com
                    service: web
            services:
              - name: web
                endpoints: [127.0.0.1:9443]

            """
        #expect(
            diagnostics(passthrough) == [
                "t.yaml:4:12: listeners[0].http2: HTTP/2 needs TLS terminated here: give the listener certificates and a route with 'terminate: true'"
            ])
        #expect(
            diagnostics(Self.http.replacingLine(4, with: "    http2: maybe")).first?.hasPrefix(
                "t.yaml:4:12: listeners[0].http2:") == true)
    }

    @Test func aServiceTakesProtocolH2c() throws {
        let yaml = Self.http.replacingLine(9, with: "  - name: web\n    protocol: h2c")
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot
        #expect(snapshot.services[0].upstreamProtocol == .h2c)
        #expect(snapshot.render().contains("protocol h2c"))
        let plain = try ConfigLoader.parse(yaml: Self.http, file: "t.yaml", generation: 1).snapshot
        #expect(plain.services[0].upstreamProtocol == .http1)
        let explicit = try ConfigLoader.parse(
            yaml: Self.http.replacingLine(9, with: "  - name: web\n    protocol: http/1.1"), file: "t.yaml",
            generation: 1
        ).snapshot
        #expect(explicit.services[0].upstreamProtocol == .http1)
    }

    @Test func anUnknownServiceProtocolNamesTheField() {
        #expect(
            diagnostics(minimal(replacing: 5, with: "  - name: web\n    protocol: spdy")) == [
                "t.yaml:6:15: services[0].protocol: unknown protocol 'spdy' (expected one of: http/1.1, h2c, h2)"
            ])
    }

    @Test func aServiceTakesProtocolH2WithTLSSettings() throws {
        let yaml = Self.http.replacingLine(
            9, with: "  - name: web\n    protocol: h2\n    tls:\n      serverName: API.internal\n      verify: false")
        let service = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 1).snapshot.services[0]
        #expect(service.upstreamProtocol == .h2)
        let tls = try #require(service.upstreamTLS)
        #expect(tls.serverName == "api.internal" && !tls.verify && tls.ca == nil)
        // The same settings make the same key (connections are shared); others another.
        let again = try ConfigLoader.parse(yaml: yaml, file: "t.yaml", generation: 2).snapshot.services[0]
        #expect(again.upstreamTLS?.key == tls.key)
        let verified = try ConfigLoader.parse(
            yaml: Self.http.replacingLine(9, with: "  - name: web\n    protocol: h2"), file: "t.yaml", generation: 1
        ).snapshot.services[0]
        #expect(verified.upstreamTLS?.verify == true && verified.upstreamTLS?.key != tls.key)
        #expect(verified.upstreamTLS?.key != 0)
    }

    @Test func aTLSSectionNeedsProtocolH2() {
        let found = diagnostics(
            minimal(replacing: 5, with: "  - name: web\n    protocol: h2c\n    tls:\n      verify: false"))
        #expect(
            found.count == 1 && found[0].contains("services[0].tls: TLS to the endpoints is spoken with 'protocol: h2'")
        )
    }
}
