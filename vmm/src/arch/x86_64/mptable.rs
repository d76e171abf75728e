//! The Intel MultiProcessor table: how a kernel without ACPI learns about its CPUs, the IOAPIC
//! and the ISA interrupt routing. Linux scans the last KiB of base memory for it.

use vm_memory::{Bytes, GuestAddress};

use super::ArchError;
use crate::layout::{APIC_START, EBDA_START, IOAPIC_START, IRQ_MAX};
use crate::memory::GuestMemory;

/// Most vCPUs whose entries fit in the KiB the kernel scans.
pub const MAX_VCPUS: u8 = 32;

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const SPEC_REV: u8 = 4;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
/// Family 6 signature and the FPU + APIC feature flags.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds the floating pointer followed by the configuration table, both for `base`.
pub fn build(vcpus: u8, base: u64) -> Result<Vec<u8>, ArchError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(ArchError::TooManyVcpus(vcpus));
    }
    let ioapic_id = vcpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..vcpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTPROCESSOR } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, id, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    count += 2;
    for irq in 0..=IRQ_MAX as u8 {
        // Type, polarity/trigger "conforms to bus", source bus 0 irq -> IOAPIC pin of the same number.
        entries.extend_from_slice(&[
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            0,
            irq,
            ioapic_id,
            irq,
        ]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0, 0, 0, 0, 0]);
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = base + 16;
    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.extend_from_slice(&[SPEC_REV, 0]); // checksum patched below
    table.extend_from_slice(b"NOOK    ");
    table.extend_from_slice(b"MICROVM     ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16 + table.len());
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(table_addr as u32).to_le_bytes());
    fp.extend_from_slice(&[1, SPEC_REV, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp);
    fp.extend_from_slice(&table);
    Ok(fp)
}

/// Writes the MP table for `vcpus` at the start of the EBDA.
pub fn setup(mem: &GuestMemory, vcpus: u8) -> Result<(), ArchError> {
    let bytes = build(vcpus, EBDA_START)?;
    debug_assert!(bytes.len() <= 1024);
    mem.write_slice(&bytes, GuestAddress(EBDA_START))
        .map_err(|source| ArchError::GuestWrite {
            what: "MP table",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn checksums_and_counts_are_right() {
        for vcpus in [1, 2, MAX_VCPUS] {
            let t = build(vcpus, EBDA_START).unwrap();
            assert!(t.len() <= 1024, "{} bytes for {vcpus} vCPUs", t.len());
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0);
            let ptr = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
            assert_eq!(ptr, EBDA_START + 16);
            let table = &t[16..];
            assert_eq!(&table[..4], b"PCMP");
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert_eq!(sum(table), 0);
            let count = u16::from_le_bytes([table[34], table[35]]);
            assert_eq!(count, u16::from(vcpus) + 2 + 24 + 2);
            // The first processor is the bootstrap one, the others are plain enabled CPUs.
            assert_eq!(table[44 + 3], CPU_ENABLED | CPU_BOOTPROCESSOR);
            if vcpus > 1 {
                assert_eq!((table[64 + 1], table[64 + 3]), (1, CPU_ENABLED));
            }
        }
    }

    #[test]
    fn bad_vcpu_counts_are_refused() {
        assert!(build(0, EBDA_START).is_err());
        assert!(build(MAX_VCPUS + 1, EBDA_START).is_err());
    }
}
