// Per-connection TLS sessions driven non-blocking from an event loop.
//
// A session never touches a socket: the loop reads ciphertext into its input and sends its
// output (the memory transport below). Bytes read before the session existed (the
// ClientHello, read to learn the server name) are its first input. Every call is
// non-blocking and returns a byte count (or 0 for a finished handshake) or one of the
// SLUICE_TLS_* outcomes below. Nothing is printed.
#pragma once

#include <stddef.h>

#define SLUICE_TLS_WANT_READ (-1)   // no whole record in the input: read more, then call again
#define SLUICE_TLS_WANT_WRITE (-2)  // the output is full: send some, then call again
#define SLUICE_TLS_EOF (-3)         // the peer closed (close_notify or TCP end of stream)
#define SLUICE_TLS_ERROR (-4)       // a protocol or socket error: close the connection

/// 0 once the handshake is complete, else an outcome.
int sluice_tls_handshake(void *ssl);
/// Decrypted bytes (> 0) into `buf`, or an outcome.
long sluice_tls_read(void *ssl, void *buf, size_t count);
/// Plaintext bytes taken (> 0; partial writes allowed), or an outcome. After WANT_WRITE,
/// call again with at least the same bytes.
long sluice_tls_write(void *ssl, const void *buf, size_t count);
/// Sends close_notify, once, without waiting for the peer's.
void sluice_tls_shutdown(void *ssl);
void sluice_tls_free(void *ssl);
/// Frees the session's record buffers (about 2 x 17 KiB) when they hold no bytes, for a
/// connection going idle (a keep-alive client between requests); OpenSSL allocates them
/// again at the next read or write. 1 when freed (or none were held), 0 when bytes remain.
int sluice_tls_release_buffers(void *ssl);
/// Whether the handshake resumed a session (1) or was full (0).
int sluice_tls_session_reused(void *ssl);
/// The first queued OpenSSL error of this thread as text ("" when none); clears the queue.
void sluice_tls_last_error(char *buf, size_t len);
/// After a failed read, write or handshake: the errno of the socket call that failed (0 when
/// none did: a protocol error); clears this thread's OpenSSL error queue. No allocation.
int sluice_tls_take_error(void);

// Memory transport. WANT_READ means the input holds no whole record: read the socket into
// `sluice_tls_input_room` and commit what came;
// everything OpenSSL writes waits in `sluice_tls_output` until the caller sent it (WANT_WRITE
// means the output is full: send some, then call again).
void *sluice_tls_memory_session_new(void *ctx, const void *prefix, size_t prefix_len);
/// A client session over the memory transport, from a context of sluice_tls_client_ctx_new.
/// `server_name` (NULL or "": none) goes out as SNI (not for an IP address); with
/// `check_name`, the endpoint's certificate must carry it (DNS SAN, or IP SAN for an
/// address; no partial wildcards). NULL when out of memory.
void *sluice_tls_memory_client_session_new(void *ctx, const char *server_name, int check_name);
/// After a failed handshake: 1 with the reason in `buf` when the endpoint's certificate did
/// not verify, else 0.
int sluice_tls_verify_failure(const void *ssl, char *buf, size_t len);
/// Room for ciphertext from the peer, at `*where` (allocated on first use); 0 when full.
size_t sluice_tls_input_room(void *ssl, void **where);
/// `count` bytes were put at the place `sluice_tls_input_room` gave.
void sluice_tls_input_commit(void *ssl, size_t count);
/// The peer's end of stream: once the input is used up, reads report SLUICE_TLS_EOF.
void sluice_tls_input_end(void *ssl);
/// Ciphertext received and not yet taken by OpenSSL.
size_t sluice_tls_input_pending(void *ssl);
/// Ciphertext waiting to be sent, at `*where`.
size_t sluice_tls_output(void *ssl, const void **where);
/// `count` bytes of the output were sent.
void sluice_tls_output_consumed(void *ssl, size_t count);
/// OpenSSL holds record bytes (decrypted or not) that a read would return.
int sluice_tls_has_pending(void *ssl);
/// sluice_tls_release_buffers, plus the transport's own buffers when empty; 1 when the
/// session holds no buffer now.
int sluice_tls_release_transport_buffers(void *ssl);
/// The negotiated protocol version (0x0303 TLS 1.2, 0x0304 TLS 1.3).
int sluice_tls_session_version(void *ssl);
/// ALPN offers h2 before http/1.1 on this session (call before the handshake); 0 or -1.
int sluice_tls_offer_h2(void *ssl);
/// The session was told to offer h2 (read by the context's ALPN callback).
int sluice_tls_offers_h2(const void *ssl);
/// The handshake selected ALPN h2.
int sluice_tls_alpn_h2(const void *ssl);
