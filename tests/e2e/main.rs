//! End-to-end tests: real `wasmkube` processes on loopback ports chosen at run
//! time, driven by real clients.

mod crash;
mod kubectl;
mod process;
mod server;
