//! The `demo.v1.Demo` gRPC service of the examples (served by `example-grpc` and, on the same
//! port as its REST and GraphQL APIs, by `auth-demo`), and its per-method policies.

use crate::proto::demo_v1::demo_server::Demo;
use crate::proto::demo_v1::{AdminReply, WhoAmIReply};
use auth_core::policy::{PolicyMap, Scopes};
use auth_grpc::PrincipalExt;
use tonic::{Request, Response, Status};

/// The full path of `demo.v1.Demo/Admin`, as [`PolicyMap`] keys it.
pub const ADMIN: &str = "/demo.v1.Demo/Admin";

/// The `demo.v1.Demo` service. It reads the caller that `GrpcAuthLayer` authenticated; the
/// layer has already applied [`demo_policies`] (scope `admin` for `Admin`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoService;

#[tonic::async_trait]
impl Demo for DemoService {
    async fn who_am_i(&self, request: Request<()>) -> Result<Response<WhoAmIReply>, Status> {
        let p = request.principal()?;
        Ok(Response::new(WhoAmIReply {
            subject: p.subject().to_owned(),
            method: p.method().to_string(),
            scopes: p.scopes().to_vec(),
            issuer: p.issuer().unwrap_or_default().to_owned(),
        }))
    }

    async fn admin(&self, request: Request<()>) -> Result<Response<AdminReply>, Status> {
        let p = request.principal()?;
        Ok(Response::new(AdminReply {
            subject: p.subject().to_owned(),
            message: format!("hello, {}: you hold scope admin", p.subject()),
        }))
    }
}

/// The per-method policies of the demo service: `Admin` needs scope `admin`; `WhoAmI` any
/// authenticated caller.
pub fn demo_policies() -> PolicyMap {
    PolicyMap::new().route(ADMIN, Scopes::all(["admin"]))
}
