//! Integration tests: one binary (one link), one module per area.

#[macro_use]
mod helpers;

mod binary;
mod cache;
mod content;
mod errors;
mod hostile;
mod instances;
mod login;
mod operations;
mod signup;
mod tokens;
mod users;
