//! Black-box tests: each starts the real server (free port, temp data dir) and drives it over HTTP.

mod audit_log;
mod bad_input;
mod bounties;
mod concurrency;
mod console;
mod deposits;
mod fake_smtp;
mod fake_stripe;
mod helpers;
mod lifecycle;
mod operators;
mod ops;
mod pages;
mod payouts;
mod priority;
mod qa;
mod readme;
mod realtime;
mod referrals;
mod restart;
mod retention;
mod rules;
mod sensitive;
mod streams;
mod supervision;
mod webhooks;
