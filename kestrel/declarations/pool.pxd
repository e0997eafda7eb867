# Declarations of the buffer pool and pipes (pool.pxi).

cdef class BufferPool:
    cdef char** slabs
    cdef Py_ssize_t slab_count
    cdef char** free
    cdef Py_ssize_t free_count
    cdef Py_ssize_t total_blocks
    cdef int _add_slab(self) except -1
    cdef char* acquire(self) except NULL
    cdef void release(self, char* block) noexcept


cdef class Pipe:
    cdef BufferPool pool
    cdef char** blocks
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef Py_ssize_t head
    cdef Py_ssize_t tail
    cdef readonly Py_ssize_t size
    cdef int write(self, const char* data, Py_ssize_t length) except -1
    cdef int iovecs(self, iovec* iov, int max_count) noexcept
    cdef void take(self, char* out, Py_ssize_t n) noexcept
    cdef const char* front(self, Py_ssize_t* length) noexcept
    cdef void consume(self, Py_ssize_t n) noexcept
    cdef void clear(self) noexcept
