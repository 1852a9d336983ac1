//! The `Control` gRPC service: answers from the KV buckets and the EVENTS stream.

use rebake_bus::Bus;
use rebake_proto::control::v1::{self as api, control_server::Control};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    ControlError, builds,
    events::{self, EventFilter, EventStream},
    exposure, graph,
    images::{ImageFilter, ImageStore},
    operator,
    reports::ReportStore,
    why,
};

/// The service state: the bus and the opened buckets.
#[derive(Debug, Clone)]
pub(crate) struct ControlService {
    pub(crate) bus: Bus,
    pub(crate) images: ImageStore,
    pub(crate) reports: ReportStore,
    pub(crate) shutdown: CancellationToken,
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
        let request = request.get_ref();
        let (images, next_page_token) = self
            .images
            .list(&filter, request.page_size, &request.page_token)
            .await
            .map_err(|error| failed("ListImages", error))?;
        Ok(Response::new(api::ListImagesResponse {
            images,
            next_page_token,
        }))
    }

    async fn get_image(&self, request: Request<api::GetImageRequest>) -> Result<Response<api::Image>, Status> {
        let name = request.get_ref().name.trim();
        let image = self
            .images
            .get_detailed(name)
            .await
            .map_err(|error| failed("GetImage", error))?;
        Ok(Response::new(image))
    }

    async fn get_graph(&self, request: Request<api::GetGraphRequest>) -> Result<Response<api::Graph>, Status> {
        graph::get_graph(self, request.get_ref())
            .await
            .map(Response::new)
            .map_err(|error| failed("GetGraph", error))
    }

    async fn list_builds(
        &self,
        request: Request<api::ListBuildsRequest>,
    ) -> Result<Response<api::ListBuildsResponse>, Status> {
        builds::list_builds(self, request.get_ref())
            .await
            .map(Response::new)
            .map_err(|error| failed("ListBuilds", error))
    }

    async fn get_build(&self, request: Request<api::GetBuildRequest>) -> Result<Response<api::BuildDetail>, Status> {
        builds::get_build(self, request.get_ref())
            .await
            .map(Response::new)
            .map_err(|error| failed("GetBuild", error))
    }

    async fn why(&self, request: Request<api::WhyRequest>) -> Result<Response<api::WhyResponse>, Status> {
        why::why(self, request.get_ref())
            .await
            .map(Response::new)
            .map_err(|error| failed("Why", error))
    }

    async fn trigger_rebuild(
        &self,
        request: Request<api::TriggerRebuildRequest>,
    ) -> Result<Response<api::TriggerRebuildResponse>, Status> {
        let caller = operator::caller(&request);
        operator::trigger_rebuild(self, request.get_ref(), &caller)
            .await
            .map(Response::new)
            .map_err(|error| failed("TriggerRebuild", error))
    }

    async fn pause(&self, request: Request<api::PauseRequest>) -> Result<Response<api::PauseResponse>, Status> {
        let caller = operator::caller(&request);
        operator::pause(self, request.get_ref(), &caller)
            .await
            .map(Response::new)
            .map_err(|error| failed("Pause", error))
    }

    async fn resume(&self, request: Request<api::ResumeRequest>) -> Result<Response<api::PauseResponse>, Status> {
        let caller = operator::caller(&request);
        operator::resume(self, request.get_ref(), &caller)
            .await
            .map(Response::new)
            .map_err(|error| failed("Resume", error))
    }

    async fn get_exposure(&self, request: Request<api::GetExposureRequest>) -> Result<Response<api::Exposure>, Status> {
        exposure::get_exposure(self, request.get_ref())
            .await
            .map(Response::new)
            .map_err(|error| failed("GetExposure", error))
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
