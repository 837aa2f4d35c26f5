//! A `wasi:http/proxy` server: answers every request with a line naming the
//! request and the `GREETING` variable of its environment (`hello` if unset);
//! `/healthz` answers 503 while the file `/data/unhealthy` exists.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".into());
        let path = request.path_with_query().unwrap_or_default();
        let method = match request.method() {
            Method::Get => "GET".to_owned(),
            Method::Post => "POST".to_owned(),
            Method::Put => "PUT".to_owned(),
            Method::Delete => "DELETE".to_owned(),
            other => format!("{other:?}"),
        };
        // A health check that fails while /data/unhealthy exists.
        let sick = path == "/healthz" && std::fs::metadata("/data/unhealthy").is_ok();
        let text = if sick {
            "unhealthy\n".to_owned()
        } else {
            format!("{greeting} from wasi:http: {method} {path}\n")
        };
        let headers = Fields::from_list(&[
            ("content-type".into(), b"text/plain".to_vec()),
            ("content-length".into(), text.len().to_string().into_bytes()),
        ])
        .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        if sick {
            response.set_status_code(503).expect("a valid status");
        }
        let body = response.body().expect("the body of a new response");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("the body's stream");
        stream
            .blocking_write_and_flush(text.as_bytes())
            .expect("writing the body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}

wasi::http::proxy::export!(Hello);
