//! An activation and its gradient on their own (where no kernel before them applies it).

use rayon::prelude::*;

use super::common::{Act, output_buffer};

simd_dispatch! {
    fn act_backward_rows(out: &mut [f32], y: &[f32], dy: &[f32], act: Act) {
        per_act!(act, |ACT| {
            for ((o, &y), &d) in out.iter_mut().zip(y).zip(dy) {
                *o = ACT.grad(y, d);
            }
        })
    }
}

simd_dispatch! {
    fn act_rows(out: &mut [f32], x: &[f32], act: Act) {
        per_act!(act, |ACT| {
            for (o, &x) in out.iter_mut().zip(x) {
                *o = ACT.on(x);
            }
        })
    }
}

simd_dispatch! {
    fn add_act_rows(out: &mut [f32], a: &[f32], b: &[f32], act: Act) {
        per_act!(act, |ACT| {
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = ACT.on(a + b);
            }
        })
    }
}

const ELEMENTWISE_CHUNK: usize = 1 << 15;

/// The activation of every element, in one pass.
pub fn activate(x: &[f32], act: Act) -> Vec<f32> {
    output_buffer(x.len(), |out| {
        out.par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(x.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|(o, x)| act_rows(o, x, act));
    })
}

/// `act(a + b)` elementwise, in one pass.
pub fn add_activate(a: &[f32], b: &[f32], act: Act) -> Vec<f32> {
    output_buffer(a.len(), |out| {
        out.par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(a.par_chunks(ELEMENTWISE_CHUNK))
            .zip(b.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|((o, a), b)| add_act_rows(o, a, b, act));
    })
}

simd_dispatch! {
    fn act_backward_rows_in_place(dy: &mut [f32], y: &[f32], act: Act) {
        per_act!(act, |ACT| {
            for (d, &y) in dy.iter_mut().zip(y) {
                *d = ACT.grad(y, *d);
            }
        })
    }
}

/// [`activation_backward`] in place on `dy`.
pub fn activation_backward_in_place(y: &[f32], dy: &mut [f32], act: Act) {
    if act == Act::None {
        return;
    }
    dy.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(y.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(d, y)| act_backward_rows_in_place(d, y, act));
}

/// The gradient before the activation, from its output `y` and the gradient `dy` after it.
pub fn activation_backward(y: &[f32], dy: &[f32], act: Act) -> Vec<f32> {
    output_buffer(y.len(), |out| {
        out.par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(y.par_chunks(ELEMENTWISE_CHUNK))
            .zip(dy.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|((o, y), d)| act_backward_rows(o, y, d, act));
    })
}

simd_dispatch! {
    /// `dst += src` elementwise, on this thread.
    pub(super) fn add_into(dst: &mut [f32], src: &[f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

/// `dst += src` elementwise, in parallel.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(src.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(d, s)| add_into(d, s));
}
