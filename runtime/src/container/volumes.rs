//! The container side of volumes: a new container's mount requests resolved into the mounts
//! its record keeps (volumes made on first use, an image's `VOLUME`s as anonymous volumes,
//! `--volumes-from`), which containers use a volume, and the removal rules (`volume rm`,
//! `volume prune`, `rm -v`, `--rm`).

use std::collections::BTreeMap;
use std::path::Path;

use super::mount_args::{clean_target, MountRequest, VolumesFrom};
use super::store::{Container, ContainerError, ContainerStore};
use crate::isolation::mounts::MountSpec;
use crate::isolation::Host;
use crate::util::lock::LockMode;
use crate::volume::{Volume, VolumeError, VolumeStore};

/// Why a container's mounts could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid mount config for type \"bind\": bind source path does not exist: {}", .0.display())]
    MissingSource(std::path::PathBuf),
    #[error("Duplicate mount point: {0}")]
    Duplicate(String),
    #[error("the image's VOLUME {0:?} is not an absolute path")]
    ImageVolume(String),
}

/// A new container's mounts, in order: `--volumes-from` first, then the flags, then the image's
/// `VOLUME`s that no flag covers. Volumes are made here (a named one on first use); the
/// anonymous ones made are returned too, for the caller to remove when the container is not
/// created after all. The caller holds the volume lock ([`VolumeStore::lock`]).
pub fn resolve(
    volumes: &VolumeStore,
    containers: &ContainerStore,
    from: &[VolumesFrom],
    requests: &[MountRequest],
    image_volumes: &[String],
) -> Result<(Vec<MountSpec>, Vec<String>), ContainerError> {
    // Everything that can be refused is checked before any volume is made.
    let mut targets = Vec::new();
    let mut inherited = Vec::new();
    for f in from {
        let other = containers.find(&f.container)?;
        for m in &other.config.launch.mounts {
            if let MountSpec::Bind {
                source,
                target,
                readonly,
                volume,
            } = m
            {
                inherited.push(MountSpec::Bind {
                    source: source.clone(),
                    target: target.clone(),
                    readonly: f.readonly.unwrap_or(*readonly),
                    volume: volume.clone(),
                });
            }
        }
    }
    for r in requests {
        match r {
            MountRequest::Bind { source, .. } if !source.exists() => {
                return Err(ResolveError::MissingSource(source.clone()).into())
            }
            MountRequest::Volume { name: Some(n), .. } => crate::volume::check_name(n)?,
            _ => {}
        }
    }
    for r in requests {
        if targets.iter().any(|t| t == r.target()) {
            return Err(ResolveError::Duplicate(r.target().to_string()).into());
        }
        targets.push(r.target().to_string());
    }
    // A flag's mount wins over an inherited one at the same target, as in docker.
    inherited.retain(|m| !targets.iter().any(|t| t == m.target()));
    let mut image_targets = Vec::new();
    for v in image_volumes {
        let t = clean_target(v).map_err(|_| ResolveError::ImageVolume(v.clone()))?;
        let covered = targets.contains(&t)
            || inherited.iter().any(|m| m.target() == t)
            || image_targets.contains(&t);
        if !covered {
            image_targets.push(t);
        }
    }

    let mut made = Vec::new();
    let result = (|| {
        let mut mounts = inherited;
        let mut volume_mount = |name: Option<&str>, target: &str, readonly: bool| {
            let v: Volume = match name {
                Some(n) => volumes.ensure(n, BTreeMap::new(), false)?.0,
                None => {
                    let v = volumes.create_anonymous()?;
                    made.push(v.name.clone());
                    v
                }
            };
            Ok::<_, VolumeError>(MountSpec::Bind {
                source: v.mountpoint,
                target: target.to_string(),
                readonly,
                volume: Some(v.name),
            })
        };
        for r in requests {
            mounts.push(match r {
                MountRequest::Bind {
                    source,
                    target,
                    readonly,
                } => MountSpec::Bind {
                    source: std::path::absolute(source).unwrap_or_else(|_| source.clone()),
                    target: target.clone(),
                    readonly: *readonly,
                    volume: None,
                },
                MountRequest::Volume {
                    name,
                    target,
                    readonly,
                } => volume_mount(name.as_deref(), target, *readonly)?,
                MountRequest::Tmpfs {
                    target,
                    size,
                    mode,
                    readonly,
                } => MountSpec::Tmpfs {
                    target: target.clone(),
                    size: *size,
                    mode: *mode,
                    readonly: *readonly,
                },
            });
        }
        for t in &image_targets {
            mounts.push(volume_mount(None, t, false)?);
        }
        Ok::<_, VolumeError>(mounts)
    })();
    match result {
        Ok(mounts) => Ok((mounts, made)),
        Err(e) => {
            for name in &made {
                let _ = volumes.remove(name, |p| {
                    std::fs::remove_dir_all(p)
                        .map_err(|e| crate::isolation::IsolationError::os("remove", e))
                });
            }
            Err(e.into())
        }
    }
}

