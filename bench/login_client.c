/* The logins of bench/logins.py without Python around them: one client process logging in, one
 * login after another, for a given time, each on a new TCP connection with a full TLS handshake
 * (no session resumption), each a user other than the one before. It does what the Python client
 * does (imaps: greeting, LOGIN, LOGOUT; submissions: greeting, EHLO, AUTH PLAIN, QUIT) with the
 * same OpenSSL, so the client's share of the cores is the handshake's, as in the reference.
 *
 *   login_client imaps|submissions PORT FIRST_USER STEP USERS SECONDS DOMAIN
 *
 * Prints the number of logins made; exits 1 at the first login refused or broken. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec moment;
    clock_gettime(CLOCK_MONOTONIC, &moment);
    return moment.tv_sec + moment.tv_nsec / 1e9;
}

/* Reads until `marker` is in what was read (from the start of this reply); returns it, or NULL. */
static const char *read_until(SSL *tls, char *buffer, size_t size, const char *marker) {
    size_t used = 0;
    buffer[0] = '\0';
    while (strstr(buffer, marker) == NULL) {
        if (used + 1 >= size) return NULL;
        int got = SSL_read(tls, buffer + used, (int)(size - used - 1));
        if (got <= 0) return NULL;
        used += (size_t)got;
        buffer[used] = '\0';
    }
    return buffer;
}

static int send_text(SSL *tls, const char *text) {
    return SSL_write(tls, text, (int)strlen(text)) == (int)strlen(text);
}

static int login(SSL_CTX *context, int port, int submissions, const char *user, const char *password) {
    int ok = 0;
    char buffer[8192], line[1024];
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(sock, (struct sockaddr *)&address, sizeof address) != 0) goto closed;
    SSL *tls = SSL_new(context);
    SSL_set_fd(tls, sock);
    if (SSL_connect(tls) != 1 || !read_until(tls, buffer, sizeof buffer, "\r\n")) goto done;
    if (submissions) {
        unsigned char plain[600], token[900];
        int length = snprintf((char *)plain, sizeof plain, "%c%s%c%s", 0, user, 0, password);
        EVP_EncodeBlock(token, plain, length);
        snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", token);
        if (!send_text(tls, "EHLO client.test\r\n") || !read_until(tls, buffer, sizeof buffer, "250 ")) goto done;
        if (!send_text(tls, line) || !read_until(tls, buffer, sizeof buffer, "\r\n")) goto done;
        if (strncmp(buffer, "235", 3) != 0) goto done;
        ok = send_text(tls, "QUIT\r\n");
    } else {
        snprintf(line, sizeof line, "a LOGIN \"%s\" \"%s\"\r\n", user, password);
        if (!send_text(tls, line) || !read_until(tls, buffer, sizeof buffer, "a ")) goto done;
        if (!strstr(buffer, "a OK") && !read_until(tls, buffer, sizeof buffer, "\r\n")) goto done;
        if (!strstr(buffer, "a OK")) goto done;
        ok = send_text(tls, "b LOGOUT\r\n") && read_until(tls, buffer, sizeof buffer, "b OK") != NULL;
    }
done:
    if (!ok) fprintf(stderr, "login of %s refused or broken: %.200s\n", user, buffer);
    SSL_free(tls);
closed:
    close(sock);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: login_client imaps|submissions PORT FIRST_USER STEP USERS SECONDS DOMAIN\n");
        return 2;
    }
    int submissions = strcmp(argv[1], "submissions") == 0;
    int port = atoi(argv[2]), index = atoi(argv[3]), step = atoi(argv[4]), users = atoi(argv[5]);
    double deadline = now() + atof(argv[6]);
    SSL_CTX *context = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(context, SSL_VERIFY_NONE, NULL); /* the stack's self-signed certificate */
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
    long done = 0;
    char user[300], password[100];
    while (now() < deadline) {
        snprintf(user, sizeof user, "user%d@%s", index % users, argv[7]);
        snprintf(password, sizeof password, "login bench password %d", index % users);
        if (!login(context, port, submissions, user, password)) return 1;
        done++;
        index += step;
    }
    printf("%ld\n", done);
    return 0;
}
