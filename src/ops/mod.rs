//! Network operations on NHWC tensors (`[N, H, W, C]`, channels innermost).
//!
//! On the CPU each is a custom candle op over the kernels in [`kernels`], with a hand-written
//! backward: stock candle runs depthwise convolution as one convolution per channel (O(C²)
//! backward) and train-mode BatchNorm as ~10 passes. On any other device the same functions
//! fall back to [`reference`], compositions of stock candle ops, which are also what the tests
//! compare the kernels with.

mod affine;
mod batch_norm;
mod block;
mod conv;
mod conv_bias;
mod conv_bn;
mod depthwise;
pub mod kernels;
mod mbconv;
mod pool;
pub mod reference;
mod slices;
mod stats;

pub use affine::{activate, add_activate, bias_act_inplace, scale_shift_act};
pub use batch_norm::batch_norm_train;
pub use block::{BlockLayer, Shortcut, conv_bn_train, train_block, train_block_unfused};
pub use conv::{conv_same, conv1x1, conv1x1_bias_act, conv2d, conv2d_bias_act, global_avg_pool};
pub use conv_bias::conv_bias_act;
pub use conv_bn::FusedConv;
pub use depthwise::{depthwise_conv, depthwise_conv_bias_act};
pub use kernels::{Act, Padding};
pub use mbconv::{FoldedTensors, mbconv_fused};
pub use pool::{adaptive_avg_pool, flatten_nchw, max_pool_2x2, max_pool_3x3_s2};
pub use stats::BatchStats;
