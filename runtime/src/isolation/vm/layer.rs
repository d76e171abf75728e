//! `diff` and `export` of a VM container, on the host: the writable layer the guest agent
//! streamed (an OCI layer tar) stacked over the image's layer tars.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use crate::isolation::{ImageSource, IsolationError};
use crate::layers::changes::Change;
use crate::layers::flatten::{self, Stack};
use crate::layers::Layer;
use crate::util::atomic::TempFile;

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> IsolationError {
    let what = format!("{what} {}", path.display());
    move |source| IsolationError::os(what, source)
}

/// The image's layers stacked, for the visibility of each path.
fn lower(image: &ImageSource<'_>) -> Result<Stack, IsolationError> {
    let mut stack = Stack::default();
    for Layer { name, tar } in image.layers()? {
        stack
            .push(tar)
            .map_err(io_err("read layer", Path::new(&name)))?;
    }
    Ok(stack)
}

/// The content of the regular file the image's layers show at `path` (relative, as
/// `etc/group`), at most `limit` bytes: none where no layer shows one (absent, whited out, a
/// symlink or a link, or larger).
pub fn image_file(
    image: &ImageSource<'_>,
    path: &Path,
    limit: u64,
) -> Result<Option<Vec<u8>>, IsolationError> {
    let stack = lower(image)?;
    let Some((layer, index)) = stack.source_of(path) else {
        return Ok(None);
    };
    let Some(Layer { name, tar }) = image.layers()?.into_iter().nth(layer) else {
        return Ok(None);
    };
    Stack::read_entry(tar, index, limit).map_err(io_err("read layer", Path::new(&name)))
}

/// The changes of the writable layer `upper` (a layer tar, read from its start).
pub fn diff(image: &ImageSource<'_>, upper: &mut TempFile) -> Result<Vec<Change>, IsolationError> {
    let lower = lower(image)?;
    let path = upper.path().to_path_buf();
    flatten::diff_layer(io::BufReader::new(upper.file_mut()), &lower).map_err(io_err("read", &path))
}

/// The visible entries of the image's layers and of the writable layer `upper`, as one tar.
pub fn export(
    image: &ImageSource<'_>,
    upper: &mut TempFile,
    out: File,
) -> Result<(), IsolationError> {
    let upper_path = upper.path().to_path_buf();
    let mut stack = lower(image)?;
    stack
        .push(io::BufReader::new(upper.file_mut()))
        .map_err(io_err("read", &upper_path))?;
    let mut builder = tar::Builder::new(io::BufWriter::new(out));
    let layers = image.layers()?;
    let count = layers.len();
    for (i, Layer { name, tar }) in layers.into_iter().enumerate() {
        stack
            .write_layer(i, tar, &mut builder)
            .map_err(io_err("export layer", Path::new(&name)))?;
    }
    upper
        .file_mut()
        .seek(SeekFrom::Start(0))
        .map_err(io_err("read", &upper_path))?;
    stack
        .write_layer(count, io::BufReader::new(upper.file_mut()), &mut builder)
        .map_err(io_err("export", &upper_path))?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err("write the export to", Path::new("the output")))
}
