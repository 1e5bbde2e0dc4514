import SluiceReactor
import SluiceRouting

/// `GET /stats`: one self-contained HTML page in the spirit of HAProxy's stats page:
/// listeners, services and endpoints with their state, counts by status class, and latency
/// quantiles from the histograms. The tables are rendered here (the page reads without
/// script, refreshing itself every 5 s), then a small inline script polls `stats.json` every
/// 2 s and redraws them with rates (per second over the poll interval) and quantiles over the
/// interval. No external asset: styles and script are inline, the icon is a data URL.
public enum StatsPage {
    public static func render(_ metrics: MetricsAggregate, process: ProcessView, into out: ByteOutput) {
        let snapshot = metrics.snapshot
        out.write(head)
        out.write("<p id=\"summary\">generation <b>")
        out.write(unsigned: snapshot.generation)
        out.write("</b> · workers ")
        out.write(decimal: process.workers)
        out.write(" · connections ")
        out.write(decimal: metrics.liveConnections)
        out.write(" · reloads ")
        out.write(decimal: process.reloads)
        out.write(" (")
        out.write(decimal: process.reloadFailures)
        out.write(" failed)</p>\n<p id=\"status\">rates appear after the second poll</p>\n")

        out.write(listenersHead)
        for (i, listener) in snapshot.listeners.enumerated() {
            let t = metrics.frontends
            out.write("<tr data-name=\"")
            out.write(html: listener.name)
            out.write("\">")
            text(listener.name, out)
            text(listener.protocol.rawValue, out)
            text(listener.address.description, out)
            number(t[i, .currentConnections], out)
            number(t[i, .connections], out)
            out.write("<td>–</td>")
            number(t[i, .httpRequests], out)
            for count in t.responses(i) { number(count, out) }
            number(t[i, .bytesIn], out)
            number(t[i, .bytesOut], out)
            number(t[i, .requestErrors], out)
            out.write("</tr>\n")
        }
        out.write(servicesHead)
        for (i, service) in snapshot.services.enumerated() {
            let t = metrics.backends
            out.write("<tr data-name=\"")
            out.write(html: service.name)
            out.write("\">")
            text(service.name, out)
            text(service.algorithm.rawValue, out)
            out.write("<td>")
            out.write(decimal: metrics.activeEndpoints(ofService: i))
            out.write("/")
            out.write(decimal: service.endpoints.count)
            out.write("</td>")
            number(t[i, .currentConnections], out)
            number(t[i, .connections], out)
            out.write("<td>–</td><td>–</td>")
            number(t[i, .httpRequests], out)
            for count in t.responses(i) { number(count, out) }
            number(t[i, .connectionErrors] + t[i, .responseErrors] + t[i, .noEndpoint], out)
            number(t[i, .timeoutConnect] + t[i, .timeoutServer] + t[i, .timeoutTunnel], out)
            let buckets = Quantile.buckets(metrics.requestDuration, row: i)
            for q in [0.5, 0.9, 0.99] { milliseconds(Quantile.estimate(q, buckets: buckets), out) }
            out.write("</tr>\n")
        }
        out.write(endpointsHead)
        for (e, endpoint) in snapshot.endpoints.enumerated() {
            let t = metrics.servers
            let down = metrics.endpointDown[e]
            out.write(down ? "<tr class=\"down\" data-name=\"" : "<tr data-name=\"")
            out.write(html: snapshot.services[endpoint.service].name)
            out.write(" ")
            out.write(html: endpoint.address.description)
            out.write("\">")
            text(snapshot.services[endpoint.service].name, out)
            text(endpoint.address.description, out)
            out.write(down ? "<td class=\"down\">DOWN</td>" : "<td class=\"up\">UP</td>")
            number(t[e, .currentConnections], out)
            number(t[e, .connections], out)
            out.write("<td>–</td>")
            number(t[e, .httpRequests], out)
            for count in t.responses(e) { number(count, out) }
            number(t[e, .connectionErrors], out)
            out.write("</tr>\n")
        }
        out.write(tail)
    }

