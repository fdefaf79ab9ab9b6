//! A safe, data-only pickle reader for `torch.save` files.
//!
//! It understands only the opcodes `torch.save` emits and builds plain values; the
//! only "calls" it knows are a fixed whitelist (OrderedDict, the tensor rebuilders
//! and storage types), all of which it evaluates itself. Nothing from the file is
//! ever imported or executed.
//!
//! Containers live in a flat arena and values refer to them by index, so values
//! never nest: no recursion in drop or traversal, whatever the file says.

use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::rc::Rc;

/// The phrase every refusal of code carries, so users know why a file is rejected.
const NO_CODE: &str = "a checkpoint must never run code";

/// Element type of a torch storage, named by its legacy storage class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StorageDtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDtype {
    /// Maps `torch.<Name>Storage` to its element type.
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
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

    pub(crate) fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    pub(crate) fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F64 | Self::F16 | Self::BF16)
    }
}

/// A storage as named by a persistent id: the zip entry `data/<key>`.
#[derive(Clone, Debug)]
pub(crate) struct StorageRef {
    pub dtype: StorageDtype,
    pub key: String,
}

/// A tensor view on a storage, not yet read (elements, not bytes).
#[derive(Clone, Debug)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// The whitelisted globals; anything else is refused when the GLOBAL is read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Callable {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    Storage(StorageDtype),
}

/// A flat pickle value; containers are indices into [`Pickle`]'s arena.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    None,
    /// Payloads the reader never needs are parsed and dropped.
    Bool,
    Int(i64),
    Float,
    Str(Rc<str>),
    Bytes,
    Tuple(usize),
    List(usize),
    Dict(usize),
    Global(Callable),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    /// Short type name for error messages (never prints contents).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class/function",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// A decoded pickle: the root value and the containers it refers to.
#[derive(Default)]
pub(crate) struct Pickle {
    tuples: Vec<Vec<Value>>,
    lists: Vec<Vec<Value>>,
    dicts: Vec<Vec<(Value, Value)>>,
}

impl Pickle {
    /// The (key, value) pairs of a dict value, in insertion order; None if not a dict.
    pub(crate) fn dict_items(&self, v: &Value) -> Option<&[(Value, Value)]> {
        match v {
            Value::Dict(i) => self.dicts.get(*i).map(Vec::as_slice),
            _ => None,
        }
    }

    /// Looks up a string key in a dict (the last assignment wins, as in Python).
    pub(crate) fn dict_get<'a>(&'a self, dict: &Value, key: &str) -> Option<&'a Value> {
        let items = self.dict_items(dict)?;
        items.iter().rev().find(|(k, _)| matches!(k, Value::Str(s) if &**s == key)).map(|(_, v)| v)
    }

    fn tuple(&self, v: &Value) -> Option<&[Value]> {
        match v {
            Value::Tuple(i) => self.tuples.get(*i).map(Vec::as_slice),
            _ => None,
        }
    }

    fn new_tuple(&mut self, items: Vec<Value>) -> Value {
        self.tuples.push(items);
        Value::Tuple(self.tuples.len() - 1)
    }

    fn new_list(&mut self, items: Vec<Value>) -> Value {
        self.lists.push(items);
        Value::List(self.lists.len() - 1)
    }

    fn new_dict(&mut self) -> Value {
        self.dicts.push(Vec::new());
        Value::Dict(self.dicts.len() - 1)
    }
}

