//! The kernel's session autogroups, which stall PostgreSQL for seconds under this load.
//!
//! With `kernel.sched_autogroup_enabled = 1` (the default on many distributions) the
//! scheduler groups processes by session: PostgreSQL's backends, started by its service,
//! share one group, and wrk, Sluice, the relay and this program share another. With both
//! cores saturated, the group scheduler (Linux 6.18) leaves some runnable backends without
//! CPU for seconds while the others run (1.0–5.4 s at a time in one sampled run:
//! `/proc/<pid>/task/<tid>/schedstat` run time not moving while the state is `R`; single
//! requests took up to 10.9 s). A query on such a backend takes that long, and wrk's
//! percentiles, which are corrected for coordinated omission (each slow request adds
//! samples for the requests it held back), turn one such stall into a p99 of tens of
//! milliseconds to seconds, for the direct client, Sluice and the relay alike. With
//! autogroups off, no backend waited over 150 ms and at c=16 the slowest request of each
//! phase took 4–24 ms.
//!
//! So a load run (and a replicated-mode run) turns autogroups off for its duration when it
//! can (root) and restores the setting afterwards, printing both; `BENCH_AUTOGROUP=keep`
//! leaves the setting alone. The kernel reads the setting when a process or thread is
//! created, so the bench changes it before it starts its runtime (whose threads serve the
//! relay); PostgreSQL's backends, wrk and Sluice are started later, during the run.

use std::path::Path;

const SETTING: &str = "/proc/sys/kernel/sched_autogroup_enabled";

/// Autogroups turned off for a run; restored when dropped.
pub struct AutogroupsOff {
    restore: bool,
}

impl AutogroupsOff {
    /// Turns autogroups off for the run when they are on and `BENCH_AUTOGROUP` is not
    /// `keep`, saying what it did (or why not) on stdout.
    pub fn for_the_run() -> AutogroupsOff {
        let not_changed = AutogroupsOff { restore: false };
        let keep = std::env::var("BENCH_AUTOGROUP").is_ok_and(|v| v == "keep");
        match read(Path::new(SETTING)).as_deref() {
            Some("1") if keep => {
                println!(
                    "  scheduler: session autogroups on (BENCH_AUTOGROUP=keep): PostgreSQL's backends may stall for seconds, raising p99"
                );
                not_changed
            }
            Some("1") => match std::fs::write(SETTING, "0") {
                Ok(()) => {
                    println!(
                        "  scheduler: turned session autogroups off for this run ({SETTING} = 0; restored to 1 at the end; if the run is interrupted: sysctl kernel.sched_autogroup_enabled=1)"
                    );
                    AutogroupsOff { restore: true }
                }
                Err(error) => {
                    println!(
                        "  WARNING: session autogroups are on and cannot be turned off ({error}): PostgreSQL's backends may stall for seconds, raising p99; run as root or set {SETTING} to 0"
                    );
                    not_changed
                }
            },
            _ => not_changed,
        }
    }
}

impl Drop for AutogroupsOff {
    fn drop(&mut self) {
        if self.restore {
            match std::fs::write(SETTING, "1") {
                Ok(()) => println!("\nscheduler: session autogroups restored ({SETTING} = 1)"),
                Err(error) => println!(
                    "\nWARNING: could not restore {SETTING} to 1 ({error}): sysctl kernel.sched_autogroup_enabled=1"
                ),
            }
        }
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
}
