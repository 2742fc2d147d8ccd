/* wg_test_sys — clock, sleep and loopback-port helpers shared by the suites
 * that start real processes (broker, worker, redis-server). */
#ifndef WG_TEST_SYS_H
#define WG_TEST_SYS_H

#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Monotonic milliseconds. */
static inline int64_t wg_test_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void wg_test_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick). */
static inline int wg_test_free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(s, (struct sockaddr *)&a, sizeof a);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

/* GET /metrics from HOST:PORT (HTTP/1.0, 3 s receive timeout): the whole
 * response, headers included, as a malloc'd string; NULL when the address is
 * not HOST:PORT or nothing answers. */
static inline char *wg_test_metrics_get(const char *hostport) {
    char host[128];
    snprintf(host, sizeof host, "%s", hostport);
    char *colon = strrchr(host, ':');
    if (!colon) return NULL;
    *colon = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) return NULL;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
    freeaddrinfo(ai);
    const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    if (!ok || write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *b = malloc(cap);
    ssize_t n;
    while (b && (n = read(fd, b + len, cap - len - 1)) > 0) len += (size_t)n;
    close(fd);
    if (b) b[len] = '\0';
    return b;
}

/* The prompt-token counts of the last summary line `waggle run` wrote to
 * the log at `path` ("prompt tokens: N computed, M found in the prefix
 * cache"). False when the file cannot be read or has no such line. */
static inline bool wg_test_run_prompt_counts(const char *path, long long *computed, long long *cached) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[1024];
    bool seen = false;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "prompt tokens: ");
        if (p && sscanf(p, "prompt tokens: %lld computed, %lld found in the prefix cache", computed, cached) == 2)
            seen = true;
    }
    fclose(f);
    return seen;
}

#endif
