//! Process-level settings for quarc's binaries.

/// glibc allocator settings that speed up candle on CPU (measured in docs/performance.md): large
/// allocations stay on the heap instead of being `mmap`ped (and page-faulted) on every call.
pub const MALLOC_TUNABLES: &str = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=68719476736";

/// On Linux with glibc, replaces the current program with itself run under [`MALLOC_TUNABLES`]
/// (`exec`: the same process id, so a `kill` or a scheduler's signal reaches the run itself, and
/// nothing is left running) when `GLIBC_TUNABLES` is not set; elsewhere, or when the variable is
/// set (or `QUARC_NO_REEXEC` is), returns at once. Call it first thing in `main`. glibc reads the
/// variable only at start-up, hence the `exec`. Costs resident memory (freed memory is kept for
/// reuse), measured as fewer page faults and less system time. If the `exec` fails, the program
/// carries on with the default allocator.
pub fn apply_malloc_tunables() {
    if !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os("GLIBC_TUNABLES").is_some()
        || std::env::var_os("QUARC_NO_REEXEC").is_some()
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
            .exec(); // returns only on failure
        eprintln!("quarc: could not re-exec with the allocator settings ({err}); carrying on without them");
    }
}