    private static func text(_ value: String, _ out: ByteOutput) {
        out.write("<td class=\"l\">")
        out.write(html: value)
        out.write("</td>")
    }

    private static func number(_ value: Int, _ out: ByteOutput) {
        out.write("<td>")
        out.write(decimal: value)
        out.write("</td>")
    }

    /// As the script's `ms()`: "–" without observations, else milliseconds with 2 decimals
    /// under 10 ms and 1 above.
    private static func milliseconds(_ seconds: Double?, _ out: ByteOutput) {
        guard let seconds else { return out.write("<td>–</td>") }
        out.write("<td>")
        out.write(fixed: seconds * 1000, places: seconds < 0.01 ? 2 : 1, keepZeros: true)
        out.write(" ms</td>")
    }

    static let head: StaticString = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <title>Sluice statistics</title>
        <link rel="icon" href="data:,">
        <noscript><meta http-equiv="refresh" content="5"></noscript>
        <style>
        body{font:13px/1.4 system-ui,sans-serif;margin:1em 1.5em;color:#222;background:#fff}
        h1{font-size:18px;margin:0 0 .3em} h2{font-size:15px;margin:1.2em 0 .3em}
        table{border-collapse:collapse}
        th,td{border:1px solid #c8ced6;padding:2px 7px;text-align:right;white-space:nowrap}
        th{background:#e6edf6;font-weight:600} .l{text-align:left}
        tbody tr:nth-child(even){background:#f7f9fb}
        tr.down td{background:#fbe3e3} td.up,td.down{text-align:left;font-weight:600} td.up{color:#146c2e} td.down{color:#b3261e}
        #status{color:#667}
        </style></head><body>
        <h1>Sluice</h1>

        """

    static let listenersHead: StaticString = """
        <h2>Listeners</h2>
        <table id="listeners"><thead><tr><th class="l">name</th><th class="l">protocol</th><th class="l">address</th>\
        <th>current</th><th>connections</th><th>req/s</th><th>requests</th><th>1xx</th><th>2xx</th><th>3xx</th>\
        <th>4xx</th><th>5xx</th><th>other</th><th>bytes in</th><th>bytes out</th><th>errors</th></tr></thead><tbody>

        """

    static let servicesHead: StaticString = """
        </tbody></table>
        <h2>Services</h2>
        <table id="services"><thead><tr><th class="l">name</th><th class="l">algorithm</th><th>endpoints up</th>\
        <th>current</th><th>connections</th><th>req/s</th><th>5xx/s</th><th>requests</th><th>1xx</th><th>2xx</th>\
        <th>3xx</th><th>4xx</th><th>5xx</th><th>other</th><th>errors</th><th>timeouts</th><th>p50</th><th>p90</th>\
        <th>p99</th></tr></thead><tbody>

        """

    static let endpointsHead: StaticString = """
        </tbody></table>
        <h2>Endpoints</h2>
        <table id="endpoints"><thead><tr><th class="l">service</th><th class="l">address</th><th class="l">state</th>\
        <th>current</th><th>connections</th><th>req/s</th><th>requests</th><th>1xx</th><th>2xx</th><th>3xx</th>\
        <th>4xx</th><th>5xx</th><th>other</th><th>errors</th></tr></thead><tbody>

        """

    static let tail: StaticString = """
        </tbody></table>
        <script>
        (function () {
          "use strict";
          var prev = null;
          function esc(s) {
            return String(s).replace(/[&<>"']/g, function (c) {
              return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
            });
          }
          function td(v, cls) { return cls ? '<td class="' + cls + '">' + v + "</td>" : "<td>" + v + "</td>"; }
          function txt(v) { return td(esc(v), "l"); }
          function ms(v) { return v == null || isNaN(v) ? "–" : (v * 1000).toFixed(v < 0.01 ? 2 : 1) + " ms"; }
          function rate(now, before, dt) {
            if (before == null || dt <= 0 || now < before) return "–";
            return ((now - before) / dt).toFixed(1);
          }
          function quantile(bounds, b, q) {
            var total = 0, i;
            for (i = 0; i < b.length; i++) total += b[i];
            if (!total) return null;
            var rank = q * total, below = 0;
            for (i = 0; i < b.length; i++) {
              var through = below + b[i];
              if (through >= rank && b[i] > 0) {
                if (i === bounds.length) return bounds[bounds.length - 1];
                var start = i ? bounds[i - 1] : 0;
                return start + (bounds[i] - start) * ((rank - below) / b[i]);
              }
              below = through;
            }
            return bounds[bounds.length - 1];
          }
          function byKey(list, key) {
            var m = {};
            (list || []).forEach(function (x) { m[key(x)] = x; });
            return m;
          }
          function codes(r) { return r.map(function (n) { return td(n); }).join(""); }
          function render(s, dt) {
            var p = prev ? prev.s : {};
            var pl = byKey(p.listeners, function (x) { return x.name; });
            var ps = byKey(p.services, function (x) { return x.name; });
            var pe = byKey(p.endpoints, function (x) { return x.service + " " + x.address; });
            document.getElementById("summary").innerHTML = "generation <b>" + s.generation + "</b> · workers " +
              s.workers + " · connections " + s.connections + " · reloads " + s.reloads + " (" +
              s.reloadFailures + " failed)";
            document.querySelector("#listeners tbody").innerHTML = s.listeners.map(function (l) {
              var o = pl[l.name];
              return '<tr data-name="' + esc(l.name) + '">' + txt(l.name) + txt(l.protocol) + txt(l.address) +
                td(l.current) + td(l.connections) + td(rate(l.requests || l.connections,
                  o && (o.requests || o.connections), dt)) + td(l.requests) + codes(l.responses) +
                td(l.bytesIn) + td(l.bytesOut) + td(l.errors) + "</tr>";
            }).join("");
            document.querySelector("#services tbody").innerHTML = s.services.map(function (v) {
              var o = ps[v.name], b = v.buckets, q = [v.p50, v.p90, v.p99];
              if (o && v.requests > o.requests) {
                var d = b.map(function (n, i) { return n - o.buckets[i]; });
                q = [0.5, 0.9, 0.99].map(function (x) { return quantile(s.bounds, d, x); });
              }
              return '<tr data-name="' + esc(v.name) + '">' + txt(v.name) + txt(v.algorithm) +
                td(v.active + "/" + v.endpoints) + td(v.current) + td(v.connections) +
                td(rate(v.requests || v.connections, o && (o.requests || o.connections), dt)) +
                td(rate(v.responses[4], o && o.responses[4], dt)) + td(v.requests) + codes(v.responses) +
                td(v.errors) + td(v.timeouts) + q.map(function (x) { return td(ms(x)); }).join("") + "</tr>";
            }).join("");
            document.querySelector("#endpoints tbody").innerHTML = s.endpoints.map(function (e) {
              var o = pe[e.service + " " + e.address];
              return "<tr" + (e.up ? "" : ' class="down"') + ' data-name="' + esc(e.service + " " + e.address) +
                '">' + txt(e.service) + txt(e.address) + (e.up ? td("UP", "up") : td("DOWN", "down")) +
                td(e.current) + td(e.connections) + td(rate(e.requests || e.connections,
                  o && (o.requests || o.connections), dt)) + td(e.requests) + codes(e.responses) + td(e.errors) +
                "</tr>";
            }).join("");
          }
          function poll() {
            fetch("stats.json", {cache: "no-store"}).then(function (r) {
              if (!r.ok) throw new Error("HTTP " + r.status);
              return r.json();
            }).then(function (s) {
              var t = Date.now();
              render(s, prev ? (t - prev.t) / 1000 : 0);
              prev = {s: s, t: t};
              document.getElementById("status").textContent = "updated " + new Date(t).toLocaleTimeString() +
                " · every 2 s";
            }).catch(function (e) {
              document.getElementById("status").textContent = "stats.json: " + e.message;
            });
          }
          setInterval(poll, 2000);
          poll();
        })();
        </script>
        </body></html>

        """
}
