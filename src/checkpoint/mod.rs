//! PyTorch checkpoint import: reads `.pth` files in both torch formats without executing
//! anything from them, and writes their tensors as safetensors.
//!
//! * zip format (torch ≥ 1.6): `<archive>/data.pkl` plus one `<archive>/data/<key>` entry per
//!   storage;
//! * legacy format: five pickles back to back (magic number, protocol 1001, system info, the
//!   object, the storage keys), then each storage as `u64` element count + raw bytes.

pub mod error;
pub mod pickle;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

pub use error::CheckpointError;
use pickle::{StorageDType, StorageRef, TensorRef, TorchStorages, Value};

/// The magic number torch writes at the start of a legacy checkpoint, as LONG1 bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;
/// Refuse storages whose declared size is beyond this (a corrupt header must not allocate it).
const MAX_STORAGE_BYTES: usize = 8 << 30;

/// Which torch serialization a file used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    Zip,
    Legacy,
}

/// One tensor, densely packed in row-major order, little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: StorageDType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32, whatever the stored float type.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let chunks = |n: usize| self.data.chunks_exact(n);
        Some(match self.dtype {
            StorageDType::F32 => chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StorageDType::F16 => chunks(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StorageDType::BF16 => chunks(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StorageDType::F64 => chunks(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b) as f32
                })
                .collect(),
            _ => return None,
        })
    }
}

/// The tensors of a checkpoint, named by their dotted path in the pickled object.
#[derive(Debug)]
pub struct Checkpoint {
    pub format: CheckpointFormat,
    pub tensors: Vec<RawTensor>,
    /// Dotted names of non-tensor entries (epoch counters, hyper-parameters, …), not imported.
    pub skipped_entries: Vec<String>,
}

impl Checkpoint {
    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Reads a `.pth` file of either torch format.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_checkpoint_bytes(&bytes)
}

/// Reads checkpoint bytes of either torch format.
pub fn read_checkpoint_bytes(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes)
    } else if bytes.starts_with(b"\x80") {
        read_legacy(bytes)
    } else {
        Err(CheckpointError::NotACheckpoint(
            "neither a zip archive nor a pickle stream".into(),
        ))
    }
}

fn read_legacy(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let mut pos = 0;
    let mut ignore = TorchStorages::default();
    let magic = pickle::read_pickle(bytes, &mut pos, &mut ignore)?;
    if !matches!(&magic, Value::BigInt(b) if b[..] == LEGACY_MAGIC) {
        // A bare pickle (torch.save with a custom pickler, or not torch at all).
        return Err(CheckpointError::NotACheckpoint(
            "pickle stream without the torch legacy magic number".into(),
        ));
    }
    let protocol = pickle::read_pickle(bytes, &mut pos, &mut ignore)?;
    if protocol.as_int() != Some(LEGACY_PROTOCOL) {
        return Err(CheckpointError::Malformed(format!(
            "unknown legacy protocol (a {})",
            protocol.kind()
        )));
    }
    let sys_info = pickle::read_pickle(bytes, &mut pos, &mut ignore)?;
    if dict_get(&sys_info, "little_endian").and_then(|v| v.as_int()) == Some(0) {
        return Err(CheckpointError::Malformed(
            "big-endian checkpoints are not supported".into(),
        ));
    }
    let mut storages = TorchStorages::default();
    let object = pickle::read_pickle(bytes, &mut pos, &mut storages)?;
    let keys = pickle::read_pickle(bytes, &mut pos, &mut ignore)?
        .items()
        .ok_or_else(|| CheckpointError::Malformed("storage key list missing".into()))?;

    let mut data = HashMap::new();
    for key in keys {
        let key = key
            .as_str()
            .ok_or_else(|| CheckpointError::Malformed("storage key is not a string".into()))?
            .to_owned();
        let storage = storages.seen.get(&key).ok_or_else(|| {
            CheckpointError::Malformed(format!("storage {key} listed but never referenced"))
        })?;
        let count_bytes = bytes.get(pos..pos + 8).ok_or_else(|| truncated(&key))?;
        let mut count = [0u8; 8];
        count.copy_from_slice(count_bytes);
        let count = usize::try_from(u64::from_le_bytes(count)).map_err(|_| truncated(&key))?;
        let len = count
            .checked_mul(storage.dtype.size_bytes())
            .filter(|&len| len <= MAX_STORAGE_BYTES)
            .ok_or_else(|| CheckpointError::Malformed(format!("storage {key} is too large")))?;
        let start = pos + 8;
        let chunk = bytes
            .get(start..start + len)
            .ok_or_else(|| truncated(&key))?;
        data.insert(key, chunk.to_vec());
        pos = start + len;
    }
    assemble(CheckpointFormat::Legacy, &object, &data)
}

fn truncated(key: &str) -> CheckpointError {
    CheckpointError::Malformed(format!("file ends inside storage {key}"))
}

