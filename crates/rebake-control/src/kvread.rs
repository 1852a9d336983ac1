//! Reading many KV documents at once, where one unreadable document must not hide the rest.

use futures::{StreamExt as _, TryStreamExt as _};
use rebake_bus::{BusError, Kv};
use serde::de::DeserializeOwned;

use crate::{ControlError, Result};

/// Documents read at once.
const READ_CONCURRENCY: usize = 16;

/// The documents at `keys` (unordered) with their keys. Missing ones are left out; a corrupt
/// one is logged at WARN (as `what`) and left out; any other failure fails the whole read.
pub(crate) async fn read_lenient<T>(kv: &Kv, keys: Vec<String>, what: &'static str) -> Result<Vec<(String, T)>>
where
    T: DeserializeOwned + Send + 'static,
{
    let loaded: Vec<Option<(String, T)>> = futures::stream::iter(keys)
        .map(|key| {
            let kv = kv.clone();
            async move {
                match kv.get::<T>(&key).await {
                    Ok(document) => Ok(document.map(|document| (key, document))),
                    Err(error @ BusError::Corrupt { .. }) => {
                        tracing::warn!(key, error = %error, "skipping unreadable {what}");
                        Ok(None)
                    }
                    Err(error) => Err(ControlError::from(error)),
                }
            }
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(loaded.into_iter().flatten().collect())
}
