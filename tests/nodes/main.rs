//! Several nodes, one marketplace: two real `clawjobs serve` processes on one MongoDB database
//! (`CLAWJOBS_TEST_MONGODB_URI`; `scripts/test.sh` starts the stand-in). Without a MongoDB these
//! tests are skipped with a note, unless `CLAWJOBS_REQUIRE_MONGODB` is set.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

#[allow(dead_code)]
#[path = "../api/streams.rs"]
mod streams;

mod bans;
mod failover;
mod feeds;
mod handoff;
mod outage;
