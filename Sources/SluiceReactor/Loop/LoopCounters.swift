/// Plain per-loop counters: incremented by the loop thread only, summed when reported.
public struct LoopCounters: Sendable, Equatable {
    public var accepted = 0
    public var closed = 0
    public var acceptErrors = 0
    public var rejectedFull = 0
    public var connectFailures = 0
    public var connectTimeouts = 0
    public var retries = 0
    public var noEndpoint = 0
    public var idleTimeouts = 0
    public var resets = 0
    public var spliceFallbacks = 0
    public var bytesToUpstream = 0
    public var bytesToDownstream = 0
    public var httpRequests = 0
    public var httpBadRequests = 0
    public var httpBadResponses = 0
    public var httpNoRoute = 0
    public var httpErrors = 0
    public var httpTimeouts = 0
    public var httpUpgrades = 0
    public var pooledReuses = 0
    public var badPreface = 0
    public var tlsNoRoute = 0
    public var tlsHandshakes = 0
    public var tlsResumed = 0
    public var tlsFailed = 0
    public var peekTimeouts = 0
    /// Connects or accepts that failed for want of descriptors (EMFILE/ENFILE).
    public var descriptorExhaustion = 0
    /// Request bodies that missed their deadline or minimum rate (408).
    public var bodyTimeouts = 0
    /// Clients refused because the loop was at its connection share.
    public var refusedOverLimit = 0
    /// Connections cut short by the per-wake step budget and resumed after the batch.
    public var resumes = 0
    /// io_uring: sockets moved to polling because the ring of provided buffers ran out.
    public var ioBufferExhaustions = 0
    /// io_uring: provided buffers holding received input not yet read (when sampled).
    public var ioBuffersInUse = 0
    /// HTTP/2: client connections that became sessions, streams opened, streams reset
    /// before their response ended by the client and by the proxy, sessions ended by a
    /// protocol error, sessions ended for a flood (resets, control frames, empty frames).
    public var h2Sessions = 0
    public var h2Streams = 0
    public var h2ClientResets = 0
    public var h2ProxyResets = 0
    public var h2ProtocolErrors = 0
    public var h2Floods = 0
    /// HTTP/2 to endpoints (`protocol: h2c` services): connections opened, streams (requests)
    /// sent, streams that ended before their response did (reset by the endpoint, or the
    /// connection lost), and connections that failed (connect refused or timed out, lost,
    /// a protocol error from the endpoint).
    public var h2UpstreamSessions = 0
    public var h2UpstreamStreams = 0
    public var h2UpstreamResets = 0
    public var h2UpstreamFailures = 0
    /// TLS to endpoints (`protocol: h2`): handshakes completed, and handshakes that failed
    /// because the certificate did not verify, the endpoint did not select ALPN h2, or for
    /// another reason (counted in `h2UpstreamFailures` too).
    public var h2UpstreamTLSHandshakes = 0
    public var h2UpstreamTLSVerifyFailures = 0
    public var h2UpstreamTLSALPNFailures = 0
    public var h2UpstreamTLSOtherFailures = 0

    public init() {}

