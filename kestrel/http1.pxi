# The HTTP/1 processor: one connection's requests, from the bytes its transport hands up to the
# responses it hands down.
#
# Theory of operation
# -------------------
# Http1Processor is its transport's protocol (transport.pxi). It runs the parser over each read;
# a RequestHead starts the handler at once (the body, if any, streams in behind it to the
# request's RequestBody). Once the message is complete, parsing stops, and whatever follows
# (pipelined requests) is kept in held_in until the response is out. Responses are serialized
# into the server's output buffer by the response writer (response_writer.pxi, which alone
# decides framing) and handed to the transport, which sends them and holds what the peer did
# not take.
#
# The request state is one enum, `state` (consts.pxi), changed only by _enter():
#
#   IDLE --head--> READING --message end--> HANDLING --response out--> IDLE
#                     |                                      (the next held request, if any)
#                     +--response out first--> DRAINING --message end--> IDLE
#   any --must close, output sent--> LINGERING --client closes, or linger time--> CLOSED
#   HANDLING --upgrade--> UPGRADED (bytes bypass the parser)
#
# Once a request has had its response (DRAINING), nothing found in the rest of its message is
# ever answered: a framing error there closes the connection silently. Besides the state, a
# connection has one decision, `closing` (no further request will be taken: the response says
# Connection: close), and one per-request fact, `continue_sent`. Which deadline applies is
# derived from the state (_deadline_kind; timeouts.pxi has the rest of timeout control).
#
# Input flow control: once held input plus body bytes the handler has not read reach
# max_request_buffer_size (1 MiB), the transport stops reading; the handler reading its body
# below half of that resumes it. TCP's window then holds the client back, so a fast client and
# a slow handler never make the server buffer without bound. Output flow control: a streamed
# response's producer waits while the transport holds more than max_response_buffer_size, and
# resumes below half of it (write_ready).
#
# Per request, the Python API is used only for what a handler is handed and runs on: the
# RequestHead and header tuples (parser.pxi), the Request and RequestBody objects, the call to
# the app, its first step (handler_step.pxi: a Task only if it suspends), and the result's type
# checks. Reading, parsing, serializing the response and sending are C. In `cython -a` the other
# yellow lines of this file are exception handlers and logging, which run only on errors.
#
# A body the handler did not read is drained after the response was written: the response
# always goes out first, and the unread bytes are parsed as body, never as a request. An abort
# resets the connection (the transport's abort: SO_LINGER 0 on a socket).

END_REASONS = ("client_closed", "connection_close", "keep_alive_timeout", "headers_timeout",
               "body_rate", "response_rate", "drain_timeout", "drain_limit", "rejected",
               "shutdown", "error")


cdef object _route_of(Request request):
    """How a log line names the request: the framework's route template, else the path."""
    if request is None:
        return "-"
    route = request.route
    if route is None:
        route = request.head.target.decode("latin-1")
    return f"{request.head.method} {route}"


def _contract_warning(Http1Processor processor, str message, *args):
    """One line per violation of the request contract, naming the route and the client."""
    try:
        peer = processor.peer_address()
        route = (_route_of(processor.current) if processor.current is not None
                 else processor.drain_route or "-")
        _log.warning("%s from %s: " + message, route,
                     f"{peer[0]}:{peer[1]}" if peer else "-", *args)
    except Exception:
        pass  # a log line must never take the connection down


cdef bint _awaits_continue(Http1Processor processor, Request request):
    return (request.head.expect_continue and not processor.continue_sent
            and request.head.http_version is V_11)


cdef str _unread_description(Http1Processor processor, Request request):
    if _awaits_continue(processor, request):
        return "a body it never asked for (Expect: 100-continue)"
    if request.head.content_length >= 0:
        return f"{request.head.content_length - request._body().received} bytes of the body"
    return "the rest of a chunked body"


cdef int _end_of_error(int error) noexcept:
    """Why a connection ended, from the errno its transport reported."""
    return END_CLIENT_CLOSED if error == ECONNRESET or error == EPIPE else END_ERROR