fn read_zip(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let zip_error = |e: zip::result::ZipError| CheckpointError::Malformed(format!("zip: {e}"));
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zip_error)?;
    let pickle_name = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|name| name.ends_with("data.pkl") && name.matches('/').count() <= 1)
        .map(|name| name.into_owned())
        .ok_or_else(|| CheckpointError::NotACheckpoint("zip archive without data.pkl".into()))?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_owned();

    let mut read_entry = |name: &str| -> Result<Option<Vec<u8>>, CheckpointError> {
        let mut file = match archive.by_name(name) {
            Ok(file) => file,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(zip_error(e)),
        };
        if file.size() > MAX_STORAGE_BYTES as u64 {
            return Err(CheckpointError::Malformed(format!("{name} is too large")));
        }
        // The size is what the header claims: reserve no more than the archive could hold.
        let mut out = Vec::with_capacity((file.size() as usize).min(bytes.len()));
        file.read_to_end(&mut out)
            .map_err(|e| CheckpointError::Malformed(format!("{name}: {e}")))?;
        Ok(Some(out))
    };

    if let Some(order) = read_entry(&format!("{prefix}byteorder"))?
        && order != b"little"
    {
        return Err(CheckpointError::Malformed(
            "big-endian checkpoints are not supported".into(),
        ));
    }
    let pickle_bytes = read_entry(&pickle_name)?
        .ok_or_else(|| CheckpointError::NotACheckpoint("data.pkl unreadable".into()))?;
    let mut storages = TorchStorages::default();
    let mut pos = 0;
    let object = pickle::read_pickle(&pickle_bytes, &mut pos, &mut storages)?;
    let mut data = HashMap::new();
    for key in storages.seen.keys() {
        let bytes = read_entry(&format!("{prefix}data/{key}"))?.ok_or_else(|| {
            CheckpointError::Malformed(format!("storage {key} missing from the archive"))
        })?;
        data.insert(key.clone(), bytes);
    }
    assemble(CheckpointFormat::Zip, &object, &data)
}

fn dict_get(value: &Value, key: &str) -> Option<Value> {
    let Value::Dict(entries) = value else {
        return None;
    };
    let entries = entries.borrow();
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v.clone())
}

/// Flattens the pickled object into named tensors and copies their elements out.
fn assemble(
    format: CheckpointFormat,
    object: &Value,
    storages: &HashMap<String, Vec<u8>>,
) -> Result<Checkpoint, CheckpointError> {
    let mut walk = Walk::default();
    walk.flatten(object, String::new(), 0)?;
    let Walk {
        tensors: refs,
        skipped: skipped_entries,
        ..
    } = walk;
    let tensors = refs
        .into_iter()
        .map(|(name, tensor)| materialize(name, &tensor, storages))
        .collect::<Result<Vec<_>, _>>()?;
    if tensors.is_empty() {
        return Err(CheckpointError::NoTensors);
    }
    Ok(Checkpoint {
        format,
        tensors,
        skipped_entries,
    })
}

/// Dicts nested deeper than this are refused: a state dict is a few levels deep, and a pickle
/// can make a dict that contains itself (its walk would never end).
const MAX_NESTING: usize = 32;
/// Entries visited at most: shared sub-dicts can make the walk exponential in the file's size.
const MAX_ENTRIES: usize = 1 << 20;

/// The walk of the pickled object: tensors by dotted name, and what was left out.
#[derive(Default)]
struct Walk {
    tensors: Vec<(String, TensorRef)>,
    skipped: Vec<String>,
    visited: usize,
}

impl Walk {
    fn flatten(
        &mut self,
        value: &Value,
        prefix: String,
        depth: usize,
    ) -> Result<(), CheckpointError> {
        self.visited += 1;
        if depth > MAX_NESTING || self.visited > MAX_ENTRIES {
            return Err(CheckpointError::Malformed(format!(
                "dicts nested more than {MAX_NESTING} deep or more than {MAX_ENTRIES} entries \
                 (a dict that contains itself?)"
            )));
        }
        let join = |key: &str| {
            if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            }
        };
        match value {
            Value::Tensor(t) => self.tensors.push((prefix, t.as_ref().clone())),
            Value::Dict(entries) => {
                for (key, item) in entries.borrow().iter() {
                    let key = match key {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        _ => {
                            self.skipped.push(join("<non-string key>"));
                            continue;
                        }
                    };
                    self.flatten(item, join(&key), depth + 1)?;
                }
            }
            _ => self.skipped.push(if prefix.is_empty() {
                "<root>".into()
            } else {
                prefix
            }),
        }
        Ok(())
    }
}

