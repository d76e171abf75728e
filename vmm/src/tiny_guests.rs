//! Tiny hand-written real-mode guests run on this machine's /dev/kvm: port I/O, MMIO, HLT,
//! the i8042 reset and stopping a spinning vCPU from outside.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use crate::bus::BusDevice;
use crate::devices::legacy::I8042;
use crate::exit::{ExitSignal, StopReason, VmExit};
use crate::kvm::vcpu::{install_kick_handler, kick, Buses, Vcpu};
use crate::kvm::vm::Vm;
use crate::memory::GuestMemory;
use crate::thread;

const CODE: u64 = 0x1000;
const TEST_PORT: u64 = 0x500;
const TEST_MMIO: u64 = 0x2_0000;

/// Records writes; reads return a fixed byte.
struct Probe {
    reply: u8,
    writes: Vec<(u64, Vec<u8>)>,
}

impl BusDevice for Probe {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.reply);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.writes.push((offset, data.to_vec()));
    }
}

struct Guest {
    vm: Vm,
    vcpu: Vcpu,
    _mem: GuestMemory,
    buses: Buses,
    port: Arc<Mutex<Probe>>,
    mmio: Arc<Mutex<Probe>>,
    exit: Arc<ExitSignal>,
}

/// Builds a one-vCPU VM with 64 KiB of RAM running `code` in real mode at 0x1000, or None (after
/// a loud message) when the machine has no /dev/kvm.
fn guest(code: &[u8]) -> Option<Guest> {
    if !crate::test_support::have_kvm("the tiny-guest KVM tests") {
        return None;
    }
    let vm = Vm::new().expect("create VM");
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap();
    mem.write_slice(code, GuestAddress(CODE)).unwrap();
    vm.map_memory(&mem).unwrap();
    let vcpu = Vcpu::new(&vm, 0).unwrap();
    let mut sregs = vcpu.fd().get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.fd().set_sregs(&sregs).unwrap();
    let mut regs = vcpu.fd().get_regs().unwrap();
    regs.rip = CODE;
    regs.rflags = 2;
    vcpu.fd().set_regs(&regs).unwrap();

    let exit = Arc::new(ExitSignal::new().unwrap());
    let port = Arc::new(Mutex::new(Probe {
        reply: 0x5a,
        writes: vec![],
    }));
    let mmio = Arc::new(Mutex::new(Probe {
        reply: 0x33,
        writes: vec![],
    }));
    let mut buses = Buses::default();
    buses.pio.insert(port.clone(), TEST_PORT, 1).unwrap();
    buses
        .pio
        .insert(Arc::new(Mutex::new(I8042::new(exit.clone()))), 0x60, 5)
        .unwrap();
    buses.mmio.insert(mmio.clone(), TEST_MMIO, 0x100).unwrap();
    Some(Guest {
        vm,
        vcpu,
        _mem: mem,
        buses,
        port,
        mmio,
        exit,
    })
}

impl Guest {
    fn run(&mut self) -> StopReason {
        self.vcpu.run(&self.buses, &self.exit).expect("vCPU run");
        let _ = &self.vm;
        self.exit
            .wait(Some(Duration::from_secs(5)))
            .expect("the guest stopped")
    }
}

#[test]
fn port_io_round_trip_then_hlt() {
    let code = [
        0xb0, 0x41, // mov al, 'A'
        0xba, 0x00, 0x05, // mov dx, 0x500
        0xee, // out dx, al
        0xec, // in al, dx   (0x5a)
        0x04, 0x01, // add al, 1
        0xee, // out dx, al  (0x5b)
        0xf4, // hlt
    ];
    let Some(mut g) = guest(&code) else { return };
    assert_eq!(g.run(), StopReason::Exit(VmExit::Halted));
    assert_eq!(
        g.port.lock().unwrap().writes,
        vec![(0, vec![0x41]), (0, vec![0x5b])]
    );
}

