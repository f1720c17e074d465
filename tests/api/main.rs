//! Integration tests: one binary (one link), one module per area.

#[macro_use]
mod helpers;

mod accounts;
mod audit;
mod binary;
mod cache;
mod content;
mod editorial;
mod errors;
mod hostile;
mod instances;
mod login;
mod machine_tokens;
mod operations;
mod replicas;
mod sessions;
mod signup;
mod tokens;
mod users;
mod webhook_receiver;
mod webhooks;
