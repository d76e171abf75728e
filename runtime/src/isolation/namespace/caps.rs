//! Capabilities: the container's set (docker's default set, changed by `--cap-add`,
//! `--cap-drop` and `--privileged`, see [`crate::isolation::security`]) is kept, every other
//! capability is dropped from the bounding, effective, permitted, inheritable and ambient sets
//! before the workload runs.

pub use nook_agent::confine::{drop_bounding, known, last_cap, set, set_sets, Sets};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::security::default_caps as default_mask;

    #[test]
    fn the_default_set_is_dockers() {
        let mask = default_mask();
        assert_eq!(mask.count_ones(), 14);
        assert_ne!(mask & (1 << 0), 0, "CAP_CHOWN kept");
        assert_eq!(mask & (1 << 21), 0, "CAP_SYS_ADMIN dropped");
        assert_eq!(mask & (1 << 12), 0, "CAP_NET_ADMIN dropped");
        assert_eq!(mask & (1 << 19), 0, "CAP_SYS_PTRACE dropped");
    }

    #[test]
    fn everything_else_up_to_the_last_cap_is_dropped() {
        use nook_agent::confine::to_drop;
        let drop: Vec<u32> = to_drop(40, default_mask()).collect();
        assert_eq!(drop.len(), 41 - 14);
        assert!(drop.contains(&21) && drop.contains(&40) && !drop.contains(&0));
        assert!(!drop.contains(&41));
        assert_eq!(to_drop(40, known(40)).count(), 0);
        assert_eq!(known(40).count_ones(), 41);
        assert_eq!(known(63), u64::MAX);
    }
}
