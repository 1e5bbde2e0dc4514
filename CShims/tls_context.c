// Server TLS contexts for termination (see sluice_tls_context.h for the contract).
//
// Ownership:
//
//   top SSL_CTX (what Swift holds, what sessions are made from)
//     ex_data[sluice_index] -> struct sluice_tls_set (freed with the top context)
//       certs[i].ctx         one SSL_CTX per certificate, same settings, one reference each
//
// A session starts on the top context; the servername callback moves it with
// SSL_set_SSL_CTX to the chosen certificate's context, which takes a reference of its own,
// so a certificate context outlives the set while a session uses it. The session cache and
// the ticket keys stay those of the top context (OpenSSL keeps them on the session's
// `session_ctx`, which SSL_set_SSL_CTX does not change), and every context has the same
// session id context, so a session made with one certificate resumes on the same listener.
// The callback's argument is the set; it runs only inside handshakes, which hold a
// reference on the top context (as session_ctx), so the set is alive whenever it runs.
#include "sluice_tls_context.h"
#include "sluice_tls_io.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct sluice_tls_cert {
    SSL_CTX *ctx;
    char **names;
    size_t name_count;
};

struct sluice_tls_set {
    struct sluice_tls_cert *certs;
    size_t count;
};

static const unsigned char sluice_session_id_context[] = "sluice";
static const char sluice_tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char sluice_groups[] = "X25519:P-256:P-384";

static int sluice_index = -1;
static pthread_once_t sluice_index_once = PTHREAD_ONCE_INIT;

static void set_error(char *err, size_t errlen, const char *fmt, const char *a, const char *b) {
    if (err == NULL || errlen == 0) return;
    snprintf(err, errlen, fmt, a, b);
}

// The oldest queued OpenSSL error as text (then the queue is cleared), or `fallback`.
static void openssl_reason(char *buf, size_t len, const char *fallback) {
    unsigned long code = ERR_get_error();
    if (code == 0) {
        snprintf(buf, len, "%s", fallback);
    } else {
        ERR_error_string_n(code, buf, len);
    }
    ERR_clear_error();
}

static void free_set(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    struct sluice_tls_set *set = ptr;
    if (set == NULL) return;
    for (size_t i = 0; i < set->count; i++) {
        for (size_t n = 0; n < set->certs[i].name_count; n++) free(set->certs[i].names[n]);
        free(set->certs[i].names);
        SSL_CTX_free(set->certs[i].ctx);  // drops our reference; sessions may hold more
    }
    free(set->certs);
    free(set);
}

static void make_index(void) { sluice_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_set); }

static struct sluice_tls_set *set_of(void *ctx) {
    if (ctx == NULL || sluice_index < 0) return NULL;
    return SSL_CTX_get_ex_data((SSL_CTX *)ctx, sluice_index);
}

// Case-insensitive equality of `a` with `b[0..<blen]`, where `a` is already lower case.
static int name_equals(const char *a, const char *b, size_t blen) {
    size_t alen = strlen(a);
    if (alen != blen) return 0;
    for (size_t i = 0; i < blen; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        if ((unsigned char)a[i] != c) return 0;
    }
    return 1;
}

// The certificate for server name `name`: an exact name first, then `*.domain` matching
// exactly one more label, else the default (index 0).
static size_t choose(const struct sluice_tls_set *set, const char *name) {
    if (name == NULL) return 0;
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.') len--;
    if (len == 0) return 0;
    for (size_t i = 0; i < set->count; i++) {
        for (size_t n = 0; n < set->certs[i].name_count; n++) {
            if (name_equals(set->certs[i].names[n], name, len)) return i;
        }
    }
    const char *dot = memchr(name, '.', len);
    if (dot == NULL || dot == name || (size_t)(dot - name) + 1 >= len) return 0;
    const char *domain = dot + 1;
    size_t domain_len = len - (size_t)(domain - name);
    for (size_t i = 0; i < set->count; i++) {
        for (size_t n = 0; n < set->certs[i].name_count; n++) {
            const char *pattern = set->certs[i].names[n];
            if (pattern[0] == '*' && pattern[1] == '.' && name_equals(pattern + 2, domain, domain_len)) return i;
        }
    }
    return 0;
}

