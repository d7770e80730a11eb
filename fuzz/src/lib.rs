//! A small mutation fuzzer, run as ordinary tests so that CI needs no nightly toolchain: each
//! target starts from a corpus of valid inputs, mutates them (byte flips, insertions of
//! structural tokens, deletions, duplications, splices) and checks that the parser never panics
//! and that whatever it accepts survives a round trip.
//!
//! `DURAFETCH_FUZZ_SECS` sets the time per target (default 2); `DURAFETCH_FUZZ_SEED` replays a
//! run. A failure prints the seed, the iteration and the input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Fragments that make parsers take unusual paths.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "-0",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "\u{1}",
    "\u{0}",
    "%",
    "/",
    "..",
    " ",
    "\n",
    "=",
    "Bearer ",
    "durafetch_",
    "\u{1}durafetch\u{1}",
];

pub struct Fuzzer {
    rng: fastrand::Rng,
    seed: u64,
    budget: Duration,
}

impl Default for Fuzzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Fuzzer {
    pub fn new() -> Self {
        let seed = std::env::var("DURAFETCH_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
        let secs = std::env::var("DURAFETCH_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
        Fuzzer { rng: fastrand::Rng::with_seed(seed), seed, budget: Duration::from_secs_f64(secs) }
    }

    /// One mutation of a corpus entry, as text (invalid UTF-8 replaced, as a text frame would be).
    fn mutate(&mut self, corpus: &[&str]) -> String {
        let mut bytes = corpus[self.rng.usize(..corpus.len())].as_bytes().to_vec();
        for _ in 0..self.rng.usize(1..=4) {
            let at = self.rng.usize(..=bytes.len());
            match self.rng.u8(..6) {
                0 if !bytes.is_empty() => {
                    let i = self.rng.usize(..bytes.len());
                    bytes[i] ^= 1 << self.rng.u8(..8);
                }
                1 => {
                    let token = TOKENS[self.rng.usize(..TOKENS.len())].as_bytes();
                    bytes.splice(at..at, token.iter().copied());
                }
                2 if at < bytes.len() => {
                    let end = (at + self.rng.usize(1..=8)).min(bytes.len());
                    bytes.drain(at..end);
                }
                3 if at < bytes.len() => {
                    let end = (at + self.rng.usize(1..=16)).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(at..at, copy);
                }
                4 => {
                    let other = corpus[self.rng.usize(..corpus.len())].as_bytes();
                    let from = self.rng.usize(..=other.len());
                    bytes.truncate(at);
                    bytes.extend_from_slice(&other[from..]);
                }
                _ => bytes.insert(at, self.rng.u8(..)),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Runs `check` on mutations of `corpus` (and on the corpus itself) until the time budget is
    /// spent. `check` panics when a property fails; the panic is reported with the input.
    pub fn run(mut self, target: &str, corpus: &[&str], check: impl Fn(&str)) -> u64 {
        let started = Instant::now();
        let mut iterations = 0u64;
        let inputs = corpus.iter().map(|c| c.to_string());
        let mut pending: Vec<String> = inputs.collect();
        while started.elapsed() < self.budget || !pending.is_empty() {
            let input = pending.pop().unwrap_or_else(|| self.mutate(corpus));
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
                let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!(
                    "fuzz target {target} failed at iteration {iterations} (replay: DURAFETCH_FUZZ_SEED={}): {}\ninput: {input:?}",
                    self.seed,
                    message.unwrap_or_default()
                );
            }
            iterations += 1;
        }
        println!("fuzz target {target}: {iterations} inputs in {:?} (seed {})", started.elapsed(), self.seed);
        iterations
    }
}
