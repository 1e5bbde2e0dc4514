import Benchmark
import SluiceRouting
import SluiceWire

// Microbenchmarks for the per-request pure work: finding and parsing heads, rewriting the
// request head for the upstream, and looking a route up. Each reports wall clock and
// allocations per operation; allocations must stay at zero.
//
//   SLUICE_BENCHMARKS=1 swift package --disable-sandbox benchmark

let requestHead = Array(
    ("GET /api/v1/items?page=2&sort=name HTTP/1.1\r\nHost: grafana.example.com:30800\r\n"
        + "User-Agent: curl/7.88.1\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
        + "Cookie: session=3f2a9c1e; SLUICE=00a1b2c3d4e5f607\r\nX-Request-Id: 6c1f0e42-8a3b-4d6e-9f10-2b7c5d8e9a01\r\n"
        + "Connection: keep-alive\r\n\r\n").utf8)

let responseHead = Array(
    ("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 04:00:00 GMT\r\n"
        + "Content-Type: text/plain\r\nContent-Length: 64\r\nLast-Modified: Wed, 25 Nov 2026 03:00:00 GMT\r\n"
        + "Connection: keep-alive\r\nETag: \"6744a1b0-40\"\r\nAccept-Ranges: bytes\r\n\r\n").utf8)

let chunkedBody = Array(("1000\r\n" + String(repeating: "x", count: 4096) + "\r\n0\r\n\r\n").utf8)

/// 1,000 exact hosts, 100 wildcard domains, a few path prefixes on the host looked up.
let routeTable: HTTPRouteTable = {
    var routes: [HTTPRoute] = []
    for i in 0..<1000 {
        routes.append(try! HTTPRoute(host: "service-\(i).example.com", service: i % 10))
    }
    for i in 0..<100 {
        routes.append(try! HTTPRoute(host: "*.tenant-\(i).example.net", service: i % 10))
    }
    routes.append(try! HTTPRoute(host: "grafana.example.com:30800", path: "/api", stripPath: true, service: 3))
    routes.append(try! HTTPRoute(host: "grafana.example.com:30800", path: "/api/v1", service: 4))
    routes.append(try! HTTPRoute(host: "grafana.example.com", service: 5))
    return HTTPRouteTable(routes: routes)
}()

// Working memory made once, so that the per-sample allocation count is the code's own.
nonisolated(unsafe) let fields = UnsafeMutableBufferPointer<HTTPField>.allocate(capacity: 128)
nonisolated(unsafe) let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 32768, alignment: 16)
let clientText = Array("192.168.10.77".utf8)
let protoText = Array("http".utf8)
let exactHost = Array("Grafana.Example.com:30800".utf8)
let exactPath = Array("/api/v1/items?page=2".utf8)
let wildcardHost = Array("app.tenant-42.example.net".utf8)
let rootPath = Array("/".utf8)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput],
        maxDuration: .seconds(2)
    )

    Benchmark("request head: scan + parse (8 fields)") { benchmark in
        let limits = HTTPLimits()
        requestHead.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                var scanner = HeadScanner()
                guard case .complete(let length) = scanner.scan(bytes, limits: limits) else { fatalError() }
                let head = UnsafeRawBufferPointer(rebasing: bytes[0..<Int(length)])
                blackHole(HTTPRequestParser.parse(head, fields: fields, limits: limits))
            }
        }
    }

    Benchmark("response head: scan + parse (9 fields)") { benchmark in
        let limits = HTTPLimits()
        responseHead.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                var scanner = HeadScanner()
                guard case .complete(let length) = scanner.scan(bytes, limits: limits) else { fatalError() }
                let head = UnsafeRawBufferPointer(rebasing: bytes[0..<Int(length)])
                blackHole(HTTPResponseParser.parse(head, fields: fields, limits: limits))
            }
        }
    }

    Benchmark("request head: rewrite for the upstream (X-Forwarded-*)") { benchmark in
        requestHead.withUnsafeBytes { bytes in
            guard case .success(let head) = HTTPRequestParser.parse(bytes, fields: fields, limits: HTTPLimits()) else {
                fatalError()
            }
            clientText.withUnsafeBytes { client in
                protoText.withUnsafeBytes { proto in
                    for _ in benchmark.scaledIterations {
                        blackHole(
                            HTTPHeadWriter.writeRequest(
                                head, from: bytes,
                                fields: UnsafeBufferPointer(rebasing: fields[0..<Int(head.fieldCount)]),
                                pathOverride: nil, clientAddress: client, proto: proto, port: 30800, upgrading: false,
                                into: output))
                    }
                }
            }
        }
    }

    Benchmark("chunked body: validate 4 KiB chunk + last chunk") { benchmark in
        chunkedBody.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                var scanner = ChunkedScanner()
                blackHole(scanner.scan(bytes))
            }
        }
    }

    Benchmark("route lookup: exact host with port and path prefix (1,100 hosts)") { benchmark in
        exactHost.withUnsafeBytes { host in
            exactPath.withUnsafeBytes { path in
                for _ in benchmark.scaledIterations {
                    blackHole(routeTable.lookup(host: host, path: path, defaultPort: 80))
                }
            }
        }
    }

    Benchmark("route lookup: wildcard host (1,100 hosts)") { benchmark in
        wildcardHost.withUnsafeBytes { host in
            rootPath.withUnsafeBytes { path in
                for _ in benchmark.scaledIterations {
                    blackHole(routeTable.lookup(host: host, path: path, defaultPort: 80))
                }
            }
        }
    }
}
