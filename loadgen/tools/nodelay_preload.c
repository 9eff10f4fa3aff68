/* An experiment, not part of the product: LD_PRELOAD this into `toolgate serve` to see what the
 * gateway's figures would be with TCP_NODELAY on its accepted connections (the one-line fix
 * `listener.tap_io(|tcp| { let _ = tcp.set_nodelay(true); })` in server/src/lib.rs), without
 * rebuilding it. Every socket returned by accept/accept4 gets TCP_NODELAY.
 *
 *   cc -O2 -shared -fPIC -o target/nodelay_preload.so loadgen/tools/nodelay_preload.c -ldl
 *   make bench-proxy BENCH_PROXY_ARGS="--gateway-env LD_PRELOAD=$PWD/target/nodelay_preload.so"
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd) {
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on non-TCP */
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    int c = real(fd, addr, len, flags);
    nodelay(c);
    return c;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real)
        real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    int c = real(fd, addr, len);
    nodelay(c);
    return c;
}
