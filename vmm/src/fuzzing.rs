//! Harnesses that feed arbitrary bytes to the guest-facing parsers: a virtio-blk request queue,
//! the console channel and the virtio-net frame path, each laid out in guest memory exactly as a hostile driver could.
//! Used by the cargo-fuzz targets in `vmm/fuzz` and by the seed regression tests below.

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::virtio::block::io::Disk;
use crate::devices::virtio::block::Worker;
use crate::devices::virtio::console::Channel;
use crate::devices::virtio::net::Worker as NetWorker;
use crate::devices::virtio::Interrupt;
use crate::memory::GuestMemory;

const MEM_SIZE: usize = 64 << 10;
const QUEUE_SIZE: u16 = 16;
const RING_BYTES: usize = 16 * QUEUE_SIZE as usize + 4 + 2 * QUEUE_SIZE as usize;

/// A queue whose descriptor table sits at `base`, avail ring right after it and used ring on
/// the next page, with `ring` bytes (descriptors, then avail flags/idx/entries) copied in.
fn queue_at(mem: &GuestMemory, base: u64, ring: &[u8]) -> Option<Queue> {
    mem.write_slice(ring, GuestAddress(base)).ok()?;
    let mut q = Queue::new(QUEUE_SIZE).ok()?;
    q.set_size(QUEUE_SIZE);
    q.set_ready(true);
    q.set_desc_table_address(Some(base as u32), Some(0));
    q.set_avail_ring_address(Some((base + 16 * u64::from(QUEUE_SIZE)) as u32), Some(0));
    q.set_used_ring_address(Some((base + 0x1000) as u32), Some(0));
    q.is_valid(mem).then_some(q)
}

fn split(data: &[u8], n: usize) -> (&[u8], &[u8]) {
    data.split_at(n.min(data.len()))
}

fn memfd_disk(sectors: u64) -> Option<File> {
    // SAFETY: memfd_create with a valid NUL-terminated name; the fd is owned by the File below.
    let fd = unsafe { libc::memfd_create(c"nook-fuzz-disk".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd was just created and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(sectors * 512).ok()?;
    Some(file)
}

/// One virtio-blk queue run over fuzz input: ring bytes, then the rest of guest memory.
pub fn block_queue(data: &[u8]) {
    let Ok(mem) = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]) else {
        return;
    };
    let (ring, rest) = split(data, RING_BYTES);
    let (read_only, payload) = split(rest, 1);
    let _ = mem.write_slice(payload, GuestAddress(0x2000));
    let Some(queue) = queue_at(&mem, 0, ring) else {
        return;
    };
    let Some(file) = memfd_disk(64) else { return };
    let ro = read_only.first().is_some_and(|b| b & 1 == 1);
    let mut worker = Worker {
        queue,
        mem,
        disk: Disk::from_file(file, 64 * 512, ro, "fuzz"),
        interrupt: Arc::new(Interrupt::new(
            EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"),
        )),
    };
    // Twice: the second pass sees whatever state the first left behind.
    let _ = worker.process_queue();
    let _ = worker.process_queue();
}

/// The console channel over fuzz input: rx ring, tx ring, bytes from the host, guest memory.
pub fn console_queue(data: &[u8]) {
    let Ok(mem) = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]) else {
        return;
    };
    let (rx_ring, rest) = split(data, RING_BYTES);
    let (tx_ring, rest) = split(rest, RING_BYTES);
    let (host_len, rest) = split(rest, 1);
    let (host_bytes, payload) = split(rest, usize::from(host_len.first().copied().unwrap_or(0)));
    let _ = mem.write_slice(payload, GuestAddress(0x4000));
    let (Some(rxq), Some(txq)) = (queue_at(&mem, 0, rx_ring), queue_at(&mem, 0x2000, tx_ring))
    else {
        return;
    };
    let Ok((vmm_side, mut host_side)) = UnixStream::pair() else {
        return;
    };
    if vmm_side.set_nonblocking(true).is_err() || host_side.write_all(host_bytes).is_err() {
        return;
    }
    let interrupt = Arc::new(Interrupt::new(
        EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"),
    ));
    let mut channel = Channel::new(rxq, txq, mem, vmm_side, interrupt);
    channel.pump();
    channel.pump();
}

/// The virtio-net frame path over fuzz input: rx ring, tx ring, a flags byte (bit 0: mergeable
/// receive buffers, bit 1: the backend hangs up after its bytes), a length byte and that many
/// bytes from the backend (length-prefixed frames or garbage), then guest memory.
pub fn net_queue(data: &[u8]) {
    let Ok(mem) = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]) else {
        return;
    };
    let (rx_ring, rest) = split(data, RING_BYTES);
    let (tx_ring, rest) = split(rest, RING_BYTES);
    let (flags, rest) = split(rest, 1);
    let (host_len, rest) = split(rest, 1);
    let (host_bytes, payload) = split(rest, usize::from(host_len.first().copied().unwrap_or(0)));
    let _ = mem.write_slice(payload, GuestAddress(0x4000));
    let (Some(rxq), Some(txq)) = (queue_at(&mem, 0, rx_ring), queue_at(&mem, 0x2000, tx_ring))
    else {
        return;
    };
    let Ok((vmm_side, mut host_side)) = UnixStream::pair() else {
        return;
    };
    if vmm_side.set_nonblocking(true).is_err() || host_side.write_all(host_bytes).is_err() {
        return;
    }
    let flags = flags.first().copied().unwrap_or(0);
    let interrupt = Arc::new(Interrupt::new(
        EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"),
    ));
    let mut worker = NetWorker::new(
        "fuzz-net".into(),
        rxq,
        txq,
        mem,
        vmm_side,
        interrupt,
        flags & 1 == 1,
    );
    worker.pump(None);
    if flags & 2 == 2 {
        drop(host_side);
        worker.pump(None);
    } else {
        worker.pump(None);
        drop(host_side);
    }
}

