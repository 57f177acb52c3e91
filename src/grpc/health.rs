//! `grpc.health.v1.Health`: tonic-health's service, with Watch streams that
//! end when the server drains. A watcher (a load balancer, a sidecar) sees
//! NOT_SERVING first, and then its stream closes, so an open Watch never
//! holds the process for the whole grace period.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::{Health as HealthApi, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// tonic-health's service; `ending` turns true when Watch streams must end.
pub(super) struct DrainingHealth {
    inner: HealthService,
    ending: watch::Receiver<bool>,
}

impl DrainingHealth {
    pub(super) fn server(
        reporter: &HealthReporter,
        ending: watch::Receiver<bool>,
    ) -> HealthServer<Self> {
        HealthServer::new(Self {
            inner: HealthService::from_health_reporter(reporter.clone()),
            ending,
        })
    }
}

type Watch = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl HealthApi for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = Watch;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inner = self.inner.watch(request).await?.into_inner();
        let mut ending = self.ending.clone();
        let ended = Box::pin(async move {
            // A dropped sender means the server is gone: end as well.
            let _ = ending.wait_for(|ending| *ending).await;
        });
        Ok(Response::new(Box::pin(EndingWatch {
            inner,
            ended,
            done: false,
        })))
    }
}

/// The status stream until `ended` completes. A change that is ready is
/// sent before the stream ends: NOT_SERVING is set before the watches are
/// told to end, so every watcher sees it.
struct EndingWatch<S> {
    inner: S,
    ended: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
}

impl<S> Stream for EndingWatch<S>
where
    S: Stream<Item = Result<HealthCheckResponse, Status>> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = self.inner.poll_next_unpin(cx) {
            return Poll::Ready(item);
        }
        if self.ended.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}
