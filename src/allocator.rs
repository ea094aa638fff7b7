//! The process's allocator: mimalloc, keeping the memory it frees for reuse.
//!
//! glibc's allocator spent a fifth of a cold ranking growing and consolidating
//! its heap while feeder bases came and went. mimalloc, left as it is, hands
//! memory back to the kernel a second after it falls idle (its `purge_delay`:
//! 1 s in mimalloc 3, 10 ms in mimalloc 2); a feeder's base and its N-1 cases,
//! a few MB each, are built and dropped by the thousand in a ranking or a
//! capacity sweep, so each took its memory back page by page, every page
//! zeroed by the kernel first: half the CPU time of a capacity sweep went to
//! zeroing pages (perf: `clear_page_erms`). Held for [`PURGE_DELAY_MS`],
//! memory freed in a burst of work is reused by the same burst and given back
//! once the service falls idle.
//!
//! The benches include this file, so that they measure what the service runs.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e`, the same
/// in mimalloc 2 and 3 (the test reads its default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before it goes back to the
/// kernel, ms.
pub(crate) const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Tells the allocator to keep freed memory for [`PURGE_DELAY_MS`]; called
/// first thing, before the work that churns memory.
pub(crate) fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores the value in mimalloc's option table (an
    // atomic store) and may be called from any thread at any time; the option
    // index is one of the table's.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_is_the_option_set() {
        // SAFETY: reads an option of mimalloc's table (an atomic load), any
        // thread, any time; the index is one of the table's.
        #[allow(unsafe_code)]
        let purge_delay =
            || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        // The default names the option (mimalloc 3's, or 2's): another index
        // would read something else.
        let default = purge_delay();
        assert!(
            default == 1000 || default == 10,
            "{default}: not mimalloc's purge_delay option"
        );
        super::keep_freed_memory();
        assert_eq!(purge_delay(), super::PURGE_DELAY_MS);
    }
}
