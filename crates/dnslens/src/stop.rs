//! The run's stop flag: SIGINT and SIGTERM set it, and so does `dnslens top`'s `q`; the poll
//! loop checks it every turn. A second signal ends the process at once, as the signal's default
//! action would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

pub fn install() -> std::io::Result<()> {
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this very signal.
        flag::register_conditional_default(signal, Arc::clone(&STOP))?;
        flag::register(signal, Arc::clone(&STOP))?;
    }
    Ok(())
}

pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Ends the run as SIGINT does, from inside: `dnslens top`'s `q`.
pub fn stop() {
    STOP.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_stops_the_run() {
        install().unwrap();
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert!(stopped());
    }
}
