# A handler's first step without a Task, and the event loop class.
#
# Theory of operation
# -------------------
# See the section below: a handler that finishes in its first step (most do) costs no Task.
# KestrelEventLoop is asyncio's SelectorEventLoop on the engine's EpollSelector; on 3.11 it
# also runs a Task's first step in place when the engine asks (there are no eager tasks).

EAGER_TASKS_NATIVE = sys.version_info >= (3, 12)
TASK_NAME = "kestrel-request"


# ---- A handler's Task, paid for only if the handler suspends.
#
# Measured on this engine (perf/bench_dispatch.py, GET / pipelined 16 deep, one core): an
# eager asyncio Task per request costs 0.6 us on 3.12/3.13 and 0.75 us on 3.11 (2.9 -> 2.2
# us per request without it), most of it in Task.__init__ (argument parsing, the Future's
# get_debug() call, registration, scheduling) and in reading the result back.
#
# So the first step of a handler runs without initializing a Task: the engine allocates a
# RequestTask (tp_new only), makes it the loop's current task, and sends into the coroutine
# itself, in a copy of the context as a Task would. A handler that finishes there (most do)
# never initializes it. One that suspends gets that same object initialized (Task.__init__)
# around a continuation that resumes the coroutine where it stopped, so every reference taken
# during the first step (asyncio.timeout, TaskGroup, anyio's cancel scopes key on it) is the
# Task that runs the rest. current_task(), cancellation and asyncio.timeout behave as in any
# Task. Until it outlives its step, the RequestTask answers get_coro() and get_context() from
# one record of the running step, and a RequestTask that nothing kept (no reference, weak
# reference or attribute: the handler finished and let it go) is used again for the next
# request, so a handler that never suspends costs no Task allocation, GC tracking or
# finalizer call either.
#
# A Task that was never initialized crashes CPython in get_coro() (3.11, 3.12) and
# get_context() (3.12, 3.13), and refuses get_loop() and repr(); RequestTask answers those
# itself until it is initialized. Verified on 3.11, 3.12 and 3.13 (tests/test_engine.py);
# other versions use an ordinary eager Task.
FIRST_STEP_WITHOUT_TASK = (3, 11) <= sys.version_info[:2] <= (3, 13)

cdef extern from "Python.h":
    int PyIter_Send(object iter, object arg, PyObject** presult) except? -1
    object PyContext_CopyCurrent()
    int PyContext_Enter(object context) except -1
    int PyContext_Exit(object context) except -1
    void Py_DECREF(object o)
    Py_ssize_t Py_REFCNT(object o)
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL
    int PyDict_DelItem(object d, object key) except -1

cdef extern from *:
    """
    /* True if nothing but references can reach `o`: no weak reference and no instance
       __dict__ (a Task's attributes live there), so an unreferenced one can be reused.
       The weak reference list is at tp_weaklistoffset, which is negative (before the
       object) for 3.13's managed weak references; _PyObject_GetDictPtr finds a managed
       dict too (RequestTask has no inline values, so it does not create one). */
    static int kestrel_task_is_bare(PyObject *o) {
        PyTypeObject *type = Py_TYPE(o);
        PyObject **dict;
        if (type->tp_weaklistoffset != 0
                && *(PyObject **)((char *)o + type->tp_weaklistoffset) != NULL)
            return 0;
        dict = _PyObject_GetDictPtr(o);
        return dict == NULL || *dict == NULL;
    }
    """
    bint _task_is_bare "kestrel_task_is_bare" (object o)

# The dict asyncio's C current_task(), _enter_task() and _leave_task() use on 3.11-3.13 (the
# only versions that run a first step without a Task): set and cleared here directly, which
# spares two calls through the argument parser per request.
cdef dict _current_tasks = asyncio.tasks._current_tasks

cdef object _task_init = asyncio.Task.__init__
cdef object _task_loop = asyncio.Task._loop.__get__

# The first step running now, which a RequestTask with no coroutine of its own answers for.
# First steps never nest (one that starts inside another task's step gets a real Task), so
# one record is enough; a RequestTask takes its own copy when it outlives its step.
cdef object _step_task = None
cdef object _step_coro = None
cdef object _step_context = None
cdef bint _step_cancelled = False


class RequestTask(asyncio.Task):
    """The Task a request handler runs as (see above: initialized only if it suspends)."""

    __slots__ = ("kestrel_coro", "kestrel_context", "kestrel_cancel")

    def get_coro(self):
        if self is _step_task:
            return _step_coro
        return self.kestrel_coro  # the handler's coroutine, not the continuation around it

    def get_context(self):
        if self is _step_task:
            return _step_context
        return self.kestrel_context

    def get_name(self):
        if _task_loop(self) is None:
            return TASK_NAME
        return asyncio.Task.get_name(self)

    def get_loop(self):
        if _task_loop(self) is None:
            return asyncio.get_running_loop()
        return asyncio.Task.get_loop(self)

    def cancel(self, msg=None):
        if _task_loop(self) is None:
            # Cancelled during its own first step: delivered once it is a running Task (if
            # the handler finishes in that step instead, there is nothing left to cancel).
            global _step_cancelled
            if self is _step_task:
                # Read by _start_handler for this step only: a reused RequestTask may still
                # hold an earlier request's kestrel_cancel.
                _step_cancelled = True
            self.kestrel_cancel = (msg,)
            return True
        return asyncio.Task.cancel(self, msg)

    def __repr__(self):
        if _task_loop(self) is None:
            return f"<RequestTask {TASK_NAME} running its first step coro={self.get_coro()!r}>"
        return asyncio.Task.__repr__(self)


cdef object _NOTHING = object()


cdef class _Continuation:
    """The coroutine a RequestTask runs once its handler suspended in the first step.

    The handler's coroutine is already started, so a Task cannot take it directly (its first
    send would resume it too early). This object is the coroutine the Task drives instead: the
    first send hands the Task what the handler yielded; after that every send, and every
    throw (cancellation, even before that first send), goes straight into the handler.
    """

    cdef object coro
    cdef object pending

    def __cinit__(self, coro, yielded):
        self.coro = coro
        self.pending = yielded

    def send(self, value):
        pending = self.pending
        if pending is not _NOTHING:
            self.pending = _NOTHING
            return pending
        return self.coro.send(value)

    def throw(self, exc, *args):
        self.pending = _NOTHING
        return self.coro.throw(exc, *args)

    def close(self):
        self.pending = _NOTHING
        self.coro.close()

    def __next__(self):
        return self.send(None)

    def __iter__(self):
        return self

    def __await__(self):
        return self


collections.abc.Coroutine.register(_Continuation)


# Set by HttpServer._start_task just around creating a Task on Python 3.11 (see below). A
# C global rather than a loop attribute: it is written twice per request. The loop is
# single-threaded, so one flag serves every loop in the process at a time.
cdef bint _eager_step = False


class KestrelEventLoop(asyncio.SelectorEventLoop):
    """asyncio's event loop on the engine's epoll selector."""

    def __init__(self):
        super().__init__(selector=EpollSelector())

    if not EAGER_TASKS_NATIVE:
        # Python 3.11 has no eager tasks. A Task schedules its first step with call_soon
        # from its constructor; when the engine asks for it, that step runs right here
        # instead, which is exactly what 3.12's eager_start does.
        def call_soon(self, callback, *args, context=None):
            global _eager_step
            if _eager_step:
                _eager_step = False
                if context is None:
                    callback(*args)
                else:
                    context.run(callback, *args)
                return None
            return super().call_soon(callback, *args, context=context)
