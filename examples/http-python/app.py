"""A wasi:http/proxy server in Python, built into a component by componentize-py.

Answers every request with `<GREETING> from wasi:http: <METHOD> <path>`
(`hello` when the environment has no GREETING), as the Rust and JavaScript
examples do.
"""

import os

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        greeting = os.environ.get("GREETING", "hello")
        method = type(request.method()).__name__.removeprefix("Method_").upper()
        path = request.path_with_query() or "/"
        text = f"{greeting} from wasi:http: {method} {path}\n".encode()
        headers = Fields.from_list(
            [("content-type", b"text/plain"), ("content-length", str(len(text)).encode())]
        )
        response = OutgoingResponse(headers)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(text)
        OutgoingBody.finish(body, None)
