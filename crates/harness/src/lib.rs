//! # quarc-harness (not published)
//!
//! The research harness behind the repository's result tables and examples, kept out of the
//! library crates: the named experiment protocols ([`protocol`]), the writer of marked sections
//! of docs/results.md ([`doc_section`]), the CIFAR-10 command line and synthetic data writer
//! ([`cifar`]), the proxy-scored EL2N and forgetting rows ([`proxy`]), the resumable [`sweep`] every table example runs, table helpers ([`report`]) and
//! the examples' logging switch ([`init_logging`]).

pub mod cifar;
pub mod doc_section;
pub mod fuzz;
pub mod protocol;
pub mod proxy;
pub mod quickstart;
pub mod report;
mod sweep;

pub use sweep::sweep;

/// Prints the library's `tracing` events on stderr when `RUST_LOG` names a level (`error`,
/// `warn`, `info`, `debug`, `trace`); otherwise the library stays silent.
pub fn init_logging() {
    use tracing_subscriber::filter::LevelFilter;
    if let Some(level) = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
    {
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .init();
    }
}
