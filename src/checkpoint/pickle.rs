//! A restricted pickle reader: it builds plain data from the opcode stream and never calls
//! anything from the file. Only the globals a PyTorch state dict needs are accepted; any other
//! global (`os.system`, `builtins.eval`, …) is rejected by name the moment it is seen.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::CheckpointError;

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
    fn resolve(module: &str, name: &str) -> Option<Self> {
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
    fn kind(&self) -> &'static str {
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

fn malformed(message: String) -> CheckpointError {
    CheckpointError::Malformed(message)
}

fn non_negative(value: &Value, what: &str) -> Result<usize, CheckpointError> {
    value
        .as_int()
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| malformed(format!("{what} is not a non-negative integer")))
}

fn int_list(value: &Value, what: &str) -> Result<Vec<usize>, CheckpointError> {
    value
        .items()
        .ok_or_else(|| malformed(format!("{what} is a {}, not a tuple", value.kind())))?
        .iter()
        .map(|v| non_negative(v, what))
        .collect()
}

/// Reads one pickle from `data` starting at `*pos`, advancing `*pos` past its STOP opcode.
pub fn read_pickle(
    data: &[u8],
    pos: &mut usize,
    persistent: &mut dyn PersistentLoad,
) -> Result<Value, CheckpointError> {
    let mut machine = Machine {
        data,
        pos: *pos,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let value = machine.run(persistent)?;
    *pos = machine.pos;
    Ok(value)
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CheckpointError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| malformed(format!("pickle truncated at byte {}", self.pos)))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, CheckpointError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CheckpointError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn line(&mut self) -> Result<String, CheckpointError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| malformed("unterminated text line in pickle".into()))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }

    fn utf8(&mut self, n: usize) -> Result<String, CheckpointError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("invalid UTF-8 string".into()))
    }

    fn pop(&mut self) -> Result<Value, CheckpointError> {
        self.stack
            .pop()
            .ok_or_else(|| malformed("pickle stack underflow".into()))
    }

    fn top(&mut self) -> Result<&mut Value, CheckpointError> {
        self.stack
            .last_mut()
            .ok_or_else(|| malformed("pickle stack underflow".into()))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, CheckpointError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| malformed("pickle MARK missing".into()))?;
        if mark > self.stack.len() {
            return Err(malformed("pickle MARK beyond stack".into()));
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&self, index: u32) -> Result<Value, CheckpointError> {
        self.memo
            .get(&index)
            .cloned()
            .ok_or_else(|| malformed(format!("pickle memo entry {index} missing")))
    }

    fn memo_put(&mut self, index: u32) -> Result<(), CheckpointError> {
        let top = self.top()?.clone();
        self.memo.insert(index, top);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), CheckpointError> {
        let global = Global::resolve(module, name)
            .ok_or_else(|| CheckpointError::ForbiddenGlobal(format!("{module}.{name}")))?;
        self.stack.push(Value::Global(global));
        Ok(())
    }

    fn set_items(dict: &Value, items: Vec<Value>) -> Result<(), CheckpointError> {
        let Value::Dict(entries) = dict else {
            return Err(malformed(format!("SETITEMS on a {}", dict.kind())));
        };
        if !items.len().is_multiple_of(2) {
            return Err(malformed("odd number of dict items".into()));
        }
        let mut entries = entries.borrow_mut();
        let mut iter = items.into_iter();
        while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
            entries.push((k, v));
        }
        Ok(())
    }

    fn append(list: &Value, items: Vec<Value>) -> Result<(), CheckpointError> {
        match list {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => Err(malformed(format!("APPEND on a {}", other.kind()))),
        }
    }

    /// Interprets `callable(*args)` for the accepted globals only.
    fn reduce(callable: Value, args: Value) -> Result<Value, CheckpointError> {
        let Value::Global(global) = callable else {
            return Err(malformed(format!("REDUCE on a {}", callable.kind())));
        };
        let args = args
            .items()
            .ok_or_else(|| malformed("REDUCE arguments are not a tuple".into()))?;
        match global {
            Global::OrderedDict => Ok(Value::Dict(Rc::default())),
            Global::RebuildTensorV2 | Global::RebuildTensor => {
                if args.len() < 4 {
                    return Err(malformed(
                        "_rebuild_tensor with fewer than 4 arguments".into(),
                    ));
                }
                let Value::Storage(storage) = &args[0] else {
                    return Err(malformed(format!(
                        "_rebuild_tensor on a {}, not a storage",
                        args[0].kind()
                    )));
                };
                let tensor = TensorRef {
                    storage: storage.clone(),
                    storage_offset: non_negative(&args[1], "tensor offset")?,
                    shape: int_list(&args[2], "tensor size")?,
                    stride: int_list(&args[3], "tensor stride")?,
                };
                if tensor.shape.len() != tensor.stride.len() {
                    return Err(malformed("tensor size and stride differ in rank".into()));
                }
                Ok(Value::Tensor(Rc::new(tensor)))
            }
            Global::RebuildParameter => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => Err(malformed("_rebuild_parameter without a tensor".into())),
            },
            Global::Storage(_) => Err(malformed("a storage class was called directly".into())),
        }
    }

    fn run(&mut self, persistent: &mut dyn PersistentLoad) -> Result<Value, CheckpointError> {
        loop {
            let opcode = self.u8()?;
            match opcode {
                b'\x80' => {
                    self.u8()?; // PROTO
                }
                b'\x95' => {
                    self.take(8)?; // FRAME: length hint only
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let top = self.top()?.clone(); // DUP
                    self.stack.push(top);
                }
                b'1' => {
                    self.pop_mark()?; // POP_MARK
                }
                b'N' => self.stack.push(Value::None),
                b'\x88' => self.stack.push(Value::Bool(true)),
                b'\x89' => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'\x8a' | b'\x8b' => {
                    let n = if opcode == b'\x8a' {
                        usize::from(self.u8()?)
                    } else {
                        let n = i32::from_le_bytes(self.array()?);
                        usize::try_from(n).map_err(|_| malformed("negative LONG4 size".into()))?
                    };
                    let bytes = self.take(n)?.to_vec();
                    self.stack.push(long_value(bytes));
                }
                b'I' => {
                    let line = self.line()?;
                    let value = match line.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        text => Value::Int(
                            text.parse()
                                .map_err(|_| malformed(format!("bad INT {text:?}")))?,
                        ),
                    };
                    self.stack.push(value);
                }
                b'L' => {
                    let line = self.line()?;
                    let text = line.trim_end_matches('L');
                    let v = text
                        .parse()
                        .map_err(|_| malformed(format!("bad LONG {text:?}")))?;
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.array()?) as usize;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'\x8c' => {
                    let n = usize::from(self.u8()?);
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'\x8d' => {
                    let n = u64::from_le_bytes(self.array()?);
                    let n = usize::try_from(n).map_err(|_| malformed("string too long".into()))?;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'U' | b'T' => {
                    // SHORT_BINSTRING / BINSTRING: protocol-2 byte strings, read as text.
                    let n = if opcode == b'U' {
                        usize::from(self.u8()?)
                    } else {
                        u32::from_le_bytes(self.array()?) as usize
                    };
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s));
                }
                b'V' => {
                    let line = self.line()?;
                    self.stack.push(Value::Str(line));
                }
                b'C' | b'B' | b'\x8e' => {
                    let n = match opcode {
                        b'C' => usize::from(self.u8()?),
                        b'B' => u32::from_le_bytes(self.array()?) as usize,
                        _ => usize::try_from(u64::from_le_bytes(self.array()?))
                            .map_err(|_| malformed("bytes too long".into()))?,
                    };
                    let bytes = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(bytes));
                }
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b'\x85' | b'\x86' | b'\x87' => {
                    let n = usize::from(opcode - b'\x84');
                    if self.stack.len() < n {
                        return Err(malformed("pickle stack underflow".into()));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b']' => self.stack.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = Value::Dict(Rc::default());
                    Self::set_items(&dict, items)?;
                    self.stack.push(dict);
                }
                b'a' => {
                    let item = self.pop()?;
                    Self::append(self.top()?, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    Self::append(self.top()?, items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    Self::set_items(self.top()?, vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    Self::set_items(self.top()?, items)?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(u32::from(i))?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.array()?);
                    self.memo_put(i)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let i = line
                        .parse()
                        .map_err(|_| malformed(format!("bad PUT {line:?}")))?;
                    self.memo_put(i)?;
                }
                b'\x94' => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| malformed("memo too large".into()))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    let v = self.memo_get(u32::from(i))?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.array()?);
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'g' => {
                    let line = self.line()?;
                    let i = line
                        .parse()
                        .map_err(|_| malformed(format!("bad GET {line:?}")))?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(&module, &name)?;
                }
                b'\x93' => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.as_str(), name.as_str()) {
                        (Some(m), Some(n)) => {
                            let (m, n) = (m.to_owned(), n.to_owned());
                            self.global(&m, &n)?;
                        }
                        _ => return Err(malformed("STACK_GLOBAL without strings".into())),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(Self::reduce(callable, args)?);
                }
                b'\x81' => {
                    // NEWOBJ: cls.__new__(cls, *args) — only for accepted classes.
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Self::reduce(cls, args)?);
                }
                b'b' => {
                    // BUILD: object state (an OrderedDict's `_metadata`): not needed.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let value = persistent.load(pid)?;
                    self.stack.push(value);
                }
                b'P' => {
                    let line = self.line()?;
                    let value = persistent.load(Value::Str(line))?;
                    self.stack.push(value);
                }
                b'\x8f' => self.stack.push(Value::List(Rc::default())), // EMPTY_SET (as a list)
                b'\x90' => {
                    let items = self.pop_mark()?;
                    Self::append(self.top()?, items)?;
                }
                other => {
                    return Err(malformed(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    )));
                }
            }
        }
    }
}

