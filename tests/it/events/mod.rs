//! Events and webhooks (protocol.md §8) against a daemon on a socket and a
//! receiver the test runs: every posting row one signed event, filters,
//! retries and failure, redelivery, several daemons, a daemon killed
//! mid-delivery.

mod cli;
mod delivery;
mod outbox;
mod receiver;
mod upgrade;
