//! Filters between the checkpoint layout `[C_out, C_in, k, k]` and the convolution kernels'
//! `[k²·C_in, C_out]` matrix (rows ordered `(ky, kx, c)`), both ways, every training step:
//! candle's strided copy did this one element at a time (4 % of a ResNet-18 step).

use rayon::prelude::*;

use super::common::output_buffer;

/// Matrix rows per parallel chunk.
const ROWS_PER_CHUNK: usize = 16;
/// Output channels per pass over a chunk: 16 source rows × a few lines each stay in L1.
const CHANNELS_PER_PASS: usize = 16;

/// `[C_out, C_in, taps]` filters as the `[taps·C_in, C_out]` matrix.
pub fn filters_to_matrix(w: &[f32], c_out: usize, c_in: usize, taps: usize) -> Vec<f32> {
    debug_assert_eq!(w.len(), c_out * c_in * taps);
    if c_out == 0 || c_in == 0 {
        return vec![0f32; w.len()];
    }
    output_buffer(w.len(), |out| {
        out.par_chunks_mut(ROWS_PER_CHUNK * c_out)
            .enumerate()
            .for_each(|(chunk, rows)| {
                let first = chunk * ROWS_PER_CHUNK;
                for o0 in (0..c_out).step_by(CHANNELS_PER_PASS) {
                    let o1 = (o0 + CHANNELS_PER_PASS).min(c_out);
                    for (r, row) in (first..).zip(rows.chunks_exact_mut(c_out)) {
                        let (t, i) = (r / c_in, r % c_in);
                        for o in o0..o1 {
                            row[o] = w[(o * c_in + i) * taps + t];
                        }
                    }
                }
            });
    })
}

/// The inverse of [`filters_to_matrix`]: a `[taps·C_in, C_out]` matrix (a weight gradient)
/// as `[C_out, C_in, taps]` filters.
pub fn matrix_to_filters(m: &[f32], c_out: usize, c_in: usize, taps: usize) -> Vec<f32> {
    debug_assert_eq!(m.len(), c_out * c_in * taps);
    let filter_len = c_in * taps;
    if c_out == 0 || filter_len == 0 {
        return vec![0f32; m.len()];
    }
    output_buffer(m.len(), |out| {
        out.par_chunks_mut(CHANNELS_PER_PASS * filter_len)
            .enumerate()
            .for_each(|(chunk, filters)| {
                let o0 = chunk * CHANNELS_PER_PASS;
                for i in 0..c_in {
                    for t in 0..taps {
                        let src = &m[(t * c_in + i) * c_out + o0..];
                        for (f, &v) in filters.chunks_exact_mut(filter_len).zip(src) {
                            f[i * taps + t] = v;
                        }
                    }
                }
            });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_matrix_round_trip_in_the_kernels_order() {
        for (c_out, c_in, taps) in [(3, 2, 9), (37, 19, 9), (16, 16, 1), (1, 5, 25), (0, 3, 9)] {
            let w: Vec<f32> = (0..c_out * c_in * taps).map(|v| v as f32).collect();
            let m = filters_to_matrix(&w, c_out, c_in, taps);
            for o in 0..c_out {
                for i in 0..c_in {
                    for t in 0..taps {
                        assert_eq!(
                            m[(t * c_in + i) * c_out + o],
                            w[(o * c_in + i) * taps + t],
                            "({o}, {i}, {t})"
                        );
                    }
                }
            }
            assert_eq!(matrix_to_filters(&m, c_out, c_in, taps), w);
        }
    }
}
