//! What the pickle reader builds: plain values, the globals it accepts, and torch storages.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::checkpoint::error::CheckpointError;

/// The element type of a torch storage, from its `torch.*Storage` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDType {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size_bytes(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A callable the reader accepts. Each is interpreted as a data constructor, never executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    Storage(StorageDType),
}

impl Global {
    pub(super) fn resolve(module: &str, name: &str) -> Option<Self> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Self::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Self::RebuildTensorV2),
            ("torch._utils", "_rebuild_tensor") => Some(Self::RebuildTensor),
            ("torch._utils", "_rebuild_parameter") => Some(Self::RebuildParameter),
            ("torch", storage) => StorageDType::from_storage_class(storage).map(Self::Storage),
            _ => None,
        }
    }
}

/// A reference to (part of) a storage: `key` names its bytes in the container.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: StorageDType,
    /// Number of elements of the root storage.
    pub numel: usize,
    /// Element offset into the root storage (legacy storage views).
    pub view_offset: usize,
}

/// A tensor described by the pickle: where its elements live and how they are laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub storage_offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// Plain data built from the pickle stream.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64, kept as little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Global),
    Storage(StorageRef),
    Tensor(Rc<TensorRef>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Bool(_) => "bool",
            Self::Int(_) | Self::BigInt(_) => "int",
            Self::Float(_) => "float",
            Self::Str(_) => "str",
            Self::Bytes(_) => "bytes",
            Self::Tuple(_) => "tuple",
            Self::List(_) => "list",
            Self::Dict(_) => "dict",
            Self::Global(_) => "global",
            Self::Storage(_) => "storage",
            Self::Tensor(_) => "tensor",
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Self::Tuple(t) => Some(t.as_ref().clone()),
            Self::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }
}

/// How a persistent id (`BINPERSID`) is turned into a storage reference.
pub trait PersistentLoad {
    fn load(&mut self, pid: Value) -> Result<Value, CheckpointError>;
}

/// The persistent-id convention shared by both torch formats:
/// `('storage', storage_class, key, location, numel[, view_metadata])`.
#[derive(Debug, Default)]
pub struct TorchStorages {
    /// Storages seen so far, by key (legacy files list their order after the pickle).
    pub seen: HashMap<String, StorageRef>,
}

impl PersistentLoad for TorchStorages {
    fn load(&mut self, pid: Value) -> Result<Value, CheckpointError> {
        let items = pid
            .items()
            .ok_or_else(|| malformed(format!("persistent id is a {}, not a tuple", pid.kind())))?;
        if items.first().and_then(Value::as_str) != Some("storage") || items.len() < 5 {
            return Err(malformed(
                "persistent id is not a ('storage', …) tuple".into(),
            ));
        }
        let dtype = match &items[1] {
            Value::Global(Global::Storage(dtype)) => *dtype,
            other => {
                return Err(malformed(format!(
                    "storage type is a {}, not a torch storage class",
                    other.kind()
                )));
            }
        };
        let key = match &items[2] {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            other => return Err(malformed(format!("storage key is a {}", other.kind()))),
        };
        let numel = non_negative(&items[4], "storage size")?;
        let root = self
            .seen
            .entry(key.clone())
            .or_insert_with(|| StorageRef {
                key,
                dtype,
                numel,
                view_offset: 0,
            })
            .clone();
        // Legacy storage views: (view_key, offset, view_size).
        if let Some(view) = items.get(5).and_then(Value::items)
            && view.len() == 3
        {
            let offset = non_negative(&view[1], "storage view offset")?;
            return Ok(Value::Storage(StorageRef {
                view_offset: offset,
                ..root
            }));
        }
        Ok(Value::Storage(root))
    }
}

pub(super) fn malformed(message: String) -> CheckpointError {
    CheckpointError::Malformed(message)
}

pub(super) fn non_negative(value: &Value, what: &str) -> Result<usize, CheckpointError> {
    value
        .as_int()
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| malformed(format!("{what} is not a non-negative integer")))
}

pub(super) fn int_list(value: &Value, what: &str) -> Result<Vec<usize>, CheckpointError> {
    value
        .items()
        .ok_or_else(|| malformed(format!("{what} is a {}, not a tuple", value.kind())))?
        .iter()
        .map(|v| non_negative(v, what))
        .collect()
}
