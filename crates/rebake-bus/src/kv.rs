use async_nats::jetstream::kv::Store;
use futures::TryStreamExt;
use serde::{Serialize, de::DeserializeOwned};

use crate::{BusError, Result};

/// Documents larger than this are stored gzip-compressed by [`Kv::put`].
pub const COMPRESS_ABOVE_BYTES: usize = 512 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A KV bucket holding JSON values.
#[derive(Clone, Debug)]
pub struct Kv {
    store: Store,
    bucket: String,
}

impl Kv {
    pub(crate) fn new(store: Store, bucket: String) -> Self {
        Self { store, bucket }
    }

    fn error(&self, op: &'static str, key: &str, reason: impl ToString) -> BusError {
        BusError::Kv {
            op,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }

    fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T> {
        let corrupt = |source| BusError::Corrupt {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            source,
        };
        if bytes.starts_with(&GZIP_MAGIC) {
            // A large document stored compressed by `put` (JSON text never starts so).
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut text)
                .map_err(|error| corrupt(serde_json::Error::io(error)))?;
            return serde_json::from_slice(&text).map_err(corrupt);
        }
        serde_json::from_slice(bytes).map_err(corrupt)
    }

    /// The value at `key` and its revision.
    pub async fn get_with_revision<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, u64)>> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|error| self.error("get", key, error))?;
        match entry {
            Some(entry) if matches!(entry.operation, async_nats::jetstream::kv::Operation::Put) => {
                Ok(Some((self.decode(key, &entry.value)?, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// The value at `key`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        Ok(self.get_with_revision(key).await?.map(|(value, _)| value))
    }

    /// Writes `value` at `key` unconditionally. A document larger than
    /// [`COMPRESS_ABOVE_BYTES`] (SBOMs of big images) is stored gzip-compressed, so it fits
    /// NATS' message size; every read decompresses it transparently.
    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<u64> {
        let mut bytes = serde_json::to_vec(value).expect("kv values always serialise to JSON");
        if bytes.len() > COMPRESS_ABOVE_BYTES {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut encoder, &bytes)
                .and_then(|()| encoder.finish())
                .map(|compressed| bytes = compressed)
                .map_err(|error| BusError::Corrupt {
                    bucket: self.bucket.clone(),
                    key: key.to_string(),
                    source: serde_json::Error::io(error),
                })?;
        }
        self.store
            .put(key, bytes.into())
            .await
            .map_err(|error| self.error("put", key, error))
    }

    /// Read-modify-write with compare-and-set: `change` gets the current value (if any) and
    /// returns the new one, or `None` to leave it as it is. Retried when another writer won.
    /// Returns the value that is now stored.
    pub async fn update<T, F>(&self, key: &str, mut change: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Option<T>) -> Option<T>,
    {
        const ATTEMPTS: u32 = 20;
        for attempt in 0..ATTEMPTS {
            let current = self.get_with_revision::<T>(key).await?;
            let (current_value, revision) = match current {
                Some((value, revision)) => (Some(value), Some(revision)),
                None => (None, None),
            };
            let Some(next) = change(current_value.clone()) else {
                return Ok(current_value);
            };
            let bytes: bytes::Bytes = serde_json::to_vec(&next)
                .expect("kv values always serialise to JSON")
                .into();
            let written = match revision {
                Some(revision) => self
                    .store
                    .update(key, bytes, revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => self
                    .store
                    .create(key, bytes)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(Some(next)),
                Err(reason) => {
                    tracing::debug!(bucket = %self.bucket, key, attempt, reason, "kv compare-and-set lost, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(attempt + 1))).await;
                }
            }
        }
        Err(BusError::Contention {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            attempts: ATTEMPTS,
        })
    }

    /// Every key.
    pub async fn keys(&self) -> Result<Vec<String>> {
        let keys = self
            .store
            .keys()
            .await
            .map_err(|error| self.error("keys", "*", error))?;
        keys.try_collect().await.map_err(|error| self.error("keys", "*", error))
    }

    /// Every value (skipping keys deleted meanwhile).
    pub async fn values<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        for key in self.keys().await? {
            if let Some(value) = self.get(&key).await? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}
