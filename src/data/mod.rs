//! Images in: decoding, resizing and the network's input preprocessing.

pub mod dataset;
pub mod decode;
pub mod demo;
pub mod edit;
pub mod limits;
pub mod prefetch;
pub mod preprocess;
pub mod resize;
pub mod split;
pub mod trash;
pub mod variants;