cdef class Http1Processor(RequestOwner):
    """One client connection's HTTP/1.x requests (see the theory above)."""

    def __cinit__(self, ServiceContext context, Transport transport):
        if KESTREL_DEBUG:
            _debug_count("connection_alloc", 1)
        self.context = context
        self.transport = transport
        transport.protocol = self
        self.body_limit = context.max_request_body_size
        self.state = PS_IDLE
        self.end_reason = -1
        self.file_fd = -1
        # A new connection is idle until its first byte: the keep-alive timeout applies, as
        # in Kestrel; the headers timeout starts with that first byte.
        self._update_deadline()

    def __dealloc__(self):
        if KESTREL_DEBUG:
            _debug_count("connection_free", 1)

    # ---- What a request asks of its connection (RequestOwner).

    cdef object peer_address(self):
        return self.transport.peer_address()

    cdef Pipe new_pipe(self):
        return Pipe(self.transport.io.pool)

    cdef void body_consumed(self):
        """The handler took body bytes: resume reading below the low watermark."""
        if (self.transport.reading_paused and self.state < PS_LINGERING
                and self._input_held() < self.context.min_request_buffer_size):
            self.transport.resume_reading()

    cdef int send_continue(self) except -1:
        if self.continue_sent or self.state == PS_CLOSED:
            return 0
        self.continue_sent = True
        self.context.out.append(b"HTTP/1.1 100 Continue\r\n\r\n", 25)
        self._flush()
        return 0

    # ---- The state.

    cdef void _enter(self, int state):
        """The one place the state changes; the deadline follows from it."""
        if KESTREL_DEBUG:
            _check_transition(self.state, state)
        self.state = state
        self._update_deadline()

    cdef int _deadline_kind(self) noexcept:
        """Which deadline applies now, derived from the state (timeouts.pxi)."""
        cdef int state = self.state
        if state == PS_READING or state == PS_HANDLING:
            return DL_NONE  # a request in flight: its rates apply, not a deadline
        if state == PS_IDLE:
            if self.file_fd >= 0 or (self.transport.held_out is not None
                                     and self.transport.held_out.size):
                # A response is still going out (the response rate watches that): the idle
                # clock starts when the connection is really idle.
                return DL_NONE
            if ((self.parser is None or (self.parser.state == S_START_LINE
                                         and self.parser.line_len == 0))
                    and (self.held_in is None or self.held_in.size == 0)):
                return DL_KEEP_ALIVE
            return DL_HEADERS
        if state == PS_DRAINING:
            return DL_DRAIN if self.drain_left >= 0 else DL_NONE
        if state == PS_LINGERING:
            return DL_LINGER
        return DL_NONE

    cdef void _update_deadline(self) noexcept:
        cdef int kind = self._deadline_kind()
        if kind != self.deadline.kind:
            deadline_arm(&self.deadline, kind, self.context.timeouts[kind])
            self.last_unsent = 0

    cdef void _end(self, int reason):
        """Record why this connection ends; the first reason given is the one counted."""
        if self.end_reason < 0:
            self.end_reason = reason

    # ---- Input (Protocol).

    cdef void data_received(self, char* data, Py_ssize_t size):
        if self.state >= PS_LINGERING:
            if self.state == PS_UPGRADED:
                self._upgraded_input(PyBytes_FromStringAndSize(data, size))
            return  # lingering: discarded
        if self.held_in is not None and self.held_in.size:
            self.held_in.write(data, size)
            self._process_held()
        else:
            self._process(data, size)
        self._flush()  # and the deadline follows (write_ready)
        self._check_input_watermark()
        if self.state == PS_IDLE and self.parser is not None:
            self._park_parser()

    cdef void eof_received(self):
        """The client will send nothing more (it may still read: a half-close).

        Requests it already sent in full are still answered, and what is queued for it is
        still sent; the connection closes after that.
        """
        if self.state == PS_LINGERING:
            self._end(END_CLIENT_CLOSED)
            self.close()
        elif self.state == PS_UPGRADED:
            self._upgraded_input(b"")
        elif self.state == PS_READING:
            self.current._fail_body(ClientDisconnect("the client closed the connection mid-body"))
        elif self.current is None:
            self._input_idle()

    cdef void connection_lost(self, int error):
        self._end(_end_of_error(error) if error else END_ERROR)
        self.close()

    cdef void _process_held(self):
        """Parse held input, block by block, as far as requests may be processed."""
        cdef Pipe held = self.held_in
        cdef Py_ssize_t length, used
        cdef const char* data
        while held.size and self.state < PS_LINGERING:
            data = held.front(&length)
            used = self._process_ptr(<char*>data, length)
            if self.state == PS_UPGRADED:
                held.consume(used)
                self._feed_upgraded()  # a handler upgraded in its first step
                break
            if self.state >= PS_LINGERING:
                break  # closing: held input was released, nothing more is parsed
            held.consume(used)
            if used < length:
                break

    cdef void _process(self, char* data, Py_ssize_t size):
        """Parse freshly read bytes; hold what cannot be processed yet."""
        cdef Py_ssize_t used = self._process_ptr(data, size)
        if used < size and (self.state < PS_LINGERING or self.state == PS_UPGRADED):
            if self.held_in is None:
                self.held_in = Pipe(self.transport.io.pool)
            self.held_in.write(data + used, size - used)
        if self.state == PS_UPGRADED:
            self._feed_upgraded()  # a handler upgraded in its first step

    cdef Py_ssize_t _input_held(self) noexcept:
        """Bytes received and not yet taken by the handler or the parser."""
        cdef Py_ssize_t held = self.held_in.size if self.held_in is not None else 0
        if self.current is not None and self.current.body_stream is not None:
            held += self.current.body_stream.queued()
        return held

    cdef void _check_input_watermark(self):
        """Stop reading at the high watermark, so input is never buffered without bound."""
        if (not self.transport.reading_paused and self.state < PS_LINGERING
                and self._input_held() >= self.context.max_request_buffer_size):
            self.transport.pause_reading()

    cdef Py_ssize_t _process_ptr(self, char* data, Py_ssize_t size):
        """Run the parser over data while requests may be processed; return bytes used."""
        cdef bint was_going_on = self.going_on
        cdef Py_ssize_t used
        self.going_on = True
        used = self._parse_ptr(data, size)
        self.going_on = was_going_on
        return used

    cdef Py_ssize_t _parse_ptr(self, char* data, Py_ssize_t size):
        cdef HttpParser parser = self.parser
        cdef Py_ssize_t pos = 0
        cdef int event
        if parser is None and (self.state < PS_HANDLING or self.state == PS_DRAINING):
            # An idle connection gave its parser back (_park_parser): a spare one, at the
            # start of a message as that one was, takes over.
            parser = self.parser = self.context._take_parser()
        while self.state < PS_HANDLING or self.state == PS_DRAINING:
            if parser.state == S_ERROR:
                return size  # refused already: the rest is not looked at
            event = parser.execute(data + pos, size - pos)
            pos += parser.consumed
            if event == EV_NEED_DATA:
                break
            if event == EV_HEADERS:
                self._start_request(parser.head)
            elif event == EV_BODY:
                if self.state == PS_READING:
                    self.current._body().feed(parser.body_ptr, parser.body_len)
                elif self.drain_left >= 0:
                    # The handler answered without reading it: discarded, within the budget.
                    self.drain_left -= parser.body_len
                    if self.drain_left < 0:
                        self._end(END_DRAIN_LIMIT)
                        _contract_warning(self, "an unread request body went past the drain "
                                                "budget of %d bytes; closing the connection",
                                          self.context.max_drain_size)
                        self.closing = True
                        self._close_if_done()
                        break
            elif event == EV_MESSAGE_END:
                if self.state == PS_READING:
                    self._enter(PS_HANDLING)
                    if self.current.body_stream is not None:
                        self.current.body_stream.finish()
                else:  # the rest of an answered request: the connection is free again
                    if self.drain_left >= 0:
                        self.context.drained_bodies += 1
                    self.drain_left = -1
                    self._enter(PS_IDLE)
                    if self.closing:
                        self._close_if_done()
                        break
            elif event == EV_PAUSED:
                # Connection: close, HTTP/1.0, or an upgrade kestrel does not perform: what
                # follows is not read. Close once the response is out.
                self._end(END_CONNECTION_CLOSE)
                self.closing = True
                if self.current is None:
                    self._close_if_done()
                break
            else:
                self._reject(parser.error_reason)
                break
        return pos

    # ---- Requests and their handlers.

    cdef void _start_request(self, RequestHead head):
        cdef ServiceContext context = self.context
        cdef Request request
        cdef RequestBody body
        cdef object request_class = context.request_class
        if request_class is Request:
            request = Request.__new__(Request)
        else:
            # A framework subclass: its type's tp_new directly, as __new__ would, minus
            # the attribute lookup and call.
            request = <Request>_type_new(request_class, _EMPTY_TUPLE)
        if KESTREL_DEBUG:
            _debug_count("request_alloc", 1)
        request.head = head
        request.connection = self
        if head.content_length == 0 or (head.content_length < 0 and not head.chunked):
            request.body_bytes = b""  # and no body stream unless one is asked for
        else:
            body = RequestBody.__new__(RequestBody)
            body.owner = self
            body.limit = context.max_request_body_size
            request.body_stream = body
        self.current = request
        self.continue_sent = False
        self.responded = False
        self._enter(PS_READING)  # the head is in; the body rate applies from here
        self.transport.reset_write_clock()
        context.requests_total += 1
        if head.method is M_CONNECT and not context.accepts_connect:
            # CONNECT asks for a tunnel (RFC 9110 §9.3.6), which only a proxy gives: refused
            # here rather than routed (the parser has stopped reading: what follows it would
            # be tunnel bytes, not requests). Counted as the refusal it is.
            if self.end_reason < 0:
                context.connections_rejected += 1
            self._end(END_REJECTED)
            self._handler_done(Response(b"Not Implemented: CONNECT", 501, None, _TEXT_PLAIN),
                               None)
            return
        if context.metrics_target is not None and head.target == context.metrics_target:
            self._handler_done(Response(context.metrics_renderer(), 200, None,
                                        b"text/plain; version=0.0.4; charset=utf-8"), None)
            return
        try:
            coro = context.app(request)
            task = context._start_handler(coro)
        except BaseException as exc:
            self._handler_done(None, exc)
            return
        if task is None:
            result = context.step_result
            context.step_result = None
            self._handler_done(result, None)
        elif task.done():
            self._task_result(task)
        else:
            self.task = task
            task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task):
        """A handler that suspended has finished: answer, then go on with held input."""
        if self.task is not task:
            return
        self.task = None
        if self.state == PS_CLOSED:
            return
        try:
            self.going_on = True
            try:
                self._task_result(task)
            finally:
                self.going_on = False
            self._after_response()
        except BaseException as exc:
            _log.exception("connection failed", exc_info=exc)
            self.abort()

    cdef void _task_result(self, task):
        # One call on the common path: result() raises what the handler raised (or
        # CancelledError), which _handler_done turns into the response.
        try:
            result = task.result()
        except BaseException as exc:
            self._handler_done(None, exc)
            return
        self._handler_done(result, None)

    cdef void _after_response(self):
        """After an asynchronous response: send it, then go on with held input."""
        if self.going_on:
            # The response finished inside a call that goes on by itself once it returns: the
            # parse that started its request, or _on_task_done (a streamed response or a file
            # sent in full at once). Parsing held input here would read the bytes that call
            # is still working on a second time.
            return
        if self.current is None and self.held_in is not None and self.state < PS_LINGERING:
            self._process_held()
        elif self.state == PS_UPGRADED:
            self._feed_upgraded()
        self._flush()
        if self.current is None and self.state < PS_LINGERING:
            self.body_consumed()
            self._input_idle()
        self._update_deadline()
        if self.state == PS_IDLE and self.parser is not None:
            self._park_parser()

    cdef void _handler_done(self, result, exc):
        cdef Request request = self.current
        cdef OutputBuffer out = self.context.out
        cdef Py_ssize_t mark = out.length
        cdef type kind
        if request is None:
            # The handler gave its connection to another protocol (upgrade()): the request
            # has no HTTP response, so whatever the handler returns is dropped (and what it
            # raised only logged: the bytes are the new protocol's now).
            if exc is not None and not isinstance(exc, asyncio.CancelledError):
                _log.error("handler raised after upgrading the connection", exc_info=exc)
            return
        if exc is None:
            try:
                kind = type(result)
                if kind is not Response and kind is not StreamingResponse and (
                        kind is not FileResponse):
                    result = to_response(result)
                if isinstance(result, Response):
                    self._write_response(request, (<Response>result).status,
                                         (<Response>result)._headers, (<Response>result).body,
                                         (<Response>result).content_type)
                elif isinstance(result, StreamingResponse):
                    # The body is sent by its own task; the request ends when it has been sent.
                    self._start_stream(request, <StreamingResponse>result)
                    return
                else:
                    if self._start_file(request, <FileResponse>result):
                        return  # the file is being sent; _send_file ends the request
            except Exception as error:
                # Nothing of a response that failed to serialize may reach the client.
                out.length = mark
                exc = error
        if exc is not None:
            self._write_error(request, exc)
        self._response_finished(request)

    cdef void _write_error(self, Request request, exc):
        """The response to a handler that raised (or a result that could not be sent)."""
        if isinstance(exc, HttpParseError):
            # The request body was refused while the handler read it (e.g. 413): the client
            # gets that status, and the connection closes, as for any rejection.
            status = exc.status
            self.closing = True
            self._write_response(request, status, None, REASON_PHRASES.get(status, b""),
                                 _TEXT_PLAIN)
        elif isinstance(exc, ClientDisconnect):
            # The client ended its side inside the body (a half-close: it may still read).
            # Its request is incomplete, which is the client's error (RFC 9112 §8), not a
            # crash: 400, and the connection closes.
            self.closing = True
            self._write_response(request, 400, None, b"Bad Request: incomplete request body",
                                 _TEXT_PLAIN)
        elif isinstance(exc, BadRequest):
            # Request.path found the target undecodable: the client's error, not a crash.
            self._write_response(request, 400, None, str(exc).encode(), _TEXT_PLAIN)
        elif isinstance(exc, InvalidResponseError):
            # Nothing of the response went out; the app's bug is named, with its route.
            _log.error("%s: the app's response was refused, 500 sent instead: %s",
                       _route_of(request), exc)
            self._write_response(request, 500, None, b"Internal Server Error", _TEXT_PLAIN)
        elif isinstance(exc, FileSendError):
            _log.error("%s: could not send %r", _route_of(request), exc.args[0],
                       exc_info=exc.__cause__)
            self._write_response(request, 500, None, b"Internal Server Error", _TEXT_PLAIN)
        else:
            if not isinstance(exc, asyncio.CancelledError):
                response = self._app_error_response(request, exc)
                if response is not None:
                    try:
                        self._write_response(request, response.status, response._headers,
                                             response.body, response.content_type)
                        return
                    except Exception as error:
                        _log.error("the app's error response to %r was refused", exc,
                                   exc_info=error)
                _log.error("handler raised for %s %s", request.head.method,
                           request.head.target.decode("latin-1"), exc_info=exc)
            self._write_response(request, 500, None, b"Internal Server Error", _TEXT_PLAIN)

    cdef Response _app_error_response(self, Request request, exc):
        """The app's own answer to an exception that escaped it, or None for a 500."""
        error_response = self.context.error_response
        if error_response is None or not isinstance(exc, Exception):
            return None
        try:
            response = error_response(request, exc)
        except Exception as error:
            _log.error("the app's error_response failed for %r", exc, exc_info=error)
            return None
        if response is not None and not isinstance(response, Response):
            _log.error("the app's error_response returned %r, not a Response", response)
            return None
        return response

    cdef int _write_response(self, Request request, int status, headers, bytes body,
                             content_type, long long length=-1) except -1:
        """Serialize a response through the writer. Body None writes only the head of a
        streamed or file body, whose length is `length` (-1: not known)."""
        cdef ServiceContext context = self.context
        cdef ResponseWriter writer = context.writer
        cdef OutputBuffer out = context.out
        cdef Py_ssize_t body_len = PyBytes_GET_SIZE(body) if body is not None else length
        cdef bint close = (self.closing or not request.head.keep_alive
                           or request.head.upgrade or context.shutting_down
                           or (self.state == PS_READING and not request._body_complete()
                               and _unread_body_closes(self, request)))
        self.responded = True
        writer.write_head(status, request.head.method is M_HEAD,
                          request.head.http_version is V_10, not close, headers, content_type,
                          body_len)
        if writer.close:
            self.closing = True
        if body_len > 0 and body is not None and writer.send_body:
            out.append(PyBytes_AS_STRING(body), body_len)
        context.responses_total += 1
        if context.access_log:
            peer = self.peer_address()
            _access_log.info('%s - "%s %s HTTP/%s" %d',
                             f"{peer[0]}:{peer[1]}" if peer else "-", request.head.method,
                             request.head.target.decode("latin-1"), request.head.http_version,
                             status)
        return 0

    cdef void _response_finished(self, Request request):
        """The whole response is queued: the connection may take the next request."""
        self.current = None
        if not request.head.keep_alive:
            self._end(END_CONNECTION_CLOSE)
            self.closing = True
        if self.state == PS_READING:
            # The handler did not read all of the body: what is buffered goes now, the rest
            # is drained as it arrives (or the connection closes: _start_drain). A request
            # without a body is only waiting for the parser to say so.
            self.drain_left = -1
            if not request._body_complete():
                request.body_stream.fail(ClientDisconnect("the response was already sent"))
                self._start_drain(request)
            self._enter(PS_DRAINING)
        else:
            if request.body_stream is not None:
                request.body_stream.discard()
            if self.state == PS_HANDLING:
                self._enter(PS_IDLE)
        if self.closing:
            self._close_if_done()

    # ---- Streamed responses, with output flow control.

    cdef void _start_stream(self, Request request, StreamingResponse response):
        cdef ServiceContext context = self.context
        cdef ResponseWriter writer = context.writer
        cdef bint chunked
        cdef long long declared
        try:
            self._write_response(request, response.status, response._headers, None,
                                 response.content_type)
        except Exception as error:
            # Nothing of the head was kept: the client gets a 500 instead.
            self._write_error(request, error)
            self._response_finished(request)
            return
        # A declared Content-Length is what the stream is held to.
        chunked = writer.framing == FRAME_CHUNKED
        declared = writer.length if writer.framing == FRAME_LENGTH else -1
        self._flush()
        if not writer.send_body:
            self._response_finished(request)
            return
        task = context._start_task(self._stream_body(request, response, chunked, declared))
        if task.done():
            # Sent in its first step, as a Response is (its caller goes on with held input).
            self._on_stream_done(task)
        else:
            self.task = task
            task.add_done_callback(self._on_stream_done)

    async def _stream_body(self, Request request, StreamingResponse response, bint chunked,
                           long long declared):
        """Send each piece of the body as it comes, waiting while the client is behind.

        With a declared Content-Length, producing more or less than that raises: the
        connection is then aborted, since extra bytes would be read as a next response and a
        short body would leave the client waiting.
        """
        cdef OutputBuffer out
        cdef bytes chunk
        cdef long long produced = 0
        content = response.content
        is_async = hasattr(content, "__aiter__")
        iterator = content.__aiter__() if is_async else iter(content)
        try:
            while True:
                if is_async:
                    try:
                        piece = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                else:
                    try:
                        piece = next(iterator)
                    except StopIteration:
                        break
                if self.state == PS_CLOSED:
                    raise ClientDisconnect("the client went away during the response")
                chunk = piece.encode() if isinstance(piece, str) else bytes(piece)
                if not chunk:
                    continue
                produced += PyBytes_GET_SIZE(chunk)
                if declared >= 0 and produced > declared:
                    raise RuntimeError(f"a StreamingResponse produced more than the "
                                       f"Content-Length it declared ({declared} bytes)")
                out = self.context.out
                if chunked:
                    out.append_chunk_size(PyBytes_GET_SIZE(chunk))
                out.append(PyBytes_AS_STRING(chunk), PyBytes_GET_SIZE(chunk))
                if chunked:
                    out.append(b"\r\n", 2)
                self._flush()
                if self.transport.held() > self.context.max_response_buffer_size:
                    self.drain_waiter = asyncio.get_running_loop().create_future()
                    await self.drain_waiter
            if declared >= 0 and produced != declared and self.state != PS_CLOSED:
                raise RuntimeError(f"a StreamingResponse produced {produced} bytes but "
                                   f"declared a Content-Length of {declared}")
            if chunked and self.state != PS_CLOSED:
                self.context.out.append(b"0\r\n\r\n", 5)
        finally:
            if is_async and hasattr(iterator, "aclose"):
                await iterator.aclose()
            elif not is_async and hasattr(iterator, "close"):
                iterator.close()

    def _on_stream_done(self, task):
        """The stream's body has been sent (or failed): the connection goes on with the
        requests held behind it."""
        if self.task is task:
            self.task = None
        # Retrieved even when the connection is gone: a stream that ended because the client
        # left is no "Task exception was never retrieved".
        failure = None if task.cancelled() else task.exception()
        if (failure is not None or task.cancelled() or self.state == PS_CLOSED) and (
                self.current is not None and self.current.body_stream is not None):
            # The response will not finish (_response_finished would have released the
            # body): what the handler left of its body goes back to the pool now, not when
            # the last reference to the request (a traceback) goes.
            self.current.body_stream.discard()
        if self.state == PS_CLOSED:
            return
        try:
            if task.cancelled() or failure is not None:
                # The head is out: the only honest signal left is an incomplete response.
                if failure is not None:
                    _log.error("streamed response failed", exc_info=failure)
                self.abort()
                return
            self._response_finished(self.current)
            self._after_response()
        except BaseException as exc:
            _log.exception("connection failed", exc_info=exc)
            self.abort()

    # ---- Files (file_response.pxi decides the head; the transport sends the span).

    cdef bint _start_file(self, Request request, FileResponse response) except -1:
        """Write the head of a file response; True if its body is still to be sent."""
        cdef FileHead head
        try:
            head = open_file_response(request, response)
        except Exception as error:
            raise FileSendError(response) from error
        try:
            self._write_response(request, head.status, head.headers, head.body,
                                 head.content_type, head.length)
        except BaseException:
            if head.fd >= 0:
                os.close(head.fd)  # a head the writer refused: the file is not sent
            raise
        if head.fd < 0:
            return False
        if head.length == 0 or not self.context.writer.send_body:
            os.close(head.fd)
            return False
        self.file_fd = head.fd
        self.file_offset = head.offset
        self.file_remaining = head.length
        return True

    cdef void _send_file(self):
        """Send the file until the peer stops taking it (write_ready resumes) or it is out."""
        cdef long long sent = self.transport.send_file(self.file_fd, &self.file_offset,
                                                       self.file_remaining)
        if self.transport.closed:
            return
        if sent < 0:
            # The file shrank while being sent: the promised length can no longer be met,
            # and only an incomplete response tells the client so.
            _log.warning("file shrank while being sent; connection aborted")
            self.abort()
            return
        self.file_remaining -= sent
        if self.file_remaining > 0:
            return
        self._close_file()
        self._response_finished(self.current)
        self._after_response()

    cdef void _close_file(self) noexcept:
        if self.file_fd >= 0:
            close(self.file_fd)
            self.file_fd = -1

    # ---- Output.

    cdef void _flush(self):
        """Hand the output buffer to the transport, then act on what it could send."""
        self.transport.write(self.context.out)
        self.write_ready()

    cdef void write_ready(self):
        """The transport sent what it could: refill, send the file, or finish up."""
        if self.state == PS_CLOSED:
            return
        if self.transport.held():
            self._output_progress()
            self._update_deadline()  # busy until the peer has taken it
            return
        if self.file_fd >= 0:
            self._send_file()
            return
        self._output_progress()
        if self.current is None:
            if self.closing and self.state < PS_LINGERING:
                self._linger()
            else:
                self._update_deadline()  # the response is out: idle from now

    cdef void _output_progress(self):
        """The transport took output: wake a producer waiting below the low watermark."""
        waiter = self.drain_waiter
        if (waiter is not None
                and self.transport.held() <= self.context.max_response_buffer_size // 2):
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ---- Rejections, drains and closes: the request contract.

    cdef void _reject(self, int reason):
        """Answer a request the parser refused, then close (RFC 9112 §9.6 and §11)."""
        cdef ServiceContext context = self.context
        cdef OutputBuffer out = context.out
        cdef int status = REJECT_STATUS_C[reason]
        if reason != R_REQUEST_HEADERS_TIMEOUT and reason != R_REQUEST_BODY_TIMEOUT:
            context.rejections[reason] = context.rejections.get(reason, 0) + 1
            if self.end_reason < 0:
                context.connections_rejected += 1
            self._end(END_REJECTED)
        if self.current is not None:
            # A framing error or limit in the body of a request being handled: the handler's
            # next read raises it; left uncaught, its status is the response (_handler_done).
            self.current._fail_body(HttpParseError(
                reason, (self.parser.error_detail if self.parser is not None else None) or ""))
            self.closing = True
            return
        if self.state == PS_DRAINING:
            # The error is in the body of a request already answered: a second response
            # would be paired with the client's next request. Close, and say nothing.
            _contract_warning(self, "the unread request body was malformed (%s); closing the "
                                    "connection", RejectReason(reason).name)
            self._close_silently()
            return
        body = REASON_PHRASES.get(status, b"Bad Request")
        context.writer.write_head(status, False, False, False, None, _TEXT_PLAIN, len(body))
        out.append_bytes(body)
        self.closing = True
        self._close_if_done()

    cdef void _close_silently(self):
        """Close without another response: what is queued still goes out first."""
        self.drain_left = -1
        if self.held_in is not None:
            self.held_in.clear()
        self.closing = True
        self._close_if_done()

    cdef void _close_if_done(self):
        """Close once a connection that must close has nothing left to send."""
        if self.current is not None or self.state >= PS_LINGERING:
            return
        self._flush()  # lingers once nothing is left to send (write_ready)

    cdef void _input_idle(self):
        """No handler runs and every complete request held was processed."""
        if self.transport.peer_eof and self.state < PS_LINGERING:
            # What is still held can only be an incomplete request: it will never finish.
            if self.held_in is not None:
                self.held_in.clear()
            self._end(END_CLIENT_CLOSED)
            self.closing = True
            self._close_if_done()

    cdef void _start_drain(self, Request request):
        """The handler answered without reading all of the body: drain it, or close."""
        cdef ServiceContext context = self.context
        self.drain_route = _route_of(request)
        if _unread_body_closes(self, request):
            # (Its response already said Connection: close: _write_response asked the same.)
            if self.end_reason < 0:  # not closing for another reason already (408, ...)
                self._end(END_DRAIN_LIMIT)
                _contract_warning(self, "the handler left %s unread; closing the connection "
                                        "after the response", _unread_description(self, request))
            self.closing = True
            return
        if self.closing:
            return  # closing anyway (a 408, a rejection, Connection: close): no drain
        self.drain_left = context.max_drain_size
        self.body_consumed()  # reading may have paused on the body the handler left
        _contract_warning(self, "the handler left the request body unread; draining it (up to "
                                "%d bytes and %gs) to keep the connection",
                          context.max_drain_size, context.drain_timeout)

    cdef void _linger(self):
        """Close after a response without destroying it: send our FIN first, then discard
        what the client still sends until it closes too, or the linger time passes. Closing
        with unread input would make the kernel send an RST, which can destroy the response
        before the client has read it."""
        if self.transport.peer_eof:
            self._end(END_CLIENT_CLOSED)
            self.close()
            return
        self._end(END_CONNECTION_CLOSE)
        self.transport.shutdown_write()
        if self.held_in is not None:
            self.held_in.clear()
        self._enter(PS_LINGERING)
        self.transport.resume_reading()

    cdef void check_deadlines(self, double now):
        """The heartbeat's look at this connection: enforce whatever deadline has passed."""
        cdef ServiceContext context = self.context
        cdef Transport transport = self.transport
        cdef RequestBody body
        cdef int kind = self.deadline.kind
        cdef int unsent
        if kind == DL_KEEP_ALIVE and self.parser is not None:
            self._park_parser()
        if kind != DL_NONE and now >= self.deadline.at:
            if kind == DL_LINGER:
                self.close()
            elif kind == DL_DRAIN:
                self.drain_left = -1
                self._end(END_DRAIN_TIMEOUT)
                _contract_warning(self, "an unread request body did not finish within the "
                                        "drain timeout (%gs); closing the connection",
                                  context.drain_timeout)
                self.closing = True
                self._update_deadline()
                self._close_if_done()
            elif kind == DL_KEEP_ALIVE:
                unsent = transport.kernel_unsent()
                if 0 < unsent and (self.last_unsent == 0 or unsent < self.last_unsent):
                    # The last response is still on its way out of the kernel and the client
                    # is taking it: not idle yet. (A client that stops reading is closed at
                    # the next deadline.)
                    self.last_unsent = unsent
                    self.deadline.at = now + context.keep_alive_timeout
                    return
                self._end(END_KEEP_ALIVE_TIMEOUT)
                if unsent > 0:
                    self.abort()  # a response the client stopped reading: let go of it
                else:
                    self.close()  # idle: no response owed, nothing unread
            else:
                self._end(END_HEADERS_TIMEOUT)
                _contract_warning(self, "the request head did not arrive within %gs; 408 and "
                                        "close", context.request_headers_timeout)
                self._reject(R_REQUEST_HEADERS_TIMEOUT)
            return
        if self.state == PS_READING:
            body = self.current.body_stream
            if body is not None and rate_below(
                    body.received, rate_clock_waited(&body.read_clock, now),
                    context.min_request_body_rate, context.min_rate_grace):
                self._end(END_BODY_RATE)
                _contract_warning(self, "the request body arrived at %.0f B/s, under the "
                                        "minimum of %g B/s; 408 and close",
                                  body.received / rate_clock_waited(&body.read_clock, now),
                                  context.min_request_body_rate)
                self.closing = True
                body.fail(HttpParseError(
                    R_REQUEST_BODY_TIMEOUT, "request body slower than the minimum data rate"))
                return
        if transport.write_clock.started and rate_below(
                transport.write_clock.bytes, rate_clock_waited(&transport.write_clock, now),
                context.min_response_rate, context.min_rate_grace):
            self._end(END_RESPONSE_RATE)
            _contract_warning(self, "the client read the response at %.0f B/s, under the "
                                    "minimum of %g B/s; connection aborted",
                              transport.write_clock.bytes
                              / rate_clock_waited(&transport.write_clock, now),
                              context.min_response_rate)
            self.abort()

    cdef void _park_parser(self):
        """Between requests, with nothing of the next one in, give the parser back to the
        server: an idle keep-alive connection holds no parser, last head, or that head's
        fields. Asked at the end of a read and of an asynchronous response (never while a
        parse is under way), and by the heartbeat; the next message takes a spare one, so a
        busy server needs about as many parsers as it has requests being parsed at once."""
        cdef HttpParser parser = self.parser
        if (parser.state == S_START_LINE and parser.line_len == 0
                and parser.start_line_bytes == 0):
            self.parser = None
            self.context._give_parser(parser)

    # ---- The upgraded state: after a protocol switch, bytes bypass the parser.

    def upgrade(self, receiver):
        """Hand this connection to another protocol (WebSockets, after its 101): from now on
        its input goes to receiver.data_received(bytes) (b"" at the client's EOF), beginning
        with what followed the request, and receiver sends with send_raw(). Only a request
        in flight whose message is complete (or has no body), and which has no response yet,
        can be upgraded; it then has no other response, and the connection leaves HTTP for
        good. A handler may upgrade in its first step: what followed the request is handed
        over once the parse that started it returns."""
        cdef Request request = self.current
        if request is None or self.responded or not (
                self.state == PS_HANDLING
                or (self.state == PS_READING and request._body_complete())):
            raise RuntimeError("only a complete request in flight, not yet answered, can be "
                               "upgraded")
        self.current = None
        self.closing = False
        self.upgraded = receiver
        self.upgrade_fed = False
        self._enter(PS_UPGRADED)
        self.transport.resume_reading()
        if not self.going_on:
            self._feed_upgraded()

    cdef void _feed_upgraded(self):
        """Give the new protocol what arrived before it took over: the input held after its
        request, then the client's EOF if that came too. Once: later input goes to it as it
        arrives."""
        cdef bytes held
        if self.upgrade_fed:
            return
        self.upgrade_fed = True
        if self.held_in is not None and self.held_in.size:
            held = PyBytes_FromStringAndSize(NULL, self.held_in.size)
            self.held_in.take(PyBytes_AS_STRING(held), self.held_in.size)
            self._upgraded_input(held)
        if self.transport.peer_eof and self.state == PS_UPGRADED:
            self._upgraded_input(b"")

    def send_raw(self, bytes data):
        """Send bytes as they are (the upgraded protocol's output)."""
        if self.state != PS_UPGRADED:
            raise RuntimeError("send_raw is for an upgraded connection")
        self.context.out.append_bytes(data)
        self.transport.write(self.context.out)

    cdef void _upgraded_input(self, bytes data):
        try:
            self.upgraded.data_received(data)
        except Exception as exc:
            _log.exception("the upgraded protocol failed", exc_info=exc)
            self.abort()

    # ---- Closing.

    cdef void close(self):
        cdef int reason
        if self.state == PS_CLOSED:
            return
        if KESTREL_DEBUG:
            _check_transition(self.state, PS_CLOSED)
        self.state = PS_CLOSED
        self.deadline.kind = DL_NONE
        reason = self.end_reason
        if reason < 0:
            reason = END_CLIENT_CLOSED if self.transport.peer_eof else END_ERROR
        self.context.end_counts[reason] += 1
        self.transport.close()
        self._close_file()
        if self.held_in is not None:
            self.held_in.clear()
        self.context.connection_closed(self)
        # The handler, if one runs, is not cancelled (as in ASP.NET Core and uvicorn): its
        # body reads fail with ClientDisconnect and its response is dropped when it ends.
        if self.current is not None:
            self.current._fail_body(ClientDisconnect("the connection was closed"))
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_exception(ClientDisconnect("the client went away during the response"))
        if self.upgraded is not None:
            receiver, self.upgraded = self.upgraded, None
            try:
                receiver.connection_lost()
            except Exception as exc:
                _log.exception("the upgraded protocol failed", exc_info=exc)

    cdef void abort(self):
        """Reset the connection: the transport discards what the peer has not received."""
        if self.state == PS_CLOSED:
            return
        self.transport.abort()
        self.close()


class FileSendError(Exception):
    """A FileResponse that could not be opened or read (a 500, logged with its route)."""


cdef bint _unread_body_closes(Http1Processor processor, Request request):
    """Must the connection close rather than drain what the handler left unread?"""
    cdef ServiceContext context = processor.context
    if context.max_drain_size <= 0 or context.drain_timeout <= 0:
        return True
    if _awaits_continue(processor, request):
        # The client waits for a 100 that never came: it may send the body or not, so
        # nobody could tell where the next request would start.
        return True
    # From the request, not the parser: a handler that answers in its first step does so
    # before the parser has started on the body.
    return (request.head.content_length >= 0
            and request.head.content_length - request._body().received
            > context.max_drain_size)


# The transitions _enter allows (checked in debug builds, where the fuzz harnesses run).
cdef unsigned char _TRANSITIONS[7][7]  # zero-initialized: nothing allowed


cdef void _allow(int source, int target) noexcept:
    _TRANSITIONS[source][target] = 1


cdef void _init_transitions() noexcept:
    cdef int state
    for state in range(7):
        _allow(state, PS_CLOSED)
    _allow(PS_IDLE, PS_READING)
    _allow(PS_IDLE, PS_LINGERING)
    _allow(PS_READING, PS_HANDLING)
    _allow(PS_READING, PS_DRAINING)
    _allow(PS_READING, PS_UPGRADED)  # a request without a body, upgraded in the first step
    _allow(PS_HANDLING, PS_IDLE)
    _allow(PS_HANDLING, PS_UPGRADED)
    _allow(PS_DRAINING, PS_IDLE)
    _allow(PS_DRAINING, PS_LINGERING)


_init_transitions()


cdef void _check_transition(int source, int target) except *:
    if not _TRANSITIONS[source][target]:
        raise AssertionError(f"HTTP/1 processor: no transition from state {source} to {target}")
