// A wasi:http/proxy server in JavaScript, built into a component by
// componentize-js: answers every request with `hello from wasi:http: <METHOD>
// <path>`, as the Rust and Python examples do.

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const text = `hello from wasi:http: ${request.method} ${url.pathname}${url.search}\n`;
  return new Response(text, { headers: { "content-type": "text/plain" } });
}
