//! Integration tests: one binary, one private PostgreSQL cluster, a module per area.

mod backup;
mod bench_smoke;
mod crash;
mod events;
mod foundation;
mod harness;
mod hostile;
mod import;
mod ledger;
mod ledger_cli;
mod ledger_e2e;
mod ledger_stress;
mod ledger_support;
mod protocol;
mod protocol_keys;
mod replica;
mod reports;
mod secrets_in_logs;
mod tamper;
mod vectors;
