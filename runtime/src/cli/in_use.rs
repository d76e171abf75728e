//! Which containers use which images, so `rmi` and `image prune` keep what containers need
//! (docker's rules: a used image is not deleted; `rmi -f` only untags it).

use nook::container::store::ContainerStore;
use nook::image::Image;

use super::Context;

/// A container that uses an image.
pub struct User {
    pub container: String,
    pub running: bool,
}

/// The containers whose image is `image` (matched by image id, the config digest).
pub fn users(ctx: &Context, image: &Image) -> anyhow::Result<Vec<User>> {
    let id = image.config_digest.to_string();
    Ok(ContainerStore::new(&ctx.store_root)
        .list()?
        .into_iter()
        .filter(|c| c.config.image_id == id)
        .map(|c| User {
            running: c.status().is_running(),
            container: c.id().chars().take(12).collect(),
        })
        .collect())
}
