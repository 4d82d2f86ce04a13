//! Gives freed heap memory back to the system. glibc's allocator gives each busy thread an
//! arena of its own (up to 8 per core) and returns only the free top of an arena, so after a
//! burst (a hundred pods starting at once) `peapod up` kept tens of MiB it no longer used.
//! Two arenas serve an async runtime's few worker threads as well, and a periodic
//! `malloc_trim` returns the free pages inside the arenas too, as Go's scavenger does for the
//! kubelet. Only glibc has these knobs; elsewhere this does nothing.

use std::time::Duration;

/// How often the free pages of the heap go back to the system.
const TRIM_PERIOD: Duration = Duration::from_secs(30);

/// Arenas when the user did not choose (`MALLOC_ARENA_MAX`).
#[cfg(target_env = "gnu")]
const ARENAS: libc::c_int = 2;

/// Caps the allocator's arenas; call before any thread is spawned.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no thread allocates concurrently yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Returns the heap's free pages to the system every [`TRIM_PERIOD`], for as long as the
/// runtime runs.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Walking the arenas takes a few milliseconds with a large heap: off the workers.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
