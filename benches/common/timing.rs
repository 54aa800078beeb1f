//! Timing helpers shared by the in-process benchmarks (`cache`, `tui`).

use std::time::{Duration, Instant};

/// Minimum, median and 99th percentile of some samples.
pub type Stats = (Duration, Duration, Duration);

/// Run `f` `warmup` times untimed, then `repeat` times timed.
pub fn time(warmup: usize, repeat: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..warmup {
        f();
    }
    let mut samples: Vec<Duration> = (0..repeat.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    (samples[0], median, p99)
}

/// Print one result line: the name padded to `width`, then min, median and p99 in ms.
pub fn report(name: &str, width: usize, (min, median, p99): Stats) {
    println!(
        "{name:<width$} min {:>8.3} ms   median {:>8.3} ms   p99 {:>8.3} ms",
        min.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}
