//! Table helpers: the machine's name and mean ± std cells.

/// The CPU's model name from `/proc/cpuinfo` (empty where there is none), for the tables that
/// must name the machine they were measured on.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}

/// Mean and sample standard deviation (0 for fewer than two values) of `v`.
///
/// ```
/// use quarc_harness::report::{mean_std, mean_std_cell};
/// assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
/// assert_eq!(mean_std_cell(&[86.0, 87.0, 88.0]), "87.00 ± 1.00");
/// assert_eq!(mean_std_cell(&[86.0]), "86.00"); // one seed: no spread shown
/// ```
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, s)
}

/// A table cell `mean ± std` (two decimals), or just the value for a single run.
pub fn mean_std_cell(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    if v.len() > 1 {
        format!("{m:.2} ± {s:.2}")
    } else {
        format!("{m:.2}")
    }
}
