//! The API tests: every file here is one area of the contract, all built into one test binary
//! (one link, one process per test under nextest). Shared set-up lives in `helpers`.

mod helpers;

mod access;
mod cli;
mod cookies;
mod health;
mod hostile_input;
mod login;
mod logout;
mod ops;
mod push;
mod refresh;
mod register;
mod sessions;
mod uploads;
mod users;
