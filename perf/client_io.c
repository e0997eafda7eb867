/* The kernel's share of a keep-alive load loop: epoll against io_uring, with no parsing.

   Theory of operation: 64 (at most) connections to 127.0.0.1:PORT each send wrk's request,
   read until the response is whole (its length is learnt from one response first: a
   fixed-size answer such as nginx's or kestrel's plaintext), and send again. The epoll loop
   makes the calls kestrel-bench's LoadGenerator makes (one recv and one send per response,
   one epoll_wait for all ready connections); the io_uring loop keeps one recv per connection
   queued and submits the sends and recvs of a whole batch with one io_uring_enter. Neither
   parses, so the difference is the I/O method's alone; it decided that kestrel-bench stays on
   epoll (kestrel/load_generator.pxi, perf/RESULTS.md).

       gcc -O2 -o /tmp/client_io perf/client_io.c -luring     # Debian: liburing-dev
       taskset -c 1 /tmp/client_io epoll|uring PORT CONNECTIONS SECONDS
*/
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char req[256]; static int reqlen; static long resplen; static char buf[64][16384];
static long got[64]; static long done;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (void *)&a, sizeof a) < 0) { perror("connect"); exit(1); }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* A read of n bytes on connection i: returns the responses it completed. */
static int account(int i, long n) {
    got[i] += n;
    if (got[i] >= resplen) { got[i] -= resplen; done++; return 1; }
    return 0;
}

int main(int argc, char **argv) {
    int port = atoi(argv[2]), conns = atoi(argv[3]); double secs = atof(argv[4]);
    int fds[64];
    reqlen = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
    { int fd = dial(port); send(fd, req, reqlen, 0); usleep(100000);
      resplen = recv(fd, buf[0], sizeof buf[0], 0); close(fd); }
    for (int i = 0; i < conns; i++) fds[i] = dial(port);
    double end = now() + secs, start = now();
    if (!strcmp(argv[1], "epoll")) {
        int ep = epoll_create1(0); struct epoll_event ev, evs[64];
        for (int i = 0; i < conns; i++) {
            ev.events = EPOLLIN; ev.data.u32 = i; epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
            send(fds[i], req, reqlen, MSG_NOSIGNAL);
        }
        while (now() < end) {
            int n = epoll_wait(ep, evs, 64, 100);
            for (int k = 0; k < n; k++) {
                int i = evs[k].data.u32;
                long r = recv(fds[i], buf[i], sizeof buf[i], MSG_DONTWAIT);
                if (r > 0 && account(i, r)) send(fds[i], req, reqlen, MSG_NOSIGNAL);
            }
        }
    } else {
        struct io_uring ring; struct io_uring_params p; memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN;
        if (io_uring_queue_init_params(256, &ring, &p) < 0) { perror("io_uring"); return 1; }
        for (int i = 0; i < conns; i++) {
            struct io_uring_sqe *s = io_uring_get_sqe(&ring);
            io_uring_prep_send(s, fds[i], req, reqlen, MSG_NOSIGNAL); s->user_data = 1000 + i;
            s = io_uring_get_sqe(&ring);
            io_uring_prep_recv(s, fds[i], buf[i], sizeof buf[i], 0); s->user_data = i;
        }
        while (now() < end) {
            struct io_uring_cqe *cqe; unsigned head, seen = 0;
            io_uring_submit_and_wait(&ring, 1);
            io_uring_for_each_cqe(&ring, head, cqe) {
                seen++;
                if (cqe->user_data >= 1000) continue;  /* a send's completion */
                int i = cqe->user_data;
                if (cqe->res > 0 && account(i, cqe->res)) {
                    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
                    io_uring_prep_send(s, fds[i], req, reqlen, MSG_NOSIGNAL); s->user_data = 1000 + i;
                }
                struct io_uring_sqe *s = io_uring_get_sqe(&ring);
                io_uring_prep_recv(s, fds[i], buf[i], sizeof buf[i], 0); s->user_data = i;
            }
            io_uring_cq_advance(&ring, seen);
        }
    }
    printf("%s: %.0f req/s\n", argv[1], done / (now() - start));
    return 0;
}
