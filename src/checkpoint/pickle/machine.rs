//! The pickle interpreter: a stack machine driven by a table of opcode handlers. It builds
//! plain [`Value`]s and calls nothing from the file.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::value::{Global, PersistentLoad, TensorRef, Value, int_list, malformed, non_negative};
use crate::checkpoint::error::CheckpointError;

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
}

/// What the interpreter does after an opcode.
enum Flow {
    Continue,
    Stop(Value),
}

type OpResult = Result<Flow, CheckpointError>;

/// One opcode's handler: the machine, the opcode byte (shared handlers tell variants apart by
/// it) and the persistent-id loader.
type Op = fn(&mut Machine<'_>, u8, &mut dyn PersistentLoad) -> OpResult;

/// Every opcode the reader understands, by byte; anything else is an error.
static OPS: [Option<Op>; 256] = {
    let mut t: [Option<Op>; 256] = [None; 256];
    // Framing and control.
    t[0x80] = Some(op_proto);
    t[0x95] = Some(op_frame);
    t[b'.' as usize] = Some(op_stop);
    t[b'(' as usize] = Some(op_mark);
    t[b'0' as usize] = Some(op_pop);
    t[b'1' as usize] = Some(op_pop_mark);
    t[b'2' as usize] = Some(op_dup);
    // Scalars.
    t[b'N' as usize] = Some(op_none);
    t[0x88] = Some(op_bool);
    t[0x89] = Some(op_bool);
    t[b'J' as usize] = Some(op_binint);
    t[b'K' as usize] = Some(op_binint);
    t[b'M' as usize] = Some(op_binint);
    t[0x8a] = Some(op_long_bin);
    t[0x8b] = Some(op_long_bin);
    t[b'I' as usize] = Some(op_int_text);
    t[b'L' as usize] = Some(op_long_text);
    t[b'G' as usize] = Some(op_float);
    // Strings and bytes.
    t[b'X' as usize] = Some(op_unicode);
    t[0x8c] = Some(op_unicode);
    t[0x8d] = Some(op_unicode);
    t[b'U' as usize] = Some(op_binstring);
    t[b'T' as usize] = Some(op_binstring);
    t[b'V' as usize] = Some(op_unicode_text);
    t[b'C' as usize] = Some(op_bytes);
    t[b'B' as usize] = Some(op_bytes);
    t[0x8e] = Some(op_bytes);
    // Containers.
    t[b')' as usize] = Some(op_empty_tuple);
    t[b't' as usize] = Some(op_tuple);
    t[0x85] = Some(op_small_tuple);
    t[0x86] = Some(op_small_tuple);
    t[0x87] = Some(op_small_tuple);
    t[b']' as usize] = Some(op_empty_list);
    t[0x8f] = Some(op_empty_list); // EMPTY_SET, read as a list
    t[b'l' as usize] = Some(op_list);
    t[b'}' as usize] = Some(op_empty_dict);
    t[b'd' as usize] = Some(op_dict);
    t[b'a' as usize] = Some(op_append);
    t[b'e' as usize] = Some(op_appends);
    t[0x90] = Some(op_appends); // ADDITEMS
    t[b's' as usize] = Some(op_setitem);
    t[b'u' as usize] = Some(op_setitems);
    // The memo.
    t[b'q' as usize] = Some(op_put);
    t[b'r' as usize] = Some(op_put);
    t[b'p' as usize] = Some(op_put);
    t[0x94] = Some(op_put);
    t[b'h' as usize] = Some(op_get);
    t[b'j' as usize] = Some(op_get);
    t[b'g' as usize] = Some(op_get);
    // Objects: only the accepted globals, interpreted as data constructors.
    t[b'c' as usize] = Some(op_global);
    t[0x93] = Some(op_stack_global);
    t[b'R' as usize] = Some(op_reduce);
    t[0x81] = Some(op_reduce); // NEWOBJ: cls.__new__(cls, *args)
    t[b'b' as usize] = Some(op_build);
    t[b'Q' as usize] = Some(op_persid);
    t[b'P' as usize] = Some(op_persid);
    t
};

impl Machine<'_> {
    fn run(&mut self, persistent: &mut dyn PersistentLoad) -> Result<Value, CheckpointError> {
        loop {
            let opcode = self.u8()?;
            let Some(op) = OPS[usize::from(opcode)] else {
                return Err(malformed(format!(
                    "unsupported pickle opcode 0x{opcode:02x} at byte {}",
                    self.pos - 1
                )));
            };
            if let Flow::Stop(value) = op(self, opcode, persistent)? {
                return Ok(value);
            }
        }
    }

    fn push(&mut self, value: Value) -> OpResult {
        self.stack.push(value);
        Ok(Flow::Continue)
    }

    /// A length prefix: one byte, four bytes (u32) or eight bytes (u64), little-endian.
    fn length(&mut self, width: usize) -> Result<usize, CheckpointError> {
        let n = match width {
            1 => u64::from(self.u8()?),
            4 => u64::from(u32::from_le_bytes(self.array()?)),
            _ => u64::from_le_bytes(self.array()?),
        };
        usize::try_from(n).map_err(|_| malformed("length too large".into()))
    }

    /// A decimal number on a text line (protocol 0 memo indices).
    fn line_number<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, CheckpointError> {
        let line = self.line()?;
        line.parse()
            .map_err(|_| malformed(format!("bad {what} {line:?}")))
    }
}

