# The buffer pool and the pipes built on it.
#
# Theory of operation
# -------------------
# Every byte the engine holds for a connection (input it cannot process yet, output the
# socket has not taken) sits in fixed 4 KiB blocks from one BufferPool per server. Blocks are
# carved from 1 MiB slabs, preallocated at start and grown a slab at a time; a free block goes
# back on a stack, so steady-state traffic allocates nothing. Slabs are never returned to the
# system: the pool does not shrink below what a burst made it (and so never below the
# preallocation).
#
# A Pipe is a FIFO of blocks: writes copy into the tail, the head is consumed from the front,
# and a block is released the moment it is empty. A connection with nothing pending holds no
# block at all.

from kestrel.includes.system cimport iovec

cdef enum:
    BLOCK_SIZE = 4096
    SLAB_BLOCKS = 256           # 1 MiB per slab
    PREALLOCATED_SLABS = 1
    MAX_IOVEC = 64              # blocks per writev (256 KiB)


cdef class BufferPool:
    """Fixed-size blocks from slabs, with a free stack."""

    def __cinit__(self, Py_ssize_t preallocated_slabs=PREALLOCATED_SLABS):
        self.slabs = NULL
        self.slab_count = 0
        self.free = NULL
        self.free_count = 0
        self.total_blocks = 0
        for _ in range(preallocated_slabs):
            self._add_slab()

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.slab_count):
            free(self.slabs[i])
        free(self.slabs)
        free(self.free)

    cdef int _add_slab(self) except -1:
        cdef char* slab = <char*>malloc(SLAB_BLOCKS * BLOCK_SIZE)
        cdef char** slabs
        cdef char** free_stack
        cdef Py_ssize_t i
        if slab == NULL:
            raise MemoryError()
        slabs = <char**>realloc(self.slabs, (self.slab_count + 1) * sizeof(char*))
        free_stack = <char**>realloc(self.free, (self.total_blocks + SLAB_BLOCKS) * sizeof(char*))
        if slabs == NULL or free_stack == NULL:
            free(slab)
            if slabs != NULL:
                self.slabs = slabs
            if free_stack != NULL:
                self.free = free_stack
            raise MemoryError()
        self.slabs = slabs
        self.free = free_stack
        self.slabs[self.slab_count] = slab
        self.slab_count += 1
        # Push in reverse so blocks are handed out in address order.
        for i in range(SLAB_BLOCKS - 1, -1, -1):
            self.free[self.free_count] = slab + i * BLOCK_SIZE
            self.free_count += 1
        self.total_blocks += SLAB_BLOCKS
        return 0

    cdef char* acquire(self) except NULL:
        if self.free_count == 0:
            self._add_slab()
        self.free_count -= 1
        return self.free[self.free_count]

    cdef void release(self, char* block) noexcept:
        self.free[self.free_count] = block
        self.free_count += 1

    @property
    def blocks_total(self):
        return self.total_blocks

    @property
    def blocks_free(self):
        return self.free_count

    @property
    def blocks_in_use(self):
        return self.total_blocks - self.free_count


cdef class Pipe:
    """A FIFO of pooled blocks."""

    def __cinit__(self, BufferPool pool):
        if KESTREL_DEBUG:
            _debug_count("pipe_alloc", 1)
        self.pool = pool
        self.blocks = NULL
        self.count = 0
        self.capacity = 0
        self.head = 0
        self.tail = BLOCK_SIZE
        self.size = 0

    def __dealloc__(self):
        self.clear()
        free(self.blocks)
        if KESTREL_DEBUG:
            _debug_count("pipe_free", 1)

    cdef int write(self, const char* data, Py_ssize_t length) except -1:
        cdef Py_ssize_t room, n
        cdef char** grown
        while length > 0:
            if self.tail == BLOCK_SIZE:
                if self.count == self.capacity:
                    grown = <char**>realloc(self.blocks,
                                            (self.capacity * 2 + 4) * sizeof(char*))
                    if grown == NULL:
                        raise MemoryError()
                    self.blocks = grown
                    self.capacity = self.capacity * 2 + 4
                self.blocks[self.count] = self.pool.acquire()
                self.count += 1
                self.tail = 0
            room = BLOCK_SIZE - self.tail
            n = length if length < room else room
            memcpy(self.blocks[self.count - 1] + self.tail, data, n)
            self.tail += n
            self.size += n
            data += n
            length -= n
        return 0

    cdef int iovecs(self, iovec* iov, int max_count) noexcept:
        """Describe up to max_count blocks of pending bytes, front first."""
        cdef int i, n = 0
        for i in range(self.count):
            if n == max_count:
                break
            iov[n].iov_base = self.blocks[i] + (self.head if i == 0 else 0)
            iov[n].iov_len = ((self.tail if i == self.count - 1 else BLOCK_SIZE)
                              - (self.head if i == 0 else 0))
            n += 1
        return n

    cdef void take(self, char* out, Py_ssize_t n) noexcept:
        """Copy n bytes (no more than size) from the front into out, and consume them."""
        cdef Py_ssize_t length, step
        cdef const char* data
        while n > 0:
            data = self.front(&length)
            step = n if n < length else length
            memcpy(out, data, step)
            self.consume(step)
            out += step
            n -= step

    cdef const char* front(self, Py_ssize_t* length) noexcept:
        """The contiguous bytes at the front (the rest of the first block)."""
        if self.count == 0:
            length[0] = 0
            return NULL
        length[0] = (self.tail if self.count == 1 else BLOCK_SIZE) - self.head
        return self.blocks[0] + self.head

    cdef void consume(self, Py_ssize_t n) noexcept:
        """Drop n bytes from the front, releasing blocks as they empty."""
        cdef Py_ssize_t in_first, i, dropped = 0
        self.size -= n
        while n > 0 and self.count > 0:
            in_first = (self.tail if self.count == 1 else BLOCK_SIZE) - self.head
            if n < in_first:
                self.head += n
                break
            n -= in_first
            self.pool.release(self.blocks[dropped])
            dropped += 1
            self.head = 0
            if dropped == self.count:
                self.tail = BLOCK_SIZE
        if dropped:
            self.count -= dropped
            for i in range(self.count):
                self.blocks[i] = self.blocks[i + dropped]
            if self.count == 0:
                self.head = 0
                self.tail = BLOCK_SIZE

    cdef void clear(self) noexcept:
        cdef Py_ssize_t i
        for i in range(self.count):
            self.pool.release(self.blocks[i])
        self.count = 0
        self.head = 0
        self.tail = BLOCK_SIZE
        self.size = 0
