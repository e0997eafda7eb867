# The service context: what every connection's processor shares from its server.
#
# Theory of operation
# -------------------
# An HTTP/1 processor reads its limits, the app, the shared output buffer and response writer,
# and the counters from a ServiceContext (Kestrel's name for the same thing), and starts its
# handlers through it. HttpServer (server.pxi) is the ServiceContext that also owns the
# sockets, the connection table and the heartbeat; the processor knows only this base, so the
# server depends on the processor and not the other way round.


cdef class ServiceContext:
    """The server as its connections see it (see the theory above)."""

    cdef HttpParser _new_parser(self):
        return HttpParser(max_request_line_size=self.max_request_line_size,
                          max_request_headers_size=self.max_request_headers_size,
                          max_request_headers=self.max_request_headers,
                          max_request_body_size=self.max_parser_body_size)

    cdef HttpParser _take_parser(self):
        """A parser at the start of a message: a spare one, or a new one."""
        cdef HttpParser parser
        if self.spare_count:
            self.spare_count -= 1
            parser = <HttpParser>self.spare_parsers[self.spare_count]
            Py_DECREF(parser)  # the array's reference (the cast above took one of its own)
            return parser
        return self._new_parser()

    cdef void _give_parser(self, HttpParser parser):
        """Take back a parser between messages (state S_START_LINE, nothing buffered). It
        forgets the last head, so no request's objects stay alive through it, and frees its
        line buffer. The spares are
        a C array, not a list: a keep-alive connection gives and takes one per request, and a
        list would resize on every pop and append."""
        parser.head = None
        parser._trailers = None
        parser.error_detail = None
        parser.release_line_buffer()
        if self.spare_count < MAX_SPARE_PARSERS:
            Py_INCREF(parser)
            self.spare_parsers[self.spare_count] = <PyObject*>parser
            self.spare_count += 1

    def __dealloc__(self):
        while self.spare_count:
            self.spare_count -= 1
            Py_DECREF(<object>self.spare_parsers[self.spare_count])

    cdef void connection_closed(self, Protocol processor) noexcept:
        self.connections.discard(processor)

    cdef object _start_handler(self, coro):
        """Run a handler's first step. None if it finished there (its result is in
        step_result); otherwise the Task now running it."""
        global _step_task, _step_coro, _step_context, _step_cancelled
        cdef PyObject* sent = NULL
        cdef int how
        cdef bint cancelled, unkept
        if not FIRST_STEP_WITHOUT_TASK:
            return self._start_task(coro)
        loop = self.loop
        task = self.spare_task
        if task is None:
            task = _type_new(RequestTask, _EMPTY_TUPLE)
        else:
            self.spare_task = None
        context = PyContext_CopyCurrent()
        if PyDict_SetDefault(_current_tasks, loop, task) != <PyObject*>task:
            # Called from inside another task's step: asyncio allows one current task, so
            # this handler gets a Task of its own from the start. (So first steps never
            # nest, and one record of the running step is enough.)
            self.spare_task = task
            return self._start_task(coro)
        _step_task, _step_coro, _step_context, _step_cancelled = task, coro, context, False
        PyContext_Enter(context)
        try:
            how = PyIter_Send(coro, None, &sent)
        finally:
            PyContext_Exit(context)
            cancelled = _step_cancelled
            _step_task = _step_coro = _step_context = None
            if PyDict_GetItemWithError(_current_tasks, loop) == <PyObject*>task:
                PyDict_DelItem(_current_tasks, loop)
            # Nothing kept this Task (no reference, weak reference or attribute)?
            unkept = Py_REFCNT(task) == 1 and _task_is_bare(task)
            if not unkept:
                # It outlives its step (whether the step returned, raised or suspended): it
                # answers for itself now.
                task.kestrel_coro = coro
                task.kestrel_context = context
        value = <object>sent
        Py_DECREF(value)
        if how == 0:
            self.step_result = value
            if unkept:
                # The next request's first step can use the same object, unallocated anew.
                self.spare_task = task
            return None
        # Suspended on `value`: the Task takes it from here, in the same context.
        if unkept:
            task.kestrel_coro = coro
            task.kestrel_context = context
        _task_init(task, _Continuation(coro, value), loop=loop, context=context,
                   name=TASK_NAME)
        if cancelled:
            asyncio.Task.cancel(task, task.kestrel_cancel[0])
        return task

    cdef object _start_task(self, coro):
        global _eager_step
        if EAGER_TASKS_NATIVE:
            return self.task_class(coro, loop=self.loop, eager_start=True, name=TASK_NAME)
        _eager_step = True
        try:
            # A name given up front spares 3.11 formatting "Task-N" for every request.
            return self.task_class(coro, loop=self.loop, name=TASK_NAME)
        finally:
            _eager_step = False
