//! The `Control` gRPC service: answers from the KV buckets and the EVENTS stream.

use rebake_bus::Bus;
use rebake_proto::control::v1::{self as api, control_server::Control};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    ControlError,
    events::{self, EventFilter, EventStream},
    images::{ImageFilter, ImageStore},
    reports::ReportStore,
};

/// The service state: the bus and the opened buckets.
#[derive(Debug, Clone)]
pub(crate) struct ControlService {
    bus: Bus,
    images: ImageStore,
    reports: ReportStore,
    shutdown: CancellationToken,
}

impl ControlService {
    /// Opens what the service reads. The buckets must exist (see `serve`).
    pub(crate) async fn new(bus: Bus, shutdown: CancellationToken) -> crate::Result<Self> {
        let images = ImageStore::open(&bus).await?;
        let reports = ReportStore::open(&bus).await?;
        Ok(Self {
            bus,
            images,
            reports,
            shutdown,
        })
    }
}

/// Logs a failed request (server-side faults louder than client mistakes) and turns it into
/// its gRPC status.
fn failed(method: &'static str, error: ControlError) -> Status {
    match &error {
        ControlError::NotFound { .. } | ControlError::InvalidArgument { .. } => {
            tracing::debug!(method, error = %error, "request refused");
        }
        _ => tracing::warn!(method, error = %error, "request failed"),
    }
    error.into()
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn list_images(
        &self,
        request: Request<api::ListImagesRequest>,
    ) -> Result<Response<api::ListImagesResponse>, Status> {
        let filter = ImageFilter::from_request(request.get_ref()).map_err(|error| failed("ListImages", error))?;
        let images = self
            .images
            .list(&filter)
            .await
            .map_err(|error| failed("ListImages", error))?;
        Ok(Response::new(api::ListImagesResponse { images }))
    }

    async fn get_image(&self, request: Request<api::GetImageRequest>) -> Result<Response<api::Image>, Status> {
        let name = request.get_ref().name.trim();
        let image = self.images.get(name).await.map_err(|error| failed("GetImage", error))?;
        Ok(Response::new(image))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<api::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let request = request.into_inner();
        let filter = EventFilter::from_request(&request).map_err(|error| failed("WatchEvents", error))?;
        let stream = events::watch(&self.bus, filter, request.from_sequence, self.shutdown.clone())
            .await
            .map_err(|error| failed("WatchEvents", error))?;
        Ok(Response::new(stream))
    }

    async fn get_findings(&self, request: Request<api::GetFindingsRequest>) -> Result<Response<api::Findings>, Status> {
        let findings = self
            .reports
            .findings(request.get_ref())
            .await
            .map_err(|error| failed("GetFindings", error))?;
        Ok(Response::new(findings))
    }

    async fn get_sbom(&self, request: Request<api::GetSbomRequest>) -> Result<Response<api::Sbom>, Status> {
        let sbom = self
            .reports
            .sbom(request.get_ref())
            .await
            .map_err(|error| failed("GetSbom", error))?;
        Ok(Response::new(sbom))
    }
}
