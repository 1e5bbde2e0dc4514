// Per-connection TLS sessions for termination: see sluice_tls_io.h.
#include "sluice_tls_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static int transport_create(BIO *bio) {
    BIO_set_init(bio, 1);
    return 1;
}

// A session reading and writing through `bio` (owned by the session from here on; freed
// when no session can be made), in the server's or the client's role.
static SSL *memory_session(SSL_CTX *ctx, BIO *bio, int server) {
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        BIO_free(bio);
        return NULL;
    }
    SSL_set_bio(ssl, bio, bio);
    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
    }
    // Whole records per read call instead of header then body; buffers kept while the
    // connection is busy so that steady-state reads and writes allocate nothing, and given
    // back with sluice_tls_release_buffers once it is idle.
    SSL_set_read_ahead(ssl, 1);
    SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // A peer that closes without close_notify is an end of stream, as for plain TCP.
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ssl;
}

static int outcome(SSL *ssl, int ret) {
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return SLUICE_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return SLUICE_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return SLUICE_TLS_EOF;
    case SSL_ERROR_SYSCALL:
        // OpenSSL 3 with SSL_OP_IGNORE_UNEXPECTED_EOF reports a bare TCP end as ZERO_RETURN;
        // an empty error queue here still means the socket ended.
        return ERR_peek_error() == 0 && errno == 0 ? SLUICE_TLS_EOF : SLUICE_TLS_ERROR;
    default:
        return SLUICE_TLS_ERROR;
    }
}

int sluice_tls_handshake(void *p) {
    SSL *ssl = p;
    ERR_clear_error();
    errno = 0;
    int ret = SSL_do_handshake(ssl);
    if (ret == 1) return 0;
    return outcome(ssl, ret);
}

long sluice_tls_read(void *p, void *buf, size_t count) {
    SSL *ssl = p;
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int ret = SSL_read_ex(ssl, buf, count, &n);
    if (ret == 1) return (long)n;
    return outcome(ssl, ret);
}

long sluice_tls_write(void *p, const void *buf, size_t count) {
    SSL *ssl = p;
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int ret = SSL_write_ex(ssl, buf, count, &n);
    if (ret == 1) return (long)n;
    return outcome(ssl, ret);
}

void sluice_tls_shutdown(void *p) {
    SSL *ssl = p;
    if (!SSL_is_init_finished(ssl)) return;
    ERR_clear_error();
    (void)SSL_shutdown(ssl);
    ERR_clear_error();
}

void sluice_tls_free(void *p) { SSL_free((SSL *)p); }

int sluice_tls_session_reused(void *p) { return SSL_session_reused((SSL *)p); }

void sluice_tls_last_error(char *buf, size_t len) {
    if (len == 0) return;
    buf[0] = 0;
    unsigned long e = ERR_get_error();
    if (e != 0) ERR_error_string_n(e, buf, len);
    ERR_clear_error();
}

int sluice_tls_release_buffers(void *ssl) { return SSL_free_buffers((SSL *)ssl); }

int sluice_tls_take_error(void) {
    int e = errno;
    ERR_clear_error();
    return e;
}

// ---------------------------------------------------------------------------------------
// Memory transport: a session that never touches a socket. The caller reads ciphertext from
// its socket (through its own syscall policy) into the session's input buffer and commits it;
// the ciphertext OpenSSL produces waits in the output buffer until the caller has sent it.
// Both buffers are allocated when first needed and given back by sluice_tls_release_buffers
// when empty, so an idle session holds neither.

#define MEMORY_INPUT_CAPACITY (16 * 1024 + 1024)
#define MEMORY_OUTPUT_CAPACITY (2 * (16 * 1024 + 512))

struct memory_transport {
    unsigned char *in;
    size_t in_capacity;
    size_t in_start;
    size_t in_end;
    unsigned char *out;
    size_t out_start;
    size_t out_end;
    int ended;  // the peer's end of stream was seen by the caller
};

static BIO_METHOD *memory_method;
static int memory_type;
static pthread_once_t memory_once = PTHREAD_ONCE_INIT;

static int memory_read(BIO *bio, char *dst, int count) {
    struct memory_transport *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (count <= 0) return 0;
    size_t available = t->in_end - t->in_start;
    if (available == 0) {
        if (t->ended) return 0;
        BIO_set_retry_read(bio);
        return -1;
    }
    size_t n = available < (size_t)count ? available : (size_t)count;
    memcpy(dst, t->in + t->in_start, n);
    t->in_start += n;
    if (t->in_start == t->in_end) t->in_start = t->in_end = 0;
    return (int)n;
}

