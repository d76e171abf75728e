//! An image's layers as the layer code reads them: decompressed tar streams, bottom first.

use crate::image::layer::{decompress, Compression, LayerError};
use crate::image::{Image, Store, StoreError};
use crate::layers::Layer;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read layer {layer}")]
    Layer {
        layer: String,
        #[source]
        source: LayerError,
    },
}

/// The decompressed layer tars of `image`, bottom first, each named by its digest.
pub fn image_layers(store: &Store, image: &Image) -> Result<Vec<Layer<'static>>, SourceError> {
    let mut out = Vec::new();
    for (desc, digest) in image.manifest.layers().iter().zip(image.layer_digests()?) {
        let layer_err = |source| SourceError::Layer {
            layer: digest.to_string(),
            source,
        };
        let compression =
            Compression::from_media_type(desc.media_type().as_ref()).map_err(layer_err)?;
        let blob = store.open_blob(&digest)?;
        let tar = decompress(std::io::BufReader::new(blob), compression).map_err(layer_err)?;
        out.push(Layer {
            name: digest.to_string(),
            tar,
        });
    }
    Ok(out)
}
