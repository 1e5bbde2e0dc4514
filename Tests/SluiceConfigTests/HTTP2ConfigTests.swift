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
}