/// The names of the volumes `container` mounts.
fn volume_names(container: &Container) -> impl Iterator<Item = &str> {
    container
        .config
        .launch
        .mounts
        .iter()
        .filter_map(|m| match m {
            MountSpec::Bind {
                volume: Some(v), ..
            } => Some(v.as_str()),
            _ => None,
        })
}

/// The containers (12-digit ids) that mount volume `name`, `except` one.
pub fn users(
    containers: &ContainerStore,
    name: &str,
    except: Option<&str>,
) -> Result<Vec<String>, ContainerError> {
    Ok(containers
        .list()?
        .iter()
        .filter(|c| Some(c.id()) != except && volume_names(c).any(|v| v == name))
        .map(|c| crate::util::short_id(c.id()).to_string())
        .collect())
}

/// `volume rm [-f]`: refused while a container uses the volume, unless `force`.
pub fn remove(
    volumes: &VolumeStore,
    containers: &ContainerStore,
    host: &Host,
    name: &str,
    force: bool,
) -> Result<u64, ContainerError> {
    let _lock = volumes.lock(LockMode::Exclusive)?;
    volumes.get(name)?;
    let using = users(containers, name, None)?;
    if !using.is_empty() && !force {
        return Err(VolumeError::InUse {
            name: name.to_string(),
            containers: using,
        }
        .into());
    }
    Ok(volumes.remove(name, |p| host.remove_all(p))?)
}

/// `volume prune [-a]`: the volumes no container uses (anonymous ones only, unless `all`).
/// Returns their names and the bytes they took.
pub fn prune(
    volumes: &VolumeStore,
    containers: &ContainerStore,
    host: &Host,
    all: bool,
) -> Result<(Vec<String>, u64), ContainerError> {
    let _lock = volumes.lock(LockMode::Exclusive)?;
    let list = containers.list()?;
    let used: Vec<&str> = list.iter().flat_map(volume_names).collect();
    let (mut names, mut bytes) = (Vec::new(), 0);
    for v in volumes.list()? {
        if (all || v.anonymous) && !used.contains(&v.name.as_str()) {
            bytes += volumes.remove(&v.name, |p| host.remove_all(p))?;
            names.push(v.name);
        }
    }
    Ok((names, bytes))
}

/// `rm -v` and `--rm`: removes the anonymous volumes `container` mounts that no other
/// container uses (those stay, as in docker). Call before the container's record goes.
pub fn remove_anonymous(
    root: &Path,
    containers: &ContainerStore,
    host: &Host,
    container: &Container,
) -> Result<(), ContainerError> {
    let volumes = VolumeStore::new(root);
    let names: Vec<&str> = volume_names(container).collect();
    if names.is_empty() {
        return Ok(());
    }
    let _lock = volumes.lock(LockMode::Exclusive)?;
    for name in names {
        let anonymous = match volumes.get(name) {
            Ok(v) => v.anonymous,
            Err(VolumeError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        if anonymous && users(containers, name, Some(container.id()))?.is_empty() {
            volumes.remove(name, |p| host.remove_all(p))?;
        }
    }
    Ok(())
}
