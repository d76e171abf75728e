//! `nook save`: images to one OCI image layout in a tar archive (what `skopeo inspect
//! oci-archive:FILE` reads), plus docker's `manifest.json`, so `docker load` takes it too.

use std::collections::BTreeSet;
use std::io::{self, Write};

use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType};
use serde::Serialize;

use super::ArchiveError;
use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::store::{
    descriptor_digest, Image, Store, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};

/// One image to save, with the tags to record for it (none: saved untagged).
pub struct SaveItem {
    pub image: Image,
    pub tags: Vec<Reference>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Writes the archive to `out`.
pub fn save(store: &Store, items: &[SaveItem], out: impl Write) -> Result<(), ArchiveError> {
    let mut tar = tar::Builder::new(out);
    let write_err = |source| ArchiveError::Write { source };
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut entries: Vec<Descriptor> = Vec::new();
    let mut docker: Vec<DockerManifestEntry> = Vec::new();
    for item in items {
        let image = &item.image;
        let what = format!("image {}", image.display_name());
        blobs.insert(image.manifest_digest.clone());
        blobs.insert(image.config_digest.clone());
        let mut layer_paths = Vec::new();
        for l in image.manifest.layers() {
            let d = descriptor_digest(l, &what)?;
            layer_paths.push(format!("blobs/sha256/{}", d.hex()));
            blobs.insert(d);
        }
        let oci_digest: oci_spec::image::Digest = (&image.manifest_digest).into();
        // The manifest's own type: a docker schema 2 manifest pulled from a registry stays one.
        let media_type = image
            .manifest
            .media_type()
            .clone()
            .unwrap_or(MediaType::ImageManifest);
        if item.tags.is_empty() {
            entries.push(Descriptor::new(
                media_type.clone(),
                image.manifest_size,
                oci_digest.clone(),
            ));
        }
        for tag in &item.tags {
            let mut d =
                Descriptor::new(media_type.clone(), image.manifest_size, oci_digest.clone());
            d.set_annotations(Some(
                [
                    (ANNOTATION_REF_NAME.to_string(), tag.familiar()),
                    (ANNOTATION_IMAGE_NAME.to_string(), tag.to_string()),
                ]
                .into(),
            ));
            entries.push(d);
        }
        docker.push(DockerManifestEntry {
            config: format!("blobs/sha256/{}", image.config_digest.hex()),
            repo_tags: item.tags.iter().map(Reference::familiar).collect(),
            layers: layer_paths,
        });
    }

    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, dir, io::empty())
            .map_err(write_err)?;
    }
    for digest in &blobs {
        let path = store.blob_path(digest);
        let mut file = store.open_blob(digest)?;
        let size = file
            .metadata()
            .map_err(|source| ArchiveError::ReadStore {
                path: path.clone(),
                source,
            })?
            .len();
        let mut h = header(tar::EntryType::Regular, 0o644, size);
        tar.append_data(&mut h, format!("blobs/sha256/{}", digest.hex()), &mut file)
            .map_err(write_err)?;
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()
        .map_err(ArchiveError::Encode)?;
    let index = index.to_string_pretty().map_err(ArchiveError::Encode)?;
    append_bytes(&mut tar, "index.json", index.as_bytes())?;
    let docker = serde_json::to_vec(&docker).map_err(|e| ArchiveError::Write {
        source: io::Error::other(e),
    })?;
    append_bytes(&mut tar, "manifest.json", &docker)?;
    let mut out = tar.into_inner().map_err(write_err)?;
    out.flush().map_err(write_err)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
) -> Result<(), ArchiveError> {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    tar.append_data(&mut h, path, data)
        .map_err(|source| ArchiveError::Write { source })
}
