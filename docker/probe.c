/*
 * probe.c - saserve-probe: the container HEALTHCHECK, so the runtime image
 * needs no curl (and none of libcurl's dependencies).
 *
 *   saserve-probe [PATH]     GET PATH (default /health) from 127.0.0.1
 *
 * The port is $SASERVE_PORT when that is set (the image's own configuration
 * variable), else $PROBE_PORT, else 8080. Exit 0 when the answer's status is
 * 200, 1 otherwise (503 while loading or draining, refused, timed out).
 * Every step is bounded by a 3 s socket timeout.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static unsigned port_from_env(void)
{
    const char *names[] = {"SASERVE_PORT", "PROBE_PORT"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (!v || !*v) continue;
        char *end;
        unsigned long p = strtoul(v, &end, 10);
        if (*end == '\0' && p > 0 && p < 65536) return (unsigned)p;
    }
    return 8080;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "/health";
    unsigned port = port_from_env();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 1;
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        fprintf(stderr, "saserve-probe: 127.0.0.1:%u refused or timed out\n", port);
        return 1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    if (n <= 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) return 1;
    char buf[64] = {0};
    size_t got = 0;
    while (got < 12) { /* "HTTP/1.1 200" */
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got >= 12 && !strncmp(buf, "HTTP/1.", 7) && !strncmp(buf + 8, " 200", 4)) return 0;
    char *eol = strpbrk(buf, "\r\n");
    if (eol) *eol = '\0';
    fprintf(stderr, "saserve-probe: GET %s: %s\n", path, got ? buf : "no answer");
    return 1;
}