// Runs during each ClientHello (with or without SNI) on the handshaking thread.
static int on_servername(SSL *ssl, int *alert, void *arg) {
    (void)alert;
    const struct sluice_tls_set *set = arg;
    if (set == NULL || set->count == 0) return SSL_TLSEXT_ERR_OK;  // the top context's own certificate
    size_t chosen = choose(set, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (SSL_get_SSL_CTX(ssl) != set->certs[chosen].ctx && SSL_set_SSL_CTX(ssl, set->certs[chosen].ctx) == NULL) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

// h2 first when the session offers HTTP/2 (sluice_tls_offer_h2) and the client does, then
// http/1.1 when the client offers it; otherwise the handshake goes on without ALPN.
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg) {
    (void)arg;
    static const unsigned char http11[] = "\x08http/1.1";
    static const unsigned char h2_http11[] = "\x02h2\x08http/1.1";
    const unsigned char *mine = http11;
    unsigned int mine_len = sizeof(http11) - 1;
    if (sluice_tls_offers_h2(ssl)) {
        mine = h2_http11;
        mine_len = sizeof(h2_http11) - 1;
    }
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, mine, mine_len, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

// The settings every context of a set shares. 0 or -1 with `err` set.
static int configure(SSL_CTX *ctx, void *servername_arg, char *err, size_t errlen) {
    char reason[200];
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) || !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
        openssl_reason(reason, sizeof(reason), "cannot set the protocol versions");
        set_error(err, errlen, "%s%s", reason, "");
        return -1;
    }
    if (!SSL_CTX_set_cipher_list(ctx, sluice_tls12_ciphers) || !SSL_CTX_set1_groups_list(ctx, sluice_groups)) {
        openssl_reason(reason, sizeof(reason), "cannot set the ciphers or groups");
        set_error(err, errlen, "%s%s", reason, "");
        return -1;
    }
    // The server's cipher order (AES-GCM first) rather than the client's: a scanner reports
    // a server without one, and a client listing a weaker suite first does not get it. A
    // client that puts ChaCha20 first (typically one without AES instructions) still gets
    // ChaCha20 (PRIORITIZE_CHACHA), where it is faster than AES.
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_PRIORITIZE_CHACHA);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    // RELEASE_BUFFERS: sessions made from the context free their record buffers when empty.
    // The loop's sessions opt out while active (tls_io.c) and call sluice_tls_release_buffers
    // when idle instead.
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, servername_arg);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 20000);
    SSL_CTX_set_timeout(ctx, 300);
    if (!SSL_CTX_set_session_id_context(ctx, sluice_session_id_context, sizeof(sluice_session_id_context) - 1)) {
        openssl_reason(reason, sizeof(reason), "cannot set the session id context");
        set_error(err, errlen, "%s%s", reason, "");
        return -1;
    }
    return 0;
}

void *sluice_tls_ctx_new(char *err, size_t errlen) {
    char reason[200];
    pthread_once(&sluice_index_once, make_index);
    if (sluice_index < 0) {
        set_error(err, errlen, "%s%s", "cannot allocate OpenSSL ex_data", "");
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        openssl_reason(reason, sizeof(reason), "cannot create an SSL_CTX");
        set_error(err, errlen, "%s%s", reason, "");
        return NULL;
    }
    struct sluice_tls_set *set = calloc(1, sizeof(*set));
    if (set == NULL || !SSL_CTX_set_ex_data(ctx, sluice_index, set)) {
        free(set);
        SSL_CTX_free(ctx);
        set_error(err, errlen, "%s%s", "out of memory", "");
        return NULL;
    }
    if (configure(ctx, set, err, errlen) != 0) {
        SSL_CTX_free(ctx);  // frees the set too
        return NULL;
    }
    return ctx;
}

