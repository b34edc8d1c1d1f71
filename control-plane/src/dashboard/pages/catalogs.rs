//! Catalogs: a form per kind of data source (Hive on Glue, Hive with an external
//! metastore, MySQL, PostgreSQL) that asks for what the source needs, the raw properties as
//! an advanced option, and per catalog the reachability the agent reports from the VPC.
//!
//! Each field is checked here with an error naming the field as the form labels it; the
//! spec it makes then goes through the API's own validation (`PUT .../catalogs/{name}`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::api;
use crate::authz::Role;
use crate::dashboard::layout::{cp_nav, flash, page_at};
use crate::dashboard::session::{FormPost, Session};
use crate::state::AppState;
use tether_shared::spec::{CatalogSpec, Connector};

use super::*;

/// The kinds of source the form offers: (value, label).
const KINDS: &[(&str, &str)] = &[
    ("glue", "Hive tables in AWS Glue"),
    ("thrift", "Hive tables in an external metastore"),
    ("mysql", "MySQL"),
    ("postgresql", "PostgreSQL"),
    ("advanced", "Advanced: connector and raw properties"),
];

/// `GET /ui/cp/{cp}/catalogs`.
pub async fn catalogs(
    State(st): State<AppState>,
    session: Session,
    Path(cp): Path<String>,
) -> Page {
    catalogs_page(&st, &session, &cp, None, None).await
}

/// What the page says above the form: a message, whether it is an error, and the values
/// to put back into the form (after a refusal).
type Outcome<'a> = (&'a str, bool);