/// Runs the pickle and returns its arena and root value.
pub(crate) fn unpickle(bytes: &[u8]) -> Result<(Pickle, Value)> {
    let mut m = Machine {
        data: bytes,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        p: Pickle::default(),
    };
    loop {
        let at = m.pos;
        let op = m.byte().map_err(|_| anyhow!("pickle ends without a STOP opcode (truncated data.pkl)"))?;
        if let Some(root) = m.step(op).map_err(|e| anyhow!("pickle byte {at}, opcode {}: {e}", op_label(op)))? {
            return Ok((m.p, root));
        }
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    /// Keyed by index: a hostile file may use any u32, so no dense Vec.
    memo: HashMap<u32, Value>,
    p: Pickle,
}

impl Machine<'_> {
    /// Executes one opcode; returns the root value at STOP.
    fn step(&mut self, op: u8) -> Result<Option<Value>> {
        match op {
            0x80 => self.proto()?,                                // PROTO
            0x95 => self.take(8).map(|_| ())?,                    // FRAME: framing hint only
            b'.' => return self.pop().map(Some),                  // STOP
            b'(' => self.marks.push(self.stack.len()),            // MARK
            b'0' => drop(self.pop()?),                            // POP
            b'1' => drop(self.pop_mark()?),                       // POP_MARK
            b'2' => self.dup()?,                                  // DUP
            b'N' => self.stack.push(Value::None),                 // NONE
            0x88 => self.stack.push(Value::Bool),                 // NEWTRUE
            0x89 => self.stack.push(Value::Bool),                 // NEWFALSE
            b'J' => self.binint()?,                               // BININT
            b'K' => self.uint(1)?,                                // BININT1
            b'M' => self.uint(2)?,                                // BININT2
            0x8a => self.long1()?,                                // LONG1
            b'G' => self.binfloat()?,                             // BINFLOAT
            b'X' => self.unicode(4)?,                             // BINUNICODE
            0x8c => self.unicode(1)?,                             // SHORT_BINUNICODE
            0x8d => self.unicode(8)?,                             // BINUNICODE8
            b'B' => self.bytes(4)?,                               // BINBYTES
            b'C' => self.bytes(1)?,                               // SHORT_BINBYTES
            b'}' => self.push_dict(),                             // EMPTY_DICT
            b']' => self.push_list(Vec::new()),                   // EMPTY_LIST
            b')' => self.push_tuple(Vec::new()),                  // EMPTY_TUPLE
            b't' => self.tuple_mark()?,                           // TUPLE
            0x85..=0x87 => self.tuple_n(usize::from(op - 0x84))?, // TUPLE1..3
            b'l' => self.list_mark()?,                            // LIST
            b'd' => self.dict_mark()?,                            // DICT
            b's' => self.setitem()?,                              // SETITEM
            b'u' => self.setitems()?,                             // SETITEMS
            b'a' => self.append()?,                               // APPEND
            b'e' => self.appends()?,                              // APPENDS
            b'q' => self.put(1)?,                                 // BINPUT
            b'r' => self.put(4)?,                                 // LONG_BINPUT
            0x94 => self.memoize()?,                              // MEMOIZE
            b'h' => self.get(1)?,                                 // BINGET
            b'j' => self.get(4)?,                                 // LONG_BINGET
            b'c' => self.global()?,                               // GLOBAL
            0x93 => self.stack_global()?,                         // STACK_GLOBAL
            b'R' => self.reduce()?,                               // REDUCE
            b'b' => self.build()?,                                // BUILD
            b'Q' => self.binpersid()?,                            // BINPERSID
            _ => bail!("not allowed: {NO_CODE}"),
        }
        Ok(None)
    }

    // ---- reading the byte stream (all bounds checked) ----

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| anyhow!("argument runs past the end of the pickle ({n} bytes wanted)"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// Little-endian unsigned integer of `n` ≤ 8 bytes.
    fn le_uint(&mut self, n: usize) -> Result<u64> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A length prefix, checked against the bytes actually left before anything is allocated.
    fn len_prefix(&mut self, n: usize) -> Result<usize> {
        let len = self.le_uint(n)?;
        let left = self.data.len() - self.pos;
        usize::try_from(len)
            .ok()
            .filter(|&l| l <= left)
            .ok_or_else(|| anyhow!("length {len} runs past the end of the pickle"))
    }

    /// A newline-terminated ASCII line (GLOBAL's module and name).
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or_else(|| anyhow!("GLOBAL name is not newline-terminated"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| anyhow!("GLOBAL name is not UTF-8"))?.to_string();
        self.pos += n + 1;
        Ok(s)
    }

    // ---- the stack ----

    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            bail!("pops across a MARK");
        }
        self.stack.pop().ok_or_else(|| anyhow!("stack underflow"))
    }

    fn top(&self) -> Result<&Value> {
        self.stack.last().ok_or_else(|| anyhow!("stack underflow"))
    }

    /// Everything pushed since the last MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| anyhow!("no MARK on the stack"))?;
        if m > self.stack.len() {
            bail!("MARK above the stack top");
        }
        Ok(self.stack.split_off(m))
    }

    fn dup(&mut self) -> Result<()> {
        let v = self.top()?.clone();
        self.stack.push(v);
        Ok(())
    }

    fn push_dict(&mut self) {
        let d = self.p.new_dict();
        self.stack.push(d);
    }

    fn push_list(&mut self, items: Vec<Value>) {
        let l = self.p.new_list(items);
        self.stack.push(l);
    }

    fn push_tuple(&mut self, items: Vec<Value>) {
        let t = self.p.new_tuple(items);
        self.stack.push(t);
    }

    // ---- scalars ----

    fn proto(&mut self) -> Result<()> {
        let v = self.byte()?;
        if v > 5 {
            bail!("unsupported pickle protocol {v}");
        }
        Ok(())
    }

    fn binint(&mut self) -> Result<()> {
        let v = self.le_uint(4)? as u32 as i32;
        self.stack.push(Value::Int(i64::from(v)));
        Ok(())
    }

    fn uint(&mut self, n: usize) -> Result<()> {
        let v = self.le_uint(n)?;
        self.stack.push(Value::Int(v as i64));
        Ok(())
    }

    /// Two's-complement little-endian integer of up to 8 bytes (Python ints that fit i64).
    fn long1(&mut self) -> Result<()> {
        let n = usize::from(self.byte()?);
        if n > 8 {
            bail!("integer of {n} bytes does not fit in 64 bits");
        }
        let raw = self.le_uint(n)?;
        let v = if n == 0 {
            0
        } else {
            let shift = 64 - 8 * n as u32;
            ((raw << shift) as i64) >> shift
        };
        self.stack.push(Value::Int(v));
        Ok(())
    }

    fn binfloat(&mut self) -> Result<()> {
        self.take(8)?;
        self.stack.push(Value::Float);
        Ok(())
    }

    fn unicode(&mut self, prefix: usize) -> Result<()> {
        let n = self.len_prefix(prefix)?;
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| anyhow!("string is not valid UTF-8"))?;
        let v = Value::Str(Rc::from(s));
        self.stack.push(v);
        Ok(())
    }

    fn bytes(&mut self, prefix: usize) -> Result<()> {
        let n = self.len_prefix(prefix)?;
        self.take(n)?;
        self.stack.push(Value::Bytes);
        Ok(())
    }

    // ---- containers ----

    fn tuple_mark(&mut self) -> Result<()> {
        let items = self.pop_mark()?;
        self.push_tuple(items);
        Ok(())
    }

    fn tuple_n(&mut self, n: usize) -> Result<()> {
        let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>>>()?;
        items.reverse();
        self.push_tuple(items);
        Ok(())
    }

    fn list_mark(&mut self) -> Result<()> {
        let items = self.pop_mark()?;
        self.push_list(items);
        Ok(())
    }

    fn dict_mark(&mut self) -> Result<()> {
        let items = self.pop_mark()?;
        self.push_dict();
        self.extend_dict(items)
    }

    fn setitem(&mut self) -> Result<()> {
        let v = self.pop()?;
        let k = self.pop()?;
        self.extend_dict(vec![k, v])
    }

    fn setitems(&mut self) -> Result<()> {
        let items = self.pop_mark()?;
        self.extend_dict(items)
    }

    /// Adds alternating key/value items to the dict on the stack top.
    fn extend_dict(&mut self, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            bail!("odd number of items for a dict");
        }
        let d = match self.top()? {
            Value::Dict(i) => *i,
            other => bail!("sets items on a {}, not a dict", other.kind()),
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            self.p.dicts[d].push((k, v));
        }
        Ok(())
    }

    fn append(&mut self) -> Result<()> {
        let v = self.pop()?;
        self.extend_list(vec![v])
    }

    fn appends(&mut self) -> Result<()> {
        let items = self.pop_mark()?;
        self.extend_list(items)
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<()> {
        match self.top()? {
            Value::List(i) => {
                let i = *i;
                self.p.lists[i].extend(items);
                Ok(())
            }
            other => bail!("appends to a {}, not a list", other.kind()),
        }
    }

    // ---- memo ----

    fn put(&mut self, n: usize) -> Result<()> {
        let idx = self.le_uint(n)? as u32;
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn memoize(&mut self) -> Result<()> {
        let idx = u32::try_from(self.memo.len()).map_err(|_| anyhow!("memo overflow"))?;
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn get(&mut self, n: usize) -> Result<()> {
        let idx = self.le_uint(n)? as u32;
        let v = self.memo.get(&idx).cloned().ok_or_else(|| anyhow!("memo entry {idx} was never stored"))?;
        self.stack.push(v);
        Ok(())
    }

    // ---- globals and calls ----

    fn global(&mut self) -> Result<()> {
        let module = self.line()?;
        let name = self.line()?;
        let c = lookup_global(&module, &name)?;
        self.stack.push(Value::Global(c));
        Ok(())
    }

    fn stack_global(&mut self) -> Result<()> {
        let name = self.pop()?;
        let module = self.pop()?;
        match (module, name) {
            (Value::Str(m), Value::Str(n)) => {
                let c = lookup_global(&m, &n)?;
                self.stack.push(Value::Global(c));
                Ok(())
            }
            _ => bail!("STACK_GLOBAL needs two strings"),
        }
    }

    fn reduce(&mut self) -> Result<()> {
        let args = self.pop()?;
        let func = self.pop()?;
        let args =
            self.p.tuple(&args).ok_or_else(|| anyhow!("REDUCE arguments are a {}, not a tuple", args.kind()))?.to_vec();
        let v = match func {
            Value::Global(c) => self.call(c, &args)?,
            other => bail!("REDUCE calls a {}: {NO_CODE}", other.kind()),
        };
        self.stack.push(v);
        Ok(())
    }

    /// Evaluates a whitelisted callable ourselves.
    fn call(&mut self, c: Callable, args: &[Value]) -> Result<Value> {
        match c {
            Callable::OrderedDict if args.is_empty() => Ok(self.p.new_dict()),
            Callable::OrderedDict => bail!("OrderedDict called with {} arguments, expected none", args.len()),
            Callable::RebuildTensorV2 if (6..=7).contains(&args.len()) => self.rebuild_tensor(args),
            Callable::RebuildTensorV2 => {
                bail!("_rebuild_tensor_v2 called with {} arguments, expected 6 or 7", args.len())
            }
            Callable::RebuildTensor if args.len() == 4 => self.rebuild_tensor(args),
            Callable::RebuildTensor => bail!("_rebuild_tensor called with {} arguments, expected 4", args.len()),
            Callable::RebuildParameter => match args.first() {
                Some(t @ Value::Tensor(_)) if (3..=4).contains(&args.len()) => Ok(t.clone()),
                _ => bail!("_rebuild_parameter needs (tensor, requires_grad, hooks)"),
            },
            Callable::Storage(_) => bail!("a storage type is called directly; torch.save never does that"),
        }
    }

    /// `(storage, offset, size, stride, ...)` → a lazy tensor view.
    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value> {
        let storage = match &args[0] {
            Value::Storage(s) => (**s).clone(),
            other => bail!("tensor storage is a {}, not a storage", other.kind()),
        };
        let offset = to_usize(&args[1], "storage offset")?;
        let size = self.usize_tuple(&args[2], "size")?;
        let stride = self.usize_tuple(&args[3], "stride")?;
        if size.len() != stride.len() {
            bail!("tensor size {size:?} and stride {stride:?} differ in rank");
        }
        Ok(Value::Tensor(Rc::new(TensorRef { storage, offset, size, stride })))
    }

    fn usize_tuple(&self, v: &Value, what: &str) -> Result<Vec<usize>> {
        let items = self.p.tuple(v).ok_or_else(|| anyhow!("tensor {what} is a {}, not a tuple", v.kind()))?;
        items.iter().map(|x| to_usize(x, what)).collect()
    }

    /// BUILD sets an object's state; we accept it only where torch.save emits it
    /// (an OrderedDict's `_metadata`, a tensor's state) and drop the state.
    fn build(&mut self) -> Result<()> {
        let _state = self.pop()?;
        match self.top()? {
            Value::Dict(_) | Value::Tensor(_) => Ok(()),
            other => bail!("BUILD on a {}: {NO_CODE}", other.kind()),
        }
    }

    /// Persistent id `('storage', storage_type, key, location, numel)` → a storage reference.
    fn binpersid(&mut self) -> Result<()> {
        let pid = self.pop()?;
        let items = self.p.tuple(&pid).ok_or_else(|| anyhow!("persistent id is a {}, not a tuple", pid.kind()))?;
        let storage = match items {
            [Value::Str(tag), Value::Global(Callable::Storage(dtype)), Value::Str(key), _location, Value::Int(_numel)]
                if &**tag == "storage" =>
            {
                StorageRef { dtype: *dtype, key: key.to_string() }
            }
            _ => bail!("persistent id is not ('storage', torch.<T>Storage, key, location, numel)"),
        };
        self.stack.push(Value::Storage(Rc::new(storage)));
        Ok(())
    }
}

fn to_usize(v: &Value, what: &str) -> Result<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).map_err(|_| anyhow!("tensor {what} {i} is negative")),
        other => bail!("tensor {what} is a {}, not an int", other.kind()),
    }
}