// The whole file, or NULL with errno set (a directory reads as EISDIR).
static char *read_file(const char *path, size_t *length) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) return NULL;
    size_t capacity = 16384, used = 0;
    char *bytes = malloc(capacity);
    while (bytes != NULL) {
        size_t got = fread(bytes + used, 1, capacity - used, file);
        used += got;
        if (got == 0) break;
        if (used == capacity) {
            if (capacity >= (64u << 20)) {  // no PEM file is this large
                free(bytes);
                bytes = NULL;
                errno = EFBIG;
                break;
            }
            char *grown = realloc(bytes, capacity * 2);
            if (grown == NULL) {
                free(bytes);
                bytes = NULL;
                errno = ENOMEM;
                break;
            }
            bytes = grown;
            capacity *= 2;
        }
    }
    if (bytes != NULL && ferror(file)) {
        int saved = errno;
        free(bytes);
        bytes = NULL;
        errno = saved ? saved : EIO;
    }
    fclose(file);
    *length = used;
    return bytes;
}

// Refuses a passphrase prompt: encrypted keys fail to load instead of reading the terminal.
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

// Appends a copy of `text[0..<len]` in lower case, without a trailing dot. 0 or -1.
static int add_name(struct sluice_tls_cert *cert, const unsigned char *text, size_t len) {
    if (len > 0 && text[len - 1] == '.') len--;
    if (len == 0 || memchr(text, 0, len) != NULL) return 0;  // nothing, or an embedded NUL: ignore
    char *name = malloc(len + 1);
    char **names = realloc(cert->names, (cert->name_count + 1) * sizeof(char *));
    if (name == NULL || names == NULL) {
        free(name);
        if (names != NULL) cert->names = names;
        return -1;
    }
    cert->names = names;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = text[i];
        name[i] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    name[len] = 0;
    cert->names[cert->name_count++] = name;
    return 0;
}

// The SAN dNSName entries of `leaf`, or its subject CN when there are none. 0 or -1.
static int collect_names(struct sluice_tls_cert *cert, X509 *leaf) {
    GENERAL_NAMES *alt = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int status = 0;
    if (alt != NULL) {
        for (int i = 0; i < sk_GENERAL_NAME_num(alt) && status == 0; i++) {
            const GENERAL_NAME *entry = sk_GENERAL_NAME_value(alt, i);
            if (entry->type != GEN_DNS) continue;
            status = add_name(cert, ASN1_STRING_get0_data(entry->d.dNSName),
                              (size_t)ASN1_STRING_length(entry->d.dNSName));
        }
        GENERAL_NAMES_free(alt);
    }
    if (status != 0 || cert->name_count > 0) return status;
    X509_NAME *subject = X509_get_subject_name(leaf);
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index < 0) return 0;
    ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
    return add_name(cert, ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
}

// Installs the parsed certificate, chain and key into `ctx`. 1 on success.
static int install(SSL_CTX *ctx, X509 *leaf, STACK_OF(X509) *chain, EVP_PKEY *key) {
    return SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1);
}