#[test]
fn mmio_write_and_read() {
    let code = [
        0xb8, 0x00, 0x20, // mov ax, 0x2000
        0x8e, 0xc0, // mov es, ax
        0x26, 0xc6, 0x06, 0x10, 0x00, 0x77, // mov byte es:[0x10], 0x77
        0x26, 0xa0, 0x10, 0x00, // mov al, es:[0x10]  (0x33)
        0xba, 0x00, 0x05, // mov dx, 0x500
        0xee, // out dx, al
        0xf4, // hlt
    ];
    let Some(mut g) = guest(&code) else { return };
    assert_eq!(g.run(), StopReason::Exit(VmExit::Halted));
    assert_eq!(g.mmio.lock().unwrap().writes, vec![(0x10, vec![0x77])]);
    assert_eq!(g.port.lock().unwrap().writes, vec![(0, vec![0x33])]);
}

#[test]
fn i8042_reset_ends_the_vm_before_the_next_instruction() {
    let code = [
        0xb0, 0xfe, // mov al, 0xfe
        0xe6, 0x64, // out 0x64, al  (pulse reset)
        0xba, 0x00, 0x05, // mov dx, 0x500
        0xee, // out dx, al  (must never run)
        0xf4, // hlt
    ];
    let Some(mut g) = guest(&code) else { return };
    assert_eq!(g.run(), StopReason::Exit(VmExit::Reset));
    assert!(g.port.lock().unwrap().writes.is_empty());
}

