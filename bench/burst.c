/* burst — N concurrent POSTs at once, each on its own connection; waits for every answer.
 *
 * Built by bench/run:  gcc -std=gnu11 -D_GNU_SOURCE -O2 bench/burst.c -o BUILD/bench/burst
 *   burst HOST PORT N PATH BODY AUTH [TIMEOUT_S=30] [PID]
 *
 * Phase 1 opens N non-blocking connections and waits until all are established (not timed:
 * the gateway only accepts them). Phase 2 writes one request on each, as fast as the loop goes,
 * then waits for every answer (Content-Length framed) or the timeout. Wall time is from the
 * first write to the last answer. With PID, the process's VmHWM and VmRSS (from
 * /proc/PID/status) are read after the burst. Prints one line of key=value pairs:
 *   n ok non2xx failed wall_ms p50_ms p99_ms max_ms vmhwm_kb vmrss_kb
 * and exits 0 only if every request got a 2xx answer. Loopback use only; bounded by TIMEOUT_S. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX 65536

enum conn_state { C_CONNECTING, C_CONNECTED, C_SENT, C_DONE, C_FAILED };

struct conn {
    int fd;
    enum conn_state st;
    size_t sent;
    char *resp;
    size_t len;
    int status;
    double t_done;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long parse_long(const char *s, long lo, long hi, const char *what)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "burst: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

/* 1 when the answer is complete (headers + Content-Length bytes), 0 when more is needed,
 * -1 when it cannot be framed. Sets c->status. */