static int memory_write(BIO *bio, const char *src, int count) {
    struct memory_transport *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (count <= 0) return 0;
    if (t->out == NULL) {
        t->out = malloc(MEMORY_OUTPUT_CAPACITY);
        if (t->out == NULL) return -1;
    }
    if (t->out_end == MEMORY_OUTPUT_CAPACITY && t->out_start > 0) {
        memmove(t->out, t->out + t->out_start, t->out_end - t->out_start);
        t->out_end -= t->out_start;
        t->out_start = 0;
    }
    size_t room = MEMORY_OUTPUT_CAPACITY - t->out_end;
    if (room == 0) {
        BIO_set_retry_write(bio);
        return -1;
    }
    size_t n = room < (size_t)count ? room : (size_t)count;
    memcpy(t->out + t->out_end, src, n);
    t->out_end += n;
    return (int)n;
}

static long memory_ctrl(BIO *bio, int cmd, long num, void *ptr) {
    (void)num;
    (void)ptr;
    struct memory_transport *t = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t == NULL ? 0 : (long)(t->in_end - t->in_start);
    case BIO_CTRL_WPENDING:
        return t == NULL ? 0 : (long)(t->out_end - t->out_start);
    case BIO_CTRL_EOF:
        return t != NULL && t->ended && t->in_end == t->in_start;
    default:
        return 0;
    }
}

static int memory_destroy(BIO *bio) {
    struct memory_transport *t = BIO_get_data(bio);
    if (t != NULL) {
        free(t->in);
        free(t->out);
        free(t);
        BIO_set_data(bio, NULL);
    }
    return 1;
}

static void memory_method_init(void) {
    int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
    BIO_METHOD *m = BIO_meth_new(type, "sluice memory transport");
    if (m == NULL) return;
    memory_type = type;
    BIO_meth_set_read(m, memory_read);
    BIO_meth_set_write(m, memory_write);
    BIO_meth_set_ctrl(m, memory_ctrl);
    BIO_meth_set_create(m, transport_create);
    BIO_meth_set_destroy(m, memory_destroy);
    memory_method = m;
}

static struct memory_transport *memory_of(void *p) {
    BIO *bio = SSL_get_rbio((SSL *)p);
    if (bio == NULL || memory_method == NULL || BIO_method_type(bio) != memory_type) return NULL;
    return BIO_get_data(bio);
}

// A memory transport holding `prefix` as its first input, as a BIO; NULL when out of memory.
static BIO *memory_bio(const void *prefix, size_t prefix_len) {
    pthread_once(&memory_once, memory_method_init);
    if (memory_method == NULL) return NULL;
    struct memory_transport *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    if (prefix_len > 0) {
        t->in_capacity = prefix_len > MEMORY_INPUT_CAPACITY ? prefix_len : MEMORY_INPUT_CAPACITY;
        t->in = malloc(t->in_capacity);
        if (t->in == NULL) {
            free(t);
            return NULL;
        }
        memcpy(t->in, prefix, prefix_len);
        t->in_end = prefix_len;
    }
    BIO *bio = BIO_new(memory_method);
    if (bio == NULL) {
        free(t->in);
        free(t);
        return NULL;
    }
    BIO_set_data(bio, t);
    return bio;
}

void *sluice_tls_memory_session_new(void *ctx, const void *prefix, size_t prefix_len) {
    if (ctx == NULL) return NULL;
    BIO *bio = memory_bio(prefix, prefix_len);
    return bio == NULL ? NULL : memory_session((SSL_CTX *)ctx, bio, 1);
}

