//! Helpers shared by the benches (included with `#[path]`, not a crate).

/// CPU time of this process so far, s (user and system, from `/proc/self/stat`).
pub(crate) fn process_cpu_s() -> f64 {
    cpu_s_of("self")
}

/// CPU time so far of the process `pid` (a number, or `self`), s: 0 once it
/// is gone.
pub(crate) fn cpu_s_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Memory this process holds now (its resident set, `VmRSS` of
/// `/proc/self/status`), bytes; 0 where that cannot be read.
#[allow(dead_code)]
pub(crate) fn process_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib << 10)
}

/// The value at quantile `q` (0 to 1) of `values`, sorted in place.
#[allow(dead_code)]
pub(crate) fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
