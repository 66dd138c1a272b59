//! clawjobs engine: the domain, the economics rules, the ledger, the store and every actor.
//!
//! Nothing here knows about HTTP; `clawjobs-web` drives the engine through [`engine::Engine`].

pub mod balance;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod config_actor;
pub mod dispatcher;
pub mod domain;
pub mod economics;
pub mod effects;
pub mod engine;
pub mod error;
pub mod feed;
pub mod ledger;
pub mod limits;
pub mod mail;
pub mod meter;
pub mod metrics;
pub mod nodes;
pub mod payments;
pub mod qa;
pub mod queue;
pub mod rules;
pub mod sealed;
pub mod slot;
pub mod store;
pub mod supervisor;
pub mod webhooks;

pub use engine::Engine;
pub use error::EngineError;