void *sluice_tls_memory_client_session_new(void *ctx, const char *server_name, int check_name) {
    if (ctx == NULL) return NULL;
    BIO *bio = memory_bio(NULL, 0);
    SSL *ssl = bio == NULL ? NULL : memory_session((SSL_CTX *)ctx, bio, 0);
    if (ssl == NULL) return NULL;
    if (server_name != NULL && server_name[0] != 0) {
        unsigned char address[16];
        int literal = inet_pton(AF_INET, server_name, address) == 1 || inet_pton(AF_INET6, server_name, address) == 1;
        int ok = 1;
        if (literal) {
            // No SNI for an address (RFC 6066 §3); the certificate must carry it as an IP SAN.
            if (check_name) ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name);
        } else {
            ok = SSL_set_tlsext_host_name(ssl, server_name);
            if (ok && check_name) {
                SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                ok = SSL_set1_host(ssl, server_name);
            }
        }
        if (!ok) {
            ERR_clear_error();
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

int sluice_tls_verify_failure(const void *p, char *buf, size_t len) {
    long result = SSL_get_verify_result((const SSL *)p);
    if (result == X509_V_OK) return 0;
    if (len > 0) snprintf(buf, len, "%s", X509_verify_cert_error_string(result));
    return 1;
}

size_t sluice_tls_input_room(void *p, void **where) {
    struct memory_transport *t = memory_of(p);
    *where = NULL;
    if (t == NULL) return 0;
    if (t->in == NULL) {
        t->in = malloc(MEMORY_INPUT_CAPACITY);
        if (t->in == NULL) return 0;
        t->in_capacity = MEMORY_INPUT_CAPACITY;
    }
    if (t->in_start > 0) {
        memmove(t->in, t->in + t->in_start, t->in_end - t->in_start);
        t->in_end -= t->in_start;
        t->in_start = 0;
    }
    *where = t->in + t->in_end;
    return t->in_capacity - t->in_end;
}

void sluice_tls_input_commit(void *p, size_t count) {
    struct memory_transport *t = memory_of(p);
    if (t == NULL) return;
    size_t room = t->in_capacity - t->in_end;
    t->in_end += count < room ? count : room;
}

void sluice_tls_input_end(void *p) {
    struct memory_transport *t = memory_of(p);
    if (t != NULL) t->ended = 1;
}

size_t sluice_tls_input_pending(void *p) {
    struct memory_transport *t = memory_of(p);
    return t == NULL ? 0 : t->in_end - t->in_start;
}

size_t sluice_tls_output(void *p, const void **where) {
    struct memory_transport *t = memory_of(p);
    *where = NULL;
    if (t == NULL || t->out == NULL) return 0;
    *where = t->out + t->out_start;
    return t->out_end - t->out_start;
}

void sluice_tls_output_consumed(void *p, size_t count) {
    struct memory_transport *t = memory_of(p);
    if (t == NULL) return;
    size_t pending = t->out_end - t->out_start;
    t->out_start += count < pending ? count : pending;
    if (t->out_start == t->out_end) t->out_start = t->out_end = 0;
}

int sluice_tls_has_pending(void *p) { return SSL_has_pending((SSL *)p); }

int sluice_tls_release_transport_buffers(void *p) {
    struct memory_transport *t = memory_of(p);
    int freed = SSL_free_buffers((SSL *)p);
    if (t == NULL) return freed;
    if (t->in != NULL && t->in_end == t->in_start) {
        free(t->in);
        t->in = NULL;
        t->in_capacity = 0;
        t->in_start = t->in_end = 0;
    }
    if (t->out != NULL && t->out_end == t->out_start) {
        free(t->out);
        t->out = NULL;
        t->out_start = t->out_end = 0;
    }
    return freed && t->in == NULL && t->out == NULL;
}

int sluice_tls_session_version(void *p) { return SSL_version((SSL *)p); }

// The HTTP/2 offer rides on the session's ex_data (any non-NULL value), so the context's
// ALPN callback, shared by every session of the context, can tell the sessions apart.
static int h2_index = -1;
static pthread_once_t h2_once = PTHREAD_ONCE_INIT;
static void h2_index_init(void) { h2_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

int sluice_tls_offer_h2(void *p) {
    pthread_once(&h2_once, h2_index_init);
    if (h2_index < 0) return -1;
    return SSL_set_ex_data((SSL *)p, h2_index, (void *)1) == 1 ? 0 : -1;
}

int sluice_tls_offers_h2(const void *p) {
    pthread_once(&h2_once, h2_index_init);
    return h2_index >= 0 && SSL_get_ex_data((const SSL *)p, h2_index) != NULL;
}

int sluice_tls_alpn_h2(const void *p) {
    const unsigned char *selected = NULL;
    unsigned int length = 0;
    SSL_get0_alpn_selected((const SSL *)p, &selected, &length);
    return length == 2 && selected[0] == 'h' && selected[1] == '2';
}
