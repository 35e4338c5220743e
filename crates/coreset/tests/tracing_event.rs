//! A selection is a `tracing` event. Alone in its test binary: `tracing` caches each call site's
//! interest process-wide, and the other coreset tests hit the same call site from other threads
//! with no subscriber. Sharing `config.rs`'s binary, this test failed once here (the event was not
//! recorded) in a full `cargo test --workspace` run; alone, no other thread can interleave.

use quarc_coreset::{CoresetConfig, Progress};

/// Selections are `tracing` events (silent without a subscriber): epoch, size and timings.
#[test]
fn a_selection_is_a_tracing_event() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut c = CoresetConfig::preset("random_resample", 0.1, 5)
            .unwrap()
            .build((0..500u32).map(|i| i % 10).collect(), 10, 7)
            .unwrap();
        c.select_without_pass(Progress::new(5, 20)).unwrap();
    });
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("coreset selected"), "{text}");
    assert!(
        text.contains("epoch=5") && text.contains("size=50") && text.contains("of=500"),
        "{text}"
    );
}