#[cfg(test)]
mod tests {
    use virtio_bindings::bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };

    use super::*;

    /// A descriptor as raw ring bytes.
    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> Vec<u8> {
        let mut d = addr.to_le_bytes().to_vec();
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        d
    }

    /// Ring bytes with `descs` and an avail ring offering `heads`.
    fn ring(descs: &[Vec<u8>], avail_idx: u16, heads: &[u16]) -> Vec<u8> {
        let mut r: Vec<u8> = descs.concat();
        r.resize(16 * QUEUE_SIZE as usize, 0);
        r.extend_from_slice(&0u16.to_le_bytes());
        r.extend_from_slice(&avail_idx.to_le_bytes());
        for h in heads {
            r.extend_from_slice(&h.to_le_bytes());
        }
        r.resize(RING_BYTES, 0);
        r
    }

    /// Hostile seeds: each must run to completion without panicking or hanging.
    fn seeds() -> Vec<Vec<u8>> {
        const NEXT: u16 = VRING_DESC_F_NEXT as u16;
        const WRITE: u16 = VRING_DESC_F_WRITE as u16;
        const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;
        vec![
            vec![],
            vec![0xff; 4096],
            // A self-loop.
            ring(&[desc(0x2000, 16, NEXT, 0)], 1, &[0]),
            // A two-descriptor loop.
            ring(
                &[
                    desc(0x2000, 16, NEXT, 1),
                    desc(0x3000, 512, NEXT | WRITE, 0),
                ],
                1,
                &[0],
            ),
            // Next index past the table, head index past the table.
            ring(&[desc(0x2000, 16, NEXT, 0xffff)], 2, &[0, 0x7fff]),
            // Addresses past memory and wrapping, huge lengths.
            ring(
                &[
                    desc(u64::MAX - 4, 16, NEXT, 1),
                    desc(0x2000, u32::MAX, NEXT | WRITE, 2),
                    desc(1 << 40, 1, WRITE, 0),
                ],
                1,
                &[0],
            ),
            // An indirect table pointing at itself, and one of absurd length.
            ring(
                &[
                    desc(0, 16 * 16, INDIRECT, 0),
                    desc(0x2000, u32::MAX, INDIRECT, 0),
                ],
                2,
                &[0, 1],
            ),
            // The avail index far ahead of the ring.
            ring(&[desc(0x2000, 16, 0, 0)], 0xfff0, &[0]),
            // Zero-length everything.
            ring(&[desc(0, 0, NEXT, 1), desc(0, 0, WRITE, 0)], 1, &[0]),
        ]
    }

    #[test]
    fn block_survives_hostile_seeds() {
        for (i, seed) in seeds().iter().enumerate() {
            let mut input = seed.clone();
            input.push(i as u8); // alternate read-only and read-write disks
            block_queue(&input);
        }
    }

    #[test]
    fn console_survives_hostile_seeds() {
        for seed in seeds() {
            // The same seed as rx ring, as tx ring, and with host bytes queued.
            let mut both = seed.clone();
            both.resize(RING_BYTES, 0);
            both.extend_from_slice(&seed);
            both.resize(2 * RING_BYTES, 0);
            both.push(8);
            both.extend_from_slice(b"hostdata");
            console_queue(&both);
            console_queue(&seed);
        }
    }

    #[test]
    fn net_survives_hostile_seeds() {
        // Frames as passt sends them: a good one, a runt, an oversized one cut short.
        let mut host = 60u32.to_be_bytes().to_vec();
        host.extend_from_slice(&[0xab; 60]);
        host.extend_from_slice(&3u32.to_be_bytes());
        host.extend_from_slice(&[1, 2, 3]);
        host.extend_from_slice(&u32::MAX.to_be_bytes());
        host.extend_from_slice(&[7; 40]);
        for seed in seeds() {
            for flags in 0..4u8 {
                let mut both = seed.clone();
                both.resize(RING_BYTES, 0);
                both.extend_from_slice(&seed);
                both.resize(2 * RING_BYTES, 0);
                both.push(flags);
                both.push(host.len() as u8);
                both.extend_from_slice(&host);
                net_queue(&both);
            }
            net_queue(&seed);
        }
    }

    #[test]
    fn pseudo_random_inputs_do_not_crash() {
        // A cheap stand-in for a fuzzing run in plain `cargo test` (xorshift, fixed seed).
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let len = (next() % 1200) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias descriptor addresses into guest memory so chains get parsed, not just refused.
            for chunk in input.chunks_mut(16).take(16) {
                if chunk.len() == 16 {
                    chunk[2..8].fill(0);
                    chunk[1] &= 0xf0;
                    chunk[12] &= 7;
                    chunk[14] &= 0x0f;
                    chunk[15] = 0;
                }
            }
            block_queue(&input);
            console_queue(&input);
            net_queue(&input);
        }
    }
}