/// A LONG1/LONG4 payload: little-endian two's complement.
fn long_value(bytes: Vec<u8>) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(&bytes);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Value, CheckpointError> {
        let mut pos = 0;
        read_pickle(bytes, &mut pos, &mut TorchStorages::default())
    }

    #[test]
    fn reads_a_small_dict() {
        // {'a': 1, 'b': [2, 3]} at protocol 2
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(K\x02K\x03eu.";
        let Value::Dict(d) = run(bytes).expect("valid pickle") else {
            panic!("not a dict")
        };
        let d = d.borrow();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].0.as_str(), Some("a"));
        assert_eq!(d[1].1.items().map(|i| i.len()), Some(2));
    }

    #[test]
    fn rejects_unknown_globals_by_name() {
        let bytes = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.";
        match run(bytes) {
            Err(CheckpointError::ForbiddenGlobal(name)) => assert_eq!(name, "posix.system"),
            other => panic!("expected a forbidden global, got {other:?}"),
        }
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00";
        assert!(matches!(run(bytes), Err(CheckpointError::Malformed(_))));
        assert!(run(b"").is_err());
        assert!(run(b"\x80\x02\xff").is_err());
    }

    #[test]
    fn big_longs_are_kept_as_bytes() {
        // LONG1 with the legacy torch magic number 0x1950a86a20f9469cfc6c.
        let bytes = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
        let Value::BigInt(b) = run(bytes).expect("valid") else {
            panic!("not a bigint")
        };
        assert_eq!(
            b,
            vec![0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]
        );
    }
}
