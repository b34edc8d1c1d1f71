//! The install path: `GET /compute-planes/{cp}/cloudformation` (the template, YAML) and
//! what the dashboard offers for download.

pub mod cloudformation;
pub mod yaml;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use self::cloudformation::{Network, TemplateInput};
use crate::api::auth::Principal;
use crate::api::compute_planes::visible_cp;
use crate::api::error::ApiError;
use crate::state::AppState;

/// The template of compute plane `cp` for `vpc=new` (default) or `vpc=existing`.
pub async fn template_yaml(
    s: &AppState,
    p: &Principal,
    cp: &str,
    q: &HashMap<String, String>,
) -> Result<String, ApiError> {
    let cp = visible_cp(s, p, cp).await?;
    let network = match q.get("vpc").map(String::as_str) {
        None | Some("new") => Network::NewVpc,
        Some("existing") => Network::ExistingVpc,
        Some(other) => {
            return Err(ApiError::field(
                "vpc",
                format!("must be new or existing, not {other:?}"),
            ));
        }
    };
    let input = TemplateInput {
        compute_plane_id: cp.id.clone(),
        compute_plane_name: cp.name.clone(),
        control_plane_endpoint: s.install.grpc_endpoint.clone(),
        ca_pem: s.ca.ca_pem().to_owned(),
        agent_image: s.install.agent_image.clone(),
        network,
    };
    Ok(yaml::to_string(&cloudformation::template(&input)))
}

/// `GET /compute-planes/{cp}/cloudformation?vpc=new|existing`.
#[utoipa::path(
    get,
    path = "/compute-planes/{cp}/cloudformation",
    tag = "compute-planes",
    operation_id = "get_cloudformation_template",
    security(("bearer" = [])),
    params(
        ("cp" = String, Path, description = "Compute plane id"),
        ("vpc" = Option<String>, Query, pattern = "^(new|existing)$", description = "`new` (default): a new VPC with private subnets and a NAT gateway; `existing`: parameters for your VPC and private subnets"),
    ),
    responses(
        (status = 200, description = "CloudFormation template: a YAML document (a mapping of `AWSTemplateFormatVersion`, `Parameters`, `Resources`, `Outputs`)", content_type = "application/yaml", body = serde_json::Value),
        (status = 400, description = "Unknown `vpc` value", body = crate::api::error::ErrorBody),
        (status = 401, description = "No or unknown API token", body = crate::api::error::ErrorBody),
        (status = 404, description = "No such compute plane visible to the caller", body = crate::api::error::ErrorBody),
    )
)]
pub async fn cloudformation(
    State(s): State<AppState>,
    p: Principal,
    Path(cp): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let body = template_yaml(&s, &p, &cp, &q).await?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], body).into_response())
}
