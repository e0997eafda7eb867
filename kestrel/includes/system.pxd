# System calls and constants the engine uses (Linux).

from libc.stdint cimport uint32_t, uint64_t

cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EAGAIN  # == EWOULDBLOCK on Linux
        EINTR
        ECONNABORTED
        EMFILE
        ENFILE
        ENOBUFS
        ENOMEM
        EPROTO
        EPIPE
        ECONNRESET
        EINPROGRESS

cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t "epoll_data":
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len
    ssize_t writev(int fd, const iovec* iov, int iovcnt)

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    enum:
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        SOL_SOCKET
        SO_LINGER
        SHUT_WR
        SHUT_RDWR
        MSG_NOSIGNAL
    struct linger:
        int l_onoff
        int l_linger
    int accept4(int sockfd, sockaddr* addr, socklen_t* addrlen, int flags)
    int setsockopt(int sockfd, int level, int optname, const void* optval, socklen_t optlen)
    ssize_t send(int sockfd, const void* buf, size_t len, int flags)
    ssize_t recv(int sockfd, void* buf, size_t len, int flags)
    int shutdown(int sockfd, int how)
    enum:
        SOCK_STREAM
        SO_ERROR
    int socket(int domain, int type, int protocol)
    int connect(int sockfd, const sockaddr* addr, socklen_t addrlen)
    int getsockopt(int sockfd, int level, int optname, void* optval, socklen_t* optlen)

cdef extern from "<netinet/in.h>" nogil:
    enum:
        IPPROTO_TCP

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY
        TCP_NOTSENT_LOWAT

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<sys/socket.h>" nogil:
    struct sockaddr_storage:
        unsigned short ss_family
    enum:
        AF_INET
        AF_INET6
    int getpeername(int sockfd, sockaddr* addr, socklen_t* addrlen)

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        unsigned short sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    unsigned short ntohs(unsigned short)

cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)

from posix.types cimport off_t

cdef extern from "<sys/sendfile.h>" nogil:
    ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    enum:
        CLOCK_MONOTONIC
    int clock_gettime(int clock_id, timespec* tp)

cdef extern from "<sys/ioctl.h>" nogil:
    int ioctl(int fd, unsigned long request, ...)

cdef extern from "<linux/sockios.h>" nogil:
    enum:
        SIOCOUTQ  # bytes in a socket's send queue not yet acknowledged by the peer

cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass
    enum:
        SIG_SETMASK
    int sigfillset(sigset_t* set)
    int pthread_sigmask(int how, const sigset_t* set, sigset_t* oldset)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLIN
    int ppoll(pollfd* fds, unsigned long nfds, const timespec* timeout, const sigset_t* sigmask)

cdef extern from "<sys/eventfd.h>" nogil:
    ctypedef uint64_t eventfd_t
    enum:
        EFD_CLOEXEC
    int eventfd(unsigned int initval, int flags)
    int eventfd_write(int fd, eventfd_t value)

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_attr_t:
        pass
    int pthread_create(pthread_t* thread, const pthread_attr_t* attr,
                       void* (*start)(void*) noexcept nogil, void* arg)
    int pthread_join(pthread_t thread, void** retval)
    pthread_t pthread_self()
    int pthread_equal(pthread_t a, pthread_t b)
