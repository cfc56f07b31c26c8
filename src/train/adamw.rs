//! AdamW on plain vectors: one fused pass per parameter tensor (candle-nn's AdamW makes about
//! 17 tensor passes per parameter, each allocating, most of them single-threaded). Used by the
//! hand-fused head and, in place on the CPU, by the fine-tuning phase.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Var, bail};
use candle_nn::optim::{Optimizer, ParamsAdamW};
use rayon::prelude::*;

/// Floats per parallel chunk of an update.
const CHUNK: usize = 1 << 14;

/// AdamW hyper-parameters (candle's defaults for the betas and eps).
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (the head applies it to its weight matrix only, not the bias).
    pub weight_decay: f64,
}

impl AdamWConfig {
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }
}

/// First and second moments of one parameter tensor.
#[derive(Debug, Clone)]
pub(super) struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Moments {
    pub(super) fn new(len: usize) -> Self {
        Self {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    /// One AdamW update of `theta` with gradient `grad`, exactly as `candle_nn::AdamW::step`;
    /// large tensors in parallel chunks.
    pub(super) fn update(
        &mut self,
        theta: &mut [f32],
        grad: &[f32],
        c: &AdamWConfig,
        decay: f64,
        t: i32,
    ) {
        let (b1, b2) = (c.beta1, c.beta2);
        let k = Coefficients {
            b1: b1 as f32,
            b2: b2 as f32,
            scale_m: (1.0 / (1.0 - b1.powi(t))) as f32,
            scale_v: (1.0 / (1.0 - b2.powi(t))) as f32,
            keep: (1.0 - c.lr * decay) as f32,
            lr: c.lr as f32,
            eps: c.eps as f32,
        };
        if theta.len() <= CHUNK {
            k.apply(theta, grad, &mut self.m, &mut self.v);
            return;
        }
        theta
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .for_each(|(((w, g), m), v)| k.apply(w, g, m, v));
    }
}

/// The per-step constants of an update, in `f32` as candle applies them.
struct Coefficients {
    b1: f32,
    b2: f32,
    scale_m: f32,
    scale_v: f32,
    keep: f32,
    lr: f32,
    eps: f32,
}

impl Coefficients {
    fn apply(&self, theta: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
        let k = self;
        for (((w, g), m), v) in theta.iter_mut().zip(grad).zip(m).zip(v) {
            *m = *m * k.b1 + *g * (1.0 - k.b1);
            *v = *v * k.b2 + *g * *g * (1.0 - k.b2);
            let step = (*m * k.scale_m) / ((*v * k.scale_v).sqrt() + k.eps);
            *w = *w * k.keep - step * k.lr;
        }
    }
}

/// The fine-tuning phase's AdamW: fused and in place where every parameter is an `f32` tensor
/// on the CPU, candle-nn's elsewhere (a GPU).
#[derive(Debug)]
pub(super) enum AdamW {
    Fused(FusedAdamW),
    Candle(candle_nn::optim::AdamW),
}

impl AdamW {
    pub(super) fn new(vars: Vec<Var>, params: ParamsAdamW) -> candle_core::Result<Self> {
        if vars
            .iter()
            .all(|v| v.dtype() == DType::F32 && v.device().is_cpu())
            && crate::runtime::cpu_kernels_enabled()
        {
            return Ok(Self::Fused(FusedAdamW::new(vars, &params)));
        }
        Ok(Self::Candle(candle_nn::optim::AdamW::new(vars, params)?))
    }

    pub(super) fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        match self {
            Self::Fused(f) => f.step(grads),
            Self::Candle(c) => c.step(grads),
        }
    }

    pub(super) fn learning_rate(&self) -> f64 {
        match self {
            Self::Fused(f) => f.config.lr,
            Self::Candle(c) => c.learning_rate(),
        }
    }

    pub(super) fn set_learning_rate(&mut self, lr: f64) {
        match self {
            Self::Fused(f) => f.config.lr = lr,
            Self::Candle(c) => c.set_learning_rate(lr),
        }
    }
}

/// AdamW over CPU `f32` variables, each updated in place in one pass.
#[derive(Debug)]
pub(super) struct FusedAdamW {
    vars: Vec<(Var, Moments)>,
    config: AdamWConfig,
    steps: i32,
}

impl FusedAdamW {
    fn new(vars: Vec<Var>, params: &ParamsAdamW) -> Self {
        let config = AdamWConfig {
            lr: params.lr,
            beta1: params.beta1,
            beta2: params.beta2,
            eps: params.eps,
            weight_decay: params.weight_decay,
        };
        let vars = vars
            .into_iter()
            .map(|v| {
                let len = v.elem_count();
                (v, Moments::new(len))
            })
            .collect();
        Self {
            vars,
            config,
            steps: 0,
        }
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.steps += 1;
        for (var, moments) in &mut self.vars {
            let Some(grad) = grads.get(var) else {
                continue;
            };
            let update = InPlace {
                moments: RefCell::new(moments),
                config: &self.config,
                steps: self.steps,
            };
            var.inplace_op2(&grad.contiguous()?, &update)?;
        }
        Ok(())
    }
}

/// [`Moments::update`] as an in-place op on a variable's storage (argument: its gradient).
struct InPlace<'a> {
    moments: RefCell<&'a mut Moments>,
    config: &'a AdamWConfig,
    steps: i32,
}

