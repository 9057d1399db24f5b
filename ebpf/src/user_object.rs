//! What the agent reads of a user's object before loading it: which section
//! (hence program type and hook) each program is in. aya keeps programs by
//! function name and their type, not the section's hook
//! (`tp_btf/<tracepoint>`), so the ELF's symbols say it.

use std::collections::BTreeMap;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

#[derive(Debug, thiserror::Error)]
pub enum UserObjectError {
    #[error("not an ELF object: {0}")]
    Elf(#[from] object::Error),
    #[error("the object has no programs (functions in a SEC(\"...\") other than .text)")]
    NoPrograms,
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