    public static func + (a: LoopCounters, b: LoopCounters) -> LoopCounters {
        var s = a
        s.accepted += b.accepted
        s.closed += b.closed
        s.acceptErrors += b.acceptErrors
        s.rejectedFull += b.rejectedFull
        s.connectFailures += b.connectFailures
        s.connectTimeouts += b.connectTimeouts
        s.retries += b.retries
        s.noEndpoint += b.noEndpoint
        s.idleTimeouts += b.idleTimeouts
        s.resets += b.resets
        s.spliceFallbacks += b.spliceFallbacks
        s.bytesToUpstream += b.bytesToUpstream
        s.bytesToDownstream += b.bytesToDownstream
        s.httpRequests += b.httpRequests
        s.httpBadRequests += b.httpBadRequests
        s.httpBadResponses += b.httpBadResponses
        s.httpNoRoute += b.httpNoRoute
        s.httpErrors += b.httpErrors
        s.httpTimeouts += b.httpTimeouts
        s.httpUpgrades += b.httpUpgrades
        s.pooledReuses += b.pooledReuses
        s.badPreface += b.badPreface
        s.tlsNoRoute += b.tlsNoRoute
        s.tlsHandshakes += b.tlsHandshakes
        s.tlsResumed += b.tlsResumed
        s.tlsFailed += b.tlsFailed
        s.peekTimeouts += b.peekTimeouts
        s.descriptorExhaustion += b.descriptorExhaustion
        s.bodyTimeouts += b.bodyTimeouts
        s.refusedOverLimit += b.refusedOverLimit
        s.resumes += b.resumes
        s.ioBufferExhaustions += b.ioBufferExhaustions
        s.ioBuffersInUse += b.ioBuffersInUse
        s.h2Sessions += b.h2Sessions
        s.h2Streams += b.h2Streams
        s.h2ClientResets += b.h2ClientResets
        s.h2ProxyResets += b.h2ProxyResets
        s.h2ProtocolErrors += b.h2ProtocolErrors
        s.h2Floods += b.h2Floods
        s.h2UpstreamSessions += b.h2UpstreamSessions
        s.h2UpstreamStreams += b.h2UpstreamStreams
        s.h2UpstreamResets += b.h2UpstreamResets
        s.h2UpstreamFailures += b.h2UpstreamFailures
        s.h2UpstreamTLSHandshakes += b.h2UpstreamTLSHandshakes
        s.h2UpstreamTLSVerifyFailures += b.h2UpstreamTLSVerifyFailures
        s.h2UpstreamTLSALPNFailures += b.h2UpstreamTLSALPNFailures
        s.h2UpstreamTLSOtherFailures += b.h2UpstreamTLSOtherFailures
        return s
    }

    public var summary: String {
        "accepted=\(accepted) closed=\(closed) accept_errors=\(acceptErrors) rejected_full=\(rejectedFull) "
            + "connect_failures=\(connectFailures) connect_timeouts=\(connectTimeouts) retries=\(retries) "
            + "no_endpoint=\(noEndpoint) idle_timeouts=\(idleTimeouts) resets=\(resets) "
            + "splice_fallbacks=\(spliceFallbacks) bytes_up=\(bytesToUpstream) bytes_down=\(bytesToDownstream) "
            + "http_requests=\(httpRequests) http_bad_requests=\(httpBadRequests) "
            + "http_bad_responses=\(httpBadResponses) http_no_route=\(httpNoRoute) http_errors=\(httpErrors) "
            + "http_timeouts=\(httpTimeouts) http_upgrades=\(httpUpgrades) pooled_reuses=\(pooledReuses) "
            + "bad_preface=\(badPreface) tls_no_route=\(tlsNoRoute) tls_handshakes=\(tlsHandshakes) tls_resumed=\(tlsResumed) tls_failed=\(tlsFailed) peek_timeouts=\(peekTimeouts)"
            + " descriptor_exhaustion=\(descriptorExhaustion) body_timeouts=\(bodyTimeouts)"
            + " refused_over_limit=\(refusedOverLimit) resumes=\(resumes)"
            + " io_buffer_exhaustions=\(ioBufferExhaustions) io_buffers_in_use=\(ioBuffersInUse)"
            + " h2_sessions=\(h2Sessions) h2_streams=\(h2Streams) h2_client_resets=\(h2ClientResets)"
            + " h2_proxy_resets=\(h2ProxyResets)"
            + " h2_protocol_errors=\(h2ProtocolErrors) h2_floods=\(h2Floods)"
            + " h2_upstream_sessions=\(h2UpstreamSessions) h2_upstream_streams=\(h2UpstreamStreams)"
            + " h2_upstream_resets=\(h2UpstreamResets) h2_upstream_failures=\(h2UpstreamFailures)"
            + " h2_upstream_tls_handshakes=\(h2UpstreamTLSHandshakes)"
            + " h2_upstream_tls_failures=\(h2UpstreamTLSVerifyFailures + h2UpstreamTLSALPNFailures + h2UpstreamTLSOtherFailures)"
    }
}