#[test]
fn a_spinning_vcpu_is_kicked_out_of_kvm_run() {
    use std::os::unix::thread::JoinHandleExt;

    let code = [0xeb, 0xfe]; // jmp $
    let Some(g) = guest(&code) else { return };
    install_kick_handler().unwrap();
    let Guest {
        vm,
        mut vcpu,
        _mem,
        buses,
        exit,
        ..
    } = g;
    let vcpu_exit = exit.clone();
    let handle = thread::spawn("vcpu0", None, exit.clone(), move || {
        let _keep_alive = (&vm, &_mem);
        vcpu.run(&buses, &vcpu_exit)
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!handle.is_finished(), "a spinning guest must keep running");
    // Stop as the timeout does, then kick until the thread leaves KVM_RUN.
    exit.stop(StopReason::Exit(VmExit::Timeout));
    for _ in 0..500 {
        if handle.is_finished() {
            break;
        }
        kick(handle.as_pthread_t());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(handle.is_finished(), "the vCPU thread ignored the kick");
    handle.join().unwrap();
    assert_eq!(exit.wait(None), Some(StopReason::Exit(VmExit::Timeout)));
}

/// A minimal ELF "kernel" with a PVH note whose 32-bit entry checks the start info magic in
/// %ebx and then pulses the i8042 reset (or halts forever if the magic is wrong).
fn pvh_elf() -> Vec<u8> {
    pvh_elf_with(&[
        0x81, 0x3b, 0x78, 0xc5, 0x6e, 0x33, // cmp dword [ebx], XEN_HVM_START_MAGIC_VALUE
        0x75, 0x05, // jne fail
        0xb0, 0xfe, // mov al, 0xfe
        0xe6, 0x64, // out 0x64, al
        0xf4, // hlt
        0xf4, // fail: hlt
    ])
}

/// A minimal PVH ELF "kernel" whose 32-bit entry runs `code` at 1 MiB.
pub(crate) fn pvh_elf_with(code: &[u8]) -> Vec<u8> {
    const ENTRY: u64 = 0x10_0000;
    let mut elf = vec![0u8; 0x1000];
    elf[0..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little endian
    elf[6] = 1; // version
    let put = |elf: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        elf[at..at + bytes.len()].copy_from_slice(bytes)
    };
    put(&mut elf, 16, &2u16.to_le_bytes()); // ET_EXEC
    put(&mut elf, 18, &0x3eu16.to_le_bytes()); // x86_64
    put(&mut elf, 20, &1u32.to_le_bytes());
    put(&mut elf, 24, &ENTRY.to_le_bytes());
    put(&mut elf, 32, &64u64.to_le_bytes()); // phoff
    put(&mut elf, 52, &64u16.to_le_bytes()); // ehsize
    put(&mut elf, 54, &56u16.to_le_bytes()); // phentsize
    put(&mut elf, 56, &2u16.to_le_bytes()); // phnum
                                            // PT_LOAD of the code at 1 MiB.
    let load = 64;
    put(&mut elf, load, &1u32.to_le_bytes());
    put(&mut elf, load + 4, &5u32.to_le_bytes());
    put(&mut elf, load + 8, &0x1000u64.to_le_bytes());
    put(&mut elf, load + 16, &ENTRY.to_le_bytes());
    put(&mut elf, load + 24, &ENTRY.to_le_bytes());
    put(&mut elf, load + 32, &(code.len() as u64).to_le_bytes());
    put(&mut elf, load + 40, &(code.len() as u64).to_le_bytes());
    put(&mut elf, load + 48, &0x1000u64.to_le_bytes());
    // PT_NOTE with XEN_ELFNOTE_PHYS32_ENTRY.
    let note = 64 + 56;
    put(&mut elf, note, &4u32.to_le_bytes());
    put(&mut elf, note + 8, &0x200u64.to_le_bytes());
    put(&mut elf, note + 32, &20u64.to_le_bytes());
    put(&mut elf, note + 40, &20u64.to_le_bytes());
    put(&mut elf, 0x200, &4u32.to_le_bytes());
    put(&mut elf, 0x204, &4u32.to_le_bytes());
    put(&mut elf, 0x208, &18u32.to_le_bytes());
    put(&mut elf, 0x20c, b"Xen\0");
    put(&mut elf, 0x210, &(ENTRY as u32).to_le_bytes());
    elf.extend_from_slice(code);
    elf
}

fn run_pvh_guest(vcpus: u8) -> Option<VmExit> {
    let dir = tempfile::tempdir().unwrap();
    run_pvh_guest_as(vcpus, dir.path(), crate::machine::Caller::Free)
}

/// The PVH guest with its files in `dir`.
fn run_pvh_guest_as(
    vcpus: u8,
    dir: &std::path::Path,
    caller: crate::machine::Caller,
) -> Option<VmExit> {
    if !crate::test_support::have_kvm("the PVH tiny-guest test") {
        return None;
    }
    let kernel = dir.join("vmlinux");
    std::fs::write(&kernel, pvh_elf()).unwrap();
    let initrd = dir.join("initrd");
    std::fs::write(&initrd, [0x42u8; 4096]).unwrap();
    let disk = dir.join("disk");
    std::fs::write(&disk, [0u8; 8192]).unwrap();
    let config = crate::VmConfig {
        kernel,
        initramfs: Some(initrd),
        cmdline: "panic=-1".into(),
        memory_mib: 64,
        vcpus,
        disks: vec![crate::DiskConfig {
            path: disk,
            read_only: true,
        }],
        agent_socket: None,
        serial: crate::SerialOutput::Off,
        timeout_ms: Some(10_000),
        net: None,
        fs: Vec::new(),
        snapshot_to: None,
        restore_from: None,
    };
    // machine::run skips the host check on purpose: 32-bit protected-mode code runs on any KVM.
    Some(crate::machine::run(&config, caller).expect("the VM runs"))
}

/// Set in the environment of the child process [`the_confined_main_thread_runs_a_vm_to_its_end`]
/// starts: the directory for the guest's files, which the parent removes (the child, filtered,
/// could not).
const CONFINED_CHILD: &str = "NOOK_VMM_TEST_CONFINED_CHILD";

/// The child's half: a VM run with the calling thread under the filter (`nook-vmm`'s way),
/// which then stays filtered until the process exits.
#[test]
#[ignore = "run by the_confined_main_thread_runs_a_vm_to_its_end in a process of its own"]
fn confined_child() {
    let Some(dir) = std::env::var_os(CONFINED_CHILD) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    if let Some(exit) = run_pvh_guest_as(2, &dir, crate::machine::Caller::Confined) {
        assert_eq!(exit, VmExit::Reset);
    }
}

#[test]
fn the_confined_main_thread_runs_a_vm_to_its_end() {
    // The filter cannot be taken off a thread: the run happens in a process of its own, which
    // the filter kills (SIGSYS) if the waiting and the teardown need a call it does not allow.
    let dir = tempfile::tempdir().unwrap();
    crate::test_support::run_in_child("tiny_guests::confined_child", CONFINED_CHILD, dir.path());
}

#[test]
fn pvh_entry_sees_start_info_and_resets() {
    if let Some(exit) = run_pvh_guest(1) {
        assert_eq!(exit, VmExit::Reset);
    }
}

#[test]
fn idle_application_processors_are_stopped_on_reset() {
    if let Some(exit) = run_pvh_guest(2) {
        assert_eq!(exit, VmExit::Reset);
    }
}