int sluice_tls_ctx_add_certificate(void *ctx, const char *cert_path, const char *key_path, char *err,
                                   size_t errlen) {
    struct sluice_tls_set *set = set_of(ctx);
    if (set == NULL) {
        set_error(err, errlen, "%s%s", "not a context made by sluice_tls_ctx_new", "");
        return -4;
    }
    char reason[200];
    int status = 0;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    SSL_CTX *cert_ctx = NULL;
    struct sluice_tls_cert cert = {0};
    size_t length = 0;
    char *bytes = NULL;
    BIO *bio = NULL;
    ERR_clear_error();

    // The certificate chain: leaf first, then any intermediates.
    bytes = read_file(cert_path, &length);
    if (bytes == NULL) {
        set_error(err, errlen, "cannot read '%s': %s", cert_path, strerror(errno));
        status = -1;
        goto done;
    }
    bio = BIO_new_mem_buf(bytes, (int)length);
    leaf = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
    if (leaf == NULL) {
        ERR_clear_error();
        set_error(err, errlen, "'%s' holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)%s", cert_path,
                  "");
        status = -1;
        goto done;
    }
    chain = sk_X509_new_null();
    if (chain == NULL) goto oom;
    for (X509 *next; (next = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL;) {
        if (!sk_X509_push(chain, next)) {
            X509_free(next);
            goto oom;
        }
    }
    unsigned long last = ERR_peek_last_error();
    if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
        ERR_clear_error();  // the normal end of the chain
    } else if (last != 0) {
        openssl_reason(reason, sizeof(reason), "unreadable");
        set_error(err, errlen, "'%s' has a malformed certificate after the first: %s", cert_path, reason);
        status = -1;
        goto done;
    }
    BIO_free(bio);
    bio = NULL;
    free(bytes);

    // The private key.
    bytes = read_file(key_path, &length);
    if (bytes == NULL) {
        set_error(err, errlen, "cannot read '%s': %s", key_path, strerror(errno));
        status = -2;
        goto done;
    }
    bio = BIO_new_mem_buf(bytes, (int)length);
    key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    if (key == NULL) {
        ERR_clear_error();
        set_error(err, errlen, "'%s' holds no unencrypted PEM private key%s", key_path, "");
        status = -2;
        goto done;
    }
    if (!X509_check_private_key(leaf, key)) {
        ERR_clear_error();
        set_error(err, errlen, "the key in '%s' does not match the certificate in '%s'", key_path, cert_path);
        status = -3;
        goto done;
    }

    // A context of its own for this certificate, with the shared settings.
    if (collect_names(&cert, leaf) != 0) goto oom;
    cert_ctx = SSL_CTX_new(TLS_server_method());
    if (cert_ctx == NULL) goto openssl;
    if (configure(cert_ctx, set, err, errlen) != 0) {
        status = -4;
        goto done;
    }
    if (!install(cert_ctx, leaf, chain, key)) goto openssl;
    // The first certificate also serves sessions the servername callback leaves on the top context.
    if (set->count == 0 && !install((SSL_CTX *)ctx, leaf, chain, key)) goto openssl;
    struct sluice_tls_cert *grown = realloc(set->certs, (set->count + 1) * sizeof(*grown));
    if (grown == NULL) goto oom;
    set->certs = grown;
    cert.ctx = cert_ctx;
    set->certs[set->count++] = cert;
    cert_ctx = NULL;
    cert.names = NULL;
    cert.name_count = 0;
    goto done;

openssl:
    openssl_reason(reason, sizeof(reason), "OpenSSL refused the certificate");
    set_error(err, errlen, "'%s': %s", cert_path, reason);
    status = -4;
    goto done;
oom:
    set_error(err, errlen, "%s%s", "out of memory", "");
    status = -4;
done:
    for (size_t n = 0; n < cert.name_count; n++) free(cert.names[n]);
    free(cert.names);
    SSL_CTX_free(cert_ctx);
    EVP_PKEY_free(key);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    BIO_free(bio);
    free(bytes);
    return status;
}

size_t sluice_tls_ctx_certificate_count(void *ctx) {
    struct sluice_tls_set *set = set_of(ctx);
    return set ? set->count : 0;
}

size_t sluice_tls_ctx_certificate_name_count(void *ctx, size_t certificate) {
    struct sluice_tls_set *set = set_of(ctx);
    return set && certificate < set->count ? set->certs[certificate].name_count : 0;
}

const char *sluice_tls_ctx_certificate_name(void *ctx, size_t certificate, size_t name) {
    struct sluice_tls_set *set = set_of(ctx);
    if (set == NULL || certificate >= set->count || name >= set->certs[certificate].name_count) return NULL;
    return set->certs[certificate].names[name];
}

void sluice_tls_ctx_free(void *ctx) { SSL_CTX_free((SSL_CTX *)ctx); }

const uint64_t SLUICE_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE,
               SLUICE_SSL_OP_PRIORITIZE_CHACHA = SSL_OP_PRIORITIZE_CHACHA, SLUICE_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET,
               SLUICE_SSL_MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS;

