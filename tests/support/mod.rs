//! Shared test support: the command builder. Each test file under tests/
//! is one module of the integration binary.

#![allow(dead_code)]

pub mod cmd;
pub mod server;

pub use cmd::{rtb, Output, Rtb};
pub use server::Server;