async fn catalogs_page(
    st: &AppState,
    session: &Session,
    cp: &str,
    outcome: Option<Outcome<'_>>,
    form: Option<&FormPost>,
) -> Page {
    let v = cp_json(st, session, cp).await?;
    let Json(cats) = api::catalogs::list(
        State(st.clone()),
        session.principal.clone(),
        Path(cp.to_owned()),
    )
    .await
    .map_err(|e| fail(session, &e))?;
    let Json(clusters) = api::clusters::list(
        State(st.clone()),
        session.principal.clone(),
        Path(cp.to_owned()),
    )
    .await
    .map_err(|e| fail(session, &e))?;
    let operator = can(session, Role::Operator);
    let (msg, err) = match outcome {
        Some((m, e)) => (Some(m), e),
        None => (None, false),
    };
    Ok(page_at(
        Some(session),
        Some(&format!("/ui/cp/{cp}/catalogs")),
        "Catalogs",
        html! {
            (cp_nav(cp, &v.name, "Catalogs"))
            (flash(msg, err))
            table.list #catalogs data-live {
                thead { tr { th { "Catalog" } th { "Source" } th { "Credentials" } th { "Reachable from the VPC" } th { "Generation" } @if operator { th {} } } }
                tbody {
                    @for c in &cats.catalogs {
                        @let name = &c.name;
                        tr data-catalog=(name) {
                            td { (name) }
                            td { (source(&c.spec)) }
                            td.mono { (c.spec.credentials.as_ref().map(|cr| cr.secret_ref.as_str()).unwrap_or("")) }
                            td.reach { (reach_badge(&reachability(name, &clusters))) }
                            td { (c.generation) }
                            @if operator {
                                td {
                                    form.inline method="post" action={ "/ui/cp/" (cp) "/catalogs/" (name) "/delete" } {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        button.link.danger type="submit" { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if operator { (catalog_form(cp, session, form)) }
        },
    )
    .into_response())
}

/// What a catalog reads from, in words.
fn source(spec: &CatalogSpec) -> Markup {
    let prop = |k: &str| spec.properties.get(k).cloned().unwrap_or_default();
    let connector = match spec.connector {
        Connector::Hive => "hive",
        Connector::Mysql => "mysql",
        Connector::Postgresql => "postgresql",
    };
    html! {
        @match (connector, prop("hive.metastore").as_str()) {
            ("hive", "glue") => {
                "Glue, " (prop("hive.metastore.glue.region"))
                @if !prop("hive.metastore.glue.catalogid").is_empty() { " (catalog " (prop("hive.metastore.glue.catalogid")) ")" }
            }
            ("hive", _) if !prop("hive.metastore.uri").is_empty() => {
                "Hive metastore " span.mono { (prop("hive.metastore.uri")) }
            }
            ("hive", _) => { "Hive, the cluster's built-in metastore" }
            (connector, _) => {
                (connector) " " span.mono { (prop("connection-url")) }
            }
        }
        @let others: Vec<(&String, &String)> = spec.properties.iter()
            .filter(|(k, _)| !SHOWN.contains(&k.as_str())).collect();
        @if !others.is_empty() {
            details { summary { "properties" }
                div.mono { @for (k, val) in others { (k) "=" (val) br; } }
            }
        }
    }
}

/// Properties [`source`] already puts in words.
const SHOWN: &[&str] = &[
    "hive.metastore",
    "hive.metastore.glue.region",
    "hive.metastore.glue.catalogid",
    "hive.metastore.uri",
    "connection-url",
];

/// What the agent found when it last checked a catalog's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    /// No cluster attaches it: the agent checks only attached catalogs.
    NotAttached,
    /// Attached, not reported yet.
    Unknown,
    /// Every endpoint answered.
    Reachable,
    /// What did not answer.
    Unreachable(String),
}

/// A catalog's reachability from the `CatalogReachable` conditions of the clusters that
/// attach it (the agent writes one message per catalog: `catalog NAME: why`, joined by `; `).
fn reachability(catalog: &str, clusters: &api::clusters::ClusterList) -> Reach {
    let attaching: Vec<&api::clusters::ClusterView> = clusters
        .clusters
        .iter()
        .filter(|c| c.spec.catalogs.iter().any(|n| n == catalog))
        .collect();
    if attaching.is_empty() {
        return Reach::NotAttached;
    }
    let prefix = format!("catalog {catalog}: ");
    let mut seen = false;
    for c in attaching {
        let Some(cond) = c
            .status
            .conditions
            .iter()
            .find(|x| x.kind == "CatalogReachable")
        else {
            continue;
        };
        seen = true;
        if let Some(why) = cond
            .message
            .split("; ")
            .find_map(|part| part.strip_prefix(prefix.as_str()))
        {
            return Reach::Unreachable(why.to_owned());
        }
    }
    if seen {
        Reach::Reachable
    } else {
        Reach::Unknown
    }
}

fn reach_badge(r: &Reach) -> Markup {
    html! {
        @match r {
            Reach::Reachable => span.badge.good { "reachable" },
            Reach::Unreachable(why) => { span.badge.bad { "unreachable" } " " span.hint { (why) } },
            Reach::Unknown => span.badge.warn { "not checked yet" },
            Reach::NotAttached => span.hint { "checked once a cluster uses it" },
        }
    }
}

/// The form; `form` puts back what was entered after a refusal.
fn catalog_form(cp: &str, session: &Session, form: Option<&FormPost>) -> Markup {
    let val = |k: &str| form.map(|f| f.field(k)).unwrap_or_default();
    let kind = form
        .map(|f| f.field("kind"))
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "glue".to_owned());
    let connector = val("connector");
    html! {
        form.card #create-catalog method="post" action={ "/ui/cp/" (cp) "/catalogs" } {
            h2 { "New catalog" }
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Name" input #catalog-name name="name" required pattern="[a-z0-9_]{1,40}" value=(val("name")); }
            label { "Source"
                select #catalog-kind name="kind" {
                    @for (value, label) in KINDS {
                        option value=(value) selected[*value == kind] { (label) }
                    }
                }
            }
            fieldset data-kind="glue" {
                legend { "AWS Glue" }
                label { "Region" input #catalog-glue-region name="glue_region" placeholder="us-east-1" value=(val("glue_region")); }
                label { "Glue catalog id (another account's, optional)" input #catalog-glue-catalog-id name="glue_catalog_id" placeholder="123456789012" value=(val("glue_catalog_id")); }
            }
            fieldset data-kind="thrift" {
                legend { "External Hive metastore" }
                label { "Metastore URI" input #catalog-metastore-uri name="metastore_uri" placeholder="thrift://metastore.internal:9083" value=(val("metastore_uri")); }
            }
            fieldset data-kind="mysql postgresql" {
                legend { "Database server" }
                label { "Host" input #catalog-host name="host" placeholder="orders-db.internal" value=(val("host")); }
                label { "Port (default 3306 for MySQL, 5432 for PostgreSQL)" input #catalog-port name="port" inputmode="numeric" value=(val("port")); }
                label { "Database (PostgreSQL)" input #catalog-database name="database" value=(val("database")); }
            }
            fieldset data-kind="advanced" {
                legend { "Advanced" }
                label { "Connector"
                    select #catalog-connector name="connector" {
                        @for c in ["hive", "mysql", "postgresql"] {
                            option value=(c) selected[connector == c] { (c) }
                        }
                    }
                }
                label { "Properties (one key=value per line)" textarea #catalog-properties name="properties" rows="4" { (val("properties")) } }
            }
            label { "Credentials secret (arn:aws:secretsmanager:… or k8s:NAME; required for MySQL and PostgreSQL)"
                input #catalog-secret name="secret_ref" value=(val("secret_ref")); }
            button #create-catalog-submit type="submit" { "Save catalog" }
        }
    }
}

/// A form field's refusal: the field as the form labels it, and why.
fn refuse(label: &str, why: &str) -> String {
    format!("{label}: {why}")
}

fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The catalog spec the form describes, or why not (naming the form's field).
fn catalog_from_form(field: impl Fn(&str) -> String) -> Result<Value, String> {
    let mut props = BTreeMap::new();
    let secret = field("secret_ref");
    let kind = field("kind");
    let connector = match kind.as_str() {
        "glue" => {
            let region = field("glue_region");
            let region_ok = {
                let parts: Vec<&str> = region.split('-').collect();
                parts.len() >= 3
                    && parts[0].len() == 2
                    && parts.iter().all(|p| !p.is_empty())
                    && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
                    && region
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            };
            if !region_ok {
                return Err(refuse("Region", "an AWS region such as us-east-1"));
            }
            props.insert("hive.metastore", "glue".to_owned());
            props.insert("hive.metastore.glue.region", region);
            let id = field("glue_catalog_id");
            if !id.is_empty() {
                if id.len() != 12 || !id.chars().all(|c| c.is_ascii_digit()) {
                    return Err(refuse("Glue catalog id", "an AWS account id: 12 digits"));
                }
                props.insert("hive.metastore.glue.catalogid", id);
            }
            "hive"
        }
        "thrift" => {
            let uri = field("metastore_uri");
            let ok = uri
                .strip_prefix("thrift://")
                .and_then(|hp| hp.rsplit_once(':'))
                .is_some_and(|(h, p)| is_host(h) && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(refuse("Metastore URI", "thrift://HOST:PORT"));
            }
            props.insert("hive.metastore", "thrift".to_owned());
            props.insert("hive.metastore.uri", uri);
            "hive"
        }
        kind @ ("mysql" | "postgresql") => {
            let host = field("host");
            if !is_host(&host) {
                return Err(refuse("Host", "a DNS name or IPv4 address"));
            }
            let port = match field("port").as_str() {
                "" if kind == "mysql" => 3306,
                "" => 5432,
                p => match p.parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(refuse("Port", "a number from 1 to 65535")),
                },
            };
            let url = if kind == "mysql" {
                // prestodb's MySQL connector shows every database as a schema: no database
                // in the URL.
                format!("jdbc:mysql://{host}:{port}")
            } else {
                let db = field("database");
                if db.is_empty()
                    || !db
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(refuse(
                        "Database",
                        "required for PostgreSQL: letters, digits, _ and -",
                    ));
                }
                format!("jdbc:postgresql://{host}:{port}/{db}")
            };
            if secret.is_empty() {
                return Err(refuse(
                    "Credentials secret",
                    "required: the database user and password stay in the VPC, referenced by arn:aws:secretsmanager:… or k8s:NAME",
                ));
            }
            props.insert("connection-url", url);
            kind
        }
        "advanced" => {
            let mut raw = serde_json::Map::new();
            for line in field("properties").lines() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let Some((k, v)) = line.split_once('=') else {
                    return Err(refuse(
                        "Properties",
                        &format!("line {line:?} is not key=value"),
                    ));
                };
                raw.insert(k.trim().to_owned(), json!(v.trim()));
            }
            let mut spec = json!({"connector": field("connector"), "properties": raw});
            if !secret.is_empty() {
                spec["credentials"] = json!({"secret_ref": secret});
            }
            return Ok(spec);
        }
        other => return Err(refuse("Source", &format!("unknown kind {other:?}"))),
    };
    let mut spec = json!({"connector": connector, "properties": props});
    if !secret.is_empty() {
        spec["credentials"] = json!({"secret_ref": secret});
    }
    Ok(spec)
}

/// `POST /ui/cp/{cp}/catalogs` (operator).
pub async fn create_catalog(
    State(st): State<AppState>,
    Path(cp): Path<String>,
    post: FormPost,
) -> Page {
    let name = post.field("name");
    let spec = match catalog_from_form(|k| post.field(k)) {
        Ok(spec) => spec,
        Err(m) => {
            return catalogs_page(&st, &post.session, &cp, Some((&m, true)), Some(&post)).await;
        }
    };
    let result = match body(&spec) {
        Ok(b) => api::catalogs::put(
            State(st.clone()),
            post.session.principal.clone(),
            Path((cp.clone(), name.clone())),
            b,
        )
        .await
        .map(|_| ()),
        Err(e) => Err(e),
    };
    let result = post
        .audited(
            &st,
            "PUT /compute-planes/{cp}/catalogs/{name}",
            &format!("/compute-planes/{cp}/catalogs/{name}"),
            StatusCode::OK,
            result,
        )
        .await;
    match result {
        Ok(()) => {
            let m = format!("Catalog {name} saved.");
            catalogs_page(&st, &post.session, &cp, Some((&m, false)), None).await
        }
        Err(e) if shown_as_page(&e) => Err(fail(&post.session, &e)),
        Err(e) => {
            let m = e.to_string();
            catalogs_page(&st, &post.session, &cp, Some((&m, true)), Some(&post)).await
        }
    }
}

/// `POST /ui/cp/{cp}/catalogs/{name}/delete` (operator).
pub async fn delete_catalog(
    State(st): State<AppState>,
    Path((cp, name)): Path<(String, String)>,
    post: FormPost,
) -> Page {
    let result = api::catalogs::delete(
        State(st.clone()),
        post.session.principal.clone(),
        Path((cp.clone(), name.clone())),
    )
    .await
    .map(|_| ());
    let result = post
        .audited(
            &st,
            "DELETE /compute-planes/{cp}/catalogs/{name}",
            &format!("/compute-planes/{cp}/catalogs/{name}"),
            StatusCode::OK,
            result,
        )
        .await;
    match result {
        Ok(()) => {
            let m = format!("Catalog {name} deleted.");
            catalogs_page(&st, &post.session, &cp, Some((&m, false)), None).await
        }
        Err(e) if shown_as_page(&e) => Err(fail(&post.session, &e)),
        Err(e) => {
            let m = e.to_string();
            catalogs_page(&st, &post.session, &cp, Some((&m, true)), None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(fields: &[(&str, &str)]) -> impl Fn(&str) -> String {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| {
            fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        }
    }

    #[test]
    fn each_kind_asks_for_what_its_source_needs() {
        let glue = catalog_from_form(post(&[("kind", "glue"), ("glue_region", "eu-west-1")]))
            .expect("glue");
        assert_eq!(
            glue,
            json!({"connector": "hive", "properties": {"hive.metastore": "glue", "hive.metastore.glue.region": "eu-west-1"}})
        );
        let pg = catalog_from_form(post(&[
            ("kind", "postgresql"),
            ("host", "db.internal"),
            ("database", "sales"),
            ("secret_ref", "k8s:sales-db"),
        ]))
        .expect("pg");
        assert_eq!(
            pg["properties"]["connection-url"],
            "jdbc:postgresql://db.internal:5432/sales"
        );
        assert_eq!(pg["credentials"]["secret_ref"], "k8s:sales-db");
        let my = catalog_from_form(post(&[
            ("kind", "mysql"),
            ("host", "10.0.0.5"),
            ("port", "3307"),
            ("secret_ref", "k8s:x"),
        ]))
        .expect("mysql");
        assert_eq!(
            my["properties"]["connection-url"],
            "jdbc:mysql://10.0.0.5:3307"
        );
        let thrift = catalog_from_form(post(&[
            ("kind", "thrift"),
            ("metastore_uri", "thrift://hms.internal:9083"),
        ]))
        .expect("thrift");
        assert_eq!(thrift["properties"]["hive.metastore"], "thrift");
        // Every spec the form makes passes the API's validation.
        for spec in [glue, pg, my, thrift] {
            let parsed: tether_shared::spec::CatalogSpec =
                serde_json::from_value(spec).expect("shape");
            parsed.validate().expect("valid");
        }
    }

    #[test]
    fn refusals_name_the_form_field() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("kind", "glue"), ("glue_region", "Frankfurt")], "Region:"),
            (
                &[
                    ("kind", "glue"),
                    ("glue_region", "us-east-1"),
                    ("glue_catalog_id", "42"),
                ],
                "Glue catalog id:",
            ),
            (
                &[("kind", "thrift"), ("metastore_uri", "http://x:1")],
                "Metastore URI:",
            ),
            (
                &[
                    ("kind", "mysql"),
                    ("host", "db;drop"),
                    ("secret_ref", "k8s:x"),
                ],
                "Host:",
            ),
            (
                &[
                    ("kind", "mysql"),
                    ("host", "db"),
                    ("port", "70000"),
                    ("secret_ref", "k8s:x"),
                ],
                "Port:",
            ),
            (&[("kind", "mysql"), ("host", "db")], "Credentials secret:"),
            (
                &[
                    ("kind", "postgresql"),
                    ("host", "db"),
                    ("secret_ref", "k8s:x"),
                ],
                "Database:",
            ),
            (
                &[("kind", "advanced"), ("properties", "no equals sign")],
                "Properties:",
            ),
        ];
        for (fields, want) in cases {
            let e = catalog_from_form(post(fields)).expect_err(want);
            assert!(e.starts_with(want), "{want}: {e}");
        }
    }

    #[test]
    fn reachability_comes_from_the_clusters_that_attach_the_catalog() {
        use tether_shared::status::{ClusterStatus, Condition};
        let cluster = |catalogs: &[&str], conditions: Vec<Condition>| api::clusters::ClusterView {
            name: "c".into(),
            spec: serde_json::from_value(
                json!({"presto_version": "0.293", "workers": {"count": 1}, "catalogs": catalogs}),
            )
            .expect("spec"),
            generation: 1,
            observed_generation: 1,
            status: ClusterStatus {
                conditions,
                ..ClusterStatus::pending(1)
            },
        };
        let clusters = api::clusters::ClusterList {
            clusters: vec![
                cluster(
                    &["lake", "orders"],
                    vec![Condition {
                        kind: "CatalogReachable".into(),
                        status: "False".into(),
                        message: "catalog orders: orders-db:3306: connection refused; catalog crm: timed out".into(),
                        ..Condition::default()
                    }],
                ),
                cluster(&["fresh"], vec![]),
            ],
            generation: 1,
        };
        assert_eq!(reachability("lake", &clusters), Reach::Reachable);
        assert_eq!(
            reachability("orders", &clusters),
            Reach::Unreachable("orders-db:3306: connection refused".into())
        );
        assert_eq!(reachability("fresh", &clusters), Reach::Unknown);
        assert_eq!(reachability("unused", &clusters), Reach::NotAttached);
    }
}
