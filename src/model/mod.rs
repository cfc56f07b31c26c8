//! The networks: a family of backbones behind one interface ([`Backbone`]), the layers they are
//! made of, and the network built from one (cut, frozen, with a classifier) in candle.
//!
//! Nothing here knows about plans, training, the guide or the window.

pub mod architecture;
pub mod backbone;
pub mod error;
pub mod hub;
pub mod layers;
pub mod lite0;
pub mod network;
pub mod onnx;
pub mod resnet;
pub mod source;
pub mod unit;
pub mod vgg;
pub mod weights;

pub use architecture::{Architecture, BackboneUnit, FoldedUnit};
pub use backbone::Backbone;
pub use error::ModelError;
pub use network::{FoldedNetwork, HeadInit, Init, Network, NetworkSpec, softmax};
pub use source::{LoadedWeights, WeightsSource};
pub use unit::{Unit, UnitInfo};
pub use weights::{Weights, imagenet_labels};