fn op_proto(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.u8()?;
    Ok(Flow::Continue)
}

fn op_frame(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.take(8)?; // a length hint only
    Ok(Flow::Continue)
}

fn op_stop(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    Ok(Flow::Stop(m.pop()?))
}

fn op_mark(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.marks.push(m.stack.len());
    Ok(Flow::Continue)
}

fn op_pop(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.pop()?;
    Ok(Flow::Continue)
}

fn op_pop_mark(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.pop_mark()?;
    Ok(Flow::Continue)
}

fn op_dup(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let top = m.top()?.clone();
    m.push(top)
}

fn op_none(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.push(Value::None)
}

fn op_bool(m: &mut Machine<'_>, opcode: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.push(Value::Bool(opcode == 0x88))
}

/// BININT (i32), BININT1 (u8), BININT2 (u16).
fn op_binint(m: &mut Machine<'_>, opcode: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let v = match opcode {
        b'J' => i64::from(i32::from_le_bytes(m.array()?)),
        b'K' => i64::from(m.u8()?),
        _ => i64::from(u16::from_le_bytes(m.array()?)),
    };
    m.push(Value::Int(v))
}

/// LONG1 / LONG4: little-endian two's complement of a given byte length.
fn op_long_bin(m: &mut Machine<'_>, opcode: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let n = if opcode == 0x8a {
        usize::from(m.u8()?)
    } else {
        let n = i32::from_le_bytes(m.array()?);
        usize::try_from(n).map_err(|_| malformed("negative LONG4 size".into()))?
    };
    let bytes = m.take(n)?.to_vec();
    m.push(long_value(bytes))
}

fn op_int_text(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let line = m.line()?;
    let value = match line.as_str() {
        "00" => Value::Bool(false),
        "01" => Value::Bool(true),
        text => Value::Int(
            text.parse()
                .map_err(|_| malformed(format!("bad INT {text:?}")))?,
        ),
    };
    m.push(value)
}

fn op_long_text(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let line = m.line()?;
    let text = line.trim_end_matches('L');
    let v = text
        .parse()
        .map_err(|_| malformed(format!("bad LONG {text:?}")))?;
    m.push(Value::Int(v))
}

fn op_float(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let v = f64::from_be_bytes(m.array()?);
    m.push(Value::Float(v))
}

/// BINUNICODE (u32 length), SHORT_BINUNICODE (u8), BINUNICODE8 (u64).
fn op_unicode(m: &mut Machine<'_>, opcode: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let width = match opcode {
        0x8c => 1,
        b'X' => 4,
        _ => 8,
    };
    let n = m.length(width)?;
    let s = m.utf8(n)?;
    m.push(Value::Str(s))
}

/// SHORT_BINSTRING / BINSTRING: protocol-2 byte strings, read as text.
fn op_binstring(m: &mut Machine<'_>, opcode: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let n = m.length(if opcode == b'U' { 1 } else { 4 })?;
    let s = String::from_utf8_lossy(m.take(n)?).into_owned();
    m.push(Value::Str(s))
}

fn op_unicode_text(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let line = m.line()?;
    m.push(Value::Str(line))
}