int sluice_tls_ctx_settings(void *ctx, size_t certificate, uint64_t *options, uint64_t *mode) {
    SSL_CTX *target = (SSL_CTX *)ctx;
    if (certificate != SIZE_MAX) {
        struct sluice_tls_set *set = set_of(ctx);
        if (set == NULL || certificate >= set->count) return -1;
        target = set->certs[certificate].ctx;
    }
    *options = (uint64_t)SSL_CTX_get_options(target);
    *mode = (uint64_t)SSL_CTX_get_mode(target);
    return 0;
}

// MARK: - Client contexts (TLS to endpoints)

// The PEM certificates in `path` added to `store`; how many, or -1 with `err` set.
static int load_trust(X509_STORE *store, const char *path, char *err, size_t errlen) {
    size_t length = 0;
    char *bytes = read_file(path, &length);
    if (bytes == NULL) {
        set_error(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        return -1;
    }
    BIO *bio = BIO_new_mem_buf(bytes, (int)length);
    int count = 0;
    for (X509 *cert; bio != NULL && (cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL;) {
        int added = X509_STORE_add_cert(store, cert);
        X509_free(cert);
        if (!added) {
            // The same certificate twice in a bundle is harmless.
            unsigned long code = ERR_peek_last_error();
            if (ERR_GET_REASON(code) != X509_R_CERT_ALREADY_IN_HASH_TABLE) break;
        }
        ERR_clear_error();
        count++;
    }
    ERR_clear_error();
    BIO_free(bio);
    free(bytes);
    if (count == 0) {
        set_error(err, errlen, "'%s' holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)%s", path, "");
        return -1;
    }
    return count;
}

void *sluice_tls_client_ctx_new(const char *ca_path, int verify, const char *cert_path, const char *key_path,
                                char *err, size_t errlen) {
    char reason[200];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        openssl_reason(reason, sizeof(reason), "cannot create an SSL_CTX");
        set_error(err, errlen, "%s%s", reason, "");
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) || !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, sluice_tls12_ciphers) || !SSL_CTX_set1_groups_list(ctx, sluice_groups)) {
        openssl_reason(reason, sizeof(reason), "cannot set the protocol versions, ciphers or groups");
        set_error(err, errlen, "%s%s", reason, "");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char h2_only[] = {2, 'h', '2'};
    if (SSL_CTX_set_alpn_protos(ctx, h2_only, sizeof(h2_only)) != 0) {
        openssl_reason(reason, sizeof(reason), "cannot set ALPN");
        set_error(err, errlen, "%s%s", reason, "");
        goto fail;
    }
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (ca_path != NULL) {
            if (load_trust(SSL_CTX_get_cert_store(ctx), ca_path, err, errlen) < 0) goto fail;
        } else if (!SSL_CTX_set_default_verify_paths(ctx)) {
            openssl_reason(reason, sizeof(reason), "cannot load the system's trust store");
            set_error(err, errlen, "%s%s", reason, "");
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cert_path != NULL && key_path != NULL) {
        SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
        FILE *probe = fopen(cert_path, "rb");
        if (probe == NULL) {
            set_error(err, errlen, "cannot read '%s': %s", cert_path, strerror(errno));
            goto fail;
        }
        fclose(probe);
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
            ERR_clear_error();
            set_error(err, errlen, "'%s' holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)%s", cert_path,
                      "");
            goto fail;
        }
        probe = fopen(key_path, "rb");
        if (probe == NULL) {
            set_error(err, errlen, "cannot read '%s': %s", key_path, strerror(errno));
            goto fail;
        }
        fclose(probe);
        if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
            // OpenSSL checks the key against the certificate as it installs it.
            int mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
            ERR_clear_error();
            if (mismatch) {
                set_error(err, errlen, "the key in '%s' does not match the certificate in '%s'", key_path, cert_path);
            } else {
                set_error(err, errlen, "'%s' holds no unencrypted PEM private key%s", key_path, "");
            }
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            ERR_clear_error();
            set_error(err, errlen, "the key in '%s' does not match the certificate in '%s'", key_path, cert_path);
            goto fail;
        }
    }
    ERR_clear_error();
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

