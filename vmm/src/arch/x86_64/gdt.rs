//! Segment descriptors for the 32-bit protected-mode PVH entry.

use kvm_bindings::kvm_segment;

/// Packs a GDT descriptor from its flags (access byte in bits 0-7, flags nibble in 12-15),
/// base and 20-bit limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0xffff)
}

/// The boot GDT: null, flat 32-bit code, flat data, and a TSS descriptor (KVM wants a usable TR).
pub const BOOT_GDT: [u64; 4] = [
    0,
    gdt_entry(0xc09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x008b, 0, 0xfffff),
];
/// GDT index of the code segment.
pub const CODE_INDEX: u8 = 1;
/// GDT index of the data segment.
pub const DATA_INDEX: u8 = 2;
/// GDT index of the TSS.
pub const TSS_INDEX: u8 = 3;

fn bits(entry: u64, shift: u32, width: u32) -> u8 {
    ((entry >> shift) & ((1 << width) - 1)) as u8
}

/// The KVM segment register contents equivalent to loading GDT entry `index`.
pub fn segment(entry: u64, index: u8) -> kvm_segment {
    let granular = bits(entry, 55, 1);
    let raw_limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    let present = bits(entry, 47, 1);
    kvm_segment {
        base: ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0x00ff_ffff),
        limit: if granular == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: u16::from(index) * 8,
        type_: bits(entry, 40, 4),
        present,
        dpl: bits(entry, 45, 2),
        db: bits(entry, 54, 1),
        s: bits(entry, 44, 1),
        l: bits(entry, 53, 1),
        g: granular,
        avl: bits(entry, 52, 1),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_code_segment_decodes() {
        let cs = segment(BOOT_GDT[CODE_INDEX as usize], CODE_INDEX);
        assert_eq!((cs.base, cs.limit, cs.selector), (0, 0xffff_ffff, 8));
        assert_eq!(
            (cs.type_, cs.present, cs.db, cs.s, cs.l, cs.g),
            (0xb, 1, 1, 1, 0, 1)
        );
        let tss = segment(BOOT_GDT[TSS_INDEX as usize], TSS_INDEX);
        assert_eq!((tss.type_, tss.s, tss.g, tss.limit), (0xb, 0, 0, 0xfffff));
        assert_eq!(segment(0, 0).unusable, 1);
    }

    #[test]
    fn base_and_limit_round_trip() {
        let e = gdt_entry(0x4093, 0x1234_5678, 0xabcde);
        let s = segment(e, 2);
        assert_eq!((s.base, s.limit, s.g, s.db), (0x1234_5678, 0xabcde, 0, 1));
    }
}
