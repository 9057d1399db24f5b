//! A small reader of the BPF Type Format: enough to name kernel enum values
//! (drop reasons), to see a tracepoint's arity (which program variant fits
//! this kernel) and to check our map layouts against the object's BTF.
//! aya parses BTF too but keeps those accessors private.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("BTF data is truncated or malformed at byte {0}")]
    Malformed(usize),
    #[error("not BTF data (bad magic)")]
    BadMagic,
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("object file: {0}")]
    Object(String),
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    vlen: u32,
    size_or_type: u32,
    /// Byte range of the kind-specific data after the common header.
    extra: (usize, usize),
}

/// Parsed BTF: types by id (1-based) and the string section.
pub struct Btf {
    data: Vec<u8>,
    types: Vec<Type>,
    str_off: usize,
    str_len: usize,
    by_name: HashMap<(String, u32), u32>,
}

/// A struct member: name and byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub offset: u32,
}

fn u32_at(d: &[u8], at: usize) -> Result<u32, BtfError> {
    d.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(BtfError::Malformed(at))
}

impl Btf {
    /// Parse raw BTF (as in /sys/kernel/btf/vmlinux or an object's .BTF).
    pub fn parse(data: Vec<u8>) -> Result<Btf, BtfError> {
        if data.get(0..2) != Some(&[0x9f, 0xeb]) {
            return Err(BtfError::BadMagic);
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let type_off = hdr_len + u32_at(&data, 8)? as usize;
        let type_len = u32_at(&data, 12)? as usize;
        let str_off = hdr_len + u32_at(&data, 16)? as usize;
        let str_len = u32_at(&data, 20)? as usize;
        if data.len() < str_off + str_len || data.len() < type_off + type_len {
            return Err(BtfError::Malformed(data.len()));
        }
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            vlen: 0,
            size_or_type: 0,
            extra: (0, 0),
        }];
        let mut at = type_off;
        let end = type_off + type_len;
        while at < end {
            let name = u32_at(&data, at)?;
            let info = u32_at(&data, at + 4)?;
            let size_or_type = u32_at(&data, at + 8)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let start = at + 12;
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen as usize,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen as usize,
                _ => 0,
            };
            if start + extra > end {
                return Err(BtfError::Malformed(start));
            }
            types.push(Type {
                name,
                kind,
                vlen,
                size_or_type,
                extra: (start, start + extra),
            });
            at = start + extra;
        }
        let mut btf = Btf {
            data,
            types,
            str_off,
            str_len,
            by_name: HashMap::new(),
        };
        for id in 1..btf.types.len() {
            let t = &btf.types[id];
            if t.name != 0 {
                let name = btf.string(t.name).to_string();
                btf.by_name.entry((name, t.kind)).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    /// The running kernel's BTF.
    pub fn from_kernel() -> Result<Btf, BtfError> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.into(),
            source,
        })?;
        Btf::parse(data)
    }

    /// The `.BTF` section of an ELF object.
    pub fn from_object(elf: &[u8]) -> Result<Btf, BtfError> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(elf).map_err(|e| BtfError::Object(e.to_string()))?;
        let section = file
            .section_by_name(".BTF")
            .ok_or_else(|| BtfError::Object("no .BTF section".into()))?;
        let data = section.data().map_err(|e| BtfError::Object(e.to_string()))?;
        Btf::parse(data.to_vec())
    }

    fn string(&self, off: u32) -> &str {
        let start = self.str_off + off as usize;
        let end = self.str_off + self.str_len;
        let bytes = self.data.get(start..end).unwrap_or_default();
        let n = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..n]).unwrap_or("")
    }

    fn find(&self, name: &str, kind: u32) -> Option<&Type> {
        self.by_name
            .get(&(name.to_string(), kind))
            .and_then(|id| self.types.get(*id as usize))
    }

    /// Size in bytes of `struct name`.
    pub fn struct_size(&self, name: &str) -> Option<u32> {
        self.find(name, KIND_STRUCT).map(|t| t.size_or_type)
    }

    /// Members of `struct name` with byte offsets.
    pub fn struct_members(&self, name: &str) -> Option<Vec<Member>> {
        let t = self.find(name, KIND_STRUCT)?;
        let mut out = Vec::new();
        for i in 0..t.vlen as usize {
            let at = t.extra.0 + 12 * i;
            let name = u32_at(&self.data, at).ok()?;
            let offset_bits = u32_at(&self.data, at + 8).ok()? & 0x00ff_ffff;
            out.push(Member {
                name: self.string(name).to_string(),
                offset: offset_bits / 8,
            });
        }
        Some(out)
    }

    /// (name, value) of every enumerator of `enum name` (32- or 64-bit).
    pub fn enum_values(&self, name: &str) -> Option<Vec<(String, i64)>> {
        if let Some(t) = self.find(name, KIND_ENUM) {
            return Some(
                (0..t.vlen as usize)
                    .filter_map(|i| {
                        let at = t.extra.0 + 8 * i;
                        let n = u32_at(&self.data, at).ok()?;
                        let v = u32_at(&self.data, at + 4).ok()? as i32;
                        Some((self.string(n).to_string(), i64::from(v)))
                    })
                    .collect(),
            );
        }
        let t = self.find(name, KIND_ENUM64)?;
        Some(
            (0..t.vlen as usize)
                .filter_map(|i| {
                    let at = t.extra.0 + 12 * i;
                    let n = u32_at(&self.data, at).ok()?;
                    let lo = u64::from(u32_at(&self.data, at + 4).ok()?);
                    let hi = u64::from(u32_at(&self.data, at + 8).ok()?);
                    Some((self.string(n).to_string(), ((hi << 32) | lo) as i64))
                })
                .collect(),
        )
    }

    /// Number of arguments a raw tracepoint passes to BPF (the prototype of
    /// `btf_trace_<name>` minus its leading context pointer), or None when
    /// the kernel has no such tracepoint.
    pub fn tracepoint_args(&self, name: &str) -> Option<u32> {
        let td = self.find(&format!("btf_trace_{name}"), KIND_TYPEDEF)?;
        let ptr = self.types.get(td.size_or_type as usize)?;
        if ptr.kind != KIND_PTR {
            return None;
        }
        let proto = self.types.get(ptr.size_or_type as usize)?;
        (proto.kind == KIND_FUNC_PROTO).then(|| proto.vlen.saturating_sub(1))
    }
}
