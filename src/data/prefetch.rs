//! Overlaps preparing the next batch (reading, decoding, cropping images) with the compute on
//! the current one: a helper thread prepares batches in order, at most [`AHEAD`] ahead.

/// Batches prepared ahead of the one being computed (bounded: a batch of crops is megabytes).
pub const AHEAD: usize = 2;

/// Calls `prepare(i)` for `i` in `0..count` on a helper thread and hands the results, in
/// order, to `consume`. If `consume` returns early (a stop, an error), preparation stops too.
/// Without a thread to be had, batches are prepared in line.
pub fn prefetched<T: Send, R>(
    count: usize,
    prepare: impl Fn(usize) -> T + Sync,
    consume: impl FnOnce(&mut dyn Iterator<Item = T>) -> R,
) -> R {
    let prepare = &prepare;
    std::thread::scope(|scope| {
        // One slot in the channel plus the one being prepared: AHEAD batches ahead.
        let (sender, receiver) = crossbeam_channel::bounded(AHEAD - 1);
        let helper = std::thread::Builder::new()
            .name("prefetch".into())
            .spawn_scoped(scope, move || {
                for i in 0..count {
                    if sender.send(prepare(i)).is_err() {
                        break;
                    }
                }
            });
        if helper.is_err() {
            return consume(&mut (0..count).map(prepare));
        }
        let result = consume(&mut receiver.iter());
        // Unblocks a helper waiting to send, so that the scope can end.
        drop(receiver);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_and_an_early_stop_ends_the_helper() {
        let all: Vec<usize> = prefetched(50, |i| i * i, |items| items.collect());
        assert_eq!(all, (0..50).map(|i| i * i).collect::<Vec<_>>());
        let prepared = std::sync::atomic::AtomicUsize::new(0);
        let first: Vec<usize> = prefetched(
            1000,
            |i| {
                prepared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i
            },
            |items| items.take(3).collect(),
        );
        assert_eq!(first, [0, 1, 2]);
        assert!(prepared.into_inner() <= 3 + AHEAD + 1);
    }
}
