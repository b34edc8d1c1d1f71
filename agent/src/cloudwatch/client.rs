//! The AWS side of setting up: the CloudWatch Logs client and the log group and stream.

use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::Credentials;

use super::error::{Context, classify};
use super::{CloudWatchConfig, CloudWatchError};

/// Bounds on one attempt, so a black-holed endpoint costs seconds, not minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The client (aws-config defaults + optional endpoint override, region and static
/// credentials) and the endpoint it talks to, for error messages.
pub(crate) async fn connect(config: &CloudWatchConfig) -> (Client, String) {
    let region = RegionProviderChain::first_try(config.region.clone().map(Region::new))
        .or_default_provider()
        .or_else(Region::from_static("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        // One retry policy: the shipper's, around every call, so that a batch is never
        // given up after the SDK's three attempts.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some((id, secret)) = &config.credentials {
        loader = loader.credentials_provider(Credentials::new(
            id,
            secret,
            None,
            None,
            "tether-cloudwatch-config",
        ));
    }
    let sdk = loader.load().await;
    let endpoint = config.endpoint_url.clone().unwrap_or_else(|| {
        let region = sdk.region().map_or("us-east-1", |r| r.as_ref());
        format!("https://logs.{region}.amazonaws.com")
    });
    (Client::new(&sdk), endpoint)
}

/// Creates the log group and stream unless they exist. A group the agent may not create
/// is fine if it exists (customers often create it and grant only `logs:CreateLogStream`
/// and `logs:PutLogEvents`).
pub(crate) async fn ensure_stream(
    client: &Client,
    log_group: &str,
    log_stream: &str,
    endpoint: &str,
) -> Result<(), CloudWatchError> {
    let cx = |operation| Context {
        operation,
        log_group,
        endpoint,
    };
    let group = client
        .create_log_group()
        .log_group_name(log_group)
        .send()
        .await;
    let group_denied = match group {
        Ok(_) => None,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) =>
        {
            None
        }
        Err(e) => match classify(&e, cx("CreateLogGroup")) {
            denied @ CloudWatchError::AccessDenied { .. } => Some(denied),
            other => return Err(other),
        },
    };
    let stream = client
        .create_log_stream()
        .log_group_name(log_group)
        .log_stream_name(log_stream)
        .send()
        .await;
    match stream {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => match (e.as_service_error(), group_denied) {
            // The group is missing and we may not create it: that is the error to show.
            (Some(s), Some(denied)) if s.is_resource_not_found_exception() => Err(denied),
            _ => Err(classify(&e, cx("CreateLogStream"))),
        },
    }
}
