//! The core's one error type. The binding layer maps each variant onto the Python
//! exception of the same name (`novalite.placement.errors`).

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    InvalidInput(String),
    UnknownHost(String),
    UnknownConsumer(String),
    UnknownAggregate(String),
    NoValidHost {
        message: String,
        rejections: Vec<(String, u64)>,
        instance_index: usize,
    },
    ClaimConflict(String),
    CapacityExceeded(String),
    GenerationConflict(String),
    /// A failure that is not the caller's input (e.g. a metric the configuration
    /// requires is missing on a host, as Nova's MetricsWeigher raises).
    Placement(String),
}

pub type CoreResult<T> = Result<T, CoreError>;

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidInput(m)
            | CoreError::UnknownHost(m)
            | CoreError::UnknownConsumer(m)
            | CoreError::UnknownAggregate(m)
            | CoreError::ClaimConflict(m)
            | CoreError::CapacityExceeded(m)
            | CoreError::GenerationConflict(m)
            | CoreError::Placement(m) => f.write_str(m),
            CoreError::NoValidHost { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for CoreError {}

pub fn invalid<T>(msg: impl Into<String>) -> CoreResult<T> {
    Err(CoreError::InvalidInput(msg.into()))
}
