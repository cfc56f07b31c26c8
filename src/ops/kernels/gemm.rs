//! Matrix products through the gemm crate on plain slices, and each thread's scratch buffer:
//! the helpers the dense, Winograd and 1×1 convolutions share.

use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of `len` floats (grown once, then reused: no fresh
/// pages per block). `f` must not re-enter rayon.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buffer = cell.borrow_mut();
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        f(&mut buffer[..len])
    })
}

/// A read-only matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) data: &'a [f32],
    pub(super) row_stride: usize,
    pub(super) col_stride: usize,
}

impl View<'_> {
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]` (`+=` when `accumulate`); `dst` is row-major with row
/// stride `n`. Single-threaded: callers parallelise over blocks.
pub(super) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: View<'_>,
    rhs: View<'_>,
) {
    matmul_on(gemm::Parallelism::None, m, n, k, dst, accumulate, lhs, rhs);
}

/// [`matmul`] on all of rayon's threads. gemm splits the output, never the sum over `k`, so
/// results do not depend on the thread count.
pub(super) fn matmul_parallel(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: View<'_>,
    rhs: View<'_>,
) {
    let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
    matmul_on(threads, m, n, k, dst, false, lhs, rhs);
}

#[allow(clippy::too_many_arguments)]
fn matmul_on(
    parallelism: gemm::Parallelism,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: View<'_>,
    rhs: View<'_>,
) {
    assert!(
        dst.len() >= m * n && lhs.covers(m, k) && rhs.covers(k, n),
        "matrix product out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // Strides fit in isize: each is below a slice length.
    let s = |v: usize| v as isize;
    // SAFETY: the assert above keeps every element gemm reads (lhs, rhs) or writes (dst,
    // `m × n` row-major) inside its slice; `dst` is borrowed mutably, so nothing aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            s(n),
            accumulate,
            lhs.data.as_ptr(),
            s(lhs.col_stride),
            s(lhs.row_stride),
            rhs.data.as_ptr(),
            s(rhs.col_stride),
            s(rhs.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
