//! A small bounded worker pool for the blobs of one transfer (scoped threads, no runtime).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many blobs move at once (docker's default is 3 downloads, 5 uploads).
pub const PARALLEL: usize = 3;

/// Runs `job` on every item with at most `threads` threads. After a failure no new item
/// starts; the error of the earliest failed item is returned.
pub fn for_each<T: Sync, E: Send>(
    items: &[T],
    threads: usize,
    job: impl Fn(&T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let errors: Mutex<Vec<(usize, E)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for n in 0..threads.clamp(1, items.len().max(1)) {
            let (next, failed, errors, job) = (&next, &failed, &errors, &job);
            std::thread::Builder::new()
                .name(format!("nook-blob-{n}"))
                .spawn_scoped(s, move || loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { return };
                    if let Err(e) = job(item) {
                        failed.store(true, Ordering::SeqCst);
                        errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((i, e));
                    }
                })
                .expect("cannot start a transfer thread");
        }
    });
    let mut errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    errors.sort_by_key(|(i, _)| *i);
    match errors.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_everything_in_parallel_and_reports_the_first_error() {
        let seen = Mutex::new(Vec::new());
        for_each(&[1, 2, 3, 4, 5], 3, |i| {
            seen.lock().unwrap().push(*i);
            Ok::<(), String>(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        let err = for_each(&[1, 2, 3], 2, |i| {
            if *i >= 2 {
                Err(format!("bad {i}"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(err.starts_with("bad"));
        for_each(&[] as &[u8], 3, |_| Err::<(), ()>(())).unwrap();
    }
}