// MARK: - Test support

struct server_run {
    SSL_CTX *ctx;
    int fd;
    int ok;
    char error[200];
};

// The server side of one test handshake: accept, send one byte (so a TLS 1.3 client reads
// its session tickets), then wait for the client's close.
static void *serve_once(void *arg) {
    struct server_run *run = arg;
    SSL *ssl = SSL_new(run->ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, run->fd)) {
        snprintf(run->error, sizeof(run->error), "server: SSL_new failed");
        SSL_free(ssl);
        return NULL;
    }
    if (SSL_accept(ssl) == 1) {
        run->ok = 1;
        char byte = 'x';
        if (SSL_write(ssl, &byte, 1) == 1) {
            while (SSL_read(ssl, &byte, 1) > 0) {}
        }
        SSL_shutdown(ssl);
    } else {
        openssl_reason(run->error, sizeof(run->error), "server: handshake failed");
    }
    SSL_free(ssl);
    shutdown(run->fd, SHUT_RDWR);
    ERR_clear_error();
    return NULL;
}

// ALPN wire format from "a,b"; 0 or -1 when it does not fit.
static int alpn_wire(const char *csv, unsigned char *out, size_t cap, size_t *len) {
    size_t used = 0;
    const char *start = csv;
    while (1) {
        const char *end = strchr(start, ',');
        size_t n = end ? (size_t)(end - start) : strlen(start);
        if (n == 0 || n > 255 || used + 1 + n > cap) return -1;
        out[used++] = (unsigned char)n;
        memcpy(out + used, start, n);
        used += n;
        if (end == NULL) break;
        start = end + 1;
    }
    *len = used;
    return 0;
}

int sluice_tls_test_handshake(void *server_ctx, const char *servername, const char *alpn_csv, int max_version,
                              int no_ticket, void **session, struct sluice_tls_test_result *result) {
    memset(result, 0, sizeof(*result));
    // Either side may write after the other closed (an alert, a close_notify): like sluice
    // itself, the test process takes EPIPE instead of the signal.
    signal(SIGPIPE, SIG_IGN);
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        snprintf(result->error, sizeof(result->error), "socketpair: %s", strerror(errno));
        return -1;
    }
    struct timeval bound = {.tv_sec = 10};
    for (int i = 0; i < 2; i++) {
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
        setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof(bound));
    }
    struct server_run run = {.ctx = server_ctx, .fd = fds[1]};
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve_once, &run) != 0) {
        snprintf(result->error, sizeof(result->error), "pthread_create failed");
        close(fds[0]);
        close(fds[1]);
        return -1;
    }

    int status = -1;
    SSL_CTX *client_ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    if (client_ctx == NULL) goto fail;
    // No client cache: the caller keeps the session, and OpenSSL would mark a cached session
    // not resumable when the SSL is freed after a one-sided shutdown.
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    if (no_ticket) SSL_CTX_set_options(client_ctx, SSL_OP_NO_TICKET);
    if (max_version != 0) {
        // Old versions need security level 0 in OpenSSL 3 even to be offered.
        SSL_CTX_set_security_level(client_ctx, 0);
        SSL_CTX_set_cipher_list(client_ctx, "DEFAULT:@SECLEVEL=0");
        SSL_CTX_set_min_proto_version(client_ctx, 0);
        SSL_CTX_set_max_proto_version(client_ctx, max_version);
    }
    ssl = SSL_new(client_ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fds[0])) goto fail;
    if (servername != NULL && !SSL_set_tlsext_host_name(ssl, servername)) goto fail;
    if (alpn_csv != NULL) {
        unsigned char wire[256];
        size_t len = 0;
        if (alpn_wire(alpn_csv, wire, sizeof(wire), &len) != 0 || SSL_set_alpn_protos(ssl, wire, (unsigned)len) != 0) {
            snprintf(result->error, sizeof(result->error), "bad ALPN list '%s'", alpn_csv);
            goto done;
        }
    }
    if (session != NULL && *session != NULL) SSL_set_session(ssl, (SSL_SESSION *)*session);
    if (SSL_connect(ssl) != 1) goto fail;
    char byte;
    if (SSL_read(ssl, &byte, 1) != 1) goto fail;
    result->reused = SSL_session_reused(ssl);
    result->version = SSL_version(ssl);
    const unsigned char *selected = NULL;
    unsigned int selected_len = 0;
    SSL_get0_alpn_selected(ssl, &selected, &selected_len);
    if (selected_len >= sizeof(result->alpn)) selected_len = sizeof(result->alpn) - 1;
    if (selected_len > 0) memcpy(result->alpn, selected, selected_len);
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer != NULL) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, result->subject_cn,
                                  sizeof(result->subject_cn));
    }
    if (session != NULL) {
        if (*session != NULL) SSL_SESSION_free((SSL_SESSION *)*session);
        *session = SSL_get1_session(ssl);
    }
    SSL_shutdown(ssl);
    status = 0;
    goto done;
