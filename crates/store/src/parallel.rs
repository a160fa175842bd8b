//! Layer-level parallelism on plain threads.
//!
//! Per-layer work (export, ingestion) runs compressors and hashers that use rayon inside
//! and may wait for their own rayon tasks on channels. Running the layers themselves on
//! rayon workers could leave every worker waiting for tasks no worker is free to run, so
//! layers get OS threads of their own and rayon stays free for the fine-grained work.

use std::sync::Mutex;

/// Applies `f` to every item on up to `threads` threads; results in input order. The first
/// error is returned (the other items still finish or fail on their own).
pub fn map_threads<T: Sync, R: Send, E: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let next = Mutex::new(0usize);
    let results: Vec<Mutex<Option<Result<R, E>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    results.into_iter().map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()).expect("every item ran")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_and_reports_errors() {
        let v: Vec<u32> = (0..50).collect();
        assert_eq!(
            super::map_threads(&v, 3, |x| Ok::<_, ()>(x * 2)).unwrap(),
            v.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        assert_eq!(super::map_threads(&v, 3, |&x| if x == 7 { Err(x) } else { Ok(x) }), Err(7));
        assert!(super::map_threads(&[] as &[u32], 3, |&x| Ok::<_, ()>(x)).unwrap().is_empty());
    }
}
