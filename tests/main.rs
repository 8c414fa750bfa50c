//! rtb's one integration test binary: every test runs the built `rtb`
//! against real things (a loopback fault-injecting server, real processes
//! and signals, real files, real SQLite and PostgreSQL).

mod cli;
mod file;
mod guard;
mod http;
mod process;
mod support;