fail:
    openssl_reason(result->error, sizeof(result->error), "client: handshake failed");
done:
    SSL_free(ssl);
    SSL_CTX_free(client_ctx);
    shutdown(fds[0], SHUT_RDWR);
    pthread_join(thread, NULL);
    close(fds[0]);
    close(fds[1]);
    if (status == 0 && !run.ok) {
        snprintf(result->error, sizeof(result->error), "%s", run.error);
        status = -1;
    }
    if (status != 0 && run.error[0] != 0) {
        size_t used = strlen(result->error);
        snprintf(result->error + used, sizeof(result->error) - used, "; %s", run.error);
    }
    ERR_clear_error();
    return status;
}

void sluice_tls_test_session_free(void *session) { SSL_SESSION_free((SSL_SESSION *)session); }

int sluice_tls_test_echo_client(int fd, const char *servername, size_t total, size_t chunk, int max_version,
                                int *version, char *error, size_t error_len) {
    error[0] = 0;
    signal(SIGPIPE, SIG_IGN);
    int status = -1;
    unsigned char *sent = NULL, *back = NULL;
    SSL_CTX *client_ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    if (client_ctx == NULL) goto done;
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    if (max_version != 0) SSL_CTX_set_max_proto_version(client_ctx, max_version);
    ssl = SSL_new(client_ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd)) goto done;
    if (servername != NULL) SSL_set_tlsext_host_name(ssl, servername);
    if (SSL_connect(ssl) != 1) {
        openssl_reason(error, error_len, "client: handshake failed");
        goto done;
    }
    *version = SSL_version(ssl);
    sent = malloc(chunk);
    back = malloc(chunk);
    if (sent == NULL || back == NULL) goto done;
    for (size_t done_bytes = 0; done_bytes < total; done_bytes += chunk) {
        for (size_t i = 0; i < chunk; i++) sent[i] = (unsigned char)((done_bytes + i) * 31 % 251);
        if (SSL_write(ssl, sent, (int)chunk) != (int)chunk) {
            openssl_reason(error, error_len, "client: write failed");
            goto done;
        }
        size_t got = 0;
        while (got < chunk) {
            int n = SSL_read(ssl, back + got, (int)(chunk - got));
            if (n <= 0) {
                openssl_reason(error, error_len, "client: read failed");
                goto done;
            }
            got += (size_t)n;
        }
        if (memcmp(sent, back, chunk) != 0) {
            snprintf(error, error_len, "client: echo differs at offset %zu", done_bytes);
            goto done;
        }
    }
    status = 0;
    SSL_shutdown(ssl);
done:
    free(sent);
    free(back);
    SSL_free(ssl);
    SSL_CTX_free(client_ctx);
    shutdown(fd, SHUT_WR);
    ERR_clear_error();
    return status;
}