static int response_complete(struct conn *c)
{
    char *hend = memmem(c->resp, c->len, "\r\n\r\n", 4);
    if (hend == NULL) {
        return c->len >= RESP_MAX ? -1 : 0;
    }
    size_t hlen = (size_t)(hend - c->resp) + 4;
    if (c->len < 12 || memcmp(c->resp, "HTTP/1.", 7) != 0) {
        return -1;
    }
    c->status = (c->resp[9] - '0') * 100 + (c->resp[10] - '0') * 10 + (c->resp[11] - '0');
    long clen = -1;
    const char *p = c->resp;
    while (p < hend) {
        const char *eol = memmem(p, (size_t)(hend + 2 - p), "\r\n", 2);
        if (eol == NULL) {
            break;
        }
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
            char num[32];
            size_t n = (size_t)(eol - p) - 15;
            if (n >= sizeof(num)) {
                return -1;
            }
            memcpy(num, p + 15, n);
            num[n] = '\0';
            char *end = NULL;
            clen = strtol(num, &end, 10);
            if (end == num || clen < 0) {
                return -1;
            }
        }
        p = eol + 2;
    }
    if (clen < 0) {
        return -1; /* the gateway always sends Content-Length */
    }
    return c->len >= hlen + (size_t)clen ? 1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static void read_mem(long pid, long *hwm, long *rss)
{
    char path[64];
    char line[256];
    *hwm = -1;
    *rss = -1;
    if (pid <= 0) {
        return;
    }
    int n = snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        return;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        long *dst = NULL;
        const char *v = NULL;
        if (strncmp(line, "VmHWM:", 6) == 0) {
            dst = hwm;
            v = line + 6;
        } else if (strncmp(line, "VmRSS:", 6) == 0) {
            dst = rss;
            v = line + 6;
        }
        if (dst != NULL) {
            char *end = NULL;
            long x = strtol(v, &end, 10);
            if (end != v) {
                *dst = x;
            }
        }
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: burst HOST PORT N PATH BODY AUTH [TIMEOUT_S=30] [PID]\n");
        return 2;
    }
    const char *host = argv[1];
    long port = parse_long(argv[2], 1, 65535, "port");
    long n = parse_long(argv[3], 1, 100000, "N");
    const char *path = argv[4];
    const char *body = argv[5];
    const char *auth = argv[6];
    long timeout_s = argc > 7 ? parse_long(argv[7], 1, 600, "timeout") : 30;
    long pid = argc > 8 ? parse_long(argv[8], 0, 1L << 30, "pid") : 0;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    char req[4096];
    int rlen = snprintf(req, sizeof(req),
                        "POST %s HTTP/1.1\r\nHost: %s:%ld\r\nAuthorization: Bearer %s\r\n"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%s",
                        path, host, port, auth, strlen(body), body);
    if (rlen < 0 || (size_t)rlen >= sizeof(req)) {
        fprintf(stderr, "burst: request too long\n");
        return 2;
    }

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "burst: HOST must be an IPv4 address\n");
        return 2;
    }

    int ep = epoll_create1(0);
    struct conn *cs = calloc((size_t)n, sizeof(*cs));
    double *lat = calloc((size_t)n, sizeof(*lat));
    if (ep < 0 || cs == NULL || lat == NULL) {
        fprintf(stderr, "burst: out of resources\n");
        return 2;
    }
    double deadline = now_ms() + (double)timeout_s * 1e3;

    /* Phase 1: connect everything. */
    long pending = 0;
    for (long i = 0; i < n; i++) {
        struct conn *c = &cs[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            fprintf(stderr, "burst: socket: %s (raise ulimit -n)\n", strerror(errno));
            c->st = C_FAILED;
            continue;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            c->st = C_CONNECTED;
        } else if (errno == EINPROGRESS) {
            c->st = C_CONNECTING;
            pending++;
        } else {
            c->st = C_FAILED;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
            c->st = C_FAILED;
        }
    }
    struct epoll_event evs[512];
    while (pending > 0 && now_ms() < deadline) {
        int k = epoll_wait(ep, evs, 512, 100);
        for (int j = 0; j < k; j++) {
            struct conn *c = &cs[evs[j].data.u64];
            if (c->st != C_CONNECTING) {
                continue;
            }
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            c->st = soerr == 0 ? C_CONNECTED : C_FAILED;
            pending--;
        }
    }

    /* Phase 2: one request on every connection, then every answer. */
    double t0 = now_ms();
    long open = 0;
    for (long i = 0; i < n; i++) {
        struct conn *c = &cs[i];
        if (c->st != C_CONNECTED) {
            c->st = C_FAILED;
            continue;
        }
        ssize_t w = write(c->fd, req, (size_t)rlen);
        c->sent = w > 0 ? (size_t)w : 0;
        c->st = C_SENT;
        open++;
        struct epoll_event ev = {.events = EPOLLIN | (c->sent < (size_t)rlen ? EPOLLOUT : 0),
                                 .data.u64 = (uint64_t)i};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    double t_last = t0;
    while (open > 0 && now_ms() < deadline) {
        int k = epoll_wait(ep, evs, 512, 100);
        for (int j = 0; j < k; j++) {
            struct conn *c = &cs[evs[j].data.u64];
            if (c->st != C_SENT) {
                continue;
            }
            if ((evs[j].events & EPOLLOUT) && c->sent < (size_t)rlen) {
                ssize_t w = write(c->fd, req + c->sent, (size_t)rlen - c->sent);
                if (w > 0) {
                    c->sent += (size_t)w;
                }
                if (c->sent == (size_t)rlen) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = evs[j].data.u64};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (!(evs[j].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                continue;
            }
            if (c->resp == NULL) {
                c->resp = malloc(RESP_MAX);
                if (c->resp == NULL) {
                    c->st = C_FAILED;
                    open--;
                    close(c->fd);
                    continue;
                }
            }
            ssize_t r = read(c->fd, c->resp + c->len, RESP_MAX - c->len);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }
            int done = -1;
            if (r > 0) {
                c->len += (size_t)r;
                done = response_complete(c);
            }
            if (done != 0) {
                c->st = done == 1 ? C_DONE : C_FAILED;
                c->t_done = now_ms();
                if (c->t_done > t_last) {
                    t_last = c->t_done;
                }
                open--;
                close(c->fd);
                c->fd = -1;
                free(c->resp);
                c->resp = NULL;
            }
        }
    }

    long ok = 0;
    long non2xx = 0;
    long failed = 0;
    long nlat = 0;
    for (long i = 0; i < n; i++) {
        struct conn *c = &cs[i];
        if (c->st == C_DONE) {
            lat[nlat++] = c->t_done - t0;
            if (c->status >= 200 && c->status < 300) {
                ok++;
            } else {
                non2xx++;
            }
        } else {
            failed++; /* refused, reset, unframeable or unanswered by the timeout */
        }
        if (c->fd >= 0) {
            close(c->fd);
        }
        free(c->resp);
    }
    if (failed > 0) {
        t_last = now_ms();
    }
    qsort(lat, (size_t)nlat, sizeof(*lat), cmp_double);
    double p50 = nlat ? lat[(size_t)((double)(nlat - 1) * 0.50)] : 0;
    double p99 = nlat ? lat[(size_t)((double)(nlat - 1) * 0.99)] : 0;
    double mx = nlat ? lat[nlat - 1] : 0;
    long hwm = -1;
    long rss = -1;
    read_mem(pid, &hwm, &rss);
    printf("n=%ld ok=%ld non2xx=%ld failed=%ld wall_ms=%.1f p50_ms=%.1f p99_ms=%.1f "
           "max_ms=%.1f vmhwm_kb=%ld vmrss_kb=%ld\n",
           n, ok, non2xx, failed, t_last - t0, p50, p99, mx, hwm, rss);
    free(cs);
    free(lat);
    close(ep);
    return ok == n ? 0 : 1;
}
