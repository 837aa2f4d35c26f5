//! A `wasi:http/proxy` server: answers every request with a line naming the
//! request and the `GREETING` variable of its environment (`hello` if unset);
//! `/healthz` answers 503 while the file `/data/unhealthy` exists;
//! `/fetch/<host>/<path>` asks `http://<host>/<path>` itself and answers
//! with the first line of what it got.

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
        } else if let Some(target) = path.strip_prefix("/fetch/") {
            let (host, rest) = target.split_once('/').unwrap_or((target, ""));
            match fetch(host, &format!("/{rest}")) {
                Ok(body) => format!(
                    "{greeting} fetched: {}\n",
                    body.lines().next().unwrap_or("")
                ),
                Err(e) => format!("{greeting} could not fetch: {e}\n"),
            }
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

/// The body `GET http://{host}{path}` answers with.
fn fetch(host: &str, path: &str) -> Result<String, String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(host))
        .map_err(|()| format!("bad host {host}"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("bad path {path}"))?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| e.to_string())?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken")?
        .map_err(|e| e.to_string())?;
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend(chunk);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

wasi::http::proxy::export!(Hello);
