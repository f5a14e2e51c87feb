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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec moment;
    clock_gettime(CLOCK_MONOTONIC, &moment);
    return moment.tv_sec + moment.tv_nsec / 1e9;
}

/* Reads until `marker` is in what this call reads, appended to the `*used` bytes already in
 * `buffer` (0 for a new reply). Returns 0 when the connection ends or the buffer fills. */
static int read_until(SSL *tls, char *buffer, size_t size, size_t *used, const char *marker) {
    size_t start = *used;
    buffer[*used] = '\0';
    while (strstr(buffer + start, marker) == NULL) {
        if (*used + 1 >= size) return 0;
        int got = SSL_read(tls, buffer + *used, (int)(size - *used - 1));
        if (got <= 0) return 0;
        *used += (size_t)got;
        buffer[*used] = '\0';
    }
    return 1;
}

static int ends_line(const char *buffer, size_t used) {
    return used >= 2 && buffer[used - 2] == '\r' && buffer[used - 1] == '\n';
}

static int send_text(SSL *tls, const char *text) {
    return SSL_write(tls, text, (int)strlen(text)) == (int)strlen(text);
}

static int login(SSL_CTX *context, int port, int submissions, const char *user, const char *password) {
    int ok = 0;
    char buffer[8192] = "", line[1024];
    size_t used;
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval timeout = {.tv_sec = 30}; /* as the Python client's */
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(sock, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("connect");
        close(sock);
        return 0;
    }
    SSL *tls = SSL_new(context);
    if (tls == NULL || SSL_set_fd(tls, sock) != 1 || SSL_connect(tls) != 1) {
        snprintf(buffer, sizeof buffer, "(the TLS handshake failed)");
        goto done;
    }
    used = 0;
    if (!read_until(tls, buffer, sizeof buffer, &used, "\r\n")) goto done;
    if (submissions) {
        unsigned char plain[600], token[900];
        int length = snprintf((char *)plain, sizeof plain, "%c%s%c%s", 0, user, 0, password);
        EVP_EncodeBlock(token, plain, length);
        snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", token);
        used = 0;
        if (!send_text(tls, "EHLO client.test\r\n") || !read_until(tls, buffer, sizeof buffer, &used, "250 ")) goto done;
        used = 0;
        if (!send_text(tls, line) || !read_until(tls, buffer, sizeof buffer, &used, "\r\n")) goto done;
        if (strncmp(buffer, "235", 3) != 0) goto done;
        ok = send_text(tls, "QUIT\r\n");
    } else {
        /* As the Python client: the tagged reply, to the end of its line, then its verdict. */
        snprintf(line, sizeof line, "a LOGIN \"%s\" \"%s\"\r\n", user, password);
        used = 0;
        if (!send_text(tls, line) || !read_until(tls, buffer, sizeof buffer, &used, "a ")) goto done;
        if (!ends_line(buffer, used) && !read_until(tls, buffer, sizeof buffer, &used, "\r\n")) goto done;
        if (!strstr(buffer, "a OK")) goto done;
        used = 0;
        ok = send_text(tls, "b LOGOUT\r\n") && read_until(tls, buffer, sizeof buffer, &used, "b OK");
    }
done:
    if (!ok) fprintf(stderr, "login of %s refused or broken: %.200s\n", user, buffer);
    SSL_free(tls);
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
    signal(SIGPIPE, SIG_IGN); /* a write to a closed connection fails, and says so */
    SSL_CTX *context = SSL_CTX_new(TLS_client_method());
    if (context == NULL) return 1;
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
