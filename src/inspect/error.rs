//! Why a look inside the network could not be taken.

use crate::model::{ModelError, Unit};

/// Why a look inside could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{unit} is cut away in this model (its last unit is {cut})")]
    UnitCutAway { unit: Unit, cut: Unit },
    #[error("{unit} is fully connected and has no map: pick a convolutional unit")]
    NotSpatial { unit: Unit },
    #[error("no class {given:?}: give a class index below {classes} or one of the model's labels")]
    UnknownClass { given: String, classes: usize },
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<candle_core::Error> for InspectError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(ModelError::from(e))
    }
}