/// SHORT_BINBYTES (u8 length), BINBYTES (u32), BINBYTES8 (u64).
fn op_bytes(m: &mut Machine<'_>, opcode: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let width = match opcode {
        b'C' => 1,
        b'B' => 4,
        _ => 8,
    };
    let n = m.length(width)?;
    let bytes = m.take(n)?.to_vec();
    m.push(Value::Bytes(bytes))
}

fn op_empty_tuple(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.push(Value::Tuple(Rc::new(Vec::new())))
}

fn op_tuple(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let items = m.pop_mark()?;
    m.push(Value::Tuple(Rc::new(items)))
}

/// TUPLE1 / TUPLE2 / TUPLE3: the top one to three items.
fn op_small_tuple(m: &mut Machine<'_>, opcode: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let n = usize::from(opcode - 0x84);
    if m.stack.len() < n {
        return Err(malformed("pickle stack underflow".into()));
    }
    let items = m.stack.split_off(m.stack.len() - n);
    m.push(Value::Tuple(Rc::new(items)))
}

fn op_empty_list(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.push(Value::List(Rc::default()))
}

fn op_list(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let items = m.pop_mark()?;
    m.push(Value::List(Rc::new(RefCell::new(items))))
}

fn op_empty_dict(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.push(Value::Dict(Rc::default()))
}

fn op_dict(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let items = m.pop_mark()?;
    let dict = Value::Dict(Rc::default());
    Machine::set_items(&dict, items)?;
    m.push(dict)
}

fn op_append(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let item = m.pop()?;
    Machine::append(m.top()?, vec![item])?;
    Ok(Flow::Continue)
}

/// APPENDS, and ADDITEMS (sets are read as lists).
fn op_appends(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let items = m.pop_mark()?;
    Machine::append(m.top()?, items)?;
    Ok(Flow::Continue)
}

fn op_setitem(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let value = m.pop()?;
    let key = m.pop()?;
    Machine::set_items(m.top()?, vec![key, value])?;
    Ok(Flow::Continue)
}

fn op_setitems(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let items = m.pop_mark()?;
    Machine::set_items(m.top()?, items)?;
    Ok(Flow::Continue)
}

/// BINPUT (u8 index), LONG_BINPUT (u32), PUT (text), MEMOIZE (next index).
fn op_put(m: &mut Machine<'_>, opcode: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let index = match opcode {
        b'q' => u32::from(m.u8()?),
        b'r' => u32::from_le_bytes(m.array()?),
        b'p' => m.line_number("PUT")?,
        _ => u32::try_from(m.memo.len()).map_err(|_| malformed("memo too large".into()))?,
    };
    m.memo_put(index)?;
    Ok(Flow::Continue)
}

/// BINGET (u8 index), LONG_BINGET (u32), GET (text).
fn op_get(m: &mut Machine<'_>, opcode: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let index = match opcode {
        b'h' => u32::from(m.u8()?),
        b'j' => u32::from_le_bytes(m.array()?),
        _ => m.line_number("GET")?,
    };
    let v = m.memo_get(index)?;
    m.push(v)
}

fn op_global(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let module = m.line()?;
    let name = m.line()?;
    m.global(&module, &name)?;
    Ok(Flow::Continue)
}

fn op_stack_global(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let name = m.pop()?;
    let module = m.pop()?;
    match (module.as_str(), name.as_str()) {
        (Some(module), Some(name)) => m.global(module, name)?,
        _ => return Err(malformed("STACK_GLOBAL without strings".into())),
    }
    Ok(Flow::Continue)
}

/// REDUCE and NEWOBJ: `callable(*args)` for the accepted globals only.
fn op_reduce(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    let args = m.pop()?;
    let callable = m.pop()?;
    let value = Machine::reduce(callable, args)?;
    m.push(value)
}

/// BUILD: object state (an OrderedDict's `_metadata`): not needed.
fn op_build(m: &mut Machine<'_>, _: u8, _: &mut dyn PersistentLoad) -> OpResult {
    m.pop()?;
    m.top()?;
    Ok(Flow::Continue)
}

/// BINPERSID (the id on the stack) and PERSID (the id on a text line).
fn op_persid(m: &mut Machine<'_>, opcode: u8, persistent: &mut dyn PersistentLoad) -> OpResult {
    let pid = if opcode == b'Q' {
        m.pop()?
    } else {
        Value::Str(m.line()?)
    };
    let value = persistent.load(pid)?;
    m.push(value)
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
