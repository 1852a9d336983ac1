use rebake_bus::BusError;
use rebake_events::EventsError;

/// Failures of the control service and of its client helpers.
///
/// Every failure of a request is answered through [`tonic::Status`]; the mapping lives in one
/// place, the `From<ControlError> for Status` impl below.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// NATS or a KV bucket could not be reached or read (corrupt documents included).
    #[error("failed to read rebake state from nats")]
    Bus {
        /// The bus failure.
        #[from]
        source: BusError,
    },
    /// The events stream could not be opened or consumed.
    #[error("failed to watch stream {stream}: {reason}")]
    Watch {
        /// Stream name.
        stream: String,
        /// Server or client message.
        reason: String,
    },
    /// An RPC that this server does not implement (yet).
    #[error("{0} is not implemented by this server")]
    Unimplemented(&'static str),
    /// The requested image is not in the catalog.
    #[error("image {name} is not in the catalog")]
    NotFound {
        /// The requested name.
        name: String,
    },
    /// The requested build has no record.
    #[error("build {build_id} is not known")]
    BuildNotFound {
        /// The requested build id.
        build_id: String,
    },
    /// A request field has a value the API does not accept.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// Request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The gRPC server stopped with a transport error (or could not start).
    #[error("failed to serve the control api")]
    Serve {
        /// The transport failure.
        #[source]
        source: tonic::transport::Error,
    },
    /// The reflection service could not be built from the file descriptors.
    #[error("failed to build the reflection service: {reason}")]
    Reflection {
        /// Why.
        reason: String,
    },
    /// The listener's address could not be read.
    #[error("failed to read the control listener address")]
    Listener {
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The client endpoint is not a valid URI.
    #[error("invalid control endpoint {endpoint:?}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is invalid.
        #[source]
        source: tonic::transport::Error,
    },
    /// The client could not connect to the control API.
    #[error(
        "failed to connect to the control api at {endpoint} (is `rebake up` or `rebake serve control` running there? \
         point at it with --endpoint or REBAKE_CONTROL_ENDPOINT)"
    )]
    Connect {
        /// The endpoint as used.
        endpoint: String,
        /// The transport failure.
        #[source]
        source: tonic::transport::Error,
    },
}

impl ControlError {
    /// An invalid image name in field `field`.
    pub(crate) fn invalid_image(field: &'static str, error: EventsError) -> Self {
        ControlError::InvalidArgument {
            field,
            reason: error.to_string(),
        }
    }
}

impl From<ControlError> for tonic::Status {
    fn from(error: ControlError) -> Self {
        let message = error_chain(&error);
        match &error {
            ControlError::Bus {
                source: BusError::Corrupt { .. },
            } => tonic::Status::internal(message),
            ControlError::Bus { .. } | ControlError::Watch { .. } => tonic::Status::unavailable(message),
            ControlError::NotFound { .. } | ControlError::BuildNotFound { .. } => tonic::Status::not_found(message),
            ControlError::Unimplemented(_) => tonic::Status::unimplemented(message),
            ControlError::InvalidArgument { .. } | ControlError::InvalidEndpoint { .. } => {
                tonic::Status::invalid_argument(message)
            }
            ControlError::Serve { .. }
            | ControlError::Reflection { .. }
            | ControlError::Listener { .. }
            | ControlError::Connect { .. } => tonic::Status::internal(message),
        }
    }
}

use rebake_bus::error_chain;

/// Result with [`ControlError`].
pub type Result<T, E = ControlError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let not_found: tonic::Status = ControlError::NotFound { name: "app".into() }.into();
        assert_eq!(not_found.code(), tonic::Code::NotFound);
        assert_eq!(not_found.message(), "image app is not in the catalog");
        let no_build: tonic::Status = ControlError::BuildNotFound { build_id: "b1".into() }.into();
        assert_eq!(no_build.code(), tonic::Code::NotFound);
        assert_eq!(no_build.message(), "build b1 is not known");

        let unavailable: tonic::Status = ControlError::from(BusError::Kv {
            op: "get",
            bucket: "b".into(),
            key: "k".into(),
            reason: "timed out".into(),
        })
        .into();
        assert_eq!(unavailable.code(), tonic::Code::Unavailable);
        assert!(unavailable.message().contains("timed out"), "{}", unavailable.message());

        let corrupt: tonic::Status = ControlError::from(BusError::Corrupt {
            bucket: "b".into(),
            key: "k".into(),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        })
        .into();
        assert_eq!(corrupt.code(), tonic::Code::Internal);

        let invalid: tonic::Status = ControlError::InvalidArgument {
            field: "status",
            reason: "unknown".into(),
        }
        .into();
        assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    }
}
