//! Integration tests: one binary, one private PostgreSQL cluster, a module per area.

mod bench_smoke;
mod foundation;
mod harness;
mod protocol;
mod protocol_keys;
mod vectors;