/// The whitelist. Everything outside it is refused by name.
fn lookup_global(module: &str, name: &str) -> Result<Callable> {
    let c = match (module, name) {
        ("collections", "OrderedDict") => Some(Callable::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Callable::RebuildTensorV2),
        ("torch._utils", "_rebuild_tensor") => Some(Callable::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Callable::RebuildParameter),
        ("torch", n) => StorageDtype::from_class(n).map(Callable::Storage),
        _ => None,
    };
    c.ok_or_else(|| anyhow!("pickle refers to forbidden global `{module}.{name}`: {NO_CODE}"))
}

/// "0x63 (GLOBAL)" for error messages.
fn op_label(op: u8) -> String {
    match op_name(op) {
        Some(n) => format!("0x{op:02x} ({n})"),
        None => format!("0x{op:02x} (unknown)"),
    }
}

fn op_name(op: u8) -> Option<&'static str> {
    Some(match op {
        0x80 => "PROTO",
        0x95 => "FRAME",
        b'.' => "STOP",
        b'(' => "MARK",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'N' => "NONE",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'M' => "BININT2",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'G' => "BINFLOAT",
        b'X' => "BINUNICODE",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8e => "BINBYTES8",
        b'}' => "EMPTY_DICT",
        b']' => "EMPTY_LIST",
        b')' => "EMPTY_TUPLE",
        b't' => "TUPLE",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        b'l' => "LIST",
        b'd' => "DICT",
        b's' => "SETITEM",
        b'u' => "SETITEMS",
        b'a' => "APPEND",
        b'e' => "APPENDS",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        0x94 => "MEMOIZE",
        b'h' => "BINGET",
        b'j' => "LONG_BINGET",
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b'Q' => "BINPERSID",
        b'P' => "PERSID",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        b'I' => "INT",
        b'L' => "LONG",
        b'F' => "FLOAT",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'p' => "PUT",
        b'g' => "GET",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}
