//! The one place VMM threads are born: each gets a name, its seccomp filter, and a panic in it
//! stops the VM cleanly instead of leaving a half-dead VMM.

use std::error::Error;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use seccompiler::BpfProgram;

pub use crate::exit::ThreadError;
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
pub fn spawn<F, E>(
    name: &str,
    filter: Option<Arc<BpfProgram>>,
    exit: Arc<ExitSignal>,
    body: F,
) -> Result<JoinHandle<()>, SpawnError>
where
    F: FnOnce() -> Result<(), E> + Send + 'static,
    E: Error + Send + Sync + 'static,
{
    let thread_name = name.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let failure = run(&thread_name, filter.as_deref(), body);
            if let Some(failure) = failure {
                exit.stop(StopReason::Failed(Arc::new(failure)));
            }
        })
        .map_err(|source| SpawnError {
            name: name.to_string(),
            source,
        })
}

/// Confines the calling thread and runs `body`; returns why it failed, if it did.
fn run<F, E>(name: &str, filter: Option<&BpfProgram>, body: F) -> Option<ThreadError>
where
    F: FnOnce() -> Result<(), E>,
    E: Error + Send + Sync + 'static,
{
    let name = name.to_string();
    if let Some(filter) = filter {
        if let Err(source) = seccompiler::apply_filter(filter) {
            return Some(ThreadError::Seccomp { name, source });
        }
    }
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(ThreadError::Failed {
            name,
            source: Box::new(e),
        }),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Some(ThreadError::Panicked { name, message })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(exit: &ExitSignal) -> Arc<ThreadError> {
        match exit.wait(None) {
            Some(StopReason::Failed(e)) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_panic_becomes_a_stop_reason() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        let handle = spawn(
            "boom",
            None,
            exit.clone(),
            || -> Result<(), std::io::Error> { panic!("on purpose") },
        )
        .unwrap();
        handle.join().unwrap();
        let e = failure(&exit);
        assert!(
            matches!(&*e, ThreadError::Panicked { name, message } if name == "boom" && message == "on purpose"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "thread boom panicked: on purpose");
    }

    #[test]
    fn an_error_becomes_a_stop_reason_with_its_source() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        spawn("err", None, exit.clone(), || {
            Err(std::io::Error::from_raw_os_error(libc::EBADF))
        })
        .unwrap()
        .join()
        .unwrap();
        let e = failure(&exit);
        assert_eq!(e.to_string(), "thread err failed");
        let source = e.source().expect("the body's error is the source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(io.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn success_stops_nothing() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        spawn("ok", None, exit.clone(), || Ok::<(), std::io::Error>(()))
            .unwrap()
            .join()
            .unwrap();
        assert!(!exit.is_stopping());
    }
}
