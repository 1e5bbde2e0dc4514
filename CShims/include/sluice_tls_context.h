// TLS contexts for termination (certificates, SNI selection, ALPN, resumption).
//
// A context is an OpenSSL `SSL_CTX *` (returned as `void *` so Swift needs no OpenSSL
// headers): sessions are made from it with `SSL_new`. It carries the shared settings and,
// attached to it, one context per certificate; a servername callback moves each session to
// the certificate its ClientHello names. Functions returning int return 0 or a negative
// code and fill `err` (NUL-terminated, at most `errlen` bytes) with the reason; nothing is
// printed. Building and adding certificates happen on one thread before the context is
// shared; after that the context is only read (by `SSL_new` and handshakes, any thread).
#pragma once

#include <stddef.h>
#include <stdint.h>

// A server context: TLS 1.2–1.3, ECDHE AES-GCM/ChaCha20 for TLS 1.2 in the server's order
// (ChaCha20 first for a client that puts it first), groups X25519, P-256, P-384, no
// renegotiation or compression, record buffers released when empty (RELEASE_BUFFERS),
// partial writes, ALPN http/1.1 (no ALPN when the client offers only other protocols),
// session cache and tickets. NULL on failure.
void *sluice_tls_ctx_new(char *err, size_t errlen);

// Adds the PEM chain at `cert_path` (leaf first, then intermediates) and the PEM private key
// at `key_path`. The first certificate added is the default (no SNI or an unknown name).
// Returns 0, -1 when the certificate file cannot be read or holds no PEM certificate, -2
// when the key file cannot be read or holds no (unencrypted) PEM private key, -3 when the
// key does not belong to the certificate, -4 when memory or OpenSSL fails otherwise.
int sluice_tls_ctx_add_certificate(void *ctx, const char *cert_path, const char *key_path, char *err,
                                   size_t errlen);

// The certificates added so far, and the names each answers to: its SAN DNS names (lower
// case, no trailing dot, `*.domain` for wildcards), or its subject CN when it has none.
// Strings stay valid until the context is freed.
size_t sluice_tls_ctx_certificate_count(void *ctx);
size_t sluice_tls_ctx_certificate_name_count(void *ctx, size_t certificate);
const char *sluice_tls_ctx_certificate_name(void *ctx, size_t certificate, size_t name);

// The OpenSSL options and mode bits of the top context (`certificate` SIZE_MAX) or of one
// certificate's context, for tests and checks. 0, or -1 for a certificate index out of range.
int sluice_tls_ctx_settings(void *ctx, size_t certificate, uint64_t *options, uint64_t *mode);
extern const uint64_t SLUICE_SSL_OP_CIPHER_SERVER_PREFERENCE, SLUICE_SSL_OP_PRIORITIZE_CHACHA,
    SLUICE_SSL_OP_NO_TICKET, SLUICE_SSL_MODE_RELEASE_BUFFERS;

// Drops the caller's reference. Sessions still using the context (or one of its certificate
// contexts) keep them alive; the last reference frees everything.
void sluice_tls_ctx_free(void *ctx);

// A client context for TLS to endpoints: TLS 1.2–1.3, the same ciphers and groups, ALPN h2
// offered alone, no renegotiation. With `verify`, the endpoint's chain must lead to a
// certificate in `ca_path` (a PEM bundle; NULL: the system's trust store); without, nothing
// is checked. `cert_path` and `key_path` (both or neither) are the client certificate sent
// when an endpoint asks for one. NULL with `err` set (naming the file) on failure. Freed with
// sluice_tls_ctx_free; sessions keep it alive.
void *sluice_tls_client_ctx_new(const char *ca_path, int verify, const char *cert_path, const char *key_path,
                                char *err, size_t errlen);

// Test support: one handshake over a socketpair between `server_ctx` (a blocking
// SSL_accept on a thread of its own) and an OpenSSL client offering `servername` (NULL:
// no SNI) and `alpn_csv` (e.g. "h2,http/1.1"; NULL: no ALPN), limited to `max_version`
// (e.g. 0x0302 for TLS 1.1; 0: no limit), refusing session tickets when `no_ticket` (so a
// TLS 1.2 resumption goes through the server's session cache). `*session` (may hold a
// session from an earlier call) is offered for resumption and replaced by the new session. Returns 0 when both
// sides completed the handshake, else -1 with `error` set.
struct sluice_tls_test_result {
    int reused;             // the client resumed `*session`
    int version;            // the negotiated protocol version (0x0303 TLS 1.2, 0x0304 TLS 1.3)
    char subject_cn[256];   // CN of the certificate the client received
    char alpn[64];          // the protocol the server selected, "" for none
    char error[256];
};
int sluice_tls_test_handshake(void *server_ctx, const char *servername, const char *alpn_csv, int max_version,
                              int no_ticket, void **session, struct sluice_tls_test_result *result);
void sluice_tls_test_session_free(void *session);

// Test support: a blocking OpenSSL client on `fd` that sends `total` bytes in `chunk`-byte
// writes of a known pattern, reads each chunk back and compares it, then sends close_notify
// and shuts the socket for writing. 0 when every byte came back, else -1 with `error` set.
// `*version` gets the negotiated protocol version.
int sluice_tls_test_echo_client(int fd, const char *servername, size_t total, size_t chunk, int max_version,
                                int *version, char *error, size_t error_len);
