//! End-to-end tests: real `wasmkube` processes on loopback ports chosen at run
//! time, driven by real clients.

mod admission;
mod agent;
mod authorization;
mod bad_input;
mod cli;
mod controllers;
mod crash;
mod etcd_tls;
mod http;
mod image;
mod join;
mod kube_client;
mod kubectl;
mod leader;
mod machines;
mod nat;
mod netns;
mod netpol;
mod node_access;
mod process;
mod proxy;
mod python;
mod rbac_matrix;
mod registry;
mod routed;
mod scheduler;
mod security;
mod server;
mod services;
mod workloads;
