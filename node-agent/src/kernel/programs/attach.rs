//! A loaded object's programs attached by their sections: `tp_btf/`,
//! `tracepoint/`, `raw_tp/`, `cgroup_skb/` (on the cgroup root, beside
//! other programs there). Links live in the object: dropping it detaches.

use std::path::Path;

use aya::programs::Program;

use super::Loaded;
use super::load::{SectionKind, chain};
use crate::kernel::error::verifier_reason;

/// Load and attach every program of the object by its section.
pub(super) fn attach(l: &mut Loaded, cgroup_root: Option<&Path>) -> Result<(), String> {
    let aya_btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    let names: Vec<String> = l.ebpf.programs().map(|(n, _)| n.to_string()).collect();
    let sections = l.section_names.clone();
    for name in names {
        let Some(section) = sections.get(&name) else {
            return Err(format!("program {name}: no section"));
        };
        let Some((kind, hook)) = SectionKind::of_section(section) else {
            return Err(format!("program {name}: section {section} cannot be attached"));
        };
        let Some(prog) = l.ebpf.program_mut(&name) else {
            continue;
        };
        let refused = |e: &aya::programs::ProgramError| verifier_reason(&name, e);
        match (kind, prog) {
            (SectionKind::TpBtf, Program::BtfTracePoint(p)) => {
                p.load(hook, &aya_btf).map_err(|e| refused(&e))?;
                p.attach()
                    .map_err(|e| format!("attaching {name} to {section}: {}", chain(&e)))?;
            }
            (SectionKind::Tracepoint, Program::TracePoint(p)) => {
                let Some((category, tp)) = hook.split_once('/') else {
                    return Err(format!(
                        "program {name}: section {section} is not tracepoint/<category>/<name>"
                    ));
                };
                p.load().map_err(|e| refused(&e))?;
                p.attach(category, tp)
                    .map_err(|e| format!("attaching {name} to {section}: {}", chain(&e)))?;
            }
            (SectionKind::RawTp, Program::RawTracePoint(p)) => {
                p.load().map_err(|e| refused(&e))?;
                p.attach(hook)
                    .map_err(|e| format!("attaching {name} to {section}: {}", chain(&e)))?;
            }
            (SectionKind::CgroupSkb, Program::CgroupSkb(p)) => {
                use aya::programs::{CgroupAttachMode, CgroupSkbAttachType};
                let kind = match hook {
                    "egress" => CgroupSkbAttachType::Egress,
                    "ingress" => CgroupSkbAttachType::Ingress,
                    other => return Err(format!("program {name}: cgroup_skb/{other} is not ingress or egress")),
                };
                let (_, dir) = crate::cgroups::open_skb_cgroup(cgroup_root, &name)?;
                p.load().map_err(|e| refused(&e))?;
                p.attach(&dir, kind, CgroupAttachMode::Single)
                    .map_err(|e| format!("attaching {name} to {section}: {}", chain(&e)))?;
            }
            (_, _) => return Err(format!("program {name}: its type does not match its section {section}")),
        }
        l.programs.push(name);
    }
    Ok(())
}
