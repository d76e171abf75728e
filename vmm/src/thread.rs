//! The one place VMM threads are born: each gets a name, its seccomp filter, and a panic in it
//! stops the VM cleanly instead of leaving a half-dead VMM.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use seccompiler::BpfProgram;

use crate::exit::{ExitSignal, StopReason};

/// Errors while starting a thread.
#[derive(Debug, thiserror::Error)]
#[error("cannot start thread {name}")]
pub struct SpawnError {
    /// Thread name.
    pub name: String,
    /// Cause.
    #[source]
    pub source: std::io::Error,
}

/// Stack of every VMM thread. Well above what the run loops need, and below the 2 MiB of a huge
/// page: Rust's default 2 MiB stack, once it lands 2 MiB-aligned (as it does next to the aligned
/// guest RAM), is backed whole by one transparent huge page on hosts with THP `always`, which
/// showed as 2 MiB more VMM memory per thread.
const STACK_SIZE: usize = 512 << 10;

/// Spawns `body` on a thread called `name`; the thread installs `filter` before running it.
/// A failure (error result or panic) stops the VM with a message naming the thread.
pub fn spawn<F>(
    name: &str,
    filter: Option<Arc<BpfProgram>>,
    exit: Arc<ExitSignal>,
    body: F,
) -> Result<JoinHandle<()>, SpawnError>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    let thread_name = name.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            if let Some(filter) = filter {
                if let Err(e) = seccompiler::apply_filter(&filter) {
                    exit.stop(StopReason::Failed(format!(
                        "thread {thread_name}: cannot install its seccomp filter: {e}"
                    )));
                    return;
                }
            }
            match catch_unwind(AssertUnwindSafe(body)) {
                Ok(Ok(())) => {}
                Ok(Err(message)) => exit.stop(StopReason::Failed(format!(
                    "thread {thread_name}: {message}"
                ))),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    exit.stop(StopReason::Failed(format!(
                        "thread {thread_name} panicked: {what}"
                    )));
                }
            }
        })
        .map_err(|source| SpawnError {
            name: name.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_stop_reason() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        let handle = spawn("boom", None, exit.clone(), || panic!("on purpose")).unwrap();
        handle.join().unwrap();
        assert_eq!(
            exit.wait(None),
            Some(StopReason::Failed(
                "thread boom panicked: on purpose".into()
            ))
        );
    }

    #[test]
    fn an_error_becomes_a_stop_reason() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        spawn("err", None, exit.clone(), || Err("bad".into()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(
            exit.wait(None),
            Some(StopReason::Failed("thread err: bad".into()))
        );
    }
}
