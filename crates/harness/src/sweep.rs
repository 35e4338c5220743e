//! The resumable sweep behind every table example: skip what is done, run the rest, append.

use std::path::Path;

use quarc_train::report::{append_jsonl, read_jsonl};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Runs each job whose row is not yet in `results` (a JSONL file), appending its row as soon as
/// it finishes, so a stopped sweep resumes where it was; `after_each` sees every row so far (to
/// rewrite a table as results come in). Returns every row of the file at the end.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("quarc-sweep-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let results = dir.join("results.jsonl");
/// let square = |n: &u32| -> quarc_train::Result<(u32, u32)> { Ok((*n, n * n)) };
/// let done = |rows: &[(u32, u32)], n: &u32| rows.iter().any(|r| r.0 == *n);
/// quarc_harness::sweep(&results, [1, 2], done, square, |_| Ok(()))?;
/// let mut runs = 0;
/// let rows = quarc_harness::sweep(&results, [1, 2, 3], done, |n: &u32| { runs += 1; square(n) }, |_| Ok(()))?;
/// assert_eq!((runs, rows), (1, vec![(1, 1), (2, 4), (3, 9)])); // only job 3 ran again
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), quarc_train::Error>(())
/// ```
pub fn sweep<J, R, E>(
    results: &Path,
    jobs: impl IntoIterator<Item = J>,
    is_done: impl Fn(&[R], &J) -> bool,
    mut run: impl FnMut(&J) -> Result<R, E>,
    mut after_each: impl FnMut(&[R]) -> Result<(), E>,
) -> Result<Vec<R>, E>
where
    R: Serialize + DeserializeOwned,
    E: From<quarc_train::Error>,
{
    for job in jobs {
        let rows: Vec<R> = read_jsonl(results)?;
        if is_done(&rows, &job) {
            continue;
        }
        let row = run(&job)?;
        append_jsonl(results, &row)?;
        after_each(&read_jsonl(results)?)?;
    }
    Ok(read_jsonl(results)?)
}