impl InplaceOp2 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(theta), CpuStorage::F32(grad)) = (s1, s2) else {
            bail!("fused AdamW: expected f32 parameters and gradients");
        };
        let (Some(p), Some(g)) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            bail!("fused AdamW: expected contiguous parameters and gradients");
        };
        let (theta, grad) = (&mut theta[p.0..p.1], &grad[g.0..g.1]);
        let mut moments = self.moments.borrow_mut();
        if theta.len() != grad.len() || moments.m.len() != theta.len() {
            bail!("fused AdamW: parameter, gradient and moments differ in length");
        }
        let decay = self.config.weight_decay;
        moments.update(theta, grad, self.config, decay, self.steps);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// Three steps (the rate changed between them) on a parameter large enough to be updated
    /// in parallel chunks, against candle-nn's AdamW from the same start.
    #[test]
    fn the_fused_update_matches_candle_nn() {
        let dev = Device::Cpu;
        let init: Vec<f32> = (0..40_000)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let params = ParamsAdamW {
            lr: 0.01,
            weight_decay: 0.1,
            ..ParamsAdamW::default()
        };
        let ours_var = Var::from_vec(init.clone(), (200, 200), &dev).expect("var");
        let theirs_var = Var::from_vec(init, (200, 200), &dev).expect("var");
        let mut ours = AdamW::new(vec![ours_var.clone()], params.clone()).expect("ours");
        assert!(matches!(ours, AdamW::Fused(_)));
        let mut theirs =
            candle_nn::optim::AdamW::new(vec![theirs_var.clone()], params).expect("theirs");
        let loss = |w: &Var, step: f64| {
            let target = Tensor::ones((200, 200), candle_core::DType::F32, &dev).expect("ones");
            ((w.as_tensor() - (target * step).expect("scaled"))
                .expect("diff")
                .sqr()
                .expect("sqr")
                .sum_all()
                .expect("sum"))
            .backward()
            .expect("backward")
        };
        for step in 0..3 {
            ours.step(&loss(&ours_var, f64::from(step))).expect("step");
            theirs
                .step(&loss(&theirs_var, f64::from(step)))
                .expect("step");
            ours.set_learning_rate(0.02);
            theirs.set_learning_rate(0.02);
        }
        assert_eq!(ours.learning_rate(), 0.02);
        let a: Vec<f32> = ours_var
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("ours");
        let b: Vec<f32> = theirs_var
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("theirs");
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "largest difference {diff}");
        assert!(a.iter().zip(&b).any(|(x, _)| *x != 0.0));
    }
}
