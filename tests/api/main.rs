//! Integration tests: one binary (one link), one module per area.

mod helpers;

mod errors;
mod login;
mod operations;
mod signup;
mod tokens;
mod users;