fn materialize(
    name: String,
    tensor: &TensorRef,
    storages: &HashMap<String, Vec<u8>>,
) -> Result<RawTensor, CheckpointError> {
    let StorageRef {
        key,
        dtype,
        numel,
        view_offset,
    } = &tensor.storage;
    let bytes = storages
        .get(key)
        .ok_or_else(|| CheckpointError::Malformed(format!("{name}: storage {key} has no data")))?;
    let elem = dtype.size_bytes();
    if bytes.len() < numel * elem {
        return Err(CheckpointError::Malformed(format!(
            "{name}: storage {key} holds {} bytes, expected {}",
            bytes.len(),
            numel * elem
        )));
    }
    let count: usize = tensor.shape.iter().product();
    let offset = view_offset + tensor.storage_offset;
    if count > 0 {
        let last = tensor
            .shape
            .iter()
            .zip(&tensor.stride)
            .try_fold(offset, |acc, (&d, &s)| {
                acc.checked_add((d - 1).checked_mul(s)?)
            })
            .filter(|&last| last < *numel)
            .ok_or_else(|| {
                CheckpointError::Malformed(format!("{name}: view reaches past its storage"))
            })?;
        debug_assert!(last < *numel);
    }
    let mut data = Vec::with_capacity(count * elem);
    let rank = tensor.shape.len();
    let mut index = vec![0usize; rank];
    for _ in 0..count {
        let element: usize = offset
            + index
                .iter()
                .zip(&tensor.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        data.extend_from_slice(&bytes[element * elem..(element + 1) * elem]);
        for axis in (0..rank).rev() {
            index[axis] += 1;
            if index[axis] < tensor.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(RawTensor {
        name,
        dtype: *dtype,
        shape: tensor.shape.clone(),
        data,
    })
}

/// How `write_safetensors` stores float tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FloatStorage {
    /// Keep each tensor's own type.
    #[default]
    Keep,
    /// Convert f32/f64/bf16 tensors to f16 (half the size; integer tensors are kept).
    F16,
    /// Convert float tensors to f32.
    F32,
}

/// What `import_weights` did, for the report.
#[derive(Debug)]
pub struct ImportSummary {
    pub format: CheckpointFormat,
    pub tensors: usize,
    pub parameters: usize,
    pub dropped_counters: usize,
    pub skipped_entries: Vec<String>,
}

/// Converts a `.pth` checkpoint into a safetensors file, atomically.
///
/// BatchNorm `num_batches_tracked` step counters are dropped: nothing here uses them.
pub fn import_weights(
    input: &Path,
    output: &Path,
    storage: FloatStorage,
) -> Result<ImportSummary, CheckpointError> {
    let checkpoint = read_checkpoint(input)?;
    let (counters, tensors): (Vec<_>, Vec<_>) = checkpoint
        .tensors
        .into_iter()
        .partition(|t| t.name.ends_with("num_batches_tracked"));
    let tensors: Vec<RawTensor> = tensors.into_iter().map(|t| convert(t, storage)).collect();
    write_safetensors(&tensors, output)?;
    Ok(ImportSummary {
        format: checkpoint.format,
        parameters: tensors.iter().map(RawTensor::numel).sum(),
        tensors: tensors.len(),
        dropped_counters: counters.len(),
        skipped_entries: checkpoint.skipped_entries,
    })
}

fn convert(tensor: RawTensor, storage: FloatStorage) -> RawTensor {
    let target = match (storage, tensor.dtype) {
        (FloatStorage::F16, StorageDType::F32 | StorageDType::F64 | StorageDType::BF16) => {
            StorageDType::F16
        }
        (FloatStorage::F32, StorageDType::F16 | StorageDType::F64 | StorageDType::BF16) => {
            StorageDType::F32
        }
        _ => return tensor,
    };
    let Some(values) = tensor.to_f32() else {
        return tensor;
    };
    let data = match target {
        StorageDType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    RawTensor {
        dtype: target,
        data,
        ..tensor
    }
}

fn safetensors_dtype(dtype: StorageDType) -> safetensors::Dtype {
    use safetensors::Dtype;
    match dtype {
        StorageDType::F64 => Dtype::F64,
        StorageDType::F32 => Dtype::F32,
        StorageDType::F16 => Dtype::F16,
        StorageDType::BF16 => Dtype::BF16,
        StorageDType::I64 => Dtype::I64,
        StorageDType::I32 => Dtype::I32,
        StorageDType::I16 => Dtype::I16,
        StorageDType::I8 => Dtype::I8,
        StorageDType::U8 => Dtype::U8,
        StorageDType::Bool => Dtype::BOOL,
    }
}

/// Writes tensors as a safetensors file via a temporary file and a rename.
pub fn write_safetensors(tensors: &[RawTensor], output: &Path) -> Result<(), CheckpointError> {
    let write_error = |message: String| CheckpointError::Write {
        path: output.to_owned(),
        message,
    };
    let views = tensors
        .iter()
        .map(|t| {
            safetensors::tensor::TensorView::new(
                safetensors_dtype(t.dtype),
                t.shape.clone(),
                &t.data,
            )
            .map(|view| (t.name.clone(), view))
            .map_err(|e| write_error(format!("{}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes =
        safetensors::tensor::serialize(views, None).map_err(|e| write_error(e.to_string()))?;
    crate::fsutil::write_atomic(output, &bytes).map_err(|e| write_error(e.to_string()))
}
