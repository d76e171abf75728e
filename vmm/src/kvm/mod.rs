//! The KVM side of the VM: the VM file descriptor and its vCPUs.

pub mod vcpu;
pub mod vm;

/// Errors of KVM calls, each naming the call that failed.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// Opening /dev/kvm failed.
    #[error("cannot open /dev/kvm (is KVM available and accessible to this user?)")]
    Open(#[source] kvm_ioctls::Error),
    /// The KVM API version is not 12.
    #[error("/dev/kvm speaks API version {0}, expected 12")]
    ApiVersion(i32),
    /// A required capability is missing.
    #[error("KVM lacks the {0} capability")]
    MissingCap(&'static str),
    /// Any other ioctl.
    #[error("KVM call {call} failed")]
    Ioctl {
        /// What was attempted.
        call: &'static str,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// Shorthand for mapping an ioctl failure to [`KvmError::Ioctl`].
pub(crate) fn ioctl(call: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Ioctl { call, source }
}
