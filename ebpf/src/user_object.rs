//! What the agent reads of a user's object before loading anything into the
//! kernel: which section (hence program type and hook) each program is in
//! (aya keeps programs by function name and type, not the section's hook,
//! so the ELF's symbols say it), and its maps' sizes and pinning.

use std::collections::BTreeMap;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

#[derive(Debug, thiserror::Error)]
pub enum UserObjectError {
    #[error("not an ELF object: {0}")]
    Elf(#[from] object::Error),
    #[error("the object has no programs (functions in a SEC(\"...\") other than .text)")]
    NoPrograms,
    #[error("not an eBPF object: {0}")]
    Parse(String),
}

/// One map as the object declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDecl {
    pub name: String,
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    /// Declared with `pinning = LIBBPF_PIN_BY_NAME`.
    pub pinned: bool,
}

/// The maps the object declares (its data sections included).
pub fn maps(bytes: &[u8]) -> Result<Vec<MapDecl>, UserObjectError> {
    let obj = aya_obj::Object::parse(bytes).map_err(|e| UserObjectError::Parse(e.to_string()))?;
    let mut out: Vec<MapDecl> = obj
        .maps
        .iter()
        .map(|(name, m)| MapDecl {
            name: name.clone(),
            map_type: m.map_type(),
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: m.max_entries(),
            pinned: m.pinning() != aya_obj::maps::PinningType::None,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Section name of every program (function symbol outside `.text`), by
/// function name.
pub fn program_sections(bytes: &[u8]) -> Result<BTreeMap<String, String>, UserObjectError> {
    let file = object::File::parse(bytes)?;
    let mut out = BTreeMap::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text {
            continue;
        }
        let Some(index) = sym.section_index() else { continue };
        let section = file.section_by_index(index)?;
        let sname = section.name()?;
        if sname == ".text" || sname.is_empty() {
            continue;
        }
        out.insert(sym.name()?.to_string(), sname.to_string());
    }
    if out.is_empty() {
        return Err(UserObjectError::NoPrograms);
    }
    Ok(out)
}
