import SluiceRouting

/// `GET /routes`: the table in force as JSON.
///
/// ```json
/// {"generation": 3,
///  "listeners": [{"name": "web", "protocol": "http", "address": "0.0.0.0:80",
///                 "routes": [{"host": "a.example.com", "path": "/", "service": "a"}],
///                 "default": {"status": 404}},
///                {"name": "db", "protocol": "tcp", "address": "0.0.0.0:5432", "service": "db"}],
///  "services": [{"name": "a", "algorithm": "roundrobin",
///                "endpoints": [{"address": "10.0.0.1:80", "state": "up"}]}]}
/// ```
///
/// Only names, addresses and states: no certificate, key, header or client address.
public enum RoutesRenderer {
    public static func render(_ snapshot: RoutingSnapshot, endpointDown: [Bool], into out: ByteOutput) {
        out.write("{\"generation\":")
        out.write(unsigned: snapshot.generation)
        out.write(",\"listeners\":[")
        for (i, listener) in snapshot.listeners.enumerated() {
            if i > 0 { out.write(",") }
            out.write("\n{\"name\":")
            out.write(jsonString: listener.name)
            out.write(",\"protocol\":")
            out.write(jsonString: listener.protocol.rawValue)
            out.write(",\"address\":")
            out.write(jsonString: listener.address.description)
            switch listener.protocol {
            case .tcp:
                out.write(",\"service\":")
                serviceName(snapshot, listener.service, out)
            case .http:
                httpRoutes(snapshot, snapshot.routeTables[listener.routes], key: "routes", out)
            case .tls:
                serverNameRoutes(snapshot, snapshot.routeTables[listener.routes], out)
                if listener.terminatedRoutes >= 0 {
                    out.write(",\"terminated\":{")
                    httpRoutes(
                        snapshot, snapshot.routeTables[listener.terminatedRoutes], key: "routes", out,
                        leadingComma: false)
                    out.write("}")
                }
            }
            out.write("}")
        }
        out.write("],\n\"services\":[")
        for (i, service) in snapshot.services.enumerated() {
            if i > 0 { out.write(",") }
            out.write("\n{\"name\":")
            out.write(jsonString: service.name)
            out.write(",\"algorithm\":")
            out.write(jsonString: service.algorithm.rawValue)
            out.write(",\"endpoints\":[")
            for (k, e) in service.endpoints.enumerated() {
                if k > 0 { out.write(",") }
                out.write("{\"address\":")
                out.write(jsonString: snapshot.endpoints[e].address.description)
                out.write(e < endpointDown.count && endpointDown[e] ? ",\"state\":\"down\"}" : ",\"state\":\"up\"}")
            }
            out.write("]}")
        }
        out.write("]}\n")
    }

    private static func serviceName(_ snapshot: RoutingSnapshot, _ index: Int, _ out: ByteOutput) {
        if index >= 0 && index < snapshot.services.count {
            out.write(jsonString: snapshot.services[index].name)
        } else {
            out.write("null")
        }
    }

    private static func httpRoutes(
        _ snapshot: RoutingSnapshot, _ table: HTTPRouteTable, key: StaticString, _ out: ByteOutput,
        leadingComma: Bool = true
    ) {
        if leadingComma { out.write(",") }
        out.write("\"")
        out.write(key)
        out.write("\":[")
        for (i, route) in table.routes.enumerated() {
            if i > 0 { out.write(",") }
            out.write("{\"host\":")
            out.write(jsonString: route.host.description)
            out.write(",\"path\":")
            out.write(jsonString: String(decoding: route.pathPrefix, as: UTF8.self))
            if route.redirectHTTPS {
                out.write(",\"redirect\":\"https\",\"port\":")
                out.write(unsigned: UInt64(route.httpsPort))
            } else {
                out.write(",\"service\":")
                serviceName(snapshot, route.service, out)
                if route.stripPath { out.write(",\"stripPath\":true") }
            }
            out.write("}")
        }
        out.write("],\"default\":")
        if let service = table.defaultBackend.service {
            out.write("{\"service\":")
            serviceName(snapshot, service, out)
            out.write("}")
        } else {
            out.write("{\"status\":")
            out.write(unsigned: UInt64(table.defaultBackend.status))
            out.write("}")
        }
    }

    private static func serverNameRoutes(_ snapshot: RoutingSnapshot, _ table: HTTPRouteTable, _ out: ByteOutput) {
        out.write(",\"routes\":[")
        for (i, route) in table.routes.enumerated() {
            if i > 0 { out.write(",") }
            out.write("{\"host\":")
            out.write(jsonString: route.host.description)
            if route.terminate {
                out.write(",\"terminate\":true}")
            } else {
                out.write(",\"service\":")
                serviceName(snapshot, route.service, out)
                out.write("}")
            }
        }
        out.write("],\"default\":")
        let fallback = table.defaultBackend
        if fallback.terminate {
            out.write("{\"terminate\":true}")
        } else if let service = fallback.service {
            out.write("{\"service\":")
            serviceName(snapshot, service, out)
            out.write("}")
        } else {
            out.write("{\"close\":true}")
        }
    }
}
