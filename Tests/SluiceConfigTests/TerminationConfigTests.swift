import SluiceConfig
import SluiceRouting
import Testing

/// `table.lookup` with text host and path.
private func lookup(_ table: HTTPRouteTable, _ host: String, _ path: String = "/", port: UInt16 = 443) -> RouteMatch {
    Array(host.utf8).withUnsafeBytes { hostBytes in
        Array(path.utf8).withUnsafeBytes { table.lookup(host: hostBytes, path: $0, defaultPort: port) }
    }
}

private func load(_ yaml: String) throws -> RoutingSnapshot {
    try ConfigLoader.parse(yaml: yaml, file: terminatingFile, generation: 1).snapshot
}

/// Terminating tls listeners and https redirects, as the snapshot holds them.
@Suite struct TerminationConfigTests {
    @Test func theBaseFileBuildsBothTablesAndTheContext() throws {
        let snapshot = try load(terminatingConfig)
        let https = snapshot.listeners[0]
        #expect(https.routes == 0)
        #expect(https.terminatedRoutes == 1)
        #expect(https.tlsContext == 0)
        #expect(snapshot.listeners[1].routes == 2)
        #expect(snapshot.listeners[1].tlsContext == -1)
        #expect(snapshot.listeners[1].terminatedRoutes == -1)
        #expect(snapshot.tlsContexts.map(\.summary) == ["a.example.com (default); *.apps.example.com"])

        let names = snapshot.routeTables[0]
        #expect(lookup(names, "db.example.com") == .service(0, stripPrefix: 0))
        #expect(lookup(names, "a.example.com") == .terminate)
        #expect(lookup(names, "other.example.com") == .terminate)
        #expect(lookup(names, "") == .terminate)

        let requests = snapshot.routeTables[1]
        #expect(lookup(requests, "a.example.com", "/x") == .service(1, stripPrefix: 0))
        #expect(lookup(requests, "db.example.com") == .noRoute)
        #expect(requests.defaultBackend.status == 421)
        #expect(requests.routes.map(\.terminate) == [false])
        #expect(requests.routes[0].hstsField == Array("Strict-Transport-Security: max-age=600\r\n".utf8))

        let plain = snapshot.routeTables[2]
        #expect(lookup(plain, "a.example.com", "/x", port: 80) == .redirect(route: 0))
        #expect(plain.routes[0].httpsPort == 8443)
        #expect(plain.routes[0].service == -1)
    }

    @Test func checkShowsCertificatesTerminationRedirectsAndHSTS() throws {
        #expect(
            try load(terminatingConfig).render() == """
                generation 1
                listeners:
                  https  tls  127.0.0.1:8443 -> routes by server name
                    certificates a.example.com (default); *.apps.example.com
                    db.example.com -> db
                    a.example.com -> terminate
                    default -> terminate
                    terminated requests:
                      a.example.com / -> web (hsts max-age=600)
                      default -> 421 "no route\\n"
                  http-127.0.0.1:8080  http  127.0.0.1:8080 -> routes
                    a.example.com / -> redirect https:8443
                    default -> 404 "no route\\n"
                services:
                  db  roundrobin  1 endpoint(s)
                    127.0.0.1:9443
                  web  roundrobin  1 endpoint(s)
                    127.0.0.1:9080
                timeouts: connect 5000 ms, client 50000 ms, server 50000 ms, tunnel 3600000 ms
                limits: maxConnections 10000, connectTries 3
                http: requestHead 5000 ms, upstreamIdlePerEndpoint 32, upstreamIdle 30000 ms
                tls: tlsHello 5000 ms
                """)
    }

    @Test func aTerminatedHostMayHaveSeveralPathsButOneServerNameEntry() throws {
        let yaml = terminating(
            replacing: 17,
            with: """
                        stripPath: false
                      - host: a.example.com
                        terminate: true
                        path: /api
                        stripPath: true
                        service: db
                      - host: "*.apps.example.com"
                        terminate: true
                        service: web
                """)
        let snapshot = try load(yaml)
        #expect(
            snapshot.routeTables[0].routes.map(\.host.description) == [
                "db.example.com", "a.example.com", "*.apps.example.com",
            ])
        let requests = snapshot.routeTables[1]
        #expect(lookup(requests, "a.example.com", "/api/v1") == .service(0, stripPrefix: 4))
        #expect(lookup(requests, "a.example.com", "/apix") == .service(1, stripPrefix: 0))
        #expect(lookup(requests, "x.apps.example.com", "/") == .service(1, stripPrefix: 0))
        #expect(requests.routes.map(\.hstsField) == [nil, nil, nil])
    }

    @Test func withoutATerminatingDefaultUnknownNamesAreClosedAndRequestsGet404() throws {
        let snapshot = try load(terminating(removing: 18...20))
        #expect(lookup(snapshot.routeTables[0], "other.example.com") == .noRoute)
        #expect(snapshot.routeTables[1].defaultBackend == DefaultBackend())
        let toService = try load(terminating(replacing: 19, with: "      service: db").replacingLine(20, with: ""))
        #expect(lookup(toService.routeTables[0], "other.example.com") == .service(0, stripPrefix: 0))
    }

    @Test func aTerminatingDefaultMaySendRequestsToAService() throws {
        let snapshot = try load(terminating(replacing: 20, with: "      service: web"))
        #expect(snapshot.routeTables[1].defaultBackend == DefaultBackend(service: 1))
        #expect(snapshot.routeTables[0].defaultBackend == DefaultBackend(terminate: true))
    }

    @Test func absoluteCertificatePathsAreTakenAsWritten() throws {
        let directory = TestCertificates.directory
        let yaml = terminatingConfig.replacingLine(6, with: "      - cert: \(directory)/a.pem")
            .replacingLine(7, with: "        key: \(directory)/a.key").replacingLine(8, with: "").replacingLine(
                9, with: "")
        let snapshot = try ConfigLoader.parse(yaml: yaml, file: "elsewhere/t.yaml", generation: 1).snapshot
        #expect(snapshot.tlsContexts.map(\.summary) == ["a.example.com (default)"])
    }

    @Test func redirectsDefaultToPort443() throws {
        let snapshot = try load(terminating(removing: 26...26))
        #expect(snapshot.routeTables[2].routes[0].httpsPort == 443)
    }
}
